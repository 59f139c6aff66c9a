//! Decoding `dtk.module.yaml`: the module's identity, dependencies, component
//! definitions and assemblies, with every reference checked.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{DslError, Location, did_you_mean};
use crate::dsl::body::{self, Index, Mode, StepCheck, parse_ref};
use crate::dsl::decode::{
    Ctx, child, found, index, node_value, one_of, shorten, type_phrase, typed_value,
};
use crate::dsl::fail;
use crate::dsl::scope::{RefCheck, Scope, Target, list};
use crate::ident::{ComponentRef, ModuleId, ModuleVersion, VersionReq, check_name};
use crate::module::{
    ActionDef, ActionKind, Assembly, AttrType, AttributeDef, AttributeMapping, Command,
    ComponentDef, DSL_VERSION, DependencyDef, LinkDef, Module, ModuleDependency,
};
use crate::value::Value;
use crate::yaml::{self, YamlKind, YamlNode};

/// Metadata keys of the original dtk kept in [`Module::metadata`].
pub(crate) const METADATA_KEYS: &[&str] =
    &["keywords", "license", "author", "homepage", "repository"];

const MODULE_KEYS: &[&str] = &[
    "dsl_version",
    "module",
    "version",
    "description",
    "dependencies",
    "component_defs",
    "components",
    "assemblies",
    "workflows",
    "keywords",
    "license",
    "author",
    "homepage",
    "repository",
];

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

const ACTION_KEYS: &[&str] = &["commands", "provider", "attempts", "sleep", "timeout"];

/// Keys that mark an action of a kind the original dtk ran and this one does not.
const UNSUPPORTED_MARKERS: &[&str] = &[
    "puppet_class",
    "puppet_definition",
    "docker",
    "function",
    "type",
    "entrypoint",
];

/// Keys common to every action kind.
pub(crate) const RETRY_KEYS: &[&str] = &["attempts", "sleep", "timeout"];

const ASSEMBLY_KEYS: &[&str] = &[
    "description",
    "components",
    "actions",
    "workflows",
    "node_component",
];

/// The most attempts an action may have.
pub const MAX_ATTEMPTS: u64 = 100;

