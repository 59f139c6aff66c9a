//! What sharing an instance repository through a remote needs of it: commits with any
//! parents and author, references moved by compare-and-swap, ancestry, three-way merges
//! that keep conflict markers, and moving HEAD with the work tree while keeping its
//! uncommitted edits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use super::{
    InstanceRepo, SIGNATURE_EMAIL, SIGNATURE_NAME, TreeEdit, drop_template_samples, git_err,
    io_err, remove_empty_parents, write_file_atomic,
};
use crate::error::InstanceError;

/// Who a commit is by: a name and an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The name.
    pub name: String,
    /// The e-mail address.
    pub email: String,
}

impl Default for Signature {
    fn default() -> Self {
        Signature {
            name: SIGNATURE_NAME.to_owned(),
            email: SIGNATURE_EMAIL.to_owned(),
        }
    }
}

/// The outcome of [`InstanceRepo::merge_marked`].
#[derive(Debug, Clone)]
pub struct MergedTree {
    /// The merged tree; conflicting text files hold git's conflict markers.
    pub tree: ObjectId,
    /// The paths that conflict, sorted.
    pub conflicts: Vec<String>,
}

macro_rules! git {
    ($root:expr, $op:expr, $e:expr) => {
        $e.map_err(|e| git_err($root, $op)(Box::new(e)))
    };
}

impl InstanceRepo {
    /// Makes an empty repository at `root` that borrows objects from `alternates` and
    /// ignores dtk's private directory; no commit yet.
    pub fn init(root: &Path, alternates: &[std::path::PathBuf]) -> Result<(), InstanceError> {
        git!(root, "init", gix::init(root))?;
        let git_dir = root.join(".git");
        drop_template_samples(&git_dir);
        let info = git_dir.join("objects").join("info");
        fs::create_dir_all(&info).map_err(io_err(&info, "create"))?;
        if !alternates.is_empty() {
            let alt = info.join("alternates");
            let text: String = alternates
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect::<String>();
            fs::write(&alt, text).map_err(io_err(&alt, "write"))?;
        }
        let exclude_dir = git_dir.join("info");
        fs::create_dir_all(&exclude_dir).map_err(io_err(&exclude_dir, "create"))?;
        let exclude = exclude_dir.join("exclude");
        fs::write(&exclude, format!("/{}/\n", super::PRIVATE_DIR))
            .map_err(io_err(&exclude, "write"))?;
        Ok(())
    }

