//! Expansion: a service document plus the modules it pins (and its target) become a
//! [`ServiceModel`], with every reference resolved, node groups expanded, attribute
//! values resolved and every dependency and link explicit.
//!
//! Expansion is where references into *other* modules are checked (the DSL decoder can
//! only check a module against itself), where actions of kinds this tool does not run
//! are refused, and where unlinked dependencies are linked to the target's components.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::diag::{Diagnostics, DslError, Location, did_you_mean};
use crate::ident::{ComponentRef, ModuleId, NodeComponentRef};
use crate::instance::{
    ComponentId, ComponentInstance, Dependency, LinkSource, NodeInstance, ResolvedLink,
    ServiceModel,
};
use crate::module::{ActionKind, ComponentDecl, ComponentDef, LinkDecl, Module};
use crate::service::ServiceDoc;
use crate::value::{Attributes, Value};

/// The modules a service pins, by id.
#[derive(Debug, Clone, Default)]
pub struct ModuleSet {
    modules: BTreeMap<ModuleId, Arc<Module>>,
}

impl ModuleSet {
    /// An empty set.
    pub fn new() -> Self {
        ModuleSet::default()
    }

    /// Adds a module (replacing one with the same id).
    pub fn insert(&mut self, module: Module) {
        self.modules.insert(module.id.clone(), Arc::new(module));
    }

    /// The module with this id.
    pub fn get(&self, id: &ModuleId) -> Option<&Arc<Module>> {
        self.modules.get(id)
    }

    /// Modules whose *name* (the part after `/`) is `name`: what `name::cmp` refers to.
    pub fn by_name(&self, name: &str) -> Vec<&Arc<Module>> {
        self.modules
            .values()
            .filter(|m| m.id.name == name)
            .collect()
    }

    /// Every module, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Module>> {
        self.modules.values()
    }
}

/// What a target instance offers a service staged on it.
#[derive(Debug, Clone, Default)]
pub struct TargetBinding {
    /// The target instance's name.
    pub service: String,
    /// The component that realizes the service's nodes (`dtk/local`'s `node`,
    /// `aws/ec2`'s `node`), if the target provides nodes.
    pub node_component: Option<NodeRealizer>,
    /// The target's components (and its own base's), for linking dependencies the
    /// service does not satisfy itself.
    pub components: Vec<ExternalComponent>,
}

/// The component definition that realizes nodes on a target.
#[derive(Debug, Clone)]
pub struct NodeRealizer {
    /// Its module (must be among the service's pinned modules).
    pub module: ModuleId,
    /// Its reference as the target names it.
    pub reference: ComponentRef,
}

/// A component of another service instance (a target) that can satisfy dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalComponent {
    /// The service instance holding it.
    pub service: String,
    /// Its id there.
    pub id: ComponentId,
    /// Its definition's module.
    pub module: ModuleId,
    /// Its definition's name.
    pub def_name: String,
    /// Its inputs and recorded outputs (never secrets).
    pub values: Attributes,
}

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

