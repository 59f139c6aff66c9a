//! Property: any valid assembly expands without panics, into a model whose references
//! all hold.
//!
//! Modules are generated as text (so the parser is part of the path, as in `dtk module
//! install`): component definitions with typed attributes and defaults, a dynamic output,
//! dependencies on earlier definitions (no cycles) with link mappings from the output, and
//! assemblies of nodes and node groups where every node holds a dependency-closed set of
//! components (so every dependency resolves on its own node). The service document is
//! made from an assembly as `stage` makes it, written and read back, then expanded.
//!
//! `DTK_FUZZ_CASES` sets the case count (default 300).

use std::collections::{BTreeMap, BTreeSet};

use dtk_model::dsl::{parse_module, parse_service, write_service};
use dtk_model::expand::{ModuleSet, expand};
use dtk_model::service::{ServiceDoc, StagedFrom};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct DefRecipe {
    /// Attribute types (and whether each is required) besides the output.
    attrs: Vec<(usize, bool)>,
    /// Indices of earlier definitions this one depends on.
    deps: BTreeSet<usize>,
    /// Whether each dependency also maps its output through a link.
    link: bool,
}

#[derive(Debug, Clone)]
struct NodeRecipe {
    group: Option<u32>,
    /// Definitions placed (closed under dependencies when built).
    defs: BTreeSet<usize>,
    /// Whether to override each placed attribute.
    overrides: Vec<bool>,
}

#[derive(Debug, Clone)]
struct Recipe {
    defs: Vec<DefRecipe>,
    assemblies: Vec<(Vec<NodeRecipe>, bool)>,
}

const TYPES: &[(&str, &str, &str)] = &[
    ("string", "'text'", "'other'"),
    ("integer", "7", "-3"),
    ("boolean", "true", "false"),
    ("port", "8080", "443"),
    ("array", "[a, 1]", "[]"),
    ("hash", "{k: v}", "{a: {b: 1}}"),
];

fn recipe() -> impl Strategy<Value = Recipe> {
    let def = (
        prop::collection::vec((0..TYPES.len(), any::<bool>()), 0..4),
        prop::collection::btree_set(0usize..8, 0..3),
        any::<bool>(),
    )
        .prop_map(|(attrs, deps, link)| DefRecipe { attrs, deps, link });
    let node = (
        prop::option::of(1u32..4),
        prop::collection::btree_set(0usize..8, 0..5),
        prop::collection::vec(any::<bool>(), 0..12),
    )
        .prop_map(|(group, defs, overrides)| NodeRecipe {
            group,
            defs,
            overrides,
        });
    (
        prop::collection::vec(def, 1..8),
        prop::collection::vec((prop::collection::vec(node, 0..5), any::<bool>()), 1..3),
    )
        .prop_map(|(mut defs, assemblies)| {
            let n = defs.len();
            for (i, d) in defs.iter_mut().enumerate() {
                // Only earlier definitions: no cycles.
                d.deps = d.deps.iter().filter(|j| **j < i).copied().collect();
            }
            let assemblies = assemblies
                .into_iter()
                .map(|(nodes, wf)| {
                    let nodes = nodes
                        .into_iter()
                        .map(|mut nr| {
                            nr.defs = nr.defs.iter().map(|d| d % n).collect();
                            nr
                        })
                        .collect();
                    (nodes, wf)
                })
                .collect();
            Recipe { defs, assemblies }
        })
}

/// The placed set closed under dependencies.
fn closure(defs: &[DefRecipe], start: &BTreeSet<usize>) -> BTreeSet<usize> {
    let mut out = start.clone();
    let mut stack: Vec<usize> = start.iter().copied().collect();
    while let Some(d) = stack.pop() {
        for dep in &defs[d].deps {
            if out.insert(*dep) {
                stack.push(*dep);
            }
        }
    }
    out
}

