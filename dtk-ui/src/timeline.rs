//! A run's tasks on a time axis: when each started and ended, on which node, how it ended,
//! and the critical path (the chain of tasks that decided when the run ended).

use std::collections::HashMap;
use std::fmt::Write as _;

use dtk_instance::converge::RunReport;
use dtk_instance::watch::{LiveRun, LiveTaskState};
use serde::Serialize;

use crate::html::{duration, esc};

/// One task on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineTask {
    /// The task id.
    pub id: String,
    /// Its component.
    pub component: String,
    /// Its action.
    pub action: String,
    /// Its node.
    pub node: Option<String>,
    /// `pending`, `running`, `done`, `unchanged`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// When it started, in milliseconds after the run started (`null`: it did not run).
    pub start_ms: Option<u64>,
    /// When it ended, likewise (`null`: not yet, or it did not run).
    pub end_ms: Option<u64>,
    /// The tasks it waited for.
    pub after: Vec<String>,
    /// Whether it is on the critical path.
    pub critical: bool,
    /// Why it failed or was skipped.
    pub detail: Option<String>,
}

/// A run's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// The tasks, in plan order.
    pub tasks: Vec<TimelineTask>,
    /// The critical path, first task first: from the task that ended last, back through
    /// the predecessor each one waited for longest.
    pub critical_path: Vec<String>,
    /// The time the axis spans, in milliseconds.
    pub span_ms: u64,
}

impl Timeline {
    /// The timeline of a recorded run. Reports recorded before tasks had start times
    /// place each task when the last of its predecessors ended.
    pub fn from_report(report: &RunReport) -> Timeline {
        let mut ends: HashMap<&str, u64> = HashMap::new();
        let mut tasks = Vec::with_capacity(report.tasks.len());
        for t in &report.tasks {
            let ran = !matches!(t.status.as_str(), "skipped" | "cancelled");
            let start = match t.started_ms {
                Some(s) => Some(s),
                None if ran => Some(
                    t.after
                        .iter()
                        .filter_map(|a| ends.get(a.as_str()).copied())
                        .max()
                        .unwrap_or(0),
                ),
                None => None,
            };
            let end = start.map(|s| s + t.duration_ms);
            if let Some(e) = end {
                ends.insert(t.id.as_str(), e);
            }
            tasks.push(TimelineTask {
                id: t.id.clone(),
                component: t.component.clone(),
                action: t.action.clone(),
                node: t.node.clone(),
                status: t.status.to_string(),
                start_ms: start,
                end_ms: end,
                after: t.after.clone(),
                critical: false,
                detail: t.detail.clone(),
            });
        }
        let mut tl = Timeline {
            tasks,
            critical_path: Vec::new(),
            span_ms: report.duration_ms,
        };
        tl.finish(true);
        tl
    }

    /// The timeline of a run in progress, at `now_ms` (milliseconds since the Unix
    /// epoch): running tasks end at `now`; no critical path until the run ends.
    pub fn from_live(run: &LiveRun, now_ms: u64) -> Timeline {
        let base = run
            .started_at_ms
            .or_else(|| run.tasks.iter().filter_map(|t| t.started_at_ms).min())
            .unwrap_or(now_ms);
        let rel = |at: Option<u64>| at.map(|a| a.saturating_sub(base));
        let tasks = run
            .tasks
            .iter()
            .map(|t| TimelineTask {
                id: t.id.clone(),
                component: t.component.clone(),
                action: t.action.clone(),
                node: t.node.clone(),
                status: t.state.as_str().to_owned(),
                start_ms: rel(t.started_at_ms),
                end_ms: if t.state == LiveTaskState::Running {
                    None
                } else {
                    rel(t.ended_at_ms)
                },
                after: t.after.clone(),
                critical: false,
                detail: t.detail.clone(),
            })
            .collect();
        let mut tl = Timeline {
            tasks,
            critical_path: Vec::new(),
            span_ms: now_ms.saturating_sub(base),
        };
        tl.finish(run.ended.is_some() && !run.running);
        tl
    }

