//! `AwsProvider` through the `Provider` trait, driven as a converge drives it: the bundled
//! modules are expanded with dtk-model (the target assemblies, and an app staged on the
//! target), each component's inputs are resolved from its links, and its provider action
//! is called in dependency order with hand-built `ResourceRequest`s ([`Converger`]).
//! EC2's own view is checked through [`Raw`] after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use dtk_model::expand::{
    ExternalComponent, ModuleSet, NodeRealizer, TargetBinding, expand, lookup_path,
};
use dtk_model::instance::{ComponentInstance, LinkSource, ServiceModel};
use dtk_model::module::{ActionKind, AttrValue, Module};
use dtk_model::provider::{Cancel, Observed, ResourceRequest, Secrets};
use dtk_model::service::{ServiceDoc, StagedFrom};
use dtk_model::{Attributes, ComponentRef, Provider, ProviderError, Value};
use dtk_target_aws::{AWS_EC2_MODULE, AWS_NETWORK_MODULE, AwsProvider};

use crate::moto::Moto;
use crate::{Raw, chain, filter};

/// Keys given to the `credentials` component. moto takes any keys; these must never
/// show anywhere but in the credential file.
const KEY_ID: &str = "AKIADTKPROVIDERTEST7";
const SECRET_KEY: &str = "provider-test-secret-key-that-must-never-show";

fn parse(text: &str, file: &str) -> Module {
    dtk_model::dsl::parse_module(text, file).unwrap_or_else(|e| panic!("{e}"))
}

fn modules() -> ModuleSet {
    let mut set = ModuleSet::new();
    set.insert(parse(AWS_NETWORK_MODULE, "aws/network"));
    set.insert(parse(AWS_EC2_MODULE, "aws/ec2"));
    set
}

/// A service document staged from `assembly` of `module`, with attribute edits
/// (`component ref`, attribute, value) applied to its assembly-level components and
/// (`node[NAME]`, attribute, value) to its nodes.
fn doc(
    module: &Module,
    assembly: &str,
    name: &str,
    target: Option<&str>,
    edits: &[(&str, &str, Value)],
) -> ServiceDoc {
    let a = &module.assemblies[assembly];
    let mut d = ServiceDoc {
        dsl_version: "1.0.0".to_owned(),
        name: name.to_owned(),
        staged_from: Some(StagedFrom {
            module: module.id.clone(),
            version: module.version.clone(),
            assembly: assembly.to_owned(),
        }),
        target: target.map(str::to_owned),
        is_target: target.is_none(),
        dependencies: BTreeMap::new(),
        nodes: a.nodes.clone(),
        components: a.components.clone(),
        workflows: a.workflows.clone(),
        at: Default::default(),
    };
    for (who, attr, value) in edits {
        let slot = AttrValue {
            value: value.clone(),
            at: Default::default(),
        };
        if let Some(c) = d
            .components
            .iter_mut()
            .find(|c| c.reference.to_string() == *who)
        {
            c.attributes.insert((*attr).to_owned(), slot);
        } else if let Some(n) = d
            .nodes
            .iter_mut()
            .find(|n| format!("node[{}]", n.name) == *who)
        {
            n.attributes.insert((*attr).to_owned(), slot);
        } else {
            panic!("no component {who} in {assembly}");
        }
    }
    d
}

/// What a component's last create recorded.
#[derive(Clone, Debug)]
struct Rec {
    inputs: Attributes,
    outputs: Attributes,
}

/// A miniature converge: components in dependency order, inputs resolved from links as
/// the executor resolves them (a linked value the producer lacks is an error), `create`
/// for a component never applied and `update` after, `delete` in reverse order for
/// recorded components the model no longer has.
struct Converger {
    provider: Arc<AwsProvider>,
    service: String,
    model: ServiceModel,
    state: BTreeMap<String, Rec>,
    /// Recorded components in the order they were created.
    created: Vec<String>,
    secrets: BTreeMap<String, Attributes>,
    generation: u32,
    cancel: Cancel,
}

impl Converger {
    fn new(provider: Arc<AwsProvider>, model: ServiceModel) -> Converger {
        Converger {
            provider,
            service: model.name.clone(),
            model,
            state: BTreeMap::new(),
            created: Vec::new(),
            secrets: BTreeMap::new(),
            generation: 0,
            cancel: Cancel::new(),
        }
    }

    fn component(&self, id: &str) -> &ComponentInstance {
        self.model
            .components
            .iter()
            .find(|c| c.id.as_str() == id)
            .unwrap_or_else(|| panic!("no component {id}"))
    }

    fn resource(c: &ComponentInstance) -> Option<String> {
        match &c.def.actions.get("create")?.kind {
            ActionKind::Provider { kind, resource } if kind == "aws" => Some(resource.clone()),
            _ => None,
        }
    }

