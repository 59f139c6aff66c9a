use std::collections::BTreeSet;
use std::process::Command;

use super::*;

/// A stand-in catalog: a bare repository holding one module tree.
fn catalog_with_module(dir: &Path, files: &[(&str, &[u8])]) -> (PathBuf, ObjectId) {
    let repo = gix::init_bare(dir).unwrap();
    let empty = ObjectId::empty_tree(repo.object_hash());
    let mut ed = repo.edit_tree(empty).unwrap();
    for (p, data) in files {
        let id = repo.write_blob(data).unwrap();
        ed.upsert(*p, EntryKind::Blob, id).unwrap();
    }
    let tree = ed.write().unwrap().detach();
    (dir.join("objects"), tree)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup() -> (tempfile::TempDir, InstanceRepo, ObjectId) {
    let tmp = tempfile::tempdir().unwrap();
    let big = vec![7u8; 1 << 20];
    let (objects, tree) = catalog_with_module(
        &tmp.path().join("catalog"),
        &[
            ("dtk.module.yaml", b"module: a/b\nversion: 1.0.0\n"),
            ("bin/big.bin", &big),
        ],
    );
    let root = tmp.path().join("svc");
    let repo = InstanceRepo::create(
        &root,
        &[objects],
        &[("dtk.service.yaml", b"name: svc\n")],
        &[("modules/a/b".to_owned(), tree)],
        "stage svc",
    )
    .unwrap();
    (tmp, repo, tree)
}

#[test]
fn create_is_sparse_and_git_agrees() {
    let (_tmp, repo, _) = setup();
    let root = repo.root().to_path_buf();
    assert!(root.join("dtk.service.yaml").is_file());
    assert!(root.join("modules/a/b/dtk.module.yaml").is_file());
    assert!(
        !root.join("modules/a/b/bin/big.bin").exists(),
        "big files stay in git only"
    );
    assert_eq!(git(&root, &["status", "--porcelain"]), "");
    git(&root, &["fsck", "--strict"]);
    assert!(git(&root, &["log", "--oneline"]).contains("stage svc"));
    let size: u64 = walk_size(&root.join(".git"));
    assert!(size < 100 * 1024, "instance repository is {size} bytes");
    assert!(
        !root.join(".git/hooks/pre-commit.sample").exists(),
        "no template samples"
    );
    assert!(repo.changes().unwrap().is_empty());
    let m = repo.materialized().unwrap();
    assert_eq!(
        m,
        BTreeSet::from([
            "dtk.service.yaml".to_owned(),
            "modules/a/b/dtk.module.yaml".to_owned()
        ])
    );
}

fn walk_size(p: &Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            walk_size(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[test]
fn edits_are_seen_committed_and_logged() {
    let (_tmp, repo, _) = setup();
    let root = repo.root().to_path_buf();
    fs::write(root.join("dtk.service.yaml"), "name: svc\n# edited\n").unwrap();
    fs::write(root.join("modules/a/b/new.sh"), "echo hi\n").unwrap();
    let changes = repo.changes().unwrap();
    let kinds: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("dtk.service.yaml", ChangeKind::Modified),
            ("modules/a/b/new.sh", ChangeKind::Added)
        ]
    );
    repo.commit_changes(&changes, "edit").unwrap();
    assert!(repo.changes().unwrap().is_empty());
    assert_eq!(git(&root, &["status", "--porcelain"]), "");
    let log = repo.log(10).unwrap();
    assert_eq!(
        log.iter().map(|c| c.summary.as_str()).collect::<Vec<_>>(),
        ["edit", "stage svc"]
    );
    // The big file is still in the tree though never written to disk.
    let files = repo
        .tree_files(repo.commit_tree(repo.head().unwrap()).unwrap())
        .unwrap();
    assert!(files.contains_key("modules/a/b/bin/big.bin"));
    git(&root, &["fsck", "--strict"]);

    fs::remove_file(root.join("modules/a/b/new.sh")).unwrap();
    let changes = repo.changes().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].kind, ChangeKind::Deleted);
}

