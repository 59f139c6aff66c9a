//! Component definitions: attributes, dependencies on other components, and
//! `link_defs` with their attribute mappings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::diag::{Location, did_you_mean};
use crate::dsl::action::actions;
use crate::dsl::decode::{
    Ctx, child, found, index, node_value, one_of, parse_ref, shorten, type_phrase, typed_value,
};
use crate::dsl::scope::{RefCheck, Scope, list};
use crate::ident::{ComponentRef, check_name};
use crate::module::{
    ActionDef, ActionKind, AttrType, AttributeDef, AttributeMapping, ComponentDef, DependencyDef,
    Flow, LinkDef, Placement,
};
use crate::value::Value;
use crate::yaml::{YamlKind, YamlNode};

const COMPONENT_DEF_KEYS: &[&str] = &[
    "description",
    "attributes",
    "dependencies",
    "link_defs",
    "actions",
    "action",
    "singleton",
    "only_one_per_node",
    "external_ref",
    "providers",
    "includes",
    "include_modules",
];

/// Component definition keys of the original dtk kept in [`ComponentDef::metadata`]
/// (`providers`: the ruby gems a ruby action needed; `includes`, `include_modules`:
/// modules whose code the original loaded alongside).
pub(crate) const COMPONENT_METADATA_KEYS: &[&str] = &["providers", "includes", "include_modules"];

/// The kinds of the original dtk's legacy `external_ref` (what ran the component's
/// `create`).
const EXTERNAL_REF_KINDS: &[&str] = &["puppet_class", "puppet_definition", "serverspec_test"];

const ATTRIBUTE_KEYS: &[&str] = &[
    "type",
    "default",
    "required",
    "description",
    "dynamic",
    "hidden",
    "secret",
    "input",
    "constant",
];

const TYPES: &[&str] = &[
    "string", "integer", "boolean", "hash", "array", "port", "any",
];

pub(crate) fn component_def(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    name: &str,
    at: Location,
    node: &YamlNode,
    path: &str,
) -> ComponentDef {
    let mut def = ComponentDef {
        name: name.to_owned(),
        description: None,
        attributes: BTreeMap::new(),
        dependencies: Vec::new(),
        link_defs: Vec::new(),
        actions: BTreeMap::new(),
        singleton: false,
        metadata: BTreeMap::new(),
        at,
    };
    let Some(entries) = ctx.map(node, path, "a component definition") else {
        return def;
    };
    ctx.check_keys(entries, path, COMPONENT_DEF_KEYS, "a component definition");
    let singleton = ctx.aliased(entries, path, &["singleton", "only_one_per_node"]);
    if let Some((key, v)) = singleton {
        def.singleton = ctx
            .bool(v, &child(path, key), &format!("`{key}`"))
            .unwrap_or(false);
    }
    if let Some((key, v)) = ctx.aliased(entries, path, &["actions", "action"]) {
        def.actions = actions(ctx, v, &child(path, key));
    }
    let mut named = Vec::new();
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "description" => def.description = ctx.opt_text(v, &p, "`description`"),
            "attributes" => def.attributes = attributes(ctx, v, &p),
            "dependencies" => def.dependencies = component_dependencies(ctx, scope, v, &p),
            "link_defs" => def.link_defs = link_defs(ctx, scope, v, &p, &mut named),
            "external_ref" => {
                if let Some(create) = external_ref(ctx, v, &p) {
                    if def.actions.contains_key("create") {
                        ctx.error_help(
                            k.at,
                            &p,
                            "both `external_ref` and a `create` action say how the component is created",
                            "keep one: `actions: {create: {puppet_class: NAME}}` is the current form of `external_ref: {puppet_class: NAME}`",
                        );
                    } else {
                        def.actions.insert("create".to_owned(), create);
                    }
                }
            }
            _ if COMPONENT_METADATA_KEYS.contains(&key) => {
                def.metadata.insert(key.to_owned(), node_value(v));
            }
            _ => {}
        }
    }
    // A link definition's `dependency_name` names one of the component's dependencies.
    for (dep, at, p) in named {
        if def.dependencies.iter().any(|d| d.name == dep) {
            continue;
        }
        let names = def.dependencies.iter().map(|d| d.name.as_str());
        let help = match did_you_mean(&dep, names.clone()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if def.dependencies.is_empty() => {
                format!("declare it under `dependencies` of `{name}`")
            }
            None => format!("its dependencies are {}", list(names)),
        };
        ctx.error_help(
            at,
            &p,
            format!("`dependency_name: {dep}` names no dependency of `{name}`"),
            help,
        );
    }
    def
}

