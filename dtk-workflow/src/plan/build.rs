//! Building the task graph: one task per component (or per recorded component, for
//! deletes; per matching component, for a custom action), the dependency edges, and
//! which tasks are planned.

use std::collections::{HashMap, HashSet};

use dtk_model::ident::ComponentRef;
use dtk_model::instance::{ComponentId, ComponentInstance, ServiceModel};
use dtk_model::module::ActionKind;
use petgraph::graph::{DiGraph, NodeIndex};

use super::{ActionRequest, PlanError, PlanGraph, PlanRequest};
use crate::hash::{FastMap, desired_hash, input_digest, static_inputs, static_inputs_cow};
use crate::state::{ActualState, ComponentStatus};
use crate::task::{Edge, PlanKind, Reason, Task, TaskId, TaskOp};

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

/// Builds a [`PlanGraph`]: the tasks, the edges, and which tasks are planned.
pub(super) struct Builder<'m> {
    pub(super) model: &'m ServiceModel,
    pub(super) graph: DiGraph<Task, Edge>,
    pub(super) planned: Vec<bool>,
    /// Each component's node, by component index.
    pub(super) nodes_of: Vec<Option<&'m str>>,
    /// What workflow steps do (see `named.rs`).
    pub(super) mode: super::request::StepMode,
    /// For each component (by index), the task a workflow's `components:` step names:
    /// `None` for converge (the component's own slot), else filled by the request.
    pub(super) slots: Option<Vec<Option<NodeIndex>>>,
    /// Parameters of a named workflow, given to each of its action steps.
    pub(super) params: dtk_model::value::Attributes,
}

/// Builds every task and edge for `request`, and marks the planned ones, without
/// checking for cycles (see [`plan()`](crate::plan())).
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
        mode: super::request::StepMode::Converge,
        slots: None,
        params: dtk_model::value::Attributes::new(),
    };
    let kind = match request {
        PlanRequest::Converge | PlanRequest::ConvergeAll => {
            b.converge(actual, matches!(request, PlanRequest::ConvergeAll))?;
            PlanKind::Converge
        }
        PlanRequest::Delete => {
            b.delete_all(actual)?;
            b.delete_workflow(actual)?;
            PlanKind::Delete
        }
        PlanRequest::Action(req) => {
            b.action(req)?;
            PlanKind::Action
        }
        PlanRequest::Workflow(req) => {
            b.named_workflow(actual, req)?;
            PlanKind::Workflow
        }
        PlanRequest::ActionOn { components, action } => {
            b.action_on(components, action)?;
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
    pub(super) fn service(&self) -> String {
        self.model.name.clone()
    }

    pub(super) fn add(&mut self, task: Task, planned: bool) -> NodeIndex {
        self.planned.push(planned);
        self.graph.add_node(task)
    }

    pub(super) fn check_action(c: &ComponentInstance, action: &str) -> Result<(), PlanError> {
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
        let hashes = desired_hashes(&model.components);
        for (i, (c, hash)) in model.components.iter().zip(hashes).enumerate() {
            Self::check_action(c, "create")?;
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

    pub(super) fn delete_all(&mut self, actual: &ActualState) -> Result<(), PlanError> {
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
}

impl Builder<'_> {
    /// [`PlanRequest::ActionOn`]: `action` on each of `ids`, in model order.
    fn action_on(&mut self, ids: &[ComponentId], action: &str) -> Result<(), PlanError> {
        let model = self.model;
        let wanted: HashSet<&ComponentId> = ids.iter().collect();
        for (i, c) in model.components.iter().enumerate() {
            if !wanted.contains(&c.id) {
                continue;
            }
            Self::check_action(c, action)?;
            self.add(
                Task {
                    id: TaskId::new(&c.id, action),
                    component: c.id.clone(),
                    action: action.to_owned(),
                    op: TaskOp::Action {
                        params: dtk_model::value::Attributes::new(),
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
        Ok(())
    }
}

/// The desired hashes of `components`, in order. Each is a SHA-256 of a component's
/// definition and inputs, independent of the others: a tenth of a plan of 100,000 on one
/// thread. From `PER_THREAD` components on, the machine's threads share them (scoped
/// threads, each taking a contiguous part).
fn desired_hashes(components: &[ComponentInstance]) -> Vec<String> {
    const PER_THREAD: usize = 8 * 1024;
    let one = |c: &ComponentInstance| desired_hash(c, &static_inputs_cow(c));
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(components.len() / PER_THREAD)
        .max(1);
    if threads == 1 {
        return components.iter().map(one).collect();
    }
    let part = components.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = components.chunks(part);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|p| scope.spawn(move || p.iter().map(one).collect::<Vec<String>>()))
            .collect();
        let mut out: Vec<String> = Vec::with_capacity(components.len());
        out.extend(first.iter().map(one));
        for h in others {
            // A panic in a hash is a bug: it goes on as one, on this thread.
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// The component ids a component depends on, deduplicated, in declaration order.
pub(crate) fn dependency_ids(c: &ComponentInstance) -> impl Iterator<Item = &ComponentId> {
    c.depends_on
        .iter()
        .enumerate()
        .filter(|(i, d)| !c.depends_on[..*i].iter().any(|e| e.on == d.on))
        .map(|(_, d)| &d.on)
}
