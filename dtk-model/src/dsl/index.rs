//! What an assembly or a service declares, indexed for reference checks, and the
//! resolution of `X/cmp` links against it.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::did_you_mean;
use crate::dsl::decode::{Ctx, child};
use crate::dsl::scope::Scope;
use crate::ident::ComponentRef;
use crate::module::{ComponentDecl, LinkDecl, NodeDecl};

/// Whether the document is a module (references checked fully) or a service (references
/// into modules left to staging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Module,
    Service,
}

/// A reference's resolved identity (see [`Scope::key`]).
type Key = (String, String, Option<String>);

/// The nodes and components of one assembly or service, for reference checks.
pub(crate) struct Index {
    pub(crate) nodes: BTreeMap<String, (bool, BTreeSet<Key>)>,
    top: BTreeSet<Key>,
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
            top: BTreeSet::new(),
        };
        for n in nodes {
            let mut keys = BTreeSet::new();
            for c in &n.components {
                if !keys.insert(scope.key(&c.reference)) {
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
            if !index.top.insert(scope.key(&c.reference)) {
                ctx.error_help(
                    c.at,
                    &child(path, &c.reference.to_string()),
                    format!("component `{}` is declared twice", c.reference),
                    "give each an instance name: `cmp[first]`, `cmp[second]`",
                );
            }
        }
        index
    }

    /// Whether a node of that name exists, and whether it is a group.
    pub(crate) fn node(&self, name: &str) -> Option<bool> {
        self.nodes.get(name).map(|(g, _)| *g)
    }

    pub(crate) fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Whether `r` names a component of the assembly: on `node` when given, anywhere
    /// otherwise. `node[NAME]` / `MOD::node_group[NAME]` name a node's realizing component.
    pub(crate) fn find(&self, scope: &Scope<'_>, r: &ComponentRef, node: Option<&str>) -> bool {
        if let Some(inst) = &r.instance
            && (r.name == "node" || r.name == "node_group")
        {
            return self.node(inst) == Some(r.name == "node_group");
        }
        let k = scope.key(r);
        // Without an instance name, any instance of the component matches: the keys
        // `(module, name, _)` sort together, `None` first.
        let has = |cs: &BTreeSet<Key>| match k.2 {
            Some(_) => cs.contains(&k),
            None => cs
                .range(&k..)
                .next()
                .is_some_and(|d| d.0 == k.0 && d.1 == k.1),
        };
        match node {
            Some(n) => self.nodes.get(n).is_some_and(|(_, cs)| has(cs)),
            None => has(&self.top) || self.nodes.values().any(|(_, cs)| has(cs)),
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
