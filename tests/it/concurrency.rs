//! Concurrency through the CLI: two converges of one instance (one is refused, naming
//! the holder), converges of two instances at once (both succeed), and publishes racing
//! stages (all succeed; every repository stays sound).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use dtk_tests::harness::{CliHome, git_ok};

/// A module whose `slow` component takes `secs` seconds on each of two nodes.
fn slow_module(dir: &Path, version: &str, secs: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("dtk.module.yaml"),
        format!(
            "dsl_version: 1.0.0
module: conc/slow
version: {version}
component_defs:
  slow:
    attributes:
      label: {{type: string, default: v{version}}}
    actions:
      create:
        commands:
        - RUN sleep {secs}; echo {{{{label}}}} >> slow.log
assemblies:
  pair:
    components:
    - node[a]:
        components: [slow]
    - node[b]:
        components: [slow]
"
        ),
    )
    .unwrap();
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_converge_of_one_instance_is_refused_naming_the_holder() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("slow");
    slow_module(&m, "1.0.0", "3");
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    home.run(&["service", "stage", "conc/slow", "pair", "-n", "one"])
        .ok();

    let mut first = home
        .command(&["service", "converge", "one"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holder_pid = first.id();
    // The lock file names its holder once it is taken.
    let lock = home.service_dir("one").join(".dtk/lock");
    wait_for(
        "the first converge to take the lock",
        Duration::from_secs(30),
        || std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&format!("pid={holder_pid}"))),
    );

    let second = home.run(&["service", "converge", "one"]);
    second.refused();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        second.stderr.contains(&format!("pid {holder_pid}")) && second.stderr.contains(&host),
        "the refusal names the holder (pid {holder_pid} on {host}): {second:?}"
    );
    let json = home.run(&["--json", "service", "converge", "one"]);
    json.refused();
    assert_eq!(json.json()["schema"], "dtk.error/v1");
    assert!(
        json.stdout.contains(&format!("pid {holder_pid}")),
        "{json:?}"
    );
    // Edits wait for no one either: set-attribute is refused the same way.
    let edit = home.run(&["service", "set-attribute", "one", "a/slow/label", "x"]);
    edit.refused();
    assert!(
        edit.stderr.contains(&format!("pid {holder_pid}")),
        "{edit:?}"
    );

    assert!(
        first.wait().unwrap().success(),
        "the first converge succeeds"
    );
    for node in ["a", "b"] {
        let log = std::fs::read_to_string(
            home.module_sandbox("one", node, "conc/slow")
                .join("slow.log"),
        )
        .unwrap();
        assert_eq!(log, "v1.0.0\n", "each action ran once");
    }
    // Released: the next converge runs (and has nothing to do).
    home.run(&["service", "converge", "one"]).ok();
    home.fsck_all();
}

#[test]
fn two_instances_converge_at_once() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("slow");
    slow_module(&m, "1.0.0", "1");
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    for name in ["left", "right"] {
        home.run(&["service", "stage", "conc/slow", "pair", "-n", name])
            .ok();
    }
    home.run(&["service", "set-attribute", "right", "a/slow/label", "R"])
        .ok();
    let started = Instant::now();
    let children: Vec<_> = ["left", "right"]
        .iter()
        .map(|name| {
            home.command(&["service", "converge", name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Four one-second actions, two per instance in parallel: the two instances
    // overlapped (sequential would be four seconds and more).
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3900), "took {took:?}");
    let read = |svc: &str, node: &str| {
        std::fs::read_to_string(home.module_sandbox(svc, node, "conc/slow").join("slow.log"))
            .unwrap()
    };
    assert_eq!(read("left", "a"), "v1.0.0\n");
    assert_eq!(read("left", "b"), "v1.0.0\n");
    assert_eq!(read("right", "a"), "R\n");
    assert_eq!(read("right", "b"), "v1.0.0\n");
    home.fsck_all();
}

/// A module with some weight (files of a few hundred KB), so that publishing and
/// staging take long enough to overlap.
fn heavy_module(dir: &Path, name: &str, version: &str) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::write(
        dir.join("dtk.module.yaml"),
        format!(
            "dsl_version: 1.0.0
module: conc/{name}
version: {version}
component_defs:
  thing:
    attributes:
      v: {{type: string, default: '{version}'}}
    actions:
      create:
        commands:
        - RUN echo {{{{v}}}} > v.txt
assemblies:
  one:
    components:
    - node[n]:
        components: [thing]
"
        ),
    )
    .unwrap();
    for i in 0..40 {
        let body: String = (0..8_000)
            .map(|j| format!("{name} {version} {i} {j}\n"))
            .collect();
        std::fs::write(dir.join("files").join(format!("f{i}.txt")), body).unwrap();
    }
}

#[test]
fn publishes_during_stages_all_succeed_and_repositories_stay_sound() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base-1.0.0");
    heavy_module(&base, "app", "1.0.0");
    home.run(&["module", "install", base.to_str().unwrap()])
        .ok();

    for round in 1..=4 {
        // A new version of the staged module, and another module, published while
        // an instance of the first is staged.
        let next = tmp.path().join(format!("app-1.{round}.0"));
        heavy_module(&next, "app", &format!("1.{round}.0"));
        let other = tmp.path().join(format!("other-{round}"));
        heavy_module(&other, &format!("other{round}"), "1.0.0");
        let name = format!("s{round}");
        let spawn = |args: &[&str]| {
            home.command(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let stage = spawn(&["service", "stage", "conc/app", "one", "-n", &name]);
        let publish = spawn(&["module", "install", next.to_str().unwrap()]);
        let publish_other = spawn(&["module", "install", other.to_str().unwrap()]);
        for c in [stage, publish, publish_other] {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        home.fsck_all();
        // The instance pins one version whole: its copy is that version's files.
        let dir = home.service_dir(&name);
        let doc = std::fs::read_to_string(dir.join("dtk.service.yaml")).unwrap();
        let pinned = doc
            .lines()
            .find_map(|l| l.trim().strip_prefix("conc/app: "))
            .unwrap_or_else(|| panic!("no pin of conc/app in:\n{doc}"))
            .trim()
            .to_owned();
        // (Only manifests are checked out; the copy's other files are in its tree.)
        let copy = git_ok(&dir, &["show", "HEAD:modules/conc/app/files/f3.txt"]);
        assert!(
            copy.starts_with(&format!("app {pinned} 3 0\n")),
            "round {round}: the copy is not {pinned}'s"
        );
        // The catalog has every version published so far.
        let tags = git_ok(&home.catalog(), &["tag", "--list"]);
        for r in 0..=round {
            assert!(tags.contains(&format!("1.{r}.0")), "{tags}");
        }
        home.run(&["service", "converge", &name]).ok();
        let v = std::fs::read_to_string(home.module_sandbox(&name, "n", "conc/app").join("v.txt"))
            .unwrap();
        assert_eq!(v.trim(), pinned);
    }
    home.fsck_all();
}
