//! The lock of a service instance on the team's remote: a lease with fencing.
//!
//! The lock is the reference `refs/dtk/services/NAME/lock` on the remote. It points at a
//! parentless commit whose tree holds `lock.json` ([`LockInfo`]: who holds it, for what,
//! since when, until when). It is taken by compare-and-swap: an atomic push that creates
//! the reference only if it does not exist (`--force-with-lease=REF:`), or, when the
//! holder's lease has expired, only if it still points at the expired lock. Two machines
//! racing for it cannot both win: the remote checks the expected value under its
//! reference lock.
//!
//! While it runs, the holder renews the lease (a new lock commit, pushed by
//! compare-and-swap from the one it holds) every third of the lease, and pushes journal
//! checkpoints. Every state push the holder makes moves the lock reference too, from the
//! value it holds, in the same atomic push: once someone else has taken the lock over,
//! every later push of the old holder is refused as a whole (fencing), and the old holder
//! stops scheduling tasks. (A push must *move* the lock reference to be checked: git
//! skips a reference already at the pushed value, so lock commits are unique.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dtk_catalog::remote::{Expect, GitRemote, RefUpdate};
use dtk_model::ProviderError;
use dtk_model::provider::{Cancel, ExecOutput, ExecRequest};
use dtk_workflow::CommandTransport;
use gix::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::InstanceError;
use crate::history::{ACTUAL_FILE, JOURNAL_DIR, SECRETS_FILE, STATE_REF};
use crate::repo::{InstanceRepo, Signature, TreeEdit};

/// The file of a lock commit.
pub const LOCK_FILE: &str = "lock.json";

