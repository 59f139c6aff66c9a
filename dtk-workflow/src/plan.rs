//! The planner: a pure function from the desired model and actual state to a [`Plan`],
//! a DAG of tasks. No IO.
//!
//! How a converge plan is made is documented on [`plan()`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use dtk_model::ident::ComponentRef;
use dtk_model::instance::{ComponentId, ComponentInstance, ServiceModel};
use dtk_model::module::{ActionKind, NodeSelector, Subtask, SubtaskOrder, Workflow};
use dtk_model::value::Attributes;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::{FastMap, desired_hash, input_digest, static_inputs, static_inputs_cow};
use crate::state::{ActualState, ComponentStatus};

/// What to plan.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanRequest {
    /// Converge (workflow `create`): only what changed, plus what may depend on it, plus
    /// deletes of components removed from the model.
    Converge,
    /// Converge everything, as if nothing had been applied (`graph`, or a forced run).
    ConvergeAll,
    /// Delete everything recorded in actual state, in reverse dependency order.
    Delete,
    /// Run one custom action (`[NODE/]CMP.ACTION k=v ...`).
    Action(ActionRequest),
}

/// A request to run a custom action on the matching component instances.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// Which components and which action.
    pub target: ActionTarget,
    /// Parameters: extra inputs of the action, overriding the component's.
    pub params: Attributes,
}

/// `[NODE/]CMP.ACTION`: a component's action, optionally on one node or node group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTarget {
    /// The node or node group, when given.
    pub node: Option<String>,
    /// The component.
    pub component: ComponentRef,
    /// The action's name.
    pub action: String,
}

/// The error returned when an action target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid action target `{input}`: {reason}")]
pub struct ParseTargetError {
    /// The text.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

impl FromStr for ActionTarget {
    type Err = ParseTargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseTargetError {
            input: s.to_owned(),
            reason,
        };
        let Some((cmp, action)) = s.trim().rsplit_once('.') else {
            return Err(err("expected `[NODE/]COMPONENT.ACTION`".to_owned()));
        };
        if action.is_empty() || action.contains(['/', '[', ']']) {
            return Err(err(format!("`{action}` is not an action name")));
        }
        // Not `NodeComponentRef`: a member of a node group (`workers:2`) may be named.
        let (node, cmp) = match cmp.split_once('/') {
            Some((n, c)) => {
                let member = n.split_once(':').map_or(n, |(g, _)| g);
                dtk_model::ident::check_name("node name", member).map_err(|e| err(e.reason))?;
                if let Some((_, k)) = n.split_once(':')
                    && (k.is_empty() || !k.chars().all(|c| c.is_ascii_digit()))
                {
                    return Err(err(format!("`{n}` is not a node group member")));
                }
                (Some(n.to_owned()), c)
            }
            None => (None, cmp),
        };
        let component: ComponentRef = cmp
            .parse()
            .map_err(|e: dtk_model::ident::ParseRefError| err(e.reason))?;
        Ok(ActionTarget {
            node,
            component,
            action: action.to_owned(),
        })
    }
}

impl fmt::Display for ActionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}/")?;
        }
        write!(f, "{}.{}", self.component, self.action)
    }
}

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
    /// Deleted and created again (`converge --replace`, or an attribute its provider
    /// cannot change in place); see [`crate::select`].
    Replace {
        /// Why (`requested`, `image changes: aws.ec2_instance cannot change it in place`).
        why: String,
    },
    /// Not named by `converge --only`, but a named component depends on it and it is not
    /// up to date; see [`crate::select`].
    NeededBy {
        /// The named component that needs it.
        of: ComponentId,
        /// Why it is planned at all.
        reason: Box<Reason>,
    },
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
            Reason::Replace { why } => write!(f, "replace ({why})"),
            Reason::NeededBy { of, reason } => write!(f, "{reason}, needed by {of}"),
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
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanKind::Converge => "converge",
            PlanKind::Delete => "delete",
            PlanKind::Action => "exec",
        })
    }
}

