//! Writing modules and service documents as canonical YAML: block style, a fixed key
//! order, and quotes only where a plain scalar would read back as something else (`"1"`
//! stays a string, `1` an integer). What is written parses back to an equal value.

use std::time::Duration;

use crate::diag::Location;
use crate::dsl::decode::plain_value;
use crate::ident::VersionReq;
use crate::module::{
    ActionDef, ActionKind, AddFile, Assembly, AttrType, AttrValue, AttributeDef, AttributeMapping,
    Command, ComponentDecl, ComponentDef, DependencyDef, Flow, LinkDecl, LinkDef, Module, NodeDecl,
    NodeSelector, Placement, Subtask, SubtaskOrder, Workflow,
};
use crate::service::ServiceDoc;
use crate::value::Value;

/// A document tree ready to be emitted.
enum Out {
    /// A single-line scalar, already rendered (quoted if needed).
    Scalar(String),
    /// A multi-line string written as a literal block (`|` / `|-`).
    Block(String),
    Seq(Vec<Out>),
    Map(Vec<(String, Out)>),
    /// A node whose location is kept (see [`Emitter`]): the service document's located
    /// parts, in the order [`place`] visits them.
    Mark(Box<Out>),
}

fn mark(v: Out) -> Out {
    Out::Mark(Box::new(v))
}

fn s(text: &str) -> Out {
    render_str(text)
}

fn map() -> Vec<(String, Out)> {
    Vec::new()
}

fn put(m: &mut Vec<(String, Out)>, key: &str, v: Out) {
    m.push((key.to_owned(), v));
}

/// Whether a character may appear unescaped in a plain or literal scalar.
fn safe_char(c: char) -> bool {
    matches!(c, ' '..='~')
        || (c >= '\u{A0}'
            && !matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
            ))
}

/// Words other YAML readers (YAML 1.1) take for booleans; quoted for their sake.
const YAML11_WORDS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF", "<<", "=",
];

fn plain_ok(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    matches!(plain_value(text), Value::Str(_))
        && !YAML11_WORDS.contains(&text)
        && text.chars().all(safe_char)
        && !"-?:,[]{}#&*!|>'\"%@` ".contains(first)
        && !text.ends_with([' ', ':'])
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.starts_with("---")
        && !text.starts_with("...")
}

