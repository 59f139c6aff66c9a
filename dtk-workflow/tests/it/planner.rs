//! Planner tests: derived and explicit order, change detection, cycles, deletes,
//! custom actions; text-tree and DOT snapshots.

use dtk_model::instance::{ComponentId, ServiceModel};
use dtk_model::module::SubtaskOrder;
use dtk_model::provider::Observed;
use dtk_model::value::Value;
use dtk_workflow::{
    ActionRequest, ActualState, Plan, PlanRequest, Reason, TaskId, build_graph, execute, plan,
    render_dot,
};
use expect_test::{Expect, expect};

use crate::support::*;

/// db on node db; web on node web, linked to db's `out`.
pub fn three_tier() -> ServiceModel {
    M::new("demo")
        .node("db")
        .node("web")
        .cmp(C::res("db/db").input("size", "small"))
        .cmp(
            C::new("web/web")
                .action(commands(
                    "create",
                    &["start-web --port {{port}} --db {{db_host}}"],
                ))
                .action(commands("delete", &["stop-web"]))
                .action(commands("smoke_test", &["echo {{url}}"]))
                .attr(attr(
                    "url",
                    dtk_model::module::AttrType::String,
                    true,
                    false,
                ))
                .input("port", 8080i64)
                .link("db/db", "out", "db_host"),
        )
        .build()
}

fn check_tree(model: &ServiceModel, actual: &ActualState, req: &PlanRequest, want: Expect) {
    let p = plan(model, actual, req).expect("plan");
    want.assert_eq(&p.render_tree());
}

/// Each task with the tasks it waits for.
fn edges(p: &Plan) -> String {
    let mut out = String::new();
    for t in p.tasks() {
        let preds: Vec<String> = p
            .predecessors(&t.id)
            .iter()
            .map(|x| x.to_string())
            .collect();
        out.push_str(&format!("{} <- [{}]\n", t.id, preds.join(", ")));
    }
    out
}

fn check_edges(model: &ServiceModel, want: Expect) {
    let p = plan(model, &ActualState::new(), &PlanRequest::Converge).expect("plan");
    want.assert_eq(&edges(&p));
}

fn converge(model: &ServiceModel, actual: &ActualState) -> ActualState {
    let world = World::new();
    let ctx = ctx(&world);
    let p = plan(model, actual, &PlanRequest::Converge).expect("plan");
    let out = rt()
        .block_on(execute(&p, model, actual, &ctx))
        .expect("execute");
    assert!(out.is_success(), "{:#?}", out.tasks);
    out.state
}

