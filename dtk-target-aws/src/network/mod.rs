//! The network context of `aws/network`: VPC, subnet (with its internet route) and
//! security group, in the three scenarios of the brief:
//!
//! - `subnet_id` + `group_id` given: used as they are, never changed or deleted;
//! - `vpc_id` given: a subnet (by CIDR, or the first free block of a prefix length) and a
//!   security group (by name) are made in it;
//! - nothing given: a VPC, a subnet, an internet gateway and route (for
//!   `gateway: internet`) and a security group are made.
//!
//! Every `ensure_*` finds what an earlier run made for the same [`Owner`] before creating
//! anything, so it can run any number of times; every `delete_*` removes only what dtk
//! made for the owner's service.

mod group;
mod lookup;
mod subnet;

use std::str::FromStr;

use aws_sdk_ec2::types::{self as ec2, ResourceType};

use crate::cidr::Ipv4Cidr;
use crate::client::Ec2;
use crate::error::{AwsError, ResourceKind, SpecError};
use crate::rules::SecurityGroupRule;
use crate::tags::{Owner, Ownership, filter, tag_map, tag_spec};
use lookup::*;

/// The CIDR block of a VPC that dtk creates when none is given.
pub const DEFAULT_VPC_CIDR: Ipv4Cidr = Ipv4Cidr::masked([10, 0, 0, 0], 16);

/// The prefix length of a subnet dtk creates when neither a CIDR block nor a length is
/// given (or the VPC's own length, when that is longer).
pub const DEFAULT_SUBNET_PREFIX_LEN: u8 = 24;

/// What a VPC should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VpcSpec {
    /// Use this existing VPC.
    pub vpc_id: Option<String>,
    /// The block of a VPC dtk creates; [`DEFAULT_VPC_CIDR`] when `None`.
    pub cidr_block: Option<Ipv4Cidr>,
}

/// A VPC as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcInfo {
    /// Its id.
    pub vpc_id: String,
    /// Its primary CIDR block.
    pub cidr_block: Ipv4Cidr,
    /// Whether dtk made it (and will delete it).
    pub ownership: Ownership,
}

/// Whether a subnet routes to the internet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Gateway {
    /// `internet`: an internet gateway on the VPC and a default route to it.
    Internet,
    /// `none`: no route out (the default).
    #[default]
    None,
}

impl FromStr for Gateway {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "internet" | "igw" => Ok(Gateway::Internet),
            "none" | "" => Ok(Gateway::None),
            _ => Err(SpecError::new("gateway", s, "expected internet or none")),
        }
    }
}

/// What a subnet should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubnetSpec {
    /// Use this existing subnet (its routing is left as it is).
    pub subnet_id: Option<String>,
    /// The block of the subnet to create; it must lie in the VPC's block.
    pub cidr_block: Option<Ipv4Cidr>,
    /// Without `cidr_block`: create the first free block of this prefix length in the VPC
    /// ([`DEFAULT_SUBNET_PREFIX_LEN`] when `None`).
    pub prefix_len: Option<u8>,
    /// The availability zone of a created subnet; EC2 picks one when `None`.
    pub availability_zone: Option<String>,
    /// Whether a created subnet routes to the internet.
    pub gateway: Gateway,
    /// Whether instances launched in a created subnet get a public address; when `None`,
    /// they do exactly when `gateway` is `internet`.
    pub map_public_ip_on_launch: Option<bool>,
}

/// A subnet as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetInfo {
    /// Its id.
    pub subnet_id: String,
    /// The VPC it is in.
    pub vpc_id: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Its CIDR block.
    pub cidr_block: Ipv4Cidr,
    /// Whether instances launched in it get a public address.
    pub map_public_ip_on_launch: bool,
    /// The route table associated with it explicitly, if any.
    pub route_table_id: Option<String>,
    /// The internet gateway its default route goes to, if any.
    pub internet_gateway_id: Option<String>,
    /// Whether dtk made it (and will delete it).
    pub ownership: Ownership,
}

/// What a security group should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityGroupSpec {
    /// Use this existing group as it is.
    pub group_id: Option<String>,
    /// The name of the group: an existing group of this name in the VPC is used as it is,
    /// else one is created. `SERVICE-COMPONENT` when `None`.
    pub group_name: Option<String>,
    /// The description of a created group.
    pub description: Option<String>,
    /// The ingress rules of a group dtk made (kept exactly so: missing ones are added,
    /// others removed). Groups dtk did not make are never changed.
    pub rules: Vec<SecurityGroupRule>,
}