/// The error returned by [`plan`] and [`build_graph`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The tasks' order has one or more cycles.
    #[error("{}", render_cycles(service, cycles))]
    Cycle {
        /// The service.
        service: String,
        /// Each cycle (one per strongly connected part), as its edges in order.
        cycles: Vec<Vec<CycleEdge>>,
    },
    /// A component depends on one that is not in the model.
    #[error("`{component}` depends on `{on}` ({reason}), which is not in service `{service}`")]
    UnknownDependency {
        /// The service.
        service: String,
        /// The dependent.
        component: ComponentId,
        /// The missing one.
        on: ComponentId,
        /// Why it depends.
        reason: String,
    },
    /// A workflow step names a node or node group the service does not have.
    #[error(
        "workflow `{workflow}` step `{step}` runs on node `{node}`, which service `{service}` does not have"
    )]
    UnknownNode {
        /// The service.
        service: String,
        /// The workflow.
        workflow: String,
        /// The step path.
        step: String,
        /// The node or group.
        node: String,
    },
    /// A workflow step names a component not placed where the step runs.
    #[error(
        "workflow `{workflow}` step `{step}` names `{component}`, which is not in service `{service}`{}",
        on_node(node)
    )]
    UnknownWorkflowComponent {
        /// The service.
        service: String,
        /// The workflow.
        workflow: String,
        /// The step path.
        step: String,
        /// The component reference.
        component: String,
        /// The node searched, if the step has one.
        node: Option<String>,
    },
    /// The action asked for matches no component instance.
    #[error("`{target}` matches no component of service `{service}`")]
    NoMatchingComponent {
        /// The service.
        service: String,
        /// The request.
        target: String,
    },
    /// A component has no action of that name.
    #[error("component `{component}` has no action `{action}`")]
    NoSuchAction {
        /// The component instance.
        component: ComponentId,
        /// The action.
        action: String,
    },
    /// The action is of a kind this executor does not run.
    #[error("action `{action}` of `{component}` is a `{kind}` action, which dtk does not run")]
    UnsupportedAction {
        /// The component instance.
        component: ComponentId,
        /// The action.
        action: String,
        /// The kind (`puppet_class`, or `provider` for a custom provider action).
        kind: String,
    },
}

fn on_node(node: &Option<String>) -> String {
    node.as_ref()
        .map(|n| format!(" on node `{n}`"))
        .unwrap_or_default()
}

/// One edge of a cycle: `from` must run before `to`, because of `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleEdge {
    /// The earlier task's label.
    pub from: String,
    /// The later task's label.
    pub to: String,
    /// Why.
    pub reason: String,
}

fn render_cycles(service: &str, cycles: &[Vec<CycleEdge>]) -> String {
    let mut out = if cycles.len() == 1 {
        format!("the tasks of service `{service}` have a cycle:")
    } else {
        format!(
            "the tasks of service `{service}` have {} cycles:",
            cycles.len()
        )
    };
    for cycle in cycles {
        out.push_str("\n  ");
        if let Some(first) = cycle.first() {
            out.push_str(&first.from);
        }
        for e in cycle {
            out.push_str(" -> ");
            out.push_str(&e.to);
        }
        for e in cycle {
            out.push_str(&format!("\n    {} -> {}: {}", e.from, e.to, e.reason));
        }
    }
    out
}

/// Every task that could run and every ordering edge, before the cycle check. Made by
/// [`build_graph`]; rendered by [`render_dot`](crate::render_dot) even when it has cycles; turned into a
/// [`Plan`] by [`PlanGraph::into_plan`].
#[derive(Debug, Clone)]
pub struct PlanGraph {
    pub(crate) service: String,
    pub(crate) kind: PlanKind,
    pub(crate) graph: DiGraph<Task, Edge>,
    pub(crate) planned: Vec<bool>,
}

impl PlanGraph {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// All tasks and edges, planned or not.
    pub fn graph(&self) -> &DiGraph<Task, Edge> {
        &self.graph
    }

    /// Whether the task at `index` is planned (not yet known to be up to date).
    pub fn is_planned(&self, index: NodeIndex) -> bool {
        self.planned.get(index.index()).copied().unwrap_or(false)
    }

    /// The edges that lie on a cycle (within a strongly connected part).
    pub fn cycle_edges(&self) -> HashSet<(NodeIndex, NodeIndex)> {
        let mut out = HashSet::new();
        let sccs = petgraph::algo::tarjan_scc(&self.graph);
        let mut part = vec![usize::MAX; self.graph.node_count()];
        for (i, scc) in sccs.iter().enumerate() {
            for n in scc {
                part[n.index()] = i;
            }
        }
        for e in self.graph.edge_references() {
            let (a, b) = (e.source(), e.target());
            let cyclic = if a == b {
                true
            } else {
                part[a.index()] == part[b.index()] && sccs[part[a.index()]].len() > 1
            };
            if cyclic {
                out.insert((a, b));
            }
        }
        out
    }

