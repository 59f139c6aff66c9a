//! The host side: a plugin executable as a [`dtk_model::Provider`].
//!
//! A [`PluginProcess`] is one executable; it starts on the first request of any of its
//! kinds (the `hello` handshake first), and serves every request of this program from then
//! on, many at once, each with its own id. [`PluginProvider`] is one of its kinds.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use dtk_model::content::ModuleContent;
use dtk_model::provider::{Cancel, ExecOutput, ExecRequest, Observed, ResourceRequest};
use dtk_model::{Attributes, BundledModule, Provider, ProviderError};
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};

use crate::wire::{
    CancelParams, ExecParamsRef, ExecResult, HelloParams, HostMessage, MAX_LINE, ModuleFileParams,
    ModuleFileResult, Outgoing, OutputsResult, PluginDescription, ProvidedKind, ReadResult,
    RemoteError, ResourceParamsRef, SUPPORTED_PROTOCOLS, WireError, parse_host_message,
    response_line, secret_texts,
};

/// Where a plugin's standard error is logged (at debug level), one event per line.
pub const STDERR_TARGET: &str = "dtk_provider_plugin::stderr";

/// How dtk runs a plugin: what it tells it, and how long it waits.
#[derive(Debug, Clone)]
pub struct PluginOptions {
    /// `DTK_HOME`, sent in `hello` (the plugin's state lives in `home/providers/KIND`).
    pub home: PathBuf,
    /// The version of dtk, sent in `hello`.
    pub dtk_version: String,
    /// How long a started plugin has to answer `hello`.
    pub start_timeout: Duration,
    /// How long one request may take before dtk gives up on it (and cancels it): a
    /// ceiling over the action's own `timeout`, which the executor enforces.
    pub call_timeout: Duration,
    /// While requests are in flight, dtk pings the plugin this often...
    pub ping_interval: Duration,
    /// ...and stops it as hung when a ping is not answered within this long.
    pub unresponsive_after: Duration,
}

impl PluginOptions {
    /// The defaults for the dtk home `home`: 10 s to start, 30 min per request, a ping
    /// every 2 s while requests run, hung after 10 s without an answer.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        PluginOptions {
            home: home.into(),
            dtk_version: String::new(),
            start_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30 * 60),
            ping_interval: Duration::from_secs(2),
            unresponsive_after: Duration::from_secs(10),
        }
    }

    /// The `hello` parameters. The home is sent absolute: a plugin need not run in
    /// dtk's working directory, and a relative home would put its state elsewhere.
    pub(crate) fn hello(&self) -> HelloParams {
        let home = std::path::absolute(&self.home).unwrap_or_else(|_| self.home.clone());
        HelloParams {
            protocols: SUPPORTED_PROTOCOLS.to_vec(),
            dtk_version: self.dtk_version.clone(),
            providers_dir: home.join("providers"),
            home,
        }
    }
}

/// One plugin executable, started on first use and shared by its kinds.
pub struct PluginProcess {
    path: PathBuf,
    name: String,
    description: PluginDescription,
    options: PluginOptions,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl fmt::Debug for PluginProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginProcess")
            .field("path", &self.path)
            .field("description", &self.description.plugin)
            .finish_non_exhaustive()
    }
}

