//! Running actions on remote nodes through the system OpenSSH client.
//!
//! [`SshPool`] keeps one multiplexed master connection per host (OpenSSH `ControlMaster`, its
//! control socket in a private directory), so a node's actions pay for one handshake, not one
//! each, and runs every action as a job of a long-lived shell on it (the `shell` module),
//! each job a subshell of it where the node's `/proc` allows ([`SshPoolConfig::subshell_jobs`]),
//! else in a session and process group of its own; where the node cannot run such shells,
//! every action is a session of its own. With [`SshPoolConfig::keep_masters`], the
//! next pool on the same control directory adopts the connections. A semaphore bounds how
//! many actions run at once across all hosts.
//!
//! An action ([`ExecRequest`]) has the same meaning as on the local target: its environment is
//! visible to every line, the lines run in order, each in its own shell, and the first failing
//! line ends it; their output is collected from files, so a line may leave a server running;
//! `$DTK_OUTPUT` names a file for `name=value` outputs; a non-zero exit is an [`ExecOutput`],
//! not an error. The script travels over the session's stdin (to a job, through a pipe from
//! the shell's builtin `printf`), so no value is ever in a process's argv or a file on the
//! node, and no value is ever in an error or a log. How and why: see
//! `docs/decisions/ssh.md`.
//!
//! ```text
//! use std::time::Duration;
//! use dtk_target_ssh::transport::{ExecRequest, SshHost, SshPool};
//!
//! let pool = SshPool::new("/run/user/1000/dtk-ssh", 16)?;
//! let host = SshHost::new("10.0.0.5", "ubuntu", "/home/me/.dtk/known_hosts")
//!     .with_identity_file("/home/me/.dtk/id_ed25519");
//! let req = ExecRequest::new("~/.dtk/nodes/demo/web")
//!     .line("echo \"url=http://$(hostname):8080\" >> \"$DTK_OUTPUT\"")
//!     .env("PORT", "8080")
//!     .timeout(Duration::from_secs(300));
//! let out = pool.exec(&host, &req).await?;
//! assert_eq!(out.exit_code, Some(0));
//! pool.close_all().await;
//! ```
//!
//! `examples/ssh_bench.rs` is a complete program.

pub use dtk_model::provider::ExecOutput;

mod classify;
mod command;
mod script;
mod shell;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dtk_model::provider::Cancel;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use shell::{Answer, Opened, Shell};

/// How the client treats a host key that is not in the known-hosts file.
///
/// A key that *differs* from the recorded one is refused under every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HostKeyPolicy {
    /// Refuse a host whose key is not recorded (OpenSSH `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Record the key of a host seen for the first time and accept it
    /// (`StrictHostKeyChecking=accept-new`).
    TrustOnFirstUse,
}

/// Where and how to reach one SSH host.
///
/// It holds paths to keys, never key material, so its `Debug` output is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    /// Host name or IP address.
    pub address: String,
    /// TCP port of the SSH server.
    pub port: u16,
    /// Remote user to log in as.
    pub user: String,
    /// Private key to authenticate with; `None` uses ssh's default identity files.
    pub identity_file: Option<PathBuf>,
    /// The known-hosts file that host keys are checked against (and, under
    /// [`HostKeyPolicy::TrustOnFirstUse`], recorded in).
    pub known_hosts_file: PathBuf,
    /// What to do with a host key that is not in `known_hosts_file`.
    pub host_key_policy: HostKeyPolicy,
    /// A bastion to connect through, `[user@]address[:port]`; it is checked with the same
    /// identity, known-hosts file and policy.
    pub jump_host: Option<String>,
    /// How long connecting (TCP, banner, key exchange) may take.
    pub connect_timeout: Duration,
}

impl SshHost {
    /// A host on port 22 with the default identity files, a strict host-key policy and a
    /// 10-second connect timeout.
    pub fn new(
        address: impl Into<String>,
        user: impl Into<String>,
        known_hosts_file: impl Into<PathBuf>,
    ) -> Self {
        SshHost {
            address: address.into(),
            port: 22,
            user: user.into(),
            identity_file: None,
            known_hosts_file: known_hosts_file.into(),
            host_key_policy: HostKeyPolicy::Strict,
            jump_host: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// This host on another port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// This host, authenticating with the private key at `path`.
    pub fn with_identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// This host under another host-key policy.
    pub fn with_host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key_policy = policy;
        self
    }

    /// This host, reached through the jump host `[user@]address[:port]`.
    pub fn with_jump_host(mut self, jump: impl Into<String>) -> Self {
        self.jump_host = Some(jump.into());
        self
    }

    /// This host with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    fn invalid(&self, reason: String) -> SshError {
        SshError::InvalidHost {
            host: self.address.clone(),
            port: self.port,
            reason,
        }
    }

    /// Checks that ssh can take these settings as they are; returns the known-hosts path as
    /// an option value.
    fn check(&self) -> Result<String, SshError> {
        command::check_word("address", &self.address).map_err(|r| self.invalid(r))?;
        command::check_word("user", &self.user).map_err(|r| self.invalid(r))?;
        if let Some(identity) = &self.identity_file
            && command::option_path(identity).is_none()
        {
            return Err(self.invalid(format!(
                "the identity file path {} cannot be passed to ssh",
                identity.display()
            )));
        }
        if let Some(jump) = &self.jump_host {
            command::parse_jump(jump, &self.user).map_err(|r| self.invalid(r))?;
        }
        command::option_path(&self.known_hosts_file).ok_or_else(|| {
            self.invalid(format!(
                "the known-hosts path {} cannot be passed to ssh",
                self.known_hosts_file.display()
            ))
        })
    }

