//! Both sides of the protocol: the plugin side served over pipes and driven line by line,
//! the host side against small shell-script plugins that misbehave on purpose, and
//! discovery with its cache.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::discover::{Listing, read_cache, write_cache};

use async_trait::async_trait;
use dtk_model::content::{ContentError, ContentStore, ModuleContent, ModuleFile};
use dtk_model::provider::{
    Cancel, ExecOutput, ExecRequest, ExecStep, Observed, PutContent, PutFile, ResourceRequest,
    Secrets,
};
use dtk_model::{Attributes, BundledModule, Provider, ProviderError, Value};
use serde_json::{Value as Json, json};

use crate::{
    FoundStatus, Plugin, PluginDescription, PluginOptions, PluginProcess, PluginProvider,
    ProvidedKind, discover, kind_of_executable, serve_io,
};

// ---------------------------------------------------------------------------------------
// The plugin side.

/// A provider whose behaviour the inputs choose: `fail` names an error to return, `wait`
/// waits for cancellation, `observed` is what `read` says.
struct Echo;

#[async_trait]
impl Provider for Echo {
    fn kind(&self) -> &str {
        "echo"
    }

    fn resources(&self) -> Vec<String> {
        vec!["thing".into()]
    }

    fn modules(&self) -> Vec<BundledModule> {
        vec![BundledModule::new(
            "echo/dtk.module.yaml",
            "module: t/echo\n",
        )]
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let op = format!("create echo.{} for {}", req.resource, req.component);
        match req.inputs.get("fail").and_then(Value::as_str) {
            Some("invalid") => {
                return Err(ProviderError::InvalidInput {
                    resource: "echo.thing".into(),
                    message: "`size` is not a size".into(),
                });
            }
            Some("retryable") => {
                return Err(ProviderError::Failed {
                    operation: op,
                    message: "throttled".into(),
                    retryable: true,
                    source: Some(Box::new(std::io::Error::other("503 from the API"))),
                });
            }
            Some("timeout") => {
                return Err(ProviderError::Timeout {
                    operation: op,
                    after: Duration::from_millis(1500),
                });
            }
            Some("panic") => panic!("a provider bug"),
            _ => {}
        }
        if req.inputs.contains_key("wait") {
            while !req.cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            return Err(ProviderError::Cancelled { operation: op });
        }
        let mut out = req.inputs.clone();
        out.insert("key".into(), Value::Str(req.idempotency_key.into()));
        out.insert("nodes".into(), Value::Int(req.service_nodes.len() as i64));
        out.insert(
            "has_token".into(),
            Value::Bool(req.secrets.get("token").is_some()),
        );
        if let Some(p) = req.prior {
            out.insert("prior".into(), Value::Hash(p.to_map()));
        }
        Ok(out)
    }

    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(match req.inputs.get("observed").and_then(Value::as_str) {
            Some("missing") => Observed::Missing,
            Some("present") => Observed::Present(req.inputs.clone()),
            _ => Observed::Unknown,
        })
    }

    async fn delete(&self, _req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Its standard output: the steps, `;`-separated (`run` lines as they are, `put`
    /// as `TARGET<-PATH` or `TARGET<=TEXT`), then `|PATH=CONTENT` for every file of the
    /// module, read through the request's content store.
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        let stdout: Vec<String> = req
            .steps
            .iter()
            .map(|s| match s {
                ExecStep::Run(l) => l.clone(),
                ExecStep::Put(p) => match &p.content {
                    PutContent::ModuleFile(f) => format!("{}<-{f}", p.target),
                    PutContent::Rendered(b) => {
                        format!("{}<={}", p.target, String::from_utf8_lossy(b))
                    }
                },
            })
            .collect::<Vec<_>>();
        let mut stdout = stdout.join(";");
        if let Some(m) = req.module {
            for f in m.files.iter() {
                let data = m
                    .store
                    .read(&f.id)
                    .map_err(|e| ProviderError::failed("exec", format!("{e}: {}", e.source)))?;
                stdout.push_str(&format!("|{}={}", f.path, String::from_utf8_lossy(&data)));
            }
        }
        Ok(ExecOutput {
            exit_code: Some(0),
            stdout: stdout.into_bytes(),
            stderr: vec![0xff, 0x00, b'x'],
            outputs: req.env.to_vec(),
            duration: Duration::from_millis(7),
        })
    }
}

/// A plugin served over pipes, driven one line at a time.
struct Session {
    to: std::io::PipeWriter,
    from: tokio::sync::mpsc::UnboundedReceiver<String>,
    served: tokio::task::JoinHandle<Result<(), crate::ServeError>>,
}

impl Session {
    fn start(plugin: Plugin) -> Session {
        let (in_r, in_w) = std::io::pipe().unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let served = tokio::spawn(serve_io(
            move |_: &crate::PluginContext| Ok(plugin),
            "dtk-provider-echo".to_owned(),
            in_r,
            out_w,
        ));
        let (tx, from) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out_r).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Session {
            to: in_w,
            from,
            served,
        }
    }

    fn send(&mut self, msg: Json) {
        writeln!(self.to, "{msg}").unwrap();
    }

    async fn recv(&mut self) -> Json {
        let line = tokio::time::timeout(Duration::from_secs(10), self.from.recv())
            .await
            .expect("an answer within 10 s")
            .expect("the plugin's output is open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    async fn hello(&mut self) -> Json {
        self.send(json!({"id": 1, "method": "hello", "params": {
            "protocols": [2], "dtk_version": "9.9.9", "home": "/h", "providers_dir": "/h/providers"}}));
        self.recv().await
    }
}