fn literal_ok(text: &str) -> bool {
    if !text.contains('\n') || text.ends_with("\n\n") {
        return false;
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body.split('\n');
    let first_ok = lines
        .next()
        .is_some_and(|l| !l.is_empty() && !l.starts_with(' '));
    first_ok
        && body
            .split('\n')
            .all(|l| l.chars().all(safe_char) && !l.ends_with(' '))
}

fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if safe_char(c) => out.push(c),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

fn render_str(text: &str) -> Out {
    if plain_ok(text) {
        Out::Scalar(text.to_owned())
    } else if literal_ok(text) {
        Out::Block(text.to_owned())
    } else {
        Out::Scalar(double_quoted(text))
    }
}

fn render_key(text: &str) -> String {
    if plain_ok(text) {
        text.to_owned()
    } else {
        double_quoted(text)
    }
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else {
        // `{:?}` is the shortest text that reads back to the same number, and always
        // has a `.` or an exponent, so it reads back as a float.
        format!("{f:?}")
    }
}

fn value(v: &Value) -> Out {
    match v {
        Value::Null => Out::Scalar("null".to_owned()),
        Value::Bool(b) => Out::Scalar(b.to_string()),
        Value::Int(i) => Out::Scalar(i.to_string()),
        Value::Float(f) => Out::Scalar(float_text(*f)),
        Value::Str(t) => render_str(t),
        Value::Array(items) => Out::Seq(items.iter().map(value).collect()),
        Value::Hash(h) => Out::Map(h.iter().map(|(k, v)| (k.clone(), value(v))).collect()),
    }
}

/// A requirement as the original dtk wrote it: an exact pin as the bare version
/// (`1.3.0`, not `=1.3.0`).
fn req_text(req: &VersionReq) -> String {
    if let VersionReq::Semver(r) = req
        && let [c] = r.comparators.as_slice()
        && let (semver::Op::Exact, Some(minor), Some(patch)) = (c.op, c.minor, c.patch)
    {
        let v = semver::Version {
            major: c.major,
            minor,
            patch,
            pre: c.pre.clone(),
            build: semver::BuildMetadata::EMPTY,
        };
        return v.to_string();
    }
    req.to_string()
}

/// Writes an [`Out`] tree as block YAML, knowing where each node starts as the parser
/// will report it (see [`crate::yaml`]): a scalar where its text starts, an empty
/// collection at its bracket, a literal block at its first line of content, a block
/// mapping at its first key, a block sequence at the first token after its first `- `. The locations
/// of the nodes marked [`Out::Mark`] are kept, in the order they were written.
struct Emitter {
    buf: String,
    /// The 1-based line being written, and the byte where it starts.
    line: u32,
    line_start: usize,
    marks: Vec<Location>,
}

impl Emitter {
    fn new(capacity: usize) -> Self {
        Emitter {
            buf: String::with_capacity(capacity),
            line: 1,
            line_start: 0,
            marks: Vec::new(),
        }
    }

    fn newline(&mut self) {
        self.buf.push('\n');
        self.line += 1;
        self.line_start = self.buf.len();
    }

    fn pad(&mut self, n: usize) {
        self.buf.extend(std::iter::repeat_n(' ', n));
    }

    /// Where the next character goes (columns count characters, as the parser's do).
    fn here(&self) -> Location {
        let col = self.buf.get(self.line_start..).map_or(0, |l| {
            if l.is_ascii() {
                l.len()
            } else {
                l.chars().count()
            }
        });
        Location {
            line: self.line,
            col: u32::try_from(col + 1).unwrap_or(u32::MAX),
            offset: self.buf.len(),
        }
    }

    /// A one-line scalar after `key:` or `-`: ` TEXT`.
    fn scalar(&mut self, text: &str) -> Location {
        self.buf.push(' ');
        let at = self.here();
        self.buf.push_str(text);
        self.newline();
        at
    }

    /// A literal block after `key:` or `-`, its lines indented by `indent`.
    fn block(&mut self, text: &str, indent: usize) -> Location {
        let header = if text.ends_with('\n') { " |" } else { " |-" };
        self.buf.push_str(header);
        self.newline();
        let body = text.strip_suffix('\n').unwrap_or(text);
        let mut at = None;
        for line in body.split('\n') {
            if !line.is_empty() {
                self.pad(indent);
                at.get_or_insert_with(|| self.here());
                self.buf.push_str(line);
            }
            self.newline();
        }
        at.unwrap_or_else(|| self.here())
    }

    /// The value of a mapping entry, after `key:` (whose location is `key_at`).
    fn value(&mut self, v: &Out, indent: usize, key_at: Location) -> Location {
        match v {
            Out::Mark(inner) => self.marked(|e| e.value(inner, indent, key_at)),
            // An empty value: the parser places it at its key.
            Out::Scalar(t) if t.is_empty() => {
                self.newline();
                key_at
            }
            Out::Seq(items) if !items.is_empty() => {
                self.newline();
                self.seq(items, indent, false)
            }
            Out::Map(es) if !es.is_empty() => {
                self.newline();
                self.map(es, indent + 2, false)
            }
            leaf => self.leaf(leaf, indent),
        }
    }

    /// A sequence item, after its `-`.
    fn item(&mut self, v: &Out, indent: usize) -> Location {
        match v {
            Out::Mark(inner) => self.marked(|e| e.item(inner, indent)),
            // A nested block starts on the item's own line, after `- `.
            Out::Seq(inner) if !inner.is_empty() => {
                self.buf.push(' ');
                self.seq(inner, indent + 2, true)
            }
            Out::Map(es) if !es.is_empty() => {
                self.buf.push(' ');
                self.map(es, indent + 2, true)
            }
            leaf => self.leaf(leaf, indent),
        }
    }

    /// What stays on the line of its `key:` or `-`: a scalar, a literal block (its lines
    /// then indented by `indent + 2`), or an empty collection.
    fn leaf(&mut self, v: &Out, indent: usize) -> Location {
        match v {
            Out::Scalar(t) => self.scalar(t),
            Out::Block(t) => self.block(t, indent + 2),
            Out::Seq(_) => self.scalar("[]"),
            Out::Map(_) => self.scalar("{}"),
            Out::Mark(inner) => self.marked(|e| e.leaf(inner, indent)),
        }
    }

    /// Writes a marked node with `write`, keeping its location in the order marks are
    /// met (before the marks inside it).
    fn marked(&mut self, write: impl FnOnce(&mut Self) -> Location) -> Location {
        let slot = self.marks.len();
        self.marks.push(Location::default());
        let at = write(self);
        if let Some(m) = self.marks.get_mut(slot) {
            *m = at;
        }
        at
    }

    /// A block mapping at `indent` (its first key already placed when `inline`).
    fn map(&mut self, entries: &[(String, Out)], indent: usize, inline: bool) -> Location {
        let mut first = None;
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 || !inline {
                self.pad(indent);
            }
            let key_at = self.here();
            first.get_or_insert(key_at);
            self.buf.push_str(&render_key(k));
            self.buf.push(':');
            self.value(v, indent, key_at);
        }
        first.unwrap_or_else(|| self.here())
    }

    /// A block sequence at `indent` (its first `-` already placed when `inline`).
    fn seq(&mut self, items: &[Out], indent: usize, inline: bool) -> Location {
        let mut first = None;
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline {
                self.pad(indent);
            }
            self.buf.push('-');
            // A block sequence starts where its first item's first token does, right
            // after `- ` (for a nested sequence, at its own first `-`).
            let dash = self.here();
            first.get_or_insert(Location {
                col: dash.col + 1,
                offset: dash.offset + 1,
                ..dash
            });
            self.item(item, indent);
        }
        first.unwrap_or_else(|| self.here())
    }
}

