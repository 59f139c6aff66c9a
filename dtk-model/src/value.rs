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
pub type Attributes = BTreeMap<String, Value>;

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
