//! The validated model of a module (`dtk.module.yaml`): the class library that services
//! are made from.
//!
//! These are domain types, not the on-disk document: the DSL decoder (`dsl`)
//! builds them after checking the text, and every name and reference in them has been
//! parsed once into a type. Source locations are kept where later stages (staging,
//! edits) report errors against the same file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::diag::Location;
use crate::ident::{ComponentRef, ModuleId, ModuleVersion, NodeComponentRef, VersionReq};
use crate::value::Value;

/// The DSL version this crate reads and writes.
pub const DSL_VERSION: &str = "1.0.0";

/// The version of a module whose document gives none: the development tag `master`
/// (the original dtk's default branch), republished in place like any tag.
pub const DEFAULT_VERSION: &str = "master";

/// A module: components, assemblies and workflows under one versioned name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    /// `namespace/name`.
    pub id: ModuleId,
    /// The version this text declares.
    pub version: ModuleVersion,
    /// `dsl_version`, when given.
    pub dsl_version: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Other modules this one uses, with version requirements, in declaration order.
    pub dependencies: Vec<ModuleDependency>,
    /// Component definitions by name (`component_defs`, alias `components`).
    pub components: BTreeMap<String, ComponentDef>,
    /// Assemblies by name.
    pub assemblies: BTreeMap<String, Assembly>,
    /// Module-level workflows by name (original dtk `workflows` at the top level).
    pub workflows: BTreeMap<String, Workflow>,
    /// Metadata keys the original dtk had that carry no behaviour here
    /// (`keywords`, `license`, ...), kept so the module can be shown.
    pub metadata: BTreeMap<String, Value>,
}

/// A dependency of a module on another module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleDependency {
    /// The module depended on.
    pub module: ModuleId,
    /// Which versions satisfy the dependency.
    pub req: VersionReq,
    /// Where the dependency is declared.
    pub at: Location,
}

/// A component definition: the class of a component instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentDef {
    /// The component's name within its module.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Attribute definitions by name.
    pub attributes: BTreeMap<String, AttributeDef>,
    /// Components that must exist for this one; each orders the dependency first.
    pub dependencies: Vec<DependencyDef>,
    /// How attributes flow from linked components into this one.
    pub link_defs: Vec<LinkDef>,
    /// Actions by name. `create` is mandatory for components that do anything; it is also
    /// the converge action.
    pub actions: BTreeMap<String, ActionDef>,
    /// At most one instance per node (original dtk `singleton`).
    pub singleton: bool,
    /// Keys the original dtk had that carry no behaviour here (`providers`, with the
    /// ruby gems a ruby action needed), kept as data so the module can be shown.
    pub metadata: BTreeMap<String, Value>,
    /// Where the definition starts.
    pub at: Location,
}

/// The type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttrType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// `true` / `false`.
    Boolean,
    /// A map.
    Hash,
    /// A list.
    Array,
    /// A TCP/UDP port number (1-65535).
    Port,
    /// Any value (the original dtk allowed attributes without a type).
    Any,
}

impl AttrType {
    /// The DSL spelling of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Integer => "integer",
            AttrType::Boolean => "boolean",
            AttrType::Hash => "hash",
            AttrType::Array => "array",
            AttrType::Port => "port",
            AttrType::Any => "any",
        }
    }

    /// Whether `v` is a value of this type. `Null` matches every type (unset).
    pub fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) | (AttrType::Any, _) => true,
            (AttrType::String, Value::Str(_)) => true,
            (AttrType::Integer, Value::Int(_)) => true,
            (AttrType::Boolean, Value::Bool(_)) => true,
            (AttrType::Hash, Value::Hash(_)) => true,
            (AttrType::Array, Value::Array(_)) => true,
            (AttrType::Port, Value::Int(p)) => (1..=65535).contains(p),
            _ => false,
        }
    }
}

