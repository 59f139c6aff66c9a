//! The `hello` provider, registered with a real `DTK_HOME` and driven by converge: create,
//! a no-op converge, an edit, drift, a move, delete; in-process, and as the plugin
//! executable `dtk-provider-hello` (through the plugin host of `dtk-instance`, and through
//! the stock `dtk` binary, which finds it in `DTK_HOME/plugins`). And the provider alone,
//! called twice for each operation, as the idempotence contract asks.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dtk_instance::converge::{RunOptions, RunReport};
use dtk_instance::home::Home;
use dtk_instance::service::Service;
use dtk_instance::stage::StageRequest;
use dtk_model::provider::{Cancel, Observed, ResourceRequest, Secrets};
use dtk_model::{Attributes, Provider, Value};
use provider_hello::HelloProvider;

/// A home with the provider registered and its module published.
fn home(root: &Path) -> Home {
    let mut home = Home::open(root).unwrap();
    home.register_provider(Arc::new(HelloProvider::new()))
        .unwrap();
    home
}

async fn converge(svc: &Service) -> RunReport {
    let report = svc.converge(&RunOptions::default()).await.unwrap();
    assert!(report.is_success(), "{}\n{:#?}", report.tree, report.tasks);
    report
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A directory holding the plugin executable, as a user installs it.
fn plugins_dir(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_dtk-provider-hello"),
        dir.join("dtk-provider-hello"),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converge_through_the_hello_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(&tmp.path().join("home"));
    converge_and_delete(&home, &tmp.path().join("out")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converge_through_the_plugin_executable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    let dirs = [plugins_dir(&root)];
    let registry = dtk_instance::providers::standard_with_plugins(&root, &dirs);
    assert!(registry.get("hello").is_some(), "{registry:?}");
    // The module came with the handshake, and is published with the home.
    let home = Home::with_providers(&root, registry).unwrap();
    assert!(
        !home
            .catalog()
            .versions(&"demo/hello".parse().unwrap())
            .unwrap()
            .is_empty()
    );
    converge_and_delete(&home, &tmp.path().join("out")).await;
}

/// Stage `greeting` as `hi`, then create, no-op, edit, drift, move, delete.
async fn converge_and_delete(home: &Home, out: &Path) {
    home.stage(&StageRequest {
        module: "demo/hello".parse().unwrap(),
        version: None,
        assembly: "greeting".to_owned(),
        name: "hi".to_owned(),
        target: None,
        base: false,
    })
    .unwrap();
    let svc = home.service("hi").unwrap();

    // `directory` is required: converge refuses until it is set.
    let refused = svc.converge(&RunOptions::default()).await.unwrap_err();
    assert!(refused.to_string().contains("directory"), "{refused}");

    // Create.
    let out = out.to_path_buf();
    svc.set_attribute("greeting/directory", &out.display().to_string())
        .unwrap();
    let report = converge(&svc).await;
    assert_eq!(report.tasks.len(), 1, "{}", report.tree);
    assert_eq!(read(&out.join("hello.txt")), "Hello, world!\n");
    let outputs = &svc.actual_values().unwrap()["greeting"];
    assert_eq!(
        outputs.get("greeting"),
        Some(&Value::Str("Hello, world!".into()))
    );

    // Nothing changed: nothing runs.
    let again = converge(&svc).await;
    assert!(again.tasks.is_empty(), "{}", again.tree);

    // An edit updates the file.
    svc.set_attribute("greeting/name", "dtk").unwrap();
    let report = converge(&svc).await;
    assert_eq!(report.tasks.len(), 1, "{}", report.tree);
    assert_eq!(read(&out.join("hello.txt")), "Hello, dtk!\n");

    // A file changed outside dtk is drift: `read` says so, converge writes it again.
    std::fs::write(out.join("hello.txt"), "tampered\n").unwrap();
    converge(&svc).await;
    assert_eq!(read(&out.join("hello.txt")), "Hello, dtk!\n");

    // Moving the file removes the old one (`prior` outputs).
    svc.set_attribute("greeting/file_name", "greeting.txt")
        .unwrap();
    converge(&svc).await;
    assert_eq!(read(&out.join("greeting.txt")), "Hello, dtk!\n");
    assert!(!out.join("hello.txt").exists());

    // Delete removes it, and leaves nothing recorded.
    let deleted = svc.delete(&RunOptions::default()).await.unwrap();
    assert!(deleted.is_success(), "{}", deleted.tree);
    assert!(!out.join("greeting.txt").exists());
    assert!(svc.actual_state().unwrap().components.is_empty());
}

#[tokio::test]
async fn every_operation_can_be_repeated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut inputs = Attributes::new();
    inputs.insert("directory".into(), Value::Str(dir.display().to_string()));
    inputs.insert("name".into(), Value::Str("again".into()));
    let secrets = Secrets::default();
    let cancel = Cancel::new();
    let req = ResourceRequest {
        service: "svc",
        component: "greeting",
        node: None,
        resource: "file",
        idempotency_key: "svc/greeting/create",
        inputs: &inputs,
        secrets: &secrets,
        prior: None,
        service_nodes: &[],
        cancel: &cancel,
    };
    let p = HelloProvider::new();
    assert_eq!(p.read(&req).await.unwrap(), Observed::Missing);
    let first = p.create(&req).await.unwrap();
    let second = p.create(&req).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(p.read(&req).await.unwrap(), Observed::Present(first));
    p.delete(&req).await.unwrap();
    p.delete(&req).await.unwrap();
    assert!(!dir.join("hello.txt").exists());

    // Unknown resource types and bad inputs are refused with what is wrong.
    let other = ResourceRequest {
        resource: "directory",
        ..req.clone()
    };
    let e = p.create(&other).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "provider `hello` does not support resource type `directory`"
    );
    let mut bad = inputs.clone();
    bad.insert("file_name".into(), Value::Str("../x".into()));
    let e = p
        .create(&ResourceRequest {
            inputs: &bad,
            ..req.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input for hello.file of greeting: `file_name` must be a plain file name, not `../x`"
    );

    // A cancelled request stops before doing anything.
    cancel.cancel();
    let e = p.create(&req).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "create hello.file for greeting was cancelled"
    );
    assert!(!dir.join("hello.txt").exists());
}

