//! Fuzzing with proptest (the stable-toolchain stand-in for `cargo fuzz`, whose targets
//! live in `fuzz/`): random bytes, mutated real and malformed documents, and structured
//! YAML with DSL keys, fed to the module, service, value and identifier parsers.
//!
//! Properties: nothing panics; every refusal is located (line and column ≥ 1, in the file
//! named); whatever is accepted, written back and parsed again, is the same document.
//!
//! `DTK_FUZZ_CASES` sets the case count of each property (default 300, a few seconds);
//! docs/testing.md gives the long run.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use dtk_model::DslError;
use dtk_model::dsl::{parse_module, parse_service, parse_value, write_module, write_service};
use dtk_model::ident::{AttrPath, ComponentRef, ModuleId, ModuleVersion, VersionReq};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("DTK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// The seed corpus: dtk-model's corpus of DSL forms and malformed inputs, the CLI
/// suite's malformed modules and service files, and the bundled modules.
fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dirs: Vec<PathBuf> = [
            "tests/corpus",
            "tests/malformed",
            "../tests/fixtures/bad/modules",
            "../tests/fixtures/bad/service",
            "../tests/fixtures/bad/copies",
            "../tests/fixtures/bad/base",
            "../examples/modules/webapp",
            "../modules/dtk/local",
            "../modules/aws/network",
            "../modules/aws/ec2",
        ]
        .iter()
        .map(|d| root.join(d))
        .collect();
        let mut texts = Vec::new();
        for d in dirs {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            texts.extend(files.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
        }
        assert!(texts.len() >= 100, "only {} seed documents", texts.len());
        texts
    })
}

/// Bytes the parsers see: invalid UTF-8 is read lossily, as the CLI's readers do not
/// (they refuse it first), so the parser gets the worst that can reach it.
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_located(e: &DslError, file: &str, input: &str) {
    assert!(
        !e.diagnostics.is_empty(),
        "a refusal without a diagnostic for {input:?}"
    );
    for d in &e.diagnostics {
        assert!(
            d.location.line >= 1 && d.location.col >= 1,
            "unlocated diagnostic {d} for {input:?}"
        );
        assert_eq!(d.file, file);
    }
}

/// The module properties on one input.
fn module_props(text: &str) {
    match parse_module(text, "m.yaml") {
        Ok(mut m) => {
            let written = write_module(&m);
            let mut back = parse_module(&written, "w.yaml").unwrap_or_else(|e| {
                panic!("accepted, written, refused: {e}\n--- input\n{text}\n--- written\n{written}")
            });
            m.clear_locations();
            back.clear_locations();
            assert_eq!(m, back, "--- input\n{text}\n--- written\n{written}");
        }
        Err(e) => check_located(&e, "m.yaml", text),
    }
}

/// The service-document and value properties on one input.
fn service_props(text: &str) {
    match parse_service(text, "s.yaml") {
        Ok(mut d) => {
            let written = write_service(&d);
            let mut back = parse_service(&written, "w.yaml").unwrap_or_else(|e| {
                panic!("accepted, written, refused: {e}\n--- input\n{text}\n--- written\n{written}")
            });
            d.clear_locations();
            back.clear_locations();
            assert_eq!(d, back, "--- input\n{text}\n--- written\n{written}");
        }
        Err(e) => check_located(&e, "s.yaml", text),
    }
    if let Err(e) = parse_value(text, "VALUE") {
        check_located(&e, "VALUE", text);
    }
}

fn round_trips<T>(s: &str)
where
    T: FromStr + ToString + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = s.parse::<T>() {
        let printed = v.to_string();
        match printed.parse::<T>() {
            Ok(back) => assert_eq!(v, back, "{s:?} printed as {printed:?}"),
            Err(_) => panic!("{s:?} parses, its printed form {printed:?} does not"),
        }
    }
}

