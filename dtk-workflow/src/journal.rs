//! The durable journal of a run: JSON lines, append only, group committed.
//!
//! # Format
//!
//! One JSON object per line, `kind` saying what it is: `begin` (service, plan kind,
//! task count), `intent` (a task is about to start), `done` (a task completed, with its
//! effect on actual state: the component's new record, a deletion, or a custom action's
//! outputs), `unchanged` (a conditional task was skipped), `failed` (with the message and,
//! for a converge, the component's failed record), `skipped` / `cancelled` (never ran),
//! and `end`. No entry holds a secret: records are the same as actual state's.
//!
//! Every line also carries `at`, when the entry was queued, in milliseconds since the Unix
//! epoch (a task's `intent` is its start, its result its end), and `begin` carries the
//! plan's `graph` (every task with its component, action, node and the tasks it waits for),
//! so that a reader in another process ([`JournalLine`], [`parse_lines`]: `dtk ui`) can show
//! a run in progress. Both were added after the first version and are optional when read:
//! a journal written without them replays the same.
//!
//! # Durability
//!
//! One writer thread owns the file. Entries are queued without waiting; the writer
//! takes everything queued and appends it with one `write` at once (a killed process
//! loses nothing written), and calls `fsync` (`sync_data`) once the oldest entry not yet
//! synced is `COMMIT_INTERVAL` (2 ms) old, for everything written by then, and when the
//! journal closes: group commit, so a run of N tasks costs far fewer than 2N fsyncs and
//! no entry rewrites earlier ones.
//!
//! The executor does **not** wait for a task's `done` to be durable before starting the
//! tasks that depend on it. This is safe because the file is written strictly in queue
//! order and `done` of a task is queued before any dependent's `intent`: a crash can only
//! lose a *suffix* of the journal (a torn last line is ignored by [`replay`]), so any
//! surviving entry of a dependent comes with its predecessors' `done`. A lost `done` only
//! means the task (and whatever ran after it) is run again by the next converge, which the
//! provider contract makes safe (actions are idempotent, with a stable idempotency key).
//! The run's [`Outcome`](crate::Outcome) is returned only after the final batch is synced.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use dtk_model::instance::ComponentId;
use dtk_model::value::Attributes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::{ActualState, AppliedComponent};
use crate::task::TaskId;

/// The journal format version written in `begin` entries.
pub const JOURNAL_VERSION: u32 = 1;

/// The most entries one group commit takes.
const MAX_BATCH: usize = 8192;

/// How long an entry written may wait for its `fsync` (group commit): entries written
/// meanwhile share it. A run of many short tasks paid an `fsync` per entry or two (966 for
/// the 1,000 entries of W(50 x 10)), each one an ext4 journal commit that the tasks' own
/// file writes then waited behind. Nothing waits for durability during a run (see
/// "Durability" above), so the interval only bounds how much a power loss may take.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(2);

/// When the journal writer calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// At most once per commit interval, for every entry written by then, and at the
    /// end (the default).
    #[default]
    GroupCommit,
    /// After every entry (the baseline group commit is measured against).
    EveryEntry,
    /// Never: the OS decides. Survives a killed process, not a power loss. For tests.
    Never,
}

