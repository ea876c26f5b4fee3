//! RFC 9457 problem details for every error the API returns, and the request-body reader
//! that turns a client's mistakes into them (never a 500).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::app::error::{AppError, ErrorKind, codes};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An application error as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

fn title(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "Invalid request",
        ErrorKind::Unprocessable => "Unprocessable request",
        ErrorKind::NotFound => "Not found",
        ErrorKind::Conflict => "Conflict with the job's state",
        ErrorKind::TooLarge => "Request body too large",
        ErrorKind::MethodNotAllowed => "Method not allowed",
        ErrorKind::RequestTimeout => "Request body not received in time",
        ErrorKind::UnsupportedMediaType => "Unsupported media type",
        ErrorKind::Unauthorized => "Unauthorized",
        ErrorKind::Forbidden => "Forbidden",
        ErrorKind::Unavailable => "Service unavailable",
        ErrorKind::Internal => "Internal error",
    }
}

/// The problem document of an error: `type`, `title`, `status`, `detail`, plus `code` and,
/// for invalid input, `errors: [{field, message}]`. An internal error's message stays in the
/// log: its `detail` only gives the request ID to look for there.
pub fn problem_body(e: &AppError) -> serde_json::Value {
    let detail = if e.kind == ErrorKind::Internal {
        match super::current_request_id().filter(|id| !id.is_empty()) {
            Some(id) => format!("internal error (request ID {id}): see the server's log"),
            None => "internal error: see the server's log".to_owned(),
        }
    } else {
        e.message.clone()
    };
    let mut body = json!({
        "type": format!("urn:tessera:error:{}", e.code),
        "title": title(e.kind),
        "status": e.http_status(),
        "detail": detail,
        "code": e.code,
    });
    if !e.fields.is_empty() {
        body["errors"] = json!(e.fields);
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Inside the request's span: the log line carries its request ID.
        match self.0.kind {
            ErrorKind::Internal => {
                tracing::error!(code = self.0.code, error = %self.0.message, "request failed");
            }
            ErrorKind::Unavailable => {
                tracing::warn!(code = self.0.code, error = %self.0.message, "request failed");
            }
            // The client's doing, worth a line: a stalled upload.
            ErrorKind::RequestTimeout => {
                tracing::info!(code = self.0.code, error = %self.0.message, "request failed");
            }
            _ => {}
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            problem_body(&self.0).to_string(),
        )
            .into_response();
        match self.0.kind {
            ErrorKind::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ErrorKind::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tessera\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// A JSON request body: `application/json`, strict (a repeated key is refused, naming it),
/// then typed; every failure is a problem naming what is wrong.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, AppError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        });
    if !json_type {
        return Err(AppError::new(
            ErrorKind::UnsupportedMediaType,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| AppError::invalid(codes::INVALID_JSON, format!("body is not UTF-8: {e}")))?;
    let value = engine::json::parse_strict(text, "body").map_err(|e| {
        AppError::invalid(codes::INVALID_JSON, format!("body is not valid JSON: {e}"))
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            "body".to_owned()
        } else {
            format!("body.{field}")
        };
        AppError::invalid_field(
            codes::INVALID_REQUEST,
            "body",
            field,
            e.into_inner().to_string(),
        )
    })
}

/// Query parameters, typed; a bad one is a problem naming it (axum's rejection is text).
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let invalid = |field: String, message: String| {
            ApiError(AppError::invalid_field(
                codes::INVALID_QUERY,
                "query",
                field,
                message,
            ))
        };
        let mut seen = std::collections::HashSet::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if !seen.insert(name.clone()) {
                return Err(invalid(name.into_owned(), "given more than once".into()));
            }
            if value.chars().any(char::is_control) {
                return Err(invalid(
                    name.into_owned(),
                    "must not contain control characters".into(),
                ));
            }
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                // A struct-level error (an unknown parameter) has no path: name the
                // parameter its message quotes.
                let field = match path.as_str() {
                    "" | "." => message
                        .split('`')
                        .nth(1)
                        .map_or_else(|| "query".to_owned(), str::to_owned),
                    _ => path,
                };
                invalid(field, message)
            })
    }
}

/// How long a client may take to send a request body (`HttpConfig::read_timeout`), a
/// request extension.
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeout(pub std::time::Duration);

/// The raw request body, within the body limit (over it, a 413 problem) and the read timeout
/// (a body that stops coming is the client's doing: 408 `BODY_TIMEOUT`).
pub struct ApiBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<ReadTimeout>()
            .map_or(super::DEFAULT_READ_TIMEOUT, |t| t.0);
        let Ok(read) = tokio::time::timeout(limit, Bytes::from_request(req, state)).await else {
            return Err(ApiError(AppError::new(
                ErrorKind::RequestTimeout,
                codes::BODY_TIMEOUT,
                format!("the request body did not arrive within {limit:?}"),
            )));
        };
        read.map(ApiBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(AppError::new(
                    ErrorKind::TooLarge,
                    codes::BODY_TOO_LARGE,
                    "the request body is over the limit (tessera serve --max-body)",
                ))
            } else {
                ApiError(AppError::invalid(
                    codes::INVALID_REQUEST,
                    rejection.body_text(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: AppError) -> (StatusCode, serde_json::Value) {
        let response = ApiError(e).into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A 500 says "internal error" and the request ID to look for in the log; the internal
    /// message stays in the log.
    #[tokio::test]
    async fn internal_errors_keep_their_message_out_of_the_response() {
        let secret = "sqlite: database disk image is malformed at /srv/tessera/tessera.db";
        let (status, body) = super::super::CURRENT_REQUEST_ID
            .scope(
                "0123456789abcdef".to_owned(),
                body_of(AppError::new(ErrorKind::Internal, codes::INTERNAL, secret)),
            )
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let detail = body["detail"].as_str().unwrap();
        assert!(
            !detail.contains("sqlite") && !detail.contains("/srv"),
            "{detail}"
        );
        assert!(detail.contains("internal error"), "{detail}");
        assert!(detail.contains("0123456789abcdef"), "{detail}");
        assert_eq!(body["code"], "INTERNAL");
        // Outside a request: no ID, still no message.
        let (_, body) = body_of(AppError::new(ErrorKind::Internal, codes::INTERNAL, secret)).await;
        assert_eq!(body["detail"], "internal error: see the server's log");
        // Other errors keep their detail: it is meant for the client.
        let (status, body) = body_of(AppError::new(
            ErrorKind::Unavailable,
            codes::TIMEOUT,
            "took too long",
        ))
        .await;
        assert_eq!(
            (status.as_u16(), body["detail"].as_str()),
            (503, Some("took too long"))
        );
    }
}
