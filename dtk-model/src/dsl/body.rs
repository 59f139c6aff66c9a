//! The body shared by assemblies and service documents: the `components:` list (nodes,
//! node groups, components, their attributes and links) and the workflows.

use std::collections::BTreeMap;

use crate::diag::{Location, did_you_mean};
use crate::dsl::decode::{Ctx, child, found, index, node_value, shorten, type_phrase, typed_value};
use crate::dsl::scope::{RefCheck, Scope, list};
use crate::ident::{ComponentRef, NodeComponentRef, ParseRefError, check_name};
use crate::module::{
    ActionStep, AttrValue, ComponentDecl, ComponentDef, LinkDecl, NodeDecl, NodeSelector, Subtask,
    SubtaskOrder, Workflow,
};
use crate::yaml::{YamlKind, YamlNode};

/// The largest `cardinality` of a node group.
pub const MAX_CARDINALITY: u64 = 1000;

/// The pseudo node name the original dtk used for steps that run on no node.
pub(crate) const ASSEMBLY_WIDE: &str = "assembly_wide";

const NODE_KEYS: &[&str] = &["attributes", "components", "links", "node_component"];
const COMPONENT_KEYS: &[&str] = &["attributes", "links", "components"];
const NODE_COMPONENT_KEYS: &[&str] = &["attributes", "links"];

/// Whether the document is a module (references checked fully) or a service (references
/// into modules left to staging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Module,
    Service,
}

/// Parses a component reference, reporting a malformed one.
pub(crate) fn parse_ref(
    ctx: &mut Ctx,
    text: &str,
    at: Location,
    path: &str,
) -> Option<ComponentRef> {
    match text.parse::<ComponentRef>() {
        Ok(r) => Some(r),
        Err(e) => {
            ref_error(ctx, &e, at, path);
            None
        }
    }
}

fn ref_error(ctx: &mut Ctx, e: &ParseRefError, at: Location, path: &str) {
    ctx.error_help(
        at,
        path,
        format!("invalid {} `{}`: {}", e.what, shorten(&e.input), e.reason),
        "write `component`, `module::component` or `module::component[instance]`",
    );
}

/// One entry of a `components:` list: its key node and body.
fn entry<'a>(
    ctx: &mut Ctx,
    item: &'a YamlNode,
    path: &str,
) -> Option<(&'a YamlNode, Option<&'a YamlNode>)> {
    match &item.kind {
        YamlKind::Scalar { .. } if !item.is_null() => Some((item, None)),
        YamlKind::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            Some((k, Some(v)))
        }
        YamlKind::Map(entries) => {
            let keys: Vec<&str> = entries.iter().filter_map(|(k, _)| k.scalar()).collect();
            ctx.error_help(
                item.at,
                path,
                format!(
                    "an entry of a components list must have exactly one key, found {}",
                    list(keys.iter().copied())
                ),
                "write `- REF` or `- REF: {attributes: ..., links: ...}`, with the entry's keys indented under REF",
            );
            None
        }
        _ => {
            ctx.error_help(
                item.at,
                path,
                format!(
                    "an entry of a components list must be a component reference, found {}",
                    found(item)
                ),
                "write `- REF` or `- REF: {attributes: ..., links: ...}`",
            );
            None
        }
    }
}

fn has_key(body: Option<&YamlNode>, key: &str) -> bool {
    body.is_some_and(|b| b.get(key).is_some())
}

/// Decodes a `components:` list of an assembly or a service document into nodes and
/// assembly-level components.
pub(crate) fn components(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
) -> (Vec<NodeDecl>, Vec<ComponentDecl>) {
    let mut nodes = Vec::new();
    let mut comps = Vec::new();
    let Some(items) = ctx.seq(node, path, "`components`") else {
        return (nodes, comps);
    };
    for (i, item) in items.iter().enumerate() {
        let Some((key, body)) = entry(ctx, item, &index(path, i)) else {
            continue;
        };
        let Some(text) = key.scalar() else { continue };
        let item_path = child(path, text);
        let Some(r) = parse_ref(ctx, text, key.at, &item_path) else {
            continue;
        };
        let is_node_name = r.name == "node" || r.name == "node_group";
        if is_node_name || has_key(body, "components") {
            let Some(name) = r.instance.clone() else {
                if is_node_name {
                    ctx.error_help(
                        key.at,
                        &item_path,
                        format!("`{}` needs a name", r.name),
                        format!("write `{}[NAME]`", r.name),
                    );
                } else {
                    ctx.error_help(
                        key.at,
                        &item_path,
                        format!("`{r}` has nested `components`, so it is a node, and a node needs a name"),
                        format!("write `{r}[NODE_NAME]`, or `node[NODE_NAME]`"),
                    );
                }
                continue;
            };
            let group = r.name == "node_group";
            let realizer = if is_node_name {
                r.module.as_ref().map(|_| r.without_instance())
            } else {
                Some(r.without_instance())
            };
            if let Some(real) = &realizer {
                scope.check(ctx, real, key.at, &item_path, RefCheck::Strict);
            }
            nodes.push(node_decl(
                ctx, scope, name, group, realizer, key.at, body, &item_path,
            ));
        } else {
            comps.push(component_decl(
                ctx,
                scope,
                r,
                key.at,
                body,
                &item_path,
                COMPONENT_KEYS,
            ));
        }
    }
    (nodes, comps)
}

