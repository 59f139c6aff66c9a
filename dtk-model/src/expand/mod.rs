//! Expansion: a service document plus the modules it pins (and its target) become a
//! [`ServiceModel`], with every reference resolved, node groups expanded, attribute
//! values resolved and every dependency and link explicit.
//!
//! Expansion is where references into *other* modules are checked (the DSL decoder can
//! only check a module against itself), where actions of kinds this tool does not run
//! are refused, and where unlinked dependencies are linked to the target's components.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use crate::diag::{Diagnostics, DslError, did_you_mean};
use std::sync::Arc;

use crate::ident::{ComponentRef, ModuleId};
use crate::instance::{ComponentId, ComponentInstance, Dependency, NodeInstance, ServiceModel};
use crate::module::{ActionKind, ComponentDef, NodeSelector, Subtask};
use crate::service::ServiceDoc;
use crate::value::{Attributes, Value};

mod inputs;
mod links;
mod resolver;

pub use links::node_attribute_path;
use links::{
    Linked, PlacedIndex, Push, PushValue, Source, add_edge, add_links, candidates, find_explicit,
    matches_choice, realizers,
};
use resolver::{Placed, Resolver, article, place};

pub use inputs::{ExternalComponent, ModuleSet, NodeRealizer, TargetBinding};

/// A problem that does not make the service invalid but must be fixed before converge:
/// an unset required attribute, for example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The component instance.
    pub component: ComponentId,
    /// The attribute concerned.
    pub attribute: String,
    /// What is wrong.
    pub message: String,
}

