//! Day-2 operations through the real CLI on the local target: failure isolation and
//! `--fail-fast`, `--only` / `--exclude` / `--replace`, per-provider limits (from the
//! command line and from the target's `limits.yaml`, and the first overriding the second),
//! a rename, a saved plan refused once the world changed, and `plan` and `refresh`
//! reading without acting, under the instance's lock.

use std::collections::BTreeMap;
use std::path::Path;

use dtk_tests::dtk::{Dtk, Run};
use serde_json::Value;

/// Three nodes: `first` then `second` on node a, `other` on nodes b and c. Every create
/// appends its start and end times (ns) to `times` in its sandbox and sleeps a little, so
/// that overlaps show; `fail: true` makes one fail.
const MODULE: &str = r#"dsl_version: 1.0.0
module: test/day2
version: 1.0.0
component_defs:
  first:
    attributes:
      fail: {type: boolean, default: false}
      note: {type: string, default: one}
      stamp: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN echo "start $(date +%s%N)" >> times; sleep 0.3
        - RUN if [ "$fail" = true ]; then echo 'failing on purpose' >&2; exit 4; fi
        - RUN echo "end $(date +%s%N)" >> times; echo "stamp=$note" >> "$DTK_OUTPUT"
  second:
    attributes:
      seen: {type: string}
    dependencies: [first]
    link_defs:
      first:
        attribute_mappings: ["$stamp -> seen"]
    actions:
      create:
        commands:
        - RUN echo "start $(date +%s%N)" >> times; echo "$seen" > seen.txt
        - RUN echo "end $(date +%s%N)" >> times
  other:
    attributes:
      fail: {type: boolean, default: false}
    actions:
      create:
        commands:
        - RUN echo "start $(date +%s%N)" >> times; sleep 0.3
        - RUN if [ "$fail" = true ]; then echo 'other fails' >&2; exit 5; fi
        - RUN echo "end $(date +%s%N)" >> times
assemblies:
  app:
    components:
    - node[a]:
        components: [first, second]
    - node[b]:
        components: [other]
    - node[c]:
        components: [other]
"#;

fn setup(dtk: &Dtk) {
    let src = dtk.home().join("src/day2");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("dtk.module.yaml"), MODULE).unwrap();
    dtk.run(&["module", "install", src.to_str().unwrap()]).ok();
}

fn stage(dtk: &Dtk, name: &str, target: Option<&str>) {
    let mut args = vec!["service", "stage", "test/day2", "app", "-n", name];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    dtk.run(&args).ok();
}

/// `dtk --json ARGS`, whatever its exit status.
fn json(dtk: &Dtk, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = dtk.run(&all);
    let doc = run.json();
    (run, doc)
}

/// Task id → (status, detail) of a run report.
fn tasks(doc: &Value) -> BTreeMap<String, (String, String)> {
    doc["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks: {doc:#}"))
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                (
                    t["status"].as_str().unwrap().to_owned(),
                    t["detail"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

/// Every `(start, end)` interval written to the `times` files under `dir`.
fn intervals(dir: &Path) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == "times") {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut start = None;
                for line in text.lines() {
                    let (k, v) = line.split_once(' ').unwrap();
                    let v: u128 = v.parse().unwrap();
                    match k {
                        "start" => start = Some(v),
                        _ => out.push((start.take().unwrap(), v)),
                    }
                }
            }
        }
    }
    out
}

/// The `times` file under `dir` (a node's sandbox; commands run in their module's
/// directory in it).
fn times_under(dir: &Path) -> String {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n == "times") {
                return std::fs::read_to_string(&p).unwrap();
            }
        }
    }
    panic!("no times file under {}", dir.display())
}

fn assert_serial(dir: &Path) {
    let mut iv = intervals(dir);
    iv.sort();
    assert!(iv.len() >= 4, "{iv:?}");
    for w in iv.windows(2) {
        assert!(w[0].1 <= w[1].0, "two local tasks at once: {iv:?}");
    }
}

