//! `pull-base`: move a service to another version of one of its modules, taking the whole
//! new version — its module files *and* its assembly (new nodes, components, links,
//! defaults) — merged three-way with the instance's own edits.
//!
//! The three sides are whole trees of the instance repository:
//!
//! - **base**: `dtk.service.yaml` as the pinned version's assembly stages it, and the
//!   pinned version's files as the module's copy;
//! - **ours**: the committed desired state (the instance's edits);
//! - **theirs**: `dtk.service.yaml` as the new version's assembly stages it, the new
//!   version's files, and the modules it newly depends on.
//!
//! All three service documents carry the new pins, so only what the assembly and the
//! instance changed can conflict. A clean merge is committed. A conflicting one leaves
//! the work tree with the merged files, conflicts marked the standard way
//! (`<<<<<<< instance` / `=======` / `>>>>>>> new version`), and the state of the merge
//! in `.dtk/pull-base.json`; converge refuses while a marker remains, and commits the merge
//! once none does (so does `pull-base --continue`); `pull-base --abort` puts the work tree
//! back as it was.

use std::collections::{BTreeMap, BTreeSet};

use std::fs;

use dtk_model::expand::ModuleSet;
use dtk_model::service::{SERVICE_FILE, ServiceDoc};
use dtk_model::{ModuleId, ModuleVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Damage, InstanceError, NoSuchAssembly, VersionConflict};
use crate::layout::module_path;
use crate::repo::{TreeEdit, io_err, write_file_atomic, write_file_replace};
use crate::service::Service;

/// What pull-base did.
#[derive(Debug, Clone, Serialize)]
pub struct PullBase {
    /// The module.
    pub module: String,
    /// The version pinned before.
    pub from: String,
    /// The version pinned now (or, with conflicts, once they are resolved).
    pub to: String,
    /// The merge commit, when something changed and nothing conflicts.
    pub commit: Option<String>,
    /// The files left with conflict markers in the work tree (empty when the merge was
    /// clean).
    pub conflicts: Vec<String>,
}

/// A pull-base waiting for its conflicts to be resolved (`.dtk/pull-base.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingPull {
    /// The module.
    pub module: String,
    /// The version pinned before.
    pub from: String,
    /// The version it moves to.
    pub to: String,
    /// HEAD when it started (hex).
    pub head: String,
    /// The merged tree, conflict markers included (hex).
    pub merged: String,
    /// The files with conflicts.
    pub conflicts: Vec<String>,
    /// Every file the merge wrote to the work tree (to undo on `--abort`).
    pub written: Vec<String>,
    /// The catalog's tree of the new version (hex), recorded in the merge's commit so that
    /// the next pull-base of a development tag merges from it.
    #[serde(default)]
    pub theirs: Option<String>,
}

/// The trailer of a pull-base commit naming the catalog copy it merged in.
const COPY_TRAILER: &str = "Dtk-Module-Copy:";

fn pull_message(module: &str, from: &str, to: &str, theirs: Option<&str>) -> String {
    match theirs {
        Some(t) => format!("pull-base {module} {from} -> {to}\n\n{COPY_TRAILER} {module} {t}\n"),
        None => format!("pull-base {module} {from} -> {to}"),
    }
}

const PENDING: &str = "pull-base.json";

/// Whether `text` still holds a conflict marker line.
fn has_markers(text: &[u8]) -> bool {
    String::from_utf8_lossy(text)
        .lines()
        .any(|l| l.starts_with("<<<<<<< ") || l == "=======" || l.starts_with(">>>>>>> "))
}

impl Service {
    fn pending_path(&self) -> std::path::PathBuf {
        self.dir().join(crate::repo::PRIVATE_DIR).join(PENDING)
    }

