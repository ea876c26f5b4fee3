//! Helpers for tests and benchmarks, never a dependency of the product crates: `azurite`
//! starts and stops Azurite (the storage emulator), `host_queues` plays the Azure Functions
//! host's side of Storage Queues. `cargo xtask` and the integration tests use them.

pub mod azurite;
pub mod host_queues;
