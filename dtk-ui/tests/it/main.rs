//! Tests of the web view through the library: the pages and documents of real staged and
//! converged services (the HTTP side, the browser and the live stream are tested through
//! `dtk ui` in `dtk-cli/tests/it/ui.rs`).

// Helpers outside `#[test]` functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use dtk_instance::converge::RunOptions;
use dtk_instance::home::Home;
use dtk_instance::stage::StageRequest;
use dtk_ui::view;

const SECRET: &str = "s3cr3t-never-shown-42";

const MODULE: &str = r#"dsl_version: 1.0.0
module: test/ui
version: 1.0.0
component_defs:
  db:
    attributes:
      password: {type: string, secret: true}
      host: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN echo "password is $password"
        - RUN echo host=127.0.0.1 >> "$DTK_OUTPUT"
  app:
    attributes:
      db_host: {type: string}
      greeting: {type: string, default: hi}
    dependencies: [db]
    link_defs:
      db:
        attribute_mappings: ["$host -> db_host"]
    actions:
      create:
        commands:
        - RUN echo app up
assemblies:
  pair:
    components:
    - node[db]:
        components: [db]
    - node[app]:
        components: [app]
  loop:
    components:
    - node[a]:
        components: [db, app]
    actions:
      create:
        subtask_order: sequential
        subtasks:
        - {name: first, node: a, components: [app]}
        - {name: second, node: a, components: [db]}
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A home with `test/ui` published and `assembly` staged as `name`.
fn staged(tmp: &Path, assembly: &str, name: &str) -> Home {
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("dtk.module.yaml"), MODULE).unwrap();
    let home = Home::open(&tmp.join("home")).unwrap();
    let published = home.catalog().publish(&src).unwrap();
    home.stage(&StageRequest {
        module: published.module,
        version: None,
        assembly: assembly.to_owned(),
        name: name.to_owned(),
        target: None,
        base: false,
    })
    .unwrap();
    home
}

/// Every document and page of `name`, as text.
fn everything(home: &Home, name: &str) -> Vec<(String, String)> {
    let svc = view::open(home, name).unwrap();
    let mut out = vec![
        (
            "services".to_owned(),
            serde_json::to_string(&view::index(home).unwrap()).unwrap(),
        ),
        (
            "service".to_owned(),
            serde_json::to_string(&view::service(&svc).unwrap()).unwrap(),
        ),
        (
            "live".to_owned(),
            serde_json::to_string(&view::live(&svc).unwrap()).unwrap(),
        ),
        (
            "page".to_owned(),
            dtk_ui::render_service_page(home, name, None).unwrap(),
        ),
        (
            "index".to_owned(),
            dtk_ui::pages::index(&view::index(home).unwrap()),
        ),
    ];
    if let Some(r) = view::run(&svc, None).unwrap() {
        out.push(("run".to_owned(), serde_json::to_string(&r).unwrap()));
    }
    out
}

#[test]
fn a_service_page_shows_its_state_run_graph_and_history_and_never_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let home = staged(tmp.path(), "pair", "shop");
    let svc = home.service("shop").unwrap();
    svc.set_attribute("db/db/password", SECRET).unwrap();

    // Before any run: pending components, every task planned, no run.
    let page = dtk_ui::render_service_page(&home, "shop", None).unwrap();
    assert!(
        page.contains("data-component=\"db/db\" data-state=\"pending\""),
        "{page}"
    );
    assert!(page.contains("No run yet."));
    assert!(page.contains("<g class=\"node planned\" data-task=\"db/db.create\">"));

    let report = rt().block_on(svc.converge(&RunOptions::default())).unwrap();
    assert!(report.is_success(), "{}", report.tree);
    // The run's report has each task's start and what it waited for.
    let app = report
        .tasks
        .iter()
        .find(|t| t.id == "app/app.create")
        .unwrap();
    assert_eq!(app.after, vec!["db/db.create", "node[app].create"]);
    let db = report
        .tasks
        .iter()
        .find(|t| t.id == "db/db.create")
        .unwrap();
    assert!(app.started_ms.unwrap() >= db.started_ms.unwrap() + db.duration_ms);

    let page = dtk_ui::render_service_page(&home, "shop", None).unwrap();
    for want in [
        "<h1>shop</h1>",
        "data-node=\"db\"",
        "data-node=\"app\"",
        "data-component=\"app/app\" data-state=\"converged\"",
        "host: 127.0.0.1",
        "password: set",
        // The timeline: every task, the critical path ending at the last one.
        "id=\"timeline\"",
        "<g class=\"task critical\" data-task=\"app/app.create\"",
        "<tr data-task=\"db/db.create\" data-component=\"db/db\" data-state=\"done\" class=\"critical\">",
        // The DAG: nothing left to run, the link drawn as an edge.
        "<g class=\"node uptodate\" data-task=\"app/app.create\">",
        "data-from=\"db/db.create\" data-to=\"app/app.create\"",
        // History: the staging commit and the converge.
        "stage test/ui@1.0.0 pair",
        &format!("?run={}", report.run),
    ] {
        assert!(page.contains(want), "the page lacks {want:?}:\n{page}");
    }
    let v = view::service(&svc).unwrap();
    assert_eq!(v.runs.len(), 1);
    assert_eq!(v.runs[0].run, report.run);
    assert_eq!(v.runs[0].tasks, report.tasks.len());
    let r = view::run(&svc, Some(&report.run)).unwrap().unwrap();
    assert_eq!(
        r.timeline.critical_path,
        vec!["node[db].create", "db/db.create", "app/app.create"]
    );
    let missing = view::run(&svc, Some("no-such-run")).unwrap_err();
    assert!(missing.is_not_found(), "{missing}");

    // An edit: the component is `changed`, its task and its consumer's planned.
    svc.set_attribute("app/app/greeting", "hello").unwrap();
    let page = dtk_ui::render_service_page(&home, "shop", None).unwrap();
    assert!(page.contains("data-component=\"app/app\" data-state=\"changed\""));
    assert!(page.contains("<g class=\"node planned\" data-task=\"app/app.create\">"));

    for (what, text) in everything(&home, "shop") {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
    }
    // The secret did reach the action (so the test would see it if it leaked).
    let secrets = std::fs::read_to_string(home.secrets_path("shop")).unwrap();
    assert!(secrets.contains(SECRET));
}