    /// Checks for cycles and keeps the planned tasks, ordered as the whole graph orders
    /// them (an order through unplanned tasks is kept as a direct edge).
    pub fn into_plan(self) -> Result<Plan, PlanError> {
        let order = match stable_toposort(&self.graph) {
            Some(order) => order,
            None => {
                return Err(PlanError::Cycle {
                    cycles: find_cycles(&self.graph),
                    service: self.service,
                });
            }
        };
        let n = self.graph.node_count();
        let mut new_index: Vec<Option<u32>> = vec![None; n];
        // For each unplanned task, the planned tasks it transitively comes after.
        let mut reach: Vec<Vec<(u32, String)>> = vec![Vec::new(); n];
        let mut keep: Vec<NodeIndex> = Vec::new();
        // New edges: (from, to, the original edge or a `via` label).
        let mut new_edges: Vec<(u32, u32, Result<usize, String>)> = Vec::new();
        let mut seen: HashSet<u32> = HashSet::new();
        let (old, planned) = (&self.graph, &self.planned);
        for &v in &order {
            let i = v.index();
            if planned[i] {
                let nv = keep.len() as u32;
                new_index[i] = Some(nv);
                keep.push(v);
                seen.clear();
                for e in old.edges_directed(v, Direction::Incoming) {
                    let p = e.source();
                    if let Some(np) = new_index[p.index()] {
                        if seen.insert(np) {
                            new_edges.push((np, nv, Ok(e.id().index())));
                        }
                    } else {
                        for (np, via) in &reach[p.index()] {
                            if seen.insert(*np) {
                                new_edges.push((*np, nv, Err(via.clone())));
                            }
                        }
                    }
                }
            } else {
                let mut acc: Vec<(u32, String)> = Vec::new();
                for e in old.edges_directed(v, Direction::Incoming) {
                    let p = e.source();
                    if let Some(np) = new_index[p.index()] {
                        if !acc.iter().any(|(x, _)| *x == np) {
                            acc.push((np, old[v].label().to_owned()));
                        }
                    } else {
                        for item in &reach[p.index()] {
                            if !acc.iter().any(|(x, _)| *x == item.0) {
                                acc.push(item.clone());
                            }
                        }
                    }
                }
                reach[i] = acc;
            }
        }
        drop(reach);
        // Move the kept tasks and edges out of the full graph (no copies).
        let (nodes, edges) = self.graph.into_nodes_edges();
        let mut tasks: Vec<Option<Task>> = nodes.into_iter().map(|n| Some(n.weight)).collect();
        let mut weights: Vec<Option<Edge>> = edges.into_iter().map(|e| Some(e.weight)).collect();
        let mut graph: DiGraph<Task, Edge> = DiGraph::with_capacity(keep.len(), new_edges.len());
        let mut topo = Vec::with_capacity(keep.len());
        for v in keep {
            if let Some(t) = tasks[v.index()].take() {
                topo.push(graph.add_node(t));
            }
        }
        drop(tasks);
        for (a, b, w) in new_edges {
            let w = match w {
                Ok(e) => weights[e].take().unwrap_or(Edge::Via(String::new())),
                Err(via) => Edge::Via(via),
            };
            graph.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), w);
        }
        let by_id = graph
            .node_indices()
            .map(|i| (graph[i].id.clone(), i))
            .collect();
        Ok(Plan {
            service: self.service,
            kind: self.kind,
            graph,
            order: topo,
            by_id,
        })
    }
}

/// A topological order that, among tasks free to go, takes the one built first
/// (declaration order): plans and their renderings are deterministic. `None` if the graph
/// has a cycle.
fn stable_toposort(graph: &DiGraph<Task, Edge>) -> Option<Vec<NodeIndex>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = graph.node_count();
    let mut indeg: Vec<usize> = graph
        .node_indices()
        .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
        .collect();
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = heap.pop() {
        let v = NodeIndex::new(i);
        order.push(v);
        for s in graph.neighbors_directed(v, Direction::Outgoing) {
            let d = &mut indeg[s.index()];
            *d -= 1;
            if *d == 0 {
                heap.push(Reverse(s.index()));
            }
        }
    }
    (order.len() == n).then_some(order)
}