    /// What decides whether two hosts can share a master: everything that affects the
    /// connection, nothing that only affects actions.
    fn master_key(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.address.as_str(),
            &self.port.to_string(),
            &self.user,
            &self
                .identity_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            &self.known_hosts_file.display().to_string(),
            match self.host_key_policy {
                HostKeyPolicy::Strict => "strict",
                HostKeyPolicy::TrustOnFirstUse => "tofu",
            },
            self.jump_host.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(&h.finalize()[..8])
    }
}

/// One action to run on a node.
///
/// Its `Debug` output shows the environment's names and the number of lines, never values or
/// line text (lines may hold substituted secrets).
#[derive(Clone)]
pub struct ExecRequest {
    /// Shell lines, run in order by one `sh`; the first line that fails ends the action with
    /// its status.
    pub script: Vec<String>,
    /// Environment for every line, exported at the top of the script.
    pub env: Vec<(String, String)>,
    /// The remote directory the lines run in, created if missing; a leading `~/` is the
    /// remote user's home.
    pub workdir: String,
    /// How long the lines may run; connecting is bounded by [`SshHost::connect_timeout`].
    pub timeout: Duration,
    /// Set to stop the action early: its remote processes are stopped as on a timeout.
    pub cancel: Cancel,
    /// A directory inside `workdir` (relative, `/`-separated) that the lines run in, made
    /// if missing, and that `DTK_MODULE_DIR` names (a module's files on the node); the
    /// run's own bookkeeping files stay in `workdir`.
    pub module_dir: Option<String>,
}

impl ExecRequest {
    /// An action with no lines and no environment, in `workdir`, with a one-hour timeout.
    pub fn new(workdir: impl Into<String>) -> Self {
        ExecRequest {
            script: Vec::new(),
            env: Vec::new(),
            workdir: workdir.into(),
            timeout: Duration::from_secs(3600),
            cancel: Cancel::new(),
            module_dir: None,
        }
    }

    /// This action, its lines running in `dir` inside the work directory, with
    /// `DTK_MODULE_DIR` naming it.
    pub fn in_module_dir(mut self, dir: impl Into<String>) -> Self {
        self.module_dir = Some(dir.into());
        self
    }

    /// This action with one more line.
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.script.push(line.into());
        self
    }

    /// This action with one more environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// This action with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This action, stopped early when `cancel` is set.
    pub fn cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }
}

impl fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecRequest")
            .field("script_lines", &self.script.len())
            .field(
                "env_names",
                &self.env.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            )
            .field("workdir", &self.workdir)
            .field("module_dir", &self.module_dir)
            .field("timeout", &self.timeout)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// The error returned by [`SshPool::new`] and [`SshPool::exec`].
///
/// Every variant about a host names it and its port. None carries key material or an
/// environment value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The control directory could not be created or secured.
    #[error("cannot use {path} as the SSH control directory")]
    ControlDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The control directory's path is too long for a Unix socket path.
    #[error(
        "control socket path {path} is too long for a Unix socket (at most {max} bytes); \
         use a shorter control directory"
    )]
    ControlPathTooLong {
        /// A socket path that would be used.
        path: PathBuf,
        /// The longest usable directory path, in bytes.
        max: usize,
    },
    /// The host's settings cannot be passed to ssh.
    #[error("invalid SSH settings for {host}:{port}: {reason}")]
    InvalidHost {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// What is wrong.
        reason: String,
    },
    /// The action cannot be sent (bad environment name, NUL byte, empty work directory).
    #[error("invalid action for {host}:{port}: {reason}")]
    InvalidRequest {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// What is wrong; never a value.
        reason: String,
    },
    /// The `ssh` program could not be started.
    #[error("cannot run the ssh client for {host}:{port}")]
    Spawn {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than the host's connect timeout.
    #[error("connecting to {host}:{port} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The connection could not be made (refused, unreachable, unknown name, ...).
    #[error("cannot connect to {host}:{port}: {detail}")]
    ConnectFailed {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// ssh's message.
        detail: String,
    },
    /// The server refused every key offered.
    #[error(
        "{user}@{host}:{port} refused authentication with {}: is its public key in that \
         user's authorized_keys? ({detail})",
        identity_text(.identity)
    )]
    AuthRefused {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// Remote user.
        user: String,
        /// The identity file offered, if one was configured.
        identity: Option<PathBuf>,
        /// ssh's message.
        detail: String,
    },
    /// Strict policy: the host's key is not in the known-hosts file.
    #[error(
        "the host key of {host}:{port}{} is not in {known_hosts} and the host key policy is \
         strict: check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) \
         and add its key to that file (ssh-keyscan -p {port} {host}), or use the trust-on-first-use \
         policy",
        offered(.fingerprint)
    )]
    HostKeyUnknown {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// The known-hosts file that has no entry.
        known_hosts: PathBuf,
        /// The fingerprint the host offered, when ssh showed it.
        fingerprint: Option<String>,
    },
    /// The host offered a key other than the one recorded: refused under every policy.
    #[error(
        "HOST KEY CHANGED for {host}:{port}: the key it offers{} is not the one recorded in \
         {known_hosts}. This may be a man-in-the-middle attack, and the connection was refused. \
         If the host was reinstalled, verify its new key out of band, then remove the old entry \
         (ssh-keygen -f {known_hosts} -R '[{host}]:{port}')",
        offered(.fingerprint)
    )]
    HostKeyChanged {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// The known-hosts file with the recorded key.
        known_hosts: PathBuf,
        /// The fingerprint the host offered, when ssh showed it.
        fingerprint: Option<String>,
    },
    /// The connection was lost while the action ran (or before its results were read): the
    /// action may or may not have completed. The next action reconnects.
    #[error("the connection to {host}:{port} dropped during the action")]
    ConnectionDropped {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
    },
    /// The server would not open a session on the connection.
    #[error("{host}:{port} did not open a session: {detail}")]
    SessionFailed {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// ssh's message.
        detail: String,
    },
    /// The action was cancelled; its processes were signalled to stop.
    #[error("the action on {host}:{port} was cancelled")]
    Cancelled {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
    },
    /// The action ran longer than its timeout; its processes were signalled to stop.
    #[error("the action on {host}:{port} timed out after {timeout:?}")]
    Timeout {
        /// Host address.
        host: String,
        /// Port.
        port: u16,
        /// The action's timeout.
        timeout: Duration,
    },
}

