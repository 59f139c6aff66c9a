//! Unit tests of the provider's pure parts: the bundled modules (parsed and expanded with
//! dtk-model, as staging does), node names, the credential store, input errors. The
//! resources against EC2 are tested on moto in `tests/it/provider.rs`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use dtk_model::expand::{ExternalComponent, ModuleSet, NodeRealizer, TargetBinding, expand};
use dtk_model::instance::{LinkSource, ServiceModel};
use dtk_model::module::{ActionKind, Module};
use dtk_model::provider::{Cancel, ResourceRequest, Secrets};
use dtk_model::service::{ServiceDoc, StagedFrom};
use dtk_model::{Attributes, ComponentRef, Provider, ProviderError, Value};

use super::instance::NodeRef;
use super::*;
use crate::modules::{AWS_EC2_MODULE, AWS_NETWORK_MODULE, BUNDLED_MODULES};

fn network() -> Module {
    dtk_model::dsl::parse_module(AWS_NETWORK_MODULE, "modules/aws/network/dtk.module.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ec2_module() -> Module {
    dtk_model::dsl::parse_module(AWS_EC2_MODULE, "modules/aws/ec2/dtk.module.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn provider_of(m: &Module, component: &str) -> (String, String) {
    let def = m.component(component).unwrap();
    match &def.actions["create"].kind {
        ActionKind::Provider { kind, resource } => (kind.clone(), resource.clone()),
        other => panic!("{component}: {other:?}"),
    }
}

#[test]
fn bundled_modules_parse() {
    for (id, text) in BUNDLED_MODULES {
        let m = dtk_model::dsl::parse_module(text, id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(m.id.to_string(), *id);
        // The canonical form reads back the same (locations aside).
        let again = dtk_model::dsl::write_module(&m);
        let m2 = dtk_model::dsl::parse_module(&again, id)
            .unwrap_or_else(|e| panic!("{id} rewritten: {e}\n{again}"));
        assert_eq!(dtk_model::dsl::write_module(&m2), again, "{id}");
        for def in m.components.values() {
            for action in ["create", "delete"] {
                let a = def
                    .actions
                    .get(action)
                    .unwrap_or_else(|| panic!("{id}: {} has no {action}", def.name));
                let ActionKind::Provider { kind, resource } = &a.kind else {
                    panic!("{id}: {}.{action} is not a provider action", def.name)
                };
                assert_eq!(kind, KIND);
                assert!(RESOURCES.contains(&resource.as_str()), "{resource}");
            }
        }
    }
}

#[test]
fn aws_network_names() {
    let m = network();
    assert_eq!(
        m.components.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "credentials",
            "images",
            "security_group",
            "vpc",
            "vpc_subnet"
        ]
    );
    for (component, resource) in [
        ("credentials", "credentials"),
        ("vpc", "vpc"),
        ("vpc_subnet", "vpc_subnet"),
        ("security_group", "security_group"),
        ("images", "images"),
    ] {
        assert_eq!(
            provider_of(&m, component),
            ("aws".to_owned(), resource.to_owned())
        );
    }
    let creds = m.component("credentials").unwrap();
    for key in ["aws_access_key_id", "aws_secret_access_key"] {
        assert!(
            creds.attributes[key].secret && creds.attributes[key].required,
            "{key}"
        );
    }
    assert!(creds.attributes["credentials_handle"].dynamic);
    let vpc = m.component("vpc").unwrap();
    assert_eq!(
        vpc.attributes["region"].default,
        Some(Value::from("us-east-1"))
    );
    assert_eq!(
        vpc.attributes["cidr_block"].default,
        Some(Value::from("10.0.0.0/16"))
    );
    for a in ["vpc_id", "default_keypair"] {
        assert!(vpc.attributes.contains_key(a), "{a}");
    }
    let subnet = m.component("vpc_subnet").unwrap();
    for a in [
        "subnet_id",
        "subnet_cidr_block",
        "subnet_length",
        "gateway",
        "enable_public_ip_in_subnet",
        "availability_zone",
    ] {
        assert!(subnet.attributes.contains_key(a), "{a}");
    }
    let group = m.component("security_group").unwrap();
    for a in ["group_id", "group_name", "constant_rules"] {
        assert!(group.attributes.contains_key(a), "{a}");
    }
    for name in ["target", "target_iam"] {
        let a = &m.assemblies[name];
        assert_eq!(
            a.node_component
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("ec2::node"),
            "{name}"
        );
        let comps: Vec<String> = a
            .components
            .iter()
            .map(|c| c.reference.to_string())
            .collect();
        let mut want = vec![
            "vpc[vpc1]",
            "vpc_subnet[vpc1-default]",
            "security_group[vpc1-default]",
            "images",
        ];
        if name == "target" {
            want.insert(0, "credentials");
        }
        assert_eq!(comps, want, "{name}");
        assert!(a.nodes.is_empty());
    }
    assert_eq!(
        m.dependencies
            .iter()
            .map(|d| d.module.to_string())
            .collect::<Vec<_>>(),
        vec!["aws/ec2"]
    );
}

#[test]
fn aws_ec2_names() {
    let m = ec2_module();
    assert_eq!(
        provider_of(&m, "node"),
        ("aws".to_owned(), "ec2_instance".to_owned())
    );
    let node = m.component("node").unwrap();
    for a in [
        "image",
        "size",
        "cardinality",
        "tags",
        "subnet_id",
        "group_id",
        "images",
        "region",
        "credentials_handle",
        "key_name",
    ] {
        assert!(node.attributes.contains_key(a), "input {a}");
    }
    for a in [
        "instance_id",
        "private_ip_address",
        "public_ip_address",
        "state",
        "ssh_host",
        "ssh_user",
        "ssh_key_path",
        "ssh_host_key_policy",
        "ssh_known_hosts_path",
    ] {
        assert!(node.attributes[a].dynamic, "output {a}");
    }
    let deps: Vec<String> = node
        .dependencies
        .iter()
        .map(|d| d.choices[0].to_string())
        .collect();
    assert_eq!(
        deps,
        vec![
            "network::vpc",
            "network::vpc_subnet",
            "network::security_group",
            "network::images"
        ]
    );
    assert_eq!(
        m.dependencies
            .iter()
            .map(|d| d.module.to_string())
            .collect::<Vec<_>>(),
        vec!["aws/network"]
    );
}

fn modules() -> ModuleSet {
    let mut set = ModuleSet::new();
    set.insert(network());
    set.insert(ec2_module());
    set
}

fn target_doc(assembly: &str) -> ServiceDoc {
    let m = network();
    let a = &m.assemblies[assembly];
    ServiceDoc {
        dsl_version: "1.0.0".to_owned(),
        name: "aws1".to_owned(),
        staged_from: Some(StagedFrom {
            module: m.id.clone(),
            version: m.version.clone(),
            assembly: assembly.to_owned(),
        }),
        target: None,
        is_target: true,
        dependencies: BTreeMap::new(),
        nodes: a.nodes.clone(),
        components: a.components.clone(),
        workflows: a.workflows.clone(),
        at: Default::default(),
    }
}

fn links_into(model: &ServiceModel, id: &str) -> Vec<(String, String, String)> {
    let c = model
        .components
        .iter()
        .find(|c| c.id.as_str() == id)
        .unwrap_or_else(|| panic!("no {id}"));
    let mut out = Vec::new();
    for l in &c.links {
        let from = match &l.from {
            LinkSource::Component(p) => p.to_string(),
            LinkSource::External {
                service, component, ..
            } => format!("{service}/{component}"),
        };
        for (path, to) in &l.mappings {
            out.push((from.clone(), path.join("."), to.clone()));
        }
    }
    out.sort();
    out
}

fn depends(model: &ServiceModel, id: &str) -> Vec<String> {
    let c = model
        .components
        .iter()
        .find(|c| c.id.as_str() == id)
        .unwrap();
    let mut v: Vec<String> = c.depends_on.iter().map(|d| d.on.to_string()).collect();
    v.sort();
    v
}

#[test]
fn target_assemblies_expand_with_their_links() {
    let set = modules();
    let model = expand(&target_doc("target"), &set, None, "dtk.service.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = model.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "credentials",
            "vpc[vpc1]",
            "vpc_subnet[vpc1-default]",
            "security_group[vpc1-default]",
            "images"
        ]
    );
    assert_eq!(depends(&model, "vpc[vpc1]"), vec!["credentials"]);
    assert_eq!(
        links_into(&model, "vpc[vpc1]"),
        vec![(
            "credentials".to_owned(),
            "credentials_handle".to_owned(),
            "credentials_handle".to_owned()
        )]
    );
    for id in ["vpc_subnet[vpc1-default]", "security_group[vpc1-default]"] {
        assert_eq!(depends(&model, id), vec!["vpc[vpc1]"], "{id}");
        let l = links_into(&model, id);
        assert!(
            l.contains(&("vpc[vpc1]".into(), "vpc_id".into(), "vpc_id".into())),
            "{id}: {l:?}"
        );
    }
    assert_eq!(
        model
            .component(&dtk_model::ComponentId("credentials".into()))
            .unwrap()
            .secret_inputs,
        vec![
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token"
        ]
    );
    // The subnet of `target` routes to the internet.
    let subnet = model
        .component(&dtk_model::ComponentId("vpc_subnet[vpc1-default]".into()))
        .unwrap();
    assert_eq!(subnet.inputs.get("gateway"), Some(&Value::from("internet")));

    // `target_iam` has no credentials component, and nothing links to one.
    let iam = expand(&target_doc("target_iam"), &set, None, "dtk.service.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        iam.components
            .iter()
            .all(|c| c.id.as_str() != "credentials")
    );
    assert!(depends(&iam, "vpc[vpc1]").is_empty());
    assert!(links_into(&iam, "vpc[vpc1]").is_empty());
}

/// An app staged on an aws target: its nodes become `ec2::node` components linked to the
/// target's network and image components, one per node group member.
#[test]
fn an_app_on_an_aws_target_links_its_nodes_to_the_target() {
    let app = dtk_model::dsl::parse_module(
        r#"
dsl_version: 1.0.0
module: demo/app
version: 1.0.0
component_defs:
  web:
    actions:
      create:
        commands: [RUN true]
assemblies:
  two:
    components:
    - node[web]:
        attributes: {image: ubuntu_jammy, size: small}
        components: [web]
    - node_group[workers]:
        attributes: {image: ami-0123, size: t3.micro, cardinality: 2}
"#,
        "app",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut set = modules();
    let target_model = expand(&target_doc("target"), &set, None, "t").unwrap();
    let binding = TargetBinding {
        service: "aws1".to_owned(),
        node_component: Some(NodeRealizer {
            module: ec2_module().id,
            reference: "ec2::node".parse::<ComponentRef>().unwrap(),
        }),
        components: target_model
            .components
            .iter()
            .map(|c| ExternalComponent {
                service: "aws1".to_owned(),
                id: c.id.clone(),
                module: c.module.clone(),
                def_name: c.def.name.clone(),
                values: c.inputs.clone(),
            })
            .collect(),
    };
    let a = &app.assemblies["two"];
    let doc = ServiceDoc {
        dsl_version: "1.0.0".to_owned(),
        name: "app1".to_owned(),
        staged_from: Some(StagedFrom {
            module: app.id.clone(),
            version: app.version.clone(),
            assembly: "two".to_owned(),
        }),
        target: Some("aws1".to_owned()),
        is_target: false,
        dependencies: BTreeMap::new(),
        nodes: a.nodes.clone(),
        components: a.components.clone(),
        workflows: a.workflows.clone(),
        at: Default::default(),
    };
    set.insert(app);
    let model =
        expand(&doc, &set, Some(&binding), "dtk.service.yaml").unwrap_or_else(|e| panic!("{e}"));
    let nodes: Vec<&str> = model
        .components
        .iter()
        .filter(|c| c.realizes_node)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        nodes,
        vec!["node[web]", "node[workers:1]", "node[workers:2]"]
    );
    for id in &nodes {
        let links = links_into(&model, id);
        for want in [
            ("aws1/vpc_subnet[vpc1-default]", "subnet_id", "subnet_id"),
            ("aws1/security_group[vpc1-default]", "group_id", "group_id"),
            ("aws1/images", "images", "images"),
            ("aws1/vpc[vpc1]", "region", "region"),
            ("aws1/vpc[vpc1]", "credentials_handle", "credentials_handle"),
            ("aws1/vpc[vpc1]", "default_keypair", "key_name"),
            ("aws1/vpc[vpc1]", "ssh_key_path", "ssh_key_path"),
            (
                "aws1/vpc[vpc1]",
                "ssh_host_key_policy",
                "ssh_host_key_policy",
            ),
            (
                "aws1/vpc[vpc1]",
                "ssh_known_hosts_path",
                "ssh_known_hosts_path",
            ),
        ] {
            assert!(
                links.contains(&(want.0.into(), want.1.into(), want.2.into())),
                "{id} lacks {want:?}: {links:?}"
            );
        }
    }
    let web = model
        .component(&dtk_model::ComponentId("node[web]".into()))
        .unwrap();
    assert_eq!(web.inputs.get("image"), Some(&Value::from("ubuntu_jammy")));
    assert_eq!(web.node.as_deref(), Some("web"));
    let w2 = model
        .component(&dtk_model::ComponentId("node[workers:2]".into()))
        .unwrap();
    assert_eq!(w2.node.as_deref(), Some("workers:2"));
    assert_eq!(w2.inputs.get("size"), Some(&Value::from("t3.micro")));
}

/// A target's service document, with a `*` image map edit, writes and reads back.
#[test]
fn target_service_documents_round_trip() {
    for assembly in ["target", "target_iam"] {
        let mut d = target_doc(assembly);
        let images = d
            .components
            .iter_mut()
            .find(|c| c.reference.name == "images")
            .unwrap();
        images.attributes.insert(
            "images".to_owned(),
            dtk_model::module::AttrValue {
                value: Value::Hash(BTreeMap::from([(
                    "*".to_owned(),
                    Value::Hash(BTreeMap::from([(
                        "ubuntu_jammy".to_owned(),
                        Value::Hash(BTreeMap::from([(
                            "ami".to_owned(),
                            Value::from("ami-0abc"),
                        )])),
                    )])),
                )])),
                at: Default::default(),
            },
        );
        let text = dtk_model::dsl::write_service(&d);
        let back = dtk_model::dsl::parse_service(&text, "dtk.service.yaml")
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(dtk_model::dsl::write_service(&back), text);
        let model =
            expand(&back, &modules(), None, "dtk.service.yaml").unwrap_or_else(|e| panic!("{e}"));
        let c = model
            .component(&dtk_model::ComponentId("images".into()))
            .unwrap();
        assert_eq!(
            lookup(&c.inputs, &["images", "*", "ubuntu_jammy", "ami"]),
            Some(&Value::from("ami-0abc"))
        );
    }
}

fn lookup<'a>(attrs: &'a Attributes, path: &[&str]) -> Option<&'a Value> {
    let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
    dtk_model::expand::lookup_path(attrs, &path)
}

