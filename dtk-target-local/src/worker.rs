//! Long-lived worker shells: a `RUN` line as a fork of a running `sh`, not a new program.
//!
//! Starting `sh -c LINE` for every line costs a fork and an exec of the shell (its loading,
//! relocation and start-up): most of the time of a small action. A worker is one `sh -s`
//! started once and kept in a process-wide pool; for each line dtk writes it a job on its
//! standard input, and the worker runs the job in a subshell, a plain fork of itself:
//!
//! ```text
//! ( exec </dev/null >>/proc/DTK/fd/OUT 2>>/proc/DTK/fd/ERR
//!   cd -- DIR && export NAME=VALUE ... DTK_OUTPUT=FILE && eval LINE )
//! echo "dtk-status $?"
//! ```
//!
//! Each line keeps what it had as its own process: its own working directory, environment,
//! options and traps (they live and die with the subshell: nothing leaks into the next job),
//! standard input from `/dev/null`, its output appended to the action's capture files (dtk's
//! own in-memory files, opened through `/proc`), its exit status. An `exit` ends the subshell
//! only. What differs: `$$` names the worker rather than a shell of the line's own (as in
//! any subshell), and a line killed by a signal reports `128 + N` as its status.
//!
//! A worker runs one job at a time; the pool grows to the run's concurrency. Environment
//! values travel on the worker's standard input, never in an argv. A job that outlives its
//! timeout is killed with every process it started (the subshell's descendants, and the
//! processes that joined the worker's process group after the job began), and its worker is
//! discarded. A worker is also discarded when anything about it is unexpected (its answer,
//! its end); the action then runs as before, by `sh -c`. When dtk ends, each worker reads
//! the end of its input and exits after its current job.
//!
//! Linux only (capture files are reached through `/proc`); `DTK_LOCAL_WORKERS=0` turns
//! workers off (every line is then its own `sh -c`).

use std::io::Write as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dtk_model::render::shell_quote;

/// Idle workers, ready for a job.
static IDLE: Mutex<Vec<Worker>> = Mutex::new(Vec::new());

/// Set once a worker could not be started or could not reach a capture file: from then on
/// every line runs by `sh -c`.
static BROKEN: AtomicBool = AtomicBool::new(false);

/// Whether lines may run in workers in this process.
pub(crate) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        cfg!(target_os = "linux") && std::env::var("DTK_LOCAL_WORKERS").map_or(true, |v| v != "0")
    }) && !BROKEN.load(Ordering::Relaxed)
}

/// One line to run: where, with what, and where its output goes.
pub(crate) struct Job<'a> {
    /// The line.
    pub line: &'a str,
    /// Its working directory.
    pub cwd: &'a Path,
    /// Its environment, on top of dtk's own.
    pub env: &'a [(String, String)],
    /// `$DTK_OUTPUT`.
    pub outputs: &'a Path,
    /// The capture file of its standard output.
    pub stdout: &'a std::fs::File,
    /// The capture file of its standard error.
    pub stderr: &'a std::fs::File,
}

/// How a job ended.
pub(crate) enum Ended {
    /// It ran; this is its exit status (`128 + N` when a signal ended it).
    Exited(i32),
    /// It outlived its timeout and was killed with what it started.
    TimedOut,
}

/// Why a job could not be run by a worker. The caller then runs the line by `sh -c`, which
/// is only safe when the line did not start: [`Unusable::NotStarted`].
#[derive(Debug)]
pub(crate) enum Unusable {
    /// The job cannot be written as a worker job (an environment name that is not a shell
    /// name, a NUL byte), or no worker could be had. The line did not run.
    NotStarted,
    /// The worker ended or answered garbage after the job was given: the line may have run.
    Lost(String),
}

/// The job's shell text; `None` when it cannot be written as one (see [`Unusable`]).
fn script(job: &Job<'_>) -> Option<String> {
    let me = std::process::id();
    let quote = |s: &str| (!s.contains('\0')).then(|| shell_quote(s));
    let mut s = format!(
        "( exec </dev/null >>/proc/{me}/fd/{} 2>>/proc/{me}/fd/{}\ncd -- {} && export",
        job.stdout.as_raw_fd(),
        job.stderr.as_raw_fd(),
        quote(job.cwd.to_str()?)?,
    );
    for (name, value) in job.env {
        if !is_shell_name(name) {
            return None;
        }
        s.push(' ');
        s.push_str(name);
        s.push('=');
        s.push_str(&quote(value)?);
    }
    s.push_str(" DTK_OUTPUT=");
    s.push_str(&quote(job.outputs.to_str()?)?);
    s.push_str(" && eval ");
    s.push_str(&quote(job.line)?);
    s.push_str("\n)\necho \"dtk-status $?\"\n");
    Some(s)
}