impl SshError {
    /// Whether trying again later may succeed: connection problems, not refusals (host key,
    /// authentication, invalid settings) nor timeouts of the action itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::ConnectTimeout { .. }
                | SshError::ConnectFailed { .. }
                | SshError::ConnectionDropped { .. }
                | SshError::SessionFailed { .. }
        )
    }
}

fn identity_text(identity: &Option<PathBuf>) -> String {
    identity.as_ref().map_or_else(
        || "the default keys".to_owned(),
        |p| format!("key {}", p.display()),
    )
}

fn offered(fingerprint: &Option<String>) -> String {
    fingerprint
        .as_ref()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default()
}

/// Settings of an [`SshPool`]; [`Default`] gives the values [`SshPool::new`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPoolConfig {
    /// How many actions (each holding one session, or one connection being made) may run at
    /// once across all hosts. At least 1.
    pub max_connections: usize,
    /// How many sessions may be open at once on one host's connection (sshd's `MaxSessions`
    /// defaults to 10). At least 1.
    pub sessions_per_connection: usize,
    /// How long an idle master stays up (`ControlPersist`): it outlives this process by at
    /// most that long if [`SshPool::close_all`] is never called.
    pub idle_timeout: Duration,
    /// The ssh client to run.
    pub ssh_program: PathBuf,
    /// Leave the masters running when the pool is dropped, for at most `idle_timeout`, so
    /// that a later pool with the same control directory (the next `dtk` command) adopts
    /// them instead of connecting again. [`SshPool::close_all`] still ends them.
    pub keep_masters: bool,
    /// How long a long-lived shell may wait for its next action before it is closed (which
    /// removes its runs' files, and lets an idle master end after `idle_timeout`).
    pub shell_idle_timeout: Duration,
    /// Run a long-lived shell's jobs as subshells of it where the node allows (Linux: a
    /// subshell reads its own process in `/proc`), rather than each as `setsid sh -s`, a
    /// session of its own. A subshell is a fork of the shell, where `setsid sh -s` is a fork
    /// and two programs started; a timeout then stops the job's processes found by ancestry
    /// and start time in the shell's process group (see `docs/decisions/ssh.md`).
    pub subshell_jobs: bool,
}

impl Default for SshPoolConfig {
    fn default() -> Self {
        SshPoolConfig {
            max_connections: 16,
            sessions_per_connection: 8,
            idle_timeout: Duration::from_secs(120),
            ssh_program: PathBuf::from("ssh"),
            keep_masters: false,
            shell_idle_timeout: Duration::from_secs(5),
            subshell_jobs: true,
        }
    }
}

/// Runs actions on SSH hosts, one multiplexed connection per host, with bounded fan-out.
///
/// Cloning is cheap and shares the connections. Call [`close_all`](Self::close_all) when done;
/// dropping the last clone also asks every master to exit, unless
/// [`SshPoolConfig::keep_masters`] leaves them for the next pool.
#[derive(Clone)]
pub struct SshPool {
    inner: Arc<Inner>,
}

struct Inner {
    /// The last archives compressed for uploads, by the digest of the plain archive: a
    /// module's files go to many nodes, and are compressed once.
    gzipped: tokio::sync::Mutex<Vec<Gzipped>>,
    control_dir: PathBuf,
    config: SshPoolConfig,
    limit: Semaphore,
    masters: Mutex<HashMap<String, Arc<Master>>>,
}

/// A compressed archive, by the SHA-256 of the plain one.
type Gzipped = ([u8; 32], Arc<Vec<u8>>);

/// One host's master connection.
struct Master {
    host: SshHost,
    /// The control socket's path as an ssh option value.
    socket: String,
    socket_path: PathBuf,
    log_path: PathBuf,
    sessions: Semaphore,
    state: tokio::sync::Mutex<State>,
    /// Shell words naming finished runs' tombstones (see the `script` module).
    cleanup: Mutex<Vec<String>>,
    /// Long-lived shells on this connection waiting for their next job (see the `shell`
    /// module).
    shells: Mutex<Vec<Shell>>,
    /// The node cannot run long-lived shells (no `setsid` or `base64`, or the shell did not
    /// start): every action is a session of its own.
    no_shells: AtomicBool,
    /// A socket found at first use was adopted unchecked; one found later (after the master
    /// was marked down) is checked before it is trusted.
    adopted: AtomicBool,
    /// How long an idle shell is kept.
    shell_idle: Duration,
    /// Whether a task is closing this master's shells as they idle out.
    reaping: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Down,
    Up { last_used: Instant },
}

/// Longest Unix socket path (Linux `sun_path` less its NUL), less what ssh appends to the
/// control path while it creates the socket (`.` and 16 random characters).
const MAX_SOCKET_PATH: usize = 107 - 17;
/// The socket name: 16 hex digits of the master key.
const SOCKET_NAME_LEN: usize = 16;

