//! Reading the catalog: listing modules and versions, a version's model and files.

use std::collections::BTreeMap;

use dtk_model::{Module, ModuleId, ModuleVersion};
use gix::ObjectId;

use crate::files::{FileEntry, MANIFEST};
use crate::publish::{ref_target, tag_name};
use crate::{Catalog, CatalogError};

/// A module of the catalog and its published versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSummary {
    /// The module.
    pub id: ModuleId,
    /// Its published versions, ascending: releases by semver, then development versions
    /// by name.
    pub versions: Vec<ModuleVersion>,
}

/// One published module version, read back from the catalog.
#[derive(Debug, Clone)]
pub struct PublishedModule {
    /// The stored `dtk.module.yaml`, parsed and validated.
    pub module: Module,
    /// The version's commit (hex).
    pub commit: String,
    /// The commit's tree, the module's files (hex). Instance copies are built from it.
    pub tree: String,
    /// When the version was published (its commit time), in seconds since the Unix epoch.
    pub published_at: i64,
    /// Every file of the version, by path.
    pub files: Vec<FileEntry>,
}

impl Catalog {
    /// Every module of the catalog with its versions, ordered by module id.
    pub fn list(&self) -> Result<Vec<ModuleSummary>, CatalogError> {
        let repo = self.repo()?;
        let mut modules: BTreeMap<ModuleId, Vec<ModuleVersion>> = BTreeMap::new();
        let platform = repo.references().map_err(|source| CatalogError::Git {
            action: "list the catalog's tags".to_owned(),
            source,
        })?;
        let iter = platform.tags().map_err(|source| CatalogError::Git {
            action: "list the catalog's tags".to_owned(),
            source,
        })?;
        for r in iter {
            let r = r.map_err(|e| CatalogError::Git {
                action: "list the catalog's tags".to_owned(),
                source: e,
            })?;
            let name = r.name().as_bstr().to_string();
            if let Some((id, version)) = parse_tag(&name) {
                modules.entry(id).or_default().push(version);
            }
        }
        Ok(modules
            .into_iter()
            .map(|(id, mut versions)| {
                versions.sort();
                ModuleSummary { id, versions }
            })
            .collect())
    }

    /// Whether version `version` of `id` is published.
    pub fn has_version(&self, id: &ModuleId, version: &ModuleVersion) -> bool {
        // A loose tag (what publishing writes, and moves last): one stat, no repository to
        // open. A packed one (after a `git pack-refs`) is found by listing.
        let loose = self
            .root
            .join("refs/tags")
            .join(&id.namespace)
            .join(&id.name)
            .join(version.to_string());
        loose.is_file() || self.versions(id).is_ok_and(|v| v.contains(version))
    }

    /// The published versions of a module, ascending; empty when it is not published.
    pub fn versions(&self, id: &ModuleId) -> Result<Vec<ModuleVersion>, CatalogError> {
        let repo = self.repo()?;
        let prefix = format!("refs/tags/{}/{}/", id.namespace, id.name);
        let platform = repo.references().map_err(|source| CatalogError::Git {
            action: format!("list the versions of {id}"),
            source,
        })?;
        let iter = platform
            .prefixed(prefix.as_str())
            .map_err(|source| CatalogError::Git {
                action: format!("list the versions of {id}"),
                source,
            })?;
        let mut versions = Vec::new();
        for r in iter {
            let r = r.map_err(|e| CatalogError::Git {
                action: format!("list the versions of {id}"),
                source: e,
            })?;
            let name = r.name().as_bstr().to_string();
            if let Some((tid, v)) = parse_tag(&name)
                && &tid == id
            {
                versions.push(v);
            }
        }
        versions.sort();
        Ok(versions)
    }

    /// The version of a module that `dtk module show NS/NAME` shows: the highest
    /// released version, or, when only development versions are published, the last of
    /// them by name.
    pub fn latest(&self, id: &ModuleId) -> Result<ModuleVersion, CatalogError> {
        let versions = self.versions(id)?;
        versions
            .iter()
            .rev()
            .find(|v| !v.is_development())
            .or(versions.last())
            .cloned()
            .ok_or_else(|| CatalogError::ModuleNotFound { module: id.clone() })
    }

