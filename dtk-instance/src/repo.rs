//! The instance repository: a real git repository (gix) whose work tree holds
//! `dtk.service.yaml` and the instance copies of modules under `modules/NS/NAME/`.
//!
//! Instance copies share storage with the catalog: the repository lists the catalog's
//! object directory as an *alternate*, and staging writes only trees that point at the
//! catalog's module trees, so a 100 MB module costs a few hundred bytes per instance.
//! The work tree is *sparse*: only the files a user is expected to edit (the service
//! document and each module's `dtk.module.yaml`, plus anything the user adds or asks for)
//! are written to disk; the rest stay in git, marked `skip-worktree` in the index, so
//! `git status` and `git diff` with the ordinary git command line agree with dtk.
//!
//! gix has no high-level checkout/reset for this, so this module keeps the work tree, the
//! index and HEAD in step itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::object::tree::EntryKind;

use crate::error::InstanceError;

/// The directory, inside the work tree, that holds dtk's private per-instance files
/// (actual state, journal, logs, lock). Git ignores it through `.git/info/exclude`.
pub const PRIVATE_DIR: &str = ".dtk";

/// The name and email dtk signs its commits with (CI machines have no git identity).
const SIGNATURE_NAME: &str = "dtk";
const SIGNATURE_EMAIL: &str = "dtk@localhost";

/// A change of one file between the committed desired state and the work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the work tree, `/`-separated.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
    /// The committed content, if the file was committed.
    pub old: Option<Vec<u8>>,
    /// The work tree's content, if the file exists there.
    pub new: Option<Vec<u8>>,
}

/// The kind of a [`FileChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// New in the work tree.
    Added,
    /// Changed in the work tree.
    Modified,
    /// Removed from the work tree.
    Deleted,
}

/// One commit of an instance repository's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    /// The commit id (hex).
    pub id: String,
    /// The first line of its message.
    pub summary: String,
    /// The whole message.
    pub message: String,
    /// Seconds since the epoch.
    pub time: i64,
}

/// An edit of the committed tree made without the work tree (set-attribute, pull-base).
#[derive(Debug, Clone)]
pub enum TreeEdit {
    /// Write a file with this content.
    File(String, Vec<u8>),
    /// Point a directory at an existing tree (an instance copy of a catalog module).
    Tree(String, ObjectId),
    /// Point a file at a blob the repository has (see [`InstanceRepo::has_object`]).
    Blob(String, ObjectId),
    /// Remove a file or directory.
    Remove(String),
}

/// An open instance repository.
pub struct InstanceRepo {
    repo: gix::Repository,
    root: PathBuf,
    /// What was read of immutable objects, by id: a commit's tree, and what a path names
    /// in a tree. A command asks the same (HEAD's tree, the document in it) many times:
    /// a converge with nothing to do read HEAD's commit object 15 times.
    seen: std::sync::Mutex<Seen>,
}

/// See [`InstanceRepo::seen`].
#[derive(Default)]
struct Seen {
    trees: std::collections::HashMap<ObjectId, ObjectId>,
    paths: std::collections::HashMap<
        (ObjectId, String),
        Option<(ObjectId, gix::object::tree::EntryMode)>,
    >,
}

impl std::fmt::Debug for InstanceRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceRepo")
            .field("root", &self.root)
            .finish()
    }
}

fn git_err<'a>(
    root: &'a Path,
    op: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> InstanceError + 'a {
    move |source| InstanceError::Git {
        repo: root.to_path_buf(),
        op,
        source,
    }
}

macro_rules! git {
    ($root:expr, $op:expr, $e:expr) => {
        $e.map_err(|e| git_err($root, $op)(Box::new(e)))
    };
}

pub(crate) fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(std::io::Error) -> InstanceError + 'a {
    move |source| InstanceError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Whether a path is one dtk writes to the work tree by default, whatever its size.
pub fn materialized_by_default(path: &str) -> bool {
    path == dtk_model::service::SERVICE_FILE
        || (path.starts_with("modules/") && path.ends_with("/dtk.module.yaml"))
}

/// A module file at most this big is written to the work tree when the instance is
/// staged (or moved by rollback and pull-base), so that scripts and templates can be
/// edited in place; larger ones stay in git only until `dtk service edit` asks for them.
pub const SMALL_FILE: u64 = 64 * 1024;
/// At most this many files of one module are written by default...
pub const SMALL_FILES_PER_MODULE: usize = 256;
/// ... and at most this many bytes of them.
pub const SMALL_BYTES_PER_MODULE: u64 = 4 * 1024 * 1024;

