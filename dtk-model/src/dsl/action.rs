//! Actions of component definitions: `commands`, `provider`, the kinds this dtk does
//! not run, and retry settings.

use std::collections::BTreeMap;

use crate::dsl::decode::{Ctx, child, found, index, node_value, shorten};
use crate::ident::check_name;
use crate::module::{ActionDef, ActionKind, Command};
use crate::value::Value;
use crate::yaml::{YamlKind, YamlNode};

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

/// The most attempts an action may have.
pub const MAX_ATTEMPTS: u64 = 100;

pub(crate) fn actions(ctx: &mut Ctx, node: &YamlNode, path: &str) -> BTreeMap<String, ActionDef> {
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
