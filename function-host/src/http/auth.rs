//! API keys: bearer tokens, compared in constant time (as SHA-256 digests, so neither the
//! length nor the content of a stored key leaks through timing), never logged. A read-only
//! key may call only GET and HEAD. A response to a request with a valid key tells the key's
//! role in `Tessera-Key-Role` (`full` or `read-only`): the dashboard disables what the key
//! may not do.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::problem::ApiError;
use crate::app::error::{AppError, ErrorKind, codes};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every route.
    Full,
    /// GET and HEAD only.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::ReadOnly => "read-only",
        }
    }
}

/// The response header naming the role of the request's key.
pub const ROLE_HEADER: HeaderName = HeaderName::from_static("tessera-key-role");

/// The configured keys (their digests). Empty: no authentication (loopback only).
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

/// A key list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("API keys: {0}")]
pub struct KeyError(pub String);

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Keys shorter than this are refused: a bearer token must not be guessable.
const MIN_KEY_LEN: usize = 16;

impl ApiKeys {
    pub fn none() -> Self {
        ApiKeys::default()
    }

    /// Parse entries `KEY` (full access) or `ro:KEY` (read-only), separated by newlines or
    /// commas; blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (n, entry) in text
            .split(['\n', ','])
            .map(str::trim)
            .enumerate()
            .filter(|(_, e)| !e.is_empty() && !e.starts_with('#'))
        {
            let (key, role) = match entry.strip_prefix("ro:") {
                Some(key) => (key, Role::ReadOnly),
                None => (entry, Role::Full),
            };
            if key.len() < MIN_KEY_LEN || key.chars().any(|c| c.is_whitespace()) {
                return Err(KeyError(format!(
                    "entry {}: a key is at least {MIN_KEY_LEN} characters without spaces",
                    n + 1
                )));
            }
            keys.push((digest(key), role));
        }
        Ok(ApiKeys { keys })
    }

    /// Parse the keys of `source` (a file's path or an environment variable's name, for the
    /// error): a source given but holding no key is an error, never auth turned off.
    pub fn parse_from(source: &str, text: &str) -> Result<Self, KeyError> {
        let keys = Self::parse(text).map_err(|KeyError(e)| KeyError(format!("{source}: {e}")))?;
        if keys.is_empty() {
            return Err(KeyError(format!(
                "{source}: no API key in it (a key per line; remove the setting to serve without keys)"
            )));
        }
        Ok(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The role of `token`, checking every key (no early exit).
    fn role_of(&self, token: &str) -> Option<Role> {
        let d = digest(token);
        let mut found = None;
        for (key, role) in &self.keys {
            if same(key, &d) {
                found = Some(*role);
            }
        }
        found
    }
}

/// The auth layer: with keys configured, every request needs `Authorization: Bearer KEY`.
pub async fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    request: Request,
    next: Next,
) -> Response {
    if keys.is_empty() {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let role = token.and_then(|t| keys.role_of(t));
    match role {
        None => ApiError(AppError::new(
            ErrorKind::Unauthorized,
            codes::UNAUTHORIZED,
            if token.is_some() {
                "unknown API key"
            } else {
                "an API key is required: Authorization: Bearer KEY"
            },
        ))
        .into_response(),
        Some(Role::ReadOnly) if !matches!(*request.method(), Method::GET | Method::HEAD) => {
            ApiError(AppError::new(
                ErrorKind::Forbidden,
                codes::FORBIDDEN,
                "this API key is read-only: it may only GET",
            ))
            .into_response()
        }
        Some(role) => {
            let mut response = next.run(request).await;
            response
                .headers_mut()
                .insert(ROLE_HEADER, HeaderValue::from_static(role.as_str()));
            response
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_source_without_keys_is_an_error_naming_it() {
        for text in ["", "\n\n", "# only a comment\n", " , ,"] {
            let e = ApiKeys::parse_from("keys.txt", text)
                .unwrap_err()
                .to_string();
            assert!(e.contains("keys.txt: no API key"), "{e}");
        }
        let e = ApiKeys::parse_from("TESSERA_API_KEYS", "short")
            .unwrap_err()
            .to_string();
        assert!(e.contains("TESSERA_API_KEYS: entry 1"), "{e}");
        let keys =
            ApiKeys::parse_from("f", "# c\n0123456789abcdef\nro:fedcba9876543210\n").unwrap();
        assert_eq!(keys.keys.len(), 2);
    }

    use super::*;

    #[test]
    fn keys_parse_with_roles_and_match_exactly() {
        let keys = ApiKeys::parse(
            "# admins\nfull-access-key-0001\nro:read-only-key-0001, other-full-key-00002",
        )
        .unwrap();
        for (token, role) in [
            ("full-access-key-0001", Some(Role::Full)),
            ("read-only-key-0001", Some(Role::ReadOnly)),
            ("other-full-key-00002", Some(Role::Full)),
            ("full-access-key-000", None),
            ("ro:read-only-key-0001", None),
            ("", None),
        ] {
            assert_eq!(keys.role_of(token), role, "{token:?}");
        }
        assert!(ApiKeys::parse("short").is_err());
        assert!(ApiKeys::parse("").unwrap().is_empty());
    }
}
