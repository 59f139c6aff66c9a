//! Dependency resolution: a module version and the versions of its whole dependency
//! closure.

use std::collections::{BTreeMap, HashMap};

use dtk_model::{Module, ModuleId, ModuleVersion, VersionReq};
use gix::ObjectId;

use crate::{Catalog, CatalogError, Requirement, ResolveError};

/// One module of a [`Resolution`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModule {
    /// The version selected.
    pub version: ModuleVersion,
    /// Its commit (hex).
    pub commit: String,
    /// Its tree, the module's files (hex).
    pub tree: String,
    /// Every requirement on the module from the resolved closure (for the root module,
    /// the request itself first).
    pub required_by: Vec<Requirement>,
}

/// The result of [`Catalog::resolve`]: a root module version and the versions of its
/// dependency closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The module asked for, at the version selected.
    pub root: (ModuleId, ModuleVersion),
    /// Every module of the closure, the root included, ordered by module id.
    pub modules: BTreeMap<ModuleId, ResolvedModule>,
}

/// Where resolution reads the published versions of modules and their dependencies:
/// the catalog, or (in tests) a table in memory.
pub(crate) trait Source {
    /// The published versions of `id`, ascending; empty when it is not published.
    fn versions(&mut self, id: &ModuleId) -> Result<Vec<ModuleVersion>, ResolveError>;
    /// The dependencies `id` at `version` declares, in declaration order.
    fn dependencies(
        &mut self,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<Vec<(ModuleId, VersionReq)>, ResolveError>;
}

/// The versions selected for a closure, with the requirements on each (the root's
/// first requirement is the request).
pub(crate) type Selection = BTreeMap<ModuleId, (ModuleVersion, Vec<Requirement>)>;

/// What resolution needs of one module version.
struct Loaded {
    commit: ObjectId,
    tree: ObjectId,
    dependencies: Vec<(ModuleId, VersionReq)>,
    /// The module, parsed (given to [`Catalog::resolve_modules`]'s caller).
    module: Module,
}

struct Resolver<'a> {
    catalog: &'a Catalog,
    repo: gix::Repository,
    versions: HashMap<ModuleId, Vec<ModuleVersion>>,
    loaded: HashMap<(ModuleId, ModuleVersion), Loaded>,
}

impl Source for Resolver<'_> {
    fn versions(&mut self, id: &ModuleId) -> Result<Vec<ModuleVersion>, ResolveError> {
        if !self.versions.contains_key(id) {
            let vs = self
                .catalog
                .versions(id)
                .map_err(|source| ResolveError::Catalog {
                    module: id.clone(),
                    source: Box::new(source),
                })?;
            self.versions.insert(id.clone(), vs);
        }
        Ok(self.versions.get(id).cloned().unwrap_or_default())
    }

    fn dependencies(
        &mut self,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<Vec<(ModuleId, VersionReq)>, ResolveError> {
        Ok(self.load(id, version)?.dependencies.clone())
    }
}

impl Resolver<'_> {
    fn load(&mut self, id: &ModuleId, version: &ModuleVersion) -> Result<&Loaded, ResolveError> {
        let key = (id.clone(), version.clone());
        if !self.loaded.contains_key(&key) {
            let wrap = |source: CatalogError| ResolveError::Catalog {
                module: id.clone(),
                source: Box::new(source),
            };
            let commit = self
                .catalog
                .version_commit(&self.repo, id, version)
                .map_err(wrap)?;
            let (module, tree) = self
                .catalog
                .load_module(&self.repo, commit, id, version)
                .map_err(wrap)?;
            let dependencies = module
                .dependencies
                .iter()
                .map(|d| (d.module.clone(), d.req.clone()))
                .collect();
            self.loaded.insert(
                key.clone(),
                Loaded {
                    commit,
                    tree,
                    dependencies,
                    module,
                },
            );
        }
        self.loaded.get(&key).ok_or_else(|| ResolveError::Catalog {
            module: id.clone(),
            source: Box::new(CatalogError::ModuleNotFound { module: id.clone() }),
        })
    }
}