impl PluginProcess {
    /// The executable at `path`, as it described itself (see
    /// [`describe`](crate::describe)); nothing is started until the first request.
    pub fn new(path: PathBuf, description: PluginDescription, options: PluginOptions) -> Arc<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Arc::new(PluginProcess {
            path,
            name,
            description,
            options,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What it said about itself.
    pub fn description(&self) -> &PluginDescription {
        &self.description
    }

    /// A provider for each kind it serves.
    pub fn providers(self: &Arc<Self>) -> Vec<PluginProvider> {
        self.description
            .providers
            .iter()
            .map(|k| PluginProvider {
                provided: k.clone(),
                process: self.clone(),
                no_exec: AtomicBool::new(!k.exec),
            })
            .collect()
    }

    /// `plugin NAME (PATH)`, for messages.
    fn label(&self) -> String {
        format!("plugin {} ({})", self.name, self.path.display())
    }

    /// Asks a running plugin to shut down and waits (up to `start_timeout` and 10 s
    /// more) for it to exit. Nothing happens when it is not running. Dropping the last
    /// handle closes its standard input instead, which a plugin must take as the same.
    pub async fn shutdown(&self) {
        let conn = self.conn.lock().await.take();
        let Some(conn) = conn else { return };
        if conn.is_alive()
            && let Ok(rx) = conn.shared.request(
                &conn.tx,
                "shutdown",
                &serde_json::json!({}),
                Vec::new(),
                None,
            )
        {
            let _ =
                tokio::time::timeout(self.options.start_timeout + Duration::from_secs(10), rx.rx)
                    .await;
        }
        let mut exited = conn.shared.exited.subscribe();
        drop(conn);
        let _ = tokio::time::timeout(Duration::from_secs(5), exited.wait_for(|e| *e)).await;
    }

    async fn connection(&self) -> Result<Arc<Conn>, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref()
            && c.is_alive()
        {
            return Ok(c.clone());
        }
        *slot = None;
        let conn = Arc::new(self.start().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Starts the executable and makes the handshake.
    async fn start(&self) -> Result<Conn, String> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches dtk, which cancels
            // requests through the protocol, and not the plugin directly.
            .process_group(0)
            .kill_on_drop(false);
        let mut attempt = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if crate::spawn::busy(&e) && attempt < crate::spawn::BUSY_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(crate::spawn::BUSY_PAUSE).await;
                }
                other => break other.map_err(|e| format!("cannot be started: {e}"))?,
            }
        };
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("was started without its pipes".to_owned());
        };
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        tracing::debug!(plugin = %self.name, path = %self.path.display(), pid = ?pgid, "plugin started");
        let shared = Arc::new(Shared::new(self.name.clone(), pgid));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_input(stdin, rx));
        tokio::spawn(read_output(stdout, child, shared.clone(), tx.downgrade()));
        tokio::spawn(read_stderr(stderr, shared.clone()));
        tokio::spawn(watchdog(
            tx.downgrade(),
            shared.clone(),
            self.options.clone(),
        ));
        let conn = Conn { tx, shared };

        let rx = conn
            .shared
            .request(&conn.tx, "hello", &self.options.hello(), Vec::new(), None)
            .map_err(|d| d.describe())?;
        let fail = |why: String| {
            conn.shared.die(Death::Refused(why.clone()));
            Err(why)
        };
        let reply = match tokio::time::timeout(self.options.start_timeout, rx.rx).await {
            Err(_) => {
                return fail(format!(
                    "did not answer `hello` within {:?}",
                    self.options.start_timeout
                ));
            }
            Ok(Err(_)) => return fail("stopped during its handshake".to_owned()),
            Ok(Ok(Err(CallError::Died(d)))) => return Err(d.describe()),
            Ok(Ok(Err(CallError::Remote(e)))) => {
                return fail(format!("refused `hello`: {}", remote_text(e)));
            }
            Ok(Ok(Ok(v))) => v,
        };
        let Ok(desc) = serde_json::from_value::<PluginDescription>(reply) else {
            return fail("answered `hello` with a result dtk cannot read".to_owned());
        };
        if !SUPPORTED_PROTOCOLS.contains(&desc.protocol) {
            return fail(format!(
                "chose protocol {}, which dtk does not speak (it speaks {SUPPORTED_PROTOCOLS:?})",
                desc.protocol
            ));
        }
        if desc.protocol != self.description.protocol {
            return fail(format!(
                "chose protocol {} (it chose {} when dtk first ran it)",
                desc.protocol, self.description.protocol
            ));
        }
        for k in &self.description.providers {
            if !desc.providers.iter().any(|p| p.kind == k.kind) {
                return fail(format!(
                    "no longer serves kind `{}` (it changed since dtk first ran it)",
                    k.kind
                ));
            }
        }
        conn.shared.set_ready();
        Ok(conn)
    }

    /// Sends one request and waits for its answer, its timeout, or the plugin's end.
    /// While it is in flight, the plugin may ask for the files of `content`.
    async fn call<P: Serialize>(
        &self,
        method: &str,
        params: &P,
        secrets: Vec<String>,
        content: Option<ModuleContent>,
        cancel: &Cancel,
        operation: &str,
    ) -> Result<serde_json::Value, ProviderError> {
        let failed = |message: String| ProviderError::Failed {
            operation: operation.to_owned(),
            message,
            retryable: false,
            source: None,
        };
        let conn = self
            .connection()
            .await
            .map_err(|why| failed(format!("{} {why}", self.label())))?;
        let rx = conn
            .shared
            .request(&conn.tx, method, params, secrets, content)
            .map_err(|d| failed(format!("{} {}", self.label(), d.describe())))?;
        let id = rx.id;
        // Dropped before the answer (the executor's own timeout, an abandoned run): the
        // plugin is told to stop.
        let mut guard = CancelOnDrop {
            conn: &conn,
            id,
            armed: true,
        };
        let deadline = tokio::time::sleep(self.options.call_timeout);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut answer = rx.rx;
        tokio::pin!(deadline);
        let mut cancel_sent = false;
        let outcome = loop {
            tokio::select! {
                r = &mut answer => break r,
                () = &mut deadline => {
                    return Err(ProviderError::Timeout {
                        operation: format!("{operation} (by {})", self.label()),
                        after: self.options.call_timeout,
                    });
                }
                _ = tick.tick(), if !cancel_sent => {
                    if cancel.is_cancelled() {
                        conn.shared.send_cancel(&conn.tx, id);
                        cancel_sent = true;
                    }
                }
            }
        };
        guard.armed = false;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(CallError::Remote(e))) => Err(self.remote_error(e, operation)),
            Ok(Err(CallError::Died(d))) => Err(failed(format!(
                "{} {} while the request was in flight{}",
                self.label(),
                d.describe(),
                match d {
                    Death::Exited(_) => "; its standard error is logged at debug level (dtk -vv)",
                    _ => "",
                }
            ))),
            Err(_) => Err(failed(format!(
                "{} stopped while the request was in flight",
                self.label()
            ))),
        }
    }

    fn remote_error(&self, e: serde_json::Value, operation: &str) -> ProviderError {
        match serde_json::from_value::<WireError>(e) {
            Ok(WireError::Unsupported { provider, what }) => {
                ProviderError::Unsupported { provider, what }
            }
            Ok(WireError::InvalidInput { resource, message }) => {
                ProviderError::InvalidInput { resource, message }
            }
            Ok(WireError::Failed {
                operation,
                message,
                retryable,
                source,
            }) => ProviderError::Failed {
                operation,
                message,
                retryable,
                source: source.map(|s| Box::new(RemoteError(s)) as _),
            },
            Ok(WireError::Timeout {
                operation,
                after_ms,
            }) => ProviderError::Timeout {
                operation,
                after: Duration::from_millis(after_ms),
            },
            Ok(WireError::Cancelled { operation }) => ProviderError::Cancelled { operation },
            Ok(WireError::Protocol { message }) => ProviderError::Failed {
                operation: operation.to_owned(),
                message: format!("{} refused the request: {message}", self.label()),
                retryable: false,
                source: None,
            },
            Err(_) => ProviderError::Failed {
                operation: operation.to_owned(),
                message: format!(
                    "{} answered with an error dtk cannot read (not one of the protocol's error kinds)",
                    self.label()
                ),
                retryable: false,
                source: None,
            },
        }
    }

    /// Reads a result of the shape `T`, or says the plugin answered something else.
    fn result<T: serde::de::DeserializeOwned>(
        &self,
        v: serde_json::Value,
        method: &str,
        operation: &str,
    ) -> Result<T, ProviderError> {
        serde_json::from_value(v).map_err(|e| {
            // The text of a serde error can quote the value: logged, never shown.
            tracing::debug!(plugin = %self.name, error = %e, "malformed `{method}` result");
            ProviderError::Failed {
                operation: operation.to_owned(),
                message: format!(
                    "{} answered `{method}` with a result dtk cannot read (see docs/providers.md for its shape)",
                    self.label()
                ),
                retryable: false,
                source: None,
            }
        })
    }
}

