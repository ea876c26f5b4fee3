//! One error type for every front door (CLI, HTTP, Functions): its kind decides both the
//! CLI exit code and the HTTP status, so the two cannot disagree.

use engine::runtime::{JobQueryError, ReplayError, SubmitError};
use engine_azure::ConnectError;
use engine_sqlite::{BackupError, OpenError};
use serde::Serialize;

/// What went wrong, as the caller should act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is wrong: malformed JSON, a bad ID, an unknown job type, invalid
    /// params, a named blob that does not exist.
    InvalidInput,
    /// Params that pass validation but whose plan cannot be built.
    Unprocessable,
    /// No such job or task.
    NotFound,
    /// The request conflicts with the job's state (cancel a finished job, delete a running
    /// one, re-run a succeeded one, read the result of a running one).
    Conflict,
    /// The request body is over the limit.
    TooLarge,
    /// The route does not take this HTTP method (HTTP only).
    MethodNotAllowed,
    /// The client stopped sending its request body (HTTP only).
    RequestTimeout,
    /// The request body is not JSON.
    UnsupportedMediaType,
    /// No or an unknown API key.
    Unauthorized,
    /// The API key may not do this (a read-only key and a write).
    Forbidden,
    /// Storage (or something the request refers to) cannot be reached now: try again.
    Unavailable,
    /// A defect or a stored record that cannot be read.
    Internal,
}

/// Exit codes (docs/errors.md).
pub const EXIT_OK: u8 = 0;
pub const EXIT_JOB_UNSUCCESSFUL: u8 = 1;
pub const EXIT_INVALID_INPUT: u8 = 2;
pub const EXIT_INTERNAL: u8 = 3;

impl ErrorKind {
    /// The `tessera` exit code: 2 for the caller's mistakes, 3 for the rest.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidInput
            | ErrorKind::Unprocessable
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::TooLarge
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden => EXIT_INVALID_INPUT,
            ErrorKind::Unavailable | ErrorKind::Internal => EXIT_INTERNAL,
        }
    }

    /// The HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Error codes of the application layer (the engine's are in `engine::model::codes`).
pub mod codes {
    pub const INVALID_PARAMS: &str = engine::model::codes::INVALID_PARAMS;
    pub const INVALID_JSON: &str = "INVALID_JSON";
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    pub const INVALID_QUERY: &str = "INVALID_QUERY";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const BODY_TOO_LARGE: &str = "BODY_TOO_LARGE";
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// The client stopped sending its request body.
    pub const BODY_TIMEOUT: &str = "BODY_TIMEOUT";
    pub const OVERLOADED: &str = "OVERLOADED";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const INVALID_ID: &str = "INVALID_ID";
    pub const UNKNOWN_JOB_TYPE: &str = "UNKNOWN_JOB_TYPE";
    pub const INVALID_PLAN: &str = engine::model::codes::INVALID_PLAN;
    pub const JOB_NOT_FOUND: &str = "JOB_NOT_FOUND";
    pub const TASK_NOT_FOUND: &str = "TASK_NOT_FOUND";
    pub const POISON_NOT_FOUND: &str = "POISON_NOT_FOUND";
    /// A poison message that cannot be read: it can only be discarded.
    pub const UNREADABLE_MESSAGE: &str = "UNREADABLE_MESSAGE";
    /// A job with too many tasks to draw its graph.
    pub const GRAPH_TOO_LARGE: &str = "GRAPH_TOO_LARGE";
    pub const NOT_RERUNNABLE: &str = "NOT_RERUNNABLE";
    pub const JOB_FINISHED: &str = "JOB_FINISHED";
    pub const JOB_NOT_FINISHED: &str = "JOB_NOT_FINISHED";
    pub const STORAGE_UNAVAILABLE: &str = "STORAGE_UNAVAILABLE";
    pub const CHECK_UNAVAILABLE: &str = "CHECK_UNAVAILABLE";
    pub const BAD_PATH: &str = "BAD_PATH";
    pub const BAD_CONFIG: &str = "BAD_CONFIG";
    pub const INTERNAL: &str = "INTERNAL";
    /// A server's code this client does not know.
    pub const REMOTE: &str = "REMOTE_ERROR";

