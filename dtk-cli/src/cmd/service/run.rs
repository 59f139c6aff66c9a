//! Running a task-running command (converge, delete, exec) with a live view, and printing
//! its report.

use std::io::Write;

use anyhow::Context as _;
use dtk_instance::converge::{RunOptions, RunReport};
use dtk_model::provider::Cancel;

use crate::Ctx;
use crate::output::{table, utc_time};
use crate::progress;

/// The runtime of a command that runs tasks (converge, delete, workflows, refresh, plan,
/// import): one thread, which waits on the reactor itself. The executor polls every task on
/// the thread that drives it, so a worker thread of a multi-thread runtime only relayed
/// each I/O readiness to that thread (a wake-up and two context switches per job answer);
/// blocking work still goes to tokio's blocking pool, and the journal writer and a team's
/// keeper have their own threads. Measured in docs/benchmarks.md ("One runtime thread").
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(super) type RunFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<RunReport, dtk_instance::InstanceError>> + 'a>,
>;

/// Runs a task-running command with a live view, Ctrl-C handling and a final summary.
pub(super) fn run_tasks<'a>(
    ctx: &Ctx,
    what: &str,
    name: &str,
    mut opts: RunOptions,
    start: impl FnOnce(RunOptions) -> RunFuture<'a>,
) -> anyhow::Result<()> {
    let rt = runtime()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    opts.events = Some(tx);
    let cancel = opts.cancel.clone();
    let view = progress::View::new(!ctx.out.is_json());
    watch_ctrl_c(view.clone(), cancel);
    let report = rt.block_on(async {
        let printer = tokio::spawn(progress::consume(rx, view.clone()));
        let report = start(opts).await;
        let _ = printer.await;
        report
    });
    view.finish();
    let report = report?;
    ctx.out
        .emit(&format!("dtk.service.{what}/v1"), &report, |w| {
            print_summary(w, &report)
        })?;
    if let Some(r) = report.remote.as_ref().filter(|r| !r.pushed) {
        return Err(crate::output::Reported(format!(
            "{what} of `{name}` {}, but its results did not reach the remote {}: {}",
            report.status,
            r.url,
            r.message.as_deref().unwrap_or("no reason given")
        ))
        .into());
    }
    if report.status == "succeeded" {
        Ok(())
    } else {
        Err(crate::output::Reported(format!("{what} of `{name}` {}", report.status)).into())
    }
}

/// Watches for Ctrl-C on a thread of its own, so that it is seen at once even while the
/// runtime's one thread is busy (planning a large service, committing its state): the first
/// asks the run to start no new tasks and to let the running ones finish; the second ends
/// the process (status 130). Returns once the handler is in place, before any task starts.
/// Where it cannot be (no thread, no runtime), Ctrl-C keeps its default action and ends the
/// process at once.
fn watch_ctrl_c(view: progress::View, cancel: Cancel) {
    use tokio::signal::unix::{SignalKind, signal};
    let (ready, in_place) = std::sync::mpsc::sync_channel::<()>(1);
    let watcher = move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let interrupts = signal(SignalKind::interrupt());
            drop(ready);
            let Ok(mut interrupts) = interrupts else {
                return;
            };
            if interrupts.recv().await.is_some() {
                view.note("interrupted: finishing running tasks, starting no new ones (Ctrl-C again to quit now)");
                cancel.cancel();
                if interrupts.recv().await.is_some() {
                    std::process::exit(130);
                }
            }
        });
    };
    if std::thread::Builder::new()
        .name("dtk-ctrl-c".to_owned())
        .spawn(watcher)
        .is_ok()
    {
        // Ends when the watcher drops its end: the handler is in place, or cannot be.
        let _ = in_place.recv();
    }
}