/// One provider kind of a plugin executable.
pub struct PluginProvider {
    provided: ProvidedKind,
    process: Arc<PluginProcess>,
    /// Set when the plugin said it does not run commands (in `hello`, or by answering
    /// `exec` with `unsupported`): dtk does not ask again.
    no_exec: AtomicBool,
}

impl fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginProvider")
            .field("kind", &self.provided.kind)
            .field("path", &self.process.path)
            .finish_non_exhaustive()
    }
}

impl PluginProvider {
    /// The executable serving this kind.
    pub fn process(&self) -> &Arc<PluginProcess> {
        &self.process
    }

    async fn resource_call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        req: &ResourceRequest<'_>,
    ) -> Result<T, ProviderError> {
        self.resource_call_with(
            method,
            ResourceParamsRef::new(&self.provided.kind, req),
            req,
        )
        .await
    }

    async fn resource_call_with<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: ResourceParamsRef<'_>,
        req: &ResourceRequest<'_>,
    ) -> Result<T, ProviderError> {
        let operation = format!(
            "{method} {}.{} for {}",
            self.provided.kind, req.resource, req.component
        );
        let v = self
            .process
            .call(
                method,
                &params,
                secret_texts(&req.secrets.0),
                None,
                req.cancel,
                &operation,
            )
            .await?;
        self.process.result(v, method, &operation)
    }
}