    /// One published version: its parsed model, commit, tree and files.
    pub fn get(
        &self,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<PublishedModule, CatalogError> {
        let repo = self.repo()?;
        let commit_id = self.version_commit(&repo, id, version)?;
        let (module, tree) = self.load_module(&repo, commit_id, id, version)?;
        let commit = repo
            .find_commit(commit_id)
            .map_err(|source| CatalogError::Git {
                action: format!("read the commit of {id} {version}"),
                source,
            })?;
        let published_at =
            commit
                .time()
                .map(|t| t.seconds)
                .map_err(|source| CatalogError::Git {
                    action: format!("read the commit time of {id} {version}"),
                    source,
                })?;
        let files = self.list_files(&repo, tree, id, version)?;
        Ok(PublishedModule {
            module,
            commit: commit_id.to_string(),
            tree: tree.to_string(),
            published_at,
            files,
        })
    }

    /// The commit id of a published version.
    pub fn commit_id(
        &self,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<ObjectId, CatalogError> {
        self.version_commit(&self.repo()?, id, version)
    }

    /// The tree id of a published version: the module's files, for building an instance
    /// copy from the catalog's objects (through alternates) without copying contents.
    pub fn tree_id(
        &self,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<ObjectId, CatalogError> {
        let repo = self.repo()?;
        let commit = self.version_commit(&repo, id, version)?;
        self.commit_tree(&repo, commit, id, version)
    }

    /// The contents of one file of a published version; `path` is `/`-separated and
    /// relative to the module's root (`dtk.module.yaml`, `bin/start`).
    pub fn read_file(
        &self,
        id: &ModuleId,
        version: &ModuleVersion,
        path: &str,
    ) -> Result<Vec<u8>, CatalogError> {
        let repo = self.repo()?;
        let commit = self.version_commit(&repo, id, version)?;
        let tree = self.commit_tree(&repo, commit, id, version)?;
        read_blob(&repo, tree, path, id, version)
    }

    /// The commit a version's tag points at, or a not-found error listing what exists.
    pub(crate) fn version_commit(
        &self,
        repo: &gix::Repository,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<ObjectId, CatalogError> {
        match ref_target(repo, &tag_name(id, version))? {
            Some(c) => Ok(c),
            None => {
                let available = self.versions(id)?;
                if available.is_empty() {
                    Err(CatalogError::ModuleNotFound { module: id.clone() })
                } else {
                    Err(CatalogError::VersionNotFound {
                        module: id.clone(),
                        version: version.clone(),
                        available,
                    })
                }
            }
        }
    }

    /// Parses the stored manifest of a version's commit; returns it and the tree id.
    pub(crate) fn load_module(
        &self,
        repo: &gix::Repository,
        commit: ObjectId,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<(Module, ObjectId), CatalogError> {
        let tree = self.commit_tree(repo, commit, id, version)?;
        let bytes = read_blob(repo, tree, MANIFEST, id, version)?;
        let text = String::from_utf8(bytes).map_err(|_| CatalogError::Damaged {
            module: id.clone(),
            version: version.clone(),
            what: format!("its {MANIFEST} is not UTF-8"),
        })?;
        let file = format!("{id}@{version}:{MANIFEST}");
        let module =
            self.parse_manifest(&text, &file)
                .map_err(|source| CatalogError::StoredInvalid {
                    module: id.clone(),
                    version: version.clone(),
                    source,
                })?;
        if &module.id != id || &module.version != version {
            return Err(CatalogError::Damaged {
                module: id.clone(),
                version: version.clone(),
                what: format!(
                    "its {MANIFEST} declares {} version {}",
                    module.id, module.version
                ),
            });
        }
        Ok((module, tree))
    }

    fn list_files(
        &self,
        repo: &gix::Repository,
        tree: ObjectId,
        id: &ModuleId,
        version: &ModuleVersion,
    ) -> Result<Vec<FileEntry>, CatalogError> {
        let err = |source| CatalogError::Git {
            action: format!("list the files of {id} {version}"),
            source,
        };
        let tree = repo.find_tree(tree).map_err(err)?;
        let entries = tree.traverse().breadthfirst.files().map_err(err)?;
        let mut files = Vec::new();
        for e in entries {
            if !e.mode.is_blob() {
                continue;
            }
            let size = repo.find_header(e.oid).map_err(err)?.size();
            files.push(FileEntry {
                path: e.filepath.to_string(),
                size,
                executable: e.mode.is_executable(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

/// Reads the blob at `path` in `tree`.
fn read_blob(
    repo: &gix::Repository,
    tree: ObjectId,
    path: &str,
    id: &ModuleId,
    version: &ModuleVersion,
) -> Result<Vec<u8>, CatalogError> {
    let err = |source| CatalogError::Git {
        action: format!("read {path} of {id} {version}"),
        source,
    };
    let not_found = || CatalogError::FileNotFound {
        module: id.clone(),
        version: version.clone(),
        path: path.to_owned(),
    };
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(not_found());
    }
    let tree = repo.find_tree(tree).map_err(err)?;
    let entry = tree
        .lookup_entry(path.split('/'))
        .map_err(err)?
        .ok_or_else(not_found)?;
    if !entry.mode().is_blob() {
        return Err(not_found());
    }
    let blob = repo.find_blob(entry.object_id()).map_err(err)?;
    Ok(blob.data.clone())
}

/// `refs/tags/NS/NAME/VERSION` → the module and version, when it is one of ours.
pub(crate) fn parse_tag(name: &str) -> Option<(ModuleId, ModuleVersion)> {
    let rest = name.strip_prefix("refs/tags/")?;
    let mut parts = rest.split('/');
    let (ns, module, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((ModuleId::new(ns, module).ok()?, version.parse().ok()?))
}
