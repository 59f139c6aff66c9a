//! The coordinator of a run: which tasks are ready, the limits (global, per provider, one
//! task per node), the journal, and applying each result to actual state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtk_model::instance::{ComponentId, ServiceModel};
use dtk_model::module::ComponentDef;
use dtk_model::value::Attributes;
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use tokio::task::JoinSet;

use super::job::{Job, JobResult};
use super::prepare::Ready;
use super::{Event, ExecContext, Outcome, TaskReport, TaskStatus};
use crate::hash::outputs_digest;
use crate::journal::{JournalEffect, JournalEntry, JournalWriter};
use crate::plan::Plan;
use crate::state::{ActualState, AppliedComponent, ComponentStatus, RecordedAction};
use crate::task::{PlanKind, Task, TaskOp};

/// What the coordinator knows of a task.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Slot {
    Pending,
    Running,
    Finished(TaskStatus),
}

pub(super) struct Run<'a> {
    pub(super) plan: &'a Plan,
    pub(super) model: &'a ServiceModel,
    pub(super) ctx: &'a ExecContext,
    pub(super) service: Arc<str>,
    pub(super) comp_index: HashMap<&'a ComponentId, usize>,
    pub(super) statics: HashMap<usize, Attributes>,
    /// The node's name → the component realizing it.
    pub(super) realizer: HashMap<String, ComponentId>,
    /// Component → its converge task in this plan.
    pub(super) converge_task: HashMap<&'a ComponentId, NodeIndex>,
    pub(super) state: ActualState,
    pub(super) secret_outputs: HashMap<ComponentId, Attributes>,
    pub(super) slots: Vec<Slot>,
    pub(super) reports: Vec<Option<TaskReport>>,
    pub(super) indeg: Vec<usize>,
    /// Records to write for converges, prepared with the job.
    pub(super) pending_records: HashMap<NodeIndex, AppliedComponent>,
    pub(super) journal: Option<JournalWriter>,
    /// `create` and `delete` of each definition (shared by many instances), converted.
    pub(super) actions: HashMap<usize, (Option<RecordedAction>, Option<RecordedAction>)>,
    /// Components whose `create` ran in this run.
    pub(super) ran: HashSet<ComponentId>,
}

/// Runs `plan` with `journal` (opened, nothing written yet); see [`super::execute`].
pub(super) async fn run(
    plan: &Plan,
    model: &ServiceModel,
    actual: &ActualState,
    ctx: &ExecContext,
    journal: Option<JournalWriter>,
    start: Instant,
) -> Outcome {
    let n = plan.len();
    let graph = plan.graph();
    let mut realizer: HashMap<String, ComponentId> = HashMap::new();
    for (id, rec) in &actual.components {
        if rec.realizes_node
            && let Some(node) = &rec.node
        {
            realizer.insert(node.clone(), id.clone());
        }
    }
    for node in &model.nodes {
        if let Some(c) = &node.realized_by {
            realizer.insert(node.name.clone(), c.clone());
        }
    }
    let mut run = Run {
        plan,
        model,
        ctx,
        service: Arc::from(model.name.as_str()),
        comp_index: model
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect(),
        statics: HashMap::new(),
        realizer,
        converge_task: graph
            .node_indices()
            .filter(|&i| graph[i].op == TaskOp::Converge)
            .map(|i| (&graph[i].component, i))
            .collect(),
        state: actual.clone(),
        secret_outputs: HashMap::new(),
        slots: vec![Slot::Pending; n],
        reports: vec![None; n],
        indeg: graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
            .collect(),
        pending_records: HashMap::new(),
        journal,
        actions: HashMap::new(),
        ran: HashSet::new(),
    };
    if let Some(j) = &run.journal {
        j.append(JournalEntry::Begin {
            version: crate::journal::JOURNAL_VERSION,
            service: model.name.clone(),
            plan: plan.kind().to_string(),
            tasks: n,
        });
    }
    let cancelled = run.schedule().await;
    if plan.kind() == PlanKind::Converge {
        run.refresh_metadata();
    }
    let failed = run
        .reports
        .iter()
        .flatten()
        .any(|r| !matches!(r.status, TaskStatus::Done | TaskStatus::Unchanged));
    let (journal_stats, journal_error) = match run.journal.take() {
        Some(j) => {
            j.append(JournalEntry::End {
                status: if cancelled {
                    "cancelled"
                } else if failed {
                    "failed"
                } else {
                    "complete"
                }
                .to_owned(),
            });
            match j.close().await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e)),
            }
        }
        None => (None, None),
    };
    let tasks = plan
        .order()
        .iter()
        .filter_map(|&i| run.reports[i.index()].take())
        .collect();
    Outcome {
        tasks,
        duration: start.elapsed(),
        state: run.state,
        cancelled,
        journal: journal_stats,
        journal_error,
    }
}

