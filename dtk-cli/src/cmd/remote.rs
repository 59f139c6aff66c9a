//! `dtk remote ...` (the team's git remote) and the team commands of `dtk service`
//! (`clone`, `pull`, `push`, `unlock`).

use std::io::{BufRead as _, IsTerminal as _, Write};
use std::path::Path;

use clap::Subcommand;
use dtk_catalog::remote::Identity;
use dtk_instance::home::Home;
use dtk_instance::lease::LockInfo;
use dtk_instance::remote::Operator;
use dtk_instance::team::RemoteSummary;
use serde::Serialize;

use crate::Ctx;
use crate::output::table;

/// `dtk remote` subcommands.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Share this home's catalog and services through a git remote
    ///
    /// URL is any URL git understands (ssh://, git://, https://, file://, a path). dtk
    /// checks that it can be reached, publishes there the module versions it lacks, and
    /// keeps the URL in DTK_HOME (DTK_REMOTE overrides it for one command).
    #[command(
        after_help = "Examples:\n  dtk remote set ssh://git@git.example.com/ops/dtk.git\n  \
                            dtk remote set /srv/git/dtk.git"
    )]
    Set {
        /// The remote's URL
        url: String,
    },
    /// The remote in use, what it holds, and who holds which lock
    #[command(after_help = "Example:\n  dtk remote show")]
    Show,
    /// Stop using the remote (nothing on it changes)
    #[command(after_help = "Example:\n  dtk remote unset")]
    Unset,
}

/// The `DTK_REMOTE` environment variable, as the command line passes it to the library.
const REMOTE_ENV: &str = "DTK_REMOTE";