/// The error returned when the journal cannot be opened, written or read.
#[derive(Debug, Error)]
pub enum JournalError {
    /// Creating or opening the file failed.
    #[error("cannot open journal {}", path.display())]
    Open {
        /// The journal file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Appending or syncing failed.
    #[error("cannot write journal {}", path.display())]
    Write {
        /// The journal file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading the file failed.
    #[error("cannot read journal {}", path.display())]
    Read {
        /// The journal file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The writer thread stopped unexpectedly.
    #[error("the writer of journal {} stopped", path.display())]
    WriterGone {
        /// The journal file.
        path: PathBuf,
    },
}

/// What a completed task did to actual state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum JournalEffect {
    /// A converge: the component's new record.
    Applied {
        /// The record.
        record: Box<AppliedComponent>,
    },
    /// A delete: the component is gone.
    Deleted,
    /// A custom action: outputs merged into the component's record.
    Outputs {
        /// The outputs (declared dynamic attributes, secrets never).
        outputs: Attributes,
    },
    /// A failure: the component's record marked failed (for converges).
    Failed {
        /// What failed (secrets redacted).
        message: String,
        /// The component's record after the failure, for converges.
        record: Option<Box<AppliedComponent>>,
    },
}

/// One task of the plan, as a `begin` entry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalTask {
    /// The task.
    pub id: TaskId,
    /// Its component.
    pub component: ComponentId,
    /// Its action.
    pub action: String,
    /// Its node.
    #[serde(default)]
    pub node: Option<String>,
    /// The tasks it waits for.
    #[serde(default)]
    pub after: Vec<TaskId>,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// The start of a run.
    Begin {
        /// [`JOURNAL_VERSION`].
        version: u32,
        /// The service.
        service: String,
        /// `converge`, `delete` or `exec`.
        plan: String,
        /// How many tasks the plan has.
        tasks: usize,
        /// The plan's tasks in plan order, with what each waits for (empty in journals
        /// written before it was added).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        graph: Vec<JournalTask>,
    },
    /// A task is about to run.
    Intent {
        /// The task.
        task: TaskId,
        /// Its component.
        component: ComponentId,
    },
    /// A task completed.
    Done {
        /// The task.
        task: TaskId,
        /// Its component.
        component: ComponentId,
        /// Its effect on actual state.
        #[serde(flatten)]
        effect: JournalEffect,
    },
    /// A conditional task found nothing changed.
    Unchanged {
        /// The task.
        task: TaskId,
        /// Its component.
        component: ComponentId,
    },
    /// A task failed.
    Failed {
        /// The task.
        task: TaskId,
        /// Its component.
        component: ComponentId,
        /// What failed, and the failed record.
        #[serde(flatten)]
        effect: JournalEffect,
    },
    /// A task did not run because one it depends on failed.
    Skipped {
        /// The task.
        task: TaskId,
        /// The failed task.
        because: TaskId,
    },
    /// The end of a run.
    End {
        /// `complete`, `failed` or `cancelled`.
        status: String,
    },
}

/// Counters of a journal writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Entries written.
    pub entries: u64,
    /// Batches written (one `write` and, unless [`SyncMode::Never`], one fsync each).
    pub batches: u64,
    /// fsync calls.
    pub syncs: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// A journal line as read back with its time: see [`parse_lines`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalLine {
    /// When the entry was queued, in milliseconds since the Unix epoch (`None` in journals
    /// written before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// The entry.
    #[serde(flatten)]
    pub entry: JournalEntry,
}