pub(crate) fn parse(text: &str, file: &str) -> Result<Module, DslError> {
    let mut ctx = Ctx::new(file);
    let Some(root) = yaml::load(text, &mut ctx.diags) else {
        return Err(fail(ctx));
    };
    let Some(entries) = (match &root.kind {
        YamlKind::Map(e) => Some(e.as_slice()),
        _ => None,
    }) else {
        ctx.error_help(
            root.at,
            "",
            format!(
                "a module document must be a mapping, found {}",
                found(&root)
            ),
            "start with `module: NAMESPACE/NAME` and `version: 1.0.0`",
        );
        return Err(fail(ctx));
    };
    ctx.check_keys(entries, "", MODULE_KEYS, "a module document");

    let id = required(&mut ctx, &root, "module", "the module's `NAMESPACE/NAME`").and_then(|n| {
        let text = ctx.text(n, "module", "`module`")?;
        match text.parse::<ModuleId>() {
            Ok(id) => Some(id),
            Err(e) => {
                ctx.error_help(
                    n.at,
                    "module",
                    format!("invalid module id `{}`: {}", shorten(&text), e.reason),
                    "write `module: NAMESPACE/NAME`, e.g. `module: demo/webapp`",
                );
                None
            }
        }
    });
    let version = required(
        &mut ctx,
        &root,
        "version",
        "the module's version, e.g. `1.0.0`",
    )
    .and_then(|n| version(&mut ctx, n, "version"));
    let dsl_version = root
        .get("dsl_version")
        .and_then(|n| dsl_version(&mut ctx, n, "dsl_version"));
    let description = root
        .get("description")
        .and_then(|n| ctx.opt_text(n, "description", "`description`"));
    let mut metadata = BTreeMap::new();
    for (k, v) in entries {
        if let Some(key) = k.scalar()
            && METADATA_KEYS.contains(&key)
        {
            metadata.insert(key.to_owned(), node_value(v));
        }
    }
    let dependencies = root
        .get("dependencies")
        .map(|n| dependencies(&mut ctx, n, id.as_ref()))
        .unwrap_or_default();

    let defs_node = match (root.get("component_defs"), root.get("components")) {
        (Some(a), Some(_)) => {
            if let Some((k, _)) = entries
                .iter()
                .find(|(k, _)| k.scalar() == Some("components"))
            {
                ctx.error_help(
                    k.at,
                    "components",
                    "both `component_defs` and its alias `components` are given",
                    "merge them under `component_defs`",
                );
            }
            Some((a, "component_defs"))
        }
        (Some(a), None) => Some((a, "component_defs")),
        (None, Some(b)) => Some((b, "components")),
        (None, None) => None,
    };
    let mut scope = Scope {
        own: id.as_ref().map(|i| i.name.clone()),
        local: BTreeSet::new(),
        deps: dependencies.iter().map(|d| d.module.name.clone()).collect(),
        defs: None,
    };
    // The names first, so that references between components are checked wherever
    // they are written.
    let def_entries = defs_node.and_then(|(n, key)| ctx.map(n, key, &format!("`{key}`")));
    for (k, _) in def_entries.unwrap_or_default() {
        if let Some(name) = k.scalar()
            && check_name("component name", name).is_ok()
        {
            scope.local.insert(name.to_owned());
        }
    }
    let mut components = BTreeMap::new();
    if let (Some(es), Some((_, key))) = (def_entries, defs_node) {
        for (k, v) in es {
            let Some(name) = k.scalar() else { continue };
            let p = child(key, name);
            if !ctx.check_name_at(name, k.at, &p, "component name") {
                continue;
            }
            let def = component_def(&mut ctx, &scope, name, k.at, v, &p);
            components.insert(name.to_owned(), def);
        }
    }
    let key = defs_node.map_or("component_defs", |(_, k)| k);
    check_mappings(&mut ctx, &scope, &components, key);
    check_cycles(&mut ctx, &scope, &components, key);

    let scope = Scope {
        defs: Some(&components),
        ..scope
    };
    let mut assemblies = BTreeMap::new();
    if let Some(n) = root.get("assemblies")
        && let Some(es) = ctx.map(n, "assemblies", "`assemblies`")
    {
        for (k, v) in es {
            let Some(name) = k.scalar() else { continue };
            let p = child("assemblies", name);
            if !ctx.check_name_at(name, k.at, &p, "assembly name") {
                continue;
            }
            if let Some(a) = assembly(&mut ctx, &scope, name, k.at, v, &p) {
                assemblies.insert(name.to_owned(), a);
            }
        }
    }
    let workflows = root
        .get("workflows")
        .map(|n| body::workflows(&mut ctx, n, "workflows", StepCheck::None))
        .unwrap_or_default();

    let (Some(id), Some(version)) = (id, version) else {
        return Err(fail(ctx));
    };
    ctx.diags.finish(Module {
        id,
        version,
        dsl_version,
        description,
        dependencies,
        components,
        assemblies,
        workflows,
        metadata,
    })
}

fn required<'a>(ctx: &mut Ctx, root: &'a YamlNode, key: &str, what: &str) -> Option<&'a YamlNode> {
    let n = root.get(key);
    if n.is_none() {
        ctx.error_help(
            Location {
                line: root.at.line.max(1),
                col: root.at.col.max(1),
                offset: root.at.offset,
            },
            key,
            format!("missing `{key}`: {what}"),
            format!("add `{key}:` at the top level"),
        );
    }
    n
}

pub(crate) fn version(ctx: &mut Ctx, n: &YamlNode, path: &str) -> Option<ModuleVersion> {
    let text = ctx.text(n, path, "a version")?;
    match text.parse::<ModuleVersion>() {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.error_help(
                n.at,
                path,
                format!("invalid version `{}`: {}", shorten(&text), e.reason),
                "write a semantic version such as `1.0.0`, or a tag such as `master`",
            );
            None
        }
    }
}

pub(crate) fn dsl_version(ctx: &mut Ctx, n: &YamlNode, path: &str) -> Option<String> {
    let text = ctx.opt_text(n, path, "`dsl_version`")?;
    if text == DSL_VERSION {
        Some(text)
    } else {
        ctx.error_help(
            n.at,
            path,
            format!("unsupported dsl_version `{}`", shorten(&text)),
            format!("this dtk reads dsl_version {DSL_VERSION}"),
        );
        None
    }
}

