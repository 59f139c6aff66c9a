//! A service's status: its nodes and components with the state of each, desired values
//! and recorded outputs. What `dtk service status` prints, as a library call.

use std::collections::{BTreeMap, BTreeSet};

use dtk_model::{ComponentId, Value};
use serde::Serialize;

use crate::error::InstanceError;
use crate::service::{ConvergeRecord, Service};

/// The state of one component instance, comparing desired and actual state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    /// Never applied.
    Pending,
    /// Applied with the current desired state.
    Converged,
    /// Applied, but the desired state changed since: converge runs it again.
    Changed,
    /// What it made is gone or changed outside dtk: converge makes it again.
    Drifted,
    /// Its last action failed.
    Failed,
}

/// One component instance in a [`ServiceStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    /// Its id (`node/cmp[inst]`).
    pub id: String,
    /// Its node.
    pub node: Option<String>,
    /// Its state.
    pub state: ComponentState,
    /// Its inputs: as last applied when it was applied, else as desired.
    pub inputs: BTreeMap<String, Value>,
    /// Its recorded outputs.
    pub outputs: BTreeMap<String, Value>,
    /// Its secret attributes and whether each is set (`name: set`); never the values.
    pub secrets: Vec<String>,
    /// Why its last action failed, when it did.
    pub error: Option<String>,
}

/// One node in a [`ServiceStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Its name (`workers:2` for a group member).
    pub name: String,
    /// Its node group.
    pub group: Option<String>,
    /// Its own attributes.
    pub attributes: BTreeMap<String, Value>,
}

/// A service's nodes and components with their states.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// Its target.
    pub target: Option<String>,
    /// Its last converge.
    pub last_converge: Option<ConvergeRecord>,
    /// How many files of the work tree have uncommitted edits.
    pub uncommitted_edits: usize,
    /// Nodes, in declaration order.
    pub nodes: Vec<NodeStatus>,
    /// Components, in declaration order.
    pub components: Vec<ComponentStatus>,
    /// Components still deployed that the desired state no longer has (converge deletes
    /// them).
    pub removed: Vec<String>,
}

impl Service {
    /// The service's status: the work tree's desired state (edits included) against
    /// recorded actual state. Reads only; nothing is run.
    pub fn status(&self) -> Result<ServiceStatus, InstanceError> {
        let model = self.model()?;
        let state = self.actual_state()?;
        let secrets = self.secrets()?;
        let components = model
            .components
            .iter()
            .map(|c| {
                let rec = state.components.get(&c.id);
                let (st, error) = match rec {
                    None => (ComponentState::Pending, None),
                    Some(r) if r.drift.is_some() => (ComponentState::Drifted, None),
                    Some(r) if r.is_applied() => {
                        let hash = dtk_workflow::desired_hash(c, &dtk_workflow::static_inputs(c));
                        if r.desired_hash == hash {
                            (ComponentState::Converged, None)
                        } else {
                            (ComponentState::Changed, None)
                        }
                    }
                    Some(r) => (
                        ComponentState::Failed,
                        match &r.status {
                            dtk_workflow::ComponentStatus::Failed { message } => {
                                Some(message.clone())
                            }
                            dtk_workflow::ComponentStatus::Applied => None,
                        },
                    ),
                };
                ComponentStatus {
                    id: c.id.to_string(),
                    node: c.node.clone(),
                    state: st,
                    inputs: rec
                        .filter(|r| r.is_applied())
                        .map_or(&c.inputs, |r| &r.inputs)
                        .to_map(),
                    outputs: rec.map(|r| r.outputs.to_map()).unwrap_or_default(),
                    secrets: c
                        .secret_inputs
                        .iter()
                        .map(|s| {
                            format!(
                                "{s}: {}",
                                if secrets.is_set(&c.id, s) {
                                    "set"
                                } else {
                                    "unset"
                                }
                            )
                        })
                        .collect(),
                    error,
                }
            })
            .collect();
        let in_model: BTreeSet<&ComponentId> = model.components.iter().map(|c| &c.id).collect();
        Ok(ServiceStatus {
            name: self.name().to_owned(),
            target: model.target.clone(),
            last_converge: self.last_converge()?,
            uncommitted_edits: self.diff()?.len(),
            nodes: model
                .nodes
                .iter()
                .map(|n| NodeStatus {
                    name: n.name.clone(),
                    group: n.group.clone(),
                    attributes: n.attributes.to_map(),
                })
                .collect(),
            components,
            removed: state
                .components
                .keys()
                .filter(|k| !in_model.contains(k))
                .map(ToString::to_string)
                .collect(),
        })
    }
}
