//! Teams: one git remote holds the catalog, every service instance's desired state,
//! actual state, journal checkpoints, converge records and locks, so several machines
//! (operators, CI runners) work on the same services.
//!
//! # The layout of the remote
//!
//! ```text
//! refs/dtk/catalog/modules/NS/NAME        a module's branch        (dtk_catalog::remote)
//! refs/dtk/catalog/tags/NS/NAME/VERSION   a published version
//! refs/dtk/services/NAME/desired          the instance repository's HEAD: desired state
//! refs/dtk/services/NAME/state            actual state and journal checkpoints (crate::history)
//! refs/dtk/services/NAME/converges        the converge records (refs/dtk/converges)
//! refs/dtk/services/NAME/lock             the lock, while a run holds it (crate::lease)
//! ```
//!
//! In an instance repository, `refs/dtk/remote/*` is what the last fetch saw of the
//! service's references on the remote.
//!
//! # A run with a remote
//!
//! 1. `Service::team_begin`: start from what this machine last saw of the service on
//!    the remote: the tracking references `refs/dtk/remote/*`, which every fetch and
//!    every push the remote accepted keep up to date. No network: for converge, pull
//!    what they name (a no-op unless a fetch brought something), and bring the converge
//!    records up to date.
//! 2. `TeamRun::take`: one atomic push that takes the lock (create only, or replace the
//!    expired lock a fetch read), pushes the desired-state commit the run converges, and
//!    writes a "run started" commit on the state reference only if it is still what this
//!    machine saw. Before any fetch, the same push also checks, by "updating" them to the
//!    values they must have, that the desired state and the converge records are what
//!    this machine saw (git leaves a reference already at the pushed value alone, and
//!    refuses the whole atomic push when the remote's value is another). When the check
//!    fails, nothing changed anywhere: `TeamRun::refresh` fetches (one `git fetch`),
//!    refuses if another live run holds the lock (naming it), pulls (converge: the
//!    edits it committed are uncommitted again first, so the remote's commits merge
//!    under them as before), and takes again. Then `.dtk/` holds the remote's actual
//!    state and journals: a run taking over from a killed one resumes from its last
//!    checkpoint. A run alone on its service thus costs two `git` calls: this push and
//!    the final one.
//! 3. While the run goes, [`Keeper`](crate::lease) renews the lease and pushes journal
//!    checkpoints, each push conditional on the lock (fencing).
//! 4. `TeamRun::finish`: one atomic push of the final state, the converge record and
//!    the lock's release, conditional on the lock.
//!
//! Secrets never reach the remote: state commits name the secrets that were set, never
//! their values, and a converge that needs a secret this machine lacks is refused.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dtk_catalog::remote::{Expect, GitRemote, RefUpdate};
use dtk_catalog::{Published, remote::CatalogSync};
use dtk_model::provider::Cancel;
use dtk_model::{ComponentId, ServiceModel};
use gix::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::InstanceError;
use crate::history::{ACTUAL_FILE, RECORDS_REF, SECRETS_FILE, STATE_REF};
use crate::home::{Home, LOCAL_TARGET};
use crate::lease::{
    Held, Keeper, KeeperSetup, LockInfo, ServiceRefs, now_ms, read_lock, write_lock,
};
use crate::remote::{Operator, REMOTE_FILE, RemoteFile, RemoteSource, home_err, read_remote_file};
use crate::repo::{InstanceRepo, Signature, io_err, write_file_atomic, write_file_replace};
use crate::service::{ConvergeRecord, Service};

/// Where the last fetch put a service's remote references, in its instance repository.
const TRACKING: &str = "refs/dtk/remote/";

/// What the remote holds, for `dtk remote show`.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteSummary {
    /// The remote's URL (credentials removed).
    pub url: String,
    /// Where the setting comes from.
    pub source: RemoteSource,
    /// How many module versions the remote's catalog holds.
    pub module_versions: usize,
    /// The services on the remote, by name.
    pub services: Vec<RemoteService>,
}

/// A service on the remote.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteService {
    /// Its name.
    pub name: String,
    /// Whether this machine has a copy.
    pub cloned: bool,
    /// Who holds its lock, if anyone.
    pub lock: Option<LockInfo>,
}

/// What `dtk service clone` made.
#[derive(Debug, Clone, Serialize)]
pub struct Cloned {
    /// The service.
    pub name: String,
    /// Its instance repository on this machine.
    pub dir: PathBuf,
    /// The desired-state commit checked out (hex).
    pub commit: String,
    /// The target it is deployed into.
    pub target: Option<String>,
    /// Target instances cloned along with it (it needs them).
    pub targets_cloned: Vec<String>,
    /// How many components the remote's actual state records.
    pub components: usize,
}

/// What `dtk service pull` did.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    /// The service.
    pub service: String,
    /// HEAD before (hex).
    pub from: String,
    /// HEAD after (hex).
    pub to: String,
    /// `up_to_date`, `fast_forward`, `merged` (a merge commit of both histories) or
    /// `conflicts` (HEAD is the remote's; this machine's changes are in the work tree,
    /// conflicting files with markers).
    pub outcome: String,
    /// Files holding conflict markers to resolve.
    pub conflicts: Vec<String>,
    /// Files with uncommitted edits after the pull (converge commits them).
    pub uncommitted: Vec<String>,
}

/// What `dtk service push` did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The service.
    pub service: String,
    /// The remote (credentials removed).
    pub remote: String,
    /// The desired-state commit the remote holds now (hex).
    pub commit: String,
    /// Whether anything was pushed (false: the remote had it).
    pub pushed: bool,
    /// Whether the service was new on the remote (its actual state and records were
    /// pushed too).
    pub created: bool,
    /// Uncommitted edits that were not pushed (converge commits them).
    pub uncommitted: usize,
}

/// The remote's side of a run, in its [`RunReport`](crate::converge::RunReport).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteReport {
    /// The remote (credentials removed).
    pub url: String,
    /// Whether the run's state, record and lock release reached the remote.
    pub pushed: bool,
    /// Why not, when they did not.
    pub message: Option<String>,
}

impl Home {
    /// The team's remote, if one is set.
    pub fn remote(&self) -> Option<&GitRemote> {
        self.team.remote.as_ref()
    }

