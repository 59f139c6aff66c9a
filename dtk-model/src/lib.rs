//! The dtk model: modules, services, the YAML DSL and its validation, and the traits that
//! target providers implement.
//!
//! This crate does no IO beyond reading the text it is given: it knows nothing of git,
//! tokio or any cloud. Everything else in dtk builds on its types.
//!
//! - [`dsl::parse_module`] turns `dtk.module.yaml` text into a validated [`Module`];
//!   [`dsl::parse_service`] and [`dsl::write_service`] read and write `dtk.service.yaml`.
//! - [`ident`] holds the parsed forms of names and references (`ns/name`,
//!   `module::cmp[inst]`, `node/component/attr`).
//! - [`expand::expand`] makes a service document and its pinned modules a
//!   [`instance::ServiceModel`], the service expanded for planning; [`edit`] holds the same
//!   rules for edit commands.
//! - [`provider::Provider`] is the trait a target provider implements; a third-party
//!   provider crate depends on this crate alone (see `examples/provider-hello` and
//!   `docs/providers.md` in the repository).
//!
//! The DSL itself is described in `docs/dsl.md`, and key by key in [`dsl`].
//!
//! # Example
//!
//! Parsing a module, and what a refused one reports: every problem, with its file, line,
//! column, key path and, when there is one, a hint.
//!
//! ```
//! use dtk_model::dsl::parse_module;
//!
//! let module = parse_module(
//!     "module: demo/web
//! version: 1.0.0
//! component_defs:
//!   web:
//!     attributes:
//!       port: {type: port, default: 8080}
//!     actions:
//!       create:
//!         commands:
//!         - RUN ./start --port {{port}}
//! assemblies:
//!   single:
//!     components:
//!     - node[web]:
//!         components: [web]
//! ",
//!     "web/dtk.module.yaml",
//! )?;
//! assert_eq!(module.id.to_string(), "demo/web");
//! assert_eq!(module.components["web"].attributes["port"].ty.as_str(), "port");
//!
//! let refused = parse_module(
//!     "module: demo/web
//! version: 1.0.0
//! component_defs:
//!   web:
//!     attributes:
//!       port: {type: integr}
//! ",
//!     "web/dtk.module.yaml",
//! )
//! .unwrap_err();
//! assert_eq!(
//!     refused.to_string(),
//!     "web/dtk.module.yaml:6:20: unknown attribute type `integr` \
//!      (at `component_defs.web.attributes.port.type`)\n  help: did you mean `integer`?"
//! );
//! # Ok::<(), dtk_model::DslError>(())
//! ```

pub mod cache;
pub mod content;
pub mod diag;
pub mod dsl;
pub mod edit;
pub mod expand;
pub mod ident;
pub mod instance;
pub mod module;
pub mod provider;
pub mod render;
pub mod service;
pub mod value;
pub mod yaml;

pub use diag::{Diagnostic, DslError, Location};
pub use ident::{AttrPath, ComponentRef, ModuleId, ModuleVersion, NodeComponentRef, VersionReq};
pub use instance::{ComponentId, ComponentInstance, ServiceModel};
pub use module::{ActionDef, ActionKind, Assembly, AttrType, AttributeDef, ComponentDef, Module};
pub use provider::{BundledModule, Change, Observed, Provider, ProviderError, ProviderRegistry};
pub use service::ServiceDoc;
pub use value::{Attributes, SortedMap, Value};

#[cfg(test)]
mod tests;