/// The lease a run takes when it is told none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// A journal checkpoint is pushed at most this often while tasks complete.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Who holds a service's lock on the remote, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The service.
    pub service: String,
    /// `converge`, `delete` or `exec`.
    pub operation: String,
    /// The holder's identity, `Name <email>`.
    pub holder: String,
    /// The operating-system user running it.
    pub user: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// The id of the `DTK_HOME` it runs from (to recognise this home's own dead runs).
    pub home: String,
    /// Unique to this holding (lock commits must never repeat).
    pub nonce: String,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it was last renewed.
    pub renewed_at_ms: u64,
    /// When the lease ends unless renewed: after that, anyone may take the lock over.
    pub expires_at_ms: u64,
    /// The lease's length.
    pub lease_ms: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS UTC` of milliseconds since the epoch.
pub(crate) fn utc(ms: u64) -> String {
    let t = i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

impl LockInfo {
    /// Whether the lease has ended at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.expires_at_ms
    }

    /// The holder, for messages: who, where, doing what, since when, until when.
    pub fn describe(&self, now_ms: u64) -> String {
        let lease = if self.is_expired(now_ms) {
            format!(
                "lease expired {} s ago",
                (now_ms - self.expires_at_ms).div_ceil(1000)
            )
        } else {
            format!(
                "lease ends in {} s",
                (self.expires_at_ms - now_ms).div_ceil(1000)
            )
        };
        format!(
            "{} (user {} on {}, pid {}), {} since {}, {lease}",
            self.holder,
            self.user,
            self.host,
            self.pid,
            self.operation,
            utc(self.started_at_ms)
        )
    }

    fn renewed(&self, now: u64) -> LockInfo {
        LockInfo {
            renewed_at_ms: now,
            expires_at_ms: now.saturating_add(self.lease_ms),
            ..self.clone()
        }
    }
}

/// Writes a lock commit holding `info` (no parents), by `author`.
pub(crate) fn write_lock(
    repo: &InstanceRepo,
    info: &LockInfo,
    author: &Signature,
) -> Result<ObjectId, InstanceError> {
    let data = serde_json::to_vec_pretty(info).map_err(|e| InstanceError::Io {
        path: repo.root().to_owned(),
        op: "encode the lock",
        source: std::io::Error::other(e.to_string()),
    })?;
    let tree = repo.edit_tree(None, &[TreeEdit::File(LOCK_FILE.to_owned(), data)])?;
    let message = format!(
        "lock: {} of {} by {} (pid {} on {}), until {}",
        info.operation,
        info.service,
        info.holder,
        info.pid,
        info.host,
        utc(info.expires_at_ms)
    );
    repo.write_commit(tree, &[], &message, author)
}

/// Reads the lock commit `commit`.
pub(crate) fn read_lock(repo: &InstanceRepo, commit: ObjectId) -> Result<LockInfo, InstanceError> {
    let tree = repo.commit_tree(commit)?;
    let data = repo
        .tree_file(tree, LOCK_FILE)?
        .ok_or_else(|| InstanceError::LockNotDtk {
            commit: commit.to_string(),
            file: LOCK_FILE,
        })?;
    serde_json::from_slice(&data).map_err(|e| InstanceError::LockDamaged {
        commit: commit.to_string(),
        reason: e.to_string(),
    })
}

/// What the holder of a lock knows of the remote, shared with its keeper thread.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The lock commit the remote holds for us.
    pub lock: ObjectId,
    /// Its content.
    pub info: LockInfo,
    /// The state commit the remote holds (`refs/dtk/services/NAME/state`).
    pub state: Option<ObjectId>,
    /// Set when a push was refused: someone else holds the lock now.
    pub fenced: Option<String>,
    /// Set when the remote could not be reached for longer than the lease.
    pub lost: Option<String>,
    /// When the last push succeeded.
    pub last_push: Instant,
    /// The journal bytes the last checkpoint held.
    pub pushed_journal_bytes: u64,
}

/// Why the holder of `held` must not start anything now: another machine took the lock
/// over, or the lease ended without a renewal (the process was stopped, or the remote
/// unreachable), so another machine may take it over at any moment.
pub(crate) fn lease_problem(held: &Mutex<Held>) -> Option<String> {
    let h = held.lock().ok()?;
    if let Some(f) = &h.fenced {
        return Some(f.clone());
    }
    let now = now_ms();
    h.info.is_expired(now).then(|| {
        format!(
            "the lease of the lock of `{}` ended at {} without a renewal; another machine may              hold it now",
            h.info.service,
            utc(h.info.expires_at_ms)
        )
    })
}

/// The commands transport of a run holding a remote lock: refuses to start an action once
/// the lease is lost (see [`lease_problem`]), then hands over to the real transport.
pub(crate) struct LeaseGuard {
    pub inner: Arc<dyn CommandTransport>,
    pub held: Arc<Mutex<Held>>,
}

#[async_trait]
impl CommandTransport for LeaseGuard {
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        if let Some(why) = lease_problem(&self.held) {
            return Err(ProviderError::failed(
                format!("run commands of `{}` on node `{}`", req.service, req.node),
                why,
            ));
        }
        self.inner.exec(req).await
    }
}

/// The remote reference names of a service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceRefs {
    pub desired: String,
    pub state: String,
    pub converges: String,
    pub lock: String,
}

impl ServiceRefs {
    pub(crate) fn new(service: &str) -> ServiceRefs {
        let base = format!("refs/dtk/services/{service}");
        ServiceRefs {
            desired: format!("{base}/desired"),
            state: format!("{base}/state"),
            converges: format!("{base}/converges"),
            lock: format!("{base}/lock"),
        }
    }
}

/// The thread that renews a held lock and pushes journal checkpoints while a run goes.
pub(crate) struct Keeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

/// What the keeper needs.
pub(crate) struct KeeperSetup {
    pub remote: GitRemote,
    pub dir: PathBuf,
    pub refs: ServiceRefs,
    pub held: Arc<Mutex<Held>>,
    pub cancel: Cancel,
    pub journal_dir: PathBuf,
    /// The actual state the run started from (`actual.json` of each checkpoint).
    pub base_actual: Vec<u8>,
    /// The secret names of this machine (`secrets.json` of each checkpoint).
    pub secret_names: Vec<u8>,
    pub author: Signature,
}

impl Keeper {
    /// Starts the keeper thread.
    pub(crate) fn start(setup: KeeperSetup) -> Keeper {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("dtk-lease".to_owned())
            .spawn(move || keep(setup, &stop2))
            .ok();
        Keeper { stop, handle }
    }

    /// Stops the thread and waits for it (a push in flight finishes first).
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (flag, cv) = &*self.stop;
        if let Ok(mut s) = flag.lock() {
            *s = true;
        }
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.halt();
    }
}

fn journal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn keep(setup: KeeperSetup, stop: &(Mutex<bool>, Condvar)) {
    let Ok(repo) = InstanceRepo::open(&setup.dir) else {
        return;
    };
    let tick = Duration::from_millis(100);
    loop {
        {
            let (flag, cv) = stop;
            let Ok(guard) = flag.lock() else { return };
            let Ok((guard, _)) = cv.wait_timeout_while(guard, tick, |s| !*s) else {
                return;
            };
            if *guard {
                return;
            }
        }
        let held = match setup.held.lock() {
            Ok(h) => h.clone(),
            Err(_) => return,
        };
        if held.fenced.is_some() {
            return;
        }
        let lease = Duration::from_millis(held.info.lease_ms);
        let renew_due = held.last_push.elapsed() >= (lease / 3).max(Duration::from_millis(200));
        let bytes = journal_bytes(&setup.journal_dir);
        let checkpoint_due =
            bytes != held.pushed_journal_bytes && held.last_push.elapsed() >= CHECKPOINT_EVERY;
        if !renew_due && !checkpoint_due {
            continue;
        }
        let pushed = push_once(&setup, &repo, &held, checkpoint_due);
        tracing::debug!(service = %held.info.service, checkpoint = checkpoint_due, from = %held.lock, outcome = ?pushed.as_ref().map(|o| o.as_ref().map(|(l, _, s)| (l.to_string(), s.map(|s| s.to_string())))), "lease renewal");
        match pushed {
            Ok(Some((lock, info, state))) => {
                if let Ok(mut h) = setup.held.lock() {
                    h.lock = lock;
                    h.info = info;
                    h.state = state;
                    h.last_push = Instant::now();
                    h.lost = None;
                    if checkpoint_due {
                        h.pushed_journal_bytes = bytes;
                    }
                }
            }
            Ok(None) => {
                let why = "another machine took the lock over (its lease had expired)".to_owned();
                tracing::warn!(service = %held.info.service, "{why}: stopping");
                if let Ok(mut h) = setup.held.lock() {
                    h.fenced = Some(why);
                }
                setup.cancel.cancel();
                return;
            }
            Err(e) => {
                // Unreachable: keep trying; once the lease may have ended, someone else
                // may take the lock over, so start no more tasks.
                let margin = (lease / 10).max(Duration::from_millis(100));
                let deadline = held.info.expires_at_ms;
                let now = now_ms();
                if now.saturating_add(u64::try_from(margin.as_millis()).unwrap_or(0)) >= deadline {
                    if !setup.cancel.is_cancelled() {
                        tracing::warn!(service = %held.info.service, error = %e, "lost the remote for longer than the lease: stopping");
                    }
                    if let Ok(mut h) = setup.held.lock() {
                        h.lost = Some(e.to_string());
                    }
                    setup.cancel.cancel();
                }
            }
        }
    }
}

/// One renewal (and checkpoint): `Ok(None)` when the remote refused it (fenced).
#[allow(clippy::type_complexity)]
fn push_once(
    setup: &KeeperSetup,
    repo: &InstanceRepo,
    held: &Held,
    checkpoint: bool,
) -> Result<Option<(ObjectId, LockInfo, Option<ObjectId>)>, InstanceError> {
    let info = held.info.renewed(now_ms());
    let lock = write_lock(repo, &info, &setup.author)?;
    let mut updates = vec![RefUpdate {
        remote_ref: setup.refs.lock.clone(),
        new: Some(lock),
        expect: Expect::Is(held.lock),
    }];
    let mut state = held.state;
    let mut local_update = None;
    if checkpoint {
        let mut edits = vec![
            TreeEdit::File(ACTUAL_FILE.to_owned(), setup.base_actual.clone()),
            TreeEdit::File(SECRETS_FILE.to_owned(), setup.secret_names.clone()),
        ];
        if let Ok(rd) = std::fs::read_dir(&setup.journal_dir) {
            let mut names: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            names.sort();
            for p in names {
                let (Some(name), Ok(data)) = (
                    p.file_name().and_then(|n| n.to_str()).map(str::to_owned),
                    std::fs::read(&p),
                ) else {
                    continue;
                };
                edits.push(TreeEdit::File(format!("{JOURNAL_DIR}/{name}"), data));
            }
        }
        let tree = repo.edit_tree(None, &edits)?;
        let local_tip = repo.reference(STATE_REF)?;
        let parents: Vec<ObjectId> = local_tip.into_iter().collect();
        let commit = repo.write_commit(
            tree,
            &parents,
            &format!(
                "checkpoint: {} of {} by {}",
                info.operation, info.service, info.holder
            ),
            &setup.author,
        )?;
        updates.push(RefUpdate {
            remote_ref: setup.refs.state.clone(),
            new: Some(commit),
            expect: Expect::from_option(held.state),
        });
        state = Some(commit);
        local_update = Some((local_tip, commit));
    }
    let outcome = setup.remote.push(&setup.dir, &updates)?;
    if !outcome.is_ok() {
        return Ok(None);
    }
    if let Some((old, new)) = local_update {
        repo.set_reference(STATE_REF, Some(old), Some(new), "checkpoint")?;
    }
    Ok(Some((lock, info, state)))
}
