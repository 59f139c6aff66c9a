//! The `ssh` target provider: hosts you already have, reached over SSH.
//!
//! The bundled module `dtk/ssh` ([`DTK_SSH_MODULE`]) has a `target` assembly whose
//! `inventory` component lists the hosts (`{name, address, port, user, workdir}`) and how to
//! reach them (private key path, known-hosts file, host-key policy, jump host). Its node
//! component `ssh::host` places each node of a service staged on the target on one host;
//! the node's actions then run there, in `WORKDIR/SERVICE/NODE`, through the system OpenSSH
//! client ([`SshPool`]: one multiplexed connection per host, shared by every node on it).
//!
//! Resources of kind `ssh`:
//!
//! - `ssh.inventory` (the target's component): `create` checks the host list and contacts
//!   every host once (host key, login, work directory), and fails naming each host that
//!   cannot be used. `delete` does nothing: the hosts are not dtk's.
//! - `ssh.host` (a service's node): `create` places the node (see [`place`]), makes its
//!   directory on the host and returns the outputs other parts use: `ssh_host`,
//!   `ssh_port`, `ssh_user`, `ssh_workdir`, `ssh_key_path`, `ssh_known_hosts_path`,
//!   `ssh_host_key_policy`, `ssh_jump_host`, `ssh_connect_timeout` (paths and settings,
//!   never key material), `host` and `ssh_host_name`. `read` tells whether the node's
//!   directory still exists. `delete` stops the processes running in the node's directory
//!   and removes it.
//!
//! [`SshProvider::exec`] runs a node's commands from those outputs alone, so any node whose
//! outputs carry `ssh_host` can use it (the AWS target's EC2 nodes do, through
//! dtk-instance's default transport): a node without `ssh_workdir`
//! runs in `~/.dtk/nodes/SERVICE/NODE`; without `ssh_known_hosts_path`, host keys are
//! checked against `~/.ssh/known_hosts` (on this machine), strictly unless
//! `ssh_host_key_policy` says `tofu`.
//!
//! Errors: a lost connection (and other transient connection failures) is a *retryable*
//! [`ProviderError`], so the executor tries the action again; a refused host key or login
//! is not. Messages name the node and the host, never a value of the action's environment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dtk_model::provider::{Cancel, ExecOutput, ExecRequest, Observed, ResourceRequest};
use dtk_model::{Attributes, BundledModule, Provider, ProviderError, Value};
use sha2::{Digest, Sha256};

use crate::errors::from_ssh;
use crate::transport::{self as ssh, HostKeyPolicy, SshHost, SshPool, SshPoolConfig};
use dtk_model::render::shell_quote;

/// What a node's creation prints when its directory holds no module copy.
const NO_MODULES: &str = "dtk-no-modules";

/// The provider kind of the SSH target (`provider: ssh.host`).
pub const KIND: &str = "ssh";

/// The text of the bundled `dtk/ssh` module.
pub const DTK_SSH_MODULE: &str = include_str!("../../modules/dtk/ssh/dtk.module.yaml");

/// Where node directories go on a host that names no `workdir`.
pub const DEFAULT_WORKDIR: &str = "~/.dtk/nodes";

/// The known-hosts file used when a node names none.
pub const DEFAULT_KNOWN_HOSTS: &str = "~/.ssh/known_hosts";

/// How long connecting to a host may take when the target sets no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a provider operation's own commands (make, check or remove a directory) may
/// run once connected.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How many actions may run at once over SSH, across all hosts; the executor's limits
/// (`--concurrency`) normally bind first.
const MAX_CONNECTIONS: usize = 64;

/// The `ssh` provider. Cheap to clone: clones share one [`SshPool`].
///
/// The pool is made on first use. Its control sockets live in `DTK_HOME/run/ssh`, or, when
/// that path is too long for a Unix socket, in `/tmp/dtk-ssh-HASH` (a hash of the home's
/// path).
#[derive(Clone)]
pub struct SshProvider {
    inner: Arc<Inner>,
}

struct Inner {
    home: PathBuf,
    pool: Mutex<Option<SshPool>>,
    synced: crate::content::Synced,
}

impl std::fmt::Debug for SshProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshProvider")
            .field("home", &self.inner.home)
            .finish_non_exhaustive()
    }
}

