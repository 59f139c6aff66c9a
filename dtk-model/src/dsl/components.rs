//! The `components:` list of assemblies and service documents: nodes, node groups,
//! components, their attributes and attribute values.

use crate::diag::{Location, did_you_mean};
use crate::dsl::decode::{
    Ctx, child, found, index, node_value, parse_ref, shorten, type_phrase, typed_value,
};
use crate::dsl::links::links;
use crate::dsl::scope::{RefCheck, Scope, list};
use crate::ident::ComponentRef;
use crate::module::{AttrValue, ComponentDecl, ComponentDef, NodeDecl};
use crate::yaml::{YamlKind, YamlNode};

/// The largest `cardinality` of a node group.
pub const MAX_CARDINALITY: u64 = 1000;

const NODE_KEYS: &[&str] = &[
    "attributes",
    "components",
    "links",
    "component_links",
    "component_link",
    "node_component",
];
const COMPONENT_KEYS: &[&str] = &[
    "attributes",
    "links",
    "component_links",
    "component_link",
    "components",
];
const NODE_COMPONENT_KEYS: &[&str] = &["attributes", "links", "component_links", "component_link"];

/// `links` and the original dtk's spellings of it.
const LINKS_KEYS: &[&str] = &["links", "component_links", "component_link"];

/// The node types of the original's `nodes:` mapping (its `attributes: {type: ...}`).
const NODE_TYPES: &[&str] = &["single", "group"];

/// One entry of a `components:` list: its key node and body.
fn entry<'a>(
    ctx: &mut Ctx,
    item: &'a YamlNode,
    path: &str,
) -> Option<(&'a YamlNode, Option<&'a YamlNode>)> {
    match &item.kind {
        YamlKind::Scalar { .. } if !item.is_null() => Some((item, None)),
        YamlKind::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            Some((k, Some(v)))
        }
        YamlKind::Map(entries) => {
            let keys: Vec<&str> = entries.iter().filter_map(|(k, _)| k.scalar()).collect();
            ctx.error_help(
                item.at,
                path,
                format!(
                    "an entry of a components list must have exactly one key, found {}",
                    list(keys.iter().copied())
                ),
                "write `- REF` or `- REF: {attributes: ..., links: ...}`, with the entry's keys indented under REF",
            );
            None
        }
        _ => {
            ctx.error_help(
                item.at,
                path,
                format!(
                    "an entry of a components list must be a component reference, found {}",
                    found(item)
                ),
                "write `- REF` or `- REF: {attributes: ..., links: ...}`",
            );
            None
        }
    }
}

fn has_key(body: Option<&YamlNode>, key: &str) -> bool {
    body.is_some_and(|b| b.get(key).is_some())
}

/// Decodes a `components:` list of an assembly or a service document into nodes and
/// assembly-level components.
pub(crate) fn components(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
) -> (Vec<NodeDecl>, Vec<ComponentDecl>) {
    let mut nodes = Vec::new();
    let mut comps = Vec::new();
    let Some(items) = ctx.seq(node, path, "`components`") else {
        return (nodes, comps);
    };
    for (i, item) in items.iter().enumerate() {
        let Some((key, body)) = entry(ctx, item, &index(path, i)) else {
            continue;
        };
        let Some(text) = key.scalar() else { continue };
        let item_path = child(path, text);
        let Some(r) = parse_ref(ctx, text, key.at, &item_path) else {
            continue;
        };
        let is_node_name = r.name == "node" || r.name == "node_group";
        if is_node_name || has_key(body, "components") {
            let Some(name) = r.instance.clone() else {
                if is_node_name {
                    ctx.error_help(
                        key.at,
                        &item_path,
                        format!("`{}` needs a name", r.name),
                        format!("write `{}[NAME]`", r.name),
                    );
                } else {
                    ctx.error_help(
                        key.at,
                        &item_path,
                        format!("`{r}` has nested `components`, so it is a node, and a node needs a name"),
                        format!("write `{r}[NODE_NAME]`, or `node[NODE_NAME]`"),
                    );
                }
                continue;
            };
            let group = r.name == "node_group";
            let realizer = if is_node_name {
                r.module.as_ref().map(|_| r.without_instance())
            } else {
                Some(r.without_instance())
            };
            if let Some(real) = &realizer {
                scope.check(ctx, real, key.at, &item_path, RefCheck::Strict);
            }
            nodes.push(node_decl(
                ctx, scope, name, group, realizer, key.at, body, &item_path,
            ));
        } else {
            comps.push(component_decl(
                ctx,
                scope,
                r,
                key.at,
                body,
                &item_path,
                COMPONENT_KEYS,
            ));
        }
    }
    (nodes, comps)
}