struct Placed<'a> {
    id: ComponentId,
    node: Option<String>,
    module: ModuleId,
    def: Arc<ComponentDef>,
    reference: ComponentRef,
    decl_links: &'a [LinkDecl],
    at: Location,
    key: String,
    realizes_node: bool,
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
    let mut placed: Vec<Placed<'_>> = Vec::new();
    let mut inputs_of: Vec<(Attributes, Vec<String>)> = Vec::new();
    let mut seen_ids: BTreeSet<ComponentId> = BTreeSet::new();

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
                Some(nr) => match modules.get(&nr.module).and_then(|m| {
                    m.component(&nr.reference.name)
                        .map(|d| resolver.shared(m, &nr.reference.name, d))
                }) {
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
                    match def.attributes.get(k) {
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

    // Second pass: dependencies and links, now that every instance is known.
    let node_by_name: HashMap<&str, &NodeInstance> =
        nodes.iter().rev().map(|n| (n.name.as_str(), n)).collect();
    let index = PlacedIndex::new(&placed);
    let mut components = Vec::with_capacity(placed.len());
    for (p, (inputs, secret_inputs)) in placed.iter().zip(inputs_of) {
        let mut depends_on: Vec<Dependency> = Vec::new();
        let mut links: Vec<ResolvedLink> = Vec::new();
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
        // Explicit links first: they choose among candidates.
        let mut explicit: Vec<(Option<&str>, Source)> = Vec::new();
        for l in p.decl_links {
            match find_explicit(l, p, &placed, &index, target) {
                Ok(src) => explicit.push((l.dependency.as_deref(), src)),
                Err(msg) => diags.error(l.at, &format!("{}.links", p.key), msg),
            }
        }
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
            let chosen = explicit
                .iter()
                .find(|(name, src)| {
                    name == &Some(dep.name.as_str()) || matches_choice(src, &choices, &placed)
                })
                .map(|(_, s)| s.clone());
            let source = match chosen {
                Some(s) => Ok(s),
                None => candidates(p, &choices, dep.same_node, &placed, &index, target),
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
                    add_links(p, &src, &placed, &resolver, &mut links, target);
                }
                Err(msg) => diags.error(
                    p.at,
                    &p.key,
                    format!("`{}` depends on `{}`: {msg}", p.id, dep.name),
                ),
            }
        }
        // Explicit links not naming a declared dependency still order and feed values.
        for (_, src) in &explicit {
            if linked_ids.insert(src.key()) {
                add_edge(&mut depends_on, src, &placed, "link".to_owned());
                add_links(p, src, &placed, &resolver, &mut links, target);
            }
        }
        // link_defs whose producer exists uniquely also link, without being required.
        for ld in &p.def.link_defs {
            let Ok((m, _)) = resolver.component(&ld.target, Some(&p.module)) else {
                continue;
            };
            if let Ok(src) =
                candidates(p, &[(m, ld.target.clone())], false, &placed, &index, target)
                && linked_ids.insert(src.key())
            {
                add_edge(
                    &mut depends_on,
                    &src,
                    &placed,
                    format!("link {}", ld.target),
                );
                add_links(p, &src, &placed, &resolver, &mut links, target);
            }
        }
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
    diags.finish(ServiceModel {
        name: doc.name.clone(),
        target: doc.target.clone(),
        nodes,
        components,
        workflows: doc.workflows.clone(),
    })
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

fn article(ty: &str) -> String {
    match ty.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {ty}"),
        _ => format!("a {ty}"),
    }
}

struct Resolver<'a> {
    modules: &'a ModuleSet,
    root: Option<&'a Module>,
    /// One shared copy of each definition, however many instances use it: the model
    /// stays small, and per-definition caches downstream (the executor converts a
    /// definition's actions once) see one pointer per definition.
    defs: RefCell<HashMap<(ModuleId, String), Arc<ComponentDef>>>,
}

