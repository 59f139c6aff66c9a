//! `dtk module install | list | show | validate`.

use expect_test::expect;

use crate::{Home, dtk};

const WEB: &str = "\
dsl_version: 1.0.0
module: demo/web
version: 1.0.0
description: A web front end and its database.
component_defs:
  db:
    attributes:
      host: {type: string, dynamic: true}
      password: {type: string, secret: true, default: hunter2}
    actions:
      create:
        commands:
        - RUN ./bin/start-db
  web:
    attributes:
      port: {type: port, default: 8080}
      message: {type: string, required: true}
      db_host: {type: string}
      debug: {type: boolean, default: false, hidden: true}
    dependencies: [db]
    link_defs:
      db:
        attribute_mappings: [\"$host -> db_host\"]
    actions:
      create:
        commands:
        - RUN ./bin/start-web --port {{port}}
      smoke_test:
        commands: [RUN curl -fsS localhost]
assemblies:
  two_tier:
    description: db and web on two nodes
    components:
    - node[db]:
        attributes: {image: ubuntu_jammy, size: small}
        components: [db]
    - node[web]:
        attributes: {image: ubuntu_jammy, size: small}
        components:
        - web:
            attributes: {message: hello}
    actions:
      create:
        subtask_order: sequential
        subtasks:
        - {name: database, node: db, components: [db]}
        - {name: frontend, node: web, components: [web]}
";

#[test]
fn help_shows_an_example_for_each_command() {
    for cmd in ["install", "list", "show", "validate"] {
        let r = dtk(&["module".into(), cmd.into(), "--help".into()], &[]);
        assert_eq!(r.code, 0, "{cmd}: {}", r.stderr);
        assert!(r.stdout.contains("Example:"), "{cmd}: {}", r.stdout);
        assert!(r.stdout.contains("--json"), "{cmd}: {}", r.stdout);
        assert!(r.stdout.contains("--home"), "{cmd}: {}", r.stdout);
    }
}

#[test]
fn usage_errors_exit_2() {
    let h = Home::new();
    for args in [
        &["module", "bogus"][..],
        &["module", "show"],
        &["module", "show", "not-a-module-id"],
        &["module", "install"],
        &["--no-such-flag"],
    ] {
        let r = h.dtk(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty());
    }
}

#[test]
fn install_list_show_round_trip() {
    let h = Home::new();
    let dir = h.module("web", WEB);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/start-web"), "#!/bin/sh\n").unwrap();

    let r = h.dtk(&["module", "install", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("installed demo/web 1.0.0 (commit "),
        "{}",
        r.stdout
    );
    assert!(
        h.home().join("catalog/HEAD").exists(),
        "catalog under DTK_HOME"
    );

    let r = h.dtk(&["--json", "module", "install", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["schema"], "dtk.module.install/v1");
    assert_eq!(doc["status"], "unchanged");
    assert_eq!(doc["module"], "demo/web");
    assert_eq!(doc["version"], "1.0.0");
    assert_eq!(doc["files"], 2);
    let commit = doc["commit"].as_str().unwrap().to_owned();
    assert_eq!(commit.len(), 40);

    let r = h.dtk(&["module", "list"]);
    assert_eq!(r.code, 0);
    expect![[r#"
        MODULE    LATEST  VERSIONS
        demo/web  1.0.0   1.0.0
    "#]]
    .assert_eq(&r.stdout);

    let r = h.dtk(&["module", "list", "--json"]);
    expect![[r#"
        {
          "schema": "dtk.module.list/v1",
          "modules": [
            {
              "module": "demo/web",
              "latest": "1.0.0",
              "versions": [
                "1.0.0"
              ]
            }
          ]
        }
    "#]]
    .assert_eq(&r.stdout);

    let r = h.dtk(&["module", "show", "demo/web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let human = r
        .stdout
        .lines()
        .filter(|l| !l.contains("commit") && !l.contains("published"))
        .collect::<Vec<_>>()
        .join("\n");
    expect![[r#"
        demo/web 1.0.0
          A web front end and its database.
          depends on nothing

        components (2)
          db
            host      string  output
            password  string  secret, default <secret>
            actions: create
          web
            db_host  string
            message  string  required
            port     port    default 8080
            needs: db
            links to: db
            actions: create, smoke_test

        assemblies (1)
          two_tier: db and web on two nodes
            node[db] (image=ubuntu_jammy, size=small): db
            node[web] (image=ubuntu_jammy, size=small): web (message=hello)
            workflow create (sequential)
              - database: on node db; db
              - frontend: on node web; web

        files (2, 1289 bytes)
          bin/start-web
          dtk.module.yaml"#]]
    .assert_eq(&human);
    assert!(
        !r.stdout.contains("hunter2"),
        "secret defaults are never shown"
    );

    let r = h.dtk(&["module", "show", "demo/web@1.0.0", "--all", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("hunter2"));
    let doc = r.json();
    assert_eq!(doc["schema"], "dtk.module.show/v1");
    assert_eq!(doc["commit"], commit.as_str());
    assert_eq!(doc["components"][1]["name"], "web");
    assert_eq!(doc["components"][1]["attributes"][0]["name"], "db_host");
    assert_eq!(
        doc["components"][1]["actions"][0]["commands"][0],
        "./bin/start-web --port {{port}}"
    );
    assert_eq!(
        doc["components"][0]["attributes"][1]["default"],
        serde_json::Value::Null
    );
    assert_eq!(doc["components"][0]["attributes"][1]["has_default"], true);
    assert_eq!(
        doc["assemblies"][0]["nodes"][1]["components"][0]["attributes"]["message"],
        "hello"
    );
    assert_eq!(
        doc["assemblies"][0]["workflows"][0]["subtasks"][0]["node"],
        "node db"
    );
    assert!(doc["published_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn dtk_home_comes_from_the_environment() {
    let h = Home::new();
    let dir = h.module("web", WEB);
    let home = h.home();
    let r = dtk(
        &["module".into(), "install".into(), dir.display().to_string()],
        &[("DTK_HOME", &home)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = h.dtk(&["module", "list", "--json"]);
    assert_eq!(r.json()["modules"][0]["module"], "demo/web");
}

#[test]
fn a_changed_release_is_refused_with_exit_1() {
    let h = Home::new();
    let dir = h.module("web", WEB);
    assert_eq!(h.dtk(&["module", "install", dir.to_str().unwrap()]).code, 0);
    std::fs::write(dir.join("extra.txt"), "more").unwrap();

    let r = h.dtk(&["module", "install", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .starts_with("error: could not install the module in "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("is already published as commit"),
        "{}",
        r.stderr
    );

    let r = h.dtk(&["--json", "module", "install", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let doc = r.json();
    assert_eq!(doc["schema"], "dtk.error/v1");
    assert!(
        doc["causes"][0]
            .as_str()
            .unwrap()
            .contains("released versions never change")
    );

    let r = h.dtk(&["module", "show", "demo/nothing"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: module demo/nothing is not in the catalog\n"
    );
    let r = h.dtk(&["module", "show", "demo/web@2.0.0"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "error: module demo/web has no version 2.0.0 (published: 1.0.0)\n"
    );
}

#[test]
fn an_invalid_module_is_shown_with_its_source_lines() {
    let h = Home::new();
    let dir = h.module(
        "bad",
        "dsl_version: 1.0.0\nmodule: demo/bad\nversion: 1.0.0\ncomponent_defs:\n  web:\n    \
         attributes:\n      port: {type: integr}\n    actions:\n      create:\n        \
         commands: [RUN true]\n",
    );
    let r = h.dtk(&["module", "validate", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is not valid"), "{}", r.stderr);
    // The offending line is quoted, with its line number, and underlined.
    assert!(
        r.stderr.contains("7 │       port: {type: integr}"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("dtk.module.yaml:7:"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("DslError"),
        "no debug dump: {}",
        r.stderr
    );

    let r = h.dtk(&["--json", "module", "validate", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let doc = r.json();
    assert_eq!(doc["schema"], "dtk.error/v1");
    assert_eq!(doc["diagnostics"][0]["line"], 7);
    assert!(
        doc["diagnostics"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("dtk.module.yaml")
    );

    // Nothing was installed.
    let r = h.dtk(&["module", "install", dir.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let r = h.dtk(&["--json", "module", "list"]);
    assert_eq!(r.json()["modules"], serde_json::json!([]));
}

#[test]
fn validate_reports_what_would_be_installed() {
    let h = Home::new();
    let dir = h.module("web", WEB);
    std::fs::write(dir.join(".gitignore"), "*.tmp\n").unwrap();
    std::fs::write(dir.join("scratch.tmp"), "x").unwrap();
    let r = h.dtk(&["module", "validate", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "demo/web 1.0.0 is valid: 2 components, 1 assemblies, 2 files\n"
    );
    let r = h.dtk(&["--json", "module", "validate", dir.to_str().unwrap()]);
    let doc = r.json();
    assert_eq!(doc["schema"], "dtk.module.validate/v1");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["files"][0]["path"], ".gitignore");
    assert_eq!(doc["files"][1]["path"], "dtk.module.yaml");
    assert!(
        !h.home().join("catalog").exists(),
        "validate writes nothing"
    );
}

#[test]
fn validate_file_checks_one_document_by_its_content() {
    let h = Home::new();
    let dir = h.module("web", WEB);
    let file = dir.join("dtk.module.yaml");
    let r = h.dtk(&["module", "validate", "--file", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .ends_with("dtk.module.yaml is a valid module document: demo/web 1.0.0\n"),
        "{}",
        r.stdout
    );
    // A service document, by its name.
    let svc = h.tmp.path().join("x_dtk.service.yaml");
    std::fs::write(
        &svc,
        "name: shop\ncomponents:\n- node[web]:\n    components: [web]\n",
    )
    .unwrap();
    let r = h.dtk(&[
        "--json",
        "module",
        "validate",
        "--file",
        svc.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["schema"], "dtk.document.validate/v1");
    assert_eq!(doc["kind"], "service");
    assert_eq!(doc["name"], "shop");
    assert_eq!(doc["version"], serde_json::Value::Null);
    // A refused document: exit 1, located diagnostics, nothing written.
    let bad = h.tmp.path().join("bad_dtk.module.yaml");
    std::fs::write(&bad, "module: demo/bad\ncomponent_defs:\n  web:\n    actions:\n      create: {commands: [./start]}\n").unwrap();
    let r = h.dtk(&["module", "validate", "--file", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("bad_dtk.module.yaml:5:27: a command must start with `RUN`"),
        "{}",
        r.stderr
    );
    // DIR and --file are exclusive; one of them is needed.
    let r = h.dtk(&[
        "module",
        "validate",
        dir.to_str().unwrap(),
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = h.dtk(&["module", "validate"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        !h.home().join("catalog").exists(),
        "validate writes nothing"
    );
}

#[test]
fn verbose_logs_what_the_libraries_do_on_stderr() {
    let h = Home::new();
    let dir = h.module("web", WEB);
    let quiet = h.dtk(&["module", "install", dir.to_str().unwrap()]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("published"), "{}", quiet.stderr);

    let web2 = WEB.replace("version: 1.0.0\ndescription", "version: 1.0.1\ndescription");
    let dir = h.module("web2", &web2);
    let loud = h.dtk(&["-v", "module", "install", dir.to_str().unwrap()]);
    assert_eq!(loud.code, 0, "{}", loud.stderr);
    assert!(
        loud.stderr.contains("INFO") && loud.stderr.contains("dtk_catalog"),
        "{}",
        loud.stderr
    );
    assert!(loud.stderr.contains("published"), "{}", loud.stderr);
    // The result still goes to stdout alone.
    assert!(
        loud.stdout.starts_with("installed demo/web 1.0.1"),
        "{}",
        loud.stdout
    );
}
