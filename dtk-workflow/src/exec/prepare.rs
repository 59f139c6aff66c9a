//! What a ready task runs with: its inputs resolved from this run's results and actual
//! state, its secrets, its node and the provider that runs commands there, and the record
//! it will leave; or the decision not to run it (unchanged, or failed before it starts).

use dtk_model::instance::{ComponentId, ComponentInstance, LinkSource};
use dtk_model::provider::Secrets;
use dtk_model::value::{Attributes, Value};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

use super::TaskStatus;
use super::job::{Job, JobOp, NodeTarget};
use super::schedule::{Run, Slot};
use crate::hash::{input_digest, params_digest, static_inputs};
use crate::resolve::{ProducerValues, resolve_inputs};
use crate::state::{AppliedComponent, ComponentStatus, DriftMark, RecordedAction, RecordedKind};
use crate::task::{Edge, Task, TaskOp};

/// The decision made when a task becomes ready.
pub(super) enum Ready {
    Run(Box<Job>),
    Unchanged,
    Fail(String),
}

impl<'a> Run<'a> {
    fn statics(&mut self, ci: usize) -> &Attributes {
        let model = self.model;
        self.statics
            .entry(ci)
            .or_insert_with(|| static_inputs(&model.components[ci]))
    }

    /// Resolves `c`'s inputs from this run's results and actual state; secret linked
    /// values go to `secrets`.
    fn resolve(
        &mut self,
        ci: usize,
        secrets: &mut Attributes,
    ) -> Result<Attributes, crate::resolve::ResolveError> {
        let model = self.model;
        let c = &model.components[ci];
        let statics = self.statics(ci).clone();
        let state = &self.state;
        let secret_outputs = &self.secret_outputs;
        let mut merged: HashMap<&ComponentId, Attributes> = HashMap::new();
        for link in &c.links {
            if let LinkSource::Component(p) = &link.from
                && let Some(so) = secret_outputs.get(p)
            {
                let mut o = state.get(p).map(|r| r.outputs.clone()).unwrap_or_default();
                o.extend(so.clone());
                merged.insert(p, o);
            }
        }
        resolve_inputs(
            c,
            &statics,
            |p| {
                let rec = state.get(p)?;
                Some(ProducerValues {
                    outputs: merged.get(p).unwrap_or(&rec.outputs),
                    inputs: &rec.inputs,
                })
            },
            Some(secrets),
        )
    }

    fn lookup_secrets(&self, component: &ComponentId, names: &[String], into: &mut Attributes) {
        if let Some(src) = &self.ctx.secrets {
            for n in names {
                if into.contains_key(n) {
                    continue;
                }
                if let Some(v) = src.secret(component, n) {
                    into.insert(n.clone(), v);
                }
            }
        }
    }

    /// The node a task runs on, with the provider that runs commands there.
    fn node_target(&self, node: Option<&str>, me: &ComponentId) -> Option<NodeTarget> {
        let name = node?;
        let Some(realizer) = self.realizer.get(name) else {
            return Some(NodeTarget {
                name: name.to_owned(),
                provider: None,
                inputs: Attributes::new(),
                outputs: Attributes::new(),
            });
        };
        if realizer == me {
            // The node's own component: its commands cannot run through itself.
            return Some(NodeTarget {
                name: name.to_owned(),
                provider: None,
                inputs: Attributes::new(),
                outputs: Attributes::new(),
            });
        }
        let rec = self.state.get(realizer);
        let kind = self
            .comp_index
            .get(realizer)
            .and_then(|&i| self.model.components[i].def.actions.get("create"))
            .and_then(RecordedAction::from_def)
            .and_then(|a| a.provider_kind().map(str::to_owned))
            .or_else(|| rec.and_then(|r| r.provider.clone()));
        Some(NodeTarget {
            name: name.to_owned(),
            provider: kind.and_then(|k| self.ctx.providers.get(&k).cloned()),
            inputs: rec.map(|r| r.inputs.clone()).unwrap_or_default(),
            outputs: rec.map(|r| r.outputs.clone()).unwrap_or_default(),
        })
    }

    fn idempotency_key(&self, t: &Task) -> String {
        let mut k = format!(
            "{}/{}/{}/{}",
            self.service, t.component, t.action, t.desired_hash
        );
        if let TaskOp::Action { params } = &t.op {
            k.push('/');
            k.push_str(&params_digest(params));
        }
        k
    }

