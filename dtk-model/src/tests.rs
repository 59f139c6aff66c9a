//! Unit tests: name and reference parsing (`ident`), scalar typing, and the DSL forms the
//! decoder accepts (each checked on its decoded value).

use expect_test::{Expect, expect};

use crate::dsl::component_def::parse_mapping;
use crate::dsl::decode::plain_value;
use crate::dsl::{parse_module, parse_service, write_service};
use crate::ident::{
    AttrPath, ComponentRef, ModuleId, ModuleVersion, NodeComponentRef, VersionReq, check_name,
};
use crate::module::{ActionKind, AttrType, Command, Flow, NodeSelector, Placement, SubtaskOrder};
use crate::value::Value;

/// Parses `input` with `FromStr` and shows the result (`Debug`) or the error.
fn check<T: std::str::FromStr + std::fmt::Debug>(input: &str, expect: Expect)
where
    T::Err: std::fmt::Display,
{
    let actual = match input.parse::<T>() {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn component_refs() {
    check::<ComponentRef>(
        "web",
        expect![[r#"ComponentRef { module: None, name: "web", instance: None }"#]],
    );
    check::<ComponentRef>(
        "mysql::server",
        expect![[r#"ComponentRef { module: Some("mysql"), name: "server", instance: None }"#]],
    );
    check::<ComponentRef>(
        "network_aws::vpc_subnet[vpc1-default]",
        expect![[
            r#"ComponentRef { module: Some("network_aws"), name: "vpc_subnet", instance: Some("vpc1-default") }"#
        ]],
    );
    check::<ComponentRef>(
        "web[a",
        expect!["error: invalid component reference `web[a`: `[` without a closing `]` at the end"],
    );
    check::<ComponentRef>(
        "web]",
        expect!["error: invalid component reference `web]`: `]` without an opening `[`"],
    );
    check::<ComponentRef>(
        "a::b::c",
        expect![
            "error: invalid component reference `a::b::c`: `:` is not allowed (use letters, digits, `_`, `-`, `.`)"
        ],
    );
    check::<ComponentRef>(
        "web[../x]",
        expect![
            "error: invalid component reference `web[../x]`: it must not start with `.` or `-`"
        ],
    );
    check::<ComponentRef>(
        "",
        expect!["error: invalid component reference ``: it is empty"],
    );
    for r in ["web", "m::c", "m::c[i]", "c[i-1.2]"] {
        assert_eq!(r.parse::<ComponentRef>().unwrap().to_string(), r);
    }
}

#[test]
fn node_component_refs() {
    check::<NodeComponentRef>(
        "web/nginx::server[a]",
        expect![[
            r#"NodeComponentRef { node: Some("web"), component: ComponentRef { module: Some("nginx"), name: "server", instance: Some("a") } }"#
        ]],
    );
    check::<NodeComponentRef>(
        "a/b/c",
        expect![
            "error: invalid component reference `a/b/c`: expected at most one `/` (`node/component`)"
        ],
    );
    check::<NodeComponentRef>(
        "../db",
        expect!["error: invalid component reference `../db`: it must not start with `.` or `-`"],
    );
}

#[test]
fn attr_paths() {
    check::<AttrPath>(
        "workers/cardinality",
        expect![[r#"AttrPath { node: Some("workers"), component: None, attr: "cardinality" }"#]],
    );
    check::<AttrPath>(
        "web/web/port",
        expect![[
            r#"AttrPath { node: Some("web"), component: Some(ComponentRef { module: None, name: "web", instance: None }), attr: "port" }"#
        ]],
    );
    check::<AttrPath>(
        "vpc[vpc1]/region",
        expect![[
            r#"AttrPath { node: None, component: Some(ComponentRef { module: None, name: "vpc", instance: Some("vpc1") }), attr: "region" }"#
        ]],
    );
    check::<AttrPath>(
        "port",
        expect![
            "error: invalid attribute path `port`: expected `node/attr`, `node/component/attr` or `component[inst]/attr`"
        ],
    );
    check::<AttrPath>(
        "../../etc/passwd",
        expect![
            "error: invalid attribute path `../../etc/passwd`: expected `node/attr`, `node/component/attr` or `component[inst]/attr`"
        ],
    );
    check::<AttrPath>(
        "../etc",
        expect!["error: invalid attribute path `../etc`: it must not start with `.` or `-`"],
    );
    check::<AttrPath>(
        "web/a b",
        expect![
            "error: invalid attribute path `web/a b`: ` ` is not allowed (use letters, digits, `_`, `-`, `.`)"
        ],
    );
}

#[test]
fn module_ids_and_versions() {
    check::<ModuleId>(
        "aws/ec2",
        expect![[r#"ModuleId { namespace: "aws", name: "ec2" }"#]],
    );
    check::<ModuleId>(
        "ec2",
        expect!["error: invalid module id `ec2`: expected `namespace/name`"],
    );
    check::<ModuleId>(
        "a/b/c",
        expect!["error: invalid module id `a/b/c`: expected exactly one `/`"],
    );
    check::<ModuleId>(
        "../etc",
        expect!["error: invalid module id `../etc`: it must not start with `.` or `-`"],
    );
    check::<ModuleVersion>(
        "1.2.3",
        expect!["Semver(Version { major: 1, minor: 2, patch: 3 })"],
    );
    check::<ModuleVersion>("master", expect![[r#"Tag("master")"#]]);
    check::<ModuleVersion>(
        "1.0",
        expect![
            "error: invalid module version `1.0`: it starts with a digit but is not a semantic version such as `1.0.0`"
        ],
    );
    check::<ModuleVersion>(
        "..",
        expect!["error: invalid module version `..`: it must not start with `.` or `-`"],
    );
    let mut versions: Vec<ModuleVersion> = ["master", "1.10.0", "1.2.0", "dev", "0.9.5"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    versions.sort();
    let names: Vec<String> = versions.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["0.9.5", "1.2.0", "1.10.0", "dev", "master"]);
}

#[test]
fn version_requirements() {
    let req = |s: &str| s.parse::<VersionReq>().unwrap();
    let v = |s: &str| s.parse::<ModuleVersion>().unwrap();
    // A bare version pins exactly, as in the original dtk.
    assert!(req("1.3.0").matches(&v("1.3.0")));
    assert!(!req("1.3.0").matches(&v("1.3.1")));
    assert!(req("^1.0").matches(&v("1.9.0")));
    assert!(!req("^1.0").matches(&v("2.0.0")));
    assert!(req(">= 1.2, < 2").matches(&v("1.5.0")));
    assert!(req("master").matches(&v("master")));
    assert!(!req("master").matches(&v("1.0.0")));
    assert!(!req("^1.0").matches(&v("master")));
    check::<VersionReq>(
        "^x",
        expect![
            "error: invalid version requirement `^x`: unexpected character 'x' while parsing major version number"
        ],
    );
    check::<VersionReq>(
        "",
        expect!["error: invalid version requirement ``: it is empty"],
    );
    check::<VersionReq>(
        "../x",
        expect!["error: invalid version requirement `../x`: it must not start with `.` or `-`"],
    );
}

#[test]
fn hostile_names_are_refused() {
    for bad in [
        "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-rf", "a b", "a\0b", "a\nb", "é", "a:b",
        "$x", "*", "~",
    ] {
        assert!(check_name("name", bad).is_err(), "{bad:?} was accepted");
    }
    assert!(check_name("name", &"a".repeat(129)).is_err());
    for good in [
        "a",
        "web-1",
        "vpc1-default",
        "ruby-provider",
        "a.b",
        "A_9",
        &"a".repeat(128),
    ] {
        assert!(check_name("name", good).is_ok(), "{good:?} was refused");
    }
}

#[test]
fn plain_scalars_are_typed_as_yaml_core() {
    let cases: &[(&str, Value)] = &[
        ("", Value::Null),
        ("~", Value::Null),
        ("null", Value::Null),
        ("true", Value::Bool(true)),
        ("False", Value::Bool(false)),
        ("yes", Value::Str("yes".into())),
        ("42", Value::Int(42)),
        ("-7", Value::Int(-7)),
        ("+7", Value::Int(7)),
        ("0x1F", Value::Int(31)),
        ("0o17", Value::Int(15)),
        ("007", Value::Int(7)),
        ("1.5", Value::Float(1.5)),
        ("1e3", Value::Float(1000.0)),
        (".5", Value::Float(0.5)),
        ("-.inf", Value::Float(f64::NEG_INFINITY)),
        ("1.0.0", Value::Str("1.0.0".into())),
        ("2.3.3", Value::Str("2.3.3".into())),
        ("8080a", Value::Str("8080a".into())),
        (
            "12345678901234567890",
            Value::Str("12345678901234567890".into()),
        ),
        ("0x", Value::Str("0x".into())),
        ("1e", Value::Str("1e".into())),
        (".", Value::Str(".".into())),
        ("-", Value::Str("-".into())),
    ];
    for (text, want) in cases {
        assert_eq!(&plain_value(text), want, "{text:?}");
    }
    assert!(matches!(plain_value(".nan"), Value::Float(f) if f.is_nan()));
}

#[test]
fn attribute_mappings_both_directions() {
    let ok = |s: &str| {
        let m = parse_mapping(s).unwrap();
        (m.from, m.to, m.flow, m.constant)
    };
    let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        ok("$host -> db_host"),
        (path(&["host"]), "db_host".to_owned(), Flow::In, None)
    );
    // `<-` sends this component's value into the linked one, as in the original dtk.
    assert_eq!(
        ok("db_host <- $host"),
        (path(&["host"]), "db_host".to_owned(), Flow::Out, None)
    );
    assert_eq!(
        ok("$size  ->   size"),
        (path(&["size"]), "size".to_owned(), Flow::In, None)
    );
    assert_eq!(
        ok("$node.host_addresses_ipv4.0 -> ip"),
        (
            path(&["node", "host_addresses_ipv4", "0"]),
            "ip".to_owned(),
            Flow::In,
            None
        )
    );
    assert_eq!(
        ok("$node.host_addresses_ipv4[0] -> ip"),
        (
            path(&["node", "host_addresses_ipv4", "0"]),
            "ip".to_owned(),
            Flow::In,
            None
        )
    );
    for (text, want) in [
        ("mode <- 'fast'", Value::Str("fast".into())),
        ("on <- true", Value::Bool(true)),
        ("port <- 8080", Value::Int(8080)),
        (
            "opts <- {'a': 1}",
            Value::Hash([("a".to_owned(), Value::Int(1))].into()),
        ),
    ] {
        assert_eq!(
            ok(text),
            (
                Vec::new(),
                text.split(' ').next().unwrap().to_owned(),
                Flow::Out,
                Some(want)
            ),
            "{text}"
        );
    }
    for bad in [
        "host -> x",
        "$a -> $b",
        "$a => b",
        "$ -> b",
        "$a..b -> c",
        "x <- y",
        "x <- 'unclosed",
        "x <- ''",
        "$a -> ../b",
        "3 -> x",
    ] {
        assert!(parse_mapping(bad).is_err(), "{bad:?} was accepted");
    }
}

const HEAD: &str = "module: demo/webapp\nversion: 1.0.0\n";

fn module(body: &str) -> crate::module::Module {
    let text = format!("{HEAD}{body}");
    parse_module(&text, "m.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn accepted_action_forms() {
    let m = module(
        r#"
component_defs:
  web:
    attributes:
      version: {type: string, default: 1}
    actions:
      create: {commands: RUN ./start --port 8080}
      delete:
        commands: ["RUN   ./stop", "RUN kill -9 1"]
        attempts: 3
        sleep: 500ms
        timeout: 2m
      vpc: {provider: aws.vpc}
      puppet: {puppet_class: web::install}
      ruby: {type: ruby, entrypoint: bin/x.rb}
      fn:
        function: {type: ruby_function, outputs: {a: b}}
"#,
    );
    let web = &m.components["web"];
    // A plain number given to a string attribute is its text, as in the original dtk.
    assert_eq!(
        web.attributes["version"].default,
        Some(Value::Str("1".into()))
    );
    assert_eq!(web.attributes["version"].ty, AttrType::String);
    let a = &web.actions;
    assert_eq!(
        a["create"].kind,
        ActionKind::Commands(vec![Command::Run("./start --port 8080".into())])
    );
    assert_eq!(
        a["delete"].kind,
        ActionKind::Commands(vec![
            Command::Run("./stop".into()),
            Command::Run("kill -9 1".into())
        ])
    );
    assert_eq!(a["delete"].attempts, 3);
    assert_eq!(a["delete"].sleep, std::time::Duration::from_millis(500));
    assert_eq!(
        a["delete"].timeout,
        Some(std::time::Duration::from_secs(120))
    );
    assert_eq!(
        a["vpc"].kind,
        ActionKind::Provider {
            kind: "aws".into(),
            resource: "vpc".into()
        }
    );
    let kinds: Vec<&str> = ["puppet", "ruby", "fn"]
        .iter()
        .map(|n| match &a[*n].kind {
            ActionKind::Unsupported { kind, .. } => kind.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["puppet_class", "ruby", "ruby_function"]);
}

#[test]
fn a_quoted_true_is_not_a_boolean_default() {
    let err = parse_module(
        &format!("{HEAD}component_defs:\n  web:\n    attributes:\n      flag: {{type: boolean, default: \"true\"}}\n"),
        "m.yaml",
    )
    .unwrap_err();
    expect![[r#"
        m.yaml:6:38: default `"true"` does not match type `boolean` of attribute `flag` (at `component_defs.web.attributes.flag.default`)
          help: expected `true` or `false`"#]]
    .assert_eq(&err.to_string());
}

#[test]
fn accepted_dependency_and_link_forms() {
    let m = module(
        r#"
dependencies:
  aws/ec2: 1.0.0
components:
  db:
    attributes:
      host: {type: string, dynamic: true}
  web:
    dependencies:
    - db
    - cache:
        choices:
        - component: ec2::redis
        - db
        location: local
    - subnet: {choices: [network_aws::vpc_subnet]}
    link_defs:
    - db:
        attribute_mappings: ["$host -> db_host"]
    - network_aws::vpc_subnet:
        dependency_name: subnet
  app:
    dependencies:
      store: webapp::db
"#,
    );
    let web = &m.components["web"];
    let names: Vec<&str> = web.dependencies.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["db", "cache", "subnet"]);
    assert_eq!(web.dependencies[1].placement, Placement::SameNode);
    assert_eq!(web.dependencies[1].choices.len(), 2);
    assert_eq!(web.link_defs[0].attribute_mappings[0].to, "db_host");
    assert_eq!(web.link_defs[1].dependency.as_deref(), Some("subnet"));
    assert_eq!(
        m.components["app"].dependencies[0].choices[0].to_string(),
        "webapp::db"
    );
}

#[test]
fn accepted_assembly_and_workflow_forms() {
    let m = module(
        r#"
dependencies:
  aws/ec2: 1.0.0
component_defs:
  web:
    attributes:
      port: {type: port, default: 8080}
    actions:
      create: {commands: [RUN ./start]}
      smoke_test: {commands: [RUN ./test]}
assemblies:
  main:
    components:
    - node[a]:
        attributes: {image: ubuntu_jammy, size: small}
        components:
        - web:
            attributes: {port: 9090}
    - ec2::node_group[workers]:
        attributes: {cardinality: 3}
        components:
        - web
        - web[second]
    - web[assembly-wide]:
        links:
        - a/web
        - db: workers/web[second]
    workflows:
      create:
        subtask_order: concurrent
        subtasks:
        - name: nodes
          node: assembly_wide
          components:
          - ec2::node_group[workers]
          - node[a]
        - node_group: workers
          ordered_components:
          - web[second]
          - web
        - node: a
          actions: [web.smoke_test, {web.smoke_test: {level: 2}}]
          params: {verbose: true}
          breakpoint: true
      check:
        node: a
        actions: [a/web.smoke_test]
"#,
    );
    let a = &m.assemblies["main"];
    assert_eq!(a.nodes.len(), 2);
    assert_eq!(a.nodes[1].cardinality(), 3);
    assert_eq!(
        a.nodes[1].node_component.as_ref().unwrap().to_string(),
        "ec2::node_group"
    );
    assert_eq!(
        a.nodes[0].components[0].attributes["port"].value,
        Value::Int(9090)
    );
    let links = &a.components[0].links;
    assert_eq!(links[0].target.node.as_deref(), Some("a"));
    assert_eq!(links[0].service, None);
    assert_eq!(links[1].dependency.as_deref(), Some("db"));
    let create = &a.workflows["create"];
    assert_eq!(create.subtask_order, SubtaskOrder::Concurrent);
    assert_eq!(create.subtasks[0].node, None, "assembly_wide is no node");
    assert_eq!(
        create.subtasks[1].node,
        Some(NodeSelector::Group("workers".into()))
    );
    assert!(create.subtasks[1].ordered);
    let steps = &create.subtasks[2].actions;
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].params["verbose"], Value::Bool(true));
    assert_eq!(steps[1].params["level"], Value::Int(2));
    assert!(create.subtasks[2].breakpoint);
    // The short form: a workflow that is one step.
    let check = &a.workflows["check"];
    assert_eq!(check.subtasks.len(), 1);
    assert_eq!(
        check.subtasks[0].actions[0].component.node.as_deref(),
        Some("a")
    );
}

#[test]
fn service_documents_in_both_forms() {
    let text = r#"
dsl_version: 1.0.0
name: app1
staged_from: {module: demo/webapp, version: 1.0.0, assembly: three_tier}
target: local
dependencies: {demo/webapp: 1.0.0, dtk/local: 1.0.0, aws/ec2: master}
components:
- node[db]: {attributes: {image: ubuntu_jammy}, components: [db]}
- node_group[workers]: {attributes: {cardinality: 3}, components: [worker]}
- ec2::node[edge]:
    attributes: {size: small}
    links:
    - context_iam/ec2::profile[aws-target]
    - db/db
- vpc[vpc1]: {attributes: {cidr: 10.0.0.0/16, count: "1"}}
actions:
  create:
    subtasks:
    - {node: db, components: [db]}
"#;
    let doc = parse_service(text, "dtk.service.yaml").unwrap();
    assert_eq!(doc.nodes.len(), 3);
    assert_eq!(
        doc.nodes[2].node_component.as_ref().unwrap().to_string(),
        "ec2::node"
    );
    let links = &doc.nodes[2].links;
    assert_eq!(links[0].service.as_deref(), Some("context_iam"));
    assert_eq!(links[0].target.node, None);
    assert_eq!(links[1].target.node.as_deref(), Some("db"));
    assert_eq!(links[1].service, None);
    assert_eq!(
        doc.components[0].attributes["count"].value,
        Value::Str("1".into())
    );
    assert_eq!(doc.target.as_deref(), Some("local"));
    expect![[r#"
        dsl_version: 1.0.0
        name: app1
        staged_from:
          module: demo/webapp
          version: 1.0.0
          assembly: three_tier
        target: local
        dependencies:
          aws/ec2: master
          demo/webapp: 1.0.0
          dtk/local: 1.0.0
        components:
        - node[db]:
            attributes:
              image: ubuntu_jammy
            components:
            - db
        - node_group[workers]:
            attributes:
              cardinality: 3
            components:
            - worker
        - ec2::node[edge]:
            attributes:
              size: small
            links:
            - context_iam/ec2::profile[aws-target]
            - db/db
        - vpc[vpc1]:
            attributes:
              cidr: 10.0.0.0/16
              count: "1"
        actions:
          create:
            subtasks:
            - node: db
              components:
              - db
    "#]]
    .assert_eq(&write_service(&doc));
}

#[test]
fn every_error_of_a_file_is_reported_in_source_order() {
    let err = parse_module(
        "module: demo/webapp\nversion: 1.0\ncomponent_defs:\n  web:\n    atributes: {}\n    actions:\n      create: {comands: x}\n",
        "m.yaml",
    )
    .unwrap_err();
    expect![[r#"
        m.yaml:2:10: invalid version `1.0`: it starts with a digit but is not a semantic version such as `1.0.0` (at `version`)
          help: write a semantic version such as `1.0.0`, or a tag such as `master`
        m.yaml:5:5: unknown key `atributes` in a component definition (at `component_defs.web.atributes`)
          help: did you mean `attributes`?
        m.yaml:7:16: unknown key `comands` in an action (at `component_defs.web.actions.create.comands`)
          help: did you mean `commands`?
        3 errors"#]]
    .assert_eq(&err.to_string());
}

#[test]
fn windows_line_endings_and_a_byte_order_mark_are_read() {
    let text = "\u{feff}module: demo/webapp\r\nversion: 1.0.0\r\ncomponent_defs:\r\n  web:\r\n    actions:\r\n      create: {commands: [RUN ./start]}\r\n";
    let m = parse_module(text, "m.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        m.components["web"].actions["create"].kind,
        ActionKind::Commands(vec![Command::Run("./start".into())])
    );
}

#[test]
fn locations_carry_byte_offsets_into_the_file() {
    // Non-ASCII text and a byte order mark before the problem: the offset is in bytes, as
    // renderers that cut the file at it expect.
    for prefix in ["", "\u{feff}"] {
        let text = format!(
            "{prefix}module: demo/x\nversion: 1.0.0\ndescription: \"ééé\"\ncomponent_defs:\n  web:\n    attributes:\n      port: {{type: integr}}\n"
        );
        let e = parse_module(&text, "m.yaml").unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!((d.location.line, d.location.col), (7, 20));
        assert_eq!(&text[d.location.offset..d.location.offset + 6], "integr");
    }
}

/// What a provider reads is plain data: the JSON a provider in another process would send,
/// and back.
#[test]
fn observed_is_plain_serde_data() {
    use crate::provider::{Change, Observed};
    let mut outputs = crate::value::Attributes::new();
    outputs.insert("state".to_owned(), Value::Str("stopped".to_owned()));
    let drifted = Observed::Drifted {
        outputs,
        changes: vec![Change::new(
            "state",
            Value::Str("running".to_owned()),
            Value::Str("stopped".to_owned()),
        )],
    };
    let text = serde_json::to_string(&drifted).expect("serializes");
    expect![[r#"{"drifted":{"outputs":{"state":"stopped"},"changes":[{"attribute":"state","expected":"running","observed":"stopped"}]}}"#]]
        .assert_eq(&text);
    let back: Observed = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, drifted);
    for (o, json) in [
        (Observed::Missing, r#""missing""#),
        (Observed::Unknown, r#""unknown""#),
    ] {
        assert_eq!(serde_json::to_string(&o).expect("serializes"), json);
        assert_eq!(serde_json::from_str::<Observed>(json).expect("parses"), o);
    }
    assert_eq!(drifted.outputs().map(|o| o.len()), Some(1));
    assert_eq!(drifted_text(&drifted), "state: stopped (expected running)");
}

fn drifted_text(o: &crate::provider::Observed) -> String {
    match o {
        crate::provider::Observed::Drifted { changes, .. } => changes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

#[test]
fn duplicate_keys_are_found_in_small_and_large_mappings() {
    // A mapping is scanned while small and indexed once large: both find the first line.
    let mut big = String::from("top:\n");
    for i in 0..40 {
        big.push_str(&format!("  k{i}: {i}\n"));
    }
    big.push_str("  k3: again\n  k30: again\nsmall:\n  a: 1\n  b: 2\n  a: 3\n");
    let mut diags = crate::diag::Diagnostics::new("big.yaml");
    let doc = crate::yaml::load(&big, &mut diags).expect("a document");
    let err = diags.finish(()).expect_err("duplicates are errors");
    let text: Vec<String> = err
        .diagnostics
        .iter()
        .map(|d| d.to_string().lines().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        text,
        [
            "big.yaml:42:3: duplicate key `k3` (first defined at line 5) (at `top.k3`)",
            "big.yaml:43:3: duplicate key `k30` (first defined at line 32) (at `top.k30`)",
            "big.yaml:47:3: duplicate key `a` (first defined at line 45) (at `small.a`)",
        ]
    );
    assert!(doc.get("top").is_some());
}

#[test]
fn skipped_values_are_left_out_yet_read_through() {
    use crate::yaml::{YamlNode, load, load_skipping};
    let keys = |n: &YamlNode| -> Vec<String> {
        n.as_map()
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, _)| k.scalar().map(str::to_owned))
            .collect()
    };
    let text = "a:\n  x:\n    big: [1, 2, {c: 3}]\n    keep: 1\n  y:\n    big: 4\nb: 5\n";
    let skip: &[&[&str]] = &[&["a", "*", "big"]];
    let mut diags = crate::diag::Diagnostics::new("t.yaml");
    let doc = load_skipping(text, &mut diags, skip).expect("a document");
    assert!(!diags.has_errors());
    let a = doc.get("a").expect("a");
    assert_eq!(keys(a.get("x").expect("x")), ["keep"]);
    assert_eq!(keys(a.get("y").expect("y")), Vec::<String>::new());
    assert_eq!(doc.get("b").and_then(YamlNode::scalar), Some("5"));
    // A syntax error inside a skipped value is still one, where it is.
    let mut diags = crate::diag::Diagnostics::new("t.yaml");
    assert!(load_skipping("a:\n  x:\n    big: [1, 2\nb: 5\n", &mut diags, skip).is_none());
    let err = diags.finish(()).expect_err("an error");
    assert!(err.to_string().contains("YAML syntax error"), "{err}");
    // An anchor defined in a skipped value and used outside it: the document is loaded
    // whole, with no diagnostic of the first attempt.
    let text = "a:\n  x:\n    big: &shared {c: 3}\nb: *shared\n";
    let mut diags = crate::diag::Diagnostics::new("t.yaml");
    let doc = load_skipping(text, &mut diags, skip).expect("a document");
    assert!(!diags.has_errors());
    let mut whole_diags = crate::diag::Diagnostics::new("t.yaml");
    assert_eq!(Some(doc), load(text, &mut whole_diags));
}

#[test]
fn a_module_parsed_for_its_definitions_skips_assembly_bodies() {
    // The assembly places a component the module does not define: an error when the
    // module is read whole (for staging), unread when only its definitions are wanted.
    let text = "\
dsl_version: 1.0.0
module: demo/defs
version: 1.0.0
component_defs:
  app:
    attributes:
      port: {type: integer, default: 80}
assemblies:
  site:
    description: a site
    node_component: app
    components:
    - missing
    actions:
      create:
        subtask_order: sequential
        subtasks:
        - name: nothing
          components: [missing]
";
    let whole = parse_module(text, "m.yaml").expect_err("an unknown component");
    assert!(whole.to_string().contains("missing"), "{whole}");
    let defs = crate::dsl::parse_module_defs(text, "m.yaml").expect("definitions only");
    assert!(defs.components.contains_key("app"));
    let site = defs.assemblies.get("site").expect("the assembly's header");
    assert_eq!(site.description.as_deref(), Some("a site"));
    assert_eq!(
        site.node_component
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("app")
    );
    assert!(site.components.is_empty() && site.nodes.is_empty() && site.workflows.is_empty());
}

#[test]
fn attributes_behave_as_a_sorted_map() {
    use crate::value::{Attributes, Value};
    let a: Attributes = [
        ("b".to_owned(), Value::Int(1)),
        ("a".to_owned(), Value::Int(2)),
        ("b".to_owned(), Value::Int(3)),
    ]
    .into();
    // Sorted by name; of a name given twice, the last value, as a map's insert keeps.
    assert_eq!(format!("{a:?}"), r#"{"a": Int(2), "b": Int(3)}"#);
    assert_eq!(a["b"], Value::Int(3));
    assert_eq!(
        serde_json::to_string(&a).expect("serializes"),
        r#"{"a":2,"b":3}"#
    );
    let back: Attributes = serde_json::from_str(r#"{"b":3,"a":2}"#).expect("parses");
    assert_eq!(back, a);
    let mut grown = Attributes::new();
    grown.extend([
        ("z".to_owned(), Value::Null),
        ("a".to_owned(), Value::Int(2)),
    ]);
    grown.insert("b".to_owned(), Value::Int(3));
    grown.remove("z");
    assert_eq!(grown, a);
    assert_eq!(a.to_map().keys().collect::<Vec<_>>(), ["a", "b"]);
}
