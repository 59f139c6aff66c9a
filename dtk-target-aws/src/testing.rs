//! Test support: a real EC2 API server, `moto_server` (PyPI `moto[server]`), which
//! `./scripts/test` installs into `TARGET_DIR/moto-venv`.
//!
//! Compiled with the `test-support` feature (for other crates' tests) and included by this
//! crate's own integration tests. A missing `moto_server` fails the test with a message
//! saying to run `./scripts/test`; it is never skipped.
//!
//! One server is shared by the tests that run at the same time ([`Moto::shared`]); it is
//! started on 127.0.0.1 with port 0 (moto prints the port it got), and stopped when the
//! last test holding it is done: its process group is killed by PID. moto keeps separate
//! state per region, so each test works in a region of its own and needs no reset (a
//! test that wants a clean server calls [`Moto::reset`]). Should the test process die
//! without dropping the server, the shell that runs moto sees its stdin close and stops
//! moto too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // Resolves in this crate (`extern crate self`) and in its tests.
use dtk_target_aws::{AwsSettings, StaticCredentials, Timeouts, WaiterSettings};

/// The environment variable naming the `moto_server` binary, overriding the search.
pub const MOTO_ENV: &str = "DTK_MOTO_SERVER";

/// A fake access key id: moto accepts any. Tests never reach AWS: the endpoint is always
/// moto.
pub const FAKE_ACCESS_KEY_ID: &str = "AKIDTKTESTKEYID00000";
/// The fake secret key that goes with [`FAKE_ACCESS_KEY_ID`].
pub const FAKE_SECRET_ACCESS_KEY: &str = "dtk-test-secret-access-key-never-shown";

/// A running moto_server.
pub struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());

impl Moto {
    /// The server the tests running now share, started when there is none.
    pub fn shared() -> Arc<Moto> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = slot.upgrade() {
            return m;
        }
        let m = Arc::new(Moto::start());
        *slot = Arc::downgrade(&m);
        m
    }

    /// Starts a server of its own, and waits until it answers.
    #[allow(clippy::print_stderr)] // Test output: how long moto took to start.
    pub fn start() -> Moto {
        let bin = find_moto_server();
        let dir = tempfile::tempdir().expect("a temporary directory for moto's log");
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).expect("moto's log file");
        let started = Instant::now();
        // `sh` runs moto in the background and waits on its own stdin, which only this
        // process holds: when this process ends, however it ends, sh kills moto.
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new("sh")
                .arg("-c")
                .arg(r#"bin=$1; shift; "$bin" "$@" </dev/null & pid=$!; while read -r _; do :; done; kill "$pid" 2>/dev/null; wait "$pid""#)
                .arg("dtk-moto")
                .arg(&bin)
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdin(Stdio::piped())
                .stdout(log_file.try_clone().expect("moto's log file"))
                .stderr(log_file)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
        };
        let stdin = child.stdin.take();
        let mut moto = Moto {
            child,
            stdin,
            port: 0,
            log,
            _dir: dir,
        };
        moto.port = moto.wait_for_port(Duration::from_secs(60));
        moto.wait_until_answering(Duration::from_secs(30));
        eprintln!(
            "moto_server up on port {} after {:?}",
            moto.port,
            started.elapsed()
        );
        moto
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Settings for `region` on this server: fake keys, short polls and timeouts.
    pub fn settings(&self, region: &str) -> AwsSettings {
        AwsSettings {
            max_attempts: 3,
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                attempt: Duration::from_secs(60),
                operation: Duration::from_secs(120),
            },
            waiter: WaiterSettings {
                timeout: Duration::from_secs(60),
                poll_interval: Duration::from_millis(100),
            },
            ..AwsSettings::new(region)
                .with_endpoint_url(self.url())
                .with_credentials(StaticCredentials::new(
                    FAKE_ACCESS_KEY_ID,
                    FAKE_SECRET_ACCESS_KEY,
                ))
        }
    }

    /// Forgets every resource of every region (`POST /moto-api/reset`). Only for a server
    /// that no other test is using at the same time.
    pub fn reset(&self) {
        let status = self
            .http("POST", "/moto-api/reset")
            .expect("moto answers a reset");
        assert!(
            status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
            "reset: {status}"
        );
    }

    fn wait_for_port(&mut self, limit: Duration) -> u16 {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let port = text.lines().find_map(|l| {
                let rest = l.split("Running on http://127.0.0.1:").nth(1)?;
                rest.trim().trim_end_matches('/').parse::<u16>().ok()
            });
            if let Some(port) = port {
                return port;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited ({status}) before listening; its log:\n{text}");
            }
            if start.elapsed() > limit {
                panic!("moto_server did not listen within {limit:?}; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_until_answering(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            match self.http("GET", "/moto-api/") {
                Ok(status) if status.starts_with("HTTP/") => return,
                other if start.elapsed() > limit => {
                    panic!(
                        "moto_server on port {} does not answer: {other:?}",
                        self.port
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends a bodiless request; returns the status line.
    fn http(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        Ok(text.lines().next().unwrap_or_default().to_owned())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The process group (its id is sh's PID) is sh and moto. Closing sh's stdin makes
        // it stop moto and reap it; then whatever is left of the group is killed by id.
        let pgid = self.child.id();
        self.stdin.take();
        let exited = |child: &mut Child, limit: Duration| {
            let start = Instant::now();
            while start.elapsed() < limit {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        let gone = exited(&mut self.child, Duration::from_secs(5));
        let kill_group = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        };
        kill_group("-TERM");
        if !gone && !exited(&mut self.child, Duration::from_secs(5)) {
            kill_group("-KILL");
            let _ = self.child.wait();
        }
    }
}

/// `DTK_MOTO_SERVER`, else `moto-venv/bin/moto_server` in `CARGO_TARGET_DIR` or in a
/// directory above this test binary (the target directory). Missing: the test fails.
fn find_moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os(MOTO_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{MOTO_ENV}={} is not a file", p.display());
        return p;
    }
    let mut tried = Vec::new();
    let rel = Path::new("moto-venv/bin/moto_server");
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        tried.push(PathBuf::from(dir).join(rel));
    }
    if let Ok(exe) = std::env::current_exe() {
        tried.extend(exe.ancestors().skip(1).map(|d| d.join(rel)));
    }
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    panic!(
        "moto_server not found, so the AWS tests cannot run. Run ./scripts/test, which \
         installs moto[server] into TARGET_DIR/moto-venv, or set {MOTO_ENV} to a moto_server \
         binary. Looked in:\n  {}",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}
