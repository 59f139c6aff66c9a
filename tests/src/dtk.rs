//! The `dtk` binary under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where `cargo build -p dtk-cli` put the `dtk` binary (the target directory of this test
/// binary). Panics with advice when it is missing.
pub fn dtk_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DTK_BIN") {
        return PathBuf::from(p);
    }
    // The test binary lives in TARGET/debug/deps/; dtk in TARGET/debug/.
    let exe = std::env::current_exe().expect("the test binary has a path");
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("dtk");
        if candidate.is_file() {
            return candidate;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    panic!(
        "the dtk binary is not built next to {}; run ./scripts/test (or `cargo build -p dtk-cli` first)",
        exe.display()
    );
}

/// The result of one `dtk` run.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics unless the run exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "dtk failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the run exited 1 (a refused request) without a panic.
    pub fn refused(self) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit 1:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "dtk panicked:\n{}",
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary `DTK_HOME` and the `dtk` binary to run against it.
pub struct Dtk {
    home: tempfile::TempDir,
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Default for Dtk {
    fn default() -> Self {
        Dtk::new()
    }
}

impl Dtk {
    /// A fresh, empty home.
    pub fn new() -> Dtk {
        Dtk {
            home: tempfile::tempdir().expect("a temp dir"),
            bin: dtk_binary(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable to every run.
    pub fn env(mut self, k: &str, v: &str) -> Dtk {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A service's instance repository.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.home().join("services").join(name)
    }

    /// A command ready to run `dtk ARGS` against this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("DTK_HOME", self.home())
            .env_remove("AWS_ENDPOINT_URL");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `dtk ARGS` and waits.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("dtk runs"))
    }
}
