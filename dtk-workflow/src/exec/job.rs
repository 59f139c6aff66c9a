//! One running task: its attempts (retries, timeouts, cancellation), a provider action or
//! a command script on its node, and what came out (outputs typed, secrets redacted).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtk_model::content::ModuleContent;
use dtk_model::instance::NodeInstance;
use dtk_model::module::{AttrType, ComponentDef};
use dtk_model::provider::{
    Cancel, ExecRequest, ExecStep, Provider, ProviderError, ResourceRequest, Secrets,
};
use dtk_model::render::render;
use dtk_model::value::{Attributes, Value};
use petgraph::graph::NodeIndex;

use super::{CapturedOutput, Event, ExecContext};
use crate::hash::params_digest;
use crate::state::{AppliedComponent, RecordedAction, RecordedKind, RecordedStep};
use crate::task::{Task, TaskOp};

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
pub(super) enum JobOp {
    Converge { update: bool },
    Delete,
    Custom,
}

/// Where commands run: a node, the provider that runs commands there, and its recorded
/// inputs and outputs. Shared by every task on the node until the node's own component
/// changes.
pub(super) struct NodeTarget {
    pub(super) name: String,
    pub(super) provider: Option<Arc<dyn Provider>>,
    pub(super) inputs: Attributes,
    pub(super) outputs: Attributes,
}

/// Everything one running task needs. It borrows the plan's task and the run's context:
/// the coordinator polls its jobs itself, so a job costs no tokio task, no channel and no
/// copy of what the plan already holds.
pub(super) struct Job<'a> {
    pub(super) index: NodeIndex,
    pub(super) task: &'a Task,
    pub(super) ctx: &'a ExecContext,
    pub(super) service: &'a str,
    /// The service's nodes in declaration order, for providers that place nodes.
    pub(super) service_nodes: &'a [NodeInstance],
    pub(super) op: JobOp,
    pub(super) action: Option<Arc<RecordedAction>>,
    pub(super) provider: Option<&'a Arc<dyn Provider>>,
    pub(super) node_target: Option<Arc<NodeTarget>>,
    pub(super) inputs: Attributes,
    pub(super) params: Option<&'a Attributes>,
    pub(super) secrets: Secrets,
    /// The component's recorded outputs (`{{name}}` and the environment see them).
    pub(super) own_outputs: Attributes,
    /// Whether `own_outputs` go to the provider as `prior` (an update, a delete, a custom
    /// action).
    pub(super) has_prior: bool,
    /// The definition, to filter and type command outputs (absent for removed ones).
    pub(super) def: Option<&'a ComponentDef>,
    /// The record a converge leaves (its outputs and inputs filled in at the end).
    pub(super) record: Option<Box<AppliedComponent>>,
    /// The provider kind whose limit ([`super::Limits::per_provider`]) the job counts
    /// against, when one is set.
    pub(super) limit_kind: Option<&'a str>,
    /// The files of the module the action comes from.
    pub(super) module: Option<&'a ModuleContent>,
    /// When the coordinator started it (the time its report gives).
    pub(super) started: Option<Instant>,
}

pub(super) struct JobSuccess {
    pub(super) outputs: Attributes,
    pub(super) secret_outputs: Attributes,
    pub(super) warnings: Vec<String>,
    pub(super) captured: Option<CapturedOutput>,
}

pub(super) struct JobResult {
    pub(super) index: NodeIndex,
    pub(super) result: Result<JobSuccess, (String, Option<CapturedOutput>)>,
    pub(super) attempts: u32,
    pub(super) duration: Duration,
    /// The inputs it ran with, and the record a converge leaves.
    pub(super) inputs: Attributes,
    pub(super) record: Option<Box<AppliedComponent>>,
}

impl JobResult {
    /// A job that panicked: a failure of its task, not of the run.
    pub(super) fn panicked(index: NodeIndex, message: String) -> JobResult {
        JobResult {
            index,
            result: Err((format!("the task panicked: {message}"), None)),
            attempts: 1,
            duration: Duration::ZERO,
            inputs: Attributes::new(),
            record: None,
        }
    }
}

