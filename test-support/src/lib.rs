//! Helpers for tests and benchmarks, never a dependency of the product crates: `azurite`
//! starts and stops Azurite (the storage emulator), `host_queues` plays the Azure Functions
//! host's side of Storage Queues, and `functions_host` is the protocol-level Azure Functions
//! host built on them. `cargo xtask` and the integration tests (`tests/it`) use them.

pub mod azurite;
pub mod functions_host;
pub mod host_queues;
