//! Publishing: what lands in git, immutability, development versions, what is stored and
//! what is refused.

use dtk_catalog::{CatalogError, PublishStatus, validate_dir};
use dtk_model::ModuleVersion;

use crate::support::{Env, all_files, fsck, make_executable, write, write_module};

#[test]
fn publish_creates_a_commit_on_the_module_branch_and_a_tag() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.0.0", &[]);
    write(&dir, "bin/start", "#!/bin/sh\necho start\n");
    make_executable(&dir, "bin/start");
    write(&dir, "templates/app.conf", "port={{port}}\n");

    let p = env.catalog.publish(&dir).unwrap();
    assert_eq!(p.status, PublishStatus::Created);
    assert_eq!(p.module.to_string(), "demo/web");
    assert_eq!(p.version.to_string(), "1.0.0");
    assert_eq!(p.files, 3);

    let refs = env.refs();
    assert_eq!(refs["refs/heads/modules/demo/web"], p.commit);
    assert_eq!(refs["refs/tags/demo/web/1.0.0"], p.commit);

    // The ordinary git command line reads the catalog.
    let log = env.git(&["log", "--format=%s|%an <%ae>", "modules/demo/web"]);
    assert_eq!(log, "demo/web 1.0.0|dtk <dtk@localhost>\n");
    let manifest = env.git(&["show", "demo/web/1.0.0:dtk.module.yaml"]);
    assert_eq!(
        manifest,
        std::fs::read_to_string(dir.join("dtk.module.yaml")).unwrap()
    );
    let tree = env.git(&["ls-tree", "-r", "demo/web/1.0.0"]);
    assert!(tree.contains("100755 blob"), "{tree}");
    assert!(tree.contains("\tbin/start\n"), "{tree}");
    assert!(tree.contains("100644 blob"), "{tree}");
    assert_eq!(
        env.git(&["rev-parse", "demo/web/1.0.0^{tree}"]).trim(),
        p.tree
    );
    fsck(env.root());
}

#[test]
fn the_catalog_is_created_on_first_use_and_never_garbage_collected() {
    let env = Env::new();
    assert!(env.root().ends_with("home/catalog"));
    assert_eq!(
        env.git(&["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    assert_eq!(env.git(&["config", "gc.auto"]).trim(), "0");
    assert_eq!(env.git(&["config", "gc.pruneExpire"]).trim(), "never");
    assert_eq!(
        env.catalog.objects_dir(),
        env.root().join("objects"),
        "alternates point here"
    );
    // Opening again reuses it.
    let again = dtk_catalog::Catalog::open(env.root()).unwrap();
    assert_eq!(again.root(), env.root());
    // A directory that is something else is refused.
    let other = env.dir("not-a-catalog");
    write(&other, "file", "x");
    let err = dtk_catalog::Catalog::open(&other).unwrap_err();
    assert!(matches!(err, CatalogError::NotACatalog { .. }), "{err}");
}

#[test]
fn publishing_the_same_content_again_is_a_no_op() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.0.0", &[]);
    let first = env.catalog.publish(&dir).unwrap();
    let before = env.refs();
    let objects = all_files(&env.catalog.objects_dir());
    let again = env.catalog.publish(&dir).unwrap();
    assert_eq!(again.status, PublishStatus::Unchanged);
    assert_eq!(again.commit, first.commit);
    assert_eq!(env.refs(), before);
    assert_eq!(all_files(&env.catalog.objects_dir()), objects);
}

#[test]
fn a_released_version_with_other_content_is_refused_naming_both_commits() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.0.0", &[]);
    let first = env.catalog.publish(&dir).unwrap();
    let before = env.refs();
    write(&dir, "README.md", "changed\n");
    let err = env.catalog.publish(&dir).unwrap_err();
    let CatalogError::VersionExists(exists) = &err else {
        panic!("expected VersionExists, got {err:?}");
    };
    let refused = &exists.refused;
    assert_eq!(exists.existing, first.commit);
    let msg = err.to_string();
    assert!(
        msg.contains(&first.commit) && msg.contains(refused.as_str()),
        "{msg}"
    );
    assert!(msg.contains("demo/web version 1.0.0"), "{msg}");
    assert!(err.is_refusal());
    assert_eq!(env.refs(), before, "refs unchanged");
    // The refused commit exists (unreferenced), so `git show` can explain the difference.
    assert_eq!(env.git(&["cat-file", "-t", refused]).trim(), "commit");
    fsck(env.root());
}

#[test]
fn development_versions_move_and_keep_every_commit_reachable() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "master", &[]);
    let first = env.catalog.publish(&dir).unwrap();
    assert_eq!(first.status, PublishStatus::Created);

    write(&dir, "README.md", "v2\n");
    let second = env.catalog.publish(&dir).unwrap();
    assert_eq!(
        second.status,
        PublishStatus::Moved {
            previous: first.commit.clone()
        }
    );
    assert_eq!(env.refs()["refs/tags/demo/web/master"], second.commit);
    let parents = env.git(&["rev-parse", &format!("{}^@", second.commit)]);
    assert_eq!(parents.trim(), first.commit);

    // A release in between: the next development commit has the branch head as first
    // parent and the previous development commit as second.
    let rel = env.dir("web-rel");
    write_module(&rel, "demo/web", "1.0.0", &[]);
    let release = env.catalog.publish(&rel).unwrap();
    write(&dir, "README.md", "v3\n");
    let third = env.catalog.publish(&dir).unwrap();
    let parents = env.git(&["rev-parse", &format!("{}^@", third.commit)]);
    assert_eq!(
        parents.lines().collect::<Vec<_>>(),
        vec![release.commit.as_str(), second.commit.as_str()]
    );
    let history = env.git(&["log", "--format=%H", "modules/demo/web"]);
    for c in [
        &first.commit,
        &second.commit,
        &release.commit,
        &third.commit,
    ] {
        assert!(
            history.contains(c.as_str()),
            "{c} reachable from the branch"
        );
    }
    // The same content again does not move it.
    let same = env.catalog.publish(&dir).unwrap();
    assert_eq!(same.status, PublishStatus::Unchanged);
    assert_eq!(same.commit, third.commit);
    fsck(env.root());
}

