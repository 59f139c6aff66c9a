//! The standard set of target providers: what [`Home::open`](crate::home::Home::open)
//! registers, and what a program embedding dtk starts from.
//!
//! - `local` ([`dtk_target_local::LocalProvider`]): nodes are sandbox directories under
//!   `DTK_HOME/sandboxes`; the built-in default target.
//! - `ssh` ([`dtk_target_ssh::SshProvider`]): hosts you already have, its connection
//!   sockets under `DTK_HOME/run/ssh`.
//!
//! Each comes with its bundled module (`dtk/local`, `dtk/ssh`), published into the catalog
//! when the home is opened.

use std::path::Path;
use std::sync::Arc;

use dtk_model::ProviderRegistry;
use dtk_target_local::LocalProvider;
use dtk_target_ssh::SshProvider;

/// The standard providers for the dtk home at `root`.
pub fn standard(root: &Path) -> ProviderRegistry {
    let mut registry = ProviderRegistry::new();
    registry.register(Arc::new(
        LocalProvider::new(root.join("sandboxes")).with_content_cache(root.join("content")),
    ));
    registry.register(Arc::new(SshProvider::new(root)));
    registry
}
