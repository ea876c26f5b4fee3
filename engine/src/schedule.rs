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

/// What a PENDING task waits for, as the runtime read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstream {
    /// The statuses of its dependencies.
    pub deps: StatusCounts,
    /// A barrier's group; `None` for a task that waits for no group.
    pub group: Option<GroupState>,
}

/// A barrier's group, read no further than the verdict needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// The member that just ended did not succeed; the others were not read (enough to skip
    /// an `all_succeeded` barrier; [`group_read_needed`] says when this is all there is).
    MemberFailed,
    /// A member is not finished.
    Unfinished,
    /// Every member has finished, with these statuses.
    Finished(StatusCounts),
}

/// Whether the runtime must read the group's members to decide: not when a member that
/// just failed is enough to skip an `all_succeeded` barrier.
pub fn group_read_needed(rule: TriggerRule, member_failed: bool) -> bool {
    !(member_failed && rule == TriggerRule::AllSucceeded)
}

/// The verdict on a PENDING task from what it waits for: its dependencies and, for a
/// barrier, the members of its group. A group known only by a failed member decides an
/// `all_succeeded` barrier (skip); for any other rule it is not known to be finished (wait).
pub fn release_verdict(rule: TriggerRule, upstream: &Upstream) -> Verdict {
    let group_unsuccessful = match &upstream.group {
        Some(GroupState::MemberFailed) => true,
        Some(GroupState::Finished(counts)) => counts.unsuccessful() > 0,
        Some(GroupState::Unfinished) | None => false,
    };
    let group_unfinished = match &upstream.group {
        Some(GroupState::Unfinished) => true,
        Some(GroupState::MemberFailed) => rule != TriggerRule::AllSucceeded,
        Some(GroupState::Finished(_)) | None => false,
    };
    match rule {
        TriggerRule::AllSucceeded if upstream.deps.unsuccessful() > 0 || group_unsuccessful => {
            Verdict::Skip
        }
        _ if upstream.deps.unfinished() > 0 || group_unfinished => Verdict::Wait,
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
            let deps_only = Upstream {
                deps: counts(upstream),
                group: None,
            };
            assert_eq!(
                release_verdict(rule, &deps_only),
                expected,
                "{rule} {upstream:?}"
            );
            // The same statuses as a finished group (a barrier) decide the same way.
            let group_only = Upstream {
                deps: StatusCounts::default(),
                group: Some(GroupState::Finished(counts(upstream))),
            };
            if counts(upstream).unfinished() == 0 {
                assert_eq!(
                    release_verdict(rule, &group_only),
                    expected,
                    "{rule} group {upstream:?}"
                );
            }
        }
    }

    #[test]
    fn barrier_verdicts() {
        use GroupState::*;
        use TriggerRule::*;
        use Verdict::*;
        let cases = [
            // (rule, dependencies, group, verdict)
            (AllSucceeded, "", Some(MemberFailed), Skip),
            (AllDone, "", Some(MemberFailed), Wait),
            (AllSucceeded, "", Some(Unfinished), Wait),
            (AllDone, "", Some(Unfinished), Wait),
            (AllSucceeded, "S1", Some(Finished(counts("S5"))), Release),
            (AllSucceeded, "S1", Some(Finished(counts("S4 F1"))), Skip),
            (AllDone, "S1", Some(Finished(counts("S4 F1 C2"))), Release),
            (AllDone, "R1", Some(Finished(counts("S4"))), Wait),
            (AllSucceeded, "F1", Some(Unfinished), Skip),
            (
                AllDone,
                "",
                Some(Finished(StatusCounts::default())),
                Release,
            ),
        ];
        for (rule, deps, group, expected) in cases {
            let upstream = Upstream {
                deps: counts(deps),
                group: group.clone(),
            };
            assert_eq!(
                release_verdict(rule, &upstream),
                expected,
                "{rule} deps {deps:?} group {group:?}"
            );
        }
        assert!(!group_read_needed(AllSucceeded, true));
        assert!(group_read_needed(AllSucceeded, false));
        assert!(group_read_needed(AllDone, true));
        assert!(group_read_needed(AllDone, false));
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
