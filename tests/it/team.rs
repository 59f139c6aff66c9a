//! Teams through the CLI: two (or more) `DTK_HOME`s play two machines sharing one git
//! remote, served by a real `git daemon --enable=receive-pack` on 127.0.0.1 (and once
//! over `ssh://`, by the sshd fixture).
//!
//! Every module here appends one line per action to a log file outside both homes, so a
//! test counts how often each action ran on any machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dtk_tests::gitd::GitDaemon;
use dtk_tests::harness::{CliHome, CliRun, git_ok, git_output};

/// One machine: a home and who works there.
struct Machine {
    home: CliHome,
    who: &'static str,
}

impl Machine {
    /// A machine using the remote at `url`.
    fn new(who: &'static str, url: &str) -> Machine {
        let m = Machine {
            home: CliHome::new(),
            who,
        };
        m.run(&["remote", "set", url]).ok();
        m
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.home.command(args);
        c.env("GIT_AUTHOR_NAME", self.who)
            .env("GIT_AUTHOR_EMAIL", format!("{}@example.com", self.who))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        c
    }

    fn run(&self, args: &[&str]) -> CliRun {
        let out = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("dtk runs");
        CliRun {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dtk starts")
    }

    fn dir(&self, service: &str) -> PathBuf {
        self.home.service_dir(service)
    }
}

fn finish(child: Child, args: &[&str]) -> CliRun {
    let out = child.wait_with_output().expect("dtk ends");
    CliRun {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A work directory with the module `team/chain` (three steps a → b → c, each pausing
/// `pause_b` seconds for b) and the runs log every action appends to.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new(pause_b: &str) -> Work {
        let w = Work {
            dir: tempfile::tempdir().unwrap(),
        };
        w.module("chain", "1.0.0", pause_b, "");
        w
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("runs.log")
    }

    /// Writes module `team/chain` at `version` into `modules/NAME`; returns its dir.
    fn module(&self, name: &str, version: &str, pause_b: &str, extra: &str) -> PathBuf {
        let dir = self.dir.path().join("modules").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = self.log();
        let log = log.display();
        std::fs::write(
            dir.join("dtk.module.yaml"),
            format!(
                r#"dsl_version: 1.0.0
module: team/chain
version: {version}
description: three steps, a -> b -> c{extra}
component_defs:
  step:
    attributes:
      label: {{type: string, required: true}}
      pause: {{type: string, default: "0"}}
      msg: {{type: string, default: hello}}
    actions:
      create:
        commands:
        - RUN sleep {{{{pause}}}}; echo "{{{{label}}}} $msg" >> {log}
      ping:
        commands:
        - RUN echo "ping-{{{{label}}}}" >> {log}
  guarded:
    attributes:
      token: {{type: string, secret: true}}
      tag: {{type: string, default: t1}}
    actions:
      create:
        commands:
        - RUN test -n "$token" && echo "guarded with a token of ${{#token}} characters" >> {log}
assemblies:
  chain:
    components:
    - step[a]: {{attributes: {{label: a}}}}
    - step[b]: {{attributes: {{label: b, pause: "{pause_b}"}}, links: ["step[a]"]}}
    - step[c]: {{attributes: {{label: c}}, links: ["step[b]"]}}
  guarded:
    components:
    - guarded
"#
            ),
        )
        .unwrap();
        dir
    }

    /// How many times the action with `label` ran, on any machine.
    fn runs(&self, label: &str) -> usize {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(label))
            .count()
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The remote's references under `refs/dtk/`, by name.
fn remote_refs(server: &Path) -> Vec<(String, String)> {
    git_ok(
        server,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/dtk/",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

fn remote_ref(server: &Path, name: &str) -> Option<String> {
    remote_refs(server)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// The journals in the remote's state commit of `service`, concatenated.
fn remote_journal(server: &Path, service: &str) -> String {
    let state = format!("refs/dtk/services/{service}/state");
    let ls = git_output(
        server,
        &["ls-tree", "--name-only", &format!("{state}:journal")],
    );
    let mut text = String::new();
    for name in String::from_utf8_lossy(&ls.stdout).lines() {
        let out = git_output(server, &["show", &format!("{state}:journal/{name}")]);
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    text
}

#[test]
fn a_published_module_is_seen_by_the_other_machine_and_a_clone_converges_to_nothing() {
    let work = Work::new("0");
    let server = GitDaemon::start();
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);

    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    // Bob sees it without installing anything.
    let list = bob.run(&["--json", "module", "list"]);
    list.ok();
    assert!(
        list.stdout.contains("team/chain"),
        "bob's catalog lacks the module: {list:?}"
    );
    let show = bob.run(&["--json", "module", "show", "team/chain"]);
    show.ok();
    assert!(show.stdout.contains("1.0.0"), "{show:?}");
    // Bob can stage from it (and the stage reaches the remote).
    bob.run(&["service", "stage", "team/chain", "chain", "-n", "bobs"])
        .ok();
    assert!(remote_ref(&server.repo("team.git"), "refs/dtk/services/bobs/desired").is_some());

    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    // A second stage under the same name, elsewhere, is refused: the name is taken.
    let taken = bob.run(&["service", "stage", "team/chain", "chain", "-n", "shop"]);
    taken.refused();
    assert!(taken.stderr.contains("exists on the remote"), "{taken:?}");
    assert!(!bob.dir("shop").exists(), "the refused stage left a copy");

    alice.run(&["service", "converge", "shop"]).ok();
    assert_eq!((work.runs("a"), work.runs("b"), work.runs("c")), (1, 1, 1));

    let cloned = bob.run(&["--json", "service", "clone", "shop"]);
    cloned.ok();
    assert_eq!(cloned.json()["components"], 3, "{cloned:?}");
    let converge = bob.run(&["--json", "service", "converge", "shop"]);
    converge.ok();
    let report = converge.json();
    assert_eq!(
        report["tasks"].as_array().map(Vec::len),
        Some(0),
        "{converge:?}"
    );
    assert_eq!(report["remote"]["pushed"], true);
    // Nothing was made twice.
    assert_eq!((work.runs("a"), work.runs("b"), work.runs("c")), (1, 1, 1));
    // Bob knows what Alice's converge did.
    let status = bob.run(&["--json", "service", "status", "shop"]);
    status.ok();
    let doc = status.json();
    assert_eq!(doc["last_converge"]["status"], "succeeded");
    for c in doc["components"].as_array().unwrap() {
        assert_eq!(c["state"], "converged", "{c}");
    }
    bob.home.fsck_all();
    alice.home.fsck_all();
    dtk_tests::harness::git_fsck(&server.repo("team.git"));
}

#[test]
fn edits_flow_both_ways_and_conflicts_keep_everything() {
    let work = Work::new("0");
    let server = GitDaemon::start();
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    alice.run(&["service", "converge", "shop"]).ok();
    bob.run(&["service", "clone", "shop"]).ok();

    // Alice edits and converges; Bob's converge pulls her commit first and runs nothing.
    alice
        .run(&[
            "service",
            "set-attribute",
            "shop",
            "step[a]/msg",
            "from-alice",
        ])
        .ok();
    alice.run(&["service", "converge", "shop"]).ok();
    assert_eq!(work.runs("a"), 2);
    bob.run(&["service", "converge", "shop"]).ok();
    assert_eq!(work.runs("a"), 2, "bob ran alice's change again");
    let yaml = std::fs::read_to_string(bob.dir("shop").join("dtk.service.yaml")).unwrap();
    assert!(yaml.contains("from-alice"), "{yaml}");

    // Bob edits and pushes without converging; Alice, with an uncommitted edit of her own
    // elsewhere in the file, pulls: both are there.
    bob.run(&[
        "service",
        "set-attribute",
        "shop",
        "step[c]/msg",
        "from-bob",
    ])
    .ok();
    // Uncommitted edits are not pushed: converge commits them.
    let early = bob.run(&["--json", "service", "push", "shop"]);
    early.ok();
    assert_eq!(early.json()["uncommitted"], 1);
    bob.run(&["service", "converge", "shop"]).ok();
    assert_eq!(work.runs("c"), 2);
    alice
        .run(&[
            "service",
            "set-attribute",
            "shop",
            "step[a]/msg",
            "alice-again",
        ])
        .ok();
    let pulled = alice.run(&["--json", "service", "pull", "shop"]);
    pulled.ok();
    assert_eq!(pulled.json()["outcome"], "fast_forward", "{pulled:?}");
    let yaml = std::fs::read_to_string(alice.dir("shop").join("dtk.service.yaml")).unwrap();
    assert!(
        yaml.contains("from-bob") && yaml.contains("alice-again"),
        "{yaml}"
    );
    let diff = alice.run(&["--json", "service", "diff", "shop"]);
    assert!(
        diff.stdout.contains("alice-again"),
        "the edit is still uncommitted: {diff:?}"
    );

    // Both change the same line: Bob pushes first; Alice's pull marks the conflict, her
    // converge is refused until she resolves it, and nothing is lost.
    bob.run(&["service", "set-attribute", "shop", "step[b]/msg", "bob-b"])
        .ok();
    bob.run(&["service", "converge", "shop"]).ok();
    alice
        .run(&["service", "set-attribute", "shop", "step[b]/msg", "alice-b"])
        .ok();
    let pulled = alice.run(&["--json", "service", "pull", "shop"]);
    pulled.refused();
    let doc = pulled.json();
    assert_eq!(doc["conflicts"][0], "dtk.service.yaml", "{pulled:?}");
    let yaml = std::fs::read_to_string(alice.dir("shop").join("dtk.service.yaml")).unwrap();
    assert!(
        yaml.contains("<<<<<<<") && yaml.contains("alice-b") && yaml.contains("bob-b"),
        "{yaml}"
    );
    let refused = alice.run(&["service", "converge", "shop"]);
    refused.refused();
    // Resolve: keep Alice's value.
    let resolved = resolve(&yaml, "alice-b");
    std::fs::write(alice.dir("shop").join("dtk.service.yaml"), resolved).unwrap();
    alice.run(&["service", "converge", "shop"]).ok();
    let server_yaml = git_ok(
        &server.repo("team.git"),
        &["show", "refs/dtk/services/shop/desired:dtk.service.yaml"],
    );
    assert!(
        server_yaml.contains("alice-b") && server_yaml.contains("alice-again"),
        "{server_yaml}"
    );
    // Bob's history is in it: his commits are ancestors of what the remote holds now.
    let log = git_ok(
        &server.repo("team.git"),
        &["log", "--format=%an %s", "refs/dtk/services/shop/desired"],
    );
    assert!(log.contains("bob") || log.lines().count() >= 5, "{log}");
    alice.home.fsck_all();
}

/// Keeps the side of each conflict whose text contains `keep`.
fn resolve(text: &str, keep: &str) -> String {
    let mut out = String::new();
    let mut side: Vec<&str> = Vec::new();
    let mut sides: Vec<Vec<&str>> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("<<<<<<<") {
            inside = true;
            side.clear();
            sides.clear();
        } else if inside && (line.starts_with("=======") || line.starts_with("|||||||")) {
            sides.push(std::mem::take(&mut side));
        } else if inside && line.starts_with(">>>>>>>") {
            sides.push(std::mem::take(&mut side));
            inside = false;
            let chosen = sides
                .iter()
                .find(|s| s.iter().any(|l| l.contains(keep)))
                .cloned()
                .unwrap_or_default();
            for l in chosen {
                out.push_str(l);
                out.push('\n');
            }
        } else if inside {
            side.push(line);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_second_machine_is_refused_while_the_first_converges_naming_it() {
    let work = Work::new("4");
    let server = GitDaemon::start();
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    bob.run(&["service", "clone", "shop"]).ok();

    let args = ["service", "converge", "shop"];
    let first = alice.spawn(&args);
    let pid = first.id();
    let lock = "refs/dtk/services/shop/lock";
    wait_for(
        "alice's lock on the remote",
        Duration::from_secs(30),
        || remote_ref(&server.repo("team.git"), lock).is_some(),
    );
    let second = bob.run(&["service", "converge", "shop"]);
    second.refused();
    let msg = second.stderr.clone();
    assert!(
        msg.contains("alice <alice@example.com>")
            && msg.contains(&format!("pid {pid}"))
            && msg.contains("converge")
            && msg.contains("since"),
        "the refusal does not name the holder: {second:?}"
    );
    // Also an exec and a delete.
    bob.run(&["service", "delete", "shop"]).refused();
    let first = finish(first, &args);
    first.ok();
    assert!(
        remote_ref(&server.repo("team.git"), lock).is_none(),
        "the lock was not released"
    );
    // Now Bob may: nothing left to do.
    let after = bob.run(&["--json", "service", "converge", "shop"]);
    after.ok();
    assert_eq!(
        after.json()["tasks"].as_array().map(Vec::len),
        Some(0),
        "alice: {first:?}\nbob: {after:?}"
    );
    assert_eq!(work.runs("b"), 1);
}

/// A run's lock push expects the remote to hold what this machine last saw, and fetches
/// only when it does not. A converge behind the remote then pulls the other machine's
/// commit under its own uncommitted edit (its commit lands on top, no merge, nothing run
/// twice); one refused because another machine holds the lock keeps its edit
/// uncommitted.
#[test]
fn a_converge_behind_the_remote_pulls_under_its_edits_and_a_refused_one_keeps_them() {
    let work = Work::new("0");
    let server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    alice.run(&["service", "converge", "shop"]).ok();
    bob.run(&["service", "clone", "shop"]).ok();
    let desired = "refs/dtk/services/shop/desired";

    alice
        .run(&[
            "service",
            "set-attribute",
            "shop",
            "step[a]/msg",
            "from-alice",
        ])
        .ok();
    alice.run(&["service", "converge", "shop"]).ok();
    let alices = remote_ref(&repo, desired).unwrap();
    bob.run(&[
        "service",
        "set-attribute",
        "shop",
        "step[c]/msg",
        "from-bob",
    ])
    .ok();
    let run = bob.run(&["--json", "service", "converge", "shop"]);
    run.ok();
    assert_eq!(run.json()["remote"]["pushed"], true, "{run:?}");
    assert_eq!((work.runs("a"), work.runs("b"), work.runs("c")), (2, 1, 2));
    let yaml = git_ok(&repo, &["show", &format!("{desired}:dtk.service.yaml")]);
    assert!(
        yaml.contains("from-alice") && yaml.contains("from-bob"),
        "{yaml}"
    );
    let parents = git_ok(&repo, &["rev-list", "--parents", "-n", "1", desired]);
    let parents: Vec<&str> = parents.split_whitespace().skip(1).collect();
    assert_eq!(parents, [alices.as_str()], "bob's commit is not on alice's");

    // Another machine holds the lock (a lock commit made by hand, its lease far ahead).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let info = serde_json::json!({
        "service": "shop", "operation": "delete", "holder": "carol <carol@example.com>",
        "user": "carol", "host": "elsewhere", "pid": 4242, "home": "0123456789abcdef0123456789abcdef",
        "nonce": "by-hand", "started_at_ms": now, "renewed_at_ms": now,
        "expires_at_ms": now + 600_000, "lease_ms": 600_000
    });
    let file = work.dir.path().join("lock.json");
    std::fs::write(&file, info.to_string()).unwrap();
    let blob = git_ok(&repo, &["hash-object", "-w", file.to_str().unwrap()]);
    let tree = {
        let mut c = std::process::Command::new("git");
        c.current_dir(&repo)
            .args(["mktree"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write as _;
        writeln!(
            child.stdin.take().unwrap(),
            "100644 blob {}\tlock.json",
            blob.trim()
        )
        .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let lock = git_ok(
        &repo,
        &[
            "-c",
            "user.name=carol",
            "-c",
            "user.email=carol@example.com",
            "commit-tree",
            tree.trim(),
            "-m",
            "lock",
        ],
    );
    let lock_ref = "refs/dtk/services/shop/lock";
    git_ok(&repo, &["update-ref", lock_ref, lock.trim()]);

    let head = git_ok(&bob.dir("shop"), &["rev-parse", "HEAD"]);
    bob.run(&["service", "set-attribute", "shop", "step[b]/msg", "bob-b"])
        .ok();
    let refused = bob.run(&["service", "converge", "shop"]);
    refused.refused();
    assert!(
        refused.stderr.contains(
            "locked by carol <carol@example.com> (user carol on elsewhere, pid 4242), delete since"
        ),
        "{refused:?}"
    );
    assert_eq!(
        git_ok(&bob.dir("shop"), &["rev-parse", "HEAD"]),
        head,
        "the refused converge committed the edit"
    );
    let diff = bob.run(&["service", "diff", "shop"]);
    assert!(diff.stdout.contains("bob-b"), "{diff:?}");
    assert_eq!(work.runs("b"), 1);
    // The lock goes: the edit is committed and converged.
    git_ok(&repo, &["update-ref", "-d", lock_ref]);
    bob.run(&["service", "converge", "shop"]).ok();
    assert_eq!(work.runs("b"), 2);
    let yaml = git_ok(&repo, &["show", &format!("{desired}:dtk.service.yaml")]);
    assert!(yaml.contains("bob-b"), "{yaml}");
    bob.home.fsck_all();
}

/// Every run that writes the service's actual state takes the remote lock: exec, refresh
/// and import on another machine are refused while a converge holds it, naming the holder
/// (identity, user, host, pid, operation, since); refresh takes it once it is free, and
/// its record reaches the remote.
#[test]
fn exec_refresh_and_import_are_refused_while_another_machine_holds_the_lock() {
    let work = Work::new("4");
    let server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    bob.run(&["service", "clone", "shop"]).ok();

    let args = ["service", "converge", "shop"];
    let first = alice.spawn(&args);
    let pid = first.id();
    let lock = "refs/dtk/services/shop/lock";
    wait_for(
        "alice's lock on the remote",
        Duration::from_secs(30),
        || remote_ref(&repo, lock).is_some(),
    );
    let host = git_ok(&repo, &["show", &format!("{lock}:lock.json")]);
    let host: serde_json::Value = serde_json::from_str(&host).unwrap();
    let (host, user) = (
        host["host"].as_str().unwrap().to_owned(),
        host["user"].as_str().unwrap().to_owned(),
    );
    for cmd in [
        vec!["service", "exec", "shop", "step[a].ping"],
        vec!["service", "refresh", "shop"],
        vec!["service", "import", "shop", "step[a]", "some-id"],
    ] {
        let r = bob.run(&cmd);
        r.refused();
        assert!(
            r.stderr.contains("locked by alice <alice@example.com>")
                && r.stderr
                    .contains(&format!("(user {user} on {host}, pid {pid})"))
                && r.stderr.contains("converge since"),
            "{cmd:?} does not name the holder: {r:?}"
        );
    }
    assert_eq!(work.runs("ping-a"), 0, "the refused exec ran");
    let first = finish(first, &args);
    first.ok();
    assert!(
        remote_ref(&repo, lock).is_none(),
        "the lock was not released"
    );
    let records = remote_ref(&repo, "refs/dtk/services/shop/converges").unwrap();

    // Free: bob's refresh takes the lock, and its record and state reach the remote.
    let refreshed = bob.run(&["--json", "service", "refresh", "shop"]);
    refreshed.ok();
    assert_eq!(refreshed.json()["remote"]["pushed"], true, "{refreshed:?}");
    let record = git_ok(
        &repo,
        &["show", "refs/dtk/services/shop/converges:record.json"],
    );
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["kind"], "refresh", "{record:#}");
    let parent = git_ok(&repo, &["rev-parse", "refs/dtk/services/shop/converges^"]);
    assert_eq!(parent.trim(), records, "refresh's record is not on alice's");
    assert!(remote_ref(&repo, lock).is_none(), "refresh kept the lock");
    let text = bob.run(&["service", "refresh", "shop"]);
    text.ok();
    assert!(
        text.stdout
            .contains(&format!("remote: state and record pushed to {url}")),
        "{text:?}"
    );
    // And bob's exec, now that nobody holds the lock.
    bob.run(&["service", "exec", "shop", "step[a].ping"]).ok();
    assert_eq!(work.runs("ping-a"), 1);
    assert!(remote_ref(&repo, lock).is_none(), "exec kept the lock");
}

#[test]
fn a_killed_holder_is_taken_over_after_its_lease_and_what_it_pushed_is_not_run_again() {
    let work = Work::new("4");
    let server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    bob.run(&["service", "clone", "shop"]).ok();

    let mut holder = alice.spawn(&["service", "converge", "shop", "--lease", "3s"]);
    // Kill it once the completion of `a` reached the remote (b is running then).
    wait_for(
        "a checkpoint holding step[a]'s completion",
        Duration::from_secs(30),
        || {
            let j = remote_journal(&repo, "shop");
            j.lines()
                .any(|l| l.contains("\"kind\":\"done\"") && l.contains("step[a]"))
        },
    );
    let held_lock = remote_ref(&repo, "refs/dtk/services/shop/lock").expect("a lock");
    let stale_state = remote_ref(&repo, "refs/dtk/services/shop/state").expect("a state");
    holder.kill().unwrap();
    let _ = holder.wait();
    assert_eq!(
        work.runs("c"),
        0,
        "c ran before the kill; the test is too slow"
    );

    // Before the lease ends, Bob is refused, and told who holds it.
    let early = bob.run(&["service", "converge", "shop"]);
    early.refused();
    assert!(early.stderr.contains("alice"), "{early:?}");

    // After it, Bob takes over and resumes.
    let start = Instant::now();
    let report = loop {
        let r = bob.run(&["--json", "service", "converge", "shop"]);
        if r.code == Some(0) {
            break r;
        }
        assert!(
            r.output().contains("locked") && start.elapsed() < Duration::from_secs(20),
            "{r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let doc = report.json();
    assert!(
        doc["resumed_from_journal"].as_u64().unwrap_or(0) >= 1,
        "{report:?}"
    );
    let ran: Vec<&str> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["component"].as_str())
        .collect();
    assert!(!ran.contains(&"step[a]"), "a ran again: {ran:?}");
    assert_eq!(work.runs("a"), 1, "a's pushed completion ran again");
    assert_eq!(work.runs("c"), 1);

    // The killed holder's push, were it to come now, is refused: the remote checks the
    // lock it held (fencing). This is the push its lease keeper would make.
    let alice_repo = alice.dir("shop");
    let new_lock = git_ok(
        &alice_repo,
        &[
            "-c",
            "user.name=alice",
            "-c",
            "user.email=alice@example.com",
            "commit-tree",
            "-m",
            "stale renewal",
            &format!("{held_lock}^{{tree}}"),
        ],
    );
    let stale = git_output(
        &alice_repo,
        &[
            "push",
            "--porcelain",
            "--atomic",
            &format!("--force-with-lease=refs/dtk/services/shop/lock:{held_lock}"),
            &format!("--force-with-lease=refs/dtk/services/shop/state:{stale_state}"),
            &url,
            &format!("{}:refs/dtk/services/shop/lock", new_lock.trim()),
            &format!("{stale_state}:refs/dtk/services/shop/state"),
        ],
    );
    assert!(!stale.status.success(), "the stale push was accepted");
    assert_ne!(
        remote_ref(&repo, "refs/dtk/services/shop/state").as_deref(),
        Some(stale_state.as_str())
    );
    // Alice comes back: her converge keeps the remote's state and has nothing to do.
    let back = alice.run(&["--json", "service", "converge", "shop"]);
    back.ok();
    assert_eq!(
        back.json()["tasks"].as_array().map(Vec::len),
        Some(0),
        "{back:?}"
    );
    assert_eq!((work.runs("a"), work.runs("c")), (1, 1));
    alice.home.fsck_all();
}

#[test]
fn a_paused_holder_is_fenced_once_another_machine_took_over() {
    let work = Work::new("3");
    let server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    bob.run(&["service", "clone", "shop"]).ok();

    let args = ["service", "converge", "shop", "--lease", "2s"];
    let holder = alice.spawn(&args);
    let pid = holder.id().to_string();
    wait_for("step a", Duration::from_secs(30), || work.runs("a") == 1);
    // Alice's process stops (a laptop lid, a stuck VM); its lease runs out.
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let start = Instant::now();
    loop {
        let r = bob.run(&["service", "converge", "shop"]);
        if r.code == Some(0) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after_bob = remote_refs(&repo);
    assert_eq!(work.runs("c"), 1);
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let alice_run = finish(holder, &args);
    alice_run.refused();
    assert!(
        alice_run.output().contains("lease") || alice_run.output().contains("taken over"),
        "{alice_run:?}"
    );
    // Alice started nothing more, and pushed nothing over Bob's results.
    assert_eq!(work.runs("c"), 1, "the fenced holder ran c");
    assert_eq!(
        remote_refs(&repo),
        after_bob,
        "the fenced holder changed the remote"
    );
}

#[test]
fn two_machines_publishing_one_version_at_once_one_wins_and_the_other_is_told_who() {
    let work = Work::new("0");
    let server = GitDaemon::start();
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    for round in 0..3 {
        let version = format!("2.{round}.0");
        let a = work.module("a", &version, "0", " (alice's)");
        let b = work.module("b", &version, "0", " (bob's)");
        let args_a = ["module", "install", a.to_str().unwrap()];
        let args_b = ["module", "install", b.to_str().unwrap()];
        let pa = alice.spawn(&args_a);
        let pb = bob.spawn(&args_b);
        let ra = finish(pa, &args_a);
        let rb = finish(pb, &args_b);
        let (winner, loser, who) = match (ra.code, rb.code) {
            (Some(0), Some(1)) => (ra, rb, "alice"),
            (Some(1), Some(0)) => (rb, ra, "bob"),
            _ => panic!("not exactly one winner:\n{ra:?}\n{rb:?}"),
        };
        winner.ok();
        let tag = format!("refs/dtk/catalog/tags/team/chain/{version}");
        let commit = remote_ref(&server.repo("team.git"), &tag).expect("the version is there");
        assert!(
            loser.stderr.contains(&commit)
                && loser.stderr.contains(&format!("{who} <{who}@example.com>")),
            "the loser is not told the winner's commit {commit} and author {who}: {loser:?}"
        );
        let desc = git_ok(
            &server.repo("team.git"),
            &["show", &format!("{tag}:dtk.module.yaml")],
        );
        assert!(desc.contains(&format!("({who}'s)")), "{desc}");
    }
    dtk_tests::harness::git_fsck(&server.repo("team.git"));
}

#[test]
fn secrets_never_reach_the_remote_and_a_machine_without_them_is_refused() {
    const SECRET: &str = "hunter2-correct-horse-battery";
    let work = Work::new("0");
    let server = GitDaemon::start();
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "guarded", "-n", "vault"])
        .ok();
    alice
        .run(&["service", "set-attribute", "vault", "guarded/token", SECRET])
        .ok();
    alice.run(&["service", "converge", "vault"]).ok();
    assert_eq!(work.runs("guarded"), 1);

    // Not in any object of the remote: every blob, tree, commit, whatever it is.
    let all = git_output(
        &server.repo("team.git"),
        &["cat-file", "--batch-all-objects", "--batch"],
    );
    assert!(all.status.success());
    let text = String::from_utf8_lossy(&all.stdout);
    assert!(text.len() > 1000, "the remote holds almost nothing");
    assert!(!text.contains(SECRET), "the secret reached the remote");
    for piece in [&SECRET[..8], &SECRET[9..16]] {
        assert!(
            !text.contains(piece),
            "part of the secret reached the remote"
        );
    }

    // Bob has no secret store entry: his converge is refused, naming what is missing.
    bob.run(&["service", "clone", "vault"]).ok();
    bob.run(&["service", "set-attribute", "vault", "guarded/tag", "t2"])
        .ok();
    let refused = bob.run(&["service", "converge", "vault"]);
    refused.refused();
    assert!(
        refused.stderr.contains("guarded/token")
            && refused.stderr.contains("not set on this machine"),
        "{refused:?}"
    );
    assert_eq!(work.runs("guarded"), 1);
    // Once Bob sets it on his machine, it converges.
    bob.run(&["service", "set-attribute", "vault", "guarded/token", SECRET])
        .ok();
    bob.run(&["service", "converge", "vault"]).ok();
    assert_eq!(work.runs("guarded"), 2);
    let all = git_output(
        &server.repo("team.git"),
        &["cat-file", "--batch-all-objects", "--batch"],
    );
    assert!(!String::from_utf8_lossy(&all.stdout).contains(SECRET));
}

#[test]
fn a_server_that_is_down_is_named_local_edits_are_kept_and_the_next_run_pushes() {
    let work = Work::new("3");
    let mut server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();

    server.stop();
    alice
        .run(&[
            "service",
            "set-attribute",
            "shop",
            "step[a]/msg",
            "offline-edit",
        ])
        .ok();
    let before = alice.home.snapshot();
    for args in [
        vec!["service", "converge", "shop"],
        vec!["service", "pull", "shop"],
        vec!["service", "push", "shop"],
        vec!["service", "clone", "other"],
        vec!["module", "install", m.to_str().unwrap()],
    ] {
        let r = alice.run(&args);
        r.refused();
        assert!(
            r.stderr.contains(&url) && r.stderr.contains("cannot reach"),
            "{args:?} does not name the remote: {r:?}"
        );
    }
    // Nothing changed, the edit is still there.
    alice
        .home
        .snapshot()
        .assert_same(&before, "refused commands with the server down");
    let diff = alice.run(&["service", "diff", "shop"]);
    assert!(diff.stdout.contains("offline-edit"), "{diff:?}");
    assert_eq!(work.runs("a"), 0);

    // The server comes back; a converge loses it in the middle (during b).
    server.start_again();
    let args = ["service", "converge", "shop", "--lease", "2s"];
    let run = alice.spawn(&args);
    wait_for("step a", Duration::from_secs(30), || work.runs("a") == 1);
    server.stop();
    let run = finish(run, &args);
    run.refused();
    assert!(
        run.output().contains("kept on this machine") || run.output().contains("NOT pushed"),
        "{run:?}"
    );
    // b was in flight and finished; the journal and state are kept locally.
    assert_eq!(work.runs("b"), 1);
    // Next run with the server back: it pushes what it did, and finishes the rest.
    server.start_again();
    let next = alice.run(&["--json", "service", "converge", "shop"]);
    next.ok();
    assert_eq!(
        (work.runs("a"), work.runs("b"), work.runs("c")),
        (1, 1, 1),
        "{next:?}"
    );
    let actual = git_ok(&repo, &["show", "refs/dtk/services/shop/state:actual.json"]);
    for c in ["step[a]", "step[b]", "step[c]"] {
        assert!(actual.contains(c), "the remote's state lacks {c}: {actual}");
    }
    let desired = git_ok(
        &repo,
        &["show", "refs/dtk/services/shop/desired:dtk.service.yaml"],
    );
    assert!(desired.contains("offline-edit"), "{desired}");
}

#[test]
fn actual_state_is_restored_from_its_last_commit_when_the_file_is_lost_or_damaged() {
    let work = Work::new("0");
    let home = CliHome::new();
    let m = work.dir.path().join("modules/chain");
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    home.run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    home.run(&["service", "converge", "shop"]).ok();
    let actual = home.service_dir("shop").join(".dtk/actual.json");
    let good = std::fs::read(&actual).unwrap();

    std::fs::remove_file(&actual).unwrap();
    let r = home.run(&["--json", "service", "converge", "shop"]);
    r.ok();
    assert_eq!(r.json()["tasks"].as_array().map(Vec::len), Some(0), "{r:?}");
    assert!(
        r.stderr.contains("restored"),
        "the restore is not reported: {r:?}"
    );
    assert_eq!(std::fs::read(&actual).unwrap(), good);

    std::fs::write(
        &actual,
        b"{\"version\": 1, \"components\": {\"step[a]\": tru",
    )
    .unwrap();
    let r = home.run(&["--json", "service", "converge", "shop"]);
    r.ok();
    assert_eq!(r.json()["tasks"].as_array().map(Vec::len), Some(0), "{r:?}");
    assert_eq!(std::fs::read(&actual).unwrap(), good);
    assert_eq!((work.runs("a"), work.runs("b"), work.runs("c")), (1, 1, 1));
    // The state history is a git history like any other.
    let log = git_ok(
        &home.service_dir("shop"),
        &["log", "--oneline", "refs/dtk/state"],
    );
    assert!(!log.is_empty());
}

#[test]
fn a_remote_over_ssh_works_like_any_other() {
    let work = Work::new("0");
    let sshd = dtk_tests::sshd::Sshd::start();
    let server = tempfile::tempdir().unwrap();
    let bare = server.path().join("team.git");
    git_ok(
        server.path(),
        &["init", "--quiet", "--bare", bare.to_str().unwrap()],
    );
    let known = server.path().join("known_hosts");
    sshd.write_known_hosts(&known);
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        dtk_tests::sshd::current_user(),
        sshd.port(),
        bare.display()
    );
    let ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
        sshd.user_key().display(),
        known.display()
    );
    let machine = |who: &'static str| {
        let m = Machine {
            home: CliHome::new(),
            who,
        };
        let set = m
            .command(&["remote", "set", &url])
            .env("GIT_SSH_COMMAND", &ssh)
            .output()
            .unwrap();
        assert!(
            set.status.success(),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
        m
    };
    let alice = machine("alice");
    let bob = machine("bob");
    let run = |m: &Machine, args: &[&str]| {
        let out = m
            .command(args)
            .env("GIT_SSH_COMMAND", &ssh)
            .output()
            .unwrap();
        CliRun {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let mdir = work.dir.path().join("modules/chain");
    run(&alice, &["module", "install", mdir.to_str().unwrap()]).ok();
    run(
        &alice,
        &["service", "stage", "team/chain", "chain", "-n", "shop"],
    )
    .ok();
    run(&alice, &["service", "converge", "shop"]).ok();
    run(&bob, &["service", "clone", "shop"]).ok();
    let r = run(&bob, &["--json", "service", "converge", "shop"]);
    r.ok();
    assert_eq!(r.json()["tasks"].as_array().map(Vec::len), Some(0), "{r:?}");
    assert_eq!((work.runs("a"), work.runs("c")), (1, 1));
    assert!(sshd.accepted_logins() >= 4, "not over ssh?");
    assert!(remote_ref(&bare, "refs/dtk/services/shop/converges").is_some());
}

#[test]
fn a_lock_is_cleared_by_hand_naming_its_holder_and_the_next_run_resumes() {
    let work = Work::new("4");
    let server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    bob.run(&["service", "clone", "shop"]).ok();

    // Alice's converge dies with a long lease left: nobody can take it over for an hour.
    let mut holder = alice.spawn(&["service", "converge", "shop", "--lease", "1h"]);
    let pid = holder.id();
    wait_for(
        "a checkpoint holding step[a]'s completion",
        Duration::from_secs(30),
        || {
            remote_journal(&repo, "shop")
                .lines()
                .any(|l| l.contains("\"kind\":\"done\"") && l.contains("step[a]"))
        },
    );
    holder.kill().unwrap();
    let _ = holder.wait();
    let lock = "refs/dtk/services/shop/lock";
    assert!(remote_ref(&repo, lock).is_some());
    bob.run(&["service", "converge", "shop"]).refused();

    // Without a terminal and without --force, unlock refuses and names the holder.
    let asked = bob.run(&["service", "unlock", "shop"]);
    asked.refused();
    assert!(
        asked.stderr.contains("alice") && asked.stderr.contains("--force"),
        "{asked:?}"
    );
    assert!(remote_ref(&repo, lock).is_some(), "cleared without --force");
    // With --force it clears it, naming what it cleared.
    let cleared = bob.run(&["--json", "service", "unlock", "shop", "--force"]);
    cleared.ok();
    let doc = cleared.json();
    assert_eq!(doc["cleared"]["pid"], pid, "{cleared:?}");
    assert_eq!(doc["cleared"]["operation"], "converge", "{cleared:?}");
    assert!(
        doc["cleared"]["holder"]
            .as_str()
            .unwrap_or("")
            .contains("alice"),
        "{cleared:?}"
    );
    assert!(remote_ref(&repo, lock).is_none(), "the lock is still there");
    // A second unlock has nothing to clear.
    let again = bob.run(&["--json", "service", "unlock", "shop", "--force"]);
    again.ok();
    assert!(again.json()["cleared"].is_null(), "{again:?}");

    // Bob's converge now resumes from Alice's pushed checkpoint: a does not run again.
    let resumed = bob.run(&["--json", "service", "converge", "shop"]);
    resumed.ok();
    assert_eq!((work.runs("a"), work.runs("c")), (1, 1), "{resumed:?}");
    assert!(
        remote_ref(&repo, lock).is_none(),
        "the lock was not released"
    );
}

#[test]
fn a_push_behind_the_remote_is_refused_never_forced_and_goes_through_after_a_pull() {
    let work = Work::new("0");
    let server = GitDaemon::start();
    let repo = server.repo("team.git");
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let bob = Machine::new("bob", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();
    bob.run(&["service", "clone", "shop"]).ok();

    // Alice changes a and converges (her commit reaches the remote).
    alice
        .run(&["service", "set-attribute", "shop", "step[a]/msg", "alice-a"])
        .ok();
    alice.run(&["service", "converge", "shop"]).ok();
    let desired = "refs/dtk/services/shop/desired";
    let alices = remote_ref(&repo, desired).expect("alice's commit");

    // Bob commits a change of c on his machine (with git, as a user may) and pushes.
    bob.run(&["service", "set-attribute", "shop", "step[c]/msg", "bob-c"])
        .ok();
    git_ok(
        &bob.dir("shop"),
        &[
            "-c",
            "user.name=bob",
            "-c",
            "user.email=bob@example.com",
            "commit",
            "--quiet",
            "-am",
            "bob's c",
        ],
    );
    let push = bob.run(&["service", "push", "shop"]);
    push.refused();
    assert!(
        push.stderr.contains("pull") && push.stderr.contains("alice"),
        "the refusal does not say who is ahead and what to do: {push:?}"
    );
    assert_eq!(
        remote_ref(&repo, desired).as_deref(),
        Some(alices.as_str()),
        "alice's commit was overwritten"
    );

    // After a pull, the push goes through and holds both changes, alice's as an ancestor.
    bob.run(&["service", "pull", "shop"]).ok();
    bob.run(&["service", "push", "shop"]).ok();
    let yaml = git_ok(&repo, &["show", &format!("{desired}:dtk.service.yaml")]);
    assert!(yaml.contains("alice-a") && yaml.contains("bob-c"), "{yaml}");
    let merged = remote_ref(&repo, desired).unwrap();
    let ancestor = git_output(&repo, &["merge-base", "--is-ancestor", &alices, &merged]);
    assert!(
        ancestor.status.success(),
        "alice's commit is not in the history"
    );
}

#[test]
fn dtk_remote_overrides_the_homes_remote_and_empty_means_none() {
    let work = Work::new("0");
    let server = GitDaemon::start();
    let url = server.url("team.git");
    let alice = Machine::new("alice", &url);
    let m = work.dir.path().join("modules/chain");
    alice.run(&["module", "install", m.to_str().unwrap()]).ok();
    alice
        .run(&["service", "stage", "team/chain", "chain", "-n", "shop"])
        .ok();

    // A machine that never ran `dtk remote set` (a CI runner) works through DTK_REMOTE.
    let ci = Machine {
        home: CliHome::new(),
        who: "ci",
    };
    let run = |m: &Machine, remote: &str, args: &[&str]| {
        let out = m.command(args).env("DTK_REMOTE", remote).output().unwrap();
        CliRun {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let list = ci.run(&["--json", "module", "list"]);
    list.ok();
    assert!(!list.stdout.contains("team/chain"), "{list:?}");
    let show = run(&ci, &url, &["--json", "remote", "show"]);
    show.ok();
    assert_eq!(show.json()["source"], "override", "{show:?}");
    assert_eq!(show.json()["url"], url.as_str(), "{show:?}");
    run(&ci, &url, &["service", "clone", "shop"]).ok();
    let r = run(&ci, &url, &["--json", "service", "converge", "shop"]);
    r.ok();
    assert_eq!(work.runs("a"), 1);
    // Nothing was kept: without DTK_REMOTE, the runner has no remote.
    ci.run(&["service", "pull", "shop"]).refused();

    // An empty DTK_REMOTE: no remote, even for a home that has one.
    let none = run(&alice, "", &["service", "pull", "shop"]);
    none.refused();
    assert!(none.stderr.contains("needs a remote"), "{none:?}");
    alice.run(&["service", "pull", "shop"]).ok();
}
