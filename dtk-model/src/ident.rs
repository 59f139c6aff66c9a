//! Names and references, parsed once into types: module ids, versions, component
//! references, attribute paths.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The error returned when a name, reference or path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct ParseRefError {
    /// What was being parsed (`module id`, `component reference`, ...).
    pub what: &'static str,
    /// The text that was refused.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

impl ParseRefError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        ParseRefError {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Checks one name segment: a module namespace or name, a component, node, instance,
/// attribute or action name. Letters, digits, `_`, `-` and `.`, not starting with `.` or
/// `-`, and never `.` or `..`: names become file and directory names, so they must not
/// be able to climb out of the directory they are placed in.
pub fn check_name(what: &'static str, s: &str) -> Result<(), ParseRefError> {
    if s.is_empty() {
        return Err(ParseRefError::new(what, s, "it is empty"));
    }
    if s.len() > 128 {
        return Err(ParseRefError::new(
            what,
            s,
            "it is longer than 128 characters",
        ));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return Err(ParseRefError::new(
            what,
            s,
            "it must not start with `.` or `-`",
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ParseRefError::new(
            what,
            s,
            format!(
                "`{}` is not allowed (use letters, digits, `_`, `-`, `.`)",
                c.escape_default()
            ),
        ));
    }
    // Module ids and versions also become parts of git reference names
    // (`refs/tags/NS/NAME/VERSION`), which git refuses with these.
    if s.contains("..") {
        return Err(ParseRefError::new(what, s, "it must not contain `..`"));
    }
    if s.ends_with('.') || s.ends_with(".lock") {
        return Err(ParseRefError::new(
            what,
            s,
            "it must not end with `.` or `.lock`",
        ));
    }
    Ok(())
}

/// A module's identity: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId {
    /// The namespace (`aws` in `aws/ec2`).
    pub namespace: String,
    /// The name (`ec2` in `aws/ec2`).
    pub name: String,
}

impl ModuleId {
    /// Makes a module id from its two parts, checking both.
    pub fn new(namespace: &str, name: &str) -> Result<Self, ParseRefError> {
        check_name("module namespace", namespace)?;
        check_name("module name", name)?;
        Ok(ModuleId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl FromStr for ModuleId {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((ns, name)) = s.split_once('/') else {
            return Err(ParseRefError::new(
                "module id",
                s,
                "expected `namespace/name`",
            ));
        };
        if name.contains('/') {
            return Err(ParseRefError::new(
                "module id",
                s,
                "expected exactly one `/`",
            ));
        }
        ModuleId::new(ns, name).map_err(|e| ParseRefError::new("module id", s, e.reason))
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Serialize for ModuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A module version: a semantic version (`1.2.0`), or a plain development tag such as
/// `master`, which may be republished and move.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleVersion {
    /// A released semantic version; immutable once published.
    Semver(semver::Version),
    /// A development tag (`master`); may be republished.
    Tag(String),
}

impl ModuleVersion {
    /// Whether this is a development tag (mutable) rather than a release.
    pub fn is_development(&self) -> bool {
        matches!(self, ModuleVersion::Tag(_))
    }
}

impl FromStr for ModuleVersion {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(v) = semver::Version::parse(t) {
            return Ok(ModuleVersion::Semver(v));
        }
        if t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Err(ParseRefError::new(
                "module version",
                s,
                "it starts with a digit but is not a semantic version such as `1.0.0`",
            ));
        }
        check_name("module version", t)?;
        Ok(ModuleVersion::Tag(t.to_owned()))
    }
}

impl fmt::Display for ModuleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleVersion::Semver(v) => write!(f, "{v}"),
            ModuleVersion::Tag(t) => f.write_str(t),
        }
    }
}

impl PartialOrd for ModuleVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ModuleVersion {
    /// Releases order by semver; development tags sort after every release, by name.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (ModuleVersion::Semver(a), ModuleVersion::Semver(b)) => a.cmp(b),
            (ModuleVersion::Semver(_), ModuleVersion::Tag(_)) => Ordering::Less,
            (ModuleVersion::Tag(_), ModuleVersion::Semver(_)) => Ordering::Greater,
            (ModuleVersion::Tag(a), ModuleVersion::Tag(b)) => a.cmp(b),
        }
    }
}

