//! The `ec2_instance` resource: the EC2 instance realizing one node (`aws/ec2`'s `node`).
//!
//! A plain node `web` is the instance tagged `dtk:node=web`; member 2 of node group
//! `workers` (the node `workers:2`, component `node[workers:2]`) is the instance tagged
//! `dtk:node=workers`, `dtk:index=2`. Members are created and deleted one by one, so
//! raising a group's cardinality adds members and lowering it deletes the extra ones,
//! each as its own component.

use std::collections::BTreeMap;

use dtk_model::provider::{Change, Observed};
use dtk_model::{Attributes, ProviderError, Value};

use super::resolve_images::map_from_value;
use super::{AwsProvider, Call, inputs, opt, outputs};
use crate::images::{ImageMap, is_instance_type};
use crate::instances::{InstanceInfo, InstanceSpec, InstanceState, InstanceTarget};
use crate::tags::{TAG_COMPONENT, TAG_INDEX, TAG_MANAGED, TAG_NODE, TAG_SERVICE};

/// The inputs of a node that an instance cannot change in place: a change replaces the
/// instance (see `AwsProvider::replace_on_change`).
pub(crate) const REPLACE_ON_CHANGE: [&str; 3] = ["image", "subnet_id", "key_name"];

/// The SSH user when neither the node nor the image map names one.
pub(crate) const DEFAULT_SSH_USER: &str = "ubuntu";

/// Which node a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRef {
    /// The node, or the node group for a member.
    pub(crate) node: String,
    /// The member's index, for a member of a node group.
    pub(crate) index: Option<u32>,
}

impl NodeRef {
    /// `web` → node `web`; `workers:2` → member 2 of `workers`.
    pub(crate) fn parse(name: &str) -> NodeRef {
        if let Some((group, index)) = name.rsplit_once(':')
            && let Ok(i) = index.parse::<u32>()
            && i >= 1
            && !group.is_empty()
        {
            return NodeRef {
                node: group.to_owned(),
                index: Some(i),
            };
        }
        NodeRef {
            node: name.to_owned(),
            index: None,
        }
    }
}

/// The node of a request: its `node`, else the instance name of its component
/// (`node[web]`).
pub(crate) fn node_of(call: &Call<'_, '_>) -> Result<NodeRef, ProviderError> {
    let name = match call.req.node {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => call
            .req
            .component
            .strip_suffix(']')
            .and_then(|c| c.split_once('['))
            .map(|(_, n)| n.to_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                call.invalid(format!(
                    "`{}` is not on a node: an EC2 instance realizes a node (`node[NAME]`)",
                    call.req.component
                ))
            })?,
    };
    Ok(NodeRef::parse(&name))
}

/// The SSH settings a node passes on from the target to whoever runs its commands
/// (paths and a policy, never key material): its outputs of the same names.
const SSH_SETTINGS: [&str; 3] = [
    "ssh_key_path",
    "ssh_host_key_policy",
    "ssh_known_hosts_path",
];

/// Outputs a user may set on a node to reach it over SSH another way than its address
/// (a port forward, a bastion's local end, a test's sshd): taken from the inputs only,
/// they replace what the instance reports.
const SSH_OVERRIDES: [&str; 3] = ["ssh_host", "ssh_port", "ssh_workdir"];

/// The node's [`SSH_SETTINGS`]: its inputs, else (for a read) what was recorded; and its
/// [`SSH_OVERRIDES`] when set.
fn ssh_settings(call: &Call<'_, '_>) -> Result<Attributes, ProviderError> {
    let mut out = Attributes::new();
    for name in SSH_OVERRIDES {
        match call.req.inputs.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Str(s)) if s.trim().is_empty() => {}
            Some(v @ (Value::Str(_) | Value::Int(_))) => {
                out.insert(name.to_owned(), v.clone());
            }
            Some(v) => {
                return Err(call.invalid(format!(
                    "`{name}` must be a string or a number, not {}",
                    v.kind_name()
                )));
            }
        }
    }
    for name in SSH_SETTINGS {
        let value = match inputs::string(call, call.req.inputs, name)? {
            Some(v) => Some(v),
            None => match call.req.prior {
                Some(prior) => inputs::string(call, prior, name)?,
                None => None,
            },
        };
        if let Some(v) = value {
            out.insert(name.to_owned(), Value::Str(v));
        }
    }
    Ok(out)
}

