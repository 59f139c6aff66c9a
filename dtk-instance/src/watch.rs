//! Watching a service without touching it: the run in progress (read from its journal
//! while another process writes it), who holds the instance lock, and the reports of past
//! runs (from the converge records). Everything here only reads; it never takes the
//! instance lock, so watching never gets in the way of a converge. `dtk ui` is built on it.
//!
//! A run in progress is the newest journal under `.dtk/journal/` (`RUN.jsonl`): its
//! `begin` lists the plan, each `intent` starts a task and each result ends it, every line
//! stamped with its time. A run that ends normally removes its journal once actual state
//! is saved; a journal whose writer is gone (killed) stays until the next run resumes it,
//! and reads here as not running.

use std::collections::HashMap;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use dtk_workflow::journal::{JournalEffect, JournalEntry};
use serde::{Deserialize, Serialize};

use crate::converge::RunReport;
use crate::error::InstanceError;
use crate::repo::io_err;
use crate::service::Service;

/// Who holds a service's instance lock, as its lock file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    /// The holder's process id.
    pub pid: u32,
    /// The host it runs on.
    pub host: String,
    /// Since when, in seconds since the Unix epoch.
    pub since: u64,
    /// What it is doing (`converge`, `delete`, `exec`, `set-attribute`, ...).
    pub operation: String,
    /// Whether that process still runs (checked on this host only; a holder on another
    /// host is taken as alive).
    pub alive: bool,
}

/// The state of one task of a [`LiveRun`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveTaskState {
    /// Not started.
    Pending,
    /// Started, no result yet.
    Running,
    /// It ran and succeeded.
    Done,
    /// A conditional task found nothing to do.
    Unchanged,
    /// It failed.
    Failed,
    /// Not run: a task it waits for failed.
    Skipped,
}

impl LiveTaskState {
    /// The state's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveTaskState::Pending => "pending",
            LiveTaskState::Running => "running",
            LiveTaskState::Done => "done",
            LiveTaskState::Unchanged => "unchanged",
            LiveTaskState::Failed => "failed",
            LiveTaskState::Skipped => "skipped",
        }
    }
}

/// One task of a [`LiveRun`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveTask {
    /// The task id (`COMPONENT.ACTION`).
    pub id: String,
    /// Its component.
    pub component: String,
    /// Its action.
    pub action: String,
    /// Its node.
    pub node: Option<String>,
    /// The tasks it waits for.
    pub after: Vec<String>,
    /// Its state so far.
    pub state: LiveTaskState,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// When it ended.
    pub ended_at_ms: Option<u64>,
    /// Why it failed, or which failed task it was skipped for.
    pub detail: Option<String>,
}

/// A change to one task, as [`JournalFollower::poll`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskChange {
    /// The task id.
    pub id: String,
    /// Its new state.
    pub state: LiveTaskState,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: Option<u64>,
    /// Why it failed, or which failed task it was skipped for.
    pub detail: Option<String>,
}

/// A run as its journal tells it so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveRun {
    /// The run's id (the journal's file name).
    pub run: String,
    /// The service.
    pub service: String,
    /// `converge`, `delete` or `action` (an exec), from `begin`; empty before it.
    pub kind: String,
    /// When the run's executor started, in milliseconds since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// Whether a live process is running it (it holds the instance lock for a run);
    /// `false` for the journal of a killed run, which the next converge resumes.
    pub running: bool,
    /// How the run ended (`complete`, `failed`, `cancelled`), once its `end` is written.
    pub ended: Option<String>,
    /// The plan's tasks in plan order (only those that started, for journals written
    /// before `begin` listed the plan).
    pub tasks: Vec<LiveTask>,
}

impl LiveRun {
    /// How many tasks have a result.
    pub fn finished(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| !matches!(t.state, LiveTaskState::Pending | LiveTaskState::Running))
            .count()
    }
}

/// Reads a journal as it grows: each [`poll`](Self::poll) reads what was appended since
/// the last one (complete lines only) and applies it to the [`LiveRun`].
#[derive(Debug)]
pub struct JournalFollower {
    path: PathBuf,
    /// The journal, open: what was written before the run removed it can still be read.
    file: Option<fs::File>,
    offset: u64,
    run: LiveRun,
    index: HashMap<String, usize>,
    gone: bool,
}

impl JournalFollower {
    /// Follows the journal at `path` (nothing is read until the first poll).
    pub fn new(path: &Path, service: &str) -> JournalFollower {
        let run = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        JournalFollower {
            path: path.to_owned(),
            file: None,
            offset: 0,
            run: LiveRun {
                run,
                service: service.to_owned(),
                kind: String::new(),
                started_at_ms: None,
                running: false,
                ended: None,
                tasks: Vec::new(),
            },
            index: HashMap::new(),
            gone: false,
        }
    }

