//! Tessera's engine: the job/task model, deterministic IDs, plan validation, pure scheduling
//! decisions, retries, the runtime shell, and the ports (traits) a backend implements.
//!
//! The engine names no database, cloud service or protocol. Backends live in their own crates
//! (`engine-sqlite`, the Azure adapter); the `tessera` binary wires them.

pub mod events;
pub mod graph;
pub mod handler;
pub mod ids;
pub mod json;
pub mod memory;
pub mod model;
pub mod ports;
pub mod retry;
pub mod runtime;
pub mod schedule;
pub mod status;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use handler::{
    CheckError, Controller, HandlerError, JobResults, MemberResult, Registry, TaskContext,
    TaskHandler, TaskOutput, ValidationError,
};
pub use ids::{JobId, TaskId, TaskKey};
pub use model::{
    JobRecord, JobStatus, OutcomePolicy, TaskKind, TaskRecord, TaskSpec, TaskStatus, TriggerRule,
};
pub use ports::Backend;
pub use retry::RetryPolicy;
pub use runtime::{Engine, EngineConfig, SubmitOptions, WorkerConfig};
