//! The tags dtk puts on what it creates, and ownership decided from them.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

/// Tag set to `true` on every resource dtk creates.
pub const TAG_MANAGED: &str = "dtk:managed";
/// Tag naming the service instance (or target instance) a resource belongs to.
pub const TAG_SERVICE: &str = "dtk:service";
/// Tag naming the component instance that made a resource, e.g. `vpc[vpc1]`.
pub const TAG_COMPONENT: &str = "dtk:component";
/// Tag naming the node (or node group) an instance is, e.g. `web` or `workers`.
pub const TAG_NODE: &str = "dtk:node";
/// Tag holding a node group member's index, from 1.
pub const TAG_INDEX: &str = "dtk:index";
/// The tag that AWS consoles show as a resource's name.
pub const TAG_NAME: &str = "Name";

/// Who a resource is made for: a service (or target) instance and one of its components.
///
/// Everything dtk creates is tagged with both; a re-run finds what it made by these tags
/// (adoption), and delete removes only what carries them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The service or target instance name, e.g. `aws-target`.
    pub service: String,
    /// The component instance, e.g. `vpc[vpc1]`.
    pub component: String,
}

impl Owner {
    /// An owner from its two names.
    pub fn new(service: impl Into<String>, component: impl Into<String>) -> Self {
        Owner {
            service: service.into(),
            component: component.into(),
        }
    }

    /// The `Name` tag for a resource of this owner: `SERVICE-COMPONENT`.
    pub(crate) fn name(&self) -> String {
        format!("{}-{}", self.service, self.component)
    }

    /// The tags of a resource this owner creates.
    pub(crate) fn tags(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            (TAG_MANAGED, "true".to_owned()),
            (TAG_SERVICE, self.service.clone()),
            (TAG_COMPONENT, self.component.clone()),
            (TAG_NAME, name.to_owned()),
        ]
    }

    /// Filters narrowing a describe call to what this owner may have created; the answer
    /// must still be checked with [`Owner::made`] (see [`tag_filters`]).
    pub(crate) fn filters(&self) -> Vec<Filter> {
        tag_filters(&[
            (TAG_MANAGED, "true"),
            (TAG_SERVICE, &self.service),
            (TAG_COMPONENT, &self.component),
        ])
    }

    /// Whether `tags` say this owner made the resource (exact values).
    pub(crate) fn made(&self, tags: &TagMap) -> bool {
        tags_match(
            tags,
            &[
                (TAG_MANAGED, "true"),
                (TAG_SERVICE, &self.service),
                (TAG_COMPONENT, &self.component),
            ],
        )
    }
}

/// Whether dtk created a resource (and so may delete it) or it was there before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// dtk created it for this service: delete removes it.
    Managed,
    /// Given or found, not created by dtk for this service: used as it is, never deleted.
    External,
}

impl Ownership {
    /// Managed when the tags say dtk created the resource for `service`.
    pub(crate) fn from_tags(tags: &TagMap, service: &str) -> Ownership {
        if tags_match(tags, &[(TAG_MANAGED, "true"), (TAG_SERVICE, service)]) {
            Ownership::Managed
        } else {
            Ownership::External
        }
    }
}

/// A resource's tags as a map.
pub(crate) type TagMap = BTreeMap<String, String>;

pub(crate) fn tag_map(tags: &[Tag]) -> TagMap {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Filters for tags of these values, leaving out values with wildcard characters.
///
/// EC2 reads `*` and `?` in filter values as wildcards, and moto (like `fnmatch`) also
/// reads `[...]` as a class, so `vpc[vpc1]` would not match itself there. Such values are
/// matched on this side only: callers always check the answer with [`tags_match`].
pub(crate) fn tag_filters(tags: &[(&str, &str)]) -> Vec<Filter> {
    tags.iter()
        .filter(|(_, v)| !v.contains(['*', '?', '[', ']', '\\']))
        .map(|(k, v)| {
            Filter::builder()
                .name(format!("tag:{k}"))
                .values(*v)
                .build()
        })
        .collect()
}

/// Whether `tags` hold exactly these values.
pub(crate) fn tags_match(tags: &TagMap, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| tags.get(*k).map(String::as_str) == Some(*v))
}

pub(crate) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub(crate) fn tag_spec<K: AsRef<str>, V: AsRef<str>>(
    resource_type: ResourceType,
    tags: impl IntoIterator<Item = (K, V)>,
) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource_type);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(k.as_ref()).value(v.as_ref()).build());
    }
    spec.build()
}