fn module_text(r: &Recipe) -> String {
    let mut s =
        String::from("dsl_version: 1.0.0\nmodule: gen/app\nversion: 1.0.0\ncomponent_defs:\n");
    for (i, d) in r.defs.iter().enumerate() {
        s.push_str(&format!("  c{i}:\n    attributes:\n"));
        s.push_str("      out: {type: string, dynamic: true}\n");
        for (k, (t, required)) in d.attrs.iter().enumerate() {
            let (ty, default, _) = TYPES[*t];
            if *required {
                s.push_str(&format!("      a{k}: {{type: {ty}, required: true}}\n"));
            } else {
                s.push_str(&format!("      a{k}: {{type: {ty}, default: {default}}}\n"));
            }
        }
        for dep in &d.deps {
            s.push_str(&format!("      from_c{dep}: {{type: string}}\n"));
        }
        if !d.deps.is_empty() {
            let deps: Vec<String> = d.deps.iter().map(|j| format!("c{j}")).collect();
            s.push_str(&format!("    dependencies: [{}]\n", deps.join(", ")));
            if d.link {
                s.push_str("    link_defs:\n");
                for dep in &d.deps {
                    s.push_str(&format!(
                        "      c{dep}:\n        attribute_mappings: [\"$out -> from_c{dep}\"]\n"
                    ));
                }
            }
        }
        s.push_str(&format!(
            "    actions:\n      create:\n        commands:\n        - RUN echo c{i} {{{{out}}}}\n"
        ));
    }
    s.push_str("assemblies:\n");
    for (ai, (nodes, wf)) in r.assemblies.iter().enumerate() {
        s.push_str(&format!("  a{ai}:\n    components:\n"));
        if nodes.is_empty() {
            s.pop();
            s.push_str(" []\n");
        }
        for (ni, n) in nodes.iter().enumerate() {
            let placed = closure(&r.defs, &n.defs);
            let kind = if n.group.is_some() {
                "node_group"
            } else {
                "node"
            };
            s.push_str(&format!("    - {kind}[n{ni}]:\n        attributes:\n"));
            s.push_str("          image: ubuntu_jammy\n          size: small\n");
            if let Some(c) = n.group {
                s.push_str(&format!("          cardinality: {c}\n"));
            }
            if placed.is_empty() {
                s.push_str("        components: []\n");
                continue;
            }
            s.push_str("        components:\n");
            let mut o = n.overrides.iter().cycle();
            for d in &placed {
                let def = &r.defs[*d];
                let mut attrs = Vec::new();
                for (k, (t, required)) in def.attrs.iter().enumerate() {
                    let set = *o.next().unwrap_or(&false);
                    if *required || set {
                        attrs.push(format!("a{k}: {}", TYPES[*t].2));
                    }
                }
                if attrs.is_empty() {
                    s.push_str(&format!("        - c{d}\n"));
                } else {
                    s.push_str(&format!(
                        "        - c{d}:\n            attributes: {{{}}}\n",
                        attrs.join(", ")
                    ));
                }
            }
        }
        if *wf && !nodes.is_empty() {
            s.push_str("    actions:\n      create:\n        subtask_order: sequential\n        subtasks:\n");
            for (ni, n) in nodes.iter().enumerate() {
                let placed = closure(&r.defs, &n.defs);
                if placed.is_empty() {
                    continue;
                }
                let cmps: Vec<String> = placed.iter().map(|d| format!("c{d}")).collect();
                let sel = if n.group.is_some() {
                    "node_group"
                } else {
                    "node"
                };
                s.push_str(&format!(
                    "        - {{name: s{ni}, {sel}: n{ni}, ordered_components: [{}]}}\n",
                    cmps.join(", ")
                ));
            }
        }
    }
    s
}

