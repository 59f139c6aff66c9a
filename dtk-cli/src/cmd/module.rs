//! `dtk module ...`: publish, list, show and validate modules of the catalog.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use clap::Subcommand;
use dtk_catalog::{Catalog, FileEntry, PublishStatus};
use dtk_model::module::ComponentDecl;
use dtk_model::module::{ActionKind, Command as ActionCommand, NodeSelector, SubtaskOrder};
use dtk_model::module::{Subtask, Workflow};
use dtk_model::{Module, ModuleId, ModuleVersion, Value};
use serde::Serialize;

use crate::Ctx;
use crate::output::{rfc3339, table, utc_time};

/// `dtk module` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Publish the module in DIR into the catalog as the version its dtk.module.yaml
    /// declares
    ///
    /// Every file of DIR is stored (a .gitignore in DIR is honoured; symbolic links are
    /// refused). Installing the same version again with the same files does nothing; a
    /// released version with other files is refused (publish a new version); a
    /// development version such as `master` moves to the new files.
    #[command(after_help = "Example:\n  dtk module install ./modules/webapp")]
    Install {
        /// The module directory (it holds dtk.module.yaml)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },

    /// List the modules of the catalog and their versions
    #[command(after_help = "Example:\n  dtk module list\n  dtk --json module list")]
    List,

    /// Show a module version: dependencies, components and their attributes, assemblies,
    /// workflows and files
    #[command(
        after_help = "Example:\n  dtk module show demo/webapp          # the latest version\n  \
                      dtk module show demo/webapp@1.0.0"
    )]
    Show {
        /// The module, `NS/NAME`, optionally `@VERSION` (default: the highest release)
        #[arg(value_name = "NS/NAME[@VER]")]
        module: ModuleSpec,
        /// Also show hidden attributes
        #[arg(long)]
        all: bool,
    },

    /// Check the module in DIR without publishing it
    ///
    /// Runs every check `install` runs (dtk.module.yaml parses and validates; every file
    /// can be stored) and writes nothing. With `--file`, checks one document by its
    /// content alone: a module document, or a service document when its name ends in
    /// `dtk.service.yaml`.
    #[command(
        after_help = "Example:\n  dtk module validate ./modules/webapp\n  dtk module validate --file ./old/dtk.module.yaml"
    )]
    Validate {
        /// The module directory (it holds dtk.module.yaml)
        #[arg(value_name = "DIR", required_unless_present = "file")]
        dir: Option<PathBuf>,
        /// Check this one document instead of a module directory
        #[arg(long, value_name = "FILE", conflicts_with = "dir")]
        file: Option<PathBuf>,
    },
}

/// `NS/NAME[@VER]` on the command line.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    /// The module.
    pub id: ModuleId,
    /// The version, when given.
    pub version: Option<ModuleVersion>,
}

impl FromStr for ModuleSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, version) = match s.split_once('@') {
            Some((id, v)) => (id, Some(v.parse().map_err(|e| format!("{e}"))?)),
            None => (s, None),
        };
        Ok(ModuleSpec {
            id: id.parse().map_err(|e| format!("{e}"))?,
            version,
        })
    }
}

/// Runs a `dtk module` subcommand.
pub fn run(cmd: ModuleCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        ModuleCommand::Install { dir } => install(ctx, dir),
        ModuleCommand::List => list(ctx),
        ModuleCommand::Show { module, all } => show(ctx, &module, all),
        ModuleCommand::Validate {
            file: Some(file), ..
        } => validate_file(ctx, &file),
        ModuleCommand::Validate { dir: Some(dir), .. } => validate(ctx, dir),
        ModuleCommand::Validate { .. } => anyhow::bail!("give DIR or --file FILE"),
    }
}

/// The catalog; with a remote, after bringing the remote's versions in (a remote that
/// cannot be reached leaves this machine's catalog as it is, with a warning).
fn open(ctx: &Ctx) -> anyhow::Result<Catalog> {
    if crate::cmd::remote::remote_configured(&ctx.home) {
        let home = ctx.open_home()?;
        if let Err(e) = home.sync_catalog() {
            let mut chain = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                chain.push_str(&format!(": {c}"));
                src = c.source();
            }
            let mut err = std::io::stderr();
            let _ = writeln!(err, "warning: {chain}; showing this machine's catalog");
        }
    }
    Ok(Catalog::open(&ctx.catalog_dir())?)
}

