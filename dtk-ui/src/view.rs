//! What the pages and the JSON endpoints show, gathered through the library's read-only
//! calls (`Home::services`, `Service::status`, `log`, `run_history`, `live_run`, ...). Each
//! value here is also a JSON document (see `dtk-cli/JSON.md`, `dtk.ui.*`).

use dtk_instance::InstanceError;
use dtk_instance::home::Home;
use dtk_instance::repo::CommitInfo;
use dtk_instance::runs::RunSummary;
use dtk_instance::service::ServiceSummary;
use dtk_instance::service::{ConvergeRecord, Service};
use dtk_instance::status::{ComponentStatus, NodeStatus};
use dtk_instance::watch::{LiveRun, LockHolder};
use serde::Serialize;

use crate::UiError;
use crate::graph::{GraphEdge, GraphNode, plan_graph};
use crate::timeline::Timeline;

/// How many desired-state commits and runs a service page lists.
pub const HISTORY: usize = 20;

/// One service or target in the index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexEntry {
    /// Its summary, as `dtk service list` gives it.
    #[serde(flatten)]
    pub summary: ServiceSummary,
    /// Whether a run of it is in progress now.
    pub running: bool,
}

/// The index: every service and target (`dtk.ui.services/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct IndexView {
    /// Service instances, by name.
    pub services: Vec<IndexEntry>,
    /// Target instances, by name.
    pub targets: Vec<IndexEntry>,
    /// The default target's name.
    pub default_target: String,
}

/// The run in progress, in short (the whole is [`LiveView`]).
#[derive(Debug, Clone, Serialize)]
pub struct LiveSummary {
    /// The run's id.
    pub run: String,
    /// `converge`, `delete` or `action`.
    pub kind: String,
    /// Whether a live process runs it (`false`: it was killed; the next converge resumes).
    pub running: bool,
    /// How it ended, once its journal says so.
    pub ended: Option<String>,
    /// How many tasks it has.
    pub tasks: usize,
    /// How many have a result.
    pub finished: usize,
}

/// One service's page (`dtk.ui.service/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// The instance.
    pub name: String,
    /// Whether it is a target instance.
    pub is_target: bool,
    /// `NS/NAME@VERSION ASSEMBLY`.
    pub staged_from: Option<String>,
    /// Its target.
    pub target: Option<String>,
    /// Its last converge.
    pub last_converge: Option<ConvergeRecord>,
    /// Files of the work tree edited since the last commit.
    pub uncommitted_edits: usize,
    /// Its nodes.
    pub nodes: Vec<NodeStatus>,
    /// Its components and their states (secrets: names only).
    pub components: Vec<ComponentStatus>,
    /// Components deployed but gone from the desired state.
    pub removed: Vec<String>,
    /// Who holds the instance lock.
    pub lock: Option<LockHolder>,
    /// The run in progress (or a killed run's journal), in short.
    pub live: Option<LiveSummary>,
    /// The desired-state history, newest first.
    pub commits: Vec<CommitInfo>,
    /// The recorded runs, newest first.
    pub runs: Vec<RunSummary>,
}

/// One run's timeline (`dtk.ui.run/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The service.
    pub service: String,
    /// The run's id.
    pub run: String,
    /// `converge`, `exec`, `delete` (recorded) or the plan kind of a live run.
    pub kind: String,
    /// `succeeded`, `failed`, `cancelled`; `running` or `interrupted` for a live run.
    pub status: String,
    /// Whether this is the run in progress, read from its journal.
    pub live: bool,
    /// The desired-state commit it ran against (recorded runs).
    pub commit: Option<String>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: Option<u64>,
    /// How long it took (so far).
    pub duration_ms: u64,
    /// Its tasks on a time axis, and its critical path.
    #[serde(flatten)]
    pub timeline: Timeline,
}

/// The run in progress in full (`dtk.ui.live/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    /// The service.
    pub service: String,
    /// Who holds the instance lock.
    pub lock: Option<LockHolder>,
    /// The run as its journal tells it so far; `null` when there is none.
    pub run: Option<LiveRun>,
}

fn read(service: &str) -> impl Fn(InstanceError) -> UiError + '_ {
    move |e| match e {
        InstanceError::NoSuchService { name } => UiError::NoSuchService { name },
        e => UiError::Read {
            service: service.to_owned(),
            source: Box::new(e),
        },
    }
}