/// The document `top` as text, with where it starts and the locations of its marks.
fn emit_located(top: &[(String, Out)]) -> (String, Location, Vec<Location>) {
    let mut e = Emitter::new(4096);
    let at = e.map(top, 0, false);
    (e.buf, at, e.marks)
}

fn emit(top: &[(String, Out)]) -> String {
    emit_located(top).0
}

fn duration(d: Duration) -> Out {
    if d.subsec_nanos() == 0 {
        Out::Scalar(d.as_secs().to_string())
    } else {
        Out::Scalar(format!("{}ms", d.as_millis()))
    }
}

fn attr_values(attrs: &crate::value::SortedMap<AttrValue>) -> Out {
    Out::Map(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), mark(value(&v.value))))
            .collect(),
    )
}

/// Writes a module as YAML that `parse_module` reads back to an equal module
/// (source locations aside).
pub fn write_module(m: &Module) -> String {
    let mut top = map();
    if let Some(v) = &m.dsl_version {
        put(&mut top, "dsl_version", s(v));
    }
    put(&mut top, "module", s(&m.id.to_string()));
    put(&mut top, "version", s(&m.version.to_string()));
    if let Some(d) = &m.description {
        put(&mut top, "description", s(d));
    }
    for (k, v) in &m.metadata {
        put(&mut top, k, value(v));
    }
    if !m.dependencies.is_empty() {
        let deps = m
            .dependencies
            .iter()
            .map(|d| match &d.req {
                VersionReq::Any => (d.module.to_string(), Out::Scalar("null".to_owned())),
                req => (d.module.to_string(), s(&req_text(req))),
            })
            .collect();
        put(&mut top, "dependencies", Out::Map(deps));
    }
    if !m.components.is_empty() {
        let defs = m
            .components
            .iter()
            .map(|(name, def)| (name.clone(), component_def(def)))
            .collect();
        put(&mut top, "component_defs", Out::Map(defs));
    }
    if !m.assemblies.is_empty() {
        let asms = m
            .assemblies
            .iter()
            .map(|(name, a)| (name.clone(), assembly(a)))
            .collect();
        put(&mut top, "assemblies", Out::Map(asms));
    }
    if !m.workflows.is_empty() {
        put(&mut top, "workflows", workflows(&m.workflows));
    }
    emit(&top)
}

