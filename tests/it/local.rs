//! The local target end to end through the real CLI: a target staged with --base, an app
//! staged on it twice, converge, edit, converge, exec, delete; real processes and files.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use dtk_tests::dtk::Dtk;
use dtk_tests::{example, git, signal, workspace};

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".to_owned()),
    };
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .unwrap_or(body)
}

fn web_url(dtk: &Dtk, app: &str) -> String {
    let doc = dtk.run(&["--json", "service", "status", app]).ok().json();
    assert_eq!(doc["schema"], "dtk.service.status/v1");
    let web = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "web/web")
        .unwrap();
    web["outputs"]["url"].as_str().unwrap().to_owned()
}

#[test]
fn target_then_two_apps_converge_edit_exec_delete() {
    let dtk = Dtk::new();
    let webapp = example("webapp");
    dtk.run(&["module", "install", webapp.to_str().unwrap()])
        .ok();
    // A target instance of the built-in local kind, staged and converged like any service.
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
    // Staging on a target that never converged is refused.
    let early = dtk
        .run(&[
            "service",
            "stage",
            "demo/webapp",
            "two_tier",
            "-n",
            "early",
            "--target",
            "box",
        ])
        .refused();
    assert!(
        early.stderr.contains("has not converged"),
        "{}",
        early.stderr
    );
    dtk.run(&["service", "converge", "box"]).ok();
    for app in ["shop1", "shop2"] {
        dtk.run(&[
            "service",
            "stage",
            "demo/webapp",
            "two_tier",
            "-n",
            app,
            "--target",
            "box",
        ])
        .ok();
        let out = dtk.run(&["service", "converge", app]).ok();
        assert!(out.stdout.contains("4 done"), "{}", out.stdout);
    }
    let (u1, u2) = (web_url(&dtk, "shop1"), web_url(&dtk, "shop2"));
    assert_ne!(u1, u2, "two instances, two servers");
    assert_eq!(http_get(&u1), "The backend says: hello from dtk");

    // Real files in real sandboxes, and a repository git agrees with.
    let sandbox = dtk.home().join("sandboxes/shop1/db");
    let module_dir = sandbox.join("modules/demo/webapp");
    assert!(module_dir.join("www/message.txt").is_file());
    assert!(
        module_dir.join("bin/serve").is_file(),
        "the module's files are there"
    );
    git(&dtk.service_dir("shop1"), &["fsck", "--strict"]);

    // Edit one instance: only it changes.
    dtk.run(&[
        "service",
        "set-attribute",
        "shop1",
        "db/backend/message",
        "changed!",
    ])
    .ok();
    let diff = dtk.run(&["service", "diff", "shop1"]).ok();
    assert!(
        diff.stdout.contains("+          message: changed!"),
        "{}",
        diff.stdout
    );
    let plan = dtk.run(&["service", "plan", "shop1"]).ok();
    assert!(plan.stdout.contains("db/backend"), "{}", plan.stdout);
    dtk.run(&["service", "converge", "shop1", "-m", "change the message"])
        .ok();
    assert_eq!(http_get(&u1), "The backend says: changed!");
    assert_eq!(http_get(&u2), "The backend says: hello from dtk");
    let again = dtk.run(&["service", "converge", "shop1"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);

    // A custom action, and the task tree it leaves.
    let exec = dtk
        .run(&["service", "exec", "shop1", "web/web.smoke_test"])
        .ok();
    assert!(exec.stdout.contains("1 done"), "{}", exec.stdout);
    let ts = dtk.run(&["service", "task-status", "shop1"]).ok();
    assert!(
        ts.stdout.contains("web/web.smoke_test") && ts.stdout.contains("done"),
        "{}",
        ts.stdout
    );

    // Delete: nothing of shop1 keeps running; shop2 is untouched.
    assert!(!processes_under(&dtk.home().join("sandboxes/shop1")).is_empty());
    dtk.run(&["service", "delete", "shop1"]).ok();
    assert_eq!(
        processes_under(&dtk.home().join("sandboxes/shop1")),
        Vec::<u32>::new()
    );
    assert!(!sandbox.exists());
    assert_eq!(http_get(&u2), "The backend says: hello from dtk");
    dtk.run(&["service", "uninstall", "shop1"]).ok();
    dtk.run(&["service", "delete", "shop2"]).ok();
    dtk.run(&["service", "uninstall", "shop2"]).ok();
    let list = dtk.run(&["--json", "service", "list"]).ok().json();
    let names: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["box"]);
}