    /// Where the remote in use comes from.
    pub fn remote_source(&self) -> Option<RemoteSource> {
        self.team.remote.as_ref().map(|_| self.team.source)
    }

    /// Uses `url` as the remote instead of the one `dtk remote set` kept (the `dtk`
    /// command line passes `DTK_REMOTE`); an empty `url` means no remote at all.
    pub fn with_remote(mut self, url: &str) -> Result<Home, InstanceError> {
        self.team.remote = if url.trim().is_empty() {
            None
        } else {
            Some(GitRemote::new(url)?)
        };
        self.team.source = RemoteSource::Override;
        Ok(self)
    }

    /// Who runs this program (commits and locks carry it).
    pub fn operator(&self) -> &Operator {
        &self.team.operator
    }

    /// Sets who runs this program.
    pub fn set_operator(&mut self, operator: Operator) {
        self.team.operator = operator;
    }

    /// A random id of this `DTK_HOME`, made on first use: a lock records it, so a run
    /// of this home can take over a lock left by a dead run of the same home at once.
    pub fn home_id(&self) -> Result<String, InstanceError> {
        use std::io::Read as _;
        let p = self.root().join(".home-id");
        if let Ok(id) = fs::read_to_string(&p)
            && id.trim().len() == 32
        {
            return Ok(id.trim().to_owned());
        }
        let mut bytes = [0u8; 16];
        let random = Path::new("/dev/urandom");
        fs::File::open(random)
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io_err(random, "read"))?;
        let id = hex::encode(bytes);
        let tmp = self
            .root()
            .join(format!(".home-id.tmp-{}", std::process::id()));
        fs::write(&tmp, &id).map_err(io_err(&tmp, "write"))?;
        let linked = fs::hard_link(&tmp, &p);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(id),
            Err(_) => Ok(fs::read_to_string(&p)
                .map_err(io_err(&p, "read"))?
                .trim()
                .to_owned()),
        }
    }

    fn need_remote(&self, what: &str) -> Result<&GitRemote, InstanceError> {
        self.remote().ok_or_else(|| InstanceError::NoRemote {
            what: what.to_owned(),
        })
    }

    /// Sets the team's remote (kept in `DTK_HOME/remote.json`) after checking that it
    /// can be reached, and publishes there every module version of this catalog that it
    /// lacks. Returns what the remote holds.
    pub fn set_remote(&mut self, url: &str) -> Result<RemoteSummary, InstanceError> {
        let remote = GitRemote::new(url)?;
        remote.ls_remote(self.catalog().root(), &["refs/dtk/catalog/tags/*"])?;
        self.catalog()
            .push_missing(&remote, &self.team.operator.identity)?;
        let p = self.root().join(REMOTE_FILE);
        let data = serde_json::to_vec_pretty(&RemoteFile {
            url: url.to_owned(),
        })
        .map_err(|e| home_err(&p, e))?;
        write_file_atomic(&p, &data, false)?;
        self.team.remote = Some(remote);
        self.team.source = RemoteSource::Home;
        self.remote_summary()
    }

    /// Forgets the remote `dtk remote set` kept; returns its URL (credentials removed).
    pub fn unset_remote(&mut self) -> Result<Option<String>, InstanceError> {
        let p = self.root().join(REMOTE_FILE);
        let old = read_remote_file(self.root())?.map(|r| r.display());
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p, "remove")(e)),
        }
        if self.team.source == RemoteSource::Home {
            self.team.remote = None;
        }
        Ok(old)
    }

    /// What the remote holds: module versions, services and their locks.
    pub fn remote_summary(&self) -> Result<RemoteSummary, InstanceError> {
        let remote = self.need_remote("`dtk remote show`")?;
        let catalog = self.catalog().root().to_owned();
        let refs = remote.ls_remote(&catalog, &["refs/dtk/*"])?;
        let module_versions = refs
            .keys()
            .filter(|r| r.starts_with("refs/dtk/catalog/tags/"))
            .count();
        let mut names: Vec<String> = refs
            .keys()
            .filter_map(|r| r.strip_prefix("refs/dtk/services/"))
            .filter_map(|r| r.strip_suffix("/desired"))
            .map(str::to_owned)
            .collect();
        names.sort();
        let locked = refs
            .keys()
            .any(|r| r.starts_with("refs/dtk/services/") && r.ends_with("/lock"));
        let mut locks = BTreeMap::new();
        if locked {
            remote.fetch(
                &catalog,
                &["+refs/dtk/services/*/lock:refs/dtk/remote/locks/*".to_owned()],
            )?;
            let repo = InstanceRepo::open(&catalog)?;
            for name in &names {
                if let Some(id) = repo.reference(&format!("refs/dtk/remote/locks/{name}"))?
                    && let Ok(info) = read_lock(&repo, id)
                {
                    locks.insert(name.clone(), info);
                }
            }
        }
        Ok(RemoteSummary {
            url: remote.display(),
            source: self.team.source,
            module_versions,
            services: names
                .into_iter()
                .map(|name| RemoteService {
                    cloned: self.service_dir(&name).join(".git").is_dir(),
                    lock: locks.remove(&name),
                    name,
                })
                .collect(),
        })
    }

    /// With a remote, brings the remote's module versions into the catalog.
    pub fn sync_catalog(&self) -> Result<Option<CatalogSync>, InstanceError> {
        match self.remote() {
            Some(r) => Ok(Some(self.catalog().fetch_from(r)?)),
            None => Ok(None),
        }
    }

    /// `dtk module install`: publishes the module in `dir`, to the remote first when
    /// there is one (see [`Catalog::publish_to`](dtk_catalog::Catalog::publish_to)).
    pub fn publish(&self, dir: &Path) -> Result<Published, InstanceError> {
        match self.remote() {
            Some(r) => Ok(self
                .catalog()
                .publish_to(dir, r, &self.team.operator.identity)?),
            None => Ok(self.catalog().publish(dir)?),
        }
    }

    /// Before staging `name`: with a remote, the remote's module versions join the
    /// catalog.
    pub(crate) fn team_before_stage(&self, name: &str) -> Result<(), InstanceError> {
        if name != LOCAL_TARGET && self.remote().is_some() {
            self.sync_catalog()?;
        }
        Ok(())
    }

    /// After staging `name`: with a remote, the new instance is pushed (create only).
    /// When the remote refuses (a service of that name is there) or cannot be reached,
    /// the local instance is removed again and the stage refused.
    pub(crate) fn team_after_stage(&self, name: &str) -> Result<(), InstanceError> {
        let Some(remote) = self.remote() else {
            return Ok(());
        };
        if name == LOCAL_TARGET {
            return Ok(());
        }
        let dir = self.service_dir(name);
        let undo = |e: InstanceError| {
            let trash = self.scratch_dir(&format!("unstage-{name}"));
            if fs::rename(&dir, &trash).is_ok() {
                let _ = fs::remove_dir_all(&trash);
            }
            e
        };
        let repo = InstanceRepo::open(&dir)?;
        let head = repo.head()?;
        let refs = ServiceRefs::new(name);
        let outcome = remote
            .push(
                &dir,
                &[RefUpdate {
                    remote_ref: refs.desired.clone(),
                    new: Some(head),
                    expect: Expect::Absent,
                }],
            )
            .map_err(|e| undo(e.into()))?;
        // Two machines staging the same module under the same name in the same second
        // make the same commit: git then reports the reference `up to date` instead of
        // checking that it was absent. It was not: the name is taken.
        if !outcome.is_ok() || outcome.unchanged.contains(&refs.desired) {
            return Err(undo(InstanceError::RemoteServiceExists {
                name: name.to_owned(),
                remote: remote.display(),
            }));
        }
        // What the remote holds now: the first converge's lock push expects it.
        repo.set_reference(
            &format!("{TRACKING}desired"),
            None,
            Some(head),
            "what the remote holds",
        )?;
        Ok(())
    }

    /// Makes service `name` from the remote on this machine: its instance repository
    /// (desired state and history), its actual state and converge records, and the
    /// target instances it needs that this machine lacks.
    pub fn clone_service(&self, name: &str) -> Result<Cloned, InstanceError> {
        dtk_model::ident::check_name("service name", name)?;
        let remote = self.need_remote("`dtk service clone`")?.clone();
        let dir = self.service_dir(name);
        if dir.exists() {
            return Err(InstanceError::ServiceExists {
                name: name.to_owned(),
                path: dir,
            });
        }
        self.sync_catalog()?;
        let scratch = self.scratch_dir(&format!("clone-{name}"));
        let made = self.clone_into(&remote, name, &scratch);
        let commit = match made {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&scratch, &dir) {
            let _ = fs::remove_dir_all(&scratch);
            if dir.exists() {
                return Err(InstanceError::ServiceExists {
                    name: name.to_owned(),
                    path: dir,
                });
            }
            return Err(io_err(&dir, "create")(e));
        }
        let svc = self.service(name)?;
        let doc = svc.committed_doc()?;
        let mut targets_cloned = Vec::new();
        let mut next = doc.target.clone();
        while let Some(t) = next.take() {
            if t == LOCAL_TARGET {
                self.ensure_local_target()?;
                break;
            }
            if self.service_dir(&t).join(".git").is_dir() {
                break;
            }
            self.clone_service(&t)?;
            targets_cloned.push(t.clone());
            next = self
                .service(&t)?
                .committed_doc()?
                .target
                .filter(|n| n != &t);
        }
        Ok(Cloned {
            name: name.to_owned(),
            dir: svc.dir().to_owned(),
            commit: commit.to_string(),
            target: doc.target,
            targets_cloned,
            components: svc.actual_state()?.components.len(),
        })
    }

    fn clone_into(
        &self,
        remote: &GitRemote,
        name: &str,
        scratch: &Path,
    ) -> Result<ObjectId, InstanceError> {
        InstanceRepo::init(scratch, &[self.catalog().objects_dir()])?;
        remote.fetch(scratch, &[tracking_refspec(name)])?;
        let repo = InstanceRepo::open(scratch)?;
        let Some(desired) = repo.reference(&format!("{TRACKING}desired"))? else {
            let there = remote
                .ls_remote(scratch, &["refs/dtk/services/*"])?
                .keys()
                .filter_map(|r| r.strip_prefix("refs/dtk/services/"))
                .filter_map(|r| r.strip_suffix("/desired"))
                .map(str::to_owned)
                .collect::<Vec<_>>();
            return Err(InstanceError::NoSuchRemoteService {
                remote: remote.display(),
                name: name.to_owned(),
                there,
            });
        };
        repo.checkout_first(desired)?;
        let svc = Service::open(self.clone(), name, scratch)?;
        if let Some(state) = repo.reference(&format!("{TRACKING}state"))? {
            repo.set_reference(STATE_REF, None, Some(state), "clone")?;
            svc.adopt_state(state)?;
        }
        if let Some(records) = repo.reference(&format!("{TRACKING}converges"))? {
            repo.set_reference(RECORDS_REF, None, Some(records), "clone")?;
            svc.refresh_record_caches()?;
        }
        Ok(desired)
    }
}

