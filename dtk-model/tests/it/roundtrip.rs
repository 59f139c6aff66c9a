//! Round-trip properties: any valid module written with `write_module` parses back to the
//! same module, any service document written with `write_service` parses back to the
//! same document (locations aside); and no input makes the parser panic.
//!
//! Valid documents are built from a random "recipe": raw picks and values, turned into a
//! document whose references all resolve (a component's dependencies point at earlier
//! components, so there are no cycles; overrides name real attributes with values of
//! their type; workflow steps name declared nodes and components).

use std::collections::BTreeMap;
use std::time::Duration;

use dtk_model::Location;
use dtk_model::dsl::{
    parse_module, parse_service, write_module, write_service, write_service_located,
};
use dtk_model::ident::{ComponentRef, ModuleId, ModuleVersion, NodeComponentRef, VersionReq};
use dtk_model::module::{
    ActionDef, ActionKind, ActionStep, AddFile, Assembly, AttrType, AttrValue, AttributeDef,
    AttributeMapping, Command, ComponentDecl, ComponentDef, DependencyDef, Flow, LinkDecl, LinkDef,
    Module, ModuleDependency, NodeDecl, NodeSelector, Placement, Subtask, SubtaskOrder, Workflow,
};
use dtk_model::service::{ServiceDoc, StagedFrom};
use dtk_model::value::Value;
use proptest::prelude::*;

const AT: Location = Location {
    line: 0,
    col: 0,
    offset: 0,
};

/// 256 cases unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    ProptestConfig::default()
}

// ---------------------------------------------------------------- values

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[ -~]{0,12}",
        1 => prop::sample::select(vec![
            "", " ", "1", "1.5", "true", "null", "~", "yes", "no", "on", "- x", "a: b", "a #b",
            "#x", "x:", "\"q\"", "'q'", "line1\nline2", "line1\nline2\n", "a\n\nb\n", "  lead",
            "trail ", "\ttab", "back\\slash", "\u{2028}", "\u{feff}bom", "[x]", "{x}", "*a", "&a",
            "!t", "%p", "@a", "`b", "|", ">", "...", "---", "0x1F", "0o17", ".inf", "-.inf",
            ".nan", "1e3", "+1", "007", "12345678901234567890", "é", "日本", "a\r\nb", "\u{1}",
            "=", "<<", "- ", "?", "? x", ",", "a,b", "x\n", "\n", "\n\nx",
        ])
        .prop_map(str::to_owned),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any_text().prop_map(Value::Str),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any_text(), inner, 0..4).prop_map(Value::Hash),
        ]
    })
}

fn hash_value() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(any_text(), any_value(), 0..4).prop_map(Value::Hash)
}

fn array_value() -> impl Strategy<Value = Value> {
    prop::collection::vec(any_value(), 0..4).prop_map(Value::Array)
}

/// A value of `ty` (never null).
fn typed(ty: AttrType) -> BoxedStrategy<Value> {
    match ty {
        AttrType::String => any_text().prop_map(Value::Str).boxed(),
        AttrType::Integer => any::<i64>().prop_map(Value::Int).boxed(),
        AttrType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        AttrType::Port => (1i64..=65535).prop_map(Value::Int).boxed(),
        AttrType::Hash => hash_value().boxed(),
        AttrType::Array => array_value().boxed(),
        AttrType::Any => any_value()
            .prop_filter("not null", |v| !v.is_null())
            .boxed(),
    }
}

fn attr_type() -> impl Strategy<Value = AttrType> {
    prop::sample::select(vec![
        AttrType::String,
        AttrType::Integer,
        AttrType::Boolean,
        AttrType::Hash,
        AttrType::Array,
        AttrType::Port,
        AttrType::Any,
    ])
}

/// A name prefix; an index is appended where names must be unique.
fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,6}"
}

// ---------------------------------------------------------------- module recipe

#[derive(Debug, Clone)]
struct AttrRecipe {
    ty: AttrType,
    default: Option<Value>,
    flags: [bool; 6],
    description: Option<String>,
}

fn attr_recipe() -> impl Strategy<Value = AttrRecipe> {
    attr_type().prop_flat_map(|ty| {
        (
            prop::option::of(typed(ty)),
            any::<[bool; 6]>(),
            prop::option::of(any_text()),
        )
            .prop_map(move |(default, flags, description)| AttrRecipe {
                ty,
                default,
                flags,
                description,
            })
    })
}

#[derive(Debug, Clone)]
enum KindRecipe {
    Commands(Vec<String>),
    Provider(String, String),
    Puppet(bool, String),
    Ruby(String, Option<(String, Value)>),
    Function(Value),
    Docker(Value),
    /// A `RUN` line then an `ADD` step: source, target, template, owner, mode.
    Add(String, String, String, bool, Option<String>, Option<String>),
}

fn command_line() -> impl Strategy<Value = String> {
    any_text().prop_filter_map("a non-empty trimmed command", |s| {
        let t = s.trim();
        (!t.is_empty()).then(|| t.to_owned())
    })
}

fn kind_recipe() -> impl Strategy<Value = KindRecipe> {
    prop_oneof![
        3 => prop::collection::vec(command_line(), 1..4).prop_map(KindRecipe::Commands),
        2 => (word(), word()).prop_map(|(k, r)| KindRecipe::Provider(k, r)),
        1 => (any::<bool>(), any_text()).prop_map(|(d, s)| KindRecipe::Puppet(d, s)),
        1 => (any_text(), prop::option::of(("x_[a-z]{1,5}", any_value())))
            .prop_map(|(e, x)| KindRecipe::Ruby(e, x)),
        1 => hash_value().prop_map(KindRecipe::Function),
        1 => any_value().prop_map(KindRecipe::Docker),
        1 => (
            command_line(),
            command_line(),
            command_line(),
            any::<bool>(),
            prop::option::of("[a-z][a-z0-9_]{0,5}(:[a-z]{1,4})?"),
            prop::option::of(prop::sample::select(vec!["0644", "755", "0600", "640"])),
        )
            .prop_map(|(line, source, target, template, owner, mode)| {
                KindRecipe::Add(line, source, target, template, owner, mode.map(str::to_owned))
            }),
    ]
}