/// The processes whose working directory is under `dir`.
fn processes_under(dir: &std::path::Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, p)| std::fs::read_link(p.join("cwd")).is_ok_and(|c| c.starts_with(&dir)))
        .map(|(pid, _)| pid)
        .collect()
}

/// A home with the `slow` fixture installed and its `chain` staged as service `slow`.
fn slow_service() -> Dtk {
    let dtk = Dtk::new();
    let fixture = workspace().join("tests/fixtures/slow");
    dtk.run(&["module", "install", fixture.to_str().unwrap()])
        .ok();
    dtk.run(&["service", "stage", "test/slow", "chain", "-n", "slow"])
        .ok();
    dtk
}

/// Where service `slow`'s steps on `node` leave their traces (a file per step, a line per run).
fn slow_steps(dtk: &Dtk, node: &str) -> std::path::PathBuf {
    dtk.home()
        .join("sandboxes/slow")
        .join(node)
        .join("modules/test/slow/steps")
}

#[test]
fn a_converge_killed_midway_resumes() {
    let dtk = slow_service();
    let mut child = dtk
        .command(&["service", "converge", "slow", "--concurrency", "2"])
        .spawn()
        .unwrap();
    // Let some steps finish, then kill -9 in the middle of the run.
    std::thread::sleep(Duration::from_millis(1300));
    child.kill().unwrap();
    child.wait().unwrap();
    let steps = |node: &str| slow_steps(&dtk, node);
    let count = |node: &str| {
        std::fs::read_dir(steps(node))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = count("a") + count("b");
    assert!(
        before < 8,
        "the kill came too late to test anything ({before} steps done)"
    );
    // The interrupted run left its journal; the next converge resumes from it.
    let out = dtk.run(&["service", "converge", "slow"]).ok();
    assert!(out.stdout.contains("succeeded"), "{}", out.stdout);
    for node in ["a", "b"] {
        for e in std::fs::read_dir(steps(node)).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            // A step ran once, or twice when the kill hit it while it was running.
            assert!((1..=2).contains(&text.lines().count()), "{text}");
        }
    }
    assert_eq!(count("a") + count("b"), 8);
    let again = dtk.run(&["service", "converge", "slow"]).ok();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    git(&dtk.service_dir("slow"), &["fsck", "--strict"]);
}

/// Reads `lines` until one satisfies `seen`; returns everything read.
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    seen: impl Fn(&str) -> bool,
) -> String {
    let mut text = String::new();
    for line in lines {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if seen(&line) {
            return text;
        }
    }
    panic!("the output ended first:\n{text}");
}

