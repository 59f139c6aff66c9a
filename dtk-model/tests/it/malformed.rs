//! Malformed inputs: each file in `tests/malformed/` is refused, and its exact error
//! message is pinned in the `.err` file beside it (refresh with `UPDATE_EXPECT=1`), so a
//! message that gets worse shows up as a diff.

use std::path::PathBuf;

use dtk_model::DslError;
use dtk_model::dsl::{parse_module, parse_service};
use expect_test::{expect, expect_file};

fn parse(name: &str, text: &str) -> Result<(), DslError> {
    if name.ends_with(".service.yaml") {
        parse_service(text, name).map(|_| ())
    } else {
        parse_module(text, name).map(|_| ())
    }
}

#[test]
fn every_malformed_input_is_refused_with_its_message() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 40, "only {} malformed inputs", inputs.len());
    for path in inputs {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let err = match parse(&name, &text) {
            Ok(()) => panic!("{name} was accepted"),
            Err(e) => e,
        };
        for d in &err.diagnostics {
            assert!(d.location.line >= 1 && d.location.col >= 1, "{name}: {d}");
            assert_eq!(d.file, name);
        }
        let sorted = err
            .diagnostics
            .windows(2)
            .all(|w| w[0].location <= w[1].location);
        assert!(sorted, "{name}: diagnostics out of order");
        let snapshot = dir.join(name.replace(".yaml", ".err"));
        expect_file![snapshot].assert_eq(&format!("{err}\n"));
    }
}

#[test]
fn a_huge_document_is_refused_by_size() {
    let mut text = String::from("module: demo/webapp\nversion: 1.0.0\ndescription: ");
    text.push_str(&"x".repeat(dtk_model::yaml::MAX_DOCUMENT_BYTES));
    let err = parse_module(&text, "huge.yaml").unwrap_err();
    expect![[
        r#"huge.yaml:1:1: the document is 8388656 bytes; the largest accepted is 8388608 bytes"#
    ]]
    .assert_eq(&err.to_string());
    let err = parse_service(&text, "huge.service.yaml").unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
}

#[test]
fn wide_documents_within_limits_parse() {
    // Many nodes, each with a component: large but legitimate.
    let mut text = String::from(
        "module: demo/webapp\nversion: 1.0.0\ncomponent_defs:\n  web: {}\nassemblies:\n  big:\n    components:\n",
    );
    for i in 0..2000 {
        text.push_str(&format!("    - node[n{i}]:\n        components: [web]\n"));
    }
    let m = parse_module(&text, "big.yaml").unwrap();
    assert_eq!(m.assemblies["big"].nodes.len(), 2000);
}

/// Size limits are for bombs, not for big services: a module of 120,000 components (about
/// 850,000 YAML nodes, no aliases) is accepted.
#[test]
fn a_large_module_without_aliases_is_accepted() {
    let mut text = String::from(
        "dsl_version: 1.0.0\nmodule: big/one\nversion: 1.0.0\ncomponent_defs:\n  step:\n    attributes:\n      k: {type: integer, required: true}\nassemblies:\n  plan:\n    components:\n",
    );
    for n in 0..12_000 {
        text.push_str(&format!("    - node[n{n}]:\n        components:\n"));
        for k in 0..10 {
            text.push_str(&format!(
                "        - step[a{k}]: {{attributes: {{k: {k}}}}}\n"
            ));
        }
    }
    assert!(
        text.len() < dtk_model::yaml::MAX_DOCUMENT_BYTES,
        "{}",
        text.len()
    );
    let module = parse_module(&text, "dtk.module.yaml").unwrap_or_else(|e| panic!("{e}"));
    let plan = &module.assemblies["plan"];
    assert_eq!(plan.nodes.len(), 12_000);
    assert!(plan.nodes.iter().all(|n| n.components.len() == 10));
}
