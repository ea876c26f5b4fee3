//! Task failures shared by the handlers: blob-store errors, blocking-thread failures, params.

use engine::{CheckError, HandlerError, TaskContext, ValidationError};

use crate::blob::BlobError;

/// The task failure of a blob-store error: a missing container or blob and an invalid name
/// are permanent (`NOT_FOUND`, `INVALID_INPUT`), and so is refused access
/// (`BLOB_ACCESS_DENIED`); other storage errors are transient (`BLOB_STORE`).
pub fn blob_failure(e: BlobError) -> HandlerError {
    match e {
        BlobError::NoContainer { .. } | BlobError::NotFound { .. } => {
            HandlerError::permanent("NOT_FOUND", e.to_string())
        }
        BlobError::InvalidName { .. } => HandlerError::permanent("INVALID_INPUT", e.to_string()),
        // Bad credentials or a missing role do not heal by retrying.
        BlobError::Store {
            source:
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ..
        } => HandlerError::permanent("BLOB_ACCESS_DENIED", error_chain(&e)),
        BlobError::Store { .. } | BlobError::Io { .. } | BlobError::CreateContainer { .. } => {
            HandlerError::transient("BLOB_STORE", error_chain(&e))
        }
    }
}

/// The submission-time verdict of a blob-store error met by `Controller::check`: what the
/// params name does not exist or is not a valid name (the client's mistake), or the store
/// could not be asked (an outage, refused credentials: not the input's fault).
pub fn check_failure(field: &str, e: BlobError) -> CheckError {
    match e {
        BlobError::NoContainer { .. }
        | BlobError::NotFound { .. }
        | BlobError::InvalidName { .. } => {
            CheckError::Invalid(ValidationError::new(field, e.to_string()))
        }
        BlobError::Store { .. } | BlobError::Io { .. } | BlobError::CreateContainer { .. } => {
            CheckError::unavailable(field, error_chain(&e))
        }
    }
}

/// A blocking check that did not finish (runtime shutting down, a panic) is not the input's
/// fault.
pub fn check_join_failure(field: &str, e: tokio::task::JoinError) -> CheckError {
    CheckError::unavailable(field, e.to_string())
}

/// The task failure of a blocking GDAL job that did not finish: a panic is permanent
/// (`HANDLER_PANICKED`, as the runtime records a handler's own panic), a cancellation of the
/// blocking task (runtime shutting down) is transient (`INTERNAL`).
pub fn join_failure(e: tokio::task::JoinError) -> HandlerError {
    if e.is_panic() {
        HandlerError::permanent(engine::model::codes::HANDLER_PANICKED, e.to_string())
    } else {
        HandlerError::transient("INTERNAL", e.to_string())
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Parse a job's params into the handler's typed view (already validated by the controller).
pub fn job_params<T: serde::de::DeserializeOwned>(ctx: &TaskContext) -> Result<T, HandlerError> {
    serde_json::from_value(ctx.job_params.clone()).map_err(|e| {
        HandlerError::permanent("INVALID_INPUT", format!("job params of {}: {e}", ctx.task))
    })
}
