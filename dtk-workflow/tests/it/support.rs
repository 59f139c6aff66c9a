//! Test support: a small model builder, and a fake provider and fake command transport
//! that record every call (with a global sequence number at start and end, to check
//! ordering and node exclusivity afterwards).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dtk_model::diag::Location;
use dtk_model::ident::{ComponentRef, ModuleId};
use dtk_model::instance::{
    ComponentId, ComponentInstance, Dependency, LinkSource, NodeInstance, ResolvedLink,
    ServiceModel,
};
use dtk_model::module::{
    ActionDef, ActionKind, ActionStep, AttrType, AttributeDef, Command, ComponentDef, NodeSelector,
    Subtask, SubtaskOrder, Workflow,
};
use dtk_model::provider::{
    ExecOutput, ExecRequest, Provider, ProviderError, ProviderRegistry, ResourceRequest,
};
use dtk_model::value::{Attributes, Value};
use dtk_workflow::{CommandTransport, ExecContext, SyncMode};

// ---------------------------------------------------------------- model builder

pub fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}

pub fn provider_action(name: &str, kind: &str, resource: &str) -> ActionDef {
    ActionDef {
        name: name.to_owned(),
        kind: ActionKind::Provider {
            kind: kind.to_owned(),
            resource: resource.to_owned(),
        },
        attempts: 1,
        sleep: Duration::ZERO,
        timeout: None,
        at: Location::default(),
    }
}

pub fn commands(name: &str, lines: &[&str]) -> ActionDef {
    ActionDef {
        name: name.to_owned(),
        kind: ActionKind::Commands(
            lines
                .iter()
                .map(|l| Command::Run((*l).to_owned()))
                .collect(),
        ),
        attempts: 1,
        sleep: Duration::ZERO,
        timeout: None,
        at: Location::default(),
    }
}

pub fn attr(name: &str, ty: AttrType, dynamic: bool, secret: bool) -> AttributeDef {
    AttributeDef {
        name: name.to_owned(),
        ty,
        default: None,
        required: false,
        description: None,
        dynamic,
        hidden: false,
        secret,
        input: false,
        constant: false,
        at: Location::default(),
    }
}

/// A component under construction.
pub struct C {
    pub inst: ComponentInstance,
    pub def: ComponentDef,
}

impl C {
    /// `id` is `node/name`, `name`, or `node[name]`.
    pub fn new(id: &str) -> C {
        let (node, cref) = match id.split_once('/') {
            Some((n, c)) => (Some(n.to_owned()), c),
            None => (None, id),
        };
        let realizes = id.starts_with("node[");
        let reference: ComponentRef = if realizes {
            "fake::node".parse().expect("component ref")
        } else {
            cref.parse().expect("component ref")
        };
        let node = if realizes {
            id.strip_prefix("node[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned)
        } else {
            node
        };
        let def = ComponentDef {
            name: reference.name.clone(),
            description: None,
            attributes: BTreeMap::new(),
            dependencies: Vec::new(),
            link_defs: Vec::new(),
            actions: BTreeMap::new(),
            singleton: false,
            metadata: BTreeMap::new(),
            at: Location::default(),
        };
        C {
            inst: ComponentInstance {
                id: ComponentId(id.to_owned()),
                module: ModuleId::new("test", "mod").expect("module id"),
                reference,
                node,
                realizes_node: realizes,
                def: Arc::new(def.clone()),
                inputs: Attributes::new(),
                secret_inputs: Vec::new(),
                secret_digest: None,
                content_digest: None,
                depends_on: Vec::new(),
                links: Vec::new(),
            },
            def,
        }
    }

    /// A provider-backed component (`fake.thing` create and delete).
    pub fn res(id: &str) -> C {
        C::new(id)
            .action(provider_action("create", "fake", "thing"))
            .action(provider_action("delete", "fake", "thing"))
            .attr(attr("out", AttrType::String, true, false))
            .attr(attr("id", AttrType::String, true, false))
    }

    pub fn action(mut self, a: ActionDef) -> C {
        self.def.actions.insert(a.name.clone(), a);
        self
    }

    pub fn attr(mut self, a: AttributeDef) -> C {
        self.def.attributes.insert(a.name.clone(), a);
        self
    }

    pub fn input(mut self, k: &str, v: impl Into<Value>) -> C {
        if !self.def.attributes.contains_key(k) {
            self.def
                .attributes
                .insert(k.to_owned(), attr(k, AttrType::Any, false, false));
        }
        self.inst.inputs.insert(k.to_owned(), v.into());
        self
    }

    pub fn secret(mut self, k: &str) -> C {
        self.def
            .attributes
            .insert(k.to_owned(), attr(k, AttrType::String, false, true));
        self.inst.secret_inputs.push(k.to_owned());
        self
    }

    pub fn dep(mut self, on: &str) -> C {
        self.inst.depends_on.push(Dependency {
            on: ComponentId(on.to_owned()),
            reason: format!("dependency {on}"),
        });
        self
    }

    /// Links `producer.from` to this component's input `to` (and depends on it).
    pub fn link(mut self, producer: &str, from: &str, to: &str) -> C {
        self.inst.depends_on.push(Dependency {
            on: ComponentId(producer.to_owned()),
            reason: format!("link {producer}"),
        });
        self.inst.links.push(ResolvedLink {
            from: LinkSource::Component(ComponentId(producer.to_owned())),
            mappings: vec![(from.split('.').map(str::to_owned).collect(), to.to_owned())],
        });
        if !self.def.attributes.contains_key(to) {
            self.def
                .attributes
                .insert(to.to_owned(), attr(to, AttrType::Any, false, false));
        }
        self
    }

    pub fn external(
        mut self,
        service: &str,
        component: &str,
        values: Attributes,
        from: &str,
        to: &str,
    ) -> C {
        self.inst.links.push(ResolvedLink {
            from: LinkSource::External {
                service: service.to_owned(),
                component: ComponentId(component.to_owned()),
                values,
            },
            mappings: vec![(vec![from.to_owned()], to.to_owned())],
        });
        self
    }

    pub fn build(mut self) -> ComponentInstance {
        self.inst.def = Arc::new(self.def);
        self.inst
    }
}

/// A service model under construction.
pub struct M {
    pub model: ServiceModel,
}

impl M {
    pub fn new(name: &str) -> M {
        M {
            model: ServiceModel {
                name: name.to_owned(),
                target: Some("fake-target".to_owned()),
                nodes: Vec::new(),
                components: Vec::new(),
                workflows: BTreeMap::new(),
            },
        }
    }

