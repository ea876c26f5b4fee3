//! Strict JSON parsing for requests: a key repeated in an object is an error.
//!
//! `serde_json::from_str::<Value>` keeps the last of two equal keys, so `{"n": 1, "n": 2}`
//! quietly means `{"n": 2}`. A job ID hashes the params, so the request must say one thing:
//! every front door (CLI, later HTTP) parses params with `parse_strict`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Request JSON that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StrictJsonError {
    /// An object holds the same key twice; `path` names it from the root, e.g. `params.a.b`.
    #[error("duplicate key {path} at line {line} column {column}")]
    DuplicateKey {
        path: String,
        line: usize,
        column: usize,
    },
    /// Not JSON.
    #[error("{0}")]
    Syntax(#[source] serde_json::Error),
}

/// Parse `text` as one JSON value, refusing a repeated key. `root` names the value in error
/// paths (`params` gives `params.n`, `params.tiles[2].z`).
pub fn parse_strict(text: &str, root: &str) -> Result<Value, StrictJsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let seed = Strict {
        path: root.to_owned(),
        duplicate: &duplicate,
    };
    let result = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|e| match duplicate.into_inner() {
        Some(path) => StrictJsonError::DuplicateKey {
            path,
            line: e.line(),
            column: e.column(),
        },
        None => StrictJsonError::Syntax(e),
    })
}

/// A value at `path`; the first repeated key found is recorded in `duplicate`.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

/// `parent.key`, or `parent["key"]` when the key is not a plain name.
fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", Value::String(key.to_owned()))
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text has no NaN or infinity; serde_json reports overflow as an error first.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = Strict {
                path: format!("{}[{}]", self.path, items.len()),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child_path(&self.path, &key);
            if object.contains_key(&key) {
                let message = format!("duplicate key {path}");
                *self.duplicate.borrow_mut() = Some(path);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(Strict {
                path,
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Ok(json)`: parses to the same value as serde_json; `Err(text)`: the error shows `text`.
    fn check(input: &str, expected: Result<&str, &str>) {
        let got = parse_strict(input, "params");
        match (got, expected) {
            (Ok(value), Ok(json)) => {
                let want: Value = serde_json::from_str(json).unwrap();
                assert_eq!(value, want, "{input}");
            }
            (Err(e), Err(text)) => {
                let message = e.to_string();
                assert!(
                    message.contains(text),
                    "{input}: {message:?} lacks {text:?}"
                );
            }
            (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn values_parse_like_serde_json() {
        for input in [
            "{}",
            "[]",
            "null",
            "true",
            "0",
            "-7",
            "18446744073709551615",
            "1.5e3",
            r#""é\n\u00e9""#,
            r#"{"n": 1, "m": {"n": 2}, "list": [{"n": 3}, {"n": 3}]}"#,
            r#" {"a": [1, [2, [3]]], "b": null} "#,
            r#"{"n": 1, "N": 2, "n ": 3}"#,
        ] {
            check(input, Ok(input));
        }
    }

    #[test]
    fn a_repeated_key_is_refused_with_its_path() {
        let cases = [
            (r#"{"n": 1, "n": 2}"#, "duplicate key params.n at line 1"),
            (r#"{"n": 1, "n": 1}"#, "duplicate key params.n"),
            (
                r#"{"a": {"b": 1, "c": 2, "b": 3}}"#,
                "duplicate key params.a.b",
            ),
            (
                r#"{"list": [{}, {"x": 1, "x": 2}]}"#,
                "duplicate key params.list[1].x",
            ),
            (r#"{"a b": 1, "a b": 2}"#, r#"duplicate key params["a b"]"#),
            ("{\"n\": 1,\n \"n\": 2}", "at line 2"),
        ];
        for (input, message) in cases {
            check(input, Err(message));
            assert!(
                matches!(
                    parse_strict(input, "params"),
                    Err(StrictJsonError::DuplicateKey { .. })
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_json_is_a_syntax_error() {
        for (input, message) in [
            ("{n: 3", "key must be a string"),
            (r#"{"n": 1} x"#, "trailing characters"),
            ("", "EOF while parsing"),
            ("[1,]", "trailing comma"),
        ] {
            check(input, Err(message));
            assert!(
                matches!(
                    parse_strict(input, "params"),
                    Err(StrictJsonError::Syntax(_))
                ),
                "{input}"
            );
        }
    }
}
