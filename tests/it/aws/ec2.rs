//! EC2's own view of a region on the moto server, through a plain SDK client: what
//! exists, whatever dtk thinks. Blocking calls (each on a runtime of its own), so the
//! tests read as a sequence of `dtk` runs and checks.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, IpPermission, ResourceType, Tag, TagSpecification};
use dtk_target_aws::testing::{FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY};

/// A plain EC2 client for one region of the moto server.
pub struct Ec2View {
    client: aws_sdk_ec2::Client,
    rt: tokio::runtime::Runtime,
}

/// An instance as EC2 describes it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub groups: Vec<String>,
    pub key_name: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A security group as EC2 describes it.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub vpc_id: String,
    pub tags: BTreeMap<String, String>,
    /// Ingress rules as `PROTOCOL FROM-TO SOURCE` (`-1` for all protocols; the source a
    /// CIDR or a group id), sorted.
    pub rules: Vec<String>,
}

/// A subnet as EC2 describes it.
#[derive(Debug, Clone)]
pub struct Subnet {
    pub vpc_id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub public_ip_on_launch: bool,
    pub tags: BTreeMap<String, String>,
}

/// Everything of a region that dtk could create or touch, by id: compared before and
/// after a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub vpcs: BTreeSet<String>,
    pub subnets: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub gateways: BTreeSet<String>,
    pub route_tables: BTreeSet<String>,
    /// Instances not terminated.
    pub live_instances: BTreeSet<String>,
}

fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A filter `name = value`.
pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The filter on dtk's service tag.
pub fn service(name: &str) -> Filter {
    filter("tag:dtk:service", name)
}

fn rules_of(perms: &[IpPermission]) -> Vec<String> {
    let mut out = Vec::new();
    for p in perms {
        let proto = p.ip_protocol().unwrap_or_default();
        let ports = match (p.from_port(), p.to_port()) {
            (Some(f), Some(t)) => format!("{f}-{t}"),
            _ => "all".to_owned(),
        };
        for r in p.ip_ranges() {
            out.push(format!(
                "{proto} {ports} {}",
                r.cidr_ip().unwrap_or_default()
            ));
        }
        for g in p.user_id_group_pairs() {
            out.push(format!(
                "{proto} {ports} {}",
                g.group_id().unwrap_or_default()
            ));
        }
    }
    out.sort();
    out
}

impl Ec2View {
    /// A client for `region` of the server at `url`, with the fixture's fake keys.
    pub fn new(url: &str, region: &str) -> Ec2View {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(url)
            .credentials_provider(Credentials::new(
                FAKE_ACCESS_KEY_ID,
                FAKE_SECRET_ACCESS_KEY,
                None,
                None,
                "dtk-tests",
            ))
            .build();
        Ec2View {
            client: aws_sdk_ec2::Client::from_conf(config),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
        }
    }

    fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The region's default VPC.
    pub fn default_vpc(&self) -> String {
        let out = self
            .run(
                self.client
                    .describe_vpcs()
                    .filters(filter("is-default", "true"))
                    .send(),
            )
            .unwrap();
        let vpcs = out.vpcs();
        assert_eq!(vpcs.len(), 1, "one default VPC: {vpcs:?}");
        vpcs[0].vpc_id().unwrap().to_owned()
    }

    /// What exists in the region now.
    pub fn inventory(&self) -> Inventory {
        self.inventory_where(&[])
    }

    /// What exists in the region tagged for dtk service `name`.
    pub fn inventory_of(&self, name: &str) -> Inventory {
        self.inventory_where(&[service(name)])
    }

