//! The `ssh` command lines: pure functions from settings to argv.
//!
//! Every invocation passes `-F /dev/null`, so neither the user's nor the system's ssh config
//! changes what dtk does; everything that matters is on the command line.

use std::path::Path;
use std::time::Duration;

use super::{HostKeyPolicy, SshHost};

/// How often the master probes an idle connection, and how many missed probes end it: a host
/// that vanished is noticed within about 45 seconds.
const SERVER_ALIVE_INTERVAL_SECS: u64 = 15;
const SERVER_ALIVE_COUNT_MAX: u64 = 3;

/// A path as an ssh option value: `%` doubled (ssh expands `%` tokens in file options), and
/// double-quoted when it holds whitespace. `None` when the path cannot be written that way.
pub(crate) fn option_path(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if text.is_empty() || text.contains('"') || text.chars().any(char::is_control) {
        return None;
    }
    let escaped = text.replace('%', "%%");
    if escaped.chars().any(char::is_whitespace) {
        Some(format!("\"{escaped}\""))
    } else {
        Some(escaped)
    }
}

/// Whole seconds for an ssh timeout option, rounded up, at least 1.
fn secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

fn opt(args: &mut Vec<String>, name: &str, value: &str) {
    args.push("-o".to_owned());
    args.push(format!("{name}={value}"));
}

/// The options that decide whom we talk to and how we prove who we are: used by the master and
/// by the jump connection alike. Paths are already checked by [`SshHost::check`].
fn identity_options(args: &mut Vec<String>, host: &SshHost, known_hosts: &str) {
    opt(args, "BatchMode", "yes");
    opt(args, "IdentitiesOnly", "yes");
    if let Some(identity) = host.identity_file.as_deref().and_then(option_path) {
        opt(args, "IdentityFile", &identity);
    }
    opt(args, "UserKnownHostsFile", known_hosts);
    opt(args, "GlobalKnownHostsFile", "/dev/null");
    opt(
        args,
        "StrictHostKeyChecking",
        match host.host_key_policy {
            HostKeyPolicy::Strict => "yes",
            HostKeyPolicy::TrustOnFirstUse => "accept-new",
        },
    );
    opt(args, "UpdateHostKeys", "no");
    opt(args, "CheckHostIP", "no");
    opt(
        args,
        "ConnectTimeout",
        &secs(host.connect_timeout).to_string(),
    );
}

/// A jump host as `(user, address, port)`, from `[user@]address[:port]`; the user defaults to
/// the target host's user, the port to 22.
pub(crate) fn parse_jump(spec: &str, default_user: &str) -> Result<(String, String, u16), String> {
    let (user, rest) = match spec.rsplit_once('@') {
        Some((user, rest)) => (user, rest),
        None => (default_user, spec),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) if !address.contains(':') || address.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("bad port in jump host {spec:?}"))?;
            (address.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (rest.trim_start_matches('[').trim_end_matches(']'), 22),
    };
    check_word("jump host address", address)?;
    check_word("jump host user", user)?;
    Ok((user.to_owned(), address.to_owned(), port))
}

/// Refuses a host name or user that ssh could read as an option or that is not one word.
pub(crate) fn check_word(what: &str, word: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if word.starts_with('-') {
        return Err(format!("the {what} {word:?} starts with '-'"));
    }
    if word
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "'\"\\%`$".contains(c))
    {
        return Err(format!(
            "the {what} {word:?} contains a character ssh cannot take"
        ));
    }
    Ok(())
}

/// A shell word for the jump host's `ProxyCommand` (run by `sh -c`, after ssh's own `%`
/// expansion, so `%` is doubled too).
fn proxy_word(s: &str) -> String {
    super::script::quote(s).replace('%', "%%")
}

/// `ProxyCommand` for a jump host: a second ssh with the same identity, known_hosts and
/// host-key policy, forwarding stdio to the target (`-W`).
fn proxy_command(host: &SshHost, known_hosts: &str, jump: &str) -> Result<String, String> {
    let (user, address, port) = parse_jump(jump, &host.user)?;
    let mut inner = vec!["ssh".to_owned(), "-F".to_owned(), "/dev/null".to_owned()];
    identity_options(&mut inner, host, known_hosts);
    opt(&mut inner, "LogLevel", "ERROR");
    inner.extend(["-W".to_owned(), "[%h]:%p".to_owned()]);
    inner.extend([
        "-p".to_owned(),
        port.to_string(),
        "-l".to_owned(),
        user,
        "--".to_owned(),
    ]);
    inner.push(address);
    let words: Vec<String> = inner
        .iter()
        .map(|w| {
            if w == "[%h]:%p" {
                w.clone()
            } else {
                proxy_word(w)
            }
        })
        .collect();
    Ok(words.join(" "))
}

/// The command that starts a master: authenticate, then fork into the background
/// (`-f -N`), serving sessions on `socket` until idle for `persist`.
///
/// `LogLevel=DEBUG1` makes ssh print the server's host-key fingerprint, which an
/// unknown-key error then shows; stderr goes to a private log file that is read and removed.
pub(crate) fn master_args(
    host: &SshHost,
    socket: &str,
    known_hosts: &str,
    persist: Duration,
) -> Result<Vec<String>, String> {
    let mut args = vec![
        "-F".to_owned(),
        "/dev/null".to_owned(),
        "-f".to_owned(),
        "-N".to_owned(),
    ];
    opt(&mut args, "ControlMaster", "yes");
    opt(&mut args, "ControlPath", socket);
    opt(&mut args, "ControlPersist", &secs(persist).to_string());
    identity_options(&mut args, host, known_hosts);
    opt(
        &mut args,
        "ServerAliveInterval",
        &SERVER_ALIVE_INTERVAL_SECS.to_string(),
    );
    opt(
        &mut args,
        "ServerAliveCountMax",
        &SERVER_ALIVE_COUNT_MAX.to_string(),
    );
    opt(&mut args, "LogLevel", "DEBUG1");
    if let Some(jump) = &host.jump_host {
        opt(
            &mut args,
            "ProxyCommand",
            &proxy_command(host, known_hosts, jump)?,
        );
    }
    destination(&mut args, host);
    Ok(args)
}

/// The command that runs one session over an existing master. `ProxyCommand=false` makes
/// it fail at once, instead of quietly opening its own connection, if the master is gone.
pub(crate) fn session_args(host: &SshHost, socket: &str, remote_command: &str) -> Vec<String> {
    let mut args = vec!["-F".to_owned(), "/dev/null".to_owned(), "-T".to_owned()];
    opt(&mut args, "ControlMaster", "no");
    opt(&mut args, "ControlPath", socket);
    opt(&mut args, "ProxyCommand", "false");
    opt(&mut args, "BatchMode", "yes");
    opt(&mut args, "LogLevel", "ERROR");
    destination(&mut args, host);
    args.push(remote_command.to_owned());
    args
}

/// The command that sends a control request (`check`, `exit`) to a master.
pub(crate) fn control_args(host: &SshHost, socket: &str, request: &str) -> Vec<String> {
    let mut args = vec!["-F".to_owned(), "/dev/null".to_owned()];
    opt(&mut args, "ControlPath", socket);
    args.extend(["-O".to_owned(), request.to_owned()]);
    destination(&mut args, host);
    args
}

fn destination(args: &mut Vec<String>, host: &SshHost) {
    args.extend([
        "-p".to_owned(),
        host.port.to_string(),
        "-l".to_owned(),
        host.user.clone(),
        "--".to_owned(),
        host.address.clone(),
    ]);
}