#[async_trait]
impl Provider for PluginProvider {
    fn kind(&self) -> &str {
        &self.provided.kind
    }

    fn resources(&self) -> Vec<String> {
        self.provided.resources.clone()
    }

    fn modules(&self) -> Vec<BundledModule> {
        self.provided
            .modules
            .iter()
            .map(BundledModule::from)
            .collect()
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let r: OutputsResult = self.resource_call("create", req).await?;
        Ok(r.outputs)
    }

    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        let r: ReadResult = self.resource_call("read", req).await?;
        Ok(r.into())
    }

    fn replace_on_change(&self, resource: &str) -> Vec<String> {
        self.provided
            .replace_on_change
            .get(resource)
            .cloned()
            .unwrap_or_default()
    }

    async fn import(
        &self,
        req: &ResourceRequest<'_>,
        id: &str,
        adopt: bool,
    ) -> Result<Observed, ProviderError> {
        let mut params = ResourceParamsRef::new(&self.provided.kind, req);
        params.import_id = Some(id);
        params.adopt = adopt;
        let r: ReadResult = self.resource_call_with("import", params, req).await?;
        Ok(r.into())
    }

    async fn update(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let r: OutputsResult = self.resource_call("update", req).await?;
        Ok(r.outputs)
    }

    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        let _: serde_json::Value = self.resource_call("delete", req).await?;
        Ok(())
    }

    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        let unsupported = || ProviderError::Unsupported {
            provider: self.provided.kind.clone(),
            what: "running commands".to_owned(),
        };
        if self.no_exec.load(Ordering::Relaxed) {
            return Err(unsupported());
        }
        let operation = format!("exec on node {} of {}", req.node, req.service);
        if self.process.description.protocol < 2 {
            // Version 1's `exec` had shell lines only: it cannot run in the module's files.
            // dtk runs the commands through its own transports, as for a kind without
            // `exec`, and says why once.
            if !self.no_exec.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{} speaks protocol {}, whose `exec` cannot carry a module's files: dtk \
                     runs the commands of kind `{}` through its own transports (update the \
                     plugin to protocol 2 to run them itself)",
                    self.process.label(),
                    self.process.description.protocol,
                    self.provided.kind
                );
            }
            return Err(unsupported());
        }
        let params = ExecParamsRef::new(&self.provided.kind, req);
        // The environment holds secrets too: redact every value from the plugin's logs.
        let secrets = req
            .env
            .iter()
            .map(|(_, v)| v.clone())
            .filter(|v| v.len() >= 4)
            .collect();
        let v = match self
            .process
            .call(
                "exec",
                &params,
                secrets,
                req.module.cloned(),
                req.cancel,
                &operation,
            )
            .await
        {
            Err(ProviderError::Unsupported { .. }) => {
                self.no_exec.store(true, Ordering::Relaxed);
                return Err(unsupported());
            }
            r => r?,
        };
        let r: ExecResult = self.process.result(v, "exec", &operation)?;
        r.into_output().map_err(|field| ProviderError::Failed {
            operation: operation.clone(),
            message: format!(
                "{} answered `exec` with a `{field}` that is not base64",
                self.process.label()
            ),
            retryable: false,
            source: None,
        })
    }
}

/// A running plugin: the way to its standard input, and what its tasks share.
struct Conn {
    tx: mpsc::UnboundedSender<String>,
    shared: Arc<Shared>,
}

