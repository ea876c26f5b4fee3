//! The custom handler protocol's JSON envelope: an invocation `{Data, Metadata}` in, a
//! response `{Outputs, Logs, ReturnValue}` out, and the decoding of a queue message as the
//! host hands it over (a JSON value, a string holding JSON, or base64 of JSON).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One invocation as the host posts it to `/<FunctionName>`.
#[derive(Debug, Default, Deserialize)]
pub struct Invocation {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// The answer to an invocation.
#[derive(Debug, Default, Serialize)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvocationResponse {
    pub fn log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }

    pub fn output(mut self, binding: &str, value: Value) -> Self {
        self.outputs.insert(binding.to_owned(), value);
        self
    }
}

/// The queue message of a binding, as JSON text. The host passes a message whose text is
/// JSON either as that JSON value or as a string holding it (JSON-quoted twice), and a
/// message written by a producer that base64-encodes as the base64 string: all three are
/// decoded here. A text that is none of these comes back as it is (the engine refuses it).
pub fn message_text(value: &Value) -> String {
    match value {
        Value::String(s) => decode_string(s, 2),
        Value::Object(_) | Value::Array(_) => value.to_string(),
        other => other.to_string(),
    }
}

fn decode_string(s: &str, depth: u8) -> String {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::String(inner)) if depth > 0 => decode_string(&inner, depth - 1),
        Ok(Value::Object(_) | Value::Array(_)) => s.to_owned(),
        _ => match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if serde_json::from_str::<Value>(&text).is_ok() && depth > 0 => {
                    decode_string(&text, depth - 1)
                }
                _ => s.to_owned(),
            },
            Err(_) => s.to_owned(),
        },
    }
}

/// `Metadata.DequeueCount`: a number, or a string holding one (1 when absent).
pub fn dequeue_count(metadata: &Map<String, Value>) -> Result<u32, String> {
    match metadata.get("DequeueCount") {
        None | Some(Value::Null) => Ok(1),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("Metadata.DequeueCount: not a count: {n}")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("Metadata.DequeueCount: not a count: {s:?}")),
        Some(other) => Err(format!("Metadata.DequeueCount: not a count: {other}")),
    }
}

/// `Metadata.Id` (for logs).
pub fn message_id(metadata: &Map<String, Value>) -> String {
    match metadata.get("Id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_decode_whatever_the_wrapping() {
        let text = r#"{"job_id":"a","task_id":"b","attempt":1}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
        let cases = [
            (
                json!({"job_id": "a", "task_id": "b", "attempt": 1}),
                text.to_owned(),
            ),
            (Value::String(text.into()), text.to_owned()),
            (
                Value::String(Value::String(text.into()).to_string()),
                text.to_owned(),
            ),
            (Value::String(b64.clone()), text.to_owned()),
            (
                Value::String(Value::String(b64).to_string()),
                text.to_owned(),
            ),
            (Value::String("not json".into()), "not json".to_owned()),
            (Value::String("".into()), "".to_owned()),
            // "abcd" is valid base64 of bytes that are not JSON: kept as it is.
            (Value::String("abcd".into()), "abcd".to_owned()),
            (json!(42), "42".to_owned()),
            (Value::Null, "null".to_owned()),
        ];
        // Objects are compared as JSON (re-serializing may order keys differently).
        let same = |a: &str, b: &str| match (
            serde_json::from_str::<Value>(a),
            serde_json::from_str::<Value>(b),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        };
        for (value, expected) in cases {
            let got = message_text(&value);
            assert!(same(&got, &expected), "{value}: {got:?} != {expected:?}");
        }
    }

    #[test]
    fn dequeue_counts() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(dequeue_count(&m(json!({"DequeueCount": 3}))), Ok(3));
        assert_eq!(dequeue_count(&m(json!({"DequeueCount": "4"}))), Ok(4));
        assert_eq!(dequeue_count(&m(json!({}))), Ok(1));
        assert!(
            dequeue_count(&m(json!({"DequeueCount": -1})))
                .unwrap_err()
                .contains("DequeueCount")
        );
        assert!(dequeue_count(&m(json!({"DequeueCount": "x"}))).is_err());
        assert!(dequeue_count(&m(json!({"DequeueCount": [1]}))).is_err());
    }

    #[test]
    fn invocations_parse_and_responses_serialize() {
        let body = r#"{"Data":{"message":"{\"expand\":\"x\"}"},"Metadata":{"DequeueCount":1,"Id":"m1","sys":{"MethodName":"tasks"}}}"#;
        let inv: Invocation = serde_json::from_str(body).unwrap();
        assert_eq!(message_text(&inv.data["message"]), r#"{"expand":"x"}"#);
        assert_eq!(message_id(&inv.metadata), "m1");
        let out = InvocationResponse::default()
            .log("hi")
            .output("dead", json!({"a": 1}));
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"Outputs": {"dead": {"a": 1}}, "Logs": ["hi"], "ReturnValue": null})
        );
    }
}
