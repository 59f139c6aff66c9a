//! The harness of the reliability suites (crash, concurrency, bad input, security): a
//! temporary `DTK_HOME` driven through the real `dtk` binary ([`crate::dtk::dtk_binary`]),
//! captured output and exit status, the state of every repository under the home for
//! before/after comparisons, `git fsck`, and a seeded random generator.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

/// The `dtk` binary under test (found once).
pub fn dtk_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(crate::dtk::dtk_binary)
}

/// What one `dtk` invocation did.
#[derive(Clone)]
pub struct CliRun {
    /// The arguments, for messages.
    pub args: Vec<String>,
    /// The exit status; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl fmt::Debug for CliRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dtk {:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl CliRun {
    /// Panics unless the run exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.no_panic();
        assert_eq!(self.code, Some(0), "{self:?}");
        self
    }

    /// Panics unless the run was refused: exit status 1, no panic.
    #[track_caller]
    pub fn refused(&self) -> &Self {
        self.no_panic();
        assert_eq!(self.code, Some(1), "expected a refusal (exit 1): {self:?}");
        self
    }

    /// Panics if the process panicked (exit status 101, or "panicked" in its output).
    #[track_caller]
    pub fn no_panic(&self) -> &Self {
        assert_ne!(self.code, Some(101), "dtk panicked: {self:?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "dtk panicked: {self:?}"
        );
        self
    }

    /// stdout then stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// A `DTK_HOME` in a temporary directory, removed when dropped.
pub struct CliHome {
    dir: TempDir,
}

impl Default for CliHome {
    fn default() -> Self {
        Self::new()
    }
}

