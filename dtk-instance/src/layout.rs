//! Where things live inside an instance repository (a leaf: the modules that stage, open
//! and pull instances all name these paths).

use dtk_model::ident::ModuleId;

/// Where the instance copy of a module lives in an instance repository.
pub fn module_path(id: &ModuleId) -> String {
    format!("modules/{}/{}", id.namespace, id.name)
}
