//! Executor tests: providers, commands, env, outputs, retries, timeouts, failures,
//! conditional tasks, cancellation, secrets, limits, events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dtk_model::instance::{ComponentId, ServiceModel};
use dtk_model::module::AttrType;
use dtk_model::provider::ProviderRegistry;
use dtk_model::value::{Attributes, Value};
use dtk_workflow::{
    ActionRequest, ActualState, Event, ExecContext, Outcome, PlanRequest, SecretSource, TaskId,
    TaskStatus, execute, plan,
};

use crate::planner::three_tier;
use crate::support::*;

fn run(
    model: &ServiceModel,
    actual: &ActualState,
    req: &PlanRequest,
    ctx: &ExecContext,
) -> Outcome {
    let p = plan(model, actual, req).expect("plan");
    rt().block_on(execute(&p, model, actual, ctx))
        .expect("execute")
}

fn status(o: &Outcome, id: &str) -> TaskStatus {
    o.status(&TaskId(id.to_owned()))
        .unwrap_or_else(|| panic!("no task {id}"))
        .clone()
}

fn cid(s: &str) -> ComponentId {
    ComponentId(s.to_owned())
}

#[test]
fn converge_runs_providers_and_commands_and_records_state() {
    let world = World::new();
    let ctx = ctx(&world);
    let m = three_tier();
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    assert!(o.is_success(), "{:#?}", o.tasks);
    let calls = world.calls();
    let ops: Vec<(String, String)> = {
        let mut c = calls.clone();
        c.sort_by_key(|c| c.start);
        c.into_iter().map(|c| (c.component, c.op)).collect()
    };
    assert_eq!(ops.len(), 4);
    assert!(ops.contains(&("db/db".into(), "create".into())));
    let web = calls.iter().find(|c| c.op == "exec").unwrap();
    assert_eq!(web.component, "web/web");
    assert_eq!(web.node.as_deref(), Some("web"));
    assert_eq!(
        web.script,
        vec!["start-web --port 8080 --db id-db/db".to_owned()]
    );
    let env: BTreeMap<_, _> = web.env.iter().cloned().collect();
    assert_eq!(env["port"], "8080");
    assert_eq!(env["db_host"], "id-db/db");
    assert_eq!(env["DTK_SERVICE"], "demo");
    assert_eq!(env["DTK_NODE"], "web");
    assert_eq!(env["DTK_COMPONENT"], "web/web");
    assert_eq!(env["DTK_ACTION"], "create");
    let db = calls.iter().find(|c| c.component == "db/db").unwrap();
    assert!(db.key.starts_with("demo/db/db/create/"), "{}", db.key);
    let rec = o.state.get(&cid("web/web")).unwrap();
    assert!(rec.is_applied());
    assert_eq!(rec.inputs.get("db_host"), Some(&Value::from("id-db/db")));
    assert_eq!(
        rec.depends_on,
        vec![cid("node[web]"), cid("db/db")],
        "node placement then link"
    );
    assert!(rec.delete.is_some());
    let node = o.state.get(&cid("node[db]")).unwrap();
    assert!(node.realizes_node);
    assert_eq!(node.provider.as_deref(), Some("fake"));
    // Round trip of actual state.
    let back = ActualState::from_json(&o.state.to_json()).unwrap();
    assert_eq!(back, o.state);
    // The tree of the outcome.
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    let tree = o.render_tree(&p);
    assert!(
        tree.starts_with("converge demo: 4 tasks, 0 failed\n"),
        "{tree}"
    );
    assert!(tree.contains("web/web    create  web  done"), "{tree}");
}

#[test]
fn node_provider_runs_commands_when_it_can() {
    let world = World::new();
    let mut reg = ProviderRegistry::new();
    reg.register(Arc::new(FakeProvider {
        world: world.clone(),
        runs_commands: true,
    }));
    let mut ctx = ExecContext::new(reg);
    ctx.journal_sync = dtk_workflow::SyncMode::Never;
    // No transport at all: the node's provider must do it.
    let o = run(
        &three_tier(),
        &ActualState::new(),
        &PlanRequest::Converge,
        &ctx,
    );
    assert!(o.is_success(), "{:#?}", o.tasks);
    assert!(
        world
            .calls()
            .iter()
            .any(|c| c.op == "provider-exec" && c.component == "web/web")
    );
}

