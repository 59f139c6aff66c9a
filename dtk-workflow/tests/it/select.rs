//! Targeted converges (`--only`, `--exclude`, `--replace`) and `fail_fast`.

use dtk_model::instance::{ComponentId, ServiceModel};
use dtk_workflow::{
    ActualState, Plan, PlanRequest, Replace, SelectedPlan, Selection, Selector, TaskId, TaskStatus,
    execute, plan, plan_selected,
};
use expect_test::{Expect, expect};

use crate::support::*;

/// Two apps side by side: `a` (db then web) and `b` (one component), on nodes.
fn two_apps(db_size: &str, b_size: &str) -> ServiceModel {
    M::new("apps")
        .node("db")
        .node("web")
        .node("b")
        .cmp(C::res("db/db").input("size", db_size))
        .cmp(C::res("web/web").link("db/db", "out", "db_host"))
        .cmp(C::res("b/b").input("size", b_size))
        .build()
}

fn sel(only: &[&str], exclude: &[&str], replace: &[&str]) -> Selection {
    let p = |v: &[&str]| -> Vec<Selector> { v.iter().map(|s| s.parse().unwrap()).collect() };
    Selection {
        only: p(only),
        exclude: p(exclude),
        replace: p(replace).into_iter().map(Replace::requested).collect(),
    }
}

/// Each task with its reason and the tasks it waits for, then what was left out.
fn show(p: &SelectedPlan) -> String {
    let mut out = String::new();
    for t in p.plan.tasks() {
        let preds: Vec<String> = p
            .plan
            .predecessors(&t.id)
            .iter()
            .map(|x| x.to_string())
            .collect();
        out.push_str(&format!(
            "{} ({}) <- [{}]\n",
            t.id,
            t.reason,
            preds.join(", ")
        ));
    }
    for l in &p.left_out {
        out.push_str(&format!("left out: {} ({}): {}\n", l.task, l.reason, l.why));
    }
    out
}

fn check(model: &ServiceModel, actual: &ActualState, s: &Selection, want: Expect) {
    let p = plan_selected(model, actual, s).expect("plan");
    want.assert_eq(&show(&p));
}

/// Converges `model` from `actual` with the fake provider; returns the new state.
fn converge(model: &ServiceModel, actual: &ActualState) -> ActualState {
    let world = World::new();
    let p: Plan = plan(model, actual, &PlanRequest::Converge).unwrap();
    let o = rt()
        .block_on(execute(&p, model, actual, &ctx(&world)))
        .unwrap();
    assert!(o.is_success(), "{}", o.render_tree(&p));
    o.state
}

#[test]
fn an_empty_selection_is_a_plain_converge() {
    let m = two_apps("s", "s");
    let a = ActualState::new();
    let plain = plan(&m, &a, &PlanRequest::Converge).unwrap();
    let sel = plan_selected(&m, &a, &Selection::default()).unwrap();
    let ids = |p: &Plan| p.tasks().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plain), ids(&sel.plan));
    assert!(sel.left_out.is_empty());
}

