//! The AWS target of dtk: EC2 through `aws-sdk-ec2`, for the `aws/network` and `aws/ec2`
//! modules.
//!
//! [`Ec2`] is a client for one region, built from plain [`AwsSettings`]. Its operations are
//! idempotent "ensure" steps that find what an earlier run made (by the `dtk:*` tags of
//! [`Owner`]) before creating anything, and deletes that remove only what dtk made:
//!
//! - the network context ([`Ec2::ensure_network`], or [`Ec2::ensure_vpc`],
//!   [`Ec2::ensure_subnet`], [`Ec2::ensure_security_group`] one by one);
//! - images and sizes ([`ImageMap::resolve`], [`Ec2::resolve_image_filters`]);
//! - instances of nodes and node groups ([`Ec2::ensure_node`], [`Ec2::ensure_node_group`],
//!   [`Ec2::read_instance`] for drift).
//!
//! [`AwsProvider`] builds on it to implement dtk's [`dtk_model::Provider`] trait (kind
//! `aws`): the resources `credentials`, `vpc`, `vpc_subnet`, `security_group`, `images`
//! and `ec2_instance` of the bundled modules `aws/network` and `aws/ec2`
//! ([`BUNDLED_MODULES`]).
//!
//! No type of the AWS SDK appears in this crate's public API.
//!
//! The `dtk` binary runs it as a plugin: this crate's executable `dtk-provider-aws`
//! (`src/main.rs`) serves it over `dtk_provider_plugin`'s protocol, with settings from the
//! standard AWS environment and its state directory from the handshake.
//!
//! # Example
//!
//! A program embedding dtk can register it in-process instead, which publishes its modules
//! too (`Home` is `dtk_instance::home::Home`; the user's side, from staging `aws/network`
//! to EC2 nodes, is `docs/aws.md` in the repository):
//!
//! ```text
//! use dtk_target_aws::{AwsProvider, AwsSettings, KIND};
//!
//! let mut home = Home::open(home_dir)?;
//! // Plain settings; the SDK's own environment (AWS_PROFILE, ...) still applies.
//! let settings = AwsSettings::new("eu-west-1").with_endpoint_url("http://127.0.0.1:5000");
//! let state = dtk_model::provider::provider_state_dir(home_dir, KIND);
//! // Registering publishes the bundled modules (`BUNDLED_MODULES`) too.
//! home.register_provider(Arc::new(AwsProvider::new(state, settings)))?;
//! ```

// Lets `testing` name this crate the same way whether it is compiled here or included
// by the integration tests.
extern crate self as dtk_target_aws;

mod cidr;
mod client;
mod error;
mod images;
mod instances;
mod modules;
mod network;
mod provider;
mod rules;
mod settings;
mod tags;

pub use cidr::Ipv4Cidr;
pub use client::Ec2;
pub use error::{ApiError, ApiErrorKind, AwsError, ImageError, ResourceKind, SpecError};
pub use images::{
    DEFAULT_SIZES, ImageEntry, ImageFilter, ImageInfo, ImageMap, ResolvedImage, is_instance_type,
};
pub use instances::{InstanceInfo, InstanceSpec, InstanceState, InstanceTarget, NodeGroupReport};
pub use modules::{AWS_EC2_MODULE, AWS_NETWORK_MODULE, BUNDLED_MODULES};
pub use network::{
    DEFAULT_SUBNET_PREFIX_LEN, DEFAULT_VPC_CIDR, Deletion, Gateway, NetworkDeletion,
    NetworkOutputs, NetworkSpec, SecurityGroupInfo, SecurityGroupSpec, SubnetInfo, SubnetSpec,
    VpcInfo, VpcSpec,
};
pub use provider::{AwsProvider, CredentialStore, CredentialStoreError, KIND, RESOURCES};
pub use rules::{PortRange, Protocol, RuleSource, SecurityGroupRule};
pub use settings::{AwsSettings, DEFAULT_REGION, StaticCredentials, Timeouts, WaiterSettings};
pub use tags::{
    Owner, Ownership, TAG_COMPONENT, TAG_INDEX, TAG_MANAGED, TAG_NAME, TAG_NODE, TAG_SERVICE,
};

#[cfg(feature = "test-support")]
pub mod testing;

#[cfg(test)]
mod tests;
