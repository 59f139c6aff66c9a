//! The versioned module catalog of dtk, stored in a git repository.
//!
//! A catalog is a bare git repository (by default `DTK_HOME/catalog`). Publishing a module
//! directory stores its files as a git tree and commits it:
//!
//! - one commit per published module version, whose tree is the module directory
//!   (`dtk.module.yaml` at its root, executable bits kept, `.gitignore` honoured);
//! - the commits of one module chain on the branch `refs/heads/modules/NS/NAME` (each
//!   commit's first parent is the module's previously published commit), so
//!   `git log modules/NS/NAME` is the module's history;
//! - one tag per version, `refs/tags/NS/NAME/VERSION`, pointing at its commit, so
//!   `git show NS/NAME/VERSION:dtk.module.yaml` shows what was published.
//!
//! Released (semver) versions are immutable: publishing the same version with the same
//! files is a no-op, with other files it is refused. Development versions (`master`)
//! move: the new commit's parents are the branch head and the version's previous commit,
//! so every commit ever published stays reachable from the branch. Nothing in the catalog
//! is ever deleted or garbage-collected (`gc.auto = 0` is set), because service instances
//! refer to its objects through git alternates ([`Catalog::objects_dir`]).
//!
//! Publishing is atomic and safe under concurrency: objects are written first (content
//! addressed, harmless if a publish dies), then the references move while the process
//! holds an exclusive lock on the catalog, the version's tag last. See
//! [`Catalog::publish`] and [`Catalog::recover`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use dtk_catalog::Catalog;
//! use std::path::Path;
//!
//! let catalog = Catalog::open(Path::new("/tmp/dtk-home/catalog"))?;
//! let published = catalog.publish(Path::new("modules/webapp"))?;
//! println!("{} {} is commit {}", published.module, published.version, published.commit);
//! let resolution = catalog.resolve(&published.module, &"^1".parse()?)?;
//! for (id, m) in &resolution.modules {
//!     println!("{id}@{} tree {}", m.version, m.tree);
//! }
//! # Ok(()) }
//! ```

mod error;
mod files;
mod journal;
pub mod parse_cache;
mod publish;
mod read;
pub mod remote;
mod resolve;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{
    CatalogError, RemoteError, RemoteVersionExists, Requirement, ResolveError, VersionExists,
};
pub use files::{FileEntry, MANIFEST, ValidModule, validate_dir};
pub use publish::{PublishStage, PublishStatus, Published};
pub use read::{ModuleSummary, PublishedModule};
pub use resolve::{Resolution, ResolvedModule};

/// The author and committer of every catalog commit (the catalog must work on machines
/// without a git identity).
pub const AUTHOR_NAME: &str = "dtk";
/// The e-mail address of [`AUTHOR_NAME`].
pub const AUTHOR_EMAIL: &str = "dtk@localhost";

/// A hook called at each stage of a publish; see [`Catalog::set_publish_hook`].
pub type PublishHook = Arc<dyn Fn(PublishStage) + Send + Sync>;

/// A module catalog: a bare git repository of published module versions.
///
/// A `Catalog` is cheap to clone and to share between threads (`Send + Sync`); every
/// method opens what it needs from disk, so several catalogs (and several processes) may use the same
/// directory at once.
#[derive(Clone)]
pub struct Catalog {
    root: PathBuf,
    hook: Option<PublishHook>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

const GIT_CONFIG_EXTRA: &str = "\
# Written by dtk: service instances use this repository's objects through git
# alternates, so nothing in it may ever be garbage-collected or pruned.
[gc]
\tauto = 0
\tautoDetach = false
\tpruneExpire = never
\treflogExpire = never
\treflogExpireUnreachable = never
";

impl Catalog {
    /// Opens the catalog at `root`, creating it (a bare git repository, and the
    /// directories above it) when it does not exist. Safe to call from several processes
    /// at once. Finishes or undoes a publish that was interrupted (see
    /// [`Catalog::recover`]).
    pub fn open(root: &Path) -> Result<Catalog, CatalogError> {
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| CatalogError::Open {
            root: root.to_owned(),
            source,
        };
        if !looks_like_repo(root) {
            if root.exists()
                && std::fs::read_dir(root)
                    .map_err(|e| open_err(e.into()))?
                    .next()
                    .is_some()
            {
                return Err(CatalogError::NotACatalog {
                    root: root.to_owned(),
                });
            }
            create(root).map_err(open_err)?;
        }
        let repo = gix::open_opts(root, gix::open::Options::isolated())
            .map_err(|e| open_err(Box::new(e)))?;
        if !repo.is_bare() {
            return Err(CatalogError::NotACatalog {
                root: root.to_owned(),
            });
        }
        let catalog = Catalog {
            root: repo.git_dir().to_owned(),
            hook: None,
        };
        if journal::Journal::exists(&catalog.root) {
            catalog.recover()?;
        }
        Ok(catalog)
    }

