//! Module content: the files of a service's module copies as desired state.
//!
//! - Each component whose `create` runs commands carries the digest of its module's files
//!   ([`ComponentInstance::content_digest`](dtk_model::ComponentInstance::content_digest):
//!   the copy's git tree id), so editing a module file re-runs exactly the components that
//!   run in that module.
//! - Converge hands the executor each module's files ([`ModuleContent`]), read from the
//!   instance repository's objects; the providers bring the nodes' copies up to date,
//!   sending only what changed.
//! - [`Service::edit`] writes committed files to the sparse work tree so they can be
//!   edited (see `repo.rs`).

use std::collections::{BTreeMap, HashMap};

use dtk_model::content::ModuleContent;
use dtk_model::{ActionKind, ModuleId, ServiceModel};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::InstanceError;
use crate::layout::module_path;
use crate::service::Service;

/// What [`Service::edit`] made editable.
#[derive(Debug, Clone, Serialize)]
pub struct Edited {
    /// The service.
    pub service: String,
    /// Every file made editable (or already there), relative to the instance repository.
    pub files: Vec<String>,
    /// Their absolute paths.
    pub paths: Vec<std::path::PathBuf>,
}

/// Whether any command action of the component runs in its module's files.
fn runs_commands(c: &dtk_model::ComponentInstance) -> bool {
    c.def
        .actions
        .values()
        .any(|a| matches!(a.kind, ActionKind::Commands(_)))
}

impl Service {
    /// The modules whose files some component's commands run in, with their committed
    /// tree ids.
    fn content_trees(
        &self,
        model: &ServiceModel,
    ) -> Result<BTreeMap<ModuleId, gix::ObjectId>, InstanceError> {
        let head_tree = self.repo().commit_tree(self.repo().head()?)?;
        let mut out = BTreeMap::new();
        for c in model.components.iter().filter(|c| runs_commands(c)) {
            if out.contains_key(&c.module) {
                continue;
            }
            if let Some(t) = self.repo().subtree(head_tree, &module_path(&c.module))? {
                out.insert(c.module.clone(), t);
            }
        }
        Ok(out)
    }

    /// Sets the content digest of every component that runs commands, from the committed
    /// module copies (see the [module documentation](self)).
    pub(crate) fn apply_content_digests(
        &self,
        model: &mut ServiceModel,
    ) -> Result<(), InstanceError> {
        let trees = self.content_trees(model)?;
        for c in &mut model.components {
            if runs_commands(c)
                && let Some(t) = trees.get(&c.module)
            {
                c.content_digest = Some(t.to_string());
            }
        }
        Ok(())
    }

    /// As [`apply_content_digests`](Self::apply_content_digests), with the work tree's
    /// uncommitted edits of module files counted in (for `plan` and `status`).
    pub(crate) fn apply_worktree_content_digests(
        &self,
        model: &mut ServiceModel,
    ) -> Result<(), InstanceError> {
        self.apply_content_digests(model)?;
        let changes = self.repo().changes()?;
        let mut edited: BTreeMap<String, Sha256> = BTreeMap::new();
        for ch in &changes {
            let Some(rest) = ch.path.strip_prefix("modules/") else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(ns), Some(name), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let h = edited.entry(format!("{ns}/{name}")).or_default();
            h.update(ch.path.as_bytes());
            h.update([0]);
            match &ch.new {
                Some(data) => {
                    h.update((data.len() as u64).to_le_bytes());
                    h.update(data);
                }
                None => h.update(b"deleted"),
            }
        }
        if edited.is_empty() {
            return Ok(());
        }
        let extra: BTreeMap<String, String> = edited
            .into_iter()
            .map(|(m, h)| {
                let d = h.finalize();
                (m, hex::encode(&d[..8]))
            })
            .collect();
        for c in &mut model.components {
            if let (Some(d), Some(x)) = (&mut c.content_digest, extra.get(&c.module.to_string())) {
                d.push('+');
                d.push_str(x);
            }
        }
        Ok(())
    }

    /// The committed files of every module whose files some component's commands run
    /// in, for the executor.
    pub(crate) fn module_contents(
        &self,
        model: &ServiceModel,
    ) -> Result<HashMap<String, ModuleContent>, InstanceError> {
        let mut out = HashMap::new();
        for (m, tree) in self.content_trees(model)? {
            out.insert(m.to_string(), self.repo().module_content(&m, tree)?);
        }
        Ok(out)
    }

    /// Makes committed files of the desired state editable in the work tree: writes each
    /// (a directory: every file under it) and clears its `skip-worktree` bit, so that
    /// `git status` and `git diff` see edits. `paths` are relative to the instance
    /// repository (`modules/demo/webapp/bin/start-web`); none means `dtk.service.yaml`.
    pub fn edit(&self, paths: &[String]) -> Result<Edited, InstanceError> {
        let _lock = self.lock("edit")?;
        let wanted: Vec<String> = if paths.is_empty() {
            vec![dtk_model::service::SERVICE_FILE.to_owned()]
        } else {
            paths
                .iter()
                .map(|p| p.trim_start_matches("./").to_owned())
                .collect()
        };
        for p in &wanted {
            dtk_model::content::check_relative_path(p).map_err(|problem| {
                InstanceError::BadPath {
                    path: p.clone(),
                    problem,
                }
            })?;
        }
        let files = self.repo().checkout(&wanted)?;
        Ok(Edited {
            service: self.name().to_owned(),
            paths: files.iter().map(|f| self.dir().join(f)).collect(),
            files,
        })
    }
}