/// An attribute definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeDef {
    /// The attribute's name.
    pub name: String,
    /// Its type.
    pub ty: AttrType,
    /// The value used when neither an assembly nor an edit sets one.
    pub default: Option<Value>,
    /// Must have a value before converge.
    pub required: bool,
    /// Free text.
    pub description: Option<String>,
    /// An output, set by an action (or a provider), not by the user.
    pub dynamic: bool,
    /// Not shown by default in listings.
    pub hidden: bool,
    /// Never written to a repository, a log, or an error message.
    pub secret: bool,
    /// An output that users may also set (original dtk `input: true` on a `dynamic`
    /// attribute, e.g. an existing `vpc_id` to use instead of creating one).
    pub input: bool,
    /// Its value is fixed by the module (original dtk `constant: true`).
    pub constant: bool,
    /// Where the definition starts.
    pub at: Location,
}

/// A dependency of a component on another component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyDef {
    /// The dependency's name: the component reference as written, or the name of a
    /// named dependency (`dependencies: {db: {choices: [...]}}`).
    pub name: String,
    /// Components that satisfy it; for an unnamed dependency, exactly the one named.
    pub choices: Vec<ComponentRef>,
    /// Where the component satisfying it must be (original dtk `location: local|remote`).
    pub placement: Placement,
    /// Where it is declared.
    pub at: Location,
}

/// Where a linked or depended-on component must be, relative to the component that
/// declares the link or dependency (original dtk `location`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Placement {
    /// Anywhere in the service or its target (no `location`).
    #[default]
    Anywhere,
    /// On the same node (`location: local`, or `same_node: true`).
    SameNode,
    /// On another node (`location: remote`, or `same_node: false`).
    OtherNode,
}

impl Placement {
    /// Whether a component on `other` may satisfy a component on `mine` (`None`: on no
    /// node).
    pub fn allows(self, mine: Option<&str>, other: Option<&str>) -> bool {
        match self {
            Placement::Anywhere => true,
            Placement::SameNode => mine.is_some() && mine == other,
            Placement::OtherNode => mine.is_none() || other != mine,
        }
    }
}

/// How a linked component's attributes flow into this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDef {
    /// The component linked to (the producer).
    pub target: ComponentRef,
    /// The mappings, each from an attribute of the producer to one of this component.
    pub attribute_mappings: Vec<AttributeMapping>,
    /// The named dependency this link satisfies (original dtk `dependency_name`), when
    /// given: its mappings apply to the component chosen for that dependency only.
    pub dependency: Option<String>,
    /// Where the producer must be for this definition to apply (`location`): one producer
    /// may have a definition for the same node and another for a remote one.
    pub placement: Placement,
    /// Where it is declared.
    pub at: Location,
}

/// One attribute mapping of a link.
///
/// - `$out -> in` ([`Flow::In`]): the producer's attribute `from` feeds this component's
///   attribute `to`;
/// - `in <- $out` ([`Flow::Out`]): this component's attribute `from` feeds the producer's
///   attribute `to` (the original dtk's other direction), or, with [`constant`], that
///   value does (`port <- 8080`, `mode <- 'fast'`).
///
/// `$node.NAME` names an attribute of the node the component is on (the producer's node
/// for `->`, this component's for `<-`).
///
/// [`constant`]: AttributeMapping::constant
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeMapping {
    /// The attribute the value comes from (written with `$`): its segments, a dotted
    /// path into a hash or array (`$node.host_addresses_ipv4.0`); empty for a constant.
    pub from: Vec<String>,
    /// The attribute the value goes to.
    pub to: String,
    /// Which way the value flows.
    pub flow: Flow,
    /// For `to <- CONSTANT`: the value.
    pub constant: Option<Value>,
    /// Where it is written.
    pub at: Location,
}

/// Which way an attribute mapping's value flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Flow {
    /// `$producer_attr -> my_attr`: from the linked component into this one.
    #[default]
    In,
    /// `producer_attr <- $my_attr`: from this component into the linked one.
    Out,
}

