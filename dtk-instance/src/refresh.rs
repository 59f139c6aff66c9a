//! Reading the world: every recorded provider resource is read (`Provider::read`) and
//! every `check` action run. Converge does it before it plans; `plan` does the reads only
//! (a check runs commands on nodes: the plan says which would run); `dtk service refresh`
//! does both, records what changed in actual state, and changes nothing else.
//!
//! What a read says is recorded by [`ActualState::observe`]: a resource gone or drifted
//! (stopped, resized, retagged) is marked so, and the next converge creates or repairs
//! it; one as wanted has its current outputs recorded (a new address reaches its
//! consumers at the next converge). A failing check marks its component as gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtk_model::module::ActionKind;
use dtk_model::provider::{Change, Observed, ResourceRequest, Secrets};
use dtk_model::{ComponentId, ServiceModel};
use dtk_workflow::{ActualState, DriftMark, Observation, PlanRequest, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::converge::{RunOptions, RunReport, TaskLine, run_id};
use crate::error::InstanceError;
use crate::outcome::{RunKind, RunStatus, TaskOutcome};
use crate::service::{Service, now_secs};

/// Whether [`Service::read_world`] runs `check` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checks {
    /// Run them (converge, refresh).
    Run,
    /// Only say which would run (plan).
    Skip,
}

/// What reading the world found of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftLine {
    /// The component instance.
    pub component: String,
    /// Its node.
    pub node: Option<String>,
    /// `missing` (gone: converge creates it again), `drifted` (differs from its inputs:
    /// converge repairs it), `outputs changed` (as wanted, with new outputs: recorded),
    /// `check failed` (its `check` action failed: converge makes it again), or
    /// `unreadable` (the read failed: nothing is known, nothing recorded).
    pub status: String,
    /// What differs, attribute by attribute.
    pub changes: Vec<Change>,
    /// Why a read or check failed.
    pub detail: Option<String>,
}

/// What reading the world found: [`Service::refresh`], and the reads of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldReport {
    /// How many provider resources were read.
    pub read: usize,
    /// The components whose `check` action ran (or, for a plan, would run).
    pub checks: Vec<String>,
    /// Every component with something to say, in model order.
    pub drift: Vec<DriftLine>,
}

/// The result of `dtk service refresh`.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    /// The service.
    pub service: String,
    /// The run's id (its record is in `dtk service runs`).
    pub run: String,
    /// When it started (seconds since the epoch).
    pub started_at: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How many provider resources were read.
    pub read: usize,
    /// The components whose `check` action ran.
    pub checks: Vec<String>,
    /// Every component with something to say: what converge will now do about it.
    pub drift: Vec<DriftLine>,
    /// With a team remote: whether the new actual state and the record reached it
    /// (absent without a remote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<crate::team::RemoteReport>,
}

/// The outputs in `out` that `c`'s definition does not declare secret.
fn without_secrets(c: &dtk_model::ComponentInstance, out: Observed) -> Observed {
    let strip = |o: dtk_model::Attributes| -> dtk_model::Attributes {
        o.into_iter()
            .filter(|(k, _)| !c.def.attributes.get(k).is_some_and(|a| a.secret))
            .collect()
    };
    match out {
        Observed::Present(o) => Observed::Present(strip(o)),
        Observed::Drifted { outputs, changes } => Observed::Drifted {
            outputs: strip(outputs),
            changes,
        },
        other => other,
    }
}

impl Service {
    /// [`read_world`](Self::read_world) with the checks run: what converge does before
    /// it plans.
    pub(crate) async fn read_world_and_check(
        &self,
        model: &ServiceModel,
        state: &mut ActualState,
        opts: &RunOptions,
    ) -> Result<WorldReport, InstanceError> {
        self.read_world(model, state, opts, Checks::Run).await
    }