    /// The catalog's directory (its git directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The git objects directory, for an instance repository's
    /// `objects/info/alternates`. Objects in it are never removed.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Opens a handle on the catalog's git repository, to read objects (trees and blobs
    /// of published versions) directly. Do not move its references: only
    /// [`Catalog::publish`] does that, under the catalog lock.
    ///
    /// Every catalog operation opens its own handle (gix handles are not `Send` in this
    /// build), so a `Catalog` itself is `Send + Sync` and always sees what other
    /// processes published.
    pub fn repo(&self) -> Result<gix::Repository, CatalogError> {
        gix::open_opts(&self.root, gix::open::Options::isolated()).map_err(|e| CatalogError::Open {
            root: self.root.clone(),
            source: Box::new(e),
        })
    }

    /// The catalog's parse cache (`parsed/` in the catalog), for the manifests of the
    /// modules it publishes and reads.
    pub fn parse_cache(&self) -> parse_cache::Store {
        parse_cache::Store::new(self.root.join("parsed"), 64)
    }

    /// Parses and validates a `dtk.module.yaml` text as publishing and reading do, through
    /// the catalog's parse cache (for modules shipped inside the program, parsed on every
    /// start).
    pub fn parse_manifest(
        &self,
        text: &str,
        file: &str,
    ) -> Result<dtk_model::Module, dtk_model::DslError> {
        parse_manifest(Some(&self.parse_cache()), text, file)
    }

    /// Sets a hook that [`Catalog::publish`] calls at each [`PublishStage`]. It exists for
    /// fault-injection tests (a hook that panics or kills the process simulates a crash at
    /// that point); a hook must not touch the catalog.
    pub fn set_publish_hook(&mut self, hook: PublishHook) {
        self.hook = Some(hook);
    }
}

/// Parses and validates a `dtk.module.yaml` text: the one place the catalog uses the DSL.
/// Through `cache` when given (a module published or read before is read back).
fn parse_manifest(
    cache: Option<&parse_cache::Store>,
    text: &str,
    file: &str,
) -> Result<dtk_model::Module, dtk_model::DslError> {
    match cache {
        Some(c) => c.get_or_parse("module", text, || dtk_model::dsl::parse_module(text, file)),
        None => dtk_model::dsl::parse_module(text, file),
    }
}

/// Whether `root` holds a git directory.
fn looks_like_repo(root: &Path) -> bool {
    root.join("HEAD").is_file() && root.join("objects").is_dir() && root.join("refs").is_dir()
}

/// Creates a bare repository at `root` atomically: it is made in a sibling directory and
/// renamed into place, so a concurrent `open` sees no catalog or a complete one.
fn create(root: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "catalog".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = parent.join(format!(".{name}.init-{}-{nanos}", std::process::id()));
    let result = (|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        gix::ThreadSafeRepository::init(
            &tmp,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
        )?;
        let config = tmp.join("config");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(GIT_CONFIG_EXTRA);
        std::fs::write(&config, text)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, root) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another process created the catalog first: use theirs.
            if looks_like_repo(root) {
                Ok(())
            } else {
                Err(e.into())
            }
        }
    }
}