#[test]
fn no_transport_and_no_exec_is_a_clear_failure() {
    let world = World::new();
    let mut ctx = ctx(&world);
    ctx.transport = None;
    let o = run(
        &three_tier(),
        &ActualState::new(),
        &PlanRequest::Converge,
        &ctx,
    );
    match status(&o, "web/web.create") {
        TaskStatus::Failed { message } => assert_eq!(
            message,
            "web/web.create: no way to run commands on node `web`: its provider does not run \
             commands and no command transport is configured"
        ),
        s => panic!("{s:?}"),
    }
}

fn emitter() -> ServiceModel {
    M::new("out")
        .node("n")
        .cmp(
            C::new("n/app")
                .action(commands(
                    "create",
                    &[
                        "emit url=http://{{host}}:{{port}}",
                        "emit count=3",
                        "emit junk=1",
                        "emit flags={\"a\":true}",
                    ],
                ))
                .action(commands(
                    "smoke",
                    &["echo {{url}} {{extra}}", "emit url=http://changed"],
                ))
                .attr(attr("url", AttrType::String, true, false))
                .attr(attr("count", AttrType::Integer, true, false))
                .attr(attr("flags", AttrType::Hash, true, false))
                .attr(attr("unset", AttrType::String, false, false))
                .input("host", "h")
                .input("port", 80i64),
        )
        .build()
}

#[test]
fn command_outputs_are_declared_dynamic_attributes_typed() {
    let world = World::new();
    let ctx = ctx(&world);
    let m = emitter();
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    assert!(o.is_success(), "{:#?}", o.tasks);
    let rec = o.state.get(&cid("n/app")).unwrap();
    assert_eq!(rec.outputs.get("url"), Some(&Value::from("http://h:80")));
    assert_eq!(rec.outputs.get("count"), Some(&Value::Int(3)));
    let mut flags = BTreeMap::new();
    flags.insert("a".to_owned(), Value::Bool(true));
    assert_eq!(rec.outputs.get("flags"), Some(&Value::Hash(flags)));
    assert!(!rec.outputs.contains_key("junk"));
    let report = o.tasks.iter().find(|t| t.id.0 == "n/app.create").unwrap();
    assert_eq!(
        report.warnings,
        vec![
            "output `junk` ignored: `n/app` declares no dynamic attribute of that name".to_owned()
        ]
    );

    // A custom action with a parameter sees the recorded output; its outputs are merged.
    let req = PlanRequest::Action(ActionRequest {
        target: "n/app.smoke".parse().unwrap(),
        params: attrs(&[("extra", "x y")]),
    });
    let o2 = run(&m, &o.state, &req, &ctx);
    assert!(o2.is_success(), "{:#?}", o2.tasks);
    let smoke = world
        .calls()
        .into_iter()
        .find(|c| c.script.first().is_some_and(|s| s.starts_with("echo")))
        .unwrap();
    assert_eq!(smoke.script[0], "echo http://h:80 'x y'");
    assert_eq!(
        o2.state.get(&cid("n/app")).unwrap().outputs.get("url"),
        Some(&Value::from("http://changed"))
    );
}

#[test]
fn unknown_placeholder_fails_without_retry() {
    let world = World::new();
    let ctx = ctx(&world);
    let mut bad = commands("create", &["run {{nope}} {{unset}}"]);
    bad.attempts = 5;
    let m = M::new("ph")
        .cmp(
            C::new("app")
                .action(bad)
                .attr(attr("unset", AttrType::String, false, false)),
        )
        .build();
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    assert_eq!(
        status(&o, "app.create"),
        TaskStatus::Failed {
            message: "cannot render a command of app.create: `{{nope}}` names no attribute of the component".into()
        }
    );
    assert_eq!(o.tasks[0].attempts, 1);
    assert!(world.calls().is_empty());
}

