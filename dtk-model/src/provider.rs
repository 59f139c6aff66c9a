//! The target-provider traits: what a third-party crate implements to teach dtk a new
//! kind of infrastructure.
//!
//! A **provider** is registered under a kind (`aws`, `local`). Component actions written
//! `provider: KIND.RESOURCE` are done by the provider of that kind: it creates, reads,
//! updates and deletes one typed resource (`aws.vpc`, `local.node`) from input attributes
//! and returns output attributes. A provider whose resources are *nodes* can also run
//! commands on them ([`Provider::exec`]).
//!
//! # The contract
//!
//! - **Idempotence.** Every operation may be called again with the same request after a
//!   crash, a timeout or a retry, and must then converge to the same result without
//!   duplicating anything. [`ResourceRequest::idempotency_key`] is stable across retries
//!   and resumes of the same task: use it as a client token, a tag, or a file name.
//!   `delete` of something already gone succeeds.
//! - **Errors.** An `Err` means the operation did not complete: the executor records it,
//!   retries it if the action allows, and skips what depends on it. Say what failed and
//!   where; never put a secret (a value of [`ResourceRequest::secrets`]) in an error.
//! - **Outputs.** `create`/`update` return the resource's output attributes (the dynamic
//!   attributes of its component: ids, addresses). They are recorded in actual state and
//!   flow through links to the components that consume them. Return every output, even
//!   for resources that already existed.
//! - **Cancellation.** Operations should return promptly when
//!   [`ResourceRequest::cancel`] is set, with an error that says so.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::content::ModuleContent;
use crate::instance::NodeInstance;
use crate::value::{Attributes, Value};

/// Secret attribute values, passed to providers and commands but never persisted.
///
/// `Debug` prints only the names.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(pub Attributes);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.keys().map(|k| format!("{k}=<redacted>")))
            .finish()
    }
}

impl Secrets {
    /// Looks a secret up by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// A flag a long operation polls to stop early (Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Sets the flag.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a provider operation acts on.
#[derive(Debug, Clone)]
pub struct ResourceRequest<'a> {
    /// The service instance.
    pub service: &'a str,
    /// The component instance (`web`, `node[db]`, `vpc[vpc1]`).
    pub component: &'a str,
    /// The node the component sits on, if any.
    pub node: Option<&'a str>,
    /// The resource type after the provider kind (`vpc` in `aws.vpc`).
    pub resource: &'a str,
    /// Stable across retries and resumes of the same task; unique per task.
    pub idempotency_key: &'a str,
    /// Input attributes (defaults, overrides and linked values resolved).
    pub inputs: &'a Attributes,
    /// Secret inputs; never persist or log them.
    pub secrets: &'a Secrets,
    /// The outputs recorded by the last successful create/update, if any.
    pub prior: Option<&'a Attributes>,
    /// Every node of the service, in declaration order (node groups expanded), with its
    /// own attributes: a provider that places nodes (on a list of hosts, say) can give
    /// each the same place whatever order they are created in. Empty when unknown.
    pub service_nodes: &'a [NodeInstance],
    /// Set when the operation should stop early.
    pub cancel: &'a Cancel,
}

/// What `read` saw of a resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The resource exists; these are its current outputs.
    Present(Attributes),
    /// The resource is gone (deleted outside dtk): converge will create it again.
    Missing,
    /// The provider cannot tell; the recorded state is trusted.
    Unknown,
}

