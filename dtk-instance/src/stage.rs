//! Staging: an assembly of a published module becomes a service instance with its own
//! repository, instance copies of every module it uses, customized to its target.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use dtk_catalog::MANIFEST;
use dtk_model::expand::{ExternalComponent, ModuleSet, NodeRealizer, TargetBinding, expand};
use dtk_model::ident::check_name;
use dtk_model::service::{SERVICE_FILE, ServiceDoc, StagedFrom};
use dtk_model::{Module, ModuleId, ModuleVersion, VersionReq};
use serde::Serialize;

use crate::error::{InstanceError, NoSuchAssembly, NoSuchResource, VersionConflict};
use crate::home::{Home, LOCAL_TARGET};
use crate::repo::{InstanceRepo, io_err};

/// What to stage.
#[derive(Debug, Clone)]
pub struct StageRequest {
    /// The module holding the assembly.
    pub module: ModuleId,
    /// Which versions of it; `None` takes the latest published.
    pub version: Option<VersionReq>,
    /// The assembly's name.
    pub assembly: String,
    /// The new service instance's name.
    pub name: String,
    /// The target instance to deploy into; `None` uses the default target. Ignored with
    /// `base`.
    pub target: Option<String>,
    /// Stage a target instance (`--base`): no target of its own.
    pub base: bool,
}

/// What staging made.
#[derive(Debug, Clone, Serialize)]
pub struct Staged {
    /// The service instance's name.
    pub name: String,
    /// Its instance repository.
    pub dir: std::path::PathBuf,
    /// The first commit of its repository (hex).
    pub commit: String,
    /// The target it is deployed into.
    pub target: Option<String>,
    /// The pinned modules.
    pub modules: BTreeMap<String, String>,
    /// Nodes after expansion.
    pub nodes: Vec<String>,
    /// Component instances after expansion.
    pub components: Vec<String>,
}

pub use crate::layout::module_path;

