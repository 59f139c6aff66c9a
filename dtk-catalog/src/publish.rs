//! Publishing a module directory: objects first, then references under the lock.

use std::path::Path;

use dtk_model::{ModuleId, ModuleVersion};
use gix::ObjectId;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use crate::error::VersionExists;
use crate::files::{SourceFile, scan};
use crate::journal::{self, Journal, RefChange};
use crate::{AUTHOR_EMAIL, AUTHOR_NAME, Catalog, CatalogError};

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishStatus {
    /// The version is new: its commit and tag were created.
    Created,
    /// The version was already published with exactly these files; nothing changed.
    Unchanged,
    /// A development version was published again with other files: its tag moved to a
    /// new commit. The previous commit stays reachable (it is a parent of the new one).
    Moved {
        /// The commit the tag pointed at before (hex).
        previous: String,
    },
}

/// The result of [`Catalog::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The module published.
    pub module: ModuleId,
    /// Its version.
    pub version: ModuleVersion,
    /// The commit the version's tag points at (hex).
    pub commit: String,
    /// The commit's tree: the module's files (hex).
    pub tree: String,
    /// How many files the module holds.
    pub files: usize,
    /// What the publish did.
    pub status: PublishStatus,
}

/// The stages of a publish, in order, at which the hook set by
/// [`Catalog::set_publish_hook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishStage {
    /// Blobs and trees are written; no lock is held, no reference has moved.
    ObjectsWritten,
    /// The catalog lock is held; no reference has moved.
    Locked,
    /// The journal is written and the version's commit exists; no reference has moved.
    JournalWritten,
    /// The module's branch has moved; the version's tag has not. A crash here is undone by
    /// [`Catalog::recover`].
    BranchUpdated,
    /// The version's tag has moved: the publish is complete, only the journal remains.
    TagUpdated,
}

/// The references of one module version.
struct RefNames {
    branch: FullName,
    tag: FullName,
}

impl RefNames {
    fn new(module: &ModuleId, version: &ModuleVersion) -> Result<RefNames, CatalogError> {
        let full = |name: String| {
            FullName::try_from(name.clone()).map_err(|_| CatalogError::BadRefName {
                module: module.clone(),
                version: version.clone(),
                name,
            })
        };
        Ok(RefNames {
            branch: full(branch_name(module))?,
            tag: full(tag_name(module, version))?,
        })
    }
}

/// `refs/heads/modules/NS/NAME`: the branch on which a module's commits chain.
pub(crate) fn branch_name(module: &ModuleId) -> String {
    format!("refs/heads/modules/{}/{}", module.namespace, module.name)
}

/// `refs/tags/NS/NAME/VERSION`: the tag of one published version.
pub(crate) fn tag_name(module: &ModuleId, version: &ModuleVersion) -> String {
    format!("refs/tags/{}/{}/{version}", module.namespace, module.name)
}

fn signature() -> gix::actor::Signature {
    gix::actor::Signature {
        name: AUTHOR_NAME.into(),
        email: AUTHOR_EMAIL.into(),
        time: gix::date::Time::now_utc(),
    }
}

fn git(action: impl Into<String>) -> impl FnOnce(gix::Error) -> CatalogError {
    let action = action.into();
    move |source| CatalogError::Git { action, source }
}

/// The object a reference points at directly, or `None` when it does not exist.
pub(crate) fn ref_target(
    repo: &gix::Repository,
    name: &str,
) -> Result<Option<ObjectId>, CatalogError> {
    let r = repo
        .try_find_reference(name)
        .map_err(git(format!("read the reference {name}")))?;
    match r {
        None => Ok(None),
        Some(r) => match r.target().try_id() {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(CatalogError::Git {
                action: format!("read the reference {name}"),
                source: gix::Error::from_error(std::io::Error::other(
                    "it is a symbolic reference, which dtk never writes",
                )),
            }),
        },
    }
}

