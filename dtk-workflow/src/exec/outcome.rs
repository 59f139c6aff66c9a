//! What a run reports: progress events while it runs, each task's report and the
//! [`Outcome`] at its end.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use dtk_model::instance::ComponentId;
use tokio::sync::mpsc::UnboundedSender;

use crate::journal::{JournalError, JournalStats};
use crate::plan::Plan;
use crate::state::ActualState;
use crate::task::TaskId;

/// Standard output and error of a command task, secrets redacted, each cut to its last
/// 64 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapturedOutput {
    /// The exit status (`None`: killed).
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Where a run's events go.
pub type EventSink = UnboundedSender<Event>;

/// Progress of a run, for the CLI and library users.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A task started (its first attempt).
    TaskStarted {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
    },
    /// An attempt failed and will be tried again.
    TaskRetrying {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Why (secrets redacted).
        error: String,
        /// The wait before the next attempt.
        after: Duration,
    },
    /// A task completed.
    TaskFinished {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// How long it ran, retries included.
        duration: Duration,
        /// What its commands printed, for command actions.
        output: Option<CapturedOutput>,
    },
    /// A task failed (after its last attempt).
    TaskFailed {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// How long it ran, retries included.
        duration: Duration,
        /// Why (secrets redacted).
        error: String,
        /// What its commands printed, for command actions.
        output: Option<CapturedOutput>,
    },
    /// A task did not run.
    TaskSkipped {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// Why.
        status: TaskStatus,
    },
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// It ran and succeeded.
    Done,
    /// A conditional task found nothing to do.
    Unchanged,
    /// It failed.
    Failed {
        /// Why (secrets redacted).
        message: String,
    },
    /// It did not run because a task it depends on failed.
    Skipped {
        /// The failed task.
        because: TaskId,
    },
    /// It did not run because the run was cancelled.
    Cancelled,
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStatus::Done => f.write_str("done"),
            TaskStatus::Unchanged => f.write_str("unchanged"),
            TaskStatus::Failed { message } => write!(f, "failed: {message}"),
            TaskStatus::Skipped { because } => write!(f, "skipped ({because} failed)"),
            TaskStatus::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// The report of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    /// The task.
    pub id: TaskId,
    /// Its component.
    pub component: ComponentId,
    /// Its action.
    pub action: String,
    /// Its node.
    pub node: Option<String>,
    /// How it ended.
    pub status: TaskStatus,
    /// How long it ran (zero if it did not).
    pub duration: Duration,
    /// When it started (`None` if it did not run).
    pub started: Option<std::time::Instant>,
    /// Attempts made.
    pub attempts: u32,
    /// Things worth saying that did not fail it (ignored outputs).
    pub warnings: Vec<String>,
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// Every task of the plan, in the plan's order.
    pub tasks: Vec<TaskReport>,
    /// How long the run took.
    pub duration: Duration,
    /// Actual state after the run (the state given, with this run's results applied).
    pub state: ActualState,
    /// Whether the run may have changed `state`: `false` means it is exactly the state
    /// the run was given (nothing ran, or nothing that ran touched a record).
    pub state_changed: bool,
    /// Whether the run was cancelled (or stopped because its journal failed).
    pub cancelled: bool,
    /// The journal writer's counters, when there was a journal.
    pub journal: Option<JournalStats>,
    /// A journal write failure: the run stopped scheduling when it happened.
    pub journal_error: Option<JournalError>,
}

impl Outcome {
    /// Whether every task is done or unchanged.
    pub fn is_success(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.status, TaskStatus::Done | TaskStatus::Unchanged))
            && self.journal_error.is_none()
    }

    /// The status of task `id`.
    pub fn status(&self, id: &TaskId) -> Option<&TaskStatus> {
        self.tasks.iter().find(|t| &t.id == id).map(|t| &t.status)
    }

    /// The tasks that ended with `pred(status)`.
    pub fn ids_where(&self, pred: impl Fn(&TaskStatus) -> bool) -> Vec<&TaskId> {
        self.tasks
            .iter()
            .filter(|t| pred(&t.status))
            .map(|t| &t.id)
            .collect()
    }

    /// The run as a task-status tree (the plan's tree, each task with its status and
    /// duration).
    pub fn render_tree(&self, plan: &Plan) -> String {
        let by_id: HashMap<&TaskId, &TaskReport> = self.tasks.iter().map(|t| (&t.id, t)).collect();
        let failed = self
            .tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Failed { .. }))
            .count();
        let title = format!(
            "{} {}: {} task{}, {} failed{}",
            plan.kind(),
            plan.service(),
            plan.len(),
            if plan.len() == 1 { "" } else { "s" },
            failed,
            if self.cancelled { ", cancelled" } else { "" }
        );
        crate::render::tree(plan, &title, &|_, t| match by_id.get(&t.id) {
            Some(r) if r.duration > Duration::ZERO => {
                format!("{} ({:.1}s)", r.status, r.duration.as_secs_f64())
            }
            Some(r) => r.status.to_string(),
            None => "-".to_owned(),
        })
    }
}