impl Serialize for ModuleVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A requirement on a dependency's version: a semver requirement (`^1.0`, `>= 1.2, < 2`,
/// or a bare `1.0.0`, which means exactly that version as in the original dtk), a
/// development tag that must match exactly (`master`), or any version at all (the
/// original dtk's dependency written without a version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionReq {
    /// A semver requirement.
    Semver(semver::VersionReq),
    /// Exactly this development tag.
    Tag(String),
    /// Any version, released or a development tag (written without a version in the DSL;
    /// shown as `*`).
    Any,
}

impl VersionReq {
    /// Whether `v` satisfies this requirement.
    pub fn matches(&self, v: &ModuleVersion) -> bool {
        match (self, v) {
            (VersionReq::Any, _) => true,
            (VersionReq::Semver(r), ModuleVersion::Semver(v)) => r.matches(v),
            (VersionReq::Tag(t), ModuleVersion::Tag(u)) => t == u,
            _ => false,
        }
    }
}

impl FromStr for VersionReq {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(ParseRefError::new("version requirement", s, "it is empty"));
        }
        // A bare version pins exactly, as in the original dtk's `aws/ec2: 1.3.0`.
        if let Ok(v) = semver::Version::parse(t) {
            let req = semver::VersionReq::parse(&format!("={v}"))
                .map_err(|e| ParseRefError::new("version requirement", s, e.to_string()))?;
            return Ok(VersionReq::Semver(req));
        }
        let starts_like_semver = t
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '^' | '~' | '=' | '>' | '<' | '*'));
        if starts_like_semver {
            return semver::VersionReq::parse(t)
                .map(VersionReq::Semver)
                .map_err(|e| ParseRefError::new("version requirement", s, e.to_string()));
        }
        check_name("version requirement", t)?;
        Ok(VersionReq::Tag(t.to_owned()))
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionReq::Semver(r) => write!(f, "{r}"),
            VersionReq::Tag(t) => f.write_str(t),
            VersionReq::Any => f.write_str("*"),
        }
    }
}

/// A reference to a component: `cmp`, `module::cmp`, `cmp[inst]` or `module::cmp[inst]`.
///
/// `module` is a module *name* (`ec2` for `aws/ec2`), resolved against the referring
/// module and its dependencies, as in the original dtk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentRef {
    /// The module name before `::`, if given.
    pub module: Option<String>,
    /// The component definition's name.
    pub name: String,
    /// The instance name in `[...]`, if given.
    pub instance: Option<String>,
}

impl ComponentRef {
    /// A reference to a component of the referring module, without an instance name.
    pub fn local(name: &str) -> Self {
        ComponentRef {
            module: None,
            name: name.to_owned(),
            instance: None,
        }
    }

    /// The same reference without its instance part.
    pub fn without_instance(&self) -> ComponentRef {
        ComponentRef {
            instance: None,
            ..self.clone()
        }
    }
}

impl FromStr for ComponentRef {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ParseRefError::new("component reference", s, reason);
        let t = s.trim();
        let (body, instance) = match t.find('[') {
            Some(open) => {
                let Some(inner) = t[open + 1..].strip_suffix(']') else {
                    return Err(err("`[` without a closing `]` at the end"));
                };
                check_name("component instance", inner).map_err(|e| err(&e.reason))?;
                (&t[..open], Some(inner.to_owned()))
            }
            None => {
                if t.contains(']') {
                    return Err(err("`]` without an opening `[`"));
                }
                (t, None)
            }
        };
        let (module, name) = match body.split_once("::") {
            Some((m, n)) => {
                check_name("module name", m).map_err(|e| err(&e.reason))?;
                (Some(m.to_owned()), n)
            }
            None => (None, body),
        };
        check_name("component name", name).map_err(|e| err(&e.reason))?;
        Ok(ComponentRef {
            module,
            name: name.to_owned(),
            instance,
        })
    }
}

