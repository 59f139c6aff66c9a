//! Decoding `dtk.service.yaml`: a service instance's desired state.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::DslError;
use crate::dsl::components::components;
use crate::dsl::decode::{Ctx, child, found, shorten};
use crate::dsl::header::{dsl_version, version};
use crate::dsl::index::{Index, Mode, resolve_links};
use crate::dsl::scope::Scope;
use crate::dsl::workflow::{self, StepCheck};
use crate::ident::{ModuleId, ModuleVersion};
use crate::module::DSL_VERSION;
use crate::service::{ServiceDoc, StagedFrom};
use crate::yaml::{self, YamlKind};

const SERVICE_KEYS: &[&str] = &[
    "dsl_version",
    "name",
    "service_name",
    "staged_from",
    "target",
    "base",
    "dependencies",
    "components",
    "actions",
    "workflows",
];

pub(crate) fn parse(text: &str, file: &str) -> Result<ServiceDoc, DslError> {
    let mut ctx = Ctx::new(file);
    let Some(root) = yaml::load(text, &mut ctx.diags) else {
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
                "a service document must be a mapping, found {}",
                found(&root)
            ),
            "start with `name: SERVICE_NAME`",
        );
        return Err(ctx.fail());
    };
    ctx.check_keys(entries, "", SERVICE_KEYS, "a service document");

    let dsl = match root.get("dsl_version") {
        Some(n) => dsl_version(&mut ctx, n, "dsl_version"),
        None => Some(DSL_VERSION.to_owned()),
    };
    let name = match ctx.aliased(entries, "", &["name", "service_name"]) {
        Some((key, n)) => ctx.name(n, key, "service name"),
        None => {
            ctx.error_help(
                root.at,
                "name",
                "missing `name`: the service instance's name",
                "add `name: SERVICE_NAME` at the top level",
            );
            None
        }
    };
    let staged_from = root.get("staged_from").and_then(|n| {
        let p = "staged_from";
        let es = ctx.map(n, p, "`staged_from`")?;
        ctx.check_keys(es, p, &["module", "version", "assembly"], "`staged_from`");
        let missing = |ctx: &mut Ctx, key: &str| {
            ctx.error_help(
                n.at,
                &child(p, key),
                format!("`staged_from` lacks `{key}`"),
                "write `staged_from: {module: NS/NAME, version: VERSION, assembly: ASSEMBLY}`",
            );
        };
        let module = match n.get("module") {
            Some(m) => {
                let mp = child(p, "module");
                let text = ctx.text(m, &mp, "`module`")?;
                match text.parse::<ModuleId>() {
                    Ok(id) => Some(id),
                    Err(e) => {
                        ctx.error(
                            m.at,
                            &mp,
                            format!("invalid module id `{}`: {}", shorten(&text), e.reason),
                        );
                        None
                    }
                }
            }
            None => {
                missing(&mut ctx, "module");
                None
            }
        };
        let ver = match n.get("version") {
            Some(v) => version(&mut ctx, v, &child(p, "version")),
            None => {
                missing(&mut ctx, "version");
                None
            }
        };
        let assembly = match n.get("assembly") {
            Some(a) => ctx.name(a, &child(p, "assembly"), "assembly name"),
            None => {
                missing(&mut ctx, "assembly");
                None
            }
        };
        Some(StagedFrom {
            module: module?,
            version: ver?,
            assembly: assembly?,
        })
    });
    let target = root.get("target").and_then(|n| {
        if n.is_null() {
            None
        } else {
            ctx.name(n, "target", "target name")
        }
    });
    let is_target = root
        .get("base")
        .and_then(|n| ctx.bool(n, "base", "`base`"))
        .unwrap_or(false);

    let mut dependencies = BTreeMap::new();
    if let Some(n) = root.get("dependencies")
        && let Some(es) = ctx.map(n, "dependencies", "`dependencies`")
    {
        for (k, v) in es {
            let Some(key) = k.scalar() else { continue };
            let p = child("dependencies", key);
            let module = match key.parse::<ModuleId>() {
                Ok(m) => m,
                Err(e) => {
                    ctx.error_help(
                        k.at,
                        &p,
                        format!("invalid module id `{}`: {}", shorten(key), e.reason),
                        "write `NAMESPACE/NAME: VERSION`",
                    );
                    continue;
                }
            };
            let Some(text) = ctx.text(v, &p, "a pinned version") else {
                continue;
            };
            match text.parse::<ModuleVersion>() {
                Ok(ver) => {
                    dependencies.insert(module, ver);
                }
                Err(e) => ctx.error_help(
                    v.at,
                    &p,
                    format!("invalid pinned version `{}`: {}", shorten(&text), e.reason),
                    "a service pins each module to one exact version, e.g. `1.0.0` or `master`",
                ),
            }
        }
    }

    let mut deps: BTreeSet<String> = dependencies.keys().map(|m| m.name.clone()).collect();
    if let Some(s) = &staged_from {
        deps.insert(s.module.name.clone());
    }
    let scope = Scope {
        own: None,
        local: BTreeSet::new(),
        deps,
        defs: None,
    };
    let (mut nodes, mut comps) = match root.get("components") {
        Some(c) => components(&mut ctx, &scope, c, "components"),
        None => (Vec::new(), Vec::new()),
    };
    let index = Index::build(&mut ctx, &scope, &nodes, &comps, "components");
    resolve_links(
        &mut ctx,
        Mode::Service,
        &scope,
        &index,
        &mut nodes,
        &mut comps,
        "components",
    );
    let mut workflows = BTreeMap::new();
    match (root.get("actions"), root.get("workflows")) {
        (Some(_), Some(w)) => ctx.error_help(
            w.at,
            "workflows",
            "both `actions` and its alias `workflows` are given",
            "merge them under `actions`",
        ),
        (Some(n), None) => {
            workflows = workflow::workflows(&mut ctx, n, "actions", StepCheck::Nodes(&index))
        }
        (None, Some(n)) => {
            workflows = workflow::workflows(&mut ctx, n, "workflows", StepCheck::Nodes(&index))
        }
        (None, None) => {}
    }

    let (Some(dsl_version), Some(name)) = (dsl, name) else {
        return Err(ctx.fail());
    };
    ctx.diags.finish(ServiceDoc {
        dsl_version,
        name,
        staged_from,
        target,
        is_target,
        dependencies,
        nodes,
        components: comps,
        workflows,
        at: root.at,
    })
}
