//! Actions of component definitions: `commands`, `provider`, the kinds this dtk does
//! not run, and retry settings.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dsl::decode::{Ctx, child, found, index, node_value, shorten};
use crate::ident::check_name;
use crate::module::{ActionDef, ActionKind, AddFile, Command};
use crate::value::Value;
use crate::yaml::{YamlKind, YamlNode};

const ACTION_KEYS: &[&str] = &[
    "commands",
    "command",
    "provider",
    "attempts",
    "sleep",
    "timeout",
    "stdout_and_stderr",
];

/// Keys that mark an action of a kind the original dtk ran and this one does not.
const UNSUPPORTED_MARKERS: &[&str] = &[
    "puppet_class",
    "puppet_definition",
    "serverspec_test",
    "docker",
    "docker_image",
    "docker_run_params",
    "docker_file_template",
    "function",
    "functions",
    "delete_node",
    "type",
    "entrypoint",
];

/// Keys of a `RUN` step written as a mapping.
const RUN_KEYS: &[&str] = &["RUN", "command", "if", "unless", "timeout"];

/// Keys of an `ADD` step.
const ADD_KEYS: &[&str] = &["ADD", "source", "target", "template", "owner", "mode"];

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
    if let Some(v) = node.get("stdout_and_stderr") {
        // The original's switch for returning a command's output; dtk-rs always keeps
        // both in the task's log.
        ctx.bool(v, &child(path, "stdout_and_stderr"), "`stdout_and_stderr`");
    }
    let commands_node = ctx.aliased(entries, path, &["commands", "command"]);
    match (commands_node, node.get("provider")) {
        (Some((key, c)), Some(_)) => {
            ctx.error_help(
                c.at,
                &child(path, key),
                format!("action `{name}` has both `{key}` and `provider`"),
                "an action has one kind: keep one of them",
            );
            return None;
        }
        (Some((key, c)), None) => {
            let (steps, timeout) = commands(ctx, c, &child(path, key));
            if a.timeout.is_none() {
                a.timeout = timeout;
            }
            a.kind = ActionKind::Commands(steps);
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

/// The steps of a `commands` action, and, when every step has its own `timeout` (the
/// original's per-command limit), their sum: a limit for the whole action that never
/// stops it earlier than the original would have.
fn commands(ctx: &mut Ctx, node: &YamlNode, path: &str) -> (Vec<Command>, Option<Duration>) {
    let items: Vec<(&YamlNode, String)> = match &node.kind {
        YamlKind::Scalar { .. } if !node.is_null() => vec![(node, path.to_owned())],
        YamlKind::Map(_) => vec![(node, path.to_owned())],
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
            return (Vec::new(), None);
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
    let mut total = Some(Duration::ZERO);
    for (n, p) in items {
        if let YamlKind::Map(entries) = &n.kind {
            let (step, timeout) = if n.get("ADD").is_some() {
                (add_step(ctx, n, entries, &p), None)
            } else {
                run_step(ctx, n, entries, &p)
            };
            total = total.zip(timeout).map(|(a, b)| a + b);
            out.extend(step);
            continue;
        }
        total = None;
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
    (out, total.filter(|d| !d.is_zero()))
}

/// A `RUN` step written as a mapping: `{RUN: CMD}` or `{command: CMD}` (the original's
/// `- RUN:` with `command:` beside it is both), with `if: COND` / `unless: COND` (a shell
/// condition: the command runs only when it succeeds / fails) and `timeout`.
fn run_step(
    ctx: &mut Ctx,
    n: &YamlNode,
    entries: &[(YamlNode, YamlNode)],
    path: &str,
) -> (Option<Command>, Option<Duration>) {
    ctx.check_keys(entries, path, RUN_KEYS, "a command");
    let help = "write `- RUN ./bin/start`, or `- {RUN: ./bin/start}`";
    let run = n.get("RUN").filter(|v| !v.is_null());
    let command = n.get("command").filter(|v| !v.is_null());
    let line = match (run, command) {
        (Some(r), Some(c)) => {
            ctx.error_help(
                c.at,
                &child(path, "command"),
                "a command has both `RUN` and `command`",
                "keep one of them",
            );
            let _ = r;
            return (None, None);
        }
        (Some(v), None) => ctx.text(v, &child(path, "RUN"), "a command"),
        (None, Some(v)) => ctx.text(v, &child(path, "command"), "a command"),
        (None, None) => {
            let misspelt = entries
                .iter()
                .any(|(k, _)| k.scalar().is_some_and(|k| !RUN_KEYS.contains(&k)));
            if !misspelt {
                // (An unknown key, already reported, is most likely the command.)
                ctx.error_help(n.at, path, "a command mapping has no command", help);
            }
            return (None, None);
        }
    };
    let Some(line) = line.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()) else {
        return (None, None);
    };
    let cond = |ctx: &mut Ctx, key: &str| {
        n.get(key)
            .and_then(|v| ctx.text(v, &child(path, key), &format!("`{key}`")))
            .map(|c| c.trim().to_owned())
    };
    let line = match (cond(ctx, "if"), cond(ctx, "unless")) {
        (Some(_), Some(_)) => {
            ctx.error_help(
                n.at,
                path,
                "a command has both `if` and `unless`",
                "keep one of them, or write the condition in the command",
            );
            return (None, None);
        }
        (Some(c), None) => format!("if {c}\nthen\n{line}\nfi"),
        (None, Some(c)) => format!("if ! {{ {c}\n}}\nthen\n{line}\nfi"),
        (None, None) => line,
    };
    let timeout = n
        .get("timeout")
        .and_then(|v| ctx.duration(v, &child(path, "timeout"), "`timeout`"));
    (Some(Command::Run(line)), timeout)
}

/// The original's file-placing step: `{ADD: , source: PATH_IN_MODULE, target: PATH,
/// template: BOOL, owner: USER[:GROUP], mode: MODE}`.
fn add_step(
    ctx: &mut Ctx,
    n: &YamlNode,
    entries: &[(YamlNode, YamlNode)],
    path: &str,
) -> Option<Command> {
    ctx.check_keys(entries, path, ADD_KEYS, "an `ADD` step");
    let help = "write `- {ADD: , source: PATH_IN_MODULE, target: PATH_ON_NODE}`";
    if let Some(v) = n.get("ADD").filter(|v| !v.is_null()) {
        ctx.error_help(
            v.at,
            &child(path, "ADD"),
            format!("`ADD` takes no value, found {}", found(v)),
            "give the file with `source:` and `target:` beside `ADD:`",
        );
        return None;
    }
    let mut text = |key: &str, what: &str| match n.get(key) {
        Some(v) => ctx
            .text(v, &child(path, key), what)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        None => None,
    };
    let source = text("source", "`source`");
    let target = text("target", "`target`");
    let owner = text("owner", "`owner`");
    let mode = text("mode", "`mode`");
    let template = match n.get("template") {
        Some(v) => ctx.bool(v, &child(path, "template"), "`template`")?,
        None => false,
    };
    for (key, value) in [("source", &source), ("target", &target)] {
        if value.is_none() && n.get(key).is_none() {
            ctx.error_help(n.at, path, format!("an `ADD` step needs a `{key}`"), help);
        }
    }
    if let Some(o) = &owner
        && !valid_owner(o)
    {
        ctx.error_help(
            n.get("owner").map_or(n.at, |v| v.at),
            &child(path, "owner"),
            format!("invalid owner `{}`", shorten(o)),
            "write a user, or `user:group`",
        );
        return None;
    }
    if let Some(m) = &mode
        && !valid_mode(m)
    {
        ctx.error_help(
            n.get("mode").map_or(n.at, |v| v.at),
            &child(path, "mode"),
            format!("invalid mode `{}`", shorten(m)),
            "write an octal mode such as `0644` (quoted or not)",
        );
        return None;
    }
    Some(Command::Add(AddFile {
        source: source?,
        target: target?,
        template,
        owner,
        mode,
    }))
}

fn valid_owner(o: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match o.split_once(':') {
        Some((u, g)) => ok(u) && ok(g),
        None => ok(o),
    }
}

/// An octal mode (`644`, `0644`): what the executor sets.
fn valid_mode(m: &str) -> bool {
    (3..=4).contains(&m.len()) && m.chars().all(|c| ('0'..='7').contains(&c))
}