/// The original dtk's legacy `external_ref: {puppet_class: NAME}` (or `puppet_definition`,
/// `serverspec_test`): the component's `create` action, of a kind this dtk parses and
/// refuses at staging, as `actions: {create: {puppet_class: NAME}}` is.
fn external_ref(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Option<ActionDef> {
    let help =
        "write `external_ref: {puppet_class: NAME}` (or `puppet_definition`, `serverspec_test`)";
    let entry = match node.as_map() {
        Some([(k, v)]) => Some((k, v)),
        _ => None,
    };
    let Some((k, v)) = entry else {
        ctx.error_help(
            node.at,
            path,
            format!(
                "`external_ref` must be a mapping with one key, found {}",
                found(node)
            ),
            help,
        );
        return None;
    };
    let kind = k.scalar()?;
    if !EXTERNAL_REF_KINDS.contains(&kind) {
        let hint = match did_you_mean(kind, EXTERNAL_REF_KINDS.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the kinds are {}", one_of(EXTERNAL_REF_KINDS)),
        };
        ctx.error_help(
            k.at,
            &child(path, kind),
            format!("unknown `external_ref` kind `{}`", shorten(kind)),
            hint,
        );
        return None;
    }
    let name = ctx.text(v, &child(path, kind), "the `external_ref` name")?;
    Some(ActionDef {
        name: "create".to_owned(),
        kind: ActionKind::Unsupported {
            kind: kind.to_owned(),
            detail: Value::Hash(BTreeMap::from([(kind.to_owned(), Value::Str(name))])),
        },
        attempts: 1,
        sleep: Duration::ZERO,
        timeout: None,
        at: node.at,
    })
}

fn attributes(ctx: &mut Ctx, node: &YamlNode, path: &str) -> BTreeMap<String, AttributeDef> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, path, "`attributes`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(name) = k.scalar() else { continue };
        let p = child(path, name);
        if !ctx.check_name_at(name, k.at, &p, "attribute name") {
            continue;
        }
        out.insert(name.to_owned(), attribute(ctx, name, k.at, v, &p));
    }
    out
}

fn attribute(ctx: &mut Ctx, name: &str, at: Location, node: &YamlNode, path: &str) -> AttributeDef {
    let mut a = AttributeDef {
        name: name.to_owned(),
        ty: AttrType::Any,
        default: None,
        required: false,
        description: None,
        dynamic: false,
        hidden: false,
        secret: false,
        input: false,
        constant: false,
        at,
    };
    let Some(entries) = ctx.map(node, path, "an attribute definition") else {
        return a;
    };
    ctx.check_keys(entries, path, ATTRIBUTE_KEYS, "an attribute definition");
    let mut type_ok = true;
    if let Some(t) = node.get("type") {
        let p = child(path, "type");
        match t.scalar().map(attr_type) {
            Some(Some(ty)) => a.ty = ty,
            _ => {
                type_ok = false;
                let help = match t
                    .scalar()
                    .and_then(|s| did_you_mean(s, TYPES.iter().copied()))
                {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("the types are {}", one_of(TYPES)),
                };
                ctx.error_help(
                    t.at,
                    &p,
                    format!("unknown attribute type {}", found(t)),
                    help,
                );
            }
        }
    }
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        let flag = |ctx: &mut Ctx| ctx.bool(v, &p, &format!("`{key}`")).unwrap_or(false);
        match key {
            "default" if v.is_null() => {}
            "default" if type_ok => match typed_value(a.ty, v) {
                Ok(value) => a.default = Some(value),
                Err(why) => ctx.error_help(
                    v.at,
                    &p,
                    format!("default {why} of attribute `{name}`"),
                    format!("expected {}", type_phrase(a.ty)),
                ),
            },
            "required" => a.required = flag(ctx),
            "dynamic" => a.dynamic = flag(ctx),
            "hidden" => a.hidden = flag(ctx),
            "secret" => a.secret = flag(ctx),
            "input" => a.input = flag(ctx),
            "constant" => a.constant = flag(ctx),
            "description" => a.description = ctx.opt_text(v, &p, "`description`"),
            _ => {}
        }
    }
    a
}