/// Moves one reference from `expected` to `new` (deleting it when `new` is `None`).
pub(crate) fn set_ref(
    repo: &gix::Repository,
    name: &str,
    expected: Option<ObjectId>,
    new: Option<ObjectId>,
    message: &str,
) -> Result<(), CatalogError> {
    let action = || match new {
        Some(id) => format!("move the reference {name} to {id}"),
        None => format!("delete the reference {name}"),
    };
    let full = FullName::try_from(name.to_owned()).map_err(|e| CatalogError::Git {
        action: action(),
        source: gix::Error::from_error(e),
    })?;
    let expected = match expected {
        Some(id) => PreviousValue::MustExistAndMatch(Target::Object(id)),
        None => PreviousValue::MustNotExist,
    };
    let edit = match new {
        Some(id) => RefEdit::update_with_log(
            full,
            Target::Object(id),
            expected,
            LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: message.into(),
            },
        ),
        None => RefEdit {
            change: Change::Delete {
                expected,
                log: RefLog::AndReference,
            },
            name: full,
            deref: false,
        },
    };
    let sig = signature();
    let mut time = gix::date::parse::TimeBuf::default();
    repo.edit_references_as([edit], Some(sig.to_ref(&mut time)))
        .map_err(git(action()))?;
    Ok(())
}

impl Catalog {
    /// Publishes the module in `dir` as the version its `dtk.module.yaml` declares.
    ///
    /// 1. `dtk.module.yaml` is read and validated and the directory's files are listed
    ///    ([`validate_dir`](crate::validate_dir)); on any error nothing is written.
    /// 2. Every file becomes a blob (executable bit kept) and the directory a tree. These
    ///    objects are content addressed: if the publish stops here they are unreferenced
    ///    and harmless.
    /// 3. Under the catalog's exclusive lock, the version's tag is read again. The same
    ///    version with the same tree is a no-op ([`PublishStatus::Unchanged`]); a released
    ///    version with another tree is refused ([`CatalogError::VersionExists`]); a
    ///    development version moves ([`PublishStatus::Moved`]).
    /// 4. The commit is written (parents: the module's branch head, and for a moving
    ///    development version its previous commit), the journal is written, the branch
    ///    moves, then the tag moves, then the journal is removed.
    pub fn publish(&self, dir: &Path) -> Result<Published, CatalogError> {
        let (module, files) = scan(dir, Some(&self.parse_cache()))?;
        let id = module.id.clone();
        let version = module.version.clone();
        let names = RefNames::new(&id, &version)?;
        let repo = self.repo()?;

        let tree = write_tree(&repo, dir, &files, &id, &version)?;
        self.stage(PublishStage::ObjectsWritten);

        let _lock = journal::lock(&self.root)?;
        self.recover_locked(&repo)?;
        self.stage(PublishStage::Locked);

        let branch_head = ref_target(&repo, names.branch.as_bstr().to_string().as_str())?;
        let tag_name = names.tag.as_bstr().to_string();
        let existing = ref_target(&repo, &tag_name)?;
        if let Some(old) = existing {
            let old_tree = self.commit_tree(&repo, old, &id, &version)?;
            if old_tree == tree {
                return Ok(Published {
                    module: id,
                    version,
                    commit: old.to_string(),
                    tree: tree.to_string(),
                    files: files.len(),
                    status: PublishStatus::Unchanged,
                });
            }
        }

        let mut parents: Vec<ObjectId> = branch_head.into_iter().collect();
        if let Some(old) = existing
            && Some(old) != branch_head
        {
            parents.push(old);
        }
        let message = commit_message(&id, &version, existing);
        let sig = signature();
        let mut time = gix::date::parse::TimeBuf::default();
        let sig_ref = sig.to_ref(&mut time);
        let commit = repo
            .new_commit_as(sig_ref, sig_ref, message, tree, parents)
            .map_err(git(format!("write the commit of {id} {version}")))?
            .id;

        if let Some(old) = existing
            && !version.is_development()
        {
            return Err(CatalogError::VersionExists(Box::new(VersionExists {
                module: id,
                version,
                existing: old.to_string(),
                refused: commit.to_string(),
            })));
        }

        let branch = names.branch.as_bstr().to_string();
        let journal = Journal {
            branch: RefChange {
                name: branch.clone(),
                old: branch_head,
                new: commit,
            },
            tag: RefChange {
                name: tag_name.clone(),
                old: existing,
                new: commit,
            },
        };
        journal.write(&self.root)?;
        self.stage(PublishStage::JournalWritten);

        let reflog = format!("dtk publish {id} {version}");
        set_ref(&repo, &branch, branch_head, Some(commit), &reflog)?;
        self.stage(PublishStage::BranchUpdated);
        set_ref(&repo, &tag_name, existing, Some(commit), &reflog)?;
        self.stage(PublishStage::TagUpdated);
        Journal::remove(&self.root)?;

        tracing::info!(module = %id, %version, %commit, "published");
        Ok(Published {
            module: id,
            version,
            commit: commit.to_string(),
            tree: tree.to_string(),
            files: files.len(),
            status: match existing {
                Some(old) => PublishStatus::Moved {
                    previous: old.to_string(),
                },
                None => PublishStatus::Created,
            },
        })
    }

