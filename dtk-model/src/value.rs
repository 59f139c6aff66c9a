//! Attribute values: the data that flows through modules, services and providers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An attribute value, as written in the DSL and as returned by providers.
///
/// Hashes keep their keys sorted so that two equal values always serialize to the same
/// text: desired-state hashing and round trips rely on it.
///
/// In a human-readable format (JSON, as in `actual.json`) a value is written as itself
/// (`null`, `true`, `4`, `"x"`, `[..]`, `{..}`), untagged; in a binary one (the parse
/// cache, [`crate::cache`]) as an enum with its variant's index, since such formats
/// do not say what kind of value comes next.
#[derive(Debug, Clone, PartialEq, Default)]
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
pub type Attributes = SortedMap<Value>;

/// A map from names to `V`, ordered by name, held as a sorted vector.
///
/// A sorted vector ([`litemap::LiteMap`], which it dereferences to for `get`, `insert`,
/// `iter` and the rest) rather than a `BTreeMap`: a component's inputs, outputs, recorded
/// values and declared attributes are a handful of entries, and a `BTreeMap` allocates an
/// 11-entry leaf (600-800 bytes here) for the first one; a service of 100,000 components
/// holds several of these per component. It serializes and prints as a map, as before.
#[derive(Clone, PartialEq)]
pub struct SortedMap<V>(litemap::LiteMap<String, V>);

impl<V> SortedMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        SortedMap(litemap::LiteMap::new())
    }

    /// A copy as a `BTreeMap` (the map of a [`Value::Hash`], for one).
    pub fn to_map(&self) -> BTreeMap<String, V>
    where
        V: Clone,
    {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl<V> Default for SortedMap<V> {
    fn default() -> Self {
        SortedMap::new()
    }
}

impl<V> std::ops::Deref for SortedMap<V> {
    type Target = litemap::LiteMap<String, V>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<V> std::ops::DerefMut for SortedMap<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<V: fmt::Debug> fmt::Debug for SortedMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl<V> std::ops::Index<&str> for SortedMap<V> {
    type Output = V;
    /// The value of `name`; panics when it is absent, as a map's index does.
    fn index(&self, name: &str) -> &V {
        match self.0.get(name) {
            Some(v) => v,
            None => panic!("no entry `{name}`"),
        }
    }
}

impl<V> FromIterator<(String, V)> for SortedMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut entries: Vec<(String, V)> = iter.into_iter().collect();
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
        SortedMap(litemap::LiteMap::from_sorted_store_unchecked(entries))
    }
}

impl<V, const N: usize> From<[(String, V); N]> for SortedMap<V> {
    fn from(entries: [(String, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<V> From<BTreeMap<String, V>> for SortedMap<V> {
    fn from(entries: BTreeMap<String, V>) -> Self {
        // A map's entries are sorted and unique already.
        let entries: Vec<(String, V)> = entries.into_iter().collect();
        SortedMap(litemap::LiteMap::from_sorted_store_unchecked(entries))
    }
}

impl<V> From<SortedMap<V>> for BTreeMap<String, V> {
    fn from(map: SortedMap<V>) -> Self {
        map.0.into_iter().collect()
    }
}

impl<V> Extend<(String, V)> for SortedMap<V> {
    fn extend<I: IntoIterator<Item = (String, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.0.insert(k, v);
        }
    }
}

impl<V> IntoIterator for SortedMap<V> {
    type Item = (String, V);
    type IntoIter = <litemap::LiteMap<String, V> as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a SortedMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = <&'a litemap::LiteMap<String, V> as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        (&self.0).into_iter()
    }
}

impl<V: Serialize> Serialize for SortedMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SortedMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SortedMapVisitor(std::marker::PhantomData))
    }
}

struct SortedMapVisitor<V>(std::marker::PhantomData<V>);

impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for SortedMapVisitor<V> {
    type Value = SortedMap<V>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        let mut m = litemap::LiteMap::with_capacity(access.size_hint().unwrap_or(0).min(64));
        while let Some((k, v)) = access.next_entry::<String, V>()? {
            // In order (as this type writes itself) each entry appends; a later duplicate
            // replaces the earlier one, as in a `BTreeMap`.
            if let Some((k, v)) = m.try_append(k, v) {
                m.insert(k, v);
            }
        }
        Ok(SortedMap(m))
    }
}

const VALUE_VARIANTS: &[&str] = &["Null", "Bool", "Int", "Float", "Str", "Array", "Hash"];

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return match self {
                Value::Null => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Int(i) => s.serialize_i64(*i),
                Value::Float(f) => s.serialize_f64(*f),
                Value::Str(v) => s.serialize_str(v),
                Value::Array(a) => a.serialize(s),
                Value::Hash(h) => h.serialize(s),
            };
        }
        match self {
            Value::Null => s.serialize_unit_variant("Value", 0, "Null"),
            Value::Bool(b) => s.serialize_newtype_variant("Value", 1, "Bool", b),
            Value::Int(i) => s.serialize_newtype_variant("Value", 2, "Int", i),
            Value::Float(f) => s.serialize_newtype_variant("Value", 3, "Float", f),
            Value::Str(v) => s.serialize_newtype_variant("Value", 4, "Str", v),
            Value::Array(a) => s.serialize_newtype_variant("Value", 5, "Array", a),
            Value::Hash(h) => s.serialize_newtype_variant("Value", 6, "Hash", h),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_any(PlainValue)
        } else {
            d.deserialize_enum("Value", VALUE_VARIANTS, TaggedValue)
        }
    }
}

/// A value written as itself (JSON): what the data's own kind says.
struct PlainValue;

impl<'de> serde::de::Visitor<'de> for PlainValue {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a null, boolean, number, string, array or map")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        // Beyond i64, a float (what the untagged reading this replaces gave).
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Hash(out))
    }
}

/// A value written with its variant's index (binary formats).
struct TaggedValue;

impl<'de> serde::de::Visitor<'de> for TaggedValue {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tagged value")
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use serde::de::VariantAccess;
        let (index, v): (u32, _) = data.variant()?;
        Ok(match index {
            0 => {
                v.unit_variant()?;
                Value::Null
            }
            1 => Value::Bool(v.newtype_variant()?),
            2 => Value::Int(v.newtype_variant()?),
            3 => Value::Float(v.newtype_variant()?),
            4 => Value::Str(v.newtype_variant()?),
            5 => Value::Array(v.newtype_variant()?),
            6 => Value::Hash(v.newtype_variant()?),
            other => {
                return Err(serde::de::Error::invalid_value(
                    serde::de::Unexpected::Unsigned(u64::from(other)),
                    &"a value variant index below 7",
                ));
            }
        })
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
