//! EC2 instances of `aws/ec2`'s `node`: one per node, or `cardinality` per node group.
//!
//! Two guards keep a retried or resumed run from making a duplicate. Every instance is
//! tagged atomically by RunInstances (`dtk:service`, `dtk:node`, `dtk:index`), and the
//! instances a node has are found by these tags before any is launched (adoption); and
//! RunInstances carries a `ClientToken` derived from the caller's idempotency key, the
//! node and the member index, so EC2 itself answers a repeated request with the instance
//! it launched the first time, even when describe does not show that instance yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aws_sdk_ec2::types::{self as ec2, InstanceStateName, InstanceType, ResourceType};
use sha2::{Digest, Sha256};

mod repair;

pub use repair::InstanceTarget;

use crate::client::{Ec2, is_not_found};
use crate::error::{AwsError, ResourceKind};
use crate::network::Deletion;
use crate::tags::{
    TAG_INDEX, TAG_MANAGED, TAG_NAME, TAG_NODE, TAG_SERVICE, tag_filters, tag_map, tag_spec,
    tags_match,
};

/// What the instances of a node should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The service instance, in the `dtk:service` tag.
    pub service: String,
    /// The node or node group, in the `dtk:node` tag.
    pub node: String,
    /// The AMI id (see [`crate::ImageMap::resolve`]).
    pub image_id: String,
    /// The instance type, e.g. `t3.small`.
    pub instance_type: String,
    /// The subnet to launch in.
    pub subnet_id: String,
    /// The security groups of the instances.
    pub security_group_ids: Vec<String>,
    /// The key pair to install, if any.
    pub key_name: Option<String>,
    /// More tags (the node's `tags` attribute); dtk's own tags win over these.
    pub tags: BTreeMap<String, String>,
}

/// The state of an instance, as EC2 names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InstanceState {
    /// `pending`: launching.
    Pending,
    /// `running`.
    Running,
    /// `stopping`.
    Stopping,
    /// `stopped`.
    Stopped,
    /// `shutting-down`: being terminated.
    ShuttingDown,
    /// `terminated`.
    Terminated,
    /// A state this crate does not know.
    Other(String),
}

impl InstanceState {
    /// Whether the instance exists for dtk's purposes: not terminated nor being terminated.
    pub fn is_live(&self) -> bool {
        !matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }

    /// The state as EC2 writes it, e.g. `running`.
    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Other(s) => s,
        }
    }

    fn from_ec2(state: Option<&InstanceStateName>) -> Self {
        match state {
            Some(InstanceStateName::Pending) => InstanceState::Pending,
            Some(InstanceStateName::Running) => InstanceState::Running,
            Some(InstanceStateName::Stopping) => InstanceState::Stopping,
            Some(InstanceStateName::Stopped) => InstanceState::Stopped,
            Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
            Some(InstanceStateName::Terminated) => InstanceState::Terminated,
            Some(other) => InstanceState::Other(other.as_str().to_owned()),
            None => InstanceState::Other("unknown".to_owned()),
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance as it is: `aws/ec2`'s node outputs, and what drift checks need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Its id.
    pub instance_id: String,
    /// The node it is (`dtk:node`), empty for an instance dtk did not tag.
    pub node: String,
    /// Its index in the node group (`dtk:index`), 1 for a single node.
    pub index: u32,
    /// Its private IPv4 address, once it has one.
    pub private_ip_address: Option<String>,
    /// Its public IPv4 address, if it has one.
    pub public_ip_address: Option<String>,
    /// Its state.
    pub state: InstanceState,
    /// Its AMI id.
    pub image_id: String,
    /// Its instance type.
    pub instance_type: String,
    /// Its subnet.
    pub subnet_id: Option<String>,
    /// Its availability zone.
    pub availability_zone: Option<String>,
    /// Its security groups' ids, sorted.
    pub security_group_ids: Vec<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// What [`Ec2::ensure_node_group`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeGroupReport {
    /// The members, by index (1..=cardinality), running.
    pub members: Vec<InstanceInfo>,
    /// The ids of the instances launched by this call.
    pub launched: Vec<String>,
    /// The ids of the instances terminated by this call (extras, highest index first).
    pub terminated: Vec<String>,
}

/// Whether members are named `SERVICE-NODE` (a node) or `SERVICE-NODE-INDEX` (a group).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Naming {
    Node,
    Group,
}

/// How many times a fresh token is tried when EC2 answers a token with an instance that is
/// gone (the token's first instance was terminated since).
const MAX_TOKEN_ATTEMPTS: u32 = 5;

