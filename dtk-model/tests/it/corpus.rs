//! The project's own corpus of the DSL forms the original dtk accepted
//! (`tests/corpus/`, written for this project): one small document per form, each opening
//! with a comment naming the original form and how dtk-rs maps it.
//!
//! Every document parses; what the writer makes of it is pinned beside it in
//! `NAME.written` (the form as dtk-rs writes it back, which shows how it maps onto the
//! model: refresh with `UPDATE_EXPECT=1`), and that text reads back to the same value.
//! [`the_forms_map_as_documented`] checks, form by form, the values `docs/dsl.md`
//! describes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dtk_model::dsl::{parse_module, parse_service, write_module, write_service};
use dtk_model::ident::{ModuleVersion, VersionReq};
use dtk_model::module::{
    ActionKind, AddFile, Command, Flow, Module, NodeSelector, Placement, SubtaskOrder,
};
use dtk_model::service::ServiceDoc;
use dtk_model::value::Value;
use expect_test::expect_file;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The corpus documents, by file name, in name order.
pub(crate) fn corpus_files() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn read(name: &str) -> String {
    std::fs::read_to_string(corpus_dir().join(name)).unwrap()
}

fn module(name: &str) -> Module {
    parse_module(&read(name), name).unwrap_or_else(|e| panic!("{e}"))
}