    /// The journal followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run so far.
    pub fn run(&self) -> &LiveRun {
        &self.run
    }

    /// Whether the journal is gone: the run ended and its results are in actual state.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Reads what was appended since the last poll and returns the task changes it made.
    /// A journal removed since (the run ended) marks the follower [gone](Self::is_gone),
    /// once everything written before the removal is read: the file stays open between
    /// polls, so a run that ends between two polls loses none of its last entries.
    pub fn poll(&mut self) -> Result<Vec<TaskChange>, InstanceError> {
        if self.gone {
            return Ok(Vec::new());
        }
        if self.file.is_none() {
            match fs::File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.gone = true;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(io_err(&self.path, "open")(e)),
            }
        }
        let mut changes = self.read_new()?;
        if !self.path.exists() {
            // Removed: the writer had closed it before; read what it wrote last.
            changes.extend(self.read_new()?);
            self.gone = true;
            self.file = None;
        }
        Ok(changes)
    }

    fn read_new(&mut self) -> Result<Vec<TaskChange>, InstanceError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io_err(&self.path, "seek"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_err(&self.path, "read"))?;
        let (lines, used) = dtk_workflow::parse_lines(&bytes);
        self.offset += used as u64;
        let mut changes = Vec::new();
        for line in lines {
            self.apply(line.entry, line.at, &mut changes);
        }
        Ok(changes)
    }

    fn task_mut(&mut self, id: &str, component: &str) -> &mut LiveTask {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                // A journal written before `begin` listed the plan: tasks appear as they
                // start.
                self.run.tasks.push(LiveTask {
                    id: id.to_owned(),
                    component: component.to_owned(),
                    action: id
                        .rsplit_once('.')
                        .map(|(_, a)| a.to_owned())
                        .unwrap_or_default(),
                    node: None,
                    after: Vec::new(),
                    state: LiveTaskState::Pending,
                    started_at_ms: None,
                    ended_at_ms: None,
                    detail: None,
                });
                self.index.insert(id.to_owned(), self.run.tasks.len() - 1);
                self.run.tasks.len() - 1
            }
        };
        &mut self.run.tasks[i]
    }

    fn apply(&mut self, entry: JournalEntry, at: Option<u64>, changes: &mut Vec<TaskChange>) {
        let (id, component, state, detail) = match entry {
            JournalEntry::Begin { plan, graph, .. } => {
                self.run.kind = plan;
                self.run.started_at_ms = at;
                for t in graph {
                    let id = t.id.as_str().to_owned();
                    if self.index.contains_key(&id) {
                        continue;
                    }
                    self.index.insert(id.clone(), self.run.tasks.len());
                    self.run.tasks.push(LiveTask {
                        id,
                        component: t.component.to_string(),
                        action: t.action,
                        node: t.node,
                        after: t.after.iter().map(|a| a.as_str().to_owned()).collect(),
                        state: LiveTaskState::Pending,
                        started_at_ms: None,
                        ended_at_ms: None,
                        detail: None,
                    });
                }
                return;
            }
            JournalEntry::End { status } => {
                self.run.ended = Some(status);
                return;
            }
            JournalEntry::Intent { task, component } => {
                (task, component.to_string(), LiveTaskState::Running, None)
            }
            JournalEntry::Done {
                task, component, ..
            } => (task, component.to_string(), LiveTaskState::Done, None),
            JournalEntry::Unchanged { task, component } => {
                (task, component.to_string(), LiveTaskState::Unchanged, None)
            }
            JournalEntry::Failed {
                task,
                component,
                effect,
            } => {
                let message = match effect {
                    JournalEffect::Failed { message, .. } => Some(message),
                    _ => None,
                };
                (task, component.to_string(), LiveTaskState::Failed, message)
            }
            JournalEntry::Skipped { task, because } => {
                let component = task
                    .as_str()
                    .rsplit_once('.')
                    .map(|(c, _)| c.to_owned())
                    .unwrap_or_default();
                (
                    task,
                    component,
                    LiveTaskState::Skipped,
                    Some(format!("{because} failed")),
                )
            }
        };
        let t = self.task_mut(id.as_str(), &component);
        t.state = state;
        if state == LiveTaskState::Running {
            t.started_at_ms = at;
            t.ended_at_ms = None;
        } else {
            t.ended_at_ms = at;
        }
        t.detail.clone_from(&detail);
        changes.push(TaskChange {
            id: id.as_str().to_owned(),
            state,
            at_ms: at,
            detail,
        });
    }

    /// Sets whether a live process runs this journal's run (see [`Service::live_run`]).
    pub fn set_running(&mut self, running: bool) {
        self.run.running = running;
    }
}

