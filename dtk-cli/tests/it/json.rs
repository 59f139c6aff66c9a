//! The `--json` documents of a service's whole life, as snapshots, and the conventions
//! every command follows (an example in `--help`, exit statuses, completions).
//!
//! One service goes through install → stage → set-attribute → diff → plan → converge →
//! status → attributes → task-status → exec → log → graph → list → delete → uninstall on
//! a temporary `DTK_HOME`. Every document is checked for its `schema` field, checked
//! against `dtk-cli/JSON.md` (its schema has a section there that names every top-level
//! field), normalized (temporary paths, object ids, run ids, times, durations, ports) and
//! compared with its snapshot in `json/`. Refresh the snapshots with
//! `UPDATE_EXPECT=1 cargo test -p dtk-cli --test it json`.

use expect_test::{ExpectFile, expect_file};
use serde_json::Value;

use crate::{Home, Run, dtk};

/// A small module exercising what the documents show: a link, outputs, a secret, a hidden
/// attribute, a custom action with a parameter, a delete action. Its actions are plain
/// shell, so the run is fast and its outputs are stable.
const MODULE: &str = r#"dsl_version: 1.0.0
module: demo/json
version: 1.0.0
description: Two nodes, linked.
component_defs:
  db:
    attributes:
      message: {type: string, required: true}
      password: {type: string, secret: true}
      host: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN printf '%s\n' {{message}} > message.txt
        - RUN echo host=127.0.0.1 >> "$DTK_OUTPUT"
      delete:
        commands:
        - RUN rm -f message.txt
  web:
    attributes:
      greeting: {type: string, default: hello}
      db_host: {type: string}
      debug: {type: boolean, default: false, hidden: true}
      url: {type: string, dynamic: true}
    dependencies: [db]
    link_defs:
      db:
        attribute_mappings: ["$host -> db_host"]
    actions:
      create:
        commands:
        - RUN echo "url=http://$db_host:8080/" >> "$DTK_OUTPUT"
      smoke_test:
        commands:
        - RUN echo {{greeting}} {{who}} at {{url}}
assemblies:
  two_tier:
    description: db and web on two nodes
    components:
    - node[db]:
        components:
        - db:
            attributes: {message: hi}
    - node[web]:
        components: [web]
"#;

const JSON_MD: &str = include_str!("../../JSON.md");

/// Checks one `--json` run: its exit status, its `schema`, its section in JSON.md, and its
/// normalized text against `snapshot`. The snapshot is the text as printed (fields in
/// their order), with volatile values replaced.
fn check(h: &Home, run: &Run, code: i32, schema: &str, snapshot: ExpectFile) {
    assert_eq!(
        run.code, code,
        "{schema}: exit status\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let doc = run.json();
    assert_eq!(doc["schema"], schema, "{}", run.stdout);
    documented(schema, &doc);
    snapshot.assert_eq(&normalize(&run.stdout, &h.tmp.path().display().to_string()));
}

/// Runs `dtk --json ARGS` on the home `h`.
fn json(h: &Home, args: &[&str]) -> Run {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    h.dtk(&all)
}

/// Asserts that JSON.md has a section for `schema` naming each top-level field of `doc`.
pub(crate) fn documented(schema: &str, doc: &Value) {
    let heading = format!("`{schema}`");
    let section = JSON_MD
        .split("\n## ")
        .skip(1)
        .find(|s| s.lines().next().is_some_and(|h| h.contains(&heading)))
        .unwrap_or_else(|| panic!("dtk-cli/JSON.md has no `## ` section for {schema}"));
    for key in doc.as_object().unwrap().keys().filter(|k| *k != "schema") {
        assert!(
            names(section, key),
            "dtk-cli/JSON.md: the section of {schema} does not name its field `{key}`"
        );
    }
}

/// Whether `text` has `word` as a whole word (not inside a longer name).
fn names(text: &str, word: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(is_name)
            && !text[i + word.len()..].chars().next().is_some_and(is_name)
    })
}

/// Replaces what changes from run to run with placeholders, line by line: the values of
/// time and duration fields, and in any text the temporary directory and what
/// [`normalize_text`] replaces.
fn normalize(text: &str, tmp: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let volatile = [
            "started_at",
            "time",
            "published_at",
            "duration_ms",
            "started_ms",
            "who",
        ]
        .iter()
        .find(|k| trimmed.starts_with(&format!("\"{k}\": ")));
        match volatile {
            Some(k) if !trimmed.ends_with("null") && !trimmed.ends_with("null,") => {
                let comma = if trimmed.ends_with(',') { "," } else { "" };
                out.push_str(&format!("{indent}\"{k}\": \"<{k}>\"{comma}"));
            }
            _ => out.push_str(&normalize_text(&line.replace(tmp, "$TMP"))),
        }
        out.push('\n');
    }
    out
}

