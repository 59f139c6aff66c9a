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
//! - [`instance::ServiceModel`] is a service expanded for planning.
//! - [`provider::Provider`] is the trait a target provider implements.

pub mod diag;
pub mod dsl;
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
pub use provider::{Provider, ProviderError, ProviderRegistry};
pub use service::ServiceDoc;
pub use value::{Attributes, Value};

#[cfg(test)]
mod tests;
