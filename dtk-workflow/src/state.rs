//! Actual state: what converge last made real, per component instance.
//!
//! The instance crate stores an [`ActualState`] as JSON beside the instance repository
//! (never inside it). It never holds a secret: inputs are recorded without the
//! component's `secret` attributes, and outputs without its `secret` dynamic attributes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dtk_model::instance::ComponentId;
use dtk_model::module::{ActionDef, ActionKind, Command};
use dtk_model::provider::{Change, Observed};
use dtk_model::value::Attributes;
use serde::{Deserialize, Serialize};
/// The format version written in [`ActualState::version`].
pub const STATE_VERSION: u32 = 1;

/// What converge last made real: one record per component instance that an action was
/// ever applied to (and not deleted since).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActualState {
    /// The format version ([`STATE_VERSION`]).
    #[serde(default = "state_version")]
    pub version: u32,
    /// Records by component instance id.
    #[serde(default)]
    pub components: BTreeMap<ComponentId, AppliedComponent>,
}

fn state_version() -> u32 {
    STATE_VERSION
}

impl Default for ActualState {
    fn default() -> Self {
        ActualState {
            version: STATE_VERSION,
            components: BTreeMap::new(),
        }
    }
}

/// The status of an applied component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ComponentStatus {
    /// Its `create` action succeeded with the recorded inputs.
    Applied,
    /// Its last `create` action failed; the resource may be half made. The next converge
    /// runs it again.
    Failed {
        /// What failed (secrets redacted).
        message: String,
    },
}

/// Drift noticed by reading a resource ([`dtk_model::provider::Provider::read`]) after it
/// was applied. The planner runs the component's `create` again when it is marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum DriftMark {
    /// The resource is gone (deleted outside dtk).
    Missing,
    /// The resource exists but differs from what its inputs ask (stopped, resized,
    /// retagged): converge updates it.
    Changed {
        /// The outputs that were read.
        observed: Attributes,
        /// What differs.
        #[serde(default)]
        changes: Vec<Change>,
    },
}

/// How a component came to be recorded without dtk creating what it stands for
/// (`dtk service import`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The provider's id of the resource imported.
    pub id: String,
    /// Whether dtk owns it now: deleting the component deletes the resource. Without,
    /// a delete only forgets it.
    pub adopt: bool,
}

/// What [`ActualState::observe`] made of a read.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Nothing is recorded for the component.
    NotRecorded,
    /// The provider cannot tell (or the resource is as recorded).
    Unchanged,
    /// The resource is as wanted, but some outputs changed: they are recorded now.
    OutputsChanged(Vec<Change>),
    /// The resource differs from what its inputs ask: marked drifted.
    Drifted(Vec<Change>),
    /// The resource is gone: marked drifted.
    Missing,
}

