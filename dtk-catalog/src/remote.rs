//! A git remote shared by a team, reached with the system `git` command line, and the
//! catalog's side of it: fetching the remote's module versions, and publishing a version
//! to the remote atomically.
//!
//! gix has no push (gitoxide issue #306), so every network operation runs the system
//! `git`: ssh keys, credential helpers, proxies and `insteadOf` rules then work as users
//! expect. Local reads stay on gix.
//!
//! # The catalog on the remote
//!
//! ```text
//! refs/dtk/catalog/modules/NS/NAME          a module's branch (as refs/heads/modules/NS/NAME)
//! refs/dtk/catalog/tags/NS/NAME/VERSION     a version's commit (as refs/tags/NS/NAME/VERSION)
//! ```
//!
//! [`Catalog::fetch_from`] copies them into the local catalog (through the private
//! namespace `refs/dtk/remote/catalog/`), so `list`, `get` and `resolve` see the remote's
//! versions. [`Catalog::publish_to`] publishes a version on the remote by one atomic push
//! that creates the version's tag only if it does not exist: when two machines publish
//! the same version at once, exactly one push wins, and the other is refused with the
//! winner's commit and author ([`RemoteVersionExists`]).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::error::{RemoteError, RemoteVersionExists};
use crate::files::scan;
use crate::publish::{
    PublishStatus, Published, branch_name, commit_message, ref_target, set_ref, tag_name,
    write_tree,
};
use crate::{Catalog, CatalogError, journal};
use dtk_model::{ModuleId, ModuleVersion};
use gix::ObjectId;

/// Where the catalog lives on a remote: module branches under `modules/`, version tags
/// under `tags/`.
pub const REMOTE_CATALOG_PREFIX: &str = "refs/dtk/catalog/";
/// Where [`Catalog::fetch_from`] keeps the remote's catalog references in the local
/// catalog before adopting them.
const TRACKING_PREFIX: &str = "refs/dtk/remote/catalog/";

/// How long one `git` network operation may take before it is stopped.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// How many times a publish retries when another publish moved the module's branch
/// between its fetch and its push.
const PUBLISH_ATTEMPTS: usize = 8;

/// Who does something on a remote: the author and committer of the commits dtk makes
/// for the team (catalog versions, locks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A name, e.g. `Alice Smith`.
    pub name: String,
    /// An e-mail address, e.g. `alice@example.com`.
    pub email: String,
}

impl Identity {
    /// The identity dtk signs with when it is told none.
    pub fn dtk() -> Identity {
        Identity {
            name: crate::AUTHOR_NAME.to_owned(),
            email: crate::AUTHOR_EMAIL.to_owned(),
        }
    }

    fn signature(&self) -> gix::actor::Signature {
        gix::actor::Signature {
            name: self.name.as_str().into(),
            email: self.email.as_str().into(),
            time: gix::date::Time::now_utc(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// The value a reference must have on the remote for a push to update it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// It must not exist (create only).
    Absent,
    /// It must point at this object.
    Is(ObjectId),
}

impl Expect {
    /// `Absent` for `None`, else `Is`.
    pub fn from_option(v: Option<ObjectId>) -> Expect {
        v.map_or(Expect::Absent, Expect::Is)
    }
}

/// One reference update of an atomic push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The reference on the remote (`refs/...`).
    pub remote_ref: String,
    /// Its new value; `None` deletes it.
    pub new: Option<ObjectId>,
    /// The value it must have now (compare-and-swap).
    pub expect: Expect,
}

/// What the remote did with an atomic push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOutcome {
    /// The references the remote refused, with git's reason. Empty when the push was
    /// applied. With an atomic push, a refusal of one reference refuses them all: the
    /// others are listed with the reason `atomic push failed`.
    pub rejected: Vec<(String, String)>,
    /// The references the remote held at the pushed value already (git reports them
    /// `up to date` without checking the lease): a "create only if absent" update of
    /// one of them found it present, with the same commit.
    pub unchanged: Vec<String>,
}

impl PushOutcome {
    /// Whether every update was applied.
    pub fn is_ok(&self) -> bool {
        self.rejected.is_empty()
    }