    /// A node realized by a `node[NAME]` component (provider `fake.node`).
    pub fn node(self, name: &str) -> M {
        self.node_in(name, None)
    }

    pub fn node_in(mut self, name: &str, group: Option<&str>) -> M {
        let id = format!("node[{name}]");
        self.model.nodes.push(NodeInstance {
            name: name.to_owned(),
            group: group.map(str::to_owned),
            attributes: Attributes::new(),
            realized_by: Some(ComponentId(id.clone())),
        });
        let c = C::new(&id)
            .action(provider_action("create", "fake", "node"))
            .action(provider_action("delete", "fake", "node"))
            .attr(attr("address", AttrType::String, true, false))
            .attr(attr("id", AttrType::String, true, false))
            .attr(attr("out", AttrType::String, true, false))
            .input("image", "img");
        self.model.components.push(c.build());
        self
    }

    /// A node group of `n` members `NAME:1..n`.
    pub fn group(mut self, name: &str, n: usize) -> M {
        for k in 1..=n {
            self = self.node_in(&format!("{name}:{k}"), Some(name));
        }
        self
    }

    /// Adds a component; one on a node depends on the node's component.
    pub fn cmp(mut self, c: C) -> M {
        let mut c = c;
        if let Some(n) = c.inst.node.clone()
            && !c.inst.realizes_node
        {
            let nid = format!("node[{n}]");
            if self.model.components.iter().any(|x| x.id.0 == nid) {
                c.inst.depends_on.insert(
                    0,
                    Dependency {
                        on: ComponentId(nid),
                        reason: format!("node {n}"),
                    },
                );
            }
        }
        self.model.components.push(c.build());
        self
    }

    pub fn workflow(mut self, order: SubtaskOrder, steps: Vec<Subtask>) -> M {
        self.model.workflows.insert(
            "create".to_owned(),
            Workflow {
                name: "create".to_owned(),
                subtask_order: order,
                subtasks: steps,
                at: Location::default(),
            },
        );
        self
    }

