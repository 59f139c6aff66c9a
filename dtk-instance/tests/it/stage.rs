//! Staging, isolation, edits, pull-base and locking, with real git on disk.

use std::fs;

use dtk_instance::InstanceError;
use dtk_instance::stage::StageRequest;

use crate::support::{chain, copy_module, example, git, home};

fn req(name: &str) -> StageRequest {
    StageRequest {
        module: "demo/webapp".parse().unwrap(),
        version: None,
        assembly: "two_tier".to_owned(),
        name: name.to_owned(),
        target: None,
        base: false,
    }
}

#[test]
fn stage_makes_an_instance_repository_on_the_local_target() {
    let (_tmp, home) = home();
    let staged = home.stage(&req("app1")).unwrap();
    assert_eq!(staged.target.as_deref(), Some("local"));
    assert_eq!(staged.nodes, ["db", "web"]);
    assert_eq!(
        staged.components,
        ["node[db]", "db/backend", "node[web]", "web/web"]
    );
    let dir = home.service_dir("app1");
    let doc = fs::read_to_string(dir.join("dtk.service.yaml")).unwrap();
    assert!(doc.contains("name: app1"), "{doc}");
    assert!(doc.contains("target: local"), "{doc}");
    assert!(dir.join("modules/demo/webapp/dtk.module.yaml").is_file());
    assert!(dir.join("modules/dtk/local/dtk.module.yaml").is_file());
    git(&dir, &["fsck", "--strict"]);
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    let log = git(&dir, &["log", "--format=%s"]);
    assert!(
        log.starts_with("stage demo/webapp@1.0.0 two_tier as app1 on target local"),
        "{log}"
    );
    // The built-in local target was made on the way.
    let targets: Vec<String> = home
        .targets()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(targets, ["local"]);
    // Staging the same name again is refused, and nothing changes.
    let again = home.stage(&req("app1")).unwrap_err();
    assert!(
        matches!(again, InstanceError::ServiceExists { .. }),
        "{again}"
    );
    // A name no service has is refused as such.
    let missing = home.service("app2").expect_err("there is no app2");
    assert!(
        matches!(&missing, InstanceError::NoSuchService { name } if name == "app2"),
        "{missing}"
    );
}