    /// Whether `reference` was refused for its own sake (not only because another
    /// reference of the atomic push was).
    pub fn refused(&self, reference: &str) -> bool {
        self.rejected
            .iter()
            .any(|(r, why)| r == reference && !why.contains("atomic push failed"))
    }
}

/// A git remote: a URL any `git` understands (`ssh://`, `git://`, `https://`, `file://`,
/// a path, `user@host:path`).
#[derive(Clone, PartialEq, Eq)]
pub struct GitRemote {
    url: String,
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote")
            .field("url", &self.display())
            .finish()
    }
}

impl std::fmt::Display for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// `url` with the password of its user information removed
/// (`https://user:token@host/x` → `https://user:***@host/x`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{}", &rest[end..])
        }
        None => url.to_owned(),
    }
}

impl GitRemote {
    /// A remote at `url`. Refuses what cannot be a URL: empty text, text starting with
    /// `-` (git would read it as an option), several lines.
    pub fn new(url: impl Into<String>) -> Result<GitRemote, RemoteError> {
        let url = url.into();
        let bad = |why| RemoteError::BadUrl {
            url: redact_url(&url),
            why,
        };
        if url.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        if url.starts_with('-') {
            return Err(bad("it starts with `-`"));
        }
        if url.contains(['\n', '\r', '\0']) {
            return Err(bad("it holds a line break or a NUL"));
        }
        Ok(GitRemote { url })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with any password removed: for messages and logs.
    pub fn display(&self) -> String {
        redact_url(&self.url)
    }

    fn git(&self, repo: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(repo)
            // dtk's repositories must never be garbage-collected by a fetch (instances
            // borrow the catalog's objects), and a fetch has no time for maintenance.
            .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// A `git` command that reads from the remote. Over `git://` and SSH it speaks
    /// protocol version 0: the server speaks first, so a fetch with nothing new is one
    /// exchange, where version 2 adds a request of the client that TCP's Nagle algorithm
    /// and delayed acknowledgements hold for 40 ms on Linux (measured: 9 ms against 50 ms
    /// on a loopback `git daemon`). Over HTTP(S), whose client sends at once, version 2
    /// stays (the server then lists only the references asked for).
    fn git_read(&self, repo: &Path) -> Command {
        let mut cmd = self.git(repo);
        let http = self.url.starts_with("http://") || self.url.starts_with("https://");
        if !http {
            cmd.args(["-c", "protocol.version=0"]);
        }
        cmd
    }

    /// The remote's references matching `patterns` (`git ls-remote` patterns, e.g.
    /// `refs/dtk/services/*`), by name.
    pub fn ls_remote(
        &self,
        repo: &Path,
        patterns: &[&str],
    ) -> Result<BTreeMap<String, ObjectId>, RemoteError> {
        let mut cmd = self.git_read(repo);
        cmd.args(["ls-remote", "--"]).arg(&self.url).args(patterns);
        let out = self.run(cmd, repo, "list references")?;
        if !out.success {
            return Err(self.unreachable("list references", &out.stderr));
        }
        let mut refs = BTreeMap::new();
        for line in out.stdout.lines() {
            let Some((id, name)) = line.split_once('\t') else {
                continue;
            };
            if let Ok(id) = ObjectId::from_hex(id.trim().as_bytes()) {
                refs.insert(name.trim().to_owned(), id);
            }
        }
        Ok(refs)
    }

    /// Fetches `refspecs` (forced, `+SRC:DST`, wildcards allowed) into the repository at
    /// `repo`, removing local references under each destination that the remote no
    /// longer has.
    pub fn fetch(&self, repo: &Path, refspecs: &[String]) -> Result<(), RemoteError> {
        let mut cmd = self.git_read(repo);
        cmd.args([
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
        ])
        .arg(&self.url)
        .args(refspecs);
        let out = self.run(cmd, repo, "fetch")?;
        if !out.success {
            return Err(self.unreachable("fetch", &out.stderr));
        }
        Ok(())
    }

    /// Pushes `updates` from the repository at `repo` as one atomic transaction: either
    /// every reference moves, or none does. Each update is a compare-and-swap (git's
    /// `--force-with-lease=REF:EXPECTED`, checked by the client against what the remote
    /// advertised and by the server under its reference locks), so a push never
    /// overwrites what someone else pushed.
    ///
    /// Returns the refused references; `Err` only when the remote could not be used.
    pub fn push(&self, repo: &Path, updates: &[RefUpdate]) -> Result<PushOutcome, RemoteError> {
        if updates.is_empty() {
            return Ok(PushOutcome::default());
        }
        let mut cmd = self.git(repo);
        cmd.args(["push", "--porcelain", "--atomic", "--no-verify"]);
        for u in updates {
            let expect = match u.expect {
                Expect::Absent => String::new(),
                Expect::Is(id) => id.to_string(),
            };
            cmd.arg(format!("--force-with-lease={}:{expect}", u.remote_ref));
        }
        cmd.arg("--").arg(&self.url);
        for u in updates {
            match u.new {
                Some(id) => cmd.arg(format!("{id}:{}", u.remote_ref)),
                None => cmd.arg(format!(":{}", u.remote_ref)),
            };
        }
        let out = self.run(cmd, repo, "push")?;
        let mut outcome = PushOutcome::default();
        let mut reported = 0;
        for line in out.stdout.lines() {
            let mut fields = line.split('\t');
            let (Some(flag), Some(refspec), Some(summary)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Some(reference) = refspec.rsplit_once(':').map(|(_, r)| r.to_owned()) else {
                continue;
            };
            reported += 1;
            match flag {
                "!" => outcome.rejected.push((reference, summary.to_owned())),
                "=" => outcome.unchanged.push(reference),
                _ => {}
            }
        }
        if reported == 0 && !out.success {
            return Err(self.unreachable("push", &out.stderr));
        }
        if !out.success && outcome.rejected.is_empty() {
            return Err(RemoteError::Git {
                remote: self.display(),
                op: "push",
                message: self.clean(&out.stderr),
            });
        }
        Ok(outcome)
    }

    fn unreachable(&self, op: &'static str, stderr: &str) -> RemoteError {
        RemoteError::Unreachable {
            remote: self.display(),
            op,
            message: self.clean(stderr),
        }
    }

    /// git's message: its meaningful lines, joined, with the URL's password removed.
    fn clean(&self, stderr: &str) -> String {
        let text: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(6)
            .collect();
        let text = text.join(" ");
        let text = if text.is_empty() {
            "git gave no reason".to_owned()
        } else {
            text
        };
        text.replace(&self.url, &self.display())
    }

    fn run(&self, mut cmd: Command, repo: &Path, op: &'static str) -> Result<GitOut, RemoteError> {
        let mut child = cmd.spawn().map_err(|source| RemoteError::Spawn {
            dir: repo.to_owned(),
            source,
        })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = stdout.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let start = Instant::now();
        let mut pause = Duration::from_micros(500);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() > GIT_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RemoteError::Timeout {
                        remote: self.display(),
                        op,
                        limit: GIT_TIMEOUT,
                    });
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    // A push takes tens of milliseconds: notice its end within 1 ms.
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                Err(source) => {
                    return Err(RemoteError::Spawn {
                        dir: repo.to_owned(),
                        source,
                    });
                }
            }
        };
        Ok(GitOut {
            success: status.success(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

struct GitOut {
    success: bool,
    stdout: String,
    stderr: String,
}

/// What [`Catalog::fetch_from`] did to the local catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSync {
    /// Versions the remote has that this catalog did not: now local.
    pub added: Vec<(ModuleId, ModuleVersion)>,
    /// Versions both hold with different files: the local one is kept, and publishing
    /// it to the remote is refused. Each is `(module, version, remote commit)`.
    pub conflicts: Vec<(ModuleId, ModuleVersion, String)>,
}

/// Splits `NS/NAME/VERSION` (after a tags prefix).
fn parse_tag_path(path: &str) -> Option<(ModuleId, ModuleVersion)> {
    let mut parts = path.splitn(3, '/');
    let (ns, name, version) = (parts.next()?, parts.next()?, parts.next()?);
    let id: ModuleId = format!("{ns}/{name}").parse().ok()?;
    let version: ModuleVersion = version.parse().ok()?;
    Some((id, version))
}

fn tracking_tag(module: &ModuleId, version: &ModuleVersion) -> String {
    format!(
        "{TRACKING_PREFIX}tags/{}/{}/{version}",
        module.namespace, module.name
    )
}

fn tracking_branch(module: &ModuleId) -> String {
    format!(
        "{TRACKING_PREFIX}modules/{}/{}",
        module.namespace, module.name
    )
}

/// `refs/dtk/catalog/tags/NS/NAME/VERSION` on the remote.
pub fn remote_tag(module: &ModuleId, version: &ModuleVersion) -> String {
    format!(
        "{REMOTE_CATALOG_PREFIX}tags/{}/{}/{version}",
        module.namespace, module.name
    )
}

/// `refs/dtk/catalog/modules/NS/NAME` on the remote.
pub fn remote_branch(module: &ModuleId) -> String {
    format!(
        "{REMOTE_CATALOG_PREFIX}modules/{}/{}",
        module.namespace, module.name
    )
}

fn git_err(action: impl Into<String>) -> impl FnOnce(gix::Error) -> CatalogError {
    let action = action.into();
    move |source| CatalogError::Git { action, source }
}

impl Catalog {
    /// Fetches the remote's catalog and adopts it: every version the remote has and
    /// this catalog lacks becomes local (its tag points at the remote's commit), and each
    /// module's branch follows the remote's when it only moved forward. A version both
    /// hold with the same files is pointed at the remote's commit; with other files, the
    /// local one is kept and reported ([`CatalogSync::conflicts`]).
    pub fn fetch_from(&self, remote: &GitRemote) -> Result<CatalogSync, CatalogError> {
        remote.fetch(
            &self.root,
            &[format!("+{REMOTE_CATALOG_PREFIX}*:{TRACKING_PREFIX}*")],
        )?;
        let _lock = journal::lock(&self.root)?;
        self.adopt_tracking()
    }

    /// Adopts the references under the tracking prefix (see [`Catalog::fetch_from`]);
    /// the caller holds the catalog lock.
    fn adopt_tracking(&self) -> Result<CatalogSync, CatalogError> {
        let repo = self.repo()?;
        let mut sync = CatalogSync::default();
        let mut tags: Vec<(String, ObjectId)> = Vec::new();
        let mut branches: Vec<(String, ObjectId)> = Vec::new();
        {
            let platform = repo
                .references()
                .map_err(git_err("list the remote's catalog"))?;
            let iter = platform
                .prefixed(TRACKING_PREFIX)
                .map_err(git_err("list the remote's catalog"))?;
            for r in iter {
                let r = r.map_err(git_err("list the remote's catalog"))?;
                let name = r.name().as_bstr().to_string();
                let Some(id) = r.target().try_id().map(ToOwned::to_owned) else {
                    continue;
                };
                let rest = &name[TRACKING_PREFIX.len()..];
                if let Some(t) = rest.strip_prefix("tags/") {
                    tags.push((t.to_owned(), id));
                } else if let Some(b) = rest.strip_prefix("modules/") {
                    branches.push((b.to_owned(), id));
                }
            }
        }
        for (path, remote_commit) in tags {
            let Some((module, version)) = parse_tag_path(&path) else {
                continue;
            };
            let local_name = tag_name(&module, &version);
            let local = ref_target(&repo, &local_name)?;
            match local {
                Some(l) if l == remote_commit => {}
                None => {
                    set_ref(
                        &repo,
                        &local_name,
                        None,
                        Some(remote_commit),
                        "dtk fetch from the remote",
                    )?;
                    sync.added.push((module, version));
                }
                Some(l) => {
                    let same = self.commit_tree(&repo, l, &module, &version)?
                        == self.commit_tree(&repo, remote_commit, &module, &version)?;
                    if same || version.is_development() {
                        set_ref(
                            &repo,
                            &local_name,
                            Some(l),
                            Some(remote_commit),
                            "dtk fetch from the remote",
                        )?;
                    } else {
                        sync.conflicts
                            .push((module, version, remote_commit.to_string()));
                    }
                }
            }
        }
        for (path, remote_head) in branches {
            let Ok(module) = path.parse::<ModuleId>() else {
                continue;
            };
            let local_name = branch_name(&module);
            let local = ref_target(&repo, &local_name)?;
            let forward = match local {
                None => true,
                Some(l) if l == remote_head => false,
                Some(l) => is_ancestor(&repo, l, remote_head)?,
            };
            if forward {
                set_ref(
                    &repo,
                    &local_name,
                    local,
                    Some(remote_head),
                    "dtk fetch from the remote",
                )?;
            }
        }
        Ok(sync)
    }

    /// Publishes the module in `dir` to `remote` as the version its `dtk.module.yaml`
    /// declares, signed by `author`, and then into this catalog.
    ///
    /// The same checks as [`Catalog::publish`] come first (nothing is written on a
    /// refusal). Then, until it succeeds or is refused: the remote's catalog is fetched;
    /// if the remote has the version with the same files, nothing is pushed
    /// ([`PublishStatus::Unchanged`]); with other files, a released version is refused
    /// ([`CatalogError::RemoteVersionExists`], naming the commit and its author); else a
    /// commit whose parent is the remote's branch head is pushed in one atomic push that
    /// creates the version's tag only if it is absent and moves the branch only from the
    /// head it read. A push that loses a race is retried from the fetch.
    pub fn publish_to(
        &self,
        dir: &Path,
        remote: &GitRemote,
        author: &Identity,
    ) -> Result<Published, CatalogError> {
        let (module, files) = scan(dir, Some(&self.parse_cache()))?;
        let id = module.id.clone();
        let version = module.version.clone();
        let repo = self.repo()?;
        let tree = write_tree(&repo, dir, &files, &id, &version)?;
        // A local version with other files is refused as a local publish would be.
        if let Some(local) = ref_target(&repo, &tag_name(&id, &version))?
            && self.commit_tree(&repo, local, &id, &version)? != tree
            && !version.is_development()
        {
            return Err(CatalogError::VersionExists(Box::new(
                crate::VersionExists {
                    module: id,
                    version,
                    existing: local.to_string(),
                    refused: tree.to_string(),
                },
            )));
        }
        let tag = remote_tag(&id, &version);
        let branch = remote_branch(&id);
        for _ in 0..PUBLISH_ATTEMPTS {
            remote.fetch(
                &self.root,
                &[format!("+{REMOTE_CATALOG_PREFIX}*:{TRACKING_PREFIX}*")],
            )?;
            let repo = self.repo()?;
            let remote_tag_at = ref_target(&repo, &tracking_tag(&id, &version))?;
            let remote_head = ref_target(&repo, &tracking_branch(&id))?;
            if let Some(existing) = remote_tag_at {
                let existing_tree = self.commit_tree(&repo, existing, &id, &version)?;
                if existing_tree == tree {
                    let _lock = journal::lock(&self.root)?;
                    self.adopt_tracking()?;
                    return Ok(Published {
                        module: id,
                        version,
                        commit: existing.to_string(),
                        tree: tree.to_string(),
                        files: files.len(),
                        status: PublishStatus::Unchanged,
                    });
                }
                if !version.is_development() {
                    let (author, time) = commit_author(&repo, existing)?;
                    return Err(CatalogError::RemoteVersionExists(Box::new(
                        RemoteVersionExists {
                            module: id,
                            version,
                            remote: remote.display(),
                            commit: existing.to_string(),
                            author,
                            time,
                        },
                    )));
                }
            }
            let mut parents: Vec<ObjectId> = remote_head.into_iter().collect();
            if let Some(old) = remote_tag_at
                && Some(old) != remote_head
            {
                parents.push(old);
            }
            let message = commit_message(&id, &version, remote_tag_at);
            let sig = author.signature();
            let mut time = gix::date::parse::TimeBuf::default();
            let sig_ref = sig.to_ref(&mut time);
            let commit = repo
                .new_commit_as(sig_ref, sig_ref, message, tree, parents)
                .map_err(git_err(format!("write the commit of {id} {version}")))?
                .id;
            let outcome = remote.push(
                &self.root,
                &[
                    RefUpdate {
                        remote_ref: branch.clone(),
                        new: Some(commit),
                        expect: Expect::from_option(remote_head),
                    },
                    RefUpdate {
                        remote_ref: tag.clone(),
                        new: Some(commit),
                        expect: Expect::from_option(remote_tag_at),
                    },
                ],
            )?;
            if !outcome.is_ok() {
                tracing::info!(module = %id, %version, "publish lost a race on the remote; retrying");
                continue;
            }
            // The remote has it: make the local catalog agree.
            let _lock = journal::lock(&self.root)?;
            let repo = self.repo()?;
            for (name, old) in [
                (tracking_branch(&id), remote_head),
                (tracking_tag(&id, &version), remote_tag_at),
            ] {
                let now = ref_target(&repo, &name)?;
                set_ref(&repo, &name, now.or(old), Some(commit), "dtk publish")?;
            }
            self.adopt_tracking()?;
            tracing::info!(module = %id, %version, %commit, remote = %remote, "published to the remote");
            return Ok(Published {
                module: id,
                version,
                commit: commit.to_string(),
                tree: tree.to_string(),
                files: files.len(),
                status: match remote_tag_at {
                    Some(old) => PublishStatus::Moved {
                        previous: old.to_string(),
                    },
                    None => PublishStatus::Created,
                },
            });
        }
        Err(CatalogError::Remote(RemoteError::Git {
            remote: remote.display(),
            op: "push",
            message: format!(
                "other publishes of {id} kept moving its branch; gave up after {PUBLISH_ATTEMPTS} attempts"
            ),
        }))
    }

    /// Pushes every version this catalog holds and the remote lacks (those published
    /// before the remote was set), each as a new commit on the remote's branch signed by
    /// `author`. Returns the versions pushed.
    pub fn push_missing(
        &self,
        remote: &GitRemote,
        author: &Identity,
    ) -> Result<Vec<(ModuleId, ModuleVersion)>, CatalogError> {
        self.fetch_from(remote)?;
        let repo = self.repo()?;
        let mut pushed = Vec::new();
        for m in self.list()? {
            for v in &m.versions {
                if ref_target(&repo, &tracking_tag(&m.id, v))?.is_some() {
                    continue;
                }
                let Some(local) = ref_target(&repo, &tag_name(&m.id, v))? else {
                    continue;
                };
                let tree = self.commit_tree(&repo, local, &m.id, v)?;
                self.push_tree(remote, author, &m.id, v, tree)?;
                pushed.push((m.id.clone(), v.clone()));
            }
        }
        Ok(pushed)
    }

    fn push_tree(
        &self,
        remote: &GitRemote,
        author: &Identity,
        id: &ModuleId,
        version: &ModuleVersion,
        tree: ObjectId,
    ) -> Result<(), CatalogError> {
        for _ in 0..PUBLISH_ATTEMPTS {
            let repo = self.repo()?;
            let remote_head = ref_target(&repo, &tracking_branch(id))?;
            if ref_target(&repo, &tracking_tag(id, version))?.is_some() {
                return Ok(());
            }
            let sig = author.signature();
            let mut time = gix::date::parse::TimeBuf::default();
            let sig_ref = sig.to_ref(&mut time);
            let commit = repo
                .new_commit_as(
                    sig_ref,
                    sig_ref,
                    commit_message(id, version, None),
                    tree,
                    remote_head.into_iter().collect::<Vec<_>>(),
                )
                .map_err(git_err(format!("write the commit of {id} {version}")))?
                .id;
            let outcome = remote.push(
                &self.root,
                &[
                    RefUpdate {
                        remote_ref: remote_branch(id),
                        new: Some(commit),
                        expect: Expect::from_option(remote_head),
                    },
                    RefUpdate {
                        remote_ref: remote_tag(id, version),
                        new: Some(commit),
                        expect: Expect::Absent,
                    },
                ],
            )?;
            if outcome.is_ok() {
                return Ok(());
            }
            remote.fetch(
                &self.root,
                &[format!("+{REMOTE_CATALOG_PREFIX}*:{TRACKING_PREFIX}*")],
            )?;
        }
        Err(CatalogError::Remote(RemoteError::Git {
            remote: remote.display(),
            op: "push",
            message: format!("could not push {id} {version}: the remote kept changing"),
        }))
    }
}

/// The author (`Name <email>`) and time of a commit.
fn commit_author(repo: &gix::Repository, commit: ObjectId) -> Result<(String, i64), CatalogError> {
    let c = repo
        .find_commit(commit)
        .map_err(|e| git_err(format!("read the commit {commit}"))(gix::Error::from_error(e)))?;
    let decoded = c
        .decode()
        .map_err(|e| git_err(format!("read the commit {commit}"))(gix::Error::from_error(e)))?;
    let author = decoded
        .author()
        .map_err(|e| git_err(format!("read the commit {commit}"))(gix::Error::from_error(e)))?;
    Ok((
        format!("{} <{}>", author.name, author.email),
        author.seconds(),
    ))
}

/// Whether `ancestor` is `descendant` or one of its ancestors.
pub(crate) fn is_ancestor(
    repo: &gix::Repository,
    ancestor: ObjectId,
    descendant: ObjectId,
) -> Result<bool, CatalogError> {
    if ancestor == descendant {
        return Ok(true);
    }
    let walk = repo.rev_walk([descendant]).all().map_err(|e| {
        git_err(format!("walk the history of {descendant}"))(gix::Error::from_error(e))
    })?;
    for info in walk {
        let info = info.map_err(|e| {
            git_err(format!("walk the history of {descendant}"))(gix::Error::from_error(e))
        })?;
        if info.id == ancestor {
            return Ok(true);
        }
    }
    Ok(false)
}
