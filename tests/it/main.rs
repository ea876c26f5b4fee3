//! Tessera's integration tests: one binary, one module per area.
//!
//! - `jcs`: RFC 8785 vectors and ID golden values
//! - `scheduling`: property test of the runtime over random DAGs (in-memory backend)
//! - `cli`: the `tessera` binary on a real SQLite file
//! - `crash`: SIGKILL of a worker process mid-job loses nothing

mod cli;
mod crash;
mod jcs;
mod scheduling;
mod support;
