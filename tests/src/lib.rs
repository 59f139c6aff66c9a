//! Shared helpers for the end-to-end tests: running the real `dtk` binary against a
//! temporary `DTK_HOME`, and small checks on what it leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod dtk;
pub mod gitd;
pub mod harness;
pub mod secrets;
pub mod sshd;

use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A bundled example module's directory (`examples/modules/NAME`).
pub fn example(name: &str) -> PathBuf {
    workspace().join("examples/modules").join(name)
}

/// Runs git in `dir`; panics with git's output when it fails. Returns stdout.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    harness::git_ok(dir, args)
}

/// Sends `signal` (`INT`, `KILL`, ...) to process `pid` alone with `kill`; whether it was
/// sent (not when the process is gone).
#[must_use]
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs")
        .success()
}
