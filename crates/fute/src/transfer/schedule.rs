//! Which job to start next when several workers run a plan.

use super::plan::Plan;

/// State of every job of a plan, as a runner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Not started, or killed before it wrote its result.
    Todo,
    /// A worker runs it.
    Running,
    /// Its result file exists.
    Done,
    /// It failed in this run (its dependants are not started).
    Failed,
}

/// The first job (by index, so sources before the transfers that need them)
/// that is still to do and whose dependencies are all done.
pub fn next_ready(plan: &Plan, state: &[JobState]) -> Option<usize> {
    plan.jobs.iter().position(|j| {
        state[j.index] == JobState::Todo && j.depends_on.iter().all(|&d| state[d] == JobState::Done)
    })
}

/// Jobs that can never run in this pass because a dependency failed.
pub fn blocked(plan: &Plan, state: &[JobState]) -> Vec<usize> {
    plan.jobs
        .iter()
        .filter(|j| {
            state[j.index] == JobState::Todo
                && j.depends_on.iter().any(|&d| state[d] == JobState::Failed)
        })
        .map(|j| j.index)
        .collect()
}
