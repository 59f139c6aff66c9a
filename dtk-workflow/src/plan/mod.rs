//! The planner: a pure function from the desired model and actual state to a [`Plan`],
//! a DAG of tasks. No IO.
//!
//! How a converge plan is made is documented on [`plan()`]. `request.rs` says what to
//! plan, `build.rs` and `workflow.rs` build the full task graph, `graph.rs` checks it for
//! cycles and keeps the planned tasks.

mod build;
mod error;
mod graph;
mod named;
mod request;
mod workflow;

use std::collections::HashMap;

use dtk_model::instance::ServiceModel;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

pub use build::build_graph;
pub(crate) use build::dependency_ids;
pub use error::{CycleEdge, PlanError};
pub use graph::PlanGraph;
pub use request::{ActionRequest, ActionTarget, ParseTargetError, PlanRequest, WorkflowRequest};

use crate::state::ActualState;
use crate::task::{Edge, PlanKind, Task, TaskId};

/// A plan: the tasks to run and their order, acyclic. A value: print it, diff it, test
/// it; only [`crate::execute`] runs it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) service: String,
    pub(crate) kind: PlanKind,
    pub(crate) graph: DiGraph<Task, Edge>,
    pub(crate) order: Vec<NodeIndex>,
    /// Each task's node, by id.
    pub(crate) by_id: HashMap<TaskId, NodeIndex>,
}

impl Plan {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The kind of request it answers.
    pub fn kind(&self) -> PlanKind {
        self.kind
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The DAG: tasks, and edges from each task to those that must wait for it.
    pub fn graph(&self) -> &DiGraph<Task, Edge> {
        &self.graph
    }

    /// The tasks in a topological order (every task after the tasks it waits for).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.order.iter().map(|&i| &self.graph[i])
    }

    /// The task indices in topological order.
    pub fn order(&self) -> &[NodeIndex] {
        &self.order
    }

    /// Looks a task up by id.
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.by_id.get(id).map(|&i| &self.graph[i])
    }

    /// The tasks that `id` waits for.
    pub fn predecessors(&self, id: &TaskId) -> Vec<&TaskId> {
        let Some(&i) = self.by_id.get(id) else {
            return Vec::new();
        };
        let mut v: Vec<&TaskId> = self
            .graph
            .neighbors_directed(i, Direction::Incoming)
            .map(|p| &self.graph[p].id)
            .collect();
        v.sort();
        v
    }
}

/// Plans `request` for `model` given `actual` state: [`build_graph`] then
/// [`PlanGraph::into_plan`].
///
/// # How a converge plan is made
///
/// 1. [`build_graph`] makes one task per component (its `create`), one `delete` task
///    per component recorded in actual state but gone from the model, and one task per
///    `cmp.action` step of the `create` workflow; and the edges:
///    - `depends_on` (dependencies, links, node placement: filled by the expansion),
///      producer before consumer;
///    - the `create` workflow, when the model has one: steps `sequential` or
///      `concurrent`, nested; `ordered_components`; a step on a node group applies to
///      each member. The workflow adds order on top of `depends_on`, never removes it
///      (a producer always runs before its consumers); components the workflow does not
///      name are ordered by `depends_on` alone;
///    - deletes of removed components: in reverse of their recorded dependencies, and
///      before every task on the node they were on.
///
///    It also decides which tasks are *planned*: a component whose desired hash
///    ([`crate::desired_hash`]) differs from the recorded one, that was never applied,
///    whose last apply failed, that is marked drifted, or whose input digest
///    ([`crate::input_digest`]) computed from actual state differs from the recorded
///    one; plus, *conditionally*, every component downstream of a planned one (the
///    executor skips it as "unchanged" when its resolved inputs and its dependencies'
///    outputs turn out equal to what it was applied with).
/// 2. [`PlanGraph::into_plan`] checks for cycles (an error naming every edge of each
///    cycle) and keeps only planned tasks, with the order between them preserved
///    through unplanned ones.
///
/// [`PlanGraph`] can be rendered as DOT before the cycle check ([`render_dot`](crate::render_dot)), so a
/// cyclic model can still be drawn, its cycles in red.
pub fn plan(
    model: &ServiceModel,
    actual: &ActualState,
    request: &PlanRequest,
) -> Result<Plan, PlanError> {
    build_graph(model, actual, request)?.into_plan()
}
