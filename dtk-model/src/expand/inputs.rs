//! What expansion reads besides the service document: the pinned modules and what the
//! target offers.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ident::{ComponentRef, ModuleId};
use crate::instance::ComponentId;
use crate::module::Module;
use crate::value::Attributes;

/// The modules a service pins, by id.
#[derive(Debug, Clone, Default)]
pub struct ModuleSet {
    modules: BTreeMap<ModuleId, Arc<Module>>,
}

impl ModuleSet {
    /// An empty set.
    pub fn new() -> Self {
        ModuleSet::default()
    }

    /// Adds a module (replacing one with the same id).
    pub fn insert(&mut self, module: Module) {
        self.modules.insert(module.id.clone(), Arc::new(module));
    }

    /// The module with this id.
    pub fn get(&self, id: &ModuleId) -> Option<&Arc<Module>> {
        self.modules.get(id)
    }

    /// Modules whose *name* (the part after `/`) is `name`: what `name::cmp` refers to.
    pub fn by_name(&self, name: &str) -> Vec<&Arc<Module>> {
        self.modules
            .values()
            .filter(|m| m.id.name == name)
            .collect()
    }

    /// Every module, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Module>> {
        self.modules.values()
    }
}

/// What a target instance offers a service staged on it.
#[derive(Debug, Clone, Default)]
pub struct TargetBinding {
    /// The target instance's name.
    pub service: String,
    /// The component that realizes the service's nodes (`dtk/local`'s `node`,
    /// `aws/ec2`'s `node`), if the target provides nodes.
    pub node_component: Option<NodeRealizer>,
    /// The target's components (and its own base's), for linking dependencies the
    /// service does not satisfy itself.
    pub components: Vec<ExternalComponent>,
}

/// The component definition that realizes nodes on a target.
#[derive(Debug, Clone)]
pub struct NodeRealizer {
    /// Its module (must be among the service's pinned modules).
    pub module: ModuleId,
    /// Its reference as the target names it.
    pub reference: ComponentRef,
}

/// A component of another service instance (a target) that can satisfy dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalComponent {
    /// The service instance holding it.
    pub service: String,
    /// Its id there.
    pub id: ComponentId,
    /// Its definition's module.
    pub module: ModuleId,
    /// Its definition's name.
    pub def_name: String,
    /// Its inputs and recorded outputs (never secrets).
    pub values: Attributes,
}