    fn inventory_where(&self, filters: &[Filter]) -> Inventory {
        let c = &self.client;
        let f = || Some(filters.to_vec());
        let vpcs = self.run(c.describe_vpcs().set_filters(f()).send()).unwrap();
        let subnets = self
            .run(c.describe_subnets().set_filters(f()).send())
            .unwrap();
        let groups = self
            .run(c.describe_security_groups().set_filters(f()).send())
            .unwrap();
        let gateways = self
            .run(c.describe_internet_gateways().set_filters(f()).send())
            .unwrap();
        let tables = self
            .run(c.describe_route_tables().set_filters(f()).send())
            .unwrap();
        Inventory {
            vpcs: vpcs
                .vpcs()
                .iter()
                .map(|v| v.vpc_id().unwrap().to_owned())
                .collect(),
            subnets: subnets
                .subnets()
                .iter()
                .map(|s| s.subnet_id().unwrap().to_owned())
                .collect(),
            groups: groups
                .security_groups()
                .iter()
                .map(|g| g.group_id().unwrap().to_owned())
                .collect(),
            gateways: gateways
                .internet_gateways()
                .iter()
                .map(|g| g.internet_gateway_id().unwrap().to_owned())
                .collect(),
            route_tables: tables
                .route_tables()
                .iter()
                .map(|t| t.route_table_id().unwrap().to_owned())
                .collect(),
            live_instances: self
                .instances(filters.to_vec())
                .into_iter()
                .map(|i| i.id)
                .collect(),
        }
    }

    /// The VPC `id`: its CIDR block and tags; `None` when it does not exist.
    pub fn vpc(&self, id: &str) -> Option<(String, BTreeMap<String, String>)> {
        let out = self
            .run(
                self.client
                    .describe_vpcs()
                    .filters(filter("vpc-id", id))
                    .send(),
            )
            .unwrap();
        out.vpcs().first().map(|v| {
            (
                v.cidr_block().unwrap_or_default().to_owned(),
                tags_of(v.tags()),
            )
        })
    }

    /// The subnets matching `filters`.
    pub fn subnets(&self, filters: Vec<Filter>) -> Vec<Subnet> {
        let out = self
            .run(
                self.client
                    .describe_subnets()
                    .set_filters(Some(filters))
                    .send(),
            )
            .unwrap();
        out.subnets()
            .iter()
            .map(|s| Subnet {
                vpc_id: s.vpc_id().unwrap_or_default().to_owned(),
                cidr: s.cidr_block().unwrap_or_default().to_owned(),
                availability_zone: s.availability_zone().unwrap_or_default().to_owned(),
                public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
                tags: tags_of(s.tags()),
            })
            .collect()
    }

    /// The subnet `id`.
    pub fn subnet(&self, id: &str) -> Subnet {
        let mut found = self.subnets(vec![filter("subnet-id", id)]);
        assert_eq!(found.len(), 1, "subnet {id}: {found:?}");
        found.remove(0)
    }

    /// The security groups matching `filters`.
    pub fn groups(&self, filters: Vec<Filter>) -> Vec<Group> {
        let out = self
            .run(
                self.client
                    .describe_security_groups()
                    .set_filters(Some(filters))
                    .send(),
            )
            .unwrap();
        out.security_groups()
            .iter()
            .map(|g| Group {
                name: g.group_name().unwrap_or_default().to_owned(),
                vpc_id: g.vpc_id().unwrap_or_default().to_owned(),
                tags: tags_of(g.tags()),
                rules: rules_of(g.ip_permissions()),
            })
            .collect()
    }

    /// The security group `id`.
    pub fn group(&self, id: &str) -> Group {
        let mut found = self.groups(vec![filter("group-id", id)]);
        assert_eq!(found.len(), 1, "group {id}: {found:?}");
        found.remove(0)
    }

    /// The internet gateways matching `filters`: id, the VPCs it is attached to, tags.
    pub fn gateways(
        &self,
        filters: Vec<Filter>,
    ) -> Vec<(String, Vec<String>, BTreeMap<String, String>)> {
        let out = self
            .run(
                self.client
                    .describe_internet_gateways()
                    .set_filters(Some(filters))
                    .send(),
            )
            .unwrap();
        out.internet_gateways()
            .iter()
            .map(|g| {
                (
                    g.internet_gateway_id().unwrap().to_owned(),
                    g.attachments()
                        .iter()
                        .filter_map(|a| a.vpc_id().map(str::to_owned))
                        .collect(),
                    tags_of(g.tags()),
                )
            })
            .collect()
    }