fn check(r: &Recipe) -> Result<usize, TestCaseError> {
    let text = module_text(r);
    let module = parse_module(&text, "gen.yaml").map_err(|e| {
        TestCaseError::fail(format!("the generated module is refused: {e}\n{text}"))
    })?;
    // The parse cache reads a parse back equal (dtk_model::cache).
    let back: dtk_model::module::Module = dtk_model::cache::decode(
        &dtk_model::cache::encode(&module).map_err(|e| TestCaseError::fail(e.to_string()))?,
    )
    .map_err(|e| TestCaseError::fail(format!("a cached module does not read back: {e}")))?;
    prop_assert_eq!(&back, &module);
    let mut set = ModuleSet::new();
    set.insert(module.clone());
    let mut expanded = 0;
    for (name, asm) in &module.assemblies {
        let doc = ServiceDoc {
            dsl_version: "1.0.0".to_owned(),
            name: "svc".to_owned(),
            staged_from: Some(StagedFrom {
                module: module.id.clone(),
                version: module.version.clone(),
                assembly: name.clone(),
            }),
            target: None,
            is_target: false,
            dependencies: BTreeMap::from([(module.id.clone(), module.version.clone())]),
            nodes: asm.nodes.clone(),
            components: asm.components.clone(),
            workflows: asm.workflows.clone(),
            at: Default::default(),
        };
        let written = write_service(&doc);
        let reread = parse_service(&written, "dtk.service.yaml")
            .map_err(|e| TestCaseError::fail(format!("{e}\n{written}")))?;
        let back: ServiceDoc = dtk_model::cache::decode(
            &dtk_model::cache::encode(&reread).map_err(|e| TestCaseError::fail(e.to_string()))?,
        )
        .map_err(|e| TestCaseError::fail(format!("a cached document does not read back: {e}")))?;
        prop_assert_eq!(&back, &reread);
        let model = expand(&reread, &set, None, "dtk.service.yaml").map_err(|e| {
            TestCaseError::fail(format!(
                "a valid assembly does not expand: {e}\n--- module\n{text}\n--- service\n{written}"
            ))
        })?;
        expanded += 1;

        // Every id once; every reference to a component or node holds.
        let ids: BTreeSet<&str> = model.components.iter().map(|c| c.id.as_str()).collect();
        prop_assert_eq!(ids.len(), model.components.len(), "duplicate ids");
        let nodes: BTreeSet<&str> = model.nodes.iter().map(|n| n.name.as_str()).collect();
        for c in &model.components {
            if let Some(n) = &c.node {
                prop_assert!(nodes.contains(n.as_str()), "{} on unknown node {}", c.id, n);
            }
            for d in &c.depends_on {
                prop_assert!(
                    ids.contains(d.on.as_str()),
                    "{} depends on unknown {}",
                    c.id,
                    d.on
                );
            }
            for l in &c.links {
                if let dtk_model::instance::LinkSource::Component(from) = &l.from {
                    prop_assert!(
                        ids.contains(from.as_str()),
                        "{} links unknown {}",
                        c.id,
                        from
                    );
                }
            }
        }
        // Node groups expanded by cardinality, every placed component on every member.
        let placed: usize = asm
            .nodes
            .iter()
            .map(|n| n.components.len() * if n.group { n.cardinality() as usize } else { 1 })
            .sum();
        let own = model.components.iter().filter(|c| !c.realizes_node).count();
        prop_assert_eq!(own, placed, "components placed");
        // Every declared dependency is an edge to a component on the same node.
        for c in model.components.iter().filter(|c| !c.realizes_node) {
            for dep in &c.def.dependencies {
                let found = c.depends_on.iter().any(|d| {
                    model
                        .component(&d.on)
                        .is_some_and(|o| o.def.name == dep.name && o.node == c.node)
                });
                prop_assert!(found, "{} lacks its dependency {}", c.id, dep.name);
            }
        }
    }
    Ok(expanded)
}

fn cases() -> u32 {
    std::env::var("DTK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_valid_assembly_expands_without_panics(r in recipe()) {
        let n = check(&r)?;
        prop_assert_eq!(n, r.assemblies.len());
    }
}