fn attr_type(s: &str) -> Option<AttrType> {
    Some(match s {
        "string" => AttrType::String,
        "integer" => AttrType::Integer,
        "boolean" => AttrType::Boolean,
        "hash" => AttrType::Hash,
        "array" => AttrType::Array,
        "port" => AttrType::Port,
        "any" => AttrType::Any,
        _ => return None,
    })
}

/// `dependencies` of a component: a list of references and of `NAME: SPEC` entries, or a
/// mapping of names to specs. A spec is a reference, `{choices: [...], location: ...}`,
/// `{component: REF, location: ...}` or `{location: ...}` (the name is then the
/// reference, `module::cmp: {location: remote}`), or a one-element list of such a mapping.
fn component_dependencies(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
) -> Vec<DependencyDef> {
    let mut out: Vec<DependencyDef> = Vec::new();
    match &node.kind {
        YamlKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.kind {
                    YamlKind::Scalar { text, .. } if !item.is_null() => {
                        if let Some(r) = parse_ref(ctx, text, item.at, &p) {
                            scope.check(ctx, &r, item.at, &p, RefCheck::Choices);
                            out.push(DependencyDef {
                                name: r.to_string(),
                                choices: vec![r],
                                placement: Placement::Anywhere,
                                at: item.at,
                            });
                        }
                    }
                    YamlKind::Map(entries) if entries.len() == 1 => {
                        let (k, v) = &entries[0];
                        out.extend(named_dependency(ctx, scope, k, v, &p));
                    }
                    _ => ctx.error_help(
                        item.at,
                        &p,
                        format!("a dependency must be a component reference or `NAME: {{choices: [...]}}`, found {}", found(item)),
                        "write `- db` or `- db: {choices: [mysql::server, postgres::server]}`",
                    ),
                }
            }
        }
        YamlKind::Map(entries) => {
            for (k, v) in entries {
                out.extend(named_dependency(ctx, scope, k, v, path));
            }
        }
        _ if node.is_null() => {}
        _ => ctx.error_help(
            node.at,
            path,
            format!("`dependencies` must be a list, found {}", found(node)),
            "write `dependencies: [db]`",
        ),
    }
    let mut seen = BTreeSet::new();
    for d in &out {
        if !seen.insert(d.name.clone()) {
            ctx.error(
                d.at,
                path,
                format!("dependency `{}` is declared twice", d.name),
            );
        }
    }
    out
}

/// Whether `name` may name a dependency: a name, or a component reference
/// (`module::cmp`), which the original dtk used as the name of the dependency on it.
fn dependency_name_ok(name: &str) -> bool {
    check_name("dependency name", name).is_ok() || name.parse::<ComponentRef>().is_ok()
}

