//! Tests of the `dtk` binary: exit statuses, human output and `--json` documents.
//! Each test runs the built binary against its own temporary `DTK_HOME`.

// Helpers outside `#[test]` functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

mod json;
mod module;
mod ui;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The output of one `dtk` run.
pub struct Run {
    /// The exit status.
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// The stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary DTK_HOME and a place for module sources.
pub struct Home {
    /// Holds `home/` (DTK_HOME) and `src/` (module sources).
    pub tmp: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Home {
        Home {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
}

impl Home {
    /// A fresh, empty one.
    pub fn new() -> Home {
        Home::default()
    }

    /// The DTK_HOME directory (not created: dtk creates it).
    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// Runs `dtk --home HOME ARGS`.
    pub fn dtk(&self, args: &[&str]) -> Run {
        let mut all = vec!["--home".to_owned(), self.home().display().to_string()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        dtk(&all, &[])
    }

    /// A module source directory `name` with `text` as its dtk.module.yaml.
    pub fn module(&self, name: &str, text: &str) -> PathBuf {
        let d = self.tmp.path().join("src").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dtk.module.yaml"), text).unwrap();
        d
    }
}

/// Runs the `dtk` binary with `args` and extra environment variables.
pub fn dtk(args: &[String], env: &[(&str, &Path)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dtk"));
    cmd.args(args)
        .env_remove("DTK_HOME")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}