impl SshProvider {
    /// A provider for the dtk home at `home`: its connection sockets go under
    /// [`control_dir_for`](Self::control_dir_for)`(home)`.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        SshProvider {
            inner: Arc::new(Inner {
                home: home.into(),
                pool: Mutex::new(None),
                synced: Default::default(),
            }),
        }
    }

    /// A provider using `pool` (its own settings and control directory) instead of making
    /// one.
    pub fn with_pool(home: impl Into<PathBuf>, pool: SshPool) -> Self {
        SshProvider {
            inner: Arc::new(Inner {
                home: home.into(),
                pool: Mutex::new(Some(pool)),
                synced: Default::default(),
            }),
        }
    }

    /// The control directory a provider for `home` uses: `home/run/ssh`, or a short one
    /// under `/tmp` when socket paths there would be too long.
    pub fn control_dir_for(home: &Path) -> PathBuf {
        let preferred = home.join("run").join("ssh");
        // Socket names are 16 characters; ssh appends 17 while it binds; the limit is 107.
        if preferred.as_os_str().len() + 1 + 16 + 17 <= 107 {
            return preferred;
        }
        let absolute = std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf());
        let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
        PathBuf::from(format!("/tmp/dtk-ssh-{}", hex::encode(&digest[..8])))
    }

    /// The connection pool, made on first use.
    pub fn pool(&self) -> Result<SshPool, ProviderError> {
        let mut slot =
            self.inner.pool.lock().map_err(|_| {
                ProviderError::failed("open the SSH connection pool", "lock poisoned")
            })?;
        if let Some(pool) = &*slot {
            return Ok(pool.clone());
        }
        let dir = Self::control_dir_for(&self.inner.home);
        let pool = SshPool::with_config(
            &dir,
            SshPoolConfig {
                max_connections: MAX_CONNECTIONS,
                // The next command on this home adopts the connections (as Ansible's
                // ControlPersist does): it skips a handshake per host.
                keep_masters: true,
                // `DTK_SSH_SUBSHELLS=0`: every job a session of its own (`setsid`), for
                // scripts that rely on `$$` or on a process group of their own.
                subshell_jobs: std::env::var("DTK_SSH_SUBSHELLS").map_or(true, |v| v != "0"),
                ..SshPoolConfig::default()
            },
        )
        .map_err(|e| ProviderError::failed("open the SSH connection pool", e.to_string()))?;
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// Asks every open connection to close (later actions reconnect).
    pub async fn close_all(&self) {
        let pool = self.inner.pool.lock().ok().and_then(|p| p.clone());
        if let Some(pool) = pool {
            pool.close_all().await;
        }
    }

    /// The declared nodes of the request's service, in order (node groups expanded), with
    /// the host each asks for by its `host_name` attribute.
    fn declared_nodes(req: &ResourceRequest<'_>) -> Vec<DeclaredNode> {
        req.service_nodes
            .iter()
            .map(|n| DeclaredNode {
                name: n.name.clone(),
                host_name: n
                    .attributes
                    .get("host_name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            })
            .collect()
    }

    async fn run(
        &self,
        host: &SshHost,
        req: ssh::ExecRequest,
        operation: impl Fn() -> String,
    ) -> Result<ExecOutput, ProviderError> {
        let pool = self.pool()?;
        pool.exec(host, &req)
            .await
            .map_err(|e| from_ssh(operation(), e))
    }

    async fn inventory_create(
        &self,
        req: &ResourceRequest<'_>,
    ) -> Result<Attributes, ProviderError> {
        let inv = Inventory::from_inputs(req.inputs, "ssh.inventory")?;
        let pool = self.pool()?;
        let mut checks = tokio::task::JoinSet::new();
        for (i, entry) in inv.hosts.iter().enumerate() {
            let host = inv.ssh_host(entry);
            let pool = pool.clone();
            let probe = ssh::ExecRequest::new(entry.workdir.clone())
                .line("true")
                .timeout(OPERATION_TIMEOUT)
                .cancel(req.cancel.clone());
            checks.spawn(async move { (i, pool.exec(&host, &probe).await) });
        }
        let mut failures: Vec<(usize, String, bool)> = Vec::new();
        while let Some(joined) = checks.join_next().await {
            let Ok((i, result)) = joined else {
                return Err(ProviderError::failed(
                    format!("check the hosts of {}", req.component),
                    "a host check panicked",
                ));
            };
            let entry = &inv.hosts[i];
            match result {
                Ok(out) if out.success() => {}
                Ok(out) => failures.push((
                    i,
                    format!(
                        "host `{}`: cannot use the work directory {} ({})",
                        entry.name,
                        entry.workdir,
                        last_line(&out.stderr)
                    ),
                    false,
                )),
                Err(e) => {
                    failures.push((i, format!("host `{}`: {e}", entry.name), e.is_transient()))
                }
            }
        }
        if req.cancel.is_cancelled() {
            return Err(ProviderError::Cancelled {
                operation: format!("check the hosts of {}", req.component),
            });
        }
        if !failures.is_empty() {
            failures.sort_by_key(|f| f.0);
            let retryable = failures.iter().all(|f| f.2);
            let lines: Vec<String> = failures.into_iter().map(|f| f.1).collect();
            return Err(ProviderError::Failed {
                operation: format!("check the hosts of {}", req.component),
                message: lines.join("; "),
                retryable,
                source: None,
            });
        }
        let mut out = Attributes::new();
        out.insert(
            "host_names".to_owned(),
            Value::Array(
                inv.hosts
                    .iter()
                    .map(|h| Value::Str(h.name.clone()))
                    .collect(),
            ),
        );
        Ok(out)
    }

    async fn host_create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let node = node_name(req)?;
        let inv = Inventory::from_inputs(req.inputs, "ssh.host")?;
        let explicit = req
            .inputs
            .get("host_name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let prior_name = req
            .prior
            .and_then(|p| p.get("ssh_host_name"))
            .and_then(Value::as_str);
        let declared = Self::declared_nodes(req);
        let index =
            place(node, explicit, prior_name, &inv.hosts, &declared).map_err(|message| {
                ProviderError::InvalidInput {
                    resource: "ssh.host".to_owned(),
                    message,
                }
            })?;
        let entry = &inv.hosts[index];
        let host = inv.ssh_host(entry);
        let workdir = node_dir(&entry.workdir, req.service, node);
        let outputs = node_outputs(&inv, entry, &workdir);

        // A node moved to another host leaves its old directory behind: clean it up.
        if let Some(prior) = req.prior
            && let Ok(old) = NodeSsh::from_outputs(prior, req.service, node)
            && (old.host.address != host.address
                || old.host.port != host.port
                || old.host.user != host.user
                || old.workdir != workdir)
        {
            tracing::debug!(node, from = %old.host.address, to = %host.address, "node moved");
            let _ = self.remove_node_dir(&old, req.cancel).await;
        }

        // Making the directory (the request's work directory is made if missing), and telling
        // whether it holds any module copy: if not, the node's first actions need not ask.
        let mkdir = ssh::ExecRequest::new(workdir.clone())
            .line(format!("[ -e modules ] || echo {NO_MODULES}"))
            .timeout(OPERATION_TIMEOUT)
            .cancel(req.cancel.clone());
        let out = self
            .run(&host, mkdir, || {
                format!("create ssh.host for node `{node}` on host `{}`", entry.name)
            })
            .await?;
        if !out.success() {
            return Err(ProviderError::failed(
                format!("create ssh.host for node `{node}` on host `{}`", entry.name),
                format!(
                    "cannot make the node directory {workdir}: {}",
                    last_line(&out.stderr)
                ),
            ));
        }
        if out.stdout.trim_ascii_end() == NO_MODULES.as_bytes() {
            self.inner.synced.set_empty(&host, &workdir);
        }
        Ok(outputs)
    }

    async fn host_read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        let node = node_name(req)?;
        let Some(prior) = req.prior else {
            return Ok(Observed::Unknown);
        };
        let target = NodeSsh::from_outputs(prior, req.service, node)?;
        let Some((parent, leaf)) = target.workdir.rsplit_once('/') else {
            return Ok(Observed::Unknown);
        };
        let check = ssh::ExecRequest::new(parent)
            .line(format!("test -d {}", shell_quote(leaf)))
            .timeout(OPERATION_TIMEOUT)
            .cancel(req.cancel.clone());
        let out = self
            .run(&target.host, check, || {
                format!("read ssh.host for node `{node}`")
            })
            .await?;
        Ok(match out.exit_code {
            Some(0) => Observed::Present(prior.clone()),
            Some(1) => Observed::Missing,
            _ => Observed::Unknown,
        })
    }

    async fn host_delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        let node = node_name(req)?;
        // Never created (or its outputs are gone): nothing of it is on any host.
        let Some(prior) = req.prior else {
            return Ok(());
        };
        let target = NodeSsh::from_outputs(prior, req.service, node)?;
        self.remove_node_dir(&target, req.cancel).await
    }

    /// Binds a node to host `id` of the inventory (its name, or its address) that runs
    /// already (`dtk service import`): the host must answer, and the node's directory
    /// there is made if it is missing (the node then stays on that host). The host is
    /// never the node's to delete; without `adopt`, its directory is left too.
    async fn host_import(
        &self,
        req: &ResourceRequest<'_>,
        id: &str,
    ) -> Result<Observed, ProviderError> {
        let node = node_name(req)?;
        let inv = Inventory::from_inputs(req.inputs, "ssh.host")?;
        let Some(entry) = inv
            .hosts
            .iter()
            .find(|h| h.name == id)
            .or_else(|| inv.hosts.iter().find(|h| h.address == id))
        else {
            return Err(ProviderError::InvalidInput {
                resource: "ssh.host".to_owned(),
                message: format!(
                    "the target has no host `{id}` (hosts: {})",
                    inv.hosts
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let host = inv.ssh_host(entry);
        let workdir = node_dir(&entry.workdir, req.service, node);
        let outputs = node_outputs(&inv, entry, &workdir);
        let mkdir = ssh::ExecRequest::new(workdir.clone())
            .line("true")
            .timeout(OPERATION_TIMEOUT)
            .cancel(req.cancel.clone());
        let what = || format!("import host `{}` for node `{node}`", entry.name);
        let out = self.run(&host, mkdir, what).await?;
        if !out.success() {
            return Err(ProviderError::failed(
                what(),
                format!(
                    "cannot make the node directory {workdir}: {}",
                    last_line(&out.stderr)
                ),
            ));
        }
        Ok(Observed::Present(outputs))
    }

    /// Stops the processes whose working directory is in the node's directory (TERM, then
    /// KILL after three seconds), then removes the directory.
    async fn remove_node_dir(
        &self,
        target: &NodeSsh,
        cancel: &Cancel,
    ) -> Result<(), ProviderError> {
        let node = target.node.as_str();
        let Some((parent, leaf)) = target.workdir.rsplit_once('/') else {
            return Err(ProviderError::failed(
                format!("delete ssh.host for node `{node}`"),
                format!("refusing to remove {}", target.workdir),
            ));
        };
        let leaf_word = shell_quote(leaf);
        let lines = vec![
            format!("[ -d {leaf_word} ] || exit 0"),
            format!(
                "d=$(cd -- {leaf_word} && pwd -P) || exit 1; \
                 in_dir() {{ for p in /proc/[0-9]*; do c=$(readlink \"$p/cwd\" 2>/dev/null) || continue; \
                 case \"$c\" in \"$d\"|\"$d\"/*) echo \"${{p#/proc/}}\";; esac; done; }}; \
                 [ -d /proc/self ] || exit 0; \
                 pids=$(in_dir); [ -n \"$pids\" ] || exit 0; kill -TERM $pids 2>/dev/null; \
                 i=0; while [ $i -lt 30 ]; do pids=$(in_dir); [ -n \"$pids\" ] || exit 0; \
                 sleep 0.1; i=$((i+1)); done; kill -KILL $pids 2>/dev/null; exit 0"
            ),
            format!("rm -rf -- {leaf_word}"),
        ];
        let mut remove = ssh::ExecRequest::new(parent)
            .timeout(OPERATION_TIMEOUT)
            .cancel(cancel.clone());
        remove.script = lines;
        let out = self
            .run(&target.host, remove, || {
                format!("delete ssh.host for node `{node}`")
            })
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(ProviderError::failed(
                format!("delete ssh.host for node `{node}`"),
                format!(
                    "cannot remove {} on {}: {}",
                    target.workdir,
                    target.host.address,
                    last_line(&out.stderr)
                ),
            ))
        }
    }
}

#[async_trait]
impl Provider for SshProvider {
    fn kind(&self) -> &str {
        KIND
    }

    fn resources(&self) -> Vec<String> {
        vec!["host".to_owned(), "inventory".to_owned()]
    }

    fn modules(&self) -> Vec<BundledModule> {
        vec![BundledModule::new(
            "dtk/ssh/dtk.module.yaml",
            DTK_SSH_MODULE,
        )]
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        match req.resource {
            "host" => self.host_create(req).await,
            "inventory" => self.inventory_create(req).await,
            other => Err(unsupported(other)),
        }
    }

    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        match req.resource {
            "host" => self.host_read(req).await,
            "inventory" => Ok(Observed::Unknown),
            other => Err(unsupported(other)),
        }
    }

    async fn import(
        &self,
        req: &ResourceRequest<'_>,
        id: &str,
        adopt: bool,
    ) -> Result<Observed, ProviderError> {
        let _ = adopt;
        match req.resource {
            "host" => self.host_import(req, id).await,
            other => Err(ProviderError::Unsupported {
                provider: KIND.to_owned(),
                what: format!("importing `{other}` resources (only hosts)"),
            }),
        }
    }

    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        match req.resource {
            "host" => self.host_delete(req).await,
            // The hosts are not dtk's: nothing to undo.
            "inventory" => Ok(()),
            other => Err(unsupported(other)),
        }
    }

    /// Runs the commands on the node described by `req.node_outputs` (`ssh_host` and the
    /// other `ssh_*` outputs), in its `ssh_workdir`; with a module, in the node's copy of
    /// the module's files (`WORKDIR/modules/NS/NAME`), brought up to date first (see
    /// `content.rs`).
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        let target = NodeSsh::from_outputs(req.node_outputs, req.service, req.node)?;
        let started = std::time::Instant::now();
        if let Some(module) = req.module {
            let pool = self.pool()?;
            crate::content::sync_module(
                &pool,
                &self.inner.synced,
                &target.host,
                &target.workdir,
                module,
                req.cancel,
            )
            .await?;
        }
        let script =
            crate::content::lines(req.steps).map_err(|message| ProviderError::InvalidInput {
                resource: format!("an action on node `{}`", req.node),
                message,
            })?;
        // Leave the executor's own time limit a little room, so the pool stops the remote
        // processes itself when the commands overrun.
        // What placing the module's files took counts against it too.
        let margin = (req.timeout / 20).min(Duration::from_secs(2));
        let mut action = ssh::ExecRequest::new(target.workdir.clone())
            .timeout(
                req.timeout
                    .saturating_sub(margin + started.elapsed())
                    .max(Duration::from_millis(100)),
            )
            .cancel(req.cancel.clone());
        action.script = script;
        action.env = req.env.to_vec();
        action.module_dir = req.module.map(dtk_model::content::ModuleContent::dir);
        let node = req.node;
        self.run(&target.host, action, || {
            format!(
                "run commands on node `{node}` ({}@{}:{})",
                target.host.user, target.host.address, target.host.port
            )
        })
        .await
    }
}

/// One host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// Its unique name, which nodes are matched by.
    pub name: String,
    /// Host name or IP address.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Where node directories go (`~/` is the remote user's home).
    pub workdir: String,
}