#[allow(clippy::too_many_arguments)]
fn node_decl(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    name: String,
    group: bool,
    mut node_component: Option<ComponentRef>,
    at: Location,
    body: Option<&YamlNode>,
    path: &str,
) -> NodeDecl {
    let mut decl = NodeDecl {
        name,
        group,
        node_component: None,
        attributes: BTreeMap::new(),
        components: Vec::new(),
        links: Vec::new(),
        at,
    };
    let Some(body) = body else {
        decl.node_component = node_component;
        return decl;
    };
    let Some(entries) = ctx.map(body, path, "a node") else {
        decl.node_component = node_component;
        return decl;
    };
    ctx.check_keys(entries, path, NODE_KEYS, "a node");
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "attributes" => decl.attributes = node_attributes(ctx, v, &p, group),
            "components" => decl.components = node_components(ctx, scope, v, &p),
            "links" => decl.links = links(ctx, v, &p),
            "node_component" => {
                let Some(text) = ctx.text(v, &p, "`node_component`") else {
                    continue;
                };
                let Some(r) = parse_ref(ctx, &text, v.at, &p) else {
                    continue;
                };
                if r.instance.is_some() {
                    ctx.error_help(
                        v.at,
                        &p,
                        format!(
                            "`node_component` names a component definition, not an instance: `{r}`"
                        ),
                        format!("write `{}`", r.without_instance()),
                    );
                    continue;
                }
                match &node_component {
                    Some(existing) if *existing != r => ctx.error_help(
                        v.at,
                        &p,
                        format!("`node_component: {r}` contradicts the entry's `{existing}`"),
                        "give the realizing component once",
                    ),
                    _ => {
                        scope.check(ctx, &r, v.at, &p, RefCheck::Strict);
                        node_component = Some(r);
                    }
                }
            }
            _ => {}
        }
    }
    decl.node_component = node_component;
    decl
}

fn node_attributes(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    group: bool,
) -> BTreeMap<String, AttrValue> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, path, "`attributes`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        if !ctx.check_name_at(key, k.at, &p, "attribute name") {
            continue;
        }
        if key == "cardinality" {
            if !group {
                ctx.error_help(
                    k.at,
                    &p,
                    "only a node group has a `cardinality`",
                    "declare the node as `node_group[NAME]`",
                );
                continue;
            }
            if ctx
                .uint(v, &p, "`cardinality`", 0, MAX_CARDINALITY)
                .is_none()
            {
                continue;
            }
        }
        out.insert(
            key.to_owned(),
            AttrValue {
                value: node_value(v),
                at: v.at,
            },
        );
    }
    out
}

fn node_components(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
) -> Vec<ComponentDecl> {
    let mut out = Vec::new();
    let Some(items) = ctx.seq(node, path, "`components`") else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let Some((key, body)) = entry(ctx, item, &index(path, i)) else {
            continue;
        };
        let Some(text) = key.scalar() else { continue };
        let item_path = child(path, text);
        let Some(r) = parse_ref(ctx, text, key.at, &item_path) else {
            continue;
        };
        if r.name == "node" || r.name == "node_group" {
            ctx.error_help(
                key.at,
                &item_path,
                format!("`{r}` is a node, and nodes cannot be placed on a node"),
                "declare nodes at the top of the `components` list",
            );
            continue;
        }
        out.push(component_decl(
            ctx,
            scope,
            r,
            key.at,
            body,
            &item_path,
            NODE_COMPONENT_KEYS,
        ));
    }
    out
}