    /// Every code above.
    pub const ALL: &[&str] = &[
        INVALID_PARAMS,
        INVALID_JSON,
        INVALID_REQUEST,
        INVALID_QUERY,
        UNSUPPORTED_MEDIA_TYPE,
        BODY_TOO_LARGE,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        BODY_TIMEOUT,
        OVERLOADED,
        TIMEOUT,
        INVALID_ID,
        UNKNOWN_JOB_TYPE,
        INVALID_PLAN,
        JOB_NOT_FOUND,
        TASK_NOT_FOUND,
        POISON_NOT_FOUND,
        UNREADABLE_MESSAGE,
        GRAPH_TOO_LARGE,
        NOT_RERUNNABLE,
        JOB_FINISHED,
        JOB_NOT_FINISHED,
        STORAGE_UNAVAILABLE,
        CHECK_UNAVAILABLE,
        BAD_PATH,
        BAD_CONFIG,
        INTERNAL,
        REMOTE,
    ];

    /// The constant spelling `code`, if it is one of ours.
    pub fn known(code: &str) -> Option<&'static str> {
        ALL.iter().copied().find(|c| *c == code)
    }
}

/// An error of any front door.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    /// Stable machine-readable code (`INVALID_PARAMS`, `JOB_NOT_FOUND`, ...).
    pub code: &'static str,
    pub message: String,
    /// For invalid input: every failing field.
    pub fields: Vec<FieldError>,
}

impl AppError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            kind,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    /// Invalid job params naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid_field(codes::INVALID_PARAMS, "params", field, message)
    }

    /// Invalid input of one `part` of a request (`params`, `query`, `body`) naming one field.
    pub fn invalid_field(
        code: &'static str,
        part: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (field, message) = (field.into(), message.into());
        AppError {
            kind: ErrorKind::InvalidInput,
            code,
            message: format!("invalid {part}: {field}: {message}"),
            fields: vec![FieldError { field, message }],
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    pub fn http_status(&self) -> u16 {
        self.kind.http_status()
    }
}

fn unavailable(e: impl std::fmt::Display) -> AppError {
    AppError::new(
        ErrorKind::Unavailable,
        codes::STORAGE_UNAVAILABLE,
        e.to_string(),
    )
}

impl From<engine::ports::StoreError> for AppError {
    fn from(e: engine::ports::StoreError) -> Self {
        match e {
            engine::ports::StoreError::Corrupt { .. } => {
                AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string())
            }
            engine::ports::StoreError::InvalidCursor { .. } => AppError::invalid_field(
                codes::INVALID_QUERY,
                "query",
                "cursor",
                "not a cursor of this listing (use a next_cursor as given)",
            ),
            e => unavailable(e),
        }
    }
}

impl From<engine::runtime::RuntimeError> for AppError {
    fn from(e: engine::runtime::RuntimeError) -> Self {
        match e {
            engine::runtime::RuntimeError::Store(e) => e.into(),
            engine::runtime::RuntimeError::InvalidTransition(e) => {
                AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string())
            }
            e => unavailable(e),
        }
    }
}

impl From<SubmitError> for AppError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::UnknownJobType { .. } => {
                AppError::invalid(codes::UNKNOWN_JOB_TYPE, e.to_string())
            }
            SubmitError::Invalid(v) => AppError::field(v.field, v.reason),
            SubmitError::CheckUnavailable(message) => {
                AppError::new(ErrorKind::Unavailable, codes::CHECK_UNAVAILABLE, message)
            }
            SubmitError::Plan(p) => AppError::new(
                ErrorKind::Unprocessable,
                codes::INVALID_PLAN,
                format!("invalid plan: {p}"),
            ),
            SubmitError::Canonical(c) => AppError::invalid(codes::INVALID_PARAMS, c.to_string()),
            // Worded for every front door (the engine's text names the CLI's `--force`).
            SubmitError::NotRerunnable { id, status } => AppError::new(
                ErrorKind::Conflict,
                codes::NOT_RERUNNABLE,
                format!(
                    "job {id} is {status}; a forced submission re-runs only FAILED or CANCELLED jobs"
                ),
            ),
            SubmitError::Runtime(r) => r.into(),
            e => AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()),
        }
    }
}

