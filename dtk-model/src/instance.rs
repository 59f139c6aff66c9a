//! The expanded service model: a service document with every module reference resolved,
//! node groups expanded by cardinality, attribute values resolved (defaults, overrides)
//! and every dependency and link made explicit. This is what the planner reads.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ident::{ComponentRef, ModuleId};
use crate::module::{ComponentDef, Workflow};
use crate::value::Attributes;

/// A component instance's id within its service: `node/cmp[inst]` for a component on a
/// node, `cmp[inst]` for an assembly-level one, `node[name]` for the component that
/// realizes a node. Stable across converges: the journal and actual state are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ComponentId(pub String);

impl ComponentId {
    /// The id of the component realizing node `node`.
    pub fn node(node: &str) -> Self {
        ComponentId(format!("node[{node}]"))
    }

    /// The id of `component` on `node` (or assembly-level when `node` is `None`).
    pub fn on(node: Option<&str>, component: &ComponentRef) -> Self {
        match node {
            Some(n) => ComponentId(format!("{n}/{component}")),
            None => ComponentId(component.to_string()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fully expanded service: what converge makes real.
#[derive(Debug, Clone)]
pub struct ServiceModel {
    /// The service instance's name.
    pub name: String,
    /// The target instance it is deployed into (`None` for a target instance itself).
    pub target: Option<String>,
    /// Nodes, node groups expanded (`workers:1`, `workers:2`, ...), in declaration order.
    pub nodes: Vec<NodeInstance>,
    /// Every component instance, the nodes' realizing components included, in
    /// declaration order.
    pub components: Vec<ComponentInstance>,
    /// Workflows of the service (from its assembly), by name.
    pub workflows: BTreeMap<String, Workflow>,
}

impl ServiceModel {
    /// Looks a component instance up by id.
    pub fn component(&self, id: &ComponentId) -> Option<&ComponentInstance> {
        self.components.iter().find(|c| &c.id == id)
    }
}

/// One node of a service (a member of a node group counts as one node).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInstance {
    /// The node's name (`web`, or `workers:2` for the second member of group `workers`).
    pub name: String,
    /// The node group it belongs to.
    pub group: Option<String>,
    /// The node's own attributes after target customization (`image` and `size` mapped).
    pub attributes: Attributes,
    /// The component instance that realizes the node (its id is `node[NAME]`), when the
    /// service's target provides one.
    pub realized_by: Option<ComponentId>,
}

/// One component instance with everything resolved.
#[derive(Debug, Clone)]
pub struct ComponentInstance {
    /// Its id.
    pub id: ComponentId,
    /// The module its definition comes from (the service's instance copy of it).
    pub module: ModuleId,
    /// The reference as declared.
    pub reference: ComponentRef,
    /// The node it sits on.
    pub node: Option<String>,
    /// Whether this instance realizes a node (its id is `node[...]`).
    pub realizes_node: bool,
    /// The definition (from the instance copy of the module).
    pub def: Arc<ComponentDef>,
    /// Input values: overrides, else defaults; linked inputs are filled at run time from
    /// the producers' outputs. Secret attributes are never here (see `secret_inputs`).
    pub inputs: Attributes,
    /// Names of secret attributes; their values come from the secret store at run time.
    pub secret_inputs: Vec<String>,
    /// A keyed digest of the secret inputs' current values, set by the host that holds
    /// them (dtk-instance, from its secret store) so that changing a secret re-runs the
    /// component; never the values themselves. `None` when no secret is set or the host
    /// does not say.
    pub secret_digest: Option<String>,
    /// A digest of the files of its module's instance copy (the copy's git tree id), set
    /// by the host that holds them (dtk-instance), so that editing a module file re-runs
    /// the components whose command actions run in that module; `None` when the host
    /// does not say.
    pub content_digest: Option<String>,
    /// Components that must be converged first, with why.
    pub depends_on: Vec<Dependency>,
    /// Where linked inputs come from.
    pub links: Vec<ResolvedLink>,
}

/// An ordering edge: `on` before the component holding this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The component that must be done first.
    pub on: ComponentId,
    /// Why (`dependency db`, `link db`, `node web`), for plan explanations.
    pub reason: String,
}

/// A link resolved to its producer.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLink {
    /// Which component produces the values.
    pub from: LinkSource,
    /// `from.attr -> to` pairs: the producer's attribute path, and this component's input.
    pub mappings: Vec<(Vec<String>, String)>,
}

/// The producer of a link.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkSource {
    /// A component of the same service.
    Component(ComponentId),
    /// A component of another service instance (the target), whose recorded outputs
    /// are copied at staging time and refreshed at converge.
    External {
        /// The other service instance.
        service: String,
        /// The component there.
        component: ComponentId,
        /// Its outputs (and inputs) when last read.
        values: Attributes,
    },
}
