//! The saga-style harness (after omicron's saga test helpers): inject a failure at every
//! task in turn; repeat every action; kill a run at every byte of its journal and resume.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use dtk_model::instance::ServiceModel;
use dtk_model::module::AttrType;
use dtk_model::provider::{
    ExecOutput, ExecRequest, Provider, ProviderError, ProviderRegistry, ResourceRequest,
};
use dtk_model::value::Attributes;
use dtk_workflow::journal::replay_bytes;
use dtk_workflow::{
    ActualState, CommandTransport, ExecContext, Outcome, Plan, PlanRequest, SyncMode, TaskId,
    TaskStatus, execute, plan, replay,
};
use petgraph::Direction;
use petgraph::visit::Dfs;

use crate::support::*;

/// Nodes a, b and a group of two workers; providers and commands; links, dependencies
/// and placement. `v` changes p's output (a chain p -> q -> r), `x` changes db's
/// input but not its outputs, `old` keeps a component that v2 removes, `new` adds one.
pub fn bigger(v: &str, x: &str, old: bool, new: bool) -> ServiceModel {
    let mut m = M::new("big")
        .node("a")
        .node("b")
        .group("workers", 2)
        .cmp(C::res("a/db").input("x", x))
        .cmp(C::res("a/cache").dep("a/db"))
        .cmp(
            C::new("b/web")
                .action(commands("create", &["emit url=http://web/{{db_host}}"]))
                .action(commands("delete", &["echo bye"]))
                .attr(attr("url", AttrType::String, true, false))
                .link("a/db", "out", "db_host"),
        )
        .cmp(C::res("workers:1/w").link("b/web", "url", "upstream"))
        .cmp(C::res("workers:2/w").link("b/web", "url", "upstream"))
        .cmp(C::res("lb").dep("workers:1/w").dep("workers:2/w"))
        .cmp(C::res("p").input("out", v))
        .cmp(C::res("q").link("p", "out", "in"))
        .cmp(C::res("r").link("q", "out", "in"));
    if old {
        m = m.cmp(C::res("b/old").dep("a/db"));
    }
    if new {
        m = m.cmp(C::res("b/new").link("q", "id", "qid"));
    }
    m.build()
}

fn exec(p: &Plan, m: &ServiceModel, s: &ActualState, ctx: &ExecContext) -> Outcome {
    rt().block_on(execute(p, m, s, ctx)).expect("execute")
}

fn descendants(p: &Plan, id: &TaskId) -> BTreeSet<TaskId> {
    let g = p.graph();
    let start = g.node_indices().find(|&i| &g[i].id == id).expect("task");
    let mut out = BTreeSet::new();
    let mut dfs = Dfs::new(g, start);
    while let Some(n) = dfs.next(g) {
        if n != start {
            out.insert(g[n].id.clone());
        }
    }
    out
}

fn check_failure_at_every_task(model: &ServiceModel, initial: &ActualState, req: &PlanRequest) {
    let baseline = {
        let world = World::new();
        let p = plan(model, initial, req).unwrap();
        let o = exec(&p, model, initial, &ctx(&world));
        assert!(o.is_success(), "{:#?}", o.tasks);
        o.state
    };
    let p = plan(model, initial, req).unwrap();
    assert!(p.len() >= 4, "a plan worth testing");
    for t in p.tasks() {
        let world = World::new();
        let ctx = ctx(&world);
        world.fail(t.component.as_str(), "*", Fail::Always);
        let o = exec(&p, model, initial, &ctx);
        if t.conditional && o.status(&t.id) == Some(&TaskStatus::Unchanged) {
            // Found nothing to do, so there was nothing to fail.
            continue;
        }
        let below = descendants(&p, &t.id);
        for r in &o.tasks {
            let want = if r.id == t.id {
                "failed"
            } else if below.contains(&r.id) {
                "skipped"
            } else {
                "done"
            };
            let got = match &r.status {
                TaskStatus::Failed { .. } => "failed",
                TaskStatus::Skipped { because } => {
                    assert_eq!(because, &t.id);
                    "skipped"
                }
                TaskStatus::Done => "done",
                TaskStatus::Unchanged if p.task(&r.id).is_some_and(|x| x.conditional) => "done",
                other => panic!("{}: {other:?} with a failure at {}", r.id, t.id),
            };
            assert_eq!(got, want, "{} with a failure at {}", r.id, t.id);
        }
        // Resume: exactly the failed task and what it skipped.
        world.clear_failures();
        world.take_calls();
        let p2 = plan(model, &o.state, req).unwrap();
        let mut remainder: BTreeSet<TaskId> = below.clone();
        remainder.insert(t.id.clone());
        let planned: BTreeSet<TaskId> = p2.tasks().map(|t| t.id.clone()).collect();
        assert_eq!(planned, remainder, "remainder after a failure at {}", t.id);
        let o2 = exec(&p2, model, &o.state, &ctx);
        assert!(o2.is_success(), "{:#?}", o2.tasks);
        let ran: BTreeSet<TaskId> = o2
            .ids_where(|s| *s == TaskStatus::Done)
            .into_iter()
            .cloned()
            .collect();
        // Conditional tasks may turn out unchanged; everything else in the remainder ran.
        assert!(
            ran.is_subset(&remainder),
            "{ran:?} ran, {remainder:?} remained"
        );
        for r in &o2.tasks {
            assert!(
                ran.contains(&r.id) || r.status == TaskStatus::Unchanged,
                "{r:?}"
            );
        }
        assert_eq!(
            o2.state, baseline,
            "state after resuming a failure at {}",
            t.id
        );
        // Nothing left.
        assert!(plan(model, &o2.state, req).unwrap().is_empty() || *req == PlanRequest::Delete);
    }
}

