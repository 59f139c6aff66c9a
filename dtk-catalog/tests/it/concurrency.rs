//! Concurrent publishes (threads and processes) and interrupted publishes (a panic, and
//! `kill -9` at every stage of a publish).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtk_catalog::{Catalog, PublishStage, PublishStatus};

use crate::support::{Env, fsck, git, refs, write, write_module};

const CHILD: &str = "DTK_CATALOG_TEST_CHILD";
const ROOT: &str = "DTK_CATALOG_TEST_ROOT";
const DIRS: &str = "DTK_CATALOG_TEST_DIRS";
const HANG_AT: &str = "DTK_CATALOG_TEST_HANG_AT";
const MARKER: &str = "DTK_CATALOG_TEST_MARKER";

/// Not a test of its own: the body of the child processes that the tests below spawn
/// (this test binary again, with `--exact concurrency::child`). Without `CHILD` in the
/// environment it does nothing.
#[test]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let root = PathBuf::from(std::env::var(ROOT).unwrap());
    let dirs: Vec<PathBuf> = std::env::var(DIRS)
        .unwrap()
        .split('\n')
        .map(PathBuf::from)
        .collect();
    let mut catalog = Catalog::open(&root).unwrap();
    if let Ok(stage) = std::env::var(HANG_AT) {
        let marker = PathBuf::from(std::env::var(MARKER).unwrap());
        catalog.set_publish_hook(Arc::new(move |s: PublishStage| {
            if format!("{s:?}") == stage {
                std::fs::write(&marker, "").unwrap();
                // Wait here to be killed.
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }));
    }
    for d in dirs {
        catalog.publish(&d).unwrap();
    }
}

fn spawn_child(root: &Path, dirs: &[PathBuf], hang: Option<(&str, &Path)>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "concurrency::child", "--test-threads=1", "-q"])
        .env(CHILD, "1")
        .env(ROOT, root)
        .env(
            DIRS,
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .stdout(std::process::Stdio::null());
    if let Some((stage, marker)) = hang {
        cmd.env(HANG_AT, stage).env(MARKER, marker);
    }
    cmd.spawn().unwrap()
}

fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited ({status}) before reaching its stage");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the child never reached its stage"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn threads_publishing_at_once_all_land() {
    let env = Env::new();
    const THREADS: usize = 8;
    const VERSIONS: usize = 3;
    let mut jobs = Vec::new();
    for t in 0..THREADS {
        let mut dirs = Vec::new();
        for v in 0..VERSIONS {
            dirs.push(env.module(
                &format!("shared-{t}-{v}"),
                "demo/shared",
                &format!("1.{t}.{v}"),
                &[],
            ));
        }
        dirs.push(env.module(&format!("own-{t}"), &format!("demo/m{t}"), "1.0.0", &[]));
        // Half of the threads share one catalog handle, half open their own.
        let catalog = if t % 2 == 0 {
            env.catalog.clone()
        } else {
            Catalog::open(env.root()).unwrap()
        };
        jobs.push(std::thread::spawn(move || {
            for d in dirs {
                assert_eq!(catalog.publish(&d).unwrap().status, PublishStatus::Created);
            }
        }));
    }
    for j in jobs {
        j.join().unwrap();
    }
    let refs = env.refs();
    for t in 0..THREADS {
        for v in 0..VERSIONS {
            assert!(refs.contains_key(&format!("refs/tags/demo/shared/1.{t}.{v}")));
        }
        assert!(refs.contains_key(&format!("refs/tags/demo/m{t}/1.0.0")));
    }
    let log = env.git(&["log", "--format=%s", "modules/demo/shared"]);
    assert_eq!(
        log.lines().count(),
        THREADS * VERSIONS,
        "one chain, no commit lost"
    );
    assert!(!env.root().join("dtk-publish.journal").exists());
    fsck(env.root());
}

#[test]
fn the_same_version_published_at_once_is_created_once() {
    let env = Env::new();
    let dirs: Vec<PathBuf> = (0..6)
        .map(|i| env.module(&format!("copy-{i}"), "demo/web", "1.0.0", &[]))
        .collect();
    let jobs: Vec<_> = dirs
        .into_iter()
        .map(|d| {
            let c = env.catalog.clone();
            std::thread::spawn(move || c.publish(&d).unwrap())
        })
        .collect();
    let results: Vec<_> = jobs.into_iter().map(|j| j.join().unwrap()).collect();
    let created = results
        .iter()
        .filter(|p| p.status == PublishStatus::Created)
        .count();
    assert_eq!(created, 1);
    assert!(results.iter().all(|p| p.commit == results[0].commit));
    assert_eq!(
        env.git(&["log", "--format=%H", "modules/demo/web"]).trim(),
        results[0].commit
    );
}

