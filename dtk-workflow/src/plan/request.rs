//! What to plan: converge, delete, or one custom action (`[NODE/]CMP.ACTION`).

use std::fmt;
use std::str::FromStr;

use dtk_model::ident::ComponentRef;
use dtk_model::value::Attributes;
use thiserror::Error;

/// What to plan.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanRequest {
    /// Converge (workflow `create`): only what changed, plus what may depend on it, plus
    /// deletes of components removed from the model.
    Converge,
    /// Converge everything, as if nothing had been applied (`graph`, or a forced run).
    ConvergeAll,
    /// Delete everything recorded in actual state, in reverse dependency order (and in
    /// the order of the model's `delete` workflow, when it has one).
    Delete,
    /// Run one custom action (`[NODE/]CMP.ACTION k=v ...`).
    Action(ActionRequest),
    /// Run a named workflow of the model (`dtk service exec NAME WORKFLOW k=v ...`).
    Workflow(WorkflowRequest),
}

/// What the steps of the workflow being planned do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepMode {
    /// The `create` workflow of a converge.
    Converge,
    /// The `delete` workflow of a delete.
    Delete,
    /// A named workflow.
    Named,
}

/// A request to run a named workflow of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRequest {
    /// The workflow's name (a key of the assembly's `workflows`/`actions`).
    pub name: String,
    /// Parameters: extra inputs of every action the workflow runs.
    pub params: dtk_model::value::Attributes,
}

/// A request to run a custom action on the matching component instances.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// Which components and which action.
    pub target: ActionTarget,
    /// Parameters: extra inputs of the action, overriding the component's.
    pub params: Attributes,
}

/// `[NODE/]CMP.ACTION`: a component's action, optionally on one node or node group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTarget {
    /// The node or node group, when given.
    pub node: Option<String>,
    /// The component.
    pub component: ComponentRef,
    /// The action's name.
    pub action: String,
}

/// The error returned when an action target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid action target `{input}`: {reason}")]
pub struct ParseTargetError {
    /// The text.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

impl FromStr for ActionTarget {
    type Err = ParseTargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseTargetError {
            input: s.to_owned(),
            reason,
        };
        let Some((cmp, action)) = s.trim().rsplit_once('.') else {
            return Err(err("expected `[NODE/]COMPONENT.ACTION`".to_owned()));
        };
        if action.is_empty() || action.contains(['/', '[', ']']) {
            return Err(err(format!("`{action}` is not an action name")));
        }
        // Not `NodeComponentRef`: a member of a node group (`workers:2`) may be named.
        let (node, cmp) = match cmp.split_once('/') {
            Some((n, c)) => {
                let member = n.split_once(':').map_or(n, |(g, _)| g);
                dtk_model::ident::check_name("node name", member).map_err(|e| err(e.reason))?;
                if let Some((_, k)) = n.split_once(':')
                    && (k.is_empty() || !k.chars().all(|c| c.is_ascii_digit()))
                {
                    return Err(err(format!("`{n}` is not a node group member")));
                }
                (Some(n.to_owned()), c)
            }
            None => (None, cmp),
        };
        let component: ComponentRef = cmp
            .parse()
            .map_err(|e: dtk_model::ident::ParseRefError| err(e.reason))?;
        Ok(ActionTarget {
            node,
            component,
            action: action.to_owned(),
        })
    }
}

impl fmt::Display for ActionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.node {
            write!(f, "{n}/")?;
        }
        write!(f, "{}.{}", self.component, self.action)
    }
}
