//! Workflows of assemblies and service documents: subtasks and their steps.

use std::collections::BTreeMap;

use crate::diag::{Location, did_you_mean};
use crate::dsl::decode::{Ctx, child, found, index, node_value, shorten};
use crate::dsl::index::Index;
use crate::dsl::scope::{Scope, list};
use crate::ident::{ComponentRef, NodeComponentRef, ParseRefError, check_name};
use crate::module::{ActionStep, NodeSelector, Subtask, SubtaskOrder, Workflow};
use crate::yaml::{YamlKind, YamlNode};

/// The pseudo node name the original dtk used for steps that run on no node.
pub(crate) const ASSEMBLY_WIDE: &str = "assembly_wide";

/// How the steps of a workflow are checked against its assembly.
#[derive(Clone, Copy)]
pub(crate) enum StepCheck<'a> {
    /// Not at all (module-level workflows, which belong to no assembly).
    None,
    /// Whether named nodes are nodes or node groups (service documents: a component or a
    /// node deleted from a service may stay named in its workflow, as in the original
    /// dtk).
    Nodes(&'a Index),
    /// Nodes and components (assemblies).
    Full(&'a Scope<'a>, &'a Index),
}

const SUBTASK_KEYS: &[&str] = &[
    "name",
    "node",
    "node_group",
    "nodes",
    "subtask_order",
    "subtasks",
    "components",
    "component",
    "ordered_components",
    "ordered_component",
    "actions",
    "action",
    "params",
    "parameters",
    "breakpoint",
];
/// Keys that make a workflow a single step (the original dtk's short form).
const STEP_KEYS: &[&str] = &[
    "name",
    "node",
    "node_group",
    "nodes",
    "components",
    "component",
    "ordered_components",
    "ordered_component",
    "actions",
    "action",
    "params",
    "parameters",
    "breakpoint",
];

/// The values of a subtask's `nodes` (the original's multi-node form): every node holding
/// the step's components, which is what a step without `node` means.
const ALL_APPLICABLE: &[&str] = &["All_applicable", "All", "All_Applicable", "AllApplicable"];

/// The key of the original's legacy form of a single workflow: `{assembly_action: NAME,
/// subtasks: [...]}` in place of `{NAME: {subtasks: [...]}}`.
const LEGACY_NAME_KEY: &str = "assembly_action";

/// Decodes a mapping of workflows (`actions:` of an assembly or service).
pub(crate) fn workflows(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    check: StepCheck<'_>,
) -> BTreeMap<String, Workflow> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, path, "the workflows") else {
        return out;
    };
    if let Some(name_node) = node.get(LEGACY_NAME_KEY) {
        let Some(name) = ctx.name(name_node, &child(path, LEGACY_NAME_KEY), "workflow name") else {
            return out;
        };
        let rest = YamlNode {
            kind: YamlKind::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.scalar() != Some(LEGACY_NAME_KEY))
                    .cloned()
                    .collect(),
            ),
            at: node.at,
        };
        if let Some(w) = workflow(ctx, &name, &rest, path, check) {
            out.insert(name, w);
        }
        return out;
    }
    for (k, v) in entries {
        let Some(name) = k.scalar() else { continue };
        let p = child(path, name);
        if !ctx.check_name_at(name, k.at, &p, "workflow name") {
            continue;
        }
        if let Some(w) = workflow(ctx, name, v, &p, check) {
            out.insert(name.to_owned(), w);
        }
    }
    out
}

fn workflow(
    ctx: &mut Ctx,
    name: &str,
    node: &YamlNode,
    path: &str,
    check: StepCheck<'_>,
) -> Option<Workflow> {
    let entries = ctx.map(node, path, "a workflow")?;
    let is_step = entries
        .iter()
        .any(|(k, _)| k.scalar().is_some_and(|k| STEP_KEYS.contains(&k)));
    if is_step {
        // The short form: the workflow is one step.
        let step = subtask(ctx, node, path, check, None)?;
        return Some(Workflow {
            name: name.to_owned(),
            subtask_order: SubtaskOrder::default(),
            subtasks: vec![step],
            at: node.at,
        });
    }
    ctx.check_keys(entries, path, SUBTASK_KEYS, "a workflow");
    let mut w = Workflow {
        name: name.to_owned(),
        subtask_order: SubtaskOrder::default(),
        subtasks: Vec::new(),
        at: node.at,
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "subtask_order" => w.subtask_order = order(ctx, v, &p).unwrap_or_default(),
            "subtasks" => w.subtasks = subtasks(ctx, v, &p, check, None),
            _ => {}
        }
    }
    if !entries.iter().any(|(k, _)| k.scalar() == Some("subtasks")) {
        ctx.error_help(
            node.at,
            path,
            format!("workflow `{name}` has no `subtasks`"),
            "list its steps under `subtasks`",
        );
    }
    Some(w)
}

