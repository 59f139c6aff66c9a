//! The messages of the plugin protocol as they travel: one JSON object per line, UTF-8,
//! ended by `\n` (docs/providers.md describes every field and shows a transcript).
//!
//! These types are the wire format only: the host and the plugin convert them to and from
//! the domain types of `dtk_model::provider` at the edge.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use dtk_model::content::{ContentStore, ModuleContent, ModuleFile};
use dtk_model::ident::ModuleId;
use dtk_model::instance::{ComponentId, NodeInstance};
use dtk_model::provider::{
    ExecOutput, ExecRequest, ExecStep, Observed, PutContent, PutFile, ResourceRequest,
};
use dtk_model::{Attributes, BundledModule, ProviderError};
use serde::{Deserialize, Serialize};

/// The version of the protocol this crate's plugin side speaks: 2 (`exec` carries steps
/// and the module's files; version 1 carried shell lines only).
pub const PROTOCOL_VERSION: u32 = 2;

/// Every protocol version this crate speaks (dtk offers them in `hello`; the plugin picks
/// one).
///
/// dtk still speaks version 1 to plugins that chose it: their resource methods are the
/// same; their `exec`, which can neither place files nor bring a module's files to the
/// node, is refused with a message asking for version 2.
pub const SUPPORTED_PROTOCOLS: &[u32] = &[PROTOCOL_VERSION, 1];

/// The longest line either side may write: 64 MiB. A longer one is a protocol error.
pub const MAX_LINE: usize = 64 << 20;

/// A request (with `id`) or notification (without) from dtk to the plugin, or dtk's
/// answer to a request of the plugin (`id` and `result` or `error`, no `method`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Incoming {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default)]
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
}

/// A request as dtk writes it, its parameters borrowed.
#[derive(Serialize)]
pub(crate) struct Outgoing<'a, P: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub method: &'a str,
    pub params: &'a P,
}

/// A response from the plugin: `result` or `error`.
#[derive(Serialize)]
pub(crate) struct Response<'a> {
    pub id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a WireError>,
}

/// The parameters of `hello`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HelloParams {
    /// The protocol versions dtk speaks.
    pub protocols: Vec<u32>,
    /// dtk's version, for messages.
    #[serde(default)]
    pub dtk_version: String,
    /// `DTK_HOME`.
    pub home: PathBuf,
    /// `DTK_HOME/providers`: the state directory of kind `K` is `providers_dir/K`.
    pub providers_dir: PathBuf,
}

/// What a plugin says about itself in its answer to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDescription {
    /// The protocol version it chose (one dtk offered).
    pub protocol: u32,
    /// Its name and version, for `dtk provider list` and messages.
    #[serde(default)]
    pub plugin: PluginName,
    /// The provider kinds it serves.
    pub providers: Vec<ProvidedKind>,
}

/// A plugin's name and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginName {
    /// Its name (`dtk-provider-aws`).
    #[serde(default)]
    pub name: String,
    /// Its version, free text (`0.1.0`).
    #[serde(default)]
    pub version: String,
}

/// One provider kind a plugin serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidedKind {
    /// The kind (`aws`): the `KIND` of `provider: KIND.RESOURCE`.
    pub kind: String,
    /// Its resource types ([`dtk_model::Provider::resources`]); empty means "ask and see".
    #[serde(default)]
    pub resources: Vec<String>,
    /// Whether it runs commands on its nodes (`exec`); when false dtk never sends `exec`
    /// and runs commands through its own transports.
    #[serde(default = "yes")]
    pub exec: bool,
    /// The modules it bundles ([`dtk_model::Provider::modules`]).
    #[serde(default)]
    pub modules: Vec<WireModule>,
    /// By resource type, the inputs that cannot change in place
    /// ([`dtk_model::Provider::replace_on_change`]): a change of one makes converge
    /// replace the resource. Resources without any are left out.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub replace_on_change: std::collections::BTreeMap<String, Vec<String>>,
}