/// The `dtk.module.install/v1` document.
#[derive(Serialize)]
struct InstallDoc {
    module: String,
    version: String,
    /// `created`, `unchanged` or `moved`.
    status: &'static str,
    commit: String,
    /// For `moved`: the commit the development version pointed at before.
    previous_commit: Option<String>,
    tree: String,
    files: usize,
}

fn install(ctx: &Ctx, dir: PathBuf) -> anyhow::Result<()> {
    let p = if crate::cmd::remote::remote_configured(&ctx.home) {
        ctx.open_home()?
            .publish(&dir)
            .with_context(|| format!("could not install the module in {}", dir.display()))?
    } else {
        Catalog::open(&ctx.catalog_dir())?
            .publish(&dir)
            .with_context(|| format!("could not install the module in {}", dir.display()))?
    };
    let (status, previous) = match &p.status {
        PublishStatus::Created => ("created", None),
        PublishStatus::Unchanged => ("unchanged", None),
        PublishStatus::Moved { previous } => ("moved", Some(previous.clone())),
    };
    let doc = InstallDoc {
        module: p.module.to_string(),
        version: p.version.to_string(),
        status,
        commit: p.commit.clone(),
        previous_commit: previous.clone(),
        tree: p.tree.clone(),
        files: p.files,
    };
    ctx.out.emit("dtk.module.install/v1", &doc, |w| {
        let short = short(&p.commit);
        match (&p.status, previous) {
            (PublishStatus::Created, _) => writeln!(
                w,
                "installed {} {} (commit {short}, {} file{})",
                p.module,
                p.version,
                p.files,
                if p.files == 1 { "" } else { "s" }
            ),
            (PublishStatus::Unchanged, _) => writeln!(
                w,
                "{} {} is already installed with these files (commit {short}); nothing to do",
                p.module, p.version
            ),
            (PublishStatus::Moved { .. }, prev) => writeln!(
                w,
                "moved development version {} {} from {} to {short} ({} file{})",
                p.module,
                p.version,
                short_opt(prev.as_deref()),
                p.files,
                if p.files == 1 { "" } else { "s" }
            ),
        }
    })
}

/// The `dtk.module.list/v1` document.
#[derive(Serialize)]
struct ListDoc {
    modules: Vec<ListEntry>,
}

#[derive(Serialize)]
struct ListEntry {
    module: String,
    /// The highest release, else the last development version.
    latest: String,
    /// Ascending: releases by semver, then development versions by name.
    versions: Vec<String>,
}

fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let catalog = open(ctx)?;
    let modules = catalog.list()?;
    let doc = ListDoc {
        modules: modules
            .iter()
            .map(|m| ListEntry {
                module: m.id.to_string(),
                latest: latest_of(&m.versions),
                versions: m.versions.iter().map(ToString::to_string).collect(),
            })
            .collect(),
    };
    ctx.out.emit("dtk.module.list/v1", &doc, |w| {
        if doc.modules.is_empty() {
            return writeln!(
                w,
                "no modules in the catalog {} (add one with `dtk module install DIR`)",
                ctx.catalog_dir().display()
            );
        }
        let mut rows = vec![vec![
            "MODULE".to_owned(),
            "LATEST".to_owned(),
            "VERSIONS".to_owned(),
        ]];
        for m in &doc.modules {
            rows.push(vec![
                m.module.clone(),
                m.latest.clone(),
                m.versions.join(", "),
            ]);
        }
        table(w, &rows)
    })
}