/// In text: 64-digit digests, 40-digit object ids, run ids (`SECS-NANOS-PID`), durations (`1.5s`, `0.25s`)
/// and loopback ports become placeholders.
pub(crate) fn normalize_text(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    while i < b.len() {
        let at_word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let hex = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if at_word_start && hex == 64 {
            out.push_str("<digest>");
            i += 64;
            continue;
        }
        if at_word_start && hex == 40 {
            out.push_str("<oid>");
            i += 40;
            continue;
        }
        let d1 = digits(i);
        if at_word_start && d1 >= 9 && b.get(i + d1) == Some(&b'-') {
            let d2 = digits(i + d1 + 1);
            if d2 > 0 && b.get(i + d1 + 1 + d2) == Some(&b'-') {
                let d3 = digits(i + d1 + d2 + 2);
                if d3 > 0 {
                    out.push_str("<run>");
                    i += d1 + d2 + d3 + 2;
                    continue;
                }
            }
        }
        if at_word_start && d1 > 0 && b.get(i + d1) == Some(&b'.') {
            let d2 = digits(i + d1 + 1);
            if d2 > 0 && b.get(i + d1 + 1 + d2) == Some(&b's') {
                out.push_str("<secs>");
                i += d1 + d2 + 2;
                continue;
            }
        }
        if s[i..].starts_with("127.0.0.1:") && digits(i + 10) > 0 {
            out.push_str("127.0.0.1:<port>");
            i += 10 + digits(i + 10);
            continue;
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[test]
fn normalize_text_replaces_only_volatile_words() {
    let oid = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        normalize_text(&format!(
            "{oid} converge 1795576543-441563596-2809: done (1.5s) at http://127.0.0.1:43143/ v1.0.0"
        )),
        "<oid> converge <run>: done (<secs>) at http://127.0.0.1:<port>/ v1.0.0"
    );
}

#[test]
fn a_service_life_in_json() {
    let h = Home::new();
    let src = h.module("json", MODULE);
    let src = src.to_str().unwrap();

    let r = json(&h, &["module", "install", src]);
    check(
        &h,
        &r,
        0,
        "dtk.module.install/v1",
        expect_file!["json/module-install.json"],
    );

    let file = format!("{src}/dtk.module.yaml");
    let r = json(&h, &["module", "validate", "--file", &file]);
    check(
        &h,
        &r,
        0,
        "dtk.document.validate/v1",
        expect_file!["json/module-validate-file.json"],
    );

    let r = json(
        &h,
        &["service", "stage", "demo/json", "two_tier", "-n", "app"],
    );
    check(
        &h,
        &r,
        0,
        "dtk.service.stage/v1",
        expect_file!["json/service-stage.json"],
    );

    let r = json(
        &h,
        &["service", "set-attribute", "app", "db/db/message", "hello"],
    );
    check(
        &h,
        &r,
        0,
        "dtk.service.set-attribute/v1",
        expect_file!["json/service-set-attribute.json"],
    );
    let r = json(
        &h,
        &[
            "service",
            "set-attribute",
            "app",
            "db/db/password",
            "s3cret",
        ],
    );
    check(
        &h,
        &r,
        0,
        "dtk.service.set-attribute/v1",
        expect_file!["json/service-set-attribute-secret.json"],
    );
    assert!(!r.stdout.contains("s3cret"), "{}", r.stdout);

    let r = json(&h, &["service", "diff", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.diff/v1",
        expect_file!["json/service-diff.json"],
    );

    let r = json(&h, &["service", "plan", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.plan/v1",
        expect_file!["json/service-plan.json"],
    );

    let r = json(&h, &["service", "converge", "app", "-m", "first"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.converge/v1",
        expect_file!["json/service-converge.json"],
    );
    let converged = r.json();

    let r = json(&h, &["service", "status", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.status/v1",
        expect_file!["json/service-status.json"],
    );
    let status = r.json();
    // The status names the converge that just ran, and never a secret's value.
    assert_eq!(status["last_converge"]["run"], converged["run"]);
    assert_eq!(status["last_converge"]["commit"], converged["commit"]);
    assert!(!r.stdout.contains("s3cret"), "{}", r.stdout);

    let r = json(&h, &["service", "attributes", "app", "--all"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.attributes/v1",
        expect_file!["json/service-attributes.json"],
    );

    let r = json(&h, &["service", "task-status", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.task-status/v1",
        expect_file!["json/service-task-status.json"],
    );
    assert_eq!(r.json()["run"], converged["run"]);

    let r = json(
        &h,
        &["service", "exec", "app", "web/web.smoke_test", "who=you"],
    );
    check(
        &h,
        &r,
        0,
        "dtk.service.exec/v1",
        expect_file!["json/service-exec.json"],
    );
    let log = r.json()["tasks"][0]["log"].as_str().unwrap().to_owned();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("hello you at http://127.0.0.1:8080/\n"),
        "{log}"
    );

    let r = json(&h, &["service", "log", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.log/v1",
        expect_file!["json/service-log.json"],
    );
    assert_eq!(r.json()["commits"][0]["id"], converged["commit"]);

    let r = json(&h, &["service", "graph", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.graph/v1",
        expect_file!["json/service-graph.json"],
    );

    let r = json(&h, &["service", "list"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.list/v1",
        expect_file!["json/service-list.json"],
    );

    let r = json(&h, &["service", "dir", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.dir/v1",
        expect_file!["json/service-dir.json"],
    );

    let r = json(&h, &["target", "list"]);
    check(
        &h,
        &r,
        0,
        "dtk.target.list/v1",
        expect_file!["json/target-list.json"],
    );

    let r = json(&h, &["target", "set-default", "local"]);
    check(
        &h,
        &r,
        0,
        "dtk.target.set-default/v1",
        expect_file!["json/target-set-default.json"],
    );

    // A refused request: exit status 1, and a `dtk.error/v1` document on stdout.
    let r = json(&h, &["service", "set-attribute", "app", "db/db/host", "x"]);
    check(
        &h,
        &r,
        1,
        "dtk.error/v1",
        expect_file!["json/error-refused-edit.json"],
    );

    let r = json(&h, &["service", "delete", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.delete/v1",
        expect_file!["json/service-delete.json"],
    );

    let r = json(&h, &["service", "uninstall", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.uninstall/v1",
        expect_file!["json/service-uninstall.json"],
    );
    let r = json(&h, &["service", "status", "app"]);
    check(
        &h,
        &r,
        1,
        "dtk.error/v1",
        expect_file!["json/error-no-such-service.json"],
    );
}

/// The day-2 documents: a plan with a selection saved and run exactly, refresh and the
/// drift it finds, outputs, the run history and any run's report, a rename, an import
/// (of a local node's directory), and a saved plan refused once the world changed.
#[test]
fn day_two_in_json() {
    let h = Home::new();
    let src = h.module("json", MODULE);
    let src = src.to_str().unwrap();
    json(&h, &["module", "install", src]);
    json(
        &h,
        &["service", "stage", "demo/json", "two_tier", "-n", "app"],
    );
    json(
        &h,
        &["service", "set-attribute", "app", "db/db/message", "hi"],
    );

    let file = h.tmp.path().join("app.plan");
    let file = file.to_str().unwrap();
    let r = json(
        &h,
        &["service", "plan", "app", "--only", "db/db", "--out", file],
    );
    check(
        &h,
        &r,
        0,
        "dtk.service.plan/v1",
        expect_file!["json/service-plan-only.json"],
    );
    // The file is the document.
    assert_eq!(std::fs::read_to_string(file).unwrap(), r.stdout);
    let r = json(&h, &["service", "converge", "app", "--plan", file]);
    check(
        &h,
        &r,
        0,
        "dtk.service.converge/v1",
        expect_file!["json/service-converge-plan.json"],
    );
    let first_run = r.json()["run"].as_str().unwrap().to_owned();
    // Run again, the same plan is refused: the world moved on.
    let r = json(&h, &["service", "converge", "app", "--plan", file]);
    check(
        &h,
        &r,
        1,
        "dtk.error/v1",
        expect_file!["json/error-plan-changed.json"],
    );
    let r = json(&h, &["service", "converge", "app"]);
    assert_eq!(r.code, 0, "{}", r.stdout);

    // A node's sandbox removed behind dtk's back: refresh records it, converge repairs.
    std::fs::remove_dir_all(h.home().join("sandboxes/app/web")).unwrap();
    let r = json(&h, &["service", "refresh", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.refresh/v1",
        expect_file!["json/service-refresh.json"],
    );
    let r = json(&h, &["service", "converge", "app"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(h.home().join("sandboxes/app/web").is_dir());

    let r = json(&h, &["service", "outputs", "app", "web"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.outputs/v1",
        expect_file!["json/service-outputs.json"],
    );
    let r = json(&h, &["service", "runs", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.runs/v1",
        expect_file!["json/service-runs.json"],
    );
    let r = json(&h, &["service", "task-status", "app", "--run", &first_run]);
    check(
        &h,
        &r,
        0,
        "dtk.service.task-status/v1",
        expect_file!["json/service-task-status-run.json"],
    );
    assert_eq!(r.json()["run"], first_run.as_str());
    // A run id that names no run is refused, naming the service and where to look.
    let r = json(
        &h,
        &["service", "task-status", "app", "--run", "no-such-run"],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("`app` has no run `no-such-run`")
            && r.stdout.contains("dtk service runs app"),
        "{}",
        r.stdout
    );

    let r = json(&h, &["service", "mv", "app", "web", "front"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.mv/v1",
        expect_file!["json/service-mv.json"],
    );
    let r = json(&h, &["service", "plan", "app"]);
    assert_eq!(r.json()["tasks"], serde_json::json!([]), "{}", r.stdout);

    // A second service whose db node is a directory that exists already.
    json(
        &h,
        &["service", "stage", "demo/json", "two_tier", "-n", "app2"],
    );
    json(
        &h,
        &["service", "set-attribute", "app2", "db/db/message", "hi"],
    );
    let theirs = h.tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    let r = json(
        &h,
        &[
            "service",
            "import",
            "app2",
            "node[db]",
            theirs.to_str().unwrap(),
        ],
    );
    check(
        &h,
        &r,
        0,
        "dtk.service.import/v1",
        expect_file!["json/service-import.json"],
    );
    // A plan that would delete it says the resource stays.
    let r = json(&h, &["service", "plan", "app2", "--replace", "node[db]"]);
    assert_eq!(
        r.json()["kept"],
        serde_json::json!(["node[db]"]),
        "{}",
        r.stdout
    );
    let r = json(&h, &["service", "plan", "app2"]);
    assert!(r.json().get("kept").is_none(), "{}", r.stdout);
    let r = json(&h, &["service", "converge", "app2"]);
    let ran: Vec<String> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ran.iter().any(|t| t == "node[db].create"), "{ran:?}");
    assert!(
        theirs.join("modules/demo/json/message.txt").is_file(),
        "db ran in the imported dir"
    );
    // Not adopted: delete leaves the directory.
    let r = json(&h, &["service", "delete", "app2"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        theirs.is_dir(),
        "an import without --adopt is never deleted"
    );
}

/// The subcommands listed in the `--help` of `dtk ARGS` (`help` left out).
fn subcommands(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.push("--help".into());
    let r = dtk(&all, &[]);
    assert_eq!(r.code, 0, "{all:?}: {}", r.stderr);
    r.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line starts with two spaces; a wrapped description with more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let mut seen = 0;
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(cmd) = todo.pop() {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let mut help = cmd.clone();
        help.push("--help".into());
        let r = dtk(&help, &[]);
        assert_eq!(r.code, 0, "{help:?}: {}", r.stderr);
        assert!(
            r.stdout.contains("Example:") || r.stdout.contains("Examples:"),
            "`dtk {}` --help has no example:\n{}",
            args.join(" "),
            r.stdout
        );
        seen += 1;
        for sub in subcommands(&args) {
            let mut next = cmd.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    // dtk, 3 nouns, completions, and the nouns' subcommands.
    assert!(seen > 25, "only {seen} commands found");
}

#[test]
fn exit_statuses_are_0_1_and_2() {
    let h = Home::new();
    // 0: success, also for --help and --version.
    for args in [&["service", "list"][..], &["--help"], &["--version"]] {
        let r = h.dtk(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    // 1: a refused request, with the reason on stderr (human output).
    for args in [
        &["service", "status", "nosuch"][..],
        &["service", "converge", "nosuch"],
        &["service", "stage", "demo/none", "a", "-n", "x"],
        &["target", "set-default", "nosuch"],
    ] {
        let r = h.dtk(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error"), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // 2: usage errors, from clap, on stderr.
    for args in [
        &[][..],
        &["service"],
        &["service", "bogus"],
        &["service", "stage", "demo/json", "two_tier"],
        &["service", "converge"],
        &["service", "converge", "app", "--concurrency", "many"],
        &["completions", "tcsh"],
    ] {
        let r = h.dtk(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef dtk"),
        ("fish", "complete -c dtk"),
        ("elvish", "edit:completion"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = dtk(&["completions".into(), shell.into()], &[]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(r.stdout.contains(marker), "{shell}: {}", r.stdout);
        // Every noun and a nested subcommand are completed.
        for word in ["module", "service", "target", "set-attribute"] {
            assert!(r.stdout.contains(word), "{shell} lacks {word}");
        }
    }
}

#[test]
fn completions_to_a_closed_pipe_are_not_an_error() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtk"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end, as `dtk completions bash | head -1` does once head is done.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A script plugin answering `hello` for `kinds` (each with resource `box` and a module
/// `demo/KIND`), then waiting for the end of its input.
fn script_plugin(dir: &std::path::Path, name: &str, kinds: &[&str]) {
    let providers: Vec<String> = kinds
        .iter()
        .map(|k| {
            format!(
                r#"{{"kind":"{k}","resources":["box"],"exec":false,"modules":[{{"origin":"demo/{k}/dtk.module.yaml","text":"dsl_version: 1.0.0\nmodule: demo/{k}\nversion: 1.0.0\ncomponent_defs:\n  box:\n    actions:\n      create:\n        provider: {k}.box\n"}}]}}"#
            )
        })
        .collect();
    let reply = format!(
        r#"{{"id":1,"result":{{"protocol":2,"plugin":{{"name":"{name}","version":"0.3.0"}},"providers":[{}]}}}}"#,
        providers.join(",")
    );
    write_executable(
        &dir.join(name),
        &format!("#!/bin/sh\nread line\nprintf '%s\\n' '{reply}'\nread line\n"),
    );
}

fn write_executable(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// `dtk provider list`: built-in kinds, a plugin in `DTK_HOME/plugins`, and, from
/// `DTK_PLUGIN_PATH`, one shadowed by it, one naming a built-in kind and one that fails
/// its handshake.
#[test]
fn provider_list() {
    let h = Home::new();
    let more = h.tmp.path().join("more");
    script_plugin(
        &h.home().join("plugins"),
        "dtk-provider-demo",
        &["demo", "demo2"],
    );
    script_plugin(&more, "dtk-provider-demo", &["demo"]);
    script_plugin(&more, "dtk-provider-local", &["local"]);
    write_executable(
        &more.join("dtk-provider-broken"),
        "#!/bin/sh\necho 'not a plugin'\nexit 3\n",
    );
    let run = |args: &[&str]| {
        let mut all = vec!["--home".to_owned(), h.home().display().to_string()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        dtk(&all, &[("DTK_PLUGIN_PATH", &more)])
    };
    let r = run(&["--json", "provider", "list"]);
    check(
        &h,
        &r,
        0,
        "dtk.provider.list/v1",
        expect_file!["json/provider-list.json"],
    );
    let r = run(&["provider", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Columns are padded to the longest path, which depends on where the temporary
    // directory is: compare with single spaces.
    let text: String = r
        .stdout
        .replace(&h.tmp.path().display().to_string(), "$TMP")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    expect_test::expect![[r#"
        KIND SOURCE PROTOCOL MODULES
        demo $TMP/home/plugins/dtk-provider-demo 2 demo/demo@1.0.0
        demo2 $TMP/home/plugins/dtk-provider-demo 2 demo/demo2@1.0.0
        local built-in - dtk/local@1.0.0
        ssh built-in - dtk/ssh@1.0.0
        not used: $TMP/more/dtk-provider-broken (broken): line 1 of its output (12 bytes) is not a protocol message: it is not JSON (column 2) (it exited with status 3)
        not used: $TMP/more/dtk-provider-demo (demo): $TMP/home/plugins/dtk-provider-demo is found first
        not used: $TMP/more/dtk-provider-local (local): kind `local` is built in
        searched: $TMP/home/plugins:$TMP/more
    "#]]
    .assert_eq(&text);
}

/// The team commands' documents: two homes (`home` and `home2`) sharing a `file://` remote,
/// all in one temporary directory (so its path normalizes away).
#[test]
fn team_documents_in_json() {
    let h = Home::new();
    let remote = h.tmp.path().join("remote.git");
    let init = std::process::Command::new("git")
        .args(["init", "--quiet", "--bare"])
        .arg(&remote)
        .status()
        .unwrap();
    assert!(init.success());
    let url = format!("file://{}", remote.display());
    let home2 = h.tmp.path().join("home2").display().to_string();
    let other = |args: &[&str]| {
        let mut all = vec!["--home".to_owned(), home2.clone(), "--json".to_owned()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        dtk(&all, &[])
    };
    let src = h.module("json", MODULE);
    let src = src.to_str().unwrap();

    let r = json(&h, &["remote", "set", &url]);
    check(
        &h,
        &r,
        0,
        "dtk.remote.set/v1",
        expect_file!["json/remote-set.json"],
    );
    assert_eq!(json(&h, &["module", "install", src]).code, 0);
    assert_eq!(
        json(
            &h,
            &["service", "stage", "demo/json", "two_tier", "-n", "app"]
        )
        .code,
        0
    );
    let r = json(&h, &["service", "converge", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.converge/v1",
        expect_file!["json/service-converge-remote.json"],
    );
    let r = json(&h, &["remote", "show"]);
    check(
        &h,
        &r,
        0,
        "dtk.remote.show/v1",
        expect_file!["json/remote-show.json"],
    );

    assert_eq!(other(&["remote", "set", &url]).code, 0);
    let r = other(&["service", "clone", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.clone/v1",
        expect_file!["json/service-clone.json"],
    );
    // The other machine changes the desired state, commits (a rollback is a commit) and
    // pushes; the first pulls it.
    assert_eq!(
        other(&["service", "set-attribute", "app", "web/web/greeting", "hey"]).code,
        0
    );
    assert_eq!(other(&["service", "converge", "app"]).code, 0);
    assert_eq!(other(&["service", "rollback", "app", "HEAD~1"]).code, 0);
    let r = other(&["service", "push", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.push/v1",
        expect_file!["json/service-push.json"],
    );
    let r = json(&h, &["service", "pull", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.pull/v1",
        expect_file!["json/service-pull.json"],
    );
    let r = json(&h, &["service", "unlock", "app", "--force"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.unlock/v1",
        expect_file!["json/service-unlock.json"],
    );
    let r = json(&h, &["remote", "unset"]);
    check(
        &h,
        &r,
        0,
        "dtk.remote.unset/v1",
        expect_file!["json/remote-unset.json"],
    );
    // Without a remote, the team commands are refused.
    let r = json(&h, &["service", "pull", "app"]);
    check(
        &h,
        &r,
        1,
        "dtk.error/v1",
        expect_file!["json/error-no-remote.json"],
    );
}

/// `edit`, and `pull-base` clean, conflicted and aborted, as documents.
#[test]
fn edit_and_pull_base_in_json() {
    let h = Home::new();
    let src = h.module("json", MODULE);
    json(&h, &["module", "install", src.to_str().unwrap()]);
    for app in ["app", "mine"] {
        json(
            &h,
            &["service", "stage", "demo/json", "two_tier", "-n", app],
        );
    }
    let r = json(&h, &["service", "edit", "app", "modules/demo/json"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.edit/v1",
        expect_file!["json/service-edit.json"],
    );
    // 1.1.0 changes the message the assembly sets.
    let v2 = h.module(
        "json2",
        &MODULE
            .replace("\nversion: 1.0.0", "\nversion: 1.1.0")
            .replace("{message: hi}", "{message: hello}"),
    );
    assert_eq!(
        json(&h, &["module", "install", v2.to_str().unwrap()]).code,
        0
    );
    let r = json(&h, &["service", "pull-base", "app"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.pull-base/v1",
        expect_file!["json/service-pull-base.json"],
    );
    json(
        &h,
        &["service", "set-attribute", "mine", "db/db/message", "mine"],
    );
    json(&h, &["service", "converge", "mine"]);
    let r = json(&h, &["service", "pull-base", "mine"]);
    check(
        &h,
        &r,
        1,
        "dtk.service.pull-base/v1",
        expect_file!["json/service-pull-base-conflict.json"],
    );
    let r = json(&h, &["service", "pull-base", "mine", "--abort"]);
    check(
        &h,
        &r,
        0,
        "dtk.service.pull-base/v1",
        expect_file!["json/service-pull-base-abort.json"],
    );

    // Violations: a required attribute unset; converge refuses with the same list.
    json(
        &h,
        &["service", "set-attribute", "mine", "db/db/message", "~"],
    );
    let r = json(&h, &["service", "violations", "mine"]);
    check(
        &h,
        &r,
        1,
        "dtk.service.violations/v1",
        expect_file!["json/service-violations.json"],
    );
    let refused = json(&h, &["service", "converge", "mine"]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("required_unset_attribute")
            && refused.stdout.contains("db/db/message"),
        "{}",
        refused.stdout
    );
}