fn find_cycles(graph: &DiGraph<Task, Edge>) -> Vec<Vec<CycleEdge>> {
    let mut sccs = petgraph::algo::tarjan_scc(graph);
    for scc in &mut sccs {
        scc.sort();
    }
    sccs.sort();
    let mut cycles = Vec::new();
    for scc in sccs {
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        let Some(&start) = scc.first() else { continue };
        let self_loop = graph.edges_connecting(start, start).next();
        if scc.len() == 1 {
            if let Some(e) = self_loop {
                let t = graph[start].label().to_owned();
                cycles.push(vec![CycleEdge {
                    from: t.clone(),
                    to: t,
                    reason: e.weight().to_string(),
                }]);
            }
            continue;
        }
        // Breadth-first from `start` inside the part, back to `start`: a shortest cycle
        // through it.
        let mut prev: HashMap<NodeIndex, (NodeIndex, petgraph::graph::EdgeIndex)> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        'bfs: while let Some(u) = queue.pop_front() {
            let mut out: Vec<_> = graph.edges_directed(u, Direction::Outgoing).collect();
            out.sort_by_key(|e| e.target());
            for e in out {
                let w = e.target();
                if !members.contains(&w) {
                    continue;
                }
                if w == start {
                    closing = Some((u, e.id()));
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = prev.entry(w) {
                    slot.insert((u, e.id()));
                    queue.push_back(w);
                }
            }
        }
        let Some((last, last_edge)) = closing else {
            continue;
        };
        let mut edges = vec![last_edge];
        let mut cur = last;
        while cur != start {
            let Some(&(p, e)) = prev.get(&cur) else { break };
            edges.push(e);
            cur = p;
        }
        edges.reverse();
        cycles.push(
            edges
                .into_iter()
                .filter_map(|e| {
                    let (a, b) = graph.edge_endpoints(e)?;
                    Some(CycleEdge {
                        from: graph[a].label().to_owned(),
                        to: graph[b].label().to_owned(),
                        reason: graph[e].to_string(),
                    })
                })
                .collect(),
        );
    }
    cycles
}

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

/// The node a component sits on (the node it realizes, for a `node[...]` component).
fn node_of<'a>(
    c: &'a ComponentInstance,
    realizers: &FastMap<&ComponentId, &'a str>,
) -> Option<&'a str> {
    c.node.as_deref().or_else(|| realizers.get(&c.id).copied())
}

/// Whether `decl` (as written in a workflow or request) names `actual`: same name and
/// instance, and the same module when `decl` gives one.
pub(crate) fn ref_matches(decl: &ComponentRef, actual: &ComponentRef) -> bool {
    decl.name == actual.name
        && decl.instance == actual.instance
        && (decl.module.is_none() || decl.module == actual.module)
}

struct Builder<'m> {
    model: &'m ServiceModel,
    graph: DiGraph<Task, Edge>,
    planned: Vec<bool>,
    nodes_of: Vec<Option<&'m str>>,
}

/// Builds every task and edge for `request`, and marks the planned ones, without
/// checking for cycles (see [`plan()`]).
pub fn build_graph(
    model: &ServiceModel,
    actual: &ActualState,
    request: &PlanRequest,
) -> Result<PlanGraph, PlanError> {
    let realizers: FastMap<&ComponentId, &str> = model
        .nodes
        .iter()
        .filter_map(|n| n.realized_by.as_ref().map(|c| (c, n.name.as_str())))
        .collect();
    let mut b = Builder {
        model,
        graph: DiGraph::with_capacity(model.components.len(), model.components.len() * 2),
        planned: Vec::with_capacity(model.components.len()),
        nodes_of: model
            .components
            .iter()
            .map(|c| node_of(c, &realizers))
            .collect(),
    };
    let kind = match request {
        PlanRequest::Converge | PlanRequest::ConvergeAll => {
            b.converge(actual, matches!(request, PlanRequest::ConvergeAll))?;
            PlanKind::Converge
        }
        PlanRequest::Delete => {
            b.delete_all(actual)?;
            PlanKind::Delete
        }
        PlanRequest::Action(req) => {
            b.action(req)?;
            PlanKind::Action
        }
    };
    Ok(PlanGraph {
        service: model.name.clone(),
        kind,
        graph: b.graph,
        planned: b.planned,
    })
}

impl<'m> Builder<'m> {
    fn service(&self) -> String {
        self.model.name.clone()
    }

    fn add(&mut self, task: Task, planned: bool) -> NodeIndex {
        self.planned.push(planned);
        self.graph.add_node(task)
    }

