//! Reading published versions back: model, files, contents, and the errors for what is
//! not there.

use dtk_catalog::CatalogError;
use dtk_model::{ModuleId, ModuleVersion};

use crate::support::{Env, make_executable, write};

fn id(s: &str) -> ModuleId {
    s.parse().unwrap()
}

fn v(s: &str) -> ModuleVersion {
    s.parse().unwrap()
}

#[test]
fn get_returns_the_model_the_commit_and_the_files() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.2.0", &[("demo/db", "^1.0")]);
    write(&dir, "bin/start", "#!/bin/sh\n");
    make_executable(&dir, "bin/start");
    let p = env.catalog.publish(&dir).unwrap();

    let m = env.catalog.get(&id("demo/web"), &v("1.2.0")).unwrap();
    assert_eq!(m.module.id, id("demo/web"));
    assert_eq!(m.module.version, v("1.2.0"));
    assert_eq!(m.module.dependencies.len(), 1);
    assert!(m.module.components.contains_key("web"));
    assert_eq!(m.commit, p.commit);
    assert_eq!(m.tree, p.tree);
    assert!(m.published_at > 1_600_000_000);
    let files: Vec<(&str, u64, bool)> = m
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.executable))
        .collect();
    let manifest_len = std::fs::metadata(dir.join("dtk.module.yaml"))
        .unwrap()
        .len();
    assert_eq!(
        files,
        vec![
            ("bin/start", 10, true),
            ("dtk.module.yaml", manifest_len, false)
        ]
    );

    let bytes = env
        .catalog
        .read_file(&id("demo/web"), &v("1.2.0"), "bin/start")
        .unwrap();
    assert_eq!(bytes, b"#!/bin/sh\n");
    assert_eq!(
        env.catalog
            .tree_id(&id("demo/web"), &v("1.2.0"))
            .unwrap()
            .to_string(),
        p.tree
    );
    assert_eq!(
        env.catalog
            .commit_id(&id("demo/web"), &v("1.2.0"))
            .unwrap()
            .to_string(),
        p.commit
    );
    // The repository handle reads the same objects (what instance copies are built from).
    let repo = env.catalog.repo().unwrap();
    let tree = repo
        .find_tree(env.catalog.tree_id(&id("demo/web"), &v("1.2.0")).unwrap())
        .unwrap();
    assert!(tree.find_entry("dtk.module.yaml").is_some());
}

#[test]
fn what_is_not_there_is_named() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.0.0", &[]);
    env.catalog.publish(&dir).unwrap();
    let dir = env.module("web2", "demo/web", "1.1.0", &[]);
    env.catalog.publish(&dir).unwrap();

    let err = env.catalog.get(&id("demo/nope"), &v("1.0.0")).unwrap_err();
    assert!(matches!(err, CatalogError::ModuleNotFound { .. }));
    assert_eq!(err.to_string(), "module demo/nope is not in the catalog");

    let err = env.catalog.get(&id("demo/web"), &v("2.0.0")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "module demo/web has no version 2.0.0 (published: 1.0.0, 1.1.0)"
    );

    for path in ["missing.txt", "../etc/passwd", "", "bin/"] {
        let err = env
            .catalog
            .read_file(&id("demo/web"), &v("1.0.0"), path)
            .unwrap_err();
        assert!(
            matches!(err, CatalogError::FileNotFound { .. }),
            "{path}: {err:?}"
        );
    }
    let err = env.catalog.latest(&id("demo/nope")).unwrap_err();
    assert!(matches!(err, CatalogError::ModuleNotFound { .. }));
    assert!(env.catalog.versions(&id("demo/nope")).unwrap().is_empty());
}

#[test]
fn latest_prefers_releases_over_development_versions() {
    let env = Env::new();
    let d = env.module("m", "demo/web", "master", &[]);
    env.catalog.publish(&d).unwrap();
    assert_eq!(env.catalog.latest(&id("demo/web")).unwrap(), v("master"));
    let d = env.module("r", "demo/web", "0.9.0", &[]);
    env.catalog.publish(&d).unwrap();
    assert_eq!(env.catalog.latest(&id("demo/web")).unwrap(), v("0.9.0"));
}

#[test]
fn has_version_sees_loose_and_packed_tags_and_the_parse_cache_reads_back() {
    let env = Env::new();
    let dir = env.module("web", "demo/web", "1.2.0", &[]);
    env.catalog.publish(&dir).unwrap();
    assert!(env.catalog.has_version(&id("demo/web"), &v("1.2.0")));
    assert!(!env.catalog.has_version(&id("demo/web"), &v("1.2.1")));
    assert!(!env.catalog.has_version(&id("demo/other"), &v("1.2.0")));
    // After `git pack-refs`, no loose tag is left: found by listing.
    env.git(&["pack-refs", "--all"]);
    assert!(!env.root().join("refs/tags/demo/web/1.2.0").exists());
    assert!(env.catalog.has_version(&id("demo/web"), &v("1.2.0")));
    assert!(!env.catalog.has_version(&id("demo/web"), &v("1.2.1")));
    // Publishing parsed the manifest into the catalog's parse cache; reading the version
    // gives the same module with the cache and, once it is gone, without.
    let cached = env
        .catalog
        .get(&id("demo/web"), &v("1.2.0"))
        .unwrap()
        .module;
    let entries = std::fs::read_dir(env.root().join("parsed"))
        .unwrap()
        .count();
    assert_eq!(entries, 1);
    std::fs::remove_dir_all(env.root().join("parsed")).unwrap();
    let parsed = env
        .catalog
        .get(&id("demo/web"), &v("1.2.0"))
        .unwrap()
        .module;
    assert_eq!(cached, parsed);
}