#[derive(Debug, Clone)]
struct ActionRecipe {
    kind: KindRecipe,
    attempts: u32,
    sleep_ms: u64,
    timeout: Option<u64>,
}

fn action_recipe() -> impl Strategy<Value = ActionRecipe> {
    (
        kind_recipe(),
        prop_oneof![Just(1u32), 1u32..=100],
        prop_oneof![Just(0u64), 0u64..100_000],
        prop::option::of(0u64..3_600_000),
    )
        .prop_map(|(kind, attempts, sleep_ms, timeout)| ActionRecipe {
            kind,
            attempts,
            sleep_ms,
            timeout,
        })
}

#[derive(Debug, Clone)]
struct CompRecipe {
    prefix: String,
    description: Option<String>,
    singleton: bool,
    providers: Option<Value>,
    attrs: Vec<(String, AttrRecipe)>,
    /// (pick of an earlier component or an external one, named, same node)
    deps: Vec<(usize, bool, bool, bool)>,
    /// (pick, external, mapping picks, dependency name)
    links: Vec<(usize, bool, Vec<(usize, bool)>, bool)>,
    actions: Vec<(String, ActionRecipe)>,
}

fn comp_recipe() -> impl Strategy<Value = CompRecipe> {
    (
        word(),
        prop::option::of(any_text()),
        any::<bool>(),
        prop::option::of(any_value()),
        prop::collection::vec((word(), attr_recipe()), 0..5),
        prop::collection::vec(
            (any::<usize>(), any::<bool>(), any::<bool>(), any::<bool>()),
            0..3,
        ),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<bool>(),
                prop::collection::vec((any::<usize>(), any::<bool>()), 0..3),
                any::<bool>(),
            ),
            0..3,
        ),
        prop::collection::vec((word(), action_recipe()), 0..4),
    )
        .prop_map(
            |(prefix, description, singleton, providers, attrs, deps, links, actions)| CompRecipe {
                prefix,
                description,
                singleton,
                providers,
                attrs,
                deps,
                links,
                actions,
            },
        )
}

#[derive(Debug, Clone)]
struct NodeRecipe {
    prefix: String,
    group: bool,
    cardinality: Option<u64>,
    realizer: u8,
    attrs: Vec<(String, Value)>,
    /// (pick, external, explicit module, overrides: (attr pick, value pick))
    comps: Vec<(usize, bool, bool, Vec<(usize, usize)>)>,
}

fn node_recipe() -> impl Strategy<Value = NodeRecipe> {
    (
        word(),
        any::<bool>(),
        prop::option::of(0u64..=1000),
        0u8..4,
        prop::collection::vec((word(), any_value()), 0..3),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<bool>(),
                any::<bool>(),
                prop::collection::vec((any::<usize>(), any::<usize>()), 0..3),
            ),
            0..4,
        ),
    )
        .prop_map(
            |(prefix, group, cardinality, realizer, attrs, comps)| NodeRecipe {
                prefix,
                group,
                cardinality,
                realizer,
                attrs,
                comps,
            },
        )
}

#[derive(Debug, Clone)]
struct StepRecipe {
    name: Option<String>,
    node: Option<usize>,
    concurrent: bool,
    ordered: bool,
    breakpoint: bool,
    comps: Vec<usize>,
    actions: Vec<(usize, usize, BTreeMap<String, Value>)>,
    realizer: bool,
    nested: Vec<StepRecipe>,
}

fn step_recipe() -> impl Strategy<Value = StepRecipe> {
    let leaf = (
        prop::option::of(any_text()),
        prop::option::of(any::<usize>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<usize>(), 0..3),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<usize>(),
                prop::collection::btree_map(any_text(), any_value(), 0..2),
            ),
            0..2,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(name, node, concurrent, ordered, breakpoint, comps, actions, realizer)| StepRecipe {
                name,
                node,
                concurrent,
                ordered,
                breakpoint,
                comps,
                actions,
                realizer,
                nested: Vec::new(),
            },
        );
    leaf.prop_recursive(2, 8, 3, |inner| {
        (inner.clone(), prop::collection::vec(inner, 0..3)).prop_map(|(mut s, nested)| {
            s.nested = nested;
            s
        })
    })
}

#[derive(Debug, Clone)]
struct AsmRecipe {
    prefix: String,
    description: Option<String>,
    node_component: bool,
    nodes: Vec<NodeRecipe>,
    comps: Vec<(usize, bool, Vec<(usize, usize)>)>,
    links: Vec<(usize, usize, bool)>,
    workflows: Vec<(String, bool, Vec<StepRecipe>)>,
}

fn asm_recipe() -> impl Strategy<Value = AsmRecipe> {
    (
        word(),
        prop::option::of(any_text()),
        any::<bool>(),
        prop::collection::vec(node_recipe(), 0..4),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<bool>(),
                prop::collection::vec((any::<usize>(), any::<usize>()), 0..2),
            ),
            0..3,
        ),
        prop::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 0..3),
        prop::collection::vec(
            (
                word(),
                any::<bool>(),
                prop::collection::vec(step_recipe(), 1..4),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(prefix, description, node_component, nodes, comps, links, workflows)| AsmRecipe {
                prefix,
                description,
                node_component,
                nodes,
                comps,
                links,
                workflows,
            },
        )
}

