//! A service instance: its desired state (the instance repository), edits and their
//! validation, history, pull-base, and the records converge leaves.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dtk_model::expand::{ModuleSet, Violation, expand, violations};
use dtk_model::ident::{AttrPath, check_name};
use dtk_model::module::{AttrValue, ComponentDecl, LinkDecl, NodeDecl};
use dtk_model::service::{SERVICE_FILE, ServiceDoc};
use dtk_model::{ComponentId, DslError, Module, ModuleId, ServiceModel, Value};
use dtk_workflow::ActualState;
use serde::{Deserialize, Serialize};

use crate::error::{
    CopyFound, Damage, Existing, InstanceError, MissingOwner, NoSuchOwner, PinMismatch,
};
use crate::home::Home;
use crate::layout::module_path;
use crate::lock::InstanceLock;
use crate::repo::{
    CommitInfo, FileChange, InstanceRepo, io_err, write_file_atomic, write_file_replace,
};
use crate::secrets::SecretStore;
use dtk_catalog::parse_cache::Store as ParseCache;

/// The record of a service's last converge, kept in `.dtk/last-converge.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergeRecord {
    /// `succeeded`, `failed`, `cancelled` or `running` (a converge that never finished).
    pub status: String,
    /// The desired-state commit it converged (hex).
    pub commit: String,
    /// When it started, in seconds since the epoch.
    pub started_at: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The run's id (journal and logs are named after it).
    pub run: String,
    /// Whether any converge of this service ever succeeded.
    pub ever_succeeded: bool,
}

/// A service instance opened from its directory.
#[derive(Debug)]
pub struct Service {
    home: Home,
    name: String,
    dir: PathBuf,
    repo: InstanceRepo,
}

/// What `set-attribute` changed.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeSet {
    /// The path as given.
    pub path: String,
    /// Whether the value went to the secret store (it is then not shown).
    pub secret: bool,
    /// The new value (absent for secrets).
    pub value: Option<Value>,
}

