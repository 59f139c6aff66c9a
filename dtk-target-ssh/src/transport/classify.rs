//! Turning a failed master start (ssh exit status 255 and its stderr) into an [`SshError`].
//!
//! ssh's stderr while connecting holds its own messages only (no action has run yet): host
//! names, paths and fingerprints, never key material or environment values.

use super::{SshError, SshHost};

/// The kind of failure that a master's stderr shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The host offered a key other than the recorded one.
    HostKeyChanged { fingerprint: Option<String> },
    /// The host's key is not recorded and the policy is strict.
    HostKeyUnknown { fingerprint: Option<String> },
    /// The server refused every key offered.
    AuthRefused { detail: String },
    /// Connecting or the banner exchange timed out.
    Timeout,
    /// Anything else: refused, unreachable, name not found, ...
    Other { detail: String },
}

impl Failure {
    /// The error for `host`.
    pub(crate) fn into_error(self, host: &SshHost) -> SshError {
        let (address, port) = (host.address.clone(), host.port);
        match self {
            Failure::HostKeyChanged { fingerprint } => SshError::HostKeyChanged {
                host: address,
                port,
                known_hosts: host.known_hosts_file.clone(),
                fingerprint,
            },
            Failure::HostKeyUnknown { fingerprint } => SshError::HostKeyUnknown {
                host: address,
                port,
                known_hosts: host.known_hosts_file.clone(),
                fingerprint,
            },
            Failure::AuthRefused { detail } => SshError::AuthRefused {
                host: address,
                port,
                user: host.user.clone(),
                identity: host.identity_file.clone(),
                detail,
            },
            Failure::Timeout => SshError::ConnectTimeout {
                host: address,
                port,
                timeout: host.connect_timeout,
            },
            Failure::Other { detail } => SshError::ConnectFailed {
                host: address,
                port,
                detail,
            },
        }
    }
}

/// Classifies the stderr of a master start that failed.
pub(crate) fn classify(stderr: &str) -> Failure {
    let messages: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debug") && !l.starts_with("@@@"))
        .collect();
    let has = |needle: &str| messages.iter().any(|l| l.contains(needle));
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("has changed and you have requested strict checking")
    {
        return Failure::HostKeyChanged {
            fingerprint: changed_fingerprint(&messages),
        };
    }
    if has("Host key verification failed") || has("host key is known for") {
        return Failure::HostKeyUnknown {
            fingerprint: offered_fingerprint(stderr),
        };
    }
    if has("Permission denied") || has("Too many authentication failures") {
        // A key ssh could not use explains the refusal better than the refusal itself.
        let key_problem = messages.iter().find(|l| {
            l.contains("UNPROTECTED PRIVATE KEY FILE")
                || l.contains("Identity file")
                || l.starts_with("Load key")
                || l.starts_with("Permissions 0")
        });
        let detail = match key_problem {
            Some(l) if l.contains("UNPROTECTED") || l.starts_with("Permissions 0") => {
                "ssh ignored the private key: its permissions are too open (chmod 600 it)"
                    .to_owned()
            }
            Some(l) => (*l).to_owned(),
            None => last(&messages),
        };
        return Failure::AuthRefused { detail };
    }
    if has("timed out") || has("Connection timed out") {
        return Failure::Timeout;
    }
    Failure::Other {
        detail: last(&messages),
    }
}

fn last(messages: &[&str]) -> String {
    messages.last().map_or_else(
        || "ssh exited with status 255".to_owned(),
        |l| (*l).to_owned(),
    )
}

/// The fingerprint ssh shows after "The fingerprint for the ... key sent by the remote host is".
fn changed_fingerprint(messages: &[&str]) -> Option<String> {
    let at = messages
        .iter()
        .position(|l| l.contains("sent by the remote host is"))?;
    let next = messages.get(at + 1)?;
    looks_like_fingerprint(next.trim_end_matches('.'))
}

/// The fingerprint from ssh's debug line `Server host key: TYPE SHA256:...`.
fn offered_fingerprint(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("Server host key: ")?;
        let mut words = rest.split_whitespace();
        let kind = words.next()?;
        let fingerprint = looks_like_fingerprint(words.next()?)?;
        Some(format!("{fingerprint} ({kind})"))
    })
}

fn looks_like_fingerprint(word: &str) -> Option<String> {
    let word = word.trim();
    (word.starts_with("SHA256:") || word.starts_with("MD5:")).then(|| word.to_owned())
}

/// Whether a session's output is only ssh's complaint that the master could not be reached
/// (its control socket gone or refusing, so the `ProxyCommand=false` fallback failed): then
/// the action never started.
pub(crate) fn master_unavailable(stdout: &[u8], stderr: &[u8]) -> bool {
    const MARKS: [&str; 5] = [
        "Control socket connect(",
        "kex_exchange_identification:",
        "Connection closed by",
        "mux_client_",
        "ssh_exchange_identification:",
    ];
    let stderr = String::from_utf8_lossy(stderr);
    let mut lines = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    stdout.is_empty()
        && lines.peek().is_some()
        && lines.all(|l| MARKS.iter().any(|m| l.starts_with(m)))
}
