//! Task handlers: one module per handler family. Handlers see only their context (params,
//! results of other tasks, progress, cancellation), never the store.

pub mod hello;
pub mod synthetic;

use engine::Registry;

/// Register every handler of this crate.
pub fn register(registry: Registry) -> Registry {
    registry
        .with_handler(hello::Greet)
        .with_handler(hello::Summarize)
        .with_handler(synthetic::Noop)
        .with_handler(synthetic::NoopBarrier)
}
