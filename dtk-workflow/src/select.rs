//! Targeted converges: `converge --only REF...`, `--exclude REF...` and `--replace REF...`.
//!
//! A [`Selection`] reshapes the converge plan that [`build_graph`] makes, before the cycle
//! check and the pruning of [`PlanGraph::into_plan`]; [`plan_selected`] does both. Pure,
//! like the planner.
//!
//! - **Replace** plans a `delete` of the component (when it was ever applied) and then its
//!   `create` (a provider's create, not update: the delete forgot the record). Whatever
//!   consumes its outputs follows conditionally, as after any change; the components on a
//!   replaced node run again unconditionally (the node they were on is gone).
//! - **Only** keeps the tasks of the named components and, before them, every planned
//!   task they depend on (directly or through tasks that are up to date): those carry
//!   [`Reason::NeededBy`]. Every other planned task is left out.
//! - **Exclude** leaves out the tasks of the named components and, when one of them had
//!   something to do, every planned task after it (it would run on stale inputs).
//!
//! What is left out is listed ([`SelectedPlan::left_out`]), each with why.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use dtk_model::ident::ComponentRef;
use dtk_model::instance::{ComponentId, ServiceModel};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use thiserror::Error;

use crate::plan::{Plan, PlanError, PlanGraph, PlanRequest, build_graph};
use crate::state::ActualState;
use crate::task::{Edge, Reason, Task, TaskId, TaskOp};

/// Whether `decl` (as typed) names `actual`: same name and instance, and the same module
/// when `decl` gives one (as workflow steps and `exec` targets match).
fn ref_matches(decl: &ComponentRef, actual: &ComponentRef) -> bool {
    decl.name == actual.name
        && decl.instance == actual.instance
        && (decl.module.is_none() || decl.module == actual.module)
}

/// A component reference as users type it on the command line: `node/cmp[inst]` (a
/// component on a node, a node group, or a group member `workers:2`), `cmp[inst]` (an
/// assembly-level component, or that component on every node), `node` (a node: the
/// component realizing it and every component on it), or a component id (`node[web]`,
/// `vpc[vpc1]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    text: String,
    node: Option<String>,
    component: Option<ComponentRef>,
    bare_node: Option<String>,
}

/// The error returned when a [`Selector`] does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid component reference `{input}`: {reason} (expected `node/cmp[inst]`, `cmp[inst]` or `node`)"
)]
pub struct ParseSelectorError {
    /// The text.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

/// Checks a node name, or a node group member (`workers:2`).
fn check_node(n: &str) -> Result<(), String> {
    let (name, member) = match n.split_once(':') {
        Some((g, k)) => (g, Some(k)),
        None => (n, None),
    };
    dtk_model::ident::check_name("node name", name).map_err(|e| e.reason)?;
    if let Some(k) = member
        && (k.is_empty() || !k.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("`{n}` is not a node group member"));
    }
    Ok(())
}

impl FromStr for Selector {
    type Err = ParseSelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let err = |reason: String| ParseSelectorError {
            input: s.to_owned(),
            reason,
        };
        match text.split_once('/') {
            Some((n, c)) => {
                check_node(n).map_err(err)?;
                let component: ComponentRef = c
                    .parse()
                    .map_err(|e: dtk_model::ident::ParseRefError| err(e.reason))?;
                Ok(Selector {
                    text: text.to_owned(),
                    node: Some(n.to_owned()),
                    component: Some(component),
                    bare_node: None,
                })
            }
            None => {
                let component = text.parse::<ComponentRef>();
                let node = check_node(text);
                if let (Err(e), Err(_)) = (&component, &node) {
                    return Err(err(e.reason.clone()));
                }
                Ok(Selector {
                    text: text.to_owned(),
                    node: None,
                    component: component.ok(),
                    bare_node: node.ok().map(|()| text.to_owned()),
                })
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Selector {
    /// The selector of exactly the component `id`.
    pub fn id(id: &ComponentId) -> Selector {
        Selector {
            text: id.to_string(),
            node: None,
            component: None,
            bare_node: None,
        }
    }

    /// The text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A component to replace, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    /// Which components.
    pub target: Selector,
    /// Why, as the plan says it (`requested`).
    pub why: String,
}

impl Replace {
    /// A replacement the user asked for (`--replace REF`).
    pub fn requested(target: Selector) -> Replace {
        Replace {
            target,
            why: "requested".to_owned(),
        }
    }
}

/// What a converge acts on beyond "what changed" (see the [module documentation](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--only`: these components, and what they need that is not up to date.
    pub only: Vec<Selector>,
    /// `--exclude`: never these components (nor what follows a change of theirs).
    pub exclude: Vec<Selector>,
    /// `--replace`: delete and create these again.
    pub replace: Vec<Replace>,
}

impl Selection {
    /// Whether it changes nothing: a plain converge.
    pub fn is_empty(&self) -> bool {
        self.only.is_empty() && self.exclude.is_empty() && self.replace.is_empty()
    }
}

/// A planned task that a [`Selection`] left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The task.
    pub task: TaskId,
    /// Its component.
    pub component: ComponentId,
    /// Why it was planned.
    pub reason: String,
    /// Why it is left out (`not named by --only`, `excluded`, `after excluded db/db`).
    pub why: String,
}

/// A converge plan made with a [`Selection`].
#[derive(Debug, Clone)]
pub struct SelectedPlan {
    /// What runs.
    pub plan: Plan,
    /// What would have run without the selection, in plan order.
    pub left_out: Vec<LeftOut>,
}

/// The error returned by [`plan_selected`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectError {
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A reference matches nothing.
    #[error(
        "`{}{reference}` matches no component of service `{service}` (it has: {known})",
        option_text(option)
    )]
    NoMatch {
        /// `only`, `exclude` or `replace`; empty outside a converge.
        option: &'static str,
        /// The reference as given.
        reference: String,
        /// The service.
        service: String,
        /// The component ids it has.
        known: String,
    },
}