    /// The model's provider components, dependencies first.
    fn order(&self) -> Vec<String> {
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        let ids: Vec<&ComponentInstance> = self.model.components.iter().collect();
        while out.len() < ids.len() {
            let before = out.len();
            for c in &ids {
                let id = c.id.to_string();
                if done.contains(&id) {
                    continue;
                }
                if c.depends_on.iter().all(|d| done.contains(d.on.as_str())) {
                    done.insert(id.clone());
                    out.push(id);
                }
            }
            assert!(out.len() > before, "dependency cycle");
        }
        out.retain(|id| Self::resource(self.component(id)).is_some());
        out
    }

    fn resolve(&self, c: &ComponentInstance) -> Attributes {
        let mut inputs = c.inputs.clone();
        for link in &c.links {
            for (path, to) in &link.mappings {
                match &link.from {
                    LinkSource::External { values, .. } => {
                        if let Some(v) = lookup_path(values, path) {
                            inputs.insert(to.clone(), v.clone());
                        }
                    }
                    LinkSource::Component(p) => {
                        let rec = self
                            .state
                            .get(p.as_str())
                            .unwrap_or_else(|| panic!("{} is linked to {p}, not applied", c.id));
                        let v = lookup_path(&rec.outputs, path)
                            .or_else(|| lookup_path(&rec.inputs, path))
                            .unwrap_or_else(|| {
                                panic!(
                                    "input `{to}` of `{}` is linked to `{p}.{}`, which has no value",
                                    c.id,
                                    path.join(".")
                                )
                            });
                        inputs.insert(to.clone(), v.clone());
                    }
                }
            }
        }
        inputs
    }

    fn key(&self, id: &str) -> String {
        format!("{}/{id}/create/{}", self.service, self.generation)
    }

    /// Creates or updates one component with an explicit idempotency key.
    async fn apply(&mut self, id: &str, key: &str) -> Result<Attributes, ProviderError> {
        let c = self.component(id).clone();
        let resource = Self::resource(&c).unwrap_or_else(|| panic!("{id} has no aws action"));
        let inputs = self.resolve(&c);
        let secrets = Secrets(self.secrets.get(id).cloned().unwrap_or_default());
        let prior = self.state.get(id).map(|r| r.outputs.clone());
        let req = ResourceRequest {
            service: &self.service,
            component: id,
            node: c.node.as_deref(),
            resource: &resource,
            idempotency_key: key,
            inputs: &inputs,
            secrets: &secrets,
            prior: prior.as_ref(),
            service_nodes: &[],
            cancel: &self.cancel,
        };
        let out = if prior.is_some() {
            self.provider.update(&req).await?
        } else {
            self.provider.create(&req).await?
        };
        if !self.created.iter().any(|c| c == id) {
            self.created.push(id.to_owned());
        }
        self.state.insert(
            id.to_owned(),
            Rec {
                inputs,
                outputs: out.clone(),
            },
        );
        Ok(out)
    }