fn tracking_refspec(name: &str) -> String {
    format!("+refs/dtk/services/{name}/*:{TRACKING}*")
}

/// The fields of a converge record (`record.json`, a run report) that the caches need.
#[derive(Debug, Deserialize)]
struct RecordHead {
    kind: String,
    run: String,
    status: String,
    commit: Option<String>,
    started_at: u64,
    duration_ms: u64,
}

/// What a fetch saw of a service on the remote.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fetched {
    desired: Option<ObjectId>,
    state: Option<ObjectId>,
    converges: Option<ObjectId>,
    lock: Option<(ObjectId, LockInfo)>,
}

/// A run's hold on the remote: from [`Service::team_begin`] to [`TeamRun::finish`].
pub(crate) struct TeamRun {
    remote: GitRemote,
    dir: PathBuf,
    refs: ServiceRefs,
    operation: String,
    lease: Duration,
    operator: Operator,
    home_id: String,
    fetched: Fetched,
    /// Whether `fetched` comes from a fetch of this run (else: from the tracking
    /// references, what the last fetch or push of this machine saw).
    fresh: bool,
    held: Option<Arc<Mutex<Held>>>,
    keeper: Option<Keeper>,
}

impl std::fmt::Debug for TeamRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamRun")
            .field("remote", &self.remote)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

impl Service {
    fn tracking(&self, what: &str) -> Result<Option<ObjectId>, InstanceError> {
        self.repo().reference(&format!("{TRACKING}{what}"))
    }