/// A command run on a node.
#[derive(Debug, Clone)]
pub struct ExecRequest<'a> {
    /// The service instance.
    pub service: &'a str,
    /// The node's name.
    pub node: &'a str,
    /// The outputs of the node's resource (a sandbox path, an address).
    pub node_outputs: &'a Attributes,
    /// The inputs of the node's resource.
    pub node_inputs: &'a Attributes,
    /// The steps, already substituted: shell lines and file placements, run in order,
    /// stopping at the first failure.
    pub steps: &'a [ExecStep],
    /// The files of the module the action comes from, when it has a module: the node's
    /// copy of them is brought up to date before the steps run (only changed files are
    /// sent), the steps run in that copy's directory, and `DTK_MODULE_DIR` names it.
    pub module: Option<&'a ModuleContent>,
    /// Environment for the commands (attributes, secrets included, and `DTK_*`).
    pub env: &'a [(String, String)],
    /// How long the whole script may run.
    pub timeout: Duration,
    /// Set when the command should stop early.
    pub cancel: &'a Cancel,
}

/// One step of a command action, as a node runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecStep {
    /// A shell line (`RUN`), placeholders substituted; it runs through `sh -c` in the
    /// action's directory.
    Run(String),
    /// A file placed on the node (the original dtk's `ADD`).
    Put(PutFile),
}

impl ExecStep {
    /// The shell line of a `Run` step.
    pub fn run_line(&self) -> Option<&str> {
        match self {
            ExecStep::Run(l) => Some(l),
            ExecStep::Put(_) => None,
        }
    }
}

/// A file to place on a node.
#[derive(Clone, PartialEq, Eq)]
pub struct PutFile {
    /// Where it goes: relative to the action's directory (the module's directory on the
    /// node), or absolute where the node allows it (not in a local sandbox).
    pub target: String,
    /// What goes there.
    pub content: PutContent,
    /// Its permission bits (`0o644`), when given; otherwise the module file's
    /// (0755 for an executable, else 0644).
    pub mode: Option<u32>,
    /// Its owner, `user` or `user:group`, when given.
    pub owner: Option<String>,
    /// The step as written, for messages (`ADD conf/app.conf.tmpl -> /etc/app.conf`).
    pub label: String,
}

impl fmt::Debug for PutFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutFile")
            .field("target", &self.target)
            .field("content", &self.content)
            .field("mode", &self.mode)
            .field("owner", &self.owner)
            .finish()
    }
}

/// The content of a [`PutFile`].
#[derive(Clone, PartialEq, Eq)]
pub enum PutContent {
    /// A file of the action's module, copied as it is: its path in the module.
    ModuleFile(String),
    /// A rendered template. It may hold secret values: never log it (`Debug` shows
    /// only its length).
    Rendered(Vec<u8>),
}

impl fmt::Debug for PutContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutContent::ModuleFile(p) => f.debug_tuple("ModuleFile").field(p).finish(),
            PutContent::Rendered(b) => write!(f, "Rendered(<{} bytes>)", b.len()),
        }
    }
}

/// What a command run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    /// The exit status; `None` if the process was killed (timeout, signal).
    pub exit_code: Option<i32>,
    /// Everything written to standard output.
    pub stdout: Vec<u8>,
    /// Everything written to standard error.
    pub stderr: Vec<u8>,
    /// `name=value` lines the commands wrote to the file named by `$DTK_OUTPUT`.
    pub outputs: Vec<(String, String)>,
    /// How long it ran.
    pub duration: Duration,
}

impl ExecOutput {
    /// Whether the commands succeeded.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// The error returned by a provider operation.
#[derive(Debug, Error)]
pub enum ProviderError {
    /// The provider has no such resource type or operation.
    #[error("provider `{provider}` does not support {what}")]
    Unsupported {
        /// The provider kind.
        provider: String,
        /// What was asked (`resource type \`foo\``, `running commands`).
        what: String,
    },
    /// The inputs are not usable (a missing or malformed attribute).
    #[error("invalid input for {resource}: {message}")]
    InvalidInput {
        /// `KIND.RESOURCE`.
        resource: String,
        /// What is wrong.
        message: String,
    },
    /// The operation failed; `message` says what failed and where.
    #[error("{operation} failed: {message}")]
    Failed {
        /// The operation and resource (`create aws.vpc for vpc[vpc1]`).
        operation: String,
        /// What happened.
        message: String,
        /// Whether retrying may help (throttling, a dropped connection).
        retryable: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation.
        operation: String,
        /// The time limit.
        after: Duration,
    },
    /// The operation stopped because it was cancelled.
    #[error("{operation} was cancelled")]
    Cancelled {
        /// The operation.
        operation: String,
    },
}

impl ProviderError {
    /// A failure without an underlying error.
    pub fn failed(operation: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Failed {
            operation: operation.into(),
            message: message.into(),
            retryable: false,
            source: None,
        }
    }

