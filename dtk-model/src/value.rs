//! Attribute values: the data that flows through modules, services and providers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An attribute value, as written in the DSL and as returned by providers.
///
/// Hashes keep their keys sorted so that two equal values always serialize to the same
/// text: desired-state hashing and round trips rely on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum Value {
    /// No value (`~`, `null`, or an empty scalar).
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list of values.
    Array(Vec<Value>),
    /// A map from string keys to values.
    Hash(BTreeMap<String, Value>),
}

/// A set of named attribute values, ordered by name.
///
/// A sorted vector ([`litemap::LiteMap`], which it dereferences to for `get`, `insert`,
/// `iter` and the rest) rather than a `BTreeMap`: a component's inputs, outputs and
/// recorded values are a handful of entries, and a `BTreeMap` allocates an 11-entry leaf
/// (about 630 bytes here) for the first one; a service of 100,000 components holds several
/// of these per component. It serializes as a map and prints as one, as before.
#[derive(Clone, Default, PartialEq)]
pub struct Attributes(litemap::LiteMap<String, Value>);

impl Attributes {
    /// An empty set.
    pub fn new() -> Self {
        Attributes(litemap::LiteMap::new())
    }

    /// A copy as a `BTreeMap` (the map of a [`Value::Hash`]).
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl std::ops::Deref for Attributes {
    type Target = litemap::LiteMap<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Attributes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl std::ops::Index<&str> for Attributes {
    type Output = Value;
    /// The value of `name`; panics when it is absent, as a map's index does.
    fn index(&self, name: &str) -> &Value {
        match self.0.get(name) {
            Some(v) => v,
            None => panic!("no attribute `{name}`"),
        }
    }
}

impl FromIterator<(String, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut entries: Vec<(String, Value)> = iter.into_iter().collect();
        // Stable: equal names stay in the order given, and the last one is kept, as a
        // map's `insert` would.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(&mut later.1, &mut earlier.1);
            }
            same
        });
        // Sorted by name with no name twice, which is what the store requires.
        Attributes(litemap::LiteMap::from_sorted_store_unchecked(entries))
    }
}

impl<const N: usize> From<[(String, Value); N]> for Attributes {
    fn from(entries: [(String, Value); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl From<BTreeMap<String, Value>> for Attributes {
    fn from(entries: BTreeMap<String, Value>) -> Self {
        // A map's entries are sorted and unique already.
        let entries: Vec<(String, Value)> = entries.into_iter().collect();
        Attributes(litemap::LiteMap::from_sorted_store_unchecked(entries))
    }
}

impl From<Attributes> for BTreeMap<String, Value> {
    fn from(attributes: Attributes) -> Self {
        attributes.0.into_iter().collect()
    }
}

impl Extend<(String, Value)> for Attributes {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.0.insert(k, v);
        }
    }
}

impl IntoIterator for Attributes {
    type Item = (String, Value);
    type IntoIter = <litemap::LiteMap<String, Value> as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a Value);
    type IntoIter = <&'a litemap::LiteMap<String, Value> as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        (&self.0).into_iter()
    }
}

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, Value>::deserialize(d).map(Attributes::from)
    }
}

impl Value {
    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, if it is one (or a string holding one).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a boolean, if it is one (or a string holding `true`/`false`).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s == "true" => Some(true),
            Value::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// Whether the value is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short name of the value's kind, for error messages (`string`, `integer`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Hash(_) => "hash",
        }
    }

    /// The text a shell command sees for this value: strings as they are, scalars in their
    /// YAML spelling, arrays and hashes as compact JSON, `Null` as the empty string.
    pub fn to_shell_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Array(_) | Value::Hash(_) => {
                serde_json::to_string(self).unwrap_or_else(|_| String::from("null"))
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("~"),
            Value::Str(s) => f.write_str(s),
            other => f.write_str(&other.to_shell_text()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