#[derive(Debug, Clone)]
struct ModuleRecipe {
    ns: String,
    name: String,
    version: String,
    dsl: bool,
    description: Option<String>,
    metadata: Vec<(usize, Value)>,
    deps: Vec<(String, String)>,
    comps: Vec<CompRecipe>,
    asms: Vec<AsmRecipe>,
    workflows: Vec<(String, bool, Vec<StepRecipe>)>,
    /// Values overrides pick from, per type.
    pool: Vec<(AttrType, Value)>,
}

fn version_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..20, 0u64..20, 0u64..20).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        (0u64..5, 0u64..5, "[a-z]{1,5}").prop_map(|(a, b, p)| format!("{a}.{b}.0-{p}.1")),
        Just("master".to_owned()),
        "[a-z][a-z0-9_]{0,6}",
    ]
}

fn req_text() -> impl Strategy<Value = String> {
    prop_oneof![
        version_text(),
        (0u64..5, 0u64..5).prop_map(|(a, b)| format!("^{a}.{b}")),
        (0u64..5, 0u64..5).prop_map(|(a, b)| format!(">= {a}.{b}, < {}", a + 1)),
        (0u64..5).prop_map(|a| format!("~{a}")),
        Just("*".to_owned()),
        // Written without a version: any version (`VersionReq::Any`).
        Just(String::new()),
    ]
}

fn module_recipe() -> impl Strategy<Value = ModuleRecipe> {
    let pool = prop::collection::vec(
        attr_type().prop_flat_map(|ty| typed(ty).prop_map(move |v| (ty, v))),
        0..12,
    );
    (
        (
            word(),
            word(),
            version_text(),
            any::<bool>(),
            prop::option::of(any_text()),
        ),
        prop::collection::vec((any::<usize>(), any_value()), 0..3),
        prop::collection::vec((word(), req_text()), 0..3),
        prop::collection::vec(comp_recipe(), 0..5),
        prop::collection::vec(asm_recipe(), 0..3),
        prop::collection::vec(
            (
                word(),
                any::<bool>(),
                prop::collection::vec(step_recipe(), 1..3),
            ),
            0..2,
        ),
        pool,
    )
        .prop_map(
            |(
                (ns, name, version, dsl, description),
                metadata,
                deps,
                comps,
                asms,
                workflows,
                pool,
            )| {
                ModuleRecipe {
                    ns,
                    name,
                    version,
                    dsl,
                    description,
                    metadata,
                    deps,
                    comps,
                    asms,
                    workflows,
                    pool,
                }
            },
        )
}

// ---------------------------------------------------------------- building

fn cref(module: Option<&str>, name: &str, instance: Option<&str>) -> ComponentRef {
    ComponentRef {
        module: module.map(str::to_owned),
        name: name.to_owned(),
        instance: instance.map(str::to_owned),
    }
}

fn build_action(name: &str, r: &ActionRecipe) -> ActionDef {
    let kind = match &r.kind {
        KindRecipe::Commands(lines) => {
            ActionKind::Commands(lines.iter().map(|l| Command::Run(l.clone())).collect())
        }
        KindRecipe::Provider(k, res) => ActionKind::Provider {
            kind: k.clone(),
            resource: res.clone(),
        },
        KindRecipe::Puppet(definition, s) => {
            let key = if *definition {
                "puppet_definition"
            } else {
                "puppet_class"
            };
            ActionKind::Unsupported {
                kind: key.to_owned(),
                detail: Value::Hash(BTreeMap::from([(key.to_owned(), Value::Str(s.clone()))])),
            }
        }
        KindRecipe::Ruby(entry, extra) => {
            let mut h = BTreeMap::from([
                ("type".to_owned(), Value::Str("ruby".to_owned())),
                ("entrypoint".to_owned(), Value::Str(entry.clone())),
            ]);
            if let Some((k, v)) = extra {
                h.insert(k.clone(), v.clone());
            }
            ActionKind::Unsupported {
                kind: "ruby".to_owned(),
                detail: Value::Hash(h),
            }
        }
        KindRecipe::Function(outputs) => {
            let f = Value::Hash(BTreeMap::from([
                ("type".to_owned(), Value::Str("ruby_function".to_owned())),
                ("outputs".to_owned(), outputs.clone()),
            ]));
            ActionKind::Unsupported {
                kind: "ruby_function".to_owned(),
                detail: Value::Hash(BTreeMap::from([("function".to_owned(), f)])),
            }
        }
        KindRecipe::Docker(v) => ActionKind::Unsupported {
            kind: "docker".to_owned(),
            detail: Value::Hash(BTreeMap::from([("docker".to_owned(), v.clone())])),
        },
        KindRecipe::Add(line, source, target, template, owner, mode) => ActionKind::Commands(vec![
            Command::Run(line.clone()),
            Command::Add(AddFile {
                source: source.clone(),
                target: target.clone(),
                template: *template,
                owner: owner.clone(),
                mode: mode.clone(),
            }),
        ]),
    };
    ActionDef {
        name: name.to_owned(),
        kind,
        attempts: r.attempts,
        sleep: Duration::from_millis(r.sleep_ms),
        timeout: r.timeout.map(Duration::from_millis),
        at: AT,
    }
}

/// Declared components of an assembly, for workflow steps: (node index, reference, local
/// component name).
type Declared = Vec<(Option<usize>, ComponentRef, Option<String>)>;

