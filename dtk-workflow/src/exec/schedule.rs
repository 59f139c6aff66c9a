//! The coordinator of a run: which tasks are ready, the limits (global, per provider, one
//! task per node), the journal, and applying each result to actual state.
//!
//! The coordinator polls the running jobs itself (a `FuturesUnordered`), rather than
//! spawning a tokio task per job: a job that finishes at once (a no-op, an unchanged
//! record) costs no task, no wake-up of another thread and no channel hop, and jobs borrow
//! the plan instead of copying from it. Jobs wait on processes, sockets and timers, not on
//! the CPU, so one thread polling them loses no parallelism that matters.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtk_model::instance::{ComponentId, ServiceModel};
use dtk_model::value::Attributes;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use petgraph::Direction;
use petgraph::graph::NodeIndex;

use super::job::{Job, JobResult, NodeTarget};
use super::prepare::{DefActions, Ready};
use super::records::Records;
use super::{Event, ExecContext, Outcome, TaskReport, TaskStatus};
use crate::hash::{FastMap, outputs_digest};
use crate::journal::{JournalEffect, JournalEntry, JournalTask, JournalWriter};
use crate::plan::Plan;
use crate::state::{ActualState, AppliedComponent, ComponentStatus};
use crate::task::{PlanKind, Task, TaskId, TaskOp};

/// What the coordinator knows of a task.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Slot {
    Pending,
    Running,
    Finished(TaskStatus),
}

/// No node: the task may run beside anything.
const NO_NODE: u32 = u32::MAX;

/// A task's component that is not in the model (a removed component being deleted).
const NOT_IN_MODEL: u32 = u32::MAX;

/// A model component with no converge task in the plan.
const NO_TASK: u32 = u32::MAX;

pub(super) struct Run<'a> {
    pub(super) plan: &'a Plan,
    pub(super) model: &'a ServiceModel,
    pub(super) ctx: &'a ExecContext,
    /// The node's name → the component realizing it.
    pub(super) realizer: FastMap<String, ComponentId>,
    /// Where commands run on each node, made once per node (see `node_target`).
    pub(super) node_targets: FastMap<String, Arc<NodeTarget>>,
    /// Each task's component, as its index in the model (or [`NOT_IN_MODEL`]): looked
    /// up once per task when the run starts (in one pass, where the lookups overlap),
    /// not by id in every step that needs it.
    task_ci: Vec<u32>,
    /// Each model component's converge task in this plan (or [`NO_TASK`]).
    converge_of: Vec<u32>,
    /// The model indices of each converge task's dependencies (in
    /// `dependency_ids` order; [`NOT_IN_MODEL`] for one that is not), task `i`'s from
    /// `dep_start[i]` to `dep_start[i + 1]`: looked up in one pass when the run starts,
    /// where the lookups of different tasks overlap, rather than one by one between
    /// everything else a task's preparation does.
    dep_ci: Vec<u32>,
    dep_start: Vec<u32>,
    pub(super) state: Records<'a>,
    pub(super) secret_outputs: HashMap<ComponentId, Attributes>,
    pub(super) slots: Vec<Slot>,
    pub(super) reports: Vec<Option<TaskReport>>,
    /// When each task started.
    started: Vec<Option<Instant>>,
    pub(super) indeg: Vec<u32>,
    /// Each task's node, as an index into `busy` (or [`NO_NODE`]).
    task_node: Vec<u32>,
    /// Whether a task runs on the node.
    busy: Vec<bool>,
    /// Tasks ready but waiting for their node, by node.
    node_wait: Vec<VecDeque<NodeIndex>>,
    pub(super) journal: Option<JournalWriter>,
    /// `create` and `delete` of each definition (shared by many instances), converted.
    pub(super) actions: FastMap<usize, Arc<DefActions>>,
    /// Components (by index) whose `create` ran in this run.
    pub(super) ran: Vec<bool>,
    /// The first task that failed (`fail_fast` stops there).
    first_failure: Option<TaskId>,
}