fn yes() -> bool {
    true
}

/// A bundled module on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireModule {
    /// Where the text comes from, for messages (`aws/network/dtk.module.yaml`).
    pub origin: String,
    /// The `dtk.module.yaml` text.
    pub text: String,
}

impl From<BundledModule> for WireModule {
    fn from(m: BundledModule) -> Self {
        WireModule {
            origin: m.origin,
            text: m.text,
        }
    }
}

impl From<&WireModule> for BundledModule {
    fn from(m: &WireModule) -> Self {
        BundledModule::new(m.origin.clone(), m.text.clone())
    }
}

/// A node of the service (`service_nodes`), as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireNode {
    pub name: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default)]
    pub realized_by: Option<String>,
}

impl From<&NodeInstance> for WireNode {
    fn from(n: &NodeInstance) -> Self {
        WireNode {
            name: n.name.clone(),
            group: n.group.clone(),
            attributes: n.attributes.clone(),
            realized_by: n.realized_by.as_ref().map(|c| c.0.clone()),
        }
    }
}

impl From<WireNode> for NodeInstance {
    fn from(n: WireNode) -> Self {
        NodeInstance {
            name: n.name,
            group: n.group,
            attributes: n.attributes,
            realized_by: n.realized_by.map(ComponentId),
        }
    }
}

/// The parameters of `create`, `read`, `update` and `delete`, borrowed from a request.
#[derive(Serialize)]
pub(crate) struct ResourceParamsRef<'a> {
    pub kind: &'a str,
    pub resource: &'a str,
    pub service: &'a str,
    pub component: &'a str,
    pub node: Option<&'a str>,
    pub idempotency_key: &'a str,
    pub inputs: &'a Attributes,
    pub secrets: &'a Attributes,
    pub prior: Option<&'a Attributes>,
    pub service_nodes: Vec<WireNode>,
    /// `import` only: the provider's own id of the resource to bind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_id: Option<&'a str>,
    /// `import` only: whether dtk may delete it later.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

impl<'a> ResourceParamsRef<'a> {
    pub fn new(kind: &'a str, req: &'a ResourceRequest<'a>) -> Self {
        ResourceParamsRef {
            kind,
            resource: req.resource,
            service: req.service,
            component: req.component,
            node: req.node,
            idempotency_key: req.idempotency_key,
            inputs: req.inputs,
            secrets: &req.secrets.0,
            prior: req.prior,
            service_nodes: req.service_nodes.iter().map(WireNode::from).collect(),
            import_id: None,
            adopt: false,
        }
    }
}

/// The parameters of `create`, `read`, `update`, `delete` and `import`, as received.
#[derive(Debug, Deserialize)]
pub(crate) struct ResourceParams {
    pub kind: String,
    pub resource: String,
    pub service: String,
    pub component: String,
    #[serde(default)]
    pub node: Option<String>,
    pub idempotency_key: String,
    #[serde(default)]
    pub inputs: Attributes,
    #[serde(default)]
    pub secrets: Attributes,
    #[serde(default)]
    pub prior: Option<Attributes>,
    #[serde(default)]
    pub service_nodes: Vec<WireNode>,
    #[serde(default)]
    pub import_id: Option<String>,
    #[serde(default)]
    pub adopt: bool,
}

/// The result of `create` and `update`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OutputsResult {
    pub outputs: Attributes,
}

/// The result of `read` and `import`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "observed", rename_all = "snake_case")]
pub(crate) enum ReadResult {
    Present {
        #[serde(default)]
        outputs: Attributes,
    },
    Drifted {
        #[serde(default)]
        outputs: Attributes,
        #[serde(default)]
        changes: Vec<dtk_model::provider::Change>,
    },
    Missing,
    Unknown,
}

impl From<Observed> for ReadResult {
    fn from(o: Observed) -> Self {
        match o {
            Observed::Present(outputs) => ReadResult::Present { outputs },
            Observed::Drifted { outputs, changes } => ReadResult::Drifted { outputs, changes },
            Observed::Missing => ReadResult::Missing,
            Observed::Unknown => ReadResult::Unknown,
        }
    }
}

