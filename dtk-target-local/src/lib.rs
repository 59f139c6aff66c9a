//! The built-in `local` target provider of dtk: nodes are sandbox directories on this machine
//! (`DTK_HOME/sandboxes/SERVICE/NODE`), and actions are local processes run in them.
//!
//! Each `RUN` line runs as its own shell process in the node's sandbox, with the attributes
//! in the environment and `$DTK_OUTPUT` naming a file where the line may write `name=value`
//! outputs: a subshell of a long-lived worker shell (`worker.rs`: a fork, no exec), or,
//! where workers cannot be used, its own `sh -c` in its own process group. Standard output
//! and error go to files rather than pipes, so a line that starts a background server
//! (`./server &`) does not keep the action waiting for the server's end. A line that
//! outlives the action's timeout is killed with what it started. Deleting a node stops
//! every process still running in its sandbox and removes the sandbox.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dtk_model::provider::{ExecOutput, ExecRequest, ExecStep, Observed, ResourceRequest};
use dtk_model::{Attributes, BundledModule, Provider, ProviderError, Value};

pub mod content;
mod worker;

/// The provider kind of the local target.
pub const KIND: &str = "local";

/// The text of the bundled `dtk/local` module (the built-in target: its `target` assembly
/// and its node component).
pub const DTK_LOCAL_MODULE: &str = include_str!("../../modules/dtk/local/dtk.module.yaml");

/// The local provider. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    sandboxes: PathBuf,
    content_cache: Option<PathBuf>,
}

impl LocalProvider {
    /// A provider keeping node sandboxes under `sandboxes` (`DTK_HOME/sandboxes`).
    pub fn new(sandboxes: impl Into<PathBuf>) -> Self {
        LocalProvider {
            sandboxes: sandboxes.into(),
            content_cache: None,
        }
    }

    /// This provider, placing module files from the content store in `dir`
    /// (`DTK_HOME/content`: one read-only file per content address, hard-linked into the
    /// sandboxes; see [`content`]).
    pub fn with_content_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.content_cache = Some(dir.into());
        self
    }

    /// The content store, when there is one.
    pub fn content_cache(&self) -> Option<&Path> {
        self.content_cache.as_deref()
    }

    /// The sandbox of `node` of `service` (`_service` for assembly-level components).
    pub fn sandbox(&self, service: &str, node: Option<&str>) -> PathBuf {
        self.sandboxes
            .join(service)
            .join(node.unwrap_or("_service"))
    }

    /// The sandbox of a request's node: the one recorded (`prior`'s `sandbox_dir`: a
    /// renamed node keeps its directory), else the node's own.
    fn node_dir(&self, req: &ResourceRequest<'_>) -> PathBuf {
        req.prior
            .and_then(|p| p.get("sandbox_dir"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.sandbox(req.service, req.node))
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn kind(&self) -> &str {
        KIND
    }

    fn resources(&self) -> Vec<String> {
        vec!["node".to_owned()]
    }

    fn modules(&self) -> Vec<BundledModule> {
        vec![BundledModule::new(
            "dtk/local/dtk.module.yaml",
            DTK_LOCAL_MODULE,
        )]
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        check_resource(req)?;
        let dir = self.node_dir(req);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            ProviderError::failed(
                format!("create local.node for {}", req.component),
                format!("cannot create sandbox {}: {e}", dir.display()),
            )
        })?;
        Ok(node_outputs(&dir))
    }

    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        check_resource(req)?;
        let dir = self.node_dir(req);
        Ok(if dir.is_dir() {
            Observed::Present(node_outputs(&dir))
        } else {
            Observed::Missing
        })
    }

    /// Binds an existing directory (`id`, an absolute path) as the node's sandbox: its
    /// commands then run there. dtk removes it on delete only when adopted.
    async fn import(
        &self,
        req: &ResourceRequest<'_>,
        id: &str,
        adopt: bool,
    ) -> Result<Observed, ProviderError> {
        let _ = adopt;
        check_resource(req)?;
        let dir = PathBuf::from(id);
        if !dir.is_absolute() {
            return Err(ProviderError::InvalidInput {
                resource: format!("{KIND}.node ({})", req.component),
                message: format!("`{id}` is not an absolute path to a directory"),
            });
        }
        Ok(if dir.is_dir() {
            Observed::Present(node_outputs(&dir))
        } else {
            Observed::Missing
        })
    }

    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        check_resource(req)?;
        let dir = self.node_dir(req);
        stop_processes_in(&dir).await;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProviderError::failed(
                format!("delete local.node for {}", req.component),
                format!("cannot remove sandbox {}: {e}", dir.display()),
            )),
        }
    }

    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        let dir = req
            .node_outputs
            .get("sandbox_dir")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.sandbox(req.service, Some(req.node)));
        run_action(&dir, req, self.content_cache.as_deref()).await
    }
}