fn named_dependency(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    k: &YamlNode,
    v: &YamlNode,
    path: &str,
) -> Option<DependencyDef> {
    let name = k.scalar()?;
    let p = child(path, name);
    if !dependency_name_ok(name) {
        ctx.check_name_at(name, k.at, &p, "dependency name");
        return None;
    }
    let mut dep = DependencyDef {
        name: name.to_owned(),
        choices: Vec::new(),
        placement: Placement::Anywhere,
        at: k.at,
    };
    // `NAME: [{...}]`: a one-element list of the mapping, as the original accepted.
    let spec = match v.as_seq() {
        Some([only]) if only.as_map().is_some() => only,
        _ => v,
    };
    match &spec.kind {
        YamlKind::Scalar { text, .. } if !spec.is_null() => {
            let r = parse_ref(ctx, text, spec.at, &p)?;
            scope.check(ctx, &r, spec.at, &p, RefCheck::Choices);
            dep.choices.push(r);
        }
        YamlKind::Map(entries) => {
            ctx.check_keys(
                entries,
                &p,
                &["choices", "component", "location"],
                "a named dependency",
            );
            for (ek, ev) in entries {
                let Some(key) = ek.scalar() else { continue };
                let ep = child(&p, key);
                match key {
                    "choices" => {
                        let Some(items) = ctx.seq(ev, &ep, "`choices`") else { continue };
                        for (i, item) in items.iter().enumerate() {
                            let ip = index(&ep, i);
                            if let Some(r) = choice(ctx, &mut dep, item, &ip) {
                                scope.check(ctx, &r, item.at, &ip, RefCheck::Choices);
                                dep.choices.push(r);
                            }
                        }
                    }
                    "component" if spec.get("choices").is_none() => {
                        let Some(text) = ctx.text(ev, &ep, "`component`") else { continue };
                        if let Some(r) = parse_ref(ctx, &text, ev.at, &ep) {
                            scope.check(ctx, &r, ev.at, &ep, RefCheck::Choices);
                            dep.choices.push(r);
                        }
                    }
                    "component" => ctx.error_help(
                        ek.at,
                        &ep,
                        format!("dependency `{name}` has both `choices` and `component`"),
                        "list every component under `choices`",
                    ),
                    "location" => {
                        if let Some(pl) = location(ctx, ev, &ep) {
                            dep.placement = pl;
                        }
                    }
                    _ => {}
                }
            }
            let named_by_key = spec.get("choices").is_none() && spec.get("component").is_none();
            if named_by_key && let Ok(r) = name.parse::<ComponentRef>()
                && (r.module.is_some() || spec.get("location").is_some())
            {
                // `module::cmp: {location: remote}`: the key is the component.
                scope.check(ctx, &r, k.at, &p, RefCheck::Choices);
                dep.choices.push(r);
            }
            if dep.choices.is_empty() && spec.get("component").is_none() {
                ctx.error_help(
                    spec.at,
                    &p,
                    format!("dependency `{name}` has no `choices`"),
                    "list the components that satisfy it: `choices: [mysql::server]`",
                );
            }
        }
        _ => ctx.error_help(
            spec.at,
            &p,
            format!("dependency `{name}` must be a component reference or `{{choices: [...]}}`, found {}", found(spec)),
            "write `db: {choices: [mysql::server, postgres::server]}`",
        ),
    }
    Some(dep)
}

fn choice(
    ctx: &mut Ctx,
    dep: &mut DependencyDef,
    item: &YamlNode,
    path: &str,
) -> Option<ComponentRef> {
    match &item.kind {
        YamlKind::Scalar { text, .. } if !item.is_null() => parse_ref(ctx, text, item.at, path),
        YamlKind::Map(entries) => {
            ctx.check_keys(
                entries,
                path,
                &["component", "location"],
                "a dependency choice",
            );
            if let Some(l) = item.get("location")
                && let Some(pl) = location(ctx, l, &child(path, "location"))
            {
                // One placement for the whole dependency: the closest one asked for.
                if pl == Placement::SameNode || dep.placement == Placement::Anywhere {
                    dep.placement = pl;
                }
            }
            let Some(c) = item.get("component") else {
                ctx.error_help(
                    item.at,
                    path,
                    "a dependency choice needs a `component`",
                    "write `- component: module::cmp`",
                );
                return None;
            };
            let p = child(path, "component");
            let text = ctx.text(c, &p, "`component`")?;
            parse_ref(ctx, &text, c.at, &p)
        }
        _ => {
            ctx.error(
                item.at,
                path,
                format!(
                    "a dependency choice must be a component reference, found {}",
                    found(item)
                ),
            );
            None
        }
    }
}

