//! What the handler expects of the function app's `host.json` (in its working directory,
//! where the host starts it), checked at start: a mismatch is logged, naming the setting.
//!
//! - `extensions.queues.messageEncoding` `none`: the engine writes JSON text, not base64;
//! - `maxDequeueCount` = the engine's `max_dequeue`: the host poisons after as many
//!   deliveries as the engine allows;
//! - `visibilityTimeout` above the task lease: a crashed invocation's message comes back
//!   once the crashed holder's lease is over (taken over, not postponed: a postponement is a
//!   new message, whose count would start again).

use std::time::Duration;

use serde_json::Value;

/// A .NET TimeSpan `[d.]hh:mm:ss[.fff]`.
pub fn timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let (h, m, s) = (
        h.parse::<u64>().ok()?,
        m.parse::<u64>().ok()?,
        s.parse::<f64>().ok()?,
    );
    if m >= 60 || !(0.0..60.0).contains(&s) {
        return None;
    }
    Some(Duration::from_secs((days * 24 + h) * 3600 + m * 60) + Duration::from_secs_f64(s))
}

/// The problems of a `host.json` for a handler with this `lease` and `max_dequeue`.
pub fn problems(host: &Value, lease: Duration, max_dequeue: u32) -> Vec<String> {
    let queues = &host["extensions"]["queues"];
    let mut out = Vec::new();
    let encoding = queues["messageEncoding"].as_str().unwrap_or("base64");
    if encoding != "none" {
        out.push(format!(
            "extensions.queues.messageEncoding is {encoding:?}: the engine writes JSON text, set \"none\""
        ));
    }
    let max = queues["maxDequeueCount"].as_u64().unwrap_or(5);
    if max != u64::from(max_dequeue) {
        out.push(format!(
            "extensions.queues.maxDequeueCount is {max}, the engine's max_dequeue {max_dequeue}: set them equal"
        ));
    }
    let visibility = queues["visibilityTimeout"]
        .as_str()
        .map_or(Some(Duration::ZERO), timespan);
    match visibility {
        Some(v) if v > lease => {}
        Some(v) => out.push(format!(
            "extensions.queues.visibilityTimeout is {v:?}, not above the task lease {lease:?} (TESSERA_LEASE_SECS): a crashed invocation would come back while its lease holds"
        )),
        None => out.push(format!(
            "extensions.queues.visibilityTimeout {:?} is not a TimeSpan hh:mm:ss",
            queues["visibilityTimeout"]
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timespans() {
        for (text, secs) in [
            ("00:00:35", Some(35.0)),
            ("01:02:03", Some(3723.0)),
            ("1.00:00:00", Some(86400.0)),
            ("00:00:01.5", Some(1.5)),
            ("35", None),
            ("00:61:00", None),
            ("a:b:c", None),
        ] {
            assert_eq!(timespan(text).map(|d| d.as_secs_f64()), secs, "{text}");
        }
    }

    #[test]
    fn host_json_problems() {
        let lease = Duration::from_secs(30);
        let good = json!({"extensions": {"queues": {"messageEncoding": "none", "maxDequeueCount": 5, "visibilityTimeout": "00:00:35"}}});
        assert_eq!(problems(&good, lease, 5), Vec::<String>::new());
        let cases = [
            (json!({}), vec!["messageEncoding", "visibilityTimeout"]),
            (
                json!({"extensions": {"queues": {"messageEncoding": "none", "maxDequeueCount": 3, "visibilityTimeout": "00:00:35"}}}),
                vec!["maxDequeueCount"],
            ),
            (
                json!({"extensions": {"queues": {"messageEncoding": "none", "visibilityTimeout": "00:00:30"}}}),
                vec!["visibilityTimeout"],
            ),
            (
                json!({"extensions": {"queues": {"messageEncoding": "none", "visibilityTimeout": "soon"}}}),
                vec!["visibilityTimeout"],
            ),
        ];
        for (host, expected) in cases {
            let found = problems(&host, lease, 5);
            assert_eq!(found.len(), expected.len(), "{host}: {found:?}");
            for (problem, setting) in found.iter().zip(&expected) {
                assert!(problem.contains(setting), "{problem}");
            }
        }
    }

    #[test]
    fn the_repositorys_host_json_passes() {
        let text = include_str!("../../../infra/functions/host.json");
        let host: Value = serde_json::from_str(text).unwrap();
        let engine = engine::EngineConfig::default();
        assert_eq!(
            problems(&host, engine.lease, engine.max_dequeue),
            Vec::<String>::new()
        );
    }
}
