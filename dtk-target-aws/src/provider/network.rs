//! The network resources of `aws/network`: `vpc`, `vpc_subnet` and `security_group`.
//!
//! Each is one component of the target, made by the EC2 layer's `ensure_*` for the owner
//! `(service, component)`; the scenario follows from which ids are given (see the
//! `aws/network` module). Every output is returned whatever the scenario, with the
//! region and credential handle passed on so that the components linked to these find
//! them.

use dtk_model::provider::Observed;
use dtk_model::{Attributes, ProviderError, Value};

use super::{AwsProvider, Call, inputs, outputs};
use crate::cidr::Ipv4Cidr;
use crate::network::{
    Gateway, SecurityGroupInfo, SecurityGroupSpec, SubnetInfo, SubnetSpec, VpcInfo, VpcSpec,
};
use crate::rules::SecurityGroupRule;
use crate::tags::Owner;

fn owner(call: &Call<'_, '_>) -> Owner {
    Owner::new(call.req.service, call.req.component)
}

/// The id recorded for the component (`prior`'s `name`), when dtk's tags find no resource
/// of its own: a resource imported without adopting it, to be used as given rather than
/// made again. `None` when nothing is recorded or the tags find one.
async fn recorded_unowned(
    call: &Call<'_, '_>,
    name: &str,
    found_by_tags: impl std::future::Future<Output = Result<Option<String>, crate::error::AwsError>>,
) -> Result<Option<String>, ProviderError> {
    let Some(prior) = call.req.prior else {
        return Ok(None);
    };
    let Some(id) = inputs::string(call, prior, name)? else {
        return Ok(None);
    };
    match found_by_tags.await.map_err(|e| call.aws(e))? {
        Some(_) => Ok(None),
        None => Ok(Some(id)),
    }
}