fn check_resource(req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
    if req.resource == "node" {
        Ok(())
    } else {
        Err(ProviderError::Unsupported {
            provider: KIND.to_owned(),
            what: format!("resource type `{}`", req.resource),
        })
    }
}

fn node_outputs(dir: &Path) -> Attributes {
    let mut out = Attributes::new();
    out.insert(
        "sandbox_dir".to_owned(),
        Value::Str(dir.display().to_string()),
    );
    out.insert("host".to_owned(), Value::Str("127.0.0.1".to_owned()));
    out.insert("state".to_owned(), Value::Str("running".to_owned()));
    out
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs a command action in the node directory `node_dir` (created if missing): brings
/// the node's copy of the action's module up to date first (see [`content`]), then runs
/// the steps in that copy's directory with `DTK_MODULE_DIR` naming it (in `node_dir`
/// itself when the action has no module). `RUN` steps are as in [`run_script`]; `ADD`
/// steps place a file inside the sandbox ([`content::put_file`]), and a refused one fails
/// the action like a failing line, its reason on standard error.
pub async fn run_action(
    node_dir: &Path,
    req: &ExecRequest<'_>,
    cache: Option<&Path>,
) -> Result<ExecOutput, ProviderError> {
    let started = Instant::now();
    let cwd = match req.module {
        Some(m) => {
            let (dir, m2, cache2) = (
                node_dir.to_path_buf(),
                m.clone(),
                cache.map(Path::to_path_buf),
            );
            tokio::task::spawn_blocking(move || content::sync_module(&dir, &m2, cache2.as_deref()))
                .await
                .map_err(|e| {
                    ProviderError::failed(
                        format!("place module files in {}", node_dir.display()),
                        e.to_string(),
                    )
                })??
        }
        None => node_dir.to_path_buf(),
    };
    let mut env: Vec<(String, String)> = req.env.to_vec();
    if req.module.is_some() {
        env.push(("DTK_MODULE_DIR".to_owned(), cwd.display().to_string()));
    }
    let remaining = req.timeout.saturating_sub(started.elapsed());
    let put = |p: &dtk_model::provider::PutFile| content::put_file(&cwd, p, req.module, cache);
    let mut out = run_steps(node_dir, &cwd, req.steps, &env, remaining, put).await?;
    out.duration = started.elapsed();
    Ok(out)
}

/// Runs `script` (each line its own shell process, stopping at the first failing line) in `dir`,
/// which is created if missing, with `env` and `$DTK_OUTPUT`, within `timeout` in all.
///
/// Standard output and error go to two anonymous capture files opened once for the whole
/// script (every line appends to them): in-memory files (`memfd`) on Linux, elsewhere
/// scratch files unlinked at once. Nothing is left behind however the run ends, a line
/// still running when dtk dies keeps writing without harm (unlike a pipe), and they are
/// read back through the open handles. Only `$DTK_OUTPUT` is a named file, since the
/// lines write to it by name.
pub async fn run_script(
    dir: &Path,
    script: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<ExecOutput, ProviderError> {
    let steps: Vec<ExecStep> = script.iter().cloned().map(ExecStep::Run).collect();
    run_steps(dir, dir, &steps, env, timeout, |p| {
        Err(format!("{}: no file can be placed here", p.label))
    })
    .await
}

/// Runs `steps` in `cwd`, keeping its scratch files in `dir` (see [`run_script`]); `put`
/// places a file for an `ADD` step, or says why it cannot.
async fn run_steps(
    dir: &Path,
    cwd: &Path,
    steps: &[ExecStep],
    env: &[(String, String)],
    timeout: Duration,
    put: impl Fn(&dtk_model::provider::PutFile) -> Result<(), String>,
) -> Result<ExecOutput, ProviderError> {
    let op = || format!("run commands in {}", cwd.display());
    // A `cwd` other than `dir` is a module's copy, which the caller has just found or
    // made (under `dir`): only `dir` alone may need making. A plain mkdir that usually
    // finds the directory there: cheaper inline than a hop to tokio's blocking pool.
    if cwd == dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            ProviderError::failed(op(), format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    // Scratch files sit in `dir` itself, named for this process and run: no directory
    // of their own (making one per sandbox cost an inode and a directory block per node).
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = format!(".dtk-run-{}-{n}", std::process::id());
    let outputs_path = dir.join(format!("{stem}.outputs"));
    let started = Instant::now();
    let deadline = started + timeout;
    let capture = |suffix: &str| {
        capture_file(dir, &stem, suffix)
            .map_err(|e| ProviderError::failed(op(), format!("cannot make a capture file: {e}")))
    };
    let mut stdout = capture("out")?;
    let mut stderr = capture("err")?;
    let handle = |f: &std::fs::File| {
        f.try_clone()
            .map(Stdio::from)
            .map_err(|e| ProviderError::failed(op(), format!("cannot share a capture file: {e}")))
    };
    let mut exit = Some(0);
    for step in steps {
        let line = match step {
            ExecStep::Run(line) => line,
            ExecStep::Put(p) => {
                if let Err(message) = put(p) {
                    use std::io::Write as _;
                    let _ = writeln!(stderr, "dtk: {message}");
                    exit = Some(1);
                    break;
                }
                continue;
            }
        };
        if worker::enabled() {
            let job = worker::Job {
                line,
                cwd,
                env,
                outputs: &outputs_path,
                stdout: &stdout,
                stderr: &stderr,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match worker::run(&job, remaining).await {
                Ok(worker::Ended::Exited(code)) => {
                    exit = Some(code);
                    if code != 0 {
                        break;
                    }
                    continue;
                }
                Ok(worker::Ended::TimedOut) => {
                    let _ = std::fs::remove_file(&outputs_path);
                    return Err(ProviderError::Timeout {
                        operation: format!("`{line}`"),
                        after: timeout,
                    });
                }
                Err(worker::Unusable::Lost(why)) => {
                    // As a line whose shell was killed: the action failed, no exit status.
                    use std::io::Write as _;
                    let _ = writeln!(stderr, "dtk: the shell running this line ended: {why}");
                    exit = None;
                    break;
                }
                Err(worker::Unusable::NotStarted) => {}
            }
        }
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(line)
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DTK_OUTPUT", &outputs_path)
            .stdin(Stdio::null())
            .stdout(handle(&stdout)?)
            .stderr(handle(&stderr)?)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| ProviderError::failed(op(), format!("cannot start sh: {e}")))?;
        // The child holds its own copies of the capture handles; ours stay open for reading.
        drop(cmd);
        let pid = child.id();
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, child.wait()).await {
            Ok(Ok(status)) => {
                exit = status.code();
                if exit != Some(0) {
                    break;
                }
            }
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&outputs_path);
                return Err(ProviderError::failed(
                    op(),
                    format!("waiting for sh failed: {e}"),
                ));
            }
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                let _ = child.wait().await;
                let _ = std::fs::remove_file(&outputs_path);
                return Err(ProviderError::Timeout {
                    operation: format!("`{line}`"),
                    after: timeout,
                });
            }
        }
    }
    let mut result = ExecOutput {
        exit_code: exit,
        ..ExecOutput::default()
    };
    result.stdout = read_back(&mut stdout);
    result.stderr = read_back(&mut stderr);
    match std::fs::read_to_string(&outputs_path) {
        Ok(text) => {
            result.outputs = parse_outputs(&text);
            let _ = std::fs::remove_file(&outputs_path);
        }
        Err(_) => {
            // Usually absent: the lines wrote no outputs.
        }
    }
    result.duration = started.elapsed();
    Ok(result)
}