/// `location: local` (same node) or `remote` (another node).
fn location(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Option<Placement> {
    match node.scalar() {
        Some("local") => Some(Placement::SameNode),
        Some("remote") => Some(Placement::OtherNode),
        _ => {
            ctx.error_help(
                node.at,
                path,
                format!(
                    "`location` must be `local` or `remote`, found {}",
                    found(node)
                ),
                "`local`: the dependency must be on the same node; `remote`: on another one",
            );
            None
        }
    }
}

const LINK_DEF_KEYS: &[&str] = &[
    "attribute_mappings",
    "dependency_name",
    "name",
    "location",
    "same_node",
];

/// `link_defs`: a mapping from producer references to a link definition or a list of
/// them, or a list of single-key mappings (every form appears in the original dtk's
/// modules).
fn link_defs(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
    named: &mut Named,
) -> Vec<LinkDef> {
    let mut out = Vec::new();
    match &node.kind {
        YamlKind::Map(entries) => {
            for (k, v) in entries {
                out.extend(link_def(ctx, scope, k, v, path, named));
            }
        }
        YamlKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.kind {
                    YamlKind::Map(entries) if entries.len() == 1 => {
                        let (k, v) = &entries[0];
                        out.extend(link_def(ctx, scope, k, v, &p, named));
                    }
                    _ => ctx.error_help(
                        item.at,
                        &p,
                        format!("a link definition must be `PRODUCER: {{attribute_mappings: [...]}}`, found {}", found(item)),
                        "write `- db: {attribute_mappings: [\"$host -> db_host\"]}`",
                    ),
                }
            }
        }
        _ if node.is_null() => {}
        _ => ctx.error_help(
            node.at,
            path,
            format!("`link_defs` must be a mapping, found {}", found(node)),
            "write `link_defs: {db: {attribute_mappings: [\"$host -> db_host\"]}}`",
        ),
    }
    out
}

/// The definitions for one producer: a mapping, or a list of mappings (one for a
/// producer on the same node and one for a remote one, say).
fn link_def(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    k: &YamlNode,
    v: &YamlNode,
    path: &str,
    named: &mut Named,
) -> Vec<LinkDef> {
    let Some(text) = k.scalar() else {
        return Vec::new();
    };
    let p = child(path, text);
    let Some(target) = parse_ref(ctx, text, k.at, &p) else {
        return Vec::new();
    };
    scope.check(ctx, &target, k.at, &p, RefCheck::Links);
    match &v.kind {
        YamlKind::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| one_link_def(ctx, &target, k.at, item, &index(&p, i), named))
            .collect(),
        _ => one_link_def(ctx, &target, k.at, v, &p, named)
            .into_iter()
            .collect(),
    }
}

/// The dependency names link definitions give explicitly (`dependency_name`), with where:
/// each must name a dependency of the component.
type Named = Vec<(String, Location, String)>;

fn one_link_def(
    ctx: &mut Ctx,
    target: &ComponentRef,
    at: Location,
    v: &YamlNode,
    p: &str,
    named: &mut Named,
) -> Option<LinkDef> {
    let mut def = LinkDef {
        target: target.clone(),
        attribute_mappings: Vec::new(),
        dependency: None,
        placement: Placement::Anywhere,
        at,
    };
    let entries = ctx.map(v, p, "a link definition")?;
    ctx.check_keys(entries, p, LINK_DEF_KEYS, "a link definition");
    if let Some((key, n)) = ctx.aliased(entries, p, &["dependency_name", "name"]) {
        let kp = child(p, key);
        def.dependency = dependency_ref(ctx, n, &kp);
        if key == "dependency_name"
            && let Some(d) = &def.dependency
        {
            named.push((d.clone(), n.at, kp));
        }
    }
    if let Some((key, n)) = ctx.aliased(entries, p, &["location", "same_node"]) {
        let kp = child(p, key);
        let placement = if key == "location" {
            location(ctx, n, &kp)
        } else {
            ctx.bool(n, &kp, "`same_node`").map(|same| {
                if same {
                    Placement::SameNode
                } else {
                    Placement::OtherNode
                }
            })
        };
        def.placement = placement.unwrap_or_default();
    }
    if let Some(n) = v.get("attribute_mappings") {
        let ep = child(p, "attribute_mappings");
        if let Some(items) = ctx.seq(n, &ep, "`attribute_mappings`") {
            for (i, item) in items.iter().enumerate() {
                let ip = index(&ep, i);
                let Some(t) = ctx.text(item, &ip, "an attribute mapping") else {
                    continue;
                };
                match parse_mapping(&t) {
                    Ok(mut m) => {
                        m.at = item.at;
                        def.attribute_mappings.push(m);
                    }
                    Err(why) => ctx.error_help(
                        item.at,
                        &ip,
                        format!("malformed attribute mapping `{}`: {why}", shorten(&t)),
                        "write `$producer_attr -> my_attr`, or `producer_attr <- $my_attr` to send a value the other way",
                    ),
                }
            }
        }
    }
    Some(def)
}

