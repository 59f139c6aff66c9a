//! The vocabulary of plans, shared by the planner, the journal and the executor: a task, its
//! id, what it does, why it is planned, and why one task runs before another. A leaf: it
//! imports nothing else of this crate.

use std::fmt;

use dtk_model::instance::ComponentId;
use dtk_model::value::Attributes;
use serde::{Deserialize, Serialize};

/// A task's id: `COMPONENT.ACTION` (`web/web.create`, `node[db].delete`). Stable across
/// runs of the same plan: the journal is keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub String);

impl TaskId {
    /// The id of `action` of `component`.
    pub fn new(component: &ComponentId, action: &str) -> Self {
        TaskId(format!("{component}.{action}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOp {
    /// Runs the component's `create` action (a provider's `create`, or `update` when the
    /// component was applied before; or commands on its node) and records the result.
    Converge,
    /// Runs the recorded `delete` action (if any) and forgets the component.
    Delete,
    /// Runs a named action of the component, with parameters.
    Action {
        /// Extra inputs, overriding the component's.
        params: Attributes,
    },
}

/// Why a task is in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Never applied.
    New,
    /// Its desired hash changed.
    Changed,
    /// Its last attempt failed.
    Retry,
    /// Drift was observed.
    Drift,
    /// Its inputs from producers changed since it was applied.
    InputsChanged,
    /// Conditional: runs only if its inputs change once `of` has run.
    Downstream {
        /// The planned component upstream.
        of: ComponentId,
    },
    /// Planned because everything was asked for.
    Forced,
    /// The component left the model.
    Removed,
    /// Delete was asked for.
    DeleteRequested,
    /// The action was asked for.
    Requested,
    /// A `cmp.action` step of the workflow: runs only if the component's `create` ran.
    WorkflowStep,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::New => f.write_str("new"),
            Reason::Changed => f.write_str("changed"),
            Reason::Retry => f.write_str("retry (last attempt failed)"),
            Reason::Drift => f.write_str("drift"),
            Reason::InputsChanged => f.write_str("inputs changed"),
            Reason::Downstream { of } => write!(f, "if inputs change (after {of})"),
            Reason::Forced => f.write_str("forced"),
            Reason::Removed => f.write_str("removed from model"),
            Reason::DeleteRequested => f.write_str("delete"),
            Reason::Requested => f.write_str("requested"),
            Reason::WorkflowStep => f.write_str("if create runs"),
        }
    }
}

/// One task of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// The component instance it acts on.
    pub component: ComponentId,
    /// The action's name (`create`, `delete`, or a custom one).
    pub action: String,
    /// What it does.
    pub op: TaskOp,
    /// The node it runs on (tasks on one node never overlap).
    pub node: Option<String>,
    /// Why it is planned.
    pub reason: Reason,
    /// Whether the executor decides at run time to skip it ("unchanged"): converges
    /// downstream of a change, and workflow action steps.
    pub conditional: bool,
    /// The workflow step path it belongs to (`["database"]`), empty outside a workflow.
    pub step: Vec<String>,
    /// The component's desired hash (for deletes: the recorded one).
    pub desired_hash: String,
}

impl Task {
    /// A short label: the component id for converges, the task id otherwise.
    pub fn label(&self) -> &str {
        match self.op {
            TaskOp::Converge => self.component.as_str(),
            _ => self.id.as_str(),
        }
    }
}

/// Why one task runs before another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// A model dependency (`dependency db`, `link db`, `node web`), as the expansion
    /// explained it.
    Dependency(String),
    /// Workflow order (the step that comes after).
    Workflow(String),
    /// A workflow action step follows its component's `create`.
    Follows,
    /// Deletes run in reverse dependency order.
    ReverseDependency,
    /// A removed component is deleted before anything runs on its node.
    RemovedFromNode(String),
    /// Order kept through tasks that are not planned.
    Via(String),
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edge::Dependency(r) => f.write_str(r),
            Edge::Workflow(step) => write!(f, "workflow: before {step}"),
            Edge::Follows => f.write_str("after create"),
            Edge::ReverseDependency => f.write_str("reverse dependency"),
            Edge::RemovedFromNode(n) => write!(f, "removed from node {n}"),
            Edge::Via(t) => write!(f, "via {t}"),
        }
    }
}

/// The kind of request a plan answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// [`PlanRequest::Converge`] or [`PlanRequest::ConvergeAll`].
    Converge,
    /// [`PlanRequest::Delete`].
    Delete,
    /// [`PlanRequest::Action`].
    Action,
    /// [`PlanRequest::Workflow`].
    Workflow,
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanKind::Converge => "converge",
            PlanKind::Delete => "delete",
            PlanKind::Action | PlanKind::Workflow => "exec",
        })
    }
}
