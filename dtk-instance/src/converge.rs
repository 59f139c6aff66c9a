//! Converge, as the seed describes it: validate and commit the work tree's edits, check
//! violations, plan, execute with progress, record results and outputs in actual state,
//! and commit a converge record. Also `plan`, `exec` (a custom action) and `delete`.
//!
//! Crash safety: the executor journals every task (intent, then result) with group
//! commit. Actual state (`.dtk/actual.json`) is rewritten once, at the end of a run; the
//! run's journal is removed only after that. A run killed at any moment leaves its
//! journal behind, and the next run first folds it into actual state, so completed tasks
//! are not run again and interrupted ones are.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtk_model::provider::{Cancel, ExecOutput, ExecRequest, Secrets};
use dtk_model::{ComponentId, ProviderError, ProviderRegistry, ServiceModel, Value};
use dtk_workflow::{
    ActionRequest, ActionTarget, ActualState, CommandTransport, Event, EventSink, ExecContext,
    Limits, Plan, PlanRequest, SecretSource, Selection, TaskReport, TaskStatus,
};
use serde::{Deserialize, Serialize};

use crate::error::InstanceError;
use crate::home::Home;
pub use crate::outcome::{RunKind, RunStatus, TaskOutcome};
use crate::repo::{io_err, write_file_replace};
use crate::secrets::SecretStore;
use crate::service::{ConvergeRecord, Service, now_secs};
use dtk_target_local::{LocalProvider, run_action};

pub use crate::history::RECORDS_REF;

/// How to run a converge (or exec, or delete).
#[derive(Clone)]
pub struct RunOptions {
    /// The commit message for the work tree's edits.
    pub message: Option<String>,
    /// Progress events.
    pub events: Option<EventSink>,
    /// Set to stop scheduling new tasks (Ctrl-C); running tasks finish or time out.
    pub cancel: Cancel,
    /// Concurrency limits.
    pub limits: Limits,
    /// The time limit of one action attempt when the action sets none.
    pub default_timeout: Duration,
    /// What a converge acts on beyond what changed (`--only`, `--exclude`, `--replace`).
    pub selection: Selection,
    /// Stop scheduling at the first failure (`--fail-fast`).
    pub fail_fast: bool,
    /// Who runs it (`user@host`), kept in the run's record.
    pub who: Option<String>,
    /// With a remote: the lease of the service's lock (renewed while the run goes).
    pub lease: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            message: None,
            events: None,
            cancel: Cancel::new(),
            limits: Limits::default(),
            default_timeout: Duration::from_secs(10 * 60),
            selection: Selection::default(),
            fail_fast: false,
            who: None,
            lease: crate::lease::DEFAULT_LEASE,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("message", &self.message)
            .field("limits", &self.limits)
            .field("default_timeout", &self.default_timeout)
            .field("selection", &self.selection)
            .field("fail_fast", &self.fail_fast)
            .field("who", &self.who)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The report of one run, kept as the service's last task (`task-status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// What the run was.
    pub kind: RunKind,
    /// The run's id.
    pub run: String,
    /// The service.
    pub service: String,
    /// How it ended.
    pub status: RunStatus,
    /// The desired-state commit it ran against (hex), for converge.
    pub commit: Option<String>,
    /// When it started (seconds since the epoch).
    pub started_at: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Every task, in plan order.
    pub tasks: Vec<TaskLine>,
    /// The task tree, as text.
    pub tree: String,
    /// Where the task logs are.
    pub logs: PathBuf,
    /// How many tasks were already done by an interrupted earlier run and resumed.
    pub resumed_from_journal: usize,
    /// Who ran it (`user@host`), when the caller said.
    #[serde(default)]
    pub who: Option<String>,
    /// What `--only` / `--exclude` left out of a converge.
    #[serde(default)]
    pub left_out: Vec<LeftOutLine>,
    /// With a remote: whether the run's results reached it.
    #[serde(default)]
    pub remote: Option<crate::team::RemoteReport>,
}

/// A task a selection left out of a plan (`--only`, `--exclude`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOutLine {
    /// The task.
    pub task: String,
    /// Its component.
    pub component: String,
    /// Why it would have run.
    pub reason: String,
    /// Why it does not.
    pub why: String,
}