fn dependencies(ctx: &mut Ctx, node: &YamlNode, own: Option<&ModuleId>) -> Vec<ModuleDependency> {
    let mut out: Vec<ModuleDependency> = Vec::new();
    let Some(entries) = ctx.map(node, "dependencies", "`dependencies`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child("dependencies", key);
        let module = match key.parse::<ModuleId>() {
            Ok(m) => m,
            Err(e) => {
                ctx.error_help(
                    k.at,
                    &p,
                    format!("invalid module id `{}`: {}", shorten(key), e.reason),
                    "write `NAMESPACE/NAME: VERSION`, e.g. `dtk/local: ^1.0`",
                );
                continue;
            }
        };
        let Some(text) = ctx.text(v, &p, "a version requirement") else {
            continue;
        };
        let req = match text.parse::<VersionReq>() {
            Ok(r) => r,
            Err(e) => {
                ctx.error_help(
                    v.at,
                    &p,
                    format!("invalid version requirement `{}`: {}", shorten(&text), e.reason),
                    "write a version (`1.0.0`, exactly that one), a requirement (`^1.0`, `>= 1.2, < 2`) or a tag (`master`)",
                );
                continue;
            }
        };
        if own.is_some_and(|o| *o == module) {
            ctx.error(k.at, &p, format!("module `{module}` depends on itself"));
            continue;
        }
        if own.is_some_and(|o| o.name == module.name) {
            ctx.error_help(
                k.at,
                &p,
                format!("dependency `{module}` has the same name as this module, so `{}::cmp` would be ambiguous", module.name),
                "references name modules by their name alone",
            );
            continue;
        }
        if let Some(prev) = out.iter().find(|d| d.module.name == module.name) {
            ctx.error_help(
                k.at,
                &p,
                format!(
                    "dependencies `{}` and `{module}` have the same name, so `{}::cmp` would be ambiguous",
                    prev.module, module.name
                ),
                "references name modules by their name alone: depend on one of them",
            );
            continue;
        }
        out.push(ModuleDependency {
            module,
            req,
            at: k.at,
        });
    }
    out
}

