//! Reading typed values out of a request's attributes, with errors naming the attribute.

use std::collections::BTreeMap;

use dtk_model::{Attributes, ProviderError, Value};

use super::Call;

/// A string attribute: `None` when absent, null or empty; integers and booleans in their
/// text form (`subnet_length: 24` read as a string is `"24"`).
pub(crate) fn string(
    call: &Call<'_, '_>,
    attrs: &Attributes,
    name: &str,
) -> Result<Option<String>, ProviderError> {
    match attrs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.trim().to_owned())),
        Some(v @ (Value::Int(_) | Value::Bool(_) | Value::Float(_))) => Ok(Some(v.to_shell_text())),
        Some(v) => Err(call.invalid(format!("`{name}` must be a string, not {}", v.kind_name()))),
    }
}

/// A string attribute of the inputs, else of the outputs recorded before.
pub(crate) fn input_or_prior(
    call: &Call<'_, '_>,
    name: &str,
) -> Result<Option<String>, ProviderError> {
    if let Some(prior) = call.req.prior
        && let Some(v) = string(call, prior, name)?
    {
        return Ok(Some(v));
    }
    string(call, call.req.inputs, name)
}

/// A required string input.
pub(crate) fn required(
    call: &Call<'_, '_>,
    name: &str,
    why: &str,
) -> Result<String, ProviderError> {
    string(call, call.req.inputs, name)?
        .ok_or_else(|| call.invalid(format!("`{name}` is not set: {why}")))
}

/// A whole number attribute (or a string holding one).
pub(crate) fn integer(
    call: &Call<'_, '_>,
    attrs: &Attributes,
    name: &str,
) -> Result<Option<i64>, ProviderError> {
    match attrs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| call.invalid(format!("`{name}` must be a whole number, not {v}"))),
    }
}

/// A boolean attribute (or a string `true`/`false`).
pub(crate) fn boolean(
    call: &Call<'_, '_>,
    attrs: &Attributes,
    name: &str,
) -> Result<Option<bool>, ProviderError> {
    match attrs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| call.invalid(format!("`{name}` must be true or false, not {v}"))),
    }
}

/// A list attribute; absent or null is empty.
pub(crate) fn array<'v>(
    call: &Call<'_, '_>,
    attrs: &'v Attributes,
    name: &str,
) -> Result<&'v [Value], ProviderError> {
    match attrs.get(name) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(call.invalid(format!("`{name}` must be a list, not {}", v.kind_name()))),
    }
}

/// A hash attribute, if set.
pub(crate) fn hash<'v>(
    call: &Call<'_, '_>,
    attrs: &'v Attributes,
    name: &str,
) -> Result<Option<&'v BTreeMap<String, Value>>, ProviderError> {
    match attrs.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Hash(h)) => Ok(Some(h)),
        Some(v) => Err(call.invalid(format!("`{name}` must be a hash, not {}", v.kind_name()))),
    }
}

/// A hash of text values (`tags`): scalars in their text form.
pub(crate) fn string_map(
    call: &Call<'_, '_>,
    attrs: &Attributes,
    name: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let Some(h) = hash(call, attrs, name)? else {
        return Ok(BTreeMap::new());
    };
    h.iter()
        .map(|(k, v)| match v {
            Value::Array(_) | Value::Hash(_) => Err(call.invalid(format!(
                "`{name}.{k}` must be a text value, not {}",
                v.kind_name()
            ))),
            other => Ok((k.clone(), other.to_shell_text())),
        })
        .collect()
}
