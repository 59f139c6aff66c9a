//! The plugin side: [`serve`] turns a [`Provider`] into a `dtk-provider-KIND` executable.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use dtk_model::content::{ContentError, ContentStore};
use dtk_model::provider::{Cancel, ExecRequest, ResourceRequest, Secrets};
use dtk_model::{Provider, ProviderError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::wire::{
    CancelParams, ExecParams, ExecResult, HelloParams, Incoming, MAX_LINE, ModuleFileParams,
    ModuleFileResult, Outgoing, OutputsResult, PROTOCOL_VERSION, PluginDescription, PluginName,
    ProvidedKind, ReadResult, RemoteError, ResourceParams, SUPPORTED_PROTOCOLS, WireError,
    WireModule, response_line,
};

/// How long in-flight requests get to finish once dtk has closed the plugin's standard
/// input (dtk is gone: nobody will read their answers).
const EOF_GRACE: Duration = Duration::from_secs(2);

/// How long in-flight requests get to finish after a `shutdown` request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What dtk tells a plugin when it starts it: where its state lives.
#[derive(Debug, Clone)]
pub struct PluginContext {
    home: PathBuf,
    providers_dir: PathBuf,
    dtk_version: String,
}

impl PluginContext {
    /// A context for the dtk home `home` (what dtk sends; also for tests).
    pub fn new(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        PluginContext {
            providers_dir: home.join("providers"),
            home,
            dtk_version: String::new(),
        }
    }

    /// `DTK_HOME` of the dtk that started the plugin.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where the provider of `kind` keeps its files (`DTK_HOME/providers/KIND`, as
    /// [`dtk_model::provider::provider_state_dir`] says); it may not exist yet.
    pub fn state_dir(&self, kind: &str) -> PathBuf {
        self.providers_dir.join(kind)
    }

    /// The version of the dtk that started the plugin (empty when it did not say).
    pub fn dtk_version(&self) -> &str {
        &self.dtk_version
    }
}

/// The providers one plugin executable serves, with its name and version.
///
/// `Plugin::new(MyProvider)` serves one kind; [`and`](Plugin::and) adds more.
pub struct Plugin {
    name: String,
    version: String,
    providers: Vec<Served>,
}

struct Served {
    provider: Arc<dyn Provider>,
    exec: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field(
                "kinds",
                &self
                    .providers
                    .iter()
                    .map(|s| s.provider.kind().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Plugin {
    /// A plugin serving `provider`'s kind. Its name defaults to the executable's file
    /// name, its version to none.
    pub fn new(provider: impl Provider) -> Self {
        Plugin {
            name: String::new(),
            version: String::new(),
            providers: vec![Served {
                provider: Arc::new(provider),
                exec: true,
            }],
        }
    }

    /// This plugin serving `provider`'s kind too.
    pub fn and(mut self, provider: impl Provider) -> Self {
        self.providers.push(Served {
            provider: Arc::new(provider),
            exec: true,
        });
        self
    }

    /// Says that the provider added last does not run commands on its nodes
    /// ([`Provider::exec`] is the trait's default): dtk then never asks it to, and runs
    /// commands on its nodes through its own transports (an SSH address in the node's
    /// outputs). Without it, dtk asks once per run and remembers the answer.
    pub fn without_exec(mut self) -> Self {
        if let Some(last) = self.providers.last_mut() {
            last.exec = false;
        }
        self
    }

    /// This plugin with a name and a version, shown by `dtk provider list`
    /// (e.g. `.named("dtk-provider-hello", env!("CARGO_PKG_VERSION"))`).
    pub fn named(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.name = name.into();
        self.version = version.into();
        self
    }

    fn description(&self) -> PluginDescription {
        PluginDescription {
            protocol: PROTOCOL_VERSION,
            plugin: PluginName {
                name: self.name.clone(),
                version: self.version.clone(),
            },
            providers: self
                .providers
                .iter()
                .map(|s| ProvidedKind {
                    kind: s.provider.kind().to_owned(),
                    resources: s.provider.resources(),
                    exec: s.exec,
                    modules: s
                        .provider
                        .modules()
                        .into_iter()
                        .map(WireModule::from)
                        .collect(),
                    replace_on_change: s
                        .provider
                        .resources()
                        .into_iter()
                        .filter_map(|r| {
                            let attrs = s.provider.replace_on_change(&r);
                            (!attrs.is_empty()).then_some((r, attrs))
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl<P: Provider> From<P> for Plugin {
    fn from(p: P) -> Self {
        Plugin::new(p)
    }
}

/// The error a plugin's setup returns (see [`serve_with`]).
pub type SetupError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `plugin` over standard input and output until dtk closes standard input or
/// asks it to shut down: the whole `main` of a provider executable.
///
/// ```text
/// fn main() -> std::process::ExitCode {
///     dtk_provider_plugin::serve(provider_hello::HelloProvider::new())
/// }
/// ```
///
/// The process's standard output is the protocol's: `serve` moves what the provider
/// prints there (`println!`) to standard error, which dtk logs at debug level, and
/// standard input to `/dev/null`. Unless the program installed one, it installs a
/// `tracing` subscriber that writes the provider's events (`info` and above) to standard
/// error too.
pub fn serve(plugin: impl Into<Plugin>) -> ExitCode {
    let plugin = plugin.into();
    serve_with(move |_| Ok(plugin))
}

/// Like [`serve`], for a provider that needs to know where dtk keeps its state: `setup`
/// gets the [`PluginContext`] of the `hello` handshake (`DTK_HOME`, each kind's state
/// directory) and makes the plugin. A setup error is reported to dtk, which shows it.
pub fn serve_with<F>(setup: F) -> ExitCode
where
    F: FnOnce(&PluginContext) -> Result<Plugin, SetupError> + Send + 'static,
{
    let (input, output) = match take_stdio() {
        Ok(io) => io,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "dtk plugin: cannot take over standard input and output: {e}"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "dtk plugin: cannot start the async runtime: {e}"
            );
            return ExitCode::from(2);
        }
    };
    // The provider's `tracing` events go to standard error, which dtk logs (at debug
    // level, redacted); a plugin that installed its own subscriber keeps it.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let name = executable_name();
    let result = runtime.block_on(serve_io(setup, name, input, output));
    // Requests still running past their grace are abandoned: dtk is not waiting.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "dtk plugin: {e}");
            ExitCode::from(2)
        }
    }
}

/// The file name of this executable, the plugin's default name.
fn executable_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Keeps the protocol's standard input and output for itself: what the process writes to
/// fd 1 afterwards goes to fd 2, and fd 0 reads `/dev/null`.
fn take_stdio() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use nix::unistd::{dup, dup2_stdin, dup2_stdout};
    let input = dup(std::io::stdin())?;
    let output = dup(std::io::stdout())?;
    dup2_stdout(std::io::stderr())?;
    let null = std::fs::File::open("/dev/null")?;
    dup2_stdin(&null)?;
    Ok((std::fs::File::from(input), std::fs::File::from(output)))
}

/// Why [`serve_io`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// dtk wrote something that is not a protocol message.
    #[error("dtk sent line {line}, which is not a protocol message ({reason})")]
    Protocol {
        /// The line number on standard input.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading standard input failed.
    #[error("cannot read standard input")]
    Read(#[source] std::io::Error),
}

enum Out {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

/// A line of dtk's, read and parsed by the input thread.
enum InLine {
    Msg(Incoming),
    Blank,
    Bad { line: u64, reason: String },
}

type HostAnswer = Result<serde_json::Value, serde_json::Value>;

/// The plugin's own requests to dtk (`module_file`), answered on standard input. The
/// input thread completes them, so a provider may wait for one synchronously.
struct HostCalls {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, std::sync::mpsc::Sender<HostAnswer>>>,
    closed: AtomicBool,
    out: Mutex<std::sync::mpsc::Sender<Out>>,
}

/// How long a plugin waits for dtk's answer to one of its requests.
const HOST_CALL_TIMEOUT: Duration = Duration::from_secs(600);

impl HostCalls {
    fn complete(&self, id: u64, answer: HostAnswer) {
        let tx = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(tx) = tx {
            let _ = tx.send(answer);
        }
    }

    /// dtk is gone: every waiting request fails.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }

    /// Sends a request to dtk and waits for its answer (blocking the thread; inside a
    /// multi-threaded runtime, through `block_in_place`).
    fn call(
        &self,
        method: &str,
        params: &impl serde::Serialize,
    ) -> Result<serde_json::Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = serde_json::to_string(&Outgoing {
            id: Some(id),
            method,
            params,
        })
        .map_err(|e| e.to_string())?;
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| "a request panicked".to_owned())?;
            if self.closed.load(Ordering::SeqCst) {
                return Err("dtk is gone".to_owned());
            }
            p.insert(id, tx);
        }
        let sent = self
            .out
            .lock()
            .map_err(|_| "a request panicked".to_owned())?
            .send(Out::Line(line));
        if sent.is_err() {
            return Err("the output is closed".to_owned());
        }
        let wait = || rx.recv_timeout(HOST_CALL_TIMEOUT);
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(match serde_json::from_value::<WireError>(e) {
                Ok(WireError::Protocol { message }) => message,
                Ok(WireError::Failed {
                    message, source, ..
                }) => match source {
                    Some(s) => format!("{message}: {s}"),
                    None => message,
                },
                _ => "dtk answered with an error".to_owned(),
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                Err(format!(
                    "dtk did not answer `{method}` within {HOST_CALL_TIMEOUT:?}"
                ))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err("dtk is gone".to_owned()),
        }
    }
}

/// The files of an `exec`'s module, read from dtk as the provider needs them.
struct HostStore {
    host: Arc<HostCalls>,
    request: u64,
}

impl ContentStore for HostStore {
    fn read(&self, id: &str) -> Result<Vec<u8>, ContentError> {
        let fail = |why: String| ContentError {
            id: id.to_owned(),
            source: Box::new(RemoteError(why)),
        };
        let v = self
            .host
            .call(
                "module_file",
                &ModuleFileParams {
                    request: self.request,
                    id: id.to_owned(),
                },
            )
            .map_err(fail)?;
        let r: ModuleFileResult = serde_json::from_value(v)
            .map_err(|_| fail("dtk answered `module_file` with no `data`".to_owned()))?;
        base64::engine::general_purpose::STANDARD
            .decode(r.data)
            .map_err(|_| fail("dtk answered `module_file` with data that is not base64".to_owned()))
    }
}

/// Serves the plugin `setup` makes over `input` and `output` (the process's standard
/// streams in [`serve_with`]; pipes in tests). Returns when `input` ends or after a
/// `shutdown` request, once in-flight requests are answered (or their grace is over).
pub async fn serve_io<F>(
    setup: F,
    default_name: String,
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> Result<(), ServeError>
where
    F: FnOnce(&PluginContext) -> Result<Plugin, SetupError> + Send + 'static,
{
    let (out_tx, out_rx) = std::sync::mpsc::channel::<Out>();
    let host = Arc::new(HostCalls {
        next_id: AtomicU64::new(1),
        pending: Mutex::default(),
        closed: AtomicBool::new(false),
        out: Mutex::new(out_tx.clone()),
    });
    let (lines_tx, mut lines) = mpsc::channel::<std::io::Result<Option<InLine>>>(16);
    {
        let host = host.clone();
        std::thread::Builder::new()
            .name("dtk-plugin-stdin".into())
            .spawn(move || {
                read_lines(input, &lines_tx, &host);
                host.close();
            })
            .map_err(ServeError::Read)?;
    }
    std::thread::Builder::new()
        .name("dtk-plugin-stdout".into())
        .spawn(move || write_lines(output, &out_rx))
        .map_err(ServeError::Read)?;
    let send = {
        let out_tx = out_tx.clone();
        move |line: String| {
            let _ = out_tx.send(Out::Line(line));
        }
    };

    let mut setup = Some(setup);
    let mut kinds: Option<Arc<BTreeMap<String, Arc<dyn Provider>>>> = None;
    let in_flight: Arc<Mutex<HashMap<u64, Cancel>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut shutdown: Option<u64> = None;
    let mut failure = None;

    loop {
        while tasks.try_join_next().is_some() {}
        let line = match lines.recv().await {
            Some(Ok(Some(line))) => line,
            Some(Ok(None)) | None => break,
            Some(Err(e)) => {
                failure = Some(ServeError::Read(e));
                break;
            }
        };
        let msg = match line {
            InLine::Msg(m) => m,
            InLine::Blank => continue,
            InLine::Bad { line, reason } => {
                failure = Some(ServeError::Protocol { line, reason });
                break;
            }
        };
        let method = msg.method.unwrap_or_default();
        let Some(id) = msg.id else {
            // Notifications: `cancel`, and any later ones this version ignores.
            if method == "cancel"
                && let Ok(p) = serde_json::from_value::<CancelParams>(msg.params)
                && let Ok(map) = in_flight.lock()
                && let Some(c) = map.get(&p.id)
            {
                c.cancel();
            }
            continue;
        };
        match method.as_str() {
            "hello" => {
                let outcome = hello(&mut setup, &default_name, msg.params).map(|(desc, map)| {
                    kinds = Some(Arc::new(map));
                    serde_json::to_value(desc).unwrap_or_default()
                });
                send(response_line(id, &outcome));
            }
            "ping" => send(response_line(id, &Ok(serde_json::json!({})))),
            "shutdown" => {
                shutdown = Some(id);
                break;
            }
            method @ ("create" | "read" | "update" | "delete" | "import" | "exec") => {
                let Some(kinds) = kinds.clone() else {
                    send(response_line(
                        id,
                        &Err(WireError::protocol(format!(
                            "`{method}` before `hello`: dtk must say hello first"
                        ))),
                    ));
                    continue;
                };
                let cancel = Cancel::new();
                if let Ok(mut map) = in_flight.lock() {
                    map.insert(id, cancel.clone());
                }
                let method = method.to_owned();
                let params = msg.params;
                let in_flight = in_flight.clone();
                let send = send.clone();
                let host = host.clone();
                tasks.spawn(async move {
                    let op = tokio::spawn(dispatch(
                        kinds,
                        method.clone(),
                        params,
                        cancel,
                        HostStore { host, request: id },
                    ));
                    let outcome = match op.await {
                        Ok(r) => r,
                        Err(e) if e.is_panic() => Err(WireError::Failed {
                            operation: method,
                            message: "the provider panicked (its message is on the plugin's standard error)"
                                .to_owned(),
                            retryable: false,
                            source: None,
                        }),
                        Err(_) => Err(WireError::Cancelled { operation: method }),
                    };
                    if let Ok(mut map) = in_flight.lock() {
                        map.remove(&id);
                    }
                    send(response_line(id, &outcome));
                });
            }
            other => send(response_line(
                id,
                &Err(WireError::protocol(format!(
                    "unknown method `{other}` (this plugin speaks protocol {PROTOCOL_VERSION})"
                ))),
            )),
        }
    }

    // The end: stop what runs, give it its grace, answer `shutdown`, flush.
    if let Ok(map) = in_flight.lock() {
        for c in map.values() {
            c.cancel();
        }
    }
    let grace = if shutdown.is_some() {
        SHUTDOWN_GRACE
    } else {
        EOF_GRACE
    };
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if let Some(id) = shutdown {
        send(response_line(id, &Ok(serde_json::json!({}))));
    }
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    if out_tx.send(Out::Flush(ack_tx)).is_ok() {
        let _ =
            tokio::task::spawn_blocking(move || ack_rx.recv_timeout(Duration::from_secs(1))).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Answers `hello`: checks the protocol version, makes the plugin, describes it.
#[allow(clippy::type_complexity)]
fn hello<F>(
    setup: &mut Option<F>,
    default_name: &str,
    params: serde_json::Value,
) -> Result<(PluginDescription, BTreeMap<String, Arc<dyn Provider>>), WireError>
where
    F: FnOnce(&PluginContext) -> Result<Plugin, SetupError>,
{
    let params: HelloParams = serde_json::from_value(params)
        .map_err(|e| WireError::protocol(format!("malformed `hello`: {e}")))?;
    if !params.protocols.contains(&PROTOCOL_VERSION) {
        return Err(WireError::protocol(format!(
            "this plugin speaks protocol {PROTOCOL_VERSION}; dtk offers {:?}",
            params.protocols
        )));
    }
    let Some(setup) = setup.take() else {
        return Err(WireError::protocol("`hello` was already received"));
    };
    let ctx = PluginContext {
        home: params.home,
        providers_dir: params.providers_dir,
        dtk_version: params.dtk_version,
    };
    let mut plugin = setup(&ctx).map_err(|e| {
        WireError::protocol(format!(
            "the plugin cannot start: {}",
            crate::wire::chain(e.as_ref())
        ))
    })?;
    if plugin.name.is_empty() {
        plugin.name = default_name.to_owned();
    }
    let desc = plugin.description();
    let map = plugin
        .providers
        .into_iter()
        .map(|s| (s.provider.kind().to_owned(), s.provider))
        .collect();
    debug_assert!(SUPPORTED_PROTOCOLS.contains(&desc.protocol));
    Ok((desc, map))
}

/// Runs one request against its provider; an `exec`'s module files are read through
/// `store`.
async fn dispatch(
    kinds: Arc<BTreeMap<String, Arc<dyn Provider>>>,
    method: String,
    params: serde_json::Value,
    cancel: Cancel,
    store: HostStore,
) -> Result<serde_json::Value, WireError> {
    let bad = |e: serde_json::Error| WireError::protocol(format!("malformed `{method}`: {e}"));
    let provider = |kind: &str| {
        kinds.get(kind).cloned().ok_or_else(|| {
            WireError::protocol(format!(
                "this plugin does not serve kind `{kind}` (it serves: {})",
                kinds.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    if method == "exec" {
        let p: ExecParams = serde_json::from_value(params).map_err(bad)?;
        let provider = provider(&p.kind)?;
        let steps = p
            .steps
            .into_iter()
            .map(crate::wire::WireStep::into_step)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WireError::protocol(format!("malformed `exec`: {e}")))?;
        let module = match p.module {
            Some(m) => Some(
                m.into_content(Arc::new(store))
                    .map_err(|e| WireError::protocol(format!("malformed `exec`: {e}")))?,
            ),
            None => None,
        };
        let req = ExecRequest {
            service: &p.service,
            node: &p.node,
            node_outputs: &p.node_outputs,
            node_inputs: &p.node_inputs,
            steps: &steps,
            module: module.as_ref(),
            env: &p.env,
            timeout: Duration::from_millis(p.timeout_ms),
            cancel: &cancel,
        };
        let out = provider.exec(&req).await.map_err(|e| wire(&e))?;
        return Ok(to_value(&ExecResult::from(&out)));
    }
    let p: ResourceParams = serde_json::from_value(params).map_err(bad)?;
    let provider = provider(&p.kind)?;
    let secrets = Secrets(p.secrets);
    let nodes: Vec<dtk_model::instance::NodeInstance> =
        p.service_nodes.into_iter().map(Into::into).collect();
    let req = ResourceRequest {
        service: &p.service,
        component: &p.component,
        node: p.node.as_deref(),
        resource: &p.resource,
        idempotency_key: &p.idempotency_key,
        inputs: &p.inputs,
        secrets: &secrets,
        prior: p.prior.as_ref(),
        service_nodes: &nodes,
        cancel: &cancel,
    };
    match method.as_str() {
        "create" => {
            let outputs = provider.create(&req).await.map_err(|e| wire(&e))?;
            Ok(to_value(&OutputsResult { outputs }))
        }
        "update" => {
            let outputs = provider.update(&req).await.map_err(|e| wire(&e))?;
            Ok(to_value(&OutputsResult { outputs }))
        }
        "read" => {
            let observed = provider.read(&req).await.map_err(|e| wire(&e))?;
            Ok(to_value(&ReadResult::from(observed)))
        }
        "import" => {
            let id = p
                .import_id
                .as_deref()
                .ok_or_else(|| WireError::protocol("malformed `import`: no `import_id`"))?;
            let observed = provider
                .import(&req, id, p.adopt)
                .await
                .map_err(|e| wire(&e))?;
            Ok(to_value(&ReadResult::from(observed)))
        }
        "delete" => {
            provider.delete(&req).await.map_err(|e| wire(&e))?;
            Ok(serde_json::json!({}))
        }
        other => Err(WireError::protocol(format!("unknown method `{other}`"))),
    }
}

fn wire(e: &ProviderError) -> WireError {
    WireError::from(e)
}

/// A result as JSON. Attribute maps have string keys: serializing them cannot fail.
fn to_value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Reads `\n`-terminated lines of at most [`MAX_LINE`] bytes and parses them into `tx`
/// until end of input (`Ok(None)`) or an error; dtk's answers to the plugin's own
/// requests go straight to `host`.
fn read_lines(
    input: impl Read,
    tx: &mpsc::Sender<std::io::Result<Option<InLine>>>,
    host: &HostCalls,
) {
    let mut reader = BufReader::new(input);
    let mut line_no = 0u64;
    loop {
        let mut line = Vec::new();
        let r = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        line_no += 1;
        let msg = match r {
            Ok(0) => Ok(None),
            Ok(_) if line.len() > MAX_LINE => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a line longer than the protocol's 64 MiB",
            )),
            Ok(_) => Ok(Some(parse_line(&line, line_no))),
            Err(e) => Err(e),
        };
        if let Ok(Some(InLine::Msg(Incoming {
            id: Some(id),
            method: None,
            result,
            error,
            ..
        }))) = &msg
        {
            let answer = match (result, error) {
                (_, Some(e)) => Err(e.clone()),
                (Some(r), None) => Ok(r.clone()),
                (None, None) => Ok(serde_json::Value::Null),
            };
            host.complete(*id, answer);
            continue;
        }
        let last = !matches!(msg, Ok(Some(_)));
        if tx.blocking_send(msg).is_err() || last {
            return;
        }
    }
}

/// One line of dtk's, parsed.
fn parse_line(line: &[u8], line_no: u64) -> InLine {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return InLine::Blank;
    }
    match serde_json::from_slice::<Incoming>(line) {
        Ok(m) if m.method.is_some() || m.id.is_some() => InLine::Msg(m),
        Ok(_) => InLine::Bad {
            line: line_no,
            reason: "a message with neither `id` nor `method`".to_owned(),
        },
        Err(e) => InLine::Bad {
            line: line_no,
            reason: format!("{:?} error at column {}", e.classify(), e.column()),
        },
    }
}

/// Writes lines (each followed by `\n`, flushed) until every sender is gone or the
/// output breaks (dtk is gone).
fn write_lines(output: impl Write, rx: &std::sync::mpsc::Receiver<Out>) {
    let mut output = std::io::BufWriter::new(output);
    let mut broken = false;
    while let Ok(msg) = rx.recv() {
        match msg {
            Out::Line(line) if !broken => {
                broken = output
                    .write_all(line.as_bytes())
                    .and_then(|()| output.write_all(b"\n"))
                    .and_then(|()| output.flush())
                    .is_err();
            }
            Out::Line(_) => {}
            Out::Flush(ack) => {
                let _ = output.flush();
                let _ = ack.send(());
            }
        }
    }
}
