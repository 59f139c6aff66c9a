//! What module and service documents share: versions, `dsl_version`, module ids and
//! a module's `dependencies`.

use crate::diag::Location;
use crate::dsl::decode::{Ctx, child, found, index, shorten};
use crate::ident::{ModuleId, ModuleVersion, VersionReq};
use crate::module::{DSL_VERSION, ModuleDependency};
use crate::yaml::{YamlKind, YamlNode};

pub(crate) fn required<'a>(
    ctx: &mut Ctx,
    root: &'a YamlNode,
    key: &str,
    what: &str,
) -> Option<&'a YamlNode> {
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

/// A module's `dependencies` (alias `dependent_modules`): a mapping of `NAMESPACE/NAME` to
/// a version requirement (empty: any version), or a list of `NAMESPACE/NAME` entries and
/// single-key `NAMESPACE/NAME: REQUIREMENT` mappings.
pub(crate) fn dependencies(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    own: Option<&ModuleId>,
) -> Vec<ModuleDependency> {
    let mut out: Vec<ModuleDependency> = Vec::new();
    let entries: Vec<(&YamlNode, Option<&YamlNode>, String)> = match &node.kind {
        YamlKind::Seq(items) => {
            let mut es = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.kind {
                    YamlKind::Scalar { .. } if !item.is_null() => es.push((item, None, p)),
                    YamlKind::Map(m) if m.len() == 1 => {
                        let (k, v) = &m[0];
                        es.push((k, Some(v), p));
                    }
                    _ => ctx.error_help(
                        item.at,
                        &p,
                        format!(
                            "a dependency must be `NAMESPACE/NAME` or `NAMESPACE/NAME: VERSION`, found {}",
                            found(item)
                        ),
                        "write `- dtk/local` (any version) or `- dtk/local: ^1.0`",
                    ),
                }
            }
            es
        }
        _ => {
            let Some(map) = ctx.map(node, path, &format!("`{path}`")) else {
                return out;
            };
            map.iter()
                .map(|(k, v)| (k, Some(v), path.to_owned()))
                .collect()
        }
    };
    for (k, v, p) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = if v.is_some() { child(&p, key) } else { p };
        let Some(module) = ctx.module_id(
            key,
            k.at,
            &p,
            "write `NAMESPACE/NAME: VERSION`, e.g. `dtk/local: ^1.0`",
        ) else {
            continue;
        };
        let req = match v {
            None => VersionReq::Any,
            Some(v) if v.is_null() => VersionReq::Any,
            Some(v) => {
                let Some(text) = ctx.text(v, &p, "a version requirement") else {
                    continue;
                };
                match text.parse::<VersionReq>() {
                    Ok(r) => r,
                    Err(e) => {
                        ctx.error_help(
                            v.at,
                            &p,
                            format!("invalid version requirement `{}`: {}", shorten(&text), e.reason),
                            "write a version (`1.0.0`, exactly that one), a requirement (`^1.0`, `>= 1.2, < 2`), a tag (`master`), or nothing (any version)",
                        );
                        continue;
                    }
                }
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