    /// Widens the span to every end and marks the critical path (when `critical`).
    fn finish(&mut self, critical: bool) {
        let last = self
            .tasks
            .iter()
            .filter_map(|t| t.end_ms)
            .max()
            .unwrap_or(0);
        self.span_ms = self.span_ms.max(last).max(1);
        if !critical {
            return;
        }
        let index: HashMap<String, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        // The task that ended last. Of tasks that ended in the same millisecond, the last
        // in plan order: plan order is topological, so a task that waited for another and
        // ended with it comes after it (a fast `last` behind a `slow` ends with it).
        let mut cur = self
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.end_ms.map(|e| (e, i)))
            .max()
            .map(|(_, i)| i);
        let mut path = Vec::new();
        while let Some(i) = cur {
            if self.tasks[i].critical {
                break; // a cycle cannot happen in a plan; never loop anyway
            }
            self.tasks[i].critical = true;
            path.push(self.tasks[i].id.clone());
            cur = self.tasks[i]
                .after
                .iter()
                .filter_map(|a| index.get(a).copied())
                .filter_map(|p| self.tasks[p].end_ms.map(|e| (e, p)))
                .max()
                .map(|(_, p)| p);
        }
        path.reverse();
        self.critical_path = path;
    }

    /// Writes the timeline as an SVG: a row per task, its label, and a bar from its start
    /// to its end (to now while it runs), critical tasks marked. `run_start_ms` (epoch
    /// milliseconds) is kept for the live view's script, which moves the bars.
    pub fn svg(&self, out: &mut String, run_start_ms: Option<u64>, live: bool) {
        const ROW: f64 = 20.0;
        const LABEL: f64 = 330.0;
        const BARS: f64 = 640.0;
        const TOP: f64 = 26.0;
        let height = TOP + ROW * self.tasks.len() as f64 + 8.0;
        let width = LABEL + BARS + 20.0;
        let scale = BARS / self.span_ms as f64;
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dtk-timeline\" id=\"timeline\" \
             width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
             data-span=\"{}\" data-label=\"{LABEL}\" data-bars=\"{BARS}\" data-live=\"{live}\"{}>",
            self.span_ms,
            run_start_ms
                .map(|s| format!(" data-run-start=\"{s}\""))
                .unwrap_or_default()
        );
        // The axis: about six ticks at a round step.
        let step = tick_step(self.span_ms);
        out.push_str("<g class=\"axis\">");
        let mut t = 0;
        while t <= self.span_ms {
            let x = LABEL + t as f64 * scale;
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
                 <text x=\"{x:.1}\" y=\"14\">{}</text>",
                TOP - 6.0,
                height - 4.0,
                esc(&duration(t))
            );
            t += step;
        }
        out.push_str("</g>");
        for (i, task) in self.tasks.iter().enumerate() {
            let y = TOP + ROW * i as f64;
            let label: String = if task.id.chars().count() > 44 {
                let head: String = task.id.chars().take(43).collect();
                format!("{head}\u{2026}")
            } else {
                task.id.clone()
            };
            let (x, w) = match (task.start_ms, task.end_ms) {
                (Some(s), Some(e)) => (s as f64 * scale, ((e - s.min(e)) as f64 * scale).max(2.0)),
                (Some(s), None) => (
                    s as f64 * scale,
                    ((self.span_ms.saturating_sub(s)) as f64 * scale).max(2.0),
                ),
                _ => (0.0, 0.0),
            };
            let span = match (task.start_ms, task.end_ms) {
                (Some(s), Some(e)) => format!(
                    "{} \u{2192} {} ({})",
                    duration(s),
                    duration(e),
                    duration(e.saturating_sub(s))
                ),
                (Some(s), None) => format!("started at {}", duration(s)),
                _ => "did not run".to_owned(),
            };
            let _ = write!(
                out,
                "<g class=\"task{}\" data-task=\"{}\" data-component=\"{}\" data-state=\"{}\"{}{}>\
                 <title>{}{} \u{2014} {}: {}{}</title>\
                 <text class=\"label\" x=\"4\" y=\"{:.1}\">{}{}</text>\
                 <rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"2\"/></g>",
                if task.critical { " critical" } else { "" },
                esc(&task.id),
                esc(&task.component),
                esc(&task.status),
                task.start_ms
                    .map(|s| format!(" data-start=\"{s}\""))
                    .unwrap_or_default(),
                task.end_ms
                    .map(|e| format!(" data-end=\"{e}\""))
                    .unwrap_or_default(),
                esc(&task.id),
                task.node
                    .as_ref()
                    .map(|n| format!(" on {}", esc(n)))
                    .unwrap_or_default(),
                esc(&task.status),
                esc(&span),
                if task.critical {
                    " (critical path)"
                } else {
                    ""
                },
                y + 14.0,
                if task.critical { "\u{2605} " } else { "" },
                esc(&label),
                LABEL + x,
                y + 3.0,
                ROW - 6.0,
            );
        }
        out.push_str("</svg>");
    }
}