/// Runs `plan` with `journal` (opened, nothing written yet); see [`super::execute`].
pub(super) async fn run(
    plan: &Plan,
    model: &ServiceModel,
    actual: ActualState,
    ctx: &ExecContext,
    journal: Option<JournalWriter>,
    start: Instant,
) -> Outcome {
    let n = plan.len();
    let graph = plan.graph();
    let mut realizer: FastMap<String, ComponentId> = FastMap::default();
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
    let mut node_ids: FastMap<&str, u32> = FastMap::default();
    let task_node: Vec<u32> = graph
        .node_indices()
        .map(|i| match graph[i].node.as_deref() {
            Some(name) => {
                let next = u32::try_from(node_ids.len()).unwrap_or(NO_NODE - 1);
                *node_ids.entry(name).or_insert(next)
            }
            None => NO_NODE,
        })
        .collect();
    let nodes = node_ids.len();
    let state = Records::new(&model.components, actual, n > 0);
    let task_ci: Vec<u32> = graph
        .node_indices()
        .map(|i| {
            state
                .index_of(&graph[i].component)
                .and_then(|ci| u32::try_from(ci).ok())
                .unwrap_or(NOT_IN_MODEL)
        })
        .collect();
    let mut converge_of = vec![NO_TASK; if n > 0 { model.components.len() } else { 0 }];
    // Sized for two dependencies a task, rather than grown by doubling.
    let mut dep_ci: Vec<u32> = Vec::with_capacity(n.saturating_mul(2));
    let mut dep_start: Vec<u32> = Vec::with_capacity(n + 1);
    for i in graph.node_indices() {
        dep_start.push(u32::try_from(dep_ci.len()).unwrap_or(u32::MAX));
        let ci = task_ci[i.index()];
        if ci != NOT_IN_MODEL && graph[i].op == TaskOp::Converge {
            converge_of[ci as usize] = u32::try_from(i.index()).unwrap_or(NO_TASK);
            dep_ci.extend(
                crate::plan::dependency_ids(&model.components[ci as usize]).map(|d| {
                    state
                        .index_of(d)
                        .and_then(|x| u32::try_from(x).ok())
                        .unwrap_or(NOT_IN_MODEL)
                }),
            );
        }
    }
    dep_start.push(u32::try_from(dep_ci.len()).unwrap_or(u32::MAX));
    let mut run = Run {
        plan,
        model,
        ctx,
        realizer,
        node_targets: FastMap::default(),
        task_ci,
        converge_of,
        dep_ci,
        dep_start,
        state,
        secret_outputs: HashMap::new(),
        slots: vec![Slot::Pending; n],
        reports: vec![None; n],
        started: vec![None; n],
        indeg: graph
            .node_indices()
            .map(|i| {
                let d = graph.neighbors_directed(i, Direction::Incoming).count();
                u32::try_from(d).unwrap_or(u32::MAX)
            })
            .collect(),
        task_node,
        busy: vec![false; nodes],
        node_wait: (0..nodes).map(|_| VecDeque::new()).collect(),
        journal,
        actions: FastMap::default(),
        ran: vec![false; model.components.len()],
        first_failure: None,
    };
    if let Some(j) = &run.journal {
        j.append(JournalEntry::Begin {
            version: crate::journal::JOURNAL_VERSION,
            service: model.name.clone(),
            plan: plan.kind().to_string(),
            tasks: n,
            graph: plan
                .order()
                .iter()
                .map(|&i| {
                    let t = &graph[i];
                    JournalTask {
                        id: t.id.clone(),
                        component: t.component.clone(),
                        action: t.action.clone(),
                        node: t.node.clone(),
                        after: graph
                            .neighbors_directed(i, Direction::Incoming)
                            .map(|p| graph[p].id.clone())
                            .collect(),
                    }
                })
                .collect(),
        });
    }
    // A fail-fast stop is a failure, not a cancellation.
    let cancelled = run.schedule().await && !run.failed_fast();
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
    // Sized once: grown by doubling (a report is large) it was 2% of a run.
    let mut tasks = Vec::with_capacity(n);
    tasks.extend(
        plan.order()
            .iter()
            .filter_map(|&i| run.reports[i.index()].take()),
    );
    Outcome {
        tasks,
        duration: start.elapsed(),
        state_changed: run.state.changed(),
        state: run.state.into_state(),
        cancelled,
        journal: journal_stats,
        journal_error,
    }
}

