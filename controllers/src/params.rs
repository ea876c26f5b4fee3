//! Declarative params validation: each accessor checks one field, fills its default and
//! records it; `finish` refuses unknown fields. Errors name the field and say why.
//!
//! The same declarations give the params' JSON Schema: each accessor also records its
//! field's schema, and [`Params::describe`] runs a job type's declarations without input
//! (accessors return placeholders, [`Params::check`]s are skipped) to collect it. One source
//! of truth for validation, `GET /api/job-types` and the OpenAPI document.

use std::ops::RangeInclusive;

use engine::ValidationError;
use serde_json::{Map, Value};

pub struct Params {
    input: Map<String, Value>,
    output: Map<String, Value>,
    /// Collecting the schema only (no input).
    describing: bool,
    properties: Map<String, Value>,
    required: Vec<String>,
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
            describing: false,
            properties: Map::new(),
            required: Vec::new(),
        })
    }

    /// The JSON Schema of the params `declare` declares (run without input).
    pub fn describe(declare: impl FnOnce(&mut Params) -> Result<(), ValidationError>) -> Value {
        let mut p = Params {
            input: Map::new(),
            output: Map::new(),
            describing: true,
            properties: Map::new(),
            required: Vec::new(),
        };
        // Accessors do not fail while describing; a declaration's own error would only
        // shorten the schema.
        let _ = declare(&mut p);
        let mut schema = serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "properties": p.properties,
        });
        if !p.required.is_empty() {
            schema["required"] = serde_json::json!(p.required);
        }
        schema
    }

    /// Record `name`'s schema; `true` while describing (the accessor then returns a
    /// placeholder).
    fn declare(&mut self, name: &str, schema: Value, required: bool) -> bool {
        self.properties.insert(name.to_owned(), schema);
        if required && !self.required.iter().any(|r| r == name) {
            self.required.push(name.to_owned());
        }
        self.describing
    }

    /// A check across or beyond what the accessors say (a name's syntax, one field against
    /// another); its message is reported for `field`. Skipped while describing.
    pub fn check(
        &self,
        field: &str,
        check: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), ValidationError> {
        if self.describing {
            return Ok(());
        }
        check().map_err(|reason| ValidationError::new(field, reason))
    }

    /// An integer in `range`; `default` when absent (required when `None`).
    pub fn int(
        &mut self,
        name: &str,
        range: RangeInclusive<i64>,
        default: Option<i64>,
    ) -> Result<i64, ValidationError> {
        let mut schema = serde_json::json!({
            "type": "integer", "minimum": range.start(), "maximum": range.end()
        });
        if let Some(d) = default {
            // `null` counts as absent: the default.
            schema["type"] = serde_json::json!(["integer", "null"]);
            schema["default"] = d.into();
        }
        if self.declare(name, schema, default.is_none()) {
            return Ok(default.unwrap_or(*range.start()));
        }
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
        let mut schema = serde_json::json!({
            "type": "string", "minLength": chars.start(), "maxLength": chars.end()
        });
        if let Some(d) = default {
            schema["type"] = serde_json::json!(["string", "null"]);
            schema["default"] = d.into();
        }
        if self.declare(name, schema, default.is_none()) {
            return Ok(default.unwrap_or_default().to_owned());
        }
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
        if self.describing {
            self.properties.insert(
                name.to_owned(),
                serde_json::json!({
                    "type": ["string", "null"],
                    "enum": choices.iter().map(|c| Value::from(*c)).chain([Value::Null]).collect::<Vec<_>>(),
                    "default": default
                }),
            );
            return Ok(value);
        }
        if !choices.contains(&value.as_str()) {
            return Err(ValidationError::new(
                name,
                format!("must be one of {choices:?}, got {value:?}"),
            ));
        }
        Ok(value)
    }

    /// An optional integer in `range`: `None` (and nothing recorded, so absent and `null`
    /// give the same job, and a job type can gain one without changing its jobs' IDs) when
    /// absent or `null`.
    pub fn optional_int(
        &mut self,
        name: &str,
        range: RangeInclusive<i64>,
    ) -> Result<Option<i64>, ValidationError> {
        let schema = serde_json::json!({
            "type": ["integer", "null"], "minimum": range.start(), "maximum": range.end()
        });
        self.optional(name, schema, |p| p.int(name, range, None))
    }

    /// An optional field: nothing recorded when absent or `null`, else `read` (the field's
    /// required form).
    fn optional<T>(
        &mut self,
        name: &str,
        schema: Value,
        read: impl FnOnce(&mut Self) -> Result<T, ValidationError>,
    ) -> Result<Option<T>, ValidationError> {
        if self.declare(name, schema, false) {
            return Ok(None);
        }
        match self.input.get(name) {
            None | Some(Value::Null) => {
                self.input.remove(name);
                Ok(None)
            }
            Some(_) => read(self).map(Some),
        }
    }

    /// An optional string whose length in characters is in `chars`: `None` (and nothing
    /// recorded, so absent and `null` give the same job) when absent or `null`.
    pub fn optional_string(
        &mut self,
        name: &str,
        chars: RangeInclusive<usize>,
    ) -> Result<Option<String>, ValidationError> {
        let schema = serde_json::json!({
            "type": ["string", "null"], "minLength": chars.start(), "maxLength": chars.end()
        });
        self.optional(name, schema, |p| p.string(name, chars, None))
    }

    /// A set of names given either as one string (`one`) or as a non-empty array of strings
    /// (`many`), not both. Normalized as `many`: sorted, duplicates dropped, so the same set
    /// gives the same job whatever the spelling. `check` vets each name; its message is
    /// reported for the field the name came from (`one`, or `many[i]`).
    pub fn name_set(
        &mut self,
        one: &str,
        many: &str,
        max: usize,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Vec<String>, ValidationError> {
        self.declare(
            one,
            serde_json::json!({"type": "string", "description": format!("one name (or `{many}`)")}),
            false,
        );
        let listed = self.declare(
            many,
            serde_json::json!({
                "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": max,
                "uniqueItems": false, "description": format!("several names (or `{one}`, not both)")
            }),
            false,
        );
        if listed {
            return Ok(Vec::new());
        }
        let single = self.input.remove(one).filter(|v| !v.is_null());
        let list = self.input.remove(many).filter(|v| !v.is_null());
        let named: Vec<(String, Value)> = match (single, list) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    one,
                    format!("give either `{one}` or `{many}`, not both"),
                ));
            }
            (None, None) => {
                return Err(ValidationError::new(
                    many,
                    format!("is required (or give a single `{one}`)"),
                ));
            }
            (Some(v), None) => vec![(one.to_owned(), v)],
            (None, Some(Value::Array(items))) => {
                if items.is_empty() || items.len() > max {
                    return Err(ValidationError::new(
                        many,
                        format!("must list 1 to {max} names, got {}", items.len()),
                    ));
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{many}[{i}]"), v))
                    .collect()
            }
            (None, Some(other)) => {
                return Err(ValidationError::new(
                    many,
                    format!("must be an array of strings, got {}", kind(&other)),
                ));
            }
        };
        let mut names = Vec::with_capacity(named.len());
        for (field, value) in named {
            let Value::String(name) = value else {
                return Err(ValidationError::new(
                    field,
                    format!("must be a string, got {}", kind(&value)),
                ));
            };
            check(&name).map_err(|reason| ValidationError::new(field, reason))?;
            names.push(name);
        }
        names.sort();
        names.dedup();
        self.output.insert(
            many.to_owned(),
            Value::Array(names.iter().cloned().map(Value::String).collect()),
        );
        Ok(names)
    }

    /// Record a normalized value computed from others (a default that depends on another
    /// field, declared with `optional_string`).
    pub fn set(&mut self, name: &str, value: Value) {
        if !self.describing {
            self.output.insert(name.to_owned(), value);
        }
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
