//! Explicit workflows: the order a module's `create` workflow adds on top of the
//! dependencies (sequential and concurrent steps, nested; node groups; `cmp.action` steps).

use std::collections::HashSet;

use dtk_model::ident::ComponentRef;
use dtk_model::module::{NodeSelector, Subtask, SubtaskOrder, Workflow};
use petgraph::graph::NodeIndex;

use super::PlanError;
use super::build::{Builder, ref_matches};
use crate::task::{Edge, Reason, Task, TaskId, TaskOp};

impl<'m> Builder<'m> {
    pub(super) fn workflow(&mut self, wf: &Workflow) -> Result<(), PlanError> {
        self.steps(&wf.name, &wf.subtasks, wf.subtask_order, &[])?;
        Ok(())
    }

    fn steps(
        &mut self,
        wf: &str,
        subtasks: &[Subtask],
        order: SubtaskOrder,
        path: &[String],
    ) -> Result<Block, PlanError> {
        let mut blocks = Vec::with_capacity(subtasks.len());
        for (i, st) in subtasks.iter().enumerate() {
            let mut p = path.to_vec();
            p.push(st.name.clone().unwrap_or_else(|| format!("step {}", i + 1)));
            blocks.push(self.step(wf, st, &p)?);
        }
        Ok(match order {
            SubtaskOrder::Sequential => self.sequence(blocks, path),
            SubtaskOrder::Concurrent => Block::union(blocks),
        })
    }

    fn sequence(&mut self, blocks: Vec<Block>, _path: &[String]) -> Block {
        let mut out = Block::default();
        let mut prev: Option<(Vec<NodeIndex>, String)> = None;
        for b in blocks {
            if b.is_empty() {
                continue;
            }
            match &prev {
                Some((exits, _)) => {
                    for &e in exits {
                        for &n in &b.entries {
                            if e != n {
                                self.graph.add_edge(e, n, Edge::Workflow(b.label.clone()));
                            }
                        }
                    }
                }
                None => {
                    out.entries = b.entries.clone();
                    out.label = b.label.clone();
                }
            }
            prev = Some((b.exits, b.label));
        }
        if let Some((exits, _)) = prev {
            out.exits = exits;
        }
        out
    }

