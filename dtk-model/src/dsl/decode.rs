//! Helpers shared by the module and service decoders: scalar typing, typed accessors over
//! the located YAML tree that record a located diagnostic when a node has the wrong shape,
//! and key-path building.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diag::{Diagnostic, Diagnostics, DslError, Location, did_you_mean};
use crate::ident::{ComponentRef, ModuleId, ParseRefError, check_name};
use crate::module::AttrType;
use crate::value::Value;
use crate::yaml::{YamlKind, YamlNode};

/// The value of a plain (unquoted) scalar, typed as YAML 1.2's core schema does: null,
/// booleans, integers, floats; anything else is a string.
pub(crate) fn plain_value(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(i) = parse_int(text) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(text) {
        return Value::Float(f);
    }
    Value::Str(text.to_owned())
}

fn parse_int(t: &str) -> Option<i64> {
    if let Some(hex) = t.strip_prefix("0x") {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return i64::from_str_radix(hex, 16).ok();
        }
        return None;
    }
    if let Some(oct) = t.strip_prefix("0o") {
        if !oct.is_empty() && oct.chars().all(|c| ('0'..='7').contains(&c)) {
            return i64::from_str_radix(oct, 8).ok();
        }
        return None;
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn parse_float(t: &str) -> Option<f64> {
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let negative = t.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == t.len() => return Some(f64::NAN),
        _ => {}
    }
    // [0-9]* ( . [0-9]* )? ( [eE] [-+]? [0-9]+ )?, with at least one digit in the mantissa.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(int_part) || !frac_part.is_none_or(all_digits) {
        return None;
    }
    if int_part.is_empty() && frac_part.is_none_or(str::is_empty) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        if e.is_empty() || !all_digits(e) {
            return None;
        }
    } else if frac_part.is_none() {
        // An integer too large for i64: not a float either; it stays a string.
        return None;
    }
    t.parse().ok()
}

/// The value of any node: scalars typed when plain, mappings with their keys as written.
pub(crate) fn node_value(node: &YamlNode) -> Value {
    match &node.kind {
        YamlKind::Scalar { text, plain: true } => plain_value(text),
        YamlKind::Scalar { text, plain: false } => Value::Str(text.clone()),
        YamlKind::Seq(items) => Value::Array(items.iter().map(node_value).collect()),
        YamlKind::Map(entries) => {
            let mut map = BTreeMap::new();
            for (k, v) in entries {
                if let Some(key) = k.scalar() {
                    map.insert(key.to_owned(), node_value(v));
                }
            }
            Value::Hash(map)
        }
    }
}

/// `path.key`, or `key` at the root.
pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// How a node is described in "found ..." messages: its text for scalars.
pub(crate) fn found(node: &YamlNode) -> String {
    match &node.kind {
        YamlKind::Scalar { .. } if node.is_null() => "nothing".to_owned(),
        YamlKind::Scalar { text, plain: true } => format!("`{}`", shorten(text)),
        YamlKind::Scalar { text, plain: false } => format!("`\"{}\"`", shorten(text)),
        YamlKind::Seq(_) => "a list".to_owned(),
        YamlKind::Map(_) => "a mapping".to_owned(),
    }
}