fn build_module(r: &ModuleRecipe) -> Module {
    let own = format!("m{}", r.name);
    let deps: Vec<ModuleDependency> = r
        .deps
        .iter()
        .enumerate()
        .map(|(i, (name, req))| ModuleDependency {
            module: ModuleId::new(&r.ns, &format!("d{i}{name}")).unwrap(),
            req: if req.is_empty() {
                VersionReq::Any
            } else {
                req.parse::<VersionReq>().unwrap()
            },
            at: AT,
        })
        .collect();
    let ext: Vec<String> = deps.iter().map(|d| d.module.name.clone()).collect();
    let comp_names: Vec<String> = r
        .comps
        .iter()
        .enumerate()
        .map(|(i, c)| format!("c{i}{}", c.prefix))
        .collect();
    let attr_names = |c: &CompRecipe| -> Vec<String> {
        c.attrs
            .iter()
            .enumerate()
            .map(|(j, (n, _))| format!("a{j}{n}"))
            .collect()
    };

    let mut components = BTreeMap::new();
    for (i, c) in r.comps.iter().enumerate() {
        let name = comp_names[i].clone();
        let attributes = c
            .attrs
            .iter()
            .zip(attr_names(c))
            .map(|((_, a), an)| {
                (
                    an.clone(),
                    AttributeDef {
                        name: an,
                        ty: a.ty,
                        default: a.default.clone(),
                        required: a.flags[0],
                        description: a.description.clone(),
                        dynamic: a.flags[1],
                        hidden: a.flags[2],
                        secret: a.flags[3],
                        input: a.flags[4],
                        constant: a.flags[5],
                        at: AT,
                    },
                )
            })
            .collect();
        let mut dependencies = Vec::new();
        for (j, &(pick, named, same_node, external)) in c.deps.iter().enumerate() {
            let target = if external && !ext.is_empty() {
                cref(Some(&ext[pick % ext.len()]), "thing", None)
            } else if i > 0 {
                let t = &comp_names[pick % i];
                if pick % 3 == 0 {
                    cref(Some(&own), t, None)
                } else {
                    cref(None, t, None)
                }
            } else {
                continue;
            };
            if named || same_node {
                let placement = match (same_node, pick % 2) {
                    (false, _) => Placement::Anywhere,
                    (true, 0) => Placement::SameNode,
                    (true, _) => Placement::OtherNode,
                };
                dependencies.push(DependencyDef {
                    name: format!("dep{j}"),
                    choices: vec![target],
                    placement,
                    at: AT,
                });
            } else {
                let name = target.to_string();
                if dependencies.iter().any(|d: &DependencyDef| d.name == name) {
                    continue;
                }
                dependencies.push(DependencyDef {
                    name,
                    choices: vec![target],
                    placement: Placement::Anywhere,
                    at: AT,
                });
            }
        }
        let mut link_defs = Vec::new();
        for (j, (pick, external, maps, named)) in c.links.iter().enumerate() {
            let (target, producer_attrs): (ComponentRef, Vec<String>) =
                if *external || r.comps.is_empty() {
                    (
                        cref(Some("elsewhere"), "producer", None),
                        vec!["out".to_owned()],
                    )
                } else {
                    let p = pick % r.comps.len();
                    (cref(None, &comp_names[p], None), attr_names(&r.comps[p]))
                };
            let attribute_mappings = maps
                .iter()
                .enumerate()
                .map(|(k, (mp, node_path))| {
                    let from = if *node_path || producer_attrs.is_empty() {
                        vec![
                            "node".to_owned(),
                            "host_addresses_ipv4".to_owned(),
                            "0".to_owned(),
                        ]
                    } else {
                        vec![producer_attrs[mp % producer_attrs.len()].clone()]
                    };
                    // Some mappings send a value the other way (`<-`): this component's
                    // attribute or a constant into one of the producer's attributes.
                    match (mp % 5, producer_attrs.is_empty()) {
                        (3, false) => AttributeMapping {
                            from: vec![format!("own{k}")],
                            to: producer_attrs[mp % producer_attrs.len()].clone(),
                            flow: Flow::Out,
                            constant: None,
                            at: AT,
                        },
                        (4, false) => AttributeMapping {
                            from: Vec::new(),
                            to: producer_attrs[mp % producer_attrs.len()].clone(),
                            flow: Flow::Out,
                            constant: Some(match mp % 3 {
                                0 => Value::Int((mp % 1000) as i64),
                                1 => Value::Bool(mp % 2 == 0),
                                _ => Value::Str(format!("c{mp}")),
                            }),
                            at: AT,
                        },
                        _ => AttributeMapping {
                            from,
                            to: format!("in{k}"),
                            flow: Flow::In,
                            constant: None,
                            at: AT,
                        },
                    }
                })
                .collect();
            let dependency = format!("dep{j}");
            let declared = dependencies.iter().any(|d| d.name == dependency);
            link_defs.push(LinkDef {
                target,
                attribute_mappings,
                dependency: (*named && declared).then_some(dependency),
                placement: match pick % 3 {
                    0 => Placement::Anywhere,
                    1 => Placement::SameNode,
                    _ => Placement::OtherNode,
                },
                at: AT,
            });
        }
        let mut actions = BTreeMap::new();
        for (j, (an, a)) in c.actions.iter().enumerate() {
            let an = if j == 0 {
                "create".to_owned()
            } else {
                format!("x{j}{an}")
            };
            actions.insert(an.clone(), build_action(&an, a));
        }
        let mut metadata = BTreeMap::new();
        if let Some(p) = &c.providers {
            metadata.insert("providers".to_owned(), p.clone());
        }
        components.insert(
            name.clone(),
            ComponentDef {
                name,
                description: c.description.clone(),
                attributes,
                dependencies,
                link_defs,
                actions,
                singleton: c.singleton,
                metadata,
                at: AT,
            },
        );
    }

    // A value of the attribute's type from the pool, if the pool has one.
    let pick_value = |ty: AttrType, pick: usize| -> Option<Value> {
        let fits: Vec<&Value> = r
            .pool
            .iter()
            .filter(|(t, v)| *t == ty || (ty == AttrType::Any && !v.is_null()))
            .map(|(_, v)| v)
            .collect();
        (!fits.is_empty()).then(|| fits[pick % fits.len()].clone())
    };
    // Overrides of settable attributes of a local component.
    let overrides = |ci: usize, picks: &[(usize, usize)]| -> BTreeMap<String, AttrValue> {
        let def = &components[&comp_names[ci]];
        let settable: Vec<&AttributeDef> = def
            .attributes
            .values()
            .filter(|a| (!a.dynamic || a.input) && !a.constant)
            .collect();
        let mut out = BTreeMap::new();
        if settable.is_empty() {
            return out;
        }
        for (ap, vp) in picks {
            let a = settable[ap % settable.len()];
            if let Some(value) = pick_value(a.ty, *vp) {
                out.insert(a.name.clone(), AttrValue { value, at: AT });
            }
        }
        out
    };

    let mut assemblies = BTreeMap::new();
    for (ai, a) in r.asms.iter().enumerate() {
        let name = format!("s{ai}{}", a.prefix);
        let mut declared: Declared = Vec::new();
        let mut nodes = Vec::new();
        for (ni, n) in a.nodes.iter().enumerate() {
            let node_name = format!("n{ni}{}", n.prefix);
            let label = if n.group { "node_group" } else { "node" };
            let node_component = match (n.realizer, ext.first()) {
                (1, Some(e)) => Some(cref(Some(e), label, None)),
                (2, Some(e)) if !n.group => Some(cref(Some(e), "vm", None)),
                (3, _) => {
                    Some(cref(Some(&own), label, None)).filter(|_| components.contains_key(label))
                }
                _ => None,
            };
            let mut attributes: BTreeMap<String, AttrValue> = n
                .attrs
                .iter()
                .enumerate()
                .map(|(k, (an, v))| {
                    (
                        format!("p{k}{an}"),
                        AttrValue {
                            value: v.clone(),
                            at: AT,
                        },
                    )
                })
                .collect();
            if n.group
                && let Some(c) = n.cardinality
            {
                attributes.insert(
                    "cardinality".to_owned(),
                    AttrValue {
                        value: Value::Int(c as i64),
                        at: AT,
                    },
                );
            }
            let mut comps = Vec::new();
            for (k, (pick, external, explicit, picks)) in n.comps.iter().enumerate() {
                let inst = format!("i{k}");
                let (reference, local) = if *external && !ext.is_empty() {
                    (
                        cref(Some(&ext[pick % ext.len()]), "thing", Some(&inst)),
                        None,
                    )
                } else if !comp_names.is_empty() {
                    let ci = pick % comp_names.len();
                    // A singleton goes once on a node.
                    let placed = declared.iter().any(|(n, _, l)| {
                        *n == Some(ni) && l.as_deref() == Some(comp_names[ci].as_str())
                    });
                    if placed && components[&comp_names[ci]].singleton {
                        continue;
                    }
                    let module = explicit.then_some(own.as_str());
                    (cref(module, &comp_names[ci], Some(&inst)), Some(ci))
                } else {
                    continue;
                };
                let attributes = local.map(|ci| overrides(ci, picks)).unwrap_or_default();
                declared.push((
                    Some(ni),
                    reference.clone(),
                    local.map(|ci| comp_names[ci].clone()),
                ));
                comps.push(ComponentDecl {
                    reference,
                    attributes: attributes.into(),
                    links: Vec::new(),
                    at: AT,
                });
            }
            nodes.push(NodeDecl {
                name: node_name,
                group: n.group,
                node_component,
                attributes: attributes.into(),
                components: comps,
                links: Vec::new(),
                at: AT,
            });
        }
        let mut comps = Vec::new();
        for (k, (pick, external, picks)) in a.comps.iter().enumerate() {
            let inst = format!("t{k}");
            let (reference, local) = if *external && !ext.is_empty() {
                (
                    cref(Some(&ext[pick % ext.len()]), "thing", Some(&inst)),
                    None,
                )
            } else if !comp_names.is_empty() {
                let ci = pick % comp_names.len();
                (cref(None, &comp_names[ci], Some(&inst)), Some(ci))
            } else {
                continue;
            };
            let attributes = local.map(|ci| overrides(ci, picks)).unwrap_or_default();
            declared.push((
                None,
                reference.clone(),
                local.map(|ci| comp_names[ci].clone()),
            ));
            comps.push(ComponentDecl {
                reference,
                attributes: attributes.into(),
                links: Vec::new(),
                at: AT,
            });
        }
        // Links from a declared component to another.
        if !declared.is_empty() {
            for (k, (from, to, named)) in a.links.iter().enumerate() {
                let (from_node, from_ref, _) = declared[from % declared.len()].clone();
                let (to_node, to_ref, _) = declared[to % declared.len()].clone();
                let link = LinkDecl {
                    dependency: named.then(|| format!("l{k}")),
                    target: NodeComponentRef {
                        node: to_node.map(|n| nodes[n].name.clone()),
                        component: to_ref,
                    },
                    service: None,
                    at: AT,
                };
                let holder = match from_node {
                    Some(n) => nodes[n]
                        .components
                        .iter_mut()
                        .find(|c| c.reference == from_ref),
                    None => comps.iter_mut().find(|c| c.reference == from_ref),
                };
                if let Some(h) = holder {
                    h.links.push(link);
                }
            }
        }
        let mut workflows = BTreeMap::new();
        for (wi, (wn, concurrent, steps)) in a.workflows.iter().enumerate() {
            let subtasks: Vec<Subtask> = steps
                .iter()
                .filter_map(|s| build_step(s, &nodes, &declared, &components, None))
                .collect();
            if subtasks.is_empty() {
                continue;
            }
            let wname = if wi == 0 {
                "create".to_owned()
            } else {
                format!("w{wi}{wn}")
            };
            workflows.insert(
                wname.clone(),
                Workflow {
                    name: wname,
                    subtask_order: if *concurrent {
                        SubtaskOrder::Concurrent
                    } else {
                        SubtaskOrder::Sequential
                    },
                    subtasks,
                    at: AT,
                },
            );
        }
        let node_component = match (a.node_component, ext.first()) {
            (true, Some(e)) => Some(cref(Some(e), "node", None)),
            _ => None,
        };
        assemblies.insert(
            name.clone(),
            Assembly {
                name,
                description: a.description.clone(),
                nodes,
                components: comps,
                workflows,
                node_component,
                metadata: a
                    .description
                    .as_ref()
                    .map(|d| BTreeMap::from([("target".to_owned(), Value::Str(d.clone()))]))
                    .unwrap_or_default(),
                at: AT,
            },
        );
    }

    // Module-level workflows belong to no assembly: any references.
    let mut workflows = BTreeMap::new();
    for (wi, (wn, concurrent, steps)) in r.workflows.iter().enumerate() {
        let subtasks: Vec<Subtask> = steps.iter().map(free_step).collect();
        let wname = format!("g{wi}{wn}");
        workflows.insert(
            wname.clone(),
            Workflow {
                name: wname,
                subtask_order: if *concurrent {
                    SubtaskOrder::Concurrent
                } else {
                    SubtaskOrder::Sequential
                },
                subtasks,
                at: AT,
            },
        );
    }

    let metadata_keys = ["keywords", "license", "author", "homepage", "repository"];
    let metadata = r
        .metadata
        .iter()
        .map(|(k, v)| (metadata_keys[k % metadata_keys.len()].to_owned(), v.clone()))
        .collect();
    Module {
        id: ModuleId::new(&r.ns, &own).unwrap(),
        version: r.version.parse::<ModuleVersion>().unwrap(),
        dsl_version: r.dsl.then(|| "1.0.0".to_owned()),
        description: r.description.clone(),
        dependencies: deps,
        components,
        assemblies,
        workflows,
        metadata,
    }
}