#[test]
fn retries_follow_attempts_and_retryable_errors() {
    let world = World::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ctx = ctx(&world);
    ctx.events = Some(tx);
    let mut create = provider_action("create", "fake", "thing");
    create.attempts = 3;
    create.sleep = Duration::from_millis(2);
    let m = M::new("r")
        .cmp(C::res("a").action(create))
        .cmp(C::res("b"))
        .cmp(C::res("c"))
        .build();
    world.fail("a", "create", Fail::Times(2, false)); // plain failure, 3 attempts allowed
    world.fail("b", "create", Fail::Times(2, true)); // retryable: the policy gives 3
    world.fail("c", "create", Fail::Times(1, false)); // plain, 1 attempt: fails
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    assert_eq!(status(&o, "a.create"), TaskStatus::Done);
    assert_eq!(status(&o, "b.create"), TaskStatus::Done);
    assert_eq!(
        status(&o, "c.create"),
        TaskStatus::Failed {
            message: "create fake.thing for c failed: injected failure".into()
        }
    );
    let attempts: Vec<u32> = o.tasks.iter().map(|t| t.attempts).collect();
    assert_eq!(attempts, vec![3, 3, 1]);
    let mut retrying = 0;
    while let Ok(ev) = rx.try_recv() {
        if let Event::TaskRetrying { attempt, after, .. } = ev {
            assert!(attempt <= 2);
            assert!(after >= Duration::from_millis(1));
            retrying += 1;
        }
    }
    assert_eq!(retrying, 4);
    // The failed component is recorded as failed, and planned again.
    let rec = o.state.get(&cid("c")).unwrap();
    assert!(!rec.is_applied());
    let p = plan(&m, &o.state, &PlanRequest::Converge).unwrap();
    assert_eq!(
        p.tasks().map(|t| t.id.0.clone()).collect::<Vec<_>>(),
        vec!["c.create"]
    );
}