fn outputs_of(info: &InstanceInfo, ssh_user: &str, ssh: Attributes) -> Attributes {
    let ssh_host = info
        .public_ip_address
        .clone()
        .or_else(|| info.private_ip_address.clone());
    let mut out = outputs([
        ("instance_id", Value::Str(info.instance_id.clone())),
        ("state", Value::Str(info.state.to_string())),
        ("private_ip_address", opt(info.private_ip_address.clone())),
        ("public_ip_address", opt(info.public_ip_address.clone())),
        ("host", opt(info.private_ip_address.clone())),
        ("ssh_host", opt(ssh_host)),
        ("ssh_user", Value::Str(ssh_user.to_owned())),
        ("image_id", Value::Str(info.image_id.clone())),
        ("instance_type", Value::Str(info.instance_type.clone())),
        ("availability_zone", opt(info.availability_zone.clone())),
    ]);
    out.extend(ssh);
    out
}

/// The image map linked to the node, if any.
fn image_map(call: &Call<'_, '_>) -> Result<Option<ImageMap>, ProviderError> {
    match call.req.inputs.get("images") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => map_from_value(call, v).map(Some),
    }
}

/// The SSH user: the node's `ssh_user`, else the image map's, else `ubuntu`.
fn ssh_user(
    call: &Call<'_, '_>,
    map: Option<&ImageMap>,
    region: &str,
) -> Result<String, ProviderError> {
    if let Some(u) = inputs::string(call, call.req.inputs, "ssh_user")? {
        return Ok(u);
    }
    let from_map = match (inputs::string(call, call.req.inputs, "image")?, map) {
        (Some(image), Some(map)) => map.entry(region, &image).and_then(|e| e.ssh_user.clone()),
        _ => None,
    };
    Ok(from_map.unwrap_or_else(|| DEFAULT_SSH_USER.to_owned()))
}

/// What a node's inputs ask of its instance: the launch spec, the node's own tags, the
/// image map and the region.
struct Wanted {
    spec: InstanceSpec,
    own_tags: BTreeMap<String, String>,
    map: Option<ImageMap>,
    region: String,
}

impl Wanted {
    /// What the instance should be, as far as it can change in place.
    fn target(&self) -> InstanceTarget {
        InstanceTarget {
            instance_type: self.spec.instance_type.clone(),
            security_group_ids: self.spec.security_group_ids.clone(),
            tags: self.own_tags.clone(),
        }
    }
}

fn wanted(p: &AwsProvider, call: &Call<'_, '_>) -> Result<Wanted, ProviderError> {
    let attrs = call.req.inputs;
    let node = node_of(call)?;
    let region = p.region(call)?;
    let image = inputs::required(
        call,
        "image",
        "give the node an `image` (a logical name of the target's image map, or ami-...)",
    )?;
    let size = inputs::string(call, attrs, "size")?.unwrap_or_else(|| "small".to_owned());
    let map = image_map(call)?;
    if map.is_none() && !image.starts_with("ami-") {
        return Err(call.invalid(format!(
            "image `{image}` is a logical name, but the node is linked to no image map (is it on an AWS target?); give an AMI id (ami-...) or link `images`"
        )));
    }
    let resolved = map
        .clone()
        .unwrap_or_default()
        .resolve(&region, &image, &size)
        .map_err(|e| call.invalid(e.to_string()))?;
    if !is_instance_type(&resolved.instance_type) {
        return Err(call.invalid(format!(
            "size `{size}` maps to `{}`, which is not an instance type",
            resolved.instance_type
        )));
    }
    let subnet_id = inputs::required(
        call,
        "subnet_id",
        "the node must be linked to the target's vpc_subnet (`$subnet_id -> subnet_id`)",
    )?;
    let own_tags = inputs::string_map(call, attrs, "tags")?;
    let mut tags = own_tags.clone();
    tags.insert(TAG_COMPONENT.to_owned(), call.req.component.to_owned());
    let spec = InstanceSpec {
        service: call.req.service.to_owned(),
        node: node.node.clone(),
        image_id: resolved.image_id,
        instance_type: resolved.instance_type,
        subnet_id,
        security_group_ids: inputs::string(call, attrs, "group_id")?
            .into_iter()
            .collect(),
        key_name: inputs::string(call, attrs, "key_name")?,
        tags,
    };
    Ok(Wanted {
        spec,
        own_tags,
        map,
        region,
    })
}

