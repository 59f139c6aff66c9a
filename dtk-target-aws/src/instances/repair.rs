//! Bringing an instance back to what its node asks, in place: started when it was
//! stopped, its type changed (stop, modify, start), its security groups and tags
//! restored. What cannot change in place (its image, its subnet, its key pair) is the
//! provider's to replace: see `AwsProvider::replace_on_change`.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{self as ec2, Tag};

use super::{InstanceInfo, InstanceState};
use crate::client::Ec2;
use crate::error::{AwsError, ResourceKind};

/// What an instance should be, as far as it can change in place.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InstanceTarget {
    /// Its instance type.
    pub instance_type: String,
    /// Its security groups (empty: left as they are).
    pub security_group_ids: Vec<String>,
    /// Tags it must carry (others are left alone).
    pub tags: BTreeMap<String, String>,
}

impl Ec2 {
    /// Makes instance `id` run as `target` asks, in place, and waits until it runs: a
    /// stopped instance is started; another type is set with stop, modify, start; other
    /// security groups are set; missing or changed tags are written. Fails when the
    /// instance is gone.
    pub async fn reconcile_instance(
        &self,
        id: &str,
        target: &InstanceTarget,
    ) -> Result<InstanceInfo, AwsError> {
        let info = self
            .read_instance(id)
            .await?
            .ok_or_else(|| AwsError::Conflict {
                kind: ResourceKind::Instance,
                id: id.to_owned(),
                reason: "is gone (terminated, or never existed)".to_owned(),
            })?;
        self.reconcile_described(info, target).await
    }

    /// [`Ec2::reconcile_instance`] for an instance as a describe just answered it (one
    /// just launched, or read): it is not read again. When it already is as `target`
    /// asks and running, this sends no request at all; otherwise it is read again after
    /// the changes, as they leave it.
    pub async fn reconcile_described(
        &self,
        info: InstanceInfo,
        target: &InstanceTarget,
    ) -> Result<InstanceInfo, AwsError> {
        let id = info.instance_id.as_str();
        let what = format!("instance {id}");
        let mut changed = false;
        if !target.instance_type.is_empty() && info.instance_type != target.instance_type {
            changed = true;
            tracing::info!(instance_id = id, from = %info.instance_type, to = %target.instance_type, "changing the instance type");
            if !matches!(info.state, InstanceState::Stopped) {
                self.stop_and_wait(id).await?;
            }
            let _p = self.permit().await?;
            self.client
                .modify_instance_attribute()
                .instance_id(id)
                .instance_type(
                    ec2::AttributeValue::builder()
                        .value(&target.instance_type)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| AwsError::api("ModifyInstanceAttribute", &what, e))?;
        }
        let mut groups = target.security_group_ids.clone();
        groups.sort();
        groups.dedup();
        if !groups.is_empty() && groups != info.security_group_ids {
            changed = true;
            tracing::info!(instance_id = id, ?groups, "setting the security groups");
            let _p = self.permit().await?;
            self.client
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(groups))
                .send()
                .await
                .map_err(|e| AwsError::api("ModifyInstanceAttribute", &what, e))?;
        }
        let missing: BTreeMap<String, String> = target
            .tags
            .iter()
            .filter(|(k, v)| info.tags.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        changed |= !missing.is_empty();
        self.tag_resource(id, &missing).await?;
        // Whatever state it is in now (stopped for a resize, or stopped all along).
        let now = if changed {
            self.read_instance(id).await?
        } else {
            Some(info.clone())
        };
        match now {
            Some(i) if i.state == InstanceState::Running => return Ok(i),
            Some(i) => self.start_stopped(&[&i]).await?,
            None => {}
        }
        self.wait_running(std::slice::from_ref(&info.instance_id))
            .await?
            .pop()
            .ok_or(AwsError::Incomplete {
                operation: "DescribeInstances",
                missing: "instance",
            })
    }

    /// Writes `tags` on resource `id` (an instance, a VPC, a subnet, a group).
    pub async fn tag_resource(
        &self,
        id: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        if tags.is_empty() {
            return Ok(());
        }
        let _p = self.permit().await?;
        self.client
            .create_tags()
            .resources(id)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| AwsError::api("CreateTags", format!("resource {id}"), e))?;
        Ok(())
    }

    /// Stops instance `id` and waits until it is stopped.
    async fn stop_and_wait(&self, id: &str) -> Result<(), AwsError> {
        let what = format!("instance {id}");
        {
            let _p = self.permit().await?;
            self.client
                .stop_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| AwsError::api("StopInstances", &what, e))?;
        }
        self.wait_for(&what, "stopped", || async {
            match self.read_instance(id).await? {
                Some(i) => Ok((i.state == InstanceState::Stopped).then_some(())),
                None => Err(AwsError::Conflict {
                    kind: ResourceKind::Instance,
                    id: id.to_owned(),
                    reason: "is gone while waiting for it to stop".to_owned(),
                }),
            }
        })
        .await
    }
}