impl<'a> Run<'a> {
    pub(super) fn emit(&self, ev: Event) {
        if let Some(tx) = &self.ctx.events {
            let _ = tx.send(ev);
        }
    }

    /// The `create` and `delete` actions of `def`, converted once per definition.
    pub(super) fn def_actions(
        &mut self,
        def: &Arc<ComponentDef>,
    ) -> (Option<RecordedAction>, Option<RecordedAction>) {
        self.actions
            .entry(Arc::as_ptr(def) as usize)
            .or_insert_with(|| {
                (
                    def.actions.get("create").and_then(RecordedAction::from_def),
                    def.actions.get("delete").and_then(RecordedAction::from_def),
                )
            })
            .clone()
    }

    pub(super) fn journal(&self, e: JournalEntry) {
        if let Some(j) = &self.journal {
            j.append(e);
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.ctx.cancel.is_cancelled() || self.journal.as_ref().is_some_and(|j| j.is_broken())
    }

    /// Runs every task it can; returns whether it stopped early (cancelled).
    async fn schedule(&mut self) -> bool {
        let plan = self.plan;
        let mut ready: VecDeque<NodeIndex> = plan
            .order()
            .iter()
            .copied()
            .filter(|i| self.indeg[i.index()] == 0)
            .collect();
        let mut stash: HashMap<NodeIndex, Box<Job>> = HashMap::new();
        let mut busy_nodes: HashSet<String> = HashSet::new();
        let mut node_wait: HashMap<String, VecDeque<NodeIndex>> = HashMap::new();
        let mut kind_running: HashMap<String, usize> = HashMap::new();
        let mut kind_wait: HashMap<String, VecDeque<NodeIndex>> = HashMap::new();
        let mut running: JoinSet<JobResult> = JoinSet::new();
        let mut running_jobs: HashMap<NodeIndex, (Option<String>, Option<String>)> = HashMap::new();
        let mut task_ids: HashMap<tokio::task::Id, NodeIndex> = HashMap::new();
        let limit = self.ctx.limits.concurrency.max(1);
        let mut stopped = false;
        loop {
            while running.len() < limit {
                if self.stopping() {
                    stopped = true;
                    break;
                }
                let Some(i) = ready.pop_front() else { break };
                if self.slots[i.index()] != Slot::Pending {
                    continue;
                }
                let job = match stash.remove(&i) {
                    Some(j) => j,
                    None => match self.prepare(i) {
                        Ready::Run(j) => j,
                        Ready::Unchanged => {
                            self.finish(
                                i,
                                TaskStatus::Unchanged,
                                Duration::ZERO,
                                0,
                                Vec::new(),
                                &mut ready,
                            );
                            continue;
                        }
                        Ready::Fail(message) => {
                            self.finish(
                                i,
                                TaskStatus::Failed { message },
                                Duration::ZERO,
                                0,
                                Vec::new(),
                                &mut ready,
                            );
                            continue;
                        }
                    },
                };
                if let Some(node) = &job.node
                    && busy_nodes.contains(node)
                {
                    node_wait.entry(node.clone()).or_default().push_back(i);
                    stash.insert(i, job);
                    continue;
                }
                if let Some(kind) = &job.limit_kind
                    && let Some(&max) = self.ctx.limits.per_provider.get(kind)
                    && kind_running.get(kind).copied().unwrap_or(0) >= max.max(1)
                {
                    kind_wait.entry(kind.clone()).or_default().push_back(i);
                    stash.insert(i, job);
                    continue;
                }
                if let Some(node) = &job.node {
                    busy_nodes.insert(node.clone());
                }
                if let Some(kind) = &job.limit_kind {
                    *kind_running.entry(kind.clone()).or_default() += 1;
                }
                running_jobs.insert(i, (job.node.clone(), job.limit_kind.clone()));
                self.slots[i.index()] = Slot::Running;
                let t = &plan.graph()[i];
                self.journal(JournalEntry::Intent {
                    task: t.id.clone(),
                    component: t.component.clone(),
                });
                self.emit(Event::TaskStarted {
                    task: t.id.clone(),
                    node: t.node.clone(),
                });
                let handle = running.spawn(job.run());
                task_ids.insert(handle.id(), i);
            }
            if running.is_empty() {
                if stopped || ready.is_empty() {
                    break;
                }
                continue;
            }
            let Some(first) = running.join_next_with_id().await else {
                continue;
            };
            let mut joined = vec![first];
            while let Some(more) = running.try_join_next_with_id() {
                joined.push(more);
            }
            for j in joined {
                let (i, result) = match j {
                    Ok((_, r)) => (r.index, Ok(r)),
                    Err(e) => match task_ids.get(&e.id()) {
                        Some(&i) => (i, Err(format!("the task panicked: {e}"))),
                        None => continue,
                    },
                };
                if let Some((node, kind)) = running_jobs.remove(&i) {
                    if let Some(node) = node {
                        busy_nodes.remove(&node);
                        if let Some(w) = node_wait.get_mut(&node).and_then(VecDeque::pop_front) {
                            ready.push_front(w);
                        }
                    }
                    if let Some(kind) = kind {
                        if let Some(c) = kind_running.get_mut(&kind) {
                            *c = c.saturating_sub(1);
                        }
                        if let Some(w) = kind_wait.get_mut(&kind).and_then(VecDeque::pop_front) {
                            ready.push_front(w);
                        }
                    }
                }
                match result {
                    Ok(r) => self.complete(r, &mut ready),
                    Err(message) => self.finish(
                        i,
                        TaskStatus::Failed { message },
                        Duration::ZERO,
                        1,
                        Vec::new(),
                        &mut ready,
                    ),
                }
            }
        }
        // Whatever did not run was cancelled.
        for i in plan.order().to_vec() {
            if self.slots[i.index()] == Slot::Pending {
                let t = &plan.graph()[i];
                self.slots[i.index()] = Slot::Finished(TaskStatus::Cancelled);
                self.reports[i.index()] = Some(report(
                    t,
                    TaskStatus::Cancelled,
                    Duration::ZERO,
                    0,
                    Vec::new(),
                ));
                self.emit(Event::TaskSkipped {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    status: TaskStatus::Cancelled,
                });
            }
        }
        stopped
    }

    /// Applies a finished job's result.
    fn complete(&mut self, r: JobResult, ready: &mut VecDeque<NodeIndex>) {
        let i = r.index;
        let t = &self.plan.graph()[i];
        match r.result {
            Ok(ok) => {
                let effect = match &t.op {
                    TaskOp::Converge => {
                        let mut rec = self.pending_records.remove(&i).unwrap_or_else(|| {
                            failed_record(&t.component, t.node.clone(), String::new())
                        });
                        rec.outputs = ok.outputs;
                        rec.outputs_digest = outputs_digest(&rec.outputs);
                        if !ok.secret_outputs.is_empty() {
                            self.secret_outputs
                                .insert(t.component.clone(), ok.secret_outputs);
                        }
                        let effect = self.journal.as_ref().map(|_| JournalEffect::Applied {
                            record: Box::new(rec.clone()),
                        });
                        self.state.components.insert(t.component.clone(), rec);
                        effect
                    }
                    TaskOp::Delete => {
                        self.state.components.remove(&t.component);
                        Some(JournalEffect::Deleted)
                    }
                    TaskOp::Action { .. } => {
                        if let Some(rec) = self.state.components.get_mut(&t.component) {
                            rec.outputs.extend(ok.outputs.clone());
                            rec.outputs_digest = outputs_digest(&rec.outputs);
                        }
                        Some(JournalEffect::Outputs {
                            outputs: ok.outputs,
                        })
                    }
                };
                if let (Some(effect), Some(_)) = (effect, &self.journal) {
                    self.journal(JournalEntry::Done {
                        task: t.id.clone(),
                        component: t.component.clone(),
                        effect,
                    });
                }
                self.emit(Event::TaskFinished {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    duration: r.duration,
                    output: ok.captured,
                });
                self.finish(
                    i,
                    TaskStatus::Done,
                    r.duration,
                    r.attempts,
                    ok.warnings,
                    ready,
                );
            }
            Err((message, captured)) => {
                self.emit(Event::TaskFailed {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    duration: r.duration,
                    error: message.clone(),
                    output: captured,
                });
                self.finish(
                    i,
                    TaskStatus::Failed { message },
                    r.duration,
                    r.attempts,
                    Vec::new(),
                    ready,
                );
            }
        }
    }

    /// Records a task's end and releases or skips its dependents.
    fn finish(
        &mut self,
        i: NodeIndex,
        status: TaskStatus,
        duration: Duration,
        attempts: u32,
        warnings: Vec<String>,
        ready: &mut VecDeque<NodeIndex>,
    ) {
        let graph = self.plan.graph();
        let t = &graph[i];
        match &status {
            TaskStatus::Unchanged => {
                self.journal(JournalEntry::Unchanged {
                    task: t.id.clone(),
                    component: t.component.clone(),
                });
                self.emit(Event::TaskSkipped {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    status: TaskStatus::Unchanged,
                });
            }
            TaskStatus::Failed { message } => {
                let record = if t.op == TaskOp::Converge {
                    let mut rec = self.pending_records.remove(&i).unwrap_or_else(|| {
                        self.state
                            .components
                            .get(&t.component)
                            .cloned()
                            .unwrap_or_else(|| {
                                failed_record(&t.component, t.node.clone(), String::new())
                            })
                    });
                    // Keep what was known before (outputs consumers may still link to).
                    if let Some(prev) = self.state.components.get(&t.component) {
                        rec.outputs = prev.outputs.clone();
                        rec.desired_hash = prev.desired_hash.clone();
                        rec.input_digest = prev.input_digest.clone();
                        rec.outputs_digest = prev.outputs_digest.clone();
                    } else {
                        rec.desired_hash = String::new();
                        rec.input_digest = String::new();
                        rec.outputs_digest = String::new();
                    }
                    rec.status = ComponentStatus::Failed {
                        message: message.clone(),
                    };
                    self.state
                        .components
                        .insert(t.component.clone(), rec.clone());
                    Some(Box::new(rec))
                } else {
                    None
                };
                self.journal(JournalEntry::Failed {
                    task: t.id.clone(),
                    component: t.component.clone(),
                    effect: JournalEffect::Failed {
                        message: message.clone(),
                        record,
                    },
                });
            }
            _ => {}
        }
        self.slots[i.index()] = Slot::Finished(status.clone());
        self.reports[i.index()] = Some(report(t, status.clone(), duration, attempts, warnings));
        match status {
            TaskStatus::Done | TaskStatus::Unchanged => {
                for s in graph.neighbors_directed(i, Direction::Outgoing) {
                    let d = &mut self.indeg[s.index()];
                    *d = d.saturating_sub(1);
                    if *d == 0 && self.slots[s.index()] == Slot::Pending {
                        ready.push_back(s);
                    }
                }
            }
            TaskStatus::Failed { .. } | TaskStatus::Skipped { .. } => {
                let because = match &status {
                    TaskStatus::Skipped { because } => because.clone(),
                    _ => t.id.clone(),
                };
                let mut stack: Vec<NodeIndex> =
                    graph.neighbors_directed(i, Direction::Outgoing).collect();
                while let Some(s) = stack.pop() {
                    if self.slots[s.index()] != Slot::Pending {
                        continue;
                    }
                    let st = &graph[s];
                    let skipped = TaskStatus::Skipped {
                        because: because.clone(),
                    };
                    self.slots[s.index()] = Slot::Finished(skipped.clone());
                    self.reports[s.index()] =
                        Some(report(st, skipped.clone(), Duration::ZERO, 0, Vec::new()));
                    self.journal(JournalEntry::Skipped {
                        task: st.id.clone(),
                        because: because.clone(),
                    });
                    self.emit(Event::TaskSkipped {
                        task: st.id.clone(),
                        node: st.node.clone(),
                        status: skipped,
                    });
                    stack.extend(graph.neighbors_directed(s, Direction::Outgoing));
                }
            }
            TaskStatus::Cancelled => {}
        }
    }
}

fn failed_record(_id: &ComponentId, node: Option<String>, message: String) -> AppliedComponent {
    AppliedComponent {
        status: ComponentStatus::Failed { message },
        desired_hash: String::new(),
        input_digest: String::new(),
        outputs_digest: String::new(),
        inputs: Attributes::new(),
        outputs: Attributes::new(),
        node,
        realizes_node: false,
        provider: None,
        depends_on: Vec::new(),
        delete: None,
        secret_inputs: Vec::new(),
        drift: None,
    }
}

fn report(
    t: &Task,
    status: TaskStatus,
    duration: Duration,
    attempts: u32,
    warnings: Vec<String>,
) -> TaskReport {
    TaskReport {
        id: t.id.clone(),
        component: t.component.clone(),
        action: t.action.clone(),
        node: t.node.clone(),
        status,
        duration,
        attempts,
        warnings,
    }
}