/// A name `export` takes: letters, digits and `_`, not starting with a digit.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Runs `job` in a worker within `timeout`.
pub(crate) async fn run(job: &Job<'_>, timeout: Duration) -> Result<Ended, Unusable> {
    let text = script(job).ok_or(Unusable::NotStarted)?;
    let mut worker = match take() {
        Some(w) => w,
        // Starting a shell and waiting for its first answer blocks: on the blocking pool,
        // so that the runtime's threads go on dispatching (a run's first jobs start their
        // workers side by side instead of one after another on the runtime's threads).
        None => {
            let capture = job.stdout.try_clone().map_err(|_| Unusable::NotStarted)?;
            let started = tokio::task::spawn_blocking(move || Worker::start(&capture))
                .await
                .unwrap_or_else(|join| Err(format!("the worker's thread failed: {join}")));
            started.map_err(|why| {
                tracing_broken(&why);
                Unusable::NotStarted
            })?
        }
    };
    // The job and its answer travel on the runtime's own threads (the job written straight
    // to the non-blocking stdin, the answer read from stdout, registered with the reactor
    // for this job only), not on a blocking thread per job: no hop to another thread and
    // back for every line.
    let Some(pipes) = worker.watch() else {
        // Nothing was written: the line did not start.
        drop(worker);
        return Err(Unusable::NotStarted);
    };
    let pid = worker.pid;
    let answer = tokio::time::timeout(timeout, worker.ask(&pipes, &text)).await;
    let back = worker.unwatch(pipes);
    match answer {
        Ok(Ok(status)) => {
            if back {
                give_back(worker);
            }
            Ok(Ended::Exited(status))
        }
        Ok(Err(why)) => {
            drop(worker);
            Err(Unusable::Lost(why))
        }
        Err(_) => {
            kill_job(pid);
            drop(worker);
            Ok(Ended::TimedOut)
        }
    }
}

/// Turns workers off for the rest of the process, saying why once.
fn tracing_broken(why: &str) {
    if !BROKEN.swap(true, Ordering::Relaxed) {
        tracing::warn!("local worker shells are off ({why}); each line runs by `sh -c`");
    }
}

fn take() -> Option<Worker> {
    IDLE.lock().ok()?.pop()
}

fn give_back(worker: Worker) {
    if let Ok(mut idle) = IDLE.lock() {
        idle.push(worker);
    }
}

/// A running worker shell.
struct Worker {
    child: Child,
    pid: u32,
    /// dtk's ends of the worker's standard input and output, non-blocking once started;
    /// `None` only while a job has them registered with a runtime.
    pipes: Option<(OwnedFd, OwnedFd)>,
    /// What the worker wrote that is not an answer read yet.
    unread: Vec<u8>,
}

/// A worker's pipes during a job: its standard input, written directly, and its standard
/// output, registered with the current runtime's reactor for this job only.
struct Pipes {
    stdin: OwnedFd,
    stdout: tokio::net::unix::pipe::Receiver,
}