fn option_text(option: &str) -> String {
    if option.is_empty() {
        String::new()
    } else {
        format!("--{option} ")
    }
}

/// The component ids that `selectors` name in `model` (or, gone from it, in `actual`),
/// each matching at least one; sorted.
pub fn resolve(
    model: &ServiceModel,
    actual: &ActualState,
    selectors: &[Selector],
) -> Result<Vec<ComponentId>, SelectError> {
    let cands = Candidates::new(model, actual);
    let mut out = BTreeSet::new();
    for s in selectors {
        let found = cands.resolve(s, false);
        if found.is_empty() {
            return Err(SelectError::NoMatch {
                option: "",
                reference: s.to_string(),
                service: model.name.clone(),
                known: cands.known(),
            });
        }
        out.extend(found);
    }
    Ok(out.into_iter().collect())
}

/// One component a selector may name: from the model, or recorded and gone from it.
struct Candidate<'a> {
    id: &'a ComponentId,
    node: Option<&'a str>,
    reference: Option<ComponentRef>,
    realizes_node: bool,
    in_model: bool,
}

struct Candidates<'a> {
    all: Vec<Candidate<'a>>,
    /// Node (member) name → its group.
    group: HashMap<&'a str, &'a str>,
}

impl<'a> Candidates<'a> {
    fn new(model: &'a ServiceModel, actual: &'a ActualState) -> Self {
        let realized: HashMap<&ComponentId, &str> = model
            .nodes
            .iter()
            .filter_map(|n| Some((n.realized_by.as_ref()?, n.name.as_str())))
            .collect();
        let mut all: Vec<Candidate<'a>> = model
            .components
            .iter()
            .map(|c| Candidate {
                id: &c.id,
                node: c.node.as_deref().or_else(|| realized.get(&c.id).copied()),
                reference: (!c.realizes_node).then(|| c.reference.clone()),
                realizes_node: c.realizes_node,
                in_model: true,
            })
            .collect();
        let in_model: HashSet<&ComponentId> = model.components.iter().map(|c| &c.id).collect();
        for (id, rec) in &actual.components {
            if in_model.contains(id) {
                continue;
            }
            let part = id.as_str().split_once('/').map_or(id.as_str(), |(_, c)| c);
            all.push(Candidate {
                id,
                node: rec.node.as_deref(),
                reference: (!rec.realizes_node).then(|| part.parse().ok()).flatten(),
                realizes_node: rec.realizes_node,
                in_model: false,
            });
        }
        let group = model
            .nodes
            .iter()
            .filter_map(|n| Some((n.name.as_str(), n.group.as_deref()?)))
            .collect();
        Candidates { all, group }
    }

    /// Whether node `node` is `name`, or a member of group `name`.
    fn on_node(&self, node: Option<&str>, name: &str) -> bool {
        let Some(node) = node else { return false };
        if node == name {
            return true;
        }
        let group = self
            .group
            .get(node)
            .copied()
            .or_else(|| node.rsplit_once(':').map(|(g, _)| g));
        group == Some(name)
    }

