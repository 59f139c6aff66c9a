//! The YAML DSL: decoding `dtk.module.yaml` and `dtk.service.yaml` text into the
//! validated model, and writing both back as canonical YAML.
//!
//! Decoding walks the located YAML tree ([`crate::yaml`]) by hand rather than through
//! serde, so that every problem is reported with its file, line, column and key path,
//! and all of them at once, in source order.
//!
//! # What is accepted
//!
//! The format is the original dtk's (DSL 1.0.0), every form its parser accepted (the
//! project's corpus, `tests/corpus/`, has a document per form), mapped onto one model and
//! written back in the current form. Keys per section (aliases in parentheses):
//!
//! - **module**: `dsl_version` (`1.0.0`, or empty), `module` (`module_name`; `NS/NAME` or
//!   `NS:NAME`), `version` (semver or a tag such as `master`; absent is `master`),
//!   `description`, `dependencies` (`dependent_modules`: `NS/NAME: REQ` as a mapping, or a
//!   list of `NS/NAME` and single-key entries; a bare version pins exactly, an empty one
//!   is any version), `component_defs` (`components`), `assemblies`, `workflows`, and the
//!   metadata keys `keywords`, `license`, `author`, `homepage`, `repository`, `includes`
//!   (kept in [`Module::metadata`]).
//! - **component definition**: `description`, `attributes`, `dependencies`, `link_defs`,
//!   `actions` (`action`), `singleton` (`only_one_per_node`), `external_ref` (the legacy
//!   `{puppet_class: NAME}`: the `create` action of that kind), and `providers`,
//!   `includes`, `include_modules` (kept in `ComponentDef::metadata`).
//! - **attribute**: `type` (`string`, `integer`, `boolean`, `hash`, `array`, `port`,
//!   `any`; absent is `any`), `default`, `required`, `description`, `dynamic`, `hidden`,
//!   `secret`, `input`, `constant`. A plain number or boolean given to a `string`
//!   attribute is its text (`default: 1` is `"1"`), as in the original.
//! - **component dependencies**: a list of references (`db`, `mod::cmp`) and of named
//!   entries `NAME: {choices: [REF | {component: REF, location}], location}`, `NAME:
//!   {component: REF}`, `NAME: REF`, `mod::cmp: {location}` (the key is the component), a
//!   spec may be a one-element list; or a mapping of such named entries. `location` is
//!   `local` or `remote`.
//! - **link_defs**: `PRODUCER: SPEC` or `PRODUCER: [SPEC, ...]`, as a mapping or a list of
//!   single-key mappings; a SPEC has `attribute_mappings`, `dependency_name` (or `name`),
//!   `location` (or `same_node`). Mappings are `$out -> in`, `in <- $out` or `in <-
//!   CONSTANT` ([`AttributeMapping`](crate::module::AttributeMapping)), `$out` possibly a
//!   dotted path (`$node.host_addresses_ipv4.0`, or `[0]`).
//! - **action**: `commands` (`command`: a list of steps, or one), or `provider:
//!   KIND.RESOURCE`; plus `attempts` (1-100), `sleep` and `timeout` (seconds, or `500ms`,
//!   `30s`, `5m`, `1h`), and `stdout_and_stderr` (accepted, no effect). A step is `RUN
//!   ...`, `{RUN: ...}` or `{command: ...}` (with `if`, `unless`, `timeout`), or `{ADD: ,
//!   source, target, template, owner, mode}`. An action with `puppet_class`,
//!   `puppet_definition`, `serverspec_test`, `docker`, `docker_image`,
//!   `docker_run_params`, `docker_file_template`, `function`, `functions`, `delete_node`,
//!   `type` or `entrypoint` is a kind this dtk does not run: it becomes
//!   [`ActionKind::Unsupported`](crate::module::ActionKind) with its keys kept as data.
//!   `create` is not mandatory: a component without it does nothing on converge (the
//!   original's `aws/aws_vpc` and `ruby-provider` modules have such components).
//! - **assembly**: `description`, `nodes` (the original's mapping of nodes; `attributes:
//!   {type: group}` makes a node group), `components`, `actions` (`workflows`,
//!   `workflow`), `node_component` (this dtk's: the component realizing nodes on a
//!   target), and `target`, `attributes` (kept in `Assembly::metadata`).
//! - **components list** (assemblies and services): entries `REF` or `REF: {attributes,
//!   links, components}` (`links` also `component_links`, `component_link`). `node[N]` /
//!   `node_group[N]` are nodes; so are `MOD::node[N]`, `MOD::node_group[N]` and any
//!   `MOD::cmp[N]` with nested `components` (the original's service files), whose
//!   realizing component is kept in `NodeDecl::node_component`. A node may also say
//!   `node_component: REF`. A node group's `cardinality` is 0-1000.
//! - **links**: `TARGET`, `NODE/TARGET`, `MOD::node[NODE]/TARGET`, `SERVICE/TARGET` or
//!   `service[SERVICE]/TARGET` (in a service, a prefix that is not one of its nodes names
//!   another service instance), or `DEPENDENCY: TARGET`.
//! - **workflow**: `subtask_order` (`sequential`, the default, or `concurrent`) and
//!   `subtasks`; or, short form, the keys of one subtask; or the legacy form named by
//!   `assembly_action`. **Subtask**: `name`, `node` / `node_group` (`node: assembly_wide`
//!   means none) or `nodes: All_applicable` (none), `subtask_order`, `subtasks`, one of
//!   `components`, `ordered_components`, `actions` (singular forms accepted), `params`
//!   (`parameters`), `breakpoint`. Steps are `cmp`, `cmp[inst]`, `cmp.action`,
//!   `cmp[inst].action`, `node/cmp.action`, or `cmp.action: {PARAM: VALUE}`.
//! - **service**: `dsl_version`, `name`, `staged_from: {module, version, assembly}`,
//!   `target`, `base`, `dependencies` (`NS/NAME: EXACT_VERSION`), `components`,
//!   `actions` (`workflows`).
//!
//! # What is checked
//!
//! Unknown keys (with a suggestion), value shapes and types, names (they become paths:
//! [`check_name`](crate::ident::check_name)), versions and requirements, defaults and
//! overrides against the attribute's type, overrides of unknown or output attributes,
//! references, duplicate nodes and components, attribute mappings, dependency cycles
//! (named `a -> b -> a`) and workflow steps. References to components of the same module
//! are checked fully; a `MOD::` prefix must name this module or a declared dependency in
//! assemblies and services; a plain name that is not a local component is the
//! same-named component of the same-named dependency (`stdlib` is `stdlib::stdlib`).
//! Links and dependency choices into modules that are not declared are left to staging
//! (the original's `aws/ec2` names `network_aws::vpc_subnet` without depending on it), as
//! are the receiving side of attribute mappings (`aws/aws_vpc` maps to an attribute it
//! does not declare). A `dependency_name` must name one of the component's dependencies.
//! In a service document, workflow steps are not checked against the document: a deleted
//! component or node may stay named there, as in the original's files (expansion
//! refuses a step on a node the service no longer has).