fn component_def(def: &ComponentDef) -> Out {
    let mut m = map();
    if let Some(d) = &def.description {
        put(&mut m, "description", s(d));
    }
    if def.singleton {
        put(&mut m, "singleton", Out::Scalar("true".to_owned()));
    }
    if !def.attributes.is_empty() {
        let attrs = def
            .attributes
            .iter()
            .map(|(k, a)| (k.clone(), attribute(a)))
            .collect();
        put(&mut m, "attributes", Out::Map(attrs));
    }
    if !def.dependencies.is_empty() {
        put(
            &mut m,
            "dependencies",
            Out::Seq(def.dependencies.iter().map(dependency).collect()),
        );
    }
    if !def.link_defs.is_empty() {
        put(&mut m, "link_defs", link_defs(def));
    }
    if !def.actions.is_empty() {
        let actions = def
            .actions
            .iter()
            .map(|(k, a)| (k.clone(), action(a)))
            .collect();
        put(&mut m, "actions", Out::Map(actions));
    }
    for (k, v) in &def.metadata {
        put(&mut m, k, value(v));
    }
    Out::Map(m)
}

fn attribute(a: &AttributeDef) -> Out {
    let mut m = map();
    if a.ty != AttrType::Any {
        put(&mut m, "type", Out::Scalar(a.ty.as_str().to_owned()));
    }
    if let Some(d) = &a.default {
        put(&mut m, "default", value(d));
    }
    let flags = [
        ("required", a.required),
        ("dynamic", a.dynamic),
        ("input", a.input),
        ("hidden", a.hidden),
        ("secret", a.secret),
        ("constant", a.constant),
    ];
    for (k, on) in flags {
        if on {
            put(&mut m, k, Out::Scalar("true".to_owned()));
        }
    }
    if let Some(d) = &a.description {
        put(&mut m, "description", s(d));
    }
    Out::Map(m)
}

fn placement(p: Placement) -> Option<Out> {
    match p {
        Placement::Anywhere => None,
        Placement::SameNode => Some(Out::Scalar("local".to_owned())),
        Placement::OtherNode => Some(Out::Scalar("remote".to_owned())),
    }
}

fn dependency(d: &DependencyDef) -> Out {
    if let [only] = d.choices.as_slice()
        && d.placement == Placement::Anywhere
        && d.name == only.to_string()
    {
        return s(&d.name);
    }
    let mut spec = map();
    put(
        &mut spec,
        "choices",
        Out::Seq(d.choices.iter().map(|c| s(&c.to_string())).collect()),
    );
    if let Some(l) = placement(d.placement) {
        put(&mut spec, "location", l);
    }
    Out::Map(vec![(d.name.clone(), Out::Map(spec))])
}

/// A link definition. Its dependency is written `dependency_name` when the component
/// declares that dependency, else `name` (the original's spelling for a link that names
/// none of them, which `dependency_name` may not).
fn link_def(l: &LinkDef, def: &ComponentDef) -> Out {
    let mut spec = map();
    if let Some(d) = &l.dependency {
        let key = if def.dependencies.iter().any(|x| &x.name == d) {
            "dependency_name"
        } else {
            "name"
        };
        put(&mut spec, key, s(d));
    }
    if let Some(p) = placement(l.placement) {
        put(&mut spec, "location", p);
    }
    if !l.attribute_mappings.is_empty() {
        let ms = l
            .attribute_mappings
            .iter()
            .map(|m| s(&mapping(m)))
            .collect();
        put(&mut spec, "attribute_mappings", Out::Seq(ms));
    }
    Out::Map(spec)
}

/// An attribute mapping in the DSL's spelling (see [`AttributeMapping`]).
fn mapping(m: &AttributeMapping) -> String {
    let from = match &m.constant {
        Some(c) => constant(c),
        None => format!("${}", m.from.join(".")),
    };
    match m.flow {
        Flow::In => format!("{from} -> {}", m.to),
        Flow::Out => format!("{} <- {from}", m.to),
    }
}