fn component_decl(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    reference: ComponentRef,
    at: Location,
    body: Option<&YamlNode>,
    path: &str,
    keys: &[&str],
) -> ComponentDecl {
    let target = scope.check(ctx, &reference, at, path, RefCheck::Strict);
    let mut decl = ComponentDecl {
        reference,
        attributes: BTreeMap::new(),
        links: Vec::new(),
        at,
    };
    let Some(body) = body else { return decl };
    let Some(entries) = ctx.map(body, path, "a component entry") else {
        return decl;
    };
    ctx.check_keys(entries, path, keys, "a component entry");
    let def = scope.def(&target);
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "attributes" => decl.attributes = overrides(ctx, v, &p, def, &decl.reference),
            "links" => decl.links = links(ctx, v, &p),
            _ => {}
        }
    }
    decl
}

/// Attribute values given to a component; checked against its definition when it is a
/// component of the same module.
fn overrides(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    def: Option<&ComponentDef>,
    reference: &ComponentRef,
) -> BTreeMap<String, AttrValue> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, path, "`attributes`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        if !ctx.check_name_at(key, k.at, &p, "attribute name") {
            continue;
        }
        let mut value = node_value(v);
        if let Some(def) = def {
            let Some(attr) = def.attributes.get(key) else {
                let help = match did_you_mean(key, def.attributes.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if def.attributes.is_empty() => {
                        format!("component `{}` declares no attributes", def.name)
                    }
                    None => format!(
                        "its attributes are {}",
                        list(def.attributes.keys().map(String::as_str))
                    ),
                };
                ctx.error_help(
                    k.at,
                    &p,
                    format!(
                        "component `{reference}` has no attribute `{}`",
                        shorten(key)
                    ),
                    help,
                );
                continue;
            };
            if attr.constant {
                ctx.error_help(
                    k.at,
                    &p,
                    format!("attribute `{key}` of `{reference}` is constant (`constant: true`) and cannot be set"),
                    "remove the value: the module fixes it",
                );
                continue;
            }
            if attr.dynamic && !attr.input {
                ctx.error_help(
                    k.at,
                    &p,
                    format!("attribute `{key}` of `{reference}` is an output (`dynamic: true`) and cannot be set"),
                    "add `input: true` to its definition to let users set it",
                );
                continue;
            }
            match typed_value(attr.ty, v) {
                Ok(v) => value = v,
                Err(why) => {
                    ctx.error_help(
                        v.at,
                        &p,
                        format!("{why} of attribute `{key}` of `{reference}`"),
                        format!("expected {}", type_phrase(attr.ty)),
                    );
                    continue;
                }
            }
        }
        out.insert(key.to_owned(), AttrValue { value, at: v.at });
    }
    out
}

/// Decodes `links:`: a list of targets (`db`, `node/db`, `service/cmp`), of
/// `{dependency: target}` entries, or a mapping from dependency names to targets.
fn links(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Vec<LinkDecl> {
    let mut out = Vec::new();
    match &node.kind {
        YamlKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.kind {
                    YamlKind::Scalar { text, .. } if !item.is_null() => {
                        out.extend(link(ctx, None, text, item.at, &p));
                    }
                    YamlKind::Map(entries) if entries.len() == 1 => {
                        let (k, v) = &entries[0];
                        out.extend(named_link(ctx, k, v, &p));
                    }
                    _ => ctx.error_help(
                        item.at,
                        &p,
                        format!(
                            "a link must be a component reference, found {}",
                            found(item)
                        ),
                        "write `- TARGET`, `- NODE/TARGET` or `- DEPENDENCY: TARGET`",
                    ),
                }
            }
        }
        YamlKind::Map(entries) => {
            for (k, v) in entries {
                out.extend(named_link(ctx, k, v, path));
            }
        }
        _ if node.is_null() => {}
        _ => ctx.error_help(
            node.at,
            path,
            format!("`links` must be a list, found {}", found(node)),
            "write `links: [TARGET, NODE/TARGET]`",
        ),
    }
    out
}

fn named_link(ctx: &mut Ctx, k: &YamlNode, v: &YamlNode, path: &str) -> Option<LinkDecl> {
    let dep = k.scalar()?;
    let p = child(path, dep);
    if !ctx.check_name_at(dep, k.at, &p, "dependency name") {
        return None;
    }
    let target = ctx.text(v, &p, "a link target")?;
    link(ctx, Some(dep.to_owned()), &target, v.at, &p)
}

