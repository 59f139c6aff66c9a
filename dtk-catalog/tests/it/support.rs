//! Helpers: module directories, `git` on the command line, snapshots of the refs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dtk_catalog::Catalog;

/// A temporary DTK_HOME with a catalog in it.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub catalog: Catalog,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&tmp.path().join("home/catalog")).unwrap();
        Env { tmp, catalog }
    }

    pub fn root(&self) -> &Path {
        self.catalog.root()
    }

    /// A fresh directory under the temporary directory.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join("src").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A module directory `name` declaring `id` at `version` with `deps`.
    pub fn module(&self, name: &str, id: &str, version: &str, deps: &[(&str, &str)]) -> PathBuf {
        let d = self.dir(name);
        write_module(&d, id, version, deps);
        d
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(self.root(), args)
    }

    pub fn refs(&self) -> BTreeMap<String, String> {
        refs(self.root())
    }
}

/// Writes `dtk.module.yaml` (and a script) into `dir`.
pub fn write_module(dir: &Path, id: &str, version: &str, deps: &[(&str, &str)]) {
    let mut text = format!("dsl_version: 1.0.0\nmodule: {id}\nversion: {version}\n");
    if !deps.is_empty() {
        text.push_str("dependencies:\n");
        for (m, r) in deps {
            text.push_str(&format!("  {m}: \"{r}\"\n"));
        }
    }
    text.push_str(
        "component_defs:\n  web:\n    attributes:\n      port: {type: integer, default: 8080}\n      \
         message: {type: string, required: true}\n    actions:\n      create:\n        \
         commands:\n        - RUN ./bin/start --port {{port}}\n",
    );
    std::fs::write(dir.join("dtk.module.yaml"), text).unwrap();
}

pub fn write(dir: &Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

#[cfg(unix)]
pub fn make_executable(dir: &Path, rel: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(rel);
    let mut perm = std::fs::metadata(&p).unwrap().permissions();
    perm.set_mode(0o755);
    std::fs::set_permissions(p, perm).unwrap();
}

/// Runs `git` in the catalog (a bare repository) and returns its stdout; panics on failure.
pub fn git(root: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(root)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", root)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every reference of the catalog and its target, as `git for-each-ref` sees them.
pub fn refs(root: &Path) -> BTreeMap<String, String> {
    git(root, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

/// `git fsck --strict` passes.
pub fn fsck(root: &Path) {
    git(root, &["fsck", "--strict", "--no-dangling"]);
}

/// Every file under `dir`, relative, sorted (to compare object stores).
pub fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
