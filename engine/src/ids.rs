//! Deterministic identifiers: RFC 8785 (JCS) canonical JSON hashed with SHA-256.
//!
//! `job_id  = sha256(JCS({"job_type", "job_version", "params"}))`
//! `task_id = sha256(JCS({"job_id", "task", "key"}))`
//!
//! Both are 64 lowercase hex characters: valid Table Storage keys, file names and URL segments.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A value could not be canonicalized (RFC 8785 forbids NaN and infinities, for example).
#[derive(Debug, thiserror::Error)]
#[error("value cannot be canonicalized (RFC 8785): {source}")]
pub struct CanonicalJsonError {
    #[source]
    source: serde_json::Error,
}

/// RFC 8785 canonical JSON text of `value`.
pub fn canonical_json(value: &Value) -> Result<String, CanonicalJsonError> {
    serde_json_canonicalizer::to_string(value).map_err(|source| CanonicalJsonError { source })
}

/// Lowercase hex SHA-256 of the canonical JSON of `value`.
pub fn canonical_sha256(value: &Value) -> Result<String, CanonicalJsonError> {
    let text = canonical_json(value)?;
    Ok(hex::encode(Sha256::digest(text.as_bytes())))
}

macro_rules! hex_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The deterministic ID of a ", $what, ": 64 lowercase hex characters.")]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The first 12 characters, for humans.
            pub fn short(&self) -> &str {
                &self.0[..12]
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(text: String) -> Result<Self, InvalidId> {
                if text.len() == 64
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    Ok(Self(text))
                } else {
                    Err(InvalidId { what: $what, text })
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                Self::try_from(text.to_ascii_lowercase())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

hex_id!(JobId, "job");
hex_id!(TaskId, "task");

/// A string that is not a 64-character hex ID.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} id {text:?}: expected 64 hexadecimal characters")]
pub struct InvalidId {
    what: &'static str,
    text: String,
}

/// The key that makes a task unique among the tasks of the same name in a job.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskKey {
    Int(i64),
    Str(String),
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskKey::Int(i) => write!(f, "{i}"),
            TaskKey::Str(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskKey::Int(i) => write!(f, "{i}"),
            TaskKey::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for TaskKey {
    fn from(i: i64) -> Self {
        TaskKey::Int(i)
    }
}
impl From<i32> for TaskKey {
    fn from(i: i32) -> Self {
        TaskKey::Int(i64::from(i))
    }
}
impl From<u32> for TaskKey {
    fn from(i: u32) -> Self {
        TaskKey::Int(i64::from(i))
    }
}
impl From<usize> for TaskKey {
    fn from(i: usize) -> Self {
        TaskKey::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<&str> for TaskKey {
    fn from(s: &str) -> Self {
        TaskKey::Str(s.to_owned())
    }
}
impl From<String> for TaskKey {
    fn from(s: String) -> Self {
        TaskKey::Str(s)
    }
}

/// `sha256(JCS({"job_type": T, "job_version": V, "params": P}))` over the normalized params.
pub fn job_id(
    job_type: &str,
    job_version: u32,
    params: &Value,
) -> Result<JobId, CanonicalJsonError> {
    let digest = canonical_sha256(&json!({
        "job_type": job_type,
        "job_version": job_version,
        "params": params,
    }))?;
    Ok(JobId(digest))
}

/// `sha256(JCS({"job_id": J, "task": NAME, "key": K}))`.
pub fn task_id(job_id: &JobId, task: &str, key: &TaskKey) -> TaskId {
    let text = canonical_json(&json!({"job_id": job_id.as_str(), "task": task, "key": key}))
        .expect("strings and integers always canonicalize");
    TaskId(hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_job(job_type: &str, version: u32, params: Value, expected: &str) {
        assert_eq!(
            job_id(job_type, version, &params).unwrap().as_str(),
            expected
        );
    }

    #[test]
    fn job_ids_are_pinned() {
        // Golden digests: any change here breaks every client that computes IDs offline.
        // Each equals `printf '%s' '<canonical json>' | sha256sum`.
        check_job(
            "hello_world",
            1,
            json!({"n": 1000, "message": "hello", "fail_every": 0}),
            &hex::encode(Sha256::digest(
                br#"{"job_type":"hello_world","job_version":1,"params":{"fail_every":0,"message":"hello","n":1000}}"#,
            )),
        );
        check_job(
            "hello_world",
            1,
            json!({"fail_every": 0, "message": "hello", "n": 3}),
            "2da5fd6f5703f919dc0042556f864ecf89f07a493540d9a578831bc07659c412",
        );
    }

    #[test]
    fn key_order_and_number_spelling_do_not_change_the_id() {
        let a = job_id("t", 1, &json!({"b": 1.0, "a": [1e2, "x"]})).unwrap();
        let b = job_id(
            "t",
            1,
            &serde_json::from_str(r#"{ "a": [100, "x"], "b": 1 }"#).unwrap(),
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn task_ids_depend_on_job_name_and_key() {
        let job = job_id("t", 1, &json!({})).unwrap();
        let ids = [
            task_id(&job, "greet", &TaskKey::Int(0)),
            task_id(&job, "greet", &TaskKey::Int(1)),
            task_id(&job, "greet", &TaskKey::Str("0".into())),
            task_id(&job, "summarize", &TaskKey::Int(0)),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert_eq!(a.as_str().len(), 64);
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let expected = hex::encode(Sha256::digest(
            format!(r#"{{"job_id":"{job}","key":0,"task":"greet"}}"#).as_bytes(),
        ));
        assert_eq!(ids[0].as_str(), expected);
    }

    #[test]
    fn ids_parse_only_from_hex() {
        assert!("abc".parse::<JobId>().is_err());
        assert!("g".repeat(64).parse::<JobId>().is_err());
        let id = "A".repeat(64).parse::<JobId>().unwrap();
        assert_eq!(id.as_str(), "a".repeat(64));
    }
}
