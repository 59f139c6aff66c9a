//! `dtk ui` end to end: its JSON documents (snapshots, each documented in JSON.md), its
//! refusals (foreign `Host`s, other methods), secrets never served, and the service page
//! in a real browser (headless Chromium, driven over the DevTools protocol) during a
//! converge started from another `dtk` process and after it.
//!
//! Every server (`dtk ui`, Chromium) listens on 127.0.0.1 on a port of its own choosing
//! and is stopped by its process id when the test ends, however it ends.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use expect_test::{ExpectFile, expect_file};
use serde_json::{Value, json};

use crate::Home;
use crate::json::{documented, normalize_text};

const SECRET: &str = "s3cr3t-value-never-served";

/// Three components on one node: `prep`, then `slow` (which waits until the test opens
/// its gate: the run is in progress for as long as the test needs), then `last`. `prep`
/// has a secret and prints it (the executor redacts it).
const MODULE: &str = r#"dsl_version: 1.0.0
module: demo/uilive
version: 1.0.0
component_defs:
  prep:
    attributes:
      token: {type: string, secret: true}
      ready: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN echo "token $token"
        - RUN echo ready=yes >> "$DTK_OUTPUT"
  slow:
    attributes:
      gate: {type: string, required: true}
    dependencies: [prep]
    actions:
      create:
        commands:
        - RUN i=0; while [ ! -e "$gate" ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.05; done
  last:
    dependencies: [slow]
    actions:
      create:
        commands:
        - RUN echo done
assemblies:
  three:
    description: prep, slow, last on one node
    components:
    - node[n]:
        components:
        - prep
        - slow:
            attributes: {gate: /nonexistent}
        - last
"#;

/// A running `dtk ui`, stopped (by its process id) when dropped.
struct Ui {
    child: Child,
    url: String,
    port: u16,
}

impl Ui {
    fn start(h: &Home) -> Ui {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dtk"))
            .args([
                "--home",
                &h.home().display().to_string(),
                "ui",
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("DTK_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut ui = Ui {
            child,
            url: String::new(),
            port: 0,
        };
        // "dtk ui: serving http://127.0.0.1:PORT/ (read-only; Ctrl-C to stop)"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("dtk ui printed no URL: {line:?}"))
            .to_owned();
        ui.port = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        ui.url = url;
        ui
    }

    fn get(&self, path: &str) -> Response {
        http_get(self.port, path, "127.0.0.1", "GET")
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request with `Connection: close` (Chromium refuses HTTP/1.0).
fn http_get(port: u16, path: &str, host: &str, method: &str) -> Response {
    try_http_get(port, path, host, method)
        .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

/// [`http_get`], for a server that may not answer yet.
fn try_http_get(port: u16, path: &str, host: &str, method: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    // To the end, or to the end of a body of a known length (Chromium's DevTools server
    // keeps the connection open).
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// Waits until `f` gives a value, or panics after `secs` saying `what`.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replaces what changes from run to run in a document: times, durations, process ids,
/// run ids, object ids, ports and the temporary directory.
fn normalize(v: &mut Value, tmp: &str) {
    const VOLATILE: [&str; 12] = [
        "started_at",
        "started_at_ms",
        "ended_at_ms",
        "at_ms",
        "time",
        "since",
        "pid",
        "duration_ms",
        "start_ms",
        "end_ms",
        "span_ms",
        "host",
    ];
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if VOLATILE.contains(&k.as_str()) && !x.is_null() && !x.is_string() {
                    *x = Value::String(format!("<{k}>"));
                } else {
                    normalize(x, tmp);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, tmp)),
        Value::String(s) => *s = normalize_text(&s.replace(tmp, "$TMP")),
        _ => {}
    }
}

/// Checks one `/api/...` answer: its status, its `schema`, its section in JSON.md, and
/// its normalized text against `snapshot`.
fn check(h: &Home, r: &Response, status: u16, schema: &str, snapshot: ExpectFile) -> Value {
    assert_eq!(r.status, status, "{}\n{}", r.head, r.body);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{}",
        r.head
    );
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["schema"], schema, "{}", r.body);
    documented(schema, &doc);
    let mut norm = doc.clone();
    normalize(&mut norm, &h.tmp.path().display().to_string());
    snapshot.assert_eq(&format!(
        "{}\n",
        serde_json::to_string_pretty(&norm).unwrap()
    ));
    doc
}

/// A home with `demo/uilive` staged as `name`, its secret set and its gate at `gate`.
fn staged(h: &Home, name: &str, gate: &Path) {
    let src = h.module("uilive", MODULE);
    let r = h.dtk(&["module", "install", src.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = h.dtk(&["service", "stage", "demo/uilive", "three", "-n", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = h.dtk(&["service", "set-attribute", name, "n/prep/token", SECRET]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = h.dtk(&[
        "service",
        "set-attribute",
        name,
        "n/slow/gate",
        gate.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn the_json_documents_of_dtk_ui() {
    let h = Home::new();
    let gate = h.tmp.path().join("gate");
    std::fs::write(&gate, "open").unwrap();
    staged(&h, "app", &gate);
    let r = h.dtk(&["service", "converge", "app", "-m", "first"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let ui = Ui::start(&h);

    check(
        &h,
        &ui.get("/api/services"),
        200,
        "dtk.ui.services/v1",
        expect_file!["json/ui-services.json"],
    );
    let service = check(
        &h,
        &ui.get("/api/services/app"),
        200,
        "dtk.ui.service/v1",
        expect_file!["json/ui-service.json"],
    );
    let run = check(
        &h,
        &ui.get("/api/services/app/runs/last"),
        200,
        "dtk.ui.run/v1",
        expect_file!["json/ui-run.json"],
    );
    assert_eq!(run["run"], service["runs"][0]["run"]);
    assert_eq!(
        run["critical_path"],
        json!([
            "node[n].create",
            "n/prep.create",
            "n/slow.create",
            "n/last.create"
        ])
    );
    // A run is also found by its id.
    let by_id = ui.get(&format!(
        "/api/services/app/runs/{}",
        run["run"].as_str().unwrap()
    ));
    assert_eq!(by_id.status, 200);
    check(
        &h,
        &ui.get("/api/services/app/live"),
        200,
        "dtk.ui.live/v1",
        expect_file!["json/ui-live.json"],
    );
    check(
        &h,
        &ui.get("/api/services/nope"),
        404,
        "dtk.error/v1",
        expect_file!["json/ui-error-no-such-service.json"],
    );
    // The index links each service and target to its own page; a target's page is one.
    let index = ui.get("/");
    assert_eq!(index.status, 200);
    for link in ["href=\"/services/app\"", "href=\"/services/local\""] {
        assert!(index.body.contains(link), "{link}: {}", index.body);
    }
    let target: Value = serde_json::from_str(&ui.get("/api/services/local").body).unwrap();
    assert_eq!(target["is_target"], true, "{target}");
    let page = ui.get("/services/local");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("target instance"), "{}", page.body);
    let r = ui.get("/api/services/app/runs/no-such-run");
    assert_eq!(r.status, 404, "{}", r.body);

    // Nothing served changes state: other methods are refused; the pages say so.
    for path in ["/", "/services/app", "/api/services/app"] {
        let r = http_get(ui.port, path, "127.0.0.1", "POST");
        assert_eq!(r.status, 405, "POST {path}: {}", r.head);
        let r = http_get(ui.port, path, "127.0.0.1", "DELETE");
        assert_eq!(r.status, 405, "DELETE {path}: {}", r.head);
    }
    // A page reached through a foreign name (DNS rebinding) is refused.
    let r = http_get(ui.port, "/api/services/app", "evil.example", "GET");
    assert_eq!(r.status, 421, "{}", r.head);
    let r = http_get(
        ui.port,
        "/api/services/app",
        &format!("localhost:{}", ui.port),
        "GET",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    // The pages carry a policy that runs no inline script.
    let page = ui.get("/services/app");
    assert_eq!(page.status, 200);
    assert!(
        page.head
            .contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{}",
        page.head
    );
    let r = ui.get("/no/such/page");
    assert_eq!(r.status, 404);

    // `dtk service graph --format svg` draws the same graph, no Graphviz needed.
    let r = h.dtk(&["service", "graph", "app", "--format", "svg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("<?xml"), "{}", r.stdout);
    assert!(r.stdout.contains("data-task=\"n/slow.create\""));
    let alias = h.dtk(&["service", "graph", "app", "--svg"]);
    assert_eq!(alias.stdout, r.stdout);
    let dot = h.dtk(&["service", "graph", "app"]);
    assert!(
        dot.stdout.starts_with("digraph \"app\" {"),
        "{}",
        dot.stdout
    );
}

#[test]
fn another_address_than_loopback_is_warned_about() {
    let h = Home::new();
    // 192.0.2.1 (TEST-NET-1) is on no interface here: the warning comes before the bind,
    // which then fails naming the address, so nothing listens beyond loopback.
    let r = h.dtk(&["ui", "--listen", "192.0.2.1:0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "warning: dtk ui listens on 192.0.2.1:0, not on loopback: anyone who can reach it"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("cannot listen on 192.0.2.1:0"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

/// Reads the live stream `/api/services/NAME/events` (HTTP/1.0: no chunked encoding)
/// until its `end` event; returns each event's name and document. `first` hears of the
/// first event.
fn read_events(
    port: u16,
    service: &str,
    first: &std::sync::mpsc::Sender<()>,
) -> Vec<(String, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "GET /api/services/{service}/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut events = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(s).lines() {
        let line = line.expect("the event stream ended before its `end` event");
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_owned();
        } else if let Some(d) = line.strip_prefix("data:") {
            let doc: Value = serde_json::from_str(d.trim()).unwrap();
            let end = name == "end";
            let _ = first.send(());
            events.push((std::mem::take(&mut name), doc));
            if end {
                break;
            }
        }
    }
    events
}

/// A headless Chromium driven over the DevTools protocol, stopped by its process group
/// id when dropped.
struct Browser {
    /// Held for its `Drop`: stops the browser.
    _group: Group,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let chromium = Path::new("/usr/bin/chromium");
        assert!(
            chromium.exists(),
            "/usr/bin/chromium is missing: scripts/test installs it (scripts/lib/deps.sh)"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // Its own process group, so that its helper processes stop with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        // Stopped by its group id if starting it fails from here on.
        let guard = Group(cmd.spawn().unwrap());
        let active = profile.path().join("DevToolsActivePort");
        let port: u16 = wait_for(60, "Chromium's DevToolsActivePort", || {
            std::fs::read_to_string(&active)
                .ok()
                .and_then(|t| t.lines().next().and_then(|p| p.trim().parse().ok()))
        });
        // The first page's own socket (page commands need no session).
        let ws_url = wait_for(30, "Chromium's page target", || {
            let list =
                try_http_get(port, "/json/list", &format!("127.0.0.1:{port}"), "GET").ok()?;
            let targets: Value = serde_json::from_str(&list.body).ok()?;
            targets
                .as_array()?
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
        });
        let (ws, _) = tungstenite::connect(ws_url.as_str()).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        let mut b = Browser {
            _group: guard,
            ws,
            next_id: 0,
            _profile: profile,
        };
        // A fixed viewport, whatever the window's decorations take.
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Sends one DevTools command and returns its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::Text(msg.to_string().into()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let tungstenite::Message::Text(t) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Loads `url` and waits until the page and its script are loaded.
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        let url = url.to_owned();
        wait_for(30, "the page to load", || {
            let v = self.eval("[document.readyState, location.href]");
            (v[0] == "complete" && v[1] == url.as_str()).then_some(())
        });
    }

    /// Waits until `expr` is true in the page.
    fn wait(&mut self, secs: u64, expr: &str) {
        wait_for(secs, expr, || {
            (self.eval(expr) == Value::Bool(true)).then_some(())
        });
    }

    /// A screenshot of the page, as PNG bytes.
    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

/// A process and its process group, stopped by the group's id when dropped: the
/// browser, its renderer, GPU and utility processes.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // The group's id is the browser's process id (it was started as the group's
        // leader). Signalled directly: no `kill` binary needed (slim images lack procps).
        if let Ok(pgid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks a screenshot: a real PNG of the window's size that is not one flat colour.
fn check_screenshot(png_bytes: &[u8], file: &PathBuf) {
    std::fs::write(file, png_bytes).unwrap();
    assert!(
        png_bytes.len() > 10_000,
        "a {}-byte screenshot",
        png_bytes.len()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 1600));
    let px = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    for p in pixels.chunks(px) {
        colours.insert(p.to_vec());
        if colours.len() > 50 {
            break;
        }
    }
    assert!(
        colours.len() > 50,
        "only {} colours: a blank page",
        colours.len()
    );
}

#[test]
fn the_service_page_in_a_browser_during_and_after_a_converge() {
    let h = Home::new();
    let gate = h.tmp.path().join("gate");
    staged(&h, "live", &gate);
    let ui = Ui::start(&h);
    let mut browser = Browser::start();

    // A converge from another process; `slow` holds it open until the gate opens.
    let mut converge = Command::new(env!("CARGO_BIN_EXE_dtk"))
        .args([
            "--home",
            &h.home().display().to_string(),
            "service",
            "converge",
            "live",
        ])
        .env_remove("DTK_HOME")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(h.tmp.path().join("converge.out")).unwrap())
        .stderr(std::fs::File::create(h.tmp.path().join("converge.err")).unwrap())
        .spawn()
        .unwrap();
    struct Reap<'a>(&'a mut Child, &'a Path);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            // Open the gate (a failed test must not leave the run waiting), then stop it.
            let _ = std::fs::write(self.1, "open");
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let reap = Reap(&mut converge, &gate);
    wait_for(120, "the run to reach `slow`", || {
        let r = ui.get("/api/services/live/live");
        let doc: Value = serde_json::from_str(&r.body).ok()?;
        let slow = doc["run"]["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == "n/slow.create")?
            .clone();
        (doc["run"]["running"] == true && slow["state"] == "running").then_some(())
    });

    // During: the page shows the run in progress and follows it.
    let page = format!("{}services/live", ui.url);
    browser.open(&page);
    let dom = browser.eval("document.documentElement.outerHTML");
    let dom = dom.as_str().unwrap();
    assert!(!dom.contains(SECRET), "the page shows the secret");
    let state = |b: &mut Browser, sel: &str| -> Value {
        b.eval(&format!(
            "(function(){{var e=document.querySelector({}); return e ? e.getAttribute('data-state') : null;}})()",
            Value::String(sel.to_owned())
        ))
    };
    assert_eq!(state(&mut browser, "#live"), "running");
    // Rendered by the server: the run so far, from its journal.
    assert_eq!(
        state(&mut browser, "#tasks tr[data-task='n/slow.create']"),
        "running"
    );
    assert_eq!(
        state(&mut browser, "#tasks tr[data-task='n/prep.create']"),
        "done"
    );
    assert_eq!(
        state(&mut browser, "#tasks tr[data-task='n/last.create']"),
        "pending"
    );
    assert_eq!(
        state(&mut browser, "#timeline g[data-task='n/slow.create']"),
        "running"
    );
    assert_eq!(
        state(&mut browser, ".dtk-graph g[data-task='n/slow.create']"),
        "running"
    );
    // The live stream is connected: its first event (the run) has arrived, and the
    // script applied it (components follow their tasks; actual state is saved only when
    // the run ends).
    browser.wait(30, "!!(window.dtkLive && window.dtkLive.events >= 1)");
    assert_eq!(
        state(&mut browser, "#components tr[data-component='n/prep']"),
        "converged"
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#nodes tr[data-node=\"n\"]').length"),
        1
    );
    let during = h.tmp.path().join("during.png");
    check_screenshot(&browser.screenshot(), &during);

    // The live stream, read as a client other than the page: the run from the start,
    // its task changes, its end.
    let port = ui.port;
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let stream = std::thread::spawn(move || read_events(port, "live", &first_tx));
    first_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the stream's first event");

    // The run goes on; the same page (not reloaded) follows it to its end.
    std::fs::write(&gate, "open").unwrap();
    let status = wait_for(120, "the converge to end", || reap.0.try_wait().unwrap());
    assert!(
        status.success(),
        "converge: {}",
        std::fs::read_to_string(h.tmp.path().join("converge.err")).unwrap_or_default()
    );
    drop(reap);
    browser.wait(
        60,
        "document.body.getAttribute('data-run-ended') === 'succeeded'",
    );
    assert_eq!(
        state(&mut browser, "#tasks tr[data-task='n/slow.create']"),
        "done"
    );
    assert_eq!(
        state(&mut browser, "#tasks tr[data-task='n/last.create']"),
        "done"
    );
    assert_eq!(
        state(&mut browser, ".dtk-graph g[data-task='n/last.create']"),
        "done"
    );
    assert_eq!(
        state(&mut browser, "#components tr[data-component='n/last']"),
        "converged"
    );
    assert_eq!(state(&mut browser, "#live"), "ended");
    assert!(browser.eval("window.dtkLive.events").as_u64().unwrap() >= 3);
    assert_eq!(
        browser.eval("document.querySelector('#tasks tr[data-task=\"n/last.create\"] td.end').textContent !== ''"),
        true
    );

    // After: reloaded, the page shows the recorded run with its critical path.
    browser.open(&page);
    assert_eq!(state(&mut browser, "#live"), "idle");
    assert_eq!(
        browser.eval("document.getElementById('run-status').textContent"),
        "succeeded"
    );
    assert_eq!(
        browser.eval(
            "Array.from(document.querySelectorAll('#tasks tr.critical')).map(function(r){return r.getAttribute('data-task');})"
        ),
        json!(["node[n].create", "n/prep.create", "n/slow.create", "n/last.create"])
    );
    for c in ["n/prep", "n/slow", "n/last"] {
        assert_eq!(
            state(
                &mut browser,
                &format!("#components tr[data-component='{c}']")
            ),
            "converged"
        );
    }
    assert_eq!(
        browser.eval("document.querySelector('#components tr[data-component=\"n/prep\"]').textContent.indexOf('token: set') >= 0"),
        true
    );
    let dom = browser.eval("document.documentElement.outerHTML");
    assert!(!dom.as_str().unwrap().contains(SECRET));
    let after = h.tmp.path().join("after.png");
    check_screenshot(&browser.screenshot(), &after);
    if let Ok(dir) = std::env::var("DTK_UI_SCREENSHOTS") {
        let _ = std::fs::copy(&during, Path::new(&dir).join("during.png"));
        let _ = std::fs::copy(&after, Path::new(&dir).join("after.png"));
    }

    // The stream's documents: each documented in JSON.md, the end's as a snapshot.
    let events = stream.join().unwrap();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"run"), "{names:?}");
    assert_eq!(names.last(), Some(&"end"), "{names:?}");
    let mut done = Vec::new();
    for (name, doc) in &events {
        let schema = match name.as_str() {
            "run" => "dtk.ui.live/v1",
            "tasks" => "dtk.ui.tasks/v1",
            "end" => "dtk.ui.end/v1",
            other => panic!("an event named {other}: {doc}"),
        };
        assert_eq!(doc["schema"], schema, "{doc}");
        documented(schema, doc);
        assert!(!doc.to_string().contains(SECRET));
        if name == "tasks" {
            for c in doc["changes"].as_array().unwrap() {
                if c["state"] == "done" {
                    done.push(c["id"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    assert!(
        done.iter().any(|t| t == "n/slow.create") && done.iter().any(|t| t == "n/last.create"),
        "the stream's tasks events end no task: {events:?}"
    );
    let (_, end) = events.last().unwrap();
    assert_eq!(end["status"], "succeeded", "{end}");
    let mut norm = end.clone();
    normalize(&mut norm, &h.tmp.path().display().to_string());
    expect_file!["json/ui-event-end.json"].assert_eq(&format!(
        "{}\n",
        serde_json::to_string_pretty(&norm).unwrap()
    ));

    // No page or document serves the secret (it did reach the action).
    for path in [
        "/",
        "/services/live",
        "/services/live/graph.svg",
        "/api/services",
        "/api/services/live",
        "/api/services/live/runs/last",
        "/api/services/live/live",
    ] {
        let r = ui.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains(SECRET), "{path} serves the secret");
    }
    let secrets = std::fs::read_to_string(h.home().join("secrets/live.json")).unwrap();
    assert!(secrets.contains(SECRET));
}
