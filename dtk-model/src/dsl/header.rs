//! What module and service documents share: versions, `dsl_version`, module ids and
//! a module's `dependencies`.

use crate::diag::Location;
use crate::dsl::decode::{Ctx, child, shorten};
use crate::ident::{ModuleId, ModuleVersion, VersionReq};
use crate::module::{DSL_VERSION, ModuleDependency};
use crate::yaml::YamlNode;

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

pub(crate) fn dependencies(
    ctx: &mut Ctx,
    node: &YamlNode,
    own: Option<&ModuleId>,
) -> Vec<ModuleDependency> {
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
