//! Where things live inside an instance repository (a leaf: the modules that stage, open
//! and pull instances all name these paths).

use dtk_model::ident::ModuleId;

/// The reference of the actual-state history in an instance repository.
pub const STATE_REF: &str = "refs/dtk/state";

/// The file of a state commit holding the actual state.
pub const ACTUAL_FILE: &str = "actual.json";

/// Where the instance copy of a module lives in an instance repository.
pub fn module_path(id: &ModuleId) -> String {
    format!("modules/{}/{}", id.namespace, id.name)
}