#[test]
fn node_names() {
    assert_eq!(
        NodeRef::parse("web"),
        NodeRef {
            node: "web".into(),
            index: None
        }
    );
    assert_eq!(
        NodeRef::parse("workers:12"),
        NodeRef {
            node: "workers".into(),
            index: Some(12)
        }
    );
    assert_eq!(NodeRef::parse("workers:0").index, None);
    assert_eq!(NodeRef::parse(":3").index, None);
    assert_eq!(NodeRef::parse("a:b").index, None);
}

const KEY_ID: &str = "AKIAUNITTESTKEY00042";
const SECRET: &str = "unit-test-secret-that-must-never-show";

#[test]
fn credential_store_keeps_keys_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = CredentialStore::new(dir.path().join("credentials"));
    let handle = "aws1/credentials";
    assert!(!store.contains(handle));
    let err = store.load(handle).unwrap_err().to_string();
    assert_eq!(
        err,
        "no AWS keys are stored under credentials handle `aws1/credentials` (converge the target's credentials component; a deleted target's keys are gone)"
    );
    let creds = StaticCredentials::new(KEY_ID, SECRET).with_session_token("tok-secret");
    store.save(handle, &creds).unwrap();
    assert_eq!(store.load(handle).unwrap(), creds);
    let path = store.path(handle);
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "aws1%2Fcredentials.json"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // Replacing keeps the mode and leaves no temporary file behind.
    store
        .save(handle, &StaticCredentials::new(KEY_ID, "other"))
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 1);
    // Handles cannot reach outside the directory.
    for evil in ["../../etc/passwd", "..", ".", "a/../../b"] {
        let p = store.path(evil);
        assert_eq!(p.parent(), Some(store.dir()), "{evil}");
    }
    assert!(store.remove(handle).unwrap());
    assert!(!store.remove(handle).unwrap());
    // A file that is not ours is refused without quoting it.
    std::fs::write(store.path("x"), format!("{{\"oops\": \"{SECRET}\"")).unwrap();
    let err = store.load("x").unwrap_err().to_string();
    assert!(!err.contains(SECRET), "{err}");
    assert!(err.contains("is not a stored credential"), "{err}");
}