impl Catalog {
    /// Resolves `root` at the highest published version matching `req`, and its whole
    /// dependency closure.
    ///
    /// Each dependency gets the highest published version that matches every
    /// requirement on it from the modules selected so far. Selection repeats until it no
    /// longer changes (a new selection can bring new requirements). There is no
    /// backtracking: a version, once it is the highest match, is not given up to try a
    /// lower one that would avoid a conflict further down, so a closure that only a lower
    /// version of some module would make consistent is reported as a conflict (pin that
    /// module's version to resolve it). Development versions match only a requirement
    /// that names them exactly (`master`).
    ///
    /// Errors name the module and who requires what: [`ResolveError::ModuleNotFound`],
    /// [`ResolveError::NoMatchingVersion`] (listing the published versions),
    /// [`ResolveError::Conflict`] (listing every requirement), and
    /// [`ResolveError::Unsettled`] when selections cycle.
    pub fn resolve(&self, root: &ModuleId, req: &VersionReq) -> Result<Resolution, ResolveError> {
        Ok(self.resolve_modules(root, req)?.0)
    }

    /// [`Catalog::resolve`], and the resolved modules, parsed: resolving reads and parses
    /// every module of the closure, and a caller that needs them (staging) need not do it
    /// again.
    pub fn resolve_modules(
        &self,
        root: &ModuleId,
        req: &VersionReq,
    ) -> Result<(Resolution, BTreeMap<ModuleId, Module>), ResolveError> {
        let mut r = Resolver {
            catalog: self,
            repo: self.repo().map_err(|source| ResolveError::Catalog {
                module: root.clone(),
                source: Box::new(source),
            })?,
            // One scan of the tags answers every `versions` question of the resolution.
            versions: self
                .list()
                .map_err(|source| ResolveError::Catalog {
                    module: root.clone(),
                    source: Box::new(source),
                })?
                .into_iter()
                .map(|m| (m.id, m.versions))
                .collect(),
            loaded: HashMap::new(),
        };
        let selection = select(&mut r, root, req)?;
        let mut modules = BTreeMap::new();
        let mut parsed = BTreeMap::new();
        let mut root_version = None;
        for (m, (v, required_by)) in selection {
            r.load(&m, &v)?;
            let key = (m.clone(), v.clone());
            let Some(loaded) = r.loaded.remove(&key) else {
                return Err(ResolveError::Catalog {
                    module: m.clone(),
                    source: Box::new(CatalogError::ModuleNotFound { module: m }),
                });
            };
            parsed.insert(m.clone(), loaded.module);
            if &m == root {
                root_version = Some(v.clone());
            }
            modules.insert(
                m,
                ResolvedModule {
                    version: v,
                    commit: loaded.commit.to_string(),
                    tree: loaded.tree.to_string(),
                    required_by,
                },
            );
        }
        let root_version = root_version.ok_or_else(|| ResolveError::ModuleNotFound {
            module: root.clone(),
            required_by: Box::new(Requirement {
                by: None,
                req: req.clone(),
            }),
        })?;
        Ok((
            Resolution {
                root: (root.clone(), root_version),
                modules,
            },
            parsed,
        ))
    }
}