#[test]
fn processes_publishing_at_once_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    // The catalog does not exist yet: the children race to create it too.
    let root = tmp.path().join("home/catalog");
    const PROCS: usize = 4;
    const VERSIONS: usize = 4;
    let mut children = Vec::new();
    for p in 0..PROCS {
        let mut dirs = Vec::new();
        for v in 0..VERSIONS {
            let d = tmp.path().join(format!("src/shared-{p}-{v}"));
            std::fs::create_dir_all(&d).unwrap();
            write_module(&d, "demo/shared", &format!("2.{p}.{v}"), &[]);
            write(&d, "payload.txt", &format!("{p} {v}"));
            dirs.push(d);
        }
        let d = tmp.path().join(format!("src/own-{p}"));
        std::fs::create_dir_all(&d).unwrap();
        write_module(&d, &format!("demo/p{p}"), "1.0.0", &[]);
        dirs.push(d);
        children.push(spawn_child(&root, &dirs, None));
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let all = refs(&root);
    for p in 0..PROCS {
        for v in 0..VERSIONS {
            assert!(all.contains_key(&format!("refs/tags/demo/shared/2.{p}.{v}")));
        }
        assert!(all.contains_key(&format!("refs/tags/demo/p{p}/1.0.0")));
    }
    let log = git(&root, &["log", "--format=%s", "modules/demo/shared"]);
    assert_eq!(log.lines().count(), PROCS * VERSIONS);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("home"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec!["catalog"], "no half-made catalog left");
    fsck(&root);
}

#[test]
fn a_publish_that_panics_before_its_tag_is_undone() {
    let mut env = Env::new();
    let d1 = env.module("v1", "demo/web", "1.0.0", &[]);
    env.catalog.publish(&d1).unwrap();
    let before = env.refs();

    let d2 = env.module("v2", "demo/web", "1.1.0", &[]);
    let mut failing = env.catalog.clone();
    failing.set_publish_hook(Arc::new(|s| {
        if s == PublishStage::BranchUpdated {
            panic!("injected failure after the branch moved");
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| failing.publish(&d2)));
    assert!(result.is_err(), "the hook panicked");
    // The branch moved but the tag did not: the publish is not visible to readers.
    assert!(!env.refs().contains_key("refs/tags/demo/web/1.1.0"));
    assert_eq!(
        env.catalog
            .versions(&"demo/web".parse().unwrap())
            .unwrap()
            .len(),
        1
    );

    // Opening the catalog undoes it.
    env.catalog = Catalog::open(env.root()).unwrap();
    assert_eq!(env.refs(), before);
    assert!(!env.root().join("dtk-publish.journal").exists());

    // And the version can be published.
    let p = env.catalog.publish(&d2).unwrap();
    assert_eq!(p.status, PublishStatus::Created);
    let log = env.git(&["log", "--format=%s", "modules/demo/web"]);
    assert_eq!(log, "demo/web 1.1.0\ndemo/web 1.0.0\n");
    fsck(env.root());
}

#[test]
fn a_publish_killed_at_any_stage_leaves_the_catalog_as_it_was() {
    for stage in [
        "ObjectsWritten",
        "Locked",
        "JournalWritten",
        "BranchUpdated",
        "TagUpdated",
    ] {
        let env = Env::new();
        let d1 = env.module("v1", "demo/web", "1.0.0", &[]);
        let first = env.catalog.publish(&d1).unwrap();
        let before = env.refs();

        let d2 = env.module("v2", "demo/web", "1.1.0", &[]);
        write(&d2, "new.txt", "new");
        let marker = env.tmp.path().join("reached");
        let mut child = spawn_child(
            env.root(),
            std::slice::from_ref(&d2),
            Some((stage, &marker)),
        );
        wait_for(&marker, &mut child);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // Another process (here: this one) opens the catalog afterwards.
        let catalog = Catalog::open(env.root()).unwrap();
        let after = env.refs();
        if stage == "TagUpdated" {
            // The tag is the commit point: a publish killed after it is complete.
            assert_eq!(after.len(), before.len() + 1, "{stage}");
            let tag = &after["refs/tags/demo/web/1.1.0"];
            assert_eq!(&after["refs/heads/modules/demo/web"], tag, "{stage}");
            assert_eq!(
                git(env.root(), &["rev-parse", &format!("{tag}^")]).trim(),
                first.commit
            );
        } else {
            assert_eq!(after, before, "refs unchanged after a kill at {stage}");
        }
        assert!(!env.root().join("dtk-publish.journal").exists(), "{stage}");

        let again = catalog.publish(&d2).unwrap();
        let expected = if stage == "TagUpdated" {
            PublishStatus::Unchanged
        } else {
            PublishStatus::Created
        };
        assert_eq!(again.status, expected, "{stage}");
        let log = git(env.root(), &["log", "--format=%s", "modules/demo/web"]);
        assert_eq!(log, "demo/web 1.1.0\ndemo/web 1.0.0\n", "{stage}");
        fsck(env.root());
    }
}
