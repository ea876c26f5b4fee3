//! The `tessera` host: the application layer its front doors share (`app`) and the HTTP
//! front door (`http`), the Azure Functions custom handler (`functions`), behind the command line (the `tessera` binary, `main.rs`).

pub mod app;
pub mod functions;
pub mod http;