fn component_def(
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

fn actions(ctx: &mut Ctx, node: &YamlNode, path: &str) -> BTreeMap<String, ActionDef> {
    let mut out = BTreeMap::new();
    let Some(entries) = ctx.map(node, path, "`actions`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(name) = k.scalar() else { continue };
        let p = child(path, name);
        if !ctx.check_name_at(name, k.at, &p, "action name") {
            continue;
        }
        if let Some(a) = action(ctx, name, v, &p) {
            out.insert(name.to_owned(), a);
        }
    }
    out
}

fn action(ctx: &mut Ctx, name: &str, node: &YamlNode, path: &str) -> Option<ActionDef> {
    let entries = match &node.kind {
        YamlKind::Map(e) => e.as_slice(),
        _ => {
            ctx.error_help(
                node.at,
                path,
                format!("action `{name}` must be a mapping, found {}", found(node)),
                "write `commands: [RUN ...]` or `provider: KIND.RESOURCE` under the action",
            );
            return None;
        }
    };
    let mut a = ActionDef {
        name: name.to_owned(),
        kind: ActionKind::Commands(Vec::new()),
        attempts: 1,
        sleep: std::time::Duration::ZERO,
        timeout: None,
        at: node.at,
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "attempts" => {
                if let Some(n) = ctx.uint(v, &p, "`attempts`", 1, MAX_ATTEMPTS) {
                    a.attempts = u32::try_from(n).unwrap_or(1);
                }
            }
            "sleep" => a.sleep = ctx.duration(v, &p, "`sleep`").unwrap_or_default(),
            "timeout" => a.timeout = ctx.duration(v, &p, "`timeout`"),
            _ => {}
        }
    }
    let marker = entries
        .iter()
        .find(|(k, _)| k.scalar().is_some_and(|k| UNSUPPORTED_MARKERS.contains(&k)));
    if let Some((mk, mv)) = marker {
        let key = mk.scalar().unwrap_or_default();
        for (k, _) in entries {
            if let Some(other @ ("commands" | "provider")) = k.scalar() {
                ctx.error_help(
                    k.at,
                    &child(path, other),
                    format!("action `{name}` is both `{key}` and `{other}`"),
                    "an action has one kind: keep one of them",
                );
            }
        }
        let kind = unsupported_kind(key, mv, node);
        let mut detail = BTreeMap::new();
        for (k, v) in entries {
            if let Some(key) = k.scalar()
                && !RETRY_KEYS.contains(&key)
            {
                detail.insert(key.to_owned(), node_value(v));
            }
        }
        a.kind = ActionKind::Unsupported {
            kind,
            detail: Value::Hash(detail),
        };
        return Some(a);
    }
    ctx.check_keys(entries, path, ACTION_KEYS, "an action");
    match (node.get("commands"), node.get("provider")) {
        (Some(c), Some(_)) => {
            ctx.error_help(
                c.at,
                &child(path, "commands"),
                format!("action `{name}` has both `commands` and `provider`"),
                "an action has one kind: keep one of them",
            );
            return None;
        }
        (Some(c), None) => {
            a.kind = ActionKind::Commands(commands(ctx, c, &child(path, "commands")))
        }
        (None, Some(pv)) => {
            let p = child(path, "provider");
            let text = ctx.text(pv, &p, "`provider`")?;
            match text.split_once('.') {
                Some((kind, resource))
                    if check_name("provider kind", kind).is_ok()
                        && check_name("resource", resource).is_ok() =>
                {
                    a.kind = ActionKind::Provider {
                        kind: kind.to_owned(),
                        resource: resource.to_owned(),
                    };
                }
                _ => {
                    ctx.error_help(
                        pv.at,
                        &p,
                        format!("invalid provider `{}`", shorten(&text)),
                        "write `provider: KIND.RESOURCE`, e.g. `provider: aws.vpc`",
                    );
                    return None;
                }
            }
        }
        (None, None) => {
            let misspelt = entries
                .iter()
                .any(|(k, _)| k.scalar().is_some_and(|k| !ACTION_KEYS.contains(&k)));
            if misspelt {
                // The unknown key, already reported, is most likely the kind.
                return None;
            }
            ctx.error_help(
                node.at,
                path,
                format!("action `{name}` does nothing: it has neither `commands` nor `provider`"),
                "write `commands: [RUN ...]` or `provider: KIND.RESOURCE`",
            );
            return None;
        }
    }
    Some(a)
}

fn unsupported_kind(key: &str, value: &YamlNode, action: &YamlNode) -> String {
    match key {
        "type" => value.scalar().unwrap_or("type").to_owned(),
        "function" => value
            .get("type")
            .and_then(YamlNode::scalar)
            .unwrap_or("function")
            .to_owned(),
        "entrypoint" => action
            .get("type")
            .and_then(YamlNode::scalar)
            .unwrap_or("ruby")
            .to_owned(),
        other => other.to_owned(),
    }
}

fn commands(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Vec<Command> {
    let items: Vec<(&YamlNode, String)> = match &node.kind {
        YamlKind::Scalar { .. } if !node.is_null() => vec![(node, path.to_owned())],
        YamlKind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (n, index(path, i)))
            .collect(),
        _ => {
            ctx.error_help(
                node.at,
                path,
                format!(
                    "`commands` must be a list of `RUN ...` lines, found {}",
                    found(node)
                ),
                "write `commands: [RUN ./bin/start]`",
            );
            return Vec::new();
        }
    };
    if items.is_empty() {
        ctx.error_help(
            node.at,
            path,
            "`commands` is empty",
            "write `commands: [RUN ./bin/start]`",
        );
    }
    let mut out = Vec::new();
    for (n, p) in items {
        if n.get("ADD").is_some() {
            if let Some(a) = add_step(ctx, n, &p) {
                out.push(Command::Add(a));
            }
            continue;
        }
        let Some(text) = ctx.text(n, &p, "a command") else {
            continue;
        };
        let t = text.trim();
        match t.strip_prefix("RUN") {
            Some(rest) if rest.starts_with(char::is_whitespace) && !rest.trim().is_empty() => {
                out.push(Command::Run(rest.trim().to_owned()));
            }
            Some(rest) if rest.trim().is_empty() => {
                ctx.error_help(
                    n.at,
                    &p,
                    "`RUN` without a command",
                    "write `RUN ./bin/start`",
                );
            }
            _ => ctx.error_help(
                n.at,
                &p,
                format!("a command must start with `RUN`, found `{}`", shorten(t)),
                format!("write `RUN {}`", shorten(t)),
            ),
        }
    }
    out
}