/// An anonymous file to capture a child's output in: in memory where the kernel offers
/// it (no inode to allocate and free on disk for every action: on ext4 that was a third
/// of dtk's own CPU time in a converge of small actions).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn capture_file(_scratch: &Path, _stem: &str, _suffix: &str) -> std::io::Result<std::fs::File> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(c"dtk-capture", MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}

/// An anonymous file to capture a child's output in: `scratch/STEM.SUFFIX`, opened for
/// appending and unlinked at once.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn capture_file(scratch: &Path, stem: &str, suffix: &str) -> std::io::Result<std::fs::File> {
    let path = scratch.join(format!("{stem}.{suffix}"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

/// Everything written to a capture file so far.
fn read_back(f: &mut std::fs::File) -> Vec<u8> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    // Most actions print nothing: one `fstat` says so (`read_to_end` would seek, stat and
    // read twice to find out).
    let len = f.metadata().map_or(u64::MAX, |m| m.len());
    let mut buf = Vec::new();
    if len > 0 && f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    buf
}

/// Parses `name=value` lines (blank lines and `#` comments ignored).
pub fn parse_outputs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect()
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The processes whose working directory is inside `dir`.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| u32::try_from(*pid).ok() != Some(me))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&dir))
        })
        .collect()
}

/// Stops every process running in `dir`: TERM, then KILL after a grace period.
pub async fn stop_processes_in(dir: &Path) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pids = processes_in(dir);
    if pids.is_empty() {
        return;
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if processes_in(dir).is_empty() {
            return;
        }
    }
    for pid in processes_in(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