    /// Deletes what the model no longer has, then creates or updates the rest.
    async fn converge(&mut self) -> Result<(), ProviderError> {
        self.generation += 1;
        let wanted: BTreeSet<String> = self
            .model
            .components
            .iter()
            .map(|c| c.id.to_string())
            .collect();
        let gone: Vec<String> = self
            .created
            .iter()
            .rev()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.delete_one(&id).await?;
        }
        for id in self.order() {
            let key = self.key(&id);
            self.apply(&id, &key).await?;
        }
        Ok(())
    }

    fn recorded_request<'a>(
        &'a self,
        id: &'a str,
        resource: &'a str,
        rec: &'a Rec,
        secrets: &'a Secrets,
        key: &'a str,
    ) -> ResourceRequest<'a> {
        let node = self
            .model
            .components
            .iter()
            .find(|c| c.id.as_str() == id)
            .and_then(|c| c.node.as_deref());
        ResourceRequest {
            service: &self.service,
            component: id,
            node,
            resource,
            idempotency_key: key,
            inputs: &rec.inputs,
            secrets,
            prior: Some(&rec.outputs),
            service_nodes: &[],
            cancel: &self.cancel,
        }
    }

    fn resource_of(&self, id: &str) -> String {
        if let Some(c) = self.model.components.iter().find(|c| c.id.as_str() == id) {
            return Self::resource(c).unwrap_or_default();
        }
        // Gone from the model: node components are the only ones that go.
        "ec2_instance".to_owned()
    }

    async fn delete_one(&mut self, id: &str) -> Result<(), ProviderError> {
        let rec = self
            .state
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not recorded"));
        let resource = self.resource_of(id);
        let secrets = Secrets::default();
        let key = format!("{}/{id}/delete/{}", self.service, self.generation);
        let req = self.recorded_request(id, &resource, &rec, &secrets, &key);
        self.provider.delete(&req).await?;
        self.state.remove(id);
        self.created.retain(|c| c != id);
        Ok(())
    }

    async fn delete_all(&mut self) -> Result<(), ProviderError> {
        for id in self.created.clone().into_iter().rev() {
            self.delete_one(&id).await?;
        }
        Ok(())
    }

    async fn read(&self, id: &str) -> Result<Observed, ProviderError> {
        let rec = &self.state[id];
        let resource = self.resource_of(id);
        let secrets = Secrets::default();
        let key = format!("{}/{id}/read", self.service);
        let req = self.recorded_request(id, &resource, rec, &secrets, &key);
        self.provider.read(&req).await
    }

    fn out(&self, id: &str) -> &Attributes {
        &self
            .state
            .get(id)
            .unwrap_or_else(|| panic!("{id} not recorded"))
            .outputs
    }

    fn get(&self, id: &str, attr: &str) -> String {
        match self.out(id).get(attr) {
            Some(Value::Str(s)) => s.clone(),
            other => panic!("{id}.{attr} is {other:?}"),
        }
    }

    /// What a service staged on this target sees of it (as staging builds it).
    fn binding(&self) -> TargetBinding {
        TargetBinding {
            service: self.service.clone(),
            node_component: Some(NodeRealizer {
                module: "aws/ec2".parse().unwrap(),
                reference: "ec2::node".parse::<ComponentRef>().unwrap(),
            }),
            components: self
                .model
                .components
                .iter()
                .map(|c| {
                    let mut values = c.inputs.clone();
                    if let Some(r) = self.state.get(c.id.as_str()) {
                        values.extend(r.outputs.clone());
                    }
                    ExternalComponent {
                        service: self.service.clone(),
                        id: c.id.clone(),
                        module: c.module.clone(),
                        def_name: c.def.name.clone(),
                        values,
                    }
                })
                .collect(),
        }
    }
}

/// A provider on the shared moto server (base settings for `region`) with a state
/// directory of its own, and a raw client of the region.
struct Setup {
    _moto: Arc<Moto>,
    provider: Arc<AwsProvider>,
    raw: Raw,
    region: String,
    home: tempfile::TempDir,
}

impl Setup {
    fn new(region: &str) -> Setup {
        let moto = Moto::shared();
        let home = tempfile::tempdir().unwrap();
        let state = dtk_model::provider::provider_state_dir(home.path(), "aws");
        let provider = Arc::new(AwsProvider::new(state, moto.settings(region)));
        let raw = Raw::new(&moto.url(), region);
        Setup {
            _moto: moto,
            provider,
            raw,
            region: region.to_owned(),
            home,
        }
    }

    fn target(&self, assembly: &str, name: &str, edits: &[(&str, &str, Value)]) -> Converger {
        let network = parse(AWS_NETWORK_MODULE, "aws/network");
        let mut all = vec![("vpc[vpc1]", "region", Value::from(self.region.as_str()))];
        all.extend(edits.iter().cloned());
        let d = doc(&network, assembly, name, None, &all);
        let model =
            expand(&d, &modules(), None, "dtk.service.yaml").unwrap_or_else(|e| panic!("{e}"));
        let mut c = Converger::new(self.provider.clone(), model);
        if assembly == "target" {
            c.secrets.insert(
                "credentials".to_owned(),
                Attributes::from([
                    ("aws_access_key_id".to_owned(), Value::from(KEY_ID)),
                    ("aws_secret_access_key".to_owned(), Value::from(SECRET_KEY)),
                ]),
            );
        }
        c
    }

    /// Counts of what EC2 holds tagged for `service`: vpcs, subnets, groups, gateways,
    /// route tables.
    async fn tagged(&self, service: &str) -> [usize; 5] {
        let f = || vec![Raw::service_filter(service)];
        [
            self.raw.vpc_ids(f()).await.len(),
            self.raw.subnet_ids(f()).await.len(),
            self.raw.group_ids(f()).await.len(),
            self.raw.gateway_ids(f()).await.len(),
            self.raw.route_table_ids(f()).await.len(),
        ]
    }
}

/// Everything a user or a log could see of a converger: recorded inputs and outputs.
fn visible(c: &Converger) -> String {
    format!("{:?} {:?}", c.state, c.provider)
}

fn assert_no_secret(text: &str) {
    for s in [KEY_ID, SECRET_KEY] {
        assert!(!text.contains(s), "{s} shows in: {text}");
    }
}

async fn assert_reads_as_recorded(c: &Converger, ids: &[&str]) {
    for id in ids {
        match c.read(id).await.unwrap() {
            Observed::Present(out) => assert_eq!(&out, c.out(id), "read {id}"),
            other => panic!("read {id}: {other:?}"),
        }
    }
}

