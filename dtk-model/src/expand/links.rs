//! Dependencies and links: choosing the component that satisfies each dependency, and
//! where linked values come from.

use std::collections::HashMap;

use crate::diag::did_you_mean;
use crate::expand::inputs::{ExternalComponent, TargetBinding};
use crate::expand::resolver::{Placed, Resolver};
use crate::ident::{ComponentRef, ModuleId, NodeComponentRef};
use crate::instance::{Dependency, LinkSource, ResolvedLink};
use crate::module::{AttributeMapping, ComponentDef, Flow, LinkDecl, Placement};
use crate::value::Value;

/// Where a dependency is satisfied: an index into `placed`, or a target component.
#[derive(Clone)]
pub(crate) enum Source {
    Local(usize),
    External(ExternalComponent),
}

impl Source {
    pub(crate) fn key(&self) -> String {
        match self {
            Source::Local(i) => format!("local:{i}"),
            Source::External(e) => format!("external:{}/{}", e.service, e.id),
        }
    }
}

fn ref_matches(reference: &ComponentRef, instance_ref: &ComponentRef) -> bool {
    reference.instance.is_none() || reference.instance == instance_ref.instance
}

pub(crate) fn matches_choice(
    src: &Source,
    choices: &[(ModuleId, ComponentRef)],
    placed: &[Placed<'_>],
) -> bool {
    match src {
        Source::Local(i) => {
            let p = &placed[*i];
            choices.iter().any(|(m, r)| {
                &p.module == m && p.def.name == r.name && ref_matches(r, &p.reference)
            })
        }
        Source::External(e) => choices
            .iter()
            .any(|(m, r)| &e.module == m && e.def_name == r.name),
    }
}

/// The placed components by definition name, each list in placement order: links and
/// dependencies look up their candidates here rather than scanning every component.
pub(crate) struct PlacedIndex<'p> {
    by_def: HashMap<&'p str, Vec<usize>>,
}

