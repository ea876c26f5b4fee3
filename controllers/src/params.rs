//! Declarative params validation: each accessor checks one field, fills its default and
//! records it; `finish` refuses unknown fields. Errors name the field and say why.

use std::ops::RangeInclusive;

use engine::ValidationError;
use serde_json::{Map, Value};

pub struct Params {
    input: Map<String, Value>,
    output: Map<String, Value>,
}

impl Params {
    /// `null` counts as `{}`; anything else that is not an object is refused.
    pub fn new(value: Value) -> Result<Self, ValidationError> {
        let input = match value {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            other => {
                return Err(ValidationError::new(
                    "params",
                    format!("must be a JSON object, got {}", kind(&other)),
                ));
            }
        };
        Ok(Params {
            input,
            output: Map::new(),
        })
    }

    /// An integer in `range`; `default` when absent (required when `None`).
    pub fn int(
        &mut self,
        name: &str,
        range: RangeInclusive<i64>,
        default: Option<i64>,
    ) -> Result<i64, ValidationError> {
        let value = match self.input.remove(name) {
            None | Some(Value::Null) => {
                default.ok_or_else(|| ValidationError::new(name, "is required"))?
            }
            Some(v) => as_integer(&v).ok_or_else(|| {
                ValidationError::new(
                    name,
                    format!(
                        "must be an integer between {} and {}, got {}",
                        range.start(),
                        range.end(),
                        v
                    ),
                )
            })?,
        };
        if !range.contains(&value) {
            return Err(ValidationError::new(
                name,
                format!(
                    "must be an integer between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        self.output.insert(name.to_owned(), Value::from(value));
        Ok(value)
    }

    /// A string whose length in characters is in `chars`.
    pub fn string(
        &mut self,
        name: &str,
        chars: RangeInclusive<usize>,
        default: Option<&str>,
    ) -> Result<String, ValidationError> {
        let value = match self.input.remove(name) {
            None | Some(Value::Null) => default
                .map(str::to_owned)
                .ok_or_else(|| ValidationError::new(name, "is required"))?,
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(ValidationError::new(
                    name,
                    format!("must be a string, got {}", kind(&other)),
                ));
            }
        };
        let n = value.chars().count();
        if !chars.contains(&n) {
            return Err(ValidationError::new(
                name,
                format!(
                    "must be {} to {} characters long, got {n}",
                    chars.start(),
                    chars.end()
                ),
            ));
        }
        self.output
            .insert(name.to_owned(), Value::String(value.clone()));
        Ok(value)
    }

    /// One of `choices`.
    pub fn choice(
        &mut self,
        name: &str,
        choices: &[&str],
        default: &str,
    ) -> Result<String, ValidationError> {
        let value = self.string(name, 1..=64, Some(default))?;
        if !choices.contains(&value.as_str()) {
            return Err(ValidationError::new(
                name,
                format!("must be one of {choices:?}, got {value:?}"),
            ));
        }
        Ok(value)
    }

    /// The normalized params; fails on any field no accessor asked for.
    pub fn finish(self) -> Result<Value, ValidationError> {
        if let Some(unknown) = self.input.keys().next() {
            let known: Vec<&String> = self.output.keys().collect();
            return Err(ValidationError::new(
                unknown.as_str(),
                format!("unknown field (known fields: {known:?})"),
            ));
        }
        Ok(Value::Object(self.output))
    }
}

fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
