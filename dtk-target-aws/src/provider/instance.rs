//! The `ec2_instance` resource: the EC2 instance realizing one node (`aws/ec2`'s `node`).
//!
//! A plain node `web` is the instance tagged `dtk:node=web`; member 2 of node group
//! `workers` (the node `workers:2`, component `node[workers:2]`) is the instance tagged
//! `dtk:node=workers`, `dtk:index=2`. Members are created and deleted one by one, so
//! raising a group's cardinality adds members and lowering it deletes the extra ones,
//! each as its own component.

use dtk_model::provider::Observed;
use dtk_model::{Attributes, ProviderError, Value};

use super::resolve_images::map_from_value;
use super::{AwsProvider, Call, inputs, opt, outputs};
use crate::images::{ImageMap, is_instance_type};
use crate::instances::{InstanceInfo, InstanceSpec};
use crate::tags::TAG_COMPONENT;

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

pub(crate) async fn create(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Attributes, ProviderError> {
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
    let mut tags = inputs::string_map(call, attrs, "tags")?;
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
    let user = ssh_user(call, map.as_ref(), &region)?;
    let ssh = ssh_settings(call)?;
    let ec2 = p.client(call).await?;
    let info = match node.index {
        Some(i) => ec2.ensure_member(&spec, i, call.req.idempotency_key).await,
        None => ec2.ensure_node(&spec, call.req.idempotency_key).await,
    }
    .map_err(|e| call.aws(e))?;
    Ok(outputs_of(&info, &user, ssh))
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
    Ok(Observed::Present(outputs_of(
        &info,
        &user,
        ssh_settings(call)?,
    )))
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