fn ident_props(s: &str) {
    round_trips::<AttrPath>(s);
    round_trips::<ComponentRef>(s);
    round_trips::<ModuleId>(s);
    round_trips::<ModuleVersion>(s);
    let _ = VersionReq::from_str(s);
}

// ------------------------------------------------------------------ mutations

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, &'static str),
    InsertBytes(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize, usize),
    Swap(usize, usize, usize),
    FlipByte(usize, u8),
    SpliceFrom(usize, usize, usize, usize),
}

const TOKENS: &[&str] = &[
    "",
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: *a\n",
    "\n",
    "\n  ",
    "\n    ",
    "  ",
    "'",
    "\"",
    "#",
    "|",
    "|-\n",
    ">",
    "node[",
    "node_group[",
    "]",
    "::",
    "$",
    "->",
    " -> ",
    "\t",
    "~",
    "!!",
    "!!str ",
    "!!binary ",
    "!custom ",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "@",
    ",",
    "?",
    "? ",
    "\\",
    "\u{feff}",
    "\r\n",
    "\0",
    "{{",
    "}}",
    "..",
    "../",
    "/",
    "1.0.0",
    "^1.0",
    "null",
    "true",
    "-1",
    "99999999999999999999",
    "1e400",
    ".nan",
    "0x10",
    "component_defs:\n",
    "assemblies:\n",
    "attributes:\n",
    "actions:\n",
    "dependencies:\n",
    "link_defs:\n",
    "components:\n",
    "subtasks:\n",
    "type: integer",
    "type: port",
    "default: ",
    "required: true",
    "secret: true",
    "dynamic: true",
    "commands: [RUN x]",
    "provider: local.node",
    "cardinality: ",
    "subtask_order: ",
    "attribute_mappings: [\"$a -> b\"]",
    "\u{2028}",
    "é",
    "日本",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(p, t)| Mutation::Insert(p, t)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::InsertBytes(p, b)),
        2 => (any::<usize>(), 1usize..40).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<usize>(), 1usize..200, any::<usize>())
            .prop_map(|(p, n, to)| Mutation::Duplicate(p, n, to)),
        1 => (any::<usize>(), 1usize..60, any::<usize>()).prop_map(|(a, n, b)| Mutation::Swap(a, n, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::FlipByte(p, b)),
        1 => (any::<usize>(), any::<usize>(), 1usize..300, any::<usize>())
            .prop_map(|(f, p, n, to)| Mutation::SpliceFrom(f, p, n, to)),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
    for m in muts {
        let len = bytes.len();
        match m {
            Mutation::Insert(p, t) => {
                let p = at(*p, len);
                bytes.splice(p..p, t.bytes());
            }
            Mutation::InsertBytes(p, b) => {
                let p = at(*p, len);
                bytes.splice(p..p, b.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let p = at(*p, len);
                let end = (p + n).min(len);
                bytes.drain(p..end);
            }
            Mutation::Duplicate(p, n, to) => {
                let p = at(*p, len);
                let end = (p + n).min(len);
                let chunk: Vec<u8> = bytes[p..end].to_vec();
                let to = at(*to, len);
                bytes.splice(to..to, chunk);
            }
            Mutation::Swap(a, n, b) => {
                let a = at(*a, len);
                let b = at(*b, len);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let n = (*n).min(hi - lo).min(len - hi);
                for i in 0..n {
                    bytes.swap(lo + i, hi + i);
                }
            }
            Mutation::FlipByte(p, b) => {
                if len > 0 {
                    bytes[p % len] ^= b | 1;
                }
            }
            Mutation::SpliceFrom(f, p, n, to) => {
                let src = corpus()[f % corpus().len()].as_bytes();
                let p = at(*p, src.len());
                let end = (p + n).min(src.len());
                let to = at(*to, len);
                bytes.splice(to..to, src[p..end].iter().copied());
            }
        }
    }
    bytes
}

fn mutated_document() -> impl Strategy<Value = String> {
    (any::<usize>(), prop::collection::vec(mutation(), 1..8)).prop_map(|(which, muts)| {
        let seed = corpus()[which % corpus().len()].as_bytes().to_vec();
        text_of(&apply(seed, &muts))
    })
}

// ------------------------------------------------------------ structured YAML

/// A YAML tree with DSL-shaped keys, printed in random styles.
#[derive(Debug, Clone)]
enum Y {
    Scalar(String),
    Seq(Vec<Y>, bool),
    Map(Vec<(String, Y)>, bool),
    Anchor(u8, Box<Y>),
    Alias(u8),
}

const KEYS: &[&str] = &[
    "dsl_version",
    "module",
    "version",
    "name",
    "description",
    "dependencies",
    "component_defs",
    "components",
    "assemblies",
    "attributes",
    "actions",
    "workflows",
    "link_defs",
    "attribute_mappings",
    "commands",
    "provider",
    "type",
    "default",
    "required",
    "dynamic",
    "secret",
    "hidden",
    "node[n]",
    "node[web]",
    "node_group[g]",
    "web",
    "db",
    "create",
    "delete",
    "subtasks",
    "subtask_order",
    "node",
    "ordered_components",
    "cardinality",
    "image",
    "size",
    "staged_from",
    "target",
    "assembly",
    "links",
    "base",
    "web[a]",
    "m::web",
    "../x",
    "",
    "<<",
    "dtk/local",
    "demo/webapp",
    "port",
    "message",
];

const SCALARS: &[&str] = &[
    "1.0.0",
    "demo/webapp",
    "dtk/local",
    "^1.0",
    "web",
    "db",
    "node[n]",
    "integer",
    "string",
    "port",
    "boolean",
    "hash",
    "array",
    "true",
    "false",
    "null",
    "~",
    "8080",
    "-1",
    "0",
    "RUN echo hi",
    "RUN echo {{port}}",
    "local.node",
    "aws.vpc",
    "sequential",
    "concurrent",
    "$host -> db_host",
    "web.create",
    "n",
    "x",
    "",
    "'quoted'",
    "\"dq\"",
    "a b",
    "../../etc",
    "web[a]",
    "m::web",
    "1.5",
    "1e3",
    ".inf",
    "65536",
    "node[../x]",
    "|",
    ">",
];

fn yaml_tree() -> impl Strategy<Value = Y> {
    let leaf = prop_oneof![
        6 => prop::sample::select(SCALARS).prop_map(|s| Y::Scalar(s.to_owned())),
        1 => "[ -~]{0,10}".prop_map(Y::Scalar),
        1 => (0u8..3).prop_map(Y::Alias),
    ];
    leaf.prop_recursive(6, 80, 6, |inner| {
        prop_oneof![
            3 => (prop::collection::vec((prop::sample::select(KEYS).prop_map(str::to_owned), inner.clone()), 0..6), any::<bool>())
                .prop_map(|(kv, flow)| Y::Map(kv, flow)),
            2 => (prop::collection::vec(inner.clone(), 0..5), any::<bool>()).prop_map(|(v, flow)| Y::Seq(v, flow)),
            1 => ((0u8..3), inner).prop_map(|(a, y)| Y::Anchor(a, Box::new(y))),
        ]
    })
}

fn quote_scalar(s: &str) -> String {
    if s.is_empty()
        || s.contains([
            ':', '#', '[', ']', '{', '}', ',', '\n', '&', '*', '!', '|', '>', '\'', '"', '%', '@',
            '`',
        ])
        || s.starts_with(['-', '?', ' '])
        || s.ends_with(' ')
    {
        serde_json::to_string(s).unwrap_or_default()
    } else {
        s.to_owned()
    }
}

fn flow(y: &Y) -> String {
    match y {
        Y::Scalar(s) => quote_scalar(s),
        Y::Alias(a) => format!("*a{a}"),
        Y::Anchor(a, y) => format!("&a{a} {}", flow(y)),
        Y::Seq(v, _) => format!("[{}]", v.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Y::Map(kv, _) => format!(
            "{{{}}}",
            kv.iter()
                .map(|(k, v)| format!("{}: {}", quote_scalar(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn block(y: &Y, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match y {
        Y::Map(kv, false) if !kv.is_empty() => {
            for (k, v) in kv {
                out.push_str(&format!("{pad}{}:", quote_scalar(k)));
                match v {
                    Y::Map(m, false) if !m.is_empty() => {
                        out.push('\n');
                        block(v, indent + 2, out);
                    }
                    Y::Seq(s, false) if !s.is_empty() => {
                        out.push('\n');
                        block(v, indent, out);
                    }
                    _ => out.push_str(&format!(" {}\n", flow(v))),
                }
            }
        }
        Y::Seq(v, false) if !v.is_empty() => {
            for item in v {
                match item {
                    Y::Map(m, false) if !m.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        block(item, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", flow(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", flow(other))),
    }
}

fn structured_document() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((prop::sample::select(KEYS), yaml_tree()), 0..8),
        any::<bool>(),
    )
        .prop_map(|(top, with_header)| {
            let mut out = String::new();
            if with_header {
                out.push_str("dsl_version: 1.0.0\nmodule: fz/mod\nversion: 1.0.0\nname: svc\n");
            }
            let kv: Vec<(String, Y)> = top.into_iter().map(|(k, y)| (k.to_owned(), y)).collect();
            block(&Y::Map(kv, false), 0, &mut out);
            out
        })
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| text_of(&b)),
        1 => any::<String>(),
        5 => mutated_document(),
        4 => structured_document(),
    ]
}

fn ident_input() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        3 => "[a-z0-9_.:/\\[\\]\\- ]{0,24}",
        3 => prop::collection::vec(
            prop::sample::select(&["n", "web", "db", "/", "[", "]", "::", "m", "a", ".", "..", "-", "_", "1", "0", "^", "~", ">=", "*", " ", "x.lock", "é", "\0", "$(x)"][..]),
            0..8,
        ).prop_map(|v| v.concat()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_module_parser_survives_anything(text in any_input()) {
        module_props(&text);
    }

    #[test]
    fn the_service_and_value_parsers_survive_anything(text in any_input()) {
        service_props(&text);
    }

    #[test]
    fn the_identifier_parsers_survive_anything(s in ident_input()) {
        ident_props(&s);
    }
}

#[test]
fn every_seed_document_satisfies_the_properties() {
    for text in corpus() {
        module_props(text);
        service_props(text);
    }
}

#[test]
fn inputs_found_by_cargo_fuzz_keep_the_properties() {
    // A subtask whose list of steps is empty was accepted, then written without the list
    // and refused ("a subtask does nothing").
    module_props(
        "dsl_version: 1.0.0\nmodule: a/b\nversion: 1.0.0\ncomponent_defs:\n  c: {}\n\
         assemblies:\n  x:\n    components:\n    - node[n]:\n        components: [c]\n\
         \x20   actions:\n      create:\n        subtasks:\n        - name: s\n\
         \x20         node: n\n          components:\n",
    );
    service_props(
        "dsl_version: 1.0.0\nname: s\ncomponents:\n- node[n]:\n    components: [c]\n\
         actions:\n  create:\n    subtasks:\n    - name: s\n      ordered_components: []\n\
         \x20     subtasks: [{name: t, components: [c]}]\n",
    );
    // A link naming a missing node as `ec2::node[X]/cmp` was accepted, and written back
    // as `X/cmp`, a link to another service (now refused: see the malformed inputs).
    service_props(
        "dsl_version: 1.0.0\nname: s\ncomponents:\n- node[n]:\n    components:\n    - c:\n\
         \x20       links: [ec2::node[m]/d]\n",
    );
}