    pub fn build(self) -> ServiceModel {
        self.model
    }
}

pub fn step(name: &str, node: Option<&str>, components: &[&str]) -> Subtask {
    Subtask {
        name: Some(name.to_owned()),
        node: node.map(|n| NodeSelector::Node(n.to_owned())),
        subtask_order: SubtaskOrder::Sequential,
        components: components.iter().map(|c| c.parse().expect("ref")).collect(),
        ordered: false,
        actions: Vec::new(),
        subtasks: Vec::new(),
        breakpoint: false,
        at: Location::default(),
    }
}

pub fn group_step(name: &str, group: &str, components: &[&str]) -> Subtask {
    Subtask {
        node: Some(NodeSelector::Group(group.to_owned())),
        ..step(name, None, components)
    }
}

pub fn nested(name: &str, order: SubtaskOrder, subtasks: Vec<Subtask>) -> Subtask {
    Subtask {
        subtask_order: order,
        subtasks,
        ..step(name, None, &[])
    }
}

pub fn action_step(cmp: &str, action: &str) -> ActionStep {
    ActionStep {
        component: cmp.parse().expect("ref"),
        action: action.to_owned(),
        params: BTreeMap::new(),
        at: Location::default(),
    }
}

// ---------------------------------------------------------------- fakes

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `create`, `update`, `delete`, or `exec`.
    pub op: String,
    pub component: String,
    pub node: Option<String>,
    pub key: String,
    pub inputs: Attributes,
    pub script: Vec<String>,
    pub env: Vec<(String, String)>,
    pub start: u64,
    pub end: u64,
    pub ok: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Fail {
    /// Fail this many times, then succeed.
    Times(u32, bool),
    /// Always fail.
    Always,
}

/// What both fakes share: the call log, the clock, the injected failures.
#[derive(Default)]
pub struct World {
    pub calls: Mutex<Vec<Call>>,
    pub clock: AtomicU64,
    /// `(component, op)` → failure; `op` `*` matches any.
    pub fail: Mutex<HashMap<(String, String), Fail>>,
    /// Simulated work per call.
    pub delay: Mutex<Duration>,
    /// Fake resources that exist: component → outputs.
    pub resources: Mutex<BTreeMap<String, Attributes>>,
}

impl World {
    pub fn new() -> Arc<World> {
        Arc::new(World::default())
    }

    pub fn fail(&self, component: &str, op: &str, f: Fail) {
        self.fail
            .lock()
            .unwrap()
            .insert((component.to_owned(), op.to_owned()), f);
    }

    pub fn clear_failures(&self) {
        self.fail.lock().unwrap().clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// `(component, op)` of each successful call, in start order.
    pub fn done_ops(&self) -> Vec<(String, String)> {
        let mut c = self.calls();
        c.sort_by_key(|c| c.start);
        c.into_iter()
            .filter(|c| c.ok)
            .map(|c| (c.component, c.op))
            .collect()
    }

    fn should_fail(&self, component: &str, op: &str) -> Option<bool> {
        let mut f = self.fail.lock().unwrap();
        for key in [
            (component.to_owned(), op.to_owned()),
            (component.to_owned(), "*".to_owned()),
        ] {
            match f.get_mut(&key) {
                Some(Fail::Always) => return Some(false),
                Some(Fail::Times(n, retryable)) if *n > 0 => {
                    *n -= 1;
                    return Some(*retryable);
                }
                _ => {}
            }
        }
        None
    }

    async fn work(&self) {
        let d = *self.delay.lock().unwrap();
        if d.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(d).await;
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }
}

/// A fake provider of kind `fake`: resources are entries in `World::resources`;
/// outputs are `id` = `id-COMPONENT` and `out` = the `out` input if given, else the id;
/// nodes get an `address`.
pub struct FakeProvider {
    pub world: Arc<World>,
    /// Whether `exec` runs commands (else it says Unsupported, and the transport runs them).
    pub runs_commands: bool,
}

impl FakeProvider {
    fn outputs(req: &ResourceRequest<'_>) -> Attributes {
        let id = format!("id-{}", req.component);
        let mut out = Attributes::new();
        out.insert(
            "out".to_owned(),
            req.inputs
                .get("out")
                .cloned()
                .unwrap_or_else(|| Value::from(id.clone())),
        );
        if req.resource == "node" {
            out.insert(
                "address".to_owned(),
                Value::from(format!("10.0.0.{}", req.component.len())),
            );
        }
        if let Some(s) = req.secrets.get("token") {
            // A provider must never return secrets as outputs; this one returns a
            // declared-secret output only when asked to, to test filtering.
            if req.inputs.get("leak").is_some() {
                out.insert("token_out".to_owned(), s.clone());
            }
        }
        out.insert("id".to_owned(), Value::from(id));
        out
    }

