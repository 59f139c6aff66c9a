//! Provider plugins through the real `dtk` binary: a plugin written in Python
//! (`tests/fixtures/plugins/dtk-provider-flaky`, its module bundled in its handshake) found
//! in `DTK_HOME/plugins`, and what happens when it is killed mid-converge, writes garbage
//! or hangs, when `dtk` itself is killed while it works, and when a plugin is missing or
//! broken at stage time.
//!
//! After every failure the converge's journal and actual state must hold what completed
//! (it is not run again), `git fsck` must pass, and the next converge must finish the job.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dtk_tests::harness::{CliHome, CliRun, module_dir};
use serde_json::Value;

/// A home with the Python plugin installed in `DTK_HOME/plugins`, and `test/flaky`'s
/// `chain` (`first` → `second` → `third`) staged as `svc`.
fn home_with_flaky() -> CliHome {
    let home = CliHome::new();
    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let src = dtk_tests::workspace().join("tests/fixtures/plugins/dtk-provider-flaky");
    std::fs::copy(&src, plugins.join("dtk-provider-flaky")).unwrap();
    home.run(&["service", "stage", "test/flaky", "chain", "-n", "svc"])
        .ok();
    home
}

/// Where the plugin keeps its files (its state directory, from the handshake).
fn state(home: &CliHome) -> PathBuf {
    home.path().join("providers/flaky")
}

