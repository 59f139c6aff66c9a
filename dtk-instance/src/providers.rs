//! The target providers a home runs: the built-in ones, and plugins.
//!
//! - [`standard`]: `local` ([`dtk_target_local::LocalProvider`]: nodes are sandbox
//!   directories under `DTK_HOME/sandboxes`, the built-in default target) and `ssh`
//!   ([`dtk_target_ssh::SshProvider`]: hosts you already have, its connection sockets
//!   under `DTK_HOME/run/ssh`). This is what [`Home::open`](crate::home::Home::open)
//!   registers.
//! - [`standard_with_plugins`]: those and every provider plugin found in a list of
//!   directories (`dtk-provider-KIND` executables speaking the protocol of
//!   [`dtk_provider_plugin`]), which is what the `dtk` binary registers. A plugin is
//!   described once (a short handshake) and remembered in `DTK_HOME/cache/plugins.json`
//!   by path, size, modification time and inode, so later runs only `stat` it; it is
//!   started on the first request of one of its kinds.
//!
//! Each provider comes with its bundled modules (`dtk/local`, `dtk/ssh`, `aws/network`,
//! ...), published into the catalog when the home is opened with it. Built-in kinds
//! cannot be replaced by plugins, and of two plugins of one kind the first found wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dtk_model::provider::{ProviderSearch, UnusableProvider};
use dtk_model::{BundledModule, ProviderRegistry};
use dtk_provider_plugin::{FoundStatus, PluginOptions, PluginProcess};
use dtk_target_local::LocalProvider;
use dtk_target_ssh::SshProvider;
use serde::Serialize;

/// The standard providers for the dtk home at `root`.
pub fn standard(root: &Path) -> ProviderRegistry {
    let mut registry = ProviderRegistry::new();
    registry.register(Arc::new(
        LocalProvider::new(root.join("sandboxes")).with_content_cache(root.join("content")),
    ));
    registry.register(Arc::new(SshProvider::new(root)));
    registry
}

/// The standard providers for the dtk home at `root`, and the provider plugins found in
/// `search_dirs` (searched in order; the `dtk` binary passes `DTK_HOME/plugins`, its own
/// directory, then `PATH`). Staging a service that needs a kind nobody provides names
/// these directories.
pub fn standard_with_plugins(root: &Path, search_dirs: &[PathBuf]) -> ProviderRegistry {
    find(root, search_dirs, false, false).registry
}

/// Where the descriptions of plugins are remembered.
pub fn plugin_cache(root: &Path) -> PathBuf {
    root.join("cache").join("plugins.json")
}

/// The providers of a home and where each comes from: what
/// [`standard_with_plugins`] registers, with the details `dtk provider list` shows.
#[derive(Debug, Clone)]
pub struct Providers {
    /// The registry to open a home with.
    pub registry: ProviderRegistry,
    /// Every registered kind, by kind.
    pub kinds: Vec<ProviderInfo>,
    /// Plugin executables found but not used, and why.
    pub unused: Vec<UnusedPlugin>,
    /// The directories searched, in order.
    pub searched: Vec<PathBuf>,
}

/// One registered provider kind.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderInfo {
    /// The kind.
    pub kind: String,
    /// Where it comes from.
    pub source: ProviderSource,
    /// Its resource types (empty: not declared).
    pub resources: Vec<String>,
    /// Its bundled modules, as `ns/name@version` (empty in the registry's own
    /// discovery, which does not parse them).
    pub modules: Vec<String>,
}

/// Where a provider comes from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ProviderSource {
    /// Compiled into this program.
    BuiltIn,
    /// A plugin executable.
    Plugin {
        /// The executable.
        path: PathBuf,
        /// The plugin's name, as it says.
        name: String,
        /// Its version, as it says (may be empty).
        version: String,
        /// The protocol version it speaks.
        protocol: u32,
    },
}

/// A plugin executable found but not (wholly) used.
#[derive(Debug, Clone, Serialize)]
pub struct UnusedPlugin {
    /// The executable.
    pub path: PathBuf,
    /// The kinds it would have served (from its file name when it did not say).
    pub kinds: Vec<String>,
    /// Why it is not used.
    pub reason: String,
}