fn link(
    ctx: &mut Ctx,
    dependency: Option<String>,
    text: &str,
    at: Location,
    path: &str,
) -> Option<LinkDecl> {
    let text = text.trim();
    let Some((prefix, rest)) = text.split_once('/') else {
        let component = parse_ref(ctx, text, at, path)?;
        return Some(LinkDecl {
            dependency,
            target: NodeComponentRef {
                node: None,
                component,
            },
            service: None,
            at,
        });
    };
    if rest.contains('/') {
        ctx.error_help(
            at,
            path,
            format!("invalid link target `{}`: more than one `/`", shorten(text)),
            "write `TARGET`, `NODE/TARGET` or `SERVICE/TARGET`",
        );
        return None;
    }
    let component = parse_ref(ctx, rest, at, path)?;
    // `ec2::node[web]/cmp` names the node `web` by its realizing component.
    if let Ok(r) = prefix.parse::<ComponentRef>()
        && (r.name == "node" || r.name == "node_group")
        && r.instance.is_some()
    {
        return Some(LinkDecl {
            dependency,
            target: NodeComponentRef {
                node: r.instance,
                component,
            },
            service: None,
            at,
        });
    }
    if let Err(e) = check_name("node name", prefix) {
        ctx.error_help(
            at,
            path,
            format!("invalid link target `{}`: {}", shorten(text), e.reason),
            "write `TARGET`, `NODE/TARGET` or `SERVICE/TARGET`",
        );
        return None;
    }
    // A node of this document or another service: decided once every node is known
    // (see `resolve_links`); until then both are set.
    Some(LinkDecl {
        dependency,
        target: NodeComponentRef {
            node: Some(prefix.to_owned()),
            component,
        },
        service: Some(prefix.to_owned()),
        at,
    })
}

/// A reference's resolved identity (see [`Scope::key`]).
type Key = (String, String, Option<String>);

/// The nodes and components of one assembly or service, for reference checks.
pub(crate) struct Index {
    nodes: BTreeMap<String, (bool, Vec<Key>)>,
    top: Vec<Key>,
}

impl Index {
    /// Indexes the declarations, reporting duplicates.
    pub(crate) fn build(
        ctx: &mut Ctx,
        scope: &Scope<'_>,
        nodes: &[NodeDecl],
        comps: &[ComponentDecl],
        path: &str,
    ) -> Index {
        let mut index = Index {
            nodes: BTreeMap::new(),
            top: Vec::new(),
        };
        for n in nodes {
            let mut keys = Vec::new();
            for c in &n.components {
                let k = scope.key(&c.reference);
                if keys.contains(&k) {
                    ctx.error_help(
                        c.at,
                        &child(
                            &child(&child(path, &node_label(n)), "components"),
                            &c.reference.to_string(),
                        ),
                        format!(
                            "component `{}` is placed twice on node `{}`",
                            c.reference, n.name
                        ),
                        "give each an instance name: `cmp[first]`, `cmp[second]`",
                    );
                } else {
                    keys.push(k);
                }
            }
            let mut singletons = std::collections::BTreeSet::new();
            for c in &n.components {
                if let Some(def) = scope.def(&scope.target(&c.reference))
                    && def.singleton
                    && !singletons.insert(def.name.clone())
                {
                    ctx.error_help(
                        c.at,
                        &child(&child(&child(path, &node_label(n)), "components"), &c.reference.to_string()),
                        format!(
                            "component `{}` is a singleton (`singleton: true`) and is already on node `{}`",
                            def.name, n.name
                        ),
                        "place it once per node",
                    );
                }
            }
            if let Some((was_group, _)) = index.nodes.get(&n.name) {
                let kind = if *was_group { "node group" } else { "node" };
                ctx.error_help(
                    n.at,
                    &child(path, &node_label(n)),
                    format!(
                        "duplicate node name `{}`: a {kind} of that name is declared above",
                        n.name
                    ),
                    "node names must be unique in an assembly",
                );
                continue;
            }
            index.nodes.insert(n.name.clone(), (n.group, keys));
        }
        for c in comps {
            let k = scope.key(&c.reference);
            if index.top.contains(&k) {
                ctx.error_help(
                    c.at,
                    &child(path, &c.reference.to_string()),
                    format!("component `{}` is declared twice", c.reference),
                    "give each an instance name: `cmp[first]`, `cmp[second]`",
                );
            } else {
                index.top.push(k);
            }
        }
        index
    }

    /// Whether a node of that name exists, and whether it is a group.
    fn node(&self, name: &str) -> Option<bool> {
        self.nodes.get(name).map(|(g, _)| *g)
    }

    fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Whether `r` names a component of the assembly: on `node` when given, anywhere
    /// otherwise. `node[NAME]` / `MOD::node_group[NAME]` name a node's realizing component.
    fn find(&self, scope: &Scope<'_>, r: &ComponentRef, node: Option<&str>) -> bool {
        if let Some(inst) = &r.instance
            && (r.name == "node" || r.name == "node_group")
        {
            return self.node(inst) == Some(r.name == "node_group");
        }
        let k = scope.key(r);
        let matches = |d: &Key| d.0 == k.0 && d.1 == k.1 && (k.2.is_none() || d.2 == k.2);
        match node {
            Some(n) => self
                .nodes
                .get(n)
                .is_some_and(|(_, cs)| cs.iter().any(matches)),
            None => {
                self.top.iter().any(matches)
                    || self.nodes.values().any(|(_, cs)| cs.iter().any(matches))
            }
        }
    }
}

