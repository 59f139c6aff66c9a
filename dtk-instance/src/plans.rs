//! Plans as values users review: what converge would run (`dtk service plan`, with
//! `--only`, `--exclude`, `--replace`), saved to a file (`plan --out FILE`) and run
//! exactly (`converge --plan FILE`).
//!
//! A plan reads the world (provider reads) but runs no command and writes nothing: the
//! `check` actions converge would run are listed instead (`checks`). It is made under the
//! instance's lock, so it never sees a converge half done.
//!
//! A saved plan carries the desired-state commit and a digest of the uncommitted edits it
//! was made from, and a digest of actual state. `converge --plan` refuses (nothing run)
//! when any of them changed, or when planning again now (after the reads and checks)
//! gives other tasks: it runs exactly the plan that was reviewed, or nothing.

use std::collections::BTreeMap;

use dtk_model::module::ActionKind;
use dtk_model::{ServiceModel, Value};
use dtk_workflow::{ActualState, LeftOut, Plan, Replace, Selection, Selector, TaskOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::converge::{Checkpoint, RunOptions, RunReport};
use crate::error::{InstanceError, PlanProblem};
use crate::refresh::{Checks, DriftLine};
use crate::service::Service;

/// The schema of a plan document (`plan --json`, and the file `plan --out` writes).
pub const PLAN_SCHEMA: &str = "dtk.service.plan/v1";

/// One task of a [`PlanDoc`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTask {
    /// `COMPONENT.ACTION`.
    pub id: String,
    /// The component instance.
    pub component: String,
    /// The action.
    pub action: String,
    /// The node it runs on.
    pub node: Option<String>,
    /// Why it is planned.
    pub reason: String,
    /// The tasks it waits for.
    pub after: Vec<String>,
}

pub use crate::converge::LeftOutLine;

/// What a converge acts on beyond what changed, as text (`--only`, `--exclude`,
/// `--replace` references).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionDoc {
    /// `--only` references.
    pub only: Vec<String>,
    /// `--exclude` references.
    pub exclude: Vec<String>,
    /// `--replace` references.
    pub replace: Vec<String>,
}

impl SelectionDoc {
    /// Parses the references.
    pub fn selection(&self) -> Result<Selection, InstanceError> {
        let parse = |v: &[String]| -> Result<Vec<Selector>, InstanceError> {
            v.iter()
                .map(|s| s.parse().map_err(InstanceError::InvalidSelector))
                .collect()
        };
        Ok(Selection {
            only: parse(&self.only)?,
            exclude: parse(&self.exclude)?,
            replace: parse(&self.replace)?
                .into_iter()
                .map(Replace::requested)
                .collect(),
        })
    }

    /// The references of `s` (replacements the user asked for only).
    pub fn of(s: &Selection) -> SelectionDoc {
        let text = |v: &[Selector]| v.iter().map(ToString::to_string).collect();
        SelectionDoc {
            only: text(&s.only),
            exclude: text(&s.exclude),
            replace: s
                .replace
                .iter()
                .filter(|r| r.why == "requested")
                .map(|r| r.target.to_string())
                .collect(),
        }
    }
}

/// A plan as users review it: `dtk service plan --json` prints it, `plan --out FILE`
/// writes it, `converge --plan FILE` runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDoc {
    /// The service.
    pub service: String,
    /// The desired-state commit it was made from (the instance repository's HEAD).
    pub commit: String,
    /// A digest of the work tree's uncommitted edits it includes (empty when none).
    pub edits: String,
    /// A digest of actual state as recorded when it was made.
    pub actual_state: String,
    /// The selection it was made with.
    pub selection: SelectionDoc,
    /// What converge would run, in plan order; empty when nothing.
    pub tasks: Vec<PlanTask>,
    /// What the selection left out.
    pub left_out: Vec<LeftOutLine>,
    /// The components whose `check` action converge runs first (a plan runs none).
    pub checks: Vec<String>,
    /// What the reads found (gone, drifted, outputs changed, unreadable).
    pub drift: Vec<DriftLine>,
    /// The components the plan deletes that were imported without `--adopt`: their
    /// delete only forgets them, the resource stays (left out of the document when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

impl PlanDoc {
    /// The document as JSON text, its `schema` ([`PLAN_SCHEMA`]) first: what
    /// `plan --json` prints and `plan --out` writes.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct WithSchema<'a> {
            schema: &'a str,
            #[serde(flatten)]
            doc: &'a PlanDoc,
        }
        // Strings, numbers and vectors of them cannot fail to serialize.
        let mut text = serde_json::to_string_pretty(&WithSchema {
            schema: PLAN_SCHEMA,
            doc: self,
        })
        .unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a plan written by `plan --out` (`what` names it in errors).
    pub fn from_json(text: &str, what: &str) -> Result<PlanDoc, InstanceError> {
        let bad = |e: String| InstanceError::NotAPlan {
            what: what.to_owned(),
            problem: PlanProblem::Unreadable(e),
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        match value.get("schema").and_then(serde_json::Value::as_str) {
            Some(PLAN_SCHEMA) => {}
            Some(other) => {
                return Err(InstanceError::NotAPlan {
                    what: what.to_owned(),
                    problem: PlanProblem::Schema {
                        found: other.to_owned(),
                        expected: PLAN_SCHEMA,
                    },
                });
            }
            None => return Err(bad("it has no `schema`".to_owned())),
        }
        serde_json::from_value(value).map_err(|e| bad(e.to_string()))
    }
}