#[test]
fn gitignore_is_honoured_and_git_directories_are_skipped() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.0.0", &[]);
    write(&dir, ".gitignore", "*.log\nbuild/\n");
    write(&dir, "app.log", "noise");
    write(&dir, "build/out.bin", "noise");
    write(&dir, "lib/.gitignore", "secret.txt\n");
    write(&dir, "lib/secret.txt", "noise");
    write(&dir, "lib/code.sh", "echo\n");
    write(&dir, ".git/HEAD", "ref: refs/heads/main\n");
    write(&dir, ".hidden", "kept\n");

    let valid = validate_dir(&dir).unwrap();
    let paths: Vec<&str> = valid.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            ".gitignore",
            ".hidden",
            "dtk.module.yaml",
            "lib/.gitignore",
            "lib/code.sh"
        ]
    );
    env.catalog.publish(&dir).unwrap();
    let tree = env.git(&["ls-tree", "-r", "--name-only", "demo/web/1.0.0"]);
    assert_eq!(
        tree,
        ".gitignore\n.hidden\ndtk.module.yaml\nlib/.gitignore\nlib/code.sh\n"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_refused_naming_the_file() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.0.0", &[]);
    write(&dir, "conf/real.conf", "x");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("conf/link.conf")).unwrap();
    let before = env.refs();
    let err = env.catalog.publish(&dir).unwrap_err();
    assert!(matches!(err, CatalogError::Symlink { .. }), "{err:?}");
    assert!(err.to_string().contains("conf/link.conf"), "{err}");
    assert!(validate_dir(&dir).is_err());
    assert_eq!(env.refs(), before);

    // A symbolic link to a directory inside the module is refused too.
    let dir2 = env.module("web2", "demo/web2", "1.0.0", &[]);
    std::fs::create_dir(dir2.join("real")).unwrap();
    std::os::unix::fs::symlink("real", dir2.join("alias")).unwrap();
    let err = env.catalog.publish(&dir2).unwrap_err();
    assert!(err.to_string().contains("alias"), "{err}");
}

#[test]
fn an_invalid_module_writes_nothing() {
    let env = Env::new();
    let ok = env.module("ok", "demo/ok", "1.0.0", &[]);
    env.catalog.publish(&ok).unwrap();
    let refs = env.refs();
    let objects = all_files(&env.catalog.objects_dir());

    let dir = env.dir("bad");
    write(
        &dir,
        "dtk.module.yaml",
        "dsl_version: 1.0.0\nmodule: demo/bad\nversion: 1.0.0\ncomponent_defs:\n  web:\n    \
         attributes:\n      port: {type: integr}\n",
    );
    write(&dir, "payload.bin", "this must not be stored");
    let err = env.catalog.publish(&dir).unwrap_err();
    let dsl = err.dsl_error().expect("a DSL error");
    assert!(!dsl.diagnostics.is_empty());
    assert!(dsl.diagnostics[0].location.line > 0, "{dsl}");
    assert!(err.is_refusal());
    assert_eq!(env.refs(), refs, "no ref moved");
    assert_eq!(
        all_files(&env.catalog.objects_dir()),
        objects,
        "no object written"
    );
    assert!(validate_dir(&dir).unwrap_err().dsl_error().is_some());
}

#[test]
fn a_directory_without_a_manifest_is_refused() {
    let env = Env::new();
    let dir = env.dir("empty");
    let err = env.catalog.publish(&dir).unwrap_err();
    assert!(matches!(err, CatalogError::MissingManifest { .. }), "{err}");
    let err = env
        .catalog
        .publish(&env.tmp.path().join("nowhere"))
        .unwrap_err();
    assert!(matches!(err, CatalogError::NotADirectory { .. }), "{err}");

    let dir = env.module("ignored", "demo/web", "1.0.0", &[]);
    write(&dir, ".gitignore", "*.yaml\n");
    let err = env.catalog.publish(&dir).unwrap_err();
    assert!(matches!(err, CatalogError::ManifestIgnored { .. }), "{err}");
}

#[test]
fn versions_of_many_modules_list_in_order() {
    let env = Env::new();
    for (name, id, v) in [
        ("a1", "demo/web", "1.0.0"),
        ("a2", "demo/web", "1.10.0"),
        ("a3", "demo/web", "1.2.0"),
        ("a4", "demo/web", "master"),
        ("b1", "aws/ec2", "0.1.0"),
    ] {
        let d = env.module(name, id, v, &[]);
        env.catalog.publish(&d).unwrap();
    }
    let list = env.catalog.list().unwrap();
    let shown: Vec<String> = list
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m.id,
                m.versions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec!["aws/ec2 0.1.0", "demo/web 1.0.0,1.2.0,1.10.0,master"]
    );
    let web = "demo/web".parse().unwrap();
    assert_eq!(
        env.catalog.latest(&web).unwrap(),
        "1.10.0".parse::<ModuleVersion>().unwrap()
    );
    let log = env.git(&["log", "--format=%s", "modules/demo/web"]);
    assert_eq!(log.lines().count(), 4);
    fsck(env.root());
}