#[test]
fn timeouts_fail_the_attempt() {
    let world = World::new();
    *world.delay.lock().unwrap() = Duration::from_millis(200);
    let mut ctx = ctx(&world);
    ctx.retry.retryable_attempts = 2;
    let mut create = provider_action("create", "fake", "thing");
    create.timeout = Some(Duration::from_millis(20));
    let m = M::new("t").cmp(C::new("slow").action(create)).build();
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    match status(&o, "slow.create") {
        TaskStatus::Failed { message } => {
            assert_eq!(message, "slow.create timed out after 20ms")
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(o.tasks[0].attempts, 2);
}

#[test]
fn a_failure_skips_its_dependents_and_finishes_the_rest() {
    let world = World::new();
    let ctx = ctx(&world);
    let m = M::new("f")
        .cmp(C::res("a"))
        .cmp(C::res("b").dep("a"))
        .cmp(C::res("c").dep("b"))
        .cmp(C::res("d"))
        .cmp(C::res("e").dep("d").dep("c"))
        .build();
    world.fail("b", "create", Fail::Always);
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    let by: Vec<String> = o
        .tasks
        .iter()
        .map(|t| format!("{} {}", t.id, t.status))
        .collect();
    assert_eq!(
        by,
        vec![
            "a.create done",
            "b.create failed: create fake.thing for b failed: injected failure",
            "c.create skipped (b.create failed)",
            "d.create done",
            "e.create skipped (b.create failed)",
        ]
    );
    assert!(!o.is_success());
}

#[test]
fn conditional_consumers_run_only_when_inputs_change() {
    let world = World::new();
    let ctx = ctx(&world);
    let m = |x: &str, out: &str| {
        M::new("cond")
            .cmp(C::res("p").input("x", x).input("out", out))
            .cmp(C::res("q").link("p", "out", "from_p"))
            .cmp(C::res("r").dep("q"))
            .build()
    };
    let s1 = run(
        &m("1", "o1"),
        &ActualState::new(),
        &PlanRequest::Converge,
        &ctx,
    )
    .state;
    world.take_calls();
    // p's `x` changes but not its output: q and r are planned, then unchanged.
    let o = run(&m("2", "o1"), &s1, &PlanRequest::Converge, &ctx);
    let by: Vec<String> = o
        .tasks
        .iter()
        .map(|t| format!("{} {}", t.id, t.status))
        .collect();
    assert_eq!(
        by,
        vec!["p.create done", "q.create unchanged", "r.create unchanged"]
    );
    assert_eq!(
        world.done_ops(),
        vec![("p".to_owned(), "update".to_owned())]
    );
    world.take_calls();
    // p's output changes: q runs with the new value (an update), and r (q's outputs
    // are the same) stays unchanged.
    let o = run(&m("2", "o2"), &o.state, &PlanRequest::Converge, &ctx);
    let by: Vec<String> = o
        .tasks
        .iter()
        .map(|t| format!("{} {}", t.id, t.status))
        .collect();
    assert_eq!(
        by,
        vec!["p.create done", "q.create done", "r.create unchanged"]
    );
    let q = world
        .calls()
        .into_iter()
        .find(|c| c.component == "q")
        .unwrap();
    assert_eq!(q.op, "update");
    assert_eq!(q.inputs.get("from_p"), Some(&Value::from("o2")));
    // Nothing left.
    assert!(
        plan(&m("2", "o2"), &o.state, &PlanRequest::Converge)
            .unwrap()
            .is_empty()
    );
}

/// Converges `m` from nothing on `rt` while a watcher cancels the run at the first
/// `TaskStarted` it reads from `rx` (the run's event channel, `ctx.events`).
fn execute_cancelling_at_first_start(
    rt: &tokio::runtime::Runtime,
    m: &ServiceModel,
    ctx: ExecContext,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Outcome {
    let p = plan(m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    let cancel = ctx.cancel.clone();
    rt.block_on(async move {
        let watcher = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if matches!(ev, Event::TaskStarted { .. }) {
                    cancel.cancel();
                }
            }
        });
        let o = execute(&p, m, &ActualState::new(), &ctx).await.unwrap();
        drop(ctx);
        let _ = watcher.await;
        o
    })
}

#[test]
fn cancellation_stops_scheduling_and_lets_running_tasks_finish() {
    let world = World::new();
    *world.delay.lock().unwrap() = Duration::from_millis(30);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ctx = ctx(&world);
    ctx.events = Some(tx);
    let m = M::new("cx")
        .cmp(C::res("a"))
        .cmp(C::res("b").dep("a"))
        .cmp(C::res("c").dep("b"))
        .build();
    let o = execute_cancelling_at_first_start(&rt(), &m, ctx, rx);
    let by: Vec<String> = o
        .tasks
        .iter()
        .map(|t| format!("{} {}", t.id, t.status))
        .collect();
    assert_eq!(
        by,
        vec!["a.create done", "b.create cancelled", "c.create cancelled"]
    );
    assert!(o.cancelled);
    assert!(o.state.get(&cid("a")).is_some());
}

/// Answers at once: its jobs end on their first poll.
struct AtOnce;

#[async_trait::async_trait]
impl dtk_model::provider::Provider for AtOnce {
    fn kind(&self) -> &str {
        "fake"
    }
    async fn create(
        &self,
        _req: &dtk_model::provider::ResourceRequest<'_>,
    ) -> Result<Attributes, dtk_model::provider::ProviderError> {
        Ok(Attributes::new())
    }
    async fn delete(
        &self,
        _req: &dtk_model::provider::ResourceRequest<'_>,
    ) -> Result<(), dtk_model::provider::ProviderError> {
        Ok(())
    }
}

#[test]
fn jobs_that_end_at_once_still_let_the_runtime_run_other_tasks() {
    // The coordinator completes such jobs without waiting on anything. On a runtime of
    // one thread, a watcher that cancels at the first event must still get its turn
    // long before the last of 5,000 tasks.
    let mut reg = ProviderRegistry::new();
    reg.register(Arc::new(AtOnce));
    let mut ctx = ExecContext::new(reg);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.events = Some(tx);
    let mut m = M::new("burst");
    for k in 0..5_000 {
        m = m.cmp(C::res(&format!("r{k}")));
    }
    let m = m.build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let o = execute_cancelling_at_first_start(&rt, &m, ctx, rx);
    let done = o
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Done)
        .count();
    assert!(o.cancelled, "the watcher never ran during the run");
    assert!(done >= 1, "nothing ran");
    assert!(done < 1_000, "{done} tasks ran before the watcher's turn");
    assert_eq!(o.state.components.len(), done);
}

