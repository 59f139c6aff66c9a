//! The executor: runs a [`Plan`] on tokio, against providers and a command transport.
//!
//! The semantics (scheduling, inputs, conditional tasks, provider and command actions,
//! retries, failure, cancellation) are documented on [`execute`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtk_model::instance::{ComponentId, ComponentInstance, LinkSource, NodeInstance, ServiceModel};
use dtk_model::module::{AttrType, ComponentDef};
use dtk_model::provider::{
    Cancel, ExecOutput, ExecRequest, Provider, ProviderError, ProviderRegistry, ResourceRequest,
    Secrets,
};
use dtk_model::render::render;
use dtk_model::value::{Attributes, Value};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::hash::{input_digest, outputs_digest, params_digest, static_inputs};
use crate::journal::{
    JournalEffect, JournalEntry, JournalError, JournalStats, JournalWriter, SyncMode,
};
use crate::plan::{Edge, Plan, PlanKind, Task, TaskId, TaskOp};
use crate::resolve::{ProducerValues, resolve_inputs};
use crate::state::{
    ActualState, AppliedComponent, ComponentStatus, DriftMark, RecordedAction, RecordedKind,
};

/// Runs commands on a node when the node's provider does not: local processes, SSH.
/// Implemented by the embedding program (dtk-instance); dtk-workflow knows none.
#[async_trait]
pub trait CommandTransport: Send + Sync + 'static {
    /// Runs `req.script` on `req.node` with `req.env`, collecting the `name=value`
    /// lines written to `$DTK_OUTPUT` into [`ExecOutput::outputs`].
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError>;
}

// Compile-time proof that `CommandTransport` is object safe.
const _: fn(Option<Box<dyn CommandTransport>>) = |_| {};

/// Where secret input values come from (a secret store, the environment, a prompt).
pub trait SecretSource: Send + Sync + 'static {
    /// The value of secret input `name` of `component`, if it has one.
    fn secret(&self, component: &ComponentId, name: &str) -> Option<Value>;
}

const _: fn(Option<Box<dyn SecretSource>>) = |_| {};

/// How many tasks may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// At most this many tasks at once (at least 1).
    pub concurrency: usize,
    /// At most this many tasks at once using the provider of each kind (a task uses the
    /// provider of its `provider:` action, or the one that runs commands on its node).
    pub per_provider: BTreeMap<String, usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: 16,
            per_provider: BTreeMap::new(),
        }
    }
}

/// How failures are retried beyond an action's own `attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The least number of attempts for a retryable provider error.
    pub retryable_attempts: u32,
    /// The wait between attempts after a retryable error, when the action sets none.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retryable_attempts: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Standard output and error of a command task, secrets redacted, each cut to its last
/// 64 KiB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapturedOutput {
    /// The exit status (`None`: killed).
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Progress of a run, for the CLI and library users.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A task started (its first attempt).
    TaskStarted {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
    },
    /// An attempt failed and will be tried again.
    TaskRetrying {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Why (secrets redacted).
        error: String,
        /// The wait before the next attempt.
        after: Duration,
    },
    /// A task completed.
    TaskFinished {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// How long it ran, retries included.
        duration: Duration,
        /// What its commands printed, for command actions.
        output: Option<CapturedOutput>,
    },
    /// A task failed (after its last attempt).
    TaskFailed {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// How long it ran, retries included.
        duration: Duration,
        /// Why (secrets redacted).
        error: String,
        /// What its commands printed, for command actions.
        output: Option<CapturedOutput>,
    },
    /// A task did not run.
    TaskSkipped {
        /// The task.
        task: TaskId,
        /// Its node.
        node: Option<String>,
        /// Why.
        status: TaskStatus,
    },
}

/// Where a run's events go.
pub type EventSink = UnboundedSender<Event>;

/// Everything a run needs besides the plan, the model and actual state.
#[derive(Clone)]
pub struct ExecContext {
    /// Providers by kind.
    pub providers: ProviderRegistry,
    /// Runs commands when a node's provider does not.
    pub transport: Option<Arc<dyn CommandTransport>>,
    /// Secret input values.
    pub secrets: Option<Arc<dyn SecretSource>>,
    /// Concurrency limits.
    pub limits: Limits,
    /// The time limit of one attempt when the action sets none.
    pub default_timeout: Duration,
    /// Retries beyond the actions' own.
    pub retry: RetryPolicy,
    /// Progress events.
    pub events: Option<EventSink>,
    /// Set to stop scheduling (Ctrl-C).
    pub cancel: Cancel,
    /// The journal file of this run (one per run; created or appended to).
    pub journal: Option<PathBuf>,
    /// When the journal is synced.
    pub journal_sync: SyncMode,
    /// Stop scheduling at the first failure (`converge --fail-fast`): what has not
    /// started is reported skipped because of it. Otherwise a failure skips only what
    /// depends on it.
    pub fail_fast: bool,
}

impl fmt::Debug for ExecContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecContext")
            .field("providers", &self.providers)
            .field("transport", &self.transport.is_some())
            .field("secrets", &self.secrets.is_some())
            .field("limits", &self.limits)
            .field("default_timeout", &self.default_timeout)
            .field("retry", &self.retry)
            .field("cancel", &self.cancel)
            .field("journal", &self.journal)
            .field("fail_fast", &self.fail_fast)
            .finish_non_exhaustive()
    }
}

impl ExecContext {
    /// A context with `providers`, no transport, no secrets, default limits, a 30-minute
    /// default timeout, no events, no journal.
    pub fn new(providers: ProviderRegistry) -> Self {
        ExecContext {
            providers,
            transport: None,
            secrets: None,
            limits: Limits::default(),
            default_timeout: Duration::from_secs(30 * 60),
            retry: RetryPolicy::default(),
            events: None,
            cancel: Cancel::new(),
            journal: None,
            journal_sync: SyncMode::GroupCommit,
            fail_fast: false,
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// It ran and succeeded.
    Done,
    /// A conditional task found nothing to do.
    Unchanged,
    /// It failed.
    Failed {
        /// Why (secrets redacted).
        message: String,
    },
    /// It did not run because a task it depends on failed.
    Skipped {
        /// The failed task.
        because: TaskId,
    },
    /// It did not run because the run was cancelled.
    Cancelled,
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStatus::Done => f.write_str("done"),
            TaskStatus::Unchanged => f.write_str("unchanged"),
            TaskStatus::Failed { message } => write!(f, "failed: {message}"),
            TaskStatus::Skipped { because } => write!(f, "skipped ({because} failed)"),
            TaskStatus::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// The report of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    /// The task.
    pub id: TaskId,
    /// Its component.
    pub component: ComponentId,
    /// Its action.
    pub action: String,
    /// Its node.
    pub node: Option<String>,
    /// How it ended.
    pub status: TaskStatus,
    /// How long it ran (zero if it did not).
    pub duration: Duration,
    /// Attempts made.
    pub attempts: u32,
    /// Things worth saying that did not fail it (ignored outputs).
    pub warnings: Vec<String>,
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// Every task of the plan, in the plan's order.
    pub tasks: Vec<TaskReport>,
    /// How long the run took.
    pub duration: Duration,
    /// Actual state after the run (the state given, with this run's results applied).
    pub state: ActualState,
    /// Whether the run was cancelled (or stopped because its journal failed).
    pub cancelled: bool,
    /// The journal writer's counters, when there was a journal.
    pub journal: Option<JournalStats>,
    /// A journal write failure: the run stopped scheduling when it happened.
    pub journal_error: Option<JournalError>,
}

impl Outcome {
    /// Whether every task is done or unchanged.
    pub fn is_success(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.status, TaskStatus::Done | TaskStatus::Unchanged))
            && self.journal_error.is_none()
    }

