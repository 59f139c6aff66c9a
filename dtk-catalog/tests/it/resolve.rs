//! Dependency resolution: highest matching versions, the closure, and the errors.

use dtk_catalog::{Resolution, ResolveError};
use dtk_model::{ModuleId, VersionReq};
use expect_test::{Expect, expect};

use crate::support::Env;

/// A module to publish: id, version, dependencies (id, requirement).
type Spec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// Publishes modules given as `(id, version, deps)`.
fn catalog(modules: &[Spec<'_>]) -> Env {
    let env = Env::new();
    for (i, (id, version, deps)) in modules.iter().enumerate() {
        let d = env.module(&format!("m{i}"), id, version, deps);
        env.catalog.publish(&d).unwrap();
    }
    env
}

fn resolve(env: &Env, root: &str, req: &str) -> Result<Resolution, ResolveError> {
    let root: ModuleId = root.parse().unwrap();
    let req: VersionReq = req.parse().unwrap();
    env.catalog.resolve(&root, &req)
}

/// The resolution as `id@version` lines, or the error message.
fn check(env: &Env, root: &str, req: &str, expect: Expect) {
    let actual = match resolve(env, root, req) {
        Ok(r) => {
            let mut s = format!("root {}@{}\n", r.root.0, r.root.1);
            for (id, m) in &r.modules {
                s.push_str(&format!("{id}@{}\n", m.version));
            }
            s
        }
        Err(e) => format!("error: {e}\n"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn the_highest_matching_version_is_chosen() {
    let env = catalog(&[
        ("demo/db", "1.0.0", &[]),
        ("demo/db", "1.2.0", &[]),
        ("demo/db", "1.3.0-beta.1", &[]),
        ("demo/db", "2.0.0", &[]),
        ("demo/web", "1.0.0", &[("demo/db", "^1.0")]),
        ("demo/web", "1.1.0", &[("demo/db", "^1.0")]),
    ]);
    check(
        &env,
        "demo/web",
        "^1",
        expect![[r#"
            root demo/web@1.1.0
            demo/db@1.2.0
            demo/web@1.1.0
        "#]],
    );
    check(
        &env,
        "demo/db",
        "*",
        expect![[r#"
            root demo/db@2.0.0
            demo/db@2.0.0
        "#]],
    );
    // A bare version pins exactly.
    check(
        &env,
        "demo/db",
        "1.0.0",
        expect![[r#"
            root demo/db@1.0.0
            demo/db@1.0.0
        "#]],
    );
    let r = resolve(&env, "demo/web", "^1").unwrap();
    let db = &r.modules[&"demo/db".parse::<ModuleId>().unwrap()];
    assert_eq!(
        db.commit,
        env.git(&["rev-parse", "demo/db/1.2.0"]).trim(),
        "commit ids are the tags'"
    );
    assert_eq!(
        db.tree,
        env.git(&["rev-parse", "demo/db/1.2.0^{tree}"]).trim()
    );
    assert_eq!(db.required_by.len(), 1);
    assert_eq!(
        db.required_by[0].to_string(),
        "demo/web@1.1.0 requires ^1.0"
    );
}

#[test]
fn the_whole_closure_is_resolved_once_per_module() {
    let env = catalog(&[
        ("dtk/local", "1.0.0", &[]),
        ("dtk/local", "1.1.0", &[]),
        ("demo/db", "1.0.0", &[("dtk/local", "^1.0")]),
        ("demo/cache", "0.3.0", &[("dtk/local", ">=1.0, <1.1")]),
        (
            "demo/app",
            "2.0.0",
            &[("demo/db", "^1"), ("demo/cache", "~0.3")],
        ),
        ("demo/web", "1.0.0", &[("demo/app", "^2")]),
    ]);
    check(
        &env,
        "demo/web",
        "1.0.0",
        expect![[r#"
            root demo/web@1.0.0
            demo/app@2.0.0
            demo/cache@0.3.0
            demo/db@1.0.0
            demo/web@1.0.0
            dtk/local@1.0.0
        "#]],
    );
    let r = resolve(&env, "demo/web", "1.0.0").unwrap();
    let local = &r.modules[&"dtk/local".parse::<ModuleId>().unwrap()];
    let by: Vec<String> = local.required_by.iter().map(ToString::to_string).collect();
    assert_eq!(
        by,
        vec![
            "demo/db@1.0.0 requires ^1.0",
            "demo/cache@0.3.0 requires >=1.0, <1.1"
        ]
    );
}

#[test]
fn development_versions_match_only_by_name() {
    let env = catalog(&[
        ("demo/db", "1.0.0", &[]),
        ("demo/db", "master", &[]),
        ("demo/web", "master", &[("demo/db", "master")]),
    ]);
    check(
        &env,
        "demo/web",
        "master",
        expect![[r#"
            root demo/web@master
            demo/db@master
            demo/web@master
        "#]],
    );
    check(
        &env,
        "demo/db",
        "*",
        expect![[r#"
            root demo/db@1.0.0
            demo/db@1.0.0
        "#]],
    );
}

#[test]
fn a_missing_module_is_named_with_who_requires_it() {
    let env = catalog(&[("demo/web", "1.0.0", &[("demo/nothing", "^1")])]);
    check(
        &env,
        "demo/web",
        "*",
        expect![[r#"
            error: module demo/nothing is not in the catalog (required by demo/web@1.0.0)
        "#]],
    );
    check(
        &env,
        "demo/absent",
        "*",
        expect![[r#"
            error: module demo/absent is not in the catalog (requested)
        "#]],
    );
}

#[test]
fn no_matching_version_lists_what_exists() {
    let env = catalog(&[
        ("demo/db", "1.0.0", &[]),
        ("demo/db", "1.4.2", &[]),
        ("demo/web", "1.0.0", &[("demo/db", "^3")]),
    ]);
    check(
        &env,
        "demo/web",
        "^1",
        expect![[r#"
            error: no published version of module demo/db matches ^3 (required by demo/web@1.0.0; published: 1.0.0, 1.4.2)
        "#]],
    );
    check(
        &env,
        "demo/web",
        "^2",
        expect![[r#"
            error: no published version of module demo/web matches ^2 (requested; published: 1.0.0)
        "#]],
    );
}

#[test]
fn incompatible_requirements_name_who_requires_what() {
    let env = catalog(&[
        ("demo/db", "1.0.0", &[]),
        ("demo/db", "2.0.0", &[]),
        ("demo/cache", "1.0.0", &[("demo/db", "^2")]),
        (
            "demo/web",
            "1.0.0",
            &[("demo/db", "^1"), ("demo/cache", "^1")],
        ),
    ]);
    check(
        &env,
        "demo/web",
        "*",
        expect![[r#"
            error: the requirements on module demo/db cannot all be met: demo/web@1.0.0 requires ^1, demo/cache@1.0.0 requires ^2; published: 1.0.0, 2.0.0
        "#]],
    );
    let err = resolve(&env, "demo/web", "*").unwrap_err();
    let ResolveError::Conflict { requirements, .. } = err else {
        panic!("expected a conflict");
    };
    assert_eq!(requirements.len(), 2);
}

#[test]
fn without_backtracking_the_highest_choice_can_conflict() {
    // web requires db ^1 and cache *; cache@2 requires db ^2, cache@1 does not. Without
    // backtracking cache@2 is chosen (highest), so this is reported as a conflict; with an
    // explicit pin on cache it resolves.
    let env = catalog(&[
        ("demo/db", "1.0.0", &[]),
        ("demo/db", "2.0.0", &[]),
        ("demo/cache", "1.0.0", &[]),
        ("demo/cache", "2.0.0", &[("demo/db", "^2")]),
        (
            "demo/web",
            "1.0.0",
            &[("demo/db", "^1"), ("demo/cache", "*")],
        ),
        (
            "demo/web",
            "1.1.0",
            &[("demo/db", "^1"), ("demo/cache", "^1")],
        ),
    ]);
    check(
        &env,
        "demo/web",
        "1.0.0",
        expect![[r#"
            error: the requirements on module demo/db cannot all be met: demo/web@1.0.0 requires ^1, demo/cache@2.0.0 requires ^2; published: 1.0.0, 2.0.0
        "#]],
    );
    check(
        &env,
        "demo/web",
        "1.1.0",
        expect![[r#"
            root demo/web@1.1.0
            demo/cache@1.0.0
            demo/db@1.0.0
            demo/web@1.1.0
        "#]],
    );
}

#[test]
fn dependency_cycles_resolve_and_oscillations_are_reported() {
    let env = catalog(&[
        ("demo/a", "1.0.0", &[("demo/b", "^1")]),
        ("demo/b", "1.0.0", &[("demo/a", "^1")]),
    ]);
    check(
        &env,
        "demo/a",
        "*",
        expect![[r#"
            root demo/a@1.0.0
            demo/a@1.0.0
            demo/b@1.0.0
        "#]],
    );

    // Choosing x@2 lowers y to 1, y@1 lowers x to 1, x@1 lifts y back to 2, ...
    let env = catalog(&[
        ("demo/x", "1.0.0", &[]),
        ("demo/x", "2.0.0", &[("demo/y", "<2")]),
        ("demo/y", "1.0.0", &[("demo/x", "<2")]),
        ("demo/y", "2.0.0", &[]),
        ("demo/root", "1.0.0", &[("demo/x", "*"), ("demo/y", "*")]),
    ]);
    check(
        &env,
        "demo/root",
        "*",
        expect![[r#"
            error: the versions of demo/x, demo/y do not settle: each choice changes the requirements of another; pin their versions explicitly
        "#]],
    );
}