impl From<ReadResult> for Observed {
    fn from(r: ReadResult) -> Self {
        match r {
            ReadResult::Present { outputs } => Observed::Present(outputs),
            ReadResult::Drifted { outputs, changes } => Observed::Drifted { outputs, changes },
            ReadResult::Missing => Observed::Missing,
            ReadResult::Unknown => Observed::Unknown,
        }
    }
}

/// The parameters of `exec`, borrowed from a request.
#[derive(Serialize)]
pub(crate) struct ExecParamsRef<'a> {
    pub kind: &'a str,
    pub service: &'a str,
    pub node: &'a str,
    pub node_outputs: &'a Attributes,
    pub node_inputs: &'a Attributes,
    pub steps: Vec<WireStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<WireContent>,
    pub env: &'a [(String, String)],
    pub timeout_ms: u64,
}

impl<'a> ExecParamsRef<'a> {
    pub fn new(kind: &'a str, req: &'a ExecRequest<'a>) -> Self {
        ExecParamsRef {
            kind,
            service: req.service,
            node: req.node,
            node_outputs: req.node_outputs,
            node_inputs: req.node_inputs,
            steps: req.steps.iter().map(WireStep::from).collect(),
            module: req.module.map(WireContent::from),
            env: req.env,
            timeout_ms: millis(req.timeout),
        }
    }
}

/// The parameters of `exec`, as received.
#[derive(Debug, Deserialize)]
pub(crate) struct ExecParams {
    pub kind: String,
    pub service: String,
    pub node: String,
    #[serde(default)]
    pub node_outputs: Attributes,
    #[serde(default)]
    pub node_inputs: Attributes,
    #[serde(default)]
    pub steps: Vec<WireStep>,
    #[serde(default)]
    pub module: Option<WireContent>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    pub timeout_ms: u64,
}

/// One step of `exec`: `{"run": LINE}` or `{"put": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireStep {
    Run(String),
    Put(WirePut),
}

/// A file placement (`ADD`): exactly one of `module_file` (a path in the module) and
/// `rendered` (the bytes, standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WirePut {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub label: String,
}

impl From<&ExecStep> for WireStep {
    fn from(s: &ExecStep) -> Self {
        match s {
            ExecStep::Run(line) => WireStep::Run(line.clone()),
            ExecStep::Put(p) => {
                let (module_file, rendered) = match &p.content {
                    PutContent::ModuleFile(path) => (Some(path.clone()), None),
                    PutContent::Rendered(bytes) => (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    ),
                };
                WireStep::Put(WirePut {
                    target: p.target.clone(),
                    module_file,
                    rendered,
                    mode: p.mode,
                    owner: p.owner.clone(),
                    label: p.label.clone(),
                })
            }
        }
    }
}

impl WireStep {
    /// The step, or what is wrong with it.
    pub fn into_step(self) -> Result<ExecStep, String> {
        Ok(match self {
            WireStep::Run(line) => ExecStep::Run(line),
            WireStep::Put(p) => {
                let content = match (p.module_file, p.rendered) {
                    (Some(path), None) => PutContent::ModuleFile(path),
                    (None, Some(b)) => PutContent::Rendered(
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|_| {
                                format!("`put` to {}: `rendered` is not base64", p.target)
                            })?,
                    ),
                    _ => {
                        return Err(format!(
                            "`put` to {}: exactly one of `module_file` and `rendered` is needed",
                            p.target
                        ));
                    }
                };
                ExecStep::Put(PutFile {
                    target: p.target,
                    content,
                    mode: p.mode,
                    owner: p.owner,
                    label: p.label,
                })
            }
        })
    }
}

/// The files of the action's module, without their bytes: the plugin asks dtk for the
/// bytes of the files it needs (`module_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireContent {
    /// `NS/NAME`.
    pub module: String,
    pub digest: String,
    pub files: Vec<WireFile>,
}

