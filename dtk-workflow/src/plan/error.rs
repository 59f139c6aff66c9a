//! The planner's errors.

use dtk_model::instance::ComponentId;
use thiserror::Error;

/// The error returned by [`plan`] and [`build_graph`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// The tasks' order has one or more cycles.
    #[error("{}", render_cycles(service, cycles))]
    Cycle {
        /// The service.
        service: String,
        /// Each cycle (one per strongly connected part), as its edges in order.
        cycles: Vec<Vec<CycleEdge>>,
    },
    /// A component depends on one that is not in the model.
    #[error("`{component}` depends on `{on}` ({reason}), which is not in service `{service}`")]
    UnknownDependency {
        /// The service.
        service: String,
        /// The dependent.
        component: ComponentId,
        /// The missing one.
        on: ComponentId,
        /// Why it depends.
        reason: String,
    },
    /// A workflow step names a node or node group the service does not have.
    #[error(
        "workflow `{workflow}` step `{step}` runs on node `{node}`, which service `{service}` does not have"
    )]
    UnknownNode {
        /// The service.
        service: String,
        /// The workflow.
        workflow: String,
        /// The step path.
        step: String,
        /// The node or group.
        node: String,
    },
    /// A workflow step names a component not placed where the step runs.
    #[error(
        "workflow `{workflow}` step `{step}` names `{component}`, which is not in service `{service}`{}",
        on_node(node)
    )]
    UnknownWorkflowComponent {
        /// The service.
        service: String,
        /// The workflow.
        workflow: String,
        /// The step path.
        step: String,
        /// The component reference.
        component: String,
        /// The node searched, if the step has one.
        node: Option<String>,
    },
    /// The workflow asked for is not one of the service's.
    #[error("service `{service}` has no workflow `{workflow}` (it has: {known})")]
    NoSuchWorkflow {
        /// The service.
        service: String,
        /// The workflow asked for.
        workflow: String,
        /// The workflows it has, comma-separated.
        known: String,
    },
    /// The action asked for matches no component instance.
    #[error("`{target}` matches no component of service `{service}`")]
    NoMatchingComponent {
        /// The service.
        service: String,
        /// The request.
        target: String,
    },
    /// A component has no action of that name.
    #[error("component `{component}` has no action `{action}`")]
    NoSuchAction {
        /// The component instance.
        component: ComponentId,
        /// The action.
        action: String,
    },
    /// The action is of a kind this executor does not run.
    #[error("action `{action}` of `{component}` is a `{kind}` action, which dtk does not run")]
    UnsupportedAction {
        /// The component instance.
        component: ComponentId,
        /// The action.
        action: String,
        /// The kind (`puppet_class`, or `provider` for a custom provider action).
        kind: String,
    },
}

fn on_node(node: &Option<String>) -> String {
    node.as_ref()
        .map(|n| format!(" on node `{n}`"))
        .unwrap_or_default()
}

/// One edge of a cycle: `from` must run before `to`, because of `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleEdge {
    /// The earlier task's label.
    pub from: String,
    /// The later task's label.
    pub to: String,
    /// Why.
    pub reason: String,
}

fn render_cycles(service: &str, cycles: &[Vec<CycleEdge>]) -> String {
    let mut out = if cycles.len() == 1 {
        format!("the tasks of service `{service}` have a cycle:")
    } else {
        format!(
            "the tasks of service `{service}` have {} cycles:",
            cycles.len()
        )
    };
    for cycle in cycles {
        out.push_str("\n  ");
        if let Some(first) = cycle.first() {
            out.push_str(&first.from);
        }
        for e in cycle {
            out.push_str(" -> ");
            out.push_str(&e.to);
        }
        for e in cycle {
            out.push_str(&format!("\n    {} -> {}: {}", e.from, e.to, e.reason));
        }
    }
    out
}
