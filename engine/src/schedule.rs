//! Pure scheduling decisions. No I/O: the runtime gathers the facts, these functions decide.

use crate::model::{JobStatus, OutcomePolicy, StatusCounts, TaskStatus, TriggerRule};

/// What to do with a PENDING task given the statuses of what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Something it waits for is not finished yet.
    Wait,
    /// Release it: compare-and-set PENDING -> QUEUED, then send its message.
    Release,
    /// It can never run: compare-and-set PENDING -> SKIPPED.
    Skip,
}

/// `upstream` counts the statuses of everything the task waits for: its dependencies and,
/// for a barrier, the members of its group (only once the group is sealed).
pub fn release_verdict(rule: TriggerRule, upstream: &StatusCounts) -> Verdict {
    match rule {
        TriggerRule::AllSucceeded if upstream.unsuccessful() > 0 => Verdict::Skip,
        _ if upstream.unfinished() > 0 => Verdict::Wait,
        _ => Verdict::Release,
    }
}

/// The job's terminal status, or `None` while it must keep running.
///
/// `fail_fast`: the first FAILED task fails the job (what has not started is then cancelled).
/// `continue`: wait for every task; SUCCEEDED if all succeeded, FAILED if none did,
/// COMPLETED_WITH_ERRORS otherwise.
pub fn job_outcome(policy: OutcomePolicy, counts: &StatusCounts) -> Option<JobStatus> {
    if policy == OutcomePolicy::FailFast && counts.get(TaskStatus::Failed) > 0 {
        return Some(JobStatus::Failed);
    }
    if counts.unfinished() > 0 {
        return None;
    }
    Some(if counts.unsuccessful() == 0 {
        JobStatus::Succeeded
    } else if counts.get(TaskStatus::Succeeded) == 0 {
        JobStatus::Failed
    } else {
        JobStatus::CompletedWithErrors
    })
}

/// Job progress in 0..=1: finished tasks count 1, running ones their reported fraction.
pub fn job_progress(counts: &StatusCounts, running_fraction_sum: f64) -> f64 {
    let total = counts.total();
    if total == 0 {
        return 0.0;
    }
    ((counts.terminal() as f64 + running_fraction_sum) / total as f64).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse "S3 F1 R2" into counts (letters: P Q R W S F K=skipped C).
    fn counts(spec: &str) -> StatusCounts {
        let mut c = StatusCounts::default();
        for part in spec.split_whitespace() {
            let (letter, n) = part.split_at(1);
            let status = match letter {
                "P" => TaskStatus::Pending,
                "Q" => TaskStatus::Queued,
                "R" => TaskStatus::Running,
                "W" => TaskStatus::RetryWait,
                "S" => TaskStatus::Succeeded,
                "F" => TaskStatus::Failed,
                "K" => TaskStatus::Skipped,
                "C" => TaskStatus::Cancelled,
                _ => panic!("bad letter {letter}"),
            };
            c.add(status, n.parse().unwrap());
        }
        c
    }

    #[test]
    fn release_verdicts() {
        use TriggerRule::*;
        use Verdict::*;
        let cases = [
            (AllSucceeded, "", Release),
            (AllSucceeded, "S3", Release),
            (AllSucceeded, "S2 R1", Wait),
            (AllSucceeded, "S2 W1", Wait),
            (AllSucceeded, "S2 F1", Skip),
            (AllSucceeded, "R2 K1", Skip),
            (AllSucceeded, "C1", Skip),
            (AllDone, "S2 F1 K1 C1", Release),
            (AllDone, "S2 F1 P1", Wait),
            (AllDone, "", Release),
        ];
        for (rule, upstream, expected) in cases {
            assert_eq!(
                release_verdict(rule, &counts(upstream)),
                expected,
                "{rule} {upstream:?}"
            );
        }
    }

    #[test]
    fn job_outcomes() {
        use JobStatus::*;
        use OutcomePolicy::*;
        let cases = [
            (FailFast, "S5", Some(Succeeded)),
            (FailFast, "S4 R1", None),
            (FailFast, "S1 F1 R3", Some(Failed)),
            (FailFast, "S3 C1", Some(CompletedWithErrors)),
            (Continue, "S1 F1 R3", None),
            (Continue, "S3 F1 K2", Some(CompletedWithErrors)),
            (Continue, "F1 K2", Some(Failed)),
            (Continue, "S6", Some(Succeeded)),
        ];
        for (policy, c, expected) in cases {
            assert_eq!(job_outcome(policy, &counts(c)), expected, "{policy} {c:?}");
        }
    }

    #[test]
    fn progress_counts_running_fractions() {
        assert_eq!(job_progress(&counts(""), 0.0), 0.0);
        assert_eq!(job_progress(&counts("S2 R2"), 1.0), 0.75);
    }
}