    /// Reads every provider-backed resource of `model` recorded as applied in `state`
    /// (concurrently) and records what it says in `state`; with [`Checks::Run`], then runs
    /// the `check` action of every applied component that has one and was not found gone.
    pub(crate) async fn read_world(
        &self,
        model: &ServiceModel,
        state: &mut ActualState,
        opts: &RunOptions,
        checks: Checks,
    ) -> Result<WorldReport, InstanceError> {
        const READS_AT_ONCE: usize = 16;
        let providers = self.home().providers();
        let secrets = self.secrets()?;
        let limit = Arc::new(tokio::sync::Semaphore::new(READS_AT_ONCE));
        let mut reads = tokio::task::JoinSet::new();
        let service_nodes: Arc<[dtk_model::instance::NodeInstance]> =
            Arc::from(model.nodes.as_slice());
        for c in &model.components {
            // The definition first: it is at hand, the record is a lookup by id.
            let Some(ActionKind::Provider { kind, resource }) =
                c.def.actions.get("create").map(|a| &a.kind)
            else {
                continue;
            };
            let Some(rec) = state.components.get(&c.id) else {
                continue;
            };
            if !rec.is_applied() {
                continue;
            }
            let Some(provider) = providers.get(kind).cloned() else {
                continue;
            };
            let secret_values = Secrets(secrets.component(&c.id).into_iter().collect());
            let (service, id, node, resource) = (
                self.name().to_owned(),
                c.id.clone(),
                rec.node.clone(),
                resource.clone(),
            );
            let (inputs, outputs) = (rec.inputs.clone(), rec.outputs.clone());
            let cancel = opts.cancel.clone();
            let limit = limit.clone();
            let service_nodes = service_nodes.clone();
            reads.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let key = format!("{service}/{id}/refresh");
                let req = ResourceRequest {
                    service: &service,
                    component: id.as_str(),
                    node: node.as_deref(),
                    resource: &resource,
                    idempotency_key: &key,
                    inputs: &inputs,
                    secrets: &secret_values,
                    prior: Some(&outputs),
                    service_nodes: &service_nodes,
                    cancel: &cancel,
                };
                // Errors never hold a secret (the provider contract); redact anyway.
                let r = provider
                    .read(&req)
                    .await
                    .map_err(|e| crate::converge::redact_all(&error_chain(&e), &secret_values));
                (id, r)
            });
        }
        let mut read: BTreeMap<ComponentId, Result<Observed, String>> = BTreeMap::new();
        while let Some(done) = reads.join_next().await {
            if let Ok((id, r)) = done {
                read.insert(id, r);
            }
        }
        let mut lines: BTreeMap<ComponentId, DriftLine> = BTreeMap::new();
        for c in &model.components {
            let Some(r) = read.remove(&c.id) else {
                continue;
            };
            let node = state.get(&c.id).and_then(|r| r.node.clone());
            let line = |status: &str, changes: Vec<Change>, detail: Option<String>| DriftLine {
                component: c.id.to_string(),
                node: node.clone(),
                status: status.to_owned(),
                changes,
                detail,
            };
            match r {
                // A failed read says nothing about drift; the converge itself will tell.
                Err(e) => {
                    lines.insert(c.id.clone(), line("unreadable", Vec::new(), Some(e)));
                }
                Ok(observed) => match state.observe(&c.id, &without_secrets(c, observed)) {
                    Observation::Missing => {
                        lines.insert(c.id.clone(), line("missing", Vec::new(), None));
                    }
                    Observation::Drifted(changes) => {
                        lines.insert(c.id.clone(), line("drifted", changes, None));
                    }
                    Observation::OutputsChanged(changes) => {
                        lines.insert(c.id.clone(), line("outputs changed", changes, None));
                    }
                    Observation::Unchanged | Observation::NotRecorded => {}
                },
            }
        }
        let read_count = lines.len()
            + model
                .components
                .iter()
                .filter(|c| {
                    matches!(
                        c.def.actions.get("create").map(|a| &a.kind),
                        Some(ActionKind::Provider { kind, .. }) if providers.get(kind).is_some()
                    ) && !lines.contains_key(&c.id)
                        && state.get(&c.id).is_some_and(|r| r.is_applied())
                })
                .count();
        // Checks: of applied components not found gone by a read.
        let checked: Vec<ComponentId> = model
            .components
            .iter()
            .filter(|c| c.def.actions.contains_key("check"))
            .filter(|c| {
                state
                    .get(&c.id)
                    .is_some_and(|r| r.is_applied() && !matches!(r.drift, Some(DriftMark::Missing)))
            })
            .map(|c| c.id.clone())
            .collect();
        if checks == Checks::Run && !checked.is_empty() {
            for (id, message) in self.run_checks(model, state, &checked, opts).await? {
                let node = state.get(&id).and_then(|r| r.node.clone());
                lines.insert(
                    id.clone(),
                    DriftLine {
                        component: id.to_string(),
                        node,
                        status: "check failed".to_owned(),
                        changes: Vec::new(),
                        detail: Some(message),
                    },
                );
            }
        }
        let order: BTreeMap<&ComponentId, usize> = model
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect();
        let mut drift: Vec<(usize, DriftLine)> = lines
            .into_iter()
            .map(|(id, l)| (order.get(&id).copied().unwrap_or(usize::MAX), l))
            .collect();
        drift.sort_by_key(|(i, _)| *i);
        Ok(WorldReport {
            read: read_count,
            checks: checked.iter().map(ToString::to_string).collect(),
            drift: drift.into_iter().map(|(_, l)| l).collect(),
        })
    }

    /// Runs the `check` actions of `ids`, all in one plan (checks on different nodes run
    /// at once, within the run's limits). A check that fails marks its component gone;
    /// one that passes clears an earlier mark. Returns the failures, with why.
    async fn run_checks(
        &self,
        model: &ServiceModel,
        state: &mut ActualState,
        ids: &[ComponentId],
        opts: &RunOptions,
    ) -> Result<Vec<(ComponentId, String)>, InstanceError> {
        let mut ctx = self.exec_context(model, opts)?;
        ctx.default_timeout = opts.default_timeout.min(Duration::from_secs(60));
        let request = PlanRequest::ActionOn {
            components: ids.to_vec(),
            action: "check".to_owned(),
        };
        let plan = dtk_workflow::plan(model, state, &request)
            .map_err(|e| InstanceError::Workflow(Box::new(e)))?;
        let outcome = dtk_workflow::execute(&plan, model, state, &ctx)
            .await
            .map_err(|e| InstanceError::Workflow(Box::new(e)))?;
        let mut failed = Vec::new();
        for t in &outcome.tasks {
            let Some(rec) = state.components.get_mut(&t.component) else {
                continue;
            };
            match &t.status {
                TaskStatus::Failed { message } if rec.is_applied() => {
                    rec.drift = Some(DriftMark::Missing);
                    failed.push((t.component.clone(), message.clone()));
                }
                TaskStatus::Done if matches!(rec.drift, Some(DriftMark::Missing)) => {
                    rec.drift = None;
                }
                _ => {}
            }
        }
        Ok(failed)
    }

    /// `dtk service refresh`: reads every recorded resource and runs every `check`
    /// action, records what changed in actual state (drift marks, outputs that changed),
    /// keeps a run record (kind `refresh`), and changes nothing else: nothing is created,
    /// updated or deleted. Reads the committed desired state.
    pub async fn refresh(&self, opts: &RunOptions) -> Result<RefreshReport, InstanceError> {
        let _lock = self.lock("refresh")?;
        let started = Instant::now();
        let started_at = now_secs();
        let (doc, modules) = self.committed_doc_and_modules()?;
        let model = self.expand_doc(&doc, &modules, dtk_model::service::SERVICE_FILE)?;
        // With a remote, refresh writes the shared actual state: it holds the lock, like
        // converge, from the remote's state (crate::team).
        let mut team = self.team_begin("refresh", opts.lease)?;
        if let Some(t) = team.as_mut() {
            t.take_fresh(self, false)?;
            t.start_lease_keeper(self, &self.journal_dir(), &opts.cancel)?;
        }
        let (mut state, old_journals, _) = self.recovered_state()?;
        let world = self
            .read_world(&model, &mut state, opts, Checks::Run)
            .await?;
        if let Some(t) = team.as_mut() {
            t.stop_keeper_holding(self.name(), "refresh")?;
        }
        // Actual state first, durably; only then may the journals go.
        self.save_actual_state(&state)?;
        crate::converge::remove_journals(&old_journals)?;
        let run = run_id();
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let tasks: Vec<TaskLine> = world
            .drift
            .iter()
            .map(|d| TaskLine {
                id: format!("{}.refresh", d.component),
                component: d.component.clone(),
                action: "refresh".to_owned(),
                node: d.node.clone(),
                status: if d.status == "unreadable" {
                    TaskOutcome::Failed
                } else {
                    TaskOutcome::Done
                },
                detail: Some(drift_text(d)),
                duration_ms: 0,
                attempts: 1,
                log: None,
                started_ms: None,
                after: Vec::new(),
            })
            .collect();
        let report = RunReport {
            kind: RunKind::Refresh,
            run: run.clone(),
            service: self.name().to_owned(),
            status: RunStatus::Succeeded,
            commit: Some(self.repo().head()?.to_string()),
            started_at,
            duration_ms,
            tree: format!(
                "refresh {}: {} read, {} checked, {} with something to say\n",
                self.name(),
                world.read,
                world.checks.len(),
                world.drift.len()
            ),
            tasks,
            logs: self.private_dir().join("logs").join(&run),
            resumed_from_journal: 0,
            who: opts.who.clone(),
            remote: None,
            left_out: Vec::new(),
        };
        self.record(&report)?;
        Ok(RefreshReport {
            service: self.name().to_owned(),
            run,
            started_at,
            duration_ms,
            read: world.read,
            checks: world.checks,
            drift: world.drift,
            remote: team.map(|t| t.finish(self)),
        })
    }
}

/// One line of drift as text: `drifted: state: stopped (expected running)`.
pub fn drift_text(d: &DriftLine) -> String {
    let mut s = d.status.clone();
    if !d.changes.is_empty() {
        s.push_str(": ");
        s.push_str(
            &d.changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if let Some(e) = &d.detail {
        s.push_str(": ");
        s.push_str(e);
    }
    s
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