/// Runs `job`, turning a panic into the failure of its task.
async fn guarded(job: Box<Job<'_>>) -> JobResult {
    let index = job.index;
    match AssertUnwindSafe(job.run()).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            JobResult::panicked(index, message)
        }
    }
}

impl<'a> Run<'a> {
    /// The model index of task `i`'s component (`None`: not in the model).
    pub(super) fn component_of(&self, i: NodeIndex) -> Option<usize> {
        match self.task_ci.get(i.index()) {
            Some(&ci) if ci != NOT_IN_MODEL => Some(ci as usize),
            _ => None,
        }
    }

    /// The model indices of converge task `i`'s dependencies, as looked up when the run
    /// started (see `dep_ci`).
    pub(super) fn dependency_indices(&self, i: NodeIndex) -> &[u32] {
        let at = |k: usize| self.dep_start.get(k).map_or(0, |&x| x as usize);
        self.dep_ci
            .get(at(i.index())..at(i.index() + 1))
            .unwrap_or(&[])
    }

    /// The record of a dependency `d` whose model index is `ci` (or [`NOT_IN_MODEL`]).
    pub(super) fn dependency_record(&self, d: &ComponentId, ci: u32) -> Option<&AppliedComponent> {
        if ci == NOT_IN_MODEL {
            self.state.get(d)
        } else {
            self.state.at(ci as usize)
        }
    }

    /// The converge task of model component `ci` in this plan.
    pub(super) fn converge_task_of(&self, ci: usize) -> Option<NodeIndex> {
        match self.converge_of.get(ci) {
            Some(&t) if t != NO_TASK => Some(NodeIndex::new(t as usize)),
            _ => None,
        }
    }

    /// Sends the event `ev` makes, when someone listens: without a listener the event
    /// (a few copied strings) is not made at all.
    pub(super) fn emit(&self, ev: impl FnOnce() -> Event) {
        if let Some(tx) = &self.ctx.events {
            let _ = tx.send(ev());
        }
    }