/// A constant of a `<-` mapping: `'text'`, `true`, `42`, or JSON.
fn constant(v: &Value) -> String {
    match v {
        Value::Str(t) => format!("'{t}'"),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Link definitions: a mapping from producers to definitions, or, when a producer has
/// several, a list of single-key mappings in declaration order.
fn link_defs(def: &ComponentDef) -> Out {
    let defs = &def.link_defs;
    let targets: Vec<String> = defs.iter().map(|l| l.target.to_string()).collect();
    let mut unique = targets.clone();
    unique.sort();
    unique.dedup();
    let entries: Vec<(String, Out)> = defs
        .iter()
        .zip(targets)
        .map(|(l, t)| (t, link_def(l, def)))
        .collect();
    if unique.len() == defs.len() {
        Out::Map(entries)
    } else {
        Out::Seq(entries.into_iter().map(|e| Out::Map(vec![e])).collect())
    }
}

fn action(a: &ActionDef) -> Out {
    let mut m = map();
    match &a.kind {
        ActionKind::Commands(cmds) => {
            let lines = cmds
                .iter()
                .map(|c| match c {
                    Command::Run(line) => s(&format!("RUN {line}")),
                    Command::Add(a) => add_step(a),
                })
                .collect();
            put(&mut m, "commands", Out::Seq(lines));
        }
        ActionKind::Provider { kind, resource } => {
            put(&mut m, "provider", s(&format!("{kind}.{resource}")));
        }
        ActionKind::Unsupported { kind, detail } => match detail {
            Value::Hash(h) => {
                for (k, v) in h {
                    put(&mut m, k, value(v));
                }
            }
            other => put(&mut m, kind, value(other)),
        },
    }
    if a.attempts != 1 {
        put(&mut m, "attempts", Out::Scalar(a.attempts.to_string()));
    }
    if !a.sleep.is_zero() {
        put(&mut m, "sleep", duration(a.sleep));
    }
    if let Some(t) = a.timeout {
        put(&mut m, "timeout", duration(t));
    }
    Out::Map(m)
}

fn add_step(a: &AddFile) -> Out {
    let mut m = map();
    put(&mut m, "ADD", Out::Scalar(String::new()));
    put(&mut m, "source", s(&a.source));
    put(&mut m, "target", s(&a.target));
    if a.template {
        put(&mut m, "template", Out::Scalar("true".to_owned()));
    }
    if let Some(o) = &a.owner {
        put(&mut m, "owner", s(o));
    }
    if let Some(md) = &a.mode {
        put(&mut m, "mode", s(md));
    }
    Out::Map(m)
}

fn assembly(a: &Assembly) -> Out {
    let mut m = map();
    if let Some(d) = &a.description {
        put(&mut m, "description", s(d));
    }
    for (k, v) in &a.metadata {
        put(&mut m, k, value(v));
    }
    if let Some(r) = &a.node_component {
        put(&mut m, "node_component", s(&r.to_string()));
    }
    let items = components(&a.nodes, &a.components);
    if !items.is_empty() {
        put(&mut m, "components", Out::Seq(items));
    }
    if !a.workflows.is_empty() {
        put(&mut m, "actions", workflows(&a.workflows));
    }
    Out::Map(m)
}

fn components(nodes: &[NodeDecl], comps: &[ComponentDecl]) -> Vec<Out> {
    let mut out: Vec<Out> = nodes.iter().map(node).collect();
    out.extend(comps.iter().map(|c| component_decl(c, false)));
    out
}

fn node(n: &NodeDecl) -> Out {
    let label = if n.group { "node_group" } else { "node" };
    let mut body = map();
    let mut force_components = false;
    let key = match &n.node_component {
        Some(r) if r.module.is_some() && r.instance.is_none() && r.name == label => {
            format!("{r}[{}]", n.name)
        }
        Some(r)
            if !n.group && r.instance.is_none() && r.name != "node" && r.name != "node_group" =>
        {
            // `MOD::cmp[NAME]` with nested `components` is a node realized by `MOD::cmp`.
            force_components = true;
            format!("{r}[{}]", n.name)
        }
        Some(r) => {
            put(&mut body, "node_component", s(&r.to_string()));
            format!("{label}[{}]", n.name)
        }
        None => format!("{label}[{}]", n.name),
    };
    if !n.attributes.is_empty() {
        put(&mut body, "attributes", attr_values(&n.attributes));
    }
    if !n.links.is_empty() {
        put(
            &mut body,
            "links",
            Out::Seq(n.links.iter().map(link).collect()),
        );
    }
    if !n.components.is_empty() || force_components {
        let cs = n
            .components
            .iter()
            .map(|c| component_decl(c, true))
            .collect();
        put(&mut body, "components", Out::Seq(cs));
    }
    mark(if body.is_empty() {
        s(&key)
    } else {
        Out::Map(vec![(key, Out::Map(body))])
    })
}

fn component_decl(c: &ComponentDecl, _on_node: bool) -> Out {
    let key = c.reference.to_string();
    let mut body = map();
    if !c.attributes.is_empty() {
        put(&mut body, "attributes", attr_values(&c.attributes));
    }
    if !c.links.is_empty() {
        put(
            &mut body,
            "links",
            Out::Seq(c.links.iter().map(link).collect()),
        );
    }
    mark(if body.is_empty() {
        s(&key)
    } else {
        Out::Map(vec![(key, Out::Map(body))])
    })
}

fn link(l: &LinkDecl) -> Out {
    let target = match (&l.service, &l.target.node) {
        (Some(svc), _) => format!("{svc}/{}", l.target.component),
        (None, Some(n)) => format!("{n}/{}", l.target.component),
        (None, None) => l.target.component.to_string(),
    };
    match &l.dependency {
        Some(d) => Out::Map(vec![(d.clone(), mark(s(&target)))]),
        None => mark(s(&target)),
    }
}

fn workflows(ws: &std::collections::BTreeMap<String, Workflow>) -> Out {
    Out::Map(ws.iter().map(|(k, w)| (k.clone(), workflow(w))).collect())
}

fn workflow(w: &Workflow) -> Out {
    let mut m = map();
    if w.subtask_order == SubtaskOrder::Concurrent {
        put(
            &mut m,
            "subtask_order",
            Out::Scalar("concurrent".to_owned()),
        );
    }
    put(
        &mut m,
        "subtasks",
        Out::Seq(w.subtasks.iter().map(subtask).collect()),
    );
    mark(Out::Map(m))
}

fn subtask(t: &Subtask) -> Out {
    let mut m = map();
    if let Some(n) = &t.name {
        put(&mut m, "name", s(n));
    }
    match &t.node {
        Some(NodeSelector::Node(n)) => put(&mut m, "node", s(n)),
        Some(NodeSelector::Group(n)) => put(&mut m, "node_group", s(n)),
        None => {}
    }
    if t.subtask_order == SubtaskOrder::Concurrent {
        put(
            &mut m,
            "subtask_order",
            Out::Scalar("concurrent".to_owned()),
        );
    }
    if t.breakpoint {
        put(&mut m, "breakpoint", Out::Scalar("true".to_owned()));
    }
    let mut items: Vec<Out> = t.components.iter().map(|c| s(&c.to_string())).collect();
    for a in &t.actions {
        let text = format!("{}.{}", a.component, a.action);
        if a.params.is_empty() {
            items.push(mark(s(&text)));
        } else {
            let params = a
                .params
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect();
            items.push(mark(Out::Map(vec![(text, Out::Map(params))])));
        }
    }
    // An empty list is written too when nothing else says what the subtask is (or that
    // it is ordered), so that the subtask reads back the same.
    if !items.is_empty() || t.ordered || t.subtasks.is_empty() {
        let key = if t.ordered {
            "ordered_components"
        } else if t.components.is_empty() {
            "actions"
        } else {
            "components"
        };
        put(&mut m, key, Out::Seq(items));
    }
    if !t.subtasks.is_empty() {
        put(
            &mut m,
            "subtasks",
            Out::Seq(t.subtasks.iter().map(subtask).collect()),
        );
    }
    mark(Out::Map(m))
}

/// Writes a service document as YAML that `parse_service` reads back to an
/// equal document (source locations aside).
pub fn write_service(doc: &ServiceDoc) -> String {
    emit(&service_top(doc))
}

/// [`write_service`], and `doc`'s source locations set to where the text holds each part,
/// as [`parse_service`](crate::dsl::parse_service) of the text would set them: the
/// document is then equal to the text's parse, without parsing it (staging a large
/// service writes its document and keeps it in the parse cache). The flag is `false`
/// should the writer and `doc` disagree on how many parts have a location, which would
/// be a bug: `doc`'s locations are then unspecified, and the caller reads the text back.
pub fn write_service_located(doc: &mut ServiceDoc) -> (String, bool) {
    let (text, at, marks) = emit_located(&service_top(doc));
    let mut marks = marks.into_iter();
    doc.at = at;
    let placed = place(doc, &mut marks).is_some() && marks.next().is_none();
    (text, placed)
}

/// Sets the locations of `doc`'s parts from `marks`, visiting them in the order the
/// writer marks them: nodes (each with its attributes' values, links and components),
/// components, workflows (each subtask, its action steps, its subtasks).
fn place(doc: &mut ServiceDoc, marks: &mut impl Iterator<Item = Location>) -> Option<()> {
    fn decl(
        at: &mut Location,
        attrs: &mut crate::value::SortedMap<AttrValue>,
        links: &mut [LinkDecl],
        marks: &mut impl Iterator<Item = Location>,
    ) -> Option<()> {
        *at = marks.next()?;
        for (_, v) in attrs.iter_mut() {
            v.at = marks.next()?;
        }
        for l in links {
            l.at = marks.next()?;
        }
        Some(())
    }
    fn subtask(t: &mut Subtask, marks: &mut impl Iterator<Item = Location>) -> Option<()> {
        t.at = marks.next()?;
        for a in &mut t.actions {
            a.at = marks.next()?;
        }
        for s in &mut t.subtasks {
            subtask(s, marks)?;
        }
        Some(())
    }
    for n in &mut doc.nodes {
        decl(&mut n.at, &mut n.attributes, &mut n.links, marks)?;
        for c in &mut n.components {
            decl(&mut c.at, &mut c.attributes, &mut c.links, marks)?;
        }
    }
    for c in &mut doc.components {
        decl(&mut c.at, &mut c.attributes, &mut c.links, marks)?;
    }
    for w in doc.workflows.values_mut() {
        w.at = marks.next()?;
        for t in &mut w.subtasks {
            subtask(t, marks)?;
        }
    }
    Some(())
}

fn service_top(doc: &ServiceDoc) -> Vec<(String, Out)> {
    let mut top = map();
    put(&mut top, "dsl_version", s(&doc.dsl_version));
    put(&mut top, "name", s(&doc.name));
    if let Some(sf) = &doc.staged_from {
        let mut m = map();
        put(&mut m, "module", s(&sf.module.to_string()));
        put(&mut m, "version", s(&sf.version.to_string()));
        put(&mut m, "assembly", s(&sf.assembly));
        put(&mut top, "staged_from", Out::Map(m));
    }
    if let Some(t) = &doc.target {
        put(&mut top, "target", s(t));
    }
    if doc.is_target {
        put(&mut top, "base", Out::Scalar("true".to_owned()));
    }
    if !doc.dependencies.is_empty() {
        let deps = doc
            .dependencies
            .iter()
            .map(|(m, v)| (m.to_string(), s(&v.to_string())))
            .collect();
        put(&mut top, "dependencies", Out::Map(deps));
    }
    let items = components(&doc.nodes, &doc.components);
    if !items.is_empty() {
        put(&mut top, "components", Out::Seq(items));
    }
    if !doc.workflows.is_empty() {
        put(&mut top, "actions", workflows(&doc.workflows));
    }
    top
}