#[test]
fn two_stagings_are_independent_and_isolated_from_the_catalog() {
    let (tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    home.stage(&req("app2")).unwrap();
    let d1 = home.service_dir("app1");
    let d2 = home.service_dir("app2");
    // Editing app1's instance copy of the module changes neither app2 nor the catalog.
    let m1 = d1.join("modules/demo/webapp/dtk.module.yaml");
    let text = fs::read_to_string(&m1).unwrap();
    let edited = text.replace("default: The backend says", "default: Edited says");
    assert_ne!(text, edited);
    fs::write(&m1, &edited).unwrap();
    let app1 = home.service("app1").unwrap();
    app1.commit_edits("edit the instance copy")
        .unwrap()
        .expect("a commit");
    assert_eq!(
        fs::read_to_string(d2.join("modules/demo/webapp/dtk.module.yaml")).unwrap(),
        text
    );
    let v = "1.0.0".parse().unwrap();
    let in_catalog = home
        .catalog()
        .read_file(&"demo/webapp".parse().unwrap(), &v, "dtk.module.yaml")
        .unwrap();
    assert_eq!(String::from_utf8(in_catalog).unwrap(), text);
    // Publishing a new version changes no existing instance.
    let v2 = tmp.path().join("webapp-1.1.0");
    copy_module(&example("webapp"), &v2);
    let t = fs::read_to_string(v2.join("dtk.module.yaml")).unwrap();
    fs::write(
        v2.join("dtk.module.yaml"),
        t.replace("\nversion: 1.0.0", "\nversion: 1.1.0"),
    )
    .unwrap();
    home.catalog().publish(&v2).unwrap();
    assert_eq!(
        fs::read_to_string(d2.join("modules/demo/webapp/dtk.module.yaml")).unwrap(),
        text
    );
    assert_eq!(fs::read_to_string(&m1).unwrap(), edited);
    git(&d1, &["fsck", "--strict"]);
    git(&d2, &["fsck", "--strict"]);
}

#[test]
fn set_attribute_edits_the_work_tree_and_bad_edits_are_refused() {
    let (_tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    let app = home.service("app1").unwrap();
    let set = app.set_attribute("db/backend/message", "bye now").unwrap();
    assert_eq!(set.value, Some(dtk_model::Value::Str("bye now".into())));
    let diff = app.diff().unwrap();
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].path, "dtk.service.yaml");
    let new = String::from_utf8(diff[0].new.clone().unwrap()).unwrap();
    assert!(new.contains("bye now"), "{new}");
    let model = app.model().unwrap();
    let backend = model
        .component(&dtk_model::ComponentId("db/backend".into()))
        .unwrap();
    assert_eq!(
        backend.inputs["message"],
        dtk_model::Value::Str("bye now".into())
    );
    app.commit_edits("set message").unwrap().unwrap();
    assert!(app.diff().unwrap().is_empty());
    assert_eq!(app.log(10).unwrap()[0].summary, "set message");

    // Type errors, unknown attributes and paths are refused with what to fix.
    let err = app
        .set_attribute("db/backend/port", "not-a-port")
        .unwrap_err();
    assert!(matches!(err, InstanceError::Edit(_)), "{err:?}");
    let e = err.to_string();
    assert!(e.contains("must be of type port"), "{e}");
    let err = app.set_attribute("db/backend/mesage", "x").unwrap_err();
    assert!(
        matches!(&err, InstanceError::NoSuchAttribute { attr, suggestion: Some(s), .. }
            if attr == "mesage" && s == "message"),
        "{err:?}"
    );
    let e = err.to_string();
    assert!(e.contains("did you mean `message`"), "{e}");
    let err = app.set_attribute("nope/backend/message", "x").unwrap_err();
    assert!(matches!(&err, InstanceError::NoSuchOwner(_)), "{err:?}");
    let e = err.to_string();
    assert!(e.contains("no node `nope`"), "{e}");
    let e = app
        .set_attribute("web/web/url", "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dynamic"), "{e}");
    assert!(
        app.diff().unwrap().is_empty(),
        "refused edits write nothing"
    );

    // A broken hand edit is refused with its location; nothing is committed.
    let head = app.log(1).unwrap()[0].id.clone();
    let path = app.dir().join("dtk.service.yaml");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("message: bye now", "mesage: bye now")).unwrap();
    let e = chain(&app.commit_edits("broken").unwrap_err());
    assert!(e.contains("dtk.service.yaml:"), "{e}");
    assert!(e.contains("mesage"), "{e}");
    assert_eq!(app.log(1).unwrap()[0].id, head);
}