    fn resolve(&self, s: &Selector, models_only: bool) -> BTreeSet<ComponentId> {
        let pool = || self.all.iter().filter(|c| c.in_model || !models_only);
        let exact: BTreeSet<ComponentId> = pool()
            .filter(|c| c.id.as_str() == s.text)
            .map(|c| c.id.clone())
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        if let (Some(n), Some(r)) = (&s.node, &s.component) {
            return pool()
                .filter(|c| {
                    self.on_node(c.node, n)
                        && c.reference.as_ref().is_some_and(|cr| ref_matches(r, cr))
                })
                .map(|c| c.id.clone())
                .collect();
        }
        if let Some(n) = &s.bare_node {
            let on: BTreeSet<ComponentId> = pool()
                .filter(|c| self.on_node(c.node, n))
                .map(|c| c.id.clone())
                .collect();
            if !on.is_empty() {
                return on;
            }
        }
        match &s.component {
            Some(r) => pool()
                .filter(|c| !c.realizes_node)
                .filter(|c| c.reference.as_ref().is_some_and(|cr| ref_matches(r, cr)))
                .map(|c| c.id.clone())
                .collect(),
            None => BTreeSet::new(),
        }
    }

    fn known(&self) -> String {
        let ids: Vec<&str> = self.all.iter().map(|c| c.id.as_str()).collect();
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    }
}

/// Plans a converge of `model` given `actual`, reshaped by `selection` (see the [module
/// documentation](self)). An empty selection gives [`crate::plan()`]'s converge plan.
pub fn plan_selected(
    model: &ServiceModel,
    actual: &ActualState,
    selection: &Selection,
) -> Result<SelectedPlan, SelectError> {
    let mut g = build_graph(model, actual, &PlanRequest::Converge)?;
    if selection.is_empty() {
        return Ok(SelectedPlan {
            plan: g.into_plan()?,
            left_out: Vec::new(),
        });
    }
    let cands = Candidates::new(model, actual);
    let resolve = |option: &'static str, s: &Selector, models_only: bool| {
        let found = cands.resolve(s, models_only);
        if found.is_empty() {
            Err(SelectError::NoMatch {
                option,
                reference: s.to_string(),
                service: model.name.clone(),
                known: cands.known(),
            })
        } else {
            Ok(found)
        }
    };
    let mut replace: Vec<(ComponentId, String)> = Vec::new();
    for r in &selection.replace {
        for id in resolve("replace", &r.target, true)? {
            if !replace.iter().any(|(x, _)| *x == id) {
                replace.push((id, r.why.clone()));
            }
        }
    }
    let mut only: Option<BTreeSet<ComponentId>> = None;
    for s in &selection.only {
        only.get_or_insert_with(BTreeSet::new)
            .extend(resolve("only", s, false)?);
    }
    let mut exclude: BTreeSet<ComponentId> = BTreeSet::new();
    for s in &selection.exclude {
        exclude.extend(resolve("exclude", s, false)?);
    }
    apply_replace(&mut g, model, actual, &replace);
    let mut left_out: HashMap<NodeIndex, String> = HashMap::new();
    if let Some(only) = &only {
        apply_only(&mut g, only, &mut left_out);
    }
    apply_exclude(&mut g, &exclude, &mut left_out);
    let mut left: Vec<(NodeIndex, String)> = left_out.into_iter().collect();
    left.sort_by_key(|(i, _)| *i);
    let left_out = left
        .into_iter()
        .map(|(i, why)| {
            let t = &g.graph[i];
            LeftOut {
                task: t.id.clone(),
                component: t.component.clone(),
                reason: t.reason.to_string(),
                why,
            }
        })
        .collect();
    Ok(SelectedPlan {
        plan: g.into_plan()?,
        left_out,
    })
}

fn add(g: &mut PlanGraph, task: Task, planned: bool) -> NodeIndex {
    g.planned.push(planned);
    g.graph.add_node(task)
}

