//! Subnets and their internet route.

use aws_sdk_ec2::types::{self as ec2, AttributeBooleanValue, ResourceType};

use crate::cidr::Ipv4Cidr;
use crate::client::Ec2;
use crate::error::{AwsError, ResourceKind, SpecError};
use crate::tags::{Owner, Ownership, filter, tag_map, tag_spec};

use super::*;

impl Ec2 {
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

    pub(super) async fn find_or_create_subnet(
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
    pub(super) async fn ensure_internet_route(
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
    pub(super) async fn remove_internet_route(&self, owner: &Owner) -> Result<(), AwsError> {
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
}