/// A string cut to a length that fits in a message.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// Formats a list of keys for "expected one of" help.
pub(crate) fn one_of(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The decoding context: the diagnostics collected so far.
pub(crate) struct Ctx {
    pub(crate) diags: Diagnostics,
}

impl Ctx {
    pub(crate) fn new(file: &str) -> Self {
        Ctx {
            diags: Diagnostics::new(file),
        }
    }

    pub(crate) fn error(&mut self, at: Location, path: &str, message: impl Into<String>) {
        self.diags.error(at, path, message);
    }

    pub(crate) fn error_help(
        &mut self,
        at: Location,
        path: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diags.error_help(at, path, message, help);
    }

    /// The entries of a mapping; an empty node is an empty mapping. Anything else is
    /// reported and gives `None`.
    pub(crate) fn map<'a>(
        &mut self,
        node: &'a YamlNode,
        path: &str,
        what: &str,
    ) -> Option<&'a [(YamlNode, YamlNode)]> {
        match &node.kind {
            YamlKind::Map(entries) => Some(entries),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.error(
                    node.at,
                    path,
                    format!("{what} must be a mapping, found {}", found(node)),
                );
                None
            }
        }
    }

    /// The items of a sequence; an empty node is an empty list. Anything else is reported
    /// and gives `None`.
    pub(crate) fn seq<'a>(
        &mut self,
        node: &'a YamlNode,
        path: &str,
        what: &str,
    ) -> Option<&'a [YamlNode]> {
        match &node.kind {
            YamlKind::Seq(items) => Some(items),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.error(
                    node.at,
                    path,
                    format!("{what} must be a list, found {}", found(node)),
                );
                None
            }
        }
    }

    /// Reports every key of `entries` not in `allowed`, with a suggestion.
    pub(crate) fn check_keys(
        &mut self,
        entries: &[(YamlNode, YamlNode)],
        path: &str,
        allowed: &[&str],
        what: &str,
    ) {
        for (k, _) in entries {
            let Some(key) = k.scalar() else { continue };
            if allowed.contains(&key) {
                continue;
            }
            let key_path = child(path, key);
            match did_you_mean(key, allowed.iter().copied()) {
                Some(s) => self.error_help(
                    k.at,
                    &key_path,
                    format!("unknown key `{}` in {what}", shorten(key)),
                    format!("did you mean `{s}`?"),
                ),
                None => self.error_help(
                    k.at,
                    &key_path,
                    format!("unknown key `{}` in {what}", shorten(key)),
                    format!("expected one of {}", one_of(allowed)),
                ),
            }
        }
    }

    /// A scalar's text (numbers and booleans as written); `None` and a report for lists,
    /// mappings and empty values.
    pub(crate) fn text(&mut self, node: &YamlNode, path: &str, what: &str) -> Option<String> {
        match &node.kind {
            YamlKind::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
            _ => {
                self.error(
                    node.at,
                    path,
                    format!("{what} must be a string, found {}", found(node)),
                );
                None
            }
        }
    }

    /// Like [`Ctx::text`], but an empty value is `None` without a report.
    pub(crate) fn opt_text(&mut self, node: &YamlNode, path: &str, what: &str) -> Option<String> {
        if node.is_null() {
            None
        } else {
            self.text(node, path, what)
        }
    }

    /// A name that becomes a path segment, checked with [`check_name`].
    pub(crate) fn name(
        &mut self,
        node: &YamlNode,
        path: &str,
        what: &'static str,
    ) -> Option<String> {
        let text = self.text(node, path, what)?;
        self.check_name_at(&text, node.at, path, what)
            .then_some(text)
    }

    /// Checks a name; reports and returns false when it is malformed.
    pub(crate) fn check_name_at(
        &mut self,
        name: &str,
        at: Location,
        path: &str,
        what: &'static str,
    ) -> bool {
        match check_name(what, name) {
            Ok(()) => true,
            Err(e) => {
                self.error_help(
                    at,
                    path,
                    format!("invalid {what} `{}`: {}", shorten(name), e.reason),
                    "names become file and directory names: use letters, digits, `_`, `-` and `.`",
                );
                false
            }
        }
    }

    /// `true` / `false`.
    pub(crate) fn bool(&mut self, node: &YamlNode, path: &str, what: &str) -> Option<bool> {
        match node.scalar() {
            Some("true" | "True" | "TRUE") => Some(true),
            Some("false" | "False" | "FALSE") => Some(false),
            _ => {
                self.error_help(
                    node.at,
                    path,
                    format!("{what} must be `true` or `false`, found {}", found(node)),
                    "write `true` or `false`",
                );
                None
            }
        }
    }

    /// A non-negative integer no larger than `max`.
    pub(crate) fn uint(
        &mut self,
        node: &YamlNode,
        path: &str,
        what: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let parsed = match &node.kind {
            YamlKind::Scalar { text, plain: true } => match plain_value(text) {
                Value::Int(i) => u64::try_from(i).ok(),
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(
                    node.at,
                    path,
                    format!(
                        "{what} must be an integer from {min} to {max}, found {}",
                        found(node)
                    ),
                );
                None
            }
        }
    }

    /// The value of whichever of `keys` (a key and its aliases) the mapping `entries`
    /// holds, with the key as written; a second one is reported (`both `actions` and its
    /// alias `workflows` are given`), and the first in source order is used.
    pub(crate) fn aliased<'a>(
        &mut self,
        entries: &'a [(YamlNode, YamlNode)],
        path: &str,
        keys: &[&str],
    ) -> Option<(&'a str, &'a YamlNode)> {
        let mut found: Option<(&'a str, &'a YamlNode)> = None;
        for (k, v) in entries {
            let Some(key) = k.scalar() else { continue };
            if !keys.contains(&key) {
                continue;
            }
            match found {
                None => found = Some((key, v)),
                Some((first, _)) => self.error_help(
                    k.at,
                    &child(path, key),
                    format!("both `{first}` and its alias `{key}` are given"),
                    format!("merge them under `{}`", keys[0]),
                ),
            }
        }
        found
    }

    /// A module id, `NAMESPACE/NAME` (or the original dtk's `NAMESPACE:NAME`), reporting
    /// a malformed one with `help`.
    pub(crate) fn module_id(
        &mut self,
        text: &str,
        at: Location,
        path: &str,
        help: &str,
    ) -> Option<ModuleId> {
        let normalized = match text.split_once(':') {
            Some((ns, name)) if !text.contains('/') && !name.contains(':') && !ns.is_empty() => {
                format!("{ns}/{name}")
            }
            _ => text.to_owned(),
        };
        match normalized.parse::<ModuleId>() {
            Ok(id) => Some(id),
            Err(e) => {
                self.error_help(
                    at,
                    path,
                    format!("invalid module id `{}`: {}", shorten(text), e.reason),
                    help,
                );
                None
            }
        }
    }

    /// A duration: whole seconds (`30`), or a number with a unit (`500ms`, `30s`, `5m`,
    /// `1h`).
    pub(crate) fn duration(&mut self, node: &YamlNode, path: &str, what: &str) -> Option<Duration> {
        let parsed = node.scalar().and_then(parse_duration);
        if parsed.is_none() {
            self.error_help(
                node.at,
                path,
                format!("{what} must be a duration, found {}", found(node)),
                "write whole seconds (`30`) or a number with a unit: `500ms`, `30s`, `5m`, `1h`",
            );
        }
        parsed
    }
}