#[test]
fn a_run_in_progress_is_read_from_its_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let home = staged(tmp.path(), "pair", "shop");
    let svc = home.service("shop").unwrap();
    // What a converge running in another process leaves while it runs: its lock (held by
    // a live process: this one) and its journal so far.
    let private = svc.dir().join(".dtk");
    std::fs::create_dir_all(private.join("journal")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        private.join("lock"),
        format!(
            "pid={}\nhost={}\nsince=1\noperation=converge\n",
            std::process::id(),
            host.trim()
        ),
    )
    .unwrap();
    let journal = concat!(
        r#"{"kind":"begin","version":1,"service":"shop","plan":"converge","tasks":2,"graph":[{"id":"db/db.create","component":"db/db","action":"create","node":"db","after":[]},{"id":"app/app.create","component":"app/app","action":"create","node":"app","after":["db/db.create"]}],"at":1000}"#,
        "\n",
        r#"{"kind":"intent","task":"db/db.create","component":"db/db","at":1001}"#,
        "\n",
    );
    std::fs::write(private.join("journal/1000-1-1.jsonl"), journal).unwrap();
    let live = view::live(&svc).unwrap();
    let run = live.run.unwrap();
    assert!(run.running);
    assert_eq!(run.tasks.len(), 2);
    let page = dtk_ui::render_service_page(&home, "shop", None).unwrap();
    for want in [
        "data-live-run=\"1000-1-1\"",
        "<section id=\"live\" class=\"banner running\" data-run=\"1000-1-1\"",
        "<span id=\"live-progress\">0/2</span>",
        "<tr data-task=\"db/db.create\" data-component=\"db/db\" data-state=\"running\">",
        "<tr data-task=\"app/app.create\" data-component=\"app/app\" data-state=\"pending\">",
        "data-live=\"true\" data-run-start=\"1000\"",
        "<g class=\"node planned\" data-task=\"db/db.create\" data-state=\"running\">",
        "locked by",
    ] {
        assert!(page.contains(want), "the page lacks {want:?}:\n{page}");
    }
    // The holder gone (killed): the journal is an interrupted run, not a live one.
    std::fs::write(
        private.join("lock"),
        format!(
            "pid=2147483000\nhost={}\nsince=1\noperation=converge\n",
            host.trim()
        ),
    )
    .unwrap();
    let page = dtk_ui::render_service_page(&home, "shop", None).unwrap();
    assert!(page.contains("class=\"banner interrupted\""), "{page}");
    assert!(page.contains("id=\"run-status\">interrupted<"), "{page}");
}

#[test]
fn a_cycle_is_drawn_with_back_arrows() {
    let tmp = tempfile::tempdir().unwrap();
    let home = staged(tmp.path(), "loop", "loopy");
    let svc = home.service("loopy").unwrap();
    let model = svc.model().unwrap();
    let graph = dtk_workflow::build_graph(
        &model,
        &svc.actual_state().unwrap(),
        &dtk_workflow::PlanRequest::ConvergeAll,
    )
    .unwrap();
    assert!(!graph.cycle_edges().is_empty(), "the test needs a cycle");
    let svg = dtk_ui::graph::plan_graph_svg(&graph);
    assert!(svg.starts_with("<?xml"));
    assert!(svg.contains("<style>"));
    assert!(svg.contains("class=\"edge cycle\""), "{svg}");
    assert!(svg.contains("class=\"edge back cycle\""), "{svg}");
    assert!(svg.contains("marker-end=\"url(#dtk-arrow-cycle)\""));
    // The page draws it too, without a style block (its policy allows none inline).
    let page = dtk_ui::render_service_page(&home, "loopy", None).unwrap();
    assert!(page.contains("class=\"edge back cycle\""));
    assert!(!page.contains("<style>"));
}
