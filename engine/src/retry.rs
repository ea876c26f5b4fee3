//! Retry policies: named presets or explicit `{max_attempts, base_delay_ms, max_delay_ms}`,
//! exponential backoff with jitter. Pure functions; the runtime supplies the randomness.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ErrorClass;

/// How often and how far apart a task is retried after a transient error or a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RetryPolicyRepr", into = "RetryPolicyRepr")]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = never retry).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// 3 attempts, 1 s doubling up to 30 s.
    pub const STANDARD: RetryPolicy = RetryPolicy::new(3, 1_000, 30_000);
    /// 5 attempts, 200 ms doubling up to 10 s.
    pub const AGGRESSIVE: RetryPolicy = RetryPolicy::new(5, 200, 10_000);
    /// 3 attempts, 30 s doubling up to 10 min (for long GDAL work against flaky storage).
    pub const LONG_RUNNING: RetryPolicy = RetryPolicy::new(3, 30_000, 600_000);
    /// A single attempt.
    pub const NO_RETRY: RetryPolicy = RetryPolicy::new(1, 0, 0);

    pub const PRESETS: &'static [(&'static str, RetryPolicy)] = &[
        ("standard", Self::STANDARD),
        ("aggressive", Self::AGGRESSIVE),
        ("long_running", Self::LONG_RUNNING),
        ("no_retry", Self::NO_RETRY),
    ];

    pub const fn new(max_attempts: u32, base_delay_ms: u64, max_delay_ms: u64) -> Self {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(base_delay_ms),
            max_delay: Duration::from_millis(max_delay_ms),
        }
    }

    pub fn preset(name: &str) -> Option<RetryPolicy> {
        Self::PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
    }

    fn preset_name(&self) -> Option<&'static str> {
        Self::PRESETS
            .iter()
            .find(|(_, p)| p == self)
            .map(|(n, _)| *n)
    }

    /// Backoff before attempt `failed_attempt + 1`: `min(max, base * 2^(failed_attempt-1))`,
    /// with "equal jitter": half fixed, half uniform from `jitter` in `0.0..1.0`.
    pub fn backoff(&self, failed_attempt: u32, jitter: f64) -> Duration {
        let exp = failed_attempt.saturating_sub(1).min(30);
        let raw = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = raw / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

/// Pure: retry a retryable error while attempts remain.
pub fn decide_retry(
    policy: &RetryPolicy,
    failed_attempt: u32,
    class: ErrorClass,
    jitter: f64,
) -> RetryDecision {
    if class.is_retryable() && failed_attempt < policy.max_attempts {
        RetryDecision::RetryAfter(policy.backoff(failed_attempt, jitter))
    } else {
        RetryDecision::GiveUp
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RetryPolicyRepr {
    Preset(String),
    Explicit {
        max_attempts: u32,
        #[serde(default)]
        base_delay_ms: u64,
        #[serde(default)]
        max_delay_ms: u64,
    },
}

impl TryFrom<RetryPolicyRepr> for RetryPolicy {
    type Error = String;
    fn try_from(repr: RetryPolicyRepr) -> Result<Self, String> {
        match repr {
            RetryPolicyRepr::Preset(name) => RetryPolicy::preset(&name).ok_or_else(|| {
                let names: Vec<_> = RetryPolicy::PRESETS.iter().map(|(n, _)| *n).collect();
                format!("unknown retry preset {name:?} (expected one of {names:?})")
            }),
            RetryPolicyRepr::Explicit {
                max_attempts,
                base_delay_ms,
                max_delay_ms,
            } => {
                if max_attempts == 0 {
                    return Err("retry max_attempts must be at least 1".into());
                }
                Ok(RetryPolicy::new(
                    max_attempts,
                    base_delay_ms,
                    max_delay_ms.max(base_delay_ms),
                ))
            }
        }
    }
}

impl From<RetryPolicy> for RetryPolicyRepr {
    fn from(p: RetryPolicy) -> Self {
        match p.preset_name() {
            Some(name) => RetryPolicyRepr::Preset(name.to_owned()),
            None => RetryPolicyRepr::Explicit {
                max_attempts: p.max_attempts,
                base_delay_ms: u64::try_from(p.base_delay.as_millis()).unwrap_or(u64::MAX),
                max_delay_ms: u64::try_from(p.max_delay.as_millis()).unwrap_or(u64::MAX),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let p = RetryPolicy::new(10, 100, 1_000);
        let cases = [
            (1, 0.0, 50),
            (1, 1.0, 100),
            (2, 0.0, 100),
            (3, 0.5, 300),
            (5, 1.0, 1_000),
            (30, 0.0, 500),
        ];
        for (attempt, jitter, expected_ms) in cases {
            assert_eq!(
                p.backoff(attempt, jitter),
                Duration::from_millis(expected_ms),
                "attempt {attempt} jitter {jitter}"
            );
        }
    }

    #[test]
    fn decisions_follow_class_and_attempts() {
        let p = RetryPolicy::new(3, 0, 0);
        let cases = [
            (1, ErrorClass::Transient, true),
            (2, ErrorClass::Timeout, true),
            (3, ErrorClass::Transient, false),
            (1, ErrorClass::Permanent, false),
        ];
        for (attempt, class, retries) in cases {
            let d = decide_retry(&p, attempt, class, 0.5);
            assert_eq!(
                matches!(d, RetryDecision::RetryAfter(_)),
                retries,
                "{attempt} {class}"
            );
        }
        assert_eq!(
            decide_retry(&RetryPolicy::NO_RETRY, 1, ErrorClass::Transient, 0.0),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn policies_parse_from_presets_and_objects() {
        let p: RetryPolicy = serde_json::from_value(json!("aggressive")).unwrap();
        assert_eq!(p, RetryPolicy::AGGRESSIVE);
        let p: RetryPolicy = serde_json::from_value(
            json!({"max_attempts": 4, "base_delay_ms": 10, "max_delay_ms": 80}),
        )
        .unwrap();
        assert_eq!(p, RetryPolicy::new(4, 10, 80));
        assert_eq!(
            serde_json::to_value(RetryPolicy::STANDARD).unwrap(),
            json!("standard")
        );
        let err = serde_json::from_value::<RetryPolicy>(json!("sometimes"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did not match any variant") || err.contains("unknown retry preset"),
            "{err}"
        );
    }
}