/// Finds the plugins in `search_dirs` and puts them beside the standard providers (see
/// [`standard_with_plugins`]). With `retry_unusable`, executables remembered as unusable
/// are described again (`dtk provider list` does).
pub fn discover(root: &Path, search_dirs: &[PathBuf], retry_unusable: bool) -> Providers {
    find(root, search_dirs, retry_unusable, true)
}

/// [`discover`]; `names` says whether to parse the bundled modules for their names (the
/// registry alone does not need them).
fn find(root: &Path, search_dirs: &[PathBuf], retry_unusable: bool, names: bool) -> Providers {
    let module_names = |m: &[BundledModule]| if names { module_names(m) } else { Vec::new() };
    let mut registry = standard(root);
    let mut kinds: BTreeMap<String, ProviderInfo> = BTreeMap::new();
    for kind in registry.kinds() {
        if let Some(p) = registry.get(kind) {
            kinds.insert(
                kind.to_owned(),
                ProviderInfo {
                    kind: kind.to_owned(),
                    source: ProviderSource::BuiltIn,
                    resources: p.resources(),
                    modules: module_names(&p.modules()),
                },
            );
        }
    }
    let mut options = PluginOptions::new(root);
    options.dtk_version = env!("CARGO_PKG_VERSION").to_owned();
    let found = dtk_provider_plugin::discover(
        search_dirs,
        Some(&plugin_cache(root)),
        &options,
        retry_unusable,
    );
    let mut unused = Vec::new();
    let mut unusable = Vec::new();
    for f in found.found {
        let desc = match f.status {
            FoundStatus::Ready(desc) => desc,
            FoundStatus::Unusable(reason) => {
                unusable.push(UnusableProvider {
                    kind: f.kind.clone(),
                    path: f.path.clone(),
                    reason: reason.clone(),
                });
                unused.push(UnusedPlugin {
                    path: f.path,
                    kinds: vec![f.kind],
                    reason,
                });
                continue;
            }
            FoundStatus::Shadowed(by) => {
                unused.push(UnusedPlugin {
                    path: f.path,
                    kinds: vec![f.kind],
                    reason: format!("{} is found first", by.display()),
                });
                continue;
            }
        };
        let process = PluginProcess::new(f.path.clone(), desc.clone(), options.clone());
        for provider in process.providers() {
            let kind = dtk_model::Provider::kind(&provider).to_owned();
            if let Some(taken) = kinds.get(&kind) {
                unused.push(UnusedPlugin {
                    path: f.path.clone(),
                    kinds: vec![kind.clone()],
                    reason: match &taken.source {
                        ProviderSource::BuiltIn => format!("kind `{kind}` is built in"),
                        ProviderSource::Plugin { path, .. } => {
                            format!("kind `{kind}` is served by {} already", path.display())
                        }
                    },
                });
                continue;
            }
            kinds.insert(
                kind.clone(),
                ProviderInfo {
                    kind: kind.clone(),
                    source: ProviderSource::Plugin {
                        path: f.path.clone(),
                        name: desc.plugin.name.clone(),
                        version: desc.plugin.version.clone(),
                        protocol: desc.protocol,
                    },
                    resources: dtk_model::Provider::resources(&provider),
                    modules: module_names(&dtk_model::Provider::modules(&provider)),
                },
            );
            registry.register(Arc::new(provider));
        }
    }
    registry.set_search(ProviderSearch {
        dirs: found.searched.clone(),
        unusable,
    });
    Providers {
        registry,
        kinds: kinds.into_values().collect(),
        unused,
        searched: found.searched,
    }
}

/// `ns/name@version` of each module (its origin when it does not parse).
fn module_names(modules: &[BundledModule]) -> Vec<String> {
    modules
        .iter()
        .map(|m| match dtk_model::dsl::parse_module(&m.text, &m.origin) {
            Ok(module) => format!("{}@{}", module.id, module.version),
            Err(_) => m.origin.clone(),
        })
        .collect()
}