/// A round step (1, 2 or 5 times a power of ten, in ms) giving at most about six ticks.
fn tick_step(span: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = step * m;
            if span / s <= 6 {
                return s;
            }
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtk_instance::converge::TaskLine;

    fn line(id: &str, start: Option<u64>, dur: u64, after: &[&str], status: &str) -> TaskLine {
        TaskLine {
            id: id.to_owned(),
            component: id.split('.').next().unwrap_or(id).to_owned(),
            action: "create".to_owned(),
            node: Some("n".to_owned()),
            status: serde_json::from_value(serde_json::Value::String(status.to_owned()))
                .expect("a task outcome"),
            detail: None,
            duration_ms: dur,
            attempts: 1,
            log: None,
            started_ms: start,
            after: after.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn report(tasks: Vec<TaskLine>) -> RunReport {
        RunReport {
            kind: dtk_instance::outcome::RunKind::Converge,
            run: "r".to_owned(),
            service: "s".to_owned(),
            status: dtk_instance::outcome::RunStatus::Succeeded,
            commit: None,
            started_at: 0,
            duration_ms: 1000,
            tasks,
            tree: String::new(),
            logs: std::path::PathBuf::new(),
            resumed_from_journal: 0,
            who: None,
            left_out: Vec::new(),
            remote: None,
        }
    }

    #[test]
    fn the_critical_path_follows_what_each_task_waited_for() {
        // a (0-100) -> c (300-400); b (0-300) -> c: c waited for b.
        let tl = Timeline::from_report(&report(vec![
            line("a.create", Some(0), 100, &[], "done"),
            line("b.create", Some(0), 300, &[], "done"),
            line(
                "c.create",
                Some(300),
                100,
                &["a.create", "b.create"],
                "done",
            ),
            line("d.create", Some(0), 50, &[], "done"),
        ]));
        assert_eq!(tl.critical_path, vec!["b.create", "c.create"]);
        assert!(tl.tasks[1].critical && tl.tasks[2].critical);
        assert!(!tl.tasks[0].critical && !tl.tasks[3].critical);
        assert_eq!(tl.span_ms, 1000);
    }

    #[test]
    fn old_reports_without_start_times_are_placed_after_their_predecessors() {
        let tl = Timeline::from_report(&report(vec![
            line("a.create", None, 100, &[], "done"),
            line("b.create", None, 200, &["a.create"], "done"),
            line("c.create", None, 0, &["b.create"], "skipped"),
        ]));
        assert_eq!(tl.tasks[1].start_ms, Some(100));
        assert_eq!(tl.tasks[1].end_ms, Some(300));
        assert_eq!(tl.tasks[2].start_ms, None);
        assert_eq!(tl.critical_path, vec!["a.create", "b.create"]);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(1000), 200);
        assert_eq!(tick_step(59_000), 10_000);
    }
}