/// A security group as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroupInfo {
    /// Its id.
    pub group_id: String,
    /// Its name.
    pub group_name: String,
    /// The VPC it is in.
    pub vpc_id: String,
    /// Its ingress rules (those this crate models), sorted.
    pub rules: Vec<SecurityGroupRule>,
    /// Whether dtk made it (and will delete it).
    pub ownership: Ownership,
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Deletion {
    /// dtk had made it, and it is deleted now.
    Deleted,
    /// dtk had not made it (for this service): it is left as it is.
    LeftAlone,
    /// It did not exist (any more).
    AlreadyGone,
}

/// The whole network context of a target: one VPC, subnet and security group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The target instance's name, in every tag.
    pub service: String,
    /// The VPC's component instance, e.g. `vpc[vpc1]`.
    pub vpc_component: String,
    /// The subnet's component instance, e.g. `vpc_subnet[vpc1-default]`.
    pub subnet_component: String,
    /// The security group's component instance, e.g. `security_group[vpc1-default]`.
    pub group_component: String,
    /// The VPC.
    pub vpc: VpcSpec,
    /// The subnet.
    pub subnet: SubnetSpec,
    /// The security group.
    pub security_group: SecurityGroupSpec,
}

impl NetworkSpec {
    /// A spec for `service` with `aws/network`'s component names and nothing given
    /// (the "create everything" scenario).
    pub fn new(service: impl Into<String>) -> Self {
        NetworkSpec {
            service: service.into(),
            vpc_component: "vpc[vpc1]".to_owned(),
            subnet_component: "vpc_subnet[vpc1-default]".to_owned(),
            group_component: "security_group[vpc1-default]".to_owned(),
            vpc: VpcSpec::default(),
            subnet: SubnetSpec::default(),
            security_group: SecurityGroupSpec::default(),
        }
    }

    /// The owner of the VPC.
    pub fn vpc_owner(&self) -> Owner {
        Owner::new(&self.service, &self.vpc_component)
    }

    /// The owner of the subnet, its route table and internet gateway.
    pub fn subnet_owner(&self) -> Owner {
        Owner::new(&self.service, &self.subnet_component)
    }

    /// The owner of the security group.
    pub fn group_owner(&self) -> Owner {
        Owner::new(&self.service, &self.group_component)
    }
}

/// The network context as it is after [`Ec2::ensure_network`]: every output filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkOutputs {
    /// The region.
    pub region: String,
    /// The VPC.
    pub vpc: VpcInfo,
    /// The subnet.
    pub subnet: SubnetInfo,
    /// The security group.
    pub security_group: SecurityGroupInfo,
}

/// What [`Ec2::delete_network`] did to each part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkDeletion {
    /// The security group.
    pub security_group: Deletion,
    /// The subnet (with its route table and internet gateway, when dtk made them).
    pub subnet: Deletion,
    /// The VPC.
    pub vpc: Deletion,
}

impl Ec2 {
    // ----- the whole network -------------------------------------------------------------

    /// Makes the network context of `spec` exist (see the module docs for the scenarios)
    /// and returns it with every output filled.
    pub async fn ensure_network(&self, spec: &NetworkSpec) -> Result<NetworkOutputs, AwsError> {
        let mut vpc_spec = spec.vpc.clone();
        if let (Some(subnet_id), None) = (&spec.subnet.subnet_id, &vpc_spec.vpc_id) {
            // Scenario (a): the subnet names its VPC.
            let subnet = self
                .describe_subnet(subnet_id)
                .await?
                .ok_or_else(|| not_found(ResourceKind::Subnet, subnet_id))?;
            vpc_spec.vpc_id = subnet.vpc_id().map(str::to_owned);
        }
        let vpc = self.ensure_vpc(&spec.vpc_owner(), &vpc_spec).await?;
        let subnet = self
            .ensure_subnet(&spec.subnet_owner(), &vpc, &spec.subnet)
            .await?;
        let security_group = self
            .ensure_security_group(&spec.group_owner(), &vpc.vpc_id, &spec.security_group)
            .await?;
        Ok(NetworkOutputs {
            region: self.region.clone(),
            vpc,
            subnet,
            security_group,
        })
    }

    /// Deletes, in reverse order, the parts of `outputs` that dtk made for `spec.service`:
    /// the security group, the subnet with its route table and internet gateway, the VPC.
    /// What dtk did not make is left alone.
    pub async fn delete_network(
        &self,
        spec: &NetworkSpec,
        outputs: &NetworkOutputs,
    ) -> Result<NetworkDeletion, AwsError> {
        let security_group = self
            .delete_security_group(&spec.group_owner(), &outputs.security_group.group_id)
            .await?;
        let subnet = self
            .delete_subnet(&spec.subnet_owner(), &outputs.subnet.subnet_id)
            .await?;
        let vpc = self
            .delete_vpc(&spec.vpc_owner(), &outputs.vpc.vpc_id)
            .await?;
        Ok(NetworkDeletion {
            security_group,
            subnet,
            vpc,
        })
    }