    /// Fetches the service's references from the remote into `refs/dtk/remote/*`.
    fn fetch_service(&self, remote: &GitRemote) -> Result<Fetched, InstanceError> {
        remote.fetch(self.dir(), &[tracking_refspec(self.name())])?;
        let lock = match self.tracking("lock")? {
            Some(id) => Some((id, read_lock(self.repo(), id)?)),
            None => None,
        };
        Ok(Fetched {
            desired: self.tracking("desired")?,
            state: self.tracking("state")?,
            converges: self.tracking("converges")?,
            lock,
        })
    }

    /// What the last fetch or push of this machine saw of the service on the remote (no
    /// network; no lock: a run expects none, and learns otherwise from its lock push).
    fn tracked(&self) -> Result<Fetched, InstanceError> {
        Ok(Fetched {
            desired: self.tracking("desired")?,
            state: self.tracking("state")?,
            converges: self.tracking("converges")?,
            lock: None,
        })
    }

    /// Records that the remote holds `value` at the service's reference `what` (after a
    /// push it accepted), so the next run's lock push expects it.
    pub(crate) fn set_tracking(
        &self,
        what: &str,
        value: Option<ObjectId>,
    ) -> Result<(), InstanceError> {
        let name = format!("{TRACKING}{what}");
        if self.repo().reference(&name)? == value {
            return Ok(());
        }
        self.repo()
            .set_reference(&name, None, value, "what the remote holds")
    }

    /// Moves HEAD back from `commit` (the edits a converge committed) to `before`, the
    /// edits back to uncommitted: the converge could not take the lock.
    pub(crate) fn uncommit(&self, commit: ObjectId, before: ObjectId) -> Result<(), InstanceError> {
        let repo = self.repo();
        let tree = repo.commit_tree(commit)?;
        repo.move_head(
            commit,
            before,
            tree,
            "converge: lock not taken, edits uncommitted",
        )
    }

    /// Records what a push the remote accepted made of the service's references. A
    /// failure is only logged: the next run's lock push then finds the remote moved, and
    /// fetches.
    pub(crate) fn track_pushed(&self, updates: &[RefUpdate]) {
        for u in updates {
            if let Some(what) = u.remote_ref.rsplit('/').next()
                && let Err(e) = self.set_tracking(what, u.new)
            {
                tracing::debug!(service = %self.name(), error = %e, "could not record what the remote holds");
            }
        }
    }

    /// With a remote, the first step of a run (`operation`: converge, delete, exec,
    /// refresh, import), without the network: start from what this machine last saw of the remote (the
    /// tracking references), pull that (converge only) and bring the records up to date.
    /// [`TeamRun::take`] then checks, in its one atomic push, that the remote still holds
    /// it; when it does not, [`TeamRun::refresh`] fetches, refuses when another live run
    /// holds the lock, and pulls. `None` without a remote. The caller holds the local lock.
    pub(crate) fn team_begin(
        &self,
        operation: &str,
        lease: Duration,
    ) -> Result<Option<TeamRun>, InstanceError> {
        let Some(remote) = self.home().remote().cloned() else {
            return Ok(None);
        };
        let run = TeamRun {
            dir: self.dir().to_owned(),
            refs: ServiceRefs::new(self.name()),
            operation: operation.to_owned(),
            lease: lease.max(Duration::from_millis(500)),
            operator: self.home().operator().clone(),
            home_id: self.home().home_id()?,
            fetched: self.tracked()?,
            fresh: false,
            remote,
            held: None,
            keeper: None,
        };
        run.prepare(self)?;
        Ok(Some(run))
    }

    /// Brings the local converge records up to date with the remote's `remote` tip.
    fn sync_records(&self, remote: Option<ObjectId>) -> Result<(), InstanceError> {
        let Some(remote) = remote else {
            return Ok(());
        };
        let repo = self.repo();
        let local = repo.reference(RECORDS_REF)?;
        let new = match local {
            None => remote,
            Some(l) if repo.is_ancestor(remote, l)? => return Ok(()),
            Some(l) if repo.is_ancestor(l, remote)? => remote,
            Some(l) => {
                // Both moved (a run whose push failed, and others since): keep both
                // histories, the remote's record on top.
                let tree = repo.commit_tree(remote)?;
                repo.write_commit(
                    tree,
                    &[remote, l],
                    "merge converge records of this machine and the remote",
                    &Signature::default(),
                )?
            }
        };
        repo.set_reference(
            RECORDS_REF,
            Some(local),
            Some(new),
            "records from the remote",
        )?;
        self.refresh_record_caches()
    }

    /// Rewrites `.dtk/last-run.json` and `.dtk/last-converge.json` from the converge
    /// records (after they came from the remote).
    pub(crate) fn refresh_record_caches(&self) -> Result<(), InstanceError> {
        let repo = self.repo();
        let Some(tip) = repo.reference(RECORDS_REF)? else {
            return Ok(());
        };
        let read = |c: ObjectId| -> Result<Option<RecordHead>, InstanceError> {
            let tree = repo.commit_tree(c)?;
            Ok(repo
                .tree_file(tree, "record.json")?
                .and_then(|d| serde_json::from_slice(&d).ok()))
        };
        if let Some(data) = repo.tree_file(repo.commit_tree(tip)?, "record.json")? {
            write_file_replace(&self.private_dir().join("last-run.json"), &data)?;
        }
        let mut last: Option<RecordHead> = None;
        let mut ever = false;
        let mut next = Some(tip);
        let mut seen = 0;
        while let Some(c) = next {
            seen += 1;
            if seen > 10_000 {
                break;
            }
            if let Some(r) = read(c)?
                && r.kind == "converge"
            {
                ever |= r.status == "succeeded";
                if last.is_none() {
                    last = Some(r);
                }
                if ever {
                    break;
                }
            }
            next = repo.first_parent(c)?;
        }
        if let Some(r) = last {
            self.save_last_converge(&ConvergeRecord {
                status: r.status,
                commit: r.commit.unwrap_or_default(),
                started_at: r.started_at,
                duration_ms: r.duration_ms,
                run: r.run,
                ever_succeeded: ever,
            })?;
        }
        Ok(())
    }

