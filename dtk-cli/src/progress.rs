//! The live view of a run: on a terminal, a status line with counts and one spinner per
//! running task (showing its node); elsewhere, one plain line per event.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dtk_workflow::{Event, TaskStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

/// The view; cheap to clone, shared by the event consumer and the Ctrl-C handler.
#[derive(Clone)]
pub struct View {
    inner: Arc<Mutex<State>>,
}

struct State {
    enabled: bool,
    live: Option<Live>,
    done: usize,
    failed: usize,
    skipped: usize,
    unchanged: usize,
}

struct Live {
    multi: MultiProgress,
    status: ProgressBar,
    running: HashMap<String, ProgressBar>,
}

impl View {
    /// A view that prints when `enabled` (not with `--json`), live when stdout is a
    /// terminal.
    pub fn new(enabled: bool) -> View {
        let live = (enabled && std::io::stdout().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let status = multi.add(ProgressBar::new_spinner());
            status.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            status.enable_steady_tick(Duration::from_millis(120));
            Live {
                multi,
                status,
                running: HashMap::new(),
            }
        });
        View {
            inner: Arc::new(Mutex::new(State {
                enabled,
                live,
                done: 0,
                failed: 0,
                skipped: 0,
                unchanged: 0,
            })),
        }
    }

    /// Prints a note above the live view.
    pub fn note(&self, text: &str) {
        let Ok(st) = self.inner.lock() else { return };
        if !st.enabled {
            return;
        }
        match &st.live {
            Some(l) => l.multi.suspend(|| println_out(text)),
            None => println_out(text),
        }
    }

    fn handle(&self, ev: Event) {
        let Ok(mut st) = self.inner.lock() else {
            return;
        };
        if !st.enabled {
            return;
        }
        let line = match &ev {
            Event::TaskStarted { task, node } => {
                if let Some(l) = st.live.as_mut() {
                    let pb = l.multi.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    pb.set_message(format!("{task}{}", on(node)));
                    pb.enable_steady_tick(Duration::from_millis(120));
                    l.running.insert(task.as_str().to_owned(), pb);
                    None
                } else {
                    Some(format!("started   {task}{}", on(node)))
                }
            }
            Event::TaskRetrying {
                task,
                node,
                attempt,
                error,
                after,
            } => Some(format!(
                "retrying  {task}{}: attempt {attempt} failed: {error}; next in {:.1}s",
                on(node),
                after.as_secs_f64()
            )),
            Event::TaskFinished {
                task,
                node,
                duration,
                ..
            } => {
                st.done += 1;
                Some(format!(
                    "done      {task}{} ({:.2}s)",
                    on(node),
                    duration.as_secs_f64()
                ))
            }
            Event::TaskFailed {
                task,
                node,
                duration,
                error,
                ..
            } => {
                st.failed += 1;
                Some(format!(
                    "FAILED    {task}{} ({:.2}s): {error}",
                    on(node),
                    duration.as_secs_f64()
                ))
            }
            Event::TaskSkipped { task, node, status } => {
                match status {
                    TaskStatus::Unchanged => st.unchanged += 1,
                    _ => st.skipped += 1,
                }
                Some(format!("{:<9} {task}{}", short(status), on(node)))
            }
        };
        let (done, failed, skipped, unchanged) = (st.done, st.failed, st.skipped, st.unchanged);
        match st.live.as_mut() {
            Some(l) => {
                let finished = match &ev {
                    Event::TaskFinished { task, .. }
                    | Event::TaskFailed { task, .. }
                    | Event::TaskSkipped { task, .. } => Some(task.as_str().to_owned()),
                    _ => None,
                };
                if let Some(id) = finished
                    && let Some(pb) = l.running.remove(&id)
                {
                    pb.finish_and_clear();
                    l.multi.remove(&pb);
                }
                if let Some(line) = line
                    && !matches!(ev, Event::TaskFinished { .. } | Event::TaskSkipped { .. })
                {
                    l.multi.suspend(|| println_out(&line));
                }
                l.status.set_message(format!(
                    "running {} · done {done} · unchanged {unchanged} · failed {failed} · skipped {skipped}",
                    l.running.len()
                ));
            }
            None => {
                if let Some(line) = line {
                    println_out(&line);
                }
            }
        }
    }

    /// Ends the live view.
    pub fn finish(&self) {
        let Ok(mut st) = self.inner.lock() else {
            return;
        };
        if let Some(l) = st.live.take() {
            for pb in l.running.values() {
                pb.finish_and_clear();
            }
            l.status.finish_and_clear();
            let _ = l.multi.clear();
        }
    }
}

fn short(status: &TaskStatus) -> &'static str {
    match status {
        TaskStatus::Done => "done",
        TaskStatus::Unchanged => "unchanged",
        TaskStatus::Failed { .. } => "FAILED",
        TaskStatus::Skipped { .. } => "skipped",
        TaskStatus::Cancelled => "cancelled",
    }
}

fn on(node: &Option<String>) -> String {
    node.as_ref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default()
}

fn println_out(text: &str) {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let _ = writeln!(w, "{text}");
    let _ = w.flush();
}

/// Feeds events to the view until the run drops its sender.
pub async fn consume(mut rx: UnboundedReceiver<Event>, view: View) {
    while let Some(ev) = rx.recv().await {
        view.handle(ev);
    }
}
