//! Long-lived shells: one session on a host's master connection that runs action after
//! action, instead of one session (an `ssh` client process here, a session process and a
//! login shell on the node) per action.
//!
//! A [`Shell`] is `ssh … 'exec sh -s 2>&1'` with its stdin kept open. Each job is the text
//! of [`script::shell_job`]: the action's script piped by `printf` into `setsid sh -s`,
//! then a line `MARKER.done STATUS`. The shell runs one job at a time; [`Shell::run`] reads
//! the stream up to that line, and the shell is ready for the next job. Everything else
//! (trailer, what a lost connection means, stopping a job) is as for an action in a session
//! of its own, because the job *is* the same script in a session of its own, except that the
//! jobs of one shell share one set of run files ([`Shell::stem`]), which the shell empties
//! after each job whose result dtk has read and removes when it ends.
//!
//! A shell that lost its connection, or whose job was abandoned (timeout, cancel), is
//! dropped: its local client is killed, and the node's shell ends at end of input.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{Master, command, script};

/// What a session said: the script's status as far as the transport knows it, its stdout
/// and its stderr.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// The exit status of the session's script, `None` when it was ended by a signal.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl From<std::process::Output> for Answer {
    fn from(out: std::process::Output) -> Self {
        Answer {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

/// One long-lived shell on a host.
pub(crate) struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Reads what the local `ssh` client writes to its stderr, until it exits.
    ssh_stderr: JoinHandle<Vec<u8>>,
    /// When it last finished a job.
    pub(crate) idle_since: std::time::Instant,
    /// Whether the node can unpack gzip-compressed uploads.
    pub(crate) gzip: bool,
    /// How its jobs run: [`script::Place::Subshell`] or [`script::Place::SessionJob`].
    pub(crate) place: script::Place,
    /// The stem of the run files of this shell's jobs ([`script::run_file_stem`] of an id of
    /// its own): every job reuses them, emptied in between.
    pub(crate) stem: String,
}

/// How opening a shell went.
pub(crate) enum Opened {
    /// Ready for jobs.
    Ready(Box<Shell>),
    /// The node has no `base64`, or no way to run a job (`setsid`, or subshells that can
    /// see their own process): its actions run in sessions of their own.
    Unsupported,
    /// The session ended before the shell answered (the master is gone, the server refused
    /// the session): what it said.
    Failed(Answer),
}

impl Shell {
    /// Opens a shell over `master` and asks whether jobs can run in it: as subshells where
    /// the node allows it and `subshells` does, else as sessions of their own.
    pub(crate) async fn open(ssh: &Path, master: &Master, subshells: bool) -> io::Result<Opened> {
        let mut child = Command::new(ssh)
            .args(command::session_args(
                &master.host,
                &master.socket,
                script::SHELL_COMMAND,
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("the ssh client's pipes were not set up"));
        };
        let ssh_stderr = tokio::spawn(async move {
            let mut said = Vec::new();
            let _ = stderr.read_to_end(&mut said).await;
            said
        });
        let mut shell = Shell {
            child,
            stdin,
            stdout,
            ssh_stderr,
            idle_since: std::time::Instant::now(),
            gzip: false,
            place: script::Place::SessionJob,
            stem: script::run_file_stem(&super::run_id()),
        };
        if shell
            .stdin
            .write_all(script::SHELL_PROBE.as_bytes())
            .await
            .is_err()
        {
            return Ok(Opened::Failed(shell.ended(Vec::new()).await));
        }
        // Whatever a login shell prints before the answer is skipped.
        let mut seen = Vec::new();
        loop {
            for line in seen.split(|&b| b == b'\n') {
                if let Some(rest) = line.strip_prefix(script::SHELL_READY.as_bytes()) {
                    let has = |word: &[u8]| rest.split(|&b| b == b' ').any(|w| w == word);
                    shell.gzip = has(b"gzip");
                    shell.place = if subshells && has(b"fork") {
                        script::Place::Subshell
                    } else if has(b"setsid") {
                        script::Place::SessionJob
                    } else {
                        return Ok(Opened::Unsupported);
                    };
                    return Ok(Opened::Ready(Box::new(shell)));
                }
                if line == script::SHELL_UNSUPPORTED.as_bytes() {
                    return Ok(Opened::Unsupported);
                }
            }
            if shell.stdout.read_buf(&mut seen).await? == 0 {
                return Ok(Opened::Failed(shell.ended(seen).await));
            }
        }
    }

    /// Whether the shell's session has ended (its client exited) while it was idle.
    pub(crate) fn is_gone(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `job` (the text of [`script::shell_job`] for `marker`) to its end. `Ok((answer,
    /// true))` when the shell can take another job; `false` when the session ended first
    /// (the answer then is what a session of its own would have said: the client's status
    /// and what arrived).
    pub(crate) async fn run(&mut self, job: &[u8], marker: &str) -> io::Result<(Answer, bool)> {
        if self.stdin.write_all(job).await.is_err() {
            return Ok((self.ended(Vec::new()).await, false));
        }
        let done = script::done_prefix(marker);
        let mut buf = Vec::with_capacity(4096);
        // Where the done line starts, once found; before that, how far the search went.
        let mut done_at = None;
        let mut scanned: usize = 0;
        loop {
            if done_at.is_none() {
                // A match may straddle the bytes searched and the bytes just read.
                let from = scanned.saturating_sub(done.len() - 1);
                done_at = script::find(&buf[from..], done.as_bytes()).map(|i| i + from);
                scanned = buf.len();
            }
            if let Some(at) = done_at {
                let rest = &buf[at + done.len()..];
                if let Some(eol) = rest.iter().position(|&b| b == b'\n') {
                    let status = std::str::from_utf8(&rest[..eol])
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok());
                    buf.truncate(at);
                    return Ok((job_answer(buf, status, marker), true));
                }
            }
            if self.stdout.read_buf(&mut buf).await? == 0 {
                return Ok((self.ended(buf).await, false));
            }
        }
    }

    /// Writes `text` (which prints nothing) to the shell; `false` if it could not be sent.
    pub(crate) async fn send(&mut self, text: &str) -> bool {
        self.stdin.write_all(text.as_bytes()).await.is_ok()
    }

    /// Ends the shell at the end of its input and waits a moment for it to finish (its exit
    /// trap removes the files of the runs it ran).
    pub(crate) async fn close(self) {
        let Shell {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }

    /// The session ended: the client's status, `stdout` as it arrived, the client's stderr.
    async fn ended(&mut self, stdout: Vec<u8>) -> Answer {
        let code = match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        };
        // The reader ends with the client (called once: the shell is not used after this).
        let stderr = match tokio::time::timeout(Duration::from_secs(1), &mut self.ssh_stderr).await
        {
            Ok(Ok(said)) => said,
            _ => Vec::new(),
        };
        Answer {
            code,
            stdout,
            stderr,
        }
    }
}

/// A finished job's answer. With a trailer, the stream is the script's stdout and trailer.
/// Without one, the script ended before its trap was set (its stream holds only its own
/// messages, which are stderr), or was killed by a signal (a status above 128: no status of
/// its own, as a session's client reports it).
fn job_answer(stream: Vec<u8>, status: Option<i32>, marker: &str) -> Answer {
    let trailer = format!("\n{marker} ");
    if script::find(&stream, trailer.as_bytes()).is_some() {
        return Answer {
            code: status,
            stdout: stream,
            stderr: Vec::new(),
        };
    }
    Answer {
        code: status.filter(|&s| s <= 128),
        stdout: Vec::new(),
        stderr: stream,
    }
}

#[cfg(test)]
mod tests {
    use super::job_answer;

    #[test]
    fn a_job_without_a_trailer_answers_with_its_messages_as_stderr() {
        let m = "dtk-end-abc";
        let a = job_answer(
            b"hi\n\ndtk-end-abc 0\n\ndtk-end-abc end\n".to_vec(),
            Some(0),
            m,
        );
        assert_eq!((a.code, a.stderr.len()), (Some(0), 0));
        assert!(a.stdout.starts_with(b"hi\n"));
        // It ended before its trap was set: its status is its own.
        let a = job_answer(
            b"dtk: cannot use the work directory /x\n".to_vec(),
            Some(125),
            m,
        );
        assert_eq!(a.code, Some(125));
        assert_eq!(a.stdout, b"");
        assert_eq!(a.stderr, b"dtk: cannot use the work directory /x\n");
        // Killed by a signal (128 + 9): no status of its own.
        let a = job_answer(Vec::new(), Some(137), m);
        assert_eq!(a.code, None);
    }
}