fn latest_of(versions: &[ModuleVersion]) -> String {
    versions
        .iter()
        .rev()
        .find(|v| !v.is_development())
        .or(versions.last())
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// The `dtk.module.show/v1` document.
#[derive(Serialize)]
struct ShowDoc {
    module: String,
    version: String,
    commit: String,
    tree: String,
    /// RFC 3339, UTC.
    published_at: String,
    dsl_version: Option<String>,
    description: Option<String>,
    dependencies: Vec<DependencyDoc>,
    components: Vec<ComponentDoc>,
    assemblies: Vec<AssemblyDoc>,
    /// Module-level workflows.
    workflows: Vec<WorkflowDoc>,
    metadata: BTreeMap<String, Value>,
    files: Vec<FileDoc>,
}

#[derive(Serialize)]
struct DependencyDoc {
    module: String,
    requirement: String,
}

#[derive(Serialize)]
struct ComponentDoc {
    name: String,
    description: Option<String>,
    singleton: bool,
    attributes: Vec<AttributeDoc>,
    /// Components that must exist for this one (each choice of a named dependency).
    dependencies: Vec<String>,
    /// Components it links to (the producers of its link_defs).
    links: Vec<String>,
    actions: Vec<ActionDoc>,
}

#[derive(Serialize)]
struct AttributeDoc {
    name: String,
    #[serde(rename = "type")]
    ty: &'static str,
    /// The default; for a secret attribute never its value, only whether there is one
    /// (`has_default`).
    default: Option<Value>,
    has_default: bool,
    required: bool,
    dynamic: bool,
    input: bool,
    hidden: bool,
    secret: bool,
    constant: bool,
    description: Option<String>,
}

#[derive(Serialize)]
struct ActionDoc {
    name: String,
    /// `commands`, `provider` or `unsupported`.
    kind: &'static str,
    /// For `commands`: the shell lines (`RUN ...` without `RUN`).
    commands: Vec<String>,
    /// For `provider`: `KIND.RESOURCE`; for `unsupported`: the original kind.
    provider: Option<String>,
}

#[derive(Serialize)]
struct AssemblyDoc {
    name: String,
    description: Option<String>,
    nodes: Vec<NodeDoc>,
    /// Components not placed on a node.
    components: Vec<ComponentDeclDoc>,
    workflows: Vec<WorkflowDoc>,
}

#[derive(Serialize)]
struct NodeDoc {
    name: String,
    group: bool,
    cardinality: u32,
    attributes: BTreeMap<String, Value>,
    components: Vec<ComponentDeclDoc>,
}

#[derive(Serialize)]
struct ComponentDeclDoc {
    component: String,
    attributes: BTreeMap<String, Value>,
}

#[derive(Serialize)]
struct WorkflowDoc {
    name: String,
    /// `sequential` or `concurrent`.
    subtask_order: &'static str,
    subtasks: Vec<SubtaskDoc>,
}

#[derive(Serialize)]
struct SubtaskDoc {
    name: Option<String>,
    /// `node NAME` or `node_group NAME`.
    node: Option<String>,
    subtask_order: &'static str,
    components: Vec<String>,
    ordered: bool,
    /// `component.action` steps.
    actions: Vec<String>,
    subtasks: Vec<SubtaskDoc>,
}

#[derive(Serialize)]
struct FileDoc {
    path: String,
    size: u64,
    executable: bool,
}

const SECRET_MASK: &str = "<secret>";

fn show(ctx: &Ctx, spec: &ModuleSpec, all: bool) -> anyhow::Result<()> {
    let catalog = open(ctx)?;
    let version = match &spec.version {
        Some(v) => v.clone(),
        None => catalog.latest(&spec.id)?,
    };
    let p = catalog.get(&spec.id, &version)?;
    let doc = show_doc(&p.module, &p.commit, &p.tree, p.published_at, &p.files);
    ctx.out.emit("dtk.module.show/v1", &doc, |w| {
        show_human(w, &doc, p.published_at, all)
    })
}

fn show_doc(m: &Module, commit: &str, tree: &str, at: i64, files: &[FileEntry]) -> ShowDoc {
    ShowDoc {
        module: m.id.to_string(),
        version: m.version.to_string(),
        commit: commit.to_owned(),
        tree: tree.to_owned(),
        published_at: rfc3339(at),
        dsl_version: m.dsl_version.clone(),
        description: m.description.clone(),
        dependencies: m
            .dependencies
            .iter()
            .map(|d| DependencyDoc {
                module: d.module.to_string(),
                requirement: d.req.to_string(),
            })
            .collect(),
        components: m
            .components
            .values()
            .map(|c| ComponentDoc {
                name: c.name.clone(),
                description: c.description.clone(),
                singleton: c.singleton,
                attributes: c
                    .attributes
                    .values()
                    .map(|a| AttributeDoc {
                        name: a.name.clone(),
                        ty: a.ty.as_str(),
                        default: if a.secret { None } else { a.default.clone() },
                        has_default: a.default.is_some(),
                        required: a.required,
                        dynamic: a.dynamic,
                        input: a.input,
                        hidden: a.hidden,
                        secret: a.secret,
                        constant: a.constant,
                        description: a.description.clone(),
                    })
                    .collect(),
                dependencies: c
                    .dependencies
                    .iter()
                    .flat_map(|d| d.choices.iter().map(ToString::to_string))
                    .collect(),
                links: c.link_defs.iter().map(|l| l.target.to_string()).collect(),
                actions: c
                    .actions
                    .values()
                    .map(|a| match &a.kind {
                        ActionKind::Commands(cs) => ActionDoc {
                            name: a.name.clone(),
                            kind: "commands",
                            commands: cs.iter().map(ActionCommand::text).collect(),
                            provider: None,
                        },
                        ActionKind::Provider { kind, resource } => ActionDoc {
                            name: a.name.clone(),
                            kind: "provider",
                            commands: Vec::new(),
                            provider: Some(format!("{kind}.{resource}")),
                        },
                        ActionKind::Unsupported { kind, .. } => ActionDoc {
                            name: a.name.clone(),
                            kind: "unsupported",
                            commands: Vec::new(),
                            provider: Some(kind.clone()),
                        },
                    })
                    .collect(),
            })
            .collect(),
        assemblies: m
            .assemblies
            .values()
            .map(|a| AssemblyDoc {
                name: a.name.clone(),
                description: a.description.clone(),
                nodes: a
                    .nodes
                    .iter()
                    .map(|n| NodeDoc {
                        name: n.name.clone(),
                        group: n.group,
                        cardinality: n.cardinality(),
                        attributes: n
                            .attributes
                            .iter()
                            .map(|(k, v)| (k.clone(), v.value.clone()))
                            .collect(),
                        components: n.components.iter().map(|c| decl_doc(m, c)).collect(),
                    })
                    .collect(),
                components: a.components.iter().map(|c| decl_doc(m, c)).collect(),
                workflows: a.workflows.values().map(workflow_doc).collect(),
            })
            .collect(),
        workflows: m.workflows.values().map(workflow_doc).collect(),
        metadata: m.metadata.clone(),
        files: files
            .iter()
            .map(|f| FileDoc {
                path: f.path.clone(),
                size: f.size,
                executable: f.executable,
            })
            .collect(),
    }
}

/// A component placed in an assembly; values of attributes that the module declares
/// secret are masked.
fn decl_doc(m: &Module, c: &ComponentDecl) -> ComponentDeclDoc {
    let def = if c.reference.module.is_none() || c.reference.module.as_deref() == Some(&m.id.name) {
        m.components.get(&c.reference.name)
    } else {
        None
    };
    ComponentDeclDoc {
        component: c.reference.to_string(),
        attributes: c
            .attributes
            .iter()
            .map(|(k, v)| {
                let secret = def
                    .and_then(|d| d.attributes.get(k))
                    .is_some_and(|a| a.secret);
                let value = if secret {
                    Value::Str(SECRET_MASK.to_owned())
                } else {
                    v.value.clone()
                };
                (k.clone(), value)
            })
            .collect(),
    }
}

fn order(o: SubtaskOrder) -> &'static str {
    match o {
        SubtaskOrder::Sequential => "sequential",
        SubtaskOrder::Concurrent => "concurrent",
    }
}