/// The inventory as the `ssh.inventory` and `ssh.host` resources receive it.
#[derive(Debug, Clone)]
struct Inventory {
    hosts: Vec<HostEntry>,
    key: Option<String>,
    known_hosts: String,
    policy: HostKeyPolicy,
    policy_text: String,
    jump: Option<String>,
    connect_timeout: Duration,
}

impl Inventory {
    fn from_inputs(inputs: &Attributes, resource: &str) -> Result<Inventory, ProviderError> {
        let invalid = |message: String| ProviderError::InvalidInput {
            resource: resource.to_owned(),
            message,
        };
        let text = |name: &str| -> Result<Option<String>, ProviderError> {
            match inputs.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Str(s)) if s.is_empty() => Ok(None),
                Some(Value::Str(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!(
                    "`{name}` must be a string, not {}",
                    other.kind_name()
                ))),
            }
        };
        let default_user = text("user")?;
        let hosts = parse_hosts(inputs.get("hosts"), default_user.as_deref()).map_err(invalid)?;
        let policy = parse_policy(text("host_key_policy")?.as_deref().unwrap_or("strict"))
            .map_err(invalid)?;
        let connect_timeout = match inputs.get("connect_timeout") {
            None | Some(Value::Null) => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => match v.as_i64().and_then(|s| u64::try_from(s).ok()) {
                Some(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    return Err(invalid(
                        "`connect_timeout` must be a positive number of seconds".to_owned(),
                    ));
                }
            },
        };
        Ok(Inventory {
            hosts,
            key: text("private_key_path")?,
            known_hosts: text("known_hosts_path")?
                .unwrap_or_else(|| DEFAULT_KNOWN_HOSTS.to_owned()),
            policy,
            // One canonical spelling per policy in outputs, whatever the user wrote.
            policy_text: policy_name(policy).to_owned(),
            jump: text("jump_host")?,
            connect_timeout,
        })
    }

    fn ssh_host(&self, entry: &HostEntry) -> SshHost {
        build_host(
            &entry.address,
            entry.port,
            &entry.user,
            self.key.as_deref(),
            &self.known_hosts,
            self.policy,
            self.jump.as_deref(),
            self.connect_timeout,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn build_host(
    address: &str,
    port: u16,
    user: &str,
    key: Option<&str>,
    known_hosts: &str,
    policy: HostKeyPolicy,
    jump: Option<&str>,
    connect_timeout: Duration,
) -> SshHost {
    let mut host = SshHost::new(address, user, known_hosts)
        .with_port(port)
        .with_host_key_policy(policy)
        .with_connect_timeout(connect_timeout);
    if let Some(key) = key {
        host = host.with_identity_file(key);
    }
    if let Some(jump) = jump {
        host = host.with_jump_host(jump);
    }
    host
}

/// A node of a service, as its service document declares it (group members expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredNode {
    /// The node's name (`web`, `workers:2`).
    pub name: String,
    /// Its `host_name` attribute, if set.
    pub host_name: Option<String>,
}

/// Chooses the host of `node` among `hosts` (returns its index), by the first rule that
/// applies:
///
/// 1. `explicit`, the node's `host_name` attribute, names a host (naming none is an error);
/// 2. `prior`, the host it was placed on before, is still in the list (a node stays put);
/// 3. a host has the node's name;
/// 4. in order: the `declared` nodes that no rule above places, in declaration order,
///    take the hosts that no declared node claims (by `host_name` or by name), in list
///    order, wrapping around; if every host is claimed, all hosts take part. A node missing
///    from `declared` comes after the declared ones.
///
/// The result depends only on the arguments, never on the order nodes are created in.
pub fn place(
    node: &str,
    explicit: Option<&str>,
    prior: Option<&str>,
    hosts: &[HostEntry],
    declared: &[DeclaredNode],
) -> Result<usize, String> {
    if hosts.is_empty() {
        return Err("the target's inventory lists no hosts (set inventory/hosts)".to_owned());
    }
    let by_name = |name: &str| hosts.iter().position(|h| h.name == name);
    if let Some(wanted) = explicit {
        return by_name(wanted).ok_or_else(|| {
            format!(
                "node `{node}` asks for host `{wanted}` (host_name), which the target's \
                 inventory does not list; it has: {}",
                hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    if let Some(i) = prior.and_then(by_name) {
        return Ok(i);
    }
    if let Some(i) = by_name(node) {
        return Ok(i);
    }
    let claimed = |h: &HostEntry| {
        declared
            .iter()
            .any(|d| d.name == h.name || d.host_name.as_deref() == Some(h.name.as_str()))
    };
    let mut free: Vec<usize> = (0..hosts.len()).filter(|&i| !claimed(&hosts[i])).collect();
    if free.is_empty() {
        free = (0..hosts.len()).collect();
    }
    let in_order: Vec<&str> = declared
        .iter()
        .filter(|d| d.host_name.is_none() && by_name(&d.name).is_none())
        .map(|d| d.name.as_str())
        .collect();
    let rank = in_order
        .iter()
        .position(|n| *n == node)
        .unwrap_or(in_order.len());
    Ok(free[rank % free.len()])
}

fn parse_hosts(
    value: Option<&Value>,
    default_user: Option<&str>,
) -> Result<Vec<HostEntry>, String> {
    let list = match value {
        None | Some(Value::Null) => {
            return Err(
                "`hosts` is not set: list the hosts as [{name, address, port, user, workdir}, ...]"
                    .to_owned(),
            );
        }
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!(
                "`hosts` must be a list of {{name, address, port, user, workdir}}, not {}",
                other.kind_name()
            ));
        }
    };
    if list.is_empty() {
        return Err("`hosts` is empty: list at least one host".to_owned());
    }
    let mut out: Vec<HostEntry> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Value::Hash(map) = item else {
            return Err(format!(
                "hosts[{i}] must be a map {{name, address, port, user, workdir}}, not {}",
                item.kind_name()
            ));
        };
        for key in map.keys() {
            if !["name", "address", "port", "user", "workdir"].contains(&key.as_str()) {
                return Err(format!(
                    "hosts[{i}] has an unknown key `{key}` (known: name, address, port, user, workdir)"
                ));
            }
        }
        let field = |k: &str| -> Result<Option<String>, String> {
            match map.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::Str(s)) => Ok(Some(s.trim().to_owned())),
                Some(Value::Int(n)) if k != "user" => Ok(Some(n.to_string())),
                Some(other) => Err(format!(
                    "hosts[{i}].{k} must be a string, not {}",
                    other.kind_name()
                )),
            }
        };
        let address = field("address")?.ok_or_else(|| format!("hosts[{i}] has no `address`"))?;
        let name = field("name")?.unwrap_or_else(|| address.clone());
        if name.contains('/') {
            return Err(format!("hosts[{i}].name `{name}` contains `/`"));
        }
        if out.iter().any(|h| h.name == name) {
            return Err(format!(
                "hosts[{i}]: the name `{name}` is used by another host (names must be unique)"
            ));
        }
        let port = match field("port")? {
            None => 22,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("hosts[{i}].port `{p}` is not a TCP port"))?,
        };
        let user = field("user")?
            .or_else(|| default_user.map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "host `{name}` has no user: set `user` on it, or inventory/user for every host"
                )
            })?;
        let workdir = field("workdir")?
            .map(|w| w.trim_end_matches('/').to_owned())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| DEFAULT_WORKDIR.to_owned());
        for (what, word) in [("address", &address), ("user", &user)] {
            if word.starts_with('-')
                || word
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "'\"\\%`$@".contains(c))
            {
                return Err(format!(
                    "host `{name}`: the {what} {word:?} is not one plain word"
                ));
            }
        }
        out.push(HostEntry {
            name,
            address,
            port,
            user,
            workdir,
        });
    }
    Ok(out)
}

