//! The executor: runs a [`Plan`] on tokio, against providers and a command transport.
//!
//! The semantics (scheduling, inputs, conditional tasks, provider and command actions,
//! retries, failure, cancellation) are documented on [`execute`]. `schedule.rs` is the
//! coordinator (readiness, limits, results, the journal), `prepare.rs` decides what a
//! ready task runs with, `job.rs` runs one task's attempts, `outcome.rs` holds what a run
//! reports.

mod job;
mod outcome;
mod prepare;
mod records;
mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtk_model::instance::{ComponentId, ServiceModel};
use dtk_model::provider::{Cancel, ExecOutput, ExecRequest, ProviderError, ProviderRegistry};
use dtk_model::value::Value;
use thiserror::Error;

pub use job::env_name;
#[cfg(test)]
pub(crate) use job::{redact, typed_value};
pub use outcome::{CapturedOutput, Event, EventSink, Outcome, TaskReport, TaskStatus};

use crate::journal::{JournalError, JournalWriter, SyncMode};
use crate::plan::Plan;
use crate::state::ActualState;

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
    /// The files of the service's modules, by module id (`NS/NAME`): a command action
    /// of a component runs in its module's files on the node (see [`ExecRequest::module`]).
    /// A module missing here runs its commands without its files.
    pub modules: std::collections::HashMap<String, dtk_model::content::ModuleContent>,
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
            .field("modules", &self.modules.len())
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
            modules: std::collections::HashMap::new(),
        }
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
///   values copied from another service ([`LinkSource::External`](dtk_model::instance::LinkSource::External)). Secret inputs come
///   from [`ExecContext::secrets`] and are never recorded.
/// - **Conditional tasks** (downstream of a change) are skipped as *unchanged* when their
///   resolved inputs and their dependencies' outputs digest to the recorded
///   [`AppliedComponent::input_digest`](crate::AppliedComponent::input_digest) (and their desired hash is the recorded one).
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
///   ([`Provider::exec`](dtk_model::Provider::exec)); when that provider returns
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
    execute_owned(plan, model, actual.clone(), ctx).await
}

/// [`execute`], taking the actual state by value: the run's records start as `actual`'s,
/// moved rather than copied (a caller done with its state saves a copy of every record).
pub async fn execute_owned(
    plan: &Plan,
    model: &ServiceModel,
    actual: ActualState,
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
    Ok(schedule::run(plan, model, actual, ctx, journal, start).await)
}
