//! Explicit links of placed components and nodes (`links:`).

use crate::diag::Location;
use crate::dsl::decode::{Ctx, child, found, index, parse_ref, shorten};
use crate::ident::{ComponentRef, NodeComponentRef, check_name};
use crate::module::LinkDecl;
use crate::yaml::{YamlKind, YamlNode};

/// Decodes `links:`: a list of targets (`db`, `node/db`, `service/cmp`), of
/// `{dependency: target}` entries, or a mapping from dependency names to targets.
pub(crate) fn links(ctx: &mut Ctx, node: &YamlNode, path: &str) -> Vec<LinkDecl> {
    let mut out = Vec::new();
    match &node.kind {
        YamlKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.kind {
                    YamlKind::Scalar { text, .. } if !item.is_null() => {
                        out.extend(link(ctx, None, text, item.at, &p));
                    }
                    YamlKind::Map(entries) if entries.len() == 1 => {
                        let (k, v) = &entries[0];
                        out.extend(named_link(ctx, k, v, &p));
                    }
                    _ => ctx.error_help(
                        item.at,
                        &p,
                        format!(
                            "a link must be a component reference, found {}",
                            found(item)
                        ),
                        "write `- TARGET`, `- NODE/TARGET` or `- DEPENDENCY: TARGET`",
                    ),
                }
            }
        }
        YamlKind::Map(entries) => {
            for (k, v) in entries {
                out.extend(named_link(ctx, k, v, path));
            }
        }
        _ if node.is_null() => {}
        _ => ctx.error_help(
            node.at,
            path,
            format!("`links` must be a list, found {}", found(node)),
            "write `links: [TARGET, NODE/TARGET]`",
        ),
    }
    out
}

fn named_link(ctx: &mut Ctx, k: &YamlNode, v: &YamlNode, path: &str) -> Option<LinkDecl> {
    let dep = k.scalar()?;
    let p = child(path, dep);
    if !ctx.check_name_at(dep, k.at, &p, "dependency name") {
        return None;
    }
    let target = ctx.text(v, &p, "a link target")?;
    link(ctx, Some(dep.to_owned()), &target, v.at, &p)
}

fn link(
    ctx: &mut Ctx,
    dependency: Option<String>,
    text: &str,
    at: Location,
    path: &str,
) -> Option<LinkDecl> {
    let text = text.trim();
    let Some((prefix, rest)) = text.split_once('/') else {
        let component = parse_ref(ctx, text, at, path)?;
        return Some(LinkDecl {
            dependency,
            target: NodeComponentRef {
                node: None,
                component,
            },
            service: None,
            at,
        });
    };
    if rest.contains('/') {
        ctx.error_help(
            at,
            path,
            format!("invalid link target `{}`: more than one `/`", shorten(text)),
            "write `TARGET`, `NODE/TARGET` or `SERVICE/TARGET`",
        );
        return None;
    }
    let component = parse_ref(ctx, rest, at, path)?;
    // `service[NAME]/cmp`: the original's long form of `NAME/cmp` for a component of
    // another service instance.
    if let Some(service) = prefix
        .strip_prefix("service[")
        .and_then(|s| s.strip_suffix(']'))
    {
        if !ctx.check_name_at(service, at, path, "service name") {
            return None;
        }
        return Some(LinkDecl {
            dependency,
            target: NodeComponentRef {
                node: None,
                component,
            },
            service: Some(service.to_owned()),
            at,
        });
    }
    // `ec2::node[web]/cmp` names the node `web` by its realizing component.
    if let Ok(r) = prefix.parse::<ComponentRef>()
        && (r.name == "node" || r.name == "node_group")
        && r.instance.is_some()
    {
        return Some(LinkDecl {
            dependency,
            target: NodeComponentRef {
                node: r.instance,
                component,
            },
            service: None,
            at,
        });
    }
    if let Err(e) = check_name("node name", prefix) {
        ctx.error_help(
            at,
            path,
            format!("invalid link target `{}`: {}", shorten(text), e.reason),
            "write `TARGET`, `NODE/TARGET` or `SERVICE/TARGET`",
        );
        return None;
    }
    // A node of this document or another service: decided once every node is known
    // (see `resolve_links`); until then both are set.
    Some(LinkDecl {
        dependency,
        target: NodeComponentRef {
            node: Some(prefix.to_owned()),
            component,
        },
        service: Some(prefix.to_owned()),
        at,
    })
}
