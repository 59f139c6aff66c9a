//! Decoding `dtk.module.yaml`: the module's identity, dependencies, component
//! definitions and assemblies, with every reference checked.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::DslError;
use crate::diag::Location;
use crate::dsl::checks::{check_cycles, check_mappings};
use crate::dsl::component_def::component_def;
use crate::dsl::components;
use crate::dsl::decode::{Ctx, child, found, node_value, parse_ref};
use crate::dsl::header::{dependencies, dsl_version, required, version};
use crate::dsl::index::{Index, Mode, resolve_links};
use crate::dsl::scope::{RefCheck, Scope};
use crate::dsl::workflow::{StepCheck, workflows};
use crate::ident::{ModuleVersion, check_name};
use crate::module::{Assembly, DEFAULT_VERSION, Module};
use crate::yaml::{self, YamlKind, YamlNode};

/// Metadata keys of the original dtk kept in [`Module::metadata`] (`includes`: modules
/// whose code the original loaded alongside, which means nothing here).
pub(crate) const METADATA_KEYS: &[&str] = &[
    "keywords",
    "license",
    "author",
    "homepage",
    "repository",
    "includes",
];

const MODULE_KEYS: &[&str] = &[
    "dsl_version",
    "module",
    "module_name",
    "version",
    "description",
    "dependencies",
    "dependent_modules",
    "component_defs",
    "components",
    "assemblies",
    "workflows",
    "keywords",
    "license",
    "author",
    "homepage",
    "repository",
    "includes",
];

const ASSEMBLY_KEYS: &[&str] = &[
    "description",
    "nodes",
    "components",
    "actions",
    "workflows",
    "workflow",
    "node_component",
    "target",
    "attributes",
];

/// Assembly keys of the original dtk kept in [`Assembly::metadata`]: the target it was
/// meant for, and assembly-level attributes.
const ASSEMBLY_METADATA_KEYS: &[&str] = &["target", "attributes"];

/// What a module document's assemblies hold beyond their header: left out of a parse for
/// definitions only ([`parse_defs`]).
const ASSEMBLY_BODY: &[&[&str]] = &[
    &["assemblies", "*", "nodes"],
    &["assemblies", "*", "components"],
    &["assemblies", "*", "actions"],
    &["assemblies", "*", "workflows"],
    &["assemblies", "*", "workflow"],
];

pub(crate) fn parse(text: &str, file: &str) -> Result<Module, DslError> {
    parse_skipping(text, file, &[])
}

/// [`parse`] without the assemblies' nodes, components and workflows (see
/// [`crate::dsl::parse_module_defs`]).
pub(crate) fn parse_defs(text: &str, file: &str) -> Result<Module, DslError> {
    parse_skipping(text, file, ASSEMBLY_BODY)
}

fn parse_skipping(text: &str, file: &str, skip: &[&[&str]]) -> Result<Module, DslError> {
    let mut ctx = Ctx::new(file);
    let Some(root) = yaml::load_skipping(text, &mut ctx.diags, skip) else {
        return Err(ctx.fail());
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
        return Err(ctx.fail());
    };
    ctx.check_keys(entries, "", MODULE_KEYS, "a module document");

    let id = match ctx.aliased(entries, "", &["module", "module_name"]) {
        Some((key, n)) => {
            let text = ctx.text(n, key, &format!("`{key}`"));
            text.and_then(|text| {
                ctx.module_id(
                    &text,
                    n.at,
                    key,
                    "write `module: NAMESPACE/NAME`, e.g. `module: demo/webapp`",
                )
            })
        }
        None => {
            required(&mut ctx, &root, "module", "the module's `NAMESPACE/NAME`");
            None
        }
    };
    // Without a version, a module is its development version `master`, as the original
    // dtk's client took it.
    let version = match root.get("version") {
        Some(n) => version(&mut ctx, n, "version"),
        None => Some(ModuleVersion::Tag(DEFAULT_VERSION.to_owned())),
    };
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
    let dependencies = ctx
        .aliased(entries, "", &["dependencies", "dependent_modules"])
        .map(|(key, n)| dependencies(&mut ctx, n, key, id.as_ref()))
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
        .map(|n| workflows(&mut ctx, n, "workflows", StepCheck::None))
        .unwrap_or_default();

    let (Some(id), Some(version)) = (id, version) else {
        return Err(ctx.fail());
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
        metadata: BTreeMap::new(),
        at,
    };
    if let Some(n) = node.get("nodes") {
        a.nodes = components::nodes_mapping(ctx, scope, n, &child(path, "nodes"));
    }
    if let Some(c) = node.get("components") {
        let p = child(path, "components");
        let (nodes, comps) = components::components(ctx, scope, c, &p);
        a.nodes.extend(nodes);
        a.components = comps;
    }
    let cp = child(path, "components");
    let index = Index::build(ctx, scope, &a.nodes, &a.components, &cp);
    resolve_links(
        ctx,
        Mode::Module,
        scope,
        &index,
        &mut a.nodes,
        &mut a.components,
        &cp,
    );
    if let Some((key, v)) = ctx.aliased(entries, path, &["actions", "workflows", "workflow"]) {
        a.workflows = workflows(ctx, v, &child(path, key), StepCheck::Full(scope, &index));
    }
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
            _ if ASSEMBLY_METADATA_KEYS.contains(&key) => {
                a.metadata.insert(key.to_owned(), node_value(v));
            }
            _ => {}
        }
    }
    Some(a)
}