/// Applies `DTK_REMOTE` and the git identity of the user to `home`.
pub(crate) fn configure(home: Home) -> anyhow::Result<Home> {
    let mut home = match std::env::var(REMOTE_ENV) {
        Ok(url) => home.with_remote(&url)?,
        Err(_) => home,
    };
    if home.remote().is_some() {
        let mut op = Operator::from_system();
        let name = std::env::var("GIT_AUTHOR_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| git_config("user.name"));
        let email = std::env::var("GIT_AUTHOR_EMAIL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| git_config("user.email"));
        if name.is_some() || email.is_some() {
            op.identity = Identity {
                name: name.unwrap_or(op.identity.name),
                email: email.unwrap_or(op.identity.email),
            };
        }
        home.set_operator(op);
    }
    Ok(home)
}

/// Whether a remote is in use for the home at `dir`, without opening it.
pub(crate) fn remote_configured(dir: &Path) -> bool {
    match std::env::var(REMOTE_ENV) {
        Ok(url) => !url.trim().is_empty(),
        Err(_) => dir.join(dtk_instance::remote::REMOTE_FILE).is_file(),
    }
}

fn git_config(key: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", key])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// Runs a `dtk remote` command.
pub fn run(cmd: RemoteCommand, ctx: &Ctx) -> anyhow::Result<()> {
    let mut home = ctx.open_home()?;
    match cmd {
        RemoteCommand::Set { url } => {
            let summary = home.set_remote(&url)?;
            ctx.out.emit("dtk.remote.set/v1", &summary, |w| {
                writeln!(w, "remote set: {}", summary.url)?;
                print_summary(w, &summary)
            })
        }
        RemoteCommand::Show => {
            if home.remote().is_none() {
                #[derive(Serialize)]
                struct None_ {
                    url: Option<String>,
                }
                return ctx
                    .out
                    .emit("dtk.remote.show/v1", &None_ { url: None }, |w| {
                        writeln!(w, "no remote (set one with `dtk remote set URL`)")
                    });
            }
            let summary = home.remote_summary()?;
            ctx.out.emit("dtk.remote.show/v1", &summary, |w| {
                writeln!(
                    w,
                    "remote: {}{}",
                    summary.url,
                    match summary.source {
                        dtk_instance::remote::RemoteSource::Override => " (from DTK_REMOTE)",
                        dtk_instance::remote::RemoteSource::Home => "",
                    }
                )?;
                print_summary(w, &summary)
            })
        }
        RemoteCommand::Unset => {
            let old = home.unset_remote()?;
            #[derive(Serialize)]
            struct Doc {
                url: Option<String>,
            }
            let doc = Doc { url: old };
            ctx.out
                .emit("dtk.remote.unset/v1", &doc, |w| match &doc.url {
                    Some(u) => writeln!(w, "remote unset (was {u}); this home works alone again"),
                    None => writeln!(w, "no remote was set"),
                })
        }
    }
}

fn print_summary(w: &mut dyn Write, s: &RemoteSummary) -> std::io::Result<()> {
    writeln!(w, "module versions: {}", s.module_versions)?;
    if s.services.is_empty() {
        return writeln!(w, "services: none");
    }
    let mut rows = vec![vec![
        "SERVICE".to_owned(),
        "HERE".to_owned(),
        "LOCK".to_owned(),
    ]];
    let now = now_ms();
    for svc in &s.services {
        rows.push(vec![
            svc.name.clone(),
            if svc.cloned { "yes" } else { "no" }.to_owned(),
            svc.lock
                .as_ref()
                .map(|l| l.describe(now))
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table(w, &rows)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `dtk service clone NAME`.
pub(crate) fn clone(home: &Home, name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let cloned = home.clone_service(name)?;
    ctx.out.emit("dtk.service.clone/v1", &cloned, |w| {
        writeln!(
            w,
            "cloned `{}` from {} ({} component{} recorded as made)",
            cloned.name,
            home.remote().map(ToString::to_string).unwrap_or_default(),
            cloned.components,
            if cloned.components == 1 { "" } else { "s" }
        )?;
        writeln!(w, "  repository:  {}", cloned.dir.display())?;
        for t in &cloned.targets_cloned {
            writeln!(w, "  target cloned too: {t}")?;
        }
        writeln!(w, "next: dtk service converge {}", cloned.name)
    })
}

/// `dtk service pull NAME`.
pub(crate) fn pull(home: &Home, name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let pulled = home.service(name)?.pull()?;
    ctx.out.emit("dtk.service.pull/v1", &pulled, |w| {
        match pulled.outcome.as_str() {
            "up_to_date" => writeln!(w, "`{name}` is up to date with the remote")?,
            "fast_forward" => writeln!(
                w,
                "pulled `{name}`: {} -> {}",
                short(&pulled.from),
                short(&pulled.to)
            )?,
            "merged" => writeln!(
                w,
                "pulled `{name}`: merged this machine's commits with the remote's ({})",
                short(&pulled.to)
            )?,
            _ => writeln!(w, "pulled `{name}` with conflicts")?,
        }
        for c in &pulled.conflicts {
            writeln!(w, "  conflict: {c} (resolve the <<<<<<< markers)")?;
        }
        if !pulled.uncommitted.is_empty() {
            writeln!(
                w,
                "uncommitted edits kept: {} (converge commits them)",
                pulled.uncommitted.join(", ")
            )?;
        }
        Ok(())
    })?;
    if pulled.conflicts.is_empty() {
        Ok(())
    } else {
        Err(crate::output::Reported(format!(
            "`{name}` has conflicts to resolve: {}",
            pulled.conflicts.join(", ")
        ))
        .into())
    }
}

/// `dtk service push NAME`.
pub(crate) fn push(home: &Home, name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let pushed = home.service(name)?.push()?;
    ctx.out.emit("dtk.service.push/v1", &pushed, |w| {
        if pushed.pushed {
            writeln!(
                w,
                "pushed `{name}` ({}) to {}{}",
                short(&pushed.commit),
                pushed.remote,
                if pushed.created {
                    " (new there: its actual state and records too)"
                } else {
                    ""
                }
            )?;
        } else {
            writeln!(
                w,
                "the remote has `{name}` at {} already",
                short(&pushed.commit)
            )?;
        }
        if pushed.uncommitted > 0 {
            writeln!(
                w,
                "{} uncommitted edit(s) not pushed (converge commits and pushes them)",
                pushed.uncommitted
            )?;
        }
        Ok(())
    })
}

/// `dtk service unlock NAME [--force]`.
pub(crate) fn unlock(home: &Home, name: &str, force: bool, ctx: &Ctx) -> anyhow::Result<()> {
    let svc = home.service(name)?;
    let lock = svc.remote_lock()?;
    #[derive(Serialize)]
    struct Doc {
        service: String,
        cleared: Option<LockInfo>,
    }
    let Some(lock) = lock else {
        let doc = Doc {
            service: name.to_owned(),
            cleared: None,
        };
        return ctx.out.emit("dtk.service.unlock/v1", &doc, |w| {
            writeln!(w, "`{name}` is not locked on the remote")
        });
    };
    let now = now_ms();
    if !force {
        let interactive = std::io::stdin().is_terminal() && !ctx.out.is_json();
        if !interactive {
            anyhow::bail!(
                "`{name}` is locked by {}; to clear it without being asked, pass --force",
                lock.describe(now)
            );
        }
        let mut err = std::io::stderr();
        write!(
            err,
            "`{name}` is locked by {}.\nA run that still holds it will be stopped at its next \
             push. Clear the lock? [y/N] ",
            lock.describe(now)
        )?;
        err.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            anyhow::bail!("the lock of `{name}` was left alone");
        }
    }
    let cleared = svc.unlock(Some(&lock))?;
    let doc = Doc {
        service: name.to_owned(),
        cleared,
    };
    ctx.out
        .emit("dtk.service.unlock/v1", &doc, |w| match &doc.cleared {
            Some(l) => writeln!(
                w,
                "cleared the lock of `{name}` held by {}",
                l.describe(now)
            ),
            None => writeln!(w, "`{name}` is not locked on the remote"),
        })
}

fn short(id: &str) -> &str {
    &id[..10.min(id.len())]
}

/// Parses a lease length: `90`, `90s`, `500ms`, `2m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 60s, 500ms, 2m, 1h)"))?;
    let ms = match unit.trim() {
        "" | "s" => n.checked_mul(1000),
        "ms" => Some(n),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(|| format!("`{text}` is not a duration (e.g. 60s, 500ms, 2m, 1h)"))?;
    if ms == 0 {
        return Err("a lease must be longer than zero".to_owned());
    }
    Ok(std::time::Duration::from_millis(ms))
}
