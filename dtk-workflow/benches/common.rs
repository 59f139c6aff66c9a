//! What the benchmarks share: a no-op provider and generated models of three shapes.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dtk_model::diag::Location;
use dtk_model::ident::{ComponentRef, ModuleId};
use dtk_model::instance::{
    ComponentId, ComponentInstance, Dependency, LinkSource, NodeInstance, ResolvedLink,
    ServiceModel,
};
use dtk_model::module::{ActionDef, ActionKind, AttrType, AttributeDef, ComponentDef};
use dtk_model::provider::{Provider, ProviderError, ProviderRegistry, ResourceRequest};
use dtk_model::value::{Attributes, Value};
use dtk_workflow::ExecContext;

/// Does nothing, at once.
pub struct Noop;

#[async_trait]
impl Provider for Noop {
    fn kind(&self) -> &str {
        "noop"
    }
    async fn create(&self, _req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let mut out = Attributes::new();
        out.insert("out".to_owned(), Value::from("x"));
        Ok(out)
    }
    async fn delete(&self, _req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

fn action(name: &str) -> ActionDef {
    ActionDef {
        name: name.to_owned(),
        kind: ActionKind::Provider {
            kind: "noop".to_owned(),
            resource: "thing".to_owned(),
        },
        attempts: 1,
        sleep: Duration::ZERO,
        timeout: None,
        at: Location::default(),
    }
}

fn def(name: &str) -> Arc<ComponentDef> {
    let mut attributes = BTreeMap::new();
    for (a, dynamic) in [("out", true), ("in", false), ("size", false)] {
        attributes.insert(
            a.to_owned(),
            AttributeDef {
                name: a.to_owned(),
                ty: AttrType::String,
                default: None,
                required: false,
                description: None,
                dynamic,
                hidden: false,
                secret: false,
                input: false,
                constant: false,
                at: Location::default(),
            },
        );
    }
    let mut actions = BTreeMap::new();
    actions.insert("create".to_owned(), action("create"));
    actions.insert("delete".to_owned(), action("delete"));
    Arc::new(ComponentDef {
        name: name.to_owned(),
        description: None,
        attributes,
        dependencies: Vec::new(),
        link_defs: Vec::new(),
        actions,
        singleton: false,
        metadata: BTreeMap::new(),
        at: Location::default(),
    })
}

#[derive(Clone, Copy)]
pub enum Shape {
    /// One node per 10 components; each component is on a node, depends on its node's
    /// component, and links to a pseudo-random earlier component: a wide, deep DAG.
    Service,
    /// No edges, no nodes.
    Wide,
    /// One chain.
    Chain,
}

pub fn model(n: usize, shape: Shape) -> ServiceModel {
    let cdef = def("app");
    let ndef = def("node");
    let module = ModuleId::new("bench", "mod").expect("module id");
    let mut components = Vec::with_capacity(n);
    let mut nodes = Vec::new();
    let nodes_n = match shape {
        Shape::Service => (n / 10).max(1),
        _ => 0,
    };
    for k in 0..nodes_n {
        let name = format!("n{k}");
        let id = ComponentId(format!("node[{name}]"));
        nodes.push(NodeInstance {
            name: name.clone(),
            group: None,
            attributes: Attributes::new(),
            realized_by: Some(id.clone()),
        });
        let mut inputs = Attributes::new();
        inputs.insert("size".to_owned(), Value::from("small"));
        components.push(ComponentInstance {
            id,
            module: module.clone(),
            reference: ComponentRef::local("node"),
            node: Some(name),
            realizes_node: true,
            def: ndef.clone(),
            inputs,
            secret_inputs: Vec::new(),
            secret_digest: None,
            content_digest: None,
            depends_on: Vec::new(),
            links: Vec::new(),
        });
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let first_app = components.len();
    while components.len() < n {
        let i = components.len() - first_app;
        let node = (nodes_n > 0).then(|| format!("n{}", i % nodes_n));
        let id = match &node {
            Some(nd) => ComponentId(format!("{nd}/app{i}")),
            None => ComponentId(format!("app{i}")),
        };
        let mut depends_on = Vec::new();
        let mut links = Vec::new();
        if let Some(nd) = &node {
            depends_on.push(Dependency {
                on: ComponentId(format!("node[{nd}]")),
                reason: format!("node {nd}"),
            });
        }
        match shape {
            Shape::Service if i > 0 => {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let j = first_app + usize::try_from(seed % (i as u64)).unwrap_or(0);
                let p: &ComponentInstance = &components[j];
                let on = p.id.clone();
                depends_on.push(Dependency {
                    on: on.clone(),
                    reason: format!("link {on}"),
                });
                links.push(ResolvedLink {
                    from: LinkSource::Component(on),
                    mappings: vec![(vec!["out".to_owned()], "in".to_owned())],
                });
            }
            Shape::Chain if i > 0 => {
                let on = components[components.len() - 1].id.clone();
                depends_on.push(Dependency {
                    on,
                    reason: "dependency".to_owned(),
                });
            }
            _ => {}
        }
        let mut inputs = Attributes::new();
        inputs.insert("size".to_owned(), Value::from(format!("s{}", i % 7)));
        components.push(ComponentInstance {
            id,
            module: module.clone(),
            reference: ComponentRef::local("app"),
            node,
            realizes_node: false,
            def: cdef.clone(),
            inputs,
            secret_inputs: Vec::new(),
            secret_digest: None,
            content_digest: None,
            depends_on,
            links,
        });
    }
    ServiceModel {
        name: "bench".to_owned(),
        target: None,
        nodes,
        components,
        workflows: BTreeMap::new(),
    }
}

pub fn ctx() -> ExecContext {
    let mut reg = ProviderRegistry::new();
    reg.register(Arc::new(Noop));
    ExecContext::new(reg)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