/// An action of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDef {
    /// The action's name (`create`, `delete`, or a custom one).
    pub name: String,
    /// What the action does.
    pub kind: ActionKind,
    /// How many times to try before giving up (at least 1).
    pub attempts: u32,
    /// How long to wait between attempts.
    pub sleep: Duration,
    /// How long one attempt may run; `None` uses the executor's default.
    pub timeout: Option<Duration>,
    /// Where the action starts.
    pub at: Location,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ActionKind {
    /// Shell commands run on the component's node (`RUN ...` lines).
    Commands(Vec<Command>),
    /// Done by a registered target provider: `provider: KIND.RESOURCE` (`aws.vpc`,
    /// `local.node`).
    Provider {
        /// The provider kind (`aws`).
        kind: String,
        /// The resource type (`vpc`).
        resource: String,
    },
    /// A kind the original dtk had that this one parses but does not run
    /// (`puppet_class`, `puppet_definition`, ruby `entrypoint`, `docker`, ...).
    /// Staging a service that would run it is refused with a clear error.
    Unsupported {
        /// The kind, as the DSL names it (`puppet_class`, `ruby`, `docker`).
        kind: String,
        /// The rest of the action's definition, kept as data.
        detail: Value,
    },
}

/// One step of a `commands` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `RUN cmd` (or `{RUN: cmd}`, `{command: cmd}`): a shell command, `{{attr}}`
    /// placeholders substituted shell-quoted.
    Run(String),
    /// `{ADD: , source: PATH, target: PATH, template: BOOL, owner: U, mode: M}`: places a
    /// file of the module on the node.
    Add(AddFile),
}

/// A file-placing step (the original dtk's `ADD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFile {
    /// The file's path in the module (relative to the module's root).
    pub source: String,
    /// Where it goes on the node (relative paths are relative to the action's directory,
    /// the module's directory on the node).
    pub target: String,
    /// Whether `{{attr}}` placeholders in the file are substituted.
    pub template: bool,
    /// The file's owner (`user` or `user:group`), when given.
    pub owner: Option<String>,
    /// The file's mode as written (`0644`), when given.
    pub mode: Option<String>,
}

impl Command {
    /// The shell line of a `RUN` step; `None` for other steps.
    pub fn run_line(&self) -> Option<&str> {
        match self {
            Command::Run(line) => Some(line),
            Command::Add(_) => None,
        }
    }

    /// The step as one line of text, for hashes and listings: a `RUN` step's line as
    /// written (without `RUN`), an `ADD` step as `ADD SOURCE TARGET` with its options.
    pub fn text(&self) -> String {
        match self {
            Command::Run(line) => line.clone(),
            Command::Add(a) => {
                let mut s = format!("ADD {} {}", a.source, a.target);
                if a.template {
                    s.push_str(" template");
                }
                if let Some(o) = &a.owner {
                    s.push_str(&format!(" owner={o}"));
                }
                if let Some(m) = &a.mode {
                    s.push_str(&format!(" mode={m}"));
                }
                s
            }
        }
    }
}

/// An assembly: a template of nodes and components that staging turns into a service.
/// Parsed with [`parse_module_defs`](crate::dsl::parse_module_defs), only its header is
/// read: `nodes`, `components` and `workflows` are empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assembly {
    /// The assembly's name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Nodes and node groups, in declaration order.
    pub nodes: Vec<NodeDecl>,
    /// Components not placed on a node (assembly-wide, e.g. a target's network).
    pub components: Vec<ComponentDecl>,
    /// Workflows by name (`actions`, alias `workflows`); `create` is the converge workflow.
    pub workflows: BTreeMap<String, Workflow>,
    /// For a target assembly: the component that realizes the nodes of services staged on
    /// the target (`ec2::node`, `local::node`). `None` for application assemblies.
    pub node_component: Option<ComponentRef>,
    /// Keys of the original dtk that carry no behaviour here (an assembly's `target` and
    /// `attributes`), kept so the module can be shown and written back.
    pub metadata: BTreeMap<String, Value>,
    /// Where the assembly starts.
    pub at: Location,
}

