//! Rules that check themselves: the dependency rules of ARCHITECTURE.md against every
//! crate's `Cargo.toml`, and import loops between the top-level modules of each crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Import loops that predate the rule, as `crate: module, module, ...` (sorted). Each is to
/// be broken; the test fails when one is gone, so that this list only shrinks.
const KNOWN_LOOPS: &[&str] = &[];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The workspace's crates: package name → directory.
fn crates() -> BTreeMap<String, PathBuf> {
    let root = workspace();
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .expect("read Cargo.toml")
        .parse()
        .expect("parse Cargo.toml");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members");
    let mut out = BTreeMap::new();
    for m in members {
        let dir = root.join(m.as_str().expect("a member path"));
        let toml: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .expect("read a member's Cargo.toml")
            .parse()
            .expect("parse a member's Cargo.toml");
        let name = toml["package"]["name"].as_str().expect("package.name");
        out.insert(name.to_owned(), dir);
    }
    out
}

struct Rule {
    allowed: BTreeSet<String>,
    never: Vec<String>,
}

/// The rows of ARCHITECTURE.md's "Dependency rules" table.
fn rules() -> BTreeMap<String, Rule> {
    let text = std::fs::read_to_string(workspace().join("ARCHITECTURE.md")).expect("read");
    let section = text
        .split("## Dependency rules")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Dependency rules` section");
    let names = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|s| s.trim().trim_matches('`').to_owned())
            .filter(|s| !s.is_empty() && s != "(none)")
            .collect()
    };
    let mut out = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let name = cells[0].trim().trim_matches('`');
        if name == "crate" || name.starts_with("---") {
            continue;
        }
        out.insert(
            name.to_owned(),
            Rule {
                allowed: names(cells[1]).into_iter().collect(),
                never: names(cells.get(2).copied().unwrap_or("")),
            },
        );
    }
    out
}

fn dependencies(dir: &Path) -> Vec<String> {
    let toml: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
        .expect("read")
        .parse()
        .expect("parse");
    let mut out = Vec::new();
    for section in ["dependencies", "build-dependencies"] {
        if let Some(t) = toml.get(section).and_then(|v| v.as_table()) {
            out.extend(t.keys().cloned());
        }
    }
    out
}

/// The dependencies a crate declares on purpose without using them in code, listed (with
/// the reason beside them in its Cargo.toml) under `[package.metadata.cargo-machete]
/// ignored`, the place cargo-machete reads too: dtk-cli's "build sharing" dependencies,
/// declared only for their features.
fn machete_ignored(dir: &Path) -> Vec<String> {
    let toml: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
        .expect("read")
        .parse()
        .expect("parse");
    toml.get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("cargo-machete"))
        .and_then(|c| c.get("ignored"))
        .and_then(|i| i.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[test]
fn every_crate_depends_only_on_what_architecture_md_allows() {
    let crates = crates();
    let rules = rules();
    let mut problems = Vec::new();
    for (name, dir) in &crates {
        let Some(rule) = rules.get(name) else {
            problems.push(format!(
                "{name}: no row in ARCHITECTURE.md's dependency rules"
            ));
            continue;
        };
        for dep in dependencies(dir) {
            if crates.contains_key(&dep) && !rule.allowed.contains(&dep) {
                problems.push(format!(
                    "{name} depends on {dep}, which its row does not allow"
                ));
            }
            if let Some(p) = rule.never.iter().find(|p| matches(p, &dep)) {
                problems.push(format!(
                    "{name} depends on {dep}, which its row forbids ({p})"
                ));
            }
        }
    }
    for name in rules.keys() {
        if !crates.contains_key(name) {
            problems.push(format!(
                "ARCHITECTURE.md has a rule for {name}, which is not a workspace crate"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_declared_dependency_is_used() {
    let mut problems = Vec::new();
    for (name, dir) in crates() {
        let mut files = Vec::new();
        for sub in ["src", "examples", "benches", "tests", "it"] {
            rust_files(&dir.join(sub), &mut files);
        }
        let text: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("read a source file"))
            .collect::<Vec<_>>()
            .join("\n");
        let declared_unused = machete_ignored(&dir);
        for dep in dependencies(&dir) {
            if declared_unused.contains(&dep) {
                continue;
            }
            let ident = dep.replace('-', "_");
            let used = text.match_indices(&ident).any(|(i, _)| {
                let before = text[..i].chars().last();
                let after = text[i + ident.len()..].chars().next();
                let boundary =
                    |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                boundary(before) && boundary(after)
            });
            if !used {
                problems.push(format!(
                    "{name} declares {dep} but its code never names `{ident}`"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "unused dependencies (remove them from Cargo.toml):\n{}",
        problems.join("\n")
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.map(|e| e.expect("a directory entry")) {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The names `crate::NAME` that a line of code mentions (comments skipped).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let after = &rest[i + "crate::".len()..];
            rest = after;
            // `dtk_crate::` or `$crate::` are other paths.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            // `use crate::{a, b}`
            if let Some(grouped) = after.strip_prefix('{') {
                let inner = grouped.split('}').next().unwrap_or("");
                for part in inner.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.insert(n);
                    }
                }
            }
        }
    }
    out
}

/// The loops among the top-level modules of the crate in `dir`, each as sorted names.
fn import_loops(dir: &Path) -> Vec<Vec<String>> {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
        let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        (!matches!(name.as_str(), "lib" | "main" | "tests")).then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = top(f) else { continue };
        let text = std::fs::read_to_string(f).expect("read a source file");
        for to in crate_paths(&text) {
            if to != from && modules.contains(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Strongly connected components of more than one module (Kosaraju, small graphs).
    let reach = |start: &String, edges: &BTreeMap<String, BTreeSet<String>>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(n) = stack.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), reach(m, &edges)))
        .collect();
    let mut loops: BTreeSet<Vec<String>> = BTreeSet::new();
    for m in &modules {
        let component: Vec<String> = modules
            .iter()
            .filter(|n| *n == m || (reachable[m].contains(*n) && reachable[*n].contains(m)))
            .cloned()
            .collect();
        if component.len() > 1 {
            loops.insert(component);
        }
    }
    loops.into_iter().collect()
}

#[test]
fn no_new_import_loops_between_top_level_modules() {
    let mut found = BTreeSet::new();
    for (name, dir) in crates() {
        for l in import_loops(&dir) {
            found.insert(format!("{name}: {}", l.join(", ")));
        }
    }
    let known: BTreeSet<String> = KNOWN_LOOPS.iter().map(|s| (*s).to_owned()).collect();
    let new: Vec<&String> = found.difference(&known).collect();
    let gone: Vec<&String> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "import loops between top-level modules (break them: move the shared piece into a \
         leaf module):\n{}",
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        gone.is_empty(),
        "these loops are broken (or changed): update KNOWN_LOOPS in tests/it/tidy.rs:\n{}",
        gone.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_loop_finder_finds_a_loop_and_reads_grouped_imports() {
    let paths = crate_paths("use crate::{a::X, b};\nlet x = dtk_crate::c; // crate::d\n");
    assert_eq!(
        paths,
        ["a", "b"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("b")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c;").expect("write");
    std::fs::write(src.join("a.rs"), "use crate::b::B;").expect("write");
    std::fs::write(src.join("b").join("inner.rs"), "use crate::a::A;").expect("write");
    std::fs::write(src.join("c.rs"), "use crate::a::A;").expect("write");
    assert_eq!(
        import_loops(tmp.path()),
        vec![vec!["a".to_owned(), "b".to_owned()]]
    );
}