    fn check_action(c: &ComponentInstance, action: &str) -> Result<(), PlanError> {
        match c.def.actions.get(action) {
            Some(def) => match &def.kind {
                ActionKind::Unsupported { kind, .. } => Err(PlanError::UnsupportedAction {
                    component: c.id.clone(),
                    action: action.to_owned(),
                    kind: kind.clone(),
                }),
                ActionKind::Provider { .. } if action != "create" && action != "delete" => {
                    Err(PlanError::UnsupportedAction {
                        component: c.id.clone(),
                        action: action.to_owned(),
                        kind: "provider (custom)".to_owned(),
                    })
                }
                _ => Ok(()),
            },
            None if action == "create" => Ok(()), // nothing to run: recorded only
            None => Err(PlanError::NoSuchAction {
                component: c.id.clone(),
                action: action.to_owned(),
            }),
        }
    }

    fn converge(&mut self, actual: &ActualState, all: bool) -> Result<(), PlanError> {
        let model = self.model;
        let n = model.components.len();
        let index: FastMap<&ComponentId, usize> = model
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect();
        // 1. One converge task per component, with its unconditional reason if any.
        let mut seeds: Vec<Option<Reason>> = Vec::with_capacity(n);
        for (i, c) in model.components.iter().enumerate() {
            Self::check_action(c, "create")?;
            let st = static_inputs_cow(c);
            let hash = desired_hash(c, &st);
            let rec = actual.get(&c.id);
            let reason = if all {
                Some(Reason::Forced)
            } else {
                match rec {
                    None => Some(Reason::New),
                    Some(r) if !matches!(r.status, ComponentStatus::Applied) => Some(Reason::Retry),
                    Some(r) if r.desired_hash != hash => Some(Reason::Changed),
                    Some(r) if r.drift.is_some() => Some(Reason::Drift),
                    Some(_) => None,
                }
            };
            seeds.push(reason);
            self.add(
                Task {
                    id: TaskId::new(&c.id, "create"),
                    component: c.id.clone(),
                    action: "create".to_owned(),
                    op: TaskOp::Converge,
                    node: self.nodes_of[i].map(str::to_owned),
                    reason: Reason::New,
                    conditional: false,
                    step: Vec::new(),
                    desired_hash: hash,
                },
                false,
            );
        }
        // A node that is gone (drift) is made again empty: everything placed on it must
        // run again, not only what its outputs feed.
        if !all {
            let gone: HashSet<&str> = model
                .components
                .iter()
                .filter(|c| c.realizes_node)
                .filter(|c| {
                    actual
                        .get(&c.id)
                        .is_some_and(|r| matches!(r.drift, Some(crate::state::DriftMark::Missing)))
                })
                .filter_map(|c| c.node.as_deref())
                .collect();
            if !gone.is_empty() {
                for (i, c) in model.components.iter().enumerate() {
                    if !c.realizes_node
                        && seeds[i].is_none()
                        && c.node.as_deref().is_some_and(|n| gone.contains(n))
                    {
                        seeds[i] = Some(Reason::Drift);
                    }
                }
            }
        }
        // 2. Dependency edges.
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, c) in model.components.iter().enumerate() {
            let mut seen: HashSet<usize> = HashSet::new();
            for d in &c.depends_on {
                let Some(&j) = index.get(&d.on) else {
                    return Err(PlanError::UnknownDependency {
                        service: self.service(),
                        component: c.id.clone(),
                        on: d.on.clone(),
                        reason: d.reason.clone(),
                    });
                };
                if seen.insert(j) {
                    self.graph.add_edge(
                        NodeIndex::new(j),
                        NodeIndex::new(i),
                        Edge::Dependency(d.reason.clone()),
                    );
                    dependents[j].push(i);
                }
            }
        }
        // 3. Stale inputs: the digest of inputs and dependencies' outputs, from actual
        // state, differs from the recorded one.
        if !all {
            for (i, c) in model.components.iter().enumerate() {
                if seeds[i].is_some() {
                    continue;
                }
                let Some(rec) = actual.get(&c.id) else {
                    continue;
                };
                let linked = crate::resolve::linked_values(c, |p| {
                    actual.get(p).map(|r| crate::resolve::ProducerValues {
                        outputs: &r.outputs,
                        inputs: &r.inputs,
                    })
                });
                let digest = input_digest(
                    dependency_ids(c)
                        .map(|d| (d, actual.get(d).map(|r| r.outputs_digest.as_str()))),
                    linked.iter().map(|(k, v)| (*k, *v)),
                );
                let stale = digest != rec.input_digest;
                if stale {
                    seeds[i] = Some(Reason::InputsChanged);
                }
            }
        }
        // 4. Planned: the seeds, and conditionally everything downstream of them.
        let mut queue: Vec<usize> = Vec::new();
        for (i, seed) in seeds.into_iter().enumerate() {
            if let Some(reason) = seed {
                self.planned[i] = true;
                self.graph[NodeIndex::new(i)].reason = reason;
                queue.push(i);
            }
        }
        while let Some(i) = queue.pop() {
            for &j in &dependents[i] {
                if !self.planned[j] {
                    self.planned[j] = true;
                    let t = &mut self.graph[NodeIndex::new(j)];
                    t.conditional = true;
                    t.reason = Reason::Downstream {
                        of: model.components[i].id.clone(),
                    };
                    queue.push(j);
                }
            }
        }
        // 5. Deletes of components that left the model.
        self.removed(actual, &index)?;
        // 6. The `create` workflow.
        if let Some(wf) = model.workflows.get("create") {
            self.workflow(wf)?;
        }
        Ok(())
    }

    fn removed(
        &mut self,
        actual: &ActualState,
        index: &FastMap<&ComponentId, usize>,
    ) -> Result<(), PlanError> {
        let mut removed: HashMap<&ComponentId, NodeIndex> = HashMap::new();
        for (id, rec) in &actual.components {
            if index.contains_key(id) {
                continue;
            }
            let t = self.add(
                Task {
                    id: TaskId::new(id, "delete"),
                    component: id.clone(),
                    action: "delete".to_owned(),
                    op: TaskOp::Delete,
                    node: rec.node.clone(),
                    reason: Reason::Removed,
                    conditional: false,
                    step: Vec::new(),
                    desired_hash: rec.desired_hash.clone(),
                },
                true,
            );
            removed.insert(id, t);
        }
        if removed.is_empty() {
            return Ok(());
        }
        let mut on_node: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in self.nodes_of.iter().enumerate() {
            if let Some(n) = n {
                on_node.entry(n).or_default().push(i);
            }
        }
        for (id, &t) in &removed {
            let Some(rec) = actual.get(id) else { continue };
            for d in &rec.depends_on {
                if let Some(&dt) = removed.get(d) {
                    self.graph.add_edge(t, dt, Edge::ReverseDependency);
                }
            }
            if let Some(node) = &rec.node
                && let Some(slots) = on_node.get(node.as_str())
            {
                for &s in slots {
                    self.graph
                        .add_edge(t, NodeIndex::new(s), Edge::RemovedFromNode(node.clone()));
                }
            }
        }
        Ok(())
    }

    fn delete_all(&mut self, actual: &ActualState) -> Result<(), PlanError> {
        let mut idx: HashMap<&ComponentId, NodeIndex> = HashMap::new();
        for (id, rec) in &actual.components {
            let t = self.add(
                Task {
                    id: TaskId::new(id, "delete"),
                    component: id.clone(),
                    action: "delete".to_owned(),
                    op: TaskOp::Delete,
                    node: rec.node.clone(),
                    reason: Reason::DeleteRequested,
                    conditional: false,
                    step: Vec::new(),
                    desired_hash: rec.desired_hash.clone(),
                },
                true,
            );
            idx.insert(id, t);
        }
        for (id, rec) in &actual.components {
            let Some(&t) = idx.get(id) else { continue };
            let mut seen = HashSet::new();
            for d in &rec.depends_on {
                if let Some(&dt) = idx.get(d)
                    && seen.insert(dt)
                {
                    self.graph.add_edge(t, dt, Edge::ReverseDependency);
                }
            }
        }
        Ok(())
    }

    fn action(&mut self, req: &ActionRequest) -> Result<(), PlanError> {
        let model = self.model;
        let mut any = false;
        let group_of: HashMap<&str, &str> = model
            .nodes
            .iter()
            .rev()
            .filter_map(|x| Some((x.name.as_str(), x.group.as_deref()?)))
            .collect();
        for (i, c) in model.components.iter().enumerate() {
            if !ref_matches(&req.target.component, &c.reference) {
                continue;
            }
            if let Some(n) = &req.target.node {
                let node = self.nodes_of[i];
                let group = node.and_then(|nn| group_of.get(nn).copied());
                if node != Some(n.as_str()) && group != Some(n.as_str()) {
                    continue;
                }
            }
            Self::check_action(c, &req.target.action)?;
            any = true;
            self.add(
                Task {
                    id: TaskId::new(&c.id, &req.target.action),
                    component: c.id.clone(),
                    action: req.target.action.clone(),
                    op: TaskOp::Action {
                        params: req.params.clone(),
                    },
                    node: self.nodes_of[i].map(str::to_owned),
                    reason: Reason::Requested,
                    conditional: false,
                    step: Vec::new(),
                    desired_hash: desired_hash(c, &static_inputs(c)),
                },
                true,
            );
        }
        if !any {
            return Err(PlanError::NoMatchingComponent {
                service: self.service(),
                target: req.target.to_string(),
            });
        }
        Ok(())
    }

    // ---- explicit workflows ----

    fn workflow(&mut self, wf: &Workflow) -> Result<(), PlanError> {
        self.steps(&wf.name, &wf.subtasks, wf.subtask_order, &[])?;
        Ok(())
    }

    fn steps(
        &mut self,
        wf: &str,
        subtasks: &[Subtask],
        order: SubtaskOrder,
        path: &[String],
    ) -> Result<Block, PlanError> {
        let mut blocks = Vec::with_capacity(subtasks.len());
        for (i, st) in subtasks.iter().enumerate() {
            let mut p = path.to_vec();
            p.push(st.name.clone().unwrap_or_else(|| format!("step {}", i + 1)));
            blocks.push(self.step(wf, st, &p)?);
        }
        Ok(match order {
            SubtaskOrder::Sequential => self.sequence(blocks, path),
            SubtaskOrder::Concurrent => Block::union(blocks),
        })
    }

    fn sequence(&mut self, blocks: Vec<Block>, _path: &[String]) -> Block {
        let mut out = Block::default();
        let mut prev: Option<(Vec<NodeIndex>, String)> = None;
        for b in blocks {
            if b.is_empty() {
                continue;
            }
            match &prev {
                Some((exits, _)) => {
                    for &e in exits {
                        for &n in &b.entries {
                            if e != n {
                                self.graph.add_edge(e, n, Edge::Workflow(b.label.clone()));
                            }
                        }
                    }
                }
                None => {
                    out.entries = b.entries.clone();
                    out.label = b.label.clone();
                }
            }
            prev = Some((b.exits, b.label));
        }
        if let Some((exits, _)) = prev {
            out.exits = exits;
        }
        out
    }

    fn step_nodes(
        &self,
        wf: &str,
        st: &Subtask,
        path: &[String],
    ) -> Result<Option<Vec<&'m str>>, PlanError> {
        let model = self.model;
        let name = match &st.node {
            None => return Ok(None),
            Some(NodeSelector::Node(n)) => {
                if let Some(node) = model.nodes.iter().find(|x| &x.name == n) {
                    return Ok(Some(vec![node.name.as_str()]));
                }
                n
            }
            Some(NodeSelector::Group(g)) => g,
        };
        let members: Vec<&str> = model
            .nodes
            .iter()
            .filter(|x| x.group.as_deref() == Some(name.as_str()))
            .map(|x| x.name.as_str())
            .collect();
        if members.is_empty() {
            return Err(PlanError::UnknownNode {
                service: self.service(),
                workflow: wf.to_owned(),
                step: path.join(" / "),
                node: name.clone(),
            });
        }
        Ok(Some(members))
    }

    /// The component slots (indices of converge tasks) matching `r` on `node` (any node
    /// when `None`).
    fn find_components(&self, r: &ComponentRef, node: Option<&str>) -> Vec<usize> {
        self.model
            .components
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                ref_matches(r, &c.reference) && (node.is_none() || self.nodes_of[*i] == node)
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn label_step(&mut self, t: NodeIndex, path: &[String]) {
        let task = &mut self.graph[t];
        if task.step.is_empty() {
            task.step = path.to_vec();
        }
    }

    fn step(&mut self, wf: &str, st: &Subtask, path: &[String]) -> Result<Block, PlanError> {
        let label = path.join(" / ");
        let nodes = self.step_nodes(wf, st, path)?;
        let node_list: Vec<Option<&str>> = match &nodes {
            None => vec![None],
            Some(v) => v.iter().map(|n| Some(*n)).collect(),
        };
        let mut parts: Vec<Block> = Vec::new();
        // Components (their `create`).
        if !st.components.is_empty() {
            let mut per_node = Vec::new();
            for &node in &node_list {
                let mut chain: Vec<Vec<NodeIndex>> = Vec::new();
                for r in &st.components {
                    let found = self.find_components(r, node);
                    if found.is_empty() {
                        return Err(PlanError::UnknownWorkflowComponent {
                            service: self.service(),
                            workflow: wf.to_owned(),
                            step: label.clone(),
                            component: r.to_string(),
                            node: node.map(str::to_owned),
                        });
                    }
                    let ts: Vec<NodeIndex> = found.into_iter().map(NodeIndex::new).collect();
                    for &t in &ts {
                        self.label_step(t, path);
                    }
                    chain.push(ts);
                }
                if st.ordered {
                    per_node.push(
                        self.sequence(
                            chain
                                .into_iter()
                                .map(|ts| Block::of(ts, label.clone()))
                                .collect(),
                            path,
                        ),
                    );
                } else {
                    per_node.push(Block::of(
                        chain.into_iter().flatten().collect(),
                        label.clone(),
                    ));
                }
            }
            parts.push(Block::union(per_node));
        }
        // `cmp.action` steps, in order.
        if !st.actions.is_empty() {
            let mut per_node = Vec::new();
            for &node in &node_list {
                let mut chain = Vec::new();
                for a in &st.actions {
                    let want = a.component.node.as_deref().or(node);
                    let found = self.find_components(&a.component.component, want);
                    if found.is_empty() {
                        return Err(PlanError::UnknownWorkflowComponent {
                            service: self.service(),
                            workflow: wf.to_owned(),
                            step: label.clone(),
                            component: a.component.to_string(),
                            node: want.map(str::to_owned),
                        });
                    }
                    let mut ts = Vec::new();
                    for i in found {
                        let c = &self.model.components[i];
                        Self::check_action(c, &a.action)?;
                        let mut id = TaskId::new(&c.id, &a.action);
                        let mut k = 2;
                        while self.graph.node_weights().any(|t| t.id == id) {
                            id = TaskId(format!("{}#{k}", TaskId::new(&c.id, &a.action)));
                            k += 1;
                        }
                        let create = NodeIndex::new(i);
                        let planned = self.planned[i];
                        let t = self.add(
                            Task {
                                id,
                                component: c.id.clone(),
                                action: a.action.clone(),
                                op: TaskOp::Action {
                                    params: a.params.clone(),
                                },
                                node: self.nodes_of[i].map(str::to_owned),
                                reason: Reason::WorkflowStep,
                                conditional: true,
                                step: path.to_vec(),
                                desired_hash: self.graph[create].desired_hash.clone(),
                            },
                            planned,
                        );
                        self.graph.add_edge(create, t, Edge::Follows);
                        ts.push(t);
                    }
                    chain.push(Block::of(ts, label.clone()));
                }
                per_node.push(self.sequence(chain, path));
            }
            parts.push(Block::union(per_node));
        }
        // Nested steps.
        if !st.subtasks.is_empty() {
            parts.push(self.steps(wf, &st.subtasks, st.subtask_order, path)?);
        }
        let mut b = self.sequence(parts, path);
        b.label = label;
        Ok(b)
    }
}

/// The component ids a component depends on, deduplicated, in declaration order.
pub(crate) fn dependency_ids(c: &ComponentInstance) -> impl Iterator<Item = &ComponentId> {
    c.depends_on
        .iter()
        .enumerate()
        .filter(|(i, d)| !c.depends_on[..*i].iter().any(|e| e.on == d.on))
        .map(|(_, d)| &d.on)
}

/// A part of a workflow: the tasks that start it and those that end it.
#[derive(Debug, Default)]
struct Block {
    entries: Vec<NodeIndex>,
    exits: Vec<NodeIndex>,
    label: String,
}

impl Block {
    fn of(tasks: Vec<NodeIndex>, label: String) -> Block {
        Block {
            entries: tasks.clone(),
            exits: tasks,
            label,
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn union(blocks: Vec<Block>) -> Block {
        let mut out = Block::default();
        let (mut in_seen, mut out_seen) = (HashSet::new(), HashSet::new());
        for b in blocks {
            if out.label.is_empty() {
                out.label = b.label.clone();
            }
            out.entries
                .extend(b.entries.into_iter().filter(|e| in_seen.insert(*e)));
            out.exits
                .extend(b.exits.into_iter().filter(|e| out_seen.insert(*e)));
        }
        out
    }
}