    /// Finishes or undoes a publish that was interrupted (the process died between its
    /// first and last reference update), and returns whether there was one.
    ///
    /// The version's tag is the commit point: if it already points at the new commit,
    /// the publish is complete and kept; otherwise the module's branch is moved back to
    /// where it was, so the catalog is exactly as before the publish (the new commit
    /// stays in the object database, unreferenced). [`Catalog::open`] and
    /// [`Catalog::publish`] call this themselves; readers never need it, because they
    /// only follow tags.
    pub fn recover(&self) -> Result<bool, CatalogError> {
        let _lock = journal::lock(&self.root)?;
        self.recover_locked(&self.repo()?)
    }

    fn recover_locked(&self, repo: &gix::Repository) -> Result<bool, CatalogError> {
        let Some(j) = Journal::read(&self.root)? else {
            return Ok(false);
        };
        // A process killed inside a reference transaction may leave git's own lock
        // files; nobody else can hold them while we hold the catalog lock.
        for name in [&j.branch.name, &j.tag.name] {
            let stale = self.root.join(format!("{name}.lock"));
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|source| CatalogError::Lock {
                    action: "remove the stale reference lock",
                    path: stale.clone(),
                    source,
                })?;
            }
        }
        let tag = ref_target(repo, &j.tag.name)?;
        if tag == Some(j.tag.new) {
            tracing::info!(tag = %j.tag.name, "completing an interrupted publish");
        } else {
            tracing::warn!(tag = %j.tag.name, "undoing an interrupted publish");
            let branch = ref_target(repo, &j.branch.name)?;
            if branch == Some(j.branch.new) && j.branch.old != Some(j.branch.new) {
                set_ref(
                    repo,
                    &j.branch.name,
                    branch,
                    j.branch.old,
                    "dtk undo an interrupted publish",
                )?;
            }
        }
        Journal::remove(&self.root)?;
        Ok(true)
    }

    fn stage(&self, stage: PublishStage) {
        if let Some(hook) = &self.hook {
            hook(stage);
        }
    }

    /// The tree of a commit the catalog wrote.
    pub(crate) fn commit_tree(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<ObjectId, CatalogError> {
        let c = repo
            .find_commit(commit)
            .map_err(|e| CatalogError::Damaged {
                module: id.clone(),
                version: version.clone(),
                what: format!("its tag does not point at a readable commit ({e})"),
            })?;
        c.tree_id()
            .map(|t| t.detach())
            .map_err(git(format!("read the commit {commit} of {id} {version}")))
    }
}

pub(crate) fn commit_message(
    id: &ModuleId,
    version: &ModuleVersion,
    previous: Option<ObjectId>,
) -> String {
    let mut m = format!("{id} {version}\n\nPublished by dtk.\n");
    if let Some(p) = previous {
        m.push_str(&format!("Development version {version} moves from {p}.\n"));
    }
    m.push_str(&format!("\nDtk-Module: {id}\nDtk-Version: {version}\n"));
    m
}

/// Writes every file as a blob and the directory as a tree; returns the tree id.
pub(crate) fn write_tree(
    repo: &gix::Repository,
    dir: &Path,
    files: &[SourceFile],
    id: &ModuleId,
    version: &ModuleVersion,
) -> Result<ObjectId, CatalogError> {
    use gix::object::tree::EntryKind;
    let mut editor = repo
        .empty_tree()
        .edit()
        .map_err(git(format!("start the tree of {id} {version}")))?;
    for f in files {
        let data = std::fs::read(&f.abs).map_err(|source| CatalogError::ReadFile {
            path: f.abs.clone(),
            source,
        })?;
        let blob = repo
            .write_blob(&data)
            .map_err(git(format!("store {}", f.abs.display())))?;
        let kind = if f.entry.executable {
            EntryKind::BlobExecutable
        } else {
            EntryKind::Blob
        };
        editor
            .upsert(f.entry.path.as_str(), kind, blob.detach())
            .map_err(git(format!("add {} to the tree", f.abs.display())))?;
    }
    let tree = editor
        .write()
        .map_err(git(format!("write the tree of {}", dir.display())))?;
    Ok(tree.detach())
}