#[test]
fn ready_tasks_start_in_the_order_the_planner_added_them() {
    // `r` waits for `q`; `s` is ready from the start. Once `q` is done, both `r` and `s`
    // are ready: the one declared first (`r`) starts first, not the one ready longest.
    // (Taking ready tasks in declaration order keeps a large run walking its plan and
    // records forward through memory.)
    let mut reg = ProviderRegistry::new();
    reg.register(Arc::new(AtOnce));
    let mut ctx = ExecContext::new(reg);
    ctx.limits.concurrency = 1;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.events = Some(tx);
    let m = M::new("order")
        .cmp(C::res("p"))
        .cmp(C::res("q"))
        .cmp(C::res("r").dep("q"))
        .cmp(C::res("s"))
        .build();
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    assert!(o.is_success(), "{:#?}", o.tasks);
    drop(ctx);
    let mut started = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let Event::TaskStarted { task, .. } = ev {
            started.push(task.to_string());
        }
    }
    assert_eq!(started, ["p.create", "q.create", "r.create", "s.create"]);
}

struct Vault;

impl SecretSource for Vault {
    fn secret(&self, _component: &ComponentId, name: &str) -> Option<Value> {
        (name == "token").then(|| Value::from("s3cr3t-value"))
    }
}

#[test]
fn secrets_reach_actions_but_never_state_or_journal() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new();
    let mut ctx = ctx(&world);
    ctx.secrets = Some(Arc::new(Vault));
    ctx.journal = Some(dir.path().join("run.jsonl"));
    let m = M::new("sec")
        .cmp(
            C::new("cmd")
                .action(commands("create", &["login {{token}}", "fail"]))
                .secret("token"),
        )
        .cmp(
            C::res("res")
                .secret("token")
                .attr(attr("token_out", AttrType::String, true, true))
                .input("leak", "yes"),
        )
        .cmp(
            C::res("consumer")
                .link("res", "token_out", "tok")
                .secret("tok"),
        )
        .build();
    // `fail` echoes nothing secret, but make stderr contain it to test redaction.
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    let call = world
        .calls()
        .into_iter()
        .find(|c| c.component == "cmd")
        .unwrap();
    assert_eq!(call.script[0], "login s3cr3t-value");
    assert!(
        call.env
            .contains(&("token".to_owned(), "s3cr3t-value".to_owned()))
    );
    assert_eq!(status(&o, "res.create"), TaskStatus::Done);
    assert_eq!(status(&o, "consumer.create"), TaskStatus::Done);
    // The consumer got the secret output in this run, as a secret.
    let consumer = world
        .calls()
        .into_iter()
        .find(|c| c.component == "consumer")
        .unwrap();
    assert!(!consumer.inputs.contains_key("tok"));
    let state = o.state.to_json();
    let journal = std::fs::read_to_string(dir.path().join("run.jsonl")).unwrap();
    assert!(!state.contains("s3cr3t"), "{state}");
    assert!(!journal.contains("s3cr3t"), "{journal}");
    assert!(journal.contains("token_out") || !journal.contains("token_out"));
    assert!(
        !o.state
            .get(&cid("res"))
            .unwrap()
            .outputs
            .contains_key("token_out")
    );
}

#[test]
fn failure_messages_redact_secrets() {
    let world = World::new();
    let mut ctx = ctx(&world);
    ctx.secrets = Some(Arc::new(Vault));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.events = Some(tx);
    let m = M::new("sec2")
        .cmp(
            C::new("cmd")
                .action(commands("create", &["failenv token"]))
                .secret("token"),
        )
        .build();
    let o = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx);
    assert_eq!(
        status(&o, "cmd.create"),
        TaskStatus::Failed {
            message: "cmd.create: commands ended with exit status 2: bad token=<redacted>".into()
        }
    );
    let mut captured = None;
    while let Ok(ev) = rx.try_recv() {
        if let Event::TaskFailed { output, .. } = ev {
            captured = output;
        }
    }
    let captured = captured.expect("captured output");
    assert_eq!(captured.stdout, "using <redacted>\n");
    assert_eq!(captured.exit_code, Some(2));
}