/// An `{ADD: , source: ..., target: ..., template: ..., owner: ..., mode: ...}` step.
fn add_step(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Option<crate::module::AddFile> {
    let entries = node.as_map()?;
    let (mut source, mut target, mut template, mut owner, mut mode) =
        (None, None, false, None, None);
    for (k, v) in entries {
        let key = k.scalar().unwrap_or("");
        let p = format!("{path}.{key}");
        match key {
            "ADD" => {}
            "source" => source = ctx.text(v, &p, "a path in the module"),
            "target" => target = ctx.text(v, &p, "a path on the node"),
            "template" => template = ctx.bool(v, &p, "`template`").unwrap_or(false),
            "owner" => owner = ctx.text(v, &p, "a user or user:group"),
            "mode" => {
                let m = ctx.text(v, &p, "an octal mode such as 0644")?;
                if m.is_empty() || m.len() > 4 || !m.chars().all(|c| ('0'..='7').contains(&c)) {
                    ctx.error_help(
                        v.at,
                        &p,
                        format!("`mode` must be an octal mode, found `{}`", shorten(&m)),
                        "write `mode: '0644'`",
                    );
                } else {
                    mode = Some(m);
                }
            }
            other => ctx.error_help(
                k.at,
                &p,
                format!("unknown key `{other}` in an `ADD` step"),
                "an `ADD` step has `source`, `target`, `template`, `owner` and `mode`",
            ),
        }
    }
    for (name, value) in [("source", &source), ("target", &target)] {
        if value.as_deref().is_none_or(|s| s.trim().is_empty()) {
            ctx.error_help(
                node.at,
                path,
                format!("an `ADD` step needs `{name}`"),
                "write `{ADD: , source: templates/app.conf, target: conf/app.conf}`",
            );
        }
    }
    Some(crate::module::AddFile {
        source: source.filter(|s| !s.trim().is_empty())?,
        target: target.filter(|s| !s.trim().is_empty())?,
        template,
        owner: owner.filter(|s| !s.is_empty()),
        mode,
    })
}

/// Checks, for links to components of this module, that the producer's attribute exists.
fn check_mappings(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    defs: &BTreeMap<String, ComponentDef>,
    key: &str,
) {
    for def in defs.values() {
        for l in &def.link_defs {
            let target = match &l.target.module {
                Some(m) if scope.own.as_deref() == Some(m.as_str()) => {
                    Target::Local(l.target.name.clone())
                }
                None if scope.local.contains(&l.target.name) => {
                    Target::Local(l.target.name.clone())
                }
                _ => Target::External,
            };
            let Target::Local(producer) = target else {
                continue;
            };
            let Some(pdef) = defs.get(&producer) else {
                continue;
            };
            for (i, m) in l.attribute_mappings.iter().enumerate() {
                let Some(first) = m.from.first() else {
                    continue;
                };
                if first == "node" || pdef.attributes.contains_key(first) {
                    continue;
                }
                let path = child(
                    &child(
                        &child(&child(key, &def.name), "link_defs"),
                        &l.target.to_string(),
                    ),
                    "attribute_mappings",
                );
                let path = index(&path, i);
                let help = match did_you_mean(first, pdef.attributes.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `${s}`?"),
                    None if pdef.attributes.is_empty() => {
                        format!("`{producer}` declares no attributes")
                    }
                    None => format!(
                        "its attributes are {}",
                        list(pdef.attributes.keys().map(String::as_str))
                    ),
                };
                ctx.error_help(
                    m.at,
                    &path,
                    format!("`${first}`: component `{producer}` has no attribute `{first}`"),
                    help,
                );
            }
        }
    }
}

/// Reports cycles among the dependencies of this module's components.
fn check_cycles(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    defs: &BTreeMap<String, ComponentDef>,
    key: &str,
) {
    // Edges: a dependency with one choice, into this module.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for def in defs.values() {
        let mut out = Vec::new();
        for d in &def.dependencies {
            if let [r] = d.choices.as_slice() {
                let local = match &r.module {
                    Some(m) => scope.own.as_deref() == Some(m.as_str()),
                    None => scope.local.contains(&r.name),
                };
                if local && defs.contains_key(&r.name) {
                    out.push(r.name.as_str());
                }
            }
        }
        edges.insert(def.name.as_str(), out);
    }
    // Iterative DFS; a back edge closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color: BTreeMap<&str, Color> = edges.keys().map(|k| (*k, Color::White)).collect();
    let mut seen_cycles: BTreeSet<Vec<&str>> = BTreeSet::new();
    let starts: Vec<&str> = {
        // Start from components in source order, so the cycle is named from the first.
        let mut v: Vec<&ComponentDef> = defs.values().collect();
        v.sort_by_key(|d| d.at);
        v.into_iter().map(|d| d.name.as_str()).collect()
    };
    for start in starts {
        if color.get(start) != Some(&Color::White) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        color.insert(start, Color::Grey);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let succ = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            if *next < succ.len() {
                let s = succ[*next];
                *next += 1;
                match color.get(s).copied().unwrap_or(Color::Black) {
                    Color::White => {
                        color.insert(s, Color::Grey);
                        stack.push((s, 0));
                    }
                    Color::Grey => {
                        let pos = stack.iter().position(|(n, _)| *n == s).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        // Name the cycle from the component declared first.
                        let first = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| defs.get(**n).map(|d| d.at))
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(first);
                        let mut canon = cycle.clone();
                        canon.sort_unstable();
                        if seen_cycles.insert(canon) {
                            report_cycle(ctx, defs, &cycle, key);
                        }
                    }
                    Color::Black => {}
                }
            } else {
                color.insert(node, Color::Black);
                stack.pop();
            }
        }
    }
}