#[test]
fn a_failure_at_every_task_of_a_converge() {
    check_failure_at_every_task(
        &bigger("1", "1", true, false),
        &ActualState::new(),
        &PlanRequest::Converge,
    );
}

#[test]
fn a_failure_at_every_task_of_a_delete() {
    let m = bigger("1", "1", true, false);
    let world = World::new();
    let full = {
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
        exec(&p, &m, &ActualState::new(), &ctx(&world)).state
    };
    check_failure_at_every_task(&m, &full, &PlanRequest::Delete);
}

#[test]
fn a_failure_at_every_task_of_an_update() {
    let v1 = bigger("1", "1", true, false);
    let world = World::new();
    let s1 = {
        let p = plan(&v1, &ActualState::new(), &PlanRequest::Converge).unwrap();
        exec(&p, &v1, &ActualState::new(), &ctx(&world)).state
    };
    // Only unconditional tasks can fail by injection; conditional ones that turn out
    // unchanged make no call. Restrict the check to a model change where every planned
    // task runs: p's output and a new component.
    let v2 = bigger("2", "1", true, true);
    check_failure_at_every_task(&v2, &s1, &PlanRequest::Converge);
}

/// A provider and a transport that do every operation twice (an action repeated, as
/// after a crash right before its result was recorded), returning the second result.
struct Twice(Arc<FakeProvider>);

#[async_trait]
impl Provider for Twice {
    fn kind(&self) -> &str {
        "fake"
    }
    async fn create(&self, r: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.0.create(r).await?;
        self.0.create(r).await
    }
    async fn update(&self, r: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.0.update(r).await?;
        self.0.update(r).await
    }
    async fn delete(&self, r: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        self.0.delete(r).await?;
        self.0.delete(r).await
    }
}

struct TwiceT(FakeTransport);

#[async_trait]
impl CommandTransport for TwiceT {
    async fn exec(&self, r: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        self.0.exec(r).await?;
        self.0.exec(r).await
    }
}

#[test]
fn repeating_every_action_records_the_same_state() {
    for (v1, v2) in [(bigger("1", "1", true, false), bigger("2", "2", false, true))] {
        let normal_world = World::new();
        let nctx = ctx(&normal_world);
        let twice_world = World::new();
        let mut reg = ProviderRegistry::new();
        reg.register(Arc::new(Twice(Arc::new(FakeProvider {
            world: twice_world.clone(),
            runs_commands: false,
        }))));
        let mut tctx = ExecContext::new(reg);
        tctx.transport = Some(Arc::new(TwiceT(FakeTransport {
            world: twice_world.clone(),
        })));
        tctx.journal_sync = SyncMode::Never;
        let mut sn = ActualState::new();
        let mut st = ActualState::new();
        for (m, req) in [
            (&v1, PlanRequest::Converge),
            (&v2, PlanRequest::Converge),
            (&v2, PlanRequest::Delete),
        ] {
            let pn = plan(m, &sn, &req).unwrap();
            let pt = plan(m, &st, &req).unwrap();
            assert_eq!(pn.render_tree(), pt.render_tree());
            sn = exec(&pn, m, &sn, &nctx).state;
            st = exec(&pt, m, &st, &tctx).state;
            assert_eq!(sn, st, "state after {req:?}");
            assert_eq!(
                *normal_world.resources.lock().unwrap(),
                *twice_world.resources.lock().unwrap()
            );
        }
        // Every repeated call used the same idempotency key as its first.
        let calls = twice_world.calls();
        let mut keys: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for c in calls.iter().filter(|c| c.op != "exec") {
            keys.entry((c.component.clone(), c.op.clone()))
                .or_default()
                .insert(c.key.clone());
        }
        assert!(keys.values().all(|k| k.len() <= 2));
    }
}

