//! Every attribute of a service's components with its value and where the value comes
//! from (`dtk service attributes`): set, default, unset, a link, an output, a secret (only
//! whether it is set, never its value).

use std::collections::BTreeMap;
use std::fmt;

use dtk_model::Value;
use dtk_model::instance::LinkSource;
use serde::{Serialize, Serializer};

use crate::error::InstanceError;
use crate::service::Service;

/// Where an attribute's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeSource {
    /// Set in the desired state.
    Set,
    /// The definition's default.
    Default,
    /// No value.
    Unset,
    /// Mapped by a link from `from` (`node/cmp.attr`, or `service/cmp.attr` across
    /// services).
    Link {
        /// The source attribute.
        from: String,
    },
    /// Reported by an action (a dynamic attribute).
    Output,
    /// A secret: only whether it is set on this machine.
    Secret {
        /// Whether the secret store holds a value.
        set: bool,
    },
}

impl fmt::Display for AttributeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeSource::Set => f.write_str("set"),
            AttributeSource::Default => f.write_str("default"),
            AttributeSource::Unset => f.write_str("unset"),
            AttributeSource::Link { from } => write!(f, "link from {from}"),
            AttributeSource::Output => f.write_str("output"),
            AttributeSource::Secret { set: true } => f.write_str("secret (set)"),
            AttributeSource::Secret { set: false } => f.write_str("secret (unset)"),
        }
    }
}

/// Serialized as its text (`"set"`, `"link from web/db.port"`, `"secret (unset)"`, ...).
impl Serialize for AttributeSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One attribute of a component instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeInfo {
    /// `COMPONENT_ID/ATTRIBUTE`.
    pub path: String,
    /// Its type's name.
    pub r#type: String,
    /// Its value (never a secret's; `None` when it has none yet).
    pub value: Option<Value>,
    /// Where the value comes from.
    pub source: AttributeSource,
}

impl Service {
    /// Every attribute of every component instance, in the desired state's order, with
    /// its value and its source; hidden attributes only with `all`.
    pub fn attributes(&self, all: bool) -> Result<Vec<AttributeInfo>, InstanceError> {
        let model = self.model()?;
        let state = self.actual_state()?;
        let secrets = self.secrets()?;
        let mut out = Vec::new();
        for c in &model.components {
            let linked: BTreeMap<&str, String> = c
                .links
                .iter()
                .flat_map(|l| {
                    let from = match &l.from {
                        LinkSource::Component(id) => id.to_string(),
                        LinkSource::External {
                            service, component, ..
                        } => format!("{service}/{component}"),
                    };
                    l.mappings
                        .iter()
                        .map(move |(src, to)| (to.as_str(), format!("{from}.{}", src.join("."))))
                })
                .collect();
            let rec = state.components.get(&c.id);
            for (an, a) in &c.def.attributes {
                if a.hidden && !all {
                    continue;
                }
                let (value, source) = if a.secret {
                    (
                        None,
                        AttributeSource::Secret {
                            set: secrets.is_set(&c.id, an),
                        },
                    )
                } else if let Some(v) = rec
                    .and_then(|r| r.outputs.get(an).cloned())
                    .filter(|_| a.dynamic)
                {
                    (Some(v), AttributeSource::Output)
                } else if a.dynamic && !a.input {
                    (None, AttributeSource::Output)
                // An output users may also set (`input: true`) shows its link or what was
                // set until an action reports it.
                } else if let Some(from) = linked.get(an.as_str()) {
                    (
                        rec.and_then(|r| r.inputs.get(an).cloned()),
                        AttributeSource::Link { from: from.clone() },
                    )
                } else {
                    let v = c.inputs.get(an).cloned();
                    let src = if v.is_none() {
                        AttributeSource::Unset
                    } else if a.default.as_ref() == v.as_ref() {
                        AttributeSource::Default
                    } else {
                        AttributeSource::Set
                    };
                    (v, src)
                };
                out.push(AttributeInfo {
                    path: format!("{}/{an}", c.id),
                    r#type: a.ty.as_str().to_owned(),
                    value,
                    source,
                });
            }
        }
        Ok(out)
    }
}