/// How `info` differs from what `want` asks: its state (it should run), its type, its
/// security groups, the node's own tags.
fn changes(info: &InstanceInfo, want: Option<&Wanted>) -> Vec<Change> {
    let mut out = Vec::new();
    if !matches!(info.state, InstanceState::Running | InstanceState::Pending) {
        out.push(Change::new(
            "state",
            Value::Str("running".to_owned()),
            Value::Str(info.state.to_string()),
        ));
    }
    let Some(want) = want else { return out };
    if info.instance_type != want.spec.instance_type {
        out.push(Change::new(
            "instance_type",
            Value::Str(want.spec.instance_type.clone()),
            Value::Str(info.instance_type.clone()),
        ));
    }
    let mut groups = want.spec.security_group_ids.clone();
    groups.sort();
    groups.dedup();
    if !groups.is_empty() && groups != info.security_group_ids {
        let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::Str).collect());
        out.push(Change::new(
            "security_groups",
            list(&groups),
            list(&info.security_group_ids),
        ));
    }
    let differs: Vec<&String> = want
        .own_tags
        .iter()
        .filter(|(k, v)| info.tags.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    if !differs.is_empty() {
        let map = |m: &BTreeMap<String, String>| {
            Value::Hash(
                differs
                    .iter()
                    .filter_map(|k| Some(((*k).clone(), Value::Str(m.get(*k)?.clone()))))
                    .collect(),
            )
        };
        out.push(Change::new("tags", map(&want.own_tags), map(&info.tags)));
    }
    out
}

