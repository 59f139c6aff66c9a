//! dtk-target-aws against a real EC2 API server (moto, see `moto.rs`).
//!
//! Each test works in a region of its own on the shared server, so tests run in parallel
//! without seeing each other's resources. The checks look at EC2's own view through a
//! plain SDK client ([`Raw`]), not through the code under test.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

mod images;
mod instances;
// The fixture that `dtk_target_aws::testing` exports with the `test-support` feature.
#[path = "../../src/testing.rs"]
mod moto;
mod network;
mod provider;

/// A server of its own: reset forgets everything; drop stops it (its port closes).
#[tokio::test]
async fn moto_fixture_resets_and_stops() {
    let moto = Moto::start();
    let raw = Raw::new(&moto.url(), "us-west-2");
    let vpc = raw.create_vpc("10.50.0.0/16").await;
    assert_eq!(
        raw.vpc_ids(vec![filter("vpc-id", &vpc)]).await,
        vec![vpc.clone()]
    );
    moto.reset();
    assert!(
        raw.vpc_ids(vec![filter("cidr", "10.50.0.0/16")])
            .await
            .is_empty()
    );
    let port = moto.port();
    drop(moto);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "moto still listens on {port}"
    );
}

use std::sync::Arc;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use dtk_target_aws::Ec2;

use crate::moto::{FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, Moto};

/// A test's world: the shared moto server, a client of the crate, and a raw SDK client
/// for setting up "pre-existing" resources and checking EC2's view.
pub struct World {
    pub moto: Arc<Moto>,
    pub ec2: Ec2,
    pub raw: Raw,
    pub region: String,
}

impl World {
    pub async fn new(region: &str) -> World {
        let moto = Moto::shared();
        let ec2 = Ec2::connect(&moto.settings(region)).await.expect("connect");
        let raw = Raw::new(&moto.url(), region);
        World {
            moto,
            ec2,
            raw,
            region: region.to_owned(),
        }
    }
}

/// The SDK, used directly: what exists, whatever dtk thinks.
pub struct Raw(pub aws_sdk_ec2::Client);

impl Raw {
    pub fn new(url: &str, region: &str) -> Raw {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(url)
            .credentials_provider(Credentials::new(
                FAKE_ACCESS_KEY_ID,
                FAKE_SECRET_ACCESS_KEY,
                None,
                None,
                "test",
            ))
            .build();
        Raw(aws_sdk_ec2::Client::from_conf(config))
    }

    pub fn service_filter(service: &str) -> Filter {
        Filter::builder()
            .name("tag:dtk:service")
            .values(service)
            .build()
    }

    pub async fn vpc_ids(&self, filters: Vec<Filter>) -> Vec<String> {
        let out = self
            .0
            .describe_vpcs()
            .set_filters(Some(filters))
            .send()
            .await
            .unwrap();
        out.vpcs()
            .iter()
            .map(|v| v.vpc_id().unwrap().to_owned())
            .collect()
    }

    pub async fn subnet_ids(&self, filters: Vec<Filter>) -> Vec<String> {
        let out = self
            .0
            .describe_subnets()
            .set_filters(Some(filters))
            .send()
            .await
            .unwrap();
        out.subnets()
            .iter()
            .map(|v| v.subnet_id().unwrap().to_owned())
            .collect()
    }

    pub async fn group_ids(&self, filters: Vec<Filter>) -> Vec<String> {
        let out = self
            .0
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .unwrap();
        out.security_groups()
            .iter()
            .map(|v| v.group_id().unwrap().to_owned())
            .collect()
    }

    pub async fn gateway_ids(&self, filters: Vec<Filter>) -> Vec<String> {
        let out = self
            .0
            .describe_internet_gateways()
            .set_filters(Some(filters))
            .send()
            .await
            .unwrap();
        out.internet_gateways()
            .iter()
            .map(|v| v.internet_gateway_id().unwrap().to_owned())
            .collect()
    }

    pub async fn route_table_ids(&self, filters: Vec<Filter>) -> Vec<String> {
        let out = self
            .0
            .describe_route_tables()
            .set_filters(Some(filters))
            .send()
            .await
            .unwrap();
        out.route_tables()
            .iter()
            .map(|v| v.route_table_id().unwrap().to_owned())
            .collect()
    }

    /// Ids of the instances matching `filters` that are not terminated or shutting down.
    pub async fn live_instance_ids(&self, mut filters: Vec<Filter>) -> Vec<String> {
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
            .0
            .describe_instances()
            .set_filters(Some(filters))
            .send()
            .await
            .unwrap();
        let mut ids: Vec<String> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| i.instance_id().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// A VPC made outside dtk (with a `Name` tag only).
    pub async fn create_vpc(&self, cidr: &str) -> String {
        let out = self
            .0
            .create_vpc()
            .cidr_block(cidr)
            .tag_specifications(name_tag(ResourceType::Vpc, "pre-existing"))
            .send()
            .await
            .unwrap();
        out.vpc().unwrap().vpc_id().unwrap().to_owned()
    }

    pub async fn create_subnet(&self, vpc_id: &str, cidr: &str) -> String {
        let out = self
            .0
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(cidr)
            .send()
            .await
            .unwrap();
        out.subnet().unwrap().subnet_id().unwrap().to_owned()
    }

    pub async fn create_group(&self, vpc_id: &str, name: &str) -> String {
        let out = self
            .0
            .create_security_group()
            .vpc_id(vpc_id)
            .group_name(name)
            .description("made outside dtk")
            .send()
            .await
            .unwrap();
        out.group_id().unwrap().to_owned()
    }

    pub async fn create_attached_gateway(&self, vpc_id: &str) -> String {
        let out = self.0.create_internet_gateway().send().await.unwrap();
        let id = out
            .internet_gateway()
            .unwrap()
            .internet_gateway_id()
            .unwrap()
            .to_owned();
        self.0
            .attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc_id)
            .send()
            .await
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

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Every message of an error and its sources, as a user would see them.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