impl<'p> PlacedIndex<'p> {
    pub(crate) fn new(placed: &'p [Placed<'_>]) -> Self {
        let mut by_def: HashMap<&'p str, Vec<usize>> = HashMap::new();
        for (i, p) in placed.iter().enumerate() {
            by_def.entry(p.def.name.as_str()).or_default().push(i);
        }
        PlacedIndex { by_def }
    }

    /// The placed components whose definition is named one of `names`, in placement order.
    fn of<'n>(&self, names: impl Iterator<Item = &'n str>) -> Vec<usize> {
        let mut out: Vec<usize> = names
            .filter_map(|n| self.by_def.get(n))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

pub(crate) fn candidates(
    me: &Placed<'_>,
    choices: &[(ModuleId, ComponentRef)],
    placement: Placement,
    placed: &[Placed<'_>],
    index: &PlacedIndex<'_>,
    target: Option<&TargetBinding>,
) -> Result<Source, String> {
    let matching: Vec<usize> = index
        .of(choices.iter().map(|(_, r)| r.name.as_str()))
        .into_iter()
        .filter(|&i| placed[i].id != me.id)
        .filter(|&i| {
            let p = &placed[i];
            choices.iter().any(|(m, r)| {
                &p.module == m && p.def.name == r.name && ref_matches(r, &p.reference)
            })
        })
        .collect();
    let on_node: Vec<usize> = matching
        .iter()
        .copied()
        .filter(|i| placed[*i].node == me.node && me.node.is_some())
        .collect();
    if on_node.len() == 1 && placement != Placement::OtherNode {
        return Ok(Source::Local(on_node[0]));
    }
    if placement == Placement::SameNode {
        return match on_node.len() {
            0 => Err(format!(
                "no matching component on node `{}`",
                me.node.as_deref().unwrap_or("-")
            )),
            _ => Err(ambiguous(on_node.iter().map(|i| placed[*i].id.to_string()))),
        };
    }
    let matching: Vec<usize> = matching
        .into_iter()
        .filter(|i| placement.allows(me.node.as_deref(), placed[*i].node.as_deref()))
        .collect();
    match matching.len() {
        1 => return Ok(Source::Local(matching[0])),
        0 => {}
        _ => {
            return Err(ambiguous(
                matching.iter().map(|i| placed[*i].id.to_string()),
            ));
        }
    }
    let external: Vec<&ExternalComponent> = target
        .map(|t| {
            t.components
                .iter()
                .filter(|e| {
                    choices
                        .iter()
                        .any(|(m, r)| &e.module == m && e.def_name == r.name)
                })
                .collect()
        })
        .unwrap_or_default();
    match external.as_slice() {
        [e] => Ok(Source::External((*e).clone())),
        [] => Err(format!(
            "no component of the service{}{} matches {}",
            if placement == Placement::OtherNode {
                " on another node"
            } else {
                ""
            },
            if target.is_some() {
                " or its target"
            } else {
                ""
            },
            choices
                .iter()
                .map(|(m, r)| format!("`{m}::{}`", r.name))
                .collect::<Vec<_>>()
                .join(" or ")
        )),
        several => Err(ambiguous(
            several.iter().map(|e| format!("{}/{}", e.service, e.id)),
        )),
    }
}

fn ambiguous(ids: impl Iterator<Item = String>) -> String {
    let list: Vec<String> = ids.map(|s| format!("`{s}`")).collect();
    format!(
        "several components match ({}); choose one with `links:` in dtk.service.yaml",
        list.join(", ")
    )
}

pub(crate) fn find_explicit(
    l: &LinkDecl,
    me: &Placed<'_>,
    placed: &[Placed<'_>],
    index: &PlacedIndex<'_>,
    target: Option<&TargetBinding>,
) -> Result<Source, String> {
    if let Some(service) = &l.service {
        let t = target.filter(|t| t.components.iter().any(|c| &c.service == service));
        let Some(t) = t else {
            return Err(format!(
                "link to `{service}/{}`: `{service}` is not this service's target",
                l.target
            ));
        };
        return t
            .components
            .iter()
            .find(|c| {
                &c.service == service
                    && c.def_name == l.target.component.name
                    && (l.target.component.instance.is_none()
                        || c.id.as_str().ends_with(&format!(
                            "[{}]",
                            l.target.component.instance.as_deref().unwrap_or("")
                        )))
            })
            .cloned()
            .map(Source::External)
            .ok_or_else(|| format!("target `{service}` has no component `{}`", l.target));
    }
    let NodeComponentRef { node, component } = &l.target;
    let found: Vec<usize> = index
        .of(std::iter::once(component.name.as_str()))
        .into_iter()
        .filter(|&i| ref_matches(component, &placed[i].reference))
        .filter(|&i| node.is_none() || &placed[i].node == node)
        .collect();
    // `backend` names the instance without an instance name when there is one, rather
    // than every `backend[...]`.
    let exact: Vec<usize> = found
        .iter()
        .copied()
        .filter(|i| placed[*i].reference.instance == component.instance)
        .collect();
    let found = if exact.is_empty() { found } else { exact };
    let same: Vec<usize> = found
        .iter()
        .copied()
        .filter(|i| placed[*i].node == me.node)
        .collect();
    match (same.as_slice(), found.as_slice()) {
        ([i], _) | ([], [i]) => Ok(Source::Local(*i)),
        ([], []) => Err(format!(
            "link target `{}` is not a component of this service",
            l.target
        )),
        _ => Err(ambiguous(found.iter().map(|i| placed[*i].id.to_string()))),
    }
}

pub(crate) fn add_edge(
    deps: &mut Vec<Dependency>,
    src: &Source,
    placed: &[Placed<'_>],
    reason: String,
) {
    if let Source::Local(i) = src {
        let on = placed[*i].id.clone();
        if !deps.iter().any(|d| d.on == on) {
            deps.push(Dependency { on, reason });
        }
    }
}

/// What linking a component to its producers adds besides ordering: links it reads
/// values through, values it sends the other way (`<-`), and problems found.
#[derive(Default)]
pub(crate) struct Linked {
    /// Where the component's linked inputs come from.
    pub(crate) links: Vec<ResolvedLink>,
    /// Values this component sends into its producers (`producer_attr <- $my_attr`).
    pub(crate) pushes: Vec<Push>,
    /// Problems, each a message about the component.
    pub(crate) errors: Vec<String>,
}

/// A value a component sends into one of its producers (`producer_attr <- $my_attr` or
/// `producer_attr <- CONSTANT`), set before either runs.
pub(crate) struct Push {
    /// The producer receiving it.
    pub(crate) to: Source,
    /// Its attribute.
    pub(crate) attribute: String,
    /// The value, or where to read it.
    pub(crate) value: PushValue,
    /// The mapping as written, for messages.
    pub(crate) text: String,
}

/// Where a pushed value comes from.
pub(crate) enum PushValue {
    /// A constant written in the mapping.
    Constant(Value),
    /// An input of a placed component (the sender, or its node): its index and the path.
    Input(usize, Vec<String>),
}

/// The placed component that realizes each node, by node name.
pub(crate) fn realizers<'p>(placed: &'p [Placed<'_>]) -> HashMap<&'p str, usize> {
    placed
        .iter()
        .enumerate()
        .filter(|(_, p)| p.realizes_node)
        .filter_map(|(i, p)| Some((p.node.as_deref()?, i)))
        .collect()
}

/// The names under which the original dtk's `$node.NAME` read a node's addresses, and
/// the output of this dtk's node components they read (docs/dsl.md lists them).
const NODE_ADDRESS_ALIASES: &[(&str, &str)] = &[
    ("host_address", "host"),
    ("private_ip", "private_ip_address"),
    ("public_ip", "public_ip_address"),
    ("private_dns", "private_dns_name"),
    ("public_dns", "public_dns_name"),
];

/// Outputs that fall back to the node's `host` on node components that do not have them
/// (a local sandbox or an SSH host has one address).
const NODE_ADDRESSES: &[&str] = &[
    "private_ip_address",
    "public_ip_address",
    "private_dns_name",
    "public_dns_name",
];

/// The attribute path of a node component that `$node.PATH` reads: the original's
/// address names mapped onto this dtk's node outputs (`host_address` and
/// `host_addresses_ipv4.0` are `host`), anything else the node component's own attribute.
pub fn node_attribute_path(def: &ComponentDef, path: &[String]) -> Result<Vec<String>, String> {
    let (first, rest) = path
        .split_first()
        .ok_or_else(|| "`$node` names no attribute".to_owned())?;
    let mut out: Vec<String> = match (first.as_str(), rest) {
        ("host_addresses_ipv4", [i]) if i == "0" => vec!["host".to_owned()],
        ("host_addresses_ipv4", _) => {
            return Err(
                "`$node.host_addresses_ipv4` is read as its first address, `$node.host_addresses_ipv4.0`"
                    .to_owned(),
            );
        }
        (name, rest) => {
            let name = NODE_ADDRESS_ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .map_or(name, |(_, real)| real);
            std::iter::once(name.to_owned())
                .chain(rest.iter().cloned())
                .collect()
        }
    };
    if !def.attributes.contains_key(&out[0]) {
        if NODE_ADDRESSES.contains(&out[0].as_str()) && def.attributes.contains_key("host") {
            out[0] = "host".to_owned();
        } else {
            let hint = did_you_mean(&out[0], def.attributes.keys().map(String::as_str))
                .map(|s| format!(" (did you mean `$node.{s}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "`$node.{}`: the node component `{}` has no attribute `{}`{hint}",
                path.join("."),
                def.name,
                out[0]
            ));
        }
    }
    Ok(out)
}

/// Adds what `me` (at `me_index`) reads from and sends to the producer `src` through its
/// `link_defs`: for the dependency `dependency` when the link satisfies a named one (link
/// definitions naming another dependency do not apply), and only the definitions whose
/// `location` allows where the producer is.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_links(
    me_index: usize,
    src: &Source,
    dependency: Option<&str>,
    placed: &[Placed<'_>],
    realizer_of: &HashMap<&str, usize>,
    resolver: &Resolver<'_>,
    depends_on: &mut Vec<Dependency>,
    out: &mut Linked,
) {
    let me = &placed[me_index];
    let (module, def_name, producer_node) = match src {
        Source::Local(i) => (
            &placed[*i].module,
            placed[*i].def.name.as_str(),
            placed[*i].node.as_deref(),
        ),
        Source::External(e) => (&e.module, e.def_name.as_str(), None),
    };
    let producer_id = match src {
        Source::Local(i) => placed[*i].id.to_string(),
        Source::External(e) => format!("{}/{}", e.service, e.id),
    };
    let mut mappings = Vec::new();
    let mut node_mappings = Vec::new();
    for ld in &me.def.link_defs {
        if dependency.is_some() && ld.dependency.is_some() && ld.dependency.as_deref() != dependency
        {
            continue;
        }
        if !ld.placement.allows(me.node.as_deref(), producer_node) {
            continue;
        }
        let Ok((m, _)) = resolver.component(&ld.target, Some(&me.module)) else {
            continue;
        };
        if &m != module || ld.target.name != def_name {
            continue;
        }
        for am in &ld.attribute_mappings {
            let on_node = am.from.first().is_some_and(|f| f == "node") && am.constant.is_none();
            match (am.flow, on_node) {
                (Flow::In, false) => mappings.push((am.from.clone(), am.to.clone())),
                (Flow::In, true) => node_mappings.push(am),
                (Flow::Out, _) => {
                    let text = format!("{} <- {}", am.to, mapping_source(am));
                    let value = match &am.constant {
                        Some(c) => PushValue::Constant(c.clone()),
                        None if on_node => {
                            let Some(&r) = me.node.as_deref().and_then(|n| realizer_of.get(n))
                            else {
                                out.errors.push(format!(
                                    "`{text}` (link to `{producer_id}`) reads the node of `{}`, which is on no node realized by a node component",
                                    me.id
                                ));
                                continue;
                            };
                            match node_attribute_path(&placed[r].def, &am.from[1..]) {
                                Ok(path) => PushValue::Input(r, path),
                                Err(e) => {
                                    out.errors.push(format!("`{text}`: {e}"));
                                    continue;
                                }
                            }
                        }
                        None => PushValue::Input(me_index, am.from.clone()),
                    };
                    out.pushes.push(Push {
                        to: src.clone(),
                        attribute: am.to.clone(),
                        value,
                        text,
                    });
                }
            }
        }
    }
    if !node_mappings.is_empty() {
        let realizer = match src {
            Source::Local(i) => placed[*i]
                .node
                .as_deref()
                .and_then(|n| realizer_of.get(n).copied()),
            Source::External(_) => None,
        };
        match realizer {
            Some(r) => {
                let mut via_node = Vec::new();
                for am in node_mappings {
                    match node_attribute_path(&placed[r].def, &am.from[1..]) {
                        Ok(path) => via_node.push((path, am.to.clone())),
                        Err(e) => out.errors.push(format!(
                            "`{}` (link to `{producer_id}`): {e}",
                            mapping_text(am)
                        )),
                    }
                }
                if !via_node.is_empty() {
                    add_edge(
                        depends_on,
                        &Source::Local(r),
                        placed,
                        format!("link {producer_id} (its node)"),
                    );
                    out.links.push(ResolvedLink {
                        from: LinkSource::Component(placed[r].id.clone()),
                        mappings: via_node,
                    });
                }
            }
            None => {
                for am in node_mappings {
                    out.errors.push(format!(
                        "`{}` reads the node of `{producer_id}`, which is on no node realized by a node component",
                        mapping_text(am)
                    ));
                }
            }
        }
    }
    if mappings.is_empty() {
        return;
    }
    let from = match src {
        Source::Local(i) => LinkSource::Component(placed[*i].id.clone()),
        Source::External(e) => LinkSource::External {
            service: e.service.clone(),
            component: e.id.clone(),
            values: e.values.clone(),
        },
    };
    out.links.push(ResolvedLink { from, mappings });
}

fn mapping_source(am: &AttributeMapping) -> String {
    match &am.constant {
        Some(c) => c.to_string(),
        None => format!("${}", am.from.join(".")),
    }
}

fn mapping_text(am: &AttributeMapping) -> String {
    match am.flow {
        Flow::In => format!("{} -> {}", mapping_source(am), am.to),
        Flow::Out => format!("{} <- {}", am.to, mapping_source(am)),
    }
}
