//! Component definitions: attributes, dependencies on other components, and
//! `link_defs` with their attribute mappings.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Location, did_you_mean};
use crate::dsl::action::actions;
use crate::dsl::decode::{
    Ctx, child, found, index, node_value, one_of, parse_ref, shorten, type_phrase, typed_value,
};
use crate::dsl::scope::{RefCheck, Scope};
use crate::ident::{ComponentRef, check_name};
use crate::module::{
    AttrType, AttributeDef, AttributeMapping, ComponentDef, DependencyDef, LinkDef,
};
use crate::yaml::{YamlKind, YamlNode};

const COMPONENT_DEF_KEYS: &[&str] = &[
    "description",
    "attributes",
    "dependencies",
    "link_defs",
    "actions",
    "singleton",
    "providers",
];

/// Component definition keys of the original dtk kept in [`ComponentDef::metadata`].
pub(crate) const COMPONENT_METADATA_KEYS: &[&str] = &["providers"];

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
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "description" => def.description = ctx.opt_text(v, &p, "`description`"),
            "singleton" => def.singleton = ctx.bool(v, &p, "`singleton`").unwrap_or(false),
            "attributes" => def.attributes = attributes(ctx, v, &p),
            "dependencies" => def.dependencies = component_dependencies(ctx, scope, v, &p),
            "link_defs" => def.link_defs = link_defs(ctx, scope, v, &p),
            "actions" => def.actions = actions(ctx, v, &p),
            _ if COMPONENT_METADATA_KEYS.contains(&key) => {
                def.metadata.insert(key.to_owned(), node_value(v));
            }
            _ => {}
        }
    }
    def
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

/// `dependencies` of a component: a list of references or of `NAME: {choices: [...]}`
/// entries, or a mapping of names to specs.
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
                                same_node: false,
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

fn named_dependency(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    k: &YamlNode,
    v: &YamlNode,
    path: &str,
) -> Option<DependencyDef> {
    let name = k.scalar()?;
    let p = child(path, name);
    if !ctx.check_name_at(name, k.at, &p, "dependency name") {
        return None;
    }
    let mut dep = DependencyDef {
        name: name.to_owned(),
        choices: Vec::new(),
        same_node: false,
        at: k.at,
    };
    match &v.kind {
        YamlKind::Scalar { text, .. } if !v.is_null() => {
            let r = parse_ref(ctx, text, v.at, &p)?;
            scope.check(ctx, &r, v.at, &p, RefCheck::Choices);
            dep.choices.push(r);
        }
        YamlKind::Map(entries) => {
            ctx.check_keys(entries, &p, &["choices", "location"], "a named dependency");
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
                    "location" => dep.same_node |= location(ctx, ev, &ep).unwrap_or(false),
                    _ => {}
                }
            }
            if dep.choices.is_empty() {
                ctx.error_help(
                    v.at,
                    &p,
                    format!("dependency `{name}` has no `choices`"),
                    "list the components that satisfy it: `choices: [mysql::server]`",
                );
            }
        }
        _ => ctx.error_help(
            v.at,
            &p,
            format!("dependency `{name}` must be a component reference or `{{choices: [...]}}`, found {}", found(v)),
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
            if let Some(l) = item.get("location") {
                dep.same_node |= location(ctx, l, &child(path, "location")).unwrap_or(false);
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

/// `location: local` (same node) or `remote`.
fn location(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Option<bool> {
    match node.scalar() {
        Some("local") => Some(true),
        Some("remote") => Some(false),
        _ => {
            ctx.error_help(
                node.at,
                path,
                format!(
                    "`location` must be `local` or `remote`, found {}",
                    found(node)
                ),
                "`local`: the dependency must be on the same node",
            );
            None
        }
    }
}

/// `link_defs`: a mapping from producer references to specs, or a list of single-key
/// mappings (both forms appear in the original dtk's modules).
fn link_defs(ctx: &mut Ctx, scope: &Scope<'_>, node: &YamlNode, path: &str) -> Vec<LinkDef> {
    let mut out = Vec::new();
    match &node.kind {
        YamlKind::Map(entries) => {
            for (k, v) in entries {
                out.extend(link_def(ctx, scope, k, v, path));
            }
        }
        YamlKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.kind {
                    YamlKind::Map(entries) if entries.len() == 1 => {
                        let (k, v) = &entries[0];
                        out.extend(link_def(ctx, scope, k, v, &p));
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

fn link_def(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    k: &YamlNode,
    v: &YamlNode,
    path: &str,
) -> Option<LinkDef> {
    let text = k.scalar()?;
    let p = child(path, text);
    let target = parse_ref(ctx, text, k.at, &p)?;
    scope.check(ctx, &target, k.at, &p, RefCheck::Links);
    let mut def = LinkDef {
        target,
        attribute_mappings: Vec::new(),
        dependency: None,
        at: k.at,
    };
    let entries = ctx.map(v, &p, "a link definition")?;
    ctx.check_keys(
        entries,
        &p,
        &["attribute_mappings", "dependency_name"],
        "a link definition",
    );
    for (ek, ev) in entries {
        let Some(key) = ek.scalar() else { continue };
        let ep = child(&p, key);
        match key {
            "dependency_name" => def.dependency = ctx.name(ev, &ep, "dependency name"),
            "attribute_mappings" => {
                let Some(items) = ctx.seq(ev, &ep, "`attribute_mappings`") else {
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let ip = index(&ep, i);
                    let Some(t) = ctx.text(item, &ip, "an attribute mapping") else {
                        continue;
                    };
                    match parse_mapping(&t) {
                        Ok((from, to)) => def.attribute_mappings.push(AttributeMapping {
                            from,
                            to,
                            at: item.at,
                        }),
                        Err(why) => ctx.error_help(
                            item.at,
                            &ip,
                            format!("malformed attribute mapping `{}`: {why}", shorten(&t)),
                            "write `$producer_attr -> my_attr` or `my_attr <- $producer_attr`",
                        ),
                    }
                }
            }
            _ => {}
        }
    }
    Some(def)
}

/// Parses `$out -> in` or `in <- $out` into (producer path, consumer attribute).
pub(crate) fn parse_mapping(text: &str) -> Result<(Vec<String>, String), String> {
    let (from, to) = if let Some((l, r)) = text.split_once("->") {
        (l.trim(), r.trim())
    } else if let Some((l, r)) = text.split_once("<-") {
        (r.trim(), l.trim())
    } else {
        return Err("expected `->` or `<-`".to_owned());
    };
    if to.starts_with('$') {
        return Err(format!(
            "`{to}` is on the receiving side, where this component's attribute goes (without `$`)"
        ));
    }
    let Some(path) = from.strip_prefix('$') else {
        return Err(format!(
            "the producer's attribute must start with `$`, found `{}`",
            shorten(from)
        ));
    };
    if path.contains("->") || path.contains("<-") || to.contains("->") || to.contains("<-") {
        return Err("more than one arrow".to_owned());
    }
    let mut segments = Vec::new();
    if path.is_empty() {
        return Err("`$` names no attribute".to_owned());
    }
    for seg in path.split('.') {
        if seg.is_empty() {
            return Err(format!("`${path}` has an empty segment between dots"));
        }
        check_name("attribute name", seg).map_err(|e| format!("`${path}`: {}", e.reason))?;
        segments.push(seg.to_owned());
    }
    check_name("attribute name", to).map_err(|e| format!("`{}`: {}", shorten(to), e.reason))?;
    Ok((segments, to.to_owned()))
}
