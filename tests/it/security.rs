//! Security checks through the CLI: secrets never reach a repository (any git object,
//! reachable or not), a journal, a log, actual state or any output, even when an action
//! echoes them and fails; attribute values full of shell metacharacters are data, never
//! code; module files cannot bring in anything from outside their directory.

use std::path::{Path, PathBuf};

use dtk_tests::harness::{CliHome, CliRun, git_ok, git_output, module_dir};

/// Every byte of every object in the repository at `dir`, unreachable ones included,
/// uncompressed.
fn all_objects(dir: &Path) -> Vec<u8> {
    let out = git_output(
        dir,
        &["cat-file", "--batch-all-objects", "--batch", "--unordered"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every file under `dir` (following no links), with its content.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

const SECRET_MODULE: &str = r#"dsl_version: 1.0.0
module: sec/app
version: 1.0.0
component_defs:
  app:
    attributes:
      api_key: {type: string, secret: true, required: true}
      password: {type: string, secret: true}
      url: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN echo "starting with key {{api_key}}"; echo "stderr has $api_key too" >&2
        - RUN echo "url=http://user:$api_key@127.0.0.1/" >> "$DTK_OUTPUT"
      leak:
        commands:
        - RUN echo "about to fail, key={{api_key}} password=$password"; echo "err $api_key" >&2; exit 3
assemblies:
  one:
    components:
    - node[n]:
        components: [app]
"#;

#[test]
fn secrets_never_reach_repositories_journals_logs_state_or_output() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let m = module_dir(tmp.path(), "app", SECRET_MODULE);
    let secret = format!(
        "S3cr3t-{}-{}",
        std::process::id(),
        tmp.path().display().to_string().len()
    );
    let password = "pw-Zq7'$(x)\"`y`";
    let mut outputs: Vec<CliRun> = Vec::new();
    let mut run = |args: &[&str], ok: bool| {
        let r = home.run(args);
        if ok {
            r.ok();
        } else {
            r.refused();
        }
        outputs.push(r);
    };
    run(&["module", "install", m.to_str().unwrap()], true);
    run(&["service", "stage", "sec/app", "one", "-n", "s"], true);
    run(
        &["service", "set-attribute", "s", "n/app/api_key", &secret],
        true,
    );
    run(
        &[
            "--json",
            "service",
            "set-attribute",
            "s",
            "n/app/password",
            password,
        ],
        true,
    );
    for json in [false, true] {
        let j: &[&'static str] = if json { &["--json"] } else { &[] };
        let with = |rest: &[&'static str]| -> Vec<&'static str> { [j, rest].concat() };
        run(&with(&["service", "diff", "s"]), true);
        run(&with(&["service", "plan", "s"]), true);
        if !json {
            run(&["service", "converge", "s"], true);
        } else {
            run(
                &[
                    "--json",
                    "service",
                    "set-attribute",
                    "s",
                    "n/app/api_key",
                    &secret,
                ],
                true,
            );
            run(&with(&["service", "converge", "s"]), true);
        }
        // The action echoes the secret, then fails: the failure is reported, redacted.
        run(&with(&["service", "exec", "s", "app.leak"]), false);
        for cmd in [
            &["service", "status", "s"][..],
            &["service", "task-status", "s"],
            &["service", "log", "s"],
            &["service", "attributes", "s"],
            &["service", "graph", "s"],
            &["module", "show", "sec/app"],
        ] {
            run(&with(cmd), true);
        }
    }
    // The failing action's output is reported (redacted), not dropped.
    let failed = outputs
        .iter()
        .find(|r| r.args.contains(&"app.leak".to_owned()))
        .unwrap();
    assert!(failed.output().contains("about to fail"), "{failed:?}");

    for r in &outputs {
        assert!(
            !r.output().contains(&secret) && !r.output().contains(password),
            "a secret in the output of {r:?}"
        );
    }
    for repo in [home.catalog(), home.service_dir("s")] {
        let objects = all_objects(&repo);
        assert!(!objects.is_empty());
        assert!(
            !contains(&objects, &secret),
            "a secret in a git object of {}",
            repo.display()
        );
        assert!(
            !contains(&objects, password),
            "a secret in a git object of {}",
            repo.display()
        );
        let log = git_ok(&repo, &["log", "-p", "--all"]);
        assert!(!log.contains(&secret));
        // Every tree any ref points at, searched as git sees it.
        let refs = git_ok(&repo, &["for-each-ref", "--format=%(objectname)"]);
        let mut args = vec!["grep", "-F", "-e", &secret];
        args.extend(refs.lines());
        assert!(args.len() > 4, "no refs in {}", repo.display());
        let grep = git_output(&repo, &args);
        assert_eq!(
            grep.status.code(),
            Some(1),
            "git grep found the secret in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&grep.stdout)
        );
    }
    // Everywhere under the home but the secret store itself: journals, task logs, actual
    // state, run records, sandboxes, lock files.
    let store = home.path().join("secrets");
    let mut looked = 0;
    let mut saw_logs = false;
    for (path, data) in files_under(home.path()) {
        if path.starts_with(&store) {
            continue;
        }
        looked += 1;
        saw_logs |= path.to_string_lossy().contains(".dtk/logs/");
        assert!(
            !contains(&data, &secret) && !contains(&data, password),
            "a secret in {}",
            path.display()
        );
    }
    assert!(saw_logs && looked > 20, "looked at {looked} files");
    // And the secret store is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    for (path, _) in files_under(&store) {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
    }
}

const META_MODULE: &str = r#"dsl_version: 1.0.0
module: sec/meta
version: 1.0.0
component_defs:
  src:
    attributes:
      v: {type: string, default: plain}
      out: {type: string, dynamic: true}
    actions:
      create:
        commands:
        - RUN printf '%s\n' {{v}} > value.txt
        - RUN printf '%s\n' "$v" > env.txt
        - RUN printf 'out=%s\n' "$v" >> "$DTK_OUTPUT"
      show:
        commands:
        - RUN printf '%s\n' {{extra}} > extra.txt
  sink:
    attributes:
      got: {type: string}
    dependencies: [src]
    link_defs:
      src:
        attribute_mappings: ["$out -> got"]
    actions:
      create:
        commands:
        - RUN printf '%s\n' {{got}} > got.txt
assemblies:
  one:
    components:
    - node[a]:
        components: [src]
    - node[b]:
        components: [sink]
"#;

#[test]
fn attribute_values_with_shell_metacharacters_are_never_executed() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    let c = canary.display();
    let m = module_dir(tmp.path(), "meta", META_MODULE);
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    home.run(&["service", "stage", "sec/meta", "one", "-n", "s"])
        .ok();

    let values = [
        format!("x; touch {c}/semicolon"),
        format!("$(touch {c}/dollar-paren)"),
        format!("`touch {c}/backticks`"),
        format!("'; touch {c}/single-quote; '"),
        format!("\"; touch {c}/double-quote; \""),
        format!("a\ntouch {c}/newline"),
        format!("| touch {c}/pipe"),
        format!("&& touch {c}/and"),
        format!("> {c}/redirect"),
        format!("${{IFS}}touch${{IFS}}{c}/ifs"),
        format!("\\'; touch {c}/backslash-quote #"),
        format!("{{{{v}}}}$(touch {c}/template)"),
        "-n".to_owned(),
    ];
    for (i, v) in values.iter().enumerate() {
        // set-attribute takes YAML: a double-quoted scalar carries any text.
        let yaml = serde_json::to_string(v).unwrap();
        home.run(&["service", "set-attribute", "s", "a/src/v", &yaml])
            .ok();
        let run = home.run(&["service", "converge", "s"]);
        run.ok();
        let exec = home.run(&[
            "service",
            "exec",
            "s",
            "src.show",
            &format!("extra={}", serde_json::to_string(v).unwrap()),
        ]);
        exec.ok();
        let read = |node: &str, f: &str| {
            std::fs::read_to_string(home.module_sandbox("s", node, "sec/meta").join(f))
                .unwrap_or_default()
        };
        let expected = format!("{v}\n");
        assert_eq!(read("a", "value.txt"), expected, "case {i}: substituted");
        assert_eq!(read("a", "env.txt"), expected, "case {i}: environment");
        assert_eq!(read("a", "extra.txt"), expected, "case {i}: exec parameter");
        if !v.contains('\n') {
            // Outputs are lines: a newline cannot pass through one.
            assert_eq!(read("b", "got.txt"), expected, "case {i}: linked output");
        }
        let fired: Vec<_> = std::fs::read_dir(&canary)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(fired.is_empty(), "case {i} ({v:?}) executed: {fired:?}");
    }
    // Nothing fired anywhere else either: no file named like a canary outside it.
    home.fsck_all();
}

#[test]
fn module_files_cannot_escape_their_directory() {
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("private.txt");
    let marker = "PRIVATE-CONTENT-OUTSIDE-THE-MODULE";
    std::fs::write(&outside, marker).unwrap();
    let module = "dsl_version: 1.0.0
module: sec/files
version: 1.0.0
component_defs:
  c:
    actions:
      create: {commands: [RUN true]}
assemblies:
  one:
    components:
    - node[n]:
        components: [c]
";
    let m = tmp.path().join("files");
    std::fs::create_dir_all(m.join("bin")).unwrap();
    std::fs::write(m.join("dtk.module.yaml"), module).unwrap();
    std::fs::write(m.join("bin/run.sh"), "#!/bin/sh\n").unwrap();

    // Publishing: a link anywhere in the module is refused, whatever it points to.
    for (link, target) in [
        ("bin/data", outside.to_str().unwrap()),
        ("bin/up", "../../private.txt"),
        ("etc", "/etc"),
    ] {
        std::os::unix::fs::symlink(target, m.join(link)).unwrap();
        let r = home.run(&["module", "install", m.to_str().unwrap()]);
        r.refused();
        assert!(r.stderr.contains(link), "{r:?}");
        std::fs::remove_file(m.join(link)).unwrap();
    }
    // Repositories nested in a module are not published: no `.git` reaches the catalog.
    std::fs::create_dir_all(m.join(".git/hooks")).unwrap();
    std::fs::write(
        m.join(".git/hooks/post-checkout"),
        "#!/bin/sh\ntouch /tmp/x\n",
    )
    .unwrap();
    std::fs::create_dir_all(m.join("bin/.git")).unwrap();
    std::fs::write(
        m.join("bin/.git/config"),
        "[core]\n\tfsmonitor = touch /tmp/x\n",
    )
    .unwrap();
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    let show = home.run(&["--json", "module", "show", "sec/files"]);
    show.ok();
    let files: Vec<String> = show.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files, ["bin/run.sh", "dtk.module.yaml"]);

    // Staging: the instance copy holds the published files and nothing else.
    home.run(&["service", "stage", "sec/files", "one", "-n", "s"])
        .ok();
    let copy = home.service_dir("s").join("modules/sec/files");
    assert!(copy.join("dtk.module.yaml").is_file());
    let tree = git_ok(
        &home.service_dir("s"),
        &["ls-tree", "-r", "--name-only", "HEAD", "modules/sec/files"],
    );
    assert_eq!(
        tree.lines().collect::<Vec<_>>(),
        [
            "modules/sec/files/bin/run.sh",
            "modules/sec/files/dtk.module.yaml"
        ]
    );

    // Links put into the instance's work tree are never committed as their targets.
    std::os::unix::fs::symlink(&outside, copy.join("stolen.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, home.service_dir("s").join("stolen.yaml")).unwrap();
    let r = home.run(&["service", "converge", "s"]);
    r.no_panic();
    for repo in [home.catalog(), home.service_dir("s")] {
        assert!(
            !contains(&all_objects(&repo), marker),
            "content from outside reached {}",
            repo.display()
        );
    }
    // Module and node names cannot climb out of the catalog, instance or sandboxes. The
    // home's parent is shared (the system's temporary directory): what matters is that no
    // `x` appears there while these run.
    let outside = home.path().parent().unwrap().join("x");
    let existed = outside.exists();
    for (bad, field) in [("../../x", "module: ../../x"), ("n", "module: sec/..")] {
        let d = tmp.path().join(format!("bad-{}", bad.len()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("dtk.module.yaml"),
            module.replace("module: sec/files", field),
        )
        .unwrap();
        home.run(&["module", "install", d.to_str().unwrap()])
            .refused();
    }
    assert!(
        existed || !outside.exists(),
        "a module name escaped to {}",
        outside.display()
    );
    home.fsck_all();
}

/// A changed secret runs its component again (as a changed plain attribute does); the
/// same value set again does not. What tells them apart is a keyed digest of the values
/// (the key in `DTK_HOME/secrets/.digest-key`, owner-only), never the values.
#[test]
fn a_changed_secret_runs_its_component_again_and_an_unchanged_one_does_not() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = CliHome::new();
    let tmp = tempfile::tempdir().unwrap();
    let m = module_dir(
        tmp.path(),
        "rot",
        "dsl_version: 1.0.0\nmodule: sec/rot\nversion: 1.0.0\ncomponent_defs:\n  app:\n    attributes:\n      token: {type: string, secret: true, required: true}\n    actions:\n      create:\n        commands:\n        - RUN echo run >> runs.log\n  plain:\n    actions:\n      create:\n        commands:\n        - RUN echo run >> plain.log\nassemblies:\n  one:\n    components:\n    - node[n]:\n        components: [app, plain]\n",
    );
    home.run(&["module", "install", m.to_str().unwrap()]).ok();
    home.run(&["service", "stage", "sec/rot", "one", "-n", "s"])
        .ok();
    let runs = |file: &str| {
        std::fs::read_to_string(home.module_sandbox("s", "n", "sec/rot").join(file))
            .unwrap_or_default()
            .lines()
            .count()
    };
    home.run(&[
        "service",
        "set-attribute",
        "s",
        "n/app/token",
        "first-token",
    ])
    .ok();
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!((runs("runs.log"), runs("plain.log")), (1, 1));
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!(runs("runs.log"), 1, "nothing changed");

    // The same value again: nothing to do.
    home.run(&[
        "service",
        "set-attribute",
        "s",
        "n/app/token",
        "first-token",
    ])
    .ok();
    let plan = home.run(&["--json", "service", "plan", "s"]).ok().json();
    assert_eq!(plan["tasks"].as_array().unwrap().len(), 0, "{plan}");
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!(runs("runs.log"), 1);

    // A new value: the plan names the component, converge runs it and nothing else.
    home.run(&[
        "service",
        "set-attribute",
        "s",
        "n/app/token",
        "second-token",
    ])
    .ok();
    let plan = home.run(&["--json", "service", "plan", "s"]).ok().json();
    let planned: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["n/app.create"], "{plan}");
    home.run(&["service", "converge", "s"]).ok();
    assert_eq!((runs("runs.log"), runs("plain.log")), (2, 1));

    let key = home.path().join("secrets/.digest-key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    for (path, data) in files_under(home.path()) {
        if path.starts_with(home.path().join("secrets")) {
            continue;
        }
        assert!(!contains(&data, "second-token"), "{}", path.display());
    }
    assert!(!contains(
        &all_objects(&home.service_dir("s")),
        "second-token"
    ));
}