impl Conn {
    fn is_alive(&self) -> bool {
        !self.tx.is_closed() && self.shared.death().is_none()
    }
}

/// What went wrong with a request: the plugin's own error, or its end.
enum CallError {
    Remote(serde_json::Value),
    Died(Death),
}

/// Why a plugin process is over.
#[derive(Debug, Clone)]
enum Death {
    /// It exited (or closed its output); how.
    Exited(String),
    /// A line of its output is not a protocol message.
    Garbage { line: u64, len: usize, why: String },
    /// It did not answer a ping in time.
    Unresponsive(Duration),
    /// Its handshake failed.
    Refused(String),
}

impl Death {
    fn describe(&self) -> String {
        match self {
            Death::Exited(how) => how.clone(),
            Death::Garbage { line, len, why } => format!(
                "wrote line {line} of its standard output ({len} bytes), which is not a protocol \
                 message: {why}; dtk stopped it (the line is logged at debug level, dtk -vv)"
            ),
            Death::Unresponsive(after) => {
                format!("did not answer a ping within {after:?}: it hangs; dtk stopped it")
            }
            Death::Refused(why) => why.clone(),
        }
    }
}

/// A request sent, waiting for its answer.
struct Sent {
    id: u64,
    rx: oneshot::Receiver<Result<serde_json::Value, CallError>>,
}

/// What the tasks of one plugin process share.
struct Shared {
    name: String,
    pgid: Option<i32>,
    next_id: AtomicU64,
    state: Mutex<ConnState>,
    exited: watch::Sender<bool>,
}

#[derive(Default)]
struct ConnState {
    pending: HashMap<u64, oneshot::Sender<Result<serde_json::Value, CallError>>>,
    death: Option<Death>,
    /// The ping in flight: its id and when it was sent.
    ping: Option<(u64, Instant)>,
    last_ping: Option<Instant>,
    ready: bool,
    /// Every secret sent to this process, to keep them out of its logged output.
    secrets: BTreeSet<String>,
    /// The module files of the `exec` requests in flight, by request id: the plugin may
    /// read these (`module_file`), and nothing else.
    contents: HashMap<u64, ModuleContent>,
}

impl Shared {
    fn new(name: String, pgid: Option<i32>) -> Self {
        Shared {
            name,
            pgid,
            next_id: AtomicU64::new(1),
            state: Mutex::new(ConnState::default()),
            exited: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        // A panic while holding this lock cannot leave the map inconsistent: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn death(&self) -> Option<Death> {
        self.lock().death.clone()
    }

    fn set_ready(&self) {
        self.lock().ready = true;
    }

    fn request<P: Serialize>(
        &self,
        tx: &mpsc::UnboundedSender<String>,
        method: &str,
        params: &P,
        secrets: Vec<String>,
        content: Option<ModuleContent>,
    ) -> Result<Sent, Death> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = serde_json::to_string(&Outgoing {
            id: Some(id),
            method,
            params,
        })
        .map_err(|e| Death::Refused(format!("cannot be sent the request: {e}")))?;
        let (otx, orx) = oneshot::channel();
        {
            let mut st = self.lock();
            if let Some(d) = &st.death {
                return Err(d.clone());
            }
            st.pending.insert(id, otx);
            st.secrets.extend(secrets);
            if let Some(c) = content {
                st.contents.insert(id, c);
            }
        }
        if tx.send(line).is_err() {
            let mut st = self.lock();
            st.pending.remove(&id);
            st.contents.remove(&id);
            return Err(Death::Exited("is no longer running".to_owned()));
        }
        Ok(Sent { id, rx: orx })
    }

    fn send_cancel(&self, tx: &mpsc::UnboundedSender<String>, id: u64) {
        let line = serde_json::to_string(&Outgoing {
            id: None,
            method: "cancel",
            params: &CancelParams { id },
        });
        if let Ok(line) = line {
            let _ = tx.send(line);
        }
    }

    fn complete(&self, id: u64, outcome: Result<serde_json::Value, serde_json::Value>) {
        let mut st = self.lock();
        if st.ping.is_some_and(|(p, _)| p == id) {
            st.ping = None;
            return;
        }
        st.contents.remove(&id);
        match st.pending.remove(&id) {
            Some(tx) => {
                let _ = tx.send(outcome.map_err(CallError::Remote));
            }
            None => {
                tracing::debug!(plugin = %self.name, id, "answer to a request nobody waits for");
            }
        }
    }