    /// Appends the entry `e` makes, when the run has a journal (made only then).
    pub(super) fn journal(&self, e: impl FnOnce() -> JournalEntry) {
        if let Some(j) = &self.journal {
            j.append(e());
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.ctx.cancel.is_cancelled()
            || self.journal.as_ref().is_some_and(|j| j.is_broken())
            || (self.ctx.fail_fast && self.first_failure.is_some())
    }

    /// Whether scheduling stopped only because of `fail_fast`.
    fn failed_fast(&self) -> bool {
        self.ctx.fail_fast
            && self.first_failure.is_some()
            && !self.ctx.cancel.is_cancelled()
            && !self.journal.as_ref().is_some_and(|j| j.is_broken())
    }

    /// Runs every task it can; returns whether it stopped early (cancelled).
    async fn schedule(&mut self) -> bool {
        let plan = self.plan;
        let graph = plan.graph();
        let mut ready = ReadyQueue::default();
        for &i in plan.order() {
            if self.indeg[i.index()] == 0 {
                ready.push(i);
            }
        }
        // Jobs prepared but held back by their provider's limit.
        let mut stash: FastMap<NodeIndex, Box<Job<'a>>> = FastMap::default();
        let mut limits = KindLimits::default();
        let mut running = FuturesUnordered::new();
        let limit = self.ctx.limits.concurrency.max(1);
        let mut stopped = false;
        loop {
            while running.len() < limit {
                if self.stopping() {
                    stopped = true;
                    break;
                }
                let Some(i) = ready.pop() else { break };
                if self.slots[i.index()] != Slot::Pending {
                    continue;
                }
                // One task per node at a time: a task waits for its node before anything
                // is resolved for it.
                let node = self.task_node[i.index()];
                if node != NO_NODE && self.busy[node as usize] {
                    self.node_wait[node as usize].push_back(i);
                    continue;
                }
                let mut job = match stash.remove(&i) {
                    Some(j) => j,
                    None => match self.prepare(i) {
                        Ready::Run(j) => j,
                        Ready::Unchanged => {
                            self.finish(i, TaskStatus::Unchanged, Done::none(), &mut ready);
                            continue;
                        }
                        Ready::Fail(message) => {
                            self.finish(
                                i,
                                TaskStatus::Failed { message },
                                Done::none(),
                                &mut ready,
                            );
                            continue;
                        }
                    },
                };
                if let Some(kind) = job.limit_kind {
                    let max = self.ctx.limits.per_provider.get(kind).copied().unwrap_or(0);
                    if limits.running.get(kind).copied().unwrap_or(0) >= max.max(1) {
                        limits.waiting.entry(kind).or_default().push_back(i);
                        stash.insert(i, job);
                        continue;
                    }
                    *limits.running.entry(kind).or_default() += 1;
                    limits.of_task.insert(i, kind);
                }
                if node != NO_NODE {
                    self.busy[node as usize] = true;
                }
                self.slots[i.index()] = Slot::Running;
                let now = Instant::now();
                self.started[i.index()] = Some(now);
                job.started = Some(now);
                let t = &graph[i];
                self.journal(|| JournalEntry::Intent {
                    task: t.id.clone(),
                    component: t.component.clone(),
                });
                self.emit(|| Event::TaskStarted {
                    task: t.id.clone(),
                    node: t.node.clone(),
                });
                // Polled once here: a job that needs nothing to wait for (a no-op, a
                // provider answering at once) completes without a place among the running
                // ones. One still pending goes there and is polled again with the
                // coordinator's waker (which its leaves register anew on every poll).
                let mut fut = Box::pin(guarded(job));
                let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(r) => {
                        self.settle(r, &mut ready, &mut limits);
                        // Jobs that all end at once never make the coordinator wait: it
                        // gives the runtime its turn now and then (cooperative budget),
                        // so that signal handlers and event readers on the same thread
                        // still run.
                        tokio::task::consume_budget().await;
                    }
                    std::task::Poll::Pending => running.push(fut),
                }
            }
            if running.is_empty() {
                if stopped || ready.is_empty() {
                    break;
                }
                continue;
            }
            let Some(r) = running.next().await else {
                continue;
            };
            self.settle(r, &mut ready, &mut limits);
        }
        // Whatever did not run was cancelled (or, after a fail-fast stop, skipped
        // because of the first failure).
        let left = match (&self.first_failure, self.failed_fast()) {
            (Some(f), true) => TaskStatus::Skipped { because: f.clone() },
            _ => TaskStatus::Cancelled,
        };
        for &i in plan.order() {
            if self.slots[i.index()] == Slot::Pending {
                let t = &graph[i];
                self.slots[i.index()] = Slot::Finished(left.clone());
                self.reports[i.index()] =
                    Some(report(t, left.clone(), Duration::ZERO, 0, Vec::new()));
                self.emit(|| Event::TaskSkipped {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    status: left.clone(),
                });
            }
        }
        stopped
    }

    /// Frees what a finished job held (its node, its place under its provider's limit),
    /// then applies its result.
    fn settle(&mut self, r: JobResult, ready: &mut ReadyQueue, limits: &mut KindLimits<'a>) {
        let i = r.index;
        let node = self.task_node[i.index()];
        if node != NO_NODE {
            self.busy[node as usize] = false;
            if let Some(w) = self.node_wait[node as usize].pop_front() {
                ready.push(w);
            }
        }
        if let Some(kind) = limits.of_task.remove(&i) {
            if let Some(c) = limits.running.get_mut(kind) {
                *c = c.saturating_sub(1);
            }
            if let Some(w) = limits.waiting.get_mut(kind).and_then(VecDeque::pop_front) {
                ready.push(w);
            }
        }
        self.complete(r, ready);
    }

