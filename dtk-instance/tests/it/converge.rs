//! Converge on the local target, end to end: real processes, real files.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use dtk_instance::converge::RunOptions;
use dtk_instance::stage::StageRequest;

use crate::support::home;

pub fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_owned()),
    };
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(body)
}

fn output(app: &dtk_instance::service::Service, component: &str, attr: &str) -> String {
    let values = app.actual_values().unwrap();
    values[component][attr].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converge_edit_converge_exec_delete() {
    let (_tmp, home) = home();
    home.stage(&StageRequest {
        module: "demo/webapp".parse().unwrap(),
        version: None,
        assembly: "two_tier".to_owned(),
        name: "app1".to_owned(),
        target: None,
        base: false,
    })
    .unwrap();
    let app = home.service("app1").unwrap();
    let report = app.converge(&RunOptions::default()).await.unwrap();
    assert!(report.is_success(), "{}\n{:#?}", report.tree, report.tasks);
    assert_eq!(report.tasks.len(), 4, "{}", report.tree);
    let web = output(&app, "web/web", "url");
    assert_eq!(http_get(&web).trim(), "The backend says: hello from dtk");

    // Converging again does nothing.
    let again = app.converge(&RunOptions::default()).await.unwrap();
    assert!(again.tasks.is_empty(), "{}", again.tree);

    // An edit reaches the running service through the link.
    app.set_attribute("db/backend/message", "edited by a test")
        .unwrap();
    let report = app
        .converge(&RunOptions {
            message: Some("new message".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.is_success(), "{}", report.tree);
    assert_eq!(
        http_get(&output(&app, "web/web", "url")).trim(),
        "The backend says: edited by a test"
    );
    assert_eq!(app.log(1).unwrap()[0].summary, "new message");

    // A server that died is noticed by its `check` action and started again.
    let web_dir = home.sandboxes_dir().join("app1/web/modules/demo/webapp");
    let pid: i32 = std::fs::read_to_string(web_dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix_kill(pid);
    let report = app.converge(&RunOptions::default()).await.unwrap();
    assert!(report.is_success(), "{}", report.tree);
    assert!(
        report
            .tasks
            .iter()
            .any(|t| t.id == "web/web.create" && t.status == "done"),
        "{}",
        report.tree
    );
    assert_eq!(
        http_get(&output(&app, "web/web", "url")).trim(),
        "The backend says: edited by a test"
    );

    // A custom action.
    let ran = app
        .exec("web.smoke_test", Default::default(), &RunOptions::default())
        .await
        .unwrap();
    assert!(ran.is_success(), "{}", ran.tree);
    let log = std::fs::read_to_string(ran.tasks[0].log.as_ref().unwrap()).unwrap();
    assert!(log.contains("edited by a test"), "{log}");

    // Delete leaves nothing running.
    let sandboxes = home.sandboxes_dir().join("app1");
    assert!(!dtk_target_local::processes_in(&sandboxes).is_empty());
    let deleted = app.delete(&RunOptions::default()).await.unwrap();
    assert!(deleted.is_success(), "{}", deleted.tree);
    assert!(dtk_target_local::processes_in(&sandboxes).is_empty());
    assert!(!sandboxes.join("db").exists());
    assert!(app.actual_state().unwrap().components.is_empty());
    let runs = app.runs(10).unwrap();
    assert_eq!(runs.len(), 6, "{runs:?}");
    crate::support::git(app.dir(), &["fsck", "--strict"]);
}

fn nix_kill(pid: i32) {
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    // Wait until it is gone (or a zombie) so the check sees it.
    for _ in 0..50 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stages `count` independent components of a small module made here (no `check`
/// actions, no providers), as service `name`.
fn stage_steps(home: &dtk_instance::home::Home, name: &str, count: usize) {
    let dir = home.root().join("step-module");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::from(
        "dsl_version: 1.0.0\nmodule: test/steps\nversion: 1.0.0\ncomponent_defs:\n  step:\n    attributes:\n      k: {type: integer, required: true}\n    actions:\n      create:\n        commands:\n        - RUN echo {{k}} > f{{k}}\nassemblies:\n  steps:\n    components:\n",
    );
    for k in 1..=count {
        text.push_str(&format!("    - step[s{k}]: {{attributes: {{k: {k}}}}}\n"));
    }
    std::fs::write(dir.join("dtk.module.yaml"), text).unwrap();
    home.catalog().publish(&dir).unwrap();
    home.stage(&StageRequest {
        module: "test/steps".parse().unwrap(),
        version: None,
        assembly: "steps".to_owned(),
        name: name.to_owned(),
        target: None,
        base: false,
    })
    .unwrap();
}

/// The identity of a file as written: a rewrite (always by rename) changes its inode.
fn file_identity(path: &std::path::Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).unwrap();
    (m.ino(), m.modified().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converge_that_changes_nothing_leaves_actual_state_as_it_is() {
    let (_tmp, home) = home();
    stage_steps(&home, "s", 3);
    let svc = home.service("s").unwrap();
    let actual = svc.dir().join(".dtk/actual.json");
    let state_tip = || crate::support::git(svc.dir(), &["rev-parse", "refs/dtk/state"]);

    let first = svc.converge(&RunOptions::default()).await.unwrap();
    assert!(first.is_success(), "{}", first.tree);
    assert_eq!(first.tasks.len(), 3, "{}", first.tree);
    let (written, tip) = (file_identity(&actual), state_tip());
    let bytes = std::fs::read(&actual).unwrap();

    // Nothing to do: the file is not rewritten and no state commit is made, but the
    // run is still recorded.
    let again = svc.converge(&RunOptions::default()).await.unwrap();
    assert!(again.tasks.is_empty(), "{}", again.tree);
    assert_eq!(file_identity(&actual), written);
    assert_eq!(state_tip(), tip);
    assert_eq!(std::fs::read(&actual).unwrap(), bytes);
    assert_eq!(svc.runs(10).unwrap().len(), 2);

    // A record whose metadata is out of date (as an older dtk wrote it) is brought up
    // to date by a run with nothing to do, and the file is written.
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json["components"]["step[s2]"]["module"] = serde_json::Value::Null;
    std::fs::write(&actual, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let stale = file_identity(&actual);
    let refreshed = svc.converge(&RunOptions::default()).await.unwrap();
    assert!(refreshed.tasks.is_empty(), "{}", refreshed.tree);
    assert_ne!(file_identity(&actual), stale);
    assert_eq!(std::fs::read(&actual).unwrap(), bytes);
    assert_eq!(
        svc.actual_state().unwrap().components
            [&dtk_model::instance::ComponentId("step[s2]".to_owned())]
            .module
            .as_deref(),
        Some("test/steps")
    );

    // A hand edit that parses to the same state (its layout only) is left as it is,
    // and versioned as found: the state commit holds exactly the file.
    let compact = serde_json::to_vec(&json_of(&bytes)).unwrap();
    std::fs::write(&actual, &compact).unwrap();
    let hand = file_identity(&actual);
    let quiet = svc.converge(&RunOptions::default()).await.unwrap();
    assert!(quiet.tasks.is_empty(), "{}", quiet.tree);
    assert_eq!(file_identity(&actual), hand);
    assert_eq!(
        crate::support::git(svc.dir(), &["show", "refs/dtk/state:actual.json"]).trim_end(),
        String::from_utf8(compact).unwrap()
    );

    // An edit runs its task, and the file is written again.
    svc.set_attribute("step[s3]/k", "30").unwrap();
    let edited = svc.converge(&RunOptions::default()).await.unwrap();
    assert!(edited.is_success(), "{}", edited.tree);
    assert_eq!(edited.tasks.len(), 1, "{}", edited.tree);
    assert_ne!(file_identity(&actual), hand);
    assert_eq!(
        svc.actual_state().unwrap().components
            [&dtk_model::instance::ComponentId("step[s3]".to_owned())]
            .inputs["k"],
        dtk_model::Value::Int(30)
    );
    assert_ne!(state_tip(), tip);
    crate::support::git(svc.dir(), &["fsck", "--strict"]);
}

fn json_of(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}