/// Nothing set, explicit keys: everything is created in dependency order, every output
/// is filled, a second converge changes nothing, reads see what was recorded, and delete
/// in reverse order removes it all (the stored keys too).
#[tokio::test]
async fn target_creates_everything_and_deletes_it() {
    let s = Setup::new("eu-west-3");
    let mut t = s.target("target", "aws-new", &[]);
    t.converge()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));

    let handle = t.get("credentials", "credentials_handle");
    assert_eq!(handle, "aws-new/credentials");
    let file = s.provider.credential_store().path(&handle);
    assert!(
        file.starts_with(s.home.path().join("providers/aws")),
        "{file:?}"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains(SECRET_KEY), "the keys are in the file");

    let vpc = t.get("vpc[vpc1]", "vpc_id");
    assert!(vpc.starts_with("vpc-"), "{vpc}");
    assert_eq!(t.get("vpc[vpc1]", "cidr_block"), "10.0.0.0/16");
    assert_eq!(t.get("vpc[vpc1]", "region"), "eu-west-3");
    assert_eq!(t.get("vpc[vpc1]", "credentials_handle"), handle);
    let subnet = "vpc_subnet[vpc1-default]";
    assert!(t.get(subnet, "subnet_id").starts_with("subnet-"));
    assert_eq!(t.get(subnet, "subnet_cidr_block"), "10.0.0.0/24");
    assert!(t.get(subnet, "availability_zone").starts_with("eu-west-3"));
    assert_eq!(t.get(subnet, "vpc_id"), vpc);
    assert_eq!(t.get(subnet, "credentials_handle"), handle);
    let group = "security_group[vpc1-default]";
    assert!(t.get(group, "group_id").starts_with("sg-"));
    assert_eq!(
        t.get(group, "group_name"),
        "aws-new-security_group[vpc1-default]"
    );
    assert_eq!(t.get(group, "vpc_id"), vpc);
    // The image map: the default filters, resolved where moto has such images.
    let Some(Value::Hash(images)) = t.out("images").get("images") else {
        panic!("{:?}", t.out("images"))
    };
    let Some(Value::Hash(here)) = images.get("eu-west-3") else {
        panic!("{images:?}")
    };
    let Some(Value::Hash(al2)) = here.get("amazon_linux_2") else {
        panic!("{here:?}")
    };
    assert!(al2["ami"].as_str().unwrap().starts_with("ami-"));
    assert_eq!(al2.get("ssh_user"), Some(&Value::from("ec2-user")));
    let Some(Value::Array(unresolved)) = t.out("images").get("unresolved_images") else {
        panic!()
    };
    for name in [
        "ubuntu_jammy",
        "ubuntu_noble",
        "amazon_linux_2023",
        "amazon_linux_2",
    ] {
        let listed = unresolved.contains(&Value::from(format!("eu-west-3/{name}")));
        assert_ne!(here.contains_key(name), listed, "{name}");
    }
    // EC2's view: one of each, with the internet gateway and route of `gateway: internet`.
    assert_eq!(s.tagged("aws-new").await, [1, 1, 1, 1, 1]);
    let first = t.state.clone();

    // Converge again: the same resources and outputs, nothing new.
    t.converge().await.unwrap();
    assert_eq!(s.tagged("aws-new").await, [1, 1, 1, 1, 1]);
    for (id, rec) in &first {
        assert_eq!(t.out(id), &rec.outputs, "{id}");
    }
    assert_reads_as_recorded(&t, &["credentials", "vpc[vpc1]", subnet, group]).await;
    assert_eq!(t.read("images").await.unwrap(), Observed::Unknown);
    assert_no_secret(&visible(&t));

    // Delete in reverse order, the network first.
    for id in ["images", group, subnet, "vpc[vpc1]"] {
        t.delete_one(id).await.unwrap();
    }
    assert_eq!(s.tagged("aws-new").await, [0, 0, 0, 0, 0]);
    // Gone from EC2: reads say so (drift), and deleting again succeeds.
    let mut ghost = s.target("target", "aws-new", &[]);
    ghost.state = first.clone();
    for id in ["vpc[vpc1]", subnet, group] {
        assert_eq!(ghost.read(id).await.unwrap(), Observed::Missing, "{id}");
    }
    ghost.created = vec!["vpc[vpc1]".into(), subnet.into(), group.into()];
    ghost.delete_all().await.unwrap();
    // Then the keys.
    t.delete_all().await.unwrap();
    assert!(!file.exists(), "the stored keys are removed");
    assert_eq!(ghost.read("credentials").await.unwrap(), Observed::Missing);
    // What still names the handle now fails, saying why.
    ghost.state = first;
    let err = ghost.read("vpc[vpc1]").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no AWS keys are stored under credentials handle `aws-new/credentials`"),
        "{err}"
    );
}