    /// Decides what to do with a ready task: run it (with everything resolved), skip it
    /// as unchanged, or fail it before it starts.
    pub(super) fn prepare(&mut self, i: NodeIndex) -> Ready {
        let plan = self.plan;
        let t = &plan.graph()[i];
        let ci = self.comp_index.get(&t.component).copied();
        match &t.op {
            TaskOp::Converge => {
                let Some(ci) = ci else {
                    return Ready::Fail(format!("`{}` is not in the model", t.component));
                };
                self.prepare_converge(i, t, ci)
            }
            TaskOp::Delete => self.prepare_delete(i, t, ci),
            TaskOp::Action { params } => {
                let Some(ci) = ci else {
                    return Ready::Fail(format!("`{}` is not in the model", t.component));
                };
                if t.conditional {
                    // A workflow step: runs only if its component's create ran now.
                    let ran = self.converge_task.get(&t.component).is_some_and(|&c| {
                        self.slots[c.index()] == Slot::Finished(TaskStatus::Done)
                    });
                    let follows = plan
                        .graph()
                        .edges_directed(i, Direction::Incoming)
                        .any(|e| *e.weight() == Edge::Follows);
                    if follows && !ran {
                        return Ready::Unchanged;
                    }
                }
                self.prepare_action(i, t, ci, params)
            }
        }
    }

    fn base_job(&self, i: NodeIndex, t: &Task) -> Job {
        Job {
            index: i,
            task: t.id.clone(),
            component: t.component.clone(),
            node: t.node.clone(),
            service: self.service.clone(),
            op: JobOp::Custom,
            action: None,
            provider: None,
            transport: self.ctx.transport.clone(),
            node_target: None,
            inputs: Attributes::new(),
            params: Attributes::new(),
            secrets: Secrets::default(),
            own_outputs: Attributes::new(),
            def: None,
            idempotency_key: self.idempotency_key(t),
            prior: None,
            timeout: self.ctx.default_timeout,
            retry: self.ctx.retry,
            cancel: self.ctx.cancel.clone(),
            events: self.ctx.events.clone(),
            limit_kind: None,
        }
    }

    fn finish_job(&self, mut job: Job, action: Option<RecordedAction>) -> Ready {
        match action.as_ref().map(|a| &a.kind) {
            Some(RecordedKind::Provider { kind, .. }) => {
                job.provider = self.ctx.providers.get(kind).cloned();
                job.limit_kind = Some(kind.clone());
            }
            Some(RecordedKind::Commands { .. }) => {
                job.node_target = self.node_target(job.node.as_deref(), &job.component);
                job.limit_kind = job
                    .node_target
                    .as_ref()
                    .and_then(|n| n.provider.as_ref())
                    .map(|p| p.kind().to_owned());
            }
            None => {}
        }
        job.action = action;
        Ready::Run(Box::new(job))
    }