    async fn op(&self, op: &str, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        let start = self.world.tick();
        self.world.work().await;
        let fail = self.world.should_fail(req.component, op);
        let out = Self::outputs(req);
        if fail.is_none() {
            let mut r = self.world.resources.lock().unwrap();
            if op == "delete" {
                r.remove(req.component);
            } else {
                r.insert(req.component.to_owned(), out.clone());
            }
        }
        let end = self.world.tick();
        self.world.calls.lock().unwrap().push(Call {
            op: op.to_owned(),
            component: req.component.to_owned(),
            node: req.node.map(str::to_owned),
            key: req.idempotency_key.to_owned(),
            inputs: req.inputs.clone(),
            script: Vec::new(),
            env: Vec::new(),
            start,
            end,
            ok: fail.is_none(),
        });
        match fail {
            None => Ok(out),
            Some(retryable) => Err(ProviderError::Failed {
                operation: format!("{op} fake.{} for {}", req.resource, req.component),
                message: "injected failure".to_owned(),
                retryable,
                source: None,
            }),
        }
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn kind(&self) -> &str {
        "fake"
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.op("create", req).await
    }

    async fn update(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        self.op("update", req).await
    }

    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        self.op("delete", req).await.map(|_| ())
    }

    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        if !self.runs_commands {
            return Err(ProviderError::Unsupported {
                provider: "fake".to_owned(),
                what: "running commands".to_owned(),
            });
        }
        run_script(&self.world, "provider-exec", req).await
    }
}

/// A fake transport: a tiny shell. `emit NAME=VALUE` adds an output, `fail [CODE]`
/// exits non-zero, `echo TEXT` prints, `env NAME` prints a variable; every script is
/// recorded as an `exec` call of the component in `DTK_COMPONENT`.
pub struct FakeTransport {
    pub world: Arc<World>,
}

#[async_trait]
impl CommandTransport for FakeTransport {
    async fn exec(&self, req: &ExecRequest<'_>) -> Result<ExecOutput, ProviderError> {
        run_script(&self.world, "exec", req).await
    }
}

async fn run_script(
    world: &World,
    op: &str,
    req: &ExecRequest<'_>,
) -> Result<ExecOutput, ProviderError> {
    let start = world.tick();
    world.work().await;
    let component = req
        .env
        .iter()
        .find(|(k, _)| k == "DTK_COMPONENT")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut out = ExecOutput {
        exit_code: Some(0),
        ..ExecOutput::default()
    };
    if world.should_fail(&component, "exec").is_some() {
        out.exit_code = Some(1);
        out.stderr = b"injected failure\n".to_vec();
    }
    for line in req.steps.iter().filter_map(|s| s.run_line()) {
        if out.exit_code != Some(0) {
            break;
        }
        let mut words = line.splitn(2, ' ');
        let cmd = words.next().unwrap_or("");
        let rest = words.next().unwrap_or("").trim();
        match cmd {
            "emit" => {
                let unq = rest.trim_matches('\'');
                if let Some((k, v)) = unq.split_once('=') {
                    out.outputs.push((k.to_owned(), v.to_owned()));
                }
            }
            "fail" => {
                out.exit_code = Some(rest.parse().unwrap_or(1));
                out.stderr.extend_from_slice(b"failed on purpose\n");
            }
            "failenv" => {
                let v = req
                    .env
                    .iter()
                    .find(|(k, _)| k == rest)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                out.exit_code = Some(2);
                out.stdout
                    .extend_from_slice(format!("using {v}\n").as_bytes());
                out.stderr
                    .extend_from_slice(format!("bad {rest}={v}\n").as_bytes());
            }
            "echo" => {
                out.stdout.extend_from_slice(rest.as_bytes());
                out.stdout.push(b'\n');
            }
            "env" => {
                let v = req
                    .env
                    .iter()
                    .find(|(k, _)| k == rest)
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("<unset>");
                out.stdout
                    .extend_from_slice(format!("{rest}={v}\n").as_bytes());
            }
            _ => {}
        }
    }
    let end = world.tick();
    world.calls.lock().unwrap().push(Call {
        op: op.to_owned(),
        component,
        node: if req.node.is_empty() {
            None
        } else {
            Some(req.node.to_owned())
        },
        key: String::new(),
        inputs: Attributes::new(),
        script: req
            .steps
            .iter()
            .filter_map(|s| s.run_line().map(str::to_owned))
            .collect(),
        env: req.env.to_vec(),
        start,
        end,
        ok: out.exit_code == Some(0),
    });
    Ok(out)
}

/// A context with the fake provider and transport, no journal, fast retries.
pub fn ctx(world: &Arc<World>) -> ExecContext {
    let mut reg = ProviderRegistry::new();
    reg.register(Arc::new(FakeProvider {
        world: world.clone(),
        runs_commands: false,
    }));
    let mut ctx = ExecContext::new(reg);
    ctx.transport = Some(Arc::new(FakeTransport {
        world: world.clone(),
    }));
    ctx.retry.backoff = Duration::from_millis(1);
    ctx.journal_sync = SyncMode::Never;
    ctx
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