fn parse_policy(text: &str) -> Result<HostKeyPolicy, String> {
    match text {
        "strict" => Ok(HostKeyPolicy::Strict),
        "tofu" | "trust-on-first-use" | "accept-new" => Ok(HostKeyPolicy::TrustOnFirstUse),
        other => Err(format!(
            "`host_key_policy` must be `strict` or `tofu` (trust on first use), not `{other}`"
        )),
    }
}

fn policy_name(policy: HostKeyPolicy) -> &'static str {
    match policy {
        HostKeyPolicy::Strict => "strict",
        HostKeyPolicy::TrustOnFirstUse => "tofu",
    }
}

/// How to reach one node and where its actions run, from its outputs.
struct NodeSsh {
    node: String,
    host: SshHost,
    workdir: String,
}

impl NodeSsh {
    fn from_outputs(
        outputs: &Attributes,
        service: &str,
        node: &str,
    ) -> Result<NodeSsh, ProviderError> {
        let invalid = |message: String| ProviderError::InvalidInput {
            resource: format!("node `{node}` over SSH"),
            message,
        };
        let text = |k: &str| {
            outputs
                .get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let address = text("ssh_host")
            .ok_or_else(|| invalid("the node has no `ssh_host` output".to_owned()))?;
        let user = text("ssh_user").ok_or_else(|| {
            invalid(format!(
                "the node has no `ssh_user` output: dtk cannot tell whom to log in to {address} as"
            ))
        })?;
        let port = match outputs.get("ssh_port") {
            None | Some(Value::Null) => 22,
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("`ssh_port` is not a TCP port".to_owned()))?,
        };
        let policy =
            parse_policy(text("ssh_host_key_policy").unwrap_or("strict")).map_err(invalid)?;
        let connect_timeout = outputs
            .get("ssh_connect_timeout")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_secs);
        let workdir = match text("ssh_workdir") {
            Some(w) => w.trim_end_matches('/').to_owned(),
            None => node_dir(DEFAULT_WORKDIR, service, node),
        };
        if node.is_empty() {
            return Err(invalid(
                "commands without a node cannot run over SSH".to_owned(),
            ));
        }
        Ok(NodeSsh {
            node: node.to_owned(),
            host: build_host(
                address,
                port,
                user,
                text("ssh_key_path"),
                text("ssh_known_hosts_path").unwrap_or(DEFAULT_KNOWN_HOSTS),
                policy,
                text("ssh_jump_host"),
                connect_timeout,
            ),
            workdir,
        })
    }
}

