//! Actual state: what converge last made real, per component instance.
//!
//! The instance crate stores an [`ActualState`] as JSON beside the instance repository
//! (never inside it). It never holds a secret: inputs are recorded without the
//! component's `secret` attributes, and outputs without its `secret` dynamic attributes.

use std::collections::BTreeMap;
use std::time::Duration;

use dtk_model::instance::ComponentId;
use dtk_model::module::{ActionDef, ActionKind, Command};
use dtk_model::provider::Observed;
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
    /// The resource exists with other outputs than recorded.
    Changed {
        /// The outputs that were read.
        observed: Attributes,
    },
}

/// The record of one component instance in actual state.
///
/// It keeps what a later run needs even after the component left the model: its
/// `delete` action, node and dependencies (a removed component is deleted with the
/// definition recorded here, in reverse dependency order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Its `delete` action, when its definition has one.
    #[serde(default)]
    pub delete: Option<RecordedAction>,
    /// The names of its secret inputs (never their values): looked up again for `delete`.
    #[serde(default)]
    pub secret_inputs: Vec<String>,
    /// Drift noticed since it was applied.
    #[serde(default)]
    pub drift: Option<DriftMark>,
    /// The module its definition comes from (`NS/NAME`): a removed component's `delete`
    /// still runs in that module's files while the service has the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl AppliedComponent {
    /// Whether the record is of a successful apply.
    pub fn is_applied(&self) -> bool {
        self.status == ComponentStatus::Applied
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
    /// `Missing`, or `Present` with other outputs than recorded, marks drift (the next
    /// plan converges the component again); `Unknown`, or `Present` with the recorded
    /// outputs, clears the mark. Returns whether `id` has a record.
    pub fn observe(&mut self, id: &ComponentId, observed: &Observed) -> bool {
        let Some(rec) = self.components.get_mut(id) else {
            return false;
        };
        rec.drift = match observed {
            Observed::Missing => Some(DriftMark::Missing),
            Observed::Present(out) if *out != rec.outputs => Some(DriftMark::Changed {
                observed: out.clone(),
            }),
            Observed::Present(_) | Observed::Unknown => None,
        };
        true
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