    /// Whether retrying the operation may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Failed {
                retryable: true,
                ..
            } | ProviderError::Timeout { .. }
        )
    }
}

/// A module shipped with a provider (its target assemblies, its node component): the
/// program that registers the provider publishes it into the catalog, so that users can
/// stage what the provider serves without installing anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledModule {
    /// Where the text comes from, for messages (`dtk/local/dtk.module.yaml`).
    pub origin: String,
    /// The module's `dtk.module.yaml` text.
    pub text: String,
}

impl BundledModule {
    /// A module from its origin and text.
    pub fn new(origin: impl Into<String>, text: impl Into<String>) -> Self {
        BundledModule {
            origin: origin.into(),
            text: text.into(),
        }
    }
}

/// A target provider: creates, reads, updates and deletes typed resources, and runs
/// commands on the nodes it provides. Implementations must be idempotent (see the
/// [module documentation](self)).
///
/// Only [`kind`](Provider::kind), [`create`](Provider::create) and
/// [`delete`](Provider::delete) are required.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The kind this provider is registered under (`aws`, `local`): the `KIND` of
    /// `provider: KIND.RESOURCE`.
    fn kind(&self) -> &str;

    /// The resource types this provider handles (`vpc`, `ec2_instance`); empty means
    /// "ask and see": staging then does not check resource names up front.
    fn resources(&self) -> Vec<String> {
        Vec::new()
    }

    /// The modules that come with this provider (e.g. `aws/network`), published into the
    /// catalog when the provider is registered with a home. Defaults to none.
    fn modules(&self) -> Vec<BundledModule> {
        Vec::new()
    }

    /// Creates the resource (or finds the one a previous, interrupted call created) and
    /// returns its outputs.
    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError>;

    /// Reads the resource's current state, to notice drift. Defaults to `Unknown`.
    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        let _ = req;
        Ok(Observed::Unknown)
    }

    /// Brings an existing resource to new inputs. Defaults to `create`, which must be
    /// idempotent anyway.
    async fn update(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.create(req).await
    }

    /// Deletes the resource. Succeeds if it is already gone.
    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError>;

    /// Runs commands on a node this provider created. Defaults to `Unsupported`: the
    /// caller then uses a generic transport chosen from the node's outputs (a local
    /// sandbox directory, an SSH address).
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        let _ = req;
        Err(ProviderError::Unsupported {
            provider: self.kind().to_owned(),
            what: "running commands".to_owned(),
        })
    }
}

// Compile-time proof that `Provider` is object safe.
const _: fn(Option<Box<dyn Provider>>) = |_| {};

/// The providers available to a converge, by kind. Cheap to clone.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    providers: std::collections::BTreeMap<String, Arc<dyn Provider>>,
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.providers.keys()).finish()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ProviderRegistry::default()
    }

    /// Registers `provider` under its kind, replacing any previous one of that kind.
    pub fn register(&mut self, provider: Arc<dyn Provider>) {
        self.providers.insert(provider.kind().to_owned(), provider);
    }

    /// The provider of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(kind)
    }

    /// The registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

/// Where a provider that keeps local files should keep them; given at construction by
/// the embedding program (the CLI passes `DTK_HOME`). Providers must not read
/// environment variables to find it.
pub fn provider_state_dir(home: &Path, kind: &str) -> std::path::PathBuf {
    home.join("providers").join(kind)
}
