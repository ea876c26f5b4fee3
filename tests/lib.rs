//! Workspace-level integration tests live in `it/`. This library holds what a test and a
//! benchmark share: the protocol-level Azure Functions host (`cargo xtask bench functions`
//! drives it too).

pub mod functions_host;