/// A step whose references all exist in the assembly; `None` when it would be empty.
fn build_step(
    s: &StepRecipe,
    nodes: &[NodeDecl],
    declared: &Declared,
    defs: &BTreeMap<String, ComponentDef>,
    parent: Option<usize>,
) -> Option<Subtask> {
    let own_node = s
        .node
        .filter(|_| !nodes.is_empty())
        .map(|p| p % nodes.len());
    let on = own_node.or(parent);
    let here: Vec<&(Option<usize>, ComponentRef, Option<String>)> = declared
        .iter()
        .filter(|(n, _, _)| on.is_none() || *n == on)
        .collect();
    let mut components: Vec<ComponentRef> = Vec::new();
    if !here.is_empty() {
        for p in &s.comps {
            components.push(here[p % here.len()].1.clone());
        }
    }
    if s.realizer && on.is_none() && !nodes.is_empty() {
        let n = &nodes[s.comps.first().copied().unwrap_or(0) % nodes.len()];
        let label = if n.group { "node_group" } else { "node" };
        components.push(cref(None, label, Some(&n.name)));
    }
    let mut actions = Vec::new();
    let with_actions: Vec<(&ComponentRef, Vec<&String>)> = here
        .iter()
        .filter_map(|(_, r, local)| {
            let def = defs.get(local.as_ref()?)?;
            (!def.actions.is_empty()).then(|| (r, def.actions.keys().collect()))
        })
        .collect();
    if !with_actions.is_empty() {
        for (cp, ap, params) in &s.actions {
            let (r, acts) = &with_actions[cp % with_actions.len()];
            actions.push(ActionStep {
                component: NodeComponentRef {
                    node: None,
                    component: (*r).clone(),
                },
                action: acts[ap % acts.len()].clone(),
                params: params.clone(),
                at: AT,
            });
        }
    }
    let subtasks: Vec<Subtask> = s
        .nested
        .iter()
        .filter_map(|n| build_step(n, nodes, declared, defs, on))
        .collect();
    if components.is_empty() && actions.is_empty() && subtasks.is_empty() {
        return None;
    }
    let ordered = s.ordered && !(components.is_empty() && actions.is_empty());
    Some(Subtask {
        name: s.name.clone(),
        node: own_node.map(|n| {
            if nodes[n].group {
                NodeSelector::Group(nodes[n].name.clone())
            } else {
                NodeSelector::Node(nodes[n].name.clone())
            }
        }),
        subtask_order: if s.concurrent {
            SubtaskOrder::Concurrent
        } else {
            SubtaskOrder::Sequential
        },
        components,
        ordered,
        actions,
        subtasks,
        breakpoint: s.breakpoint,
        at: AT,
    })
}

