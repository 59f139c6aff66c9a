//! A git server for the team tests: `git daemon --enable=receive-pack` on 127.0.0.1 and a
//! free port, serving bare repositories in a temporary directory. Stopped by its PID
//! (with the processes serving its connections) when dropped; [`GitDaemon::stop`] and
//! [`GitDaemon::start_again`] play a server that goes down and comes back on the same
//! port.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::git_ok;

/// A running `git daemon`.
pub struct GitDaemon {
    base: TempDir,
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl GitDaemon {
    /// Starts a server with one empty bare repository, `team.git`.
    pub fn start() -> GitDaemon {
        let base = tempfile::Builder::new()
            .prefix("dtk-gitd-")
            .tempdir()
            .expect("a temporary directory");
        let mut d = GitDaemon {
            base,
            port: 0,
            child: None,
        };
        d.create_repo("team.git");
        for _ in 0..5 {
            d.port = free_port();
            if d.spawn() {
                return d;
            }
        }
        panic!("git daemon did not start (is git installed with its daemon?)");
    }

    /// Creates another empty bare repository `name` on the server.
    pub fn create_repo(&self, name: &str) -> PathBuf {
        let path = self.base.path().join(name);
        git_ok(
            self.base.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                path.to_str().expect("a UTF-8 path"),
            ],
        );
        // What a real server would do in the background is no part of the tests.
        git_ok(&path, &["config", "receive.autogc", "false"]);
        path
    }

    fn spawn(&mut self) -> bool {
        let base = self.base.path().to_str().expect("a UTF-8 path").to_owned();
        let child = Command::new("git")
            .args([
                "daemon",
                "--enable=receive-pack",
                "--export-all",
                "--reuseaddr",
                "--informative-errors",
                &format!("--base-path={base}"),
                "--listen=127.0.0.1",
                &format!("--port={}", self.port),
                &base,
            ])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: stopping it stops the processes serving connections.
            .process_group(0)
            .spawn()
            .expect("git daemon starts");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(c) = self.child.as_mut()
                && matches!(c.try_wait(), Ok(Some(_)))
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The `git://` URL of repository `name` (`team.git` is made by `start`).
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// The bare repository `name` on the server's disk.
    pub fn repo(&self, name: &str) -> PathBuf {
        self.base.path().join(name)
    }

    /// Stops the server (by PID, its whole process group): connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
            // Wait until the port refuses connections.
            let start = Instant::now();
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server again on the same port, serving the same repositories.
    pub fn start_again(&mut self) {
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("git daemon did not start again on port {}", self.port);
    }

    /// The base directory of the served repositories.
    pub fn base(&self) -> &Path {
        self.base.path()
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