impl Home {
    /// Stages `req`: resolves and pins the module closure, expands the assembly against
    /// the target and creates the instance repository. Nothing is written when anything
    /// is refused.
    pub fn stage(&self, req: &StageRequest) -> Result<Staged, InstanceError> {
        check_name("service name", &req.name)?;
        let dir = self.service_dir(&req.name);
        if dir.exists() {
            return Err(InstanceError::ServiceExists {
                name: req.name.clone(),
                path: dir,
            });
        }
        // With a remote: its module versions first (crate::team).
        self.team_before_stage(&req.name)?;
        let catalog = self.catalog();
        let req_version = match &req.version {
            Some(v) => v.clone(),
            None => {
                let latest = catalog.latest(&req.module)?;
                exact(&latest)?
            }
        };
        // Resolving parses every module of the closure: those are the modules staged.
        let (resolution, mut parsed) = catalog.resolve_modules(&req.module, &req_version)?;
        let mut modules = ModuleSet::new();
        let mut pins: BTreeMap<ModuleId, ModuleVersion> = BTreeMap::new();
        let mut trees: Vec<(String, gix::ObjectId)> = Vec::new();
        for (id, rm) in &resolution.modules {
            let tree = catalog.tree_id(id, &rm.version)?;
            let module = match parsed.remove(id) {
                Some(module) => module,
                None => self.catalog_module(id, &rm.version)?,
            };
            modules.insert(module);
            pins.insert(id.clone(), rm.version.clone());
            trees.push((module_path(id), tree));
        }
        let (root_id, root_version) = resolution.root.clone();
        let root = modules
            .get(&root_id)
            .ok_or_else(|| InstanceError::ModuleNotResolved {
                module: root_id.clone(),
            })?;
        let Some(assembly) = root.assemblies.get(&req.assembly).cloned() else {
            return Err(InstanceError::NoSuchAssembly(Box::new(NoSuchAssembly {
                module: root_id,
                version: root_version,
                assembly: req.assembly.clone(),
                staged: None,
                known: root.assemblies.keys().cloned().collect(),
            })));
        };

        let target_name = if req.base {
            None
        } else {
            Some(match &req.target {
                Some(t) => t.clone(),
                None => self.default_target()?,
            })
        };
        let binding = match &target_name {
            Some(t) => {
                if t == LOCAL_TARGET {
                    self.ensure_local_target()?;
                }
                let binding = self.target_binding(t, true)?;
                // The module realizing nodes joins the service's pinned modules.
                // The module realizing nodes, and its own dependency closure, join the
                // service's pinned modules.
                for (id, version, tree, module) in self.node_modules(t, &binding)? {
                    match pins.get(&id) {
                        Some(v) if v != &version => {
                            return Err(InstanceError::VersionConflict(Box::new(
                                VersionConflict::Target {
                                    module: id,
                                    pinned: v.clone(),
                                    target: t.to_string(),
                                    realized: version,
                                },
                            )));
                        }
                        Some(_) => {}
                        None => {
                            pins.insert(id.clone(), version);
                            trees.push((module_path(&id), tree));
                            modules.insert(module);
                        }
                    }
                }
                Some(binding)
            }
            None => None,
        };

        let mut doc = ServiceDoc {
            dsl_version: dtk_model::module::DSL_VERSION.to_owned(),
            name: req.name.clone(),
            staged_from: Some(StagedFrom {
                module: root_id.clone(),
                version: root_version.clone(),
                assembly: req.assembly.clone(),
            }),
            target: target_name.clone(),
            is_target: req.base,
            dependencies: pins.clone(),
            nodes: assembly.nodes,
            components: assembly.components,
            workflows: assembly.workflows,
            at: Default::default(),
        };
        let (text, located) = dtk_model::dsl::write_service_located(&mut doc);
        // What is written must read back and expand: refuse now rather than leave a
        // broken instance behind. (Reading back is what `write_service_located` vouches
        // for, see `read_back_and_expand`; the expansion is done here either way.)
        // Beside the expansion: the copies' definitions, as the service's first plan or
        // converge reads them, for its parse cache. They come from the modules resolving
        // parsed (`Module::defs_only` is what `parse_module_defs` of the same text
        // gives, a tested property): parsing a 5.5 MB module's text again took 0.22 s.
        let copies = || -> Vec<(String, Vec<u8>)> {
            pins.iter()
                .filter_map(|(id, version)| {
                    let bytes = catalog.read_file(id, version, MANIFEST).ok()?;
                    let text = String::from_utf8(bytes).ok()?;
                    let defs = modules.get(id)?.defs_only();
                    Some((text, dtk_model::cache::encode(&defs).ok()?))
                })
                .collect()
        };
        let (entry, model, copies) =
            read_back_and_expand(doc, &text, located, &modules, binding.as_ref(), copies)?;
        self.check_providers(&model)?;

        let scratch = self.scratch_dir(&format!("stage-{}", req.name));
        let message = format!(
            "stage {}@{} {} as {}{}",
            root_id,
            root_version,
            req.assembly,
            req.name,
            target_name
                .as_deref()
                .map(|t| format!(" on target {t}"))
                .unwrap_or_default()
        );
        let created = InstanceRepo::create(
            &scratch,
            &[self.catalog().objects_dir()],
            &[(SERVICE_FILE, text.as_bytes())],
            &trees,
            &message,
        );
        if created.is_ok() {
            // The first converge or plan reads the document and the copies back from the
            // parse cache.
            let cache = crate::service::parse_cache_in(&scratch.join(crate::repo::PRIVATE_DIR));
            if let Some(entry) = &entry {
                cache.put_entry(crate::service::PARSED_SERVICE, &text, entry);
            }
            for (copy, entry) in &copies {
                cache.put_entry(crate::service::PARSED_DEFS, copy, entry);
            }
        }
        let repo = match created {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        let commit = repo.head()?;
        drop(repo);
        if let Err(e) = fs::rename(&scratch, &dir) {
            let _ = fs::remove_dir_all(&scratch);
            if dir.exists() {
                return Err(InstanceError::ServiceExists {
                    name: req.name.clone(),
                    path: dir,
                });
            }
            return Err(io_err(&dir, "create")(e));
        }
        // With a remote: pushed there, or undone (crate::team).
        self.team_after_stage(&req.name)?;
        Ok(Staged {
            name: req.name.clone(),
            dir,
            commit: commit.to_string(),
            target: target_name,
            modules: pins
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nodes: model.nodes.iter().map(|n| n.name.clone()).collect(),
            components: model.components.iter().map(|c| c.id.to_string()).collect(),
        })
    }

    /// Refuses a service whose `provider:` actions name a provider kind that is not
    /// registered, or a resource type its provider says it does not have.
    pub(crate) fn check_providers(
        &self,
        model: &dtk_model::ServiceModel,
    ) -> Result<(), InstanceError> {
        let providers = self.providers();
        for c in &model.components {
            for action in c.def.actions.values() {
                let dtk_model::ActionKind::Provider { kind, resource } = &action.kind else {
                    continue;
                };
                let Some(p) = providers.get(kind) else {
                    return Err(InstanceError::MissingProvider(Box::new(
                        crate::error::MissingProvider {
                            component: c.id.to_string(),
                            module: c.module.to_string(),
                            action: action.name.clone(),
                            kind: kind.clone(),
                            available: providers.kinds().map(str::to_owned).collect(),
                            search: providers.search().clone(),
                        },
                    )));
                };
                let known = p.resources();
                if !known.is_empty() && !known.iter().any(|r| r == resource) {
                    return Err(InstanceError::NoSuchResource(Box::new(NoSuchResource {
                        component: c.id.to_string(),
                        module: c.module.to_string(),
                        action: action.name.clone(),
                        kind: kind.clone(),
                        resource: resource.clone(),
                        known: known.to_vec(),
                    })));
                }
            }
        }
        Ok(())
    }

    /// Reads and parses a module version's `dtk.module.yaml` from the catalog (without
    /// listing its files).
    pub(crate) fn catalog_module(
        &self,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<Module, InstanceError> {
        let data = self.catalog().read_file(id, version, "dtk.module.yaml")?;
        let text = String::from_utf8_lossy(&data);
        Ok(dtk_model::dsl::parse_module(
            &text,
            &format!("{id}@{version}:dtk.module.yaml"),
        )?)
    }

    /// What target `name` offers services staged on it. With `require_converged`, a
    /// target that has never converged successfully is refused.
    pub fn target_binding(
        &self,
        name: &str,
        require_converged: bool,
    ) -> Result<TargetBinding, InstanceError> {
        let svc = self.service(name).map_err(|e| match e {
            InstanceError::NoSuchService { .. } => InstanceError::NoSuchTarget {
                name: name.to_owned(),
            },
            other => other,
        })?;
        if !svc.is_target()? {
            return Err(InstanceError::NotATarget {
                name: name.to_owned(),
            });
        }
        if require_converged && !svc.has_converged()? {
            return Err(InstanceError::TargetNotConverged {
                name: name.to_owned(),
            });
        }
        let (doc, modules) = svc.committed_doc_and_modules()?;
        let actual = svc.actual_values()?;
        let mut binding = TargetBinding {
            service: name.to_owned(),
            ..Default::default()
        };
        // The node component comes from the target's assembly in its pinned root module.
        if let Some(sf) = &doc.staged_from
            && let Some(asm) = modules
                .get(&sf.module)
                .and_then(|m| m.assemblies.get(&sf.assembly))
            && let Some(r) = &asm.node_component
        {
            let found = resolve_component_module(&modules, r, &sf.module)?;
            binding.node_component = Some(NodeRealizer {
                module: found,
                reference: r.clone(),
            });
        }
        let model = expand(&doc, &modules, None, SERVICE_FILE)?;
        for c in &model.components {
            let mut values = c.inputs.clone();
            if let Some(out) = actual.get(c.id.as_str()) {
                values.extend(out.clone());
            }
            binding.components.push(ExternalComponent {
                service: name.to_owned(),
                id: c.id.clone(),
                module: c.module.clone(),
                def_name: c.def.name.clone(),
                values,
            });
        }
        // A target staged on another target offers that one's components too.
        if let Some(base) = &doc.target
            && base != name
        {
            let inner = self.target_binding(base, false)?;
            binding.components.extend(inner.components);
            if binding.node_component.is_none() {
                binding.node_component = inner.node_component;
            }
        }
        Ok(binding)
    }

    /// The module realizing nodes on target `t` and its dependency closure, at the
    /// versions the target pins (read from the catalog: the service's repository borrows
    /// objects from the catalog only).
    fn node_modules(
        &self,
        t: &str,
        binding: &TargetBinding,
    ) -> Result<Vec<(ModuleId, ModuleVersion, gix::ObjectId, Module)>, InstanceError> {
        let Some(nr) = &binding.node_component else {
            return Ok(Vec::new());
        };
        let doc = self.service(t)?.committed_doc()?;
        let Some(version) = doc.dependencies.get(&nr.module).cloned() else {
            return Ok(Vec::new());
        };
        let resolution = self.catalog().resolve(&nr.module, &exact(&version)?)?;
        let mut out = Vec::new();
        for (id, rm) in resolution.modules {
            let v = doc.dependencies.get(&id).cloned().unwrap_or(rm.version);
            let tree = self.catalog().tree_id(&id, &v)?;
            let module = self.catalog_module(&id, &v)?;
            out.push((id, v, tree, module));
        }
        Ok(out)
    }

    /// Publishes a module shipped inside the program (its `dtk.module.yaml` text) unless
    /// the catalog has that version already. Returns the parsed module.
    pub fn ensure_bundled_module(&self, text: &str, file: &str) -> Result<Module, InstanceError> {
        // On every start: a cached parse, and one stat when the version is there.
        let module = self.catalog().parse_manifest(text, file)?;
        if !self.catalog().has_version(&module.id, &module.version) {
            let tmp = self.scratch_dir("bundled");
            fs::create_dir_all(&tmp).map_err(io_err(&tmp, "create"))?;
            let manifest = tmp.join("dtk.module.yaml");
            fs::write(&manifest, text).map_err(io_err(&manifest, "write"))?;
            let published = self.catalog().publish(&tmp);
            let _ = fs::remove_dir_all(&tmp);
            match published {
                Ok(_) => {}
                // Another process published the same text at the same time: fine.
                Err(e)
                    if self
                        .catalog()
                        .versions(&module.id)
                        .unwrap_or_default()
                        .contains(&module.version) =>
                {
                    let _ = e;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(module)
    }

    /// Makes sure the built-in `local` target exists and has converged: publishes the
    /// bundled `dtk/local` module and stages and converges its `target` assembly as the
    /// `local` target instance, the first time.
    pub fn ensure_local_target(&self) -> Result<(), InstanceError> {
        let dir = self.service_dir(LOCAL_TARGET);
        if dir.join(".git").is_dir() {
            let svc = self.service(LOCAL_TARGET)?;
            if svc.has_converged()? {
                return Ok(());
            }
            return svc.mark_converged_empty();
        }
        let module = self.ensure_bundled_module(
            dtk_target_local::DTK_LOCAL_MODULE,
            "dtk/local/dtk.module.yaml",
        )?;
        let staged = self.stage(&StageRequest {
            module: module.id.clone(),
            version: Some(exact(&module.version)?),
            assembly: "target".to_owned(),
            name: LOCAL_TARGET.to_owned(),
            target: None,
            base: true,
        });
        match staged {
            Ok(_) => {}
            // Another process staged it at the same time: fine.
            Err(InstanceError::ServiceExists { .. }) => {}
            Err(e) => return Err(e),
        }
        self.service(LOCAL_TARGET)?.mark_converged_empty()
    }
}

fn resolve_component_module(
    modules: &ModuleSet,
    r: &dtk_model::ComponentRef,
    from: &ModuleId,
) -> Result<ModuleId, InstanceError> {
    let candidates: Vec<&Arc<Module>> = match &r.module {
        Some(name) => modules.by_name(name),
        None => modules.get(from).into_iter().collect(),
    };
    candidates
        .iter()
        .find(|m| m.components.contains_key(&r.name))
        .map(|m| m.id.clone())
        .ok_or_else(|| InstanceError::UndefinedNodeComponent {
            component: r.to_string(),
        })
}

/// A requirement matching exactly `v`.
pub fn exact(v: &ModuleVersion) -> Result<VersionReq, InstanceError> {
    let text = match v {
        ModuleVersion::Semver(s) => format!("={s}"),
        ModuleVersion::Tag(t) => t.clone(),
    };
    text.parse().map_err(InstanceError::InvalidName)
}

/// The service model of document `doc`, written as `text`, with the parse cache's entry
/// for `text` (when it could be made) and what `beside` returns.
///
/// When `located` (`doc` holds the locations [`write_service_located`] found in `text`,
/// which are what a parse of `text` gives), `doc` is the entry and is expanded: the text
/// is not read back. (It was, on a second thread, and on a 100,000-component service that
/// parse was the critical path: 0.57 s of a 0.93 s stage.) The writer's agreement with the
/// parser is a tested property (`dtk-model`'s round-trip tests); builds with debug
/// assertions, which the tests run, read the text back and check it here too.
///
/// Otherwise the text is read back on another thread while `doc` itself expands on this
/// one, which then runs `beside`; the read-back, equal to `doc` but for source locations,
/// stands for what expands the same (locations are cleared in place on both sides: no
/// copy of either). Anything else (a read-back that differs, an expansion that fails)
/// goes the plain way, reading back again and expanding that, so that errors are located
/// in the written text, as they always were.
///
/// [`write_service_located`]: dtk_model::dsl::write_service_located
fn read_back_and_expand<R>(
    mut doc: ServiceDoc,
    text: &str,
    located: bool,
    modules: &ModuleSet,
    binding: Option<&TargetBinding>,
    beside: impl FnOnce() -> R,
) -> Result<(Option<Vec<u8>>, dtk_model::ServiceModel, R), InstanceError> {
    const WORTH_A_THREAD: usize = 64 * 1024;
    let plain = || -> Result<(Option<Vec<u8>>, dtk_model::ServiceModel), InstanceError> {
        let reread = dtk_model::dsl::parse_service(text, SERVICE_FILE)?;
        let model = expand(&reread, modules, binding, SERVICE_FILE)?;
        Ok((dtk_model::cache::encode(&reread).ok(), model))
    };
    if located {
        #[cfg(debug_assertions)]
        {
            let reread = dtk_model::dsl::parse_service(text, SERVICE_FILE)?;
            debug_assert!(
                reread == doc,
                "write_service_located disagrees with the parser on this document:\n{text}"
            );
        }
        let entry = dtk_model::cache::encode(&doc).ok();
        let model = expand(&doc, modules, binding, SERVICE_FILE)?;
        return Ok((entry, model, beside()));
    }
    if text.len() < WORTH_A_THREAD {
        let (entry, model) = plain()?;
        return Ok((entry, model, beside()));
    }
    let (reread, model, also) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            dtk_model::dsl::parse_service(text, SERVICE_FILE).map(|mut r| {
                let entry = dtk_model::cache::encode(&r).ok();
                r.clear_locations();
                (r, entry)
            })
        });
        let model = expand(&doc, modules, binding, SERVICE_FILE);
        doc.clear_locations();
        let also = beside();
        // A panic in a parse is a bug: it goes on as one, on this thread.
        let reread = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (reread, model, also)
    });
    let (cleared, entry) = reread?;
    match model {
        Ok(model) if cleared == doc => Ok((entry, model, also)),
        _ => plain().map(|(entry, model)| (entry, model, also)),
    }
}