/// `vpc_id` given (default credential chain): a subnet of the asked length and a group of
/// the asked name are made in it; the VPC is used as it is and survives the delete.
#[tokio::test]
async fn target_iam_in_a_given_vpc() {
    let s = Setup::new("ap-northeast-2");
    let vpc = s.raw.create_vpc("172.30.0.0/16").await;
    let mut t = s.target(
        "target_iam",
        "aws-vpc",
        &[
            ("vpc[vpc1]", "vpc_id", Value::from(vpc.as_str())),
            ("vpc_subnet[vpc1-default]", "subnet_length", Value::Int(28)),
            (
                "security_group[vpc1-default]",
                "group_name",
                Value::from("test_group"),
            ),
        ],
    );
    assert!(
        t.model
            .components
            .iter()
            .all(|c| c.id.as_str() != "credentials")
    );
    t.converge()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_eq!(t.get("vpc[vpc1]", "vpc_id"), vpc);
    assert_eq!(t.get("vpc[vpc1]", "cidr_block"), "172.30.0.0/16");
    assert_eq!(t.get("vpc[vpc1]", "credentials_handle"), "");
    let subnet = "vpc_subnet[vpc1-default]";
    assert_eq!(t.get(subnet, "subnet_cidr_block"), "172.30.0.0/28");
    assert_eq!(t.get(subnet, "vpc_id"), vpc);
    let group = "security_group[vpc1-default]";
    assert_eq!(t.get(group, "group_name"), "test_group");
    assert_eq!(t.get(group, "vpc_id"), vpc);
    // The VPC is not tagged as dtk's; subnet, group, gateway and route table are.
    assert_eq!(s.tagged("aws-vpc").await, [0, 1, 1, 1, 1]);
    let subnet_id = t.get(subnet, "subnet_id");
    let group_id = t.get(group, "group_id");

    t.converge().await.unwrap();
    assert_eq!(t.get(subnet, "subnet_id"), subnet_id);
    assert_eq!(t.get(group, "group_id"), group_id);
    assert_eq!(s.tagged("aws-vpc").await, [0, 1, 1, 1, 1]);
    assert_reads_as_recorded(&t, &["vpc[vpc1]", subnet, group]).await;

    t.delete_all().await.unwrap();
    assert_eq!(s.tagged("aws-vpc").await, [0, 0, 0, 0, 0]);
    assert_eq!(
        s.raw.vpc_ids(vec![filter("vpc-id", &vpc)]).await,
        vec![vpc.clone()]
    );
    assert!(
        s.raw
            .subnet_ids(vec![filter("vpc-id", &vpc)])
            .await
            .is_empty()
    );
}

/// `vpc_id` + `subnet_id` + `group_id` given: used as they are, their outputs filled,
/// nothing made, nothing deleted. A subnet given without its VPC is refused with the fix.
#[tokio::test]
async fn target_iam_uses_a_given_network_as_it_is() {
    let s = Setup::new("ap-northeast-3");
    let vpc = s.raw.create_vpc("172.31.0.0/16").await;
    let subnet_id = s.raw.create_subnet(&vpc, "172.31.5.0/24").await;
    let group_id = s.raw.create_group(&vpc, "theirs").await;
    let mut t = s.target(
        "target_iam",
        "aws-given",
        &[
            ("vpc[vpc1]", "vpc_id", Value::from(vpc.as_str())),
            (
                "vpc_subnet[vpc1-default]",
                "subnet_id",
                Value::from(subnet_id.as_str()),
            ),
            (
                "security_group[vpc1-default]",
                "group_id",
                Value::from(group_id.as_str()),
            ),
        ],
    );
    t.converge()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let subnet = "vpc_subnet[vpc1-default]";
    let group = "security_group[vpc1-default]";
    assert_eq!(t.get("vpc[vpc1]", "vpc_id"), vpc);
    assert_eq!(t.get(subnet, "subnet_id"), subnet_id);
    assert_eq!(t.get(subnet, "subnet_cidr_block"), "172.31.5.0/24");
    assert!(
        t.get(subnet, "availability_zone")
            .starts_with("ap-northeast-3")
    );
    assert_eq!(t.get(group, "group_id"), group_id);
    assert_eq!(t.get(group, "group_name"), "theirs");
    assert_eq!(s.tagged("aws-given").await, [0, 0, 0, 0, 0]);
    t.converge().await.unwrap();
    assert_eq!(s.tagged("aws-given").await, [0, 0, 0, 0, 0]);
    assert_reads_as_recorded(&t, &["vpc[vpc1]", subnet, group]).await;
    t.delete_all().await.unwrap();
    assert_eq!(
        s.raw.vpc_ids(vec![filter("vpc-id", &vpc)]).await,
        vec![vpc.clone()]
    );
    assert_eq!(
        s.raw.subnet_ids(vec![filter("vpc-id", &vpc)]).await,
        vec![subnet_id.clone()]
    );
    assert!(
        s.raw
            .group_ids(vec![filter("group-id", &group_id)])
            .await
            .contains(&group_id)
    );

    // The subnet and group without the VPC: the VPC component makes one, and the subnet
    // then says how to use the given network instead.
    let mut wrong = s.target(
        "target_iam",
        "aws-half",
        &[
            (
                "vpc_subnet[vpc1-default]",
                "subnet_id",
                Value::from(subnet_id.as_str()),
            ),
            (
                "security_group[vpc1-default]",
                "group_id",
                Value::from(group_id.as_str()),
            ),
        ],
    );
    let err = wrong.converge().await.unwrap_err();
    assert!(matches!(err, ProviderError::InvalidInput { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "subnet {subnet_id} is in vpc {vpc}, not in the linked vpc"
        )) && text.contains(&format!("set the vpc component's `vpc_id` to {vpc}")),
        "{text}"
    );
    wrong.delete_all().await.unwrap();
    assert_eq!(s.tagged("aws-half").await, [0, 0, 0, 0, 0]);
}