impl Resolver<'_> {
    /// The shared copy of definition `name` (`def`) of module `m`.
    fn shared(&self, m: &Module, name: &str, def: &ComponentDef) -> Arc<ComponentDef> {
        self.defs
            .borrow_mut()
            .entry((m.id.clone(), name.to_owned()))
            .or_insert_with(|| Arc::new(def.clone()))
            .clone()
    }

    /// Finds the definition `r` names, seen from module `from` (or the service).
    fn component(
        &self,
        r: &ComponentRef,
        from: Option<&ModuleId>,
    ) -> Result<(ModuleId, Arc<ComponentDef>), String> {
        let found = |m: &Module| {
            m.component(&r.name)
                .map(|d| (m.id.clone(), self.shared(m, &r.name, d)))
        };
        if let Some(mname) = &r.module {
            let ms = self.modules.by_name(mname);
            return match ms.as_slice() {
                [] => Err(format!(
                    "no module named `{mname}` among the service's modules ({})",
                    self.modules
                        .iter()
                        .map(|m| m.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                [m] => found(m).ok_or_else(|| {
                    let hint = did_you_mean(&r.name, m.components.keys().map(String::as_str))
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    format!("module `{}` has no component `{}`{hint}", m.id, r.name)
                }),
                several => Err(format!(
                    "`{mname}` is ambiguous: {}",
                    several
                        .iter()
                        .map(|m| m.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        }
        if let Some(m) = from.and_then(|id| self.modules.get(id))
            && let Some(f) = found(m)
        {
            return Ok(f);
        }
        if let Some(m) = self.root
            && let Some(f) = found(m)
        {
            return Ok(f);
        }
        let all: Vec<_> = self.modules.iter().filter_map(|m| found(m)).collect();
        match all.len() {
            1 => Ok(all.into_iter().next().expect("one element")),
            0 => {
                let names: Vec<&str> = self
                    .modules
                    .iter()
                    .flat_map(|m| m.components.keys().map(String::as_str))
                    .collect();
                let hint = did_you_mean(&r.name, names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                Err(format!(
                    "no module of the service defines component `{}`{hint}",
                    r.name
                ))
            }
            _ => Err(format!(
                "component `{}` is defined in several modules ({}); write `module::{}`",
                r.name,
                all.iter()
                    .map(|(m, _)| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.name
            )),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn place<'a>(
    resolver: &Resolver<'_>,
    diags: &mut Diagnostics,
    placed: &mut Vec<Placed<'a>>,
    inputs_of: &mut Vec<(Attributes, Vec<String>)>,
    seen_ids: &mut BTreeSet<ComponentId>,
    node: Option<&str>,
    decl: &'a ComponentDecl,
    key: String,
) {
    let (module, def) = match resolver.component(&decl.reference, None) {
        Ok(x) => x,
        Err(e) => {
            diags.error(decl.at, &key, e);
            return;
        }
    };
    let id = ComponentId::on(node, &decl.reference);
    if !seen_ids.insert(id.clone()) {
        diags.error(decl.at, &key, format!("component `{id}` is declared twice"));
        return;
    }
    let mut inputs = Attributes::new();
    let mut secrets = Vec::new();
    for (name, a) in &def.attributes {
        if a.secret {
            secrets.push(name.clone());
        } else if let Some(d) = &a.default {
            inputs.insert(name.clone(), d.clone());
        }
    }
    for (name, v) in &decl.attributes {
        let akey = format!("{key}.attributes.{name}");
        match def.attributes.get(name) {
            None => {
                let hint = did_you_mean(name, def.attributes.keys().map(String::as_str));
                match hint {
                    Some(h) => diags.error_help(
                        v.at,
                        &akey,
                        format!("component `{}` has no attribute `{name}`", decl.reference),
                        format!("did you mean `{h}`?"),
                    ),
                    None => diags.error(
                        v.at,
                        &akey,
                        format!("component `{}` has no attribute `{name}`", decl.reference),
                    ),
                }
            }
            Some(a) if a.secret && !v.value.is_null() => diags.error(
                v.at,
                &akey,
                format!("`{name}` is a secret attribute; set it with `dtk service set-attribute`, which keeps it out of the repository"),
            ),
            Some(a) if !a.ty.accepts(&v.value) => diags.error(
                v.at,
                &akey,
                format!(
                    "`{name}` of `{}` must be {}, not {}",
                    decl.reference,
                    article(a.ty.as_str()),
                    v.value.kind_name()
                ),
            ),
            Some(_) => {
                if v.value.is_null() {
                    inputs.remove(name);
                } else {
                    inputs.insert(name.clone(), v.value.clone());
                }
            }
        }
    }
    placed.push(Placed {
        id,
        node: node.map(str::to_owned),
        module,
        def,
        reference: decl.reference.clone(),
        decl_links: &decl.links,
        at: decl.at,
        key,
        realizes_node: false,
    });
    inputs_of.push((inputs, secrets));
}

/// Where a dependency is satisfied: an index into `placed`, or a target component.
#[derive(Clone)]
enum Source {
    Local(usize),
    External(ExternalComponent),
}

impl Source {
    fn key(&self) -> String {
        match self {
            Source::Local(i) => format!("local:{i}"),
            Source::External(e) => format!("external:{}/{}", e.service, e.id),
        }
    }
}

fn ref_matches(reference: &ComponentRef, instance_ref: &ComponentRef) -> bool {
    reference.instance.is_none() || reference.instance == instance_ref.instance
}

fn matches_choice(
    src: &Source,
    choices: &[(ModuleId, ComponentRef)],
    placed: &[Placed<'_>],
) -> bool {
    match src {
        Source::Local(i) => {
            let p = &placed[*i];
            choices.iter().any(|(m, r)| {
                &p.module == m && p.def.name == r.name && ref_matches(r, &p.reference)
            })
        }
        Source::External(e) => choices
            .iter()
            .any(|(m, r)| &e.module == m && e.def_name == r.name),
    }
}

/// The placed components by definition name, each list in placement order: links and
/// dependencies look up their candidates here rather than scanning every component.
struct PlacedIndex<'p> {
    by_def: HashMap<&'p str, Vec<usize>>,
}

impl<'p> PlacedIndex<'p> {
    fn new(placed: &'p [Placed<'_>]) -> Self {
        let mut by_def: HashMap<&'p str, Vec<usize>> = HashMap::new();
        for (i, p) in placed.iter().enumerate() {
            by_def.entry(p.def.name.as_str()).or_default().push(i);
        }
        PlacedIndex { by_def }
    }

    /// The placed components whose definition is named one of `names`, in placement order.
    fn of<'n>(&self, names: impl Iterator<Item = &'n str>) -> Vec<usize> {
        let mut out: Vec<usize> = names
            .filter_map(|n| self.by_def.get(n))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn candidates(
    me: &Placed<'_>,
    choices: &[(ModuleId, ComponentRef)],
    same_node: bool,
    placed: &[Placed<'_>],
    index: &PlacedIndex<'_>,
    target: Option<&TargetBinding>,
) -> Result<Source, String> {
    let matching: Vec<usize> = index
        .of(choices.iter().map(|(_, r)| r.name.as_str()))
        .into_iter()
        .filter(|&i| placed[i].id != me.id)
        .filter(|&i| {
            let p = &placed[i];
            choices.iter().any(|(m, r)| {
                &p.module == m && p.def.name == r.name && ref_matches(r, &p.reference)
            })
        })
        .collect();
    let on_node: Vec<usize> = matching
        .iter()
        .copied()
        .filter(|i| placed[*i].node == me.node && me.node.is_some())
        .collect();
    if on_node.len() == 1 {
        return Ok(Source::Local(on_node[0]));
    }
    if same_node {
        return match on_node.len() {
            0 => Err(format!(
                "no matching component on node `{}`",
                me.node.as_deref().unwrap_or("-")
            )),
            _ => Err(ambiguous(on_node.iter().map(|i| placed[*i].id.to_string()))),
        };
    }
    match matching.len() {
        1 => return Ok(Source::Local(matching[0])),
        0 => {}
        _ => {
            return Err(ambiguous(
                matching.iter().map(|i| placed[*i].id.to_string()),
            ));
        }
    }
    let external: Vec<&ExternalComponent> = target
        .map(|t| {
            t.components
                .iter()
                .filter(|e| {
                    choices
                        .iter()
                        .any(|(m, r)| &e.module == m && e.def_name == r.name)
                })
                .collect()
        })
        .unwrap_or_default();
    match external.as_slice() {
        [e] => Ok(Source::External((*e).clone())),
        [] => Err(format!(
            "no component of the service{} matches {}",
            if target.is_some() {
                " or its target"
            } else {
                ""
            },
            choices
                .iter()
                .map(|(m, r)| format!("`{m}::{}`", r.name))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
        several => Err(ambiguous(
            several.iter().map(|e| format!("{}/{}", e.service, e.id)),
        )),
    }
}

fn ambiguous(ids: impl Iterator<Item = String>) -> String {
    let list: Vec<String> = ids.map(|s| format!("`{s}`")).collect();
    format!(
        "several components match ({}); choose one with `links:` in dtk.service.yaml",
        list.join(", ")
    )
}

fn find_explicit(
    l: &LinkDecl,
    me: &Placed<'_>,
    placed: &[Placed<'_>],
    index: &PlacedIndex<'_>,
    target: Option<&TargetBinding>,
) -> Result<Source, String> {
    if let Some(service) = &l.service {
        let t = target.filter(|t| t.components.iter().any(|c| &c.service == service));
        let Some(t) = t else {
            return Err(format!(
                "link to `{service}/{}`: `{service}` is not this service's target",
                l.target
            ));
        };
        return t
            .components
            .iter()
            .find(|c| {
                &c.service == service
                    && c.def_name == l.target.component.name
                    && (l.target.component.instance.is_none()
                        || c.id.as_str().ends_with(&format!(
                            "[{}]",
                            l.target.component.instance.as_deref().unwrap_or("")
                        )))
            })
            .cloned()
            .map(Source::External)
            .ok_or_else(|| format!("target `{service}` has no component `{}`", l.target));
    }
    let NodeComponentRef { node, component } = &l.target;
    let found: Vec<usize> = index
        .of(std::iter::once(component.name.as_str()))
        .into_iter()
        .filter(|&i| ref_matches(component, &placed[i].reference))
        .filter(|&i| node.is_none() || &placed[i].node == node)
        .collect();
    // `backend` names the instance without an instance name when there is one, rather
    // than every `backend[...]`.
    let exact: Vec<usize> = found
        .iter()
        .copied()
        .filter(|i| placed[*i].reference.instance == component.instance)
        .collect();
    let found = if exact.is_empty() { found } else { exact };
    let same: Vec<usize> = found
        .iter()
        .copied()
        .filter(|i| placed[*i].node == me.node)
        .collect();
    match (same.as_slice(), found.as_slice()) {
        ([i], _) | ([], [i]) => Ok(Source::Local(*i)),
        ([], []) => Err(format!(
            "link target `{}` is not a component of this service",
            l.target
        )),
        _ => Err(ambiguous(found.iter().map(|i| placed[*i].id.to_string()))),
    }
}

fn add_edge(deps: &mut Vec<Dependency>, src: &Source, placed: &[Placed<'_>], reason: String) {
    if let Source::Local(i) = src {
        let on = placed[*i].id.clone();
        if !deps.iter().any(|d| d.on == on) {
            deps.push(Dependency { on, reason });
        }
    }
}

fn add_links(
    me: &Placed<'_>,
    src: &Source,
    placed: &[Placed<'_>],
    resolver: &Resolver<'_>,
    links: &mut Vec<ResolvedLink>,
    _target: Option<&TargetBinding>,
) {
    let (module, def_name) = match src {
        Source::Local(i) => (&placed[*i].module, placed[*i].def.name.as_str()),
        Source::External(e) => (&e.module, e.def_name.as_str()),
    };
    let mut mappings = Vec::new();
    for ld in &me.def.link_defs {
        let Ok((m, _)) = resolver.component(&ld.target, Some(&me.module)) else {
            continue;
        };
        if &m == module && ld.target.name == def_name {
            for am in &ld.attribute_mappings {
                mappings.push((am.from.clone(), am.to.clone()));
            }
        }
    }
    if mappings.is_empty() {
        return;
    }
    let from = match src {
        Source::Local(i) => LinkSource::Component(placed[*i].id.clone()),
        Source::External(e) => LinkSource::External {
            service: e.service.clone(),
            component: e.id.clone(),
            values: e.values.clone(),
        },
    };
    links.push(ResolvedLink { from, mappings });
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
