//! Workflows other than `create`: the `delete` workflow that orders `dtk service delete`,
//! and named workflows run by `dtk service exec NAME WORKFLOW`.
//!
//! A workflow's steps mean, by request:
//!
//! | step | converge (`create`) | delete (`delete`) | a named workflow |
//! | --- | --- | --- | --- |
//! | `components: [c]` | converge `c` | delete `c` (if deployed) | converge `c` (forced) |
//! | `c.action` | run it if `c`'s create ran | run it (if `c` is deployed) | run it |
//!
//! The order of steps (`subtask_order`, nested steps, `ordered_components`, node and node
//! group steps) is the same for all three and adds to the model's own order
//! (dependencies before dependents; deletes in reverse), never removes from it; what a
//! workflow does not name keeps that order alone. A step without `node` applies to every
//! node holding the component.

use dtk_model::module::ActionStep;
use petgraph::graph::NodeIndex;

use super::PlanError;
use super::build::{Builder, dependency_ids};
use super::request::{StepMode, WorkflowRequest};
use crate::hash::{desired_hash, static_inputs};
use crate::state::ActualState;
use crate::task::{Edge, Reason, Task, TaskId, TaskOp};

impl Builder<'_> {
    /// The task a `components:` step names for component `i`.
    pub(super) fn slot(&self, i: usize) -> Option<NodeIndex> {
        match &self.slots {
            None => Some(NodeIndex::new(i)),
            Some(s) => s.get(i).copied().flatten(),
        }
    }

    /// A `c.action` step outside a converge: runs the action of component `i`
    /// unconditionally (in a delete, only while `i` is deployed).
    pub(super) fn requested_action(
        &mut self,
        i: usize,
        step: &ActionStep,
        path: &[String],
    ) -> Option<NodeIndex> {
        let c = &self.model.components[i];
        if self.mode == StepMode::Delete && self.slot(i).is_none() {
            return None;
        }
        let base = TaskId::new(&c.id, &step.action);
        let mut id = base.clone();
        let mut k = 2;
        while self.graph.node_weights().any(|t| t.id == id) {
            id = TaskId(format!("{base}#{k}"));
            k += 1;
        }
        let mut params = self.params.clone();
        params.extend(step.params.clone());
        let t = self.add(
            Task {
                id,
                component: c.id.clone(),
                action: step.action.clone(),
                op: TaskOp::Action { params },
                node: self.nodes_of[i].map(str::to_owned),
                reason: Reason::Requested,
                conditional: false,
                step: path.to_vec(),
                desired_hash: desired_hash(c, &static_inputs(c)),
            },
            true,
        );
        Some(t)
    }

    /// After [`delete_all`](Builder::delete_all): the model's `delete` workflow, if any,
    /// orders the deletes (and runs its action steps).
    pub(super) fn delete_workflow(&mut self, actual: &ActualState) -> Result<(), PlanError> {
        let Some(wf) = self.model.workflows.get("delete") else {
            return Ok(());
        };
        let by_id: std::collections::HashMap<&dtk_model::ComponentId, NodeIndex> = self
            .graph
            .node_indices()
            .map(|i| (&self.graph[i].component, i))
            .collect();
        let slots: Vec<Option<NodeIndex>> = self
            .model
            .components
            .iter()
            .map(|c| actual.get(&c.id).and_then(|_| by_id.get(&c.id).copied()))
            .collect();
        self.slots = Some(slots);
        self.mode = StepMode::Delete;
        self.workflow(wf)
    }

    /// A named workflow: its `components:` steps converge the components named
    /// (whatever their state), its `c.action` steps run those actions, in the
    /// workflow's order and the model's.
    pub(super) fn named_workflow(
        &mut self,
        _actual: &ActualState,
        req: &WorkflowRequest,
    ) -> Result<(), PlanError> {
        let Some(wf) = self.model.workflows.get(&req.name) else {
            let mut names: Vec<&str> = self.model.workflows.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(PlanError::NoSuchWorkflow {
                service: self.service(),
                workflow: req.name.clone(),
                known: names.join(", "),
            });
        };
        self.params = req.params.clone();
        self.mode = StepMode::Named;
        // One converge task per component, planned only if a step names it.
        let mut slots = Vec::with_capacity(self.model.components.len());
        for (i, c) in self.model.components.iter().enumerate() {
            Self::check_action(c, "create")?;
            let t = self.add(
                Task {
                    id: TaskId::new(&c.id, "create"),
                    component: c.id.clone(),
                    action: "create".to_owned(),
                    op: TaskOp::Converge,
                    node: self.nodes_of[i].map(str::to_owned),
                    reason: Reason::Requested,
                    conditional: false,
                    step: Vec::new(),
                    desired_hash: desired_hash(c, &static_inputs(c)),
                },
                false,
            );
            slots.push(Some(t));
        }
        self.slots = Some(slots);
        // The model's order between them.
        let index: std::collections::HashMap<&dtk_model::ComponentId, usize> = self
            .model
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect();
        for (i, c) in self.model.components.iter().enumerate() {
            for d in dependency_ids(c) {
                if let Some(&j) = index.get(d) {
                    self.graph.add_edge(
                        NodeIndex::new(j),
                        NodeIndex::new(i),
                        Edge::Dependency(format!("dependency {d}")),
                    );
                }
            }
        }
        self.workflow(wf)?;
        // Plan what the steps named.
        for i in 0..self.model.components.len() {
            if !self.graph[NodeIndex::new(i)].step.is_empty() {
                self.planned[i] = true;
            }
        }
        Ok(())
    }
}