fn apply_replace(
    g: &mut PlanGraph,
    model: &ServiceModel,
    actual: &ActualState,
    replace: &[(ComponentId, String)],
) {
    if replace.is_empty() {
        return;
    }
    let creates: HashMap<ComponentId, NodeIndex> = g
        .graph
        .node_indices()
        .filter(|&i| g.graph[i].op == TaskOp::Converge)
        .map(|i| (g.graph[i].component.clone(), i))
        .collect();
    let mut queue: Vec<NodeIndex> = Vec::new();
    for (id, why) in replace {
        let Some(&ci) = creates.get(id) else { continue };
        let reason = Reason::Replace { why: why.clone() };
        g.planned[ci.index()] = true;
        let (node, step) = {
            let t = &mut g.graph[ci];
            t.reason = reason.clone();
            t.conditional = false;
            (t.node.clone(), t.step.clone())
        };
        if let Some(rec) = actual.get(id) {
            let del = add(
                g,
                Task {
                    id: TaskId::new(id, "delete"),
                    component: id.clone(),
                    action: "delete".to_owned(),
                    op: TaskOp::Delete,
                    node: node.clone(),
                    reason,
                    conditional: false,
                    step,
                    desired_hash: rec.desired_hash.clone(),
                },
                true,
            );
            g.graph.add_edge(
                del,
                ci,
                Edge::Dependency("replace: delete first".to_owned()),
            );
        }
        queue.push(ci);
        // A replaced node is made again empty: everything on it runs again.
        let realizes = model.component(id).is_some_and(|c| c.realizes_node);
        if let (true, Some(n)) = (realizes, node) {
            for c in &model.components {
                if c.realizes_node || c.node.as_deref() != Some(n.as_str()) {
                    continue;
                }
                let Some(&oi) = creates.get(&c.id) else {
                    continue;
                };
                let t = &mut g.graph[oi];
                if !g.planned[oi.index()] || t.conditional {
                    g.planned[oi.index()] = true;
                    t.conditional = false;
                    t.reason = Reason::Replace {
                        why: format!("its node `{n}` is replaced"),
                    };
                    queue.push(oi);
                }
            }
        }
    }
    // What consumes a replaced component follows, if its inputs change.
    while let Some(i) = queue.pop() {
        let next: Vec<NodeIndex> = g
            .graph
            .edges_directed(i, Direction::Outgoing)
            .filter(|e| matches!(e.weight(), Edge::Dependency(_)))
            .map(|e| e.target())
            .filter(|&j| g.graph[j].op == TaskOp::Converge)
            .collect();
        for j in next {
            if !g.planned[j.index()] {
                g.planned[j.index()] = true;
                let of = g.graph[i].component.clone();
                let t = &mut g.graph[j];
                t.conditional = true;
                t.reason = Reason::Downstream { of };
                queue.push(j);
            }
        }
    }
}

fn apply_only(
    g: &mut PlanGraph,
    only: &BTreeSet<ComponentId>,
    left_out: &mut HashMap<NodeIndex, String>,
) {
    let named: Vec<NodeIndex> = g
        .graph
        .node_indices()
        .filter(|&i| only.contains(&g.graph[i].component))
        .collect();
    let mut keep: HashSet<NodeIndex> = named.iter().copied().collect();
    let mut needed_by: HashMap<NodeIndex, ComponentId> = HashMap::new();
    let mut seen: HashSet<NodeIndex> = keep.clone();
    let mut stack: Vec<(NodeIndex, ComponentId)> = named
        .iter()
        .map(|&i| (i, g.graph[i].component.clone()))
        .collect();
    while let Some((i, of)) = stack.pop() {
        let preds: Vec<NodeIndex> = g.graph.neighbors_directed(i, Direction::Incoming).collect();
        for p in preds {
            if !seen.insert(p) {
                continue;
            }
            if g.planned[p.index()] {
                keep.insert(p);
                needed_by.insert(p, of.clone());
            }
            stack.push((p, of.clone()));
        }
    }
    for i in g.graph.node_indices() {
        if !g.planned[i.index()] {
            continue;
        }
        if !keep.contains(&i) {
            g.planned[i.index()] = false;
            left_out.insert(i, "not named by --only".to_owned());
        } else if let Some(of) = needed_by.remove(&i) {
            let t = &mut g.graph[i];
            let reason = std::mem::replace(&mut t.reason, Reason::New);
            t.reason = Reason::NeededBy {
                of,
                reason: Box::new(reason),
            };
        }
    }
}

fn apply_exclude(
    g: &mut PlanGraph,
    exclude: &BTreeSet<ComponentId>,
    left_out: &mut HashMap<NodeIndex, String>,
) {
    if exclude.is_empty() {
        return;
    }
    let roots: Vec<NodeIndex> = g
        .graph
        .node_indices()
        .filter(|&i| exclude.contains(&g.graph[i].component))
        .collect();
    let mut stack: Vec<(NodeIndex, ComponentId)> = Vec::new();
    for i in roots {
        if g.planned[i.index()] {
            g.planned[i.index()] = false;
            left_out.insert(i, "excluded".to_owned());
            stack.push((i, g.graph[i].component.clone()));
        }
    }
    while let Some((i, of)) = stack.pop() {
        let next: Vec<NodeIndex> = g.graph.neighbors_directed(i, Direction::Outgoing).collect();
        for j in next {
            if g.planned[j.index()] {
                g.planned[j.index()] = false;
                left_out.insert(j, format!("after excluded {of}"));
                stack.push((j, of.clone()));
            }
        }
    }
}