#[test]
fn applying_a_journal_twice_is_the_same_as_once() {
    let dir = tempfile::tempdir().unwrap();
    let m = bigger("1", "1", true, false);
    let world = World::new();
    let mut c = ctx(&world);
    c.journal = Some(dir.path().join("j"));
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    let o = exec(&p, &m, &ActualState::new(), &c);
    let j = replay(&dir.path().join("j")).unwrap();
    let mut once = ActualState::new();
    once.apply_journal(&j);
    let mut twice = once.clone();
    twice.apply_journal(&j);
    assert_eq!(once, twice);
    // The journal alone rebuilds the outcome's state (metadata refresh aside: none here).
    assert_eq!(once, o.state);
    assert_eq!(j.ended.as_deref(), Some("complete"));
    assert!(j.interrupted.is_empty());
    assert_eq!(j.completed.len(), p.len());
}

/// Runs v2 over v1's state with a journal, then, for every prefix of the journal (a kill
/// at that byte), replays it and resumes: no task completed in the prefix runs again,
/// everything else completes, and the final state is the uninterrupted run's.
#[test]
fn resume_after_a_kill_at_every_byte_of_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = bigger("1", "1", true, false);
    let v2 = bigger("2", "2", false, true);
    let world = World::new();
    let s1 = {
        let p = plan(&v1, &ActualState::new(), &PlanRequest::Converge).unwrap();
        exec(&p, &v1, &ActualState::new(), &ctx(&world)).state
    };
    let path = dir.path().join("full.jsonl");
    let mut c = ctx(&world);
    c.journal = Some(path.clone());
    c.journal_sync = SyncMode::GroupCommit;
    let full_plan = plan(&v2, &s1, &PlanRequest::Converge).unwrap();
    let full = exec(&full_plan, &v2, &s1, &c);
    assert!(full.is_success(), "{:#?}", full.tasks);
    let statuses: Vec<String> = full
        .tasks
        .iter()
        .map(|t| format!("{} {}", t.id, t.status))
        .collect();
    assert!(
        statuses.iter().any(|s| s.ends_with("unchanged")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s.contains(".delete done")),
        "{statuses:?}"
    );
    let bytes = std::fs::read(&path).unwrap();
    let rt = rt();
    let mut interrupted_seen = 0;
    let mut torn_seen = 0;
    for k in 0..=bytes.len() {
        let js = replay_bytes(&bytes[..k]);
        interrupted_seen += usize::from(!js.interrupted.is_empty());
        torn_seen += usize::from(js.torn);
        let mut st = s1.clone();
        st.apply_journal(&js);
        let p = plan(&v2, &st, &PlanRequest::Converge).unwrap();
        let w = World::new();
        let o = rt.block_on(execute(&p, &v2, &st, &ctx(&w))).unwrap();
        assert!(o.is_success(), "cut at {k}: {:#?}", o.tasks);
        let ran: BTreeSet<&TaskId> = o
            .ids_where(|s| *s == TaskStatus::Done)
            .into_iter()
            .collect();
        for t in &js.completed {
            assert!(
                !ran.contains(t),
                "cut at {k}: {t} completed before the kill and ran again"
            );
        }
        // Every task of the full plan completed before the kill or ran/checked now.
        let now: BTreeSet<&TaskId> = o.tasks.iter().map(|t| &t.id).collect();
        for t in full_plan.tasks() {
            assert!(
                js.completed.contains(&t.id)
                    || now.contains(&t.id)
                    || full.status(&t.id) == Some(&TaskStatus::Unchanged),
                "cut at {k}: {} neither completed nor resumed",
                t.id
            );
        }
        // At most one call per component and operation in the resumed run.
        let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
        for c in w.calls() {
            *per.entry((c.component, c.op)).or_default() += 1;
        }
        assert!(per.values().all(|&n| n == 1), "cut at {k}: {per:?}");
        assert_eq!(o.state, full.state, "cut at {k}: state differs");
    }
    assert!(interrupted_seen > 0 && torn_seen > 0);
    let g = full_plan.graph();
    assert!(
        g.node_indices()
            .any(|i| g.neighbors_directed(i, Direction::Incoming).count() > 1)
    );
}