impl fmt::Debug for SshPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshPool")
            .field("control_dir", &self.inner.control_dir)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SshPool {
    /// A pool whose control sockets live in `control_dir` (created with mode 0700), running at
    /// most `max_connections` actions at once.
    pub fn new(control_dir: impl Into<PathBuf>, max_connections: usize) -> Result<Self, SshError> {
        Self::with_config(
            control_dir,
            SshPoolConfig {
                max_connections,
                ..Default::default()
            },
        )
    }

    /// A pool with explicit settings.
    pub fn with_config(
        control_dir: impl Into<PathBuf>,
        config: SshPoolConfig,
    ) -> Result<Self, SshError> {
        let control_dir = control_dir.into();
        let control_dir = prepare_control_dir(&control_dir)?;
        let config = SshPoolConfig {
            max_connections: config.max_connections.max(1),
            sessions_per_connection: config.sessions_per_connection.max(1),
            ..config
        };
        Ok(SshPool {
            inner: Arc::new(Inner {
                gzipped: tokio::sync::Mutex::new(Vec::new()),
                control_dir,
                limit: Semaphore::new(config.max_connections),
                config,
                masters: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The directory holding the control sockets.
    pub fn control_dir(&self) -> &Path {
        &self.inner.control_dir
    }

    /// Runs `req` on `host`, over that host's master connection (made on first use, and again
    /// after it was lost).
    ///
    /// A non-zero exit is `Ok` with that [`ExecOutput::exit_code`]; `Err` means the action
    /// could not be run or its outcome is unknown.
    pub async fn exec(&self, host: &SshHost, req: &ExecRequest) -> Result<ExecOutput, SshError> {
        let started = Instant::now();
        let known_hosts = host.check()?;
        script::check_request(req).map_err(|reason| SshError::InvalidRequest {
            host: host.address.clone(),
            port: host.port,
            reason,
        })?;
        let master = self.master(host)?;
        // A session slot on this host first: waiting for one must not hold a pool slot that
        // another host could use.
        let _session = master.sessions.acquire().await.map_err(|_| closed(host))?;
        let _permit = self.inner.limit.acquire().await.map_err(|_| closed(host))?;

        let mut retried = false;
        loop {
            self.ensure_up(&master, &known_hosts).await?;
            match self.run(&master, &known_hosts, req, started).await {
                Err(Run::Unstarted) if !retried => {
                    // The master vanished before the action began: nothing ran, start again.
                    tracing::debug!(host = %master.host.address, port = master.host.port,
                        "master gone before the action started; reconnecting");
                    retried = true;
                }
                Err(Run::Unstarted) => return Err(dropped(&master.host)),
                Err(Run::Failed(e)) => return Err(e),
                Ok(out) => {
                    master.touch().await;
                    return Ok(out);
                }
            }
        }
    }

    /// Unpacks the tar archive `archive` into `dir` inside `workdir` on `host` (both made
    /// if missing; `dir` empty for `workdir` itself), after running `before` there (a shell
    /// script: this crate's own, to prepare a module copy; a failure of it stops the
    /// upload). Entries are unpacked in the archive's order. The archive travels over the
    /// session's stdin, through the host's master connection; nothing of it is in an argv.
    pub async fn upload(
        &self,
        host: &SshHost,
        workdir: &str,
        dir: &str,
        archive: Vec<u8>,
        before: &str,
        timeout: Duration,
    ) -> Result<(), SshError> {
        let known_hosts = host.check()?;
        let invalid = |reason: String| SshError::InvalidRequest {
            host: host.address.clone(),
            port: host.port,
            reason,
        };
        if workdir.is_empty() || [workdir, dir].iter().any(|p| p.contains(['\0', '\n'])) {
            return Err(invalid(
                "the upload directory is empty or holds a NUL byte or a newline".to_owned(),
            ));
        }
        let master = self.master(host)?;
        let _session = master.sessions.acquire().await.map_err(|_| closed(host))?;
        let _permit = self.inner.limit.acquire().await.map_err(|_| closed(host))?;
        let mut retried = false;
        loop {
            self.ensure_up(&master, &known_hosts).await?;
            let sent = upload_exchange(&self.inner, &master, workdir, dir, &archive, before);
            let out = tokio::time::timeout(timeout, sent)
                .await
                .map_err(|_| SshError::Timeout {
                    host: host.address.clone(),
                    port: host.port,
                    timeout,
                })?
                .map_err(|source| spawn_error(host, source))?;
            if out.code == Some(0) {
                master.touch().await;
                return Ok(());
            }
            if out.code == Some(255)
                && classify::master_unavailable(&out.stdout, &out.stderr)
                && self.mark_down_if_dead(&master).await
            {
                // The master was gone before anything was unpacked: connect again, once.
                if retried {
                    return Err(dropped(host));
                }
                retried = true;
                continue;
            }
            return Err(SshError::SessionFailed {
                host: host.address.clone(),
                port: host.port,
                detail: last_line(&out.stderr).unwrap_or_else(|| match out.code {
                    Some(code) => format!("unpacking files ended with exit status {code}"),
                    None => "unpacking files was ended by a signal".to_owned(),
                }),
            });
        }
    }

    /// Asks every master to exit (`ssh -O exit`) and forgets them; later actions reconnect.
    pub async fn close_all(&self) {
        let masters: Vec<Arc<Master>> = match self.inner.masters.lock() {
            Ok(mut map) => map.drain().map(|(_, m)| m).collect(),
            Err(_) => return,
        };
        let mut tasks = tokio::task::JoinSet::new();
        for master in masters {
            let ssh = self.inner.config.ssh_program.clone();
            tasks.spawn(async move {
                // Each shell removes the files of the runs it ran as it ends.
                for shell in master.take_shells() {
                    shell.close().await;
                }
                let mut state = master.state.lock().await;
                if matches!(*state, State::Up { .. }) {
                    let cleanup = master.take_cleanup();
                    if !cleanup.is_empty() {
                        let text = script::cleanup_script(&cleanup).into_bytes();
                        let limit = Duration::from_secs(10);
                        let _ = tokio::time::timeout(limit, session(&ssh, &master, text)).await;
                    }
                    let _ = control(&ssh, &master, "exit").await;
                }
                *state = State::Down;
                let _ = std::fs::remove_file(&master.socket_path);
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The master slot for `host`, made on first use.
    fn master(&self, host: &SshHost) -> Result<Arc<Master>, SshError> {
        let key = host.master_key();
        let mut map = self.inner.masters.lock().map_err(|_| closed(host))?;
        if let Some(m) = map.get(&key) {
            return Ok(Arc::clone(m));
        }
        let socket_path = self.inner.control_dir.join(&key);
        let socket = command::option_path(&socket_path).ok_or_else(|| {
            host.invalid(format!(
                "the control socket path {} cannot be passed to ssh",
                socket_path.display()
            ))
        })?;
        let master = Arc::new(Master {
            host: host.clone(),
            socket,
            log_path: self.inner.control_dir.join(format!("{key}.log")),
            socket_path,
            sessions: Semaphore::new(self.inner.config.sessions_per_connection),
            state: tokio::sync::Mutex::new(State::Down),
            cleanup: Mutex::new(Vec::new()),
            shells: Mutex::new(Vec::new()),
            no_shells: AtomicBool::new(false),
            adopted: AtomicBool::new(false),
            shell_idle: self.inner.config.shell_idle_timeout,
            reaping: AtomicBool::new(false),
        });
        map.insert(key, Arc::clone(&master));
        Ok(master)
    }

    /// Makes sure `master` is up: trusted if used recently, checked if idle for a while (its
    /// idle timeout may have ended it), started if down.
    async fn ensure_up(&self, master: &Master, known_hosts: &str) -> Result<(), SshError> {
        let ssh = &self.inner.config.ssh_program;
        let mut state = master.state.lock().await;
        if let State::Up { last_used } = *state {
            if last_used.elapsed() < self.inner.config.idle_timeout / 2 {
                return Ok(());
            }
            if control(ssh, master, "check").await.is_ok() {
                *state = State::Up {
                    last_used: Instant::now(),
                };
                return Ok(());
            }
        } else if master.socket_path.exists()
            && (!master.adopted.swap(true, Ordering::Relaxed)
                || control(ssh, master, "check").await.is_ok())
        {
            // A socket left by an earlier pool or process (same settings, same private
            // directory): at first use, adopt its master without asking it first. If it is
            // gone, the first session fails at once (sessions never connect on their own),
            // the master is marked down, and the action runs after a new connection.
            *state = State::Up {
                last_used: Instant::now(),
            };
            return Ok(());
        }
        *state = State::Down;
        // Whatever socket is left answers no more: a master cannot bind over it.
        let _ = std::fs::remove_file(&master.socket_path);
        self.start(master, known_hosts).await?;
        *state = State::Up {
            last_used: Instant::now(),
        };
        Ok(())
    }

    /// Starts `master`'s connection: ssh authenticates, then forks a background master.
    async fn start(&self, master: &Master, known_hosts: &str) -> Result<(), SshError> {
        let host = &master.host;
        let args = command::master_args(
            host,
            &master.socket,
            known_hosts,
            self.inner.config.idle_timeout,
        )
        .map_err(|r| host.invalid(r))?;
        let log = create_private_file(&master.log_path).map_err(|source| SshError::ControlDir {
            path: master.log_path.clone(),
            source,
        })?;
        tracing::debug!(host = %host.address, port = host.port, user = %host.user, "starting ssh master");
        let mut cmd = Command::new(&self.inner.config.ssh_program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // Authentication may add to the connect timeout; ssh enforces the latter itself.
        let limit = host.connect_timeout * 2 + Duration::from_secs(5);
        let result = tokio::time::timeout(limit, cmd.status()).await;
        let stderr = std::fs::read_to_string(&master.log_path).unwrap_or_default();
        let _ = std::fs::remove_file(&master.log_path);
        match result {
            Err(_) => Err(SshError::ConnectTimeout {
                host: host.address.clone(),
                port: host.port,
                timeout: host.connect_timeout,
            }),
            Ok(Err(source)) => Err(spawn_error(host, source)),
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(_)) => {
                let error = classify::classify(&stderr).into_error(host);
                tracing::debug!(host = %host.address, port = host.port, %error, "ssh master failed");
                Err(error)
            }
        }
    }

    /// Runs the action's script (in a shell, or in a session of its own); its trailer carries
    /// status and outputs.
    /// Without a trailer, asks the node what became of the run.
    async fn run(
        &self,
        master: &Arc<Master>,
        known_hosts: &str,
        req: &ExecRequest,
        started: Instant,
    ) -> Result<ExecOutput, Run> {
        let host = &master.host;
        let ssh = &self.inner.config.ssh_program;
        let run_id = run_id();
        let marker = trailer_marker(&run_id);
        tracing::debug!(host = %host.address, port = host.port, workdir = %req.workdir,
            lines = req.script.len(), run = %run_id, "running action");
        let cleanup = master.take_cleanup();
        // What the run's files are named: the run's id, unless a shell's job names its own.
        let mut stem = script::run_file_stem(&run_id);
        let stop = tokio::select! {
            out = exchange(&self.inner.config, master, req, &run_id, &marker, &cleanup, &mut stem) => Ok(out),
            () = tokio::time::sleep(req.timeout) => Err(SshError::Timeout {
                host: host.address.clone(),
                port: host.port,
                timeout: req.timeout,
            }),
            () = cancelled(&req.cancel) => Err(SshError::Cancelled {
                host: host.address.clone(),
                port: host.port,
            }),
        };
        let (out, ran) = match stop {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                master.defer_cleanup(cleanup);
                return Err(Run::Failed(spawn_error(host, source)));
            }
            Err(error) => {
                // The local client is gone (killed on drop); stop the remote processes too,
                // in a task of its own, so that the stop still happens when the caller gives
                // up on this future (an executor's time limit just above the action's).
                master.defer_cleanup(cleanup);
                let kill = script::kill_script(&req.workdir, &stem).into_bytes();
                let limit = host.connect_timeout + Duration::from_secs(10);
                let (ssh, stopping) = (ssh.clone(), Arc::clone(master));
                let stop = tokio::spawn(async move {
                    let _ = tokio::time::timeout(limit, session(&ssh, &stopping, kill)).await;
                });
                let _ = stop.await;
                return Err(Run::Failed(error));
            }
        };
        if let Some(trailer) = script::split_trailer(&out.stdout, &marker) {
            match ran {
                Ran::Session => {
                    master.defer_cleanup(vec![script::tombstone_word(&req.workdir, &run_id)]);
                }
                Ran::Shell(Some(shell)) => release(master, shell, &cleanup).await,
                Ran::Shell(None) => {
                    // The shell ended after the job: its files are nobody's now.
                    let mut words = cleanup;
                    words.push(script::run_words(&req.workdir, &stem));
                    master.defer_cleanup(words);
                }
            }
            let mut stderr = out.stderr;
            stderr.extend_from_slice(&trailer.stderr);
            return Ok(ExecOutput {
                exit_code: Some(trailer.status),
                stdout: trailer.stdout,
                stderr,
                outputs: trailer.outputs,
                duration: started.elapsed(),
            });
        }

        // No trailer: the script did not end normally, or never began. Ask the node. A shell
        // that ran it is not told the result was read: it ends, and leaves this job's files
        // (which the collection removes).
        drop(ran);
        master.defer_cleanup(cleanup);
        let code = out.code;
        let collect = script::collect_script(&req.workdir, &stem, &marker).into_bytes();
        let limit = host.connect_timeout + Duration::from_secs(10);
        let reply = match tokio::time::timeout(limit, session(ssh, master, collect)).await {
            Ok(Ok(c)) if c.status.code() == Some(0) => Some(c),
            Ok(Err(source)) => return Err(Run::Failed(spawn_error(host, source))),
            Ok(Ok(_)) | Err(_) => None,
        };
        let Some(reply) = reply else {
            // The node could not be asked: the connection is most likely gone.
            let unstarted =
                code == Some(255) && classify::master_unavailable(&out.stdout, &out.stderr);
            return Err(self
                .after_drop(master, known_hosts, &req.workdir, &run_id, &stem, unstarted)
                .await);
        };
        let collected = script::parse_collected(&reply.stdout, &marker).map_err(|detail| {
            Run::Failed(SshError::SessionFailed {
                host: host.address.clone(),
                port: host.port,
                detail,
            })
        })?;
        let exit_code = match code {
            // The script's own status (it ended before its trap was set, or replaced its
            // shell): unambiguous unless it is ssh's 255.
            Some(c) if c != 255 => Some(c),
            _ if collected.status.is_some() => collected.status,
            // Started, no status recorded: the script's shell was killed by a signal.
            _ if collected.started => None,
            _ => {
                // The master answered but the script never ran: the session was refused.
                let detail = last_line(&out.stderr)
                    .unwrap_or_else(|| "the session ended before the action started".to_owned());
                return Err(Run::Failed(SshError::SessionFailed {
                    host: host.address.clone(),
                    port: host.port,
                    detail,
                }));
            }
        };
        let mut stderr = out.stderr;
        stderr.extend_from_slice(&reply.stderr);
        Ok(ExecOutput {
            exit_code,
            stdout: collected.stdout,
            stderr,
            outputs: collected.outputs,
            duration: started.elapsed(),
        })
    }

    /// Decides what a lost connection means for the action `run_id` (its files named by
    /// `stem`). When ssh's own words
    /// show the master was already gone (`unstarted`), the action never began. Otherwise the
    /// master is restarted and the node asked whether the action's script started: if not,
    /// it is safe to run it now. A refusal while reconnecting (host key, authentication)
    /// is reported as such; anything else is a dropped connection.
    async fn after_drop(
        &self,
        master: &Master,
        known_hosts: &str,
        workdir: &str,
        run_id: &str,
        stem: &str,
        unstarted: bool,
    ) -> Run {
        let host = &master.host;
        if !self.mark_down_if_dead(master).await {
            return Run::Failed(dropped(host));
        }
        if unstarted {
            return Run::Unstarted;
        }
        match self.ensure_up(master, known_hosts).await {
            Ok(()) => {}
            Err(
                e @ (SshError::HostKeyChanged { .. }
                | SshError::HostKeyUnknown { .. }
                | SshError::AuthRefused { .. }),
            ) => return Run::Failed(e),
            Err(_) => return Run::Failed(dropped(host)),
        }
        let ssh = &self.inner.config.ssh_program;
        let marker = trailer_marker(run_id);
        let collect = script::collect_script(workdir, stem, &marker).into_bytes();
        let limit = host.connect_timeout + Duration::from_secs(10);
        match tokio::time::timeout(limit, session(ssh, master, collect)).await {
            Ok(Ok(c)) if c.status.code() == Some(0) => {
                match script::parse_collected(&c.stdout, &marker) {
                    Ok(c) if !c.started => Run::Unstarted,
                    _ => Run::Failed(dropped(host)),
                }
            }
            _ => Run::Failed(dropped(host)),
        }
    }

    /// Checks `master`; if it is dead, marks it down so the next action restarts it. Returns
    /// whether it was dead.
    async fn mark_down_if_dead(&self, master: &Master) -> bool {
        if control(&self.inner.config.ssh_program, master, "check")
            .await
            .is_ok()
        {
            return false;
        }
        *master.state.lock().await = State::Down;
        true
    }
}

/// How [`SshPool::run`] failed.
enum Run {
    /// The master was gone before the script started: safe to reconnect and run it.
    Unstarted,
    /// Anything else.
    Failed(SshError),
}

impl Master {
    /// Tombstones to remove, handed to the next script on this connection.
    fn take_cleanup(&self) -> Vec<String> {
        take_all(&self.cleanup)
    }

    /// Every idle shell, taken out (dropping them ends them).
    fn take_shells(&self) -> Vec<Shell> {
        take_all(&self.shells)
    }

    /// An idle shell whose session is still there.
    fn idle_shell(&self) -> Option<Box<Shell>> {
        let mut shells = self.shells.lock().ok()?;
        while let Some(mut shell) = shells.pop() {
            if !shell.is_gone() {
                return Some(Box::new(shell));
            }
        }
        None
    }

    /// Puts `shell` back among the idle ones, and makes sure a task closes it if it idles
    /// out.
    fn give_back(self: &Arc<Self>, mut shell: Box<Shell>) {
        shell.idle_since = Instant::now();
        if let Ok(mut v) = self.shells.lock() {
            v.push(*shell);
        }
        if !self.reaping.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).reap());
        }
    }

    /// Closes shells idle for longer than `shell_idle`, until none is left.
    async fn reap(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.shell_idle).await;
            let expired: Vec<Shell> = match self.shells.lock() {
                Ok(mut shells) => {
                    let (old, keep) = std::mem::take(&mut *shells)
                        .into_iter()
                        .partition(|s| s.idle_since.elapsed() >= self.shell_idle);
                    *shells = keep;
                    old
                }
                Err(_) => Vec::new(),
            };
            for shell in expired {
                shell.close().await;
            }
            let empty = self.shells.lock().map(|v| v.is_empty()).unwrap_or(true);
            if empty {
                self.reaping.store(false, Ordering::Release);
                // A shell given back just now saw the task still running: stay for it.
                let empty = self.shells.lock().map(|v| v.is_empty()).unwrap_or(true);
                if empty || self.reaping.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        }
    }

    fn defer_cleanup(&self, words: Vec<String>) {
        if let Ok(mut v) = self.cleanup.lock() {
            v.extend(words);
        }
    }

    async fn touch(&self) {
        let mut state = self.state.lock().await;
        if let State::Up { .. } = *state {
            *state = State::Up {
                last_used: Instant::now(),
            };
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No async here: ask the remaining masters to exit with short blocking commands.
        if self.config.keep_masters {
            return;
        }
        let Ok(map) = self.masters.get_mut() else {
            return;
        };
        let children: Vec<_> = map
            .values()
            .filter(|m| m.socket_path.exists())
            .filter_map(|m| {
                std::process::Command::new(&self.config.ssh_program)
                    .args(command::control_args(&m.host, &m.socket, "exit"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        for mut child in children {
            let _ = child.wait();
        }
    }
}

/// Everything in `list`, taken out (nothing if its lock is poisoned).
fn take_all<T>(list: &Mutex<Vec<T>>) -> Vec<T> {
    list.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Resolves once `cancel` is set (polled: [`Cancel`] is a plain flag).
async fn cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last non-empty line of ssh's stderr.
fn last_line(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Where an action's script ran.
enum Ran {
    /// In a session of its own; the script removed the files `cleanup` named.
    Session,
    /// As a job of a long-lived shell, which is given back (when it can take another job)
    /// for its caller to tell it the result was read ([`release`]).
    Shell(Option<Box<Shell>>),
}

/// Runs action `req` as run `run_id` (trailer `marker`) over `master`: as a job of one of
/// its long-lived shells (opened if none is idle), or, where the node cannot run those, in
/// a session of its own; `cleanup` names earlier runs' files to remove. A job names its
/// files by its shell's stem, which it writes to `stem` before it starts.
async fn exchange(
    config: &SshPoolConfig,
    master: &Arc<Master>,
    req: &ExecRequest,
    run_id: &str,
    marker: &str,
    cleanup: &[String],
    stem: &mut String,
) -> io::Result<(Answer, Ran)> {
    let ssh = &config.ssh_program;
    match shell_of(ssh, master, config.subshell_jobs).await? {
        Some(Ok(mut shell)) => {
            stem.clone_from(&shell.stem);
            let script = script::run_script(req, run_id, &shell.stem, marker, &[], shell.place);
            let files = script::run_words(&req.workdir, &shell.stem);
            let job = if shell.place == script::Place::Subshell {
                script::subshell_job(&script, marker, &files)
            } else {
                script::shell_job(&script, marker, &files)
            };
            let (answer, reusable) = shell.run(job.as_bytes(), marker).await?;
            return Ok((answer, Ran::Shell(reusable.then_some(shell))));
        }
        Some(Err(answer)) => return Ok((answer, Ran::Session)),
        None => {}
    }
    let script = script::run_script(req, run_id, stem, marker, cleanup, script::Place::Session);
    let answer = session(ssh, master, script.into_bytes()).await?;
    Ok((answer.into(), Ran::Session))
}

/// Sends an upload (see [`SshPool::upload`]) through one of `master`'s long-lived shells,
/// or in a session of its own where the node cannot run those.
async fn upload_exchange(
    inner: &Inner,
    master: &Arc<Master>,
    workdir: &str,
    dir: &str,
    archive: &[u8],
    before: &str,
) -> io::Result<Answer> {
    let ssh = &inner.config.ssh_program;
    match shell_of(ssh, master, inner.config.subshell_jobs).await? {
        Some(Ok(mut shell)) => {
            let marker = trailer_marker(&run_id());
            let job = if shell.gzip {
                let gz = gzipped(inner, archive).await?;
                script::shell_upload(workdir, dir, &gz, true, before, &marker)
            } else {
                script::shell_upload(workdir, dir, archive, false, before, &marker)
            };
            // An upload has no run files: nothing to confirm, the shell is ready again.
            let (answer, reusable) = shell.run(job.as_bytes(), &marker).await?;
            if reusable {
                master.give_back(shell);
            }
            Ok(answer)
        }
        Some(Err(answer)) => Ok(answer),
        None => {
            let program = script::upload_script(workdir, dir, before);
            let remote = format!("exec sh -c {}", script::quote(&program));
            session_with(ssh, master, &remote, archive.to_vec())
                .await
                .map(Answer::from)
        }
    }
}

/// `archive` gzip-compressed, from the pool's few last ones when it was compressed before.
/// Concurrent uploads of the same files wait for one compression.
async fn gzipped(inner: &Inner, archive: &[u8]) -> io::Result<Arc<Vec<u8>>> {
    const KEEP: usize = 4;
    let digest: [u8; 32] = Sha256::digest(archive).into();
    let mut cache = inner.gzipped.lock().await;
    if let Some((_, gz)) = cache.iter().find(|(d, _)| *d == digest) {
        return Ok(Arc::clone(gz));
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(archive.len() / 4),
        flate2::Compression::default(),
    );
    io::Write::write_all(&mut encoder, archive)?;
    let gz = Arc::new(encoder.finish()?);
    if cache.len() == KEEP {
        cache.remove(0);
    }
    cache.push((digest, Arc::clone(&gz)));
    Ok(gz)
}

/// An idle shell of `master`, or a new one (running jobs as subshells if `subshells`
/// and the node allows); `None` when the node cannot run them, `Err` with what the
/// session said when it would not open.
async fn shell_of(
    ssh: &Path,
    master: &Master,
    subshells: bool,
) -> io::Result<Option<Result<Box<Shell>, Answer>>> {
    if master.no_shells.load(Ordering::Relaxed) {
        return Ok(None);
    }
    if let Some(shell) = master.idle_shell() {
        return Ok(Some(Ok(shell)));
    }
    Ok(match Shell::open(ssh, master, subshells).await? {
        Opened::Ready(shell) => Some(Ok(shell)),
        Opened::Unsupported => {
            tracing::debug!(host = %master.host.address, port = master.host.port,
                "no base64 on the node, or no way to run a job: one session per action");
            master.no_shells.store(true, Ordering::Relaxed);
            None
        }
        // The connection is gone: the caller reconnects, or tells what happened.
        Opened::Failed(answer)
            if answer.code == Some(255)
                && classify::master_unavailable(&answer.stdout, &answer.stderr) =>
        {
            Some(Err(answer))
        }
        // The connection is there but the shell would not start or answer (an odd login
        // shell, a server that refuses it): sessions of their own still work.
        Opened::Failed(answer) => {
            tracing::debug!(host = %master.host.address, port = master.host.port,
                status = ?answer.code, "the long-lived shell did not start; one session per action");
            master.no_shells.store(true, Ordering::Relaxed);
            None
        }
    })
}

/// Tells `shell` its last job's result was read (its files may be emptied for the next job,
/// and `earlier`'s removed: [`script::shell_confirm`]) and puts it back among `master`'s
/// idle shells; `earlier` waits for another script if the shell is gone.
async fn release(master: &Arc<Master>, mut shell: Box<Shell>, earlier: &[String]) {
    if shell.send(&script::shell_confirm(earlier)).await {
        master.give_back(shell);
    } else if !earlier.is_empty() {
        master.defer_cleanup(earlier.to_vec());
    }
}

/// Runs one session over `master` with `input` on its stdin, to completion.
async fn session(ssh: &Path, master: &Master, input: Vec<u8>) -> io::Result<std::process::Output> {
    session_with(ssh, master, script::REMOTE_COMMAND, input).await
}

/// Runs one session of `remote_command` over `master` with `input` on its stdin.
async fn session_with(
    ssh: &Path,
    master: &Master,
    remote_command: &str,
    input: Vec<u8>,
) -> io::Result<std::process::Output> {
    let mut child = Command::new(ssh)
        .args(command::session_args(
            &master.host,
            &master.socket,
            remote_command,
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take();
    let writer = async move {
        if let Some(mut stdin) = stdin {
            // A script that exits early closes its stdin: a broken pipe is not an error here.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    };
    let (_, output) = tokio::join!(writer, child.wait_with_output());
    output
}

/// Sends a control request to `master`: `Ok` when the master answered.
async fn control(ssh: &Path, master: &Master, request: &str) -> Result<(), ()> {
    let status = Command::new(ssh)
        .args(command::control_args(&master.host, &master.socket, request))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(10), status).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        _ => Err(()),
    }
}

fn prepare_control_dir(dir: &Path) -> Result<PathBuf, SshError> {
    let err = |source| SshError::ControlDir {
        path: dir.to_path_buf(),
        source,
    };
    let dir = std::path::absolute(dir).map_err(err)?;
    let err = |source| SshError::ControlDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    let probe = dir.join("0".repeat(SOCKET_NAME_LEN));
    if probe.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(SshError::ControlPathTooLong {
            path: probe,
            max: MAX_SOCKET_PATH - SOCKET_NAME_LEN - 1,
        });
    }
    Ok(dir)
}

fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// A word that marks the trailer of run `run_id`: unknown to the commands (it is only in the
/// script text, which they cannot read), so their output cannot fake it by accident.
fn trailer_marker(run_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(run_id.as_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(nanos.to_le_bytes());
    let local = Box::new(0u8);
    h.update((std::ptr::from_ref(&*local) as usize).to_le_bytes());
    format!("dtk-end-{}", hex::encode(&h.finalize()[..16]))
}

/// A run id unique on this machine and across concurrent calls: pid, time, counter.
fn run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{:x}-{n:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

fn spawn_error(host: &SshHost, source: io::Error) -> SshError {
    SshError::Spawn {
        host: host.address.clone(),
        port: host.port,
        source,
    }
}

fn dropped(host: &SshHost) -> SshError {
    SshError::ConnectionDropped {
        host: host.address.clone(),
        port: host.port,
    }
}

fn closed(host: &SshHost) -> SshError {
    SshError::SessionFailed {
        host: host.address.clone(),
        port: host.port,
        detail: "the connection pool is shutting down".to_owned(),
    }
}
