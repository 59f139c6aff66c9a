//! Journal tests: format, torn and corrupt lines, appending after a kill, group commit.

use dtk_workflow::journal::{JournalEntry, JournalWriter, parse_lines, replay_bytes};
use dtk_workflow::{ActualState, PlanRequest, SyncMode, TaskId, execute, plan, replay};

use crate::harness::bigger;
use crate::support::*;

fn entry(task: &str) -> JournalEntry {
    JournalEntry::Intent {
        task: TaskId(task.to_owned()),
        component: dtk_model::instance::ComponentId(task.to_owned()),
    }
}

#[test]
fn torn_and_corrupt_lines_are_tolerated() {
    let text = concat!(
        r#"{"kind":"begin","version":1,"service":"s","plan":"converge","tasks":2}"#,
        "\n",
        r#"{"kind":"intent","task":"a.create","component":"a"}"#,
        "\n",
        "garbage that is not json\n",
        r#"{"kind":"done","task":"a.create","component":"a","effect":"deleted"}"#,
        "\n",
        r#"{"kind":"intent","task":"b.create","component":"b"}"#,
        "\n",
        r#"{"kind":"done","task":"b.cre"#,
    );
    let st = replay_bytes(text.as_bytes());
    assert_eq!(st.service.as_deref(), Some("s"));
    assert!(st.torn);
    assert_eq!(st.corrupt_lines, 1);
    assert_eq!(
        st.completed
            .iter()
            .map(|t| t.0.as_str())
            .collect::<Vec<_>>(),
        vec!["a.create"]
    );
    assert_eq!(st.interrupted, vec![TaskId("b.create".into())]);
    assert_eq!(st.ended, None);
    // A missing journal is an empty one.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        replay(&dir.path().join("none")).unwrap(),
        Default::default()
    );
}

#[test]
fn appending_after_a_torn_line_starts_a_new_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    std::fs::write(&path, "{\"kind\":\"intent\",\"task\":\"a.create\",\"comp").unwrap();
    let rt = rt();
    rt.block_on(async {
        let w = JournalWriter::open(&path, SyncMode::GroupCommit).unwrap();
        w.append(entry("b.create"));
        let stats = w.close().await.unwrap();
        assert_eq!(stats.entries, 1);
    });
    let st = replay(&path).unwrap();
    assert!(!st.torn);
    assert_eq!(st.corrupt_lines, 1);
    assert_eq!(st.interrupted, vec![TaskId("b.create".into())]);
}

#[test]
fn group_commit_syncs_once_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (group, every) = rt.block_on(async {
        let w = JournalWriter::open(&dir.path().join("g"), SyncMode::GroupCommit).unwrap();
        for i in 0..2000 {
            w.append(entry(&format!("t{i}")));
        }
        let g = w.close().await.unwrap();
        let w = JournalWriter::open(&dir.path().join("e"), SyncMode::EveryEntry).unwrap();
        for i in 0..200 {
            w.append(entry(&format!("t{i}")));
        }
        (g, w.close().await.unwrap())
    });
    assert_eq!(group.entries, 2000);
    assert!(group.syncs < 2000 / 4, "{group:?}");
    assert_eq!(every.entries, 200);
    assert_eq!(every.syncs, 200);
    assert_eq!(replay(&dir.path().join("g")).unwrap().entries, 2000);
}

#[test]
fn entries_that_trickle_in_share_a_sync_and_are_written_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let rt = rt();
    let stats = rt.block_on(async {
        let w = JournalWriter::open(&path, SyncMode::GroupCommit).unwrap();
        // One entry every 200 µs for about 40 ms: each batch the writer takes holds one
        // entry, as when short tasks start and end one by one.
        for i in 0..200 {
            w.append(entry(&format!("t{i}")));
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        // Written without waiting for the close (nor for a sync): a killed process
        // would leave them.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(replay(&path).unwrap().entries, 200);
        w.close().await.unwrap()
    });
    assert_eq!(stats.entries, 200);
    // One sync per commit interval (2 ms), not one per batch: about 20 for 40 ms. A sync
    // per batch would be 200; the bound leaves room for a slow machine.
    assert!(stats.syncs <= 60, "{stats:?}");
    assert!(stats.syncs >= 1, "{stats:?}");
}

#[test]
fn a_run_journals_begin_intents_results_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let m = bigger("1", "1", false, false);
    let world = World::new();
    let mut c = ctx(&world);
    c.journal = Some(dir.path().join("run.jsonl"));
    c.journal_sync = SyncMode::GroupCommit;
    world.fail("lb", "*", Fail::Always);
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
    let o = rt()
        .block_on(execute(&p, &m, &ActualState::new(), &c))
        .unwrap();
    let stats = o.journal.unwrap();
    // begin + (intent + result) per task + end.
    assert_eq!(stats.entries as usize, 2 + 2 * p.len());
    assert!(stats.syncs <= stats.entries);
    let st = replay(&dir.path().join("run.jsonl")).unwrap();
    assert_eq!(st.ended.as_deref(), Some("failed"));
    assert_eq!(
        st.failed.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        vec!["lb.create"]
    );
    assert_eq!(st.completed.len(), p.len() - 1);
    let mut s = ActualState::new();
    s.apply_journal(&st);
    assert_eq!(s, o.state);
    // Every line has its time; `begin` lists the plan with each task's predecessors, and
    // every intent comes at or after the results of the tasks it waits for.
    let bytes = std::fs::read(dir.path().join("run.jsonl")).unwrap();
    let (lines, used) = parse_lines(&bytes);
    assert_eq!(used, bytes.len());
    assert_eq!(lines.len(), 2 + 2 * p.len());
    assert!(lines.iter().all(|l| l.at.is_some()));
    let JournalEntry::Begin { graph, tasks, .. } = &lines[0].entry else {
        panic!("first line: {:?}", lines[0]);
    };
    assert_eq!(*tasks, p.len());
    let planned: Vec<&str> = p.tasks().map(|t| t.id.as_str()).collect();
    assert_eq!(
        graph.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        planned
    );
    for t in graph {
        let mut after: Vec<&TaskId> = t.after.iter().collect();
        let mut want = p.predecessors(&t.id);
        after.sort();
        want.sort();
        assert_eq!(after, want, "{}", t.id);
    }
    // A reader following the file sees only complete lines; the rest waits.
    let cut = bytes.len() - 5;
    let (first, used) = parse_lines(&bytes[..cut]);
    assert_eq!(first.len(), lines.len() - 1);
    let (rest, _) = parse_lines(&bytes[used..]);
    assert_eq!(rest.len(), 1);
    // Journals written before `at` and `graph` existed read the same.
    let old = concat!(
        r#"{"kind":"begin","version":1,"service":"s","plan":"converge","tasks":1}"#,
        "\n",
        r#"{"kind":"done","task":"a.create","component":"a","effect":"deleted"}"#,
        "\n"
    );
    let (old_lines, _) = parse_lines(old.as_bytes());
    assert_eq!(old_lines.len(), 2);
    assert!(old_lines.iter().all(|l| l.at.is_none()));
    assert_eq!(replay_bytes(old.as_bytes()).completed.len(), 1);
    // A journal that cannot be created stops the run before anything runs.
    let mut bad = ctx(&world);
    bad.journal = Some(dir.path().join("no/such/dir/j"));
    let e = rt()
        .block_on(execute(&p, &m, &ActualState::new(), &bad))
        .unwrap_err();
    assert_eq!(e.to_string(), "cannot start the run of service `big`");
    let src = std::error::Error::source(&e).unwrap().to_string();
    assert!(src.starts_with("cannot open journal "), "{src}");
}
