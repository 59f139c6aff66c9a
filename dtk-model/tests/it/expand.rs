//! What expansion makes of the original dtk's forms: `$node.…` mappings, `location`,
//! `dependency_name`, `<-` mappings, and the rules service documents follow (node
//! attributes their node component declares, `constant`, `singleton`), each in a small
//! service on a target whose node component is like the local target's.

use dtk_model::dsl::{parse_module, parse_service};
use dtk_model::edit::{check_add_component, check_set_attribute};
use dtk_model::expand::{ModuleSet, NodeRealizer, TargetBinding, expand};
use dtk_model::ident::ComponentRef;
use dtk_model::instance::{ComponentId, LinkSource, ServiceModel};
use dtk_model::value::Value;
use expect_test::{Expect, expect};

/// A target module whose node component has the local target's outputs.
const TARGET: &str = r#"
module: t/nodes
version: 1.0.0
component_defs:
  node:
    attributes:
      image: {type: string}
      size: {type: string}
      flavor: {type: string, default: plain, constant: true}
      host: {type: string, dynamic: true}
      state: {type: string, dynamic: true}
    actions:
      create: {provider: local.node}
"#;

fn modules(app: &str) -> ModuleSet {
    let mut set = ModuleSet::new();
    set.insert(parse_module(TARGET, "target.yaml").unwrap_or_else(|e| panic!("{e}")));
    set.insert(parse_module(app, "app.yaml").unwrap_or_else(|e| panic!("{e}")));
    set
}

fn binding() -> TargetBinding {
    TargetBinding {
        service: "tgt".to_owned(),
        node_component: Some(NodeRealizer {
            module: "t/nodes".parse().unwrap(),
            reference: "nodes::node".parse().unwrap(),
        }),
        components: Vec::new(),
    }
}

/// Expands the service document `doc` (its `dependencies` pin the app module `a/app` and
/// the target module) against `app`.
fn model(app: &str, doc: &str) -> Result<ServiceModel, String> {
    let text = format!(
        "name: svc\nstaged_from: {{module: a/app, version: 1.0.0, assembly: x}}\ntarget: tgt\ndependencies:\n  a/app: 1.0.0\n  t/nodes: 1.0.0\n{doc}"
    );
    let doc = parse_service(&text, "dtk.service.yaml").map_err(|e| e.to_string())?;
    expand(&doc, &modules(app), Some(&binding()), "dtk.service.yaml").map_err(|e| e.to_string())
}

fn refused(app: &str, doc: &str, want: Expect) {
    match model(app, doc) {
        Ok(_) => panic!("accepted"),
        Err(e) => want.assert_eq(&e),
    }
}

/// Every link of `id`: producer and mappings, one per line.
fn links(m: &ServiceModel, id: &str) -> String {
    let c = m
        .component(&ComponentId(id.to_owned()))
        .unwrap_or_else(|| panic!("no {id}"));
    c.links
        .iter()
        .map(|l| {
            let from = match &l.from {
                LinkSource::Component(c) => c.to_string(),
                LinkSource::External {
                    service, component, ..
                } => format!("{service}/{component}"),
            };
            let maps: Vec<String> = l
                .mappings
                .iter()
                .map(|(p, to)| format!("{} -> {to}", p.join(".")))
                .collect();
            format!("{from}: {}\n", maps.join(", "))
        })
        .collect()
}

fn depends_on(m: &ServiceModel, id: &str) -> Vec<String> {
    m.component(&ComponentId(id.to_owned()))
        .unwrap()
        .depends_on
        .iter()
        .map(|d| d.on.to_string())
        .collect()
}

