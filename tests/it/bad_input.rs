//! The bad-input suite, through the CLI: malformed modules (`tests/fixtures/bad/modules/`
//! and some made at test time: huge, invalid UTF-8, deeply nested, symbolic links
//! escaping the module), bad stages, hand-broken `dtk.service.yaml` files
//! (`tests/fixtures/bad/service/`) and instance copies (`tests/fixtures/bad/copies/`),
//! and bad `set-attribute` calls (`tests/fixtures/bad/set_attribute.txt`).
//!
//! Each is refused with exit status 1 (2 for arguments that do not parse: usage), never
//! panics, names the file, line and column where the input is a file, and changes
//! nothing: the refs and HEAD of the catalog and of every instance repository, every
//! instance's work tree and the secret store are compared before and after. Every
//! message is pinned in `tests/fixtures/bad/expected/*.txt` (refresh with
//! `UPDATE_EXPECT=1`), so a message that gets worse is a visible diff.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use dtk_tests::harness::{CliHome, CliRun, HomeSnapshot, module_dir};
use expect_test::expect_file;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad")
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// What a case must show besides a refusal.
#[derive(Clone, Copy, PartialEq)]
enum Where {
    /// `FILE:LINE:COL` in the message, FILE ending with this, and located diagnostics in
    /// the `--json` error.
    Located(&'static str),
    /// The message names this (a file or an argument).
    Names(&'static str),
}

/// One refused case's checks; collects failures instead of stopping at the first.
struct Suite {
    home: CliHome,
    work: tempfile::TempDir,
    snapshot: String,
    failures: Vec<String>,
    cases: usize,
}

impl Suite {
    fn new() -> Suite {
        Suite {
            home: CliHome::new(),
            work: tempfile::Builder::new()
                .prefix("dtk-bad-")
                .tempdir()
                .unwrap(),
            snapshot: String::new(),
            failures: Vec::new(),
            cases: 0,
        }
    }

    fn work(&self) -> &Path {
        self.work.path()
    }

    /// A home with the valid base module installed and staged as `s`, converged.
    fn with_base_service() -> Suite {
        let s = Suite::new();
        let base = fixtures().join("base");
        s.home
            .run(&["module", "install", base.to_str().unwrap()])
            .ok();
        s.home
            .run(&["service", "stage", "bad/base", "app", "-n", "s"])
            .ok();
        s.home.run(&["service", "converge", "s"]).ok();
        s
    }

    fn normalize(&self, text: &str) -> String {
        let mut t = text.to_owned();
        for (path, name) in [(self.home.path(), "$DTK_HOME"), (self.work(), "$WORK")] {
            if let Ok(c) = path.canonicalize() {
                t = t.replace(&c.display().to_string(), name);
            }
            t = t.replace(&path.display().to_string(), name);
        }
        // Lines of hostile inputs can be 100 000 characters long: keep their start; and
        // show control characters, so the snapshot stays text.
        t = t.replace('\0', "\\0");
        t = mask_object_ids(&t);
        t.lines()
            .map(|l| {
                let l = l.trim_end();
                match l.char_indices().nth(160) {
                    Some((i, _)) => format!("{}…", &l[..i]),
                    None => l.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs `args` (human, then `--json`) in the work directory and checks the refusal.
    fn refused(&mut self, case: &str, args: &[OsString], code: i32, place: Where) {
        let before = self.home.snapshot();
        let human = self.home.run_in(self.work(), args);
        let mut json_args = vec![OsString::from("--json")];
        json_args.extend(args.iter().cloned());
        let json = self.home.run_in(self.work(), &json_args);
        let after = self.home.snapshot();
        self.check(case, &human, &json, code, place, &before, &after);
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &mut self,
        case: &str,
        human: &CliRun,
        json: &CliRun,
        code: i32,
        place: Where,
        before: &HomeSnapshot,
        after: &HomeSnapshot,
    ) {
        self.cases += 1;
        let message = self.normalize(&human.stderr);
        let mut errs: Vec<String> = Vec::new();
        let mut fail = |msg: String| errs.push(format!("{case}: {msg}"));
        for run in [human, json] {
            if run.code == Some(101) || run.output().contains("panicked") {
                fail(format!("panicked: {run:?}"));
            }
            if run.code != Some(code) {
                fail(format!(
                    "exit status {:?}, expected {code}: {run:?}",
                    run.code
                ));
            }
        }
        if before != after {
            let r = std::panic::catch_unwind(|| before.assert_same(after, case));
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "the home changed".to_owned());
                fail(msg);
            }
        }
        if code == 1 {
            let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_default();
            if doc["schema"] != "dtk.error/v1" {
                fail(format!("--json printed no dtk.error/v1 document: {json:?}"));
            }
            match place {
                Where::Located(file) => {
                    let diags = doc["diagnostics"].as_array().cloned().unwrap_or_default();
                    if diags.is_empty() {
                        fail(format!("no located diagnostics in --json: {json:?}"));
                    }
                    for d in &diags {
                        let f = d["file"].as_str().unwrap_or_default();
                        let (line, col) = (d["line"].as_u64(), d["column"].as_u64());
                        if !f.ends_with(file) || line.unwrap_or(0) < 1 || col.unwrap_or(0) < 1 {
                            fail(format!("diagnostic not located in {file}: {d}"));
                        }
                        let at = format!("{f}:{}:{}", line.unwrap_or(0), col.unwrap_or(0));
                        if !human.stderr.contains(&at) {
                            fail(format!("the message does not say {at}: {human:?}"));
                        }
                    }
                }
                Where::Names(what) => {
                    if !human.stderr.contains(what) {
                        fail(format!("the message does not name `{what}`: {human:?}"));
                    }
                }
            }
        }
        self.failures.extend(errs);
        self.snapshot
            .push_str(&format!("== {case} (exit {:?})\n{message}\n\n", human.code));
    }

    fn finish(self, expected: &str, min_cases: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n\n")
        );
        assert!(
            self.cases >= min_cases,
            "only {} cases ran ({min_cases} expected)",
            self.cases
        );
        expect_file![fixtures().join("expected").join(expected)].assert_eq(&self.snapshot);
    }
}

/// Replaces git object ids (40 hex digits; they change with commit times) with `<id>`.
fn mask_object_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() == 40 {
            out.push_str("<id>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

const VALID: &str = "dsl_version: 1.0.0
module: bad/valid
version: 1.0.0
component_defs:
  c:
    actions:
      create:
        commands: [RUN cat data.txt]
";

#[test]
fn malformed_modules_are_refused_cleanly() {
    let mut s = Suite::new();
    // Something to keep unchanged: a module already in the catalog.
    let base = fixtures().join("base");
    s.home
        .run(&["module", "install", base.to_str().unwrap()])
        .ok();
    for path in sorted_files(&fixtures().join("modules"), "yaml") {
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        module_dir(s.work(), &name, std::fs::read(&path).unwrap());
        s.refused(
            &name,
            &os(&["module", "install", &name]),
            1,
            Where::Located("dtk.module.yaml"),
        );
    }
    s.finish("modules.txt", 55);
}

#[test]
fn generated_hostile_modules_are_refused_cleanly() {
    let mut s = Suite::new();
    let base = fixtures().join("base");
    s.home
        .run(&["module", "install", base.to_str().unwrap()])
        .ok();
    let head = "dsl_version: 1.0.0\nmodule: bad/gen\nversion: 1.0.0\n";

    // 20 MB: refused by size, without reading it as YAML.
    let mut huge = String::with_capacity(21 << 20);
    huge.push_str(head);
    huge.push_str("description: >\n");
    while huge.len() < 20 << 20 {
        huge.push_str("  all work and no play makes a very large module file indeed\n");
    }
    module_dir(s.work(), "huge_20mb", huge.as_bytes());
    s.refused(
        "huge_20mb",
        &os(&["module", "install", "huge_20mb"]),
        1,
        Where::Located("dtk.module.yaml"),
    );

    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(b"description: caf\xe9 \xff\xfe\n");
    module_dir(s.work(), "invalid_utf8", &bytes);
    s.refused(
        "invalid_utf8",
        &os(&["module", "install", "invalid_utf8"]),
        1,
        Where::Located("dtk.module.yaml"),
    );

    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(b"description: \"a\0b\"\ncomponent_defs: {}\n");
    module_dir(s.work(), "nul_byte", &bytes);
    s.refused(
        "nul_byte",
        &os(&["module", "install", "nul_byte"]),
        1,
        Where::Located("dtk.module.yaml"),
    );

    let deep_flow = format!("{head}description: {}\n", "[".repeat(100_000));
    module_dir(s.work(), "deep_flow_nesting", deep_flow.as_bytes());
    s.refused(
        "deep_flow_nesting",
        &os(&["module", "install", "deep_flow_nesting"]),
        1,
        Where::Located("dtk.module.yaml"),
    );

    let mut deep_block = format!("{head}keywords:\n");
    for i in 0..200 {
        deep_block.push_str(&" ".repeat(2 * (i + 1)));
        deep_block.push_str(&format!("k{i}:\n"));
    }
    module_dir(s.work(), "deep_block_nesting", deep_block.as_bytes());
    s.refused(
        "deep_block_nesting",
        &os(&["module", "install", "deep_block_nesting"]),
        1,
        Where::Located("dtk.module.yaml"),
    );

    // An alias chain whose expansion is 10^12 nodes, generated wide.
    let mut bomb = format!("{head}keywords:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
    }
    module_dir(s.work(), "alias_bomb_10e12", bomb.as_bytes());
    s.refused(
        "alias_bomb_10e12",
        &os(&["module", "install", "alias_bomb_10e12"]),
        1,
        Where::Located("dtk.module.yaml"),
    );

    // Symbolic links that would take files from outside the module directory.
    std::fs::write(s.work().join("outside.txt"), "outside the module\n").unwrap();
    let links: [(&str, &str, &str); 4] = [
        ("symlink_absolute", "data.txt", "/etc/passwd"),
        ("symlink_relative_escape", "data.txt", "../outside.txt"),
        ("symlink_to_directory", "sub/etc", "/etc"),
        ("symlink_inside", "data.txt", "dtk.module.yaml"),
    ];
    for (case, link, target) in links {
        let dir = module_dir(s.work(), case, VALID.as_bytes());
        let at = dir.join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &at).unwrap();
        s.refused(
            case,
            &os(&["module", "install", case]),
            1,
            Where::Names(link),
        );
    }
    // The module file itself a link to a valid module elsewhere.
    let elsewhere = module_dir(s.work(), "elsewhere", VALID.as_bytes());
    std::fs::create_dir_all(s.work().join("symlink_module_file")).unwrap();
    std::os::unix::fs::symlink(
        elsewhere.join("dtk.module.yaml"),
        s.work().join("symlink_module_file/dtk.module.yaml"),
    )
    .unwrap();
    s.refused(
        "symlink_module_file",
        &os(&["module", "install", "symlink_module_file"]),
        1,
        Where::Names("dtk.module.yaml"),
    );

    // Directories that are not modules.
    s.refused(
        "dir_path_traversal",
        &os(&["module", "install", "../../../../../../etc"]),
        1,
        Where::Names("etc"),
    );
    std::fs::write(s.work().join("plain_file"), VALID).unwrap();
    s.refused(
        "dir_is_a_file",
        &os(&["module", "install", "plain_file"]),
        1,
        Where::Names("plain_file"),
    );
    std::fs::create_dir_all(s.work().join("module_file_is_a_dir/dtk.module.yaml")).unwrap();
    s.refused(
        "module_file_is_a_directory",
        &os(&["module", "install", "module_file_is_a_dir"]),
        1,
        Where::Names("dtk.module.yaml"),
    );
    // The same version with other content.
    let mut changed = std::fs::read_to_string(base.join("dtk.module.yaml")).unwrap();
    changed.push_str("# changed\n");
    module_dir(s.work(), "same_version_other_content", changed.as_bytes());
    s.refused(
        "same_version_other_content",
        &os(&["module", "install", "same_version_other_content"]),
        1,
        Where::Names("1.0.0"),
    );
    s.finish("generated.txt", 15);
}

#[test]
fn bad_stages_are_refused_cleanly() {
    let mut s = Suite::with_base_service();
    let unsupported = fixtures().join("stage/unsupported_action_kind.yaml");
    let dir = module_dir(
        s.work(),
        "unsupported",
        std::fs::read(&unsupported).unwrap(),
    );
    s.home
        .run(&["module", "install", dir.to_str().unwrap()])
        .ok();
    let cases: [(&str, &[&str], i32, Where); 9] = [
        (
            "unsupported_action_kind",
            &["service", "stage", "bad/mod", "app", "-n", "u"],
            1,
            Where::Names("puppet_class"),
        ),
        (
            "unknown_assembly",
            &["service", "stage", "bad/base", "nope", "-n", "x"],
            1,
            Where::Names("nope"),
        ),
        (
            "unknown_module",
            &["service", "stage", "bad/nothing", "app", "-n", "x"],
            1,
            Where::Names("bad/nothing"),
        ),
        (
            "unknown_version",
            &["service", "stage", "bad/base@9.9.9", "app", "-n", "x"],
            1,
            Where::Names("9.9.9"),
        ),
        (
            "name_taken",
            &["service", "stage", "bad/base", "app", "-n", "s"],
            1,
            Where::Names("`s`"),
        ),
        (
            "name_path_traversal",
            &["service", "stage", "bad/base", "app", "-n", "../../evil"],
            1,
            Where::Names("../../evil"),
        ),
        (
            "name_with_slash",
            &["service", "stage", "bad/base", "app", "-n", "a/b"],
            1,
            Where::Names("a/b"),
        ),
        (
            "unknown_target",
            &[
                "service", "stage", "bad/base", "app", "-n", "x", "--target", "nowhere",
            ],
            1,
            Where::Names("nowhere"),
        ),
        // A module id that does not parse is a usage error (exit 2), like any
        // malformed argument.
        (
            "module_id_path_traversal",
            &["service", "stage", "../../etc", "app", "-n", "x"],
            2,
            Where::Names("../../etc"),
        ),
    ];
    for (case, args, code, place) in cases {
        s.refused(case, &os(args), code, place);
    }
    for (case, args) in [
        (
            "status_path_traversal",
            &["service", "status", "../../etc"][..],
        ),
        ("dir_path_traversal", &["service", "dir", "../s"][..]),
        ("converge_unknown", &["service", "converge", "nothing"][..]),
        (
            "uninstall_traversal",
            &["service", "uninstall", "../../../no-such-dir-dtk"][..],
        ),
    ] {
        s.refused(case, &os(args), 1, Where::Names(args[2]));
    }
    s.finish("stage.txt", 13);
}

/// Service files the instance keeps refusing without a file location: what is wrong is
/// not a place in one file.
fn service_place(case: &str) -> Where {
    match case {
        "unknown_target" => Where::Names("nowhere"),
        "pin_unknown_module" => Where::Names("nowhere/nothing"),
        "pin_missing_version" => Where::Names("9.9.9"),
        _ => Where::Located("dtk.service.yaml"),
    }
}

#[test]
fn hand_broken_service_files_and_copies_are_refused_before_converge() {
    let mut s = Suite::with_base_service();
    let dir = s.home.service_dir("s");
    let doc = dir.join("dtk.service.yaml");
    let original = std::fs::read(&doc).unwrap();
    let converge = os(&["service", "converge", "s"]);
    let mut cases: Vec<(String, Vec<u8>)> = sorted_files(&fixtures().join("service"), "yaml")
        .into_iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    let mut bad_utf8 = original.clone();
    bad_utf8.extend_from_slice(b"# \xc3\x28 broken\n");
    cases.push(("invalid_utf8".to_owned(), bad_utf8));
    let mut huge = original.clone();
    huge.extend(std::iter::repeat_n(b"# padding padding padding\n".as_slice(), 400_000).flatten());
    cases.push(("huge_10mb".to_owned(), huge));
    for (case, text) in &cases {
        std::fs::write(&doc, text).unwrap();
        let place = match case.as_str() {
            "invalid_utf8" | "huge_10mb" => Where::Located("dtk.service.yaml"),
            c => service_place(c),
        };
        s.refused(&format!("service/{case}"), &converge, 1, place);
        std::fs::write(&doc, &original).unwrap();
    }

    // The file gone, or a link to a file outside the repository.
    std::fs::remove_file(&doc).unwrap();
    s.refused(
        "service/deleted",
        &converge,
        1,
        Where::Names("dtk.service.yaml"),
    );
    std::fs::write(s.work().join("outside.yaml"), &original).unwrap();
    std::os::unix::fs::symlink(s.work().join("outside.yaml"), &doc).unwrap();
    s.refused(
        "service/symlink_outside",
        &converge,
        1,
        Where::Names("dtk.service.yaml"),
    );
    std::fs::remove_file(&doc).unwrap();
    std::fs::write(&doc, &original).unwrap();

    let copy = dir.join("modules/bad/base/dtk.module.yaml");
    let original_copy = std::fs::read(&copy).unwrap();
    for p in sorted_files(&fixtures().join("copies"), "yaml") {
        let case = p.file_stem().unwrap().to_string_lossy().into_owned();
        std::fs::write(&copy, std::fs::read(&p).unwrap()).unwrap();
        let place = match case.as_str() {
            "module_renamed" => Where::Names("bad/other"),
            // The copy is fine as a module; the service using it is not.
            "component_removed" => Where::Located("dtk.service.yaml"),
            _ => Where::Located("modules/bad/base/dtk.module.yaml"),
        };
        s.refused(&format!("copy/{case}"), &converge, 1, place);
        std::fs::write(&copy, &original_copy).unwrap();
    }
    // A required attribute left unset is not malformed input: converge commits the
    // (valid) edit, as the seed's converge does, then refuses on the violation, naming
    // the attribute and how to set it; nothing runs.
    let mut unset = String::from_utf8(original.clone()).unwrap();
    unset = unset.replace(
        "    - web:\n        attributes:\n          message: hello\n",
        "    - web\n",
    );
    assert!(!unset.contains("message: hello"), "{unset}");
    std::fs::write(&doc, &unset).unwrap();
    let r = s.home.run(&["service", "converge", "s"]);
    r.refused();
    assert!(
        r.stderr.contains("n/web/message") && r.stderr.contains("set-attribute"),
        "{r:?}"
    );
    s.home
        .run(&["service", "set-attribute", "s", "n/web/message", "hello"])
        .ok();
    s.home.run(&["service", "converge", "s"]).ok();

    // The repository is as it was after the first converge: nothing committed.
    let plan = s.home.run(&["--json", "service", "plan", "s"]);
    plan.ok();
    assert_eq!(plan.json()["tasks"], serde_json::json!([]), "{plan:?}");
    s.home.fsck_all();
    s.finish("service.txt", 25);
}

/// `PATH<TAB>VALUE` lines, `\n` and `\t` escapes in VALUE.
fn set_attribute_cases() -> Vec<(String, String)> {
    std::fs::read_to_string(fixtures().join("set_attribute.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (p, v) = l.split_once('\t').expect("PATH<TAB>VALUE");
            (p.to_owned(), v.replace("\\n", "\n").replace("\\t", "\t"))
        })
        .collect()
}

#[test]
fn bad_set_attribute_calls_are_refused_and_change_nothing() {
    let mut s = Suite::with_base_service();
    let mut cases: Vec<(String, OsString, OsString)> = set_attribute_cases()
        .into_iter()
        .map(|(p, v)| (format!("{p} = {v:?}"), p.into(), v.into()))
        .collect();
    cases.push((
        "deep nesting".to_owned(),
        "n/web/tags".into(),
        "[".repeat(50_000).into(),
    ));
    let bomb = {
        let mut t = String::from("- &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            t.push_str(&format!(
                "- &l{i} [{}]\n",
                vec![format!("*l{}", i - 1); 10].join(", ")
            ));
        }
        t
    };
    cases.push(("alias bomb".to_owned(), "n/web/tags".into(), bomb.into()));
    cases.push((
        "invalid UTF-8 value".to_owned(),
        "n/web/message".into(),
        OsString::from_vec(b"caf\xe9".to_vec()),
    ));
    cases.push((
        "invalid UTF-8 path".to_owned(),
        OsString::from_vec(b"n/web/\xffport".to_vec()),
        "1".into(),
    ));
    cases.push((
        "secret of an unknown component".to_owned(),
        "n/nothing/api_key".into(),
        "s3cret".into(),
    ));
    for (case, path, value) in cases {
        let args = vec![
            "service".into(),
            "set-attribute".into(),
            "s".into(),
            path,
            value,
        ];
        // Arguments that are not UTF-8 do not parse: a usage error.
        let code = if case.starts_with("invalid UTF-8") {
            2
        } else {
            1
        };
        let place = if case.contains("= \"[1\"") {
            Where::Names("VALUE:")
        } else {
            Where::Names("")
        };
        s.refused(&case, &args, code, place);
    }
    s.finish("set_attribute.txt", 30);
}