    /// `dtk service pull`: brings the remote's desired-state commits, merged with this
    /// machine's commits and uncommitted edits. Conflicting files get conflict markers;
    /// nothing is lost.
    pub fn pull(&self) -> Result<Pulled, InstanceError> {
        let remote = self.home().need_remote("`dtk service pull`")?.clone();
        let _lock = self.lock("pull")?;
        let fetched = self.fetch_service(&remote)?;
        if fetched.desired.is_none() {
            return Err(InstanceError::NotOnRemote {
                remote: remote.display(),
                service: self.name().to_owned(),
            });
        }
        let pulled = self.pull_fetched(fetched.desired)?;
        self.sync_records(fetched.converges)?;
        // Actual state follows the remote's when nobody runs and this machine has nothing
        // the remote lacks.
        if fetched.lock.is_none()
            && let Some(state) = fetched.state
        {
            let local = self.repo().reference(STATE_REF)?;
            let behind = match local {
                None => true,
                Some(l) => l != state && self.repo().is_ancestor(l, state)?,
            };
            if behind && self.local_journals()?.is_empty() {
                self.repo()
                    .set_reference(STATE_REF, Some(local), Some(state), "pull")?;
                self.adopt_state(state)?;
            }
        }
        Ok(pulled)
    }

    /// Merges the remote desired-state commit `remote` into HEAD and the work tree.
    fn pull_fetched(&self, remote: Option<ObjectId>) -> Result<Pulled, InstanceError> {
        let repo = self.repo();
        let head = repo.head()?;
        let done = |outcome: &str,
                    to: ObjectId,
                    conflicts: Vec<String>|
         -> Result<Pulled, InstanceError> {
            Ok(Pulled {
                service: self.name().to_owned(),
                from: head.to_string(),
                to: to.to_string(),
                outcome: outcome.to_owned(),
                conflicts,
                uncommitted: self.diff()?.into_iter().map(|c| c.path).collect(),
            })
        };
        let Some(remote) = remote else {
            return done("up_to_date", head, Vec::new());
        };
        if repo.is_ancestor(remote, head)? {
            return done("up_to_date", head, Vec::new());
        }
        let worktree = repo.worktree_tree()?;
        let head_tree = repo.commit_tree(head)?;
        let remote_tree = repo.commit_tree(remote)?;
        let (new_head, base_tree, mut outcome) = if repo.is_ancestor(head, remote)? {
            (remote, head_tree, "fast_forward")
        } else {
            let base = repo.merge_base(head, remote)?;
            let base_tree = match base {
                Some(b) => repo.commit_tree(b)?,
                None => ObjectId::empty_tree(gix::hash::Kind::Sha1),
            };
            let merged =
                repo.merge_marked(base_tree, head_tree, remote_tree, "this machine", "remote")?;
            if merged.conflicts.is_empty() {
                let commit = repo.write_commit(
                    merged.tree,
                    &[head, remote],
                    "merge desired state from the remote",
                    &self.home().operator().signature(),
                )?;
                (commit, head_tree, "merged")
            } else {
                // Keep this machine's commits reachable, and carry their changes as
                // uncommitted edits on top of the remote's history.
                repo.set_reference(
                    &format!("refs/dtk/pulled-over/{head}"),
                    None,
                    Some(head),
                    "pull: local commits carried as edits",
                )?;
                (remote, base_tree, "conflicts")
            }
        };
        let new_tree = repo.commit_tree(new_head)?;
        let content = if worktree == base_tree {
            crate::repo::MergedTree {
                tree: new_tree,
                conflicts: Vec::new(),
            }
        } else {
            repo.merge_marked(base_tree, worktree, new_tree, "this machine", "remote")?
        };
        repo.move_head(head, new_head, content.tree, "pull from the remote")?;
        if !content.conflicts.is_empty() {
            outcome = "conflicts";
        }
        let pulled = done(outcome, new_head, content.conflicts)?;
        Ok(pulled)
    }