struct Req {
    inputs: Attributes,
    secrets: Secrets,
    cancel: Cancel,
}

impl Req {
    fn new(inputs: Attributes, secrets: Attributes) -> Req {
        Req {
            inputs,
            secrets: Secrets(secrets),
            cancel: Cancel::new(),
        }
    }

    fn req<'a>(&'a self, resource: &'a str, component: &'a str) -> ResourceRequest<'a> {
        ResourceRequest {
            service: "aws1",
            component,
            node: None,
            resource,
            idempotency_key: "aws1/x/create/0",
            inputs: &self.inputs,
            secrets: &self.secrets,
            prior: None,
            service_nodes: &[],
            cancel: &self.cancel,
        }
    }
}

fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn credentials_resource_stores_and_never_shows_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = AwsProvider::new(dir.path(), AwsSettings::new("eu-west-1"));
    let r = Req::new(
        Attributes::new(),
        attrs(&[
            ("aws_access_key_id", Value::from(KEY_ID)),
            ("aws_secret_access_key", Value::from(SECRET)),
        ]),
    );
    let req = r.req("credentials", "credentials");
    let out = p.create(&req).await.unwrap();
    assert_eq!(
        out,
        attrs(&[("credentials_handle", Value::from("aws1/credentials"))])
    );
    assert_eq!(
        p.read(&req).await.unwrap(),
        dtk_model::provider::Observed::Present(out.clone())
    );
    let seen = format!("{out:?} {req:?} {p:?} {:?}", p.credential_store());
    for s in [KEY_ID, SECRET] {
        assert!(!seen.contains(s), "{s} in {seen}");
    }
    let file = p.credential_store().path("aws1/credentials");
    assert!(file.starts_with(dir.path().join("credentials")));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    p.delete(&req).await.unwrap();
    assert!(!file.exists());
    assert_eq!(
        p.read(&req).await.unwrap(),
        dtk_model::provider::Observed::Missing
    );
    p.delete(&req).await.unwrap();

    // A missing key is invalid input naming the attribute, not the other key's value.
    let r = Req::new(
        Attributes::new(),
        attrs(&[("aws_secret_access_key", Value::from(SECRET))]),
    );
    let err = p
        .create(&r.req("credentials", "credentials"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidInput { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("`aws_access_key_id` is not set"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

/// Rotated keys: the secret store holds other keys than the provider stored, so a read
/// says `Missing` (converge stores them again); without keys in the request it cannot
/// tell, and trusts what is stored.
#[tokio::test]
async fn credentials_read_notices_rotated_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = AwsProvider::new(dir.path(), AwsSettings::new("eu-west-1"));
    let keys = |id: &str, secret: &str| {
        Req::new(
            Attributes::new(),
            attrs(&[
                ("aws_access_key_id", Value::from(id)),
                ("aws_secret_access_key", Value::from(secret)),
            ]),
        )
    };
    let old = keys(KEY_ID, SECRET);
    let out = p
        .create(&old.req("credentials", "credentials"))
        .await
        .unwrap();
    let present = dtk_model::provider::Observed::Present(out);
    let rotated = keys("AKIAROTATEDKEY000002", "rotated-secret-key");
    assert_eq!(
        p.read(&rotated.req("credentials", "credentials"))
            .await
            .unwrap(),
        dtk_model::provider::Observed::Missing
    );
    let only_secret = keys(KEY_ID, "rotated-secret-key");
    assert_eq!(
        p.read(&only_secret.req("credentials", "credentials"))
            .await
            .unwrap(),
        dtk_model::provider::Observed::Missing
    );
    let none = Req::new(Attributes::new(), Attributes::new());
    assert_eq!(
        p.read(&none.req("credentials", "credentials"))
            .await
            .unwrap(),
        present
    );
    p.create(&rotated.req("credentials", "credentials"))
        .await
        .unwrap();
    assert_eq!(
        p.read(&rotated.req("credentials", "credentials"))
            .await
            .unwrap(),
        present
    );
}

#[tokio::test]
async fn requests_the_provider_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let p = AwsProvider::new(dir.path(), AwsSettings::new("eu-west-1"));
    assert_eq!(p.kind(), "aws");
    assert_eq!(p.resources(), RESOURCES);
    let r = Req::new(Attributes::new(), Attributes::new());
    let err = p.create(&r.req("bucket", "b")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider `aws` does not support resource type `bucket` (it handles credentials, vpc, vpc_subnet, security_group, images, ec2_instance)"
    );

    // A cancelled request stops before anything.
    r.cancel.cancel();
    let err = p.create(&r.req("vpc", "vpc[vpc1]")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "create aws.vpc for vpc[vpc1] of aws1 was cancelled"
    );

    // Inputs are checked before any request: no server is needed for these.
    let cases: Vec<(&str, &str, Attributes, &str)> = vec![
        (
            "vpc_subnet",
            "vpc_subnet[a]",
            attrs(&[]),
            "invalid input for aws.vpc_subnet (vpc_subnet[a]): `vpc_id` is not set: link the component to a vpc component (`$vpc_id -> vpc_id`)",
        ),
        (
            "vpc_subnet",
            "vpc_subnet[a]",
            attrs(&[("vpc_id", "vpc-1".into()), ("subnet_length", Value::Int(8))]),
            "invalid input for aws.vpc_subnet (vpc_subnet[a]): `subnet_length` must be 16 to 28 (EC2's subnet sizes), not 8",
        ),
        (
            "vpc_subnet",
            "vpc_subnet[a]",
            attrs(&[("vpc_id", "vpc-1".into()), ("gateway", "nat".into())]),
            "invalid input for aws.vpc_subnet (vpc_subnet[a]): invalid gateway \"nat\": expected internet or none",
        ),
        (
            "vpc",
            "vpc[vpc1]",
            attrs(&[("cidr_block", "10.0.0.1/16".into())]),
            "invalid input for aws.vpc (vpc[vpc1]): `cidr_block`: invalid CIDR block \"10.0.0.1/16\": host bits are set (did you mean 10.0.0.0/16?)",
        ),
        (
            "security_group",
            "security_group[g]",
            attrs(&[
                ("vpc_id", "vpc-1".into()),
                (
                    "constant_rules",
                    Value::Array(vec![Value::Hash(BTreeMap::from([
                        ("protocol".to_owned(), Value::from("tcp")),
                        ("port_range".to_owned(), Value::from("80-70")),
                        ("source".to_owned(), Value::from("0.0.0.0/0")),
                    ]))]),
                ),
            ]),
            "invalid input for aws.security_group (security_group[g]): `constant_rules[0]`: invalid port range \"80-70\": the first port is above the last",
        ),
        (
            "security_group",
            "security_group[g]",
            attrs(&[
                ("vpc_id", "vpc-1".into()),
                (
                    "dynamic_rules",
                    Value::Array(vec![Value::Hash(BTreeMap::from([
                        ("protocol".to_owned(), Value::from("tcp")),
                        ("port".to_owned(), Value::Int(80)),
                    ]))]),
                ),
            ]),
            "invalid input for aws.security_group (security_group[g]): `dynamic_rules[0]` has an unknown key `port` (a rule has protocol, port_range, source)",
        ),
        (
            "images",
            "images",
            attrs(&[(
                "images",
                Value::Hash(BTreeMap::from([(
                    "*".to_owned(),
                    Value::Hash(BTreeMap::from([(
                        "x".to_owned(),
                        Value::Hash(BTreeMap::from([(
                            "sizes".to_owned(),
                            Value::Hash(BTreeMap::new()),
                        )])),
                    )])),
                )])),
            )]),
            "invalid input for aws.images (images): `images.*.x` needs `ami` (an AMI id) or `name_filter` (an image name pattern)",
        ),
        (
            "ec2_instance",
            "node[web]",
            attrs(&[
                ("image", "ubuntu_jammy".into()),
                ("subnet_id", "subnet-1".into()),
            ]),
            "invalid input for aws.ec2_instance (node[web]): image `ubuntu_jammy` is a logical name, but the node is linked to no image map (is it on an AWS target?); give an AMI id (ami-...) or link `images`",
        ),
        (
            "ec2_instance",
            "node[web]",
            attrs(&[("image", "ami-1".into()), ("size", "huge".into())]),
            "invalid input for aws.ec2_instance (node[web]): unknown size \"huge\" for image \"ami-1\" (known: micro, small, medium, large, xlarge; or give an instance type such as t3.micro)",
        ),
        (
            "ec2_instance",
            "node[web]",
            attrs(&[("image", "ami-1".into())]),
            "invalid input for aws.ec2_instance (node[web]): `subnet_id` is not set: the node must be linked to the target's vpc_subnet (`$subnet_id -> subnet_id`)",
        ),
        (
            "ec2_instance",
            "web",
            attrs(&[("image", "ami-1".into())]),
            "invalid input for aws.ec2_instance (web): `web` is not on a node: an EC2 instance realizes a node (`node[NAME]`)",
        ),
    ];
    for (resource, component, inputs, want) in cases {
        let r = Req::new(inputs, Attributes::new());
        let err = p.create(&r.req(resource, component)).await.unwrap_err();
        assert!(matches!(err, ProviderError::InvalidInput { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
    // None of that connected a client.
    assert_eq!(p.cached_clients(), 0);
}