/// Expands `doc` against the pinned `modules` and the `target`. `file` names the
/// service document in diagnostics.
pub fn expand(
    doc: &ServiceDoc,
    modules: &ModuleSet,
    target: Option<&TargetBinding>,
    file: &str,
) -> Result<ServiceModel, DslError> {
    let mut diags = Diagnostics::new(file);
    let root = doc
        .staged_from
        .as_ref()
        .and_then(|s| modules.get(&s.module))
        .cloned();
    let resolver = Resolver {
        modules,
        root: root.as_deref(),
        defs: RefCell::new(HashMap::new()),
    };

    let mut nodes: Vec<NodeInstance> = Vec::new();
    // Sized once for every placement (a node group counts its members): these are the
    // largest vectors of a large service's expansion, and growing them by doubling held a
    // third more than they use.
    let placements: usize = doc
        .nodes
        .iter()
        .map(|n| {
            // A cardinality past the limit is refused below; it must not size anything.
            let members = u64::from(n.cardinality()).min(crate::dsl::MAX_CARDINALITY);
            let members = usize::try_from(members).unwrap_or(1);
            n.components.len().saturating_add(1).saturating_mul(members)
        })
        .sum::<usize>()
        .saturating_add(doc.components.len());
    let mut placed: Vec<Placed<'_>> = Vec::with_capacity(placements);
    let mut inputs_of: Vec<(Attributes, Vec<String>)> = Vec::with_capacity(placements);
    // For duplicates only (nothing iterates it): hashed, where a tree of 100,000 ids
    // compared each new one with 17 others.
    let mut seen_ids: HashSet<ComponentId> = HashSet::with_capacity(placements);

    for (ni, decl) in doc.nodes.iter().enumerate() {
        let node_key = format!("components.{ni}");
        let realizer = match &decl.node_component {
            Some(r) => resolver
                .component(r, None)
                .map(|(m, d)| (m, d, r.clone()))
                .map_err(|e| {
                    diags.error(decl.at, &node_key, e);
                }),
            None => match target.and_then(|t| t.node_component.as_ref()) {
                Some(nr) => match modules
                    .get(&nr.module)
                    .and_then(|m| m.component(&nr.reference.name).map(|d| resolver.shared(d)))
                {
                    Some(def) => Ok((nr.module.clone(), def, nr.reference.clone())),
                    None => {
                        diags.error(
                            decl.at,
                            &node_key,
                            format!(
                                "the target's node component `{}` is not in module `{}` of this service",
                                nr.reference, nr.module
                            ),
                        );
                        Err(())
                    }
                },
                None => Err(()),
            },
        };
        let card = decl.cardinality();
        if decl.group && card == 0 {
            diags.error(
                decl.at,
                &node_key,
                format!("node group `{}` has cardinality 0", decl.name),
            );
        }
        let members: Vec<String> = if decl.group {
            (1..=card).map(|i| format!("{}:{i}", decl.name)).collect()
        } else {
            vec![decl.name.clone()]
        };
        let mut node_attrs: Attributes = decl
            .attributes
            .iter()
            .filter(|(k, _)| k.as_str() != "cardinality")
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        node_attrs.retain(|_, v| !v.is_null());
        for member in members {
            let realized_by = realizer.as_ref().ok().map(|_| ComponentId::node(&member));
            nodes.push(NodeInstance {
                name: member.clone(),
                group: decl.group.then(|| decl.name.clone()),
                attributes: node_attrs.clone(),
                realized_by: realized_by.clone(),
            });
            if let (Ok((module, def, reference)), Some(id)) = (&realizer, realized_by) {
                let mut inputs = Attributes::new();
                let mut secrets = Vec::new();
                for (name, a) in &def.attributes {
                    if a.secret {
                        secrets.push(name.clone());
                    } else if let Some(d) = &a.default {
                        inputs.insert(name.clone(), d.clone());
                    }
                }
                for (k, v) in &node_attrs {
                    let at = decl.attributes.get(k).map_or(decl.at, |x| x.at);
                    let akey = format!("{node_key}.attributes.{k}");
                    match def.attributes.get(k) {
                        None => {
                            let help = match did_you_mean(k, def.attributes.keys().map(String::as_str)) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!(
                                    "it takes {}",
                                    def.attributes
                                        .iter()
                                        .filter(|(_, a)| !a.dynamic || a.input)
                                        .map(|(n, _)| format!("`{n}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            };
                            diags.error_help(
                                at,
                                &akey,
                                format!(
                                    "node `{}` sets `{k}`, which its node component `{reference}` ({module}) does not declare",
                                    decl.name
                                ),
                                help,
                            );
                            continue;
                        }
                        Some(a) if a.constant => diags.error_help(
                            at,
                            &akey,
                            format!("`{k}` of node `{}` is constant (`constant: true`): its node component `{reference}` fixes it", decl.name),
                            "remove the value",
                        ),
                        Some(a) if a.secret => diags.error(
                            decl.at,
                            &format!("{node_key}.attributes.{k}"),
                            format!("`{k}` is a secret attribute; set it with `dtk service set-attribute`, which keeps it out of the repository"),
                        ),
                        Some(a) if !a.ty.accepts(v) => diags.error(
                            decl.attributes.get(k).map(|x| x.at).unwrap_or(decl.at),
                            &format!("{node_key}.attributes.{k}"),
                            format!("`{k}` of node `{}` must be {}, not {}", decl.name, article(a.ty.as_str()), v.kind_name()),
                        ),
                        _ => {}
                    }
                    inputs.insert(k.clone(), v.clone());
                }
                seen_ids.insert(id.clone());
                placed.push(Placed {
                    id,
                    node: Some(member.clone()),
                    module: module.clone(),
                    def: def.clone(),
                    reference: reference.clone(),
                    decl_links: &decl.links,
                    at: decl.at,
                    key: node_key.clone(),
                    realizes_node: true,
                });
                inputs_of.push((inputs, secrets));
            }
            for (ci, cdecl) in decl.components.iter().enumerate() {
                let key = format!("{node_key}.components.{ci}");
                place(
                    &resolver,
                    &mut diags,
                    &mut placed,
                    &mut inputs_of,
                    &mut seen_ids,
                    Some(&member),
                    cdecl,
                    key,
                );
            }
        }
    }
    for (ci, cdecl) in doc.components.iter().enumerate() {
        let key = format!("components.{}", doc.nodes.len() + ci);
        place(
            &resolver,
            &mut diags,
            &mut placed,
            &mut inputs_of,
            &mut seen_ids,
            None,
            cdecl,
            key,
        );
    }

    check_singletons(&mut diags, &placed);

    // Second pass: dependencies and links, now that every instance is known.
    let node_by_name: HashMap<&str, &NodeInstance> =
        nodes.iter().rev().map(|n| (n.name.as_str(), n)).collect();
    let index = PlacedIndex::new(&placed);
    let realizer_of = realizers(&placed);
    let mut components = Vec::with_capacity(placed.len());
    let mut pushes: Vec<(usize, Push)> = Vec::new();
    for (pi, (p, (inputs, secret_inputs))) in placed.iter().zip(inputs_of).enumerate() {
        let mut depends_on: Vec<Dependency> = Vec::new();
        let mut linked = Linked::default();
        if let Some(node) = &p.node
            && !p.realizes_node
            && let Some(n) = node_by_name.get(node.as_str())
            && let Some(r) = &n.realized_by
        {
            depends_on.push(Dependency {
                on: r.clone(),
                reason: format!("node {node}"),
            });
        }
        let mut linked_ids: BTreeSet<String> = BTreeSet::new();
        let declared: BTreeSet<&str> = p.def.dependencies.iter().map(|d| d.name.as_str()).collect();
        // The definitions that satisfy the declared dependencies.
        let dependency_targets: BTreeSet<(ModuleId, String)> = p
            .def
            .dependencies
            .iter()
            .flat_map(|d| &d.choices)
            .filter_map(|c| resolver.component(c, Some(&p.module)).ok())
            .map(|(m, d)| (m, d.name.clone()))
            .collect();
        // Explicit links first: they choose among candidates.
        let mut explicit: Vec<(Option<&str>, Source)> = Vec::new();
        for l in p.decl_links {
            match find_explicit(l, p, &placed, &index, target) {
                Ok(src) => explicit.push((l.dependency.as_deref(), src)),
                Err(msg) => diags.error(l.at, &format!("{}.links", p.key), msg),
            }
        }
        let mut link =
            |src: &Source, dependency: Option<&str>, depends_on: &mut Vec<Dependency>| {
                add_links(
                    pi,
                    src,
                    dependency,
                    &placed,
                    &realizer_of,
                    &resolver,
                    depends_on,
                    &mut linked,
                );
            };
        for dep in &p.def.dependencies {
            let mut choices = Vec::new();
            for c in &dep.choices {
                match resolver.component(c, Some(&p.module)) {
                    Ok((m, _)) => choices.push((m, c.clone())),
                    Err(e) => diags.error(
                        dep.at,
                        &format!("{}.dependencies", p.key),
                        format!("dependency `{}` of `{}`: {e}", dep.name, p.reference),
                    ),
                }
            }
            if choices.is_empty() {
                continue;
            }
            // An explicit link naming this dependency, else one naming no other dependency
            // that reaches one of its choices.
            let chosen = explicit
                .iter()
                .find(|(name, _)| name == &Some(dep.name.as_str()))
                .or_else(|| {
                    explicit.iter().find(|(name, src)| {
                        name.is_none_or(|n| !declared.contains(n))
                            && matches_choice(src, &choices, &placed)
                    })
                })
                .map(|(_, s)| s.clone());
            let source = match chosen {
                Some(s) => Ok(s),
                None => candidates(p, &choices, dep.placement, &placed, &index, target),
            };
            match source {
                Ok(src) => {
                    add_edge(
                        &mut depends_on,
                        &src,
                        &placed,
                        format!("dependency {}", dep.name),
                    );
                    linked_ids.insert(src.key());
                    link(&src, Some(dep.name.as_str()), &mut depends_on);
                }
                Err(msg) => diags.error(
                    p.at,
                    &p.key,
                    format!("`{}` depends on `{}`: {msg}", p.id, dep.name),
                ),
            }
        }
        // Explicit links not naming a declared dependency still order and feed values.
        for (name, src) in &explicit {
            if linked_ids.insert(src.key()) {
                add_edge(&mut depends_on, src, &placed, "link".to_owned());
                link(src, *name, &mut depends_on);
            }
        }
        // link_defs whose producer exists uniquely also link, without being required
        // (those for a declared dependency, by name or by producer, were linked with it).
        for ld in &p.def.link_defs {
            if ld
                .dependency
                .as_deref()
                .is_some_and(|d| declared.contains(d))
            {
                continue;
            }
            let Ok((m, _)) = resolver.component(&ld.target, Some(&p.module)) else {
                continue;
            };
            if dependency_targets.contains(&(m.clone(), ld.target.name.clone())) {
                continue;
            }
            if let Ok(src) = candidates(
                p,
                &[(m, ld.target.clone())],
                ld.placement,
                &placed,
                &index,
                target,
            ) && linked_ids.insert(src.key())
            {
                add_edge(
                    &mut depends_on,
                    &src,
                    &placed,
                    format!("link {}", ld.target),
                );
                link(&src, ld.dependency.as_deref(), &mut depends_on);
            }
        }
        let Linked {
            links,
            pushes: sent,
            errors,
        } = linked;
        for e in errors {
            diags.error(p.at, &p.key, format!("`{}`: {e}", p.id));
        }
        pushes.extend(sent.into_iter().map(|s| (pi, s)));
        for (name, action) in &p.def.actions {
            if let ActionKind::Unsupported { kind, .. } = &action.kind {
                diags.error_help(
                    action.at,
                    &p.key,
                    format!(
                        "component `{}` (module {}) has a `{kind}` action `{name}`, which dtk-rs does not run",
                        p.reference, p.module
                    ),
                    "rewrite the action as `commands: [RUN ...]` or `provider: KIND.RESOURCE` in the instance copy of the module",
                );
            }
        }
        // One or two edges are usual: keep no spare room in 100,000 of these.
        depends_on.shrink_to_fit();
        components.push(ComponentInstance {
            id: p.id.clone(),
            module: p.module.clone(),
            reference: p.reference.clone(),
            node: p.node.clone(),
            realizes_node: p.realizes_node,
            def: p.def.clone(),
            inputs,
            secret_inputs,
            secret_digest: None,
            content_digest: None,
            depends_on,
            links,
        });
    }
    apply_pushes(&mut diags, &placed, &mut components, pushes);
    check_workflow_nodes(&mut diags, doc);
    diags.finish(ServiceModel {
        name: doc.name.clone(),
        target: doc.target.clone(),
        nodes,
        components,
        workflows: doc.workflows.clone(),
    })
}

/// The component definition that `reference` names in a service pinning `modules`, seen
/// from the module the service was staged from (`root`), as expansion resolves it: its
/// module and definition, or why it cannot be found.
pub fn resolve_component(
    modules: &ModuleSet,
    root: Option<&ModuleId>,
    reference: &ComponentRef,
) -> Result<(ModuleId, Arc<ComponentDef>), String> {
    let resolver = Resolver {
        modules,
        root: root.and_then(|r| modules.get(r)).map(|m| &**m),
        defs: RefCell::new(HashMap::new()),
    };
    resolver.component(reference, None)
}

/// The required attributes of `model` that have no value: not set, no default, not fed
/// by a link, and (for secrets) not known to `secret_is_set`.
pub fn violations(
    model: &ServiceModel,
    secret_is_set: impl Fn(&ComponentId, &str) -> bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for c in &model.components {
        let linked: BTreeSet<&str> = c
            .links
            .iter()
            .flat_map(|l| l.mappings.iter().map(|(_, to)| to.as_str()))
            .collect();
        for (name, a) in &c.def.attributes {
            if !a.required || a.dynamic || linked.contains(name.as_str()) {
                continue;
            }
            let set = if a.secret {
                secret_is_set(&c.id, name)
            } else {
                c.inputs.get(name).is_some_and(|v| !v.is_null())
            };
            if !set {
                out.push(Violation {
                    component: c.id.clone(),
                    attribute: name.clone(),
                    message: format!(
                        "required attribute `{name}` of `{}` is not set (set it with `dtk service set-attribute SERVICE {}/{name} VALUE`)",
                        c.id,
                        c.id
                    ),
                });
            }
        }
    }
    out
}

/// Reads `path` (segments) out of a value map: `["host"]`, `["addresses", "0"]`.
pub fn lookup_path<'v>(values: &'v Attributes, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let mut v = values.get(first)?;
    for seg in rest {
        v = match v {
            Value::Hash(h) => h.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Refuses two instances of a `singleton: true` component on one node.
fn check_singletons(diags: &mut Diagnostics, placed: &[Placed<'_>]) {
    let mut seen: HashMap<(&str, &ModuleId, &str), &ComponentId> = HashMap::new();
    for p in placed {
        let Some(node) = p.node.as_deref() else {
            continue;
        };
        if p.realizes_node || !p.def.singleton {
            continue;
        }
        if let Some(first) = seen.insert((node, &p.module, p.def.name.as_str()), &p.id) {
            diags.error_help(
                p.at,
                &p.key,
                format!(
                    "component `{}` is a singleton (`singleton: true`) and node `{node}` already has `{first}`",
                    p.def.name
                ),
                "place it once per node",
            );
        }
    }
}

/// Sets the values components send into their producers (`producer_attr <- $my_attr`):
/// each is known before either runs (a constant, or an input of the sender or of its
/// node), and two different values for one attribute are refused.
fn apply_pushes(
    diags: &mut Diagnostics,
    placed: &[Placed<'_>],
    components: &mut [ComponentInstance],
    pushes: Vec<(usize, Push)>,
) {
    let mut set: HashMap<(usize, String), (Value, usize)> = HashMap::new();
    for (by, push) in pushes {
        let sender = &placed[by];
        let fail = |diags: &mut Diagnostics, msg: String| {
            diags.error(
                sender.at,
                &sender.key,
                format!("`{}`: `{}`: {msg}", sender.id, push.text),
            );
        };
        let value = match &push.value {
            PushValue::Constant(v) => v.clone(),
            PushValue::Input(i, path) => {
                let from = &components[*i];
                let Some(first) = path.first() else { continue };
                let attr = from.def.attributes.get(first);
                let linked = from
                    .links
                    .iter()
                    .any(|l| l.mappings.iter().any(|(_, to)| to == first));
                if attr.is_some_and(|a| a.secret) {
                    fail(
                        diags,
                        format!(
                            "`{first}` of `{}` is secret; a secret is never copied into another component",
                            from.id
                        ),
                    );
                    continue;
                }
                if attr.is_some_and(|a| a.dynamic) || linked {
                    fail(
                        diags,
                        format!(
                            "`{first}` of `{}` is known only once it has run, after the component it would be sent to (which runs first): send it with `->` from the other side instead",
                            from.id
                        ),
                    );
                    continue;
                }
                match lookup_path(&from.inputs, path) {
                    Some(v) => v.clone(),
                    None => {
                        fail(
                            diags,
                            format!("`{}` of `{}` has no value to send", path.join("."), from.id),
                        );
                        continue;
                    }
                }
            }
        };
        let Source::Local(j) = push.to else {
            fail(diags, "the linked component is in another service instance (the target), whose attributes this service cannot set".to_owned());
            continue;
        };
        let to = &components[j];
        match to.def.attributes.get(&push.attribute) {
            None => {
                fail(
                    diags,
                    format!("`{}` has no attribute `{}`", to.id, push.attribute),
                );
                continue;
            }
            Some(a) if a.secret => {
                fail(
                    diags,
                    format!(
                        "`{}` of `{}` is secret; set it with `dtk service set-attribute`",
                        push.attribute, to.id
                    ),
                );
                continue;
            }
            Some(a) if !a.ty.accepts(&value) => {
                fail(
                    diags,
                    format!(
                        "`{}` of `{}` must be {}, not {}",
                        push.attribute,
                        to.id,
                        article(a.ty.as_str()),
                        value.kind_name()
                    ),
                );
                continue;
            }
            Some(_) => {}
        }
        match set.get(&(j, push.attribute.clone())) {
            Some((v, other)) if *v != value => {
                fail(
                    diags,
                    format!(
                        "`{}` of `{}` is also sent `{v}` by `{}`",
                        push.attribute, to.id, placed[*other].id
                    ),
                );
                continue;
            }
            _ => {}
        }
        set.insert((j, push.attribute.clone()), (value.clone(), by));
        components[j].inputs.insert(push.attribute, value);
    }
}

/// Refuses workflow steps on nodes the service does not have. The document itself may
/// still name them (the original dtk's documents kept steps of deleted nodes, and the
/// decoder accepts them as it accepts steps of deleted components); a service cannot run
/// them, so it is refused here, before anything is committed or planned.
fn check_workflow_nodes(diags: &mut Diagnostics, doc: &ServiceDoc) {
    fn walk(
        diags: &mut Diagnostics,
        doc: &ServiceDoc,
        steps: &[Subtask],
        path: &str,
        names: &[&str],
    ) {
        for (i, st) in steps.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let (name, group) = match &st.node {
                Some(NodeSelector::Node(n)) => (n, false),
                Some(NodeSelector::Group(g)) => (g, true),
                None => {
                    walk(diags, doc, &st.subtasks, &format!("{p}.subtasks"), names);
                    continue;
                }
            };
            match doc.nodes.iter().find(|n| &n.name == name) {
                Some(n) if n.group == group => {}
                Some(n) => {
                    let (is, key) = if n.group {
                        ("a node group", "node_group")
                    } else {
                        ("a node, not a node group", "node")
                    };
                    diags.error_help(
                        st.at,
                        &format!("{p}.node"),
                        format!("`{name}` is {is}"),
                        format!("write `{key}: {name}`"),
                    );
                }
                None => {
                    let help = match did_you_mean(name, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if names.is_empty() => "the service has no nodes".to_owned(),
                        None => format!(
                            "the nodes are {}; remove the step of a node you removed",
                            names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    diags.error_help(
                        st.at,
                        &format!("{p}.node"),
                        format!(
                            "workflow step runs on node `{name}`, which the service does not have"
                        ),
                        help,
                    );
                }
            }
            walk(diags, doc, &st.subtasks, &format!("{p}.subtasks"), names);
        }
    }
    let names: Vec<&str> = doc.nodes.iter().map(|n| n.name.as_str()).collect();
    for (wname, w) in &doc.workflows {
        walk(
            diags,
            doc,
            &w.subtasks,
            &format!("actions.{wname}.subtasks"),
            &names,
        );
    }
}