/// How many times the plugin ran `create` or `update` for `component`.
fn runs(home: &CliHome, component: &str) -> usize {
    std::fs::read_to_string(state(home).join(format!("runs-{component}")))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Each component's state in `dtk service status`.
fn states(home: &CliHome) -> Vec<(String, String)> {
    let status = home.run(&["--json", "service", "status", "svc"]);
    status.ok();
    status.json()["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn state_of(home: &CliHome, id: &str) -> String {
    states(home)
        .into_iter()
        .find(|(c, _)| c == id)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// The ids of the tasks a converge ran (`--json`).
fn tasks(run: &CliRun) -> Vec<String> {
    let mut ids: Vec<String> = run.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Waits until `file` exists; returns its content.
fn wait_for(file: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(file)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: its `stat` says `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// The first converge completes; then `second` is made slow and its edit converged in
/// the background. Returns the running converge and the plugin's pid once `second` runs.
fn converge_with_slow_second(home: &CliHome) -> (std::process::Child, i32) {
    home.run(&["service", "converge", "svc"]).ok();
    assert_eq!(
        (
            runs(home, "first"),
            runs(home, "second"),
            runs(home, "third")
        ),
        (1, 1, 1)
    );
    std::fs::remove_file(state(home).join("started-second")).unwrap();
    home.run(&["service", "set-attribute", "svc", "second/mode", "slow"])
        .ok();
    home.run(&["service", "set-attribute", "svc", "second/seconds", "60"])
        .ok();
    let child = home
        .command(&["--json", "service", "converge", "svc"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = wait_for(&state(home).join("started-second"), Duration::from_secs(30));
    (child, pid.trim().parse().unwrap())
}

/// Puts `second` back to work (slow, for no time: a desired state other than the one
/// the first converge applied), converges, and checks that only what had not completed
/// ran again.
fn converge_again_finishes(home: &CliHome, first_runs: usize) {
    home.run(&["service", "set-attribute", "svc", "second/seconds", "0"])
        .ok();
    home.run(&["service", "set-attribute", "svc", "second/mode", "slow"])
        .ok();
    let again = home.run(&["--json", "service", "converge", "svc"]);
    again.ok();
    assert_eq!(
        tasks(&again),
        vec!["second.create", "third.create"],
        "{again:?}"
    );
    assert_eq!(runs(home, "first"), first_runs, "`first` ran again");
    assert!(
        states(home).iter().all(|(_, s)| s == "converged"),
        "{:?}",
        states(home)
    );
    home.fsck_all();
}

#[test]
fn a_plugin_killed_mid_converge_fails_its_task_and_the_next_converge_finishes() {
    let home = home_with_flaky();
    let (child, pid) = converge_with_slow_second(&home);
    assert!(dtk_tests::signal(u32::try_from(pid).unwrap(), "KILL"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed = doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "second.create")
        .unwrap()
        .clone();
    assert_eq!(failed["status"], "failed", "{doc}");
    let plugin = home.path().join("plugins/dtk-provider-flaky");
    assert_eq!(
        failed["detail"],
        format!(
            "update flaky.step for second failed: plugin dtk-provider-flaky ({}) was killed by \
             signal 9 (SIGKILL) while the request was in flight; its standard error is logged at \
             debug level (dtk -vv)",
            plugin.display()
        ),
        "{doc}"
    );
    // What completed stays recorded; what depends on the failed task never ran.
    assert_eq!(state_of(&home, "first"), "converged");
    assert_ne!(state_of(&home, "second"), "converged");
    assert_eq!(runs(&home, "third"), 1);
    home.fsck_all();
    converge_again_finishes(&home, 1);
}

#[test]
fn a_plugin_writing_garbage_is_stopped_and_its_task_fails_without_showing_it() {
    let home = home_with_flaky();
    home.run(&["service", "converge", "svc"]).ok();
    home.run(&["service", "set-attribute", "svc", "second/mode", "garbage"])
        .ok();
    let started = Instant::now();
    let run = home.run(&["service", "converge", "svc"]);
    run.refused();
    assert!(started.elapsed() < Duration::from_secs(30), "{run:?}");
    let out = run.output();
    // Its output so far: `hello` and the three `read`s of the refresh answered, then the
    // line `debug: about to make second`.
    assert!(
        out.contains("update flaky.step for second failed: plugin dtk-provider-flaky (")
            && out.contains(
                ") wrote line 5 of its standard output (27 bytes), which is not a protocol message: \
                 it is not JSON (column 1); dtk stopped it"
            ),
        "{run:?}"
    );
    assert!(
        !out.contains("about to make"),
        "the garbage is shown: {run:?}"
    );
    assert_eq!(state_of(&home, "first"), "converged");
    home.fsck_all();
    converge_again_finishes(&home, 1);
}

#[test]
fn a_hung_plugin_is_stopped_and_its_task_fails() {
    let home = home_with_flaky();
    home.run(&["service", "converge", "svc"]).ok();
    home.run(&["service", "set-attribute", "svc", "second/mode", "hang"])
        .ok();
    let started = Instant::now();
    let run = home.run(&["service", "converge", "svc"]);
    run.refused();
    // Pings every 2 s, hung after 10 s without an answer.
    assert!(started.elapsed() < Duration::from_secs(40), "{run:?}");
    assert!(
        run.output().contains(
            ") did not answer a ping within 10s: it hangs; dtk stopped it while the request was in flight"
        ),
        "{run:?}"
    );
    assert_eq!(state_of(&home, "first"), "converged");
    home.fsck_all();
    converge_again_finishes(&home, 1);
}

#[test]
fn a_plugin_stops_soon_after_dtk_is_killed_and_the_converge_resumes() {
    let home = home_with_flaky();
    let (mut child, pid) = converge_with_slow_second(&home);
    child.kill().unwrap();
    child.wait().unwrap();
    // Its standard input closed: it must exit (the SDK gives requests 2 s; this one
    // exits at once) rather than work on for nobody.
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the plugin (pid {pid}) still runs 10 s after dtk was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    home.fsck_all();
    converge_again_finishes(&home, 1);
}

#[test]
fn a_missing_or_broken_plugin_is_refused_at_stage_time_naming_where_dtk_looked() {
    let home = CliHome::new();
    let scratch = tempfile::tempdir().unwrap();
    let text = |kind: &str| {
        format!(
            "dsl_version: 1.0.0\nmodule: test/{kind}\nversion: 1.0.0\ncomponent_defs:\n  thing:\n    actions:\n      create:\n        provider: {kind}.thing\nassemblies:\n  one:\n    components: [thing]\n"
        )
    };
    let m = module_dir(scratch.path(), "nosuch", text("nosuch"));
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    // The built-in local target and the bundled modules exist before the refusal.
    home.run(&["target", "set-default", "local"]).ok();
    let before = home.snapshot();
    let run = home.run(&["service", "stage", "test/nosuch", "one", "-n", "x"]);
    run.refused();
    let bin_dir = dtk_tests::harness::dtk_bin().parent().unwrap().to_owned();
    let msg = run.output();
    assert!(
        msg.contains(
            "`thing` (test/nosuch) has action `create` done by provider `nosuch`, which is not available: it is not built in (available: "
        ) && msg.contains(&format!(
            "), and no usable executable `dtk-provider-nosuch` is in {}, {}",
            home.path().join("plugins").display(),
            bin_dir.display()
        )),
        "{run:?}"
    );
    // PATH was searched too.
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|d| d.is_absolute())
        .take(3)
    {
        assert!(msg.contains(&dir.display().to_string()), "{dir:?}: {run:?}");
    }
    home.snapshot().assert_same(&before, "a refused stage");

    // A plugin that is there but fails its handshake is named with why.
    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let broken = plugins.join("dtk-provider-broken");
    std::fs::write(&broken, "#!/bin/sh\necho 'I am not a plugin'\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let m = module_dir(scratch.path(), "broken", text("broken"));
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    let run = home.run(&["service", "stage", "test/broken", "one", "-n", "y"]);
    run.refused();
    assert!(
        run.output().contains(&format!(
            "; {} was found but cannot be used: line 1 of its output (17 bytes) is not a protocol message: it is not JSON (column 1) (it exited with status 3)",
            broken.display()
        )),
        "{run:?}"
    );
    // `dtk provider list` shows it, and why it is not used.
    let list = home.run(&["--json", "provider", "list"]);
    list.ok();
    let unused = list.json()["unused"].clone();
    assert!(
        unused
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["path"] == broken.display().to_string() && u["kinds"][0] == "broken"),
        "{list:?}"
    );
}
