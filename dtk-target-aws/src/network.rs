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

use std::str::FromStr;

use aws_sdk_ec2::types::{self as ec2, AttributeBooleanValue, ResourceType};

use crate::cidr::Ipv4Cidr;
use crate::client::{Ec2, is_not_found};
use crate::error::{AwsError, ResourceKind, SpecError};
use crate::rules::SecurityGroupRule;
use crate::tags::{
    Owner, Ownership, TAG_MANAGED, TAG_SERVICE, filter, tag_filters, tag_map, tag_spec,
};

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

    // ----- subnet ------------------------------------------------------------------------

    /// Makes the subnet of `spec` exist in `vpc`: the given one (used as it is), or the one
    /// made earlier for `owner`, or an existing one with exactly the asked block (used as it
    /// is), or a new one. For a subnet dtk made, its public-address setting and its internet
    /// route are brought to what `spec` says.
    pub async fn ensure_subnet(
        &self,
        owner: &Owner,
        vpc: &VpcInfo,
        spec: &SubnetSpec,
    ) -> Result<SubnetInfo, AwsError> {
        let subnet = match &spec.subnet_id {
            Some(id) => {
                let s = self
                    .describe_subnet(id)
                    .await?
                    .ok_or_else(|| not_found(ResourceKind::Subnet, id))?;
                if s.vpc_id() != Some(vpc.vpc_id.as_str()) {
                    return Err(AwsError::Conflict {
                        kind: ResourceKind::Subnet,
                        id: id.clone(),
                        reason: format!(
                            "is in vpc {}, not in vpc {}",
                            s.vpc_id().unwrap_or("?"),
                            vpc.vpc_id
                        ),
                    });
                }
                s
            }
            None => self.find_or_create_subnet(owner, vpc, spec).await?,
        };
        let id = subnet
            .subnet_id()
            .ok_or(AwsError::Incomplete {
                operation: "DescribeSubnets",
                missing: "subnet id",
            })?
            .to_owned();
        if Ownership::from_tags(&tag_map(subnet.tags()), &owner.service) == Ownership::Managed {
            let public = spec
                .map_public_ip_on_launch
                .unwrap_or(spec.gateway == Gateway::Internet);
            if subnet.map_public_ip_on_launch() != Some(public) {
                let _p = self.permit().await?;
                self.client
                    .modify_subnet_attribute()
                    .subnet_id(&id)
                    .map_public_ip_on_launch(AttributeBooleanValue::builder().value(public).build())
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::api("ModifySubnetAttribute", format!("subnet {id}"), e)
                    })?;
            }
            match spec.gateway {
                Gateway::Internet => self.ensure_internet_route(owner, &vpc.vpc_id, &id).await?,
                Gateway::None => self.remove_internet_route(owner).await?,
            }
        }
        self.read_subnet(owner, &id)
            .await?
            .ok_or_else(|| not_found(ResourceKind::Subnet, &id))
    }

    /// The subnet `subnet_id` as it is, with its explicit route table and internet gateway,
    /// or `None` when it does not exist.
    pub async fn read_subnet(
        &self,
        owner: &Owner,
        subnet_id: &str,
    ) -> Result<Option<SubnetInfo>, AwsError> {
        let Some(s) = self.describe_subnet(subnet_id).await? else {
            return Ok(None);
        };
        let tables = self
            .describe_route_tables(&[filter("association.subnet-id", subnet_id)])
            .await?;
        let table = tables.first();
        let internet_gateway_id = table.and_then(|t| {
            t.routes()
                .iter()
                .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                .filter_map(|r| r.gateway_id())
                .find(|g| g.starts_with("igw-"))
                .map(str::to_owned)
        });
        let missing = |what| AwsError::Incomplete {
            operation: "DescribeSubnets",
            missing: what,
        };
        Ok(Some(SubnetInfo {
            subnet_id: subnet_id.to_owned(),
            vpc_id: s.vpc_id().ok_or(missing("vpc id"))?.to_owned(),
            availability_zone: s
                .availability_zone()
                .ok_or(missing("availability zone"))?
                .to_owned(),
            cidr_block: s.cidr_block().ok_or(missing("CIDR block"))?.parse()?,
            map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
            route_table_id: table.and_then(|t| t.route_table_id()).map(str::to_owned),
            internet_gateway_id,
            ownership: Ownership::from_tags(&tag_map(s.tags()), &owner.service),
        }))
    }

    /// Deletes what dtk made for `owner` around the subnet (its route table and internet
    /// gateway), then the subnet itself if dtk made it for `owner.service`.
    pub async fn delete_subnet(
        &self,
        owner: &Owner,
        subnet_id: &str,
    ) -> Result<Deletion, AwsError> {
        self.remove_internet_route(owner).await?;
        let Some(s) = self.describe_subnet(subnet_id).await? else {
            return Ok(Deletion::AlreadyGone);
        };
        if Ownership::from_tags(&tag_map(s.tags()), &owner.service) != Ownership::Managed {
            tracing::info!(subnet_id, "leaving alone a subnet dtk did not make");
            return Ok(Deletion::LeftAlone);
        }
        self.delete_subnet_now(subnet_id).await?;
        Ok(Deletion::Deleted)
    }

    async fn find_or_create_subnet(
        &self,
        owner: &Owner,
        vpc: &VpcInfo,
        spec: &SubnetSpec,
    ) -> Result<ec2::Subnet, AwsError> {
        let in_vpc = [filter("vpc-id", &vpc.vpc_id)];
        if let Some(s) = self.find_owned::<ec2::Subnet>(owner, &in_vpc).await? {
            let id = s.subnet_id().unwrap_or("?").to_owned();
            let cidr: Ipv4Cidr = s.cidr_block().unwrap_or("").parse()?;
            let conflict = |reason: String| AwsError::Conflict {
                kind: ResourceKind::Subnet,
                id: id.clone(),
                reason,
            };
            match (spec.cidr_block, spec.prefix_len) {
                (Some(want), _) if want != cidr => {
                    return Err(conflict(format!(
                        "was made with block {cidr}, now {want} is asked for; a subnet's block \
                         cannot change (delete it and converge again)"
                    )));
                }
                (None, Some(len)) if len != cidr.prefix_len() => {
                    return Err(conflict(format!(
                        "was made with block {cidr}, now length /{len} is asked for; a subnet's \
                         block cannot change (delete it and converge again)"
                    )));
                }
                _ => {}
            }
            tracing::debug!(subnet_id = %id, "adopted the subnet made earlier");
            return Ok(s);
        }
        let existing = self.describe_subnets(&in_vpc).await?;
        let taken: Vec<Ipv4Cidr> = existing
            .iter()
            .filter_map(|s| s.cidr_block()?.parse().ok())
            .collect();
        let cidr = match spec.cidr_block {
            Some(want) => {
                if let Some(same) = existing
                    .iter()
                    .find(|s| s.cidr_block() == Some(&want.to_string()))
                {
                    tracing::info!(subnet_id = ?same.subnet_id(), cidr = %want, "using the existing subnet with the asked block as it is");
                    return Ok(same.clone());
                }
                if !vpc.cidr_block.contains(&want) {
                    return Err(AwsError::Conflict {
                        kind: ResourceKind::Vpc,
                        id: vpc.vpc_id.clone(),
                        reason: format!(
                            "its block {} does not contain subnet block {want}",
                            vpc.cidr_block
                        ),
                    });
                }
                if let Some(other) = taken.iter().find(|t| t.overlaps(&want)) {
                    return Err(AwsError::Conflict {
                        kind: ResourceKind::Vpc,
                        id: vpc.vpc_id.clone(),
                        reason: format!("subnet block {want} overlaps its existing subnet {other}"),
                    });
                }
                want
            }
            None => {
                let len = spec
                    .prefix_len
                    .unwrap_or(DEFAULT_SUBNET_PREFIX_LEN.max(vpc.cidr_block.prefix_len()));
                if !(16..=28).contains(&len) {
                    return Err(SpecError::new(
                        "subnet length",
                        len.to_string(),
                        "EC2 subnets are /16 to /28",
                    )
                    .into());
                }
                vpc.cidr_block
                    .first_free(len, &taken)
                    .ok_or_else(|| AwsError::NoFreeCidr {
                        vpc_id: vpc.vpc_id.clone(),
                        vpc_cidr: vpc.cidr_block.to_string(),
                        prefix_len: len,
                    })?
            }
        };
        let resource = format!("subnet {cidr} in vpc {}", vpc.vpc_id);
        let out = {
            let _p = self.permit().await?;
            let mut req = self
                .client
                .create_subnet()
                .vpc_id(&vpc.vpc_id)
                .cidr_block(cidr.to_string())
                .tag_specifications(tag_spec(ResourceType::Subnet, owner.tags(&owner.name())));
            if let Some(az) = &spec.availability_zone {
                req = req.availability_zone(az);
            }
            req.send()
                .await
                .map_err(|e| AwsError::api("CreateSubnet", &resource, e))?
        };
        let subnet = out
            .subnet()
            .ok_or(AwsError::Incomplete {
                operation: "CreateSubnet",
                missing: "subnet",
            })?
            .clone();
        tracing::info!(subnet_id = ?subnet.subnet_id(), %cidr, "created subnet");
        Ok(subnet)
    }

    /// Makes `subnet_id` route `0.0.0.0/0` to an internet gateway of the VPC: the one
    /// attached already, or the one made earlier for `owner`, or a new one; through a route
    /// table made for `owner`.
    async fn ensure_internet_route(
        &self,
        owner: &Owner,
        vpc_id: &str,
        subnet_id: &str,
    ) -> Result<(), AwsError> {
        let attached = self
            .describe_internet_gateways(&[filter("attachment.vpc-id", vpc_id)])
            .await?;
        let igw_id = match attached.first().and_then(|g| g.internet_gateway_id()) {
            Some(id) => id.to_owned(),
            None => {
                let igw_id = match self.find_owned::<ec2::InternetGateway>(owner, &[]).await? {
                    Some(g) => g.internet_gateway_id().unwrap_or_default().to_owned(),
                    None => {
                        let _p = self.permit().await?;
                        let out = self
                            .client
                            .create_internet_gateway()
                            .tag_specifications(tag_spec(
                                ResourceType::InternetGateway,
                                owner.tags(&owner.name()),
                            ))
                            .send()
                            .await
                            .map_err(|e| {
                                AwsError::api(
                                    "CreateInternetGateway",
                                    format!("internet gateway for vpc {vpc_id}"),
                                    e,
                                )
                            })?;
                        let id = out
                            .internet_gateway()
                            .and_then(|g| g.internet_gateway_id())
                            .ok_or(AwsError::Incomplete {
                                operation: "CreateInternetGateway",
                                missing: "gateway id",
                            })?
                            .to_owned();
                        tracing::info!(internet_gateway_id = %id, "created internet gateway");
                        id
                    }
                };
                let _p = self.permit().await?;
                self.client
                    .attach_internet_gateway()
                    .internet_gateway_id(&igw_id)
                    .vpc_id(vpc_id)
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::api(
                            "AttachInternetGateway",
                            format!("internet gateway {igw_id} to vpc {vpc_id}"),
                            e,
                        )
                    })?;
                igw_id
            }
        };
        let table = match self
            .find_owned::<ec2::RouteTable>(owner, &[filter("vpc-id", vpc_id)])
            .await?
        {
            Some(t) => t,
            None => {
                let _p = self.permit().await?;
                let out = self
                    .client
                    .create_route_table()
                    .vpc_id(vpc_id)
                    .tag_specifications(tag_spec(
                        ResourceType::RouteTable,
                        owner.tags(&owner.name()),
                    ))
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::api(
                            "CreateRouteTable",
                            format!("route table in vpc {vpc_id}"),
                            e,
                        )
                    })?;
                let t = out
                    .route_table()
                    .ok_or(AwsError::Incomplete {
                        operation: "CreateRouteTable",
                        missing: "route table",
                    })?
                    .clone();
                tracing::info!(route_table_id = ?t.route_table_id(), "created route table");
                t
            }
        };
        let rtb_id = table.route_table_id().ok_or(AwsError::Incomplete {
            operation: "DescribeRouteTables",
            missing: "route table id",
        })?;
        let resource = format!("route table {rtb_id}");
        let resource = resource.as_str();
        let default_route = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
        match default_route.map(|r| r.gateway_id()) {
            Some(Some(g)) if g == igw_id => {}
            Some(_) => {
                let _p = self.permit().await?;
                self.client
                    .replace_route()
                    .route_table_id(rtb_id)
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(&igw_id)
                    .send()
                    .await
                    .map_err(|e| AwsError::api("ReplaceRoute", resource, e))?;
            }
            None => {
                let _p = self.permit().await?;
                self.client
                    .create_route()
                    .route_table_id(rtb_id)
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(&igw_id)
                    .send()
                    .await
                    .map_err(|e| AwsError::api("CreateRoute", resource, e))?;
            }
        }
        if !table
            .associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet_id))
        {
            let _p = self.permit().await?;
            self.client
                .associate_route_table()
                .route_table_id(rtb_id)
                .subnet_id(subnet_id)
                .send()
                .await
                .map_err(|e| AwsError::api("AssociateRouteTable", resource, e))?;
        }
        Ok(())
    }

    /// Deletes the route tables and internet gateways dtk made for `owner`. A gateway that
    /// a route table dtk did not make still routes to is left alone.
    async fn remove_internet_route(&self, owner: &Owner) -> Result<(), AwsError> {
        for t in self.all_owned::<ec2::RouteTable>(owner, &[]).await? {
            self.delete_route_table_now(&t).await?;
        }
        for g in self.all_owned::<ec2::InternetGateway>(owner, &[]).await? {
            let Some(id) = g.internet_gateway_id() else {
                continue;
            };
            let users = self
                .describe_route_tables(&[filter("route.gateway-id", id)])
                .await?;
            if users.iter().any(|t| {
                Ownership::from_tags(&tag_map(t.tags()), &owner.service) != Ownership::Managed
            }) {
                tracing::info!(
                    internet_gateway_id = id,
                    "leaving alone an internet gateway that others route to"
                );
                continue;
            }
            self.delete_gateway_now(&g).await?;
        }
        Ok(())
    }

    // ----- security group ----------------------------------------------------------------

    /// Makes the security group of `spec` exist in `vpc_id`: the given one (used as it is),
    /// or the one made earlier for `owner`, or an existing one of the asked name (used as
    /// it is), or a new one. The rules of a group dtk made are brought to `spec.rules`.
    pub async fn ensure_security_group(
        &self,
        owner: &Owner,
        vpc_id: &str,
        spec: &SecurityGroupSpec,
    ) -> Result<SecurityGroupInfo, AwsError> {
        let in_vpc = filter("vpc-id", vpc_id);
        let group = if let Some(id) = &spec.group_id {
            let g = self
                .describe_group(id)
                .await?
                .ok_or_else(|| not_found(ResourceKind::SecurityGroup, id))?;
            if g.vpc_id() != Some(vpc_id) {
                return Err(AwsError::Conflict {
                    kind: ResourceKind::SecurityGroup,
                    id: id.clone(),
                    reason: format!(
                        "is in vpc {}, not in vpc {vpc_id}",
                        g.vpc_id().unwrap_or("?")
                    ),
                });
            }
            g
        } else if let Some(g) = self
            .find_owned::<ec2::SecurityGroup>(owner, std::slice::from_ref(&in_vpc))
            .await?
        {
            tracing::debug!(group_id = ?g.group_id(), "adopted the security group made earlier");
            g
        } else {
            let name = spec.group_name.clone().unwrap_or_else(|| owner.name());
            let same_name = self
                .describe_security_groups(&[in_vpc, filter("group-name", &name)])
                .await?;
            if let Some(g) = same_name.into_iter().next() {
                tracing::info!(group_id = ?g.group_id(), name, "using the existing security group of that name as it is");
                g
            } else {
                let description = spec
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("dtk: {} {}", owner.service, owner.component));
                let id = {
                    let _p = self.permit().await?;
                    self.client
                        .create_security_group()
                        .group_name(&name)
                        .description(description)
                        .vpc_id(vpc_id)
                        .tag_specifications(tag_spec(
                            ResourceType::SecurityGroup,
                            owner.tags(&name),
                        ))
                        .send()
                        .await
                        .map_err(|e| {
                            AwsError::api(
                                "CreateSecurityGroup",
                                format!("security group {name} in vpc {vpc_id}"),
                                e,
                            )
                        })?
                        .group_id()
                        .ok_or(AwsError::Incomplete {
                            operation: "CreateSecurityGroup",
                            missing: "group id",
                        })?
                        .to_owned()
                };
                tracing::info!(group_id = %id, name, "created security group");
                self.describe_group(&id)
                    .await?
                    .ok_or_else(|| not_found(ResourceKind::SecurityGroup, &id))?
            }
        };
        let id = group
            .group_id()
            .ok_or(AwsError::Incomplete {
                operation: "DescribeSecurityGroups",
                missing: "group id",
            })?
            .to_owned();
        if Ownership::from_tags(&tag_map(group.tags()), &owner.service) == Ownership::Managed {
            self.reconcile_rules(&group, &id, &spec.rules).await?;
        }
        self.read_security_group(owner, &id)
            .await?
            .ok_or_else(|| not_found(ResourceKind::SecurityGroup, &id))
    }

    /// The security group `group_id` as it is, or `None` when it does not exist.
    pub async fn read_security_group(
        &self,
        owner: &Owner,
        group_id: &str,
    ) -> Result<Option<SecurityGroupInfo>, AwsError> {
        let Some(g) = self.describe_group(group_id).await? else {
            return Ok(None);
        };
        let missing = |what| AwsError::Incomplete {
            operation: "DescribeSecurityGroups",
            missing: what,
        };
        Ok(Some(SecurityGroupInfo {
            group_id: group_id.to_owned(),
            group_name: g.group_name().ok_or(missing("group name"))?.to_owned(),
            vpc_id: g.vpc_id().ok_or(missing("vpc id"))?.to_owned(),
            rules: SecurityGroupRule::from_permissions(g.ip_permissions(), group_id),
            ownership: Ownership::from_tags(&tag_map(g.tags()), &owner.service),
        }))
    }

    /// Deletes the security group if dtk made it for `owner.service`.
    pub async fn delete_security_group(
        &self,
        owner: &Owner,
        group_id: &str,
    ) -> Result<Deletion, AwsError> {
        let Some(g) = self.describe_group(group_id).await? else {
            return Ok(Deletion::AlreadyGone);
        };
        if Ownership::from_tags(&tag_map(g.tags()), &owner.service) != Ownership::Managed {
            tracing::info!(group_id, "leaving alone a security group dtk did not make");
            return Ok(Deletion::LeftAlone);
        }
        self.delete_group_now(group_id).await?;
        Ok(Deletion::Deleted)
    }

    async fn reconcile_rules(
        &self,
        group: &ec2::SecurityGroup,
        group_id: &str,
        wanted: &[SecurityGroupRule],
    ) -> Result<(), AwsError> {
        let current = SecurityGroupRule::from_permissions(group.ip_permissions(), group_id);
        let add: Vec<_> = wanted
            .iter()
            .filter(|r| !current.contains(r))
            .map(|r| r.to_permission(group_id))
            .collect();
        let remove: Vec<_> = current
            .iter()
            .filter(|r| !wanted.contains(r))
            .map(|r| r.to_permission(group_id))
            .collect();
        let resource = format!("security group {group_id}");
        let resource = resource.as_str();
        if !remove.is_empty() {
            let _p = self.permit().await?;
            self.client
                .revoke_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(Some(remove))
                .send()
                .await
                .map_err(|e| AwsError::api("RevokeSecurityGroupIngress", resource, e))?;
        }
        if !add.is_empty() {
            let _p = self.permit().await?;
            self.client
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(Some(add))
                .send()
                .await
                .map_err(|e| AwsError::api("AuthorizeSecurityGroupIngress", resource, e))?;
        }
        Ok(())
    }

    // ----- lookups by owner --------------------------------------------------------------

    /// The id of the VPC made earlier for `owner`, if any.
    pub async fn find_vpc(&self, owner: &Owner) -> Result<Option<String>, AwsError> {
        Ok(self
            .find_owned::<ec2::Vpc>(owner, &[])
            .await?
            .map(|v| v.id().to_owned()))
    }

    /// The id of the subnet made earlier for `owner`, if any.
    pub async fn find_subnet(&self, owner: &Owner) -> Result<Option<String>, AwsError> {
        Ok(self
            .find_owned::<ec2::Subnet>(owner, &[])
            .await?
            .map(|v| v.id().to_owned()))
    }

    /// The id of the security group made earlier for `owner`, if any.
    pub async fn find_security_group(&self, owner: &Owner) -> Result<Option<String>, AwsError> {
        Ok(self
            .find_owned::<ec2::SecurityGroup>(owner, &[])
            .await?
            .map(|v| v.id().to_owned()))
    }

    // ----- describe and delete primitives ------------------------------------------------

    async fn wait_vpc_available(&self, vpc_id: &str) -> Result<(), AwsError> {
        self.wait_for(&format!("vpc {vpc_id}"), "available", || async {
            let vpc = self.describe_vpc(vpc_id).await?;
            Ok(match vpc.as_ref().and_then(|v| v.state()) {
                Some(ec2::VpcState::Available) | None => Some(()),
                Some(_) => None,
            })
        })
        .await
    }

    async fn describe_vpc(&self, vpc_id: &str) -> Result<Option<ec2::Vpc>, AwsError> {
        let _p = self.permit().await?;
        match self.client.describe_vpcs().vpc_ids(vpc_id).send().await {
            Ok(out) => Ok(out.vpcs().first().cloned()),
            Err(e) => absent(AwsError::api("DescribeVpcs", format!("vpc {vpc_id}"), e)),
        }
    }

    pub(crate) async fn describe_subnet(
        &self,
        subnet_id: &str,
    ) -> Result<Option<ec2::Subnet>, AwsError> {
        let _p = self.permit().await?;
        match self
            .client
            .describe_subnets()
            .subnet_ids(subnet_id)
            .send()
            .await
        {
            Ok(out) => Ok(out.subnets().first().cloned()),
            Err(e) => absent(AwsError::api(
                "DescribeSubnets",
                format!("subnet {subnet_id}"),
                e,
            )),
        }
    }

    async fn describe_group(&self, group_id: &str) -> Result<Option<ec2::SecurityGroup>, AwsError> {
        let _p = self.permit().await?;
        match self
            .client
            .describe_security_groups()
            .group_ids(group_id)
            .send()
            .await
        {
            Ok(out) => Ok(out.security_groups().first().cloned()),
            Err(e) => absent(AwsError::api(
                "DescribeSecurityGroups",
                format!("security group {group_id}"),
                e,
            )),
        }
    }

    async fn describe_subnets(
        &self,
        filters: &[ec2::Filter],
    ) -> Result<Vec<ec2::Subnet>, AwsError> {
        let _p = self.permit().await?;
        let out = self
            .client
            .describe_subnets()
            .set_filters(Some(filters.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeSubnets", describe_what("subnets", filters), e))?;
        Ok(out.subnets().to_vec())
    }

    async fn describe_security_groups(
        &self,
        filters: &[ec2::Filter],
    ) -> Result<Vec<ec2::SecurityGroup>, AwsError> {
        let _p = self.permit().await?;
        let out = self
            .client
            .describe_security_groups()
            .set_filters(Some(filters.to_vec()))
            .send()
            .await
            .map_err(|e| {
                AwsError::api(
                    "DescribeSecurityGroups",
                    describe_what("security groups", filters),
                    e,
                )
            })?;
        Ok(out.security_groups().to_vec())
    }

    async fn describe_route_tables(
        &self,
        filters: &[ec2::Filter],
    ) -> Result<Vec<ec2::RouteTable>, AwsError> {
        let _p = self.permit().await?;
        let out = self
            .client
            .describe_route_tables()
            .set_filters(Some(filters.to_vec()))
            .send()
            .await
            .map_err(|e| {
                AwsError::api(
                    "DescribeRouteTables",
                    describe_what("route tables", filters),
                    e,
                )
            })?;
        Ok(out.route_tables().to_vec())
    }

    async fn describe_internet_gateways(
        &self,
        filters: &[ec2::Filter],
    ) -> Result<Vec<ec2::InternetGateway>, AwsError> {
        let _p = self.permit().await?;
        let out = self
            .client
            .describe_internet_gateways()
            .set_filters(Some(filters.to_vec()))
            .send()
            .await
            .map_err(|e| {
                AwsError::api(
                    "DescribeInternetGateways",
                    describe_what("internet gateways", filters),
                    e,
                )
            })?;
        Ok(out.internet_gateways().to_vec())
    }

    async fn describe_vpcs(&self, filters: &[ec2::Filter]) -> Result<Vec<ec2::Vpc>, AwsError> {
        let _p = self.permit().await?;
        let out = self
            .client
            .describe_vpcs()
            .set_filters(Some(filters.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeVpcs", describe_what("vpcs", filters), e))?;
        Ok(out.vpcs().to_vec())
    }

    /// Every resource of type `R` made for `owner` (and matching `extra`), by id.
    async fn all_owned<R: Owned>(
        &self,
        owner: &Owner,
        extra: &[ec2::Filter],
    ) -> Result<Vec<R>, AwsError> {
        let mut filters = owner.filters();
        filters.extend_from_slice(extra);
        let mut found = R::describe(self, &filters).await?;
        found.retain(|r| owner.made(&tag_map(r.tags())));
        found.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(found)
    }

    /// Every resource of type `R` dtk made for `service` (any component), matching `extra`.
    async fn of_service<R: Owned>(
        &self,
        service: &str,
        extra: &[ec2::Filter],
    ) -> Result<Vec<R>, AwsError> {
        let mut filters = tag_filters(&[(TAG_MANAGED, "true"), (TAG_SERVICE, service)]);
        filters.extend_from_slice(extra);
        let mut found = R::describe(self, &filters).await?;
        found.retain(|r| Ownership::from_tags(&tag_map(r.tags()), service) == Ownership::Managed);
        Ok(found)
    }

    /// The resource of type `R` made for `owner` (with `extra` filters), if any; of several
    /// (only a race of two runs makes several), the one with the lowest id.
    async fn find_owned<R: Owned>(
        &self,
        owner: &Owner,
        extra: &[ec2::Filter],
    ) -> Result<Option<R>, AwsError> {
        let found = self.all_owned::<R>(owner, extra).await?;
        if found.len() > 1 {
            tracing::warn!(
                service = %owner.service,
                component = %owner.component,
                ids = ?found.iter().map(|r| r.id().to_owned()).collect::<Vec<_>>(),
                "several resources carry the same dtk tags; using the first"
            );
        }
        Ok(found.into_iter().next())
    }

    async fn delete_group_now(&self, group_id: &str) -> Result<(), AwsError> {
        let resource = format!("security group {group_id}");
        let resource = resource.as_str();
        let r = self
            .retry_dependency(|| async move {
                let _p = self.permit().await?;
                match self
                    .client
                    .delete_security_group()
                    .group_id(group_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(AwsError::api("DeleteSecurityGroup", resource, e)),
                }
            })
            .await;
        gone_ok(r)?;
        tracing::info!(group_id, "deleted security group");
        Ok(())
    }

    async fn delete_subnet_now(&self, subnet_id: &str) -> Result<(), AwsError> {
        let resource = format!("subnet {subnet_id}");
        let resource = resource.as_str();
        let r = self
            .retry_dependency(|| async move {
                let _p = self.permit().await?;
                match self
                    .client
                    .delete_subnet()
                    .subnet_id(subnet_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(AwsError::api("DeleteSubnet", resource, e)),
                }
            })
            .await;
        gone_ok(r)?;
        tracing::info!(subnet_id, "deleted subnet");
        Ok(())
    }

    async fn delete_route_table_now(&self, table: &ec2::RouteTable) -> Result<(), AwsError> {
        let Some(rtb_id) = table.route_table_id() else {
            return Ok(());
        };
        let resource = format!("route table {rtb_id}");
        let resource = resource.as_str();
        for a in table.associations() {
            if a.main() == Some(true) {
                continue;
            }
            if let Some(assoc) = a.route_table_association_id() {
                let _p = self.permit().await?;
                let r = self
                    .client
                    .disassociate_route_table()
                    .association_id(assoc)
                    .send()
                    .await
                    .map_err(|e| AwsError::api("DisassociateRouteTable", resource, e));
                gone_ok(r.map(|_| ()))?;
            }
        }
        let r = self
            .retry_dependency(|| async move {
                let _p = self.permit().await?;
                match self
                    .client
                    .delete_route_table()
                    .route_table_id(rtb_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(AwsError::api("DeleteRouteTable", resource, e)),
                }
            })
            .await;
        gone_ok(r)?;
        tracing::info!(route_table_id = rtb_id, "deleted route table");
        Ok(())
    }

    async fn delete_gateway_now(&self, gateway: &ec2::InternetGateway) -> Result<(), AwsError> {
        let Some(igw_id) = gateway.internet_gateway_id() else {
            return Ok(());
        };
        let resource = format!("internet gateway {igw_id}");
        let resource = resource.as_str();
        for a in gateway.attachments() {
            let Some(vpc_id) = a.vpc_id() else { continue };
            let r = self
                .retry_dependency(|| async move {
                    let _p = self.permit().await?;
                    match self
                        .client
                        .detach_internet_gateway()
                        .internet_gateway_id(igw_id)
                        .vpc_id(vpc_id)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) => Err(AwsError::api("DetachInternetGateway", resource, e)),
                    }
                })
                .await;
            gone_ok(r)?;
        }
        let _p = self.permit().await?;
        let r = self
            .client
            .delete_internet_gateway()
            .internet_gateway_id(igw_id)
            .send()
            .await
            .map_err(|e| AwsError::api("DeleteInternetGateway", resource, e));
        gone_ok(r.map(|_| ()))?;
        tracing::info!(internet_gateway_id = igw_id, "deleted internet gateway");
        Ok(())
    }
}

/// An EC2 resource that can be found by its dtk tags.
trait Owned: Sized {
    fn id(&self) -> &str;
    fn tags(&self) -> &[ec2::Tag];
    async fn describe(ec2: &Ec2, filters: &[ec2::Filter]) -> Result<Vec<Self>, AwsError>;
}

impl Owned for ec2::Vpc {
    fn tags(&self) -> &[ec2::Tag] {
        ec2::Vpc::tags(self)
    }
    fn id(&self) -> &str {
        self.vpc_id().unwrap_or_default()
    }
    async fn describe(ec2: &Ec2, filters: &[ec2::Filter]) -> Result<Vec<Self>, AwsError> {
        ec2.describe_vpcs(filters).await
    }
}

impl Owned for ec2::Subnet {
    fn tags(&self) -> &[ec2::Tag] {
        ec2::Subnet::tags(self)
    }
    fn id(&self) -> &str {
        self.subnet_id().unwrap_or_default()
    }
    async fn describe(ec2: &Ec2, filters: &[ec2::Filter]) -> Result<Vec<Self>, AwsError> {
        ec2.describe_subnets(filters).await
    }
}

impl Owned for ec2::SecurityGroup {
    fn tags(&self) -> &[ec2::Tag] {
        ec2::SecurityGroup::tags(self)
    }
    fn id(&self) -> &str {
        self.group_id().unwrap_or_default()
    }
    async fn describe(ec2: &Ec2, filters: &[ec2::Filter]) -> Result<Vec<Self>, AwsError> {
        ec2.describe_security_groups(filters).await
    }
}

impl Owned for ec2::InternetGateway {
    fn tags(&self) -> &[ec2::Tag] {
        ec2::InternetGateway::tags(self)
    }
    fn id(&self) -> &str {
        self.internet_gateway_id().unwrap_or_default()
    }
    async fn describe(ec2: &Ec2, filters: &[ec2::Filter]) -> Result<Vec<Self>, AwsError> {
        ec2.describe_internet_gateways(filters).await
    }
}

impl Owned for ec2::RouteTable {
    fn tags(&self) -> &[ec2::Tag] {
        ec2::RouteTable::tags(self)
    }
    fn id(&self) -> &str {
        self.route_table_id().unwrap_or_default()
    }
    async fn describe(ec2: &Ec2, filters: &[ec2::Filter]) -> Result<Vec<Self>, AwsError> {
        ec2.describe_route_tables(filters).await
    }
}

fn vpc_info(vpc: &ec2::Vpc, service: &str) -> Result<VpcInfo, AwsError> {
    let missing = |what| AwsError::Incomplete {
        operation: "DescribeVpcs",
        missing: what,
    };
    Ok(VpcInfo {
        vpc_id: vpc.vpc_id().ok_or(missing("vpc id"))?.to_owned(),
        cidr_block: vpc.cidr_block().ok_or(missing("CIDR block"))?.parse()?,
        ownership: Ownership::from_tags(&tag_map(vpc.tags()), service),
    })
}

fn not_found(kind: ResourceKind, id: &str) -> AwsError {
    AwsError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// `Ok(None)` for a "does not exist" answer, the error otherwise.
fn absent<T>(err: AwsError) -> Result<Option<T>, AwsError> {
    if is_not_found(&err) {
        Ok(None)
    } else {
        Err(err)
    }
}

/// Success also when the thing to delete is gone already.
fn gone_ok(r: Result<(), AwsError>) -> Result<(), AwsError> {
    match r {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

fn describe_what(kind: &str, filters: &[ec2::Filter]) -> String {
    let parts: Vec<String> = filters
        .iter()
        .map(|f| format!("{}={}", f.name().unwrap_or("?"), f.values().join(",")))
        .collect();
    format!("{kind} where {}", parts.join(" "))
}