    /// Applies a finished job's result.
    fn complete(&mut self, r: JobResult, ready: &mut ReadyQueue) {
        let i = r.index;
        let t = &self.plan.graph()[i];
        let done = Done {
            duration: r.duration,
            attempts: r.attempts,
            record: r.record,
            inputs: r.inputs,
        };
        match r.result {
            Ok(ok) => {
                let effect = match &t.op {
                    TaskOp::Converge => {
                        let mut rec = match done.record {
                            Some(rec) => *rec,
                            None => failed_record(t.node.clone(), String::new()),
                        };
                        rec.inputs = done.inputs;
                        rec.outputs = ok.outputs;
                        rec.outputs_digest = outputs_digest(&rec.outputs);
                        if !ok.secret_outputs.is_empty() {
                            self.secret_outputs
                                .insert(t.component.clone(), ok.secret_outputs);
                        }
                        let effect = self.journal.as_ref().map(|_| JournalEffect::Applied {
                            record: Box::new(rec.clone()),
                        });
                        self.store_record(i, &t.component, rec);
                        effect
                    }
                    TaskOp::Delete => {
                        self.state.remove(&t.component);
                        Some(JournalEffect::Deleted)
                    }
                    TaskOp::Action { .. } => {
                        if let Some(rec) = self.state.get_mut(&t.component) {
                            rec.outputs.extend(ok.outputs.clone());
                            rec.outputs_digest = outputs_digest(&rec.outputs);
                        }
                        Some(JournalEffect::Outputs {
                            outputs: ok.outputs,
                        })
                    }
                };
                self.changed(t);
                if let Some(effect) = effect {
                    self.journal(|| JournalEntry::Done {
                        task: t.id.clone(),
                        component: t.component.clone(),
                        effect,
                    });
                }
                self.emit(|| Event::TaskFinished {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    duration: r.duration,
                    output: ok.captured,
                });
                let done = Done {
                    duration: r.duration,
                    attempts: r.attempts,
                    record: None,
                    inputs: Attributes::new(),
                };
                self.finish_with(i, TaskStatus::Done, done, ok.warnings, ready);
            }
            Err((message, captured)) => {
                self.emit(|| Event::TaskFailed {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    duration: r.duration,
                    error: message.clone(),
                    output: captured,
                });
                self.finish(i, TaskStatus::Failed { message }, done, ready);
            }
        }
    }

    /// Stores the record task `i` leaves for its component `id` (by the component's model
    /// index when it has one: no lookup by id).
    fn store_record(&mut self, i: NodeIndex, id: &ComponentId, rec: AppliedComponent) {
        match self.component_of(i) {
            Some(ci) => self.state.insert_at(ci, rec),
            None => self.state.insert(id, rec),
        }
    }

    /// Forgets what was made of a node from its own component's record, when `t` is
    /// that component's task: the node's commands see its new outputs.
    fn changed(&mut self, t: &Task) {
        // Nothing made yet (no command ran on a node), nothing to forget.
        if self.node_targets.is_empty() {
            return;
        }
        if let Some(node) = &t.node
            && self.realizer.get(node) == Some(&t.component)
        {
            self.node_targets.remove(node);
        }
    }

    fn finish(&mut self, i: NodeIndex, status: TaskStatus, done: Done, ready: &mut ReadyQueue) {
        self.finish_with(i, status, done, Vec::new(), ready);
    }

