//! The `tessera` host: the application layer its front doors share (`app`), behind the
//! command line (the `tessera` binary, `main.rs`).

pub mod app;
