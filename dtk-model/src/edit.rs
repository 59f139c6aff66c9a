//! The rules an edit of a service's desired state must follow, for the edit commands
//! (`set-attribute`, `add-component`): the same rules a service document is held to when
//! it is expanded (an output or a `constant: true` attribute is never set, a `singleton:
//! true` component is placed once per node, a value has its attribute's type), checked
//! before anything is written so that the refusal names the edit.

use thiserror::Error;

use crate::ident::ModuleId;
use crate::instance::{ComponentId, ServiceModel};
use crate::module::{AttributeDef, ComponentDef};
use crate::value::Value;

/// The error returned by [`check_set_attribute`] and [`check_add_component`]: why an edit
/// is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EditError {
    /// The value is not of the attribute's type.
    #[error("`{path}` must be of type {ty}, not {found} (`{shown}`)")]
    WrongType {
        /// The attribute path as given.
        path: String,
        /// The attribute's type.
        ty: &'static str,
        /// The kind of value given (`a string`, ...).
        found: &'static str,
        /// The value, or `<redacted>` for a secret.
        shown: String,
    },
    /// The attribute is an output (`dynamic: true` without `input: true`).
    #[error("`{path}` is a dynamic attribute (an output set by an action); it cannot be set")]
    Output {
        /// The attribute path as given.
        path: String,
    },
    /// The attribute is `constant: true`: its module fixes the value.
    #[error(
        "`{path}` is a constant attribute (`constant: true`): its module fixes the value, so it cannot be set"
    )]
    Constant {
        /// The attribute path as given.
        path: String,
    },
    /// The component is `singleton: true` and the node already holds one.
    #[error(
        "component `{component}` is a singleton (`singleton: true`) and node `{node}` already has `{existing}`"
    )]
    Singleton {
        /// The component definition.
        component: String,
        /// The node.
        node: String,
        /// The instance already there.
        existing: ComponentId,
    },
}

/// Checks setting the attribute defined by `def` (named `path` in messages) to `value`.
pub fn check_set_attribute(path: &str, def: &AttributeDef, value: &Value) -> Result<(), EditError> {
    if def.dynamic && !def.input {
        return Err(EditError::Output {
            path: path.to_owned(),
        });
    }
    if def.constant {
        return Err(EditError::Constant {
            path: path.to_owned(),
        });
    }
    if !def.ty.accepts(value) {
        return Err(EditError::WrongType {
            path: path.to_owned(),
            ty: def.ty.as_str(),
            found: value.kind_name(),
            shown: if def.secret {
                "<redacted>".to_owned()
            } else {
                value.to_string()
            },
        });
    }
    Ok(())
}

/// Checks placing an instance of `def` (of `module`) on `node` of the service `model`
/// (`None`: assembly-wide): a singleton may not join an instance of itself on a node. A
/// node group's name stands for every member.
pub fn check_add_component(
    model: &ServiceModel,
    node: Option<&str>,
    module: &ModuleId,
    def: &ComponentDef,
) -> Result<(), EditError> {
    let Some(node) = node else {
        return Ok(());
    };
    if !def.singleton {
        return Ok(());
    }
    let on_node = |n: &str| n == node || n.split_once(':').is_some_and(|(g, _)| g == node);
    let existing = model.components.iter().find(|c| {
        !c.realizes_node
            && c.node.as_deref().is_some_and(on_node)
            && &c.module == module
            && c.def.name == def.name
    });
    match existing {
        Some(c) => Err(EditError::Singleton {
            component: def.name.clone(),
            node: c.node.clone().unwrap_or_default(),
            existing: c.id.clone(),
        }),
        None => Ok(()),
    }
}