/// A step for a workflow that is not checked against an assembly.
fn free_step(s: &StepRecipe) -> Subtask {
    let components: Vec<ComponentRef> = s
        .comps
        .iter()
        .map(|p| {
            cref(
                Some("lib"),
                &format!("c{}", p % 7),
                (p % 2 == 0).then_some("x"),
            )
        })
        .collect();
    let actions: Vec<ActionStep> = s
        .actions
        .iter()
        .map(|(c, a, params)| ActionStep {
            component: NodeComponentRef {
                node: (c % 2 == 0).then(|| format!("n{}", c % 5)),
                component: cref(None, &format!("c{}", c % 7), None),
            },
            action: format!("a{}", a % 5),
            params: params.clone(),
            at: AT,
        })
        .collect();
    let mut subtasks: Vec<Subtask> = s.nested.iter().map(free_step).collect();
    if components.is_empty() && actions.is_empty() && subtasks.is_empty() {
        subtasks.push(Subtask {
            name: None,
            node: None,
            subtask_order: SubtaskOrder::Sequential,
            components: vec![cref(None, "filler", None)],
            ordered: false,
            actions: Vec::new(),
            subtasks: Vec::new(),
            breakpoint: false,
            at: AT,
        });
    }
    Subtask {
        name: s.name.clone(),
        node: s.node.map(|n| {
            if n % 2 == 0 {
                NodeSelector::Node(format!("n{}", n % 5))
            } else {
                NodeSelector::Group(format!("g{}", n % 5))
            }
        }),
        subtask_order: if s.concurrent {
            SubtaskOrder::Concurrent
        } else {
            SubtaskOrder::Sequential
        },
        ordered: s.ordered && !(components.is_empty() && actions.is_empty()),
        components,
        actions,
        subtasks,
        breakpoint: s.breakpoint,
        at: AT,
    }
}