pub(super) fn print_summary(w: &mut dyn Write, r: &RunReport) -> std::io::Result<()> {
    let count = |s: &str| r.tasks.iter().filter(|t| t.status == s).count();
    writeln!(
        w,
        "{} {} {} in {:.1}s: {} done, {} unchanged, {} failed, {} skipped{}",
        r.kind,
        r.service,
        r.status,
        r.duration_ms as f64 / 1000.0,
        count("done"),
        count("unchanged"),
        count("failed"),
        count("skipped"),
        if count("cancelled") > 0 {
            format!(", {} cancelled", count("cancelled"))
        } else {
            String::new()
        }
    )?;
    if r.tasks.is_empty() {
        writeln!(w, "nothing to do: the service matches its desired state")?;
    }
    if r.resumed_from_journal > 0 {
        writeln!(
            w,
            "resumed: {} task(s) completed by an interrupted run were not run again",
            r.resumed_from_journal
        )?;
    }
    for t in r.tasks.iter().filter(|t| t.status == "failed") {
        writeln!(
            w,
            "  failed: {} ({}): {}",
            t.id,
            t.node.as_deref().unwrap_or("-"),
            t.detail.as_deref().unwrap_or("")
        )?;
        if let Some(log) = &t.log {
            writeln!(w, "          log: {}", log.display())?;
        }
    }
    for t in r.tasks.iter().filter(|t| t.status == "skipped") {
        writeln!(
            w,
            "  skipped: {} ({}): {}",
            t.id,
            t.node.as_deref().unwrap_or("-"),
            t.detail.as_deref().unwrap_or("")
        )?;
    }
    if !r.left_out.is_empty() {
        writeln!(
            w,
            "left out by the selection: {}",
            r.left_out
                .iter()
                .map(|l| l.task.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if r.kind == "exec" {
        // What a custom action printed is its result: show it.
        for t in &r.tasks {
            let Some(log) = &t.log else { continue };
            let Ok(text) = std::fs::read_to_string(log) else {
                continue;
            };
            let stdout = text
                .split_once("--- stdout\n")
                .and_then(|(_, rest)| rest.rsplit_once("\n--- stderr"))
                .map(|(out, _)| out.trim_end())
                .unwrap_or("");
            if !stdout.is_empty() {
                writeln!(w, "--- {} ({}):", t.id, t.node.as_deref().unwrap_or("-"))?;
                writeln!(w, "{stdout}")?;
            }
        }
    }
    if r.tasks.iter().any(|t| t.log.is_some()) {
        writeln!(w, "task logs: {}", r.logs.display())?;
    }
    if let Some(remote) = &r.remote {
        match (remote.pushed, &remote.message) {
            (true, None) => writeln!(w, "remote: state and record pushed to {}", remote.url)?,
            (true, Some(m)) => writeln!(w, "remote: pushed to {} ({m})", remote.url)?,
            (false, m) => writeln!(
                w,
                "remote: NOT pushed to {}: {}",
                remote.url,
                m.as_deref().unwrap_or("no reason given")
            )?,
        }
    }
    Ok(())
}

pub(super) fn print_task_status(w: &mut dyn Write, r: &RunReport) -> std::io::Result<()> {
    writeln!(
        w,
        "{} of {} ({}), started {}, {:.1}s, {}",
        r.kind,
        r.service,
        r.run,
        utc_time(i64::try_from(r.started_at).unwrap_or(0)),
        r.duration_ms as f64 / 1000.0,
        r.status
    )?;
    let mut rows = vec![vec![
        "TASK".to_owned(),
        "NODE".to_owned(),
        "STATUS".to_owned(),
        "DURATION".to_owned(),
        "DETAIL".to_owned(),
    ]];
    for t in &r.tasks {
        rows.push(vec![
            t.id.clone(),
            t.node.clone().unwrap_or_else(|| "-".into()),
            t.status.to_string(),
            format!("{:.2}s", t.duration_ms as f64 / 1000.0),
            t.detail.clone().unwrap_or_default(),
        ]);
    }
    table(w, &rows)?;
    writeln!(w)?;
    write!(w, "{}", r.tree)
}
