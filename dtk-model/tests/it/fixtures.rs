//! Every file of the original dtk's corpus (`../shared/dtk-fixtures`) parses.

use std::path::PathBuf;

use dtk_model::dsl::{parse_module, parse_service};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/dtk-fixtures")
}

#[test]
fn every_fixture_parses() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("the fixtures folder")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let result = if name.ends_with("dtk.service.yaml") {
            parse_service(&text, &name).map(|_| ())
        } else {
            parse_module(&text, &name).map(|_| ())
        };
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    assert!(files.len() > 30, "only {} fixtures found", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