const APP: &str = r#"
module: a/app
version: 1.0.0
component_defs:
  sink:
    attributes:
      port: {type: port, default: 9000}
      socket: {type: string, default: /run/sink}
  source:
    attributes:
      upstream: {type: string}
      addr: {type: string}
      private: {type: string}
      endpoint: {type: string}
    dependencies:
      app::sink:
        location: remote
    link_defs:
      app::sink:
      - location: remote
        attribute_mappings:
        - $node.host_address -> upstream
        - $node.host_addresses_ipv4[0] -> addr
        - $node.private_ip -> private
        - $port -> endpoint
      - location: local
        attribute_mappings:
        - $socket -> endpoint
"#;

#[test]
fn node_mappings_read_the_producers_node_and_remote_dependencies_skip_the_own_node() {
    // A sink on the source's own node and one on another: `location: remote` takes the
    // other, and only the remote link definition applies.
    let m = model(
        APP,
        "components:\n- node[a]:\n    components: [sink, source]\n- node[b]:\n    components: [sink]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    expect![[r#"
        node[b]: host -> upstream, host -> addr, host -> private
        b/sink: port -> endpoint
    "#]]
    .assert_eq(&links(&m, "a/source"));
    assert!(depends_on(&m, "a/source").contains(&"b/sink".to_owned()));
    assert!(depends_on(&m, "a/source").contains(&"node[b]".to_owned()));
}

#[test]
fn a_remote_dependency_with_only_a_local_candidate_is_refused() {
    refused(
        APP,
        "components:\n- node[a]:\n    components: [sink, source]\n",
        expect![
            "dtk.service.yaml:9:24: `a/source` depends on `app::sink`: no component of the service on another node or its target matches `a/app::sink` (at `components.0.components.1`)"
        ],
    );
}

#[test]
fn a_node_mapping_on_a_node_component_without_the_output_is_refused() {
    let app = APP.replace(
        "$node.private_ip -> private",
        "$node.instance_id -> private",
    );
    refused(
        &app,
        "components:\n- node[a]:\n    components: [source]\n- node[b]:\n    components: [sink]\n",
        expect![
            "dtk.service.yaml:9:18: `a/source`: `$node.instance_id -> private` (link to `b/sink`): `$node.instance_id`: the node component `node` has no attribute `instance_id` (at `components.0.components.0`)"
        ],
    );
}

const NAMED: &str = r#"
module: a/app
version: 1.0.0
component_defs:
  db:
    attributes:
      host: {type: string, default: h}
  app:
    attributes:
      primary_host: {type: string}
      replica_host: {type: string}
    dependencies:
    - primary: {choices: [db]}
    - replica: {choices: [db]}
    link_defs:
    - db:
        dependency_name: primary
        attribute_mappings: ["$host -> primary_host"]
    - db:
        dependency_name: replica
        attribute_mappings: ["$host -> replica_host"]
"#;

#[test]
fn dependency_name_applies_a_link_definition_to_its_dependency_only() {
    let m = model(
        NAMED,
        "components:\n- node[n1]:\n    components: [db]\n- node[n2]:\n    components: [db]\n- node[a]:\n    components:\n    - app:\n        links: [primary: n1/db, replica: n2/db]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    expect![[r#"
        n1/db: host -> primary_host
        n2/db: host -> replica_host
    "#]]
    .assert_eq(&links(&m, "a/app"));
}

const PUSH: &str = r#"
module: a/app
version: 1.0.0
component_defs:
  server:
    attributes:
      client_name: {type: string}
      mode: {type: string}
      workers: {type: integer}
      out: {type: string, dynamic: true}
  client:
    attributes:
      name: {type: string, default: web}
      result: {type: string, dynamic: true}
    dependencies: [server]
    link_defs:
      server:
        attribute_mappings:
        - client_name <- $name
        - mode <- 'fast'
        - workers <- 4
"#;

#[test]
fn reverse_mappings_set_the_linked_components_inputs() {
    let m = model(
        PUSH,
        "components:\n- node[s]:\n    components: [server]\n- node[c]:\n    components:\n    - client:\n        attributes: {name: api}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let server = m.component(&ComponentId("s/server".into())).unwrap();
    assert_eq!(server.inputs["client_name"], Value::Str("api".into()));
    assert_eq!(server.inputs["mode"], Value::Str("fast".into()));
    assert_eq!(server.inputs["workers"], Value::Int(4));
    // The server still runs first.
    assert!(depends_on(&m, "c/client").contains(&"s/server".to_owned()));
}

#[test]
fn reverse_mappings_of_outputs_and_conflicting_values_are_refused() {
    let app = PUSH.replace("client_name <- $name", "client_name <- $result");
    refused(
        &app,
        "components:\n- node[s]:\n    components: [server]\n- node[c]:\n    components: [client]\n",
        expect![
            "dtk.service.yaml:11:18: `c/client`: `client_name <- $result`: `result` of `c/client` is known only once it has run, after the component it would be sent to (which runs first): send it with `->` from the other side instead (at `components.1.components.0`)"
        ],
    );
    refused(
        PUSH,
        "components:\n- node[s]:\n    components: [server]\n- node[c]:\n    components:\n    - client:\n        links: [s/server]\n    - client[two]:\n        attributes: {name: other}\n        links: [s/server]\n",
        expect![
            "dtk.service.yaml:14:7: `c/client[two]`: `client_name <- $name`: `client_name` of `s/server` is also sent `web` by `c/client` (at `components.1.components.1`)"
        ],
    );
}

#[test]
fn node_attributes_are_checked_against_the_node_component() {
    refused(
        APP,
        "components:\n- node[a]:\n    attributes: {imgae: ubuntu, size: small}\n    components: [sink]\n",
        expect![[r#"
            dtk.service.yaml:9:25: node `a` sets `imgae`, which its node component `nodes::node` (t/nodes) does not declare (at `components.0.attributes.imgae`)
              help: did you mean `image`?"#]],
    );
    refused(
        APP,
        "components:\n- node[a]:\n    attributes: {flavor: fancy}\n    components: [sink]\n",
        expect![[r#"
            dtk.service.yaml:9:26: `flavor` of node `a` is constant (`constant: true`): its node component `nodes::node` fixes it (at `components.0.attributes.flavor`)
              help: remove the value"#]],
    );
}

const FIXED: &str = r#"
module: a/app
version: 1.0.0
component_defs:
  agent:
    singleton: true
    attributes:
      protocol: {type: string, default: v2, constant: true}
      level: {type: integer}
"#;

#[test]
fn constants_and_singletons_hold_in_service_documents() {
    refused(
        FIXED,
        "components:\n- node[a]:\n    components:\n    - agent:\n        attributes: {protocol: v3}\n",
        expect![[r#"
            dtk.service.yaml:11:32: attribute `protocol` of `agent` is constant (`constant: true`) and cannot be set (at `components.0.components.0.attributes.protocol`)
              help: remove the value: the module fixes it"#]],
    );
    refused(
        FIXED,
        "components:\n- node[a]:\n    components: [agent, 'agent[second]']\n",
        expect![[r#"
            dtk.service.yaml:9:25: component `agent` is a singleton (`singleton: true`) and node `a` already has `a/agent` (at `components.0.components.1`)
              help: place it once per node"#]],
    );
    // One per node is fine, on every member of a group too.
    model(
        FIXED,
        "components:\n- node[a]:\n    components: [agent]\n- node_group[g]:\n    attributes: {cardinality: 2}\n    components: [agent]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn edits_follow_the_same_rules() {
    let m = model(
        FIXED,
        "components:\n- node[a]:\n    components: [agent]\n- node[b]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let agent = m.component(&ComponentId("a/agent".into())).unwrap();
    let e = check_set_attribute(
        "a/agent/protocol",
        &agent.def.attributes["protocol"],
        &Value::Str("v3".into()),
    )
    .unwrap_err();
    expect![[r#"`a/agent/protocol` is a constant attribute (`constant: true`): its module fixes the value, so it cannot be set"#]]
        .assert_eq(&e.to_string());
    let e = check_set_attribute(
        "a/agent/level",
        &agent.def.attributes["level"],
        &Value::Str("high".into()),
    )
    .unwrap_err();
    expect!["`a/agent/level` must be of type integer, not string (`high`)"]
        .assert_eq(&e.to_string());
    check_set_attribute(
        "a/agent/level",
        &agent.def.attributes["level"],
        &Value::Int(3),
    )
    .unwrap();
    let e = check_add_component(&m, Some("a"), &agent.module, &agent.def).unwrap_err();
    expect![[
        r#"component `agent` is a singleton (`singleton: true`) and node `a` already has `a/agent`"#
    ]]
    .assert_eq(&e.to_string());
    check_add_component(&m, Some("b"), &agent.module, &agent.def).unwrap();
    let r: ComponentRef = "agent".parse().unwrap();
    let (module, def) =
        dtk_model::expand::resolve_component(&modules(FIXED), Some(&agent.module), &r).unwrap();
    assert_eq!(
        (module.to_string(), def.name.as_str()),
        ("a/app".to_owned(), "agent")
    );
}

#[test]
fn an_external_ref_is_refused_at_staging_like_a_puppet_action() {
    let app = "module: a/app\nversion: 1.0.0\ncomponent_defs:\n  wget:\n    external_ref: {puppet_class: wget}\n";
    refused(
        app,
        "components:\n- node[a]:\n    components: [wget]\n",
        expect![[r#"
            dtk.service.yaml:5:19: component `wget` (module a/app) has a `puppet_class` action `create`, which dtk-rs does not run (at `components.0.components.0`)
              help: rewrite the action as `commands: [RUN ...]` or `provider: KIND.RESOURCE` in the instance copy of the module"#]],
    );
}

#[test]
fn a_workflow_step_on_a_node_the_service_no_longer_has_is_refused() {
    // The document parses (the original's did), the service does not expand.
    refused(
        APP,
        "components:\n- node[a]:\n    components: [sink]\nactions:\n  create:\n    subtasks:\n    - {name: gone, node: b, components: [sink]}\n    - {name: typo, node_group: aa, components: [sink]}\n",
        expect![[r#"
            dtk.service.yaml:13:7: workflow step runs on node `b`, which the service does not have (at `actions.create.subtasks[0].node`)
              help: the nodes are `a`; remove the step of a node you removed
            dtk.service.yaml:14:7: workflow step runs on node `aa`, which the service does not have (at `actions.create.subtasks[1].node`)
              help: did you mean `a`?
            2 errors"#]],
    );
}

/// A document built in memory (not parsed, so the parser's own check has not run) that
/// declares one component twice is refused by the expansion, at the second declaration.
#[test]
fn a_component_declared_twice_is_refused_by_the_expansion() {
    let app = "module: a/app\nversion: 1.0.0\ncomponent_defs:\n  web: {attributes: {port: {type: integer}}}\nassemblies:\n  x:\n    components: [web]\n";
    let text = "name: svc\nstaged_from: {module: a/app, version: 1.0.0, assembly: x}\ntarget: tgt\ndependencies:\n  a/app: 1.0.0\n  t/nodes: 1.0.0\ncomponents:\n- node[n1]:\n    components:\n    - web\n";
    let mut doc = parse_service(text, "dtk.service.yaml").unwrap_or_else(|e| panic!("{e}"));
    let ok = expand(&doc, &modules(app), Some(&binding()), "dtk.service.yaml");
    assert!(ok.is_ok(), "{:?}", ok.err());
    let again = doc.nodes[0].components[0].clone();
    doc.nodes[0].components.push(again);
    let err = expand(&doc, &modules(app), Some(&binding()), "dtk.service.yaml")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("component `n1/web` is declared twice"),
        "{err}"
    );
}