impl Job<'_> {
    fn emit(&self, ev: Event) {
        if let Some(tx) = &self.ctx.events {
            let _ = tx.send(ev);
        }
    }

    fn redact(&self, s: &str) -> String {
        redact(s, &self.secrets)
    }

    pub(super) async fn run(mut self) -> JobResult {
        let start = self.started.unwrap_or_else(Instant::now);
        let mut attempt = 1u32;
        let (attempts, sleep) = match &self.action {
            Some(a) => (a.attempts.max(1), a.sleep()),
            None => (1, Duration::ZERO),
        };
        loop {
            let timeout = self
                .action
                .as_ref()
                .and_then(|a| a.timeout())
                .unwrap_or(self.ctx.default_timeout);
            let r = match tokio::time::timeout(timeout, self.attempt(timeout)).await {
                Ok(r) => r,
                Err(_) => Err((
                    Failure {
                        message: format!("{} timed out after {timeout:?}", self.task.id),
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
                        inputs: std::mem::take(&mut self.inputs),
                        record: self.record.take(),
                    };
                }
                Err((f, captured)) => {
                    let max = match f.retry {
                        Retry::Fatal => 1,
                        Retry::Action => attempts,
                        Retry::Retryable => attempts.max(self.ctx.retry.retryable_attempts),
                    };
                    let message = self.redact(&f.message);
                    if attempt >= max || self.ctx.cancel.is_cancelled() {
                        return JobResult {
                            index: self.index,
                            result: Err((message, captured)),
                            attempts: attempt,
                            duration: start.elapsed(),
                            inputs: std::mem::take(&mut self.inputs),
                            record: self.record.take(),
                        };
                    }
                    let wait = if sleep.is_zero() && f.retry == Retry::Retryable {
                        self.ctx.retry.backoff
                    } else {
                        sleep
                    };
                    self.emit(Event::TaskRetrying {
                        task: self.task.id.clone(),
                        node: self.task.node.clone(),
                        attempt,
                        error: message,
                        after: wait,
                    });
                    sleep_unless_cancelled(wait, &self.ctx.cancel).await;
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
            RecordedKind::Commands { run, steps } => {
                let steps: Vec<RecordedStep> = match steps {
                    Some(s) => s.clone(),
                    None => run.iter().cloned().map(RecordedStep::Run).collect(),
                };
                // Boxed: its state (a process, its captures) is large, and kept inline it
                // would size every job's future, provider jobs' included.
                Box::pin(self.commands_attempt(&steps, timeout)).await
            }
        }
    }

    async fn provider_attempt(&self, kind: &str, resource: &str) -> Result<JobSuccess, Failure> {
        let Some(p) = self.provider else {
            return Err(Failure::fatal(format!(
                "no provider of kind `{kind}` is registered (action `{}` of `{}`)",
                self.task.id, self.task.component
            )));
        };
        let merged;
        let inputs = match self.params {
            Some(params) if !params.is_empty() => {
                let mut m = self.inputs.clone();
                m.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
                merged = m;
                &merged
            }
            _ => &self.inputs,
        };
        let idempotency_key = self.idempotency_key();
        let req = ResourceRequest {
            service: self.service,
            component: self.task.component.as_str(),
            node: self.task.node.as_deref(),
            resource,
            idempotency_key: &idempotency_key,
            inputs,
            secrets: &self.secrets,
            prior: self.has_prior.then_some(&self.own_outputs),
            service_nodes: self.service_nodes,
            cancel: &self.ctx.cancel,
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

    /// `SERVICE/COMPONENT/ACTION/DESIRED_HASH`, plus `/PARAMS_DIGEST` for a custom
    /// action: stable across retries and resumes.
    fn idempotency_key(&self) -> String {
        let t = self.task;
        // `join` sizes it once; `format!` grew it by reallocation (5% of the executor's
        // samples in `perf`).
        let mut k = [
            self.service,
            t.component.as_str(),
            t.action.as_str(),
            t.desired_hash.as_str(),
        ]
        .join("/");
        if let TaskOp::Action { params } = &t.op {
            k.push('/');
            k.push_str(&params_digest(params));
        }
        k
    }

    fn split_secret(&self, outputs: Attributes) -> (Attributes, Attributes) {
        let Some(def) = self.def else {
            return (outputs, Attributes::new());
        };
        let secret = |k: &String| def.attributes.get(k).is_some_and(|a| a.secret);
        // Usually none is secret: the map stays as it came rather than being rebuilt.
        if !outputs.keys().any(secret) {
            return (outputs, Attributes::new());
        }
        outputs.into_iter().partition(|(k, _)| !secret(k))
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.params
            .and_then(|p| p.get(name))
            .or_else(|| self.inputs.get(name))
            .or_else(|| self.secrets.get(name))
            .or_else(|| self.own_outputs.get(name))
            .map(Value::to_shell_text)
            .or_else(|| {
                self.def
                    .filter(|d| d.attributes.contains_key(name))
                    .map(|_| String::new())
            })
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        // Lowest precedence first.
        let no_params = Attributes::new();
        for src in [
            &self.own_outputs,
            &self.secrets.0,
            &self.inputs,
            self.params.unwrap_or(&no_params),
        ] {
            for (k, v) in src {
                env.insert(env_name(k), v.to_shell_text());
            }
        }
        env.insert("DTK_SERVICE".to_owned(), self.service.to_owned());
        env.insert(
            "DTK_NODE".to_owned(),
            self.task.node.clone().unwrap_or_default(),
        );
        env.insert("DTK_COMPONENT".to_owned(), self.task.component.to_string());
        let action = self.task.id.as_str().rsplit_once('.').map(|(_, a)| a);
        env.insert("DTK_ACTION".to_owned(), action.unwrap_or("").to_owned());
        env.into_iter().collect()
    }

    /// An `ADD` step, rendered: the target's placeholders substituted (as they are), and
    /// a template's content rendered from the module's file. Errors never quote the file.
    fn add_step(
        &self,
        source: &str,
        target: &str,
        template: bool,
        owner: Option<&str>,
        mode: Option<&str>,
    ) -> Result<ExecStep, String> {
        let label = format!("ADD {source} -> {target} ({})", self.task.id);
        let raw = |text: &str, what: &str| {
            dtk_model::render::render_raw(text, |n| self.lookup(n)).map_err(|e| match e {
                dtk_model::render::RenderError::Unclosed { offset, .. } => {
                    format!("{label}: {what} has an unclosed `{{{{` at byte {offset}")
                }
                other => format!("{label}: {what}: {other}"),
            })
        };
        let target = raw(target, "the target")?;
        let mode = match mode {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .map_err(|_| format!("{label}: mode `{m}` is not an octal mode"))?,
            ),
        };
        let content = if template {
            let module = self
                .module
                .ok_or_else(|| format!("{label}: the action has no module files"))?;
            let path = dtk_model::content::normalize_relative(source);
            let file = module.file(&path).ok_or_else(|| {
                format!("{label}: module {} has no file `{source}`", module.module)
            })?;
            let bytes = module
                .store
                .read(&file.id)
                .map_err(|e| format!("{label}: {e}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{label}: a template must be UTF-8 text"))?;
            dtk_model::provider::PutContent::Rendered(raw(&text, "the template")?.into_bytes())
        } else {
            dtk_model::provider::PutContent::ModuleFile(source.to_owned())
        };
        Ok(ExecStep::Put(dtk_model::provider::PutFile {
            target,
            content,
            mode,
            owner: owner.map(str::to_owned),
            label,
        }))
    }

    async fn commands_attempt(
        &self,
        recorded: &[RecordedStep],
        timeout: Duration,
    ) -> Result<JobSuccess, (Failure, Option<CapturedOutput>)> {
        let mut steps = Vec::with_capacity(recorded.len());
        for step in recorded {
            let s = match step {
                RecordedStep::Run(line) => render(line, |n| self.lookup(n))
                    .map(ExecStep::Run)
                    .map_err(|e| format!("cannot render a command of {}: {e}", self.task.id)),
                RecordedStep::Add {
                    source,
                    target,
                    template,
                    owner,
                    mode,
                } => self.add_step(source, target, *template, owner.as_deref(), mode.as_deref()),
            };
            steps.push(s.map_err(|m| (Failure::fatal(m), None))?);
        }
        let env = self.env();
        let empty = Attributes::new();
        let (node_name, node_inputs, node_outputs, node_provider) = match &self.node_target {
            Some(t) => (t.name.as_str(), &t.inputs, &t.outputs, t.provider.as_ref()),
            None => ("", &empty, &empty, None),
        };
        let req = ExecRequest {
            service: self.service,
            node: node_name,
            node_outputs,
            node_inputs,
            steps: &steps,
            module: self.module,
            env: &env,
            timeout,
            cancel: &self.ctx.cancel,
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
            None => match &self.ctx.transport {
                Some(t) => t.exec(&req).await,
                None => {
                    return Err((
                        Failure::fatal(format!(
                            "{}: no way to run commands on {}: its provider does not run \
                             commands and no command transport is configured",
                            self.task.id,
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
                format!("{}: commands ended with {status}", self.task.id)
            } else {
                format!("{}: commands ended with {status}: {last}", self.task.id)
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
                .and_then(|d| d.attributes.get(name))
                .filter(|a| a.dynamic);
            let Some(decl) = decl else {
                warnings.push(format!(
                    "output `{name}` ignored: `{}` declares no dynamic attribute of that name",
                    self.task.component
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