/// The tags that make a resource the component's, as if dtk had made it (an adopting
/// import); its `Name` is left as it is.
fn adopting_tags(call: &Call<'_, '_>) -> std::collections::BTreeMap<String, String> {
    let o = owner(call);
    o.tags(&o.name())
        .into_iter()
        .filter(|(k, _)| *k != crate::tags::TAG_NAME)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Binds an existing VPC, subnet or security group `id` to the component of `call`
/// (`dtk service import`); with `adopt`, tagged as the component's so that delete removes
/// it. A subnet or group must be in the linked VPC.
pub(crate) async fn import(
    p: &AwsProvider,
    call: &Call<'_, '_>,
    resource: super::Resource,
    id: &str,
    adopt: bool,
) -> Result<Observed, ProviderError> {
    use super::Resource;
    let ec2 = p.client(call).await?;
    let owner = owner(call);
    let (outputs, vpc) = match resource {
        Resource::Vpc => match ec2.read_vpc(&owner, id).await.map_err(|e| call.aws(e))? {
            Some(info) => (vpc_outputs(p, call, &info)?, None),
            None => return Ok(Observed::Missing),
        },
        Resource::Subnet => match ec2.read_subnet(&owner, id).await.map_err(|e| call.aws(e))? {
            Some(info) => (subnet_outputs(p, call, &info)?, Some(info.vpc_id.clone())),
            None => return Ok(Observed::Missing),
        },
        Resource::SecurityGroup => match ec2
            .read_security_group(&owner, id)
            .await
            .map_err(|e| call.aws(e))?
        {
            Some(info) => (group_outputs(p, call, &info)?, Some(info.vpc_id.clone())),
            None => return Ok(Observed::Missing),
        },
        _ => {
            return Err(ProviderError::Unsupported {
                provider: super::KIND.to_owned(),
                what: format!("importing `{}` resources", call.req.resource),
            });
        }
    };
    if let (Some(in_vpc), Some(linked)) = (vpc, inputs::string(call, call.req.inputs, "vpc_id")?)
        && in_vpc != linked
    {
        return Err(call.invalid(format!(
            "{id} is in vpc {in_vpc}, not in the linked vpc {linked}"
        )));
    }
    if adopt {
        ec2.tag_resource(id, &adopting_tags(call))
            .await
            .map_err(|e| call.aws(e))?;
    }
    Ok(Observed::Present(outputs))
}

/// The region and credential handle every network output carries on.
fn context(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<[(&'static str, Value); 2], ProviderError> {
    Ok([
        ("region", Value::Str(p.region(call)?)),
        (
            "credentials_handle",
            Value::Str(p.handle(call)?.unwrap_or_default()),
        ),
    ])
}

fn with_context(
    p: &AwsProvider,
    call: &Call<'_, '_>,
    mut out: Attributes,
) -> Result<Attributes, ProviderError> {
    for (k, v) in context(p, call)? {
        out.insert(k.to_owned(), v);
    }
    Ok(out)
}

fn cidr(call: &Call<'_, '_>, name: &str) -> Result<Option<Ipv4Cidr>, ProviderError> {
    inputs::string(call, call.req.inputs, name)?
        .map(|s| {
            s.parse::<Ipv4Cidr>()
                .map_err(|e| call.invalid(format!("`{name}`: {e}")))
        })
        .transpose()
}

fn linked_vpc(call: &Call<'_, '_>) -> Result<String, ProviderError> {
    inputs::required(
        call,
        "vpc_id",
        "link the component to a vpc component (`$vpc_id -> vpc_id`)",
    )
}

// ----- vpc -----------------------------------------------------------------------------

fn vpc_outputs(
    p: &AwsProvider,
    call: &Call<'_, '_>,
    info: &VpcInfo,
) -> Result<Attributes, ProviderError> {
    with_context(
        p,
        call,
        outputs([
            ("vpc_id", Value::Str(info.vpc_id.clone())),
            ("cidr_block", Value::Str(info.cidr_block.to_string())),
        ]),
    )
}

pub(crate) async fn create_vpc(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Attributes, ProviderError> {
    // Inputs are checked before any request.
    let given = inputs::string(call, call.req.inputs, "vpc_id")?;
    let cidr_block = match given {
        Some(_) => None,
        None => cidr(call, "cidr_block")?,
    };
    let ec2 = p.client(call).await?;
    let me = owner(call);
    let vpc_id = match given {
        Some(id) => Some(id),
        None => recorded_unowned(call, "vpc_id", ec2.find_vpc(&me)).await?,
    };
    let cidr_block = if vpc_id.is_some() { None } else { cidr_block };
    let info = ec2
        .ensure_vpc(&owner(call), &VpcSpec { vpc_id, cidr_block })
        .await
        .map_err(|e| call.aws(e))?;
    vpc_outputs(p, call, &info)
}

pub(crate) async fn read_vpc(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Observed, ProviderError> {
    let Some(id) = inputs::input_or_prior(call, "vpc_id")? else {
        return Ok(Observed::Missing);
    };
    let ec2 = p.client(call).await?;
    match ec2
        .read_vpc(&owner(call), &id)
        .await
        .map_err(|e| call.aws(e))?
    {
        Some(info) => Ok(Observed::Present(vpc_outputs(p, call, &info)?)),
        None => Ok(Observed::Missing),
    }
}

pub(crate) async fn delete_vpc(p: &AwsProvider, call: &Call<'_, '_>) -> Result<(), ProviderError> {
    let ec2 = p.client(call).await?;
    let owner = owner(call);
    let id = match inputs::input_or_prior(call, "vpc_id")? {
        Some(id) => Some(id),
        None => ec2.find_vpc(&owner).await.map_err(|e| call.aws(e))?,
    };
    if let Some(id) = id {
        let done = ec2.delete_vpc(&owner, &id).await.map_err(|e| call.aws(e))?;
        tracing::info!(vpc_id = %id, ?done, component = call.req.component, "vpc delete");
    }
    Ok(())
}

// ----- vpc_subnet ----------------------------------------------------------------------

fn subnet_outputs(
    p: &AwsProvider,
    call: &Call<'_, '_>,
    info: &SubnetInfo,
) -> Result<Attributes, ProviderError> {
    with_context(
        p,
        call,
        outputs([
            ("subnet_id", Value::Str(info.subnet_id.clone())),
            ("subnet_cidr_block", Value::Str(info.cidr_block.to_string())),
            (
                "availability_zone",
                Value::Str(info.availability_zone.clone()),
            ),
            ("vpc_id", Value::Str(info.vpc_id.clone())),
        ]),
    )
}

pub(crate) async fn create_subnet(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Attributes, ProviderError> {
    let attrs = call.req.inputs;
    let vpc_id = linked_vpc(call)?;
    // Inputs are checked before any request.
    let given = inputs::string(call, attrs, "subnet_id")?;
    let cidr_block = cidr(call, "subnet_cidr_block")?;
    let prefix_len = inputs::integer(call, attrs, "subnet_length")?
        .map(|n| {
            u8::try_from(n)
                .ok()
                .filter(|n| (16..=28).contains(n))
                .ok_or_else(|| {
                    call.invalid(format!(
                        "`subnet_length` must be 16 to 28 (EC2's subnet sizes), not {n}"
                    ))
                })
        })
        .transpose()?;
    let gateway = inputs::string(call, attrs, "gateway")?
        .map(|g| g.parse::<Gateway>())
        .transpose()
        .map_err(|e| call.invalid(e.to_string()))?
        .unwrap_or_default();
    let availability_zone = inputs::string(call, attrs, "availability_zone")?;
    let map_public_ip_on_launch = inputs::boolean(call, attrs, "enable_public_ip_in_subnet")?;
    let ec2 = p.client(call).await?;
    let me = owner(call);
    let subnet_id = match given {
        Some(id) => Some(id),
        None => recorded_unowned(call, "subnet_id", ec2.find_subnet(&me)).await?,
    };
    let spec = SubnetSpec {
        subnet_id: subnet_id.clone(),
        cidr_block,
        prefix_len,
        availability_zone,
        gateway,
        map_public_ip_on_launch,
    };
    let owner = owner(call);
    let vpc = ec2
        .read_vpc(&owner, &vpc_id)
        .await
        .map_err(|e| call.aws(e))?
        .ok_or_else(|| {
            ProviderError::failed(call.operation(), format!("vpc {vpc_id} does not exist"))
        })?;
    if let Some(id) = &subnet_id {
        // A given subnet must be in the target's VPC: say how to get there, rather than
        // use a VPC the target made in vain.
        let given = ec2
            .read_subnet(&owner, id)
            .await
            .map_err(|e| call.aws(e))?
            .ok_or_else(|| call.invalid(format!("subnet {id} does not exist")))?;
        if given.vpc_id != vpc_id {
            return Err(call.invalid(format!(
                "subnet {id} is in vpc {}, not in the linked vpc {vpc_id}; to use an existing \
                 subnet, set the vpc component's `vpc_id` to {} too",
                given.vpc_id, given.vpc_id
            )));
        }
    }
    let info = ec2
        .ensure_subnet(&owner, &vpc, &spec)
        .await
        .map_err(|e| call.aws(e))?;
    subnet_outputs(p, call, &info)
}

pub(crate) async fn read_subnet(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Observed, ProviderError> {
    let Some(id) = inputs::input_or_prior(call, "subnet_id")? else {
        return Ok(Observed::Missing);
    };
    let ec2 = p.client(call).await?;
    match ec2
        .read_subnet(&owner(call), &id)
        .await
        .map_err(|e| call.aws(e))?
    {
        Some(info) => Ok(Observed::Present(subnet_outputs(p, call, &info)?)),
        None => Ok(Observed::Missing),
    }
}

pub(crate) async fn delete_subnet(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<(), ProviderError> {
    let ec2 = p.client(call).await?;
    let owner = owner(call);
    let id = match inputs::input_or_prior(call, "subnet_id")? {
        Some(id) => Some(id),
        None => ec2.find_subnet(&owner).await.map_err(|e| call.aws(e))?,
    };
    if let Some(id) = id {
        let done = ec2
            .delete_subnet(&owner, &id)
            .await
            .map_err(|e| call.aws(e))?;
        tracing::info!(subnet_id = %id, ?done, component = call.req.component, "subnet delete");
    }
    Ok(())
}

// ----- security_group ------------------------------------------------------------------

const RULE_KEYS: &[&str] = &["protocol", "port_range", "source"];

/// The rules of a list attribute: `{protocol, port_range, source}` each; `port_range`
/// may be left out (all ports).
pub(crate) fn rules(
    call: &Call<'_, '_>,
    attrs: &Attributes,
    name: &str,
) -> Result<Vec<SecurityGroupRule>, ProviderError> {
    let mut out = Vec::new();
    for (i, item) in inputs::array(call, attrs, name)?.iter().enumerate() {
        let Value::Hash(h) = item else {
            return Err(call.invalid(format!(
                "`{name}[{i}]` must be a hash {{protocol, port_range, source}}, not {}",
                item.kind_name()
            )));
        };
        if let Some(k) = h.keys().find(|k| !RULE_KEYS.contains(&k.as_str())) {
            return Err(call.invalid(format!(
                "`{name}[{i}]` has an unknown key `{k}` (a rule has protocol, port_range, source)"
            )));
        }
        let field = |k: &str| h.get(k).filter(|v| !v.is_null()).map(Value::to_shell_text);
        let (Some(protocol), Some(source)) = (field("protocol"), field("source")) else {
            return Err(call.invalid(format!("`{name}[{i}]` needs `protocol` and `source`")));
        };
        let port_range = field("port_range").unwrap_or_else(|| "all".to_owned());
        let rule = SecurityGroupRule::parse(&protocol, &port_range, &source)
            .map_err(|e| call.invalid(format!("`{name}[{i}]`: {e}")))?;
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    Ok(out)
}

fn group_outputs(
    p: &AwsProvider,
    call: &Call<'_, '_>,
    info: &SecurityGroupInfo,
) -> Result<Attributes, ProviderError> {
    with_context(
        p,
        call,
        outputs([
            ("group_id", Value::Str(info.group_id.clone())),
            ("group_name", Value::Str(info.group_name.clone())),
            ("vpc_id", Value::Str(info.vpc_id.clone())),
        ]),
    )
}

pub(crate) async fn create_group(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Attributes, ProviderError> {
    let attrs = call.req.inputs;
    let vpc_id = linked_vpc(call)?;
    let mut wanted = rules(call, attrs, "constant_rules")?;
    for r in rules(call, attrs, "dynamic_rules")? {
        if !wanted.contains(&r) {
            wanted.push(r);
        }
    }
    let ec2 = p.client(call).await?;
    let me = owner(call);
    let group_id = match inputs::string(call, attrs, "group_id")? {
        Some(id) => Some(id),
        None => recorded_unowned(call, "group_id", ec2.find_security_group(&me)).await?,
    };
    let spec = SecurityGroupSpec {
        group_id,
        group_name: inputs::string(call, attrs, "group_name")?,
        description: inputs::string(call, attrs, "description")?,
        rules: wanted,
    };
    let info = ec2
        .ensure_security_group(&owner(call), &vpc_id, &spec)
        .await
        .map_err(|e| call.aws(e))?;
    group_outputs(p, call, &info)
}

pub(crate) async fn read_group(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<Observed, ProviderError> {
    let Some(id) = inputs::input_or_prior(call, "group_id")? else {
        return Ok(Observed::Missing);
    };
    let ec2 = p.client(call).await?;
    match ec2
        .read_security_group(&owner(call), &id)
        .await
        .map_err(|e| call.aws(e))?
    {
        Some(info) => Ok(Observed::Present(group_outputs(p, call, &info)?)),
        None => Ok(Observed::Missing),
    }
}

pub(crate) async fn delete_group(
    p: &AwsProvider,
    call: &Call<'_, '_>,
) -> Result<(), ProviderError> {
    let ec2 = p.client(call).await?;
    let owner = owner(call);
    let id = match inputs::input_or_prior(call, "group_id")? {
        Some(id) => Some(id),
        None => ec2
            .find_security_group(&owner)
            .await
            .map_err(|e| call.aws(e))?,
    };
    if let Some(id) = id {
        let done = ec2
            .delete_security_group(&owner, &id)
            .await
            .map_err(|e| call.aws(e))?;
        tracing::info!(group_id = %id, ?done, component = call.req.component, "security group delete");
    }
    Ok(())
}