impl From<ReplayError> for AppError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::NotFound(_) => {
                AppError::new(ErrorKind::NotFound, codes::POISON_NOT_FOUND, e.to_string())
            }
            ReplayError::Unreadable { .. } => AppError::new(
                ErrorKind::Unprocessable,
                codes::UNREADABLE_MESSAGE,
                e.to_string(),
            ),
            ReplayError::JobRunning { .. } => {
                AppError::new(ErrorKind::Conflict, codes::JOB_NOT_FINISHED, e.to_string())
            }
            ReplayError::Submit(e) => e.into(),
            ReplayError::Runtime(e) => e.into(),
            e => AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()),
        }
    }
}

impl From<JobQueryError> for AppError {
    fn from(e: JobQueryError) -> Self {
        match e {
            JobQueryError::NotFound(_) => {
                AppError::new(ErrorKind::NotFound, codes::JOB_NOT_FOUND, e.to_string())
            }
            JobQueryError::Runtime(r) => r.into(),
            e => AppError::new(ErrorKind::Internal, codes::INTERNAL, e.to_string()),
        }
    }
}

impl From<engine::ids::InvalidId> for AppError {
    fn from(e: engine::ids::InvalidId) -> Self {
        AppError::invalid(codes::INVALID_ID, e.to_string())
    }
}

impl From<OpenError> for AppError {
    fn from(e: OpenError) -> Self {
        if e.is_bad_path() {
            AppError::invalid(codes::BAD_PATH, e.to_string())
        } else {
            AppError::new(
                ErrorKind::Unavailable,
                codes::STORAGE_UNAVAILABLE,
                error_chain(&e),
            )
        }
    }
}

impl From<BackupError> for AppError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::TargetExists { .. } | BackupError::TargetDirectory { .. } => {
                AppError::invalid(codes::BAD_PATH, e.to_string())
            }
            BackupError::Open(e) => e.into(),
            e => AppError::new(
                ErrorKind::Unavailable,
                codes::STORAGE_UNAVAILABLE,
                error_chain(&e),
            ),
        }
    }
}

impl From<ConnectError> for AppError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Config(e) => {
                AppError::invalid(codes::BAD_CONFIG, format!("azure backend: {e}"))
            }
            e => AppError::new(
                ErrorKind::Unavailable,
                codes::STORAGE_UNAVAILABLE,
                format!(
                    "azure backend: connecting to the storage account failed: {}",
                    error_chain(&e)
                ),
            ),
        }
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind's exit code and HTTP status, side by side: the two front doors agree.
    #[test]
    fn exit_codes_and_http_statuses_agree() {
        for (kind, exit, status) in [
            (ErrorKind::InvalidInput, 2, 400),
            (ErrorKind::Unprocessable, 2, 422),
            (ErrorKind::NotFound, 2, 404),
            (ErrorKind::Conflict, 2, 409),
            (ErrorKind::TooLarge, 2, 413),
            (ErrorKind::MethodNotAllowed, 2, 405),
            (ErrorKind::RequestTimeout, 2, 408),
            (ErrorKind::UnsupportedMediaType, 2, 415),
            (ErrorKind::Unauthorized, 2, 401),
            (ErrorKind::Forbidden, 2, 403),
            (ErrorKind::Unavailable, 3, 503),
            (ErrorKind::Internal, 3, 500),
        ] {
            assert_eq!(
                (kind.exit_code(), kind.http_status()),
                (exit, status),
                "{kind:?}"
            );
            // A client's mistake is a 4xx and exit 2; ours or the store's is a 5xx and exit 3.
            assert_eq!(exit == 2, status < 500, "{kind:?}");
        }
    }

    #[test]
    fn an_outage_is_never_invalid_input() {
        let outage = engine::ports::StoreError::Unavailable {
            message: "table service unreachable".into(),
            source: None,
        };
        assert_eq!(AppError::from(outage).kind, ErrorKind::Unavailable);
        let check = AppError::from(SubmitError::CheckUnavailable("blob store down".into()));
        assert_eq!(
            (check.kind, check.code),
            (ErrorKind::Unavailable, codes::CHECK_UNAVAILABLE)
        );
        let invalid = AppError::from(SubmitError::Invalid(engine::ValidationError::new(
            "n",
            "must be at least 1",
        )));
        assert_eq!(invalid.kind, ErrorKind::InvalidInput);
        assert_eq!(
            invalid.fields,
            vec![FieldError {
                field: "n".into(),
                message: "must be at least 1".into()
            }]
        );
    }
}