    /// Records a task's end and releases or skips its dependents.
    fn finish_with(
        &mut self,
        i: NodeIndex,
        status: TaskStatus,
        done: Done,
        warnings: Vec<String>,
        ready: &mut ReadyQueue,
    ) {
        let graph = self.plan.graph();
        let t = &graph[i];
        match &status {
            TaskStatus::Unchanged => {
                self.journal(|| JournalEntry::Unchanged {
                    task: t.id.clone(),
                    component: t.component.clone(),
                });
                self.emit(|| Event::TaskSkipped {
                    task: t.id.clone(),
                    node: t.node.clone(),
                    status: TaskStatus::Unchanged,
                });
            }
            TaskStatus::Failed { message } => {
                if self.first_failure.is_none() {
                    self.first_failure = Some(t.id.clone());
                }
                let record = if t.op == TaskOp::Converge {
                    let mut rec = match done.record {
                        Some(mut rec) => {
                            rec.inputs = done.inputs;
                            *rec
                        }
                        None => self
                            .state
                            .get(&t.component)
                            .cloned()
                            .unwrap_or_else(|| failed_record(t.node.clone(), String::new())),
                    };
                    // Keep what was known before (outputs consumers may still link to).
                    if let Some(prev) = self.state.get(&t.component) {
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
                    self.store_record(i, &t.component, rec.clone());
                    self.changed(t);
                    Some(Box::new(rec))
                } else {
                    None
                };
                self.journal(|| JournalEntry::Failed {
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
        let mut r = report(t, status.clone(), done.duration, done.attempts, warnings);
        r.started = self.started[i.index()];
        self.reports[i.index()] = Some(r);
        match status {
            TaskStatus::Done | TaskStatus::Unchanged => {
                self.slots[i.index()] = Slot::Finished(status);
                for s in graph.neighbors_directed(i, Direction::Outgoing) {
                    let d = &mut self.indeg[s.index()];
                    *d = d.saturating_sub(1);
                    if *d == 0 && self.slots[s.index()] == Slot::Pending {
                        ready.push(s);
                    }
                }
            }
            TaskStatus::Failed { .. } | TaskStatus::Skipped { .. } => {
                let because = match &status {
                    TaskStatus::Skipped { because } => because.clone(),
                    _ => t.id.clone(),
                };
                self.slots[i.index()] = Slot::Finished(status);
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
                    self.journal(|| JournalEntry::Skipped {
                        task: st.id.clone(),
                        because: because.clone(),
                    });
                    self.emit(|| Event::TaskSkipped {
                        task: st.id.clone(),
                        node: st.node.clone(),
                        status: skipped,
                    });
                    stack.extend(graph.neighbors_directed(s, Direction::Outgoing));
                }
            }
            TaskStatus::Cancelled => {
                self.slots[i.index()] = Slot::Finished(status);
            }
        }
    }
}

/// The per-provider limits' bookkeeping of one run (see [`super::Limits::per_provider`]).
#[derive(Default)]
struct KindLimits<'a> {
    /// Jobs running, by provider kind.
    running: HashMap<&'a str, usize>,
    /// Jobs prepared and waiting for their kind's limit, in order.
    waiting: HashMap<&'a str, VecDeque<NodeIndex>>,
    /// The kind each running job counts against.
    of_task: FastMap<NodeIndex, &'a str>,
}

/// The tasks ready to run, taken lowest graph index first: the order the planner added
/// them in, which is the model's order. Any ready task may run; this order walks the plan,
/// the model and the records forward through memory. Taken in the order they became ready
/// (first in, first out), the tasks of a service whose components depend on components
/// declared far before them jumped about 100,000 records at random, and a run of that
/// shape spent 5.9 µs per task against 4.9 µs this way (`benches/exec_once.rs`).
#[derive(Default)]
pub(super) struct ReadyQueue(BinaryHeap<Reverse<NodeIndex>>);

impl ReadyQueue {
    pub(super) fn push(&mut self, i: NodeIndex) {
        self.0.push(Reverse(i));
    }

    pub(super) fn pop(&mut self) -> Option<NodeIndex> {
        self.0.pop().map(|Reverse(i)| i)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a task's run went, besides its status.
struct Done {
    duration: Duration,
    attempts: u32,
    /// The record a converge prepared, and the inputs it ran with.
    record: Option<Box<AppliedComponent>>,
    inputs: Attributes,
}

impl Done {
    /// A task that did not run.
    fn none() -> Done {
        Done {
            duration: Duration::ZERO,
            attempts: 0,
            record: None,
            inputs: Attributes::new(),
        }
    }
}

fn failed_record(node: Option<String>, message: String) -> AppliedComponent {
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
        imported: None,
        module: None,
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
        started: None,
        attempts,
        warnings,
    }
}