impl Ec2 {
    /// Makes the single instance of a node exist and run: the one made earlier (found by
    /// its tags), or a new one. `idempotency_key` identifies the caller's task: calls with
    /// the same key never launch two instances for the node.
    pub async fn ensure_node(
        &self,
        spec: &InstanceSpec,
        idempotency_key: &str,
    ) -> Result<InstanceInfo, AwsError> {
        let mut report = self
            .ensure_members(spec, 1, idempotency_key, Naming::Node)
            .await?;
        report.members.pop().ok_or(AwsError::Incomplete {
            operation: "RunInstances",
            missing: "instance",
        })
    }

    /// Makes member `index` (from 1) of node group `spec.node` exist and run, leaving the
    /// other members alone: the one made earlier (found by its tags), or a new one. This is
    /// what a converge does for each member of a group, which it sees as a node of its own
    /// (`workers:2`). Calls with the same `idempotency_key` never launch two instances for
    /// the member.
    pub async fn ensure_member(
        &self,
        spec: &InstanceSpec,
        index: u32,
        idempotency_key: &str,
    ) -> Result<InstanceInfo, AwsError> {
        if index == 0 {
            return Err(crate::error::SpecError::new(
                "node group member index",
                "0",
                "members are numbered from 1",
            )
            .into());
        }
        let mut same = self
            .member_instances(&spec.service, &spec.node, index)
            .await?;
        // A second instance of one index comes only from a race of two runs: keep the
        // lowest id, terminate the others.
        let extra: Vec<String> = same.iter().skip(1).map(|i| i.instance_id.clone()).collect();
        if !extra.is_empty() {
            tracing::info!(node = %spec.node, index, ids = ?extra, "terminating duplicate members");
            self.terminate_and_wait(&extra).await?;
        }
        let id = match same.drain(..).next() {
            Some(i) => {
                self.start_stopped(&[&i]).await?;
                i.instance_id
            }
            None => {
                self.launch(spec, index, idempotency_key, Naming::Group)
                    .await?
                    .instance_id
            }
        };
        self.wait_running(std::slice::from_ref(&id))
            .await?
            .pop()
            .ok_or(AwsError::Incomplete {
                operation: "DescribeInstances",
                missing: "instance",
            })
    }

    /// The live instance of member `index` of node group `node` (or of the single node
    /// `node` with index 1), if any.
    pub async fn find_member(
        &self,
        service: &str,
        node: &str,
        index: u32,
    ) -> Result<Option<InstanceInfo>, AwsError> {
        Ok(self
            .member_instances(service, node, index)
            .await?
            .into_iter()
            .next())
    }

    /// Terminates the live instances of member `index` of node group `node` and waits
    /// until they are terminated; returns their ids. Other members are left alone.
    pub async fn delete_member(
        &self,
        service: &str,
        node: &str,
        index: u32,
    ) -> Result<Vec<String>, AwsError> {
        let ids: Vec<String> = self
            .member_instances(service, node, index)
            .await?
            .into_iter()
            .map(|i| i.instance_id)
            .collect();
        self.terminate_and_wait(&ids).await?;
        Ok(ids)
    }

    /// Makes a node group have exactly `cardinality` running members, indexed from 1:
    /// launches the missing indices (a member terminated outside dtk is missing, so it is
    /// launched again) and terminates those above `cardinality`, highest index first.
    pub async fn ensure_node_group(
        &self,
        spec: &InstanceSpec,
        cardinality: u32,
        idempotency_key: &str,
    ) -> Result<NodeGroupReport, AwsError> {
        self.ensure_members(spec, cardinality, idempotency_key, Naming::Group)
            .await
    }

    /// The live instances (neither terminated nor shutting down) of a node, by index.
    pub async fn node_instances(
        &self,
        service: &str,
        node: &str,
    ) -> Result<Vec<InstanceInfo>, AwsError> {
        self.tagged_instances(&[
            (TAG_MANAGED, "true"),
            (TAG_SERVICE, service),
            (TAG_NODE, node),
        ])
        .await
    }

    /// The live instances of member `index` of a node (one, unless two runs raced),
    /// lowest id first. EC2 filters by the index tag too, so a member's lookup answers
    /// with that member alone, not with the whole group: 500 members make 500 small
    /// answers, not 500 answers of up to 500 instances each.
    pub async fn member_instances(
        &self,
        service: &str,
        node: &str,
        index: u32,
    ) -> Result<Vec<InstanceInfo>, AwsError> {
        let index = index.to_string();
        self.tagged_instances(&[
            (TAG_MANAGED, "true"),
            (TAG_SERVICE, service),
            (TAG_NODE, node),
            (TAG_INDEX, &index),
        ])
        .await
    }