fn node_label(n: &NodeDecl) -> String {
    let kind = if n.group { "node_group" } else { "node" };
    match &n.node_component {
        Some(r) if r.module.is_some() && r.name == kind => format!("{r}[{}]", n.name),
        _ => format!("{kind}[{}]", n.name),
    }
}

/// Decides, for each `X/cmp` link, whether `X` is a node of this document or (in a
/// service) another service instance; in a module every link target must exist.
pub(crate) fn resolve_links(
    ctx: &mut Ctx,
    mode: Mode,
    scope: &Scope<'_>,
    index: &Index,
    nodes: &mut [NodeDecl],
    comps: &mut [ComponentDecl],
    path: &str,
) {
    let fix = |ctx: &mut Ctx, l: &mut LinkDecl, own_node: Option<&str>, p: &str| {
        if let (Some(n), Some(s)) = (&l.target.node, &l.service)
            && n == s
        {
            if index.node(n).is_some() {
                l.service = None;
            } else if mode == Mode::Service {
                l.target.node = None;
            } else {
                let help = match did_you_mean(n, index.node_names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "a module's links name nodes of the same assembly".to_owned(),
                };
                ctx.error_help(
                    l.at,
                    p,
                    format!("link target names node `{n}`, which is not in this assembly"),
                    help,
                );
                return;
            }
        }
        // `ec2::node[X]/cmp` names a node of this document explicitly: it must exist (it
        // is written back as `X/cmp`, which would otherwise read as a service link).
        if mode == Mode::Service
            && l.service.is_none()
            && let Some(n) = &l.target.node
            && index.node(n).is_none()
        {
            let help = match did_you_mean(n, index.node_names()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "name a node of this document, or write `SERVICE/TARGET` to link to another service".to_owned(),
            };
            ctx.error_help(
                l.at,
                p,
                format!("link target names node `{n}`, which is not in this document"),
                help,
            );
            return;
        }
        if mode == Mode::Module {
            let where_ = l.target.node.as_deref();
            if !index.find(scope, &l.target.component, where_) {
                let place = match where_.or(own_node) {
                    Some(n) if where_.is_some() => format!("on node `{n}`"),
                    _ => "in this assembly".to_owned(),
                };
                ctx.error_help(
                    l.at,
                    p,
                    format!(
                        "link target `{}` is not a component {place}",
                        l.target.component
                    ),
                    "link to a component declared in the same assembly",
                );
            }
        }
    };
    for n in nodes.iter_mut() {
        let np = child(path, &node_label(n));
        for (i, l) in n.links.iter_mut().enumerate() {
            fix(
                ctx,
                l,
                None,
                &crate::dsl::decode::index(&child(&np, "links"), i),
            );
        }
        for c in &mut n.components {
            let cp = child(&child(&np, "components"), &c.reference.to_string());
            for (i, l) in c.links.iter_mut().enumerate() {
                fix(
                    ctx,
                    l,
                    Some(&n.name),
                    &crate::dsl::decode::index(&child(&cp, "links"), i),
                );
            }
        }
    }
    for c in comps.iter_mut() {
        let cp = child(path, &c.reference.to_string());
        for (i, l) in c.links.iter_mut().enumerate() {
            fix(
                ctx,
                l,
                None,
                &crate::dsl::decode::index(&child(&cp, "links"), i),
            );
        }
    }
}

/// How the steps of a workflow are checked against its assembly.
#[derive(Clone, Copy)]
pub(crate) enum StepCheck<'a> {
    /// Not at all (module-level workflows, which belong to no assembly).
    None,
    /// Node names only (service documents: a component deleted from a service may stay
    /// named in its workflow, as in the original dtk).
    Nodes(&'a Index),
    /// Nodes and components (assemblies).
    Full(&'a Scope<'a>, &'a Index),
}

const SUBTASK_KEYS: &[&str] = &[
    "name",
    "node",
    "node_group",
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
                if let StepCheck::Nodes(index) | StepCheck::Full(_, index) = check {
                    check_node(ctx, index, &name, group, v.at, &p);
                }
                s.node = Some(if group {
                    NodeSelector::Group(name)
                } else {
                    NodeSelector::Node(name)
                });
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
