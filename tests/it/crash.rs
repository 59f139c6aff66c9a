//! The crash suite: converges of a generated service (201 components over 20 nodes on the
//! local target, each action appending one line to a file of its own in its node's
//! sandbox) are killed with SIGKILL at random moments, each followed by a resuming
//! converge (itself possibly killed), until one runs to its end.
//!
//! After every kill: `git fsck --strict` passes on the catalog and the instance
//! repository. After every iteration: the service is in its desired state (every action's
//! file holds the iteration's line), no action whose completion had been durably
//! journaled (read from `.dtk/journal/*.jsonl` right after the kill) ran again, and no
//! action was lost. Actions that were in flight at a kill may run again: they are counted
//! and printed.
//!
//! `DTK_CRASH_ITERATIONS` sets the number of iterations (default 6; the full run is
//! 100), `DTK_CRASH_SEED` replays a run (the seed is printed).

#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dtk_tests::harness::{CliHome, SeededRng, count_from_env, module_dir, wait_no_processes_under};

const NODES: usize = 20;
const LAYERS: usize = 10;
const SERVICE: &str = "crashsvc";
const MODULE_COPY: &str = "modules/crash/chain/dtk.module.yaml";

/// The module: `hub` on the first node, then on every node a chain `c0 → … → c9` whose
/// `c0` depends on the hub. Every action appends its `tag` to `create-CMP.log`.
fn module_text() -> String {
    let mut s =
        String::from("dsl_version: 1.0.0\nmodule: crash/chain\nversion: 1.0.0\ncomponent_defs:\n");
    let action = |name: &str, pause: &str| {
        format!(
            "    actions:\n      create:\n        commands:\n        - RUN sleep {pause}; echo {{{{tag}}}} >> create-{name}.log\n"
        )
    };
    s.push_str("  hub:\n    attributes:\n      tag: {type: string, default: r0}\n");
    s.push_str(&action("hub", "0.02"));
    for k in 0..LAYERS {
        s.push_str(&format!(
            "  c{k}:\n    attributes:\n      tag: {{type: string, default: r0}}\n"
        ));
        let dep = if k == 0 {
            "hub".to_owned()
        } else {
            format!("c{}", k - 1)
        };
        s.push_str(&format!("    dependencies: [{dep}]\n"));
        s.push_str(&action(&format!("c{k}"), ["0.01", "0.02", "0"][k % 3]));
    }
    s.push_str("assemblies:\n  big:\n    components:\n");
    for n in 0..NODES {
        s.push_str(&format!(
            "    - node[n{n:02}]:\n        attributes: {{image: ubuntu_jammy, size: small}}\n        components: ["
        ));
        let mut cmps: Vec<String> = Vec::new();
        if n == 0 {
            cmps.push("hub".to_owned());
        }
        cmps.extend((0..LAYERS).map(|k| format!("c{k}")));
        s.push_str(&cmps.join(", "));
        s.push_str("]\n");
    }
    s
}

/// Every action task id → its file.
fn action_files(home: &CliHome) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for n in 0..NODES {
        let node = format!("n{n:02}");
        let dir = home.module_sandbox(SERVICE, &node, "crash/chain");
        if n == 0 {
            out.insert(format!("{node}/hub.create"), dir.join("create-hub.log"));
        }
        for k in 0..LAYERS {
            out.insert(
                format!("{node}/c{k}.create"),
                dir.join(format!("create-c{k}.log")),
            );
        }
    }
    out
}

/// How many times each action ran with `tag`.
fn run_counts(files: &BTreeMap<String, PathBuf>, tag: &str) -> BTreeMap<String, usize> {
    files
        .iter()
        .map(|(task, f)| {
            let n = std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter(|l| *l == tag)
                .count();
            (task.clone(), n)
        })
        .collect()
}

