//! `DTK_HOME`: where dtk keeps its state, and the entry point of the library.
//!
//! ```text
//! DTK_HOME/
//!   catalog/            the module catalog (bare git repository)
//!   services/NAME/      one instance repository per service instance (work tree)
//!     .dtk/             its private files: actual state, journal, task logs, lock
//!   sandboxes/SVC/NODE  the local target's nodes
//!   secrets/NAME.json   secret attribute values (mode 0600), outside every repository
//!   config.json         settings such as the default target
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use dtk_catalog::Catalog;
use dtk_model::{Provider, ProviderRegistry};
use serde::{Deserialize, Serialize};

use dtk_target_local::LocalProvider;

use crate::error::InstanceError;
use crate::repo::{PRIVATE_DIR, io_err, write_file_atomic};

/// The name of the built-in local target instance.
pub const LOCAL_TARGET: &str = "local";

/// An open `DTK_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    catalog: Catalog,
    providers: ProviderRegistry,
    /// The team's remote and who runs the program (see [`crate::remote`]).
    pub(crate) team: crate::remote::TeamSettings,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_target: Option<String>,
}

impl Home {
    /// Opens (creating if needed) the dtk home at `root` with the standard providers
    /// ([`providers::standard`](crate::providers::standard): `local` and `ssh`), and
    /// publishes their bundled modules into its catalog unless they are there.
    pub fn open(root: &Path) -> Result<Home, InstanceError> {
        Self::with_providers(root, crate::providers::standard(root))
    }

    /// Opens (creating if needed) the dtk home at `root` with the providers of `registry`
    /// (and nothing else), and publishes their bundled modules into its catalog unless
    /// they are there.
    pub fn with_providers(root: &Path, registry: ProviderRegistry) -> Result<Home, InstanceError> {
        for d in ["services", "sandboxes", "secrets"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p, "create"))?;
        }
        let catalog = Catalog::open(&root.join("catalog"))?;
        let home = Home {
            root: root.to_path_buf(),
            catalog,
            providers: registry,
            team: crate::remote::TeamSettings::load(root)?,
        };
        for kind in home.providers.kinds() {
            if let Some(p) = home.providers.get(kind) {
                home.publish_bundled(p.as_ref())?;
            }
        }
        Ok(home)
    }

    /// Registers a target provider, replacing any of its kind, and publishes the modules
    /// it bundles ([`Provider::modules`]) unless the catalog has them.
    pub fn register_provider(&mut self, provider: Arc<dyn Provider>) -> Result<(), InstanceError> {
        self.publish_bundled(provider.as_ref())?;
        self.providers.register(provider);
        Ok(())
    }

    fn publish_bundled(&self, provider: &dyn Provider) -> Result<(), InstanceError> {
        for m in provider.modules() {
            self.ensure_bundled_module(&m.text, &m.origin)?;
        }
        Ok(())
    }

    /// The providers converge uses.
    pub fn providers(&self) -> ProviderRegistry {
        self.providers.clone()
    }

    /// The built-in local provider.
    pub fn local_provider(&self) -> LocalProvider {
        LocalProvider::new(self.sandboxes_dir()).with_content_cache(self.content_dir())
    }

    /// The local content store: module files by content address, hard-linked into the
    /// sandboxes that use them (`DTK_HOME/content`).
    pub fn content_dir(&self) -> PathBuf {
        self.root.join("content")
    }

    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The module catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The directory of service instance `name` (it may not exist).
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.root.join("services").join(name)
    }

    /// Where the local target keeps node sandboxes.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.root.join("sandboxes")
    }

    /// The secret store file of service `name`.
    pub fn secrets_path(&self, name: &str) -> PathBuf {
        self.root.join("secrets").join(format!("{name}.json"))
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    fn config(&self) -> Result<Config, InstanceError> {
        let p = self.config_path();
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| InstanceError::Io {
                path: p.clone(),
                op: "parse",
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(io_err(&p, "read")(e)),
        }
    }

    /// The target `stage` uses when none is named: the one set with
    /// [`set_default_target`](Self::set_default_target), else the built-in `local`.
    pub fn default_target(&self) -> Result<String, InstanceError> {
        Ok(self
            .config()?
            .default_target
            .unwrap_or_else(|| LOCAL_TARGET.to_owned()))
    }

    /// Makes `name` (a converged target instance) the default target.
    pub fn set_default_target(&self, name: &str) -> Result<(), InstanceError> {
        if name != LOCAL_TARGET {
            let svc = self.service(name)?;
            if !svc.is_target()? {
                return Err(InstanceError::DefaultNotATarget {
                    name: name.to_owned(),
                });
            }
        }
        let mut cfg = self.config()?;
        cfg.default_target = Some(name.to_owned());
        let data = serde_json::to_vec_pretty(&cfg).map_err(|e| InstanceError::Io {
            path: self.config_path(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        write_file_atomic(&self.config_path(), &data, false)
    }

    /// A scratch directory under the home for staging work, removed by the caller.
    pub(crate) fn scratch_dir(&self, what: &str) -> PathBuf {
        self.root.join("services").join(format!(
            ".{what}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ))
    }

    /// The private directory of a service's instance repository.
    pub fn private_dir(&self, name: &str) -> PathBuf {
        self.service_dir(name).join(PRIVATE_DIR)
    }
}