    /// The pull-base waiting for its conflicts to be resolved, if any.
    pub fn pending_pull(&self) -> Result<Option<PendingPull>, InstanceError> {
        let p = self.pending_path();
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| InstanceError::Io {
                    path: p.clone(),
                    op: "parse",
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, "read")(e)),
        }
    }

    /// The service document `assembly` of `module@version` stages as, for this service
    /// (its name, target and kind), with `pins`.
    fn staged_doc(
        &self,
        current: &ServiceDoc,
        module: &ModuleId,
        version: &ModuleVersion,
        pins: &BTreeMap<ModuleId, ModuleVersion>,
    ) -> Result<ServiceDoc, InstanceError> {
        let sf = current
            .staged_from
            .as_ref()
            .ok_or_else(|| InstanceError::Damaged(Box::new(Damage::NoAssembly)))?;
        let m = self.home().catalog_module(module, version)?;
        let assembly = m.assemblies.get(&sf.assembly).ok_or_else(|| {
            InstanceError::NoSuchAssembly(Box::new(NoSuchAssembly {
                module: module.clone(),
                version: version.clone(),
                assembly: sf.assembly.clone(),
                staged: Some(self.name().to_owned()),
                known: m.assemblies.keys().cloned().collect(),
            }))
        })?;
        let mut staged_from = sf.clone();
        staged_from.version = pins.get(module).cloned().unwrap_or_else(|| version.clone());
        Ok(ServiceDoc {
            dsl_version: current.dsl_version.clone(),
            name: current.name.clone(),
            staged_from: Some(staged_from),
            target: current.target.clone(),
            is_target: current.is_target,
            dependencies: pins.clone(),
            nodes: assembly.nodes.clone(),
            components: assembly.components.clone(),
            workflows: assembly.workflows.clone(),
            at: Default::default(),
        })
    }

    /// The newest copy of `module` in the instance's history (first parents from HEAD)
    /// that came from the catalog as it was published: the one a pull-base commit names in
    /// its trailer, or a commit's copy whose tree is among the catalog's objects (edits
    /// made in the instance are written to the instance's own objects).
    fn last_catalog_copy(&self, module: &ModuleId) -> Result<Option<gix::ObjectId>, InstanceError> {
        let catalog = self.home().catalog().repo()?;
        let repo = self.repo();
        let path = module_path(module);
        let trailer = format!("{COPY_TRAILER} {module} ");
        for c in repo.log(usize::MAX)? {
            let named = c
                .message
                .lines()
                .find_map(|l| l.strip_prefix(&trailer))
                .and_then(|t| gix::ObjectId::from_hex(t.trim().as_bytes()).ok());
            if let Some(t) = named
                && catalog.has_object(t)
            {
                return Ok(Some(t));
            }
            let Ok(id) = gix::ObjectId::from_hex(c.id.as_bytes()) else {
                continue;
            };
            let tree = repo.commit_tree(id)?;
            if let Some(copy) = repo.subtree(tree, &path)?
                && catalog.has_object(copy)
            {
                return Ok(Some(copy));
            }
        }
        Ok(None)
    }

    /// Moves the instance to `version` (default: the latest) of `module` by a three-way
    /// merge (see the [module documentation](self)). Refused with uncommitted edits or
    /// while another pull-base waits for its conflicts.
    pub fn pull_base(
        &self,
        module: &ModuleId,
        version: Option<&ModuleVersion>,
    ) -> Result<PullBase, InstanceError> {
        let _lock = self.lock("pull-base")?;
        if let Some(p) = self.pending_pull()? {
            return Err(InstanceError::PullPending {
                service: self.name().to_owned(),
                pull: format!("{} ({} -> {})", p.module, p.from, p.to),
                conflicts: p.conflicts.clone(),
            });
        }
        self.refuse_uncommitted("pull-base")?;
        let doc = self.committed_doc()?;
        let Some(pinned) = doc.dependencies.get(module).cloned() else {
            return Err(InstanceError::ModuleNotUsed {
                service: self.name().to_owned(),
                module: module.to_string(),
                uses: doc.dependencies.keys().map(|k| k.to_string()).collect(),
            });
        };
        let catalog = self.home().catalog();
        let new_version = match version {
            Some(v) => v.clone(),
            None => catalog.latest(module)?,
        };
        let theirs_tree = catalog.tree_id(module, &new_version)?;
        let base_tree = if pinned.is_development() {
            // A development tag moves with every install: the base is the copy this
            // instance last took from the catalog, not where the tag points now.
            self.last_catalog_copy(module)?
                .map_or_else(|| catalog.tree_id(module, &pinned), Ok)?
        } else {
            catalog.tree_id(module, &pinned)?
        };
        let unchanged = PullBase {
            module: module.to_string(),
            from: pinned.to_string(),
            to: new_version.to_string(),
            commit: None,
            conflicts: Vec::new(),
        };
        if pinned == new_version && base_tree == theirs_tree {
            return Ok(unchanged);
        }
        let repo = self.repo();
        let head = repo.head()?;
        let head_tree = repo.commit_tree(head)?;
        let path = module_path(module);
        if repo.subtree(head_tree, &path)?.is_none() {
            return Err(InstanceError::Damaged(Box::new(Damage::NoModuleCopy {
                module: module.clone(),
                service: None,
            })));
        }

        // The new pins: the new version, and what it newly depends on.
        let new_module = self.home().catalog_module(module, &new_version)?;
        let mut pins = doc.dependencies.clone();
        pins.insert(module.clone(), new_version.clone());
        let mut added: Vec<(String, gix::ObjectId)> = Vec::new();
        for dep in &new_module.dependencies {
            if let Some(v) = pins.get(&dep.module) {
                if !dep.req.matches(v) {
                    return Err(InstanceError::VersionConflict(Box::new(
                        VersionConflict::Requirement {
                            module: module.clone(),
                            version: new_version.clone(),
                            dependency: dep.module.clone(),
                            req: dep.req.clone(),
                            pinned: v.clone(),
                        },
                    )));
                }
                continue;
            }
            let resolution = catalog.resolve(&dep.module, &dep.req)?;
            for (id, rm) in resolution.modules {
                if pins.contains_key(&id) {
                    continue;
                }
                added.push((module_path(&id), catalog.tree_id(&id, &rm.version)?));
                pins.insert(id, rm.version);
            }
        }

        // The three service documents, all with the new pins.
        let is_root = doc
            .staged_from
            .as_ref()
            .is_some_and(|s| &s.module == module);
        let mut ours_doc = doc.clone();
        ours_doc.dependencies = pins.clone();
        if let Some(sf) = ours_doc.staged_from.as_mut()
            && is_root
        {
            sf.version = new_version.clone();
        }
        let ours_text = dtk_model::dsl::write_service(&ours_doc);
        let (base_text, theirs_text) = if is_root {
            (
                dtk_model::dsl::write_service(&self.staged_doc(&doc, module, &pinned, &pins)?),
                dtk_model::dsl::write_service(&self.staged_doc(
                    &doc,
                    module,
                    &new_version,
                    &pins,
                )?),
            )
        } else {
            (ours_text.clone(), ours_text.clone())
        };
        let svc = |text: &str| TreeEdit::File(SERVICE_FILE.to_owned(), text.as_bytes().to_vec());
        let base = repo.edit_tree(
            Some(head_tree),
            &[svc(&base_text), TreeEdit::Tree(path.clone(), base_tree)],
        )?;
        let ours = repo.edit_tree(Some(head_tree), &[svc(&ours_text)])?;
        let mut theirs_edits = vec![svc(&theirs_text), TreeEdit::Tree(path.clone(), theirs_tree)];
        theirs_edits.extend(added.iter().map(|(p, t)| TreeEdit::Tree(p.clone(), *t)));
        let theirs = repo.edit_tree(Some(head_tree), &theirs_edits)?;
        let (merged, conflicts) = repo.merge_trees_marked(base, ours, theirs)?;

        let message = pull_message(
            &module.to_string(),
            &pinned.to_string(),
            &new_version.to_string(),
            Some(&theirs_tree.to_string()),
        );
        if conflicts.is_empty() {
            self.check_tree(merged)?;
            let commit = repo.commit_and_sync(merged, &message)?;
            return Ok(PullBase {
                commit: Some(commit.to_string()),
                ..unchanged
            });
        }

        // Conflicts: the merged files go to the work tree, markers and all; HEAD stays.
        let merged_files = repo.tree_files(merged)?;
        let head_files = repo.tree_files(head_tree)?;
        let materialized = repo.materialized()?;
        let mut written = Vec::new();
        for (p, (id, exec)) in &merged_files {
            let changed = head_files.get(p).is_none_or(|(h, _)| h != id);
            let show = conflicts.contains(p)
                || crate::repo::materialized_by_default(p)
                || materialized.contains(p);
            if changed && show {
                write_file_atomic(&self.dir().join(p), &repo.read_blob(*id)?, *exec)?;
                written.push(p.clone());
            }
        }
        for p in head_files.keys() {
            if !merged_files.contains_key(p) && materialized.contains(p) {
                let f = self.dir().join(p);
                match fs::remove_file(&f) {
                    Ok(()) => written.push(p.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&f, "remove")(e)),
                }
            }
        }
        let pending = PendingPull {
            module: module.to_string(),
            from: pinned.to_string(),
            to: new_version.to_string(),
            head: head.to_string(),
            merged: merged.to_string(),
            conflicts: conflicts.clone(),
            written,
            theirs: Some(theirs_tree.to_string()),
        };
        let data = serde_json::to_vec_pretty(&pending).map_err(|e| InstanceError::Io {
            path: self.pending_path(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        write_file_replace(&self.pending_path(), &data)?;
        Ok(PullBase {
            conflicts,
            ..unchanged
        })
    }

    /// Parses and expands the desired state held by `tree`, refusing it with located
    /// errors when it is not valid.
    fn check_tree(&self, tree: gix::ObjectId) -> Result<(), InstanceError> {
        let repo = self.repo();
        let files = repo.tree_files(tree)?;
        let text = files
            .get(SERVICE_FILE)
            .map(|(id, _)| repo.read_blob(*id))
            .transpose()?
            .ok_or_else(|| InstanceError::Damaged(Box::new(Damage::MergeHasNoServiceFile)))?;
        let doc = dtk_model::dsl::parse_service(&String::from_utf8_lossy(&text), SERVICE_FILE)?;
        let mut modules = ModuleSet::new();
        for id in doc.dependencies.keys() {
            let p = format!("{}/dtk.module.yaml", module_path(id));
            let (blob, _) = files.get(&p).ok_or_else(|| {
                InstanceError::Damaged(Box::new(Damage::NoModuleFile {
                    module: id.clone(),
                    merged: true,
                }))
            })?;
            let data = repo.read_blob(*blob)?;
            modules.insert(dtk_model::dsl::parse_module_defs(
                &String::from_utf8_lossy(&data),
                &p,
            )?);
        }
        self.expand_doc(&doc, &modules, SERVICE_FILE)?;
        Ok(())
    }

    /// Finishes a pull-base whose conflicts are resolved: commits the merge with the
    /// work tree's versions of the files (and any other edits). Refused, naming them,
    /// while a conflicted file still holds a marker. Returns the commit, or `None` when
    /// no pull-base waits. Called by converge first; the caller holds the lock.
    pub(crate) fn continue_pull_locked(&self) -> Result<Option<gix::ObjectId>, InstanceError> {
        let Some(p) = self.pending_pull()? else {
            return Ok(None);
        };
        let unresolved: Vec<String> = p
            .conflicts
            .iter()
            .filter(|c| fs::read(self.dir().join(c)).is_ok_and(|d| has_markers(&d)))
            .cloned()
            .collect();
        if !unresolved.is_empty() {
            return Err(InstanceError::MergeConflict {
                module: p.module.clone(),
                paths: unresolved,
            });
        }
        let repo = self.repo();
        let merged = gix::ObjectId::from_hex(p.merged.as_bytes()).map_err(|e| {
            InstanceError::Damaged(Box::new(Damage::PendingPull { why: e.to_string() }))
        })?;
        // Every difference between the work tree and HEAD, over the merged tree.
        let changes = repo.changes()?;
        let edits: Vec<TreeEdit> = changes
            .iter()
            .map(|c| match &c.new {
                Some(data) => TreeEdit::File(c.path.clone(), data.clone()),
                None => TreeEdit::Remove(c.path.clone()),
            })
            .collect();
        let tree = repo.edit_tree(Some(merged), &edits)?;
        self.check_tree(tree)?;
        let commit = repo.commit_and_sync(
            tree,
            &pull_message(&p.module, &p.from, &p.to, p.theirs.as_deref()),
        )?;
        let f = self.pending_path();
        fs::remove_file(&f).map_err(io_err(&f, "remove"))?;
        Ok(Some(commit))
    }

    /// `continue_pull_locked` under the instance's lock
    /// (`pull-base --continue`).
    pub fn continue_pull(&self) -> Result<Option<gix::ObjectId>, InstanceError> {
        let _lock = self.lock("pull-base")?;
        self.continue_pull_locked()
    }

    /// Undoes a pull-base that waits for its conflicts: the work tree is as it was before
    /// it (edits made since to the files it wrote are dropped). Returns whether one was
    /// waiting.
    pub fn abort_pull(&self) -> Result<bool, InstanceError> {
        let _lock = self.lock("pull-base")?;
        let Some(p) = self.pending_pull()? else {
            return Ok(false);
        };
        let repo = self.repo();
        let head = repo.head()?;
        let files = repo.tree_files(repo.commit_tree(head)?)?;
        // The index was not touched: it still tells what was materialized before.
        let materialized = repo.materialized()?;
        for w in &p.written {
            let f = self.dir().join(w);
            match files.get(w).filter(|_| materialized.contains(w)) {
                Some((id, exec)) => write_file_atomic(&f, &repo.read_blob(*id)?, *exec)?,
                None => match fs::remove_file(&f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&f, "remove")(e)),
                },
            }
        }
        repo.sync_work_tree(Some(head), head, &BTreeSet::new())?;
        let f = self.pending_path();
        fs::remove_file(&f).map_err(io_err(&f, "remove"))?;
        Ok(true)
    }
}