fn workflow_doc(w: &Workflow) -> WorkflowDoc {
    WorkflowDoc {
        name: w.name.clone(),
        subtask_order: order(w.subtask_order),
        subtasks: w.subtasks.iter().map(subtask_doc).collect(),
    }
}

fn subtask_doc(s: &Subtask) -> SubtaskDoc {
    SubtaskDoc {
        name: s.name.clone(),
        node: s.node.as_ref().map(|n| match n {
            NodeSelector::Node(n) => format!("node {n}"),
            NodeSelector::Group(g) => format!("node_group {g}"),
        }),
        subtask_order: order(s.subtask_order),
        components: s.components.iter().map(ToString::to_string).collect(),
        ordered: s.ordered,
        actions: s
            .actions
            .iter()
            .map(|a| format!("{}.{}", a.component, a.action))
            .collect(),
        subtasks: s.subtasks.iter().map(subtask_doc).collect(),
    }
}

fn attrs_inline(attrs: &BTreeMap<String, Value>) -> String {
    attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_human(w: &mut dyn Write, d: &ShowDoc, at: i64, all: bool) -> std::io::Result<()> {
    writeln!(w, "{} {}", d.module, d.version)?;
    if let Some(desc) = &d.description {
        writeln!(w, "  {desc}")?;
    }
    writeln!(w, "  commit     {}", d.commit)?;
    writeln!(w, "  published  {}", utc_time(at))?;
    if d.dependencies.is_empty() {
        writeln!(w, "  depends on nothing")?;
    } else {
        writeln!(w, "  depends on")?;
        for dep in &d.dependencies {
            writeln!(w, "    {} {}", dep.module, dep.requirement)?;
        }
    }

    writeln!(w, "\ncomponents ({})", d.components.len())?;
    for c in &d.components {
        write!(w, "  {}", c.name)?;
        if c.singleton {
            write!(w, " (singleton)")?;
        }
        if let Some(desc) = &c.description {
            write!(w, ": {desc}")?;
        }
        writeln!(w)?;
        let shown: Vec<&AttributeDoc> = c.attributes.iter().filter(|a| all || !a.hidden).collect();
        if !shown.is_empty() {
            let mut rows = Vec::new();
            for a in shown {
                let mut props = Vec::new();
                if a.required {
                    props.push("required".to_owned());
                }
                if a.dynamic {
                    props.push(
                        if a.input {
                            "output, settable"
                        } else {
                            "output"
                        }
                        .to_owned(),
                    );
                }
                if a.secret {
                    props.push("secret".to_owned());
                }
                if a.hidden {
                    props.push("hidden".to_owned());
                }
                if a.constant {
                    props.push("constant".to_owned());
                }
                if a.secret && a.has_default {
                    props.push(format!("default {SECRET_MASK}"));
                } else if let Some(v) = &a.default {
                    props.push(format!("default {v}"));
                }
                rows.push(vec![
                    format!("    {}", a.name),
                    a.ty.to_owned(),
                    props.join(", "),
                ]);
            }
            table(w, &rows)?;
        }
        if !c.dependencies.is_empty() {
            writeln!(w, "    needs: {}", c.dependencies.join(", "))?;
        }
        if !c.links.is_empty() {
            writeln!(w, "    links to: {}", c.links.join(", "))?;
        }
        let actions: Vec<String> = c
            .actions
            .iter()
            .map(|a| match (&a.provider, a.kind) {
                (Some(p), "provider") => format!("{} ({p})", a.name),
                (Some(p), _) => format!("{} (unsupported: {p})", a.name),
                _ => a.name.clone(),
            })
            .collect();
        if !actions.is_empty() {
            writeln!(w, "    actions: {}", actions.join(", "))?;
        }
    }

    writeln!(w, "\nassemblies ({})", d.assemblies.len())?;
    for a in &d.assemblies {
        write!(w, "  {}", a.name)?;
        if let Some(desc) = &a.description {
            write!(w, ": {desc}")?;
        }
        writeln!(w)?;
        for n in &a.nodes {
            let kind = if n.group { "node_group" } else { "node" };
            let count = if n.group {
                format!(" x{}", n.cardinality)
            } else {
                String::new()
            };
            let attrs = if n.attributes.is_empty() {
                String::new()
            } else {
                format!(" ({})", attrs_inline(&n.attributes))
            };
            let cmps: Vec<String> = n.components.iter().map(decl_human).collect();
            writeln!(
                w,
                "    {kind}[{}]{count}{attrs}: {}",
                n.name,
                cmps.join(", ")
            )?;
        }
        if !a.components.is_empty() {
            let cmps: Vec<String> = a.components.iter().map(decl_human).collect();
            writeln!(w, "    assembly-wide: {}", cmps.join(", "))?;
        }
        for wf in &a.workflows {
            workflow_human(w, wf, "    ")?;
        }
    }

    if !d.workflows.is_empty() {
        writeln!(w, "\nworkflows ({})", d.workflows.len())?;
        for wf in &d.workflows {
            workflow_human(w, wf, "  ")?;
        }
    }

    let bytes: u64 = d.files.iter().map(|f| f.size).sum();
    writeln!(w, "\nfiles ({}, {bytes} bytes)", d.files.len())?;
    for f in &d.files {
        let x = if f.executable { " (executable)" } else { "" };
        writeln!(w, "  {}{x}", f.path)?;
    }
    Ok(())
}

fn decl_human(c: &ComponentDeclDoc) -> String {
    if c.attributes.is_empty() {
        c.component.clone()
    } else {
        format!("{} ({})", c.component, attrs_inline(&c.attributes))
    }
}

fn workflow_human(w: &mut dyn Write, wf: &WorkflowDoc, indent: &str) -> std::io::Result<()> {
    writeln!(w, "{indent}workflow {} ({})", wf.name, wf.subtask_order)?;
    for s in &wf.subtasks {
        subtask_human(w, s, &format!("{indent}  "))?;
    }
    Ok(())
}

fn subtask_human(w: &mut dyn Write, s: &SubtaskDoc, indent: &str) -> std::io::Result<()> {
    let mut parts = Vec::new();
    if let Some(n) = &s.node {
        parts.push(format!("on {n}"));
    }
    if !s.components.is_empty() {
        let sep = if s.ordered { " then " } else { ", " };
        parts.push(s.components.join(sep));
    }
    if !s.actions.is_empty() {
        parts.push(s.actions.join(", "));
    }
    if !s.subtasks.is_empty() {
        parts.push(format!(
            "{} subtasks, {}",
            s.subtasks.len(),
            s.subtask_order
        ));
    }
    writeln!(
        w,
        "{indent}- {}: {}",
        s.name.as_deref().unwrap_or("(unnamed)"),
        parts.join("; ")
    )?;
    for c in &s.subtasks {
        subtask_human(w, c, &format!("{indent}  "))?;
    }
    Ok(())
}

/// The `dtk.module.validate/v1` document (for a valid module; an invalid one is a
/// `dtk.error/v1` document with its diagnostics, and exit status 1).
#[derive(Serialize)]
struct ValidateDoc {
    valid: bool,
    module: String,
    version: String,
    components: Vec<String>,
    assemblies: Vec<String>,
    /// The files `install` would store.
    files: Vec<FileDoc>,
}

fn validate(ctx: &Ctx, dir: PathBuf) -> anyhow::Result<()> {
    let v = dtk_catalog::validate_dir(&dir)
        .with_context(|| format!("the module in {} is not valid", dir.display()))?;
    let doc = ValidateDoc {
        valid: true,
        module: v.module.id.to_string(),
        version: v.module.version.to_string(),
        components: v.module.components.keys().cloned().collect(),
        assemblies: v.module.assemblies.keys().cloned().collect(),
        files: v
            .files
            .iter()
            .map(|f| FileDoc {
                path: f.path.clone(),
                size: f.size,
                executable: f.executable,
            })
            .collect(),
    };
    ctx.out.emit("dtk.module.validate/v1", &doc, |w| {
        writeln!(
            w,
            "{} {} is valid: {} components, {} assemblies, {} files",
            doc.module,
            doc.version,
            doc.components.len(),
            doc.assemblies.len(),
            doc.files.len()
        )
    })
}

/// The `dtk.document.validate/v1` document (`dtk module validate --file FILE`).
#[derive(Serialize)]
struct DocumentDoc {
    valid: bool,
    file: String,
    kind: &'static str,
    name: String,
    version: Option<String>,
}

/// Checks one module or service document by its content alone (no other file, no
/// catalog): what `scripts/compat` runs on a corpus of documents.
fn validate_file(ctx: &Ctx, path: &Path) -> anyhow::Result<()> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    let is_service = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with("dtk.service.yaml"));
    let doc = if is_service {
        let s = dtk_model::dsl::parse_service(&text, &shown)
            .with_context(|| format!("{shown} is not a valid service document"))?;
        DocumentDoc {
            valid: true,
            file: shown,
            kind: "service",
            name: s.name,
            version: None,
        }
    } else {
        let m = dtk_model::dsl::parse_module(&text, &shown)
            .with_context(|| format!("{shown} is not a valid module"))?;
        DocumentDoc {
            valid: true,
            file: shown,
            kind: "module",
            name: m.id.to_string(),
            version: Some(m.version.to_string()),
        }
    };
    ctx.out
        .emit("dtk.document.validate/v1", &doc, |w| match &doc.version {
            Some(v) => writeln!(
                w,
                "{} is a valid module document: {} {v}",
                doc.file, doc.name
            ),
            None => writeln!(w, "{} is a valid service document: {}", doc.file, doc.name),
        })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn short_opt(commit: Option<&str>) -> &str {
    commit.map_or("?", short)
}