/// A node (`node[name]`) or node group (`node_group[name]`) of an assembly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDecl {
    /// The node's name.
    pub name: String,
    /// Whether this is a node group, expanded by its `cardinality` attribute.
    pub group: bool,
    /// The component realizing the node when given explicitly (`ec2::node[web]` in the
    /// original dtk's service files); otherwise the target's node component.
    pub node_component: Option<ComponentRef>,
    /// The node's own attributes (`image`, `size`, `cardinality`, ...).
    pub attributes: crate::value::SortedMap<AttrValue>,
    /// Components on the node.
    pub components: Vec<ComponentDecl>,
    /// Links of the node itself (original dtk service files).
    pub links: Vec<LinkDecl>,
    /// Where the node is declared.
    pub at: Location,
}

impl NodeDecl {
    /// The node group's size: its `cardinality` attribute, 1 for plain nodes.
    pub fn cardinality(&self) -> u32 {
        if !self.group {
            return 1;
        }
        self.attributes
            .get("cardinality")
            .and_then(|a| a.value.as_i64())
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(1)
    }
}

/// An attribute value written in an assembly or service file, with where it is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrValue {
    /// The value.
    pub value: Value,
    /// Where it is written.
    pub at: Location,
}

/// A component placed in an assembly (on a node or assembly-wide).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentDecl {
    /// Which component, and its instance name.
    pub reference: ComponentRef,
    /// Attribute overrides.
    pub attributes: crate::value::SortedMap<AttrValue>,
    /// Explicit links to other components (`links: [db, other_node/cmp]`, or named:
    /// `{dependency_name: target}`).
    pub links: Vec<LinkDecl>,
    /// Where it is declared.
    pub at: Location,
}

/// An explicit link from a component to the component that satisfies one of its
/// dependencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDecl {
    /// The dependency name it satisfies, when given (`db: node2/db`).
    pub dependency: Option<String>,
    /// The linked component; it may be on another node, or in another service (the
    /// original dtk's `service/cmp` form is kept in `service`).
    pub target: NodeComponentRef,
    /// For a link into another service instance (e.g. the target): that service's name.
    pub service: Option<String>,
    /// Where it is written.
    pub at: Location,
}

/// The order in which a workflow's subtasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SubtaskOrder {
    /// One after another, in order (the default).
    #[default]
    Sequential,
    /// All at once, as far as nodes and dependencies allow.
    Concurrent,
}

/// A workflow: a tree of subtasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// The workflow's name (`create`, `delete`, or custom).
    pub name: String,
    /// How the top-level subtasks are ordered.
    pub subtask_order: SubtaskOrder,
    /// The subtasks.
    pub subtasks: Vec<Subtask>,
    /// Where the workflow starts.
    pub at: Location,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subtask {
    /// The step's name, shown in task status.
    pub name: Option<String>,
    /// The node or node group it runs on.
    pub node: Option<NodeSelector>,
    /// How nested subtasks are ordered.
    pub subtask_order: SubtaskOrder,
    /// Components whose `create` action the step runs (concurrently where possible).
    pub components: Vec<ComponentRef>,
    /// Whether `components` must run in the listed order (`ordered_components`).
    pub ordered: bool,
    /// `cmp.action` steps: a component's named action.
    pub actions: Vec<ActionStep>,
    /// Nested subtasks.
    pub subtasks: Vec<Subtask>,
    /// Pause before this step for debugging (original dtk `breakpoint: true`).
    pub breakpoint: bool,
    /// Where the step starts.
    pub at: Location,
}

/// Which node(s) a workflow step runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSelector {
    /// A single node.
    Node(String),
    /// Every member of a node group.
    Group(String),
}