#[test]
fn derived_order_tree() {
    check_tree(
        &three_tier(),
        &ActualState::new(),
        &PlanRequest::Converge,
        expect![[r#"
            converge demo: 4 tasks
            ├── 1 stage 1
            │   ├── node[db]   create  db   new
            │   └── node[web]  create  web  new
            ├── 2 stage 2
            │   └── db/db      create  db   new
            └── 3 stage 3
                └── web/web    create  web  new
        "#]],
    );
    check_edges(
        &three_tier(),
        expect![[r#"
            node[db].create <- []
            node[web].create <- []
            db/db.create <- [node[db].create]
            web/web.create <- [db/db.create, node[web].create]
        "#]],
    );
}

#[test]
fn dot_snapshot() {
    let p = plan(&three_tier(), &ActualState::new(), &PlanRequest::Converge).unwrap();
    expect![[r#"
        digraph "demo" {
          rankdir=TB;
          node [shape=box, fontname="monospace"];
          t0 [label="node[db]\ncreate on db\nnew"];
          t1 [label="node[web]\ncreate on web\nnew"];
          t2 [label="db/db\ncreate on db\nnew"];
          t3 [label="web/web\ncreate on web\nnew"];
          t0 -> t2 [label="node db"];
          t1 -> t3 [label="node web"];
          t2 -> t3 [label="link db/db"];
        }
    "#]]
    .assert_eq(&p.render_dot());
}

#[test]
fn explicit_sequential_workflow() {
    // Without the workflow web and db are unordered; the workflow puts db first.
    let m = M::new("wf")
        .node("db")
        .node("web")
        .cmp(C::res("db/db"))
        .cmp(C::res("web/web"))
        .workflow(
            SubtaskOrder::Sequential,
            vec![
                step("database", Some("db"), &["db"]),
                step("frontend", Some("web"), &["web"]),
            ],
        )
        .build();
    check_edges(
        &m,
        expect![[r#"
            node[db].create <- []
            node[web].create <- []
            db/db.create <- [node[db].create]
            web/web.create <- [db/db.create, node[web].create]
        "#]],
    );
    check_tree(
        &m,
        &ActualState::new(),
        &PlanRequest::Converge,
        expect![[r#"
            converge wf: 4 tasks
            ├── 1 stage 1
            │   ├── node[db]   create  db   new
            │   └── node[web]  create  web  new
            ├── 2 database
            │   └── db/db      create  db   new
            └── 3 frontend
                └── web/web    create  web  new
        "#]],
    );
}

#[test]
fn explicit_concurrent_nested_and_group_workflow() {
    let m = M::new("wf2")
        .node("a")
        .group("workers", 2)
        .cmp(C::res("a/x"))
        .cmp(C::res("a/y"))
        .cmp(C::res("workers:1/w"))
        .cmp(C::res("workers:2/w"))
        .cmp(C::res("final"))
        .workflow(
            SubtaskOrder::Sequential,
            vec![
                nested(
                    "setup",
                    SubtaskOrder::Concurrent,
                    vec![step("x", Some("a"), &["x"]), step("y", Some("a"), &["y"])],
                ),
                group_step("workers", "workers", &["w"]),
                step("last", None, &["final"]),
            ],
        )
        .build();
    check_edges(
        &m,
        expect![[r#"
            node[a].create <- []
            node[workers:1].create <- []
            node[workers:2].create <- []
            a/x.create <- [node[a].create]
            a/y.create <- [node[a].create]
            workers:1/w.create <- [a/x.create, a/y.create, node[workers:1].create]
            workers:2/w.create <- [a/x.create, a/y.create, node[workers:2].create]
            final.create <- [workers:1/w.create, workers:2/w.create]
        "#]],
    );
    check_tree(
        &m,
        &ActualState::new(),
        &PlanRequest::Converge,
        expect![[r#"
            converge wf2: 8 tasks
            ├── 1 stage 1
            │   ├── node[a]          create  a          new
            │   ├── node[workers:1]  create  workers:1  new
            │   └── node[workers:2]  create  workers:2  new
            ├── 2 setup
            │   ├── 1 x
            │   │   └── a/x          create  a          new
            │   └── 2 y
            │       └── a/y          create  a          new
            ├── 3 workers
            │   ├── workers:1/w      create  workers:1  new
            │   └── workers:2/w      create  workers:2  new
            └── 4 last
                └── final            create  -          new
        "#]],
    );
}

#[test]
fn ordered_components_and_action_steps() {
    let mut st = step("app", Some("a"), &["one", "two", "three"]);
    st.ordered = true;
    st.actions = vec![action_step("three", "check")];
    let m = M::new("ord")
        .node("a")
        .cmp(C::res("a/one"))
        .cmp(C::res("a/two"))
        .cmp(C::res("a/three").action(commands("check", &["echo ok"])))
        .workflow(SubtaskOrder::Sequential, vec![st])
        .build();
    check_edges(
        &m,
        expect![[r#"
            node[a].create <- []
            a/one.create <- [node[a].create]
            a/two.create <- [a/one.create, node[a].create]
            a/three.create <- [a/two.create, node[a].create]
            a/three.check <- [a/three.create]
        "#]],
    );
    // Converged, nothing is planned: the action step runs only with its component.
    let state = converge(&m, &ActualState::new());
    let again = plan(&m, &state, &PlanRequest::Converge).unwrap();
    assert!(again.is_empty(), "{}", again.render_tree());
}

#[test]
fn unchanged_tasks_keep_workflow_order() {
    // one -> two -> three in a sequential workflow; only one and three change: one must
    // still come before three although two is not planned.
    let m = |v: &str| {
        M::new("gap")
            .cmp(C::res("one").input("v", v))
            .cmp(C::res("two"))
            .cmp(C::res("three").input("v", v))
            .workflow(
                SubtaskOrder::Sequential,
                vec![
                    step("s1", None, &["one"]),
                    step("s2", None, &["two"]),
                    step("s3", None, &["three"]),
                ],
            )
            .build()
    };
    let state = converge(&m("1"), &ActualState::new());
    let p = plan(&m("2"), &state, &PlanRequest::Converge).unwrap();
    expect![[r#"
        one.create <- []
        three.create <- [one.create]
    "#]]
    .assert_eq(&edges(&p));
}

#[test]
fn workflow_errors_name_the_step() {
    let m = M::new("bad")
        .node("a")
        .cmp(C::res("a/x"))
        .workflow(
            SubtaskOrder::Sequential,
            vec![step("s", Some("a"), &["nope"])],
        )
        .build();
    let e = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap_err();
    expect!["workflow `create` step `s` names `nope`, which is not in service `bad` on node `a`"]
        .assert_eq(&e.to_string());
    let m = M::new("bad")
        .cmp(C::res("x"))
        .workflow(
            SubtaskOrder::Sequential,
            vec![step("s", Some("ghost"), &["x"])],
        )
        .build();
    let e = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap_err();
    expect!["workflow `create` step `s` runs on node `ghost`, which service `bad` does not have"]
        .assert_eq(&e.to_string());
}

#[test]
fn second_converge_plans_nothing_and_changes_are_detected() {
    let m = three_tier();
    let state = converge(&m, &ActualState::new());
    let p = plan(&m, &state, &PlanRequest::Converge).unwrap();
    assert!(p.is_empty(), "{}", p.render_tree());

    // An input of db changes: db is changed, web (linked to it) is conditional.
    let mut m2 = three_tier();
    m2.components[2]
        .inputs
        .insert("size".into(), Value::from("large"));
    check_tree(
        &m2,
        &state,
        &PlanRequest::Converge,
        expect![[r#"
            converge demo: 2 tasks
            ├── 1 stage 1
            │   └── db/db    create  db   changed
            └── 2 stage 2
                └── web/web  create  web  if inputs change (after db/db)
        "#]],
    );
    // The definition of web's create changes: only web.
    let mut m3 = three_tier();
    let mut def = (*m3.components[3].def).clone();
    def.actions
        .insert("create".into(), commands("create", &["start-web --new"]));
    m3.components[3].def = std::sync::Arc::new(def);
    let p = plan(&m3, &state, &PlanRequest::Converge).unwrap();
    let ids: Vec<_> = p
        .tasks()
        .map(|t| (t.id.to_string(), t.reason.clone()))
        .collect();
    assert_eq!(ids, vec![("web/web.create".to_owned(), Reason::Changed)]);
    // The node moves: the component is changed (its node is part of its hash).
    // Drift: the db resource was deleted outside dtk.
    let mut drifted = state.clone();
    assert_eq!(
        drifted.observe(&ComponentId("db/db".into()), &Observed::Missing),
        dtk_workflow::Observation::Missing
    );
    let p = plan(&m, &drifted, &PlanRequest::Converge).unwrap();
    assert_eq!(p.tasks().next().unwrap().reason, Reason::Drift);
    // ConvergeAll plans everything.
    assert_eq!(
        plan(&m, &state, &PlanRequest::ConvergeAll).unwrap().len(),
        4
    );
}

#[test]
fn external_link_values_are_part_of_the_hash() {
    let m = |subnet: &str| {
        M::new("ext")
            .cmp(C::res("app").external(
                "target",
                "vpc[vpc1]",
                attrs(&[("subnet_id", subnet)]),
                "subnet_id",
                "subnet",
            ))
            .build()
    };
    let state = converge(&m("s-1"), &ActualState::new());
    assert!(
        plan(&m("s-1"), &state, &PlanRequest::Converge)
            .unwrap()
            .is_empty()
    );
    let p = plan(&m("s-2"), &state, &PlanRequest::Converge).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(
        state
            .get(&ComponentId("app".into()))
            .unwrap()
            .inputs
            .get("subnet"),
        Some(&Value::from("s-1"))
    );
}

#[test]
fn cycle_error_names_every_edge() {
    let m = M::new("cyc")
        .cmp(C::res("a").dep("c"))
        .cmp(C::res("b").link("a", "out", "x"))
        .cmp(C::res("c").dep("b"))
        .cmp(C::res("d").dep("d"))
        .cmp(C::res("ok"))
        .build();
    let e = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap_err();
    expect![[r#"
        the tasks of service `cyc` have 2 cycles:
          a -> b -> c -> a
            a -> b: link a
            b -> c: dependency b
            c -> a: dependency c
          d -> d
            d -> d: dependency d"#]]
    .assert_eq(&e.to_string());
    // The raw graph still renders, the cycles' edges red.
    let g = build_graph(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    expect![[r#"
        digraph "cyc" {
          rankdir=TB;
          node [shape=box, fontname="monospace"];
          t0 [label="a\ncreate\nnew"];
          t1 [label="b\ncreate\nnew"];
          t2 [label="c\ncreate\nnew"];
          t3 [label="d\ncreate\nnew"];
          t4 [label="ok\ncreate\nnew"];
          t0 -> t1 [label="link a", color=red, fontcolor=red, penwidth=2];
          t1 -> t2 [label="dependency b", color=red, fontcolor=red, penwidth=2];
          t2 -> t0 [label="dependency c", color=red, fontcolor=red, penwidth=2];
          t3 -> t3 [label="dependency d", color=red, fontcolor=red, penwidth=2];
        }
    "#]]
    .assert_eq(&render_dot(&g));
}

#[test]
fn workflow_against_dependencies_is_a_cycle() {
    let m = M::new("wfc")
        .cmp(C::res("db"))
        .cmp(C::res("web").dep("db"))
        .workflow(
            SubtaskOrder::Sequential,
            vec![step("first", None, &["web"]), step("second", None, &["db"])],
        )
        .build();
    let e = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap_err();
    expect![[r#"
        the tasks of service `wfc` have a cycle:
          db -> web -> db
            db -> web: dependency db
            web -> db: workflow: before second"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn unknown_dependency_is_an_error() {
    let m = M::new("u").cmp(C::res("a").dep("ghost")).build();
    let e = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap_err();
    expect!["`a` depends on `ghost` (dependency ghost), which is not in service `u`"]
        .assert_eq(&e.to_string());
}

#[test]
fn removed_components_are_deleted_in_reverse_order_before_their_node() {
    let full = M::new("rm")
        .node("a")
        .cmp(C::res("a/base"))
        .cmp(C::res("a/top").dep("a/base"))
        .cmp(C::res("a/stay"))
        .build();
    let state = converge(&full, &ActualState::new());
    // base and top leave the model; stay's input changes.
    let less = M::new("rm")
        .node("a")
        .cmp(C::res("a/stay").input("v", "2"))
        .build();
    let p = plan(&less, &state, &PlanRequest::Converge).unwrap();
    expect![[r#"
        a/top.delete <- []
        a/base.delete <- [a/top.delete]
        a/stay.create <- [a/base.delete, a/top.delete]
    "#]]
    .assert_eq(&edges(&p));
    check_tree(
        &less,
        &state,
        &PlanRequest::Converge,
        expect![[r#"
            converge rm: 3 tasks
            ├── 1 stage 1
            │   └── a/top.delete   delete  a  removed from model
            ├── 2 stage 2
            │   └── a/base.delete  delete  a  removed from model
            └── 3 stage 3
                └── a/stay         create  a  changed
        "#]],
    );
}

#[test]
fn delete_everything_in_reverse_dependency_order() {
    let m = three_tier();
    let state = converge(&m, &ActualState::new());
    let p = plan(&m, &state, &PlanRequest::Delete).unwrap();
    expect![[r#"
        web/web.delete <- []
        db/db.delete <- [web/web.delete]
        node[db].delete <- [db/db.delete]
        node[web].delete <- [web/web.delete]
    "#]]
    .assert_eq(&edges(&p));
}

#[test]
fn custom_actions_match_nodes_and_groups() {
    let m = M::new("act")
        .group("workers", 3)
        .node("solo")
        .cmp(C::res("workers:1/w").action(commands("restart", &["echo restart"])))
        .cmp(C::res("workers:2/w").action(commands("restart", &["echo restart"])))
        .cmp(C::res("workers:3/w").action(commands("restart", &["echo restart"])))
        .cmp(C::res("solo/w").action(commands("restart", &["echo restart"])))
        .build();
    let req = |t: &str| {
        PlanRequest::Action(ActionRequest {
            target: t.parse().unwrap(),
            params: attrs(&[("force", "yes")]),
        })
    };
    let ids = |t: &str| -> Vec<String> {
        plan(&m, &ActualState::new(), &req(t))
            .unwrap()
            .tasks()
            .map(|t| t.id.to_string())
            .collect()
    };
    assert_eq!(ids("w.restart").len(), 4);
    assert_eq!(
        ids("workers/w.restart"),
        vec![
            "workers:1/w.restart",
            "workers:2/w.restart",
            "workers:3/w.restart"
        ]
    );
    assert_eq!(ids("workers:2/w.restart"), vec!["workers:2/w.restart"]);
    assert_eq!(ids("solo/w.restart"), vec!["solo/w.restart"]);
    let e = plan(&m, &ActualState::new(), &req("w.nope")).unwrap_err();
    expect!["component `workers:1/w` has no action `nope`"].assert_eq(&e.to_string());
    let e = plan(&m, &ActualState::new(), &req("ghost/w.restart")).unwrap_err();
    expect!["`ghost/w.restart` matches no component of service `act`"].assert_eq(&e.to_string());
    let e = "w".parse::<dtk_workflow::ActionTarget>().unwrap_err();
    expect!["invalid action target `w`: expected `[NODE/]COMPONENT.ACTION`"]
        .assert_eq(&e.to_string());
    // A custom action of provider kind is refused.
    let e = plan(&m, &ActualState::new(), &req("w.create"));
    assert!(
        e.is_ok(),
        "create is a provider action but may be run on request"
    );
    let _ = TaskId("x".into());
}

/// One action on given instances, in one plan: exactly those (in model order), ids the
/// model lacks left out, no edges between them; a named one lacking the action is an error.
#[test]
fn an_action_on_given_instances_plans_exactly_them() {
    let m = M::new("on")
        .group("workers", 3)
        .node("solo")
        .cmp(C::res("workers:1/w").action(commands("check", &["true"])))
        .cmp(C::res("workers:2/w").action(commands("check", &["true"])))
        .cmp(C::res("workers:3/w").action(commands("check", &["true"])))
        .cmp(C::res("solo/x"))
        .build();
    let on = |ids: &[&str]| PlanRequest::ActionOn {
        components: ids.iter().map(|i| ComponentId((*i).to_owned())).collect(),
        action: "check".to_owned(),
    };
    let p = plan(
        &m,
        &ActualState::new(),
        &on(&["workers:3/w", "gone/w", "workers:1/w"]),
    )
    .unwrap();
    expect![[r#"
        workers:1/w.check <- []
        workers:3/w.check <- []
    "#]]
    .assert_eq(&edges(&p));
    assert!(plan(&m, &ActualState::new(), &on(&[])).unwrap().is_empty());
    let e = plan(&m, &ActualState::new(), &on(&["solo/x"])).unwrap_err();
    expect!["component `solo/x` has no action `check`"].assert_eq(&e.to_string());
}

#[test]
fn a_node_gone_outside_dtk_runs_everything_placed_on_it_again() {
    let m = three_tier();
    let state = converge(&m, &ActualState::new());
    let mut drifted = state.clone();
    assert_eq!(
        drifted.observe(&ComponentId("node[db]".into()), &Observed::Missing),
        dtk_workflow::Observation::Missing
    );
    let p = plan(&m, &drifted, &PlanRequest::Converge).unwrap();
    let got: Vec<_> = p
        .tasks()
        .map(|t| (t.id.to_string(), t.reason.clone(), t.conditional))
        .collect();
    assert_eq!(got[0], ("node[db].create".to_owned(), Reason::Drift, false));
    // db/db lost its node's files: it runs unconditionally, not only if inputs change.
    assert_eq!(got[1], ("db/db.create".to_owned(), Reason::Drift, false));
    assert!(
        got.iter().all(|(id, _, _)| !id.starts_with("node[web]")),
        "{got:?}"
    );
}

/// A plan large enough that its desired hashes are computed on several threads gives each
/// task its own component's hash, in order.
#[test]
fn desired_hashes_computed_in_parallel_stay_with_their_components() {
    let mut m = M::new("wide");
    for i in 0..20_000 {
        m = m.cmp(C::res(&format!("c{i}")).input("size", format!("s{i}").as_str()));
    }
    let m = m.build();
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    assert_eq!(p.len(), m.components.len());
    let by_id: std::collections::HashMap<&ComponentId, &str> = p
        .tasks()
        .map(|t| (&t.component, t.desired_hash.as_str()))
        .collect();
    for c in &m.components {
        let want = dtk_workflow::desired_hash(c, &dtk_workflow::static_inputs(c));
        assert_eq!(by_id[&c.id], want, "{}", c.id);
    }
    let distinct: std::collections::HashSet<&str> = by_id.values().copied().collect();
    assert_eq!(distinct.len(), m.components.len());
}