fn resource(id: u64, method: &str, inputs: Json) -> Json {
    json!({"id": id, "method": method, "params": {
        "kind": "echo", "resource": "thing", "service": "svc", "component": "c[1]",
        "node": null, "idempotency_key": "svc/c[1]/create", "inputs": inputs,
        "secrets": {"token": "s3cr3t"}, "prior": {"was": 1},
        "service_nodes": [{"name": "web", "group": null, "attributes": {}, "realized_by": "node[web]"}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_side_answers_every_method() {
    let mut s = Session::start(Plugin::new(Echo).named("echo-plugin", "1.2.3"));

    // Before `hello`, nothing but `ping` and `hello` is answered.
    s.send(resource(7, "create", json!({})));
    let r = s.recv().await;
    assert_eq!(r["id"], 7);
    assert_eq!(r["error"]["kind"], "protocol");

    let r = s.hello().await;
    assert_eq!(
        r,
        json!({"id": 1, "result": {"protocol": 2,
            "plugin": {"name": "echo-plugin", "version": "1.2.3"},
            "providers": [{"kind": "echo", "resources": ["thing"], "exec": true,
                "modules": [{"origin": "echo/dtk.module.yaml", "text": "module: t/echo\n"}]}]}})
    );

    s.send(resource(2, "create", json!({"size": 3})));
    let r = s.recv().await;
    assert_eq!(
        r,
        json!({"id": 2, "result": {"outputs": {"size": 3, "key": "svc/c[1]/create", "nodes": 1,
            "has_token": true, "prior": {"was": 1}}}})
    );

    s.send(resource(3, "read", json!({"observed": "missing"})));
    assert_eq!(
        s.recv().await,
        json!({"id": 3, "result": {"observed": "missing"}})
    );
    s.send(resource(
        4,
        "read",
        json!({"observed": "present", "a": "b"}),
    ));
    assert_eq!(
        s.recv().await,
        json!({"id": 4, "result": {"observed": "present", "outputs": {"observed": "present", "a": "b"}}})
    );
    s.send(resource(5, "read", json!({})));
    assert_eq!(
        s.recv().await,
        json!({"id": 5, "result": {"observed": "unknown"}})
    );
    // `update` defaults to `create`.
    s.send(resource(6, "update", json!({"v": true})));
    assert_eq!(s.recv().await["result"]["outputs"]["v"], true);
    s.send(resource(8, "delete", json!({})));
    assert_eq!(s.recv().await, json!({"id": 8, "result": {}}));

    // `exec` (protocol 2): steps, and the module's files, whose bytes the plugin asks dtk
    // for (`module_file`, naming the exec request) while the request runs.
    let exec = |id: u64| {
        json!({"id": id, "method": "exec", "params": {"kind": "echo", "service": "svc",
        "node": "web", "node_outputs": {}, "node_inputs": {},
        "steps": [{"run": "a"}, {"run": "b"},
            {"put": {"target": "t", "module_file": "bin/x", "label": "ADD bin/x -> t"}},
            {"put": {"target": "u", "rendered": "aGk=", "mode": 420, "label": "ADD u"}}],
        "module": {"module": "demo/m", "digest": "d1",
            "files": [{"path": "bin/x", "id": "aa11", "executable": true, "size": 2}]},
        "env": [["K", "V"]], "timeout_ms": 1000}})
    };
    s.send(exec(9));
    let ask = s.recv().await;
    assert_eq!(ask["method"], "module_file", "{ask}");
    assert_eq!(ask["params"], json!({"request": 9, "id": "aa11"}));
    s.send(json!({"id": ask["id"], "result": {"data": "b2s="}}));
    let r = s.recv().await;
    let stdout = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        r["result"]["stdout"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(stdout).unwrap(),
        "a;b;t<-bin/x;u<=hi|bin/x=ok"
    );
    assert_eq!(
        r,
        json!({"id": 9, "result": {"exit_code": 0, "stdout": r["result"]["stdout"],
            "stderr": "/wB4", "outputs": [["K", "V"]], "duration_ms": 7}})
    );
    // dtk's refusal to give a file fails the exec with its reason.
    s.send(exec(19));
    let ask = s.recv().await;
    assert_eq!(ask["method"], "module_file", "{ask}");
    s.send(
        json!({"id": ask["id"], "error": {"kind": "protocol", "message": "not a file of demo/m"}}),
    );
    let r = s.recv().await;
    assert_eq!(r["id"], 19);
    assert_eq!(r["error"]["kind"], "failed");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a file of demo/m"),
        "{r}"
    );
    // A `put` with neither content is refused.
    s.send(
        json!({"id": 29, "method": "exec", "params": {"kind": "echo", "service": "svc",
        "node": "web", "steps": [{"put": {"target": "t"}}], "timeout_ms": 1000}}),
    );
    assert_eq!(s.recv().await["error"]["kind"], "protocol");

    // Every error kind travels with its fields.
    s.send(resource(10, "create", json!({"fail": "invalid"})));
    assert_eq!(
        s.recv().await,
        json!({"id": 10, "error": {"kind": "invalid_input", "resource": "echo.thing",
            "message": "`size` is not a size"}})
    );
    s.send(resource(11, "create", json!({"fail": "retryable"})));
    assert_eq!(
        s.recv().await,
        json!({"id": 11, "error": {"kind": "failed", "operation": "create echo.thing for c[1]",
            "message": "throttled", "retryable": true, "source": "503 from the API"}})
    );
    s.send(resource(12, "create", json!({"fail": "timeout"})));
    assert_eq!(
        s.recv().await,
        json!({"id": 12, "error": {"kind": "timeout", "operation": "create echo.thing for c[1]",
            "after_ms": 1500}})
    );
    // A panic is a failure of that request; the plugin goes on.
    s.send(resource(13, "create", json!({"fail": "panic"})));
    let r = s.recv().await;
    assert_eq!(r["error"]["kind"], "failed");
    assert_eq!(r["error"]["retryable"], false);

    // Unknown kinds and methods, malformed parameters: protocol errors.
    s.send(json!({"id": 14, "method": "create", "params": {"kind": "nope"}}));
    assert_eq!(s.recv().await["error"]["kind"], "protocol");
    s.send(json!({"id": 15, "method": "frobnicate", "params": {}}));
    let r = s.recv().await;
    assert_eq!(r["error"]["kind"], "protocol");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("frobnicate")
    );
    s.send(json!({"id": 16, "method": "hello", "params": {"protocols": [2], "home": "/h", "providers_dir": "/p"}}));
    assert_eq!(s.recv().await["error"]["kind"], "protocol");

    // Requests run concurrently: a waiting one does not hold up a ping; `cancel` ends it.
    s.send(resource(20, "create", json!({"wait": true})));
    s.send(json!({"id": 21, "method": "ping", "params": {}}));
    assert_eq!(s.recv().await, json!({"id": 21, "result": {}}));
    s.send(json!({"method": "cancel", "params": {"id": 20}}));
    assert_eq!(
        s.recv().await,
        json!({"id": 20, "error": {"kind": "cancelled", "operation": "create echo.thing for c[1]"}})
    );
    // An unknown notification is ignored.
    s.send(json!({"method": "something-new", "params": {}}));

    // `shutdown` cancels what runs, answers, and ends the session.
    s.send(resource(30, "create", json!({"wait": true})));
    s.send(json!({"id": 31, "method": "shutdown", "params": {}}));
    let mut answers = [s.recv().await, s.recv().await];
    answers.sort_by_key(|a| a["id"].as_u64());
    assert_eq!(answers[0]["error"]["kind"], "cancelled");
    assert_eq!(answers[1], json!({"id": 31, "result": {}}));
    s.served.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_plugin_side_refuses_other_protocols_and_stops_at_end_of_input() {
    let mut s = Session::start(Plugin::new(Echo));
    s.send(json!({"id": 1, "method": "hello", "params": {"protocols": [7], "home": "/h", "providers_dir": "/p"}}));
    let r = s.recv().await;
    assert_eq!(r["error"]["kind"], "protocol");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("protocol 2"),
        "{r}"
    );
    // The default name is the executable's; without `without_exec`, `exec` is offered.
    let r = s.hello().await;
    assert_eq!(r["result"]["plugin"]["name"], "dtk-provider-echo");
    // End of input ends it, cancelling what runs.
    s.send(resource(2, "create", json!({"wait": true})));
    let Session {
        to,
        mut from,
        served,
    } = s;
    drop(to);
    let line = from.recv().await.unwrap();
    assert!(line.contains("cancelled"), "{line}");
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_garbage_line_from_dtk_stops_the_plugin() {
    let mut s = Session::start(Plugin::new(Echo).without_exec());
    let r = s.hello().await;
    assert_eq!(r["result"]["providers"][0]["exec"], false);
    writeln!(s.to, "not json").unwrap();
    let e = s.served.await.unwrap().unwrap_err();
    assert_eq!(
        e.to_string(),
        "dtk sent line 2, which is not a protocol message (Syntax error at column 2)"
    );
}

// ---------------------------------------------------------------------------------------
// The host side, against shell-script plugins.

/// The answer a script gives to `hello` (request 1).
const HELLO: &str = r#"{"id":1,"result":{"protocol":2,"plugin":{"name":"t","version":"0"},"providers":[{"kind":"t","resources":["r"],"exec":false,"modules":[]}]}}"#;

/// A script plugin: `body` runs after the handshake, with `log` the file every line it
/// reads is appended to (the `next` function reads one).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let text = format!(
        "#!/bin/sh\nlog='{}'\necho start >> \"$log\"\nnext() {{ IFS= read -r line || exit 0; echo \"$line\" >> \"$log\"; }}\n\
         id_of() {{ echo \"$line\" | sed -n 's/^{{\"id\":\\([0-9]*\\),.*/\\1/p'; }}\n\
         next\necho '{HELLO}'\n{body}\n",
        log.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn description() -> PluginDescription {
    PluginDescription {
        protocol: 2,
        plugin: Default::default(),
        providers: vec![ProvidedKind {
            kind: "t".into(),
            resources: vec!["r".into()],
            exec: false,
            modules: Vec::new(),
            replace_on_change: Default::default(),
        }],
    }
}

fn fast(home: &Path) -> PluginOptions {
    PluginOptions {
        start_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(20),
        ping_interval: Duration::from_millis(100),
        unresponsive_after: Duration::from_millis(400),
        ..PluginOptions::new(home)
    }
}

fn provider(path: &Path, options: PluginOptions) -> PluginProvider {
    let process = PluginProcess::new(path.to_path_buf(), description(), options);
    process.providers().pop().unwrap()
}

/// Calls `create` on `p` with a secret input.
async fn create(p: &PluginProvider, cancel: &Cancel) -> Result<Attributes, ProviderError> {
    let mut secrets = Attributes::new();
    secrets.insert("password".into(), Value::Str("hunter2-secret".into()));
    let inputs = Attributes::new();
    let secrets = Secrets(secrets);
    p.create(&ResourceRequest {
        service: "svc",
        component: "c",
        node: None,
        resource: "r",
        idempotency_key: "k",
        inputs: &inputs,
        secrets: &secrets,
        prior: None,
        service_nodes: &[],
        cancel,
    })
    .await
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_side_forwards_requests_and_their_answers() {
    let tmp = tempfile::tempdir().unwrap();
    // Answers pings and requests; `create` with outputs, the rest with errors.
    let path = script(
        tmp.path(),
        "ok",
        r#"while next; do
  id=$(id_of)
  case "$line" in
    *'"method":"ping"'*) echo "{\"id\":$id,\"result\":{}}" ;;
    *'"method":"create"'*) echo "{\"id\":$id,\"result\":{\"outputs\":{\"n\":1,\"s\":\"x\"}}}" ;;
    *'"method":"read"'*) echo "{\"id\":$id,\"result\":{\"observed\":\"missing\"}}" ;;
    *'"method":"delete"'*) echo "{\"id\":$id,\"error\":{\"kind\":\"failed\",\"operation\":\"delete t.r for c\",\"message\":\"gone wrong\",\"retryable\":true,\"source\":\"HTTP 500\"}}" ;;
    *) echo "{\"id\":$id,\"error\":{\"kind\":\"protocol\",\"message\":\"no such thing\"}}" ;;
  esac
done"#,
    );
    let p = provider(&path, fast(tmp.path()));
    assert_eq!(p.kind(), "t");
    assert_eq!(p.resources(), vec!["r".to_owned()]);
    let cancel = Cancel::new();
    let out = create(&p, &cancel).await.unwrap();
    assert_eq!(out["n"], Value::Int(1));
    assert_eq!(out["s"], Value::Str("x".into()));
    let inputs = Attributes::new();
    let secrets = Secrets::default();
    let req = ResourceRequest {
        service: "svc",
        component: "c",
        node: None,
        resource: "r",
        idempotency_key: "k",
        inputs: &inputs,
        secrets: &secrets,
        prior: None,
        service_nodes: &[],
        cancel: &cancel,
    };
    assert_eq!(p.read(&req).await.unwrap(), Observed::Missing);
    let e = p.delete(&req).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(
        crate::wire::chain(&e),
        "delete t.r for c failed: gone wrong: HTTP 500"
    );
    let e = p.update(&req).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "update t.r for c failed: plugin ok ({}) refused the request: no such thing",
            path.display()
        )
    );
    // A kind that says it runs no commands is never asked to.
    let exec = ExecRequest {
        service: "svc",
        node: "n",
        node_outputs: &inputs,
        node_inputs: &inputs,
        steps: &[],
        module: None,
        env: &[],
        timeout: Duration::from_secs(1),
        cancel: &cancel,
    };
    assert!(matches!(
        p.exec(&exec).await,
        Err(ProviderError::Unsupported { .. })
    ));
    // One process served it all; the secret went over stdin only.
    let log = log_of(tmp.path(), "ok");
    assert_eq!(log.matches("start").count(), 1, "{log}");
    assert!(log.contains("hunter2-secret"));
    assert!(!log.contains(r#""method":"exec""#));
    p.process().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_dies_mid_request_fails_it_and_is_started_again() {
    let tmp = tempfile::tempdir().unwrap();
    let path = script(tmp.path(), "crash", "next\nexit 3");
    let p = provider(&path, fast(tmp.path()));
    let e = create(&p, &Cancel::new()).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(
        e.to_string(),
        format!(
            "create t.r for c failed: plugin crash ({}) exited with status 3 while the request was in flight; its standard error is logged at debug level (dtk -vv)",
            path.display()
        )
    );
    // The next request starts a new process.
    create(&p, &Cancel::new()).await.unwrap_err();
    assert_eq!(log_of(tmp.path(), "crash").matches("start").count(), 2);

    let killed = script(tmp.path(), "killed", "next\nkill -9 $$");
    let e = create(&provider(&killed, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "was killed by signal 9 (SIGKILL) while the request was in flight; its standard error"
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_writes_garbage_is_stopped_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = script(
        tmp.path(),
        "garbage",
        "next\necho \"debug: $line\"\nsleep 30",
    );
    let started = std::time::Instant::now();
    let e = create(&provider(&path, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("wrote line 2 of its standard output (")
            && text.contains(
                "bytes), which is not a protocol message: it is not JSON (column 1); dtk stopped it"
            ),
        "{text}"
    );
    // The line (which here holds the request, secret and all) is never in the error.
    assert!(
        !text.contains("hunter2") && !text.contains("debug:"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let shape = script(tmp.path(), "shape", "next\necho '[1, 2]'\nsleep 30");
    let e = create(&provider(&shape, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("which is not a protocol message: it is JSON but not an object"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_hangs_is_stopped_when_it_misses_a_ping() {
    let tmp = tempfile::tempdir().unwrap();
    // Reads the request, then sleeps: nothing reads its input, nothing answers.
    let path = script(tmp.path(), "hang", "next\nsleep 30");
    let started = std::time::Instant::now();
    let e = create(&provider(&path, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "create t.r for c failed: plugin hang ({}) did not answer a ping within 400ms: it hangs; dtk stopped it while the request was in flight",
            path.display()
        )
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_timeout_is_cancelled_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    // Answers pings, never the request; answers a `cancel` with `cancelled`.
    let path = script(
        tmp.path(),
        "slow",
        r#"while next; do
  id=$(id_of)
  case "$line" in
    *'"method":"ping"'*) echo "{\"id\":$id,\"result\":{}}" ;;
    *'"method":"cancel"'*) cid=$(echo "$line" | sed -n 's/.*"id":\([0-9]*\)}}$/\1/p'); echo "{\"id\":$cid,\"error\":{\"kind\":\"cancelled\",\"operation\":\"create t.r for c\"}}" ;;
  esac
done"#,
    );
    let options = PluginOptions {
        call_timeout: Duration::from_millis(700),
        ..fast(tmp.path())
    };
    let p = provider(&path, options);
    let e = create(&p, &Cancel::new()).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(
        e.to_string(),
        format!(
            "create t.r for c (by plugin slow ({})) timed out after 700ms",
            path.display()
        )
    );
    // Pings kept it alive meanwhile; the request was cancelled (the script logs the
    // cancel a moment later).
    let mut log = log_of(tmp.path(), "slow");
    for _ in 0..200 {
        if log.contains(r#""method":"cancel""#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        log = log_of(tmp.path(), "slow");
    }
    assert!(log.contains(r#""method":"ping""#), "{log}");
    assert!(
        log.contains(r#"{"method":"cancel","params":{"id":2}}"#),
        "{log}"
    );

    // Ctrl-C: the request's cancel flag is sent on as `cancel`, and its answer is the
    // result.
    let cancel = Cancel::new();
    let flag = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flag.cancel();
    });
    let p = provider(&path, fast(tmp.path()));
    let e = create(&p, &cancel).await.unwrap_err();
    assert!(matches!(e, ProviderError::Cancelled { .. }), "{e}");
}

#[tokio::test]
async fn failed_handshakes_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    };
    let quits = check("quits", "#!/bin/sh\nexit 4\n");
    let e = create(&provider(&quits, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("plugin quits") && e.to_string().contains("exited with status 4"),
        "{e}"
    );
    let other = check(
        "other",
        "#!/bin/sh\nread l\necho '{\"id\":1,\"result\":{\"protocol\":2,\"providers\":[{\"kind\":\"u\"}]}}'\nsleep 5\n",
    );
    let e = create(&provider(&other, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no longer serves kind `t` (it changed since dtk first ran it)"),
        "{e}"
    );
    let missing = tmp.path().join("not-there");
    let e = create(&provider(&missing, fast(tmp.path())), &Cancel::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot be started: "), "{e}");
}

// ---------------------------------------------------------------------------------------
// Discovery.

fn executable(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A plugin that counts its starts in `COUNT` and serves `kinds`.
fn counting(dir: &Path, name: &str, kinds: &str, count: &Path) -> PathBuf {
    let providers: Vec<String> = kinds
        .split(',')
        .map(|k| format!(r#"{{"kind":"{k}","resources":["r"],"modules":[{{"origin":"m","text":"module: x/{k}\nversion: 1.0.0\n"}}]}}"#))
        .collect();
    let reply = format!(
        r#"{{"id":1,"result":{{"protocol":2,"plugin":{{"name":"{name}","version":"2"}},"providers":[{}]}}}}"#,
        providers.join(",")
    );
    executable(
        dir,
        name,
        &format!(
            "#!/bin/sh\necho x >> '{}'\nread l\nprintf '%s\\n' '{}'\nread l\n",
            count.display(),
            reply.replace('\n', "\\n")
        ),
    )
}

fn starts(count: &Path) -> usize {
    std::fs::read_to_string(count)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn executable_names_give_kinds() {
    assert_eq!(kind_of_executable("dtk-provider-aws"), Some("aws"));
    assert_eq!(
        kind_of_executable("dtk-provider-my_cloud-2"),
        Some("my_cloud-2")
    );
    assert_eq!(kind_of_executable("dtk-provider-aws.d"), None);
    assert_eq!(kind_of_executable("dtk-provider-"), None);
    assert_eq!(kind_of_executable("dtk-provider--x"), None);
    assert_eq!(kind_of_executable("dtk"), None);
}

#[test]
fn discovery_describes_each_executable_once_and_remembers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    let count = tmp.path().join("starts");
    let cache = tmp.path().join("cache/plugins.json");
    let options = PluginOptions::new(tmp.path().join("home"));
    let a = counting(&first, "dtk-provider-a", "a,b", &count);
    counting(
        &second,
        "dtk-provider-a",
        "a",
        &tmp.path().join("other-starts"),
    );
    counting(&second, "dtk-provider-c", "c", &count);
    // Not plugins: not executable, a build artefact, another name.
    std::fs::write(first.join("dtk-provider-plain"), "x").unwrap();
    executable(&first, "dtk-provider-a.d", "#!/bin/sh\nexit 1\n");
    executable(&first, "dtk-tool", "#!/bin/sh\nexit 1\n");
    let bad = executable(&second, "dtk-provider-bad", "#!/bin/sh\nexit 1\n");
    let liar = counting(&second, "dtk-provider-liar", "truth", &count);

    let dirs = vec![
        first.clone(),
        tmp.path().join("absent"),
        second.clone(),
        first.clone(),
    ];
    let d = discover(&dirs, Some(&cache), &options, false);
    assert_eq!(
        d.searched,
        vec![first.clone(), tmp.path().join("absent"), second.clone()]
    );
    let summary: Vec<String> = d
        .found
        .iter()
        .map(|f| {
            let status = match &f.status {
                FoundStatus::Ready(desc) => {
                    let kinds: Vec<&str> = desc.providers.iter().map(|p| p.kind.as_str()).collect();
                    format!("ready {}", kinds.join(","))
                }
                FoundStatus::Unusable(why) => format!("unusable: {why}"),
                FoundStatus::Shadowed(by) => {
                    format!(
                        "shadowed by {}",
                        by.strip_prefix(tmp.path()).unwrap().display()
                    )
                }
            };
            format!(
                "{} {}: {status}",
                f.kind,
                f.path.strip_prefix(tmp.path()).unwrap().display()
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "a first/dtk-provider-a: ready a,b".to_owned(),
            "a second/dtk-provider-a: shadowed by first/dtk-provider-a".to_owned(),
            "bad second/dtk-provider-bad: unusable: it ended its output without answering `hello` (it exited with status 1)".to_owned(),
            "c second/dtk-provider-c: ready c".to_owned(),
            "liar second/dtk-provider-liar: unusable: its name says it serves kind `liar`, but it serves `truth`".to_owned(),
        ]
    );
    assert_eq!(starts(&count), 3);
    assert_eq!(starts(&tmp.path().join("other-starts")), 0);

    // Known executables are not started again, not even unusable ones...
    let again = discover(&dirs, Some(&cache), &options, false);
    assert_eq!(starts(&count), 3);
    assert_eq!(again.found.len(), 5);
    assert!(matches!(&again.found[0].status, FoundStatus::Ready(d) if d.plugin.version == "2"));
    // ...unless asked to retry those, or one changed.
    discover(&dirs, Some(&cache), &options, true);
    assert_eq!(starts(&count), 4);
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&a, format!("{text}# changed\n")).unwrap();
    discover(&dirs, Some(&cache), &options, false);
    assert_eq!(starts(&count), 5);
    // A removed executable leaves the cache.
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(&liar).unwrap();
    discover(&dirs, Some(&cache), &options, false);
    let cached = std::fs::read_to_string(&cache).unwrap();
    assert!(!cached.contains("dtk-provider-bad") && cached.contains("dtk-provider-c"));
}

/// A settled directory's listing is remembered and not read again; one changed since (an
/// executable added) is read again; one changed within the last seconds is not remembered.
#[test]
fn discovery_reads_a_directory_again_only_when_it_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bin");
    let count = tmp.path().join("starts");
    let cache = tmp.path().join("cache/plugins.json");
    let options = PluginOptions::new(tmp.path().join("home"));
    counting(&dir, "dtk-provider-a", "a", &count);
    let kinds =
        |d: &crate::Discovery| -> Vec<String> { d.found.iter().map(|f| f.kind.clone()).collect() };
    let age = |d: &Path, secs: u64| {
        let t = std::time::SystemTime::now() - Duration::from_secs(secs);
        std::fs::File::open(d).unwrap().set_modified(t).unwrap();
    };
    let listing_of = |d: &Path| -> Option<Listing> {
        let (_, listings) = read_cache(&cache);
        listings.get(d).cloned()
    };
    // Just changed: listed, not remembered.
    assert_eq!(
        kinds(&discover(
            std::slice::from_ref(&dir),
            Some(&cache),
            &options,
            false
        )),
        ["a"]
    );
    assert!(listing_of(&dir).is_none());
    // Settled: remembered.
    age(&dir, 60);
    discover(std::slice::from_ref(&dir), Some(&cache), &options, false);
    let remembered = listing_of(&dir).expect("a settled directory's listing is kept");
    assert_eq!(remembered.names, ["dtk-provider-a"]);
    // A remembered listing is what a later search uses: shown by planting one that differs
    // from the directory (a directory unchanged since keeps its listing).
    let (entries, _) = read_cache(&cache);
    let planted = Listing {
        names: vec!["dtk-provider-a".to_owned(), "dtk-provider-ghost".to_owned()],
        ..remembered.clone()
    };
    write_cache(&cache, &entries, std::slice::from_ref(&planted)).unwrap();
    let d = discover(std::slice::from_ref(&dir), Some(&cache), &options, false);
    // The ghost is named but cannot be stat'ed: not a candidate.
    assert_eq!(kinds(&d), ["a"]);
    assert_eq!(listing_of(&dir).unwrap().names, planted.names);
    // An executable added changes the directory: it is read again.
    counting(&dir, "dtk-provider-b", "b", &count);
    age(&dir, 30);
    let d = discover(std::slice::from_ref(&dir), Some(&cache), &options, false);
    assert_eq!(kinds(&d), ["a", "b"]);
    assert_eq!(
        listing_of(&dir).unwrap().names,
        ["dtk-provider-a", "dtk-provider-b"]
    );
}

#[test]
fn a_plugin_whose_module_does_not_parse_is_unusable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    executable(
        &dir,
        "dtk-provider-m",
        "#!/bin/sh\nread l\necho '{\"id\":1,\"result\":{\"protocol\":2,\"providers\":[{\"kind\":\"m\",\"modules\":[{\"origin\":\"m/dtk.module.yaml\",\"text\":\"module: [\"}]}]}}'\n",
    );
    let d = discover(&[dir], None, &PluginOptions::new(tmp.path()), false);
    match &d.found[0].status {
        FoundStatus::Unusable(why) => assert!(
            why.starts_with("its bundled module m/dtk.module.yaml does not parse: "),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_share_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    // Answers every create after a short pause, in whatever order they come.
    let path = script(
        tmp.path(),
        "many",
        r#"while next; do
  id=$(id_of)
  case "$line" in
    *'"method":"create"'*) (sleep 0.2; echo "{\"id\":$id,\"result\":{\"outputs\":{\"id\":$id}}}") & ;;
    *'"method":"ping"'*) echo "{\"id\":$id,\"result\":{}}" ;;
  esac
done"#,
    );
    let p = Arc::new(provider(&path, fast(tmp.path())));
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { create(&p, &Cancel::new()).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in calls {
        ids.push(c.await.unwrap().unwrap()["id"].clone());
    }
    ids.sort_by_key(|v| v.as_i64());
    ids.dedup();
    assert_eq!(ids.len(), 8, "each answer went to its own request");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(log_of(tmp.path(), "many").matches("start").count(), 1);
}

/// Module files by id, for `exec` requests with a module.
struct MapStore(std::collections::HashMap<String, Vec<u8>>);

impl ContentStore for MapStore {
    fn read(&self, id: &str) -> Result<Vec<u8>, ContentError> {
        self.0.get(id).cloned().ok_or_else(|| ContentError {
            id: id.to_owned(),
            source: "no such object".into(),
        })
    }
}

/// `exec` sends the steps and the module's file list (never its bytes); while it runs,
/// the plugin gets the bytes of the module's files by asking (`module_file`), and only
/// those: a file of no module, or of a request not in flight, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_plugin_reads_the_module_files_of_its_request_and_only_those() {
    let tmp = tempfile::tempdir().unwrap();
    let path = script(
        tmp.path(),
        "files",
        r#"exec 3>&1
pong() { echo "{\"id\":$(id_of),\"result\":{}}" >&3; }
ask() {
  echo "{\"id\":$1,\"method\":\"module_file\",\"params\":{\"request\":$2,\"id\":\"$3\"}}" >&3
  while next; do case "$line" in *'"method":"ping"'*) pong ;; *) break ;; esac; done
  printf '%s' "$line" | base64 | tr -d '\n'
}
while next; do
  id=$(id_of)
  case "$line" in
    *'"method":"exec"'*)
      a=$(ask 1 "$id" aa11); b=$(ask 2 "$id" bb22); c=$(ask 3 99 aa11)
      echo "{\"id\":$id,\"result\":{\"exit_code\":0,\"stdout\":\"$a\",\"stderr\":\"$b\",\"outputs\":[[\"c\",\"$c\"]]}}" ;;
    *) echo "{\"id\":$id,\"result\":{}}" ;;
  esac
done"#,
    );
    let mut desc = description();
    desc.providers[0].exec = true;
    let p = PluginProcess::new(path, desc, fast(tmp.path()))
        .providers()
        .pop()
        .unwrap();
    let content = ModuleContent {
        module: "demo/m".parse().unwrap(),
        digest: "d1".into(),
        files: vec![ModuleFile {
            path: "bin/x".into(),
            id: "aa11".into(),
            executable: true,
            size: 5,
        }]
        .into(),
        store: Arc::new(MapStore(
            [
                ("aa11".to_owned(), b"hello".to_vec()),
                ("bb22".to_owned(), b"secret of another module".to_vec()),
            ]
            .into(),
        )),
    };
    let steps = [
        ExecStep::Run("echo hi".into()),
        ExecStep::Put(PutFile {
            target: "conf".into(),
            content: PutContent::Rendered(b"k=v".to_vec()),
            mode: Some(0o600),
            owner: None,
            label: "ADD conf".into(),
        }),
    ];
    let attrs = Attributes::new();
    let cancel = Cancel::new();
    let out = p
        .exec(&ExecRequest {
            service: "svc",
            node: "n",
            node_outputs: &attrs,
            node_inputs: &attrs,
            steps: &steps,
            module: Some(&content),
            env: &[],
            timeout: Duration::from_secs(10),
            cancel: &cancel,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", log_of(tmp.path(), "files")));
    let b64 = base64::engine::general_purpose::STANDARD;
    // stdout and stderr travel in base64, and arrive decoded; outputs as they are.
    let answer = |line: &[u8]| -> Json { serde_json::from_slice(line).unwrap() };
    assert_eq!(
        answer(&out.stdout),
        json!({"id": 1, "result": {"data": base64::Engine::encode(&b64, b"hello")}})
    );
    let refused = answer(&out.stderr);
    assert_eq!(refused["id"], 2);
    assert_eq!(
        refused["error"]["message"],
        "`module_file`: bb22 is not a file of module demo/m"
    );
    let stale = answer(&base64::Engine::decode(&b64, &out.outputs[0].1).unwrap());
    assert_eq!(stale["id"], 3);
    assert_eq!(
        stale["error"]["message"],
        "`module_file`: request 99 is not an `exec` with a module in flight"
    );
    let log = log_of(tmp.path(), "files");
    assert!(
        log.contains(r#""steps":[{"run":"echo hi"},{"put":{"target":"conf","rendered":"az12","mode":384,"label":"ADD conf"}}],"module":{"module":"demo/m","digest":"d1","files":[{"path":"bin/x","id":"aa11","executable":true,"size":5}]}"#),
        "{log}"
    );
    let exec_line = log
        .lines()
        .find(|l| l.contains(r#""method":"exec""#))
        .unwrap();
    assert!(
        !exec_line.contains("aGVsbG8"),
        "file bytes went with the request: {exec_line}"
    );
    p.process().shutdown().await;
}

/// A relative home is sent absolute: a plugin's state stays in the home whatever its
/// working directory.
#[test]
fn hello_sends_the_home_absolute() {
    let h = PluginOptions::new("rel/home").hello();
    assert!(h.home.is_absolute(), "{:?}", h.home);
    assert!(h.home.ends_with("rel/home"), "{:?}", h.home);
    assert_eq!(h.providers_dir, h.home.join("providers"));
}

/// A plugin that chose protocol 1 is served: its resource methods are version 2's; its
/// `exec`, which could not carry the module's files, is never sent (dtk's transports run
/// the commands instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_plugin_serves_resources_and_is_never_sent_exec() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("v1.log");
    let path = executable(
        tmp.path(),
        "v1",
        &format!(
            r#"#!/bin/sh
read l
echo '{{"id":1,"result":{{"protocol":1,"providers":[{{"kind":"t","resources":["r"],"exec":true}}]}}}}'
while IFS= read -r line; do
  echo "$line" >> '{}'
  id=$(echo "$line" | sed -n 's/^{{"id":\([0-9]*\),.*/\1/p')
  case "$line" in
    *'"method":"create"'*) echo "{{\"id\":$id,\"result\":{{\"outputs\":{{\"v\":1}}}}}}" ;;
    *) echo "{{\"id\":$id,\"result\":{{}}}}" ;;
  esac
done
"#,
            log.display()
        ),
    );
    let mut desc = description();
    desc.protocol = 1;
    desc.providers[0].exec = true;
    let p = PluginProcess::new(path, desc, fast(tmp.path()))
        .providers()
        .pop()
        .unwrap();
    let out = create(&p, &Cancel::new()).await.unwrap();
    assert_eq!(out["v"], Value::Int(1));
    let attrs = Attributes::new();
    let cancel = Cancel::new();
    let req = ExecRequest {
        service: "svc",
        node: "n",
        node_outputs: &attrs,
        node_inputs: &attrs,
        steps: &[ExecStep::Run("true".into())],
        module: None,
        env: &[],
        timeout: Duration::from_secs(5),
        cancel: &cancel,
    };
    assert!(matches!(
        p.exec(&req).await,
        Err(ProviderError::Unsupported { .. })
    ));
    let sent = std::fs::read_to_string(&log).unwrap();
    assert!(sent.contains(r#""method":"create""#), "{sent}");
    assert!(!sent.contains(r#""method":"exec""#), "{sent}");
    p.process().shutdown().await;
}

/// An executable still open for writing somewhere (a file just written, whose descriptor
/// a process forked meanwhile still holds; a plugin being copied into place) cannot be
/// started (`ETXTBSY`): dtk tries again for a while rather than failing at once.
#[test]
fn a_plugin_busy_for_a_moment_is_started_once_it_is_free() {
    let tmp = tempfile::tempdir().unwrap();
    let path = script(tmp.path(), "busy", "next\nexit 0");
    let writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let busy = std::process::Command::new(&path).spawn().unwrap_err();
    assert!(crate::spawn::busy(&busy), "{busy}");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        drop(writer);
    });
    let described = crate::discover::describe(&path, &fast(tmp.path()));
    release.join().unwrap();
    let d = described.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.providers[0].kind, "t");
}