fn node_outputs(inv: &Inventory, entry: &HostEntry, workdir: &str) -> Attributes {
    let mut out = Attributes::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    put("host", Value::Str(entry.address.clone()));
    put("state", Value::Str("running".to_owned()));
    put("ssh_host_name", Value::Str(entry.name.clone()));
    put("ssh_host", Value::Str(entry.address.clone()));
    put("ssh_port", Value::Int(i64::from(entry.port)));
    put("ssh_user", Value::Str(entry.user.clone()));
    put("ssh_workdir", Value::Str(workdir.to_owned()));
    if let Some(key) = &inv.key {
        put("ssh_key_path", Value::Str(key.clone()));
    }
    put("ssh_known_hosts_path", Value::Str(inv.known_hosts.clone()));
    put("ssh_host_key_policy", Value::Str(inv.policy_text.clone()));
    if let Some(jump) = &inv.jump {
        put("ssh_jump_host", Value::Str(jump.clone()));
    }
    put(
        "ssh_connect_timeout",
        Value::Int(i64::try_from(inv.connect_timeout.as_secs()).unwrap_or(i64::MAX)),
    );
    out
}

/// The node's directory on its host: `WORKDIR/SERVICE/NODE`.
fn node_dir(workdir: &str, service: &str, node: &str) -> String {
    format!("{}/{service}/{node}", workdir.trim_end_matches('/'))
}