impl From<&dtk_workflow::LeftOut> for LeftOutLine {
    fn from(l: &dtk_workflow::LeftOut) -> Self {
        LeftOutLine {
            task: l.task.to_string(),
            component: l.component.to_string(),
            reason: l.reason.clone(),
            why: l.why.clone(),
        }
    }
}

/// What a run checks, when it runs a saved plan, before it runs anything: the actual
/// state it starts from, then the plan it made (see `converge_plan`).
pub(crate) enum Checkpoint<'a> {
    /// Actual state as recorded (journals folded in), before the world is read.
    State(&'a ActualState),
    /// The plan made.
    Plan(&'a Plan),
}

/// Refuses a run at a [`Checkpoint`].
pub(crate) type Gate<'a> = &'a (dyn Fn(Checkpoint<'_>) -> Result<(), InstanceError> + Sync);

/// One task of a [`RunReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskLine {
    /// The task id.
    pub id: String,
    /// The component.
    pub component: String,
    /// The action.
    pub action: String,
    /// The node.
    pub node: Option<String>,
    /// How it ended.
    pub status: TaskOutcome,
    /// Why it failed or was skipped.
    pub detail: Option<String>,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Attempts made.
    pub attempts: u32,
    /// Its log file, for command tasks.
    pub log: Option<PathBuf>,
    /// When it started, in milliseconds after the run started (`None` when it did not
    /// run, and in reports recorded before this was).
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// The ids of the tasks it waited for (empty in reports recorded before this was).
    #[serde(default)]
    pub after: Vec<String>,
}

impl RunReport {
    /// Whether every task succeeded.
    pub fn is_success(&self) -> bool {
        self.status == "succeeded"
    }
}

/// The commands transport used when a node's provider does not run commands itself:
/// over SSH for a node whose outputs carry `ssh_host` (an EC2 node of the AWS target, say:
/// see `dtk_target_ssh` for the `ssh_*` outputs it reads), else the node's sandbox on
/// this machine, or `_service` for assembly-level components.
#[derive(Debug, Clone)]
pub struct DefaultTransport {
    local: LocalProvider,
    providers: ProviderRegistry,
}

impl DefaultTransport {
    /// The transport of `home`: its local sandboxes, and its registered `ssh` provider's
    /// connections.
    pub fn new(home: &Home) -> Self {
        DefaultTransport {
            local: home.local_provider(),
            providers: home.providers(),
        }
    }
}

#[async_trait]
impl CommandTransport for DefaultTransport {
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        let over_ssh = req
            .node_outputs
            .get("ssh_host")
            .and_then(Value::as_str)
            .is_some_and(|h| !h.trim().is_empty());
        if over_ssh {
            let Some(ssh) = self.providers.get(dtk_target_ssh::KIND) else {
                return Err(ProviderError::failed(
                    format!("run commands on node `{}`", req.node),
                    "the node is reached over SSH, but no `ssh` provider is registered",
                ));
            };
            return ssh.exec(req).await;
        }
        let dir = match req.node_outputs.get("sandbox_dir").and_then(Value::as_str) {
            Some(d) => PathBuf::from(d),
            None => self
                .local
                .sandbox(req.service, (!req.node.is_empty()).then_some(req.node)),
        };
        run_action(&dir, req, self.local.content_cache()).await
    }
}

struct StoreSecrets(SecretStore);

impl SecretSource for StoreSecrets {
    fn secret(&self, component: &ComponentId, name: &str) -> Option<Value> {
        self.0.effective(component, name).cloned()
    }
}

pub(crate) fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

impl Service {
    pub(crate) fn journal_dir(&self) -> PathBuf {
        self.private_dir().join("journal")
    }

    fn logs_dir(&self, run: &str) -> PathBuf {
        self.private_dir().join("logs").join(run)
    }

    /// Actual state with the journals of interrupted runs folded in; returns the state
    /// and how many completed tasks the journals held.
    pub(crate) fn recovered_state(
        &self,
    ) -> Result<(ActualState, Vec<PathBuf>, usize), InstanceError> {
        let r = self.recover(None)?;
        Ok((r.state, r.journals, r.resumed))
    }

    /// [`recovered_state`](Self::recovered_state), starting from `prefetched` (what
    /// [`prefetch_actual_state`] read) when given, and keeping its bytes while the state
    /// is exactly what they say.
    fn recover(&self, prefetched: Option<ReadState>) -> Result<Recovered, InstanceError> {
        let (mut state, mut file) = match prefetched {
            Some(r) => (r.state, Some((r.bytes, r.blob))),
            None => (self.actual_state()?, None),
        };
        let dir = self.journal_dir();
        let mut journals: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&dir, "list")(e)),
        };
        journals.sort();
        let mut resumed = 0;
        for j in &journals {
            let replayed =
                dtk_workflow::replay(j).map_err(|e| InstanceError::Workflow(Box::new(e)))?;
            resumed += replayed.completed.len();
            state.apply_journal(&replayed);
            file = None;
        }
        Ok(Recovered {
            state,
            journals,
            resumed,
            file,
        })
    }

    /// The executor's context for this service: its providers, the default transport,
    /// its secrets, and the run options' limits (no events, no journal).
    pub(crate) fn exec_context(
        &self,
        model: &ServiceModel,
        opts: &RunOptions,
    ) -> Result<ExecContext, InstanceError> {
        let mut ctx = ExecContext::new(self.home().providers());
        ctx.modules = self.module_contents(model)?;
        ctx.transport = Some(Arc::new(DefaultTransport::new(self.home())));
        ctx.secrets = Some(Arc::new(StoreSecrets(self.secrets()?)));
        ctx.limits = opts.limits.clone();
        ctx.limits.per_provider =
            self.provider_limits_on(model.target.as_deref(), &opts.limits.per_provider)?;
        ctx.default_timeout = opts.default_timeout;
        ctx.cancel = opts.cancel.clone();
        Ok(ctx)
    }

    /// What converge would run now, work-tree edits included, without running
    /// anything or writing anything (see [`Service::plan_with`] for a selection and the
    /// document).
    pub async fn plan(&self) -> Result<(ServiceModel, Plan), InstanceError> {
        let r = self.plan_with(&RunOptions::default()).await?;
        Ok((r.model, r.plan))
    }

    /// Converges the service: commits the work tree's edits, refuses on violations,
    /// plans, executes, records.
    pub async fn converge(&self, opts: &RunOptions) -> Result<RunReport, InstanceError> {
        let _lock = self.lock("converge")?;
        // A pull-base whose conflicts are resolved is committed first (refused while
        // markers remain).
        self.continue_pull_locked()?;
        self.converge_locked(opts, None).await
    }

    /// Converges with `gate` checking the run before anything runs (a saved plan). The
    /// caller holds the instance lock.
    pub(crate) async fn converge_gated(
        &self,
        opts: &RunOptions,
        gate: Gate<'_>,
    ) -> Result<RunReport, InstanceError> {
        self.converge_locked(opts, Some(gate)).await
    }

    /// A converge under the instance lock: with a remote, fetch, refuse if locked
    /// elsewhere and pull (crate::team); commit the edits; refuse on violations; take the
    /// remote lock; run (checked by `gate` when given).
    async fn converge_locked(
        &self,
        opts: &RunOptions,
        gate: Option<Gate<'_>>,
    ) -> Result<RunReport, InstanceError> {
        let mut team = self.team_begin("converge", opts.lease)?;
        // Actual state is read on another thread while the edits are committed and the
        // document expanded (reading a large `actual.json` is a good part of a converge
        // with nothing to do). Nothing below writes it before the run starts, under the
        // lock held; with a team remote, a refresh in the loop may, so it is read in the
        // run then.
        let prefetch = team
            .is_none()
            .then(|| prefetch_actual_state(self.actual_path(), self.repo().object_hash()));
        let message = opts
            .message
            .clone()
            .unwrap_or_else(|| "converge".to_owned());
        let model = loop {
            let before = self.repo().head()?;
            let committed = self.commit_edits(&message)?;
            let (doc, modules) = self.committed_doc_and_modules()?;
            let model = self.expand_doc(&doc, &modules, dtk_model::service::SERVICE_FILE)?;
            self.refuse_violations(&model)?;
            let Some(t) = team.as_mut() else {
                break model;
            };
            // The lock push also checks that the remote holds what this machine last saw
            // (crate::team); when it does not, or the remote cannot be reached, the edits
            // go back to uncommitted, as they were, and a refresh fetches and pulls first.
            let taken = match t.check_secrets(self, &model) {
                Ok(()) => t.take(self, true),
                // Judged on what this machine last saw: look at the remote first.
                Err(_) if !t.is_fresh() => Ok(false),
                Err(e) => Err(e),
            };
            match taken {
                Ok(true) => break model,
                Ok(false) => {
                    if let Some(c) = committed {
                        self.uncommit(c, before)?;
                    }
                    t.refresh(self)?;
                }
                Err(e) => {
                    if let Some(c) = committed
                        && let Err(u) = self.uncommit(c, before)
                    {
                        // The edits stay committed (nothing is lost); the refusal is
                        // what the user needs to see.
                        tracing::warn!(service = %self.name(), error = %u, "could not uncommit the edits of a refused converge");
                    }
                    return Err(e);
                }
            }
        };
        let prefetched = prefetch.and_then(|p| p.join().ok()).flatten();
        self.run(
            &model,
            PlanRequest::Converge,
            RunKind::Converge,
            opts,
            gate,
            team,
            prefetched,
        )
        .await
    }

    /// Runs a named workflow of the service's assembly (`WORKFLOW`), or a custom action
    /// (`[NODE/]CMP.ACTION`) on the matching components (without NODE/, on every
    /// instance; with a node group's name, on every member), with parameters, against the
    /// committed desired state.
    pub async fn exec(
        &self,
        target: &str,
        params: BTreeMap<String, Value>,
        opts: &RunOptions,
    ) -> Result<RunReport, InstanceError> {
        let _lock = self.lock("exec")?;
        let mut team = self.team_begin("exec", opts.lease)?;
        let (doc, modules) = self.committed_doc_and_modules()?;
        let model = self.expand_doc(&doc, &modules, dtk_model::service::SERVICE_FILE)?;
        self.refuse_violations(&model)?;
        let params = dtk_model::Attributes::from(params);
        let req = if model.workflows.contains_key(target) && target != "create" {
            PlanRequest::Workflow(dtk_workflow::WorkflowRequest {
                name: target.to_owned(),
                params,
            })
        } else {
            let target: ActionTarget =
                target
                    .parse()
                    .map_err(|e: dtk_workflow::ParseTargetError| {
                        let known: Vec<&str> = model
                            .workflows
                            .keys()
                            .map(String::as_str)
                            .filter(|w| *w != "create")
                            .collect();
                        if known.is_empty() || target.contains('.') {
                            InstanceError::InvalidTarget(e)
                        } else {
                            InstanceError::NoSuchWorkflow {
                                target: target.to_owned(),
                                service: self.name().to_owned(),
                                workflows: known.into_iter().map(str::to_owned).collect(),
                            }
                        }
                    })?;
            PlanRequest::Action(ActionRequest { target, params })
        };
        if let Some(t) = team.as_mut() {
            t.take_fresh(self, false)?;
        }
        self.run(&model, req, RunKind::Exec, opts, None, team, None)
            .await
    }

    /// Runs every component's delete action in reverse dependency order; afterwards
    /// nothing of the service is deployed (its desired state stays, for a later
    /// converge).
    pub async fn delete(&self, opts: &RunOptions) -> Result<RunReport, InstanceError> {
        self.delete_forced(opts, false).await
    }

    /// [`delete`](Self::delete); a target instance that services are staged on is
    /// refused (naming them) unless `force`.
    pub async fn delete_forced(
        &self,
        opts: &RunOptions,
        force: bool,
    ) -> Result<RunReport, InstanceError> {
        self.guard_target("delete", force)?;
        let _lock = self.lock("delete")?;
        let mut team = self.team_begin("delete", opts.lease)?;
        let (doc, modules) = self.committed_doc_and_modules()?;
        let model = self.expand_doc(&doc, &modules, dtk_model::service::SERVICE_FILE)?;
        if let Some(t) = team.as_mut() {
            t.take_fresh(self, false)?;
        }
        self.run(
            &model,
            PlanRequest::Delete,
            RunKind::Delete,
            opts,
            None,
            team,
            None,
        )
        .await
    }

    /// Plans `request` against actual state (as read ahead of the run, `prefetched`, when
    /// it was), executes and records.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        model: &ServiceModel,
        request: PlanRequest,
        kind: RunKind,
        opts: &RunOptions,
        gate: Option<Gate<'_>>,
        mut team: Option<crate::team::TeamRun>,
        prefetched: Option<ReadState>,
    ) -> Result<RunReport, InstanceError> {
        let started = Instant::now();
        let started_at = now_secs();
        // `file`: the bytes of `actual.json` while `state` is still exactly what they say.
        let Recovered {
            mut state,
            journals: old_journals,
            resumed,
            mut file,
        } = self.recover(prefetched)?;
        if let Some(gate) = gate {
            gate(Checkpoint::State(&state))?;
        }
        if kind == "converge" {
            let world = self.read_world_and_check(model, &mut state, opts).await?;
            // Nothing read and nothing checked: `state` was not touched.
            if world.read > 0 || !world.checks.is_empty() {
                file = None;
            }
        }
        let (plan, left_out) = if request == PlanRequest::Converge {
            self.make_plan(model, &state, &opts.selection)?
        } else {
            let plan = dtk_workflow::plan(model, &state, &request)
                .map_err(|e| InstanceError::Workflow(Box::new(e)))?;
            (plan, Vec::new())
        };
        if let Some(gate) = gate {
            gate(Checkpoint::Plan(&plan))?;
        }
        let run = run_id();
        let journal_dir = self.journal_dir();
        fs::create_dir_all(&journal_dir).map_err(io_err(&journal_dir, "create"))?;
        let journal = journal_dir.join(format!("{run}.jsonl"));
        let logs = self.logs_dir(&run);

        // Collect command output into task logs while passing events on.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let forward = opts.events.clone();
        let logs_for_task = logs.clone();
        let collector = tokio::spawn(async move {
            let mut written: BTreeMap<String, PathBuf> = BTreeMap::new();
            while let Some(ev) = rx.recv().await {
                let out = match &ev {
                    Event::TaskFinished {
                        task,
                        output: Some(o),
                        ..
                    }
                    | Event::TaskFailed {
                        task,
                        output: Some(o),
                        ..
                    } => Some((task.clone(), o.clone())),
                    _ => None,
                };
                // A task that succeeded without printing anything has nothing for a log
                // to tell that the run's record does not (a file per such task was most
                // of the file system work of a converge of small actions).
                let out = out.filter(|(_, o)| {
                    o.exit_code != Some(0) || !o.stdout.is_empty() || !o.stderr.is_empty()
                });
                if let Some((task, o)) = out {
                    let file = logs_for_task.join(format!("{}.log", sanitize(task.as_str())));
                    let text = format!(
                        "exit: {}\n--- stdout\n{}\n--- stderr\n{}\n",
                        o.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "killed".into()),
                        o.stdout,
                        o.stderr
                    );
                    if fs::create_dir_all(&logs_for_task).is_ok() && fs::write(&file, text).is_ok()
                    {
                        written.insert(task.as_str().to_owned(), file);
                    }
                }
                if let Some(f) = &forward {
                    let _ = f.send(ev);
                }
            }
            written
        });

        // An empty plan runs nothing: without a team's keeper to start, its context needs
        // no module contents, secrets or limits (reading them, the `local` target's
        // repository included, was a thirtieth of a converge with nothing to do).
        let mut ctx = if plan.is_empty() && team.is_none() {
            ExecContext::new(self.home().providers())
        } else {
            self.exec_context(model, opts)?
        };
        ctx.events = Some(tx);
        ctx.cancel = opts.cancel.clone();
        ctx.fail_fast = opts.fail_fast;
        if let Some(t) = team.as_mut() {
            // Lease renewals and journal checkpoints on the remote; fencing cancels.
            t.start_keeper(self, &journal_dir, &mut ctx)?;
        }
        // An empty plan has nothing to journal (and no fsync to pay).
        ctx.journal = (!plan.is_empty()).then(|| journal.clone());
        let outcome = dtk_workflow::execute_owned(&plan, model, state, &ctx).await;
        drop(ctx);
        if let Some(t) = team.as_mut() {
            // No checkpoint may race the final state below.
            t.stop_keeper();
        }
        let written = collector.await.unwrap_or_default();
        let outcome = outcome.map_err(|e| InstanceError::Workflow(Box::new(e)))?;

        // Actual state first, durably; only then may the journals go. A run that changed
        // no record leaves the file as it is (its bytes are still versioned, as below).
        tracing::debug!(
            changed = outcome.state_changed,
            as_read = file.is_some(),
            "actual state after the run"
        );
        match file.filter(|_| !outcome.state_changed) {
            Some((bytes, blob)) => {
                self.record_state(&bytes, blob, outcome.state.components.len())?;
            }
            None => self.save_actual_state(&outcome.state)?,
        }
        remove_journals(old_journals.iter().chain(std::iter::once(&journal)))?;

        let status = if outcome.cancelled {
            RunStatus::Cancelled
        } else if outcome.is_success() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        let commit = self.repo().head()?.to_string();
        let report = RunReport {
            kind,
            run: run.clone(),
            service: self.name().to_owned(),
            status,
            commit: Some(commit.clone()),
            started_at,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            tasks: {
                let failures: BTreeMap<&str, &str> = outcome
                    .tasks
                    .iter()
                    .filter_map(|t| match &t.status {
                        TaskStatus::Failed { message } => Some((t.id.as_str(), message.as_str())),
                        _ => None,
                    })
                    .collect();
                outcome
                    .tasks
                    .iter()
                    .map(|t| task_line(t, &written, &failures, started, &plan))
                    .collect()
            },
            tree: outcome.render_tree(&plan),
            logs,
            resumed_from_journal: resumed,
            who: opts.who.clone(),
            left_out: left_out.iter().map(LeftOutLine::from).collect(),
            remote: None,
        };
        self.record(&report)?;
        if kind == "converge" {
            let prev = self.last_converge()?;
            self.save_last_converge(&ConvergeRecord {
                status: status.to_string(),
                commit,
                started_at,
                duration_ms: report.duration_ms,
                run,
                ever_succeeded: status == "succeeded" || prev.is_some_and(|p| p.ever_succeeded),
            })?;
        }
        let mut report = report;
        report.remote = team.map(|t| t.finish(self));
        Ok(report)
    }

    /// Keeps `report` as the last task and commits it on [`RECORDS_REF`].
    pub(crate) fn record(&self, report: &RunReport) -> Result<(), InstanceError> {
        let data = serde_json::to_vec_pretty(report).map_err(|e| InstanceError::Io {
            path: self.private_dir().join("last-run.json"),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        // A report: replaced atomically, not synced (the record commit below keeps it too).
        write_file_replace(&self.private_dir().join("last-run.json"), &data)?;
        let tree = self.repo().edit_tree(
            None,
            &[crate::repo::TreeEdit::File("record.json".to_owned(), data)],
        )?;
        let failed = report.tasks.iter().filter(|t| t.status == "failed").count();
        let message = format!(
            "{} {}: {} ({} task{}, {} failed, {:.1}s)",
            report.kind,
            report.run,
            report.status,
            report.tasks.len(),
            if report.tasks.len() == 1 { "" } else { "s" },
            failed,
            report.duration_ms as f64 / 1000.0
        );
        self.repo().commit_on(RECORDS_REF, tree, &message)?;
        Ok(())
    }

    /// The last run's report (`task-status`).
    pub fn last_run(&self) -> Result<Option<RunReport>, InstanceError> {
        let p = self.private_dir().join("last-run.json");
        match fs::read(&p) {
            Ok(data) => Ok(serde_json::from_slice(&data).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, "read")(e)),
        }
    }

    /// The history of runs (converge records), newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<crate::repo::CommitInfo>, InstanceError> {
        match self.repo().reference(RECORDS_REF)? {
            Some(tip) => self.repo().log_of(tip, limit),
            None => Ok(Vec::new()),
        }
    }
}