const APP: &str = r#"
dsl_version: 1.0.0
module: demo/app
version: 1.0.0
component_defs:
  web:
    actions:
      create:
        commands: [RUN true]
assemblies:
  app:
    components:
    - node[web]:
        attributes: {image: ubuntu_jammy, size: small, tags: {team: qa}}
        components: [web]
    - node_group[workers]:
        attributes: {image: ubuntu_jammy, size: t3.micro, cardinality: 2}
"#;

/// An app staged on the target: `ubuntu_jammy` is mapped to an image moto has.
fn app_model(target: &Converger, cardinality: i64) -> ServiceModel {
    let app = parse(APP, "demo/app");
    let d = doc(
        &app,
        "app",
        "app1",
        Some(&target.service),
        &[("node[workers]", "cardinality", Value::Int(cardinality))],
    );
    let mut set = modules();
    set.insert(app);
    expand(&d, &set, Some(&target.binding()), "dtk.service.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn jammy_in_moto() -> Value {
    let entry = Value::Hash(BTreeMap::from([
        (
            "name_filter".to_owned(),
            Value::from("ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*"),
        ),
        ("ssh_user".to_owned(), Value::from("ubuntu")),
    ]));
    Value::Hash(BTreeMap::from([(
        "*".to_owned(),
        Value::Hash(BTreeMap::from([("ubuntu_jammy".to_owned(), entry)])),
    )]))
}

fn app_instances(raw: &Raw) -> impl std::future::Future<Output = Vec<String>> + '_ {
    raw.live_instance_ids(vec![Raw::service_filter("app1")])
}