/// The tasks of `plan` as a plan document lists them.
pub fn plan_tasks(plan: &Plan) -> Vec<PlanTask> {
    plan.tasks()
        .map(|t| PlanTask {
            id: t.id.as_str().to_owned(),
            component: t.component.to_string(),
            action: t.action.clone(),
            node: t.node.clone(),
            reason: t.reason.to_string(),
            after: plan
                .predecessors(&t.id)
                .into_iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        })
        .collect()
}

/// The components `plan` deletes whose resource stays: imported without `adopt`.
fn kept_resources(plan: &Plan, state: &ActualState) -> Vec<String> {
    plan.tasks()
        .filter(|t| t.op == TaskOp::Delete)
        .filter(|t| state.get(&t.component).is_some_and(|r| r.keeps_resource()))
        .map(|t| t.component.to_string())
        .collect()
}

/// A digest of actual state (its canonical JSON).
pub(crate) fn state_digest(state: &ActualState) -> String {
    hex(&Sha256::digest(state.to_json().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// What a plan made by [`Service::plan_with`] holds.
#[derive(Debug, Clone)]
pub struct PlanReport {
    /// The desired state it was made from (work-tree edits included).
    pub model: ServiceModel,
    /// The plan.
    pub plan: Plan,
    /// The document: print it, save it, run it.
    pub doc: PlanDoc,
}

impl Service {
    /// Converges exactly the saved plan `doc` (`converge --plan FILE`): refused, with
    /// nothing run, when the desired state (commit, uncommitted edits) or actual state
    /// changed since it was made, or when planning now (after reading the world and
    /// running the checks) gives other tasks. `opts.selection` is replaced by the plan's.
    pub async fn converge_plan(
        &self,
        doc: &PlanDoc,
        opts: &RunOptions,
    ) -> Result<RunReport, InstanceError> {
        let _lock = self.lock("converge")?;
        self.check_saved_desired(doc)?;
        let mut opts = opts.clone();
        opts.selection = doc.selection.selection()?;
        if opts.message.is_none() {
            opts.message = Some(format!("converge (planned at {})", short(&doc.commit)));
        }
        let gate = |at: Checkpoint<'_>| match at {
            Checkpoint::State(state) => check_saved_state(doc, state),
            Checkpoint::Plan(plan) => check_saved_tasks(doc, plan),
        };
        self.converge_gated(&opts, &gate).await
    }

    /// A digest of the work tree's uncommitted edits (empty when there are none).
    pub(crate) fn edits_digest(&self) -> Result<String, InstanceError> {
        let mut changes = self.diff()?;
        if changes.is_empty() {
            return Ok(String::new());
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = Sha256::new();
        for c in &changes {
            h.update((c.path.len() as u64).to_le_bytes());
            h.update(c.path.as_bytes());
            match &c.new {
                Some(data) => {
                    h.update([1u8]);
                    h.update((data.len() as u64).to_le_bytes());
                    h.update(data);
                }
                None => h.update([0u8]),
            }
        }
        Ok(hex(&h.finalize()))
    }

    /// The replacements the providers call for: a component applied with a value of an
    /// input its provider declares it cannot change in place
    /// ([`dtk_model::Provider::replace_on_change`]), whose desired value differs now.
    pub(crate) fn provider_replacements(
        &self,
        model: &ServiceModel,
        state: &ActualState,
    ) -> Vec<Replace> {
        let providers = self.home().providers();
        let mut out = Vec::new();
        for c in &model.components {
            let Some(ActionKind::Provider { kind, resource }) =
                c.def.actions.get("create").map(|a| &a.kind)
            else {
                continue;
            };
            let Some(rec) = state.get(&c.id) else {
                continue;
            };
            if !rec.is_applied() || rec.inputs.is_empty() {
                continue;
            }
            let Some(p) = providers.get(kind) else {
                continue;
            };
            let fixed = p.replace_on_change(resource);
            if fixed.is_empty() {
                continue;
            }
            let desired = dtk_workflow::static_inputs(c);
            for attr in fixed {
                let Some(want) = desired.get(&attr) else {
                    continue;
                };
                let had = rec.inputs.get(&attr).cloned().unwrap_or(Value::Null);
                if *want != had {
                    out.push(Replace {
                        target: Selector::id(&c.id),
                        why: format!(
                            "`{attr}` changes from {had} to {want}, which {kind}.{resource} cannot change in place"
                        ),
                    });
                    break;
                }
            }
        }
        out
    }

    /// What converge would run now with `opts.selection`, work-tree edits included:
    /// provider resources are read (drift, changed outputs), nothing is run (the `check`
    /// actions converge would run are listed), nothing is written. Takes the lock while
    /// it reads.
    pub async fn plan_with(&self, opts: &RunOptions) -> Result<PlanReport, InstanceError> {
        let _lock = self.lock("plan")?;
        let model = self.model()?;
        let commit = self.repo().head()?.to_string();
        let edits = self.edits_digest()?;
        let (mut state, _, _) = self.recovered_state()?;
        let actual_state = state_digest(&state);
        let world = self
            .read_world(&model, &mut state, opts, Checks::Skip)
            .await?;
        let (plan, left_out) = self.make_plan(&model, &state, &opts.selection)?;
        let doc = PlanDoc {
            service: self.name().to_owned(),
            commit,
            edits,
            actual_state,
            selection: SelectionDoc::of(&opts.selection),
            tasks: plan_tasks(&plan),
            left_out: left_out.iter().map(LeftOutLine::from).collect(),
            checks: world.checks,
            drift: world.drift,
            kept: kept_resources(&plan, &state),
        };
        Ok(PlanReport { model, plan, doc })
    }

    /// The converge plan of `model` from `state`: `selection` plus the replacements the
    /// providers call for.
    pub(crate) fn make_plan(
        &self,
        model: &ServiceModel,
        state: &ActualState,
        selection: &Selection,
    ) -> Result<(Plan, Vec<LeftOut>), InstanceError> {
        let mut selection = selection.clone();
        selection
            .replace
            .extend(self.provider_replacements(model, state));
        let selected =
            dtk_workflow::plan_selected(model, state, &selection).map_err(|e| match e {
                e @ dtk_workflow::SelectError::NoMatch { .. } => {
                    InstanceError::NoMatch(Box::new(e))
                }
                e => InstanceError::Workflow(Box::new(e)),
            })?;
        Ok((selected.plan, selected.left_out))
    }

    /// Checks, before a converge of saved plan `doc`, that the desired state is still the
    /// one it was made from (same commit, same uncommitted edits).
    pub(crate) fn check_saved_desired(&self, doc: &PlanDoc) -> Result<(), InstanceError> {
        if doc.service != self.name() {
            return Err(InstanceError::StalePlan {
                message: format!(
                    "the plan is of service `{}`, not `{}`",
                    doc.service,
                    self.name()
                ),
            });
        }
        let head = self.repo().head()?.to_string();
        if head != doc.commit {
            return Err(InstanceError::StalePlan {
                message: format!(
                    "the desired state of `{}` changed since the plan was made (it was made at commit {}, HEAD is {} now); make a new plan",
                    self.name(),
                    short(&doc.commit),
                    short(&head)
                ),
            });
        }
        if self.edits_digest()? != doc.edits {
            return Err(InstanceError::StalePlan {
                message: format!(
                    "the uncommitted edits of `{}` changed since the plan was made; make a new plan",
                    self.name()
                ),
            });
        }
        Ok(())
    }
}

/// Checks that `state` is the actual state `doc` was made from.
pub(crate) fn check_saved_state(doc: &PlanDoc, state: &ActualState) -> Result<(), InstanceError> {
    if state_digest(state) != doc.actual_state {
        return Err(InstanceError::StalePlan {
            message: format!(
                "the actual state of `{}` changed since the plan was made (another run, a refresh or an import); make a new plan",
                doc.service
            ),
        });
    }
    Ok(())
}

/// Checks that `plan` has the tasks of `doc`, each after the same tasks.
pub(crate) fn check_saved_tasks(doc: &PlanDoc, plan: &Plan) -> Result<(), InstanceError> {
    let now = plan_tasks(plan);
    let key = |t: &PlanTask| (t.id.clone(), t.after.clone());
    let then: BTreeMap<String, Vec<String>> = doc.tasks.iter().map(key).collect();
    let now_map: BTreeMap<String, Vec<String>> = now.iter().map(key).collect();
    if then == now_map {
        return Ok(());
    }
    let mut diff = Vec::new();
    for id in then.keys().filter(|k| !now_map.contains_key(*k)) {
        diff.push(format!("{id} is no longer planned"));
    }
    for id in now_map.keys().filter(|k| !then.contains_key(*k)) {
        let why = now
            .iter()
            .find(|t| &t.id == id)
            .map(|t| t.reason.clone())
            .unwrap_or_default();
        diff.push(format!("{id} is planned now ({why})"));
    }
    if diff.is_empty() {
        diff.push("the order of the tasks differs".to_owned());
    }
    Err(InstanceError::StalePlan {
        message: format!(
            "the world changed since the plan of `{}` was made: {}; make a new plan",
            doc.service,
            diff.join("; ")
        ),
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(10)]
}
