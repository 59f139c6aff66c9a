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