    /// The live instances carrying every tag of `want`, by index then id.
    async fn tagged_instances(&self, want: &[(&str, &str)]) -> Result<Vec<InstanceInfo>, AwsError> {
        let (node, service) = (
            tag_of(want, TAG_NODE).unwrap_or("?"),
            tag_of(want, TAG_SERVICE).unwrap_or("?"),
        );
        let mut filters = tag_filters(want);
        filters.push(
            ec2::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        );
        let what = match tag_of(want, TAG_INDEX) {
            Some(i) => format!("instances of member {i} of node {node} of {service}"),
            None => format!("instances of node {node} of {service}"),
        };
        let mut found: Vec<InstanceInfo> = self
            .describe_instances(&filters, &[], &what)
            .await?
            .iter()
            .filter(|i| tags_match(&tag_map(i.tags()), want))
            .filter_map(instance_info)
            .collect();
        found.sort_by(|a, b| (a.index, &a.instance_id).cmp(&(b.index, &b.instance_id)));
        Ok(found)
    }

    /// The instance `instance_id` as it is, or `None` when it is gone (does not exist,
    /// is terminated or shutting down): drift that the caller repairs by creating it again.
    pub async fn read_instance(&self, instance_id: &str) -> Result<Option<InstanceInfo>, AwsError> {
        let what = format!("instance {instance_id}");
        let found = match self
            .describe_instances(&[], &[instance_id.to_owned()], &what)
            .await
        {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(found
            .iter()
            .filter_map(instance_info)
            .find(|i| i.state.is_live()))
    }

    /// Terminates every live instance of a node and waits until they are terminated;
    /// returns their ids.
    pub async fn delete_node(&self, service: &str, node: &str) -> Result<Vec<String>, AwsError> {
        let ids: Vec<String> = self
            .node_instances(service, node)
            .await?
            .into_iter()
            .map(|i| i.instance_id)
            .collect();
        self.terminate_and_wait(&ids).await?;
        Ok(ids)
    }

    /// Terminates one instance if dtk made it for `service`, and waits until it is.
    pub async fn terminate_instance(
        &self,
        service: &str,
        instance_id: &str,
    ) -> Result<Deletion, AwsError> {
        let what = format!("instance {instance_id}");
        let found = match self
            .describe_instances(&[], &[instance_id.to_owned()], &what)
            .await
        {
            Ok(found) => found,
            Err(e) if is_not_found(&e) => return Ok(Deletion::AlreadyGone),
            Err(e) => return Err(e),
        };
        let Some(instance) = found.first() else {
            return Ok(Deletion::AlreadyGone);
        };
        let tags = tag_map(instance.tags());
        if tags.get(TAG_MANAGED).map(String::as_str) != Some("true")
            || tags.get(TAG_SERVICE).map(String::as_str) != Some(service)
        {
            tracing::info!(instance_id, "leaving alone an instance dtk did not make");
            return Ok(Deletion::LeftAlone);
        }
        if !InstanceState::from_ec2(instance.state().and_then(|s| s.name())).is_live() {
            self.wait_terminated(&[instance_id.to_owned()]).await?;
            return Ok(Deletion::AlreadyGone);
        }
        self.terminate_and_wait(&[instance_id.to_owned()]).await?;
        Ok(Deletion::Deleted)
    }

    async fn ensure_members(
        &self,
        spec: &InstanceSpec,
        cardinality: u32,
        key: &str,
        naming: Naming,
    ) -> Result<NodeGroupReport, AwsError> {
        let live = self.node_instances(&spec.service, &spec.node).await?;
        let mut keep: BTreeMap<u32, InstanceInfo> = BTreeMap::new();
        let mut extra: Vec<InstanceInfo> = Vec::new();
        for i in live {
            if i.index >= 1 && i.index <= cardinality && !keep.contains_key(&i.index) {
                keep.insert(i.index, i);
            } else {
                // Above the cardinality, or a second instance of one index (a race of
                // two runs): both are extras.
                extra.push(i);
            }
        }
        let mut report = NodeGroupReport::default();
        extra.sort_by(|a, b| (b.index, &b.instance_id).cmp(&(a.index, &a.instance_id)));
        for i in &extra {
            tracing::info!(instance_id = %i.instance_id, node = %spec.node, index = i.index, "terminating extra member");
            self.terminate(std::slice::from_ref(&i.instance_id)).await?;
            report.terminated.push(i.instance_id.clone());
        }
        for index in 1..=cardinality {
            if keep.contains_key(&index) {
                continue;
            }
            let info = self.launch(spec, index, key, naming).await?;
            report.launched.push(info.instance_id.clone());
            keep.insert(index, info);
        }
        let kept: Vec<&InstanceInfo> = keep.values().collect();
        self.start_stopped(&kept).await?;
        let ids: Vec<String> = keep.values().map(|i| i.instance_id.clone()).collect();
        let running = if ids.is_empty() {
            Vec::new()
        } else {
            self.wait_running(&ids).await?
        };
        report.members = running;
        report.members.sort_by_key(|i| i.index);
        if !report.terminated.is_empty() {
            self.wait_terminated(&report.terminated).await?;
        }
        Ok(report)
    }

    /// Launches member `index`, with a client token that makes a repeat of this request
    /// return the same instance.
    async fn launch(
        &self,
        spec: &InstanceSpec,
        index: u32,
        key: &str,
        naming: Naming,
    ) -> Result<InstanceInfo, AwsError> {
        let name = match naming {
            Naming::Node => format!("{}-{}", spec.service, spec.node),
            Naming::Group => format!("{}-{}-{index}", spec.service, spec.node),
        };
        let mut tags: BTreeMap<String, String> = spec.tags.clone();
        for (k, v) in [
            (TAG_MANAGED, "true".to_owned()),
            (TAG_SERVICE, spec.service.clone()),
            (TAG_NODE, spec.node.clone()),
            (TAG_INDEX, index.to_string()),
            (TAG_NAME, name.clone()),
        ] {
            tags.insert(k.to_owned(), v);
        }
        let resource = format!("instance {name} ({} {})", spec.image_id, spec.instance_type);
        for attempt in 0..MAX_TOKEN_ATTEMPTS {
            let token = client_token(key, &spec.service, &spec.node, index, attempt);
            let sent = {
                let _p = self.permit().await?;
                self.client
                    .run_instances()
                    .image_id(&spec.image_id)
                    .instance_type(InstanceType::from(spec.instance_type.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .subnet_id(&spec.subnet_id)
                    .set_security_group_ids(Some(spec.security_group_ids.clone()))
                    .set_key_name(spec.key_name.clone())
                    .client_token(&token)
                    .tag_specifications(tag_spec(ResourceType::Instance, &tags))
                    .tag_specifications(tag_spec(ResourceType::Volume, &tags))
                    .send()
                    .await
            };
            let out = match sent {
                Ok(out) => out,
                Err(e) => {
                    let err = AwsError::api("RunInstances", &resource, e);
                    if err.code() == Some("IdempotentParameterMismatch") {
                        // The token launched an instance with other parameters before;
                        // had that instance been live, adoption would have found it.
                        continue;
                    }
                    return Err(err);
                }
            };
            let info =
                out.instances()
                    .first()
                    .and_then(instance_info)
                    .ok_or(AwsError::Incomplete {
                        operation: "RunInstances",
                        missing: "instance",
                    })?;
            if info.state.is_live() {
                tracing::info!(instance_id = %info.instance_id, node = %spec.node, index, "launched instance");
                return Ok(info);
            }
            tracing::debug!(instance_id = %info.instance_id, "the client token answered with a terminated instance; trying a fresh one");
        }
        Err(AwsError::Conflict {
            kind: ResourceKind::Instance,
            id: name,
            reason: format!(
                "{MAX_TOKEN_ATTEMPTS} client tokens answered with terminated instances"
            ),
        })
    }

    /// Starts the instances of `infos` that are stopped (or stopping: once they are
    /// stopped), so that a node stopped outside dtk runs again at the next converge.
    async fn start_stopped(&self, infos: &[&InstanceInfo]) -> Result<(), AwsError> {
        let ids: Vec<String> = infos
            .iter()
            .filter(|i| matches!(i.state, InstanceState::Stopped | InstanceState::Stopping))
            .map(|i| i.instance_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let what = format!("instances {}", ids.join(", "));
        self.wait_for(&what, "stopped", || async {
            let found = self.describe_instances(&[], &ids, &what).await?;
            Ok(found
                .iter()
                .all(|i| {
                    InstanceState::from_ec2(i.state().and_then(|s| s.name()))
                        != InstanceState::Stopping
                })
                .then_some(()))
        })
        .await?;
        tracing::info!(ids = ?ids, "starting stopped instances");
        let _p = self.permit().await?;
        self.client
            .start_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(|e| AwsError::api("StartInstances", what, e))?;
        Ok(())
    }

    async fn terminate(&self, ids: &[String]) -> Result<(), AwsError> {
        if ids.is_empty() {
            return Ok(());
        }
        let _p = self.permit().await?;
        match self
            .client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = AwsError::api(
                    "TerminateInstances",
                    format!("instances {}", ids.join(", ")),
                    e,
                );
                if is_not_found(&err) { Ok(()) } else { Err(err) }
            }
        }
    }

    async fn terminate_and_wait(&self, ids: &[String]) -> Result<(), AwsError> {
        self.terminate(ids).await?;
        self.wait_terminated(ids).await
    }

    /// Waits until every instance of `ids` runs; fails when one of them is gone.
    async fn wait_running(&self, ids: &[String]) -> Result<Vec<InstanceInfo>, AwsError> {
        let what = format!("instances {}", ids.join(", "));
        self.wait_for(&what, "running", || async {
            let found = match self.describe_instances(&[], ids, &what).await {
                Ok(found) => found,
                // Just launched: EC2's describe may not know them yet.
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            let infos: Vec<InstanceInfo> = found.iter().filter_map(instance_info).collect();
            if let Some(gone) = infos.iter().find(|i| !i.state.is_live()) {
                return Err(AwsError::Conflict {
                    kind: ResourceKind::Instance,
                    id: gone.instance_id.clone(),
                    reason: format!("is {} while waiting for it to run", gone.state),
                });
            }
            let seen: BTreeSet<&str> = infos.iter().map(|i| i.instance_id.as_str()).collect();
            let all_here = ids.iter().all(|id| seen.contains(id.as_str()));
            Ok(
                (all_here && infos.iter().all(|i| i.state == InstanceState::Running))
                    .then_some(infos),
            )
        })
        .await
    }

    async fn wait_terminated(&self, ids: &[String]) -> Result<(), AwsError> {
        let what = format!("instances {}", ids.join(", "));
        self.wait_for(&what, "terminated", || async {
            let found = match self.describe_instances(&[], ids, &what).await {
                Ok(found) => found,
                Err(e) if is_not_found(&e) => return Ok(Some(())),
                Err(e) => return Err(e),
            };
            let done = found.iter().all(|i| {
                InstanceState::from_ec2(i.state().and_then(|s| s.name()))
                    == InstanceState::Terminated
            });
            Ok(done.then_some(()))
        })
        .await
    }

    /// Every instance matching `filters` and `ids`, through all pages.
    async fn describe_instances(
        &self,
        filters: &[ec2::Filter],
        ids: &[String],
        what: &str,
    ) -> Result<Vec<ec2::Instance>, AwsError> {
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let _p = self.permit().await?;
            let mut req = self.client.describe_instances().set_next_token(next.take());
            if !filters.is_empty() {
                req = req.set_filters(Some(filters.to_vec()));
            }
            if !ids.is_empty() {
                req = req.set_instance_ids(Some(ids.to_vec()));
            }
            let out = req
                .send()
                .await
                .map_err(|e| AwsError::api("DescribeInstances", what, e))?;
            for r in out.reservations() {
                all.extend(r.instances().iter().cloned());
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(all),
            }
        }
    }
}

fn instance_info(i: &ec2::Instance) -> Option<InstanceInfo> {
    let tags = tag_map(i.tags());
    let (node, index) = (
        tags.get(TAG_NODE).cloned().unwrap_or_default(),
        tags.get(TAG_INDEX)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    );
    Some(InstanceInfo {
        instance_id: i.instance_id()?.to_owned(),
        node,
        index,
        private_ip_address: i
            .private_ip_address()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        public_ip_address: i
            .public_ip_address()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        state: InstanceState::from_ec2(i.state().and_then(|s| s.name())),
        image_id: i.image_id().unwrap_or_default().to_owned(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        subnet_id: i.subnet_id().map(str::to_owned),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        security_group_ids: {
            let mut g: Vec<String> = i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned))
                .collect();
            g.sort();
            g
        },
        tags,
    })
}

/// The value `want` gives tag `key`, if it gives one.
fn tag_of<'a>(want: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    want.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The RunInstances client token of member `index` of a node for the caller's
/// idempotency key: `dtk-` and 60 hex digits of a SHA-256 (EC2 allows 64 ASCII chars).
pub(crate) fn client_token(
    key: &str,
    service: &str,
    node: &str,
    index: u32,
    attempt: u32,
) -> String {
    let mut h = Sha256::new();
    for part in [key, service, node, &index.to_string(), &attempt.to_string()] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("dtk-{}", &hex::encode(h.finalize())[..60])
}
