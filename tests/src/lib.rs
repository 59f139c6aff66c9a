//! Shared helpers for the end-to-end tests: running the real `dtk` binary against a
//! temporary `DTK_HOME`, and small checks on what it leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod dtk;
pub mod harness;
pub mod secrets;

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
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