#[test]
fn a_failure_skips_only_its_dependents_and_fail_fast_stops_at_it() {
    let dtk = Dtk::new();
    setup(&dtk);
    stage(&dtk, "iso", None);
    dtk.run(&["service", "set-attribute", "iso", "a/first/fail", "true"])
        .ok();
    let (run, doc) = json(&dtk, &["service", "converge", "iso"]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert_eq!(doc["status"], "failed");
    let t = tasks(&doc);
    assert_eq!(t["a/first.create"].0, "failed");
    assert!(
        t["a/first.create"].1.contains("failing on purpose"),
        "{t:?}"
    );
    let (st, detail) = &t["a/second.create"];
    assert_eq!(st, "skipped");
    assert!(
        detail.starts_with("a/first.create failed: ") && detail.contains("failing on purpose"),
        "the skip names the failure that caused it: {detail}"
    );
    for id in ["b/other.create", "c/other.create", "node[b].create"] {
        assert_eq!(t[id].0, "done", "independent tasks run to the end: {t:?}");
    }
    // The human summary lists the skipped task and why.
    dtk.run(&["service", "set-attribute", "iso", "a/first/note", "two"])
        .ok();
    let human = dtk.run(&["service", "converge", "iso"]).refused();
    assert!(
        human
            .stdout
            .contains("skipped: a/second.create (a): a/first.create failed:"),
        "{}",
        human.stdout
    );

    // Fail fast, one task at a time: nothing starts after the first failure.
    dtk.run(&["service", "set-attribute", "iso", "a/first/fail", "false"])
        .ok();
    dtk.run(&["service", "set-attribute", "iso", "b/other/fail", "true"])
        .ok();
    dtk.run(&["service", "set-attribute", "iso", "c/other/fail", "true"])
        .ok();
    let (run, doc) = json(
        &dtk,
        &[
            "service",
            "converge",
            "iso",
            "--fail-fast",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert_eq!(doc["status"], "failed", "a failure, not a cancellation");
    let t = tasks(&doc);
    let failed: Vec<&String> = t
        .iter()
        .filter(|(_, v)| v.0 == "failed")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(failed.len(), 1, "{t:?}");
    for (id, (st, detail)) in &t {
        if st == "skipped" {
            assert!(
                detail.starts_with(&format!("{} failed", failed[0])),
                "{id}: {detail}"
            );
        } else {
            assert!(st == "done" || st == "failed", "{id}: {st}");
        }
    }
    assert!(t.values().any(|v| v.0 == "skipped"), "{t:?}");
}

#[test]
fn only_exclude_replace_limits_rename_and_saved_plans() {
    let dtk = Dtk::new();
    setup(&dtk);
    // A target declaring one local task at a time for every service on it.
    dtk.run(&[
        "service",
        "stage",
        "dtk/local",
        "target",
        "-n",
        "box",
        "--base",
    ])
    .ok();
    std::fs::write(dtk.service_dir("box").join("limits.yaml"), "local: 1\n").unwrap();
    dtk.run(&["service", "converge", "box"]).ok();
    stage(&dtk, "sel", Some("box"));

    // --only: node a's chain and nothing else.
    let (run, doc) = json(&dtk, &["service", "converge", "sel", "--only", "a/second"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    let t = tasks(&doc);
    assert!(t.contains_key("a/first.create") && t.contains_key("a/second.create"));
    assert!(
        !t.keys().any(|k| k.starts_with("b/") || k.starts_with("c/")),
        "{t:?}"
    );
    let left: Vec<&str> = doc["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"].as_str().unwrap())
        .collect();
    assert!(left.contains(&"b/other.create"), "{left:?}");
    // --exclude: the rest but c.
    let (_, doc) = json(&dtk, &["service", "converge", "sel", "--exclude", "c"]);
    let t = tasks(&doc);
    assert!(t.contains_key("b/other.create"), "{t:?}");
    assert!(
        !t.keys()
            .any(|k| k.starts_with("c/") || k == "node[c].create")
    );
    dtk.run(&["service", "converge", "sel"]).ok();
    // The target's limit held: no two local tasks of `sel` at once.
    assert_serial(&dtk.home().join("sandboxes/sel"));

    // --replace: the node is made again empty, everything on it runs again.
    let before = times_under(&dtk.home().join("sandboxes/sel/a"));
    let (_, doc) = json(&dtk, &["service", "plan", "sel", "--replace", "node[a]"]);
    let reasons: BTreeMap<&str, &str> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons["node[a].delete"], "replace (requested)");
    assert_eq!(
        reasons["a/first.create"],
        "replace (its node `a` is replaced)"
    );
    let (run, doc) = json(
        &dtk,
        &["service", "converge", "sel", "--replace", "node[a]"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(tasks(&doc)["a/second.create"].0, "done");
    let after = times_under(&dtk.home().join("sandboxes/sel/a"));
    assert!(
        !after.starts_with(&before) && after.lines().count() == 4,
        "a fresh sandbox: {after}"
    );
    assert!(
        dtk.run(&["--json", "service", "plan", "sel"]).json()["tasks"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A rename: the next converge runs nothing for it.
    let (run, doc) = json(&dtk, &["service", "mv", "sel", "b", "bee"]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(doc["kind"], "node");
    let (_, doc) = json(&dtk, &["service", "mv", "sel", "a/first", "a/first[main]"]);
    assert_eq!(doc["moved"][0][1], "a/first[main]", "{doc:#}");
    let (_, doc) = json(&dtk, &["service", "converge", "sel"]);
    assert_eq!(doc["tasks"], serde_json::json!([]), "{doc:#}");
    let (_, out) = json(&dtk, &["service", "outputs", "sel", "a/first[main]"]);
    assert_eq!(out["components"][0]["outputs"]["stamp"], "one");

    // A saved plan runs exactly, or nothing once the desired state moved.
    dtk.run(&["service", "set-attribute", "sel", "c/other/fail", "false"])
        .ok();
    dtk.run(&[
        "service",
        "set-attribute",
        "sel",
        "a/first[main]/note",
        "three",
    ])
    .ok();
    let file = dtk.home().join("sel.plan");
    let file = file.to_str().unwrap();
    dtk.run(&["service", "plan", "sel", "--out", file]).ok();
    let runs = |dtk: &Dtk| {
        dtk.run(&["--json", "service", "runs", "sel"]).json()["runs"]
            .as_array()
            .unwrap()
            .len()
    };
    let n = runs(&dtk);
    dtk.run(&[
        "service",
        "set-attribute",
        "sel",
        "a/first[main]/note",
        "four",
    ])
    .ok();
    let refused = dtk
        .run(&["service", "converge", "sel", "--plan", file])
        .refused();
    assert!(
        refused.stderr.contains("changed since the plan was made"),
        "{}",
        refused.stderr
    );
    assert_eq!(runs(&dtk), n, "nothing ran");
    dtk.run(&[
        "service",
        "set-attribute",
        "sel",
        "a/first[main]/note",
        "three",
    ])
    .ok();
    let (run, doc) = json(&dtk, &["service", "converge", "sel", "--plan", file]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(tasks(&doc)["a/first[main].create"].0, "done");
    assert_eq!(runs(&dtk), n + 1);
    // --limit on the command line wins over the target's: one run with local=4 is allowed
    // to overlap (not asserted: timing), and a bad value is refused.
    let bad = dtk
        .run(&["service", "converge", "sel", "--limit", "local=0"])
        .refused();
    assert!(bad.stderr.contains("above 0"), "{}", bad.stderr);
}

/// One component whose `create` and `check` append to the file `log` names; its check
/// fails once `LOG.made` (written by create) is gone; `pause` slows create down.
const PROBE: &str = r#"dsl_version: 1.0.0
module: test/probe
version: 1.0.0
component_defs:
  probe:
    attributes:
      log: {type: string, default: ""}
      pause: {type: integer, default: 0}
    actions:
      create:
        commands:
        - RUN echo create >> "$log"; sleep "$pause"; touch "$log.made"
      check:
        commands:
        - RUN echo check >> "$log"; test -f "$log.made"
assemblies:
  one:
    components:
    - node[n]:
        components: [probe]
"#;

/// `plan` runs no `check` command and records nothing, `refresh` runs the checks and
/// records the drift without creating anything, both refuse while another process holds
/// the instance's lock, and `--only` with the `cmp[inst]` form plans what the named
/// component needs, saying so.
#[test]
fn refresh_and_plan_read_without_acting_under_the_lock() {
    let dtk = Dtk::new();
    let src = dtk.home().join("src/probe");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("dtk.module.yaml"), PROBE).unwrap();
    dtk.run(&["module", "install", src.to_str().unwrap()]).ok();
    dtk.run(&["service", "stage", "test/probe", "one", "-n", "pr"])
        .ok();
    let log = dtk.home().join("probe.log");
    let made = dtk.home().join("probe.log.made");
    dtk.run(&[
        "service",
        "set-attribute",
        "pr",
        "n/probe/log",
        log.to_str().unwrap(),
    ])
    .ok();

    // --only with `cmp[inst]`: the node it needs is planned first, and the plan says why.
    let (_, doc) = json(&dtk, &["service", "plan", "pr", "--only", "probe"]);
    let reasons: BTreeMap<&str, &str> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["reason"].as_str().unwrap()))
        .collect();
    assert!(reasons.contains_key("n/probe.create"), "{doc:#}");
    assert!(
        reasons["node[n].create"].contains("needed by n/probe"),
        "{reasons:?}"
    );
    let (_, doc) = json(&dtk, &["service", "plan", "pr", "--only", "node[n]"]);
    let ids: Vec<&str> = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node[n].create"], "{doc:#}");

    dtk.run(&["service", "converge", "pr"]).ok();
    assert!(made.is_file());
    let runs = |dtk: &Dtk| {
        dtk.run(&["--json", "service", "runs", "pr"]).json()["runs"]
            .as_array()
            .unwrap()
            .len()
    };
    let read_log = || std::fs::read_to_string(&log).unwrap();

    // What create made is gone: plan neither notices (a check runs commands) nor acts.
    std::fs::remove_file(&made).unwrap();
    let (before, n) = (read_log(), runs(&dtk));
    let (run, doc) = json(&dtk, &["service", "plan", "pr"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(doc["tasks"], serde_json::json!([]), "{doc:#}");
    assert_eq!(doc["checks"], serde_json::json!(["n/probe"]), "{doc:#}");
    assert_eq!(read_log(), before, "plan ran a command");
    assert_eq!(runs(&dtk), n, "plan recorded a run");

    // Refresh runs the check, records the drift, and creates nothing.
    let (run, doc) = json(&dtk, &["service", "refresh", "pr"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let drift = doc["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 1, "{doc:#}");
    assert_eq!(drift[0]["component"], "n/probe");
    assert_eq!(drift[0]["status"], "check failed");
    assert_eq!(read_log(), format!("{before}check\n"), "only the check ran");
    assert!(!made.exists(), "refresh made it again");
    assert_eq!(runs(&dtk), n + 1, "refresh is a run of its own");
    // The drift is recorded: the next plan makes it again, and converge does.
    let (_, doc) = json(&dtk, &["service", "plan", "pr"]);
    assert!(
        doc["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "n/probe.create"),
        "{doc:#}"
    );
    dtk.run(&["service", "converge", "pr"]).ok();
    assert!(made.is_file());

    // While a converge holds the lock, plan and refresh refuse (naming the holder).
    dtk.run(&["service", "set-attribute", "pr", "n/probe/pause", "4"])
        .ok();
    let creates = || read_log().lines().filter(|l| *l == "create").count();
    let started = creates();
    let mut child = dtk
        .command(&["service", "converge", "pr"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while creates() == started {
        assert!(
            std::time::Instant::now() < deadline,
            "converge never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for op in ["plan", "refresh"] {
        let r = dtk.run(&["service", op, "pr"]).refused();
        assert!(
            r.stderr.contains("is locked by") && r.stderr.contains("converge"),
            "{op}: {}",
            r.stderr
        );
    }
    assert!(child.wait().unwrap().success());
    dtk.run(&["service", "plan", "pr"]).ok();
}

/// Two components that wait for each other (each writes its file, then waits up to 20 s
/// for the other's): they succeed only if they run at the same time.
const MEET: &str = r#"dsl_version: 1.0.0
module: test/meet
version: 1.0.0
component_defs:
  meet:
    attributes:
      dir: {type: string, default: ""}
      me: {type: string, default: ""}
      other: {type: string, default: ""}
    actions:
      create:
        commands:
        - RUN touch "$dir/$me"; i=0; while [ ! -e "$dir/$other" ]; do i=$((i+1)); if [ $i -gt 200 ]; then echo "no $other" >&2; exit 7; fi; sleep 0.1; done
assemblies:
  two:
    components:
    - node[x]:
        components:
        - meet: {attributes: {me: x, other: y}}
    - node[y]:
        components:
        - meet: {attributes: {me: y, other: x}}
"#;

/// `converge --limit local=2` overrides the target's `limits.yaml` (`local: 1`): two tasks
/// that can only finish together do.
#[test]
fn the_command_line_limit_overrides_the_targets() {
    let dtk = Dtk::new();
    let src = dtk.home().join("src/meet");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("dtk.module.yaml"), MEET).unwrap();
    dtk.run(&["module", "install", src.to_str().unwrap()]).ok();
    dtk.run(&[
        "service",
        "stage",
        "dtk/local",
        "target",
        "-n",
        "one",
        "--base",
    ])
    .ok();
    std::fs::write(dtk.service_dir("one").join("limits.yaml"), "local: 1\n").unwrap();
    dtk.run(&["service", "converge", "one"]).ok();
    dtk.run(&[
        "service",
        "stage",
        "test/meet",
        "two",
        "-n",
        "meet",
        "--target",
        "one",
    ])
    .ok();
    let dir = dtk.home().join("meeting");
    std::fs::create_dir_all(&dir).unwrap();
    for node in ["x", "y"] {
        dtk.run(&[
            "service",
            "set-attribute",
            "meet",
            &format!("{node}/meet/dir"),
            dir.to_str().unwrap(),
        ])
        .ok();
    }
    let (run, doc) = json(&dtk, &["service", "converge", "meet", "--limit", "local=2"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let t = tasks(&doc);
    assert_eq!(t["x/meet.create"].0, "done", "{t:?}");
    assert_eq!(t["y/meet.create"].0, "done", "{t:?}");
}