/// The record of one component instance in actual state.
///
/// It keeps what a later run needs even after the component left the model: its
/// `delete` action, node and dependencies (a removed component is deleted with the
/// definition recorded here, in reverse dependency order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "AppliedRecord")]
pub struct AppliedComponent {
    /// Whether the last `create` succeeded.
    #[serde(flatten)]
    pub status: ComponentStatus,
    /// The desired-state hash it was applied with (see [`crate::desired_hash`]); empty
    /// if it was never applied successfully.
    pub desired_hash: String,
    /// The digest of its resolved inputs and its dependencies' outputs when applied (see
    /// [`crate::input_digest`]): a consumer runs again when this changes.
    pub input_digest: String,
    /// The digest of `outputs` (see [`crate::outputs_digest`]): what the dependents'
    /// input digests are made of.
    #[serde(default)]
    pub outputs_digest: String,
    /// The resolved inputs it was applied with (linked values included, secrets never).
    #[serde(default)]
    pub inputs: Attributes,
    /// Its outputs (dynamic attributes) after the last successful action; secret
    /// outputs are not recorded.
    #[serde(default)]
    pub outputs: Attributes,
    /// The node it sits on.
    #[serde(default)]
    pub node: Option<String>,
    /// Whether it realizes its node (a `node[...]` component).
    #[serde(default)]
    pub realizes_node: bool,
    /// The provider kind of its `create` action, when that is a `provider:` action: for a
    /// node's component, the provider that runs commands on the node.
    #[serde(default)]
    pub provider: Option<String>,
    /// What it depended on when applied: it is deleted before them.
    #[serde(default)]
    pub depends_on: Vec<ComponentId>,
    /// Its `delete` action, when its definition has one: shared with every record of the
    /// same definition made in one run (a run of 100,000 components makes one copy).
    #[serde(default, serialize_with = "shared_action")]
    pub delete: Option<Arc<RecordedAction>>,
    /// The names of its secret inputs (never their values): looked up again for `delete`.
    #[serde(default)]
    pub secret_inputs: Vec<String>,
    /// Drift noticed since it was applied.
    #[serde(default)]
    pub drift: Option<DriftMark>,
    /// Set when the resource was imported rather than created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// The module its definition comes from (`NS/NAME`): a removed component's `delete`
    /// still runs in that module's files while the service has the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// How a record is read: [`AppliedComponent`]'s fields, with its status's tag and message
/// as fields of their own. The same JSON as the flattened status it is written with, read
/// without buffering every record whole first (what `flatten` makes serde do: it was most
/// of the cost of reading a large `actual.json`).
#[derive(Deserialize)]
struct AppliedRecord {
    status: StatusTag,
    #[serde(default)]
    message: Option<String>,
    desired_hash: String,
    input_digest: String,
    #[serde(default)]
    outputs_digest: String,
    #[serde(default)]
    inputs: Attributes,
    #[serde(default)]
    outputs: Attributes,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    realizes_node: bool,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    depends_on: Vec<ComponentId>,
    #[serde(default)]
    delete: Option<RecordedAction>,
    #[serde(default)]
    secret_inputs: Vec<String>,
    #[serde(default)]
    drift: Option<DriftMark>,
    #[serde(default)]
    imported: Option<Imported>,
    #[serde(default)]
    module: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StatusTag {
    Applied,
    Failed,
}

impl From<AppliedRecord> for AppliedComponent {
    fn from(r: AppliedRecord) -> Self {
        AppliedComponent {
            status: match r.status {
                StatusTag::Applied => ComponentStatus::Applied,
                StatusTag::Failed => ComponentStatus::Failed {
                    message: r.message.unwrap_or_default(),
                },
            },
            desired_hash: r.desired_hash,
            input_digest: r.input_digest,
            outputs_digest: r.outputs_digest,
            inputs: r.inputs,
            outputs: r.outputs,
            node: r.node,
            realizes_node: r.realizes_node,
            provider: r.provider,
            depends_on: r.depends_on,
            delete: r.delete.map(Arc::new),
            secret_inputs: r.secret_inputs,
            drift: r.drift,
            imported: r.imported,
            module: r.module,
        }
    }
}

/// Serializes a shared action as the action itself (serde's `Arc` support needs its `rc`
/// feature, which would change serde's features for the whole build).
fn shared_action<S: serde::Serializer>(
    action: &Option<Arc<RecordedAction>>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    action.as_deref().serialize(ser)
}

impl AppliedComponent {
    /// Whether the record is of a successful apply.
    pub fn is_applied(&self) -> bool {
        self.status == ComponentStatus::Applied
    }

    /// Whether deleting the component leaves its resource alone (it was imported without
    /// `adopt`): the delete then only forgets it.
    pub fn keeps_resource(&self) -> bool {
        self.imported.as_ref().is_some_and(|i| !i.adopt)
    }
}

/// An action as recorded in actual state (a serializable copy of
/// [`dtk_model::module::ActionDef`] for the kinds that run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedAction {
    /// The action's name.
    pub name: String,
    /// What it does.
    pub kind: RecordedKind,
    /// How many times to try.
    pub attempts: u32,
    /// Milliseconds to wait between attempts.
    pub sleep_ms: u64,
    /// Milliseconds one attempt may run (`None`: the executor's default).
    pub timeout_ms: Option<u64>,
}

/// What a recorded action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedKind {
    /// Shell lines (the text after `RUN`), placeholders not yet substituted.
    Commands {
        /// The lines.
        run: Vec<String>,
        /// Every step in order, when the action has other steps than `RUN` lines (`ADD`);
        /// absent otherwise (and in states written before there were other steps).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        steps: Option<Vec<RecordedStep>>,
    },
    /// A provider resource: `KIND.RESOURCE`.
    Provider {
        /// The provider kind.
        kind: String,
        /// The resource type.
        resource: String,
    },
}

/// One step of a recorded command action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordedStep {
    /// A shell line.
    Run(String),
    /// A file placement (`ADD`).
    Add {
        /// The file in the module.
        source: String,
        /// Where it goes on the node.
        target: String,
        /// Whether placeholders in it are substituted.
        #[serde(default)]
        template: bool,
        /// Its owner.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        /// Its mode (octal text).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
    },
}

impl RecordedAction {
    /// Copies a model action, or `None` for a kind this executor does not run.
    pub fn from_def(def: &ActionDef) -> Option<RecordedAction> {
        let kind = match &def.kind {
            // ADD steps are refused by the planner (`check_action`) until the executor
            // places files.
            ActionKind::Commands(cmds) => RecordedKind::Commands {
                run: cmds
                    .iter()
                    .filter_map(|c| c.run_line().map(str::to_owned))
                    .collect(),
                steps: cmds.iter().any(|c| matches!(c, Command::Add(_))).then(|| {
                    cmds.iter()
                        .map(|c| match c {
                            Command::Run(s) => RecordedStep::Run(s.clone()),
                            Command::Add(a) => RecordedStep::Add {
                                source: a.source.clone(),
                                target: a.target.clone(),
                                template: a.template,
                                owner: a.owner.clone(),
                                mode: a.mode.clone(),
                            },
                        })
                        .collect()
                }),
            },
            ActionKind::Provider { kind, resource } => RecordedKind::Provider {
                kind: kind.clone(),
                resource: resource.clone(),
            },
            ActionKind::Unsupported { .. } => return None,
        };
        Some(RecordedAction {
            name: def.name.clone(),
            kind,
            attempts: def.attempts.max(1),
            sleep_ms: duration_ms(def.sleep),
            timeout_ms: def.timeout.map(duration_ms),
        })
    }