/// Starts `dtk service converge SERVICE --concurrency 2` with its output to be followed
/// line by line.
fn converge_following(
    dtk: &Dtk,
    service: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead as _;
    let mut child = dtk
        .command(&["service", "converge", service, "--concurrency", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    (child, std::io::BufReader::new(out).lines())
}

/// Ctrl-C lets the running tasks finish and starts no new ones: the run is recorded as
/// cancelled and the next converge runs only the rest. A thread of its own watches for it,
/// in place before the first task starts; a second Ctrl-C ends dtk at once, with status
/// 130, while an action still runs.
#[test]
fn ctrl_c_lets_running_tasks_finish_and_a_second_one_quits_at_once() {
    let dtk = slow_service();
    let (mut child, mut lines) = converge_following(&dtk, "slow");
    // Each node runs four 0.4 s steps in turn: interrupt once the first step is done.
    let mut text = read_until(&mut lines, |l| l.starts_with("done") && l.contains("step["));
    // SIGINT to dtk alone, as a terminal's Ctrl-C reaches it (here not its actions).
    assert!(signal(child.id(), "INT"));
    text.extend(lines.map(|l| l.unwrap() + "\n"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("interrupted: finishing running tasks, starting no new ones"),
        "{text}"
    );
    assert!(text.contains("converge slow cancelled"), "{text}");
    let runs = || {
        ["a", "b"]
            .iter()
            .filter_map(|n| std::fs::read_dir(slow_steps(&dtk, n)).ok())
            .flatten()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<Vec<String>>()
    };
    let before = runs();
    assert!(
        (1..8).contains(&before.len()),
        "the interrupted run finished {} of 8 steps:\n{text}",
        before.len()
    );
    // Every step that started ran to its end, once; the next converge does the rest.
    let next = dtk.run(&["service", "converge", "slow"]).ok();
    assert!(next.stdout.contains("succeeded"), "{}", next.stdout);
    let after = runs();
    assert_eq!(after.len(), 8);
    assert!(after.iter().all(|t| t.lines().count() == 1), "{after:?}");

    // A second Ctrl-C does not wait for a 30 s step.
    dtk.run(&["service", "stage", "test/slow", "chain", "-n", "long"])
        .ok();
    dtk.run(&[
        "service",
        "set-attribute",
        "long",
        "a/step[s1]/seconds",
        "'30'",
    ])
    .ok();
    let started = std::time::Instant::now();
    let (mut child, mut lines) = converge_following(&dtk, "long");
    read_until(&mut lines, |l| {
        l.starts_with("started") && l.contains("a/step[s1]")
    });
    assert!(signal(child.id(), "INT"));
    read_until(&mut lines, |l| l.starts_with("interrupted:"));
    assert!(signal(child.id(), "INT"));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "dtk waited for the step: {:?}",
        started.elapsed()
    );
    // The step dtk left running (the signal reached dtk alone) ends with the test.
    for pid in processes_under(&dtk.home().join("sandboxes/long")) {
        let _ = signal(pid, "KILL");
    }
}

/// The parse cache (`.dtk/parsed/`) changes no result: a hand edit is seen at once, and
/// damaged entries are passed over and written again.
#[test]
fn the_parse_cache_never_hides_an_edit_and_survives_damage() {
    let dtk = Dtk::new();
    let webapp = example("webapp");
    dtk.run(&["module", "install", webapp.to_str().unwrap()])
        .ok();
    dtk.run(&["service", "stage", "demo/webapp", "two_tier", "-n", "app"])
        .ok();
    dtk.run(&["service", "converge", "app"]).ok();
    let dir = dtk.home().join("services/app");
    let parsed = dir.join(".dtk/parsed");
    let entries = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&parsed)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert!(
        entries().iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("service-")),
        "{:?}",
        entries()
    );
    // A hand edit: the plan shows it, whatever the cache holds for the old text.
    let doc = dir.join("dtk.service.yaml");
    let text = std::fs::read_to_string(&doc).unwrap();
    assert!(text.contains("hello from dtk"), "{text}");
    std::fs::write(
        &doc,
        text.replace("hello from dtk", "hello from the cache test"),
    )
    .unwrap();
    let plan = dtk.run(&["service", "plan", "app"]).ok().stdout.clone();
    assert!(plan.contains("db/backend"), "{plan}");
    // Every entry damaged: passed over, the documents parsed again, the edit converged.
    for e in entries() {
        let mut bytes = std::fs::read(&e).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&e, bytes).unwrap();
    }
    let damaged = entries()
        .iter()
        .map(|e| std::fs::read(e).unwrap())
        .collect::<Vec<_>>();
    dtk.run(&["service", "converge", "app"]).ok();
    let out = dtk
        .run(&["service", "attributes", "app"])
        .ok()
        .stdout
        .clone();
    assert!(out.contains("hello from the cache test"), "{out}");
    // The converge replaced what it read (the old text's entries stay as they are).
    let now = entries()
        .iter()
        .map(|e| std::fs::read(e).unwrap())
        .collect::<Vec<_>>();
    assert!(
        now.iter().any(|d| !damaged.contains(d)),
        "no damaged entry was written again"
    );
    // A no-op converge changes nothing.
    let again = dtk.run(&["service", "converge", "app"]).ok().stdout.clone();
    assert!(!again.contains("db/backend"), "{again}");
    // The example's servers stop with their nodes (none outlives the test).
    dtk.run(&["service", "delete", "app"]).ok();
}