    /// `dtk service push`: pushes this machine's desired-state commits. Refused when the
    /// remote has commits this machine lacks (pull first). A service the remote does not
    /// have yet is created there with its actual state and records.
    pub fn push(&self) -> Result<Pushed, InstanceError> {
        let remote = self.home().need_remote("`dtk service push`")?.clone();
        let _lock = self.lock("push")?;
        let fetched = self.fetch_service(&remote)?;
        let repo = self.repo();
        let head = repo.head()?;
        let uncommitted = self.diff()?.len();
        let refs = ServiceRefs::new(self.name());
        let created = fetched.desired.is_none();
        let mut pushed = Pushed {
            service: self.name().to_owned(),
            remote: remote.display(),
            commit: head.to_string(),
            pushed: false,
            created,
            uncommitted,
        };
        if let Some(r) = fetched.desired {
            if r == head {
                return Ok(pushed);
            }
            if !repo.is_ancestor(r, head)? {
                return Err(self.behind(&remote, r));
            }
        }
        let mut updates = vec![RefUpdate {
            remote_ref: refs.desired.clone(),
            new: Some(head),
            expect: Expect::from_option(fetched.desired),
        }];
        if created {
            // Its history of runs goes with it: another machine must know what is made.
            if fetched.state.is_none() {
                if self.repo().reference(STATE_REF)?.is_none() {
                    let state = self.actual_state()?;
                    self.save_actual_state(&state)?;
                }
                let journals = self.local_journals()?;
                let data = fs::read(self.actual_path()).unwrap_or_default();
                if !journals.is_empty() {
                    self.commit_state(&data, None, &journals, "state with unfolded journals")?;
                }
                if let Some(s) = self.repo().reference(STATE_REF)? {
                    updates.push(RefUpdate {
                        remote_ref: refs.state.clone(),
                        new: Some(s),
                        expect: Expect::Absent,
                    });
                }
            }
            if fetched.converges.is_none()
                && let Some(c) = self.repo().reference(RECORDS_REF)?
            {
                updates.push(RefUpdate {
                    remote_ref: refs.converges.clone(),
                    new: Some(c),
                    expect: Expect::Absent,
                });
            }
        }
        let outcome = remote.push(self.dir(), &updates)?;
        if !outcome.is_ok() {
            let again = self.fetch_service(&remote)?;
            return Err(match again.desired {
                Some(r) if !self.repo().is_ancestor(r, head)? => self.behind(&remote, r),
                _ => InstanceError::PushRefused {
                    remote: remote.display(),
                    service: self.name().to_owned(),
                    rejected: outcome
                        .rejected
                        .iter()
                        .map(|(r, why)| format!("{r}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                },
            });
        }
        self.track_pushed(&updates);
        pushed.pushed = true;
        Ok(pushed)
    }

    fn behind(&self, remote: &GitRemote, theirs: ObjectId) -> InstanceError {
        let by = self
            .repo()
            .commit_author(theirs)
            .unwrap_or_else(|_| "someone".to_owned());
        InstanceError::RemoteAhead {
            remote: remote.display(),
            service: self.name().to_owned(),
            commit: theirs.to_hex_with_len(10).to_string(),
            author: by,
        }
    }

    /// The lock the remote holds for this service, if any (fetched now).
    pub fn remote_lock(&self) -> Result<Option<LockInfo>, InstanceError> {
        let remote = self.home().need_remote("reading the lock")?.clone();
        Ok(self.fetch_service(&remote)?.lock.map(|(_, i)| i))
    }

    /// `dtk service unlock`: removes the lock from the remote, whoever holds it, if it is
    /// still `expected` (what [`remote_lock`](Self::remote_lock) returned and the user
    /// confirmed). Returns the lock removed; `None` when there was none.
    pub fn unlock(&self, expected: Option<&LockInfo>) -> Result<Option<LockInfo>, InstanceError> {
        let remote = self.home().need_remote("`dtk service unlock`")?.clone();
        let fetched = self.fetch_service(&remote)?;
        let Some((id, info)) = fetched.lock else {
            return Ok(None);
        };
        if let Some(e) = expected
            && e.nonce != info.nonce
        {
            return Err(InstanceError::LockChangedHands {
                service: self.name().to_owned(),
                holder: info.describe(now_ms()),
            });
        }
        let refs = ServiceRefs::new(self.name());
        let outcome = remote.push(
            self.dir(),
            &[RefUpdate {
                remote_ref: refs.lock,
                new: None,
                expect: Expect::Is(id),
            }],
        )?;
        if !outcome.is_ok() {
            return Err(InstanceError::LockMoved {
                service: self.name().to_owned(),
            });
        }
        Ok(Some(info))
    }

    fn behind_secrets(
        &self,
        recorded: &BTreeMap<String, Vec<String>>,
        model: &ServiceModel,
    ) -> Result<Vec<String>, InstanceError> {
        let store = self.secrets()?;
        let mut missing = Vec::new();
        for (component, names) in recorded {
            let present = model.components.iter().any(|c| {
                c.id.as_str() == component
                    || c.id.as_str().replacen(':', "/", 1).starts_with(component)
            });
            if !present {
                continue;
            }
            let id = ComponentId(component.clone());
            for n in names {
                if store.effective(&id, n).is_none() {
                    missing.push(format!("{component}/{n}"));
                }
            }
        }
        Ok(missing)
    }
}

/// Refuses when `info` is a lock another live run holds.
fn check_lock(
    service: &str,
    info: &LockInfo,
    me: &Operator,
    home_id: &str,
) -> Result<(), InstanceError> {
    let now = now_ms();
    if info.is_expired(now) {
        return Ok(());
    }
    // A run of this very home on this host that died (killed, or the machine lost the
    // remote before it could release): no need to wait for its lease.
    if info.home == home_id && info.host == me.host && !pid_alive(info.pid) {
        return Ok(());
    }
    Err(InstanceError::Locked {
        service: service.to_owned(),
        holder: format!(
            "{} on the remote (`dtk service unlock {service}` clears it, once you are sure it \
             is not running)",
            info.describe(now)
        ),
    })
}

impl TeamRun {
    /// Pulls the desired state `fetched` names (converge only), and brings the local
    /// converge records up to date with it.
    fn prepare(&self, service: &Service) -> Result<(), InstanceError> {
        if self.operation == "converge" {
            let pulled = service.pull_fetched(self.fetched.desired)?;
            if !pulled.conflicts.is_empty() {
                return Err(InstanceError::PullConflicts {
                    service: service.name().to_owned(),
                    remote: self.remote.display(),
                    conflicts: pulled.conflicts,
                });
            }
        }
        service.sync_records(self.fetched.converges)
    }

    /// After a lock push that found the remote moved since this machine last saw it:
    /// fetch the service's references, refuse when another live run holds the lock
    /// (naming it), pull (converge only) and bring the records up to date.
    pub(crate) fn refresh(&mut self, service: &Service) -> Result<(), InstanceError> {
        let fetched = service.fetch_service(&self.remote)?;
        if let Some((_, info)) = &fetched.lock {
            check_lock(service.name(), info, &self.operator, &self.home_id)?;
        }
        self.fetched = fetched;
        self.fresh = true;
        self.prepare(service)
    }

    /// Whether this run fetched (else it trusts what this machine last saw).
    pub(crate) fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// [`take`](Self::take), and when the remote moved since this machine last saw it,
    /// [`refresh`](Self::refresh) and take again.
    pub(crate) fn take_fresh(
        &mut self,
        service: &Service,
        push_desired: bool,
    ) -> Result<(), InstanceError> {
        if !self.take(service, push_desired)? {
            self.refresh(service)?;
            self.take(service, push_desired)?;
        }
        Ok(())
    }

    /// Refuses when the last run that wrote the remote's state had secrets set that this
    /// machine lacks: converging without them would apply the components without them.
    pub(crate) fn check_secrets(
        &self,
        service: &Service,
        model: &ServiceModel,
    ) -> Result<(), InstanceError> {
        let Some(state) = self.fetched.state else {
            return Ok(());
        };
        let repo = service.repo();
        let Some(data) = repo.tree_file(repo.commit_tree(state)?, SECRETS_FILE)? else {
            return Ok(());
        };
        let recorded: BTreeMap<String, Vec<String>> =
            serde_json::from_slice(&data).unwrap_or_default();
        let missing = service.behind_secrets(&recorded, model)?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(InstanceError::SecretsMissing {
            service: service.name().to_owned(),
            missing,
        })
    }

    /// Takes the lock on the remote (see the module documentation), with the
    /// desired-state commit when `push_desired`, and makes `.dtk/` hold the remote's
    /// actual state.
    ///
    /// Before a [`refresh`](Self::refresh), the push also checks that the remote holds
    /// what this machine last saw (no lock; the state, records and, for a converge, the
    /// desired state unchanged): `Ok(false)` when it does not, and nothing changed, here
    /// or there. After one, a refused push is an error naming the holder or what moved.
    pub(crate) fn take(
        &mut self,
        service: &Service,
        push_desired: bool,
    ) -> Result<bool, InstanceError> {
        let repo = service.repo();
        // The state this run starts from: the remote's, unless this machine's is ahead
        // of it (a run whose final push failed); never something older.
        let local = repo.reference(STATE_REF)?;
        let remote_state = self.fetched.state;
        if let Some(r) = remote_state {
            let keep_local = match local {
                Some(l) => repo.is_ancestor(r, l)?,
                None => false,
            };
            if !keep_local {
                if let Some(l) = local
                    && !repo.is_ancestor(l, r)?
                {
                    repo.set_reference(
                        &format!("refs/dtk/superseded/{}", now_ms()),
                        None,
                        Some(l),
                        "state superseded by the remote's",
                    )?;
                    tracing::warn!(service = %service.name(), "this machine's actual state diverged from the remote's; the remote's wins (kept under refs/dtk/superseded/)");
                }
                repo.set_reference(STATE_REF, Some(local), Some(r), "state from the remote")?;
                service.adopt_state(r)?;
            }
        }
        let now = now_ms();
        let info = LockInfo {
            service: service.name().to_owned(),
            operation: self.operation.clone(),
            holder: self.operator.identity.to_string(),
            user: self.operator.user.clone(),
            host: self.operator.host.clone(),
            pid: std::process::id(),
            home: self.home_id.clone(),
            nonce: format!("{now}-{}-{}", std::process::id(), nonce()),
            started_at_ms: now,
            renewed_at_ms: now,
            expires_at_ms: now + u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
        };
        let author = self.operator.signature();
        let lock = write_lock(repo, &info, &author)?;
        // The "run started" state commit: this machine's state and journals as they are.
        // The first run (or a lost file, restored): the run reads the file, written once
        // the lock is taken.
        let (actual, write_actual) = match fs::read(service.actual_path()) {
            Ok(d) => (d, false),
            Err(_) => (
                serde_json::to_vec_pretty(&service.actual_state()?).unwrap_or_default(),
                true,
            ),
        };
        let journals = service.local_journals()?;
        let tip = repo.reference(STATE_REF)?;
        let start_tree = repo.edit_tree(None, &{
            let mut e = vec![
                crate::repo::TreeEdit::File(ACTUAL_FILE.to_owned(), actual.clone()),
                crate::repo::TreeEdit::File(SECRETS_FILE.to_owned(), service.secret_names()?),
            ];
            e.extend(journals.into_iter().map(|(n, d)| {
                crate::repo::TreeEdit::File(format!("{}/{n}", crate::history::JOURNAL_DIR), d)
            }));
            e
        })?;
        let start = repo.write_commit(
            start_tree,
            &tip.into_iter().collect::<Vec<_>>(),
            &format!(
                "{} started by {} (pid {} on {})",
                self.operation, info.holder, info.pid, info.host
            ),
            &author,
        )?;
        let mut updates = vec![
            RefUpdate {
                remote_ref: self.refs.lock.clone(),
                new: Some(lock),
                // Before a fetch, no lock is expected; after one, the expired lock it saw.
                expect: Expect::from_option(self.fetched.lock.as_ref().map(|(id, _)| *id)),
            },
            RefUpdate {
                remote_ref: self.refs.state.clone(),
                new: Some(start),
                expect: Expect::from_option(remote_state),
            },
        ];
        let head = repo.head()?;
        if push_desired && self.fetched.desired != Some(head) {
            updates.push(RefUpdate {
                remote_ref: self.refs.desired.clone(),
                new: Some(head),
                expect: Expect::from_option(self.fetched.desired),
            });
        }
        if !self.fresh {
            // Checks without a change: a reference "updated" to the value it must have is
            // left alone when it has it, and fails the whole atomic push when it has not
            // (the lease check), so no fetch is needed before the push.
            let mut check = |remote_ref: &String, value: Option<ObjectId>| {
                if let Some(v) = value
                    && !updates.iter().any(|u| &u.remote_ref == remote_ref)
                {
                    updates.push(RefUpdate {
                        remote_ref: remote_ref.clone(),
                        new: Some(v),
                        expect: Expect::Is(v),
                    });
                }
            };
            if push_desired {
                check(&self.refs.desired, self.fetched.desired);
            }
            check(&self.refs.converges, self.fetched.converges);
        }
        let outcome = self.remote.push(&self.dir, &updates)?;
        if !outcome.is_ok() && !self.fresh {
            tracing::debug!(service = %service.name(), rejected = ?outcome.rejected, "the remote moved since the last fetch");
            return Ok(false);
        }
        if !outcome.is_ok() {
            // Someone moved first: say who holds the lock now, else what moved.
            let again = service.fetch_service(&self.remote)?;
            if let Some((_, other)) = &again.lock {
                check_lock(service.name(), other, &self.operator, &self.home_id)?;
            }
            let what = if again.desired != self.fetched.desired {
                "someone pushed desired-state commits"
            } else if again.state != self.fetched.state {
                "another run changed the actual state"
            } else {
                "another run took and released the lock"
            };
            return Err(InstanceError::LockRace {
                service: service.name().to_owned(),
                remote: self.remote.display(),
                what,
            });
        }
        tracing::debug!(service = %service.name(), %lock, %start, "lock taken");
        if write_actual {
            write_file_atomic(&service.actual_path(), &actual, false)?;
        }
        repo.set_reference(STATE_REF, Some(tip), Some(start), "run started")?;
        service.track_pushed(&updates);
        let pushed_journal_bytes = fs::read_dir(service.private_dir().join("journal"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.held = Some(Arc::new(Mutex::new(Held {
            lock,
            info,
            state: Some(start),
            fenced: None,
            lost: None,
            last_push: Instant::now(),
            pushed_journal_bytes,
        })));
        Ok(true)
    }

    /// Starts renewing the lease and pushing checkpoints of the journals in
    /// `journal_dir`; a refused push cancels `ctx` (the run stops scheduling tasks), and
    /// its commands transport refuses to start an action once the lease is lost.
    pub(crate) fn start_keeper(
        &mut self,
        service: &Service,
        journal_dir: &Path,
        ctx: &mut dtk_workflow::ExecContext,
    ) -> Result<(), InstanceError> {
        self.start_lease_keeper(service, journal_dir, &ctx.cancel)?;
        let Some(held) = &self.held else {
            return Ok(());
        };
        if let Some(inner) = ctx.transport.take() {
            ctx.transport = Some(Arc::new(crate::lease::LeaseGuard {
                inner,
                held: held.clone(),
            }));
        }
        Ok(())
    }

    /// Starts renewing the lease (and pushing checkpoints of the journals in
    /// `journal_dir`, if any are written) for a run that runs no actions of the workflow
    /// (`refresh`, `import`); a refused push cancels `cancel`.
    pub(crate) fn start_lease_keeper(
        &mut self,
        service: &Service,
        journal_dir: &Path,
        cancel: &Cancel,
    ) -> Result<(), InstanceError> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let base_actual = fs::read(service.actual_path()).unwrap_or_default();
        self.keeper = Some(Keeper::start(KeeperSetup {
            remote: self.remote.clone(),
            dir: self.dir.clone(),
            refs: self.refs.clone(),
            held: held.clone(),
            cancel: cancel.clone(),
            journal_dir: journal_dir.to_owned(),
            base_actual,
            secret_names: service.secret_names()?,
            author: self.operator.signature(),
        }));
        Ok(())
    }

    /// Whether the lease was lost while the run went (another machine took the lock
    /// over, or the remote was unreachable for longer than the lease): why, if so.
    pub(crate) fn lease_problem(&self) -> Option<String> {
        self.held
            .as_ref()
            .and_then(|h| crate::lease::lease_problem(h))
    }

    /// Stops renewing the lease and pushing checkpoints: the run has ended, and its final
    /// state is about to be written.
    pub(crate) fn stop_keeper(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.stop();
        }
    }

    /// [`stop_keeper`](Self::stop_keeper), then refuses to go on when the lease was lost
    /// while `operation` (`refresh`, `import`) of `service` read the world: another holder
    /// may have written since, and this run's state must not land over it.
    pub(crate) fn stop_keeper_holding(
        &mut self,
        service: &str,
        operation: &'static str,
    ) -> Result<(), InstanceError> {
        self.stop_keeper();
        match self.lease_problem() {
            Some(why) => Err(InstanceError::LeaseLost {
                service: service.to_owned(),
                operation,
                why,
            }),
            None => Ok(()),
        }
    }

    /// Ends the run on the remote: one atomic push of the final actual state, the
    /// records and the lock's release, conditional on the lock.
    pub(crate) fn finish(mut self, service: &Service) -> RemoteReport {
        let url = self.remote.display();
        let report = |pushed: bool, message: Option<String>| RemoteReport {
            url: url.clone(),
            pushed,
            message,
        };
        if let Some(k) = self.keeper.take() {
            k.stop();
        }
        let Some(held) = self.held.take() else {
            return report(false, Some("the lock was never taken".to_owned()));
        };
        let held = match held.lock() {
            Ok(h) => h.clone(),
            Err(_) => return report(false, Some("internal: the lease keeper failed".to_owned())),
        };
        if let Some(why) = &held.fenced {
            return report(
                false,
                Some(format!(
                    "{why}; this run stopped, and its results were not pushed (the remote's \
                     state wins; this machine keeps its own under refs/dtk/superseded/ at the \
                     next run)"
                )),
            );
        }
        let result = (|| -> Result<Option<String>, InstanceError> {
            let repo = service.repo();
            let mut updates = Vec::new();
            if let Some(state) = repo.reference(STATE_REF)?
                && Some(state) != held.state
            {
                updates.push(RefUpdate {
                    remote_ref: self.refs.state.clone(),
                    new: Some(state),
                    expect: Expect::from_option(held.state),
                });
            }
            if let Some(records) = repo.reference(RECORDS_REF)?
                && Some(records) != self.fetched.converges
            {
                updates.push(RefUpdate {
                    remote_ref: self.refs.converges.clone(),
                    new: Some(records),
                    expect: Expect::from_option(self.fetched.converges),
                });
            }
            updates.push(RefUpdate {
                remote_ref: self.refs.lock.clone(),
                new: None,
                expect: Expect::Is(held.lock),
            });
            let outcome = self.remote.push(&self.dir, &updates)?;
            tracing::debug!(?updates, ?outcome, "final push");
            if outcome.is_ok() {
                service.track_pushed(&updates);
                return Ok(None);
            }
            let again = service.fetch_service(&self.remote)?;
            Ok(Some(match again.lock {
                Some((id, other)) if id != held.lock => format!(
                    "the lock was taken over by {} after this run's lease ended; this run's \
                     results were not pushed (the remote's state wins)",
                    other.describe(now_ms())
                ),
                None if again.state != held.state => "another machine took the lock over \
                     after this run's lease ended, and has released it since; this run's \
                     results were not pushed (the remote's state wins)"
                    .to_owned(),
                _ => format!(
                    "the remote refused the final push ({}); this run's results are kept \
                     on this machine and pushed by its next run",
                    outcome
                        .rejected
                        .iter()
                        .map(|(r, why)| format!("{r}: {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }))
        })();
        match result {
            Ok(None) => report(
                true,
                held.lost
                    .map(|l| format!("the remote was unreachable for a while ({l})")),
            ),
            Ok(Some(why)) => report(false, Some(why)),
            Err(e) => report(
                false,
                Some(format!(
                    "{}; this run's results are kept on this machine and pushed by its next run",
                    error_chain(&e)
                )),
            ),
        }
    }
}

impl Drop for TeamRun {
    /// A run that ends before [`TeamRun::finish`] (an error) releases the lock it holds.
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.stop();
        }
        let Some(held) = self.held.take() else {
            return;
        };
        let Ok(held) = held.lock().map(|h| h.clone()) else {
            return;
        };
        if held.fenced.is_some() {
            return;
        }
        let _ = self.remote.push(
            &self.dir,
            &[RefUpdate {
                remote_ref: self.refs.lock.clone(),
                new: None,
                expect: Expect::Is(held.lock),
            }],
        );
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn nonce() -> String {
    use std::io::Read as _;
    let mut b = [0u8; 8];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = now_ms().to_le_bytes();
        b.copy_from_slice(&t);
    }
    hex::encode(b)
}