    /// The status of task `id`.
    pub fn status(&self, id: &TaskId) -> Option<&TaskStatus> {
        self.tasks.iter().find(|t| &t.id == id).map(|t| &t.status)
    }

    /// The tasks that ended with `pred(status)`.
    pub fn ids_where(&self, pred: impl Fn(&TaskStatus) -> bool) -> Vec<&TaskId> {
        self.tasks
            .iter()
            .filter(|t| pred(&t.status))
            .map(|t| &t.id)
            .collect()
    }

    /// The run as a task-status tree (the plan's tree, each task with its status and
    /// duration).
    pub fn render_tree(&self, plan: &Plan) -> String {
        let by_id: HashMap<&TaskId, &TaskReport> = self.tasks.iter().map(|t| (&t.id, t)).collect();
        let failed = self
            .tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Failed { .. }))
            .count();
        let title = format!(
            "{} {}: {} task{}, {} failed{}",
            plan.kind(),
            plan.service(),
            plan.len(),
            if plan.len() == 1 { "" } else { "s" },
            failed,
            if self.cancelled { ", cancelled" } else { "" }
        );
        crate::render::tree(plan, &title, &|_, t| match by_id.get(&t.id) {
            Some(r) if r.duration > Duration::ZERO => {
                format!("{} ({:.1}s)", r.status, r.duration.as_secs_f64())
            }
            Some(r) => r.status.to_string(),
            None => "-".to_owned(),
        })
    }
}

/// The error returned by [`execute`] when it cannot start: nothing ran.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The journal could not be opened.
    #[error("cannot start the run of service `{service}`")]
    Journal {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: JournalError,
    },
}

/// Why a task attempt failed, and whether trying again may help.
#[derive(Debug)]
struct Failure {
    message: String,
    retry: Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Per the action's `attempts`.
    Action,
    /// At least the policy's retryable attempts.
    Retryable,
    /// Never.
    Fatal,
}

impl Failure {
    fn fatal(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retry: Retry::Fatal,
        }
    }

    fn from_provider(e: &ProviderError) -> Self {
        let retry = match e {
            ProviderError::Unsupported { .. }
            | ProviderError::InvalidInput { .. }
            | ProviderError::Cancelled { .. } => Retry::Fatal,
            e if e.is_retryable() => Retry::Retryable,
            _ => Retry::Action,
        };
        Failure {
            message: error_chain(e),
            retry,
        }
    }
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

/// What a job does.
enum JobOp {
    Converge { update: bool },
    Delete,
    Custom,
}

/// Where commands run.
struct NodeTarget {
    name: String,
    provider: Option<Arc<dyn Provider>>,
    inputs: Attributes,
    outputs: Attributes,
}

/// Everything one running task needs, owned (it runs on its own tokio task).
struct Job {
    index: NodeIndex,
    task: TaskId,
    component: ComponentId,
    node: Option<String>,
    service: Arc<str>,
    /// The service's nodes in declaration order, for providers that place nodes.
    service_nodes: Arc<[NodeInstance]>,
    op: JobOp,
    action: Option<RecordedAction>,
    provider: Option<Arc<dyn Provider>>,
    transport: Option<Arc<dyn CommandTransport>>,
    node_target: Option<NodeTarget>,
    inputs: Attributes,
    params: Attributes,
    secrets: Secrets,
    own_outputs: Attributes,
    /// The definition, to filter and type command outputs (absent for removed ones).
    def: Option<Arc<ComponentDef>>,
    idempotency_key: String,
    prior: Option<Attributes>,
    timeout: Duration,
    retry: RetryPolicy,
    cancel: Cancel,
    events: Option<EventSink>,
    limit_kind: Option<String>,
}

struct JobSuccess {
    outputs: Attributes,
    secret_outputs: Attributes,
    warnings: Vec<String>,
    captured: Option<CapturedOutput>,
}

struct JobResult {
    index: NodeIndex,
    result: Result<JobSuccess, (String, Option<CapturedOutput>)>,
    attempts: u32,
    duration: Duration,
}