impl Worker {
    /// Starts a worker and checks that it can reach `capture` (one of dtk's capture files)
    /// through `/proc`.
    fn start(capture: &std::fs::File) -> Result<Worker, String> {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new("sh")
            .arg("-s")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start sh: {e}"))?;
        let pid = child.id();
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("sh was started without pipes".to_owned());
        };
        let mut worker = Worker {
            child,
            pid,
            pipes: None,
            unread: Vec::new(),
        };
        let probe = format!(
            "( exec >>/proc/{}/fd/{} )\necho \"dtk-status $?\"\n",
            std::process::id(),
            capture.as_raw_fd()
        );
        // Still blocking here (on the blocking pool): the first answer is waited for.
        let status = stdin
            .write_all(probe.as_bytes())
            .map_err(|e| format!("cannot write to the worker: {e}"))
            .and_then(|()| worker.answer_blocking(&mut stdout))?;
        if status != 0 {
            return Err(format!(
                "a worker cannot open dtk's capture files through /proc (status {status})"
            ));
        }
        let (stdin, stdout) = (OwnedFd::from(stdin), OwnedFd::from(stdout));
        set_nonblocking(&stdin)
            .and_then(|()| set_nonblocking(&stdout))
            .map_err(|e| format!("cannot make a pipe non-blocking: {e}"))?;
        worker.pipes = Some((stdin, stdout));
        Ok(worker)
    }

    /// Reads the answer to the probe from `stdout`, blocking.
    fn answer_blocking(&mut self, stdout: &mut ChildStdout) -> Result<i32, String> {
        use std::io::Read as _;
        let mut buf = [0u8; 256];
        loop {
            if let Some(answer) = self.take_answer() {
                return answer;
            }
            match stdout.read(&mut buf) {
                Ok(0) => return Err("the worker ended".to_owned()),
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read the worker's answer: {e}")),
            }
        }
    }

    /// Registers the worker's standard output with the current runtime for a job; `None`
    /// when it cannot be (the worker is then of no more use).
    fn watch(&mut self) -> Option<Pipes> {
        use tokio::net::unix::pipe::Receiver;
        let (stdin, stdout) = self.pipes.take()?;
        Some(Pipes {
            stdin,
            stdout: Receiver::from_owned_fd_unchecked(stdout).ok()?,
        })
    }

    /// Takes the pipes back from the runtime after a job; whether the worker has them.
    fn unwatch(&mut self, pipes: Pipes) -> bool {
        if let Ok(stdout) = pipes.stdout.into_nonblocking_fd() {
            self.pipes = Some((pipes.stdin, stdout));
        }
        self.pipes.is_some()
    }

    /// Writes a job and reads its status.
    async fn ask(&mut self, pipes: &Pipes, text: &str) -> Result<i32, String> {
        use nix::errno::Errno;
        // Written straight away: the pipe is empty between jobs, so a job fits unless it
        // is larger than the pipe's buffer (64 KB on Linux: large environment values);
        // the rest then follows as the worker reads.
        let mut left = text.as_bytes();
        while !left.is_empty() {
            match nix::unistd::write(&pipes.stdin, left) {
                Ok(0) => return Err("the worker ended".to_owned()),
                Ok(n) => left = &left[n..],
                Err(Errno::EAGAIN) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("cannot write to the worker: {e}")),
            }
        }
        let mut buf = [0u8; 256];
        loop {
            if let Some(answer) = self.take_answer() {
                return answer;
            }
            pipes
                .stdout
                .readable()
                .await
                .map_err(|e| format!("cannot read the worker's answer: {e}"))?;
            match pipes.stdout.try_read(&mut buf) {
                Ok(0) => return Err("the worker ended".to_owned()),
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("cannot read the worker's answer: {e}")),
            }
        }
    }

    /// The first whole line the worker wrote, as a job's status, once there is one.
    fn take_answer(&mut self) -> Option<Result<i32, String>> {
        let end = self.unread.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.unread.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        Some(
            line.strip_prefix("dtk-status ")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("the worker answered {line:?}")),
        )
    }
}

/// Sets `O_NONBLOCK` on `fd`.
fn set_nonblocking(fd: impl std::os::fd::AsFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills the job running in worker `pid` and what it started, then the worker: the
/// worker's descendants, and the processes in its process group that started after the
/// job's subshell (a line's background processes whose parent already ended are no longer
/// descendants, but stay in the group). Processes of earlier jobs started before this one
/// and are left alone. (A pid wrapping around within one clock tick would confuse the
/// order; only a timed-out job is at stake.)
fn kill_job(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    for _ in 0..3 {
        let table = processes();
        let mut doomed: Vec<i32> = Vec::new();
        let mut frontier = vec![pid];
        while let Some(p) = frontier.pop() {
            for proc in table.iter().filter(|q| q.ppid == p) {
                doomed.push(proc.pid);
                frontier.push(proc.pid);
            }
        }
        // The job's subshell is the worker's child that started last. Start times count
        // clock ticks, so within the subshell's own tick the later pid is the later process.
        let job = table
            .iter()
            .filter(|q| q.ppid == pid)
            .map(|q| (q.start, q.pid))
            .max();
        if let Some(job) = job {
            doomed.extend(
                table
                    .iter()
                    .filter(|q| q.pgid == pid && q.pid != pid && (q.start, q.pid) >= job)
                    .map(|q| q.pid),
            );
        }
        if doomed.is_empty() {
            break;
        }
        for p in doomed {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// One line of the process table.
struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
    /// Start time, in clock ticks since boot.
    start: u64,
}

/// The processes on this machine, from `/proc/PID/stat`.
fn processes() -> Vec<Proc> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name (which may hold spaces and parentheses): state, ppid,
            // pgrp, session, tty, tpgid, flags, 4 fault counts, 4 times, priority, nice,
            // threads, itrealvalue, starttime.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            Some(Proc {
                pid,
                ppid: fields.get(1)?.parse().ok()?,
                pgid: fields.get(2)?.parse().ok()?,
                start: fields.get(19)?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
