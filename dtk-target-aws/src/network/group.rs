//! Security groups and their rules.

use aws_sdk_ec2::types::{self as ec2, ResourceType};

use crate::client::Ec2;
use crate::error::{AwsError, ResourceKind};
use crate::rules::SecurityGroupRule;
use crate::tags::{Owner, Ownership, filter, tag_map, tag_spec};

use super::*;

impl Ec2 {
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

    pub(super) async fn reconcile_rules(
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
}