impl Job {
    fn emit(&self, ev: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(ev);
        }
    }

    fn redact(&self, s: &str) -> String {
        redact(s, &self.secrets)
    }

    async fn run(self) -> JobResult {
        let start = Instant::now();
        let mut attempt = 1u32;
        let (attempts, sleep) = match &self.action {
            Some(a) => (a.attempts.max(1), a.sleep()),
            None => (1, Duration::ZERO),
        };
        loop {
            let timeout = self
                .action
                .as_ref()
                .and_then(RecordedAction::timeout)
                .unwrap_or(self.timeout);
            let r = match tokio::time::timeout(timeout, self.attempt(timeout)).await {
                Ok(r) => r,
                Err(_) => Err((
                    Failure {
                        message: format!("{} timed out after {timeout:?}", self.task),
                        retry: Retry::Retryable,
                    },
                    None,
                )),
            };
            match r {
                Ok(ok) => {
                    return JobResult {
                        index: self.index,
                        result: Ok(ok),
                        attempts: attempt,
                        duration: start.elapsed(),
                    };
                }
                Err((f, captured)) => {
                    let max = match f.retry {
                        Retry::Fatal => 1,
                        Retry::Action => attempts,
                        Retry::Retryable => attempts.max(self.retry.retryable_attempts),
                    };
                    let message = self.redact(&f.message);
                    if attempt >= max || self.cancel.is_cancelled() {
                        return JobResult {
                            index: self.index,
                            result: Err((message, captured)),
                            attempts: attempt,
                            duration: start.elapsed(),
                        };
                    }
                    let wait = if sleep.is_zero() && f.retry == Retry::Retryable {
                        self.retry.backoff
                    } else {
                        sleep
                    };
                    self.emit(Event::TaskRetrying {
                        task: self.task.clone(),
                        node: self.node.clone(),
                        attempt,
                        error: message,
                        after: wait,
                    });
                    sleep_unless_cancelled(wait, &self.cancel).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(
        &self,
        timeout: Duration,
    ) -> Result<JobSuccess, (Failure, Option<CapturedOutput>)> {
        let Some(action) = &self.action else {
            return Ok(JobSuccess {
                outputs: Attributes::new(),
                secret_outputs: Attributes::new(),
                warnings: Vec::new(),
                captured: None,
            });
        };
        match &action.kind {
            RecordedKind::Provider { kind, resource } => self
                .provider_attempt(kind, resource)
                .await
                .map_err(|f| (f, None)),
            RecordedKind::Commands { run } => self.commands_attempt(run, timeout).await,
        }
    }

    async fn provider_attempt(&self, kind: &str, resource: &str) -> Result<JobSuccess, Failure> {
        let Some(p) = &self.provider else {
            return Err(Failure::fatal(format!(
                "no provider of kind `{kind}` is registered (action `{}` of `{}`)",
                self.task, self.component
            )));
        };
        let merged;
        let inputs = if self.params.is_empty() {
            &self.inputs
        } else {
            let mut m = self.inputs.clone();
            m.extend(self.params.clone());
            merged = m;
            &merged
        };
        let req = ResourceRequest {
            service: &self.service,
            component: self.component.as_str(),
            node: self.node.as_deref(),
            resource,
            idempotency_key: &self.idempotency_key,
            inputs,
            secrets: &self.secrets,
            prior: self.prior.as_ref(),
            service_nodes: &self.service_nodes,
            cancel: &self.cancel,
        };
        let r = match self.op {
            JobOp::Converge { update: false } => p.create(&req).await,
            JobOp::Converge { update: true } | JobOp::Custom => p.update(&req).await,
            JobOp::Delete => p.delete(&req).await.map(|()| Attributes::new()),
        };
        let outputs = r.map_err(|e| Failure::from_provider(&e))?;
        let (outputs, secret_outputs) = self.split_secret(outputs);
        Ok(JobSuccess {
            outputs,
            secret_outputs,
            warnings: Vec::new(),
            captured: None,
        })
    }

    fn split_secret(&self, outputs: Attributes) -> (Attributes, Attributes) {
        let Some(def) = &self.def else {
            return (outputs, Attributes::new());
        };
        outputs
            .into_iter()
            .partition(|(k, _)| !def.attributes.get(k).is_some_and(|a| a.secret))
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.params
            .get(name)
            .or_else(|| self.inputs.get(name))
            .or_else(|| self.secrets.get(name))
            .or_else(|| self.own_outputs.get(name))
            .map(Value::to_shell_text)
            .or_else(|| {
                self.def
                    .as_ref()
                    .filter(|d| d.attributes.contains_key(name))
                    .map(|_| String::new())
            })
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        // Lowest precedence first.
        for src in [
            &self.own_outputs,
            &self.secrets.0,
            &self.inputs,
            &self.params,
        ] {
            for (k, v) in src {
                env.insert(env_name(k), v.to_shell_text());
            }
        }
        env.insert("DTK_SERVICE".to_owned(), self.service.to_string());
        env.insert("DTK_NODE".to_owned(), self.node.clone().unwrap_or_default());
        env.insert("DTK_COMPONENT".to_owned(), self.component.to_string());
        let action = self.task.as_str().rsplit_once('.').map(|(_, a)| a);
        env.insert("DTK_ACTION".to_owned(), action.unwrap_or("").to_owned());
        env.into_iter().collect()
    }

    async fn commands_attempt(
        &self,
        run: &[String],
        timeout: Duration,
    ) -> Result<JobSuccess, (Failure, Option<CapturedOutput>)> {
        let script = run
            .iter()
            .map(|line| render(line, |n| self.lookup(n)))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| {
                (
                    Failure::fatal(format!("cannot render a command of {}: {e}", self.task)),
                    None,
                )
            })?;
        let env = self.env();
        let empty = Attributes::new();
        let (node_name, node_inputs, node_outputs, node_provider) = match &self.node_target {
            Some(t) => (t.name.as_str(), &t.inputs, &t.outputs, t.provider.as_ref()),
            None => ("", &empty, &empty, None),
        };
        let req = ExecRequest {
            service: &self.service,
            node: node_name,
            node_outputs,
            node_inputs,
            script: &script,
            env: &env,
            timeout,
            cancel: &self.cancel,
        };
        let via_provider = match node_provider {
            Some(p) => match p.exec(&req).await {
                Err(ProviderError::Unsupported { .. }) => None,
                r => Some(r),
            },
            None => None,
        };
        let r = match via_provider {
            Some(r) => r,
            None => match &self.transport {
                Some(t) => t.exec(&req).await,
                None => {
                    return Err((
                        Failure::fatal(format!(
                            "{}: no way to run commands on {}: its provider does not run \
                             commands and no command transport is configured",
                            self.task,
                            if node_name.is_empty() {
                                "the service (no node)".to_owned()
                            } else {
                                format!("node `{node_name}`")
                            }
                        )),
                        None,
                    ));
                }
            },
        };
        let out = r.map_err(|e| (Failure::from_provider(&e), None))?;
        let captured = CapturedOutput {
            exit_code: out.exit_code,
            stdout: self.redact(&tail_text(&out.stdout)),
            stderr: self.redact(&tail_text(&out.stderr)),
        };
        if !out.success() {
            let last = captured
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_owned();
            let status = match out.exit_code {
                Some(c) => format!("exit status {c}"),
                None => "a signal (killed)".to_owned(),
            };
            let message = if last.is_empty() {
                format!("{}: commands ended with {status}", self.task)
            } else {
                format!("{}: commands ended with {status}: {last}", self.task)
            };
            return Err((
                Failure {
                    message,
                    retry: Retry::Action,
                },
                Some(captured),
            ));
        }
        let (outputs, secret_outputs, warnings) = self.command_outputs(&out.outputs);
        Ok(JobSuccess {
            outputs,
            secret_outputs,
            warnings,
            captured: Some(captured),
        })
    }

    fn command_outputs(&self, raw: &[(String, String)]) -> (Attributes, Attributes, Vec<String>) {
        let mut outputs = Attributes::new();
        let mut secret = Attributes::new();
        let mut warnings = Vec::new();
        for (name, text) in raw {
            let decl = self
                .def
                .as_ref()
                .and_then(|d| d.attributes.get(name))
                .filter(|a| a.dynamic);
            let Some(decl) = decl else {
                warnings.push(format!(
                    "output `{name}` ignored: `{}` declares no dynamic attribute of that name",
                    self.component
                ));
                continue;
            };
            if decl.secret {
                secret.insert(name.clone(), typed_value(decl.ty, text));
            } else {
                // An output that is not secret is kept in actual state, the journal and
                // the records, and printed: a secret the action put in it is redacted.
                outputs.insert(name.clone(), typed_value(decl.ty, &self.redact(text)));
            }
        }
        (outputs, secret, warnings)
    }
}

/// An attribute name as an environment variable name: as-is when it is one; otherwise
/// each character other than ASCII letters, digits and `_` becomes `_`, and a leading
/// digit gets a `_` in front.
pub fn env_name(attr: &str) -> String {
    let mut s: String = attr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

pub(crate) fn typed_value(ty: AttrType, text: &str) -> Value {
    let t = text.trim();
    match ty {
        AttrType::Integer | AttrType::Port => t
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| Value::Str(text.to_owned())),
        AttrType::Boolean => match t {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Str(text.to_owned()),
        },
        AttrType::Hash | AttrType::Array => {
            serde_json::from_str(t).unwrap_or_else(|_| Value::Str(text.to_owned()))
        }
        AttrType::String | AttrType::Any => Value::Str(text.to_owned()),
    }
}

const CAPTURE_LIMIT: usize = 64 * 1024;

fn tail_text(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(CAPTURE_LIMIT);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Replaces every secret value (of 3 characters or more) in `s` with `<redacted>`.
pub(crate) fn redact(s: &str, secrets: &Secrets) -> String {
    let mut out = s.to_owned();
    for v in secrets.0.values() {
        let text = v.to_shell_text();
        if text.len() >= 3 && out.contains(&text) {
            out = out.replace(&text, "<redacted>");
        }
    }
    out
}

async fn sleep_unless_cancelled(wait: Duration, cancel: &Cancel) {
    let step = Duration::from_millis(100);
    let end = Instant::now() + wait;
    loop {
        let now = Instant::now();
        if now >= end || cancel.is_cancelled() {
            return;
        }
        tokio::time::sleep((end - now).min(step)).await;
    }
}

/// What the coordinator knows of a task.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Pending,
    Running,
    Finished(TaskStatus),
}

/// The decision made when a task becomes ready.
enum Ready {
    Run(Box<Job>),
    Unchanged,
    Fail(String),
}

struct Run<'a> {
    plan: &'a Plan,
    model: &'a ServiceModel,
    ctx: &'a ExecContext,
    service: Arc<str>,
    service_nodes: Arc<[NodeInstance]>,
    comp_index: HashMap<&'a ComponentId, usize>,
    statics: HashMap<usize, Attributes>,
    /// The node's name → the component realizing it.
    realizer: HashMap<String, ComponentId>,
    /// Component → its converge task in this plan.
    converge_task: HashMap<&'a ComponentId, NodeIndex>,
    state: ActualState,
    secret_outputs: HashMap<ComponentId, Attributes>,
    slots: Vec<Slot>,
    reports: Vec<Option<TaskReport>>,
    indeg: Vec<usize>,
    /// Records to write for converges, prepared with the job.
    pending_records: HashMap<NodeIndex, AppliedComponent>,
    journal: Option<JournalWriter>,
    /// `create` and `delete` of each definition (shared by many instances), converted.
    actions: HashMap<usize, (Option<RecordedAction>, Option<RecordedAction>)>,
    /// Components whose `create` ran in this run.
    ran: HashSet<ComponentId>,
    /// The first task that failed (`fail_fast` stops there).
    first_failure: Option<TaskId>,
}

/// Runs `plan` (made from `model` and `actual`) and returns what happened, with actual
/// state updated.
///
/// # Semantics
///
/// - **Scheduling.** A task starts when every task it waits for has finished (done or
///   unchanged), up to [`Limits::concurrency`] at once, up to [`Limits::per_provider`]
///   per provider kind, and never while another task runs on the same node.
/// - **Inputs.** A task's inputs are the component's static inputs, plus linked values:
///   the producer's outputs (or inputs) from this run, else from actual state, else the
///   values copied from another service ([`LinkSource::External`]). Secret inputs come
///   from [`ExecContext::secrets`] and are never recorded.
/// - **Conditional tasks** (downstream of a change) are skipped as *unchanged* when their
///   resolved inputs and their dependencies' outputs digest to the recorded
///   [`AppliedComponent::input_digest`] (and their desired hash is the recorded one).
/// - **Provider actions** (`provider: KIND.RESOURCE`) call the provider registered under
///   KIND: `create` for a component never applied (or observed missing), `update` for one
///   applied before, `delete` for deletes; with `idempotency_key` =
///   `SERVICE/COMPONENT/ACTION/DESIRED_HASH` (plus `/PARAMS_DIGEST` for custom actions),
///   stable across retries and resumes. Every output the provider returns is recorded,
///   except attributes the definition declares `secret`.
/// - **Command actions** render each `RUN` line with [`dtk_model::render::render`]:
///   `{{name}}` is looked up in the action's parameters, the resolved inputs, the secret
///   inputs, then the component's recorded outputs; an attribute the definition declares
///   but that has no value renders empty; any other name fails the task. The environment
///   holds the same values (`to_shell_text`), each under **the attribute's own name**
///   (as-is, case kept; a character other than ASCII letters, digits and `_` becomes `_`,
///   and a leading digit gets a `_` prefix), plus `DTK_SERVICE`, `DTK_NODE` (empty
///   for a component not on a node), `DTK_COMPONENT` and `DTK_ACTION`. The script runs on
///   the component's node through the provider of the component that realizes the node
///   ([`Provider::exec`]); when that provider returns
///   [`ProviderError::Unsupported`], or the node has no such component, through
///   [`ExecContext::transport`]. `name=value` outputs of the commands are kept **only
///   for attributes the definition declares `dynamic`** (others are ignored and reported
///   as warnings), converted to the declared type (integer, boolean, JSON for
///   hash/array); `secret` ones reach consumers in this run but are never recorded.
/// - **Retries.** An attempt that fails is tried again up to the action's `attempts`,
///   `sleep` apart. Retryable provider errors ([`ProviderError::is_retryable`]: throttling,
///   timeouts) get at least [`RetryPolicy::retryable_attempts`] attempts, and
///   [`RetryPolicy::backoff`] apart when the action sets no `sleep`. Unsupported,
///   invalid-input and cancelled errors, and template errors, are not retried.
/// - **Failure.** A failed task's dependents are skipped (transitively); everything else
///   still runs. The [`Outcome`] reports every task.
/// - **Cancellation.** When [`ExecContext::cancel`] is set, no new task starts; running
///   ones finish (or time out; providers see the flag); the rest are reported
///   cancelled.
pub async fn execute(
    plan: &Plan,
    model: &ServiceModel,
    actual: &ActualState,
    ctx: &ExecContext,
) -> Result<Outcome, ExecError> {
    let start = Instant::now();
    let journal = match &ctx.journal {
        Some(path) => Some(
            JournalWriter::open(path, ctx.journal_sync).map_err(|source| ExecError::Journal {
                service: model.name.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let n = plan.len();
    let graph = plan.graph();
    let mut realizer: HashMap<String, ComponentId> = HashMap::new();
    for (id, rec) in &actual.components {
        if rec.realizes_node
            && let Some(node) = &rec.node
        {
            realizer.insert(node.clone(), id.clone());
        }
    }
    for node in &model.nodes {
        if let Some(c) = &node.realized_by {
            realizer.insert(node.name.clone(), c.clone());
        }
    }
    let mut run = Run {
        plan,
        model,
        ctx,
        service: Arc::from(model.name.as_str()),
        service_nodes: Arc::from(model.nodes.as_slice()),
        comp_index: model
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect(),
        statics: HashMap::new(),
        realizer,
        converge_task: graph
            .node_indices()
            .filter(|&i| graph[i].op == TaskOp::Converge)
            .map(|i| (&graph[i].component, i))
            .collect(),
        state: actual.clone(),
        secret_outputs: HashMap::new(),
        slots: vec![Slot::Pending; n],
        reports: vec![None; n],
        indeg: graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
            .collect(),
        pending_records: HashMap::new(),
        journal,
        actions: HashMap::new(),
        ran: HashSet::new(),
        first_failure: None,
    };
    if let Some(j) = &run.journal {
        j.append(JournalEntry::Begin {
            version: crate::journal::JOURNAL_VERSION,
            service: model.name.clone(),
            plan: plan.kind().to_string(),
            tasks: n,
        });
    }
    // A fail-fast stop is a failure, not a cancellation.
    let cancelled = run.schedule().await && !run.failed_fast();
    if plan.kind() == PlanKind::Converge {
        run.refresh_metadata();
    }
    let failed = run
        .reports
        .iter()
        .flatten()
        .any(|r| !matches!(r.status, TaskStatus::Done | TaskStatus::Unchanged));
    let (journal_stats, journal_error) = match run.journal.take() {
        Some(j) => {
            j.append(JournalEntry::End {
                status: if cancelled {
                    "cancelled"
                } else if failed {
                    "failed"
                } else {
                    "complete"
                }
                .to_owned(),
            });
            match j.close().await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            }
        }
        None => (None, None),
    };
    let tasks = plan
        .order()
        .iter()
        .filter_map(|&i| run.reports[i.index()].take())
        .collect();
    Ok(Outcome {
        tasks,
        duration: start.elapsed(),
        state: run.state,
        cancelled,
        journal: journal_stats,
        journal_error,
    })
}

impl<'a> Run<'a> {
    fn emit(&self, ev: Event) {
        if let Some(tx) = &self.ctx.events {
            let _ = tx.send(ev);
        }
    }

    /// The `create` and `delete` actions of `def`, converted once per definition.
    fn def_actions(
        &mut self,
        def: &Arc<ComponentDef>,
    ) -> (Option<RecordedAction>, Option<RecordedAction>) {
        self.actions
            .entry(Arc::as_ptr(def) as usize)
            .or_insert_with(|| {
                (
                    def.actions.get("create").and_then(RecordedAction::from_def),
                    def.actions.get("delete").and_then(RecordedAction::from_def),
                )
            })
            .clone()
    }

    fn journal(&self, e: JournalEntry) {
        if let Some(j) = &self.journal {
            j.append(e);
        }
    }

    fn stopping(&self) -> bool {
        self.ctx.cancel.is_cancelled()
            || self.journal.as_ref().is_some_and(|j| j.is_broken())
            || (self.ctx.fail_fast && self.first_failure.is_some())
    }

    /// Whether scheduling stopped only because of `fail_fast`.
    fn failed_fast(&self) -> bool {
        self.ctx.fail_fast
            && self.first_failure.is_some()
            && !self.ctx.cancel.is_cancelled()
            && !self.journal.as_ref().is_some_and(|j| j.is_broken())
    }

    /// Runs every task it can; returns whether it stopped early (cancelled).
    async fn schedule(&mut self) -> bool {
        let plan = self.plan;
        let mut ready: VecDeque<NodeIndex> = plan
            .order()
            .iter()
            .copied()
            .filter(|i| self.indeg[i.index()] == 0)
            .collect();
        let mut stash: HashMap<NodeIndex, Box<Job>> = HashMap::new();
        let mut busy_nodes: HashSet<String> = HashSet::new();
        let mut node_wait: HashMap<String, VecDeque<NodeIndex>> = HashMap::new();
        let mut kind_running: HashMap<String, usize> = HashMap::new();
        let mut kind_wait: HashMap<String, VecDeque<NodeIndex>> = HashMap::new();
        let mut running: JoinSet<JobResult> = JoinSet::new();
        let mut running_jobs: HashMap<NodeIndex, (Option<String>, Option<String>)> = HashMap::new();
        let mut task_ids: HashMap<tokio::task::Id, NodeIndex> = HashMap::new();
        let limit = self.ctx.limits.concurrency.max(1);
        let mut stopped = false;
        loop {
            while running.len() < limit {
                if self.stopping() {
                    stopped = true;
                    break;
                }
                let Some(i) = ready.pop_front() else { break };
                if self.slots[i.index()] != Slot::Pending {
                    continue;
                }
                let job = match stash.remove(&i) {
                    Some(j) => j,
                    None => match self.prepare(i) {
                        Ready::Run(j) => j,
                        Ready::Unchanged => {
                            self.finish(
                                i,
                                TaskStatus::Unchanged,
                                Duration::ZERO,
                                0,
                                Vec::new(),
                                &mut ready,
                            );
                            continue;
                        }
                        Ready::Fail(message) => {
                            self.finish(
                                i,
                                TaskStatus::Failed { message },
                                Duration::ZERO,
                                0,
                                Vec::new(),
                                &mut ready,
                            );
                            continue;
                        }
                    },
                };
                if let Some(node) = &job.node
                    && busy_nodes.contains(node)
                {
                    node_wait.entry(node.clone()).or_default().push_back(i);
                    stash.insert(i, job);
                    continue;
                }
                if let Some(kind) = &job.limit_kind
                    && let Some(&max) = self.ctx.limits.per_provider.get(kind)
                    && kind_running.get(kind).copied().unwrap_or(0) >= max.max(1)
                {
                    kind_wait.entry(kind.clone()).or_default().push_back(i);
                    stash.insert(i, job);
                    continue;
                }
                if let Some(node) = &job.node {
                    busy_nodes.insert(node.clone());
                }
                if let Some(kind) = &job.limit_kind {
                    *kind_running.entry(kind.clone()).or_default() += 1;
                }
                running_jobs.insert(i, (job.node.clone(), job.limit_kind.clone()));
                self.slots[i.index()] = Slot::Running;
                let t = &plan.graph()[i];
                self.journal(JournalEntry::Intent {
                    task: t.id.clone(),
                    component: t.component.clone(),
                });
                self.emit(Event::TaskStarted {
                    task: t.id.clone(),
                    node: t.node.clone(),
                });
                let handle = running.spawn(job.run());
                task_ids.insert(handle.id(), i);
            }
            if running.is_empty() {
                if stopped || ready.is_empty() {
                    break;
                }
                continue;
            }
            let Some(first) = running.join_next_with_id().await else {
                continue;
            };
            let mut joined = vec![first];
            while let Some(more) = running.try_join_next_with_id() {
                joined.push(more);
            }
            for j in joined {
                let (i, result) = match j {
                    Ok((_, r)) => (r.index, Ok(r)),
                    Err(e) => match task_ids.get(&e.id()) {
                        Some(&i) => (i, Err(format!("the task panicked: {e}"))),
                        None => continue,
                    },
                };
                if let Some((node, kind)) = running_jobs.remove(&i) {
                    if let Some(node) = node {
                        busy_nodes.remove(&node);
                        if let Some(w) = node_wait.get_mut(&node).and_then(VecDeque::pop_front) {
                            ready.push_front(w);
                        }
                    }
                    if let Some(kind) = kind {
                        if let Some(c) = kind_running.get_mut(&kind) {
                            *c = c.saturating_sub(1);
                        }
                        if let Some(w) = kind_wait.get_mut(&kind).and_then(VecDeque::pop_front) {
                            ready.push_front(w);
                        }
                    }
                }
                match result {
                    Ok(r) => self.complete(r, &mut ready),
                    Err(message) => self.finish(
                        i,
                        TaskStatus::Failed { message },
                        Duration::ZERO,
                        1,
                        Vec::new(),
                        &mut ready,
                    ),
                }
            }
        }
        // Whatever did not run was cancelled (or, after a fail-fast stop, skipped
        // because of the first failure).
        let left = match (&self.first_failure, self.failed_fast()) {
            (Some(f), true) => TaskStatus::Skipped { because: f.clone() },
            _ => TaskStatus::Cancelled,
        };
        for i in plan.order().to_vec() {
            if self.slots[i.index()] == Slot::Pending {
                let t = &plan.graph()[i];
                self.slots[i.index()] = Slot::Finished(left.clone());
                self.reports[i.index()] =
                    Some(report(t, left.clone(), Duration::ZERO, 0, Vec::new()));
                self.emit(Event::TaskSkipped {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    status: left.clone(),
                });
            }
        }
        stopped
    }

    /// Applies a finished job's result.
    fn complete(&mut self, r: JobResult, ready: &mut VecDeque<NodeIndex>) {
        let i = r.index;
        let t = &self.plan.graph()[i];
        match r.result {
            Ok(ok) => {
                let effect = match &t.op {
                    TaskOp::Converge => {
                        let mut rec = self.pending_records.remove(&i).unwrap_or_else(|| {
                            failed_record(&t.component, t.node.clone(), String::new())
                        });
                        rec.outputs = ok.outputs;
                        rec.outputs_digest = outputs_digest(&rec.outputs);
                        if !ok.secret_outputs.is_empty() {
                            self.secret_outputs
                                .insert(t.component.clone(), ok.secret_outputs);
                        }
                        let effect = self.journal.as_ref().map(|_| JournalEffect::Applied {
                            record: Box::new(rec.clone()),
                        });
                        self.state.components.insert(t.component.clone(), rec);
                        effect
                    }
                    TaskOp::Delete => {
                        self.state.components.remove(&t.component);
                        Some(JournalEffect::Deleted)
                    }
                    TaskOp::Action { .. } => {
                        if let Some(rec) = self.state.components.get_mut(&t.component) {
                            rec.outputs.extend(ok.outputs.clone());
                            rec.outputs_digest = outputs_digest(&rec.outputs);
                        }
                        Some(JournalEffect::Outputs {
                            outputs: ok.outputs,
                        })
                    }
                };
                if let (Some(effect), Some(_)) = (effect, &self.journal) {
                    self.journal(JournalEntry::Done {
                        task: t.id.clone(),
                        component: t.component.clone(),
                        effect,
                    });
                }
                self.emit(Event::TaskFinished {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    duration: r.duration,
                    output: ok.captured,
                });
                self.finish(
                    i,
                    TaskStatus::Done,
                    r.duration,
                    r.attempts,
                    ok.warnings,
                    ready,
                );
            }
            Err((message, captured)) => {
                self.emit(Event::TaskFailed {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    duration: r.duration,
                    error: message.clone(),
                    output: captured,
                });
                self.finish(
                    i,
                    TaskStatus::Failed { message },
                    r.duration,
                    r.attempts,
                    Vec::new(),
                    ready,
                );
            }
        }
    }

    /// Records a task's end and releases or skips its dependents.
    fn finish(
        &mut self,
        i: NodeIndex,
        status: TaskStatus,
        duration: Duration,
        attempts: u32,
        warnings: Vec<String>,
        ready: &mut VecDeque<NodeIndex>,
    ) {
        let graph = self.plan.graph();
        let t = &graph[i];
        match &status {
            TaskStatus::Unchanged => {
                self.journal(JournalEntry::Unchanged {
                    task: t.id.clone(),
                    component: t.component.clone(),
                });
                self.emit(Event::TaskSkipped {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    status: TaskStatus::Unchanged,
                });
            }
            TaskStatus::Failed { message } => {
                if self.first_failure.is_none() {
                    self.first_failure = Some(t.id.clone());
                }
                let record = if t.op == TaskOp::Converge {
                    let mut rec = self.pending_records.remove(&i).unwrap_or_else(|| {
                        self.state
                            .components
                            .get(&t.component)
                            .cloned()
                            .unwrap_or_else(|| {
                                failed_record(&t.component, t.node.clone(), String::new())
                            })
                    });
                    // Keep what was known before (outputs consumers may still link to).
                    if let Some(prev) = self.state.components.get(&t.component) {
                        rec.outputs = prev.outputs.clone();
                        rec.desired_hash = prev.desired_hash.clone();
                        rec.input_digest = prev.input_digest.clone();
                        rec.outputs_digest = prev.outputs_digest.clone();
                    } else {
                        rec.desired_hash = String::new();
                        rec.input_digest = String::new();
                        rec.outputs_digest = String::new();
                    }
                    rec.status = ComponentStatus::Failed {
                        message: message.clone(),
                    };
                    self.state
                        .components
                        .insert(t.component.clone(), rec.clone());
                    Some(Box::new(rec))
                } else {
                    None
                };
                self.journal(JournalEntry::Failed {
                    task: t.id.clone(),
                    component: t.component.clone(),
                    effect: JournalEffect::Failed {
                        message: message.clone(),
                        record,
                    },
                });
            }
            _ => {}
        }
        self.slots[i.index()] = Slot::Finished(status.clone());
        self.reports[i.index()] = Some(report(t, status.clone(), duration, attempts, warnings));
        match status {
            TaskStatus::Done | TaskStatus::Unchanged => {
                for s in graph.neighbors_directed(i, Direction::Outgoing) {
                    let d = &mut self.indeg[s.index()];
                    *d = d.saturating_sub(1);
                    if *d == 0 && self.slots[s.index()] == Slot::Pending {
                        ready.push_back(s);
                    }
                }
            }
            TaskStatus::Failed { .. } | TaskStatus::Skipped { .. } => {
                let because = match &status {
                    TaskStatus::Skipped { because } => because.clone(),
                    _ => t.id.clone(),
                };
                let mut stack: Vec<NodeIndex> =
                    graph.neighbors_directed(i, Direction::Outgoing).collect();
                while let Some(s) = stack.pop() {
                    if self.slots[s.index()] != Slot::Pending {
                        continue;
                    }
                    let st = &graph[s];
                    let skipped = TaskStatus::Skipped {
                        because: because.clone(),
                    };
                    self.slots[s.index()] = Slot::Finished(skipped.clone());
                    self.reports[s.index()] =
                        Some(report(st, skipped.clone(), Duration::ZERO, 0, Vec::new()));
                    self.journal(JournalEntry::Skipped {
                        task: st.id.clone(),
                        because: because.clone(),
                    });
                    self.emit(Event::TaskSkipped {
                        task: st.id.clone(),
                        node: st.node.clone(),
                        status: skipped,
                    });
                    stack.extend(graph.neighbors_directed(s, Direction::Outgoing));
                }
            }
            TaskStatus::Cancelled => {}
        }
    }

    fn statics(&mut self, ci: usize) -> &Attributes {
        let model = self.model;
        self.statics
            .entry(ci)
            .or_insert_with(|| static_inputs(&model.components[ci]))
    }

    /// Resolves `c`'s inputs from this run's results and actual state; secret linked
    /// values go to `secrets`.
    fn resolve(
        &mut self,
        ci: usize,
        secrets: &mut Attributes,
    ) -> Result<Attributes, crate::resolve::ResolveError> {
        let model = self.model;
        let c = &model.components[ci];
        let statics = self.statics(ci).clone();
        let state = &self.state;
        let secret_outputs = &self.secret_outputs;
        let mut merged: HashMap<&ComponentId, Attributes> = HashMap::new();
        for link in &c.links {
            if let LinkSource::Component(p) = &link.from
                && let Some(so) = secret_outputs.get(p)
            {
                let mut o = state.get(p).map(|r| r.outputs.clone()).unwrap_or_default();
                o.extend(so.clone());
                merged.insert(p, o);
            }
        }
        resolve_inputs(
            c,
            &statics,
            |p| {
                let rec = state.get(p)?;
                Some(ProducerValues {
                    outputs: merged.get(p).unwrap_or(&rec.outputs),
                    inputs: &rec.inputs,
                })
            },
            Some(secrets),
        )
    }

    fn lookup_secrets(&self, component: &ComponentId, names: &[String], into: &mut Attributes) {
        if let Some(src) = &self.ctx.secrets {
            for n in names {
                if into.contains_key(n) {
                    continue;
                }
                if let Some(v) = src.secret(component, n) {
                    into.insert(n.clone(), v);
                }
            }
        }
    }

    /// The node a task runs on, with the provider that runs commands there.
    fn node_target(&self, node: Option<&str>, me: &ComponentId) -> Option<NodeTarget> {
        let name = node?;
        let Some(realizer) = self.realizer.get(name) else {
            return Some(NodeTarget {
                name: name.to_owned(),
                provider: None,
                inputs: Attributes::new(),
                outputs: Attributes::new(),
            });
        };
        if realizer == me {
            // The node's own component: its commands cannot run through itself.
            return Some(NodeTarget {
                name: name.to_owned(),
                provider: None,
                inputs: Attributes::new(),
                outputs: Attributes::new(),
            });
        }
        let rec = self.state.get(realizer);
        let kind = self
            .comp_index
            .get(realizer)
            .and_then(|&i| self.model.components[i].def.actions.get("create"))
            .and_then(RecordedAction::from_def)
            .and_then(|a| a.provider_kind().map(str::to_owned))
            .or_else(|| rec.and_then(|r| r.provider.clone()));
        Some(NodeTarget {
            name: name.to_owned(),
            provider: kind.and_then(|k| self.ctx.providers.get(&k).cloned()),
            inputs: rec.map(|r| r.inputs.clone()).unwrap_or_default(),
            outputs: rec.map(|r| r.outputs.clone()).unwrap_or_default(),
        })
    }

    fn idempotency_key(&self, t: &Task) -> String {
        let mut k = format!(
            "{}/{}/{}/{}",
            self.service, t.component, t.action, t.desired_hash
        );
        if let TaskOp::Action { params } = &t.op {
            k.push('/');
            k.push_str(&params_digest(params));
        }
        k
    }

    /// Decides what to do with a ready task: run it (with everything resolved), skip it
    /// as unchanged, or fail it before it starts.
    fn prepare(&mut self, i: NodeIndex) -> Ready {
        let plan = self.plan;
        let t = &plan.graph()[i];
        let ci = self.comp_index.get(&t.component).copied();
        match &t.op {
            TaskOp::Converge => {
                let Some(ci) = ci else {
                    return Ready::Fail(format!("`{}` is not in the model", t.component));
                };
                self.prepare_converge(i, t, ci)
            }
            TaskOp::Delete => self.prepare_delete(i, t, ci),
            TaskOp::Action { params } => {
                let Some(ci) = ci else {
                    return Ready::Fail(format!("`{}` is not in the model", t.component));
                };
                if t.conditional {
                    // A workflow step: runs only if its component's create ran now.
                    let ran = self.converge_task.get(&t.component).is_some_and(|&c| {
                        self.slots[c.index()] == Slot::Finished(TaskStatus::Done)
                    });
                    let follows = plan
                        .graph()
                        .edges_directed(i, Direction::Incoming)
                        .any(|e| *e.weight() == Edge::Follows);
                    if follows && !ran {
                        return Ready::Unchanged;
                    }
                }
                self.prepare_action(i, t, ci, params)
            }
        }
    }

    fn base_job(&self, i: NodeIndex, t: &Task) -> Job {
        Job {
            index: i,
            task: t.id.clone(),
            component: t.component.clone(),
            node: t.node.clone(),
            service: self.service.clone(),
            service_nodes: self.service_nodes.clone(),
            op: JobOp::Custom,
            action: None,
            provider: None,
            transport: self.ctx.transport.clone(),
            node_target: None,
            inputs: Attributes::new(),
            params: Attributes::new(),
            secrets: Secrets::default(),
            own_outputs: Attributes::new(),
            def: None,
            idempotency_key: self.idempotency_key(t),
            prior: None,
            timeout: self.ctx.default_timeout,
            retry: self.ctx.retry,
            cancel: self.ctx.cancel.clone(),
            events: self.ctx.events.clone(),
            limit_kind: None,
        }
    }

    fn finish_job(&self, mut job: Job, action: Option<RecordedAction>) -> Ready {
        match action.as_ref().map(|a| &a.kind) {
            Some(RecordedKind::Provider { kind, .. }) => {
                job.provider = self.ctx.providers.get(kind).cloned();
                job.limit_kind = Some(kind.clone());
            }
            Some(RecordedKind::Commands { .. }) => {
                job.node_target = self.node_target(job.node.as_deref(), &job.component);
                job.limit_kind = job
                    .node_target
                    .as_ref()
                    .and_then(|n| n.provider.as_ref())
                    .map(|p| p.kind().to_owned());
            }
            None => {}
        }
        job.action = action;
        Ready::Run(Box::new(job))
    }

    fn prepare_converge(&mut self, i: NodeIndex, t: &Task, ci: usize) -> Ready {
        let model = self.model;
        let c: &ComponentInstance = &model.components[ci];
        let mut secrets = Attributes::new();
        let inputs = match self.resolve(ci, &mut secrets) {
            Ok(v) => v,
            Err(e) => return Ready::Fail(e.to_string()),
        };
        let deps: Vec<&ComponentId> = crate::plan::dependency_ids(c).collect();
        let linked: Vec<(&str, Option<&Value>)> = c
            .links
            .iter()
            .filter(|l| matches!(l.from, LinkSource::Component(_)))
            .flat_map(|l| l.mappings.iter())
            .filter(|(_, to)| !c.secret_inputs.iter().any(|s| s == to))
            .map(|(_, to)| (to.as_str(), inputs.get(to)))
            .collect();
        let digest = input_digest(
            deps.iter()
                .map(|d| (*d, self.state.get(d).map(|r| r.outputs_digest.as_str()))),
            linked,
        );
        let prev = self.state.get(&c.id);
        if t.conditional
            && let Some(p) = prev
            && p.is_applied()
            && p.drift.is_none()
            && p.desired_hash == t.desired_hash
            && p.input_digest == digest
        {
            return Ready::Unchanged;
        }
        let update = prev.is_some_and(|p| {
            !p.desired_hash.is_empty() && !matches!(p.drift, Some(DriftMark::Missing))
        });
        let prior = prev.filter(|_| update).map(|p| p.outputs.clone());
        // What dtk did not make stays not dtk's while it is updated; made anew, it is.
        let imported = prev.filter(|_| update).and_then(|p| p.imported.clone());
        let own_outputs = prev.map(|p| p.outputs.clone()).unwrap_or_default();
        self.lookup_secrets(&c.id, &c.secret_inputs, &mut secrets);
        let (create, delete) = self.def_actions(&c.def);
        self.ran.insert(c.id.clone());
        let record = AppliedComponent {
            status: ComponentStatus::Applied,
            desired_hash: t.desired_hash.clone(),
            input_digest: digest,
            outputs_digest: String::new(),
            inputs: inputs.clone(),
            outputs: Attributes::new(),
            node: t.node.clone(),
            realizes_node: c.realizes_node,
            provider: create
                .as_ref()
                .and_then(|a| a.provider_kind().map(str::to_owned)),
            depends_on: deps.into_iter().cloned().collect(),
            delete,
            secret_inputs: c.secret_inputs.clone(),
            drift: None,
            imported,
        };
        self.pending_records.insert(i, record);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Converge { update };
        job.inputs = inputs;
        job.secrets = Secrets(secrets);
        job.own_outputs = own_outputs;
        job.def = Some(c.def.clone());
        job.prior = prior;
        self.finish_job(job, create)
    }

    fn prepare_delete(&mut self, i: NodeIndex, t: &Task, ci: Option<usize>) -> Ready {
        let Some(rec) = self.state.get(&t.component).cloned() else {
            // Already gone: nothing to do.
            let job = self.base_job(i, t);
            return Ready::Run(Box::new(Job {
                op: JobOp::Delete,
                ..job
            }));
        };
        let model_c = ci.map(|ci| &self.model.components[ci]);
        let action = model_c
            .and_then(|c| c.def.actions.get("delete"))
            .and_then(RecordedAction::from_def)
            .or_else(|| rec.delete.clone())
            // Imported without `adopt`: dtk forgets it and leaves the resource alone.
            .filter(|_| !rec.keeps_resource());
        let mut secrets = Attributes::new();
        self.lookup_secrets(&t.component, &rec.secret_inputs, &mut secrets);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Delete;
        job.inputs = rec.inputs.clone();
        job.secrets = Secrets(secrets);
        job.own_outputs = rec.outputs.clone();
        job.prior = Some(rec.outputs.clone());
        job.def = model_c.map(|c| c.def.clone());
        self.finish_job(job, action)
    }

    fn prepare_action(&mut self, i: NodeIndex, t: &Task, ci: usize, params: &Attributes) -> Ready {
        let model = self.model;
        let c = &model.components[ci];
        let mut secrets = Attributes::new();
        let inputs = match self.resolve(ci, &mut secrets) {
            Ok(v) => v,
            Err(e) => return Ready::Fail(e.to_string()),
        };
        self.lookup_secrets(&c.id, &c.secret_inputs, &mut secrets);
        let Some(action) = c
            .def
            .actions
            .get(&t.action)
            .and_then(RecordedAction::from_def)
        else {
            return Ready::Fail(format!("`{}` has no runnable action `{}`", c.id, t.action));
        };
        let rec = self.state.get(&c.id);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Custom;
        job.inputs = inputs;
        job.params = params.clone();
        job.secrets = Secrets(secrets);
        job.own_outputs = rec.map(|r| r.outputs.clone()).unwrap_or_default();
        job.prior = rec.map(|r| r.outputs.clone());
        job.def = Some(c.def.clone());
        self.finish_job(job, Some(action))
    }

    /// Brings the recorded metadata of applied components (dependencies, delete action,
    /// node) up to date with the model, so a later delete uses the current definition.
    fn refresh_metadata(&mut self) {
        let model = self.model;
        for c in &model.components {
            if self.ran.contains(&c.id) || !self.state.components.contains_key(&c.id) {
                continue;
            }
            let (create, delete) = self.def_actions(&c.def);
            let Some(rec) = self.state.components.get_mut(&c.id) else {
                continue;
            };
            rec.depends_on = crate::plan::dependency_ids(c).cloned().collect();
            rec.delete = delete;
            rec.realizes_node = c.realizes_node;
            rec.secret_inputs = c.secret_inputs.clone();
            rec.provider = create.and_then(|a| a.provider_kind().map(str::to_owned));
        }
    }
}

fn failed_record(_id: &ComponentId, node: Option<String>, message: String) -> AppliedComponent {
    AppliedComponent {
        status: ComponentStatus::Failed { message },
        desired_hash: String::new(),
        input_digest: String::new(),
        outputs_digest: String::new(),
        inputs: Attributes::new(),
        outputs: Attributes::new(),
        node,
        realizes_node: false,
        provider: None,
        depends_on: Vec::new(),
        delete: None,
        secret_inputs: Vec::new(),
        drift: None,
        imported: None,
    }
}

fn report(
    t: &Task,
    status: TaskStatus,
    duration: Duration,
    attempts: u32,
    warnings: Vec<String>,
) -> TaskReport {
    TaskReport {
        id: t.id.clone(),
        component: t.component.clone(),
        action: t.action.clone(),
        node: t.node.clone(),
        status,
        duration,
        attempts,
        warnings,
    }
}
