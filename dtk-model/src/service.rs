//! The service document (`dtk.service.yaml`): the desired state of one service instance,
//! as stored in its instance repository and edited by users.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::diag::Location;
use crate::ident::{ModuleId, ModuleVersion};
use crate::module::{ComponentDecl, NodeDecl, Workflow, clear_decl, clear_node, clear_workflow};

/// The file name of a service document in an instance repository.
pub const SERVICE_FILE: &str = "dtk.service.yaml";

/// A service instance's desired state, as written in `dtk.service.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDoc {
    /// `dsl_version`.
    pub dsl_version: String,
    /// The service instance's name.
    pub name: String,
    /// What the service was staged from, when known (absent in the original dtk's files).
    pub staged_from: Option<StagedFrom>,
    /// The target instance the service is deployed into (`local` for the built-in one);
    /// `None` for a target instance itself (staged with `--base`) or an unknown target.
    pub target: Option<String>,
    /// Whether this service is a target instance (staged with `--base`).
    pub is_target: bool,
    /// The pinned dependency closure: every module the service uses, at one version.
    pub dependencies: BTreeMap<ModuleId, ModuleVersion>,
    /// Nodes and node groups with their components (`components:` entries written
    /// `node[...]`, `node_group[...]` or `MOD::node[...]` with nested `components`).
    pub nodes: Vec<NodeDecl>,
    /// Components not on a node.
    pub components: Vec<ComponentDecl>,
    /// Workflows (`actions:`), `create` being the converge workflow.
    pub workflows: BTreeMap<String, Workflow>,
    /// Where the document starts.
    pub at: Location,
}

/// The module, version and assembly a service was staged from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedFrom {
    /// The module.
    pub module: ModuleId,
    /// Its version at staging time.
    pub version: ModuleVersion,
    /// The assembly.
    pub assembly: String,
}

impl ServiceDoc {
    /// Sets every source location in the document to the default (see
    /// [`Module::clear_locations`](crate::module::Module::clear_locations)).
    pub fn clear_locations(&mut self) {
        self.at = Location::default();
        self.nodes.iter_mut().for_each(clear_node);
        self.components.iter_mut().for_each(clear_decl);
        self.workflows.values_mut().for_each(clear_workflow);
    }
}
