//! Admission: what a submission does with the job it names when that job exists already. Pure, table-tested; the runtime
//! shell (`Engine::accept` / `Engine::submit`) reads the stored job and acts on the verdict.

use crate::model::JobStatus;

/// The verdict on a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A forced re-run of a finished job: replace it with attempt `attempt`.
    Rerun { attempt: u32 },
    /// The same request again: return the stored job as it is.
    Existing,
    /// `force` on a job that may not be re-run (still running, or succeeded).
    NotRerunnable,
}

/// Pure: the verdict given the stored job's status and attempt, `force`, and which statuses
/// a forced submission may re-run.
pub(crate) fn admit(
    status: JobStatus,
    attempt: u32,
    force: bool,
    rerunnable: impl Fn(JobStatus) -> bool,
) -> Admission {
    if !force {
        Admission::Existing
    } else if rerunnable(status) {
        Admission::Rerun {
            attempt: attempt + 1,
        }
    } else {
        Admission::NotRerunnable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::failed_or_cancelled;
    use JobStatus as S;

    #[test]
    fn verdicts() {
        let cases: &[(S, u32, bool, Admission)] = &[
            (S::Pending, 1, false, Admission::Existing),
            (S::Running, 1, false, Admission::Existing),
            (S::Failed, 1, false, Admission::Existing),
            (S::Succeeded, 2, false, Admission::Existing),
            (S::Failed, 1, true, Admission::Rerun { attempt: 2 }),
            (S::Cancelled, 3, true, Admission::Rerun { attempt: 4 }),
            (S::Running, 1, true, Admission::NotRerunnable),
            (S::Pending, 1, true, Admission::NotRerunnable),
            (S::Succeeded, 1, true, Admission::NotRerunnable),
            (S::CompletedWithErrors, 1, true, Admission::NotRerunnable),
        ];
        for (status, attempt, force, expected) in cases {
            assert_eq!(
                admit(*status, *attempt, *force, failed_or_cancelled),
                *expected,
                "{status} attempt {attempt} force={force}"
            );
        }
    }
}