mod action;
mod checks;
pub(crate) mod component_def;
mod components;
pub(crate) mod decode;
mod header;
mod index;
mod links;
mod module_file;
mod scope;
mod service_file;
mod workflow;
mod write;

pub use action::MAX_ATTEMPTS;
pub use components::MAX_CARDINALITY;
pub use write::{write_module, write_service, write_service_located};

use crate::diag::DslError;
use crate::module::Module;
use crate::service::ServiceDoc;
use crate::value::Value;

/// Parses and validates a module document. `file` names the text in diagnostics.
pub fn parse_module(text: &str, file: &str) -> Result<Module, DslError> {
    module_file::parse(text, file)
}

/// Parses and validates a module document for its definitions: component definitions,
/// workflows, dependencies and each assembly's header (description, `node_component`,
/// metadata), but not the assemblies' nodes, components and workflows, which are left
/// unread (and empty in the result). For a service's instance copies of its modules: the
/// service document holds what the assembly placed, so a converge or plan never reads the
/// copies' assemblies, and they are most of a large module's text.
pub fn parse_module_defs(text: &str, file: &str) -> Result<Module, DslError> {
    module_file::parse_defs(text, file)
}

/// Parses and validates a service document. `file` names the text in diagnostics.
pub fn parse_service(text: &str, file: &str) -> Result<ServiceDoc, DslError> {
    service_file::parse(text, file)
}

/// Parses a value written as YAML on a command line (`4`, `true`, `hello`, `[a, b]`,
/// `{k: v}`) with the DSL's scalar typing. `file` names the text in diagnostics.
pub fn parse_value(text: &str, file: &str) -> Result<Value, DslError> {
    decode::value_document(text, file)
}