/// One run in a service's history: a summary of its recorded report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The run's id.
    pub run: String,
    /// The record commit (on `refs/dtk/converges`) holding its report.
    pub record: String,
    /// `converge`, `exec` or `delete`.
    pub kind: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The desired-state commit it ran against.
    pub commit: Option<String>,
    /// When it started, in seconds since the Unix epoch.
    pub started_at: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How many tasks it had.
    pub tasks: usize,
    /// How many of them failed.
    pub failed: usize,
}

/// The parts of a recorded report a [`RunSummary`] needs (the task lines are only counted).
#[derive(Deserialize)]
struct SummaryFields {
    kind: String,
    run: String,
    status: String,
    #[serde(default)]
    commit: Option<String>,
    started_at: u64,
    duration_ms: u64,
    tasks: Vec<TaskStatusOnly>,
}

#[derive(Deserialize)]
struct TaskStatusOnly {
    status: String,
}

/// The file of a converge record commit that holds the run's report.
const RECORD_FILE: &str = "record.json";

impl Service {
    /// Who holds the instance lock now, if anyone. Reads the lock file; never takes the
    /// lock.
    pub fn lock_holder(&self) -> Result<Option<LockHolder>, InstanceError> {
        let path = self.private_dir().join("lock");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, "read")(e)),
        };
        Ok(parse_holder(&text))
    }

    /// The journals under `.dtk/journal/`, oldest first (run ids sort by time).
    fn journals(&self) -> Result<Vec<PathBuf>, InstanceError> {
        let dir = self.private_dir().join("journal");
        let mut out: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&dir, "list")(e)),
        };
        out.sort();
        Ok(out)
    }

    /// The journal of the newest run not yet recorded: the run in progress, or a killed
    /// run's that the next converge resumes.
    pub fn live_journal(&self) -> Result<Option<PathBuf>, InstanceError> {
        Ok(self.journals()?.pop())
    }

    /// Whether a live process holds the instance lock for a run (`converge`, `delete`,
    /// `exec`).
    pub fn is_running(&self) -> Result<bool, InstanceError> {
        Ok(self.lock_holder()?.is_some_and(|h| {
            h.alive && matches!(h.operation.as_str(), "converge" | "delete" | "exec")
        }))
    }

    /// The run in progress (or the last killed one) as its journal tells it so far, or
    /// `None` when there is no journal.
    pub fn live_run(&self) -> Result<Option<LiveRun>, InstanceError> {
        let Some(path) = self.live_journal()? else {
            return Ok(None);
        };
        let mut f = JournalFollower::new(&path, self.name());
        f.poll()?;
        if f.is_gone() {
            // It ended between the listing and the read.
            return Ok(None);
        }
        f.set_running(self.is_running()?);
        Ok(Some(f.run))
    }

    /// The recorded runs, newest first, at most `limit`: a summary of each one's report.
    pub fn run_history(&self, limit: usize) -> Result<Vec<RunSummary>, InstanceError> {
        let mut out = Vec::new();
        for c in self.runs(limit)? {
            let id = self.repo().resolve(&c.id)?;
            let Some(data) = self.repo().read_file_at(id, RECORD_FILE)? else {
                continue;
            };
            let Ok(f) = serde_json::from_slice::<SummaryFields>(&data) else {
                continue;
            };
            out.push(RunSummary {
                failed: f.tasks.iter().filter(|t| t.status == "failed").count(),
                tasks: f.tasks.len(),
                run: f.run,
                record: c.id,
                kind: f.kind,
                status: f.status,
                commit: f.commit,
                started_at: f.started_at,
                duration_ms: f.duration_ms,
            });
        }
        Ok(out)
    }

    /// The recorded report of run `run`, looked up among the newest `limit` records.
    pub fn run_report(&self, run: &str, limit: usize) -> Result<Option<RunReport>, InstanceError> {
        if let Some(last) = self.last_run()?
            && last.run == run
        {
            return Ok(Some(last));
        }
        let needle = format!(" {run}:");
        for c in self.runs(limit)? {
            if !c.summary.contains(&needle) {
                continue;
            }
            let id = self.repo().resolve(&c.id)?;
            if let Some(data) = self.repo().read_file_at(id, RECORD_FILE)?
                && let Ok(report) = serde_json::from_slice::<RunReport>(&data)
                && report.run == run
            {
                return Ok(Some(report));
            }
        }
        Ok(None)
    }
}