impl fmt::Display for ComponentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.module {
            write!(f, "{m}::")?;
        }
        f.write_str(&self.name)?;
        if let Some(i) = &self.instance {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

/// Text (`mod::name[instance]`) in human-readable formats; its three parts in binary ones
/// (the parse cache), which read back without parsing.
impl Serialize for ComponentRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            (&self.module, &self.name, &self.instance).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ComponentRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let (module, name, instance) =
                <(Option<String>, String, Option<String>)>::deserialize(d)?;
            Ok(ComponentRef {
                module,
                name,
                instance,
            })
        }
    }
}

/// A component reference that may name the node it sits on: `node/cmp`,
/// `node/module::cmp[inst]`, or a plain [`ComponentRef`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeComponentRef {
    /// The node name before `/`, if given.
    pub node: Option<String>,
    /// The component.
    pub component: ComponentRef,
}

impl FromStr for NodeComponentRef {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t.split_once('/') {
            Some((node, rest)) => {
                check_name("node name", node)
                    .map_err(|e| ParseRefError::new("component reference", s, e.reason))?;
                if rest.contains('/') {
                    return Err(ParseRefError::new(
                        "component reference",
                        s,
                        "expected at most one `/` (`node/component`)",
                    ));
                }
                Ok(NodeComponentRef {
                    node: Some(node.to_owned()),
                    component: rest.parse()?,
                })
            }
            None => Ok(NodeComponentRef {
                node: None,
                component: t.parse()?,
            }),
        }
    }
}

impl fmt::Display for NodeComponentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}/")?;
        }
        write!(f, "{}", self.component)
    }
}

/// The path of an attribute in a service, as `set-attribute` takes it:
///
/// - `node/attr`: a node's own attribute (`workers/cardinality`); when no node has that
///   name, an assembly-level component without an instance name (`cmp/attr`);
/// - `node/component/attr`: a component on a node (`web/web/port`);
/// - `component[inst]/attr` or `module::component/attr`: an assembly-level component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttrPath {
    /// The node, when the path names one (first segment of a 3-segment path, or the
    /// ambiguous first segment of a 2-segment path).
    pub node: Option<String>,
    /// The component, when the path names one.
    pub component: Option<ComponentRef>,
    /// The attribute name.
    pub attr: String,
}

impl FromStr for AttrPath {
    type Err = ParseRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseRefError::new("attribute path", s, reason);
        let parts: Vec<&str> = s.trim().split('/').collect();
        let check_attr = |a: &str| check_name("attribute name", a).map_err(|e| err(e.reason));
        match parts.as_slice() {
            [first, attr] => {
                check_attr(attr)?;
                if first.contains('[') || first.contains("::") {
                    let component = first.parse().map_err(|e: ParseRefError| err(e.reason))?;
                    Ok(AttrPath {
                        node: None,
                        component: Some(component),
                        attr: (*attr).to_owned(),
                    })
                } else {
                    check_name("node name", first).map_err(|e| err(e.reason))?;
                    Ok(AttrPath {
                        node: Some((*first).to_owned()),
                        component: None,
                        attr: (*attr).to_owned(),
                    })
                }
            }
            [node, component, attr] => {
                check_name("node name", node).map_err(|e| err(e.reason))?;
                check_attr(attr)?;
                let component = component
                    .parse()
                    .map_err(|e: ParseRefError| err(e.reason))?;
                Ok(AttrPath {
                    node: Some((*node).to_owned()),
                    component: Some(component),
                    attr: (*attr).to_owned(),
                })
            }
            _ => Err(err(
                "expected `node/attr`, `node/component/attr` or `component[inst]/attr`".to_owned(),
            )),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}/")?;
        }
        if let Some(c) = &self.component {
            write!(f, "{c}/")?;
        }
        f.write_str(&self.attr)
    }
}
