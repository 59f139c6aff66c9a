//! What a ready task runs with: its inputs resolved from this run's results and actual
//! state, its secrets, its node and the provider that runs commands there, and the record
//! it will leave; or the decision not to run it (unchanged, or failed before it starts).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use dtk_model::instance::{ComponentId, ComponentInstance, LinkSource};
use dtk_model::provider::Secrets;
use dtk_model::value::Attributes;
use petgraph::Direction;
use petgraph::graph::NodeIndex;

use super::TaskStatus;
use super::job::{Job, JobOp, NodeTarget};
use super::schedule::{Run, Slot};
use crate::hash::{input_digest, static_inputs_cow};
use crate::resolve::{ProducerValues, resolve_inputs};
use crate::state::{AppliedComponent, ComponentStatus, DriftMark, RecordedAction};
use crate::task::{Edge, Task, TaskOp};

/// The decision made when a task becomes ready.
pub(super) enum Ready<'a> {
    Run(Box<Job<'a>>),
    Unchanged,
    Fail(String),
}

/// The `create` and `delete` actions of a definition, converted once per definition.
pub(super) struct DefActions {
    pub(super) create: Option<Arc<RecordedAction>>,
    pub(super) delete: Option<Arc<RecordedAction>>,
    /// The module of the first component met with this definition, and its text (as
    /// records keep it): formatted once per definition, not once per task.
    module: (dtk_model::ident::ModuleId, String),
}

impl DefActions {
    /// `module` as records keep it.
    pub(super) fn module_text(&self, module: &dtk_model::ident::ModuleId) -> Cow<'_, str> {
        if &self.module.0 == module {
            Cow::Borrowed(&self.module.1)
        } else {
            Cow::Owned(module.to_string())
        }
    }
}

impl<'a> Run<'a> {
    /// The `create` and `delete` actions of component `ci`'s definition.
    pub(super) fn def_actions(&mut self, ci: usize) -> Arc<DefActions> {
        let c = &self.model.components[ci];
        let def = &c.def;
        self.actions
            .entry(Arc::as_ptr(def) as usize)
            .or_insert_with(|| {
                Arc::new(DefActions {
                    module: (c.module.clone(), c.module.to_string()),
                    create: def
                        .actions
                        .get("create")
                        .and_then(RecordedAction::from_def)
                        .map(Arc::new),
                    delete: def
                        .actions
                        .get("delete")
                        .and_then(RecordedAction::from_def)
                        .map(Arc::new),
                })
            })
            .clone()
    }