/// The name of a dependency a link definition satisfies: a name, or a component
/// reference (the original's name of a dependency written `module::cmp`).
fn dependency_ref(ctx: &mut Ctx, n: &YamlNode, path: &str) -> Option<String> {
    let text = ctx.text(n, path, "dependency name")?;
    if dependency_name_ok(&text) {
        Some(text)
    } else {
        ctx.check_name_at(&text, n.at, path, "dependency name");
        None
    }
}

/// Parses an attribute mapping: `$out -> in` (the linked component's `out` feeds this
/// one's `in`) or `in <- $out` / `in <- CONSTANT` (this component's `out`, or the
/// constant, feeds the linked component's `in`). `$node.NAME` names an attribute of a
/// node; `$name[0]` is `$name.0`.
pub(crate) fn parse_mapping(text: &str) -> Result<AttributeMapping, String> {
    let (source, to, flow) = if let Some((l, r)) = text.split_once("->") {
        (l.trim(), r.trim(), Flow::In)
    } else if let Some((l, r)) = text.split_once("<-") {
        (r.trim(), l.trim(), Flow::Out)
    } else {
        return Err("expected `->` or `<-`".to_owned());
    };
    if source.contains("->") || source.contains("<-") || to.contains("->") || to.contains("<-") {
        return Err("more than one arrow".to_owned());
    }
    if to.starts_with('$') {
        return Err(match flow {
            Flow::In => format!(
                "`{to}` is on the receiving side, where this component's attribute goes (without `$`)"
            ),
            Flow::Out => format!(
                "`{to}` is on the receiving side, where the linked component's attribute goes (without `$`)"
            ),
        });
    }
    check_name("attribute name", to).map_err(|e| format!("`{}`: {}", shorten(to), e.reason))?;
    let mapping = |from: Vec<String>, constant: Option<Value>| AttributeMapping {
        from,
        to: to.to_owned(),
        flow,
        constant,
        at: Location::default(),
    };
    let Some(path) = source.strip_prefix('$') else {
        if flow == Flow::Out
            && let Some(c) = mapping_constant(source)
        {
            return Ok(mapping(Vec::new(), Some(c)));
        }
        return Err(match flow {
            Flow::In => format!(
                "the producer's attribute must start with `$`, found `{}`",
                shorten(source)
            ),
            Flow::Out => format!(
                "`{}` is neither this component's attribute (`$name`) nor a constant (`'text'`, `true`, `42`, `{{\"k\": 1}}`)",
                shorten(source)
            ),
        });
    };
    Ok(mapping(attribute_path(path)?, None))
}

/// `a.b.0` or `a[0]` (the original's index form) into segments, each a valid name.
fn attribute_path(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Err("`$` names no attribute".to_owned());
    }
    let normalized = match path.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
        Some((head, i)) if !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()) => {
            format!("{head}.{i}")
        }
        _ => path.to_owned(),
    };
    let mut segments = Vec::new();
    for seg in normalized.split('.') {
        if seg.is_empty() {
            return Err(format!("`${path}` has an empty segment between dots"));
        }
        check_name("attribute name", seg).map_err(|e| format!("`${path}`: {}", e.reason))?;
        segments.push(seg.to_owned());
    }
    Ok(segments)
}

/// A constant on the sending side of `<-`, as the original dtk read them: `'text'`,
/// `true` / `false`, a whole number, or JSON (`{"k": 1}`, `[1, 2]`; single quotes allowed
/// for double ones).
fn mapping_constant(text: &str) -> Option<Value> {
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''))
        && !inner.is_empty()
    {
        return Some(Value::Str(inner.to_owned()));
    }
    match text {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().ok().map(Value::Int);
    }
    if text.starts_with(['{', '[']) {
        return serde_json::from_str(&text.replace('\'', "\"")).ok();
    }
    None
}