/// One file of a [`WireContent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireFile {
    pub path: String,
    pub id: String,
    #[serde(default)]
    pub executable: bool,
    #[serde(default)]
    pub size: u64,
}

impl From<&ModuleContent> for WireContent {
    fn from(c: &ModuleContent) -> Self {
        WireContent {
            module: c.module.to_string(),
            digest: c.digest.clone(),
            files: c
                .files
                .iter()
                .map(|f| WireFile {
                    path: f.path.clone(),
                    id: f.id.clone(),
                    executable: f.executable,
                    size: f.size,
                })
                .collect(),
        }
    }
}

impl WireContent {
    /// The content, reading its bytes from `store`, or what is wrong with it.
    pub fn into_content(self, store: Arc<dyn ContentStore>) -> Result<ModuleContent, String> {
        let module: ModuleId = self
            .module
            .parse()
            .map_err(|_| format!("`module.module` `{}` is not NS/NAME", self.module))?;
        let mut files: Vec<ModuleFile> = self
            .files
            .into_iter()
            .map(|f| ModuleFile {
                path: f.path,
                id: f.id,
                executable: f.executable,
                size: f.size,
            })
            .collect();
        // ModuleContent::file searches by path.
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ModuleContent {
            module,
            digest: self.digest,
            files: files.into(),
            store,
        })
    }
}

/// The parameters of `module_file`, the plugin's request for a file's bytes: `request`
/// is the id of the `exec` whose module has the file, `id` the file's id.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ModuleFileParams {
    pub request: u64,
    pub id: String,
}

/// The result of `module_file`: the bytes in standard base64.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ModuleFileResult {
    pub data: String,
}

/// The result of `exec`: output bytes in standard base64.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecResult {
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub outputs: Vec<(String, String)>,
    #[serde(default)]
    pub duration_ms: u64,
}

impl From<&ExecOutput> for ExecResult {
    fn from(o: &ExecOutput) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        ExecResult {
            exit_code: o.exit_code,
            stdout: b64.encode(&o.stdout),
            stderr: b64.encode(&o.stderr),
            outputs: o.outputs.clone(),
            duration_ms: millis(o.duration),
        }
    }
}

impl ExecResult {
    /// The output, or which field is not base64.
    pub fn into_output(self) -> Result<ExecOutput, &'static str> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(ExecOutput {
            exit_code: self.exit_code,
            stdout: b64.decode(&self.stdout).map_err(|_| "stdout")?,
            stderr: b64.decode(&self.stderr).map_err(|_| "stderr")?,
            outputs: self.outputs,
            duration: Duration::from_millis(self.duration_ms),
        })
    }
}

/// The `cancel` notification's parameters.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CancelParams {
    pub id: u64,
}

/// An error as it travels: one per [`ProviderError`] variant, plus `protocol` (the plugin
/// could not make sense of the request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireError {
    Unsupported {
        provider: String,
        what: String,
    },
    InvalidInput {
        resource: String,
        message: String,
    },
    Failed {
        operation: String,
        message: String,
        #[serde(default)]
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    Timeout {
        operation: String,
        after_ms: u64,
    },
    Cancelled {
        operation: String,
    },
    Protocol {
        message: String,
    },
}

impl WireError {
    pub fn protocol(message: impl Into<String>) -> Self {
        WireError::Protocol {
            message: message.into(),
        }
    }
}

impl From<&ProviderError> for WireError {
    fn from(e: &ProviderError) -> Self {
        match e {
            ProviderError::Unsupported { provider, what } => WireError::Unsupported {
                provider: provider.clone(),
                what: what.clone(),
            },
            ProviderError::InvalidInput { resource, message } => WireError::InvalidInput {
                resource: resource.clone(),
                message: message.clone(),
            },
            ProviderError::Failed {
                operation,
                message,
                retryable,
                source,
            } => WireError::Failed {
                operation: operation.clone(),
                message: message.clone(),
                retryable: *retryable,
                source: source.as_deref().map(|s| chain(s)),
            },
            ProviderError::Timeout { operation, after } => WireError::Timeout {
                operation: operation.clone(),
                after_ms: millis(*after),
            },
            ProviderError::Cancelled { operation } => WireError::Cancelled {
                operation: operation.clone(),
            },
        }
    }
}