/// Reads module files out of an instance repository's objects (the catalog's, through
/// its alternates): the [`ContentStore`](dtk_model::content::ContentStore) of converge.
#[derive(Debug, Clone)]
pub struct RepoContentStore {
    /// The repository's work tree (gix repositories are not `Send` in this build: each
    /// thread opens its own, once).
    root: PathBuf,
}

/// The most memory one instance repository handle keeps for decoded objects.
const OBJECT_CACHE_BYTES: usize = 4 << 20;

thread_local! {
    static OPEN_REPOS: std::cell::RefCell<BTreeMap<PathBuf, gix::Repository>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

impl dtk_model::content::ContentStore for RepoContentStore {
    fn read(&self, id: &str) -> Result<Vec<u8>, dtk_model::content::ContentError> {
        let err =
            |source: Box<dyn std::error::Error + Send + Sync>| dtk_model::content::ContentError {
                id: id.to_owned(),
                source,
            };
        let oid = ObjectId::from_hex(id.as_bytes()).map_err(|e| err(Box::new(e)))?;
        OPEN_REPOS.with(|cell| {
            let mut repos = cell.borrow_mut();
            if !repos.contains_key(&self.root) {
                let repo = gix::open(&self.root).map_err(|e| err(Box::new(e)))?;
                repos.insert(self.root.clone(), repo);
            }
            let repo = repos
                .get(&self.root)
                .ok_or_else(|| err("the repository did not open".into()))?;
            let blob = repo.find_blob(oid).map_err(|e| err(Box::new(e)))?;
            Ok(blob.detach().data)
        })
    }
}

impl InstanceRepo {
    /// Creates a new instance repository at `root` (which must not exist or be empty),
    /// borrowing objects from `alternates`, with one commit holding `files` and the module
    /// `trees`.
    pub fn create(
        root: &Path,
        alternates: &[PathBuf],
        files: &[(&str, &[u8])],
        trees: &[(String, ObjectId)],
        message: &str,
    ) -> Result<InstanceRepo, InstanceError> {
        InstanceRepo::init(root, alternates)?;
        let me = InstanceRepo::open(root)?;
        let mut edits: Vec<TreeEdit> = files
            .iter()
            .map(|(p, c)| TreeEdit::File((*p).to_owned(), c.to_vec()))
            .collect();
        edits.extend(trees.iter().map(|(p, id)| TreeEdit::Tree(p.clone(), *id)));
        let tree = me.edit_tree(None, &edits)?;
        let commit = me.commit(tree, None, message)?;
        me.sync_work_tree(None, commit, &BTreeSet::new())?;
        Ok(me)
    }

    /// Opens the instance repository at `root`.
    pub fn open(root: &Path) -> Result<InstanceRepo, InstanceError> {
        let mut repo = git!(root, "open", gix::open(root))?;
        // A command reads the same few objects (HEAD's commit, its trees, the modules'
        // trees) several times: keep decoded objects for the handle's life.
        repo.object_cache_size_if_unset(OBJECT_CACHE_BYTES);
        Ok(InstanceRepo {
            repo,
            root: root.to_path_buf(),
            seen: std::sync::Mutex::default(),
        })
    }

    /// The work tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The hash of the repository's object ids.
    pub fn object_hash(&self) -> gix::hash::Kind {
        self.repo.object_hash()
    }

    /// Whether the repository has object `id`.
    pub fn has_object(&self, id: ObjectId) -> bool {
        self.repo.has_object(id)
    }

    /// The current commit.
    pub fn head(&self) -> Result<ObjectId, InstanceError> {
        let id = git!(&self.root, "read HEAD", self.repo.head_id())?;
        Ok(id.detach())
    }

    /// The tree of a commit.
    pub fn commit_tree(&self, commit: ObjectId) -> Result<ObjectId, InstanceError> {
        if let Some(t) = self.seen().trees.get(&commit) {
            return Ok(*t);
        }
        let c = git!(&self.root, "find commit", self.repo.find_commit(commit))?;
        let t = git!(&self.root, "read commit tree", c.tree_id())?.detach();
        self.seen().trees.insert(commit, t);
        Ok(t)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The id and mode of what `path` names in `tree`, if anything.
    fn entry_at(
        &self,
        tree: ObjectId,
        path: &str,
    ) -> Result<Option<(ObjectId, gix::object::tree::EntryMode)>, InstanceError> {
        let key = (tree, path.to_owned());
        if let Some(e) = self.seen().paths.get(&key) {
            return Ok(*e);
        }
        let t = git!(&self.root, "find tree", self.repo.find_tree(tree))?;
        let entry = git!(&self.root, "look up path", t.lookup_entry_by_path(path))?
            .map(|e| (e.object_id(), e.mode()));
        self.seen().paths.insert(key, entry);
        Ok(entry)
    }

    /// Resolves a revision (`HEAD~2`, a commit id prefix) to a commit id.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, InstanceError> {
        let id = self
            .repo
            .rev_parse_single(rev.as_bytes().as_bstr())
            .map_err(|e| InstanceError::Revision {
                rev: rev.to_owned(),
                message: e.to_string(),
            })?;
        let obj = git!(&self.root, "find object", id.object())?;
        let commit = obj.try_into_commit().map_err(|e| InstanceError::Revision {
            rev: rev.to_owned(),
            message: e.to_string(),
        })?;
        Ok(commit.id)
    }

    /// Every file of a tree (blobs only), with its blob id and executable bit.
    pub fn tree_files(
        &self,
        tree: ObjectId,
    ) -> Result<BTreeMap<String, (ObjectId, bool)>, InstanceError> {
        let mut out = BTreeMap::new();
        self.walk_tree(tree, String::new(), &mut out)?;
        Ok(out)
    }

    fn walk_tree(
        &self,
        tree: ObjectId,
        prefix: String,
        out: &mut BTreeMap<String, (ObjectId, bool)>,
    ) -> Result<(), InstanceError> {
        let t = git!(&self.root, "find tree", self.repo.find_tree(tree))?;
        let decoded = git!(&self.root, "decode tree", t.decode())?;
        let entries: Vec<(String, EntryKind, ObjectId)> = decoded
            .entries
            .iter()
            .map(|e| {
                (
                    e.filename.to_str_lossy().into_owned(),
                    e.mode.kind(),
                    e.oid.to_owned(),
                )
            })
            .collect();
        for (name, kind, oid) in entries {
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match kind {
                EntryKind::Tree => self.walk_tree(oid, path, out)?,
                EntryKind::Blob => {
                    out.insert(path, (oid, false));
                }
                EntryKind::BlobExecutable => {
                    out.insert(path, (oid, true));
                }
                EntryKind::Link | EntryKind::Commit => {}
            }
        }
        Ok(())
    }

    /// The files of the module copy whose tree is `tree` (`modules/NS/NAME` of a commit),
    /// as converge hands them to the nodes: content addresses, modes and sizes, and a
    /// store to read them from. Its digest is the tree's id.
    pub fn module_content(
        &self,
        module: &dtk_model::ModuleId,
        tree: ObjectId,
    ) -> Result<dtk_model::content::ModuleContent, InstanceError> {
        let files = self.tree_files(tree)?;
        let mut out = Vec::with_capacity(files.len());
        for (path, (id, executable)) in files {
            let size = git!(&self.root, "read object header", self.repo.find_header(id))?.size();
            out.push(dtk_model::content::ModuleFile {
                path,
                id: id.to_string(),
                executable,
                size,
            });
        }
        Ok(dtk_model::content::ModuleContent {
            module: module.clone(),
            digest: tree.to_string(),
            files: out.into(),
            store: std::sync::Arc::new(RepoContentStore {
                root: self.root.clone(),
            }),
        })
    }

    /// The files of `files` (a commit's) written to the work tree by default besides
    /// [`materialized_by_default`] ones: each module's small files ([`SMALL_FILE`]), in
    /// path order, up to [`SMALL_FILES_PER_MODULE`] and [`SMALL_BYTES_PER_MODULE`].
    fn small_module_files(
        &self,
        files: &BTreeMap<String, (ObjectId, bool)>,
    ) -> Result<BTreeSet<String>, InstanceError> {
        let mut out = BTreeSet::new();
        let mut per_module: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
        for (path, (id, _)) in files {
            let Some(module) = module_prefix(path) else {
                continue;
            };
            if materialized_by_default(path) {
                continue;
            }
            let budget = per_module.entry(module).or_insert((0, 0));
            if budget.0 >= SMALL_FILES_PER_MODULE {
                continue;
            }
            let size = git!(&self.root, "read object header", self.repo.find_header(*id))?.size();
            if size > SMALL_FILE || budget.1 + size > SMALL_BYTES_PER_MODULE {
                continue;
            }
            budget.0 += 1;
            budget.1 += size;
            out.insert(path.clone());
        }
        Ok(out)
    }

    /// Writes the committed files `paths` (of HEAD) to the work tree and clears their
    /// `skip-worktree` bit, so that they can be edited and `git status` sees them; a path
    /// naming a directory takes every file under it. Files already there are left as
    /// they are (they may hold edits). Returns the paths written or already there.
    pub fn checkout(&self, paths: &[String]) -> Result<Vec<String>, InstanceError> {
        let head = self.head()?;
        let files = self.tree_files(self.commit_tree(head)?)?;
        let mut chosen = BTreeSet::new();
        for p in paths {
            let p = p.trim_end_matches('/');
            let prefix = format!("{p}/");
            let matched: Vec<&String> = files
                .keys()
                .filter(|f| f.as_str() == p || f.starts_with(&prefix))
                .collect();
            if matched.is_empty() {
                return Err(InstanceError::NoSuchPath { path: p.to_owned() });
            }
            chosen.extend(matched.into_iter().cloned());
        }
        for path in &chosen {
            let p = self.root.join(path);
            if fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            let (id, exec) = files[path];
            write_file_atomic(&p, &self.read_blob(id)?, exec)?;
        }
        self.write_index_for(head, &chosen)?;
        Ok(chosen.into_iter().collect())
    }

    /// The id of the subtree at `path` in `tree`, if there is one.
    pub fn subtree(&self, tree: ObjectId, path: &str) -> Result<Option<ObjectId>, InstanceError> {
        let entry = self.entry_at(tree, path)?;
        Ok(entry.filter(|(_, mode)| mode.is_tree()).map(|(id, _)| id))
    }

    /// The module manifests of commit `commit`: every `modules/NS/NAME/dtk.module.yaml`,
    /// as `(modules/NS/NAME, content)`.
    pub fn module_manifests_at(
        &self,
        commit: ObjectId,
    ) -> Result<Vec<(String, Vec<u8>)>, InstanceError> {
        let tree = self.commit_tree(commit)?;
        let Some(modules) = self.subtree(tree, "modules")? else {
            return Ok(Vec::new());
        };
        let subtrees = |tree: ObjectId| -> Result<Vec<(String, ObjectId)>, InstanceError> {
            let t = git!(&self.root, "find tree", self.repo.find_tree(tree))?;
            let decoded = git!(&self.root, "decode tree", t.decode())?;
            Ok(decoded
                .entries
                .iter()
                .filter(|e| e.mode.is_tree())
                .map(|e| (e.filename.to_str_lossy().into_owned(), e.oid.to_owned()))
                .collect())
        };
        let mut out = Vec::new();
        for (ns, ns_tree) in subtrees(modules)? {
            for (name, module_tree) in subtrees(ns_tree)? {
                if let Some((id, mode)) = self.entry_at(module_tree, "dtk.module.yaml")?
                    && mode.is_blob()
                {
                    out.push((format!("modules/{ns}/{name}"), self.read_blob(id)?));
                }
            }
        }
        Ok(out)
    }

    /// The content of `path` in the tree of commit `commit`.
    pub fn read_file_at(
        &self,
        commit: ObjectId,
        path: &str,
    ) -> Result<Option<Vec<u8>>, InstanceError> {
        let tree = self.commit_tree(commit)?;
        match self.entry_at(tree, path)? {
            Some((id, mode)) if mode.is_blob() => Ok(Some(self.read_blob(id)?)),
            _ => Ok(None),
        }
    }

    /// The content of a blob.
    pub fn read_blob(&self, id: ObjectId) -> Result<Vec<u8>, InstanceError> {
        let b = git!(&self.root, "find blob", self.repo.find_blob(id))?;
        Ok(b.data.clone())
    }

    /// Writes a blob, returning its id.
    pub fn write_blob(&self, data: &[u8]) -> Result<ObjectId, InstanceError> {
        Ok(git!(&self.root, "write blob", self.repo.write_blob(data))?.detach())
    }

    /// Applies `edits` to `base` (or the empty tree) and writes the result.
    pub fn edit_tree(
        &self,
        base: Option<ObjectId>,
        edits: &[TreeEdit],
    ) -> Result<ObjectId, InstanceError> {
        let base = base.unwrap_or_else(|| ObjectId::empty_tree(self.repo.object_hash()));
        let mut editor = git!(&self.root, "edit tree", self.repo.edit_tree(base))?;
        for e in edits {
            // A file: its blob, written here or one the repository has.
            let (path, id) = match e {
                TreeEdit::File(path, content) => (path, self.write_blob(content)?),
                TreeEdit::Blob(path, id) => (path, *id),
                TreeEdit::Tree(path, id) => {
                    git!(
                        &self.root,
                        "edit tree",
                        editor.upsert(path.as_str(), EntryKind::Tree, *id)
                    )?;
                    continue;
                }
                TreeEdit::Remove(path) => {
                    git!(&self.root, "edit tree", editor.remove(path.as_str()))?;
                    continue;
                }
            };
            let kind = self.existing_kind(base, path)?.unwrap_or(EntryKind::Blob);
            git!(
                &self.root,
                "edit tree",
                editor.upsert(path.as_str(), kind, id)
            )?;
        }
        Ok(git!(&self.root, "write tree", editor.write())?.detach())
    }

    fn existing_kind(
        &self,
        tree: ObjectId,
        path: &str,
    ) -> Result<Option<EntryKind>, InstanceError> {
        let t = git!(&self.root, "find tree", self.repo.find_tree(tree))?;
        let entry = git!(&self.root, "look up path", t.lookup_entry_by_path(path))?;
        Ok(entry
            .map(|e| e.mode().kind())
            .filter(|k| matches!(k, EntryKind::BlobExecutable)))
    }

    /// Commits `tree` on HEAD (parent: the current HEAD, if any) with `message`.
    pub fn commit(
        &self,
        tree: ObjectId,
        parent: Option<ObjectId>,
        message: &str,
    ) -> Result<ObjectId, InstanceError> {
        self.commit_by(tree, parent, message, None)
    }

    /// [`commit`](Self::commit) authored by `who` (else dtk's own signature).
    pub fn commit_by(
        &self,
        tree: ObjectId,
        parent: Option<ObjectId>,
        message: &str,
        who: Option<&Signature>,
    ) -> Result<ObjectId, InstanceError> {
        let (name, email) = match who {
            Some(w) => (w.name.as_str(), w.email.as_str()),
            None => (SIGNATURE_NAME, SIGNATURE_EMAIL),
        };
        let sig = gix::actor::Signature {
            name: name.into(),
            email: email.into(),
            time: gix::date::Time::now_utc(),
        };
        let mut buf = gix::date::parse::TimeBuf::default();
        let sref = sig.to_ref(&mut buf);
        let id = git!(
            &self.root,
            "commit",
            self.repo
                .commit_as(sref, sref, "HEAD", message, tree, parent)
        )?;
        Ok(id.detach())
    }

    /// Commits `tree` on `reference` (not HEAD), parent: the reference's current commit.
    pub fn commit_on(
        &self,
        reference: &str,
        tree: ObjectId,
        message: &str,
    ) -> Result<ObjectId, InstanceError> {
        let parent = match self.repo.try_find_reference(reference) {
            Ok(Some(mut r)) => Some(git!(&self.root, "peel reference", r.peel_to_id())?.detach()),
            Ok(None) => None,
            Err(e) => return Err(git_err(&self.root, "find reference")(Box::new(e))),
        };
        let sig = gix::actor::Signature {
            name: SIGNATURE_NAME.into(),
            email: SIGNATURE_EMAIL.into(),
            time: gix::date::Time::now_utc(),
        };
        let mut buf = gix::date::parse::TimeBuf::default();
        let sref = sig.to_ref(&mut buf);
        let id = git!(
            &self.root,
            "commit",
            self.repo
                .commit_as(sref, sref, reference, message, tree, parent)
        )?;
        Ok(id.detach())
    }

    /// The paths currently written to the work tree: index entries not marked
    /// `skip-worktree`.
    pub fn materialized(&self) -> Result<BTreeSet<String>, InstanceError> {
        let index_path = self.repo.index_path();
        if !index_path.exists() {
            return Ok(BTreeSet::new());
        }
        let index = git!(&self.root, "read index", self.repo.open_index())?;
        Ok(index
            .entries()
            .iter()
            .filter(|e| !e.flags.contains(gix::index::entry::Flags::SKIP_WORKTREE))
            .map(|e| e.path(&index).to_str_lossy().into_owned())
            .collect())
    }

    /// Brings the work tree and the index from commit `from` (or nothing) to commit `to`:
    /// writes the materialized files of `to`, removes materialized files that `to` no longer
    /// has, and rewrites the index with `skip-worktree` on everything else. `keep` adds
    /// paths to materialize besides the defaults and the currently materialized ones.
    pub fn sync_work_tree(
        &self,
        from: Option<ObjectId>,
        to: ObjectId,
        keep: &BTreeSet<String>,
    ) -> Result<(), InstanceError> {
        let mut wanted = self.materialized()?;
        wanted.extend(keep.iter().cloned());
        let new_tree = self.commit_tree(to)?;
        let new_files = self.tree_files(new_tree)?;
        let old_files = match from {
            Some(c) => self.tree_files(self.commit_tree(c)?)?,
            None => BTreeMap::new(),
        };
        // Remove files that were materialized and are gone.
        for path in &wanted {
            if !new_files.contains_key(path) && old_files.contains_key(path) {
                let p = self.root.join(path);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&p, "remove")(e)),
                }
                remove_empty_parents(&self.root, &p);
            }
        }
        let small = self.small_module_files(&new_files)?;
        let mut materialize = BTreeSet::new();
        for (path, (id, exec)) in &new_files {
            if !(materialized_by_default(path) || wanted.contains(path) || small.contains(path)) {
                continue;
            }
            materialize.insert(path.clone());
            let unchanged = old_files.get(path).is_some_and(|(old, _)| old == id);
            let p = self.root.join(path);
            if unchanged && p.exists() {
                continue;
            }
            let data = self.read_blob(*id)?;
            write_file_atomic(&p, &data, *exec)?;
        }
        self.write_index(new_tree, &materialize)
    }

    fn write_index(
        &self,
        tree: ObjectId,
        materialize: &BTreeSet<String>,
    ) -> Result<(), InstanceError> {
        use gix::index::entry::Flags;
        let mut index = git!(&self.root, "build index", self.repo.index_from_tree(&tree))?;
        for (entry, path) in index.entries_mut_with_paths() {
            let path = path.to_str_lossy();
            // Entries keep a zero stat: git and gix then compare content, so the index is
            // correct without recording the files' metadata here.
            if !materialize.contains(path.as_ref()) {
                entry.flags.insert(Flags::SKIP_WORKTREE | Flags::EXTENDED);
            }
        }
        git!(&self.root, "write index", index.write(Default::default()))?;
        Ok(())
    }

    /// The differences between HEAD and the work tree, for materialized and new files.
    pub fn changes(&self) -> Result<Vec<FileChange>, InstanceError> {
        let head = self.head()?;
        let files = self.tree_files(self.commit_tree(head)?)?;
        let materialized = self.materialized()?;
        let mut present = BTreeSet::new();
        collect_files(&self.root, &self.root, &mut present)?;
        let mut out = Vec::new();
        for path in &present {
            let p = self.root.join(path);
            let data = fs::read(&p).map_err(io_err(&p, "read"))?;
            match files.get(path) {
                Some((id, _)) => {
                    let now = gix::objs::compute_hash(
                        self.repo.object_hash(),
                        gix::object::Kind::Blob,
                        &data,
                    )
                    .map_err(|e| git_err(&self.root, "hash file")(Box::new(e)))?;
                    if &now != id {
                        out.push(FileChange {
                            path: path.clone(),
                            kind: ChangeKind::Modified,
                            old: Some(self.read_blob(*id)?),
                            new: Some(data),
                        });
                    }
                }
                None => out.push(FileChange {
                    path: path.clone(),
                    kind: ChangeKind::Added,
                    old: None,
                    new: Some(data),
                }),
            }
        }
        for path in &materialized {
            if !present.contains(path)
                && let Some((id, _)) = files.get(path)
            {
                // A committed file replaced by a symbolic link is not a deletion: refuse
                // it (links are never followed into the repository, nor committed).
                let p = self.root.join(path);
                if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(InstanceError::Symlink { path: p });
                }
                out.push(FileChange {
                    path: path.clone(),
                    kind: ChangeKind::Deleted,
                    old: Some(self.read_blob(*id)?),
                    new: None,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Commits `changes` (from [`changes`](Self::changes)) on HEAD and refreshes the
    /// index. Returns the new commit.
    pub fn commit_changes(
        &self,
        changes: &[FileChange],
        message: &str,
    ) -> Result<ObjectId, InstanceError> {
        self.commit_changes_by(changes, message, None)
    }

    /// [`commit_changes`](Self::commit_changes) authored by `who` (else dtk's own
    /// signature).
    pub fn commit_changes_by(
        &self,
        changes: &[FileChange],
        message: &str,
        who: Option<&Signature>,
    ) -> Result<ObjectId, InstanceError> {
        let head = self.head()?;
        let base = self.commit_tree(head)?;
        let edits: Vec<TreeEdit> = changes
            .iter()
            .map(|c| match &c.new {
                Some(data) => TreeEdit::File(c.path.clone(), data.clone()),
                None => TreeEdit::Remove(c.path.clone()),
            })
            .collect();
        let tree = self.edit_tree(Some(base), &edits)?;
        let commit = self.commit_by(tree, Some(head), message, who)?;
        let keep: BTreeSet<String> = changes
            .iter()
            .filter(|c| c.new.is_some())
            .map(|c| c.path.clone())
            .collect();
        self.write_index_for(commit, &keep)?;
        Ok(commit)
    }

    fn write_index_for(
        &self,
        commit: ObjectId,
        keep: &BTreeSet<String>,
    ) -> Result<(), InstanceError> {
        let mut wanted = self.materialized()?;
        wanted.extend(keep.iter().cloned());
        let tree = self.commit_tree(commit)?;
        let files = self.tree_files(tree)?;
        let materialize: BTreeSet<String> = files
            .keys()
            .filter(|p| materialized_by_default(p) || wanted.contains(*p))
            .cloned()
            .collect();
        self.write_index(tree, &materialize)
    }

    /// Commits a new tree on HEAD and brings the work tree to it. Uncommitted work-tree
    /// edits of files the commit changes are overwritten: callers check for them first.
    pub fn commit_and_sync(
        &self,
        tree: ObjectId,
        message: &str,
    ) -> Result<ObjectId, InstanceError> {
        let head = self.head()?;
        let commit = self.commit(tree, Some(head), message)?;
        self.sync_work_tree(Some(head), commit, &BTreeSet::new())?;
        Ok(commit)
    }

    /// The history of HEAD, newest first, at most `limit` commits.
    pub fn log(&self, limit: usize) -> Result<Vec<CommitInfo>, InstanceError> {
        self.log_of(self.head()?, limit)
    }

    /// The history from `tip`, newest first, at most `limit` commits.
    pub fn log_of(&self, tip: ObjectId, limit: usize) -> Result<Vec<CommitInfo>, InstanceError> {
        let mut out = Vec::new();
        let mut next = Some(tip);
        while let Some(id) = next {
            if out.len() >= limit {
                break;
            }
            let c = git!(&self.root, "find commit", self.repo.find_commit(id))?;
            let decoded = git!(&self.root, "decode commit", c.decode())?;
            let message = decoded.message.to_str_lossy().into_owned();
            let time = decoded.committer().map(|s| s.seconds()).unwrap_or(0);
            next = decoded.parents().next();
            out.push(CommitInfo {
                id: id.to_string(),
                summary: message.lines().next().unwrap_or("").to_owned(),
                message,
                time,
            });
        }
        Ok(out)
    }

    /// The commit a reference points to, if it exists.
    pub fn reference(&self, name: &str) -> Result<Option<ObjectId>, InstanceError> {
        match self.repo.try_find_reference(name) {
            Ok(Some(mut r)) => Ok(Some(
                git!(&self.root, "peel reference", r.peel_to_id())?.detach(),
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(git_err(&self.root, "find reference")(Box::new(e))),
        }
    }

    /// Three-way merges trees like [`merge_trees`](Self::merge_trees), but always writes
    /// the result: a file both sides changed differently holds the standard conflict
    /// markers (`<<<<<<< instance`, `=======`, `>>>>>>> new version`). Returns the tree
    /// and the conflicting paths (empty for a clean merge).
    pub fn merge_trees_marked(
        &self,
        base: ObjectId,
        ours: ObjectId,
        theirs: ObjectId,
    ) -> Result<(ObjectId, Vec<String>), InstanceError> {
        let m = self.merge_marked(base, ours, theirs, "instance", "new version")?;
        Ok((m.tree, m.conflicts))
    }

    /// Three-way merges trees: `base` → `ours` and `base` → `theirs`. Returns the merged
    /// tree, or the paths that conflict (nothing is changed either way).
    pub fn merge_trees(
        &self,
        base: ObjectId,
        ours: ObjectId,
        theirs: ObjectId,
    ) -> Result<Result<ObjectId, Vec<String>>, InstanceError> {
        let options = git!(&self.root, "merge options", self.repo.tree_merge_options())?;
        let labels = gix::merge::blob::builtin_driver::text::Labels {
            ancestor: Some("base".into()),
            current: Some("instance".into()),
            other: Some("new version".into()),
        };
        let mut outcome = git!(
            &self.root,
            "merge trees",
            self.repo.merge_trees(base, ours, theirs, labels, options)
        )?;
        let how = gix::merge::tree::TreatAsUnresolved::default();
        if outcome.has_unresolved_conflicts(how) {
            let mut paths: Vec<String> = outcome
                .conflicts
                .iter()
                .filter(|c| c.is_unresolved(how))
                .map(|c| {
                    let (a, b) = c.changes_in_resolution();
                    let p = a.location().to_str_lossy().into_owned();
                    let q = b.location().to_str_lossy().into_owned();
                    if p == q { p } else { format!("{p} / {q}") }
                })
                .collect();
            paths.sort();
            paths.dedup();
            return Ok(Err(paths));
        }
        let tree = git!(&self.root, "write merged tree", outcome.tree.write())?;
        Ok(Ok(tree.detach()))
    }
}

/// `modules/NS/NAME` of a path inside a module copy.
fn module_prefix(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("modules/")?;
    let ns = rest.find('/')?;
    let name = rest[ns + 1..].find('/')?;
    Some(&path[.."modules/".len() + ns + 1 + name])
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<(), InstanceError> {
    let rd = fs::read_dir(dir).map_err(io_err(dir, "list"))?;
    for entry in rd {
        let entry = entry.map_err(io_err(dir, "list"))?;
        let name = entry.file_name();
        let p = entry.path();
        if dir == root && (name == ".git" || name == PRIVATE_DIR) {
            continue;
        }
        let ft = entry.file_type().map_err(io_err(&p, "stat"))?;
        if ft.is_dir() {
            collect_files(root, &p, out)?;
        } else if ft.is_file()
            && let Ok(rel) = p.strip_prefix(root)
        {
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) {
            break;
        }
        if fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Removes what `git init`'s template writes for people and no program reads: the
/// sample hooks, `hooks/docs.url` and `description` (a dozen files, a quarter of an
/// instance's disk). Best effort: they are harmless.
fn drop_template_samples(git_dir: &Path) {
    let hooks = git_dir.join("hooks");
    if let Ok(rd) = fs::read_dir(&hooks) {
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".sample") || name == "docs.url" {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let _ = fs::remove_file(git_dir.join("description"));
}

/// A temporary path in `path`'s directory (made if missing), private to this process.
fn temp_beside(path: &Path) -> Result<PathBuf, InstanceError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
    // Unique per call: two threads of this process may replace the same file at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(dir.join(format!(
        ".{}.tmp-{}-{n}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    )))
}

/// Replaces `path` with `data` through a temporary file and a rename, without waiting
/// for the disk: after a crash the file holds either its old or its new content, never a
/// mix, but the new content may be lost. For reports and caches that can be made again.
pub(crate) fn write_file_replace(path: &Path, data: &[u8]) -> Result<(), InstanceError> {
    let tmp = temp_beside(path)?;
    fs::write(&tmp, data).map_err(io_err(&tmp, "write"))?;
    fs::rename(&tmp, path).map_err(io_err(path, "rename"))?;
    Ok(())
}

/// Writes `data` to `path` through a temporary file and a rename, so a crash never leaves
/// a half-written file.
pub fn write_file_atomic(path: &Path, data: &[u8], executable: bool) -> Result<(), InstanceError> {
    let tmp = temp_beside(path)?;
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        f.write_all(data).map_err(io_err(&tmp, "write"))?;
        f.sync_all().map_err(io_err(&tmp, "sync"))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp, "chmod"))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path, "rename"))?;
    Ok(())
}

mod sync;
pub use sync::{MergedTree, Signature};

#[cfg(test)]
mod tests;