    /// The route tables associated with `subnet_id`: each one's routes as
    /// `DESTINATION -> GATEWAY` and its tags.
    pub fn subnet_routes(&self, subnet_id: &str) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
        let out = self
            .run(
                self.client
                    .describe_route_tables()
                    .filters(filter("association.subnet-id", subnet_id))
                    .send(),
            )
            .unwrap();
        out.route_tables()
            .iter()
            .map(|t| {
                let routes = t
                    .routes()
                    .iter()
                    .map(|r| {
                        format!(
                            "{} -> {}",
                            r.destination_cidr_block().unwrap_or_default(),
                            r.gateway_id().unwrap_or_default()
                        )
                    })
                    .collect();
                (routes, tags_of(t.tags()))
            })
            .collect()
    }

    /// The instances matching `filters` that are not terminated (or shutting down),
    /// sorted by their `Name` tag.
    pub fn instances(&self, mut filters: Vec<Filter>) -> Vec<Instance> {
        filters.push(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        );
        let out = self
            .run(
                self.client
                    .describe_instances()
                    .set_filters(Some(filters))
                    .send(),
            )
            .unwrap();
        let mut all: Vec<Instance> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| Instance {
                id: i.instance_id().unwrap().to_owned(),
                state: i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default(),
                image_id: i.image_id().unwrap_or_default().to_owned(),
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
                subnet_id: i.subnet_id().unwrap_or_default().to_owned(),
                vpc_id: i.vpc_id().unwrap_or_default().to_owned(),
                groups: i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_owned))
                    .collect(),
                key_name: i.key_name().map(str::to_owned),
                tags: tags_of(i.tags()),
            })
            .collect();
        all.sort_by(|a, b| (a.tags.get("Name"), &a.id).cmp(&(b.tags.get("Name"), &b.id)));
        all
    }

    /// The state of instance `id` (`terminated` included).
    pub fn instance_state(&self, id: &str) -> String {
        let out = self
            .run(self.client.describe_instances().instance_ids(id).send())
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.state().and_then(|s| s.name()))
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|| "gone".to_owned())
    }

    /// Terminates an instance, as someone outside dtk would.
    pub fn terminate(&self, id: &str) {
        self.run(self.client.terminate_instances().instance_ids(id).send())
            .unwrap();
    }

    /// Stops an instance, as someone outside dtk would.
    pub fn stop(&self, id: &str) {
        self.run(self.client.stop_instances().instance_ids(id).send())
            .unwrap();
    }

    /// Changes an instance's type outside dtk: stop, modify, start.
    pub fn resize(&self, id: &str, instance_type: &str) {
        self.stop(id);
        self.run(
            self.client
                .modify_instance_attribute()
                .instance_id(id)
                .instance_type(
                    aws_sdk_ec2::types::AttributeValue::builder()
                        .value(instance_type)
                        .build(),
                )
                .send(),
        )
        .unwrap();
        self.run(self.client.start_instances().instance_ids(id).send())
            .unwrap();
    }

    /// Sets tag `key` of resource `id` to `value`, as someone outside dtk would.
    pub fn retag(&self, id: &str, key: &str, value: &str) {
        self.run(
            self.client
                .create_tags()
                .resources(id)
                .tags(Tag::builder().key(key).value(value).build())
                .send(),
        )
        .unwrap();
    }

    /// Puts instance `id` in exactly `groups`, as someone outside dtk would.
    pub fn set_groups(&self, id: &str, groups: &[&str]) {
        self.run(
            self.client
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(groups.iter().map(|g| (*g).to_owned()).collect()))
                .send(),
        )
        .unwrap();
    }

    /// An instance launched outside dtk in `subnet`, with a `Name` tag.
    pub fn launch(&self, ami: &str, subnet: &str, instance_type: &str, name: &str) -> String {
        let out = self
            .run(
                self.client
                    .run_instances()
                    .image_id(ami)
                    .instance_type(aws_sdk_ec2::types::InstanceType::from(instance_type))
                    .min_count(1)
                    .max_count(1)
                    .subnet_id(subnet)
                    .tag_specifications(name_tag(ResourceType::Instance, name))
                    .send(),
            )
            .unwrap();
        out.instances()[0].instance_id().unwrap().to_owned()
    }

    /// The instance `id` as EC2 describes it (terminated included).
    pub fn instance(&self, id: &str) -> Instance {
        let out = self
            .run(self.client.describe_instances().instance_ids(id).send())
            .unwrap();
        let i = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .unwrap_or_else(|| panic!("no instance {id}"));
        Instance {
            id: id.to_owned(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default(),
            image_id: i.image_id().unwrap_or_default().to_owned(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            subnet_id: i.subnet_id().unwrap_or_default().to_owned(),
            vpc_id: i.vpc_id().unwrap_or_default().to_owned(),
            groups: i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect(),
            key_name: i.key_name().map(str::to_owned),
            tags: tags_of(i.tags()),
        }
    }

    /// The newest image whose name matches `pattern`, owned by `owner`.
    pub fn image_named(&self, pattern: &str, owner: &str) -> String {
        let out = self
            .run(
                self.client
                    .describe_images()
                    .owners(owner)
                    .filters(filter("name", pattern))
                    .send(),
            )
            .unwrap();
        let mut images: Vec<(String, String)> = out
            .images()
            .iter()
            .map(|i| {
                (
                    i.creation_date().unwrap_or_default().to_owned(),
                    i.image_id().unwrap().to_owned(),
                )
            })
            .collect();
        images.sort();
        images
            .pop()
            .unwrap_or_else(|| panic!("moto has no image named {pattern} of {owner}"))
            .1
    }

    /// A key pair (EC2 keeps the public key; the private one is thrown away).
    pub fn create_key_pair(&self, name: &str) {
        self.run(self.client.create_key_pair().key_name(name).send())
            .unwrap();
    }

    /// A VPC made outside dtk, with a `Name` tag.
    pub fn create_vpc(&self, cidr: &str, name: &str) -> String {
        let out = self
            .run(
                self.client
                    .create_vpc()
                    .cidr_block(cidr)
                    .tag_specifications(name_tag(ResourceType::Vpc, name))
                    .send(),
            )
            .unwrap();
        out.vpc().unwrap().vpc_id().unwrap().to_owned()
    }

    /// A subnet made outside dtk.
    pub fn create_subnet(&self, vpc_id: &str, cidr: &str, name: &str) -> String {
        let out = self
            .run(
                self.client
                    .create_subnet()
                    .vpc_id(vpc_id)
                    .cidr_block(cidr)
                    .tag_specifications(name_tag(ResourceType::Subnet, name))
                    .send(),
            )
            .unwrap();
        out.subnet().unwrap().subnet_id().unwrap().to_owned()
    }

    /// A security group made outside dtk, letting in TCP `port` from anywhere.
    pub fn create_group(&self, vpc_id: &str, name: &str, port: i32) -> String {
        let out = self
            .run(
                self.client
                    .create_security_group()
                    .vpc_id(vpc_id)
                    .group_name(name)
                    .description("made outside dtk")
                    .send(),
            )
            .unwrap();
        let id = out.group_id().unwrap().to_owned();
        self.run(
            self.client
                .authorize_security_group_ingress()
                .group_id(&id)
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port)
                .cidr_ip("0.0.0.0/0")
                .send(),
        )
        .unwrap();
        id
    }
}

fn name_tag(t: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(t)
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}