    /// The git directory.
    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// Writes a commit of `tree` with `parents`, by `author` (also its committer),
    /// without moving any reference.
    pub fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        message: &str,
        author: &Signature,
    ) -> Result<ObjectId, InstanceError> {
        let sig = gix::actor::Signature {
            name: author.name.as_str().into(),
            email: author.email.as_str().into(),
            time: gix::date::Time::now_utc(),
        };
        let mut buf = gix::date::parse::TimeBuf::default();
        let sref = sig.to_ref(&mut buf);
        let c = git!(
            &self.root,
            "write commit",
            self.repo
                .new_commit_as(sref, sref, message, tree, parents.iter().copied())
        )?;
        Ok(c.id)
    }

    /// Moves `name` to `new` (deletes it for `None`). With `expected`, only if it points
    /// at that commit now (`Some(None)`: only if it does not exist).
    pub fn set_reference(
        &self,
        name: &str,
        expected: Option<Option<ObjectId>>,
        new: Option<ObjectId>,
        message: &str,
    ) -> Result<(), InstanceError> {
        let full = FullName::try_from(name.to_owned())
            .map_err(|e| git_err(&self.root, "name a reference")(Box::new(e)))?;
        let previous = match expected {
            None => PreviousValue::Any,
            Some(None) => PreviousValue::MustNotExist,
            Some(Some(id)) => PreviousValue::MustExistAndMatch(Target::Object(id)),
        };
        let edit = match new {
            Some(id) => RefEdit {
                change: Change::Update {
                    log: LogChange {
                        mode: RefLog::AndReference,
                        force_create_reflog: false,
                        message: message.into(),
                    },
                    expected: previous,
                    new: Target::Object(id),
                },
                name: full,
                deref: false,
            },
            None => {
                if self.reference(name)?.is_none() {
                    return Ok(());
                }
                RefEdit {
                    change: Change::Delete {
                        expected: previous,
                        log: RefLog::AndReference,
                    },
                    name: full,
                    deref: false,
                }
            }
        };
        let sig = gix::actor::Signature {
            name: SIGNATURE_NAME.into(),
            email: SIGNATURE_EMAIL.into(),
            time: gix::date::Time::now_utc(),
        };
        let mut buf = gix::date::parse::TimeBuf::default();
        git!(
            &self.root,
            "move a reference",
            self.repo
                .edit_references_as([edit], Some(sig.to_ref(&mut buf)))
        )?;
        Ok(())
    }

    /// Moves HEAD's branch to `commit` (the work tree and index are not touched: see
    /// [`move_head`](Self::move_head)).
    fn set_head_commit(&self, commit: ObjectId, message: &str) -> Result<(), InstanceError> {
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: message.into(),
                },
                expected: PreviousValue::Any,
                new: Target::Object(commit),
            },
            name: FullName::try_from("HEAD".to_owned())
                .map_err(|e| git_err(&self.root, "name HEAD")(Box::new(e)))?,
            deref: true,
        };
        let sig = gix::actor::Signature {
            name: SIGNATURE_NAME.into(),
            email: SIGNATURE_EMAIL.into(),
            time: gix::date::Time::now_utc(),
        };
        let mut buf = gix::date::parse::TimeBuf::default();
        git!(
            &self.root,
            "move HEAD",
            self.repo
                .edit_references_as([edit], Some(sig.to_ref(&mut buf)))
        )?;
        Ok(())
    }

    /// Whether HEAD points at a commit yet.
    pub fn has_head(&self) -> bool {
        self.repo.head_id().is_ok()
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(
        &self,
        ancestor: ObjectId,
        descendant: ObjectId,
    ) -> Result<bool, InstanceError> {
        if ancestor == descendant {
            return Ok(true);
        }
        Ok(self.merge_base(ancestor, descendant)? == Some(ancestor))
    }

    /// The best common ancestor of two commits.
    pub fn merge_base(&self, a: ObjectId, b: ObjectId) -> Result<Option<ObjectId>, InstanceError> {
        let base = git!(&self.root, "find a merge base", self.repo.merge_base(a, b))?;
        Ok(base.map(gix::Id::detach))
    }

    /// The tree of the work tree as it is: HEAD's tree with the uncommitted edits
    /// applied (written to the object database, committed nowhere).
    pub fn worktree_tree(&self) -> Result<ObjectId, InstanceError> {
        let head_tree = self.commit_tree(self.head()?)?;
        let changes = self.changes()?;
        if changes.is_empty() {
            return Ok(head_tree);
        }
        let edits: Vec<TreeEdit> = changes
            .iter()
            .map(|c| match &c.new {
                Some(data) => TreeEdit::File(c.path.clone(), data.clone()),
                None => TreeEdit::Remove(c.path.clone()),
            })
            .collect();
        self.edit_tree(Some(head_tree), &edits)
    }

    /// Three-way merges `base` → `ours` and `base` → `theirs`, keeping conflicts in the
    /// result: a text file changed on both sides holds both versions between git's
    /// conflict markers, labelled `ours_label` and `theirs_label`.
    pub fn merge_marked(
        &self,
        base: ObjectId,
        ours: ObjectId,
        theirs: ObjectId,
        ours_label: &str,
        theirs_label: &str,
    ) -> Result<MergedTree, InstanceError> {
        let options = git!(&self.root, "merge options", self.repo.tree_merge_options())?;
        let labels = gix::merge::blob::builtin_driver::text::Labels {
            ancestor: Some("base".into()),
            current: Some(ours_label.into()),
            other: Some(theirs_label.into()),
        };
        let mut outcome = git!(
            &self.root,
            "merge trees",
            self.repo.merge_trees(base, ours, theirs, labels, options)
        )?;
        let how = gix::merge::tree::TreatAsUnresolved::default();
        let mut conflicts: Vec<String> = outcome
            .conflicts
            .iter()
            .filter(|c| c.is_unresolved(how))
            .flat_map(|c| {
                let (a, b) = c.changes_in_resolution();
                [
                    a.location().to_str_lossy().into_owned(),
                    b.location().to_str_lossy().into_owned(),
                ]
            })
            .collect();
        conflicts.sort();
        conflicts.dedup();
        let tree = git!(&self.root, "write merged tree", outcome.tree.write())?;
        Ok(MergedTree {
            tree: tree.detach(),
            conflicts,
        })
    }

    /// Moves HEAD from `from` to the commit `to` and makes the work tree hold `content`
    /// (a tree): files of `content` that differ from `to`'s are left as uncommitted edits
    /// (and written to the work tree); everything else matches `to`.
    pub fn move_head(
        &self,
        from: ObjectId,
        to: ObjectId,
        content: ObjectId,
        message: &str,
    ) -> Result<(), InstanceError> {
        let target_files = self.tree_files(self.commit_tree(to)?)?;
        let content_files = self.tree_files(content)?;
        // Edits to keep: what `content` holds and `to` does not.
        let mut edited: BTreeMap<String, Option<(ObjectId, bool)>> = BTreeMap::new();
        for (path, entry) in &content_files {
            if target_files.get(path) != Some(entry) {
                edited.insert(path.clone(), Some(*entry));
            }
        }
        for path in target_files.keys() {
            if !content_files.contains_key(path) {
                edited.insert(path.clone(), None);
            }
        }
        self.set_head_commit(to, message)?;
        let keep: BTreeSet<String> = edited
            .iter()
            .filter(|(_, e)| e.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        self.sync_work_tree(Some(from), to, &keep)?;
        for (path, entry) in &edited {
            let p = self.root.join(path);
            match entry {
                Some((id, exec)) => {
                    let data = self.read_blob(*id)?;
                    write_file_atomic(&p, &data, *exec)?;
                }
                None => {
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err(&p, "remove")(e)),
                    }
                    remove_empty_parents(&self.root, &p);
                }
            }
        }
        Ok(())
    }

    /// Points HEAD at `commit` in a repository that has none yet, and writes the work
    /// tree and index for it.
    pub fn checkout_first(&self, commit: ObjectId) -> Result<(), InstanceError> {
        self.set_head_commit(commit, "clone")?;
        self.sync_work_tree(None, commit, &BTreeSet::new())
    }

    /// The content of `path` in `tree`, if it is a file there.
    pub fn tree_file(&self, tree: ObjectId, path: &str) -> Result<Option<Vec<u8>>, InstanceError> {
        let t = git!(&self.root, "find tree", self.repo.find_tree(tree))?;
        let entry = git!(&self.root, "look up path", t.lookup_entry_by_path(path))?;
        match entry {
            Some(e) if e.mode().is_blob() => Ok(Some(self.read_blob(e.object_id())?)),
            _ => Ok(None),
        }
    }

    /// The author (`Name <email>`) of a commit.
    pub fn commit_author(&self, commit: ObjectId) -> Result<String, InstanceError> {
        let c = git!(&self.root, "find commit", self.repo.find_commit(commit))?;
        let decoded = git!(&self.root, "decode commit", c.decode())?;
        let a = git!(&self.root, "read author", decoded.author())?;
        Ok(format!("{} <{}>", a.name, a.email))
    }

    /// The first parent of a commit.
    pub fn first_parent(&self, commit: ObjectId) -> Result<Option<ObjectId>, InstanceError> {
        let c = git!(&self.root, "find commit", self.repo.find_commit(commit))?;
        let decoded = git!(&self.root, "decode commit", c.decode())?;
        Ok(decoded.parents().next())
    }
}