#[test]
fn rollback_like_sync_rewrites_materialized_files() {
    let (_tmp, repo, _) = setup();
    let root = repo.root().to_path_buf();
    let first = repo.head().unwrap();
    fs::write(root.join("dtk.service.yaml"), "name: svc\nchanged: 1\n").unwrap();
    let changes = repo.changes().unwrap();
    repo.commit_changes(&changes, "edit").unwrap();
    let old_tree = repo.commit_tree(first).unwrap();
    repo.commit_and_sync(old_tree, "rollback").unwrap();
    assert_eq!(
        fs::read_to_string(root.join("dtk.service.yaml")).unwrap(),
        "name: svc\n"
    );
    assert!(repo.changes().unwrap().is_empty());
    assert_eq!(git(&root, &["status", "--porcelain"]), "");
}

#[test]
fn merge_keeps_both_sides_or_reports_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = b"a: 1\nb: 2\nc: 3\nd: 4\ne: 5\n" as &[u8];
    let (objects, base) = catalog_with_module(&tmp.path().join("c1"), &[("f.yaml", v1)]);
    let root = tmp.path().join("svc");
    let repo = InstanceRepo::create(
        &root,
        &[objects],
        &[],
        &[("modules/x/y".to_owned(), base)],
        "stage",
    )
    .unwrap();
    let ours = repo
        .edit_tree(
            Some(base),
            &[TreeEdit::File(
                "f.yaml".into(),
                b"a: 100\nb: 2\nc: 3\nd: 4\ne: 5\n".to_vec(),
            )],
        )
        .unwrap();
    let theirs = repo
        .edit_tree(
            Some(base),
            &[TreeEdit::File(
                "f.yaml".into(),
                b"a: 1\nb: 2\nc: 3\nd: 4\ne: 500\n".to_vec(),
            )],
        )
        .unwrap();
    let merged = repo.merge_trees(base, ours, theirs).unwrap().unwrap();
    let files = repo.tree_files(merged).unwrap();
    let data = repo.read_blob(files["f.yaml"].0).unwrap();
    assert_eq!(data, b"a: 100\nb: 2\nc: 3\nd: 4\ne: 500\n");

    let clash = repo
        .edit_tree(
            Some(base),
            &[TreeEdit::File(
                "f.yaml".into(),
                b"a: 7\nb: 2\nc: 3\nd: 4\ne: 5\n".to_vec(),
            )],
        )
        .unwrap();
    let conflicts = repo.merge_trees(base, ours, clash).unwrap().unwrap_err();
    assert_eq!(conflicts, ["f.yaml"]);
}

/// Reads of commits and paths are remembered by object id, so each commit keeps its own
/// content: a later commit changing a file, removing one or making a directory of a path
/// reads as it is, and the earlier commit reads as it was.
#[test]
fn remembered_reads_follow_each_commit() {
    let (_tmp, repo, _) = setup();
    let first = repo.head().unwrap();
    let read = |c: ObjectId, p: &str| repo.read_file_at(c, p).unwrap();
    assert_eq!(read(first, "dtk.service.yaml").unwrap(), b"name: svc\n");
    assert!(read(first, "notes/a").is_none());
    let base = repo.commit_tree(first).unwrap();
    let tree = repo
        .edit_tree(
            Some(base),
            &[
                TreeEdit::File("dtk.service.yaml".into(), b"name: svc2\n".to_vec()),
                TreeEdit::File("notes/a".into(), b"a".to_vec()),
            ],
        )
        .unwrap();
    let second = repo.commit(tree, Some(first), "edit").unwrap();
    assert_eq!(repo.commit_tree(second).unwrap(), tree);
    assert_eq!(read(second, "dtk.service.yaml").unwrap(), b"name: svc2\n");
    assert_eq!(read(second, "notes/a").unwrap(), b"a");
    assert!(repo.subtree(tree, "notes").unwrap().is_some());
    assert!(read(second, "notes").is_none(), "a directory is not a file");
    // The first commit, asked again, is as it was.
    assert_eq!(repo.commit_tree(first).unwrap(), base);
    assert_eq!(read(first, "dtk.service.yaml").unwrap(), b"name: svc\n");
    assert!(read(first, "notes/a").is_none());
    assert!(repo.subtree(base, "notes").unwrap().is_none());
}