/// A `cmp.action` workflow step (`web.smoke_test`), optionally with parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionStep {
    /// The component, possibly node-qualified.
    pub component: NodeComponentRef,
    /// The action's name.
    pub action: String,
    /// Parameters passed to the action (`{k: v}`).
    pub params: BTreeMap<String, Value>,
    /// Where the step is written.
    pub at: Location,
}

impl Module {
    /// Finds a component definition of this module.
    pub fn component(&self, name: &str) -> Option<&ComponentDef> {
        self.components.get(name)
    }

    /// The module as [`parse_module_defs`](crate::dsl::parse_module_defs) reads its text:
    /// everything but its assemblies' nodes, components and workflows (each assembly
    /// keeps its header). Staging keeps this for a service's copy of the module, from the
    /// module it has already parsed, rather than parsing the text a second time.
    pub fn defs_only(&self) -> Module {
        Module {
            id: self.id.clone(),
            version: self.version.clone(),
            dsl_version: self.dsl_version.clone(),
            description: self.description.clone(),
            dependencies: self.dependencies.clone(),
            components: self.components.clone(),
            assemblies: self
                .assemblies
                .iter()
                .map(|(name, a)| {
                    let header = Assembly {
                        name: a.name.clone(),
                        description: a.description.clone(),
                        nodes: Vec::new(),
                        components: Vec::new(),
                        workflows: BTreeMap::new(),
                        node_component: a.node_component.clone(),
                        metadata: a.metadata.clone(),
                        at: a.at,
                    };
                    (name.clone(), header)
                })
                .collect(),
            workflows: self.workflows.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

impl Module {
    /// Sets every source location in the module to the default, so that two modules
    /// read from differently laid out text compare equal when their content is.
    pub fn clear_locations(&mut self) {
        for d in &mut self.dependencies {
            d.at = Location::default();
        }
        self.components.values_mut().for_each(clear_def);
        self.assemblies.values_mut().for_each(clear_assembly);
        self.workflows.values_mut().for_each(clear_workflow);
    }
}

// Clearing source locations, for comparing documents by content (round trips, "did the
// user change anything").

fn clear_def(def: &mut ComponentDef) {
    def.at = Location::default();
    for a in def.attributes.values_mut() {
        a.at = Location::default();
    }
    for d in &mut def.dependencies {
        d.at = Location::default();
    }
    for l in &mut def.link_defs {
        l.at = Location::default();
        for m in &mut l.attribute_mappings {
            m.at = Location::default();
        }
    }
    for a in def.actions.values_mut() {
        a.at = Location::default();
    }
}

fn clear_assembly(a: &mut Assembly) {
    a.at = Location::default();
    a.nodes.iter_mut().for_each(clear_node);
    a.components.iter_mut().for_each(clear_decl);
    a.workflows.values_mut().for_each(clear_workflow);
}

fn clear_values(attrs: &mut crate::value::SortedMap<AttrValue>) {
    for (_, v) in attrs.iter_mut() {
        v.at = Location::default();
    }
}

fn clear_links(links: &mut [LinkDecl]) {
    for l in links {
        l.at = Location::default();
    }
}

pub(crate) fn clear_node(n: &mut NodeDecl) {
    n.at = Location::default();
    clear_values(&mut n.attributes);
    clear_links(&mut n.links);
    n.components.iter_mut().for_each(clear_decl);
}

pub(crate) fn clear_decl(c: &mut ComponentDecl) {
    c.at = Location::default();
    clear_values(&mut c.attributes);
    clear_links(&mut c.links);
}

pub(crate) fn clear_workflow(w: &mut Workflow) {
    w.at = Location::default();
    w.subtasks.iter_mut().for_each(clear_subtask);
}

fn clear_subtask(s: &mut Subtask) {
    s.at = Location::default();
    for a in &mut s.actions {
        a.at = Location::default();
    }
    s.subtasks.iter_mut().for_each(clear_subtask);
}