    /// Marks the process over (the first reason wins), fails every request in flight,
    /// and kills its process group.
    fn die(&self, death: Death) {
        let pending = {
            let mut st = self.lock();
            if st.death.is_some() {
                return;
            }
            st.death = Some(death.clone());
            st.contents.clear();
            std::mem::take(&mut st.pending)
        };
        tracing::debug!(plugin = %self.name, reason = %death.describe(), "plugin stopped");
        for (_, tx) in pending {
            let _ = tx.send(Err(CallError::Died(death.clone())));
        }
        self.kill();
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn redact(&self, text: &str) -> String {
        let st = self.lock();
        let mut out = text.to_owned();
        for s in &st.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "********");
            }
        }
        out
    }
}

/// Tells the plugin to stop a request whose caller went away.
struct CancelOnDrop<'a> {
    conn: &'a Conn,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            {
                let mut st = self.conn.shared.lock();
                st.pending.remove(&self.id);
                st.contents.remove(&self.id);
            }
            self.conn.shared.send_cancel(&self.conn.tx, self.id);
        }
    }
}

async fn write_input(mut stdin: ChildStdin, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
    // Every sender is gone: closing standard input asks the plugin to exit.
}

enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// Reads one line (without its `\n`) into `buf`; `Ok(false)` at the end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, LineError> {
    loop {
        let avail = r.fill_buf().await.map_err(LineError::Io)?;
        if avail.is_empty() {
            return Ok(!buf.is_empty());
        }
        if let Some(i) = avail.iter().position(|b| *b == b'\n') {
            buf.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            return Ok(true);
        }
        let n = avail.len();
        buf.extend_from_slice(avail);
        r.consume(n);
        if buf.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
    }
}

async fn read_output(
    stdout: ChildStdout,
    mut child: Child,
    shared: Arc<Shared>,
    tx: mpsc::WeakUnboundedSender<String>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let trouble = loop {
        buf.clear();
        match read_line(&mut reader, &mut buf).await {
            Ok(false) => break None,
            Ok(true) => {}
            Err(LineError::TooLong) => {
                break Some(Death::Garbage {
                    line: line_no + 1,
                    len: buf.len(),
                    why: "it is longer than the protocol's 64 MiB".to_owned(),
                });
            }
            Err(LineError::Io(e)) => {
                break Some(Death::Exited(format!("cannot be read from ({e})")));
            }
        }
        line_no += 1;
        match parse_host_message(&buf) {
            Ok(HostMessage::Response { id, outcome }) => shared.complete(id, outcome),
            Ok(HostMessage::Request { id, method, params }) => {
                answer_plugin(&shared, &tx, id, &method, params);
            }
            Ok(HostMessage::Notification(method)) => {
                tracing::debug!(plugin = %shared.name, method, "notification ignored");
            }
            Ok(HostMessage::Blank) => {}
            Err(why) => {
                let text = String::from_utf8_lossy(&buf[..buf.len().min(4096)]);
                tracing::debug!(target: STDERR_TARGET, plugin = %shared.name, line = line_no, "not a protocol message: {}", shared.redact(&text));
                break Some(Death::Garbage {
                    line: line_no,
                    len: buf.len(),
                    why: why.to_string(),
                });
            }
        }
    };
    if let Some(d) = trouble {
        shared.die(d);
    }
    let how = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => describe_exit(status),
        Ok(Err(e)) => format!("cannot be waited for ({e})"),
        Err(_) => {
            shared.kill();
            let _ = child.wait().await;
            "closed its standard output but kept running; dtk stopped it".to_owned()
        }
    };
    shared.die(Death::Exited(how));
    shared.exited.send_replace(true);
}