    /// The wait between attempts.
    pub fn sleep(&self) -> Duration {
        Duration::from_millis(self.sleep_ms)
    }

    /// The time limit of one attempt, if the action sets one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    /// The provider kind, for a provider action.
    pub fn provider_kind(&self) -> Option<&str> {
        match &self.kind {
            RecordedKind::Provider { kind, .. } => Some(kind),
            RecordedKind::Commands { .. } => None,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ActualState {
    /// An empty state: nothing applied.
    pub fn new() -> Self {
        ActualState::default()
    }

    /// The record of `id`.
    pub fn get(&self, id: &ComponentId) -> Option<&AppliedComponent> {
        self.components.get(id)
    }

    /// Records what [`Provider::read`](dtk_model::provider::Provider::read) saw of `id`:
    /// `Missing` and `Drifted` mark drift (the next plan converges the component again:
    /// creates it, or updates it to repair it); `Present` clears the mark and records the
    /// outputs read (an output that changed, an address, reaches the consumers at the next
    /// converge); `Unknown` clears the mark. Pass outputs without the component's secret
    /// ones: they are never recorded.
    pub fn observe(&mut self, id: &ComponentId, observed: &Observed) -> Observation {
        let Some(rec) = self.components.get_mut(id) else {
            return Observation::NotRecorded;
        };
        match observed {
            Observed::Missing => {
                rec.drift = Some(DriftMark::Missing);
                Observation::Missing
            }
            Observed::Drifted { outputs, changes } => {
                rec.drift = Some(DriftMark::Changed {
                    observed: outputs.clone(),
                    changes: changes.clone(),
                });
                Observation::Drifted(changes.clone())
            }
            Observed::Present(out) => {
                rec.drift = None;
                if *out == rec.outputs {
                    return Observation::Unchanged;
                }
                let mut changes = Vec::new();
                for (k, v) in out {
                    match rec.outputs.get(k) {
                        Some(old) if old == v => {}
                        old => changes.push(Change::new(
                            k.clone(),
                            old.cloned().unwrap_or(dtk_model::Value::Null),
                            v.clone(),
                        )),
                    }
                }
                for (k, old) in &rec.outputs {
                    if !out.contains_key(k) {
                        changes.push(Change::new(k.clone(), old.clone(), dtk_model::Value::Null));
                    }
                }
                rec.outputs = out.clone();
                rec.outputs_digest = crate::hash::outputs_digest(&rec.outputs);
                Observation::OutputsChanged(changes)
            }
            Observed::Unknown => {
                rec.drift = None;
                Observation::Unchanged
            }
        }
    }

    /// The state as pretty JSON (what the instance crate stores).
    pub fn to_json(&self) -> String {
        // Serializing maps of strings and values cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a state written by [`ActualState::to_json`].
    pub fn from_json(text: &str) -> Result<ActualState, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: ComponentStatus) -> AppliedComponent {
        AppliedComponent {
            status,
            desired_hash: "d".into(),
            input_digest: "i".into(),
            outputs_digest: "o".into(),
            inputs: Attributes::from([("k".to_owned(), dtk_model::Value::from("v"))]),
            outputs: Attributes::new(),
            node: Some("n".into()),
            realizes_node: false,
            provider: None,
            depends_on: vec![ComponentId("n/a".into())],
            delete: None,
            secret_inputs: vec!["s".into()],
            drift: Some(DriftMark::Missing),
            imported: None,
            module: Some("m/x".into()),
        }
    }

    #[test]
    fn records_read_back_as_written_with_their_status_inline() {
        for status in [
            ComponentStatus::Applied,
            ComponentStatus::Failed {
                message: "boom".into(),
            },
        ] {
            let r = record(status);
            let json = serde_json::to_string(&r).expect("json");
            assert!(
                json.starts_with(r#"{"status":"#),
                "the status is inline, first: {json}"
            );
            let back: AppliedComponent = serde_json::from_str(&json).expect("reads back");
            assert_eq!(back, r);
        }
        let failed = serde_json::to_string(&record(ComponentStatus::Failed {
            message: "boom".into(),
        }))
        .expect("json");
        assert!(
            failed.contains(r#""status":"failed","message":"boom""#),
            "{failed}"
        );
        // Unknown keys are passed over (as the flattened reading did); an unknown status is
        // refused.
        let extra = failed.replacen('{', r#"{"later":1,"#, 1);
        assert!(serde_json::from_str::<AppliedComponent>(&extra).is_ok());
        let odd = failed.replace(r#""status":"failed""#, r#""status":"odd""#);
        assert!(serde_json::from_str::<AppliedComponent>(&odd).is_err());
    }
}
