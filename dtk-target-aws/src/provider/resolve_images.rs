//! The `images` resource: the image map of a target, resolved.
//!
//! The `images` input maps a region (or `*`, the component's own region) to logical image
//! names, each either an AMI (`{ami, sizes, ssh_user}`) or a describe-images name filter
//! (`{name_filter, owners, architecture, sizes, ssh_user}`), resolved to the newest
//! matching image. The output `images` is the resolved map, every entry an `ami`; entries
//! of a region win over those of `*`. A filter matching nothing is left out and listed in
//! `unresolved_images`, so that a default map naming images a region (or a test server)
//! lacks does not fail the target.

use std::collections::BTreeMap;

use dtk_model::{Attributes, ProviderError, Value};

use super::{AwsProvider, Call, inputs, outputs};
use crate::error::{AwsError, ImageError};
use crate::images::{ImageEntry, ImageFilter, ImageMap};

/// The key standing for the component's own region.
pub(crate) const ANY_REGION: &str = "*";

const ENTRY_KEYS: &[&str] = &[
    "ami",
    "name_filter",
    "owners",
    "architecture",
    "sizes",
    "ssh_user",
];

/// One logical image as given.
enum Given {
    Ami(ImageEntry),
    Filter(ImageFilter),
}

fn text(
    call: &Call<'_, '_>,
    path: &str,
    v: Option<&Value>,
) -> Result<Option<String>, ProviderError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(call.invalid(format!(
            "`{path}` must be a string, not {}",
            other.kind_name()
        ))),
    }
}

fn entry(call: &Call<'_, '_>, path: &str, name: &str, v: &Value) -> Result<Given, ProviderError> {
    let Value::Hash(h) = v else {
        return Err(call.invalid(format!(
            "`{path}` must be a hash {{ami: ami-...}} or {{name_filter: PATTERN}}, not {}",
            v.kind_name()
        )));
    };
    if let Some(k) = h.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
        return Err(call.invalid(format!(
            "`{path}` has an unknown key `{k}` (an image has {})",
            ENTRY_KEYS.join(", ")
        )));
    }
    let sizes: BTreeMap<String, String> = match h.get("sizes") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Hash(s)) => s
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    text(call, &format!("{path}.sizes.{k}"), Some(v))?.unwrap_or_default(),
                ))
            })
            .collect::<Result<_, ProviderError>>()?,
        Some(other) => {
            return Err(call.invalid(format!(
                "`{path}.sizes` must be a hash of instance types, not {}",
                other.kind_name()
            )));
        }
    };
    let ssh_user = text(call, &format!("{path}.ssh_user"), h.get("ssh_user"))?;
    let ami = text(call, &format!("{path}.ami"), h.get("ami"))?;
    let filter = text(call, &format!("{path}.name_filter"), h.get("name_filter"))?;
    match (ami, filter) {
        (Some(ami), None) => Ok(Given::Ami(ImageEntry {
            ami,
            sizes,
            ssh_user,
        })),
        (None, Some(pattern)) => {
            let owners = match h.get("owners") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(Value::to_shell_text)
                    .filter(|s| !s.is_empty())
                    .collect(),
                Some(v @ (Value::Str(_) | Value::Int(_))) => vec![v.to_shell_text()],
                Some(other) => {
                    return Err(call.invalid(format!(
                        "`{path}.owners` must be a list of account ids or aliases, not {}",
                        other.kind_name()
                    )));
                }
            };
            Ok(Given::Filter(ImageFilter {
                name: name.to_owned(),
                name_pattern: pattern,
                owners,
                architecture: text(call, &format!("{path}.architecture"), h.get("architecture"))?,
                sizes,
                ssh_user,
            }))
        }
        (Some(_), Some(_)) => Err(call.invalid(format!(
            "`{path}` has both `ami` and `name_filter`; give one"
        ))),
        (None, None) => Err(call.invalid(format!(
            "`{path}` needs `ami` (an AMI id) or `name_filter` (an image name pattern)"
        ))),
    }
}

/// The map as given: region (or `*`) → name → image.
fn given(
    call: &Call<'_, '_>,
    attrs: &Attributes,
) -> Result<BTreeMap<String, BTreeMap<String, Given>>, ProviderError> {
    let mut out = BTreeMap::new();
    let Some(map) = inputs::hash(call, attrs, "images")? else {
        return Ok(out);
    };
    for (region, images) in map {
        let Value::Hash(images) = images else {
            return Err(call.invalid(format!(
                "`images.{region}` must be a hash of logical image names, not {}",
                images.kind_name()
            )));
        };
        let mut entries = BTreeMap::new();
        for (name, v) in images {
            entries.insert(
                name.clone(),
                entry(call, &format!("images.{region}.{name}"), name, v)?,
            );
        }
        out.insert(region.clone(), entries);
    }
    Ok(out)
}

/// Converts the resolved map into an attribute value.
pub(crate) fn map_value(map: &ImageMap) -> Value {
    serde_json::from_value(map.to_json()).unwrap_or(Value::Null)
}

/// Reads an image map from an attribute value (the `images` a node is linked to).
pub(crate) fn map_from_value(call: &Call<'_, '_>, v: &Value) -> Result<ImageMap, ProviderError> {
    let json = serde_json::to_value(v).map_err(|e| call.invalid(format!("`images`: {e}")))?;
    ImageMap::from_json(&json).map_err(|e| call.invalid(e.to_string()))
}

pub(crate) async fn create(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Attributes, ProviderError> {
    let own_region = p.region(call)?;
    let mut given = given(call, call.req.inputs)?;
    let mut map = ImageMap::default();
    let mut unresolved: Vec<String> = Vec::new();
    // `*` first, so that the region's own entries win.
    let mut order: Vec<(String, BTreeMap<String, Given>)> = Vec::new();
    if let Some(any) = given.remove(ANY_REGION) {
        order.push((own_region.clone(), any));
    }
    order.extend(given);
    for (region, images) in order {
        let mut filters = Vec::new();
        for (name, g) in images {
            match g {
                Given::Ami(e) => map.insert(&region, name, e),
                Given::Filter(f) => filters.push(f),
            }
        }
        if filters.is_empty() {
            continue;
        }
        let ec2 = p.client_for(call, &region).await?;
        for f in filters {
            match ec2.find_image(&f).await {
                Ok(found) => {
                    tracing::debug!(region, name = %f.name, image_id = %found.image_id, image = %found.name, "resolved image");
                    map.insert(
                        &region,
                        &f.name,
                        ImageEntry {
                            ami: found.image_id,
                            sizes: f.sizes,
                            ssh_user: f.ssh_user,
                        },
                    );
                }
                Err(AwsError::Image(ImageError::NoMatch { .. })) => {
                    tracing::warn!(region, name = %f.name, pattern = %f.name_pattern, "no image matches; left out of the image map");
                    unresolved.push(format!("{region}/{}", f.name));
                }
                Err(e) => return Err(call.aws(e)),
            }
        }
    }
    let handle = p.handle(call)?.unwrap_or_default();
    Ok(outputs([
        ("images", map_value(&map)),
        (
            "unresolved_images",
            Value::Array(unresolved.into_iter().map(Value::Str).collect()),
        ),
        ("region", Value::Str(own_region)),
        ("credentials_handle", Value::Str(handle)),
    ]))
}