pub(crate) async fn create(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Attributes, ProviderError> {
    let node = node_of(call)?;
    let want = wanted(p, call)?;
    let user = ssh_user(call, want.map.as_ref(), &want.region)?;
    let ssh = ssh_settings(call)?;
    let ec2 = p.client(call).await?;
    // The instance recorded for the node, when it still exists, is the node's: even when
    // dtk's tags do not find it (an imported instance, a renamed node). Only without one
    // is an instance found by its tags, or launched.
    let recorded = match call
        .req
        .prior
        .map(|pr| inputs::string(call, pr, "instance_id"))
    {
        Some(Ok(Some(id))) => ec2.read_instance(&id).await.map_err(|e| call.aws(e))?,
        Some(Err(e)) => return Err(e),
        _ => None,
    };
    let found = match recorded {
        Some(i) => i,
        None => match node.index {
            Some(i) => {
                ec2.ensure_member(&want.spec, i, call.req.idempotency_key)
                    .await
            }
            None => ec2.ensure_node(&want.spec, call.req.idempotency_key).await,
        }
        .map_err(|e| call.aws(e))?,
    };
    // Started if stopped, resized, regrouped, retagged: as the node asks. What the
    // describe above answered is not asked again.
    let info = ec2
        .reconcile_described(found, &want.target())
        .await
        .map_err(|e| call.aws(e))?;
    Ok(outputs_of(&info, &user, ssh))
}

/// Binds the existing instance `id` to the node (`dtk service import`): with `adopt`,
/// tagged as dtk's for this node (so that delete terminates it); refused when another
/// dtk service owns it.
pub(crate) async fn import(
    p: &AwsProvider,
    call: &Call<'_, '_>,
    id: &str,
    adopt: bool,
) -> Result<Observed, ProviderError> {
    let node = node_of(call)?;
    let want = wanted(p, call)?;
    let ec2 = p.client(call).await?;
    let Some(info) = ec2.read_instance(id).await.map_err(|e| call.aws(e))? else {
        return Ok(Observed::Missing);
    };
    if info.tags.get(TAG_MANAGED).map(String::as_str) == Some("true")
        && let Some(owner) = info.tags.get(TAG_SERVICE)
        && owner != call.req.service
    {
        return Err(call.invalid(format!(
            "instance {id} belongs to dtk service `{owner}`; it cannot be imported into `{}`",
            call.req.service
        )));
    }
    if adopt {
        let mut tags = BTreeMap::new();
        for (k, v) in [
            (TAG_MANAGED, "true".to_owned()),
            (TAG_SERVICE, call.req.service.to_owned()),
            (TAG_NODE, node.node.clone()),
            (TAG_INDEX, node.index.unwrap_or(1).to_string()),
            (TAG_COMPONENT, call.req.component.to_owned()),
        ] {
            tags.insert(k.to_owned(), v);
        }
        ec2.tag_resource(id, &tags).await.map_err(|e| call.aws(e))?;
    }
    let user = ssh_user(call, want.map.as_ref(), &want.region)?;
    let out = outputs_of(&info, &user, ssh_settings(call)?);
    let changes = changes(&info, Some(&want));
    Ok(if changes.is_empty() {
        Observed::Present(out)
    } else {
        Observed::Drifted {
            outputs: out,
            changes,
        }
    })
}

pub(crate) async fn read(p: &AwsProvider, call: &Call<'_, '_>) -> Result<Observed, ProviderError> {
    let node = node_of(call)?;
    let ec2 = p.client(call).await?;
    let found = match inputs::input_or_prior(call, "instance_id")? {
        Some(id) => ec2.read_instance(&id).await,
        None => {
            ec2.find_member(call.req.service, &node.node, node.index.unwrap_or(1))
                .await
        }
    }
    .map_err(|e| call.aws(e))?;
    let Some(info) = found else {
        return Ok(Observed::Missing);
    };
    let user = match call.req.prior.map(|p| inputs::string(call, p, "ssh_user")) {
        Some(Ok(Some(u))) => u,
        _ => {
            let region = p.region(call)?;
            ssh_user(call, image_map(call)?.as_ref(), &region)?
        }
    };
    let out = outputs_of(&info, &user, ssh_settings(call)?);
    // What the recorded inputs ask; if they no longer resolve, only the state is judged.
    let want = wanted(p, call).ok();
    let changes = changes(&info, want.as_ref());
    Ok(if changes.is_empty() {
        Observed::Present(out)
    } else {
        Observed::Drifted {
            outputs: out,
            changes,
        }
    })
}

pub(crate) async fn delete(p: &AwsProvider, call: &Call<'_, '_>) -> Result<(), ProviderError> {
    let node = node_of(call)?;
    let ec2 = p.client(call).await?;
    let service = call.req.service;
    let mut gone = match node.index {
        Some(i) => ec2.delete_member(service, &node.node, i).await,
        None => ec2.delete_node(service, &node.node).await,
    }
    .map_err(|e| call.aws(e))?;
    // The recorded instance too, should its tags have been changed: only if dtk made it
    // for this service.
    if let Some(id) = inputs::input_or_prior(call, "instance_id")?
        && !gone.contains(&id)
    {
        ec2.terminate_instance(service, &id)
            .await
            .map_err(|e| call.aws(e))?;
        gone.push(id);
    }
    tracing::info!(node = %node.node, index = ?node.index, terminated = ?gone, "instance delete");
    Ok(())
}