impl Service {
    pub(crate) fn open(home: Home, name: &str, dir: &Path) -> Result<Service, InstanceError> {
        let repo = InstanceRepo::open(dir)?;
        Ok(Service {
            home,
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            repo,
        })
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instance repository's work tree.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The home it lives in.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The instance repository.
    pub fn repo(&self) -> &InstanceRepo {
        &self.repo
    }

    pub(crate) fn private_dir(&self) -> PathBuf {
        self.dir.join(crate::repo::PRIVATE_DIR)
    }

    /// Takes the instance's lock for `operation`.
    pub fn lock(&self, operation: &str) -> Result<InstanceLock, InstanceError> {
        InstanceLock::acquire(&self.name, &self.dir, operation)
    }

    /// The committed service document (HEAD).
    pub fn committed_doc(&self) -> Result<ServiceDoc, InstanceError> {
        let head = self.repo.head()?;
        let data = self.repo.read_file_at(head, SERVICE_FILE)?.ok_or_else(|| {
            InstanceError::Damaged(Box::new(Damage::NoServiceFile {
                service: self.name.clone(),
            }))
        })?;
        Ok(self.parse_doc(&String::from_utf8_lossy(&data), SERVICE_FILE)?)
    }

    /// A service document's text (named `file` in diagnostics) parsed, through the parse
    /// cache: the committed document, the work tree's, and one an edit has just written
    /// (the converge that follows finds it there).
    pub(crate) fn parse_doc(&self, text: &str, file: &str) -> Result<ServiceDoc, DslError> {
        self.parse_cache().get_or_parse(PARSED_SERVICE, text, || {
            dtk_model::dsl::parse_service(text, file)
        })
    }

    /// The service's parse cache (`.dtk/parsed/`).
    pub(crate) fn parse_cache(&self) -> ParseCache {
        parse_cache_in(&self.private_dir())
    }

    /// The committed document and the committed instance copies of its modules. The
    /// copies are parsed for their definitions
    /// ([`parse_module_defs`](dtk_model::dsl::parse_module_defs)): their assemblies' nodes,
    /// components and workflows, which the document already holds, are not read.
    pub fn committed_doc_and_modules(&self) -> Result<(ServiceDoc, ModuleSet), InstanceError> {
        let head = self.repo.head()?;
        let data = self.repo.read_file_at(head, SERVICE_FILE)?.ok_or_else(|| {
            InstanceError::Damaged(Box::new(Damage::NoServiceFile {
                service: self.name.clone(),
            }))
        })?;
        let text = String::from_utf8_lossy(&data);
        let manifests: Vec<Manifest> = self
            .repo
            .module_manifests_at(head)?
            .into_iter()
            .map(|(dir, bytes)| Manifest {
                file: format!("{dir}/dtk.module.yaml"),
                text: Ok(String::from_utf8_lossy(&bytes).into_owned()),
                dir,
            })
            .collect();
        let (doc, mut parsed) = parse_beside(
            text.len(),
            || self.parse_doc(&text, SERVICE_FILE),
            manifests,
            self.parse_cache(),
        );
        let doc = doc?;
        let mut set = ModuleSet::new();
        for id in doc.dependencies.keys() {
            match parsed.remove(&module_path(id)) {
                Some(module) => set.insert(module??),
                None => {
                    return Err(InstanceError::Damaged(Box::new(Damage::NoModuleFile {
                        module: id.clone(),
                        merged: false,
                    })));
                }
            }
        }
        Ok((doc, set))
    }

    /// The work tree's service document and instance copies, parsed and validated, with
    /// each file's problems reported against that file. The copies are parsed for their
    /// definitions, as in [`committed_doc_and_modules`](Self::committed_doc_and_modules).
    pub fn worktree_doc_and_modules(&self) -> Result<(ServiceDoc, ModuleSet), InstanceError> {
        let doc_path = self.dir.join(SERVICE_FILE);
        let text = read_text(&doc_path)?;
        let manifests = worktree_manifests(&self.dir);
        let (doc, mut parsed) = parse_beside(
            text.len(),
            || self.parse_doc(&text, &display(&doc_path)),
            manifests,
            self.parse_cache(),
        );
        let doc = doc?;
        let mut set = ModuleSet::new();
        let mut errors = Vec::new();
        for (id, pinned) in &doc.dependencies {
            let p = self.dir.join(module_path(id)).join("dtk.module.yaml");
            let Some(module) = parsed.remove(&module_path(id)) else {
                return Err(InstanceError::PinMismatch(Box::new(PinMismatch {
                    doc: doc_path,
                    copy: p,
                    module: id.clone(),
                    pinned: pinned.clone(),
                    found: CopyFound::Missing,
                })));
            };
            match module? {
                Ok(m) => {
                    if m.id != *id {
                        return Err(InstanceError::PinMismatch(Box::new(PinMismatch {
                            doc: doc_path,
                            copy: p,
                            module: id.clone(),
                            pinned: pinned.clone(),
                            found: CopyFound::OtherModule(m.id),
                        })));
                    }
                    if m.version != *pinned {
                        return Err(InstanceError::PinMismatch(Box::new(PinMismatch {
                            doc: doc_path,
                            copy: p,
                            module: id.clone(),
                            pinned: pinned.clone(),
                            found: CopyFound::OtherVersion(m.version),
                        })));
                    }
                    set.insert(m);
                }
                Err(e) => errors.extend(e.diagnostics),
            }
        }
        if !errors.is_empty() {
            return Err(dtk_model::DslError {
                diagnostics: errors,
            }
            .into());
        }
        Ok((doc, set))
    }

    /// Whether this is a target instance.
    pub fn is_target(&self) -> Result<bool, InstanceError> {
        Ok(self.committed_doc()?.is_target)
    }

    /// The expanded model of the work tree's desired state, with the target's current
    /// values. Fails with located errors when the work tree is invalid.
    pub fn model(&self) -> Result<ServiceModel, InstanceError> {
        let (doc, modules) = self.worktree_doc_and_modules()?;
        let mut model = self.expand_doc(&doc, &modules, &display(&self.dir.join(SERVICE_FILE)))?;
        self.apply_worktree_content_digests(&mut model)?;
        Ok(model)
    }

    pub(crate) fn expand_doc(
        &self,
        doc: &ServiceDoc,
        modules: &ModuleSet,
        file: &str,
    ) -> Result<ServiceModel, InstanceError> {
        self.expand_doc_with(doc, modules, file, None)
    }

    /// [`expand_doc`](Self::expand_doc) with the secrets of `secrets` (else the store's).
    pub(crate) fn expand_doc_with(
        &self,
        doc: &ServiceDoc,
        modules: &ModuleSet,
        file: &str,
        secrets: Option<&SecretStore>,
    ) -> Result<ServiceModel, InstanceError> {
        let binding = match &doc.target {
            Some(t) if t != &self.name => Some(self.home.target_binding(t, false)?),
            _ => None,
        };
        let mut model = expand(doc, modules, binding.as_ref(), file)?;
        if model.components.iter().any(|c| !c.secret_inputs.is_empty()) {
            match secrets {
                Some(s) => s.apply_digests(&mut model)?,
                None => self.secrets()?.apply_digests(&mut model)?,
            }
        }
        self.apply_content_digests(&mut model)?;
        Ok(model)
    }

    /// Unset required attributes and other problems to fix before converge.
    pub fn violations(&self, model: &ServiceModel) -> Result<Vec<Violation>, InstanceError> {
        let secrets = self.secrets()?;
        Ok(violations(model, |id, attr| secrets.is_set(id, attr)))
    }

    /// The service's secret store.
    pub fn secrets(&self) -> Result<SecretStore, InstanceError> {
        SecretStore::load(&self.home.secrets_path(&self.name))
    }

    /// The uncommitted edits of the work tree.
    pub fn diff(&self) -> Result<Vec<FileChange>, InstanceError> {
        self.repo.changes()
    }

    /// The desired-state history, newest first.
    pub fn log(&self, limit: usize) -> Result<Vec<CommitInfo>, InstanceError> {
        self.repo.log(limit)
    }

    /// Validates the work tree's edits and commits them with `message`. Returns the new
    /// commit, or `None` when there was nothing to commit. Nothing is committed when
    /// the edits are refused.
    pub fn commit_edits(&self, message: &str) -> Result<Option<gix::ObjectId>, InstanceError> {
        let changes = self.repo.changes()?;
        if changes.is_empty() {
            return Ok(None);
        }
        self.model()?;
        // With a team remote, the commit says who made the change.
        let who = self
            .home
            .remote()
            .is_some()
            .then(|| self.home.operator().signature());
        Ok(Some(self.repo.commit_changes_by(
            &changes,
            message,
            who.as_ref(),
        )?))
    }

    /// Sets an attribute of the desired state (in the work tree; converge commits it), or
    /// of the secret store for `secret: true` attributes. `value` is YAML text.
    pub fn set_attribute(&self, path: &str, value: &str) -> Result<AttributeSet, InstanceError> {
        let _lock = self.lock("set-attribute")?;
        let parsed: AttrPath = path.parse().map_err(InstanceError::InvalidName)?;
        let value = dtk_model::dsl::parse_value(value, "VALUE")?;
        let (mut doc, modules) = self.worktree_doc_and_modules()?;
        let model = self.expand_doc(&doc, &modules, &display(&self.dir.join(SERVICE_FILE)))?;
        let target = locate(&mut doc, &parsed)?;
        // Check the attribute against its definition before touching anything.
        let (ids, def_attr) = match &target {
            Located::Node { name, .. } => {
                let ids: Vec<ComponentId> = model
                    .nodes
                    .iter()
                    .filter(|n| &n.name == name || n.group.as_deref() == Some(name.as_str()))
                    .filter_map(|n| n.realized_by.clone())
                    .collect();
                let def = ids
                    .first()
                    .and_then(|id| model.component(id))
                    .and_then(|c| c.def.attributes.get(&parsed.attr).cloned());
                (ids, def)
            }
            Located::Component {
                node, reference, ..
            } => {
                let ids: Vec<ComponentId> = model
                    .components
                    .iter()
                    .filter(|c| !c.realizes_node && &c.reference == reference)
                    .filter(|c| match (node, &c.node) {
                        (None, None) => true,
                        (Some(n), Some(cn)) => cn == n || cn.split(':').next() == Some(n.as_str()),
                        _ => false,
                    })
                    .map(|c| c.id.clone())
                    .collect();
                let Some(c) = ids.first().and_then(|id| model.component(id)) else {
                    return Err(InstanceError::NoSuchComponent {
                        path: path.to_owned(),
                    });
                };
                let Some(a) = c.def.attributes.get(&parsed.attr) else {
                    let names: Vec<&str> = c.def.attributes.keys().map(String::as_str).collect();
                    let suggestion =
                        dtk_model::diag::did_you_mean(&parsed.attr, names.iter().copied())
                            .map(str::to_owned);
                    return Err(InstanceError::NoSuchAttribute {
                        component: c.reference.to_string(),
                        attr: parsed.attr.clone(),
                        suggestion,
                        known: names.iter().map(|n| (*n).to_owned()).collect(),
                    });
                };
                (ids, Some(a.clone()))
            }
        };
        if let Some(a) = &def_attr {
            dtk_model::edit::check_set_attribute(path, a, &value)?;
            if a.secret {
                let mut store = self.secrets()?;
                for id in &ids {
                    store.set(id, &parsed.attr, value.clone())?;
                }
                return Ok(AttributeSet {
                    path: path.to_owned(),
                    secret: true,
                    value: None,
                });
            }
        }
        let attrs = match target {
            Located::Node { attrs, .. } | Located::Component { attrs, .. } => attrs,
        };
        attrs.insert(
            parsed.attr.clone(),
            AttrValue {
                value: value.clone(),
                at: Default::default(),
            },
        );
        let text = dtk_model::dsl::write_service(&doc);
        let reread = self.parse_doc(&text, SERVICE_FILE)?;
        self.expand_doc(&reread, &modules, SERVICE_FILE)?;
        write_file_atomic(&self.dir.join(SERVICE_FILE), text.as_bytes(), false)?;
        Ok(AttributeSet {
            path: path.to_owned(),
            secret: false,
            value: Some(value),
        })
    }

    /// Applies `edit` to the work tree's service document, validates the result against
    /// the pinned modules and the target, and writes it (uncommitted; converge commits).
    /// Nothing is written when the edited document is refused.
    fn edit_doc(
        &self,
        operation: &str,
        edit: impl FnOnce(&mut ServiceDoc) -> Result<(), InstanceError>,
    ) -> Result<(), InstanceError> {
        let _lock = self.lock(operation)?;
        let (mut doc, modules) = self.worktree_doc_and_modules()?;
        edit(&mut doc)?;
        let text = dtk_model::dsl::write_service(&doc);
        let reread = self.parse_doc(&text, SERVICE_FILE)?;
        self.expand_doc(&reread, &modules, SERVICE_FILE)?;
        write_file_atomic(&self.dir.join(SERVICE_FILE), text.as_bytes(), false)
    }

    /// Adds a component to a node (`NODE/CMP[INST]`) or to the assembly
    /// (`CMP[INST]`), with attribute values. Refused when the component does not exist in
    /// the pinned modules, an attribute is unknown or mistyped, or its dependencies
    /// cannot be satisfied.
    pub fn add_component(
        &self,
        path: &str,
        attributes: BTreeMap<String, Value>,
    ) -> Result<(), InstanceError> {
        let target: dtk_model::NodeComponentRef =
            path.parse().map_err(InstanceError::InvalidName)?;
        {
            // A singleton already on the node is refused here, naming the edit (the
            // expansion of the edited document would refuse it too).
            let (doc, modules) = self.worktree_doc_and_modules()?;
            let root = doc.staged_from.as_ref().map(|s| &s.module);
            if let Ok((module, def)) =
                dtk_model::expand::resolve_component(&modules, root, &target.component)
            {
                let model =
                    self.expand_doc(&doc, &modules, &display(&self.dir.join(SERVICE_FILE)))?;
                dtk_model::edit::check_add_component(
                    &model,
                    target.node.as_deref(),
                    &module,
                    &def,
                )?;
            }
        }
        self.edit_doc("add-component", |doc| {
            let decl = ComponentDecl {
                reference: target.component.clone(),
                attributes: attributes
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            AttrValue {
                                value: v,
                                at: Default::default(),
                            },
                        )
                    })
                    .collect(),
                links: Vec::new(),
                at: Default::default(),
            };
            let list = match &target.node {
                Some(n) => {
                    let names: Vec<String> = doc.nodes.iter().map(|x| x.name.clone()).collect();
                    let Some(node) = doc.nodes.iter_mut().find(|x| &x.name == n) else {
                        return Err(InstanceError::NoSuchNode {
                            node: n.clone(),
                            known: crate::error::list(&names),
                        });
                    };
                    &mut node.components
                }
                None => &mut doc.components,
            };
            if list.iter().any(|c| {
                component_matches(c, &target.component)
                    && c.reference.instance == target.component.instance
            }) {
                return Err(InstanceError::AlreadyInService {
                    name: path.to_owned(),
                    what: Existing::Added,
                });
            }
            list.push(decl);
            Ok(())
        })
    }

    /// Removes a component (`NODE/CMP[INST]` or `CMP[INST]`) from the desired state; the
    /// next converge runs its delete action.
    pub fn remove_component(&self, path: &str) -> Result<(), InstanceError> {
        let target: dtk_model::NodeComponentRef =
            path.parse().map_err(InstanceError::InvalidName)?;
        self.edit_doc("remove-component", |doc| {
            let list = match &target.node {
                Some(n) => match doc.nodes.iter_mut().find(|x| &x.name == n) {
                    Some(node) => &mut node.components,
                    None => {
                        return Err(InstanceError::NoSuchNode {
                            node: n.clone(),
                            known: String::new(),
                        });
                    }
                },
                None => &mut doc.components,
            };
            let before = list.len();
            list.retain(|c| {
                !(c.reference.name == target.component.name
                    && c.reference.instance == target.component.instance)
            });
            if list.len() == before {
                return Err(InstanceError::NoSuchComponent {
                    path: path.to_owned(),
                });
            }
            Ok(())
        })
    }

    /// Links component `from` (`NODE/CMP[INST]` or `CMP[INST]`) to the component that
    /// satisfies one of its dependencies (`to`, same forms), optionally naming the
    /// dependency. Useful when several components could satisfy it.
    pub fn add_link(
        &self,
        from: &str,
        to: &str,
        dependency: Option<&str>,
    ) -> Result<(), InstanceError> {
        let from_ref: dtk_model::NodeComponentRef =
            from.parse().map_err(InstanceError::InvalidName)?;
        let to_ref: dtk_model::NodeComponentRef = to.parse().map_err(InstanceError::InvalidName)?;
        self.edit_doc("add-link", |doc| {
            let list = match &from_ref.node {
                Some(n) => match doc.nodes.iter_mut().find(|x| &x.name == n) {
                    Some(node) => &mut node.components,
                    None => {
                        return Err(InstanceError::NoSuchNode {
                            node: n.clone(),
                            known: String::new(),
                        });
                    }
                },
                None => &mut doc.components,
            };
            let Some(decl) = list.iter_mut().find(|c| {
                c.reference.name == from_ref.component.name
                    && c.reference.instance == from_ref.component.instance
            }) else {
                return Err(InstanceError::NoSuchComponent {
                    path: from.to_owned(),
                });
            };
            decl.links.retain(|l| {
                l.dependency.as_deref() != dependency || dependency.is_none() && l.target != to_ref
            });
            decl.links.push(LinkDecl {
                dependency: dependency.map(str::to_owned),
                target: to_ref.clone(),
                service: None,
                at: Default::default(),
            });
            Ok(())
        })
    }

    /// Sets the desired state back to revision `rev`, as a new commit. Refused when the
    /// work tree has uncommitted edits.
    pub fn rollback(&self, rev: &str) -> Result<gix::ObjectId, InstanceError> {
        let _lock = self.lock("rollback")?;
        self.refuse_uncommitted("rollback")?;
        let commit = self.repo.resolve(rev)?;
        let tree = self.repo.commit_tree(commit)?;
        let short = commit.to_hex_with_len(10).to_string();
        self.repo
            .commit_and_sync(tree, &format!("rollback to {short}"))
    }

    pub(crate) fn refuse_uncommitted(&self, what: &str) -> Result<(), InstanceError> {
        let changes = self.repo.changes()?;
        if changes.is_empty() {
            return Ok(());
        }
        Err(InstanceError::UncommittedEdits {
            service: self.name.clone(),
            files: changes.iter().map(|c| c.path.clone()).collect(),
            operation: what.to_owned(),
        })
    }

    /// The id of the tree holding the committed instance copy of `module`.
    pub fn module_tree(&self, module: &ModuleId) -> Result<gix::ObjectId, InstanceError> {
        let tree = self.repo.commit_tree(self.repo.head()?)?;
        self.repo
            .subtree(tree, &module_path(module))?
            .ok_or_else(|| {
                InstanceError::Damaged(Box::new(Damage::NoModuleCopy {
                    module: module.clone(),
                    service: Some(self.name.clone()),
                }))
            })
    }

    /// Actual state as last recorded. A missing or damaged `.dtk/actual.json` is
    /// restored from its last commit (see [`crate::history`]).
    pub fn actual_state(&self) -> Result<ActualState, InstanceError> {
        let p = self.private_dir().join("actual.json");
        match fs::read(&p) {
            Ok(data) => match serde_json::from_slice(&data) {
                Ok(state) => Ok(state),
                Err(e) => self.restore_actual_state(Some(e.to_string())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.restore_actual_state(None),
            Err(e) => Err(io_err(&p, "read")(e)),
        }
    }

    /// Writes actual state (atomically, durably). When the file already holds exactly
    /// this state (a converge that changed nothing), it is left alone: it was written
    /// durably by the run that made it.
    pub(crate) fn save_actual_state(&self, state: &ActualState) -> Result<(), InstanceError> {
        let p = self.private_dir().join("actual.json");
        let data = serde_json::to_vec_pretty(state).map_err(|e| InstanceError::Io {
            path: p.clone(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        if !fs::read(&p).is_ok_and(|old| old == data) {
            write_file_atomic(&p, &data, false)?;
        }
        // Versioned too, so a lost or damaged file is restored from its last commit.
        self.record_state(&data, None, state.components.len())
    }

    /// Recorded outputs by component id.
    pub fn actual_values(&self) -> Result<BTreeMap<String, dtk_model::Attributes>, InstanceError> {
        Ok(self
            .actual_state()?
            .components
            .into_iter()
            .map(|(id, c)| (id.0, c.outputs))
            .collect())
    }

    /// The last converge's record, if any.
    pub fn last_converge(&self) -> Result<Option<ConvergeRecord>, InstanceError> {
        let p = self.private_dir().join("last-converge.json");
        match fs::read(&p) {
            Ok(data) => Ok(serde_json::from_slice(&data).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, "read")(e)),
        }
    }

    /// Writes the last converge's record, atomically. It is synced to disk only when
    /// whether the service ever converged changes (staging on a target depends on it);
    /// otherwise a crash may at worst leave the previous record, which says the same.
    pub(crate) fn save_last_converge(&self, rec: &ConvergeRecord) -> Result<(), InstanceError> {
        let p = self.private_dir().join("last-converge.json");
        let data = serde_json::to_vec_pretty(rec).map_err(|e| InstanceError::Io {
            path: p.clone(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        let durable = self
            .last_converge()?
            .is_none_or(|prev| prev.ever_succeeded != rec.ever_succeeded);
        if durable {
            write_file_atomic(&p, &data, false)
        } else {
            write_file_replace(&p, &data)
        }
    }

    /// Whether a converge of this service ever succeeded.
    pub fn has_converged(&self) -> Result<bool, InstanceError> {
        Ok(self.last_converge()?.is_some_and(|r| r.ever_succeeded))
    }

    /// Records a successful converge of a service that has nothing to do (the built-in
    /// local target).
    pub(crate) fn mark_converged_empty(&self) -> Result<(), InstanceError> {
        let head = self.repo.head()?;
        self.save_last_converge(&ConvergeRecord {
            status: "succeeded".to_owned(),
            commit: head.to_string(),
            started_at: now_secs(),
            duration_ms: 0,
            run: String::new(),
            ever_succeeded: true,
        })
    }

    /// A one-line summary, for listings.
    pub fn summary(&self) -> Result<ServiceSummary, InstanceError> {
        let doc = self.committed_doc()?;
        Ok(ServiceSummary {
            name: self.name.clone(),
            is_target: doc.is_target,
            staged_from: doc
                .staged_from
                .as_ref()
                .map(|s| format!("{}@{} {}", s.module, s.version, s.assembly)),
            target: doc.target.clone(),
            last_converge: self.last_converge()?.map(|r| r.status),
            dir: self.dir.clone(),
        })
    }

    /// Removes the instance: its repository, secrets and local sandboxes. Refused while
    /// anything is still deployed, or (for a target) while services are staged on it,
    /// unless `force`.
    pub fn uninstall(self, force: bool) -> Result<(), InstanceError> {
        self.guard_target("uninstall", force)?;
        let lock = self.lock("uninstall")?;
        let state = self.actual_state()?;
        if !force && !state.components.is_empty() {
            return Err(InstanceError::StillDeployed {
                service: self.name.clone(),
                count: state.components.len(),
            });
        }
        let trash = self.home.scratch_dir(&format!("uninstall-{}", self.name));
        fs::rename(&self.dir, &trash).map_err(io_err(&self.dir, "move"))?;
        drop(lock);
        fs::remove_dir_all(&trash).map_err(io_err(&trash, "remove"))?;
        SecretStore::remove(&self.home.secrets_path(&self.name))?;
        let sandboxes = self.home.sandboxes_dir().join(&self.name);
        if sandboxes.exists() {
            fs::remove_dir_all(&sandboxes).map_err(io_err(&sandboxes, "remove"))?;
        }
        Ok(())
    }
}

enum Located<'a> {
    Node {
        name: String,
        attrs: &'a mut dtk_model::SortedMap<AttrValue>,
    },
    Component {
        node: Option<String>,
        reference: dtk_model::ComponentRef,
        attrs: &'a mut dtk_model::SortedMap<AttrValue>,
    },
}

fn component_matches(decl: &ComponentDecl, r: &dtk_model::ComponentRef) -> bool {
    decl.reference.name == r.name
        && (r.instance.is_none() || decl.reference.instance == r.instance)
        && (r.module.is_none() || decl.reference.module == r.module)
}

fn locate<'a>(doc: &'a mut ServiceDoc, path: &AttrPath) -> Result<Located<'a>, InstanceError> {
    let node_names: Vec<String> = doc.nodes.iter().map(|n| n.name.clone()).collect();
    match (&path.node, &path.component) {
        (Some(node), None) => {
            if let Some(n) = doc.nodes.iter_mut().find(|n| &n.name == node) {
                return Ok(Located::Node {
                    name: node.clone(),
                    attrs: &mut n.attributes,
                });
            }
            let r = dtk_model::ComponentRef::local(node);
            let refs: Vec<String> = doc
                .components
                .iter()
                .map(|c| c.reference.to_string())
                .collect();
            match doc.components.iter_mut().find(|c| component_matches(c, &r)) {
                Some(c) => Ok(Located::Component {
                    node: None,
                    reference: c.reference.clone(),
                    attrs: &mut c.attributes,
                }),
                None => Err(no_owner(
                    path,
                    MissingOwner::NodeOrComponent {
                        name: node.clone(),
                        nodes: node_names,
                        components: refs,
                    },
                )),
            }
        }
        (Some(node), Some(r)) => {
            let Some(n) = doc.nodes.iter_mut().find(|n| &n.name == node) else {
                return Err(no_owner(
                    path,
                    MissingOwner::Node {
                        node: node.clone(),
                        nodes: node_names,
                    },
                ));
            };
            let on_node: Vec<String> = n
                .components
                .iter()
                .map(|c| c.reference.to_string())
                .collect();
            let NodeDecl { components, .. } = n;
            match components.iter_mut().find(|c| component_matches(c, r)) {
                Some(c) => Ok(Located::Component {
                    node: Some(node.clone()),
                    reference: c.reference.clone(),
                    attrs: &mut c.attributes,
                }),
                None => Err(no_owner(
                    path,
                    MissingOwner::ComponentOnNode {
                        node: node.clone(),
                        component: r.to_string(),
                        on_node,
                    },
                )),
            }
        }
        (None, Some(r)) => {
            let refs: Vec<String> = doc
                .components
                .iter()
                .map(|c| c.reference.to_string())
                .collect();
            match doc.components.iter_mut().find(|c| component_matches(c, r)) {
                Some(c) => Ok(Located::Component {
                    node: None,
                    reference: c.reference.clone(),
                    attrs: &mut c.attributes,
                }),
                None => Err(no_owner(
                    path,
                    MissingOwner::Component {
                        component: r.to_string(),
                        components: refs,
                    },
                )),
            }
        }
        (None, None) => Err(no_owner(path, MissingOwner::Nothing)),
    }
}

fn no_owner(path: &AttrPath, missing: MissingOwner) -> InstanceError {
    InstanceError::NoSuchOwner(Box::new(NoSuchOwner {
        path: path.to_string(),
        missing,
    }))
}

/// A module manifest's parse: why it could not be read, else the parser's answer.
type Parsed = Result<Result<Module, dtk_model::DslError>, InstanceError>;

/// A module manifest to parse: its instance-copy directory (`modules/NS/NAME`), the file
/// name its problems are reported against, and its text (or why it could not be read).
struct Manifest {
    dir: String,
    file: String,
    text: Result<String, InstanceError>,
}

/// The manifests of the instance copies in the work tree `dir`
/// (`modules/NS/NAME/dtk.module.yaml`).
fn worktree_manifests(dir: &Path) -> Vec<Manifest> {
    let subdirs = |p: &Path| -> Vec<(String, PathBuf)> {
        fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (ns, ns_dir) in subdirs(&dir.join("modules")) {
        for (name, module_dir) in subdirs(&ns_dir) {
            let p = module_dir.join("dtk.module.yaml");
            if p.is_file() {
                out.push(Manifest {
                    dir: format!("modules/{ns}/{name}"),
                    file: display(&p),
                    text: read_text(&p),
                });
            }
        }
    }
    out
}

/// The parse cache of the service whose private directory (`.dtk`) is `private`: its
/// document and instance copies (a service holds one document and a few copies; the work
/// tree's document and the committed one differ while edits wait).
pub(crate) fn parse_cache_in(private: &Path) -> ParseCache {
    ParseCache::new(private.join("parsed"), 16)
}

/// The parse cache's kind of a service document.
pub(crate) const PARSED_SERVICE: &str = "service";
/// The parse cache's kind of an instance copy's definitions
/// ([`parse_module_defs`](dtk_model::dsl::parse_module_defs)).
pub(crate) const PARSED_DEFS: &str = "defs";

/// Runs `doc` (the parse of a service document of `doc_len` bytes) on this thread while
/// `manifests` parse on another, and gives both results, the modules by directory. Most of
/// reading a large service is parsing, and the two are independent; below a size where a
/// thread would not pay for itself (16 KiB, about a millisecond of parsing), everything
/// runs here.
fn parse_beside<T>(
    doc_len: usize,
    doc: impl FnOnce() -> T,
    manifests: Vec<Manifest>,
    cache: ParseCache,
) -> (T, BTreeMap<String, Parsed>) {
    const WORTH_A_THREAD: usize = 16 * 1024;
    let modules_len: usize = manifests
        .iter()
        .map(|m| m.text.as_ref().map_or(0, String::len))
        .sum();
    let parse_all = move || -> Vec<(String, Parsed)> {
        manifests
            .into_iter()
            .map(|m| {
                let parsed = m.text.map(|text| {
                    cache.get_or_parse(PARSED_DEFS, &text, || {
                        dtk_model::dsl::parse_module_defs(&text, &m.file)
                    })
                });
                (m.dir, parsed)
            })
            .collect()
    };
    let (doc, modules) = if doc_len.min(modules_len) >= WORTH_A_THREAD {
        std::thread::scope(|scope| {
            let modules = scope.spawn(parse_all);
            let doc = doc();
            // A panic in a parse is a bug: it goes on as one, on this thread.
            let modules = modules
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (doc, modules)
        })
    } else {
        (doc(), parse_all())
    };
    (doc, modules.into_iter().collect())
}

fn read_text(p: &Path) -> Result<String, InstanceError> {
    let data = fs::read(p).map_err(io_err(p, "read"))?;
    String::from_utf8(data).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        InstanceError::Dsl(dtk_model::DslError::single(dtk_model::Diagnostic {
            file: display(p),
            location: dtk_model::Location {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: 1,
                offset: valid,
            },
            key: String::new(),
            message: format!("the file is not valid UTF-8 (byte {valid})"),
            help: None,
        }))
    })
}

pub(crate) fn display(p: &Path) -> String {
    p.display().to_string()
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One line of `dtk service list`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    /// The instance's name.
    pub name: String,
    /// Whether it is a target instance.
    pub is_target: bool,
    /// The module, version and assembly it was staged from, as `ns/name@ver assembly`.
    pub staged_from: Option<String>,
    /// The target it is deployed into.
    pub target: Option<String>,
    /// The outcome of its last converge, if any (`succeeded`, `failed`, `interrupted`).
    pub last_converge: Option<String>,
    /// Its instance repository.
    pub dir: PathBuf,
}

/// Opening service instances: here rather than in `home.rs`, which then needs nothing of
/// this module (a service holds its home).
impl Home {
    /// Opens service instance `name`.
    pub fn service(&self, name: &str) -> Result<Service, InstanceError> {
        check_name("service name", name)?;
        let dir = self.service_dir(name);
        if !dir.join(".git").is_dir() {
            return Err(InstanceError::NoSuchService {
                name: name.to_owned(),
            });
        }
        Service::open(self.clone(), name, &dir)
    }

    /// Every service instance, by name.
    pub fn services(&self) -> Result<Vec<ServiceSummary>, InstanceError> {
        let dir = self.root().join("services");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err(&dir, "list"))?
            .filter_map(Result::ok)
            .filter(|e| e.path().join(".git").is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let svc = self.service(&name)?;
            out.push(svc.summary()?);
        }
        Ok(out)
    }

    /// Every target instance's name (the built-in `local` included once it exists).
    pub fn targets(&self) -> Result<Vec<ServiceSummary>, InstanceError> {
        Ok(self
            .services()?
            .into_iter()
            .filter(|s| s.is_target)
            .collect())
    }
}