/// Answers a request of the plugin: `module_file`, the bytes of a file of the module of an
/// `exec` in flight (read off the reading task: a file can be large).
fn answer_plugin(
    shared: &Arc<Shared>,
    tx: &mpsc::WeakUnboundedSender<String>,
    id: u64,
    method: &str,
    params: serde_json::Value,
) {
    let reply = |outcome: Result<serde_json::Value, WireError>| {
        if let Some(tx) = tx.upgrade() {
            let _ = tx.send(response_line(id, &outcome));
        }
    };
    if method != "module_file" {
        return reply(Err(WireError::protocol(format!(
            "dtk answers no `{method}` (a plugin may ask for `module_file` only)"
        ))));
    }
    let Ok(p) = serde_json::from_value::<ModuleFileParams>(params) else {
        return reply(Err(WireError::protocol(
            "malformed `module_file`: it needs `request` and `id`",
        )));
    };
    let content = shared.lock().contents.get(&p.request).cloned();
    let Some(content) = content else {
        return reply(Err(WireError::protocol(format!(
            "`module_file`: request {} is not an `exec` with a module in flight",
            p.request
        ))));
    };
    if !content.files.iter().any(|f| f.id == p.id) {
        return reply(Err(WireError::protocol(format!(
            "`module_file`: {} is not a file of module {}",
            p.id, content.module
        ))));
    }
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let outcome = match content.store.read(&p.id) {
            Ok(bytes) => serde_json::to_value(ModuleFileResult {
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
            })
            .map_err(|e| WireError::protocol(e.to_string())),
            Err(e) => Err(WireError::Failed {
                operation: format!("read module {}", content.module),
                message: e.to_string(),
                retryable: false,
                source: Some(crate::wire::chain(e.source.as_ref())),
            }),
        };
        if let Some(tx) = tx.upgrade() {
            let _ = tx.send(response_line(id, &outcome));
        }
    });
}

/// `exited with status 3`, `was killed by signal 9 (SIGKILL)`.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("was killed by signal {sig} ({s})"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        None => format!("ended ({status})"),
    }
}

async fn read_stderr(stderr: ChildStderr, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let more = match read_line(&mut reader, &mut buf).await {
            Ok(more) => more,
            Err(LineError::TooLong) => true,
            Err(LineError::Io(_)) => false,
        };
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf[..buf.len().min(4096)]);
            tracing::debug!(target: STDERR_TARGET, plugin = %shared.name, "{}", shared.redact(&text));
        }
        if !more {
            return;
        }
    }
}

/// While requests are in flight, pings the plugin; stops it when a ping goes unanswered
/// for `unresponsive_after`.
async fn watchdog(
    tx: mpsc::WeakUnboundedSender<String>,
    shared: Arc<Shared>,
    options: PluginOptions,
) {
    let step = (options.ping_interval / 4)
        .min(options.unresponsive_after / 4)
        .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(tx) = tx.upgrade() else { return };
        enum Act {
            Nothing,
            Ping(u64),
            Hung,
        }
        let act = {
            let mut st = shared.lock();
            if st.death.is_some() {
                return;
            }
            match st.ping {
                Some((_, sent)) if sent.elapsed() >= options.unresponsive_after => Act::Hung,
                Some(_) => Act::Nothing,
                None if st.ready
                    && !st.pending.is_empty()
                    && st
                        .last_ping
                        .is_none_or(|t| t.elapsed() >= options.ping_interval) =>
                {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    st.ping = Some((id, now));
                    st.last_ping = Some(now);
                    Act::Ping(id)
                }
                None => Act::Nothing,
            }
        };
        match act {
            Act::Nothing => {}
            Act::Ping(id) => {
                if let Ok(line) = serde_json::to_string(&Outgoing {
                    id: Some(id),
                    method: "ping",
                    params: &serde_json::json!({}),
                }) {
                    let _ = tx.send(line);
                }
            }
            Act::Hung => {
                shared.die(Death::Unresponsive(options.unresponsive_after));
                return;
            }
        }
    }
}

/// The text of an error a plugin sent, for a message.
fn remote_text(e: serde_json::Value) -> String {
    match serde_json::from_value::<WireError>(e) {
        Ok(WireError::Protocol { message }) => message,
        Ok(other) => {
            let pe: Option<ProviderError> = match other {
                WireError::Failed {
                    operation, message, ..
                } => Some(ProviderError::failed(operation, message)),
                _ => None,
            };
            pe.map(|e| e.to_string())
                .unwrap_or_else(|| "an error".to_owned())
        }
        Err(_) => "an error dtk cannot read".to_owned(),
    }
}