/// The longest duration accepted: a week.
const MAX_DURATION_SECS: u64 = 7 * 24 * 3600;

fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (d.as_secs() <= MAX_DURATION_SECS).then_some(d)
}

/// How a value of `ty` is written, for help lines.
pub(crate) fn type_phrase(ty: AttrType) -> &'static str {
    match ty {
        AttrType::String => "a string",
        AttrType::Integer => "a whole number such as `8080`",
        AttrType::Boolean => "`true` or `false`",
        AttrType::Hash => "a mapping such as `{key: value}`",
        AttrType::Array => "a list such as `[a, b]`",
        AttrType::Port => "an integer from 1 to 65535",
        AttrType::Any => "any value",
    }
}

/// The value of `node` as an attribute of type `ty`, or why it is not one.
///
/// A plain number or boolean given to a `string` attribute is taken as its text
/// (`version: 1` is the string `1`), as the original dtk did; nothing else is converted.
pub(crate) fn typed_value(ty: AttrType, node: &YamlNode) -> Result<Value, String> {
    let value = node_value(node);
    if ty == AttrType::String
        && let (
            YamlKind::Scalar { text, plain: true },
            Value::Int(_) | Value::Float(_) | Value::Bool(_),
        ) = (&node.kind, &value)
    {
        return Ok(Value::Str(text.clone()));
    }
    if ty.accepts(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{} does not match type `{}`",
            found(node),
            ty.as_str()
        ))
    }
}
/// Parses a component reference, reporting a malformed one.
pub(crate) fn parse_ref(
    ctx: &mut Ctx,
    text: &str,
    at: Location,
    path: &str,
) -> Option<ComponentRef> {
    match text.parse::<ComponentRef>() {
        Ok(r) => Some(r),
        Err(e) => {
            ref_error(ctx, &e, at, path);
            None
        }
    }
}

fn ref_error(ctx: &mut Ctx, e: &ParseRefError, at: Location, path: &str) {
    ctx.error_help(
        at,
        path,
        format!("invalid {} `{}`: {}", e.what, shorten(&e.input), e.reason),
        "write `component`, `module::component` or `module::component[instance]`",
    );
}

impl Ctx {
    /// The error for a document that could not be decoded: what was collected, or
    /// (should nothing have been) a generic diagnostic, so that an error is never empty.
    pub(crate) fn fail(self) -> DslError {
        let file = self.diags.file().to_owned();
        match self.diags.finish(()) {
            Err(e) => e,
            Ok(()) => DslError::single(whole_document(&file, "the document could not be read")),
        }
    }
}

/// A diagnostic about a whole document (at its start).
fn whole_document(file: &str, message: &str) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        location: Location {
            line: 1,
            col: 1,
            offset: 0,
        },
        key: String::new(),
        message: message.to_owned(),
        help: None,
    }
}

/// A value written as YAML on its own (a command line's `VALUE`), with the DSL's scalar
/// typing.
pub(crate) fn value_document(text: &str, file: &str) -> Result<Value, DslError> {
    let mut diags = Diagnostics::new(file);
    match crate::yaml::load(text, &mut diags) {
        Some(node) if !diags.has_errors() => Ok(node_value(&node)),
        _ => Err(diags.finish(()).err().unwrap_or_else(|| {
            DslError::single(whole_document(file, "the value could not be read"))
        })),
    }
}