fn task_line(
    t: &TaskReport,
    logs: &BTreeMap<String, PathBuf>,
    failures: &BTreeMap<&str, &str>,
    run_started: Instant,
    plan: &Plan,
) -> TaskLine {
    let (status, detail) = match &t.status {
        TaskStatus::Done => (TaskOutcome::Done, None),
        TaskStatus::Unchanged => (TaskOutcome::Unchanged, None),
        TaskStatus::Failed { message } => (TaskOutcome::Failed, Some(message.clone())),
        TaskStatus::Skipped { because } => (
            TaskOutcome::Skipped,
            Some(match failures.get(because.as_str()) {
                Some(why) => format!("{because} failed: {why}"),
                None => format!("{because} failed"),
            }),
        ),
        TaskStatus::Cancelled => (TaskOutcome::Cancelled, None),
    };
    TaskLine {
        id: t.id.as_str().to_owned(),
        component: t.component.to_string(),
        action: t.action.clone(),
        node: t.node.clone(),
        status,
        detail,
        duration_ms: u64::try_from(t.duration.as_millis()).unwrap_or(u64::MAX),
        attempts: t.attempts,
        log: logs.get(t.id.as_str()).cloned(),
        started_ms: t.started.map(|s| {
            u64::try_from(s.saturating_duration_since(run_started).as_millis()).unwrap_or(u64::MAX)
        }),
        after: plan
            .predecessors(&t.id)
            .into_iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Replaces every secret value (of 3 characters or more) in `s` with `<redacted>`.
pub(crate) fn redact_all(s: &str, secrets: &Secrets) -> String {
    let mut out = s.to_owned();
    for v in secrets.0.values() {
        let text = v.to_shell_text();
        if text.len() >= 3 && out.contains(&text) {
            out = out.replace(&text, "<redacted>");
        }
    }
    out
}

/// Removes journals whose tasks the saved actual state now holds (one already gone is fine).
pub(crate) fn remove_journals<'a>(
    journals: impl IntoIterator<Item = &'a PathBuf>,
) -> Result<(), InstanceError> {
    for j in journals {
        match fs::remove_file(j) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(j, "remove")(e)),
        }
    }
    Ok(())
}

