//! HTTP-triggered invocations: the invocation's request (`Data.req`) becomes an
//! `http::Request` for the API's own router, and its response becomes `Outputs.res`. So the
//! statuses, headers and problem-details bodies are exactly the API's: no handler is written
//! twice. A client's 4xx is a successful invocation whose `res.statusCode` is 4xx.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::app::AppError;
use crate::app::error::codes;
use crate::http::problem::ApiError;

/// Largest response body passed back to the host.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// The `http::Request` of an invocation's `req`: `{Url, Method, Headers, Body, ...}`.
pub fn request_of(req: &Value) -> Result<Request<Body>, AppError> {
    let field = |name: &str| req.get(name);
    let invalid = |what: &str, why: String| {
        AppError::invalid(
            codes::INVALID_REQUEST,
            format!("invocation Data.req.{what}: {why}"),
        )
    };
    let method = field("Method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid("Method", format!("{method:?} is not an HTTP method")))?;
    let url = field("Url")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Url", "missing".into()))?;
    let uri: Uri = url
        .parse()
        .map_err(|e| invalid("Url", format!("{url:?}: {e}")))?;
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let mut builder = Request::builder().method(method).uri(path_and_query);
    if let Some(Value::Object(headers)) = field("Headers") {
        for (name, values) in headers {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            // The host compresses on its own; hop-by-hop headers are the host's business.
            if name == header::ACCEPT_ENCODING
                || name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == header::CONNECTION
            {
                continue;
            }
            let values: Vec<&str> = match values {
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                Value::String(s) => vec![s.as_str()],
                _ => Vec::new(),
            };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    builder = builder.header(name.clone(), value);
                }
            }
        }
    }
    let body = match field("Body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    builder
        .body(Body::from(body))
        .map_err(|e| invalid("Headers", e.to_string()))
}

/// Run the request through the API's router and return `Outputs.res`.
pub async fn invoke(router: &Router, req: &Value) -> Value {
    let response = match request_of(req) {
        Ok(request) => match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(e) => ApiError(e).into_response(),
    };
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let response = if streams {
        ApiError(AppError::invalid_field(
            codes::INVALID_QUERY,
            "query",
            "after",
            "event streams cannot pass through the Azure Functions host: add ?after=N (0 for the start) for a JSON page of events",
        ))
        .into_response()
    } else {
        response
    };
    res_of(response).await
}

/// `Outputs.res` of a response: `{statusCode, headers, body}` (the body as text).
async fn res_of(response: Response) -> Value {
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_RESPONSE).await {
        Ok(b) => b,
        Err(e) => {
            let error = AppError::new(
                crate::app::ErrorKind::Internal,
                codes::INTERNAL,
                format!("reading the response body: {e}"),
            );
            return json!({
                "statusCode": error.http_status().to_string(),
                "headers": {"content-type": crate::http::problem::PROBLEM_JSON},
                "body": crate::http::problem::problem_body(&error).to_string(),
            });
        }
    };
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    json!({
        "statusCode": parts.status.as_u16().to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_invocations() {
        let req = json!({
            "Url": "http://localhost:7071/api/jobs?status=RUNNING&limit=2",
            "Method": "post",
            "Headers": {"Content-Type": ["application/json"], "Accept-Encoding": ["gzip"], "X-Request-Id": "r1"},
            "Body": {"job_type": "hello_world"},
        });
        let r = request_of(&req).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/api/jobs?status=RUNNING&limit=2");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["x-request-id"], "r1");
        assert!(r.headers().get("accept-encoding").is_none());

        let plain = request_of(&json!({"Url": "http://h/healthz"})).unwrap();
        assert_eq!(
            (plain.method(), plain.uri().path()),
            (&Method::GET, "/healthz")
        );

        for (bad, field) in [
            (json!({}), "Url"),
            (
                json!({"Url": "http://h/", "Method": "NOT A METHOD"}),
                "Method",
            ),
            (json!({"Url": "::"}), "Url"),
        ] {
            let e = request_of(&bad).unwrap_err();
            assert!(e.message.contains(field), "{bad}: {}", e.message);
        }
    }
}