/// The original dtk's `nodes:` mapping of an assembly: `NAME: {attributes: {...},
/// components: [...]}`, where `attributes: {type: group}` makes a node group (its
/// `cardinality` among the attributes).
pub(crate) fn nodes_mapping(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
) -> Vec<NodeDecl> {
    let mut out = Vec::new();
    let Some(entries) = ctx.map(node, path, "`nodes`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(name) = k.scalar() else { continue };
        let p = child(path, name);
        if !ctx.check_name_at(name, k.at, &p, "node name") {
            continue;
        }
        let node_type = v.get("attributes").and_then(|a| a.get("type"));
        let group =
            match node_type {
                None => false,
                Some(t) => match t.scalar() {
                    Some("group") => true,
                    Some("single") => false,
                    _ => {
                        let tp = child(&child(&p, "attributes"), "type");
                        ctx.error_help(
                        t.at,
                        &tp,
                        format!("a node's `type` must be `group` or `single`, found {}", found(t)),
                        "`type: group` makes the node a node group; leave it out for a single node",
                    );
                        false
                    }
                },
            };
        let mut decl = node_decl(ctx, scope, name.to_owned(), group, None, k.at, Some(v), &p);
        if node_type
            .and_then(YamlNode::scalar)
            .is_some_and(|t| NODE_TYPES.contains(&t))
        {
            // The node's type is `NodeDecl::group`, not an attribute.
            decl.attributes.remove("type");
        }
        out.push(decl);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn node_decl(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    name: String,
    group: bool,
    mut node_component: Option<ComponentRef>,
    at: Location,
    body: Option<&YamlNode>,
    path: &str,
) -> NodeDecl {
    let mut decl = NodeDecl {
        name,
        group,
        node_component: None,
        attributes: Default::default(),
        components: Vec::new(),
        links: Vec::new(),
        at,
    };
    let Some(body) = body else {
        decl.node_component = node_component;
        return decl;
    };
    let Some(entries) = ctx.map(body, path, "a node") else {
        decl.node_component = node_component;
        return decl;
    };
    ctx.check_keys(entries, path, NODE_KEYS, "a node");
    if let Some((key, v)) = ctx.aliased(entries, path, LINKS_KEYS) {
        decl.links = links(ctx, v, &child(path, key));
    }
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        match key {
            "attributes" => decl.attributes = node_attributes(ctx, v, &p, group),
            "components" => decl.components = node_components(ctx, scope, v, &p),
            "node_component" => {
                let Some(text) = ctx.text(v, &p, "`node_component`") else {
                    continue;
                };
                let Some(r) = parse_ref(ctx, &text, v.at, &p) else {
                    continue;
                };
                if r.instance.is_some() {
                    ctx.error_help(
                        v.at,
                        &p,
                        format!(
                            "`node_component` names a component definition, not an instance: `{r}`"
                        ),
                        format!("write `{}`", r.without_instance()),
                    );
                    continue;
                }
                match &node_component {
                    Some(existing) if *existing != r => ctx.error_help(
                        v.at,
                        &p,
                        format!("`node_component: {r}` contradicts the entry's `{existing}`"),
                        "give the realizing component once",
                    ),
                    _ => {
                        scope.check(ctx, &r, v.at, &p, RefCheck::Strict);
                        node_component = Some(r);
                    }
                }
            }
            _ => {}
        }
    }
    decl.node_component = node_component;
    decl
}

fn node_attributes(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    group: bool,
) -> crate::value::SortedMap<AttrValue> {
    let mut out = crate::value::SortedMap::new();
    let Some(entries) = ctx.map(node, path, "`attributes`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        if !ctx.check_name_at(key, k.at, &p, "attribute name") {
            continue;
        }
        if key == "cardinality" {
            if !group {
                ctx.error_help(
                    k.at,
                    &p,
                    "only a node group has a `cardinality`",
                    "declare the node as `node_group[NAME]`",
                );
                continue;
            }
            if ctx
                .uint(v, &p, "`cardinality`", 0, MAX_CARDINALITY)
                .is_none()
            {
                continue;
            }
        }
        out.insert(
            key.to_owned(),
            AttrValue {
                value: node_value(v),
                at: v.at,
            },
        );
    }
    out
}