    /// Resolves `c`'s inputs from this run's results and actual state; secret linked
    /// values go to `secrets`. `known` are records already looked up (a converge's
    /// dependencies, which include its producers): a producer among them is not looked up
    /// again.
    fn resolve<'r>(
        &'r self,
        c: &ComponentInstance,
        known: &[(&ComponentId, Option<&'r AppliedComponent>)],
        secrets: &mut Attributes,
    ) -> Result<Attributes, crate::resolve::ResolveError> {
        let statics = static_inputs_cow(c);
        let state = &self.state;
        let record = |p: &ComponentId| match known.iter().find(|(id, _)| *id == p) {
            Some((_, rec)) => *rec,
            None => state.get(p),
        };
        let secret_outputs = &self.secret_outputs;
        let mut merged: HashMap<&ComponentId, Attributes> = HashMap::new();
        if !secret_outputs.is_empty() {
            for link in &c.links {
                if let LinkSource::Component(p) = &link.from
                    && let Some(so) = secret_outputs.get(p)
                {
                    let mut o = record(p).map(|r| r.outputs.clone()).unwrap_or_default();
                    o.extend(so.clone());
                    merged.insert(p, o);
                }
            }
        }
        resolve_inputs(
            c,
            &statics,
            |p| {
                let rec = record(p)?;
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

    /// The node a task runs on, with the provider that runs commands there: made once
    /// per node and shared, until the node's own component changes.
    fn node_target(&mut self, node: Option<&str>, me: &ComponentId) -> Option<Arc<NodeTarget>> {
        let name = node?;
        let bare = || {
            Arc::new(NodeTarget {
                name: name.to_owned(),
                provider: None,
                inputs: Attributes::new(),
                outputs: Attributes::new(),
            })
        };
        let Some(realizer) = self.realizer.get(name) else {
            return Some(bare());
        };
        if realizer == me {
            // The node's own component: its commands cannot run through itself.
            return Some(bare());
        }
        if let Some(t) = self.node_targets.get(name) {
            return Some(t.clone());
        }
        let rec = self.state.get(realizer);
        let kind = self
            .state
            .index_of(realizer)
            .and_then(|i| self.model.components[i].def.actions.get("create"))
            .and_then(RecordedAction::from_def)
            .and_then(|a| a.provider_kind().map(str::to_owned))
            .or_else(|| rec.and_then(|r| r.provider.clone()));
        let target = Arc::new(NodeTarget {
            name: name.to_owned(),
            provider: kind.and_then(|k| self.ctx.providers.get(&k).cloned()),
            inputs: rec.map(|r| r.inputs.clone()).unwrap_or_default(),
            outputs: rec.map(|r| r.outputs.clone()).unwrap_or_default(),
        });
        self.node_targets.insert(name.to_owned(), target.clone());
        Some(target)
    }

    /// Decides what to do with a ready task: run it (with everything resolved), skip it
    /// as unchanged, or fail it before it starts.
    pub(super) fn prepare(&mut self, i: NodeIndex) -> Ready<'a> {
        let plan = self.plan;
        let t: &'a Task = &plan.graph()[i];
        let ci = self.component_of(i);
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
                    let ran = self
                        .converge_task_of(ci)
                        .is_some_and(|c| self.slots[c.index()] == Slot::Finished(TaskStatus::Done));
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

    fn base_job(&self, i: NodeIndex, t: &'a Task) -> Job<'a> {
        Job {
            index: i,
            task: t,
            ctx: self.ctx,
            service: &self.model.name,
            service_nodes: &self.model.nodes,
            op: JobOp::Custom,
            action: None,
            provider: None,
            node_target: None,
            inputs: Attributes::new(),
            params: None,
            secrets: Secrets::default(),
            own_outputs: Attributes::new(),
            has_prior: false,
            def: None,
            record: None,
            limit_kind: None,
            module: None,
            started: None,
        }
    }

    /// The limit a job counts against, when [`super::Limits::per_provider`] sets one for
    /// `kind`.
    fn limit_of(&self, kind: &str) -> Option<&'a str> {
        let ctx: &'a super::ExecContext = self.ctx;
        ctx.limits
            .per_provider
            .get_key_value(kind)
            .map(|(k, _)| k.as_str())
    }

    fn finish_job(&mut self, mut job: Job<'a>, action: Option<Arc<RecordedAction>>) -> Ready<'a> {
        let ctx: &'a super::ExecContext = self.ctx;
        match action.as_deref().map(|a| &a.kind) {
            Some(crate::state::RecordedKind::Provider { kind, .. }) => {
                job.provider = ctx.providers.get(kind);
                job.limit_kind = self.limit_of(kind);
            }
            Some(crate::state::RecordedKind::Commands { .. }) => {
                let module = self
                    .component_of(job.index)
                    .map(|ci| self.model.components[ci].module.to_string())
                    .or_else(|| {
                        self.state
                            .get(&job.task.component)
                            .and_then(|r| r.module.clone())
                    });
                job.module = module.and_then(|m| ctx.modules.get(&m));
                job.node_target = self.node_target(job.task.node.as_deref(), &job.task.component);
                job.limit_kind = job
                    .node_target
                    .as_ref()
                    .and_then(|n| n.provider.as_ref())
                    .and_then(|p| self.limit_of(p.kind()));
            }
            None => {}
        }
        job.action = action;
        Ready::Run(Box::new(job))
    }

    fn prepare_converge(&mut self, i: NodeIndex, t: &'a Task, ci: usize) -> Ready<'a> {
        let model = self.model;
        let c: &'a ComponentInstance = &model.components[ci];
        let mut secrets = Attributes::new();
        // Each dependency's record, found once (by the index the run looked up when it
        // started): for the producers' values and for the digest of what the component
        // consumes. The two lists come from the same component, so their lengths agree;
        // the lookup by id is only the fallback should they not.
        let indices = self.dependency_indices(i);
        let deps: Vec<(&ComponentId, Option<&AppliedComponent>)> =
            if indices.len() == crate::plan::dependency_ids(c).count() {
                crate::plan::dependency_ids(c)
                    .zip(indices)
                    .map(|(d, &di)| (d, self.dependency_record(d, di)))
                    .collect()
            } else {
                crate::plan::dependency_ids(c)
                    .map(|d| (d, self.state.get(d)))
                    .collect()
            };
        let inputs = match self.resolve(c, &deps, &mut secrets) {
            Ok(v) => v,
            Err(e) => return Ready::Fail(e.to_string()),
        };
        let linked = c
            .links
            .iter()
            .filter(|l| matches!(l.from, LinkSource::Component(_)))
            .flat_map(|l| l.mappings.iter())
            .filter(|(_, to)| !c.secret_inputs.iter().any(|s| s == to))
            .map(|(_, to)| (to.as_str(), inputs.get(to)));
        let digest = input_digest(
            deps.iter()
                .map(|(d, rec)| (*d, rec.map(|r| r.outputs_digest.as_str()))),
            linked,
        );
        let depends_on: Vec<ComponentId> = deps.into_iter().map(|(d, _)| d.clone()).collect();
        let prev = self.state.at(ci);
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
        let own_outputs = prev.map(|p| p.outputs.clone()).unwrap_or_default();
        // What dtk did not make stays not dtk's while it is updated; made anew, it is.
        let imported = prev.filter(|_| update).and_then(|p| p.imported.clone());
        self.lookup_secrets(&c.id, &c.secret_inputs, &mut secrets);
        let actions = self.def_actions(ci);
        self.ran[ci] = true;
        let record = AppliedComponent {
            status: ComponentStatus::Applied,
            desired_hash: t.desired_hash.clone(),
            input_digest: digest,
            outputs_digest: String::new(),
            // Filled in when the job ends, from the inputs it ran with.
            inputs: Attributes::new(),
            outputs: Attributes::new(),
            node: t.node.clone(),
            realizes_node: c.realizes_node,
            provider: actions
                .create
                .as_ref()
                .and_then(|a| a.provider_kind().map(str::to_owned)),
            depends_on,
            delete: actions.delete.clone(),
            secret_inputs: c.secret_inputs.clone(),
            drift: None,
            imported,
            module: Some(actions.module_text(&c.module).into_owned()),
        };
        let mut job = self.base_job(i, t);
        job.op = JobOp::Converge { update };
        job.inputs = inputs;
        job.secrets = Secrets(secrets);
        job.own_outputs = own_outputs;
        job.has_prior = update;
        job.def = Some(&c.def);
        job.record = Some(Box::new(record));
        self.finish_job(job, actions.create.clone())
    }

    fn prepare_delete(&mut self, i: NodeIndex, t: &'a Task, ci: Option<usize>) -> Ready<'a> {
        let Some(rec) = self.state.get(&t.component) else {
            // Already gone: nothing to do.
            let mut job = self.base_job(i, t);
            job.op = JobOp::Delete;
            return Ready::Run(Box::new(job));
        };
        let model = self.model;
        let model_c: Option<&'a ComponentInstance> = ci.map(|ci| &model.components[ci]);
        let action = model_c
            .and_then(|c| c.def.actions.get("delete"))
            .and_then(RecordedAction::from_def)
            .map(Arc::new)
            .or_else(|| rec.delete.clone())
            // Imported without `adopt`: dtk forgets it and leaves the resource alone.
            .filter(|_| !rec.keeps_resource());
        let mut secrets = Attributes::new();
        self.lookup_secrets(&t.component, &rec.secret_inputs, &mut secrets);
        let mut job = self.base_job(i, t);
        job.op = JobOp::Delete;
        job.inputs = rec.inputs.clone();
        job.secrets = Secrets(secrets);
        job.own_outputs = rec.outputs.clone();
        job.has_prior = true;
        job.def = model_c.map(|c| &*c.def);
        self.finish_job(job, action)
    }

    fn prepare_action(
        &mut self,
        i: NodeIndex,
        t: &'a Task,
        ci: usize,
        params: &'a Attributes,
    ) -> Ready<'a> {
        let model = self.model;
        let c: &'a ComponentInstance = &model.components[ci];
        let mut secrets = Attributes::new();
        let inputs = match self.resolve(c, &[], &mut secrets) {
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
        job.params = Some(params);
        job.secrets = Secrets(secrets);
        job.own_outputs = rec.map(|r| r.outputs.clone()).unwrap_or_default();
        job.has_prior = rec.is_some();
        job.def = Some(&c.def);
        self.finish_job(job, Some(Arc::new(action)))
    }

    /// Brings the recorded metadata of applied components (dependencies, delete action,
    /// node) up to date with the model, so a later delete uses the current definition.
    /// A record already up to date is not touched (so a run that changed nothing leaves
    /// its state unchanged, and the state file is not rewritten).
    pub(super) fn refresh_metadata(&mut self) {
        let model = self.model;
        for (ci, c) in model.components.iter().enumerate() {
            if self.ran[ci] || self.state.at(ci).is_none() {
                continue;
            }
            let actions = self.def_actions(ci);
            let provider = actions.create.as_ref().and_then(|a| a.provider_kind());
            let module = actions.module_text(&c.module);
            let current = self.state.at(ci).is_some_and(|rec| {
                rec.depends_on.iter().eq(crate::plan::dependency_ids(c))
                    && rec.delete.as_deref() == actions.delete.as_deref()
                    && rec.realizes_node == c.realizes_node
                    && rec.secret_inputs == c.secret_inputs
                    && rec.provider.as_deref() == provider
                    && rec.module.as_deref() == Some(&*module)
            });
            if current {
                continue;
            }
            let Some(rec) = self.state.at_mut(ci) else {
                continue;
            };
            rec.depends_on = crate::plan::dependency_ids(c).cloned().collect();
            rec.delete = actions.delete.clone();
            rec.realizes_node = c.realizes_node;
            rec.secret_inputs = c.secret_inputs.clone();
            rec.provider = provider.map(str::to_owned);
            rec.module = Some(module.into_owned());
        }
    }
}