/// Parses a lock file's `key=value` lines; `None` when it names no holder (the lock is
/// free: its holder empties it on release).
fn parse_holder(text: &str) -> Option<LockHolder> {
    let mut pid = None;
    let mut host = String::new();
    let mut since = 0;
    let mut operation = String::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => pid = v.trim().parse::<u32>().ok(),
            Some(("host", v)) => v.trim().clone_into(&mut host),
            Some(("since", v)) => since = v.trim().parse().unwrap_or(0),
            Some(("operation", v)) => v.trim().clone_into(&mut operation),
            _ => {}
        }
    }
    let pid = pid?;
    let alive = host != crate::lock::hostname() || process_alive(pid);
    Some(LockHolder {
        pid,
        host,
        since,
        operation,
        alive,
    })
}

/// Whether process `pid` exists (signal 0: a check, nothing is sent).
fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_read_from_the_lock_file() {
        let me = std::process::id();
        let host = crate::lock::hostname();
        let h = parse_holder(&format!(
            "pid={me}\nhost={host}\nsince=12\noperation=converge\n"
        ))
        .expect("a holder");
        assert_eq!(h.pid, me);
        assert_eq!(h.operation, "converge");
        assert!(h.alive);
        assert_eq!(parse_holder(""), None);
        // A pid no process has (above the kernel's pid_max) is not alive.
        let gone = parse_holder(&format!("pid=2147483000\nhost={host}\n")).expect("a holder");
        assert!(!gone.alive);
    }

    #[test]
    fn a_follower_reads_complete_lines_as_they_come() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1-2-3.jsonl");
        let begin = r#"{"kind":"begin","version":1,"service":"s","plan":"converge","tasks":2,"graph":[{"id":"a.create","component":"a","action":"create","node":"n","after":[]},{"id":"b.create","component":"b","action":"create","node":null,"after":["a.create"]}],"at":1000}"#;
        fs::write(&path, format!("{begin}\n")).expect("write");
        let mut f = JournalFollower::new(&path, "s");
        assert!(f.poll().expect("poll").is_empty());
        assert_eq!(f.run().run, "1-2-3");
        assert_eq!(f.run().kind, "converge");
        assert_eq!(f.run().tasks.len(), 2);
        assert_eq!(f.run().tasks[1].after, vec!["a.create".to_owned()]);
        let more = concat!(
            r#"{"kind":"intent","task":"a.create","component":"a","at":1001}"#,
            "\n",
            r#"{"kind":"done","task":"a.create","component":"a","effect":"deleted","at":1500}"#,
            "\n",
            r#"{"kind":"intent","task":"b.create","comp"#
        );
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut file, more.as_bytes()).expect("append");
        let changes = f.poll().expect("poll");
        assert_eq!(
            changes
                .iter()
                .map(|c| (c.id.as_str(), c.state))
                .collect::<Vec<_>>(),
            vec![
                ("a.create", LiveTaskState::Running),
                ("a.create", LiveTaskState::Done)
            ]
        );
        let a = &f.run().tasks[0];
        assert_eq!((a.started_at_ms, a.ended_at_ms), (Some(1001), Some(1500)));
        // The torn line completes.
        std::io::Write::write_all(
            &mut file,
            b"onent\":\"b\",\"at\":1501}\n{\"kind\":\"failed\",\"task\":\"b.create\",\"component\":\"b\",\"effect\":\"failed\",\"message\":\"boom\",\"record\":null,\"at\":1600}\n{\"kind\":\"end\",\"status\":\"failed\",\"at\":1601}\n",
        )
        .expect("append");
        let changes = f.poll().expect("poll");
        assert_eq!(changes.len(), 2);
        assert_eq!(f.run().tasks[1].state, LiveTaskState::Failed);
        assert_eq!(f.run().tasks[1].detail.as_deref(), Some("boom"));
        assert_eq!(f.run().ended.as_deref(), Some("failed"));
        assert_eq!(f.run().finished(), 2);
        // What is written just before the journal is removed is still read.
        std::io::Write::write_all(
            &mut file,
            b"{\"kind\":\"intent\",\"task\":\"late.create\",\"component\":\"late\",\"at\":1700}\n",
        )
        .expect("append");
        drop(file);
        fs::remove_file(&path).expect("remove");
        let changes = f.poll().expect("poll");
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].id, "late.create");
        assert!(f.is_gone());
        assert!(f.poll().expect("poll").is_empty());
    }
}