    fn step_nodes(
        &self,
        wf: &str,
        st: &Subtask,
        path: &[String],
    ) -> Result<Option<Vec<&'m str>>, PlanError> {
        let model = self.model;
        let name = match &st.node {
            None => return Ok(None),
            Some(NodeSelector::Node(n)) => {
                if let Some(node) = model.nodes.iter().find(|x| &x.name == n) {
                    return Ok(Some(vec![node.name.as_str()]));
                }
                n
            }
            Some(NodeSelector::Group(g)) => g,
        };
        let members: Vec<&str> = model
            .nodes
            .iter()
            .filter(|x| x.group.as_deref() == Some(name.as_str()))
            .map(|x| x.name.as_str())
            .collect();
        if members.is_empty() {
            return Err(PlanError::UnknownNode {
                service: self.service(),
                workflow: wf.to_owned(),
                step: path.join(" / "),
                node: name.clone(),
            });
        }
        Ok(Some(members))
    }

    /// The component slots (indices of converge tasks) matching `r` on `node` (any node
    /// when `None`).
    fn find_components(&self, r: &ComponentRef, node: Option<&str>) -> Vec<usize> {
        self.model
            .components
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                ref_matches(r, &c.reference) && (node.is_none() || self.nodes_of[*i] == node)
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn label_step(&mut self, t: NodeIndex, path: &[String]) {
        let task = &mut self.graph[t];
        if task.step.is_empty() {
            task.step = path.to_vec();
        }
    }

    fn step(&mut self, wf: &str, st: &Subtask, path: &[String]) -> Result<Block, PlanError> {
        let label = path.join(" / ");
        let nodes = self.step_nodes(wf, st, path)?;
        let node_list: Vec<Option<&str>> = match &nodes {
            None => vec![None],
            Some(v) => v.iter().map(|n| Some(*n)).collect(),
        };
        let mut parts: Vec<Block> = Vec::new();
        // Components (their `create`).
        if !st.components.is_empty() {
            let mut per_node = Vec::new();
            for &node in &node_list {
                let mut chain: Vec<Vec<NodeIndex>> = Vec::new();
                for r in &st.components {
                    let found = self.find_components(r, node);
                    if found.is_empty() {
                        return Err(PlanError::UnknownWorkflowComponent {
                            service: self.service(),
                            workflow: wf.to_owned(),
                            step: label.clone(),
                            component: r.to_string(),
                            node: node.map(str::to_owned),
                        });
                    }
                    let ts: Vec<NodeIndex> =
                        found.into_iter().filter_map(|i| self.slot(i)).collect();
                    for &t in &ts {
                        self.label_step(t, path);
                    }
                    chain.push(ts);
                }
                if st.ordered {
                    per_node.push(
                        self.sequence(
                            chain
                                .into_iter()
                                .map(|ts| Block::of(ts, label.clone()))
                                .collect(),
                            path,
                        ),
                    );
                } else {
                    per_node.push(Block::of(
                        chain.into_iter().flatten().collect(),
                        label.clone(),
                    ));
                }
            }
            parts.push(Block::union(per_node));
        }
        // `cmp.action` steps, in order.
        if !st.actions.is_empty() {
            let mut per_node = Vec::new();
            for &node in &node_list {
                let mut chain = Vec::new();
                for a in &st.actions {
                    let want = a.component.node.as_deref().or(node);
                    let found = self.find_components(&a.component.component, want);
                    if found.is_empty() {
                        return Err(PlanError::UnknownWorkflowComponent {
                            service: self.service(),
                            workflow: wf.to_owned(),
                            step: label.clone(),
                            component: a.component.to_string(),
                            node: want.map(str::to_owned),
                        });
                    }
                    let mut ts = Vec::new();
                    for i in found {
                        let c = &self.model.components[i];
                        Self::check_action(c, &a.action)?;
                        if self.mode != super::request::StepMode::Converge {
                            if let Some(t) = self.requested_action(i, a, path) {
                                ts.push(t);
                            }
                            continue;
                        }
                        let mut id = TaskId::new(&c.id, &a.action);
                        let mut k = 2;
                        while self.graph.node_weights().any(|t| t.id == id) {
                            id = TaskId(format!("{}#{k}", TaskId::new(&c.id, &a.action)));
                            k += 1;
                        }
                        let create = NodeIndex::new(i);
                        let planned = self.planned[i];
                        let t = self.add(
                            Task {
                                id,
                                component: c.id.clone(),
                                action: a.action.clone(),
                                op: TaskOp::Action {
                                    params: a.params.clone().into(),
                                },
                                node: self.nodes_of[i].map(str::to_owned),
                                reason: Reason::WorkflowStep,
                                conditional: true,
                                step: path.to_vec(),
                                desired_hash: self.graph[create].desired_hash.clone(),
                            },
                            planned,
                        );
                        self.graph.add_edge(create, t, Edge::Follows);
                        ts.push(t);
                    }
                    chain.push(Block::of(ts, label.clone()));
                }
                per_node.push(self.sequence(chain, path));
            }
            parts.push(Block::union(per_node));
        }
        // Nested steps.
        if !st.subtasks.is_empty() {
            parts.push(self.steps(wf, &st.subtasks, st.subtask_order, path)?);
        }
        let mut b = self.sequence(parts, path);
        b.label = label;
        Ok(b)
    }
}

/// A part of a workflow: the tasks that start it and those that end it.
#[derive(Debug, Default)]
struct Block {
    entries: Vec<NodeIndex>,
    exits: Vec<NodeIndex>,
    label: String,
}

impl Block {
    fn of(tasks: Vec<NodeIndex>, label: String) -> Block {
        Block {
            entries: tasks.clone(),
            exits: tasks,
            label,
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn union(blocks: Vec<Block>) -> Block {
        let mut out = Block::default();
        let (mut in_seen, mut out_seen) = (HashSet::new(), HashSet::new());
        for b in blocks {
            if out.label.is_empty() {
                out.label = b.label.clone();
            }
            out.entries
                .extend(b.entries.into_iter().filter(|e| in_seen.insert(*e)));
            out.exits
                .extend(b.exits.into_iter().filter(|e| out_seen.insert(*e)));
        }
        out
    }
}