#[test]
fn rollback_restores_an_earlier_desired_state_as_a_new_commit() {
    let (_tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    let app = home.service("app1").unwrap();
    let first = app.log(1).unwrap()[0].id.clone();
    let before = fs::read_to_string(app.dir().join("dtk.service.yaml")).unwrap();
    app.set_attribute("db/backend/message", "changed").unwrap();
    app.commit_edits("change").unwrap();
    app.rollback(&first).unwrap();
    assert_eq!(
        fs::read_to_string(app.dir().join("dtk.service.yaml")).unwrap(),
        before
    );
    let log = app.log(10).unwrap();
    assert!(log[0].summary.starts_with("rollback to "), "{:?}", log[0]);
    assert_eq!(log.len(), 3);
    git(app.dir(), &["fsck", "--strict"]);
}

#[test]
fn pull_base_merges_or_reports_conflicts() {
    let (tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    home.stage(&req("app2")).unwrap();
    // 1.1.0 changes the web greeting's default and the worker's job default.
    let v2 = tmp.path().join("webapp-1.1.0");
    copy_module(&example("webapp"), &v2);
    let t = fs::read_to_string(v2.join("dtk.module.yaml")).unwrap();
    let t2 = t
        .replace("\nversion: 1.0.0", "\nversion: 1.1.0")
        .replace("default: idle", "default: resting");
    fs::write(v2.join("dtk.module.yaml"), &t2).unwrap();
    home.catalog().publish(&v2).unwrap();

    // app1 edited a different line of its copy: both changes are kept.
    let app1 = home.service("app1").unwrap();
    let m1 = app1.dir().join("modules/demo/webapp/dtk.module.yaml");
    let mine = fs::read_to_string(&m1)
        .unwrap()
        .replace("default: The backend says", "default: Mine says");
    fs::write(&m1, &mine).unwrap();
    app1.commit_edits("my greeting").unwrap();
    let out = app1
        .pull_base(&"demo/webapp".parse().unwrap(), None)
        .unwrap();
    assert_eq!((out.from.as_str(), out.to.as_str()), ("1.0.0", "1.1.0"));
    let merged = fs::read_to_string(&m1).unwrap();
    assert!(
        merged.contains("Mine says") && merged.contains("resting") && merged.contains("1.1.0"),
        "{merged}"
    );
    let doc = fs::read_to_string(app1.dir().join("dtk.service.yaml")).unwrap();
    assert!(doc.contains("demo/webapp: 1.1.0"), "{doc}");
    git(app1.dir(), &["fsck", "--strict"]);

    // app2 changed the same line as 1.1.0: a conflict naming the file, marked in the work
    // tree; HEAD stays; converge refuses; --abort puts everything back.
    let app2 = home.service("app2").unwrap();
    let m2 = app2.dir().join("modules/demo/webapp/dtk.module.yaml");
    fs::write(
        &m2,
        fs::read_to_string(&m2)
            .unwrap()
            .replace("default: idle", "default: busy"),
    )
    .unwrap();
    app2.commit_edits("busy").unwrap();
    let head = app2.log(1).unwrap()[0].id.clone();
    let out = app2
        .pull_base(&"demo/webapp".parse().unwrap(), None)
        .unwrap();
    assert_eq!(out.conflicts, ["modules/demo/webapp/dtk.module.yaml"]);
    assert_eq!(out.commit, None);
    assert_eq!(app2.log(1).unwrap()[0].id, head);
    let marked = fs::read_to_string(&m2).unwrap();
    assert!(
        marked.contains("<<<<<<< instance")
            && marked.contains("default: busy")
            && marked.contains("default: resting")
            && marked.contains(">>>>>>> new version"),
        "{marked}"
    );
    let e = app2.continue_pull().unwrap_err();
    assert!(
        matches!(&e, InstanceError::MergeConflict { paths, .. } if paths == &["modules/demo/webapp/dtk.module.yaml"]),
        "{e}"
    );
    assert!(app2.abort_pull().unwrap());
    assert_eq!(app2.log(1).unwrap()[0].id, head);
    assert!(fs::read_to_string(&m2).unwrap().contains("busy"));
    assert!(app2.diff().unwrap().is_empty());
    assert!(app2.pending_pull().unwrap().is_none());
}

#[test]
fn a_locked_instance_refuses_edits_naming_the_holder() {
    let (_tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    let app = home.service("app1").unwrap();
    let lock = app.lock("converge").unwrap();
    let e = app
        .set_attribute("db/backend/message", "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
    assert!(e.contains("converge"), "{e}");
    drop(lock);
    app.set_attribute("db/backend/message", "x").unwrap();
}

#[test]
fn a_dead_holders_lock_is_taken_over() {
    let (_tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    let dir = home.service_dir("app1");
    drop(home.service("app1").unwrap().lock("first").unwrap());
    // A child process takes the lock with flock(1) and is killed -9.
    let lock = dir.join(".dtk/lock");
    let mut child = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let app = home.service("app1").unwrap();
    assert!(matches!(app.lock("x"), Err(InstanceError::Locked { .. })));
    child.kill().unwrap();
    child.wait().unwrap();
    // sleep inherited the lock; wait until it is gone too.
    // flock(1) holds the lock on its own open file; the kill closed it.
    app.lock("x").unwrap();
}

#[test]
fn add_component_add_link_and_remove_component() {
    let (_tmp, home) = home();
    home.stage(&req("app1")).unwrap();
    let app = home.service("app1").unwrap();
    // A second backend makes web's dependency ambiguous: refused, naming the candidates.
    let attrs = std::collections::BTreeMap::from([(
        "message".to_owned(),
        dtk_model::Value::Str("two".into()),
    )]);
    let e = chain(
        &app.add_component("db/backend[b2]", attrs.clone())
            .unwrap_err(),
    );
    assert!(
        e.contains("several components match") && e.contains("db/backend[b2]"),
        "{e}"
    );
    assert!(
        app.diff().unwrap().is_empty(),
        "a refused edit writes nothing"
    );
    // Link web to the first backend explicitly; then the second one can join.
    app.add_link("web/web", "db/backend", Some("backend"))
        .unwrap();
    app.add_component("db/backend[b2]", attrs.clone()).unwrap();
    // Adding it again is refused: it is there already.
    let again = app.add_component("db/backend[b2]", attrs).unwrap_err();
    assert!(
        matches!(&again, InstanceError::AlreadyInService { name, .. } if name == "db/backend[b2]"),
        "{again:?}"
    );
    assert_eq!(
        again.to_string(),
        "`db/backend[b2]` is already in the service"
    );
    let model = app.model().unwrap();
    let web = model
        .component(&dtk_model::ComponentId("web/web".into()))
        .unwrap();
    assert_eq!(
        web.depends_on
            .iter()
            .filter(|d| d.on.as_str() == "db/backend")
            .count(),
        1
    );
    assert!(
        model
            .component(&dtk_model::ComponentId("db/backend[b2]".into()))
            .is_some()
    );
    // Unknown components and attributes are refused.
    let e = chain(
        &app.add_component("db/nope", Default::default())
            .unwrap_err(),
    );
    assert!(e.contains("nope"), "{e}");
    let e = chain(
        &app.add_component(
            "db/backend[b3]",
            std::collections::BTreeMap::from([(
                "mesage".to_owned(),
                dtk_model::Value::Str("x".into()),
            )]),
        )
        .unwrap_err(),
    );
    assert!(e.contains("did you mean `message`"), "{e}");
    app.remove_component("db/backend[b2]").unwrap();
    assert!(
        app.model()
            .unwrap()
            .component(&dtk_model::ComponentId("db/backend[b2]".into()))
            .is_none()
    );
    app.commit_edits("edits").unwrap().unwrap();
}

#[test]
fn a_provider_that_is_not_registered_is_refused_at_stage_time() {
    let (tmp, home) = home();
    let dir = tmp.path().join("m");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("dtk.module.yaml"),
        "module: t/p\nversion: 1.0.0\ncomponent_defs:\n  thing:\n    actions:\n      create:\n        provider: nope.widget\n  node_thing:\n    actions:\n      create:\n        provider: local.gadget\nassemblies:\n  a:\n    components:\n    - thing\n  b:\n    components:\n    - node_thing\n",
    )
    .unwrap();
    home.catalog().publish(&dir).unwrap();
    let stage = |assembly: &str, name: &str| {
        home.stage(&StageRequest {
            module: "t/p".parse().unwrap(),
            version: None,
            assembly: assembly.to_owned(),
            name: name.to_owned(),
            target: None,
            base: false,
        })
    };
    let e = chain(&stage("a", "s1").unwrap_err());
    assert!(
        e.contains("provider `nope`") && e.contains("not registered"),
        "{e}"
    );
    let e = chain(&stage("b", "s2").unwrap_err());
    assert!(e.contains("no resource `gadget`"), "{e}");
    assert!(!home.service_dir("s1").exists() && !home.service_dir("s2").exists());
}

/// A service large enough that its document and its module copy are parsed side by side
/// (each over the 16 KiB where a thread pays) reads back the same as a small one: committed and work tree, and a
/// broken module copy is still reported against its own file, also where the break is in
/// the assembly, which is read through but not kept.
#[test]
fn a_large_service_reads_back_whole_and_reports_a_broken_copy_by_file() {
    let (tmp, home) = home();
    let dir = tmp.path().join("many");
    fs::create_dir_all(&dir).unwrap();
    let mut text = String::from(
        "dsl_version: 1.0.0\nmodule: big/many\nversion: 1.0.0\ncomponent_defs:\n  step:\n    attributes:\n      k: {type: integer, required: true}\n    actions:\n      create:\n        commands:\n        - RUN echo ok > f{{k}}\nassemblies:\n  all:\n    components:\n",
    );
    const N: usize = 3000;
    for k in 0..N {
        text.push_str(&format!(
            "    - step[component_number_{k:05}]: {{attributes: {{k: {k}}}}}\n"
        ));
    }
    assert!(text.len() > 128 * 1024);
    fs::write(dir.join("dtk.module.yaml"), &text).unwrap();
    home.catalog().publish(&dir).unwrap();
    home.stage(&StageRequest {
        module: "big/many".parse().unwrap(),
        version: None,
        assembly: "all".to_owned(),
        name: "many".to_owned(),
        target: None,
        base: false,
    })
    .unwrap();
    let svc = home.service("many").unwrap();
    let doc_len = fs::metadata(home.service_dir("many").join("dtk.service.yaml"))
        .unwrap()
        .len();
    assert!(doc_len > 64 * 1024, "{doc_len}");
    // Staging left the parse cache the document as read back, source locations and all.
    let parsed_dir = home.service_dir("many").join(".dtk/parsed");
    let entries: Vec<_> = fs::read_dir(&parsed_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("service-")
        })
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let cached: dtk_model::ServiceDoc =
        dtk_model::cache::decode(&fs::read(&entries[0]).unwrap()).unwrap();
    let written = fs::read_to_string(home.service_dir("many").join("dtk.service.yaml")).unwrap();
    let parsed = dtk_model::dsl::parse_service(&written, "dtk.service.yaml").unwrap();
    assert_eq!(cached, parsed);
    assert_ne!(parsed.components[1].at, dtk_model::Location::default());
    // And each copy's definitions, as a plan reads them (named by the copy's digest).
    for copy in ["big/many", "dtk/local"] {
        let copy = fs::read_to_string(
            home.service_dir("many")
                .join("modules")
                .join(copy)
                .join("dtk.module.yaml"),
        )
        .unwrap();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(copy.as_bytes()));
        let entry = fs::read(parsed_dir.join(format!("defs-{digest}"))).unwrap();
        let cached: dtk_model::Module = dtk_model::cache::decode(&entry).unwrap();
        let parsed = dtk_model::dsl::parse_module_defs(&copy, "m").unwrap();
        assert_eq!(cached, parsed);
    }
    let (doc, modules) = svc.committed_doc_and_modules().unwrap();
    let (wdoc, wmodules) = svc.worktree_doc_and_modules().unwrap();
    assert_eq!(doc.components.len(), N);
    assert_eq!(wdoc.components.len(), N);
    let many = "big/many".parse().unwrap();
    // The copy is read for its definitions: the assembly's placements, which the document
    // holds, are left unread.
    let parsed = modules.get(&many).unwrap();
    assert!(parsed.components.contains_key("step"));
    assert!(parsed.assemblies["all"].components.is_empty());
    assert_eq!(modules.get(&many), wmodules.get(&many));
    assert_eq!(svc.model().unwrap().components.len(), N);

    // Break the work-tree copy: the error names that file and line, as before.
    let copy = home
        .service_dir("many")
        .join("modules/big/many/dtk.module.yaml");
    let broken = text.replace("  step:\n    attributes:", "  step:\n    attributes: [");
    fs::write(&copy, broken).unwrap();
    let err = svc.worktree_doc_and_modules().expect_err("a broken copy");
    let said = chain(&err);
    assert!(
        said.contains("modules/big/many/dtk.module.yaml:8:5: YAML syntax error"),
        "{said}"
    );
    let broken = text.replace(
        "    - step[component_number_02000]:",
        "    - step[component_number_02000]: [",
    );
    fs::write(&copy, broken).unwrap();
    let err = svc
        .worktree_doc_and_modules()
        .expect_err("a broken assembly");
    let said = chain(&err);
    assert!(
        said.contains("modules/big/many/dtk.module.yaml:") && said.contains("YAML syntax error"),
        "{said}"
    );
}

/// Staging a large assembly that does not expand (the written document is read back on one
/// thread while the assembly expands on another) is refused as a small one is: the error
/// is located in the written document, and nothing is left behind.
#[test]
fn a_large_assembly_that_does_not_expand_is_refused_with_a_located_error() {
    let (tmp, home) = home();
    let dir = tmp.path().join("unmet");
    fs::create_dir_all(&dir).unwrap();
    let mut text = String::from(
        "dsl_version: 1.0.0\nmodule: big/unmet\nversion: 1.0.0\ncomponent_defs:\n  base:\n    actions:\n      create:\n        commands:\n        - RUN true\n  step:\n    dependencies: [base]\n    attributes:\n      k: {type: integer, required: true}\n    actions:\n      create:\n        commands:\n        - RUN echo ok > f{{k}}\nassemblies:\n  all:\n    components:\n",
    );
    for k in 0..3000 {
        text.push_str(&format!(
            "    - step[component_number_{k:05}]: {{attributes: {{k: {k}}}}}\n"
        ));
    }
    fs::write(dir.join("dtk.module.yaml"), &text).unwrap();
    home.catalog().publish(&dir).unwrap();
    let err = home
        .stage(&StageRequest {
            module: "big/unmet".parse().unwrap(),
            version: None,
            assembly: "all".to_owned(),
            name: "unmet".to_owned(),
            target: None,
            base: false,
        })
        .expect_err("an unmet dependency");
    let said = chain(&err);
    // Located in the written document (the first component is on its line 12; in the
    // module's text it is on line 21).
    assert!(
        said.contains("dtk.service.yaml:12:3: `step[component_number_00000]` depends on `base`"),
        "{}",
        &said[..said.len().min(600)]
    );
    assert!(!home.service_dir("unmet").exists());
}
