//! Finding what dtk made by its tags, and the describe and delete primitives.

use aws_sdk_ec2::types::{self as ec2};

use crate::client::{Ec2, is_not_found};
use crate::error::{AwsError, ResourceKind};
use crate::tags::{Owner, Ownership, TAG_MANAGED, TAG_SERVICE, tag_filters, tag_map};

use super::*;

impl Ec2 {
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

    pub(super) async fn wait_vpc_available(&self, vpc_id: &str) -> Result<(), AwsError> {
        self.wait_for(&format!("vpc {vpc_id}"), "available", || async {
            let vpc = self.describe_vpc(vpc_id).await?;
            Ok(match vpc.as_ref().and_then(|v| v.state()) {
                Some(ec2::VpcState::Available) | None => Some(()),
                Some(_) => None,
            })
        })
        .await
    }

    pub(super) async fn describe_vpc(&self, vpc_id: &str) -> Result<Option<ec2::Vpc>, AwsError> {
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

    pub(super) async fn describe_group(
        &self,
        group_id: &str,
    ) -> Result<Option<ec2::SecurityGroup>, AwsError> {
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

    pub(super) async fn describe_subnets(
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

    pub(super) async fn describe_security_groups(
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

    pub(super) async fn describe_route_tables(
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

    pub(super) async fn describe_internet_gateways(
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

    pub(super) async fn describe_vpcs(
        &self,
        filters: &[ec2::Filter],
    ) -> Result<Vec<ec2::Vpc>, AwsError> {
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
    pub(super) async fn all_owned<R: Owned>(
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
    pub(super) async fn of_service<R: Owned>(
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
    pub(super) async fn find_owned<R: Owned>(
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

    pub(super) async fn delete_group_now(&self, group_id: &str) -> Result<(), AwsError> {
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

    pub(super) async fn delete_subnet_now(&self, subnet_id: &str) -> Result<(), AwsError> {
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

    pub(super) async fn delete_route_table_now(
        &self,
        table: &ec2::RouteTable,
    ) -> Result<(), AwsError> {
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

    pub(super) async fn delete_gateway_now(
        &self,
        gateway: &ec2::InternetGateway,
    ) -> Result<(), AwsError> {
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
pub(super) trait Owned: Sized {
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

pub(super) fn vpc_info(vpc: &ec2::Vpc, service: &str) -> Result<VpcInfo, AwsError> {
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

pub(super) fn not_found(kind: ResourceKind, id: &str) -> AwsError {
    AwsError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// `Ok(None)` for a "does not exist" answer, the error otherwise.
pub(super) fn absent<T>(err: AwsError) -> Result<Option<T>, AwsError> {
    if is_not_found(&err) {
        Ok(None)
    } else {
        Err(err)
    }
}

/// Success also when the thing to delete is gone already.
pub(super) fn gone_ok(r: Result<(), AwsError>) -> Result<(), AwsError> {
    match r {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

pub(super) fn describe_what(kind: &str, filters: &[ec2::Filter]) -> String {
    let parts: Vec<String> = filters
        .iter()
        .map(|f| format!("{}={}", f.name().unwrap_or("?"), f.values().join(",")))
        .collect();
    format!("{kind} where {}", parts.join(" "))
}