impl CliHome {
    /// A fresh, empty home.
    pub fn new() -> Self {
        CliHome {
            dir: tempfile::Builder::new()
                .prefix("dtk-e2e-")
                .tempdir()
                .expect("a temporary directory"),
        }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The catalog repository.
    pub fn catalog(&self) -> PathBuf {
        self.path().join("catalog")
    }

    /// The directory (and repository) of service instance `name`.
    pub fn service_dir(&self, name: &str) -> PathBuf {
        self.path().join("services").join(name)
    }

    /// The sandbox of `node` of service `name` on the local target.
    pub fn sandbox(&self, name: &str, node: &str) -> PathBuf {
        self.path().join("sandboxes").join(name).join(node)
    }

    /// The directory that the command actions of module `module` (`NS/NAME`) run in on
    /// `node` of service `name` on the local target: the module's files there.
    pub fn module_sandbox(&self, name: &str, node: &str, module: &str) -> PathBuf {
        self.sandbox(name, node).join("modules").join(module)
    }

    /// A `dtk` command with this home (not run yet): for spawning and killing.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(dtk_bin());
        cmd.args(args)
            .env("DTK_HOME", self.path())
            .env_remove("AWS_ENDPOINT_URL")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `dtk ARGS` to its end and captures what it did.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> CliRun {
        capture(self.command(args), args)
    }

    /// Runs `dtk ARGS` in `cwd`.
    pub fn run_in<S: AsRef<std::ffi::OsStr>>(&self, cwd: &Path, args: &[S]) -> CliRun {
        let mut cmd = self.command(args);
        cmd.current_dir(cwd);
        capture(cmd, args)
    }

    /// The service instances present (directories under `services/`).
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path().join("services"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every repository's refs and HEAD, and every instance's work tree, for comparing
    /// before and after a refused command.
    pub fn snapshot(&self) -> HomeSnapshot {
        let mut repos = BTreeMap::new();
        let catalog = self.catalog();
        if catalog.exists() {
            repos.insert("catalog".to_owned(), repo_refs(&catalog));
        }
        let mut trees = BTreeMap::new();
        for name in self.services() {
            let dir = self.service_dir(&name);
            if dir.join(".git").exists() {
                repos.insert(format!("services/{name}"), repo_refs(&dir));
            }
            trees.insert(name, work_tree(&dir));
        }
        // The secret store is outside every repository, and must not change either.
        let secrets = self.path().join("secrets");
        if secrets.exists() {
            trees.insert("(secrets)".to_owned(), work_tree(&secrets));
        }
        HomeSnapshot { repos, trees }
    }

    /// Runs `git fsck --strict` on the catalog and every instance repository.
    #[track_caller]
    pub fn fsck_all(&self) {
        if self.catalog().exists() {
            git_fsck(&self.catalog());
        }
        for name in self.services() {
            let dir = self.service_dir(&name);
            if dir.join(".git").exists() {
                git_fsck(&dir);
            }
        }
    }
}

fn capture<S: AsRef<std::ffi::OsStr>>(mut cmd: Command, args: &[S]) -> CliRun {
    let out = cmd.output().expect("dtk starts");
    CliRun {
        args: args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The refs and HEAD of every repository under a home, and each instance's work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeSnapshot {
    /// Repository (relative to the home) → `git for-each-ref` and HEAD.
    pub repos: BTreeMap<String, String>,
    /// Service → file (relative path) → content digest; `.git`, the lock file and the
    /// parse cache (`.dtk/parsed/`) excepted.
    pub trees: BTreeMap<String, BTreeMap<String, String>>,
}

impl HomeSnapshot {
    /// Panics with the differences when `other` differs.
    #[track_caller]
    pub fn assert_same(&self, other: &HomeSnapshot, what: &str) {
        if self == other {
            return;
        }
        let mut diffs = Vec::new();
        for (k, v) in &self.repos {
            if other.repos.get(k) != Some(v) {
                diffs.push(format!(
                    "repository {k}: refs {v:?} -> {:?}",
                    other.repos.get(k)
                ));
            }
        }
        for k in other.repos.keys() {
            if !self.repos.contains_key(k) {
                diffs.push(format!("repository {k} appeared"));
            }
        }
        for (svc, files) in &self.trees {
            let after = other.trees.get(svc).cloned().unwrap_or_default();
            for (f, d) in files {
                match after.get(f) {
                    None => diffs.push(format!("{svc}: {f} removed")),
                    Some(d2) if d2 != d => diffs.push(format!("{svc}: {f} changed")),
                    _ => {}
                }
            }
            for f in after.keys() {
                if !files.contains_key(f) {
                    diffs.push(format!("{svc}: {f} added"));
                }
            }
        }
        for svc in other.trees.keys() {
            if !self.trees.contains_key(svc) {
                diffs.push(format!("service {svc} appeared"));
            }
        }
        panic!("{what} changed the home:\n  {}", diffs.join("\n  "));
    }
}

/// `git ARGS` in `dir`, whatever its status, without the user's git configuration.
pub fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("git runs")
}

/// `git ARGS` in `dir`; panics when git fails. Returns stdout.
#[track_caller]
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git fsck --strict` of the repository at `dir` (bare or not) passes.
#[track_caller]
pub fn git_fsck(dir: &Path) {
    let out = git_output(dir, &["fsck", "--strict", "--no-progress"]);
    assert!(
        out.status.success(),
        "git fsck --strict {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo_refs(dir: &Path) -> String {
    let refs = git_ok(dir, &["for-each-ref", "--format=%(refname) %(objectname)"]);
    let head = git_output(dir, &["rev-parse", "HEAD"]);
    format!(
        "{refs}HEAD {}",
        String::from_utf8_lossy(&head.stdout).trim()
    )
}

fn work_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The lock, and the parse cache, whose entries change no result.
            if rel == ".git" || rel == ".dtk/lock" || rel == ".dtk/parsed" {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&p).unwrap_or_default();
                out.insert(rel, format!("symlink {}", target.display()));
            } else {
                let data = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, format!("{} bytes, {:016x}", data.len(), fnv(&data)));
            }
        }
    }
    out
}

/// FNV-1a: enough to tell contents apart in a test.
fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Writes a module directory `name` under `work` with `text` as its `dtk.module.yaml`;
/// returns the directory.
pub fn module_dir(work: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).expect("a module directory");
    std::fs::write(dir.join("dtk.module.yaml"), text).expect("dtk.module.yaml written");
    dir
}

/// The processes (other than this one) whose working directory is inside `dir`: actions
/// that outlived a killed `dtk`.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    dtk_target_local::processes_in(dir)
}

/// Waits (up to `limit`) until no process runs inside `dir`; returns whether none does.
pub fn wait_no_processes_under(dir: &Path, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if processes_under(dir).is_empty() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A small seeded random generator (SplitMix64): reproducible runs from a printed seed.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    /// A seed from `var` if set, else from the clock.
    pub fn seed_from_env(var: &str) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos().into())
                    .unwrap_or(1u64)
                    ^ u64::from(std::process::id()) << 32
            })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Reads a count from the environment variable `var`, else `default`.
pub fn count_from_env(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}