/// The stock `dtk` binary (not built with this crate) runs the provider from
/// `DTK_HOME/plugins`: stage, converge, a no-op converge, drift, delete.
#[test]
fn converge_with_the_stock_dtk_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    let plugin = plugins_dir(&root).join("dtk-provider-hello");
    let out = tmp.path().join("out");
    let dtk = |args: &[&str]| {
        let o = std::process::Command::new(dtk_tests::dtk::dtk_binary())
            .args(args)
            .env("DTK_HOME", &root)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = format!(
            "dtk {args:?}: {:?}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{text}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let list: serde_json::Value =
        serde_json::from_str(&dtk(&["--json", "provider", "list"])).unwrap();
    let hello = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "hello")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(hello["source"], "plugin");
    assert_eq!(hello["path"], plugin.display().to_string());
    assert_eq!(hello["modules"], serde_json::json!(["demo/hello@1.0.0"]));

    dtk(&["service", "stage", "demo/hello", "greeting", "-n", "hi"]);
    dtk(&[
        "service",
        "set-attribute",
        "hi",
        "greeting/directory",
        out.to_str().unwrap(),
    ]);
    dtk(&["service", "set-attribute", "hi", "greeting/name", "plugin"]);
    dtk(&["service", "converge", "hi"]);
    assert_eq!(read(&out.join("hello.txt")), "Hello, plugin!\n");
    let status: serde_json::Value =
        serde_json::from_str(&dtk(&["--json", "service", "status", "hi"])).unwrap();
    assert_eq!(
        status["components"][0]["outputs"]["greeting"],
        "Hello, plugin!"
    );
    // Nothing to do; then drift (the plugin's `read` says the file is gone).
    let plan: serde_json::Value =
        serde_json::from_str(&dtk(&["--json", "service", "plan", "hi"])).unwrap();
    assert_eq!(plan["tasks"], serde_json::json!([]), "{plan}");
    std::fs::remove_file(out.join("hello.txt")).unwrap();
    dtk(&["service", "converge", "hi"]);
    assert_eq!(read(&out.join("hello.txt")), "Hello, plugin!\n");
    dtk(&["service", "delete", "hi"]);
    assert!(!out.join("hello.txt").exists());
}