fn service(name: &str) -> ServiceDoc {
    parse_service(&read(name), name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_form_parses_maps_and_round_trips() {
    let files = corpus_files();
    assert!(files.len() >= 20, "only {} corpus documents", files.len());
    for (name, text) in &files {
        let written_path = corpus_dir().join(Path::new(name).with_extension("written"));
        if name.ends_with(".service.yaml") {
            let mut doc = parse_service(text, name).unwrap_or_else(|e| panic!("{e}"));
            let written = write_service(&doc);
            expect_file![written_path].assert_eq(&written);
            let mut again = parse_service(&written, "written")
                .unwrap_or_else(|e| panic!("{name}: written form refused: {e}\n{written}"));
            let mut located = doc.clone();
            let (same, placed) = dtk_model::dsl::write_service_located(&mut located);
            assert!(placed && same == written, "{name}: located writing differs");
            assert_eq!(
                located, again,
                "{name}: located writing disagrees with the parser"
            );
            doc.clear_locations();
            again.clear_locations();
            assert_eq!(doc, again, "{name}: round trip differs:\n{written}");
        } else {
            let mut m = parse_module(text, name).unwrap_or_else(|e| panic!("{e}"));
            // A service's copy of the module is read for its definitions only; staging
            // derives that from the module it parsed whole.
            let defs = dtk_model::dsl::parse_module_defs(text, name)
                .unwrap_or_else(|e| panic!("{name}: definitions refused: {e}"));
            assert_eq!(m.defs_only(), defs, "{name}: definitions differ");
            let written = write_module(&m);
            expect_file![written_path].assert_eq(&written);
            let mut again = parse_module(&written, "written")
                .unwrap_or_else(|e| panic!("{name}: written form refused: {e}\n{written}"));
            m.clear_locations();
            again.clear_locations();
            assert_eq!(m, again, "{name}: round trip differs:\n{written}");
        }
    }
}

fn names<'a>(it: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    it.into_iter().map(String::as_str).collect()
}

fn run(line: &str) -> Command {
    Command::Run(line.to_owned())
}

#[test]
fn the_forms_map_as_documented() {
    // Module dependencies: a list of names, empty versions, the older key.
    let m = module("dependencies_list.yaml");
    let deps: Vec<(String, VersionReq)> = m
        .dependencies
        .iter()
        .map(|d| (d.module.to_string(), d.req.clone()))
        .collect();
    assert_eq!(deps[0], ("tools/stdlib".to_owned(), VersionReq::Any));
    assert_eq!(deps[1].0, "tools/network");
    assert_eq!(deps[1].1.to_string(), "^2.0");
    let m = module("dependencies_any_version.yaml");
    assert_eq!(m.dependencies[0].req, VersionReq::Any);
    assert!(
        m.dependencies[0]
            .req
            .matches(&ModuleVersion::Tag("master".into()))
    );
    let m = module("dependent_modules.yaml");
    assert_eq!(m.dsl_version, None);
    assert_eq!(
        m.dependencies
            .iter()
            .map(|d| d.module.to_string())
            .collect::<Vec<_>>(),
        ["tools/stdlib", "tools/ruby"]
    );

    // Versions: none is `master`; a branch-like version is a development tag.
    assert_eq!(
        module("no_version.yaml").version,
        ModuleVersion::Tag("master".into())
    );
    let m = module("branch_version.yaml");
    assert!(m.version.is_development());
    assert_eq!(m.dependencies[0].req, VersionReq::Tag("master".into()));
    let m = module("module_name_colon.yaml");
    assert_eq!(m.id.to_string(), "corpus/colon");
    assert_eq!(m.dependencies[0].module.to_string(), "tools/stdlib");

    // Assemblies written with `nodes:`.
    let m = module("assembly_nodes_mapping.yaml");
    let site = &m.assemblies["site"];
    let nodes: Vec<(&str, bool, u32)> = site
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.group, n.cardinality()))
        .collect();
    assert_eq!(
        nodes,
        [
            ("database", false, 1),
            ("workers", true, 3),
            ("spare", false, 1)
        ]
    );
    assert!(!site.nodes[1].attributes.contains_key("type"));
    assert_eq!(names(site.nodes[0].attributes.keys()), ["image", "size"]);
    assert_eq!(
        site.nodes[0].components[0].attributes["port"].value,
        Value::Int(6432)
    );
    assert_eq!(site.components[0].reference.to_string(), "lb");

    // `component_links`.
    let m = module("component_links.yaml");
    let front = &m.assemblies["two_nodes"].nodes[1];
    let web = &front.components[0];
    assert_eq!(web.links.len(), 2);
    assert_eq!(web.links[0].target.to_string(), "data/db");
    assert_eq!(web.links[1].dependency.as_deref(), Some("store"));
    assert_eq!(
        front.components[1].links[0].dependency.as_deref(),
        Some("db")
    );

    // Named workflows, `delete` among them, kept; sequential by default.
    let m = module("assembly_workflows.yaml");
    let ws = &m.assemblies["site"].workflows;
    assert_eq!(names(ws.keys()), ["backup", "create", "delete"]);
    assert_eq!(ws["create"].subtask_order, SubtaskOrder::Sequential);
    assert_eq!(ws["create"].subtasks[1].node, None);
    assert_eq!(
        ws["delete"].subtasks[0].node,
        Some(NodeSelector::Group("front".into()))
    );
    assert_eq!(ws["backup"].subtasks[0].actions[0].action, "backup");
    let m = module("legacy_assembly_action.yaml");
    let ws = &m.assemblies["one"].workflows;
    assert_eq!(names(ws.keys()), ["create"]);
    assert!(ws["create"].subtasks[0].ordered);

    // Dependencies keyed by `module::component`, with `location`.
    let m = module("dependencies_keyed_by_component.yaml");
    let deps: Vec<(&str, Vec<String>, Placement)> = m.components["source"]
        .dependencies
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.choices.iter().map(ToString::to_string).collect(),
                d.placement,
            )
        })
        .collect();
    assert_eq!(
        deps,
        [
            (
                "keyed_deps::sink",
                vec!["keyed_deps::sink".to_owned()],
                Placement::OtherNode
            ),
            ("local_agent", vec!["agent".to_owned()], Placement::SameNode),
            (
                "broker",
                vec!["queue::broker".to_owned(), "queue::relay".to_owned()],
                Placement::Anywhere
            ),
        ]
    );

    // `link_defs` with a list of definitions per producer.
    let m = module("link_defs_list.yaml");
    let lds = &m.components["client"].link_defs;
    assert_eq!(lds.len(), 2);
    assert_eq!(
        lds.iter().map(|l| l.placement).collect::<Vec<_>>(),
        [Placement::SameNode, Placement::OtherNode]
    );
    assert!(
        lds.iter()
            .all(|l| l.target.to_string() == "link_list::server")
    );

    // `$node.…` mappings.
    let m = module("node_attribute_mappings.yaml");
    let maps: Vec<String> = m.components["source"].link_defs[0]
        .attribute_mappings
        .iter()
        .map(|a| format!("{} > {}", a.from.join("."), a.to))
        .collect();
    assert_eq!(
        maps,
        [
            "node.host_address > upstream",
            "node.host_addresses_ipv4.0 > addr",
            "node.private_ip > private",
            "node.public_ip > public"
        ]
    );

    // `<-` mappings send values the other way, constants included.
    let m = module("reverse_mappings.yaml");
    let maps = &m.components["client"].link_defs[0].attribute_mappings;
    assert!(maps.iter().all(|a| a.flow == Flow::Out));
    assert_eq!(maps[0].from, ["name"]);
    assert_eq!(maps[0].to, "client_name");
    let constants: Vec<Option<Value>> = maps.iter().map(|a| a.constant.clone()).collect();
    assert_eq!(
        constants,
        [
            None,
            Some(Value::Str("fast".into())),
            Some(Value::Bool(true)),
            Some(Value::Int(4)),
            Some(Value::Hash([("cpu".to_owned(), Value::Int(2))].into())),
        ]
    );

    // `RUN` as a mapping, `command`, conditions and per-command timeouts.
    let m = module("run_mappings.yaml");
    let actions = &m.components["app"].actions;
    assert_eq!(
        actions["create"].kind,
        ActionKind::Commands(vec![
            run("./bin/setup"),
            run("./bin/start --port 8080"),
            run("ls /"),
        ])
    );
    assert_eq!(actions["create"].timeout, Some(Duration::from_secs(45)));
    assert_eq!(
        actions["reload"].kind,
        ActionKind::Commands(vec![
            run("if test -f /run/app.pid\nthen\n./bin/reload\nfi"),
            run("if ! { test -f /run/app.pid\n}\nthen\n./bin/start\nfi"),
        ])
    );
    assert_eq!(actions["reload"].timeout, None);
    assert_eq!(
        actions["status"].kind,
        ActionKind::Commands(vec![run("./bin/status")])
    );

    // `ADD` steps.
    let m = module("add_step.yaml");
    let ActionKind::Commands(steps) = &m.components["web"].actions["create"].kind else {
        panic!("not commands");
    };
    assert_eq!(
        steps[..2],
        [
            Command::Add(AddFile {
                source: "templates/web.conf".into(),
                target: "/etc/web/web.conf".into(),
                template: true,
                owner: Some("web:web".into()),
                mode: Some("0640".into()),
            }),
            Command::Add(AddFile {
                source: "bin/start-web".into(),
                target: "bin/start-web".into(),
                template: false,
                owner: None,
                mode: Some("0755".into()),
            }),
        ]
    );
    assert_eq!(steps[2].run_line(), Some("./bin/start-web --port {{port}}"));

    // `external_ref` is the component's `create`, of a kind refused at staging.
    let m = module("external_ref.yaml");
    let kinds: Vec<&str> = ["wget", "fetch"]
        .iter()
        .map(|c| match &m.components[*c].actions["create"].kind {
            ActionKind::Unsupported { kind, .. } => kind.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["puppet_class", "puppet_definition"]);

    // `dependency_name` (and `name`).
    let m = module("dependency_name.yaml");
    let deps: Vec<Option<&str>> = m.components["node"]
        .link_defs
        .iter()
        .map(|l| l.dependency.as_deref())
        .collect();
    assert_eq!(deps, [Some("subnet"), Some("subnet"), Some("metrics")]);

    // `constant`, `singleton` and `only_one_per_node`.
    let m = module("constant_and_singleton.yaml");
    assert!(m.components["agent"].singleton);
    assert!(m.components["agent"].attributes["protocol"].constant);
    assert!(!m.components["plugin"].singleton);

    // Kinds the original ran and dtk-rs does not.
    let m = module("unsupported_actions.yaml");
    let kinds: Vec<(&str, &str)> = m.components["stack"]
        .actions
        .iter()
        .filter_map(|(n, a)| match &a.kind {
            ActionKind::Unsupported { kind, .. } => Some((n.as_str(), kind.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("configure", "puppet_class"),
            ("create", "ruby"),
            ("delete", "ruby"),
            ("image", "docker_image"),
            ("remove", "delete_node"),
            ("sum", "functions"),
        ]
    );
    assert_eq!(names(m.components["stack"].metadata.keys()), ["providers"]);

    // Metadata kept.
    let m = module("metadata_keys.yaml");
    assert_eq!(
        names(m.metadata.keys()),
        ["includes", "keywords", "license"]
    );
    assert_eq!(
        names(m.components["app"].metadata.keys()),
        ["include_modules"]
    );
    assert_eq!(
        names(m.assemblies["single"].metadata.keys()),
        ["attributes", "target"]
    );

    // A service document of the original's.
    let d = service("service_forms.service.yaml");
    let web = &d.nodes[0];
    assert_eq!(
        web.node_component.as_ref().map(ToString::to_string),
        Some("ec2::node".to_owned())
    );
    assert_eq!(web.links[0].service.as_deref(), Some("aws-target"));
    assert_eq!(web.links[0].target.to_string(), "ec2::profile[default]");
    assert_eq!(
        web.components[0].links[0].service.as_deref(),
        Some("aws-target")
    );
    assert_eq!(names(d.workflows.keys()), ["create", "delete"]);
}