/// Opens service `name`.
pub fn open(home: &Home, name: &str) -> Result<Service, UiError> {
    home.service(name).map_err(read(name))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The index.
pub fn index(home: &Home) -> Result<IndexView, UiError> {
    let all = home.services().map_err(read("*"))?;
    let default_target = home.default_target().map_err(read("*"))?;
    let mut services = Vec::new();
    let mut targets = Vec::new();
    for summary in all {
        let running = home
            .service(&summary.name)
            .and_then(|s| s.is_running())
            .map_err(read(&summary.name))?;
        let e = IndexEntry { summary, running };
        if e.summary.is_target {
            targets.push(e);
        } else {
            services.push(e);
        }
    }
    Ok(IndexView {
        services,
        targets,
        default_target,
    })
}

/// One service's page data.
pub fn service(svc: &Service) -> Result<ServiceView, UiError> {
    let err = read(svc.name());
    let status = svc.status().map_err(&err)?;
    let summary = svc.summary().map_err(&err)?;
    let live = svc.live_run().map_err(&err)?.map(|r| LiveSummary {
        finished: r.finished(),
        tasks: r.tasks.len(),
        run: r.run,
        kind: r.kind,
        running: r.running,
        ended: r.ended,
    });
    Ok(ServiceView {
        name: status.name,
        is_target: summary.is_target,
        staged_from: summary.staged_from,
        target: status.target,
        last_converge: status.last_converge,
        uncommitted_edits: status.uncommitted_edits,
        nodes: status.nodes,
        components: status.components,
        removed: status.removed,
        lock: svc.lock_holder().map_err(&err)?,
        live,
        commits: svc.log(HISTORY).map_err(&err)?,
        runs: svc.run_history(HISTORY).map_err(&err)?,
    })
}

/// The run in progress, in full.
pub fn live(svc: &Service) -> Result<LiveView, UiError> {
    let err = read(svc.name());
    Ok(LiveView {
        service: svc.name().to_owned(),
        lock: svc.lock_holder().map_err(&err)?,
        run: svc.live_run().map_err(&err)?,
    })
}

/// The view of a live run.
pub fn live_run_view(service: &str, run: &LiveRun) -> RunView {
    let now = now_ms();
    let timeline = Timeline::from_live(run, now);
    RunView {
        service: service.to_owned(),
        run: run.run.clone(),
        kind: run.kind.clone(),
        status: if run.running {
            "running".to_owned()
        } else {
            match run.ended.as_deref() {
                Some("complete") => "succeeded".to_owned(),
                Some(other) => other.to_owned(),
                None => "interrupted".to_owned(),
            }
        },
        live: true,
        commit: None,
        started_at_ms: run.started_at_ms,
        duration_ms: timeline.span_ms,
        timeline,
    }
}

/// Run `run` of the service (the run in progress when it is that one), or with `None`
/// the run in progress, else the last recorded one. `Ok(None)`: the service never ran.
pub fn run(svc: &Service, run: Option<&str>) -> Result<Option<RunView>, UiError> {
    let err = read(svc.name());
    let live = svc.live_run().map_err(&err)?;
    if let Some(l) = &live
        && run.is_none_or(|r| r == l.run)
    {
        return Ok(Some(live_run_view(svc.name(), l)));
    }
    let report = match run {
        Some(r) => Some(
            svc.find_run(r)
                .map_err(&err)?
                .ok_or_else(|| UiError::NoSuchRun {
                    service: svc.name().to_owned(),
                    run: r.to_owned(),
                })?,
        ),
        None => svc.last_run().map_err(&err)?,
    };
    Ok(report.map(|r| RunView {
        service: r.service.clone(),
        run: r.run.clone(),
        kind: r.kind.to_string(),
        status: r.status.to_string(),
        live: false,
        commit: r.commit.clone(),
        started_at_ms: Some(r.started_at * 1000),
        duration_ms: r.duration_ms,
        timeline: Timeline::from_report(&r),
    }))
}

/// The boxes and edges of the service's DAG: every task of a converge of its desired
/// state (work-tree edits included) against recorded actual state, those that would run
/// now marked (by desired state: drift is only known once converge refreshes).
pub fn graph(svc: &Service) -> Result<(Vec<GraphNode>, Vec<GraphEdge>), UiError> {
    let err = read(svc.name());
    let model = svc.model().map_err(&err)?;
    let state = svc.actual_state().map_err(&err)?;
    let g = dtk_workflow::build_graph(&model, &state, &dtk_workflow::PlanRequest::Converge)
        .map_err(|e| UiError::Graph {
            service: svc.name().to_owned(),
            source: Box::new(e),
        })?;
    Ok(plan_graph(&g))
}