#[test]
fn only_runs_the_named_and_what_they_need() {
    let m = two_apps("s", "s");
    // From nothing: web needs its node, db and db's node; b is left out.
    check(
        &m,
        &ActualState::new(),
        &sel(&["web/web"], &[], &[]),
        expect![[r#"
            node[db].create (new, needed by web/web) <- []
            node[web].create (new, needed by web/web) <- []
            db/db.create (new, needed by web/web) <- [node[db].create]
            web/web.create (new) <- [db/db.create, node[web].create]
            left out: node[b].create (new): not named by --only
            left out: b/b.create (new): not named by --only
        "#]],
    );
    // Converged, then db and b change: `--only b` runs b alone; a node names all on it.
    let state = converge(&m, &ActualState::new());
    let m2 = two_apps("m", "m");
    check(
        &m2,
        &state,
        &sel(&["b"], &[], &[]),
        expect![[r#"
            b/b.create (changed) <- []
            left out: db/db.create (changed): not named by --only
            left out: web/web.create (if inputs change (after db/db)): not named by --only
        "#]],
    );
    // `--only web/web`: db changed and web needs it.
    check(
        &m2,
        &state,
        &sel(&["web/web"], &[], &[]),
        expect![[r#"
            db/db.create (changed, needed by web/web) <- []
            web/web.create (if inputs change (after db/db)) <- [db/db.create]
            left out: b/b.create (changed): not named by --only
        "#]],
    );
}

#[test]
fn exclude_leaves_out_a_component_and_what_follows_its_change() {
    let state = converge(&two_apps("s", "s"), &ActualState::new());
    let m2 = two_apps("m", "m");
    check(
        &m2,
        &state,
        &sel(&[], &["db/db"], &[]),
        expect![[r#"
            b/b.create (changed) <- []
            left out: db/db.create (changed): excluded
            left out: web/web.create (if inputs change (after db/db)): after excluded db/db
        "#]],
    );
    // Excluding something up to date leaves the rest as it was.
    check(
        &m2,
        &state,
        &sel(&[], &["web"], &[]),
        expect![[r#"
            db/db.create (changed) <- []
            b/b.create (changed) <- []
            left out: web/web.create (if inputs change (after db/db)): excluded
        "#]],
    );
}

#[test]
fn replace_deletes_then_creates_and_consumers_follow() {
    let m = two_apps("s", "s");
    let state = converge(&m, &ActualState::new());
    check(
        &m,
        &state,
        &sel(&[], &[], &["db/db"]),
        expect![[r#"
            db/db.delete (replace (requested)) <- []
            db/db.create (replace (requested)) <- [db/db.delete]
            web/web.create (if inputs change (after db/db)) <- [db/db.create]
        "#]],
    );
    // Run it: a delete, then a create (not an update); web's inputs are the same.
    let world = World::new();
    let p = plan_selected(&m, &state, &sel(&[], &[], &["db/db"])).unwrap();
    let o = rt()
        .block_on(execute(&p.plan, &m, &state, &ctx(&world)))
        .unwrap();
    assert!(o.is_success(), "{}", o.render_tree(&p.plan));
    assert_eq!(
        world.done_ops(),
        vec![
            ("db/db".to_owned(), "delete".to_owned()),
            ("db/db".to_owned(), "create".to_owned()),
        ]
    );
    assert_eq!(
        o.status(&TaskId("web/web.create".into())),
        Some(&TaskStatus::Unchanged)
    );
    assert!(
        plan(&m, &o.state, &PlanRequest::Converge)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_replaced_node_runs_everything_on_it_again() {
    let m = two_apps("s", "s");
    let state = converge(&m, &ActualState::new());
    check(
        &m,
        &state,
        &sel(&[], &[], &["node[db]"]),
        expect![[r#"
            node[db].delete (replace (requested)) <- []
            node[db].create (replace (requested)) <- [node[db].delete]
            db/db.create (replace (its node `db` is replaced)) <- [node[db].create]
            web/web.create (if inputs change (after db/db)) <- [db/db.create]
        "#]],
    );
}

#[test]
fn references_are_checked_and_must_match() {
    let m = two_apps("s", "s");
    let err = plan_selected(&m, &ActualState::new(), &sel(&["nosuch"], &[], &[])).unwrap_err();
    expect![[r#"`--only nosuch` matches no component of service `apps` (it has: node[db], node[web], node[b], db/db, web/web, b/b)"#]]
        .assert_eq(&err.to_string());
    for bad in ["a/b/c", "", "web/[x]", "we b"] {
        assert!(bad.parse::<Selector>().is_err(), "{bad}");
    }
    for good in [
        "web",
        "web/web",
        "node[web]",
        "workers:2/w",
        "workers:2",
        "db[x]",
    ] {
        assert!(good.parse::<Selector>().is_ok(), "{good}");
    }
    // A group names its members; a member names itself.
    let g = M::new("g")
        .group("workers", 3)
        .cmp(C::res("workers:1/w"))
        .cmp(C::res("workers:2/w"))
        .cmp(C::res("workers:3/w"))
        .build();
    let p = plan_selected(&g, &ActualState::new(), &sel(&["workers/w"], &[], &[])).unwrap();
    let named: Vec<String> = p
        .plan
        .tasks()
        .filter(|t| t.reason.to_string() == "new")
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(
        named,
        [
            "workers:1/w.create",
            "workers:2/w.create",
            "workers:3/w.create"
        ]
    );
    let p = plan_selected(&g, &ActualState::new(), &sel(&["workers:2"], &[], &[])).unwrap();
    let ids: Vec<String> = p.plan.tasks().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, ["node[workers:2].create", "workers:2/w.create"]);
}

#[test]
fn only_names_a_removed_component_for_its_delete() {
    let m = two_apps("s", "s");
    let state = converge(&m, &ActualState::new());
    let smaller = M::new("apps")
        .node("db")
        .node("web")
        .cmp(C::res("db/db").input("size", "m"))
        .cmp(C::res("web/web").link("db/db", "out", "db_host"))
        .build();
    check(
        &smaller,
        &state,
        &sel(&["b"], &[], &[]),
        expect![[r#"
            b/b.delete (removed from model) <- []
            node[b].delete (removed from model) <- [b/b.delete]
            left out: db/db.create (changed): not named by --only
            left out: web/web.create (if inputs change (after db/db)): not named by --only
        "#]],
    );
}

#[test]
fn fail_fast_stops_scheduling_at_the_first_failure() {
    // Three independent chains; the first component fails.
    let m = M::new("ff")
        .cmp(C::res("a1"))
        .cmp(C::res("a2").dep("a1"))
        .cmp(C::res("b1"))
        .cmp(C::res("c1"))
        .build();
    let world = World::new();
    world.fail("a1", "*", Fail::Always);
    let mut c = ctx(&world);
    c.limits.concurrency = 1;
    c.fail_fast = true;
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    let o = rt()
        .block_on(execute(&p, &m, &ActualState::new(), &c))
        .unwrap();
    assert!(
        !o.cancelled,
        "a fail-fast stop is a failure, not a cancellation"
    );
    assert!(!o.is_success());
    let because = TaskStatus::Skipped {
        because: TaskId("a1.create".into()),
    };
    for id in ["a2.create", "b1.create", "c1.create"] {
        assert_eq!(o.status(&TaskId(id.into())), Some(&because), "{id}");
    }
    assert_eq!(world.calls().len(), 1, "nothing started after the failure");
    // Without it, the independent ones run to the end.
    let world = World::new();
    world.fail("a1", "*", Fail::Always);
    let mut c = ctx(&world);
    c.limits.concurrency = 1;
    let o = rt()
        .block_on(execute(&p, &m, &ActualState::new(), &c))
        .unwrap();
    assert_eq!(o.status(&TaskId("a2.create".into())), Some(&because));
    for id in ["b1.create", "c1.create"] {
        assert_eq!(
            o.status(&TaskId(id.into())),
            Some(&TaskStatus::Done),
            "{id}"
        );
    }
    assert!(
        !o.state.components.contains_key(&ComponentId("a2".into())),
        "a skipped task records nothing"
    );
}