fn report_cycle(ctx: &mut Ctx, defs: &BTreeMap<String, ComponentDef>, cycle: &[&str], key: &str) {
    let Some(first) = cycle.first() else { return };
    let mut names: Vec<&str> = cycle.to_vec();
    names.push(first);
    let text = names.join(" -> ");
    let next = cycle.get(1).copied().unwrap_or(first);
    let Some(def) = defs.get(*first) else { return };
    // Point at the dependency that starts the cycle.
    let at = def
        .dependencies
        .iter()
        .find(|d| d.choices.first().is_some_and(|r| r.name == next))
        .map_or(def.at, |d| d.at);
    ctx.error_help(
        at,
        &child(&child(key, first), "dependencies"),
        format!("dependency cycle: {text}"),
        "a component cannot depend, directly or through others, on itself: remove one of these dependencies",
    );
}

fn assembly(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    name: &str,
    at: Location,
    node: &YamlNode,
    path: &str,
) -> Option<Assembly> {
    let entries = ctx.map(node, path, "an assembly")?;
    ctx.check_keys(entries, path, ASSEMBLY_KEYS, "an assembly");
    let mut a = Assembly {
        name: name.to_owned(),
        description: None,
        nodes: Vec::new(),
        components: Vec::new(),
        workflows: BTreeMap::new(),
        node_component: None,
        at,
    };
    if let Some(c) = node.get("components") {
        let p = child(path, "components");
        let (nodes, comps) = body::components(ctx, scope, c, &p);
        a.nodes = nodes;
        a.components = comps;
    }
    let cp = child(path, "components");
    let index = Index::build(ctx, scope, &a.nodes, &a.components, &cp);
    body::resolve_links(
        ctx,
        Mode::Module,
        scope,
        &index,
        &mut a.nodes,
        &mut a.components,
        &cp,
    );
    let mut workflows_seen = false;
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "description" => a.description = ctx.opt_text(v, &p, "`description`"),
            "node_component" => {
                let Some(text) = ctx.text(v, &p, "`node_component`") else {
                    continue;
                };
                let Some(r) = parse_ref(ctx, &text, v.at, &p) else {
                    continue;
                };
                scope.check(ctx, &r, v.at, &p, RefCheck::Strict);
                a.node_component = Some(r);
            }
            "actions" | "workflows" => {
                if workflows_seen {
                    ctx.error_help(
                        k.at,
                        &p,
                        "both `actions` and its alias `workflows` are given",
                        "merge them under `actions`",
                    );
                    continue;
                }
                workflows_seen = true;
                a.workflows = body::workflows(ctx, v, &p, StepCheck::Full(scope, &index));
            }
            _ => {}
        }
    }
    Some(a)
}