/// An error's text followed by its sources', `: `-separated.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The text of an error that happened inside a plugin, as its `source`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A response line: `{"id": .., "result": ..}` or `{"id": .., "error": ..}`.
pub(crate) fn response_line(id: u64, outcome: &Result<serde_json::Value, WireError>) -> String {
    let r = match outcome {
        Ok(v) => Response {
            id,
            result: Some(v),
            error: None,
        },
        Err(e) => Response {
            id,
            result: None,
            error: Some(e),
        },
    };
    serde_json::to_string(&r).unwrap_or_else(|_| {
        // Only a map with non-string keys fails to serialize; attributes have string keys.
        format!(r#"{{"id":{id},"error":{{"kind":"protocol","message":"the result could not be serialized"}}}}"#)
    })
}

/// What the host makes of one line of a plugin's output.
#[derive(Debug)]
pub(crate) enum HostMessage {
    /// A response to request `id`.
    Response {
        id: u64,
        outcome: Result<serde_json::Value, serde_json::Value>,
    },
    /// A request of the plugin (`module_file`).
    Request {
        id: u64,
        method: String,
        params: serde_json::Value,
    },
    /// A notification (a message without `id`): ignored in version 2.
    Notification(String),
    /// A blank line.
    Blank,
}

/// Why a line is not a protocol message. Never holds the line's content: it could hold a
/// secret (a debug print of a request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotAMessage {
    /// Not JSON text, or not UTF-8.
    NotJson { column: usize },
    /// JSON, but not an object with `id` and one of `result` and `error`, or `method`.
    WrongShape(&'static str),
}

impl std::fmt::Display for NotAMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAMessage::NotJson { column } => write!(f, "it is not JSON (column {column})"),
            NotAMessage::WrongShape(what) => write!(f, "it is JSON but {what}"),
        }
    }
}

/// Reads one line of a plugin's output.
pub(crate) fn parse_host_message(line: &[u8]) -> Result<HostMessage, NotAMessage> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(HostMessage::Blank);
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| NotAMessage::NotJson { column: e.column() })?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(NotAMessage::WrongShape("not an object"));
    };
    let id = match map.get("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or(NotAMessage::WrongShape("its `id` is not a whole number"))?,
        ),
    };
    match id {
        Some(id) => match (map.remove("result"), map.remove("error")) {
            (Some(r), None) => Ok(HostMessage::Response { id, outcome: Ok(r) }),
            (None, Some(e)) => Ok(HostMessage::Response {
                id,
                outcome: Err(e),
            }),
            (Some(_), Some(_)) => Err(NotAMessage::WrongShape("it has both `result` and `error`")),
            (None, None) => match map.remove("method") {
                Some(serde_json::Value::String(method)) => Ok(HostMessage::Request {
                    id,
                    method,
                    params: map.remove("params").unwrap_or_default(),
                }),
                _ => Err(NotAMessage::WrongShape(
                    "it has an `id` but neither `result`, `error` nor `method`",
                )),
            },
        },
        None => match map.get("method").and_then(serde_json::Value::as_str) {
            Some(m) => Ok(HostMessage::Notification(m.to_owned())),
            None => Err(NotAMessage::WrongShape("it has neither `id` nor `method`")),
        },
    }
}

/// Secret values as text, for redacting a plugin's logs.
pub(crate) fn secret_texts(secrets: &Attributes) -> Vec<String> {
    secrets
        .values()
        .map(dtk_model::Value::to_shell_text)
        .filter(|s| !s.is_empty())
        .collect()
}