    // ----- VPC ---------------------------------------------------------------------------

    /// Makes the VPC of `spec` exist: the given one, or the one made earlier for `owner`,
    /// or a new one.
    pub async fn ensure_vpc(&self, owner: &Owner, spec: &VpcSpec) -> Result<VpcInfo, AwsError> {
        if let Some(id) = &spec.vpc_id {
            let vpc = self
                .describe_vpc(id)
                .await?
                .ok_or_else(|| not_found(ResourceKind::Vpc, id))?;
            return vpc_info(&vpc, &owner.service);
        }
        let wanted = spec.cidr_block.unwrap_or(DEFAULT_VPC_CIDR);
        if let Some(vpc) = self.find_owned::<ec2::Vpc>(owner, &[]).await? {
            let info = vpc_info(&vpc, &owner.service)?;
            tracing::debug!(vpc_id = %info.vpc_id, "adopted the VPC made earlier");
            if info.cidr_block != wanted {
                return Err(AwsError::Conflict {
                    kind: ResourceKind::Vpc,
                    id: info.vpc_id,
                    reason: format!(
                        "was made with CIDR block {}, now {wanted} is asked for; a VPC's block \
                         cannot change (delete the target and converge again)",
                        info.cidr_block
                    ),
                });
            }
            self.wait_vpc_available(&info.vpc_id).await?;
            return Ok(info);
        }
        let resource = format!("vpc {wanted} of {}", owner.service);
        let out = {
            let _p = self.permit().await?;
            self.client
                .create_vpc()
                .cidr_block(wanted.to_string())
                .tag_specifications(tag_spec(ResourceType::Vpc, owner.tags(&owner.name())))
                .send()
                .await
                .map_err(|e| AwsError::api("CreateVpc", &resource, e))?
        };
        let vpc = out.vpc().ok_or(AwsError::Incomplete {
            operation: "CreateVpc",
            missing: "vpc",
        })?;
        let info = vpc_info(vpc, &owner.service)?;
        tracing::info!(vpc_id = %info.vpc_id, cidr = %wanted, "created VPC");
        self.wait_vpc_available(&info.vpc_id).await?;
        Ok(info)
    }

    /// The VPC `vpc_id` as it is, or `None` when it does not exist.
    pub async fn read_vpc(&self, owner: &Owner, vpc_id: &str) -> Result<Option<VpcInfo>, AwsError> {
        match self.describe_vpc(vpc_id).await? {
            Some(vpc) => Ok(Some(vpc_info(&vpc, &owner.service)?)),
            None => Ok(None),
        }
    }

    /// Deletes the VPC if dtk made it for `owner.service`, after whatever else dtk made for
    /// that service inside it (security groups, route tables, subnets, internet gateways:
    /// leftovers of an interrupted run).
    pub async fn delete_vpc(&self, owner: &Owner, vpc_id: &str) -> Result<Deletion, AwsError> {
        let Some(vpc) = self.describe_vpc(vpc_id).await? else {
            return Ok(Deletion::AlreadyGone);
        };
        if Ownership::from_tags(&tag_map(vpc.tags()), &owner.service) != Ownership::Managed {
            tracing::info!(vpc_id, "leaving alone a VPC dtk did not make");
            return Ok(Deletion::LeftAlone);
        }
        let in_vpc = [filter("vpc-id", vpc_id)];
        for g in self
            .of_service::<ec2::SecurityGroup>(&owner.service, &in_vpc)
            .await?
        {
            self.delete_group_now(g.id()).await?;
        }
        for t in self
            .of_service::<ec2::RouteTable>(&owner.service, &in_vpc)
            .await?
        {
            self.delete_route_table_now(&t).await?;
        }
        for s in self
            .of_service::<ec2::Subnet>(&owner.service, &in_vpc)
            .await?
        {
            self.delete_subnet_now(s.id()).await?;
        }
        let attached = [filter("attachment.vpc-id", vpc_id)];
        for g in self
            .of_service::<ec2::InternetGateway>(&owner.service, &attached)
            .await?
        {
            self.delete_gateway_now(&g).await?;
        }
        let resource = format!("vpc {vpc_id}");
        let resource = resource.as_str();
        let deleted = self
            .retry_dependency(|| async move {
                let _p = self.permit().await?;
                match self.client.delete_vpc().vpc_id(vpc_id).send().await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(AwsError::api("DeleteVpc", resource, e)),
                }
            })
            .await;
        gone_ok(deleted)?;
        tracing::info!(vpc_id, "deleted VPC");
        Ok(Deletion::Deleted)
    }
}