fn journals(service_dir: &Path) -> Vec<PathBuf> {
    let mut js: Vec<PathBuf> = std::fs::read_dir(service_dir.join(".dtk/journal"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    js.sort();
    js
}

/// The tasks whose completion is durable now: `done`/`unchanged` in a journal.
fn journaled_complete(service_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for j in journals(service_dir) {
        let st = dtk_workflow::replay(&j).expect("the journal reads");
        out.extend(st.completed.iter().map(|t| t.as_str().to_owned()));
    }
    out
}

fn set_tag(home: &CliHome, tag: &str) {
    let path = home.service_dir(SERVICE).join(MODULE_COPY);
    let text = std::fs::read_to_string(&path).expect("the instance copy");
    let mut out = String::new();
    for line in text.lines() {
        if line
            .trim_start()
            .starts_with("tag: {type: string, default:")
        {
            out.push_str("      tag: {type: string, default: ");
            out.push_str(tag);
            out.push_str("}\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&path, out).expect("edit the instance copy");
}

struct Attempt {
    killed: bool,
    took: Duration,
    code: Option<i32>,
    log: String,
}

/// Runs one converge; kills it with SIGKILL after `kill_after` unless it ends first.
fn converge(home: &CliHome, scratch: &Path, n: usize, kill_after: Option<Duration>) -> Attempt {
    let log_path = scratch.join(format!("converge-{n}.log"));
    let log = File::create(&log_path).expect("a log file");
    let mut child = home
        .command(&["service", "converge", SERVICE, "-m", "crash"])
        .stdout(Stdio::from(log.try_clone().expect("dup")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("dtk starts");
    let started = Instant::now();
    let mut killed = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if let Some(after) = kill_after
            && started.elapsed() >= after
        {
            child.kill().expect("SIGKILL");
            killed = true;
            break child.wait().expect("wait");
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("converge {n} ran for more than 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // A converge that ended just before the signal is not a kill.
    let killed = killed && status.code().is_none();
    Attempt {
        killed,
        took: started.elapsed(),
        code: status.code(),
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
    }
}

#[test]
fn converges_killed_at_random_moments_resume_without_loss_or_repeats() {
    let iterations = count_from_env("DTK_CRASH_ITERATIONS", 6);
    let seed = SeededRng::seed_from_env("DTK_CRASH_SEED");
    eprintln!("crash suite: {iterations} iterations, DTK_CRASH_SEED={seed}");
    let mut rng = SeededRng::new(seed);

    let home = CliHome::new();
    let scratch = tempfile::tempdir().expect("scratch");
    let module_dir = module_dir(scratch.path(), "module", module_text());
    home.run(&["module", "install", module_dir.to_str().expect("utf-8")])
        .ok();
    home.run(&["service", "stage", "crash/chain", "big", "-n", SERVICE])
        .ok();
    let files = action_files(&home);
    assert_eq!(files.len(), NODES * LAYERS + 1);
    let service_dir = home.service_dir(SERVICE);
    let sandboxes = home.path().join("sandboxes");

    // A clean converge first: it measures how long one takes, the window for the kills.
    let t0 = Instant::now();
    let first = converge(&home, scratch.path(), 0, None);
    assert_eq!(first.code, Some(0), "{}", first.log);
    let mut window = t0.elapsed().max(Duration::from_millis(200));
    assert!(run_counts(&files, "r0").values().all(|&c| c == 1));

    let mut attempts = 0usize;
    let mut kills = 0usize;
    let mut reruns_total = 0usize;
    let mut journaled_total = 0usize;
    let started = Instant::now();
    // An iteration counts once a kill landed in it: a converge may end before its kill.
    let mut killed_iterations = 0usize;
    let mut it = 0usize;
    while killed_iterations < iterations {
        it += 1;
        assert!(
            it <= 3 * iterations + 3,
            "converges keep ending before their kill (seed {seed})"
        );
        let tag = format!("r{it}");
        set_tag(&home, &tag);
        // Task → its run count when its completion was first seen in a journal.
        let mut frozen: BTreeMap<String, usize> = BTreeMap::new();
        let mut kills_here = 0usize;
        loop {
            attempts += 1;
            // The first converge of an iteration is always killed; resumes are killed
            // with probability 1/2, at most three times in a row.
            let kill = kills_here == 0 || (kills_here < 3 && rng.below(2) == 0);
            let kill_after = kill.then(|| {
                let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                Duration::from_millis(rng.below(ms * 9 / 10 + 1))
            });
            let a = converge(&home, scratch.path(), attempts, kill_after);
            if !a.killed && kills_here == 0 {
                // A whole converge that beat its kill: the window was too wide.
                window = window.min(a.took.max(Duration::from_millis(100)));
            }
            if !a.killed {
                assert_eq!(
                    a.code,
                    Some(0),
                    "iteration {it} (seed {seed}): the converge failed:\n{}",
                    a.log
                );
                break;
            }
            kills += 1;
            kills_here += 1;
            // Actions the killed dtk had started finish on their own (their own process
            // groups); wait for them before counting.
            assert!(
                wait_no_processes_under(&sandboxes, Duration::from_secs(20)),
                "actions of a killed converge still run after 20 s"
            );
            home.fsck_all();
            let counts = run_counts(&files, &tag);
            let js = journals(&service_dir);
            let durable: BTreeSet<String> = if js.is_empty() {
                // No journal: either nothing ran yet, or the run saved actual state and
                // removed its journals (then everything that ran is durable).
                counts
                    .iter()
                    .filter(|(_, c)| **c > 0)
                    .map(|(t, _)| t.clone())
                    .collect()
            } else {
                journaled_complete(&service_dir)
            };
            for task in durable {
                let Some(&c) = counts.get(&task) else {
                    continue; // node tasks: no file
                };
                assert!(
                    c >= 1,
                    "iteration {it} (seed {seed}): {task} is journaled complete but never ran"
                );
                frozen.entry(task).or_insert(c);
            }
        }
        wait_no_processes_under(&sandboxes, Duration::from_secs(20));
        home.fsck_all();
        assert!(
            journals(&service_dir).is_empty(),
            "a complete converge left journals behind"
        );
        let counts = run_counts(&files, &tag);
        let lost: Vec<&String> = counts
            .iter()
            .filter(|(_, c)| **c == 0)
            .map(|(t, _)| t)
            .collect();
        assert!(
            lost.is_empty(),
            "iteration {it} (seed {seed}): actions never ran: {lost:?}"
        );
        for (task, before) in &frozen {
            assert_eq!(
                counts[task], *before,
                "iteration {it} (seed {seed}): {task} ran again after its completion was journaled"
            );
        }
        if kills_here > 0 {
            killed_iterations += 1;
        }
        let reruns: usize = counts.values().map(|c| c - 1).sum();
        reruns_total += reruns;
        journaled_total += frozen.len();
        eprintln!(
            "iteration {it}: {kills_here} kills, {} actions durable at a kill, {reruns} re-run (in flight at a kill)",
            frozen.len()
        );
    }

    // The end state: nothing left to do, the last converge succeeded.
    let plan = home.run(&["--json", "service", "plan", SERVICE]);
    plan.ok();
    assert_eq!(plan.json()["tasks"], serde_json::json!([]), "{plan:?}");
    let status = home.run(&["--json", "service", "status", SERVICE]);
    status.ok();
    assert_eq!(status.json()["last_converge"]["status"], "succeeded");
    home.fsck_all();
    eprintln!(
        "crash suite (seed {seed}): {iterations} iterations with kills ({it} in all), {attempts} converges, {kills} kills, \
         {journaled_total} completions durable at a kill (none re-run), \
         {reruns_total} actions re-run because in flight at a kill, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A dtk killed while git writes (found by the crash suite: a kill during the commit of
/// the edits) leaves `HEAD.lock`, `index.lock` or a ref's lock file behind; the next
/// converge takes them over instead of failing until someone deletes them by hand.
#[test]
fn git_lock_files_left_by_a_killed_dtk_do_not_stop_the_next_converge() {
    let home = CliHome::new();
    let scratch = tempfile::tempdir().expect("scratch");
    let m = module_dir(
        scratch.path(),
        "m",
        "dsl_version: 1.0.0\nmodule: crash/small\nversion: 1.0.0\ncomponent_defs:\n  c:\n    attributes:\n      v: {type: string, default: a}\n    actions:\n      create:\n        commands:\n        - RUN echo {{v}} >> create-c.log\nassemblies:\n  one:\n    components:\n    - node[n]:\n        components: [c]\n",
    );
    home.run(&["module", "install", m.to_str().expect("utf-8")])
        .ok();
    home.run(&["service", "stage", "crash/small", "one", "-n", "s"])
        .ok();
    home.run(&["service", "converge", "s"]).ok();
    let git = home.service_dir("s").join(".git");
    for lock in [
        "HEAD.lock",
        "index.lock",
        "refs/heads/main.lock",
        "refs/dtk/converges.lock",
    ] {
        std::fs::write(git.join(lock), "0000000000000000000000000000000000000000\n")
            .expect("a stale lock file");
    }
    home.run(&["service", "set-attribute", "s", "n/c/v", "b"])
        .ok();
    home.run(&["service", "converge", "s"]).ok();
    let log = std::fs::read_to_string(
        home.module_sandbox("s", "n", "crash/small")
            .join("create-c.log"),
    )
    .expect("log");
    assert_eq!(log, "a\nb\n");
    for lock in [
        "HEAD.lock",
        "index.lock",
        "refs/heads/main.lock",
        "refs/dtk/converges.lock",
    ] {
        assert!(!git.join(lock).exists(), "{lock} is still there");
    }
    home.fsck_all();
}