fn node_components(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    node: &YamlNode,
    path: &str,
) -> Vec<ComponentDecl> {
    let Some(items) = ctx.seq(node, path, "`components`") else {
        return Vec::new();
    };
    // Sized once: a service of 100,000 components has tens of thousands of these lists.
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some((key, body)) = entry(ctx, item, &index(path, i)) else {
            continue;
        };
        let Some(text) = key.scalar() else { continue };
        let item_path = child(path, text);
        let Some(r) = parse_ref(ctx, text, key.at, &item_path) else {
            continue;
        };
        if r.name == "node" || r.name == "node_group" {
            ctx.error_help(
                key.at,
                &item_path,
                format!("`{r}` is a node, and nodes cannot be placed on a node"),
                "declare nodes at the top of the `components` list",
            );
            continue;
        }
        out.push(component_decl(
            ctx,
            scope,
            r,
            key.at,
            body,
            &item_path,
            NODE_COMPONENT_KEYS,
        ));
    }
    out
}

fn component_decl(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    reference: ComponentRef,
    at: Location,
    body: Option<&YamlNode>,
    path: &str,
    keys: &[&str],
) -> ComponentDecl {
    let target = scope.check(ctx, &reference, at, path, RefCheck::Strict);
    let mut decl = ComponentDecl {
        reference,
        attributes: Default::default(),
        links: Vec::new(),
        at,
    };
    let Some(body) = body else { return decl };
    let Some(entries) = ctx.map(body, path, "a component entry") else {
        return decl;
    };
    ctx.check_keys(entries, path, keys, "a component entry");
    let def = scope.def(&target);
    if let Some(v) = body.get("attributes") {
        decl.attributes = overrides(ctx, v, &child(path, "attributes"), def, &decl.reference);
    }
    if let Some((key, v)) = ctx.aliased(entries, path, LINKS_KEYS) {
        decl.links = links(ctx, v, &child(path, key));
    }
    decl
}

/// Attribute values given to a component; checked against its definition when it is a
/// component of the same module.
fn overrides(
    ctx: &mut Ctx,
    node: &YamlNode,
    path: &str,
    def: Option<&ComponentDef>,
    reference: &ComponentRef,
) -> crate::value::SortedMap<AttrValue> {
    let mut out = crate::value::SortedMap::new();
    let Some(entries) = ctx.map(node, path, "`attributes`") else {
        return out;
    };
    for (k, v) in entries {
        let Some(key) = k.scalar() else { continue };
        let p = child(path, key);
        if !ctx.check_name_at(key, k.at, &p, "attribute name") {
            continue;
        }
        let mut value = node_value(v);
        if let Some(def) = def {
            let Some(attr) = def.attributes.get(key) else {
                let help = match did_you_mean(key, def.attributes.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if def.attributes.is_empty() => {
                        format!("component `{}` declares no attributes", def.name)
                    }
                    None => format!(
                        "its attributes are {}",
                        list(def.attributes.keys().map(String::as_str))
                    ),
                };
                ctx.error_help(
                    k.at,
                    &p,
                    format!(
                        "component `{reference}` has no attribute `{}`",
                        shorten(key)
                    ),
                    help,
                );
                continue;
            };
            if attr.constant {
                ctx.error_help(
                    k.at,
                    &p,
                    format!("attribute `{key}` of `{reference}` is constant (`constant: true`) and cannot be set"),
                    "remove the value: the module fixes it",
                );
                continue;
            }
            if attr.dynamic && !attr.input {
                ctx.error_help(
                    k.at,
                    &p,
                    format!("attribute `{key}` of `{reference}` is an output (`dynamic: true`) and cannot be set"),
                    "add `input: true` to its definition to let users set it",
                );
                continue;
            }
            match typed_value(attr.ty, v) {
                Ok(v) => value = v,
                Err(why) => {
                    ctx.error_help(
                        v.at,
                        &p,
                        format!("{why} of attribute `{key}` of `{reference}`"),
                        format!("expected {}", type_phrase(attr.ty)),
                    );
                    continue;
                }
            }
        }
        out.insert(key.to_owned(), AttrValue { value, at: v.at });
    }
    out
}
