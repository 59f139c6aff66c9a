//! The history of runs (`dtk service runs`, `task-status --run ID`) and the recorded
//! outputs (`dtk service outputs`).
//!
//! Every run (converge, delete, exec, refresh, import) leaves its report as `record.json`
//! in a commit on [`RECORDS_REF`]: the history is that
//! branch, newest first.

use std::collections::BTreeMap;

use dtk_model::{Attributes, ComponentId};
use dtk_workflow::Selector;
use serde::Serialize;

use crate::converge::{RECORDS_REF, RunReport};
use crate::error::InstanceError;
use crate::outcome::{RunKind, RunStatus};
use crate::service::Service;

/// How a run's tasks ended, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Every task.
    pub tasks: usize,
    /// Done.
    pub done: usize,
    /// Unchanged (conditional tasks with nothing to do).
    pub unchanged: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (something they depend on failed).
    pub skipped: usize,
    /// Cancelled.
    pub cancelled: usize,
}

/// One run of a service, as `dtk service runs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The run's id.
    pub run: String,
    /// What the run was.
    pub kind: RunKind,
    /// Who ran it (`user@host`), when recorded.
    pub who: Option<String>,
    /// When it started (seconds since the epoch).
    pub started_at: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub status: RunStatus,
    /// The desired-state commit it ran against.
    pub commit: Option<String>,
    /// Its tasks, counted by how they ended.
    pub counts: RunCounts,
}

impl RunSummary {
    fn of(r: &RunReport) -> RunSummary {
        let count = |s: &str| r.tasks.iter().filter(|t| t.status == s).count();
        RunSummary {
            run: r.run.clone(),
            kind: r.kind,
            who: r.who.clone(),
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            status: r.status,
            commit: r.commit.clone(),
            counts: RunCounts {
                tasks: r.tasks.len(),
                done: count("done"),
                unchanged: count("unchanged"),
                failed: count("failed"),
                skipped: count("skipped"),
                cancelled: count("cancelled"),
            },
        }
    }
}

/// The recorded outputs of one component instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentOutputs {
    /// The component instance.
    pub component: String,
    /// Its node.
    pub node: Option<String>,
    /// Its outputs as last recorded (secret outputs are never recorded).
    pub outputs: Attributes,
}

impl Service {
    /// The reports of the last `limit` runs, newest first.
    fn run_reports(&self, limit: usize) -> Result<Vec<RunReport>, InstanceError> {
        let Some(tip) = self.repo().reference(RECORDS_REF)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in self.repo().log_of(tip, limit)? {
            let Ok(id) = gix::ObjectId::from_hex(c.id.as_bytes()) else {
                continue;
            };
            let Some(data) = self.repo().read_file_at(id, "record.json")? else {
                continue;
            };
            // A record this version cannot read is left out rather than failing the list.
            if let Ok(r) = serde_json::from_slice::<RunReport>(&data) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The last `limit` runs, newest first: id, kind, who, when, result, task counts.
    pub fn run_history(&self, limit: usize) -> Result<Vec<RunSummary>, InstanceError> {
        Ok(self
            .run_reports(limit)?
            .iter()
            .map(RunSummary::of)
            .collect())
    }

    /// The report of run `run` (its id, or a prefix of it naming one run).
    pub fn run_report(&self, run: &str) -> Result<RunReport, InstanceError> {
        self.find_run(run)?.ok_or_else(|| InstanceError::NoSuchRun {
            service: self.name().to_owned(),
            run: run.to_owned(),
        })
    }

    /// The report of run `run` (its id, or a prefix of it naming one run), `None` when no
    /// recorded run has it; a prefix naming several runs is refused.
    pub fn find_run(&self, run: &str) -> Result<Option<RunReport>, InstanceError> {
        if let Some(last) = self.last_run()?
            && last.run == run
        {
            return Ok(Some(last));
        }
        let mut found: Vec<RunReport> = self
            .run_reports(usize::MAX)?
            .into_iter()
            .filter(|r| r.run.starts_with(run))
            .collect();
        if let Some(i) = found.iter().position(|r| r.run == run) {
            return Ok(Some(found.remove(i)));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found.remove(0))),
            count => Err(InstanceError::AmbiguousRun {
                service: self.name().to_owned(),
                run: run.to_owned(),
                count,
            }),
        }
    }

    /// The recorded outputs of every component (`reference` `None`), or of those that
    /// `reference` names (`node/cmp[inst]`, `cmp[inst]`, `node`, a component id), in the
    /// desired state's order (then components no longer desired).
    pub fn outputs(&self, reference: Option<&str>) -> Result<Vec<ComponentOutputs>, InstanceError> {
        let model = self.model()?;
        let state = self.actual_state()?;
        let wanted: Option<Vec<ComponentId>> = match reference {
            None => None,
            Some(r) => {
                let sel: Selector = r.parse()?;
                Some(resolve_ids(&model, &state, &[sel])?)
            }
        };
        let mut order: BTreeMap<&ComponentId, usize> = BTreeMap::new();
        for (i, c) in model.components.iter().enumerate() {
            order.insert(&c.id, i);
        }
        let mut out: Vec<(usize, ComponentOutputs)> = state
            .components
            .iter()
            .filter(|(id, _)| wanted.as_ref().is_none_or(|w| w.contains(id)))
            .map(|(id, rec)| {
                (
                    order.get(id).copied().unwrap_or(usize::MAX),
                    ComponentOutputs {
                        component: id.to_string(),
                        node: rec.node.clone(),
                        outputs: rec.outputs.clone(),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| (a.0, &a.1.component).cmp(&(b.0, &b.1.component)));
        Ok(out.into_iter().map(|(_, o)| o).collect())
    }
}

/// The component ids `selectors` name in `model` or, gone from it, in `state`.
pub(crate) fn resolve_ids(
    model: &dtk_model::ServiceModel,
    state: &dtk_workflow::ActualState,
    selectors: &[Selector],
) -> Result<Vec<ComponentId>, InstanceError> {
    dtk_workflow::select::resolve(model, state, selectors)
        .map_err(|e| InstanceError::NoMatch(Box::new(e)))
}