/// Parses the complete lines at the start of `bytes` (a journal, or the part of one
/// appended since the last call) and returns them with how many bytes they took: a
/// torn last line (being written, or cut by a kill) is left for the next call. Lines that
/// do not parse are skipped. For readers that follow a run in progress.
pub fn parse_lines(bytes: &[u8]) -> (Vec<JournalLine>, usize) {
    let mut out = Vec::new();
    let mut consumed = 0;
    while let Some(p) = bytes[consumed..].iter().position(|&b| b == b'\n') {
        let line = &bytes[consumed..consumed + p];
        consumed += p + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(l) = serde_json::from_slice::<JournalLine>(line) {
            out.push(l);
        }
    }
    (out, consumed)
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

enum Msg {
    Entry(Box<JournalEntry>, u64),
    Close(tokio::sync::oneshot::Sender<Result<JournalStats, JournalError>>),
}

/// A journal being written by its writer thread. Dropping it without
/// [`close`](JournalWriter::close) still writes what was queued.
#[derive(Debug)]
pub struct JournalWriter {
    path: PathBuf,
    tx: mpsc::Sender<Msg>,
    broken: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl JournalWriter {
    /// Opens `path` for appending (creating it and syncing its directory if new) and
    /// starts the writer thread.
    pub fn open(path: &Path, sync: SyncMode) -> Result<JournalWriter, JournalError> {
        let open_err = |source| JournalError::Open {
            path: path.to_owned(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        if existed {
            // A run killed mid-line left a torn line: end it, so that the entries appended
            // now start on a line of their own (replay skips the broken line).
            let len = file.metadata().map_err(open_err)?.len();
            if len > 0 && last_byte(path).map_err(open_err)? != Some(b'\n') {
                file.write_all(b"\n").map_err(open_err)?;
            }
        } else if sync != SyncMode::Never
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            // The new file's directory entry must be durable too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(open_err)?;
        }
        let (tx, rx) = mpsc::channel();
        let broken = Arc::new(AtomicBool::new(false));
        let thread = {
            let path = path.to_owned();
            let broken = broken.clone();
            thread::Builder::new()
                .name("dtk-journal".to_owned())
                .spawn(move || writer_loop(file, &path, sync, &rx, &broken))
                .map_err(open_err)?
        };
        Ok(JournalWriter {
            path: path.to_owned(),
            tx,
            broken,
            thread: Some(thread),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `entry`; it is written with the next batch. Never blocks.
    pub fn append(&self, entry: JournalEntry) {
        if self.tx.send(Msg::Entry(Box::new(entry), now_ms())).is_err() {
            self.broken.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a write failed: nothing queued since is durable.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Writes and syncs everything queued, stops the writer, and returns its counters
    /// (or the first write error).
    pub async fn close(mut self) -> Result<JournalStats, JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gone = || JournalError::WriterGone {
            path: self.path.clone(),
        };
        if self.tx.send(Msg::Close(tx)).is_err() {
            return Err(gone());
        }
        let r = rx.await.map_err(|_| gone())?;
        if let Some(t) = self.thread.take() {
            // The writer answered `Close` as its last act; joining is immediate.
            let _ = t.join();
        }
        r
    }
}

fn last_byte(path: &Path) -> io::Result<Option<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(Some(b[0]))
}

fn writer_loop(
    mut file: File,
    path: &Path,
    sync: SyncMode,
    rx: &mpsc::Receiver<Msg>,
    broken: &AtomicBool,
) {
    let mut stats = JournalStats::default();
    let mut error: Option<io::Error> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // When the oldest entry written but not yet synced was written (group commit).
    let mut unsynced_since: Option<Instant> = None;
    let write_out = |buf: &mut Vec<u8>,
                     stats: &mut JournalStats,
                     error: &mut Option<io::Error>,
                     file: &mut File| {
        if buf.is_empty() || error.is_some() {
            buf.clear();
            return false;
        }
        let r = file.write_all(buf);
        stats.batches += 1;
        stats.bytes += buf.len() as u64;
        buf.clear();
        if let Err(e) = r {
            broken.store(true, Ordering::SeqCst);
            *error = Some(e);
            return false;
        }
        true
    };
    let sync_out = |stats: &mut JournalStats, error: &mut Option<io::Error>, file: &mut File| {
        if sync == SyncMode::Never || error.is_some() {
            return;
        }
        stats.syncs += 1;
        if let Err(e) = file.sync_data() {
            broken.store(true, Ordering::SeqCst);
            *error = Some(e);
        }
    };
    loop {
        // Wait for the next entry; with entries written but not synced, no longer than
        // the commit interval allows.
        let first = match unsynced_since {
            None => rx.recv().ok(),
            Some(since) => {
                let left = COMMIT_INTERVAL.saturating_sub(since.elapsed());
                match rx.recv_timeout(left) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        sync_out(&mut stats, &mut error, &mut file);
                        unsynced_since = None;
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                }
            }
        };
        let Some(first) = first else {
            // The handle was dropped without `close`: everything is written (each pass
            // writes what it took); sync what is not synced yet.
            if unsynced_since.is_some() {
                sync_out(&mut stats, &mut error, &mut file);
            }
            return;
        };
        let mut next = Some(first);
        let mut close = None;
        let mut taken = 0usize;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Entry(e, at) => {
                    encode(&e, at, &mut buf);
                    stats.entries += 1;
                    taken += 1;
                    if sync == SyncMode::EveryEntry
                        && write_out(&mut buf, &mut stats, &mut error, &mut file)
                    {
                        sync_out(&mut stats, &mut error, &mut file);
                    }
                }
                Msg::Close(c) => {
                    close = Some(c);
                    break;
                }
            }
            if taken < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // Written at once (a killed process loses nothing written), synced once per
        // commit interval, and at the end.
        if write_out(&mut buf, &mut stats, &mut error, &mut file) {
            unsynced_since.get_or_insert_with(Instant::now);
        }
        let due = unsynced_since.is_some_and(|t| t.elapsed() >= COMMIT_INTERVAL);
        if (close.is_some() || taken >= MAX_BATCH || due) && unsynced_since.take().is_some() {
            sync_out(&mut stats, &mut error, &mut file);
        }
        if let Some(c) = close {
            let r = match error.take() {
                None => Ok(stats),
                Some(source) => Err(JournalError::Write {
                    path: path.to_owned(),
                    source,
                }),
            };
            let _ = c.send(r);
            return;
        }
    }
}

fn encode(e: &JournalEntry, at: u64, buf: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Stamped<'a> {
        #[serde(flatten)]
        entry: &'a JournalEntry,
        at: u64,
    }
    // Entries are maps of strings and attribute values: serializing cannot fail.
    if serde_json::to_writer(&mut *buf, &Stamped { entry: e, at }).is_ok() {
        buf.push(b'\n');
    }
}

/// A task result read back from a journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalResult {
    /// The task.
    pub task: TaskId,
    /// Its component.
    pub component: ComponentId,
    /// What it did to actual state (a failure included).
    pub effect: JournalEffect,
}

/// What [`replay`] read from a journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalState {
    /// The service named by the first `begin`.
    pub service: Option<String>,
    /// Results with an effect on actual state (`done`, `failed`), in journal order: what
    /// [`ActualState::apply_journal`](crate::ActualState::apply_journal) applies.
    pub results: Vec<JournalResult>,
    /// Tasks that completed (`done` or `unchanged`): not to be run again.
    pub completed: BTreeSet<TaskId>,
    /// Tasks that failed (and did not complete later).
    pub failed: BTreeSet<TaskId>,
    /// Tasks with an intent and no result, in intent order: interrupted, to run again.
    pub interrupted: Vec<TaskId>,
    /// The status of the last `end`, if the last run ended.
    pub ended: Option<String>,
    /// Whether the last line was torn (cut by a kill) and ignored.
    pub torn: bool,
    /// Complete lines that did not parse and were skipped.
    pub corrupt_lines: usize,
    /// Entries read.
    pub entries: usize,
}

/// Reads a journal. Tolerates a torn last line (and skips any line that does not parse).
/// A missing file reads as empty.
pub fn replay(path: &Path) -> Result<JournalState, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(JournalError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(replay_bytes(&bytes))
}

/// [`replay`] of journal bytes already in memory.
pub fn replay_bytes(bytes: &[u8]) -> JournalState {
    let mut st = JournalState::default();
    let mut pending: HashMap<TaskId, usize> = HashMap::new();
    let mut seq = 0usize;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(p) => {
                let l = &rest[..p];
                rest = &rest[p + 1..];
                (l, true)
            }
            None => {
                let l = rest;
                rest = &[];
                (l, false)
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: JournalEntry = match serde_json::from_slice(line) {
            Ok(e) if complete => e,
            Ok(_) | Err(_) if !complete => {
                st.torn = true;
                break;
            }
            _ => {
                st.corrupt_lines += 1;
                continue;
            }
        };
        st.entries += 1;
        match entry {
            JournalEntry::Begin { service, .. } => {
                st.service.get_or_insert(service);
                st.ended = None;
            }
            JournalEntry::Intent { task, .. } => {
                seq += 1;
                pending.insert(task, seq);
            }
            JournalEntry::Done {
                task,
                component,
                effect,
            } => {
                pending.remove(&task);
                st.failed.remove(&task);
                st.completed.insert(task.clone());
                st.results.push(JournalResult {
                    task,
                    component,
                    effect,
                });
            }
            JournalEntry::Unchanged { task, .. } => {
                pending.remove(&task);
                st.failed.remove(&task);
                st.completed.insert(task);
            }
            JournalEntry::Failed {
                task,
                component,
                effect,
            } => {
                pending.remove(&task);
                st.completed.remove(&task);
                st.failed.insert(task.clone());
                st.results.push(JournalResult {
                    task,
                    component,
                    effect,
                });
            }
            JournalEntry::Skipped { task, .. } => {
                pending.remove(&task);
            }
            JournalEntry::End { status } => st.ended = Some(status),
        }
    }
    let mut interrupted: Vec<(usize, TaskId)> = pending.into_iter().map(|(t, s)| (s, t)).collect();
    interrupted.sort();
    st.interrupted = interrupted.into_iter().map(|(_, t)| t).collect();
    st
}

// The journal applies itself to actual state (state.rs knows nothing of journals).
impl ActualState {
    /// Applies the results a journal recorded (after a failure or a kill), in journal
    /// order: completed converges replace their component's record, completed deletes
    /// remove it, failures mark it failed, custom actions' outputs are merged. Tasks
    /// with an intent but no result change nothing: the next plan runs them again.
    pub fn apply_journal(&mut self, journal: &JournalState) {
        for done in &journal.results {
            match &done.effect {
                JournalEffect::Applied { record } => {
                    self.components
                        .insert(done.component.clone(), (**record).clone());
                }
                JournalEffect::Deleted => {
                    self.components.remove(&done.component);
                }
                JournalEffect::Outputs { outputs } => {
                    if let Some(rec) = self.components.get_mut(&done.component) {
                        rec.outputs
                            .extend(outputs.iter().map(|(k, v)| (k.clone(), v.clone())));
                        rec.outputs_digest = crate::hash::outputs_digest(&rec.outputs);
                    }
                }
                JournalEffect::Failed { record, .. } => {
                    if let Some(record) = record {
                        self.components
                            .insert(done.component.clone(), (**record).clone());
                    }
                }
            }
        }
    }
}