    fn prepare_converge(&mut self, i: NodeIndex, t: &Task, ci: usize) -> Ready {
        let model = self.model;
        let c: &ComponentInstance = &model.components[ci];
        let mut secrets = Attributes::new();
        let inputs = match self.resolve(ci, &mut secrets) {
            Ok(v) => v,
            Err(e) => return Ready::Fail(e.to_string()),
        };
        let deps: Vec<&ComponentId> = crate::plan::dependency_ids(c).collect();
        let linked: Vec<(&str, Option<&Value>)> = c
            .links
            .iter()
            .filter(|l| matches!(l.from, LinkSource::Component(_)))
            .flat_map(|l| l.mappings.iter())
            .filter(|(_, to)| !c.secret_inputs.iter().any(|s| s == to))
            .map(|(_, to)| (to.as_str(), inputs.get(to)))
            .collect();
        let digest = input_digest(
            deps.iter()
                .map(|d| (*d, self.state.get(d).map(|r| r.outputs_digest.as_str()))),
            linked,
        );
        let prev = self.state.get(&c.id);
        if t.conditional
            && let Some(p) = prev
            && p.is_applied()
            && p.drift.is_none()
            && p.desired_hash == t.desired_hash
            && p.input_digest == digest
        {
            return Ready::Unchanged;
        }
        let update = prev.is_some_and(|p| {
            !p.desired_hash.is_empty() && !matches!(p.drift, Some(DriftMark::Missing))
        });
        let prior = prev.filter(|_| update).map(|p| p.outputs.clone());
        let own_outputs = prev.map(|p| p.outputs.clone()).unwrap_or_default();
        self.lookup_secrets(&c.id, &c.secret_inputs, &mut secrets);
        let (create, delete) = self.def_actions(&c.def);
        self.ran.insert(c.id.clone());
        let record = AppliedComponent {
            status: ComponentStatus::Applied,
            desired_hash: t.desired_hash.clone(),
            input_digest: digest,
            outputs_digest: String::new(),
            inputs: inputs.clone(),
            outputs: Attributes::new(),
            node: t.node.clone(),
            realizes_node: c.realizes_node,
            provider: create
                .as_ref()
                .and_then(|a| a.provider_kind().map(str::to_owned)),
            depends_on: deps.into_iter().cloned().collect(),
            delete,
            secret_inputs: c.secret_inputs.clone(),
            drift: None,
        };
        self.pending_records.insert(i, record);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Converge { update };
        job.inputs = inputs;
        job.secrets = Secrets(secrets);
        job.own_outputs = own_outputs;
        job.def = Some(c.def.clone());
        job.prior = prior;
        self.finish_job(job, create)
    }

    fn prepare_delete(&mut self, i: NodeIndex, t: &Task, ci: Option<usize>) -> Ready {
        let Some(rec) = self.state.get(&t.component).cloned() else {
            // Already gone: nothing to do.
            let job = self.base_job(i, t);
            return Ready::Run(Box::new(Job {
                op: JobOp::Delete,
                ..job
            }));
        };
        let model_c = ci.map(|ci| &self.model.components[ci]);
        let action = model_c
            .and_then(|c| c.def.actions.get("delete"))
            .and_then(RecordedAction::from_def)
            .or_else(|| rec.delete.clone());
        let mut secrets = Attributes::new();
        self.lookup_secrets(&t.component, &rec.secret_inputs, &mut secrets);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Delete;
        job.inputs = rec.inputs.clone();
        job.secrets = Secrets(secrets);
        job.own_outputs = rec.outputs.clone();
        job.prior = Some(rec.outputs.clone());
        job.def = model_c.map(|c| c.def.clone());
        self.finish_job(job, action)
    }

    fn prepare_action(&mut self, i: NodeIndex, t: &Task, ci: usize, params: &Attributes) -> Ready {
        let model = self.model;
        let c = &model.components[ci];
        let mut secrets = Attributes::new();
        let inputs = match self.resolve(ci, &mut secrets) {
            Ok(v) => v,
            Err(e) => return Ready::Fail(e.to_string()),
        };
        self.lookup_secrets(&c.id, &c.secret_inputs, &mut secrets);
        let Some(action) = c
            .def
            .actions
            .get(&t.action)
            .and_then(RecordedAction::from_def)
        else {
            return Ready::Fail(format!("`{}` has no runnable action `{}`", c.id, t.action));
        };
        let rec = self.state.get(&c.id);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Custom;
        job.inputs = inputs;
        job.params = params.clone();
        job.secrets = Secrets(secrets);
        job.own_outputs = rec.map(|r| r.outputs.clone()).unwrap_or_default();
        job.prior = rec.map(|r| r.outputs.clone());
        job.def = Some(c.def.clone());
        self.finish_job(job, Some(action))
    }

    /// Brings the recorded metadata of applied components (dependencies, delete action,
    /// node) up to date with the model, so a later delete uses the current definition.
    pub(super) fn refresh_metadata(&mut self) {
        let model = self.model;
        for c in &model.components {
            if self.ran.contains(&c.id) || !self.state.components.contains_key(&c.id) {
                continue;
            }
            let (create, delete) = self.def_actions(&c.def);
            let Some(rec) = self.state.components.get_mut(&c.id) else {
                continue;
            };
            rec.depends_on = crate::plan::dependency_ids(c).cloned().collect();
            rec.delete = delete;
            rec.realizes_node = c.realizes_node;
            rec.secret_inputs = c.secret_inputs.clone();
            rec.provider = create.and_then(|a| a.provider_kind().map(str::to_owned));
        }
    }
}