/// Actual state with the journals of interrupted runs folded in.
struct Recovered {
    state: ActualState,
    /// The journals folded in.
    journals: Vec<PathBuf>,
    /// How many completed tasks they held.
    resumed: usize,
    /// The bytes of `actual.json` and, when computed, their blob id, when `state` is
    /// exactly what they say (it was read ahead from the file, and no journal was folded
    /// in).
    file: Option<(Vec<u8>, Option<gix::ObjectId>)>,
}

/// Actual state as read from `actual.json`, with the file's bytes.
pub(crate) struct ReadState {
    state: ActualState,
    bytes: Vec<u8>,
    /// The bytes' blob id (as [`Service::record_state`] would write them).
    blob: Option<gix::ObjectId>,
}

/// Reads and parses `actual.json` at `path` on a thread of its own. The thread gives
/// `None` for a file that is missing or does not parse: the run then reads it itself, with
/// the restoring and the errors that [`Service::actual_state`] has.
///
/// It also hashes the bytes as a blob of `hash` (the instance repository's): a run that
/// changes nothing records the same bytes, and hashing half a megabyte is then off the
/// converge's path.
fn prefetch_actual_state(
    path: PathBuf,
    hash: gix::hash::Kind,
) -> std::thread::JoinHandle<Option<ReadState>> {
    std::thread::spawn(move || {
        let bytes = fs::read(&path).ok()?;
        let state = serde_json::from_slice(&bytes).ok()?;
        let blob = gix::objs::compute_hash(hash, gix::object::Kind::Blob, &bytes).ok();
        Some(ReadState { state, bytes, blob })
    })
}