fn node_name<'a>(req: &ResourceRequest<'a>) -> Result<&'a str, ProviderError> {
    req.node
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ProviderError::InvalidInput {
            resource: format!("ssh.{}", req.resource),
            message: format!(
                "{} is not on a node: ssh.host realizes nodes of services staged on an ssh target",
                req.component
            ),
        })
}

fn unsupported(resource: &str) -> ProviderError {
    ProviderError::Unsupported {
        provider: KIND.to_owned(),
        what: format!("resource type `{resource}` (it has `host` and `inventory`)"),
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::SshError;

    fn hosts(names: &[&str]) -> Vec<HostEntry> {
        names
            .iter()
            .map(|n| HostEntry {
                name: (*n).to_owned(),
                address: format!("{n}.example"),
                port: 22,
                user: "u".to_owned(),
                workdir: DEFAULT_WORKDIR.to_owned(),
            })
            .collect()
    }

    fn declared(names: &[&str]) -> Vec<DeclaredNode> {
        names
            .iter()
            .map(|n| DeclaredNode {
                name: (*n).to_owned(),
                host_name: None,
            })
            .collect()
    }

    fn placed(node: &str, hs: &[HostEntry], decl: &[DeclaredNode]) -> String {
        let i = place(node, None, None, hs, decl).expect("placed");
        hs[i].name.clone()
    }

    #[test]
    fn nodes_take_free_hosts_in_declaration_order_whatever_the_creation_order() {
        let hs = hosts(&["h1", "h2", "db"]);
        let decl = declared(&["web", "db", "api", "cache"]);
        // `db` has its own host; the others share h1, h2 in declaration order.
        assert_eq!(placed("cache", &hs, &decl), "h1");
        assert_eq!(placed("api", &hs, &decl), "h2");
        assert_eq!(placed("db", &hs, &decl), "db");
        assert_eq!(placed("web", &hs, &decl), "h1");
    }

    #[test]
    fn explicit_host_name_wins_and_a_missing_one_is_refused() {
        let hs = hosts(&["a", "b"]);
        let mut decl = declared(&["web", "db"]);
        decl[1].host_name = Some("a".to_owned());
        assert_eq!(place("db", Some("a"), Some("b"), &hs, &decl), Ok(0));
        // `a` is claimed by db, so web takes the first free host.
        assert_eq!(placed("web", &hs, &decl), "b");
        let err = place("db", Some("zz"), None, &hs, &decl).expect_err("refused");
        assert!(err.contains("`zz`") && err.contains("a, b"), "{err}");
    }

    #[test]
    fn a_placed_node_stays_while_its_host_is_listed() {
        let hs = hosts(&["new", "a", "b"]);
        assert_eq!(
            place("web", None, Some("b"), &hs, &declared(&["web"])),
            Ok(2)
        );
        // Its host left the list: placed afresh.
        assert_eq!(
            place("web", None, Some("gone"), &hs, &declared(&["web"])),
            Ok(0)
        );
    }

    #[test]
    fn group_members_and_unknown_nodes_get_hosts_too() {
        let hs = hosts(&["a", "b"]);
        let decl = declared(&["workers:1", "workers:2", "workers:3"]);
        assert_eq!(placed("workers:3", &hs, &decl), "a");
        assert_eq!(placed("workers:2", &hs, &decl), "b");
        assert_eq!(placed("other", &hs, &decl), "b");
        assert!(place("x", None, None, &[], &decl).is_err());
    }

    #[test]
    fn hosts_parse_with_defaults_and_refuse_bad_entries() {
        let entry = |pairs: &[(&str, Value)]| {
            Value::Hash(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            )
        };
        let list = Value::Array(vec![
            entry(&[("address", Value::Str("10.0.0.5".into()))]),
            entry(&[
                ("name", Value::Str("db".into())),
                ("address", Value::Str("db.example".into())),
                ("port", Value::Int(2222)),
                ("user", Value::Str("admin".into())),
                ("workdir", Value::Str("/srv/dtk/".into())),
            ]),
        ]);
        let parsed = parse_hosts(Some(&list), Some("ubuntu")).expect("parsed");
        assert_eq!(parsed[0].name, "10.0.0.5");
        assert_eq!(parsed[0].port, 22);
        assert_eq!(parsed[0].user, "ubuntu");
        assert_eq!(parsed[0].workdir, DEFAULT_WORKDIR);
        assert_eq!(parsed[1].port, 2222);
        assert_eq!(parsed[1].workdir, "/srv/dtk");

        let no_user = parse_hosts(Some(&list), None).expect_err("no user");
        assert!(no_user.contains("has no user"), "{no_user}");
        let dup = Value::Array(vec![
            entry(&[
                ("name", Value::Str("a".into())),
                ("address", Value::Str("x".into())),
            ]),
            entry(&[
                ("name", Value::Str("a".into())),
                ("address", Value::Str("y".into())),
            ]),
        ]);
        assert!(
            parse_hosts(Some(&dup), Some("u"))
                .expect_err("dup")
                .contains("unique")
        );
        let bad = Value::Array(vec![entry(&[(
            "address",
            Value::Str("-oProxyCommand=x".into()),
        )])]);
        assert!(
            parse_hosts(Some(&bad), Some("u"))
                .expect_err("bad")
                .contains("plain word")
        );
        let unknown = Value::Array(vec![entry(&[
            ("address", Value::Str("x".into())),
            ("key", Value::Str("secret".into())),
        ])]);
        assert!(
            parse_hosts(Some(&unknown), Some("u"))
                .expect_err("unknown")
                .contains("`key`")
        );
        assert!(parse_policy("tofu").is_ok());
        assert!(parse_policy("yolo").is_err());
    }

    #[test]
    fn outputs_hold_paths_and_settings_and_read_back() {
        let inv = Inventory {
            hosts: hosts(&["a"]),
            key: Some("/keys/id".to_owned()),
            known_hosts: "/keys/known".to_owned(),
            policy: HostKeyPolicy::TrustOnFirstUse,
            policy_text: "tofu".to_owned(),
            jump: None,
            connect_timeout: Duration::from_secs(7),
        };
        let out = node_outputs(&inv, &inv.hosts[0], "~/.dtk/nodes/svc/web");
        let back = NodeSsh::from_outputs(&out, "svc", "web").expect("back");
        assert_eq!(back.host.address, "a.example");
        assert_eq!(
            back.host.identity_file.as_deref(),
            Some(Path::new("/keys/id"))
        );
        assert_eq!(back.host.host_key_policy, HostKeyPolicy::TrustOnFirstUse);
        assert_eq!(back.host.connect_timeout, Duration::from_secs(7));
        assert_eq!(back.workdir, "~/.dtk/nodes/svc/web");

        // An AWS-style node: address and user only.
        let mut aws = Attributes::new();
        aws.insert("ssh_host".into(), Value::Str("3.4.5.6".into()));
        aws.insert("ssh_user".into(), Value::Str("ubuntu".into()));
        let back = NodeSsh::from_outputs(&aws, "svc", "web").expect("aws");
        assert_eq!(back.workdir, "~/.dtk/nodes/svc/web");
        assert_eq!(back.host.known_hosts_file, Path::new(DEFAULT_KNOWN_HOSTS));
        assert_eq!(back.host.host_key_policy, HostKeyPolicy::Strict);
        aws.remove("ssh_user");
        assert!(NodeSsh::from_outputs(&aws, "svc", "web").is_err());
    }

    #[test]
    fn a_long_home_gets_a_short_control_dir() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(100)));
        let dir = SshProvider::control_dir_for(&long);
        assert!(dir.as_os_str().len() < 60, "{}", dir.display());
        assert_eq!(
            SshProvider::control_dir_for(Path::new("/h")),
            Path::new("/h/run/ssh")
        );
    }

    #[test]
    fn transient_errors_are_retryable_refusals_are_not() {
        let dropped = from_ssh(
            "op".into(),
            SshError::ConnectionDropped {
                host: "h".into(),
                port: 22,
            },
        );
        assert!(dropped.is_retryable());
        let refused = from_ssh(
            "op".into(),
            SshError::AuthRefused {
                host: "h".into(),
                port: 22,
                user: "u".into(),
                identity: None,
                detail: "denied".into(),
            },
        );
        assert!(!refused.is_retryable());
    }
}