fn order(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Option<SubtaskOrder> {
    match node.scalar() {
        Some("sequential") => Some(SubtaskOrder::Sequential),
        Some("concurrent") => Some(SubtaskOrder::Concurrent),
        other => {
            let help = match other.and_then(|o| did_you_mean(o, ["sequential", "concurrent"])) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "write `sequential` or `concurrent`".to_owned(),
            };
            ctx.error_help(
                node.at,
                path,
                format!(
                    "`subtask_order` must be `sequential` or `concurrent`, found {}",
                    found(node)
                ),
                help,
            );
            None
        }
    }
}

fn subtasks(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    check: StepCheck<'_>,
    parent_node: Option<&str>,
) -> Vec<Subtask> {
    let Some(items) = ctx.seq(node, path, "`subtasks`") else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| subtask(ctx, item, &index(path, i), check, parent_node))
        .collect()
}

fn subtask(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    check: StepCheck<'_>,
    parent_node: Option<&str>,
) -> Option<Subtask> {
    let entries = ctx.map(node, path, "a subtask")?;
    ctx.check_keys(entries, path, SUBTASK_KEYS, "a subtask");
    let mut s = Subtask {
        name: None,
        node: None,
        subtask_order: SubtaskOrder::default(),
        components: Vec::new(),
        ordered: false,
        actions: Vec::new(),
        subtasks: Vec::new(),
        breakpoint: false,
        at: node.at,
    };
    // The node first: component checks depend on it.
    let mut node_key: Option<&YamlNode> = None;
    let mut list_key: Option<&YamlNode> = None;
    let mut params = BTreeMap::new();
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "node" | "node_group" => {
                if let Some(prev) = node_key {
                    ctx.error_help(
                        k.at,
                        &p,
                        format!(
                            "a subtask runs on one node; `{}` is given above",
                            prev.scalar().unwrap_or("node")
                        ),
                        "keep one of `node` and `node_group`",
                    );
                    continue;
                }
                node_key = Some(k);
                let Some(name) = ctx.name(v, &p, "node name") else {
                    continue;
                };
                if name == ASSEMBLY_WIDE {
                    continue;
                }
                let group = key == "node_group";
                match check {
                    StepCheck::Full(_, index) => check_node(ctx, index, &name, group, v.at, &p),
                    // A service's workflow may still name a node removed from it (the
                    // original dtk accepted such documents); expansion refuses it.
                    StepCheck::Nodes(index) if index.node(&name).is_some() => {
                        check_node(ctx, index, &name, group, v.at, &p);
                    }
                    _ => {}
                }
                s.node = Some(if group {
                    NodeSelector::Group(name)
                } else {
                    NodeSelector::Node(name)
                });
            }
            "nodes" => {
                if let Some(prev) = node_key {
                    ctx.error_help(
                        k.at,
                        &p,
                        format!(
                            "a subtask runs on one node; `{}` is given above",
                            prev.scalar().unwrap_or("node")
                        ),
                        "keep one of `node`, `node_group` and `nodes`",
                    );
                    continue;
                }
                node_key = Some(k);
                if !v.scalar().is_some_and(|s| ALL_APPLICABLE.contains(&s)) {
                    ctx.error_help(
                        v.at,
                        &p,
                        format!("`nodes` must be `All_applicable`, found {}", found(v)),
                        "`nodes: All_applicable` runs the step on every node holding its components, as a step without `node` does",
                    );
                }
            }
            "params" | "parameters" => {
                if let Some(es) = ctx.map(v, &p, "`params`") {
                    for (pk, pv) in es {
                        if let Some(pk) = pk.scalar() {
                            params.insert(pk.to_owned(), node_value(pv));
                        }
                    }
                }
            }
            "name" => s.name = ctx.text(v, &p, "a subtask's `name`"),
            "subtask_order" => s.subtask_order = order(ctx, v, &p).unwrap_or_default(),
            "breakpoint" => s.breakpoint = ctx.bool(v, &p, "`breakpoint`").unwrap_or(false),
            _ => {}
        }
    }
    let on_node_owned: Option<String> = match &s.node {
        Some(NodeSelector::Node(n) | NodeSelector::Group(n)) => Some(n.clone()),
        None => parent_node.map(str::to_owned),
    };
    let on_node = on_node_owned.as_deref();
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "components" | "component" | "ordered_components" | "ordered_component" | "actions"
            | "action" => {
                if let Some(prev) = list_key {
                    ctx.error_help(
                        k.at,
                        &p,
                        format!(
                            "a subtask has one list of steps; `{}` is given above",
                            prev.scalar().unwrap_or("components")
                        ),
                        "split the steps into nested `subtasks`",
                    );
                    continue;
                }
                list_key = Some(k);
                s.ordered = key.starts_with("ordered_");
                step_items(ctx, &mut s, v, &p, check, on_node);
            }
            "subtasks" => s.subtasks = subtasks(ctx, v, &p, check, on_node),
            _ => {}
        }
    }
    if list_key.is_none() && entries.iter().all(|(k, _)| k.scalar() != Some("subtasks")) {
        ctx.error_help(
            node.at,
            path,
            "a subtask does nothing: it has no `components`, `ordered_components`, `actions` or `subtasks`",
            "list the components to converge, e.g. `components: [web]`",
        );
    }
    if !params.is_empty() {
        for a in &mut s.actions {
            for (k, v) in &params {
                a.params.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Some(s)
}

fn check_node(ctx: &mut Ctx, index: &Index, name: &str, group: bool, at: Location, path: &str) {
    match index.node(name) {
        Some(g) if g == group => {}
        Some(true) => ctx.error_help(
            at,
            path,
            format!("`{name}` is a node group"),
            format!("write `node_group: {name}`"),
        ),
        Some(false) => ctx.error_help(
            at,
            path,
            format!("`{name}` is a node, not a node group"),
            format!("write `node: {name}`"),
        ),
        None => {
            let help = match did_you_mean(name, index.node_names()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if index.nodes.is_empty() => "there are no nodes here".to_owned(),
                None => format!("the nodes are {}", list(index.node_names())),
            };
            ctx.error_help(at, path, format!("no node `{name}` here"), help);
        }
    }
}

/// A step item: `cmp`, `cmp[inst]`, `cmp.action`, `cmp[inst].action`, `node/cmp.action`.
enum Item {
    Component(ComponentRef),
    Action(NodeComponentRef, String),
}

fn parse_item(text: &str) -> Result<Item, String> {
    let t = text.trim();
    let (node, rest) = match t.split_once('/') {
        Some((n, r)) => {
            check_name("node name", n).map_err(|e| e.reason)?;
            (Some(n.to_owned()), r)
        }
        None => (None, t),
    };
    let (cmp, action) = if let Some(close) = rest.rfind(']') {
        let after = &rest[close + 1..];
        if after.is_empty() {
            (rest, None)
        } else if let Some(a) = after.strip_prefix('.') {
            (&rest[..=close], Some(a))
        } else {
            return Err("expected `.ACTION` after `]`".to_owned());
        }
    } else {
        let (module_len, name_part) = match rest.rfind("::") {
            Some(i) => (i + 2, &rest[i + 2..]),
            None => (0, rest),
        };
        match name_part.split_once('.') {
            Some((_, a)) if a.contains('.') => {
                return Err("expected at most one `.` (`component.action`)".to_owned());
            }
            Some((c, a)) => (&rest[..module_len + c.len()], Some(a)),
            None => (rest, None),
        }
    };
    let component: ComponentRef = cmp.parse().map_err(|e: ParseRefError| e.reason)?;
    match action {
        Some(a) => {
            check_name("action name", a).map_err(|e| format!("action name: {}", e.reason))?;
            Ok(Item::Action(NodeComponentRef { node, component }, a.to_owned()))
        }
        None if node.is_some() => Err("a node prefix is only allowed with an action (`node/cmp.action`); put the step on the node with `node:`".to_owned()),
        None => Ok(Item::Component(component)),
    }
}

fn step_items(
    ctx: &mut Ctx,
    s: &mut Subtask,
    node: &YamlNode,
    path: &str,
    check: StepCheck<'_>,
    on_node: Option<&str>,
) {
    let items: Vec<&YamlNode> = match &node.kind {
        YamlKind::Seq(items) => items.iter().collect(),
        YamlKind::Scalar { .. } if !node.is_null() => vec![node],
        _ if node.is_null() => Vec::new(),
        _ => {
            ctx.error_help(
                node.at,
                path,
                format!("the steps must be a list, found {}", found(node)),
                "write `[cmp, cmp.action]`",
            );
            return;
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let p = index(path, i);
        let (text, at, params) = match &item.kind {
            YamlKind::Scalar { text, .. } if !item.is_null() => (text.as_str(), item.at, None),
            YamlKind::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                let Some(t) = k.scalar() else { continue };
                (t, k.at, Some(v))
            }
            _ => {
                ctx.error_help(
                    item.at,
                    &p,
                    format!(
                        "a step must be `component` or `component.action`, found {}",
                        found(item)
                    ),
                    "write `cmp`, `cmp[inst]`, `cmp.action` or `cmp.action: {param: value}`",
                );
                continue;
            }
        };
        let parsed = match parse_item(text) {
            Ok(it) => it,
            Err(why) => {
                ctx.error_help(
                    at,
                    &p,
                    format!("invalid step `{}`: {why}", shorten(text)),
                    "write `cmp`, `cmp[inst]`, `cmp.action` or `cmp[inst].action`",
                );
                continue;
            }
        };
        match parsed {
            Item::Component(r) => {
                if params.is_some() {
                    ctx.error_help(
                        at,
                        &p,
                        format!("step `{r}` has parameters but no action"),
                        "parameters go to an action: `cmp.action: {param: value}`",
                    );
                    continue;
                }
                if let StepCheck::Full(scope, index) = check {
                    check_step_component(ctx, scope, index, &r, on_node, at, &p);
                }
                s.components.push(r);
            }
            Item::Action(target, action) => {
                let mut map = BTreeMap::new();
                if let Some(pv) = params
                    && let Some(es) = ctx.map(pv, &p, "an action's parameters")
                {
                    for (pk, v) in es {
                        if let Some(pk) = pk.scalar() {
                            map.insert(pk.to_owned(), node_value(v));
                        }
                    }
                }
                if let StepCheck::Full(scope, index) = check {
                    let where_ = target.node.as_deref().or(on_node);
                    if let Some(n) = &target.node
                        && index.node(n).is_none()
                    {
                        check_node(ctx, index, n, false, at, &p);
                    }
                    if check_step_component(ctx, scope, index, &target.component, where_, at, &p) {
                        check_action(ctx, scope, &target.component, &action, at, &p);
                    }
                }
                s.actions.push(ActionStep {
                    component: target,
                    action,
                    params: map,
                    at,
                });
            }
        }
    }
}

fn check_step_component(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    index: &Index,
    r: &ComponentRef,
    on_node: Option<&str>,
    at: Location,
    path: &str,
) -> bool {
    if index.find(scope, r, on_node) {
        return true;
    }
    if on_node.is_some_and(|n| index.node(n).is_none()) {
        // The node itself is missing; already reported.
        return false;
    }
    let place = match on_node {
        Some(n) => format!("on node `{n}`"),
        None => "in this assembly".to_owned(),
    };
    let help = match on_node {
        Some(_) if index.find(scope, r, None) => {
            "it is declared on another node: fix the step's `node`".to_owned()
        }
        _ => "a workflow step names a component declared in its assembly's `components`".to_owned(),
    };
    ctx.error_help(
        at,
        path,
        format!("workflow step names component `{r}`, which is not {place}"),
        help,
    );
    false
}

fn check_action(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    r: &ComponentRef,
    action: &str,
    at: Location,
    path: &str,
) {
    let Some(def) = scope.def(&scope.target(r)) else {
        return;
    };
    if def.actions.contains_key(action) {
        return;
    }
    let help = match did_you_mean(action, def.actions.keys().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None if def.actions.is_empty() => format!("component `{}` has no actions", def.name),
        None => format!(
            "its actions are {}",
            list(def.actions.keys().map(String::as_str))
        ),
    };
    ctx.error_help(
        at,
        path,
        format!("component `{r}` has no action `{action}`"),
        help,
    );
}