// ---------------------------------------------------------------- service recipe

fn service_strategy() -> impl Strategy<Value = ServiceDoc> {
    (
        (
            word(),
            any::<bool>(),
            prop::option::of(word()),
            any::<bool>(),
        ),
        prop::collection::vec((word(), word(), version_text()), 0..4),
        prop::collection::vec(node_recipe(), 0..4),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<bool>(),
                prop::collection::btree_map(word(), any_value(), 0..3),
            ),
            0..3,
        ),
        prop::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 0..4),
        prop::collection::vec((word(), prop::collection::vec(step_recipe(), 1..3)), 0..3),
    )
        .prop_map(
            |((name, staged, target, base), deps, nodes, comps, links, workflows)| {
                build_service(
                    name, staged, target, base, deps, nodes, comps, links, workflows,
                )
            },
        )
}

#[allow(clippy::too_many_arguments)]
fn build_service(
    name: String,
    staged: bool,
    target: Option<String>,
    base: bool,
    deps: Vec<(String, String, String)>,
    node_recipes: Vec<NodeRecipe>,
    comp_recipes: Vec<(usize, bool, BTreeMap<String, Value>)>,
    link_recipes: Vec<(usize, usize, u8)>,
    workflow_recipes: Vec<(String, Vec<StepRecipe>)>,
) -> ServiceDoc {
    let dependencies: BTreeMap<ModuleId, ModuleVersion> = deps
        .iter()
        .enumerate()
        .map(|(i, (ns, n, v))| {
            (
                ModuleId::new(ns, &format!("d{i}{n}")).unwrap(),
                v.parse().unwrap(),
            )
        })
        .collect();
    let ext: Vec<String> = dependencies.keys().map(|m| m.name.clone()).collect();
    let staged_from = staged.then(|| StagedFrom {
        module: ModuleId::new("demo", "webapp").unwrap(),
        version: "1.0.0".parse().unwrap(),
        assembly: "three_tier".to_owned(),
    });
    let mut declared: Declared = Vec::new();
    let mut nodes = Vec::new();
    for (ni, n) in node_recipes.iter().enumerate() {
        let node_name = format!("n{ni}{}", n.prefix);
        let label = if n.group { "node_group" } else { "node" };
        let node_component = match (n.realizer, ext.first()) {
            (1, Some(e)) => Some(cref(Some(e), label, None)),
            (2, Some(e)) if !n.group => Some(cref(Some(e), "vm", None)),
            (3, Some(e)) => Some(cref(Some(e), "machine", None)),
            _ => None,
        };
        let mut attributes: BTreeMap<String, AttrValue> = n
            .attrs
            .iter()
            .enumerate()
            .map(|(k, (an, v))| {
                (
                    format!("p{k}{an}"),
                    AttrValue {
                        value: v.clone(),
                        at: AT,
                    },
                )
            })
            .collect();
        if n.group
            && let Some(c) = n.cardinality
        {
            attributes.insert(
                "cardinality".to_owned(),
                AttrValue {
                    value: Value::Int(c as i64),
                    at: AT,
                },
            );
        }
        let mut comps = Vec::new();
        for (k, (pick, external, _, picks)) in n.comps.iter().enumerate() {
            let module = (*external && !ext.is_empty()).then(|| ext[pick % ext.len()].as_str());
            let reference = cref(
                module,
                &format!("c{}", pick % 5),
                (k > 0).then(|| format!("i{k}")).as_deref(),
            );
            let attributes = picks
                .iter()
                .map(|(a, v)| {
                    (
                        format!("v{}", a % 4),
                        AttrValue {
                            value: Value::Int((*v % 100) as i64),
                            at: AT,
                        },
                    )
                })
                .collect();
            declared.push((Some(ni), reference.clone(), None));
            comps.push(ComponentDecl {
                reference,
                attributes,
                links: Vec::new(),
                at: AT,
            });
        }
        nodes.push(NodeDecl {
            name: node_name,
            group: n.group,
            node_component,
            attributes: attributes.into(),
            components: comps,
            links: Vec::new(),
            at: AT,
        });
    }
    let mut comps = Vec::new();
    for (k, (pick, external, attrs)) in comp_recipes.iter().enumerate() {
        let module = (*external && !ext.is_empty()).then(|| ext[pick % ext.len()].as_str());
        let reference = cref(module, &format!("top{}", pick % 5), Some(&format!("t{k}")));
        declared.push((None, reference.clone(), None));
        comps.push(ComponentDecl {
            reference,
            attributes: attrs
                .iter()
                .map(|(k, v)| {
                    (
                        format!("x{k}"),
                        AttrValue {
                            value: v.clone(),
                            at: AT,
                        },
                    )
                })
                .collect(),
            links: Vec::new(),
            at: AT,
        });
    }
    // Links: to a component of this service, or into another service.
    for (k, (from, to, kind)) in link_recipes.iter().enumerate() {
        let (target, service) = if kind % 3 == 0 || declared.is_empty() {
            (
                NodeComponentRef {
                    node: None,
                    component: cref(Some("ec2"), "profile", Some("aws-target")),
                },
                Some(format!("svc{}", kind % 4)),
            )
        } else {
            let (n, r, _) = declared[to % declared.len()].clone();
            (
                NodeComponentRef {
                    node: n.map(|n| nodes[n].name.clone()),
                    component: r,
                },
                None,
            )
        };
        let link = LinkDecl {
            dependency: (kind % 2 == 0).then(|| format!("l{k}")),
            target,
            service,
            at: AT,
        };
        if declared.is_empty() || kind % 5 == 0 {
            if let Some(n) = nodes.get_mut(from % node_recipes.len().max(1)) {
                n.links.push(link);
            }
            continue;
        }
        let (n, r, _) = declared[from % declared.len()].clone();
        let holder = match n {
            Some(n) => nodes[n].components.iter_mut().find(|c| c.reference == r),
            None => comps.iter_mut().find(|c| c.reference == r),
        };
        if let Some(h) = holder {
            h.links.push(link);
        }
    }
    let empty = BTreeMap::new();
    let mut workflows = BTreeMap::new();
    for (wi, (wn, steps)) in workflow_recipes.iter().enumerate() {
        let subtasks: Vec<Subtask> = steps
            .iter()
            .filter_map(|s| build_step(s, &nodes, &declared, &empty, None))
            .collect();
        if subtasks.is_empty() {
            continue;
        }
        let wname = format!("w{wi}{wn}");
        workflows.insert(
            wname.clone(),
            Workflow {
                name: wname,
                subtask_order: SubtaskOrder::Sequential,
                subtasks,
                at: AT,
            },
        );
    }
    ServiceDoc {
        dsl_version: "1.0.0".to_owned(),
        name,
        staged_from,
        target,
        is_target: base,
        dependencies,
        nodes,
        components: comps,
        workflows,
        at: AT,
    }
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_valid_module_round_trips(recipe in module_recipe()) {
        let module = build_module(&recipe);
        let text = write_module(&module);
        let mut back = match parse_module(&text, "written.yaml") {
            Ok(m) => m,
            Err(e) => panic!("the written module is refused:\n{e}\n--- text:\n{text}"),
        };
        // What a service's copy of the module is read as, without reading it again.
        let defs = dtk_model::dsl::parse_module_defs(&text, "written.yaml")
            .unwrap_or_else(|e| panic!("definitions refused:\n{e}\n--- text:\n{text}"));
        prop_assert_eq!(&back.defs_only(), &defs, "text:\n{}", text);
        back.clear_locations();
        prop_assert_eq!(&back, &module, "text:\n{}", text);
        // Writing is canonical: the same module gives the same text.
        prop_assert_eq!(write_module(&back), text);
    }

    #[test]
    fn any_service_document_round_trips(doc in service_strategy()) {
        let text = write_service(&doc);
        let mut back = match parse_service(&text, "dtk.service.yaml") {
            Ok(d) => d,
            Err(e) => panic!("the written service is refused:\n{e}\n--- text:\n{text}"),
        };
        // Written with its locations, the document is its text's parse, locations and
        // all: what staging keeps in the parse cache instead of reading the text back.
        let mut located = doc.clone();
        let (same, placed) = write_service_located(&mut located);
        prop_assert!(placed, "text:\n{}", text);
        prop_assert_eq!(&same, &text);
        prop_assert_eq!(&located, &back, "text:\n{}", text);
        back.clear_locations();
        prop_assert_eq!(&back, &doc, "text:\n{}", text);
        prop_assert_eq!(write_service(&back), text);
    }

    #[test]
    fn any_value_round_trips_as_an_attribute(v in any_value()) {
        let doc = ServiceDoc {
            dsl_version: "1.0.0".to_owned(),
            name: "svc".to_owned(),
            staged_from: None,
            target: None,
            is_target: false,
            dependencies: BTreeMap::new(),
            nodes: vec![NodeDecl {
                name: "n".to_owned(),
                group: false,
                node_component: None,
                attributes: [("v".to_owned(), AttrValue { value: v, at: AT })].into(),
                components: Vec::new(),
                links: Vec::new(),
                at: AT,
            }],
            components: Vec::new(),
            workflows: BTreeMap::new(),
            at: AT,
        };
        let text = write_service(&doc);
        let mut back = parse_service(&text, "v.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut located = doc.clone();
        prop_assert!(write_service_located(&mut located).1);
        prop_assert_eq!(&located, &back, "text:\n{}", text);
        back.clear_locations();
        prop_assert_eq!(back, doc, "text:\n{}", text);
    }

    /// Mangled corpus documents never make the parser panic.
    #[test]
    fn mangled_documents_do_not_panic(
        which in 0usize..64,
        edits in prop::collection::vec((any::<usize>(), prop::sample::select(vec![
            "", ":", "- ", "[", "]", "{", "}", "&a ", "*a", "\n", "\n  ", "  ", "'", "\"", "#",
            "|", ">", "node[", "::", "$", "->", "<-", "\t", "~", "!!", "%", "@", ",", "?",
        ])), 1..6),
        cut in any::<usize>(),
    ) {
        let files = crate::corpus::corpus_files();
        let mut text = files[which % files.len()].1.clone();
        for (pos, ins) in edits {
            let mut p = pos % (text.len() + 1);
            while !text.is_char_boundary(p) { p -= 1; }
            text.insert_str(p, ins);
        }
        let mut c = cut % (text.len() + 1);
        while !text.is_char_boundary(c) { c -= 1; }
        let (a, b) = text.split_at(c);
        let removed = format!("{}{}", a, b.get(b.len().min(7)..).unwrap_or(""));
        for t in [&text, &removed] {
            let _ = parse_module(t, "m.yaml");
            let _ = parse_service(t, "s.yaml");
        }
    }
}