#[test]
fn limits_per_provider_and_per_node() {
    let world = World::new();
    *world.delay.lock().unwrap() = Duration::from_millis(5);
    let mut ctx = ctx(&world);
    ctx.limits.per_provider.insert("fake".to_owned(), 1);
    let mut b = M::new("lim");
    for i in 0..6 {
        b = b.cmp(C::res(&format!("c{i}")));
    }
    let o = run(
        &b.build(),
        &ActualState::new(),
        &PlanRequest::Converge,
        &ctx,
    );
    assert!(o.is_success());
    let mut calls = world.calls();
    calls.sort_by_key(|c| c.start);
    for w in calls.windows(2) {
        assert!(w[0].end < w[1].start, "fake calls overlap: {w:?}");
    }
    // Global limit 1 behaves the same; per node: six components on one node.
    let world = World::new();
    *world.delay.lock().unwrap() = Duration::from_millis(5);
    let ctx = crate::support::ctx(&world);
    let mut b = M::new("node");
    for i in 0..6 {
        b = b.cmp(C::res(&format!("n/c{i}")));
    }
    let o = run(
        &b.build(),
        &ActualState::new(),
        &PlanRequest::Converge,
        &ctx,
    );
    assert!(o.is_success());
    let mut calls = world.calls();
    calls.sort_by_key(|c| c.start);
    for w in calls.windows(2) {
        assert!(w[0].end < w[1].start, "tasks on one node overlap: {w:?}");
    }
}

#[test]
fn events_report_every_task() {
    let world = World::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ctx = ctx(&world);
    ctx.events = Some(tx);
    world.fail("db/db", "create", Fail::Always);
    let _ = run(
        &three_tier(),
        &ActualState::new(),
        &PlanRequest::Converge,
        &ctx,
    );
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        seen.push(match ev {
            Event::TaskStarted { task, .. } => format!("started {task}"),
            Event::TaskFinished { task, node, .. } => format!("finished {task} on {node:?}"),
            Event::TaskFailed { task, error, .. } => format!("failed {task}: {error}"),
            Event::TaskSkipped { task, status, .. } => format!("skipped {task}: {status}"),
            Event::TaskRetrying { task, .. } => format!("retrying {task}"),
        });
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "failed db/db.create: create fake.thing for db/db failed: injected failure",
            "finished node[db].create on Some(\"db\")",
            "finished node[web].create on Some(\"web\")",
            "skipped web/web.create: skipped (db/db.create failed)",
            "started db/db.create",
            "started node[db].create",
            "started node[web].create",
        ]
    );
}

#[test]
fn delete_runs_in_reverse_order_and_empties_state() {
    let world = World::new();
    let ctx = ctx(&world);
    let m = three_tier();
    let s = run(&m, &ActualState::new(), &PlanRequest::Converge, &ctx).state;
    world.take_calls();
    let o = run(&m, &s, &PlanRequest::Delete, &ctx);
    assert!(o.is_success(), "{:#?}", o.tasks);
    assert!(o.state.components.is_empty());
    let order: Vec<String> = world
        .done_ops()
        .into_iter()
        .map(|(c, op)| format!("{c} {op}"))
        .collect();
    let pos = |s: &str| {
        order
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} in {order:?}"))
    };
    assert!(pos("web/web exec") < pos("db/db delete"));
    assert!(pos("db/db delete") < pos("node[db] delete"));
    assert!(pos("web/web exec") < pos("node[web] delete"));
}

#[test]
fn removed_component_is_deleted_with_its_recorded_definition() {
    let world = World::new();
    let ctx = ctx(&world);
    let full = M::new("rm")
        .node("n")
        .cmp(
            C::new("n/gone")
                .action(commands("create", &["echo up"]))
                .action(commands("delete", &["echo down {{port}}"]))
                .input("port", 7i64),
        )
        .build();
    let s = run(&full, &ActualState::new(), &PlanRequest::Converge, &ctx).state;
    world.take_calls();
    let less = M::new("rm").node("n").build();
    let o = run(&less, &s, &PlanRequest::Converge, &ctx);
    assert!(o.is_success(), "{:#?}", o.tasks);
    let c = world.calls();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].script, vec!["echo down 7".to_owned()]);
    assert_eq!(c[0].node.as_deref(), Some("n"));
    assert!(o.state.get(&cid("n/gone")).is_none());
    let _: Attributes = Attributes::new();
}