/// The selection algorithm of [`Catalog::resolve`], over any [`Source`]: pure apart from
/// what the source reads.
pub(crate) fn select(
    source: &mut dyn Source,
    root: &ModuleId,
    req: &VersionReq,
) -> Result<Selection, ResolveError> {
    let root_req = Requirement {
        by: None,
        req: req.clone(),
    };
    let available = source.versions(root)?;
    if available.is_empty() {
        return Err(ResolveError::ModuleNotFound {
            module: root.clone(),
            required_by: Box::new(root_req),
        });
    }
    let candidates: Vec<ModuleVersion> = available
        .iter()
        .rev()
        .filter(|v| req.matches(v))
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Err(ResolveError::NoMatchingVersion {
            module: root.clone(),
            required_by: Box::new(root_req),
            available,
        });
    }
    // The highest version of the root the request allows whose dependencies resolve: a
    // newer root whose dependencies cannot be met (one of them requiring an older root,
    // say) gives way to an older one. When none resolves, the highest one's error.
    let mut first_error = None;
    for root_version in candidates {
        match select_pinned(source, root, &root_req, root_version) {
            Ok(sel) => return Ok(sel),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    Err(first_error.unwrap_or(ResolveError::Unsettled {
        modules: vec![root.clone()],
    }))
}

/// [`select`] with the root pinned at `root_version`.
fn select_pinned(
    source: &mut dyn Source,
    root: &ModuleId,
    root_req: &Requirement,
    root_version: ModuleVersion,
) -> Result<Selection, ResolveError> {
    let mut selected = BTreeMap::from([(root.clone(), root_version.clone())]);
    let mut history: Vec<BTreeMap<ModuleId, ModuleVersion>> = Vec::new();
    loop {
        let reqs = requirements(source, root, root_req, &selected)?;
        let mut next = BTreeMap::new();
        let mut first_error = None;
        for (m, rs) in &reqs {
            let available = source.versions(m)?;
            let chosen = if m == root {
                rs.iter()
                    .all(|q| q.req.matches(&root_version))
                    .then(|| root_version.clone())
            } else {
                available
                    .iter()
                    .rev()
                    .find(|v| rs.iter().all(|q| q.req.matches(v)))
                    .cloned()
            };
            match chosen {
                Some(v) => {
                    next.insert(m.clone(), v);
                }
                None => {
                    if first_error.is_none() {
                        first_error = Some(unsatisfiable(m, rs, &available, &root_version));
                    }
                    // Keep the previous choice while other selections may still change
                    // the requirements; report the error if nothing changes.
                    if let Some(v) = selected.get(m) {
                        next.insert(m.clone(), v.clone());
                    }
                }
            }
        }
        if next == selected {
            if let Some(e) = first_error {
                return Err(e);
            }
            let mut reqs = reqs;
            return Ok(selected
                .into_iter()
                .map(|(m, v)| {
                    let rs = reqs.remove(&m).unwrap_or_default();
                    (m, (v, rs))
                })
                .collect());
        }
        if let Some(start) = history.iter().position(|s| s == &next) {
            if let Some(e) = first_error {
                return Err(e);
            }
            // The selections from `next` on repeat forever.
            let mut cycle: Vec<&BTreeMap<ModuleId, ModuleVersion>> =
                history[start..].iter().collect();
            cycle.push(&selected);
            let mut modules: Vec<ModuleId> = cycle
                .iter()
                .flat_map(|s| s.keys())
                .filter(|m| {
                    let first = cycle.first().and_then(|s| s.get(*m));
                    cycle.iter().any(|s| s.get(*m) != first)
                })
                .cloned()
                .collect();
            modules.sort();
            modules.dedup();
            return Err(ResolveError::Unsettled { modules });
        }
        history.push(selected);
        selected = next;
    }
}

/// The requirements on every module reachable from the root through the current
/// selection, in discovery order (breadth first, dependencies in declaration order).
fn requirements(
    source: &mut dyn Source,
    root: &ModuleId,
    root_req: &Requirement,
    selected: &BTreeMap<ModuleId, ModuleVersion>,
) -> Result<BTreeMap<ModuleId, Vec<Requirement>>, ResolveError> {
    let mut reqs: BTreeMap<ModuleId, Vec<Requirement>> = BTreeMap::new();
    reqs.insert(root.clone(), vec![root_req.clone()]);
    let mut queue = std::collections::VecDeque::from([root.clone()]);
    let mut seen = std::collections::BTreeSet::from([root.clone()]);
    while let Some(m) = queue.pop_front() {
        let Some(v) = selected.get(&m) else { continue };
        let deps = source.dependencies(&m, v)?;
        for (dep, req) in deps {
            reqs.entry(dep.clone()).or_default().push(Requirement {
                by: Some((m.clone(), v.clone())),
                req,
            });
            if selected.contains_key(&dep) && seen.insert(dep.clone()) {
                queue.push_back(dep);
            }
        }
    }
    Ok(reqs)
}

/// The error for a module that no published version satisfies.
fn unsatisfiable(
    m: &ModuleId,
    rs: &[Requirement],
    available: &[ModuleVersion],
    root_version: &ModuleVersion,
) -> ResolveError {
    if available.is_empty() {
        return ResolveError::ModuleNotFound {
            module: m.clone(),
            required_by: Box::new(rs.first().cloned().unwrap_or(Requirement {
                by: None,
                req: VersionReq::Tag(root_version.to_string()),
            })),
        };
    }
    if let Some(q) = rs
        .iter()
        .find(|q| !available.iter().any(|v| q.req.matches(v)))
    {
        return ResolveError::NoMatchingVersion {
            module: m.clone(),
            required_by: Box::new(q.clone()),
            available: available.to_vec(),
        };
    }
    ResolveError::Conflict {
        module: m.clone(),
        requirements: rs.to_vec(),
        available: available.to_vec(),
    }
}