/// Nodes on the target: one instance per node and group member, with the target's
/// network, image and keys; idempotent per key; drift; scaling; delete.
#[tokio::test]
async fn app_nodes_become_instances() {
    let s = Setup::new("eu-south-1");
    let mut t = s.target(
        "target",
        "aws-app",
        &[("images", "images", jammy_in_moto())],
    );
    t.converge()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let jammy = {
        let Some(Value::Hash(m)) = t.out("images").get("images") else {
            panic!()
        };
        lookup_path(
            &m.clone().into(),
            &["eu-south-1".into(), "ubuntu_jammy".into(), "ami".into()],
        )
        .and_then(Value::as_str)
        .unwrap()
        .to_owned()
    };

    let mut app = Converger::new(s.provider.clone(), app_model(&t, 2));
    assert_eq!(
        app.order(),
        vec!["node[web]", "node[workers:1]", "node[workers:2]"]
    );
    app.converge()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let web = app.out("node[web]").clone();
    assert_eq!(web["state"], Value::from("running"));
    assert_eq!(web["image_id"], Value::from(jammy.as_str()));
    assert_eq!(web["instance_type"], Value::from("t3.small"));
    assert_eq!(web["ssh_user"], Value::from("ubuntu"));
    assert!(
        web["private_ip_address"]
            .as_str()
            .unwrap()
            .starts_with("10.0.")
    );
    assert_eq!(web["host"], web["private_ip_address"]);
    // `gateway: internet`: the subnet gives public addresses, and SSH goes there.
    assert!(!web["public_ip_address"].is_null(), "{web:?}");
    assert_eq!(web["ssh_host"], web["public_ip_address"]);
    assert!(
        web["availability_zone"]
            .as_str()
            .unwrap()
            .starts_with("eu-south-1")
    );
    assert_eq!(
        app.out("node[workers:2]")["instance_type"],
        Value::from("t3.micro")
    );
    let ids: Vec<String> = app
        .order()
        .iter()
        .map(|id| app.get(id, "instance_id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(app_instances(&s.raw).await, sorted);

    // EC2's view of each: tags, subnet, group, token.
    let out = s
        .raw
        .0
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
    let mut seen = BTreeMap::new();
    for i in out.reservations().iter().flat_map(|r| r.instances()) {
        let tags: BTreeMap<&str, &str> = i
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(
            i.subnet_id(),
            Some(t.get("vpc_subnet[vpc1-default]", "subnet_id").as_str())
        );
        assert_eq!(
            i.security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .collect::<Vec<_>>(),
            vec![t.get("security_group[vpc1-default]", "group_id")]
        );
        if let Some(token) = i.client_token() {
            assert!(token.starts_with("dtk-"), "{token}");
        }
        assert_eq!(tags["dtk:service"], "app1");
        assert_eq!(tags["dtk:managed"], "true");
        seen.insert(
            tags["Name"].to_owned(),
            (
                tags["dtk:node"].to_owned(),
                tags["dtk:index"].to_owned(),
                tags["dtk:component"].to_owned(),
                tags.get("team").map(|s| (*s).to_owned()),
            ),
        );
    }
    assert_eq!(
        seen,
        BTreeMap::from([
            (
                "app1-web".to_owned(),
                (
                    "web".into(),
                    "1".into(),
                    "node[web]".into(),
                    Some("qa".into())
                )
            ),
            (
                "app1-workers-1".to_owned(),
                ("workers".into(), "1".into(), "node[workers:1]".into(), None)
            ),
            (
                "app1-workers-2".to_owned(),
                ("workers".into(), "2".into(), "node[workers:2]".into(), None)
            ),
        ])
    );

    // The same task again (a retry, a resumed converge): the same instance.
    let key = app.key("node[web]");
    let again = app.apply("node[web]", &key).await.unwrap();
    assert_eq!(again["instance_id"], web["instance_id"]);
    app.converge().await.unwrap();
    assert_eq!(
        app.order()
            .iter()
            .map(|id| app.get(id, "instance_id"))
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(app_instances(&s.raw).await, sorted);
    assert_reads_as_recorded(&app, &["node[web]", "node[workers:1]", "node[workers:2]"]).await;

    // A node stopped outside dtk reads as drifted (stopped, where it should run), and
    // runs again after its update.
    s.raw
        .0
        .stop_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap();
    match app.read("node[web]").await.unwrap() {
        Observed::Drifted { outputs, changes } => {
            assert_eq!(outputs["state"], Value::from("stopped"));
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert_eq!(changes[0].attribute, "state");
            assert_eq!(changes[0].observed, Value::from("stopped"));
        }
        other => panic!("{other:?}"),
    }
    let key = app.key("node[web]");
    let started = app.apply("node[web]", &key).await.unwrap();
    assert_eq!(started["instance_id"], web["instance_id"]);
    assert_eq!(started["state"], Value::from("running"));

    // Drift: a member terminated outside dtk reads as missing, and its create (even with
    // the key that made it) makes a new one at its index.
    let w1 = app.get("node[workers:1]", "instance_id");
    s.raw
        .0
        .terminate_instances()
        .instance_ids(&w1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.read("node[workers:1]").await.unwrap(),
        Observed::Missing
    );
    assert!(matches!(
        app.read("node[workers:2]").await.unwrap(),
        Observed::Present(_)
    ));
    let key = "app1/node[workers:1]/create/1".to_owned();
    app.state.remove("node[workers:1]");
    let made = app.apply("node[workers:1]", &key).await.unwrap();
    let new_w1 = made["instance_id"].as_str().unwrap().to_owned();
    assert_ne!(new_w1, w1);
    assert_eq!(app_instances(&s.raw).await.len(), 3);
    let names = |raw: &Raw| {
        let raw = raw.0.clone();
        async move {
            let out = raw
                .describe_instances()
                .filters(Raw::service_filter("app1"))
                .filters(filter("instance-state-name", "running"))
                .send()
                .await
                .unwrap();
            let mut v: Vec<String> = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .flat_map(|i| i.tags())
                .filter(|t| t.key() == Some("Name"))
                .map(|t| t.value().unwrap().to_owned())
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(
        names(&s.raw).await,
        vec!["app1-web", "app1-workers-1", "app1-workers-2"]
    );

    // Scale up: only the new member is made.
    app.model = app_model(&t, 3);
    app.converge().await.unwrap();
    assert_eq!(app_instances(&s.raw).await.len(), 4);
    assert_eq!(app.get("node[workers:1]", "instance_id"), new_w1);
    assert_eq!(app.get("node[workers:2]", "instance_id"), ids[2]);
    assert_eq!(
        names(&s.raw).await,
        vec![
            "app1-web",
            "app1-workers-1",
            "app1-workers-2",
            "app1-workers-3"
        ]
    );

    // Scale down: the extra members' components are deleted, the rest left alone.
    app.model = app_model(&t, 1);
    app.converge().await.unwrap();
    assert_eq!(names(&s.raw).await, vec!["app1-web", "app1-workers-1"]);
    assert_eq!(app.get("node[workers:1]", "instance_id"), new_w1);
    assert_eq!(app.get("node[web]", "instance_id"), ids[0]);
    assert_no_secret(&visible(&app));

    app.delete_all().await.unwrap();
    assert!(app_instances(&s.raw).await.is_empty());
    t.delete_all().await.unwrap();
    assert_eq!(s.tagged("aws-app").await, [0, 0, 0, 0, 0]);
    assert_no_secret(&visible(&t));
}

/// Errors name the operation, the component and what EC2 said, are retryable only when
/// retrying may help, and never hold a key.
#[tokio::test]
async fn provider_errors_name_what_failed_without_keys() {
    let s = Setup::new("me-south-1");
    let mut t = s.target("target", "aws-err", &[]);
    t.converge()
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let handle = t.get("credentials", "credentials_handle");

    let al2 = {
        let Some(Value::Hash(m)) = t.out("images").get("images") else {
            panic!()
        };
        lookup_path(
            &m.clone().into(),
            &["me-south-1".into(), "amazon_linux_2".into(), "ami".into()],
        )
        .and_then(Value::as_str)
        .unwrap()
        .to_owned()
    };
    let inputs = |subnet: &str, handle: &str| {
        Attributes::from([
            ("image".to_owned(), Value::from(al2.as_str())),
            ("size".to_owned(), Value::from("t3.micro")),
            ("subnet_id".to_owned(), Value::from(subnet)),
            ("region".to_owned(), Value::from("me-south-1")),
            ("credentials_handle".to_owned(), Value::from(handle)),
        ])
    };
    let cancel = Cancel::new();
    let secrets = Secrets::default();
    let bad = inputs("subnet-00000000000000bad", &handle);
    let req = ResourceRequest {
        service: "err-app",
        component: "node[web]",
        node: Some("web"),
        resource: "ec2_instance",
        idempotency_key: "k",
        inputs: &bad,
        secrets: &secrets,
        prior: None,
        service_nodes: &[],
        cancel: &cancel,
    };
    let err = s.provider.create(&req).await.unwrap_err();
    let text = format!("{} | {err:?}", chain(&err));
    assert!(!err.is_retryable(), "{text}");
    assert!(
        text.starts_with("create aws.ec2_instance for node[web] of err-app failed: EC2 RunInstances failed for instance err-app-web"),
        "{text}"
    );
    assert!(text.contains("InvalidSubnetID.NotFound"), "{text}");
    assert_no_secret(&text);

    // A handle with no stored keys.
    let unknown = inputs("subnet-1", "gone/credentials");
    let req = ResourceRequest {
        inputs: &unknown,
        ..req.clone()
    };
    let err = s.provider.create(&req).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "create aws.ec2_instance for node[web] of err-app failed: no AWS keys are stored under credentials handle `gone/credentials` (converge the target's credentials component; a deleted target's keys are gone)"
    );

    // Nothing listens at the endpoint: retryable, still without keys.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let moto = Moto::shared();
    let mut settings = moto.settings("me-south-1");
    settings.endpoint_url = Some(format!("http://127.0.0.1:{port}"));
    settings.max_attempts = 1;
    settings.timeouts.connect = std::time::Duration::from_secs(2);
    settings.timeouts.operation = std::time::Duration::from_secs(5);
    let offline = AwsProvider::new(s.provider.state_dir(), settings);
    let vpc_inputs = Attributes::from([
        ("region".to_owned(), Value::from("me-south-1")),
        (
            "credentials_handle".to_owned(),
            Value::from(handle.as_str()),
        ),
    ]);
    let req = ResourceRequest {
        component: "vpc[vpc1]",
        node: None,
        resource: "vpc",
        inputs: &vpc_inputs,
        ..req.clone()
    };
    let err = offline.create(&req).await.unwrap_err();
    let text = format!("{} | {err:?}", chain(&err));
    assert!(err.is_retryable(), "{text}");
    assert!(text.contains("could not connect"), "{text}");
    assert_no_secret(&text);
    assert_no_secret(&format!("{offline:?} {req:?}"));

    t.delete_all().await.unwrap();
    assert_no_secret(&visible(&t));
}
