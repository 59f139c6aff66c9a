//! The errors of the instance layer.

use std::fmt;
use std::path::PathBuf;

use dtk_model::{ModuleId, ModuleVersion, VersionReq};

use thiserror::Error;

/// The error returned by instance operations: staging, edits, converge and the
/// instance repository.
#[derive(Debug, Error)]
pub enum InstanceError {
    /// A git operation on a repository failed.
    #[error("git {op} failed in {}", repo.display())]
    Git {
        /// The repository.
        repo: PathBuf,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file system operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A revision does not name a commit of the instance repository.
    #[error("`{rev}` is not a commit of the instance repository: {message}")]
    Revision {
        /// The revision as given.
        rev: String,
        /// Why it does not resolve.
        message: String,
    },
    /// Input (a service document, a module, an edit) was refused; the source holds every
    /// located problem.
    #[error(
        "{} refused: {} problem{}",
        .0.file(),
        .0.diagnostics.len(),
        if .0.diagnostics.len() == 1 { "" } else { "s" }
    )]
    Dsl(#[from] dtk_model::DslError),
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] dtk_catalog::CatalogError),
    /// Dependency resolution failed.
    #[error(transparent)]
    Resolve(#[from] dtk_catalog::ResolveError),
    /// There is no service instance of that name.
    #[error("no service instance named `{name}` (see `dtk service list`)")]
    NoSuchService {
        /// The name asked for.
        name: String,
    },
    /// A service instance of that name exists already.
    #[error("a service instance named `{name}` exists already at {}", path.display())]
    ServiceExists {
        /// The name.
        name: String,
        /// Its directory.
        path: PathBuf,
    },
    /// The instance is locked by another process.
    #[error("service `{service}` is locked by {holder}")]
    Locked {
        /// The service.
        service: String,
        /// Who holds the lock (pid, host, since when).
        holder: String,
    },
    /// A name (of a service, a node) breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] dtk_model::ident::ParseRefError),
    /// A target instance that services still use is not deleted or uninstalled (unless
    /// forced).
    #[error(
        "`{target}` is the target of {} service{} {state}: {}; {first}, or {operation} `{target}` anyway with \
         `--force`, which leaves them without their target",
        services.len(),
        if services.len() == 1 { "" } else { "s" },
        services.join(", ")
    )]
    TargetInUse {
        /// The target instance.
        target: String,
        /// `delete` or `uninstall`.
        operation: &'static str,
        /// The services in the way.
        services: Vec<String>,
        /// How they are in the way (`with resources`, `staged`).
        state: &'static str,
        /// What to do first.
        first: &'static str,
    },
    /// No recorded run has this id (or id prefix).
    #[error("`{service}` has no run `{run}` (see `dtk service runs {service}`)")]
    NoSuchRun {
        /// The service.
        service: String,
        /// The id asked for.
        run: String,
    },
    /// An id prefix names several runs.
    #[error("`{run}` names {count} runs of `{service}`; give more of the id")]
    AmbiguousRun {
        /// The service.
        service: String,
        /// The prefix asked for.
        run: String,
        /// How many runs it names.
        count: usize,
    },
    /// Staging names a target instance that does not exist.
    #[error(
        "no target instance named `{name}` (stage a target assembly with `dtk service stage ... --base -n {name}`)"
    )]
    NoSuchTarget {
        /// The name given.
        name: String,
    },
    /// Staging names, as its target, a service that is not a target instance.
    #[error(
        "`{name}` is a service instance, not a target instance (targets are staged with `--base`)"
    )]
    NotATarget {
        /// The name given.
        name: String,
    },
    /// Staging on a target that has never converged (its nodes' attributes are unknown).
    #[error("target `{name}` has not converged yet; run `dtk service converge {name}` first")]
    TargetNotConverged {
        /// The target instance.
        name: String,
    },
    /// An edit names a node the service does not have.
    #[error("no node `{node}`{}", if known.is_empty() { String::new() } else { format!(" (nodes: {known})") })]
    NoSuchNode {
        /// The node named.
        node: String,
        /// The service's nodes, listed (empty when not worth listing).
        known: String,
    },
    /// An edit names a component instance the service does not have.
    #[error("no component `{path}` in the service")]
    NoSuchComponent {
        /// The reference given.
        path: String,
    },
    /// The work tree has edits that the operation would lose or ignore.
    #[error("`{service}` has uncommitted edits ({}); converge or revert them before {operation}", files.join(", "))]
    UncommittedEdits {
        /// The service.
        service: String,
        /// The edited files.
        files: Vec<String>,
        /// What was asked (`pull-base`, `rollback`, ...).
        operation: String,
    },
    /// Uninstalling a service that still has deployed components (without `--force`).
    #[error(
        "`{service}` still has {count} deployed component(s); run `dtk service delete {service}` first (or uninstall --force)"
    )]
    StillDeployed {
        /// The service.
        service: String,
        /// How many components are deployed.
        count: usize,
    },
    /// A saved plan (`plan --out`) no longer holds: what it was made from changed, or it
    /// is not a plan of this service. Nothing was run.
    #[error("{message}")]
    StalePlan {
        /// What changed, and that a new plan is needed.
        message: String,
    },
    /// A service has an action done by a provider kind that no registered provider
    /// serves (staging refuses it).
    #[error("{0}")]
    MissingProvider(Box<MissingProvider>),
    /// A new pull-base while an earlier one still waits for its conflicts.
    #[error(
        "a pull-base of {pull} waits for its conflicts to be resolved ({}); \
         resolve them and converge, or `dtk service pull-base {service} --abort`",
        conflicts.join(", ")
    )]
    PullPending {
        /// The service.
        service: String,
        /// The pull waiting: `MODULE (FROM -> TO)`.
        pull: String,
        /// The files in conflict.
        conflicts: Vec<String>,
    },
    /// A pull-base names a module the service does not use.
    #[error("`{service}` does not use module {module}; it uses: {}", uses.join(", "))]
    ModuleNotUsed {
        /// The service.
        service: String,
        /// The module named.
        module: String,
        /// The modules it pins.
        uses: Vec<String>,
    },
    /// A pull-base waits for its conflicts to be resolved.
    #[error(
        "the pull-base of `{module}` has unresolved conflicts in: {}; edit them to remove the \
         conflict markers (<<<<<<< ======= >>>>>>>) and converge again, or undo the pull-base \
         with `dtk service pull-base NAME --abort`",
        paths.join(", ")
    )]
    MergeConflict {
        /// The module.
        module: String,
        /// The conflicting paths.
        paths: Vec<String>,
    },
    /// Violations must be fixed before converge.
    #[error(
        "the service has {} violation(s) to fix first (nothing was run; `dtk service violations NAME` lists them):\n{}",
        violations.len(),
        violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n")
    )]
    Violations {
        /// The violations.
        violations: Vec<ServiceViolation>,
    },
    /// An operation that needs the team's remote, in a home without one.
    #[error("{what} needs a remote: set one with `dtk remote set URL` (or DTK_REMOTE)")]
    NoRemote {
        /// What needs it (`` `dtk service clone` ``, ...).
        what: String,
    },
    /// Staging a service under a name the remote has already.
    #[error(
        "a service named `{name}` exists on the remote {remote} already; take it with \
         `dtk service clone {name}`, or stage under another name"
    )]
    RemoteServiceExists {
        /// The name.
        name: String,
        /// The remote (credentials removed).
        remote: String,
    },
    /// Cloning a service the remote does not have.
    #[error(
        "the remote {remote} has no service named `{name}` (it has: {})",
        if there.is_empty() { "none".to_owned() } else { there.join(", ") }
    )]
    NoSuchRemoteService {
        /// The remote (credentials removed).
        remote: String,
        /// The name asked for.
        name: String,
        /// The services the remote has.
        there: Vec<String>,
    },
    /// Pulling a service that is not on the remote.
    #[error("the remote {remote} has no `{service}`; push it with `dtk service push {service}`")]
    NotOnRemote {
        /// The remote (credentials removed).
        remote: String,
        /// The service.
        service: String,
    },
    /// The pull before a converge brought edits that conflict with this machine's.
    #[error(
        "pulling `{service}` from the remote {remote} brought conflicting edits in: {}; \
         resolve the conflict markers there and converge again (nothing was lost: \
         see `dtk service diff {service}`)",
        conflicts.join(", ")
    )]
    PullConflicts {
        /// The service.
        service: String,
        /// The remote (credentials removed).
        remote: String,
        /// The files holding conflict markers.
        conflicts: Vec<String>,
    },
    /// The remote refused a push of desired-state commits for another reason than
    /// commits this machine lacks.
    #[error("the remote {remote} refused the push of `{service}` ({rejected}); try again")]
    PushRefused {
        /// The remote (credentials removed).
        remote: String,
        /// The service.
        service: String,
        /// The references refused, with git's reasons.
        rejected: String,
    },
    /// The remote has desired-state commits this machine lacks: pull first.
    #[error(
        "the remote {remote} has desired-state commits of `{service}` that this machine lacks \
         (the latest, {commit}, by {author}); run `dtk service pull {service}` first, then push again"
    )]
    RemoteAhead {
        /// The remote (credentials removed).
        remote: String,
        /// The service.
        service: String,
        /// The remote's latest commit (abbreviated).
        commit: String,
        /// Its author.
        author: String,
    },
    /// `unlock`: the lock changed hands between showing it and removing it.
    #[error("the lock of `{service}` changed hands while you decided (now: {holder}); look again")]
    LockChangedHands {
        /// The service.
        service: String,
        /// Who holds it now.
        holder: String,
    },
    /// `unlock`: the lock moved while it was being removed.
    #[error("the lock of `{service}` changed while it was being removed; look again")]
    LockMoved {
        /// The service.
        service: String,
    },
    /// A converge needs secrets that were set where the service last converged, and
    /// that this machine lacks.
    #[error(
        "`{service}` needs secrets that are not set on this machine: {} (they were set where it \
         last converged; secrets never travel through the remote: set each here with \
         `dtk service set-attribute {service} PATH VALUE`)",
        missing.join(", ")
    )]
    SecretsMissing {
        /// The service.
        service: String,
        /// The secrets missing, `COMPONENT/ATTRIBUTE`.
        missing: Vec<String>,
    },
    /// Another machine moved the service on the remote between this run's fetch and its
    /// lock push.
    #[error(
        "could not take the lock of `{service}` on the remote {remote}: {what} meanwhile; run the \
         command again"
    )]
    LockRace {
        /// The service.
        service: String,
        /// The remote (credentials removed).
        remote: String,
        /// What moved.
        what: &'static str,
    },
    /// A lock reference on the remote points at a commit without `lock.json`.
    #[error("the lock commit {commit} has no {file}: it was not written by dtk")]
    LockNotDtk {
        /// The commit (hex).
        commit: String,
        /// The file it lacks.
        file: &'static str,
    },
    /// A lock commit whose `lock.json` cannot be read.
    #[error("the lock commit {commit} is damaged: {reason}")]
    LockDamaged {
        /// The commit (hex).
        commit: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A run that writes actual state without running actions (`refresh`, `import`) lost
    /// its lease on the remote lock while it went: nothing of it was kept.
    #[error(
        "{operation} of `{service}` stopped: {why}; nothing of it was kept (the remote's state \
         wins)"
    )]
    LeaseLost {
        /// The service.
        service: String,
        /// `refresh` or `import`.
        operation: &'static str,
        /// Why the lease is lost.
        why: String,
    },
    /// The team's remote could not be used.
    #[error(transparent)]
    Remote(#[from] dtk_catalog::remote::RemoteError),
    /// The workflow layer failed (planning, journal).
    #[error(transparent)]
    Workflow(Box<dyn std::error::Error + Send + Sync>),
    /// A component reference (`--only`, `outputs`, `import`) does not parse.
    #[error(transparent)]
    InvalidSelector(#[from] dtk_workflow::ParseSelectorError),
    /// A component reference matches no component of the service
    /// ([`dtk_workflow::SelectError::NoMatch`]).
    #[error(transparent)]
    NoMatch(Box<dtk_workflow::SelectError>),
    /// An action target (`[NODE/]CMP.ACTION`) does not parse.
    #[error(transparent)]
    InvalidTarget(#[from] dtk_workflow::ParseTargetError),
    /// A converge names a workflow the service does not have (and no action target).
    #[error(
        "`{target}` is neither a workflow of `{service}` (it has: {}) nor `[NODE/]CMP.ACTION`",
        workflows.join(", ")
    )]
    NoSuchWorkflow {
        /// What was asked for.
        target: String,
        /// The service.
        service: String,
        /// Its workflows (`create` left out).
        workflows: Vec<String>,
    },
    /// An edit breaks a rule of the attribute or component it names.
    #[error(transparent)]
    Edit(#[from] dtk_model::edit::EditError),
    /// `set-attribute` names an attribute the component does not declare.
    #[error(
        "component `{component}` has no attribute `{attr}`{}; it has: {}",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
        known.join(", ")
    )]
    NoSuchAttribute {
        /// The component reference.
        component: String,
        /// The attribute named.
        attr: String,
        /// The declared attribute closest to it, if any is close.
        suggestion: Option<String>,
        /// The attributes the component declares.
        known: Vec<String>,
    },
    /// An attribute path names no node or component of the service.
    #[error("{0}")]
    NoSuchOwner(Box<NoSuchOwner>),
    /// An edit or rename would add what the service already has.
    #[error("{}", what.describe(name))]
    AlreadyInService {
        /// The node name or component reference.
        name: String,
        /// What it is, and which edit asked.
        what: Existing,
    },
    /// `mv FROM TO` is not a rename.
    #[error("{}", problem.describe(from, to))]
    BadRename {
        /// The reference to rename.
        from: String,
        /// The new name.
        to: String,
        /// Why it is refused.
        problem: RenameProblem,
    },
    /// The instance repository (or a merge made in it) lacks what it must hold.
    #[error("{0}")]
    Damaged(Box<Damage>),
    /// The work tree's copy of a pinned module is missing or is not the pinned one.
    #[error("{0}")]
    PinMismatch(Box<PinMismatch>),
    /// Two module versions the service needs cannot both hold.
    #[error("{0}")]
    VersionConflict(Box<VersionConflict>),
    /// A module version has no assembly of that name.
    #[error("{0}")]
    NoSuchAssembly(Box<NoSuchAssembly>),
    /// The root module of a staging did not resolve.
    #[error("module {module} did not resolve")]
    ModuleNotResolved {
        /// The module.
        module: ModuleId,
    },
    /// A target's node component is defined by none of the target's modules.
    #[error("the target's node component `{component}` is not defined by its modules")]
    UndefinedNodeComponent {
        /// The component reference.
        component: String,
    },
    /// An action is done by a provider resource its provider does not have.
    #[error("{0}")]
    NoSuchResource(Box<NoSuchResource>),
    /// `import` is refused or failed; nothing was imported.
    #[error("{0}")]
    Import(Box<ImportError>),
    /// The service's limits file (`limits.yaml`) is malformed.
    #[error("{file}{problem}")]
    BadLimits {
        /// The file, as shown.
        file: String,
        /// What is wrong in it.
        problem: LimitsProblem,
    },
    /// A file given as a saved plan is not one.
    #[error("{what} {problem}")]
    NotAPlan {
        /// The file, as shown.
        what: String,
        /// Why it is not a plan.
        problem: PlanProblem,
    },
    /// A path given to `edit` cannot name a file of the instance.
    #[error("`{path}`: {problem}")]
    BadPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        problem: dtk_model::content::PathError,
    },
    /// The desired state has no such file or directory.
    #[error(
        "the desired state has no file or directory `{path}` (module files are under modules/NS/NAME/)"
    )]
    NoSuchPath {
        /// The path as given.
        path: String,
    },
    /// A committed file of the work tree was replaced by a symbolic link.
    #[error(
        "{} is a symbolic link; the instance repository holds plain files only (put the file itself there)",
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// The default target is set to a service that is not a target instance.
    #[error("`{name}` is not a target instance (stage a target assembly with `--base`)")]
    DefaultNotATarget {
        /// The name given.
        name: String,
    },
}

/// What [`InstanceError::MissingProvider`] says: which action needs which kind, what is
/// available, and where provider executables were looked for.
#[derive(Debug, Clone)]
pub struct MissingProvider {
    /// The component instance (`vpc[vpc1]`).
    pub component: String,
    /// Its module.
    pub module: String,
    /// The action (`create`).
    pub action: String,
    /// The provider kind it names.
    pub kind: String,
    /// The kinds that are available.
    pub available: Vec<String>,
    /// Where provider executables were looked for, and what was found unusable.
    pub search: dtk_model::provider::ProviderSearch,
}

impl std::fmt::Display for MissingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let MissingProvider {
            component,
            module,
            action,
            kind,
            available,
            search,
        } = self;
        write!(
            f,
            "`{component}` ({module}) has action `{action}` done by provider `{kind}`, which "
        )?;
        if search.dirs.is_empty() {
            return write!(
                f,
                "this program has not registered (it has: {})",
                available.join(", ")
            );
        }
        let dirs: Vec<String> = search
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        write!(
            f,
            "is not available: it is not built in (available: {}), and no usable executable \
             `dtk-provider-{kind}` is in {}",
            available.join(", "),
            dirs.join(", ")
        )?;
        for u in search.unusable.iter().filter(|u| u.kind == *kind) {
            write!(
                f,
                "; {} was found but cannot be used: {}",
                u.path.display(),
                u.reason
            )?;
        }
        Ok(())
    }
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceViolation {
    /// Its kind (see the [`crate::violations`] module).
    pub kind: String,
    /// Where: a component instance (`web/web`), an action (`web/web.create`), or a file
    /// location (`dtk.service.yaml:12:5`).
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ServiceViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}  {}: {}", self.kind, self.at, self.message)
    }
}

/// What [`InstanceError::NoSuchOwner`] says: the attribute path, and which part of it
/// names nothing.
#[derive(Debug, Clone)]
pub struct NoSuchOwner {
    /// The attribute path as given.
    pub path: String,
    /// What it names that the service lacks.
    pub missing: MissingOwner,
}

/// The part of an attribute path that names nothing (see [`NoSuchOwner`]). The lists
/// are what the service has there.
#[derive(Debug, Clone)]
pub enum MissingOwner {
    /// `NAME/attr`: neither a node nor an assembly-level component.
    NodeOrComponent {
        /// The name.
        name: String,
        /// The service's nodes.
        nodes: Vec<String>,
        /// Its assembly-level components.
        components: Vec<String>,
    },
    /// `NODE/CMP/attr`: no such node.
    Node {
        /// The node.
        node: String,
        /// The service's nodes.
        nodes: Vec<String>,
    },
    /// `NODE/CMP/attr`: the node has no such component.
    ComponentOnNode {
        /// The node.
        node: String,
        /// The component reference.
        component: String,
        /// The node's components.
        on_node: Vec<String>,
    },
    /// `CMP/attr`: no such assembly-level component.
    Component {
        /// The component reference.
        component: String,
        /// The assembly-level components.
        components: Vec<String>,
    },
    /// The path names neither a node nor a component.
    Nothing,
}

/// A list as errors show it: comma-separated, `none` when empty.
pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

impl fmt::Display for NoSuchOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.missing {
            MissingOwner::NodeOrComponent {
                name,
                nodes,
                components,
            } => write!(
                f,
                "`{path}`: no node or assembly-level component named `{name}` (nodes: {}; components: {})",
                list(nodes),
                list(components)
            ),
            MissingOwner::Node { node, nodes } => {
                write!(f, "`{path}`: no node `{node}` (nodes: {})", list(nodes))
            }
            MissingOwner::ComponentOnNode {
                node,
                component,
                on_node,
            } => write!(
                f,
                "`{path}`: node `{node}` has no component `{component}` (it has: {})",
                list(on_node)
            ),
            MissingOwner::Component {
                component,
                components,
            } => write!(
                f,
                "`{path}`: no assembly-level component `{component}` (components: {})",
                list(components)
            ),
            MissingOwner::Nothing => write!(f, "`{path}` names no node or component"),
        }
    }
}

/// What [`InstanceError::AlreadyInService`] found already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// A node of that name (a rename's new name).
    Node,
    /// A component instance (a rename's new name).
    Renamed,
    /// A component instance (`add-component`).
    Added,
}

impl Existing {
    fn describe(self, name: &str) -> String {
        match self {
            Existing::Node => format!("the service already has a node `{name}`"),
            Existing::Renamed => format!("`{name}` is in the service already"),
            Existing::Added => format!("`{name}` is already in the service"),
        }
    }
}

/// Why [`InstanceError::BadRename`] refuses `mv FROM TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameProblem {
    /// The two are on different nodes.
    OtherNode,
    /// The two are different components, not two instances of one.
    OtherComponent,
    /// The two are the same.
    Same,
    /// FROM names nothing the rename changes.
    NothingNamed,
    /// The rename would change which components the service has.
    ChangesComponents,
}

impl RenameProblem {
    fn describe(self, from: &str, to: &str) -> String {
        match self {
            RenameProblem::OtherNode => format!(
                "`{from}` and `{to}` are on different nodes: mv renames, it does not move a component to another node"
            ),
            RenameProblem::OtherComponent => format!(
                "`{to}` is another component than `{from}`: mv renames a component's instance (`cmp[a]` → `cmp[b]`), it does not change what it is"
            ),
            RenameProblem::Same => format!("`{from}` and `{to}` are the same"),
            RenameProblem::NothingNamed => format!("`{from}` names nothing to rename"),
            RenameProblem::ChangesComponents => {
                "the rename changes the service's components, not only their names".to_owned()
            }
        }
    }
}

/// What [`InstanceError::Damaged`] found missing or broken in the instance repository.
#[derive(Debug, Clone)]
pub enum Damage {
    /// HEAD has no service document.
    NoServiceFile {
        /// The service.
        service: String,
    },
    /// A pull-base's merge has no service document.
    MergeHasNoServiceFile,
    /// A module copy has no `dtk.module.yaml`.
    NoModuleFile {
        /// The module.
        module: ModuleId,
        /// Whether it is the copy a pull-base merged (else the committed one).
        merged: bool,
    },
    /// There is no copy of a module the service pins.
    NoModuleCopy {
        /// The module.
        module: ModuleId,
        /// The service, when the message names it.
        service: Option<String>,
    },
    /// The service document does not say which assembly it was staged from.
    NoAssembly,
    /// The record of a pending pull-base does not hold a commit id.
    PendingPull {
        /// Why it does not.
        why: String,
    },
    /// The actual state file is missing or damaged and its last state commit has no copy.
    ActualState {
        /// The actual state file.
        path: PathBuf,
        /// What is wrong with it (`None`: it is missing).
        problem: Option<String>,
        /// The last state commit.
        commit: String,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use dtk_model::service::SERVICE_FILE;
        match self {
            Damage::NoServiceFile { service } => write!(
                f,
                "the instance repository of `{service}` has no {SERVICE_FILE}"
            ),
            Damage::MergeHasNoServiceFile => write!(f, "the merge has no {SERVICE_FILE}"),
            Damage::NoModuleFile { module, merged } => write!(
                f,
                "the {} copy of {module} has no dtk.module.yaml",
                if *merged { "merged" } else { "instance" }
            ),
            Damage::NoModuleCopy {
                module,
                service: Some(service),
            } => write!(f, "`{service}` has no copy of {module}"),
            Damage::NoModuleCopy {
                module,
                service: None,
            } => write!(f, "the instance repository has no copy of {module}"),
            Damage::NoAssembly => write!(f, "the service does not record its assembly"),
            Damage::PendingPull { why } => write!(f, "the pending pull-base is damaged: {why}"),
            Damage::ActualState {
                path,
                problem,
                commit,
            } => write!(
                f,
                "{} is {} and the last state commit {commit} ({}) has no {}",
                path.display(),
                problem.as_deref().unwrap_or("missing"),
                crate::layout::STATE_REF,
                crate::layout::ACTUAL_FILE
            ),
        }
    }
}

/// What [`InstanceError::PinMismatch`] says: the service document pins `module` at
/// `pinned`, and its work-tree copy does not match.
#[derive(Debug, Clone)]
pub struct PinMismatch {
    /// The service document.
    pub doc: PathBuf,
    /// The copy's `dtk.module.yaml`.
    pub copy: PathBuf,
    /// The module pinned.
    pub module: ModuleId,
    /// The version pinned.
    pub pinned: ModuleVersion,
    /// What the copy is instead.
    pub found: CopyFound,
}

/// What the copy of [`PinMismatch`] is.
#[derive(Debug, Clone)]
pub enum CopyFound {
    /// There is none.
    Missing,
    /// It declares another module.
    OtherModule(ModuleId),
    /// It is another version.
    OtherVersion(ModuleVersion),
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PinMismatch {
            doc,
            copy,
            module,
            pinned,
            found,
        } = self;
        match found {
            CopyFound::Missing => write!(
                f,
                "{} pins module `{module}` {pinned}, but the instance has no copy of it ({} is missing)",
                doc.display(),
                copy.display()
            ),
            CopyFound::OtherModule(other) => write!(
                f,
                "{} declares module `{other}`, but it is the instance copy of `{module}`",
                copy.display()
            ),
            CopyFound::OtherVersion(v) => write!(
                f,
                "{} pins module `{module}` {pinned}, but its instance copy {} is version {v} \
                 (move to another version with `dtk service pull-base`)",
                doc.display(),
                copy.display()
            ),
        }
    }
}

/// What [`InstanceError::VersionConflict`] says.
#[derive(Debug, Clone)]
pub enum VersionConflict {
    /// The service pins one version of a module, its target realizes nodes with another.
    Target {
        /// The module.
        module: ModuleId,
        /// The version the service pins.
        pinned: ModuleVersion,
        /// The target instance.
        target: String,
        /// The version the target uses.
        realized: ModuleVersion,
    },
    /// A pull-base's new version requires another version of a module the instance pins.
    Requirement {
        /// The module pulled.
        module: ModuleId,
        /// Its new version.
        version: ModuleVersion,
        /// The module it depends on.
        dependency: ModuleId,
        /// The versions it accepts.
        req: VersionReq,
        /// The version the instance pins.
        pinned: ModuleVersion,
    },
}

impl fmt::Display for VersionConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionConflict::Target {
                module,
                pinned,
                target,
                realized,
            } => write!(
                f,
                "the service pins {module}@{pinned} but target `{target}` realizes nodes with {module}@{realized}"
            ),
            VersionConflict::Requirement {
                module,
                version,
                dependency,
                req,
                pinned,
            } => write!(
                f,
                "{module}@{version} requires {dependency} {req}, but the instance pins {pinned}; pull-base {dependency} first"
            ),
        }
    }
}

/// What [`InstanceError::NoSuchAssembly`] says.
#[derive(Debug, Clone)]
pub struct NoSuchAssembly {
    /// The module.
    pub module: ModuleId,
    /// Its version.
    pub version: ModuleVersion,
    /// The assembly asked for.
    pub assembly: String,
    /// The service staged from it (a pull-base looks for it in the new version).
    pub staged: Option<String>,
    /// The assemblies the version has (listed when `staged` is `None`).
    pub known: Vec<String>,
}

impl fmt::Display for NoSuchAssembly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let NoSuchAssembly {
            module,
            version,
            assembly,
            staged,
            known,
        } = self;
        match staged {
            Some(service) => write!(
                f,
                "{module}@{version} has no assembly `{assembly}` (the one `{service}` was staged from)"
            ),
            None if known.is_empty() => write!(
                f,
                "module {module}@{version} has no assembly `{assembly}` (it has no assemblies)"
            ),
            None => write!(
                f,
                "module {module}@{version} has no assembly `{assembly}`; it has: {}",
                known.join(", ")
            ),
        }
    }
}

/// What [`InstanceError::NoSuchResource`] says.
#[derive(Debug, Clone)]
pub struct NoSuchResource {
    /// The component instance.
    pub component: String,
    /// Its module.
    pub module: String,
    /// The action.
    pub action: String,
    /// The provider kind.
    pub kind: String,
    /// The resource named.
    pub resource: String,
    /// The provider's resources.
    pub known: Vec<String>,
}

impl fmt::Display for NoSuchResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let NoSuchResource {
            component,
            module,
            action,
            kind,
            resource,
            known,
        } = self;
        write!(
            f,
            "`{component}` ({module}) has action `{action}` done by `{kind}.{resource}`, but provider `{kind}` has no resource `{resource}` (it has: {})",
            known.join(", ")
        )
    }
}

/// Why `import` refused or failed ([`InstanceError::Import`]).
#[derive(Debug, Clone)]
pub enum ImportError {
    /// The resource id is empty.
    EmptyId,
    /// The reference names no component of the desired state.
    NotDesired {
        /// The reference.
        reference: String,
        /// The service, when the message names it.
        service: Option<String>,
    },
    /// The reference names several components.
    Ambiguous {
        /// The reference.
        reference: String,
        /// The component ids it names.
        ids: Vec<String>,
    },
    /// The component is made by commands, not by a provider resource.
    NotAResource {
        /// The component.
        component: String,
    },
    /// The component is deployed already.
    AlreadyDeployed {
        /// The component.
        component: String,
        /// The id it was imported from (`None`: dtk made it).
        imported_from: Option<String>,
    },
    /// No provider of the component's kind is registered.
    NoProvider {
        /// The provider kind.
        kind: String,
        /// The resource.
        resource: String,
        /// The component.
        component: String,
    },
    /// An input of the component cannot be resolved.
    Inputs {
        /// The component.
        component: String,
        /// Which input, and why.
        why: dtk_workflow::ResolveError,
        /// Whether to add what to do first (converge or import what it depends on).
        hint: bool,
    },
    /// The provider cannot import this id into this component.
    Unsupported {
        /// The resource id.
        id: String,
        /// The component.
        component: String,
        /// The provider's words, secrets redacted.
        detail: String,
    },
    /// The provider failed.
    Failed {
        /// The resource id.
        id: String,
        /// The component.
        component: String,
        /// The provider's error and its causes, secrets redacted.
        detail: String,
    },
    /// The provider has no such resource.
    Missing {
        /// The provider kind.
        kind: String,
        /// The resource.
        resource: String,
        /// The resource id.
        id: String,
        /// The component.
        component: String,
    },
    /// The provider cannot tell whether the resource exists.
    Unknown {
        /// The provider kind.
        kind: String,
        /// The resource id.
        id: String,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::EmptyId => write!(f, "the resource id to import is empty"),
            ImportError::NotDesired {
                reference,
                service: None,
            } => write!(f, "`{reference}` is not in the desired state"),
            ImportError::NotDesired {
                reference,
                service: Some(service),
            } => write!(
                f,
                "`{reference}` is not in the desired state of `{service}`"
            ),
            ImportError::Ambiguous { reference, ids } => write!(
                f,
                "`{reference}` names {} components ({}); name one",
                ids.len(),
                ids.join(", ")
            ),
            ImportError::NotAResource { component } => write!(
                f,
                "`{component}` is made by commands, not by a provider resource: there is nothing to import"
            ),
            ImportError::AlreadyDeployed {
                component,
                imported_from,
            } => {
                let how = match imported_from {
                    Some(id) => format!("it was imported from `{id}`"),
                    None => "dtk made it".to_owned(),
                };
                write!(
                    f,
                    "`{component}` is already deployed ({how}); delete it first or import into another component"
                )
            }
            ImportError::NoProvider {
                kind,
                resource,
                component,
            } => write!(
                f,
                "no provider of kind `{kind}` is registered (`{component}` is a `{kind}.{resource}`)"
            ),
            ImportError::Inputs {
                component,
                why,
                hint: true,
            } => write!(
                f,
                "{why}: converge or import what `{component}` depends on first"
            ),
            ImportError::Inputs {
                why, hint: false, ..
            } => write!(f, "{why}"),
            ImportError::Unsupported {
                id,
                component,
                detail,
            } => write!(f, "cannot import `{id}` into `{component}`: {detail}"),
            ImportError::Failed {
                id,
                component,
                detail,
            } => write!(f, "import of `{id}` into `{component}` failed: {detail}"),
            ImportError::Missing {
                kind,
                resource,
                id,
                component,
            } => write!(
                f,
                "`{kind}` has no `{resource}` `{id}` to import into `{component}`"
            ),
            ImportError::Unknown { kind, id } => write!(
                f,
                "`{kind}` cannot tell whether `{id}` exists; nothing imported"
            ),
        }
    }
}

/// What is wrong in a limits file ([`InstanceError::BadLimits`]); shown after the
/// file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsProblem {
    /// It is not UTF-8.
    NotUtf8,
    /// It is not a mapping.
    NotMapping {
        /// What it is instead (`a list`).
        found: &'static str,
    },
    /// A limit is not a whole number above 0.
    NotPositive {
        /// The provider kind.
        kind: String,
        /// The value given.
        value: String,
    },
}

impl fmt::Display for LimitsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitsProblem::NotUtf8 => write!(f, " is not UTF-8 text"),
            LimitsProblem::NotMapping { found } => write!(
                f,
                " must be a mapping of provider kinds to numbers (`aws: 4`), not {found}"
            ),
            LimitsProblem::NotPositive { kind, value } => write!(
                f,
                ": `{kind}` must be a whole number above 0, not `{value}`"
            ),
        }
    }
}

/// Why a file is not a saved plan ([`InstanceError::NotAPlan`]); shown after the file's
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanProblem {
    /// It does not read as a plan (not JSON, no schema, missing fields).
    Unreadable(String),
    /// It is another kind of document.
    Schema {
        /// Its schema.
        found: String,
        /// The schema of a plan.
        expected: &'static str,
    },
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanProblem::Unreadable(why) => write!(
                f,
                "is not a plan written by `dtk service plan --out`: {why}"
            ),
            PlanProblem::Schema { found, expected } => {
                write!(f, "is a `{found}` document, not a plan (`{expected}`)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each refusal reads word for word as it did when it was a preformatted message
    //! (the CLI prints these; users and scripts match them).

    use super::*;

    fn m(s: &str) -> ModuleId {
        s.parse().expect("a module id")
    }

    fn v(s: &str) -> ModuleVersion {
        s.parse().expect("a version")
    }

    fn says(e: InstanceError, want: &str) {
        assert_eq!(e.to_string(), want, "{e:?}");
    }

    #[test]
    fn the_error_stays_small() {
        // clippy's result_large_err limit; boxed details keep the enum below it.
        assert!(
            std::mem::size_of::<InstanceError>() <= 128,
            "{}",
            std::mem::size_of::<InstanceError>()
        );
    }

    #[test]
    fn edits_and_renames_read_as_before() {
        says(
            InstanceError::NoSuchAttribute {
                component: "backend".into(),
                attr: "mesage".into(),
                suggestion: Some("message".into()),
                known: vec!["message".into(), "port".into()],
            },
            "component `backend` has no attribute `mesage` (did you mean `message`?); it has: message, port",
        );
        says(
            InstanceError::NoSuchAttribute {
                component: "backend".into(),
                attr: "zzz".into(),
                suggestion: None,
                known: vec!["message".into()],
            },
            "component `backend` has no attribute `zzz`; it has: message",
        );
        let owner = |missing| {
            InstanceError::NoSuchOwner(Box::new(NoSuchOwner {
                path: "db/x/port".into(),
                missing,
            }))
        };
        says(
            owner(MissingOwner::NodeOrComponent {
                name: "db".into(),
                nodes: vec![],
                components: vec!["a".into(), "b".into()],
            }),
            "`db/x/port`: no node or assembly-level component named `db` (nodes: none; components: a, b)",
        );
        says(
            owner(MissingOwner::Node {
                node: "db".into(),
                nodes: vec!["web".into()],
            }),
            "`db/x/port`: no node `db` (nodes: web)",
        );
        says(
            owner(MissingOwner::ComponentOnNode {
                node: "db".into(),
                component: "x".into(),
                on_node: vec![],
            }),
            "`db/x/port`: node `db` has no component `x` (it has: none)",
        );
        says(
            owner(MissingOwner::Component {
                component: "x".into(),
                components: vec!["y".into()],
            }),
            "`db/x/port`: no assembly-level component `x` (components: y)",
        );
        says(
            owner(MissingOwner::Nothing),
            "`db/x/port` names no node or component",
        );
        let exists = |what| InstanceError::AlreadyInService {
            name: "db/b[2]".into(),
            what,
        };
        says(
            exists(Existing::Node),
            "the service already has a node `db/b[2]`",
        );
        says(
            exists(Existing::Renamed),
            "`db/b[2]` is in the service already",
        );
        says(
            exists(Existing::Added),
            "`db/b[2]` is already in the service",
        );
        let rename = |problem| InstanceError::BadRename {
            from: "a/c[x]".into(),
            to: "b/c[y]".into(),
            problem,
        };
        says(
            rename(RenameProblem::OtherNode),
            "`a/c[x]` and `b/c[y]` are on different nodes: mv renames, it does not move a component to another node",
        );
        says(
            rename(RenameProblem::OtherComponent),
            "`b/c[y]` is another component than `a/c[x]`: mv renames a component's instance (`cmp[a]` → `cmp[b]`), it does not change what it is",
        );
        says(
            rename(RenameProblem::Same),
            "`a/c[x]` and `b/c[y]` are the same",
        );
        says(
            rename(RenameProblem::NothingNamed),
            "`a/c[x]` names nothing to rename",
        );
        says(
            rename(RenameProblem::ChangesComponents),
            "the rename changes the service's components, not only their names",
        );
    }

    #[test]
    fn the_instance_repository_and_its_modules_read_as_before() {
        let damaged = |d| InstanceError::Damaged(Box::new(d));
        says(
            damaged(Damage::NoServiceFile {
                service: "app".into(),
            }),
            "the instance repository of `app` has no dtk.service.yaml",
        );
        says(
            damaged(Damage::MergeHasNoServiceFile),
            "the merge has no dtk.service.yaml",
        );
        says(
            damaged(Damage::NoModuleFile {
                module: m("demo/web"),
                merged: false,
            }),
            "the instance copy of demo/web has no dtk.module.yaml",
        );
        says(
            damaged(Damage::NoModuleFile {
                module: m("demo/web"),
                merged: true,
            }),
            "the merged copy of demo/web has no dtk.module.yaml",
        );
        says(
            damaged(Damage::NoModuleCopy {
                module: m("demo/web"),
                service: Some("app".into()),
            }),
            "`app` has no copy of demo/web",
        );
        says(
            damaged(Damage::NoModuleCopy {
                module: m("demo/web"),
                service: None,
            }),
            "the instance repository has no copy of demo/web",
        );
        says(
            damaged(Damage::NoAssembly),
            "the service does not record its assembly",
        );
        says(
            damaged(Damage::PendingPull { why: "bad".into() }),
            "the pending pull-base is damaged: bad",
        );
        says(
            damaged(Damage::ActualState {
                path: "/h/app/.dtk/actual.json".into(),
                problem: None,
                commit: "abc".into(),
            }),
            "/h/app/.dtk/actual.json is missing and the last state commit abc (refs/dtk/state) has no actual.json",
        );
        let pin = |found| {
            InstanceError::PinMismatch(Box::new(PinMismatch {
                doc: "/h/app/dtk.service.yaml".into(),
                copy: "/h/app/modules/demo/web/dtk.module.yaml".into(),
                module: m("demo/web"),
                pinned: v("1.0.0"),
                found,
            }))
        };
        says(
            pin(CopyFound::Missing),
            "/h/app/dtk.service.yaml pins module `demo/web` 1.0.0, but the instance has no copy of it (/h/app/modules/demo/web/dtk.module.yaml is missing)",
        );
        says(
            pin(CopyFound::OtherModule(m("demo/db"))),
            "/h/app/modules/demo/web/dtk.module.yaml declares module `demo/db`, but it is the instance copy of `demo/web`",
        );
        says(
            pin(CopyFound::OtherVersion(v("2.0.0"))),
            "/h/app/dtk.service.yaml pins module `demo/web` 1.0.0, but its instance copy /h/app/modules/demo/web/dtk.module.yaml is version 2.0.0 (move to another version with `dtk service pull-base`)",
        );
        says(
            InstanceError::VersionConflict(Box::new(VersionConflict::Target {
                module: m("t/nodes"),
                pinned: v("1.0.0"),
                target: "aws1".into(),
                realized: v("1.1.0"),
            })),
            "the service pins t/nodes@1.0.0 but target `aws1` realizes nodes with t/nodes@1.1.0",
        );
        says(
            InstanceError::VersionConflict(Box::new(VersionConflict::Requirement {
                module: m("demo/web"),
                version: v("2.0.0"),
                dependency: m("demo/db"),
                req: "^2.0".parse().expect("a requirement"),
                pinned: v("1.0.0"),
            })),
            "demo/web@2.0.0 requires demo/db ^2.0, but the instance pins 1.0.0; pull-base demo/db first",
        );
        let assembly = |staged, known| {
            InstanceError::NoSuchAssembly(Box::new(NoSuchAssembly {
                module: m("demo/web"),
                version: v("1.0.0"),
                assembly: "three".into(),
                staged,
                known,
            }))
        };
        says(
            assembly(Some("app".into()), vec!["two".into()]),
            "demo/web@1.0.0 has no assembly `three` (the one `app` was staged from)",
        );
        says(
            assembly(None, vec![]),
            "module demo/web@1.0.0 has no assembly `three` (it has no assemblies)",
        );
        says(
            assembly(None, vec!["one".into(), "two".into()]),
            "module demo/web@1.0.0 has no assembly `three`; it has: one, two",
        );
        says(
            InstanceError::NoSuchResource(Box::new(NoSuchResource {
                component: "net/vpc".into(),
                module: "aws/network".into(),
                action: "create".into(),
                kind: "aws".into(),
                resource: "vpcc".into(),
                known: vec!["vpc".into(), "subnet".into()],
            })),
            "`net/vpc` (aws/network) has action `create` done by `aws.vpcc`, but provider `aws` has no resource `vpcc` (it has: vpc, subnet)",
        );
    }

    #[test]
    fn imports_read_as_before() {
        let import = |e| InstanceError::Import(Box::new(e));
        says(
            import(ImportError::EmptyId),
            "the resource id to import is empty",
        );
        says(
            import(ImportError::NotDesired {
                reference: "x".into(),
                service: Some("app".into()),
            }),
            "`x` is not in the desired state of `app`",
        );
        says(
            import(ImportError::Ambiguous {
                reference: "web".into(),
                ids: vec!["a/web".into(), "b/web".into()],
            }),
            "`web` names 2 components (a/web, b/web); name one",
        );
        says(
            import(ImportError::NotAResource {
                component: "a/web".into(),
            }),
            "`a/web` is made by commands, not by a provider resource: there is nothing to import",
        );
        says(
            import(ImportError::AlreadyDeployed {
                component: "vpc".into(),
                imported_from: Some("vpc-1".into()),
            }),
            "`vpc` is already deployed (it was imported from `vpc-1`); delete it first or import into another component",
        );
        says(
            import(ImportError::AlreadyDeployed {
                component: "vpc".into(),
                imported_from: None,
            }),
            "`vpc` is already deployed (dtk made it); delete it first or import into another component",
        );
        says(
            import(ImportError::NoProvider {
                kind: "aws".into(),
                resource: "vpc".into(),
                component: "vpc".into(),
            }),
            "no provider of kind `aws` is registered (`vpc` is a `aws.vpc`)",
        );
        let why = dtk_workflow::ResolveError::ProducerNotApplied {
            component: dtk_model::ComponentId("subnet".into()),
            input: "vpc_id".into(),
            producer: dtk_model::ComponentId("vpc".into()),
        };
        says(
            import(ImportError::Inputs {
                component: "subnet".into(),
                why: why.clone(),
                hint: true,
            }),
            &format!("{why}: converge or import what `subnet` depends on first"),
        );
        says(
            import(ImportError::Inputs {
                component: "subnet".into(),
                why: why.clone(),
                hint: false,
            }),
            &why.to_string(),
        );
        says(
            import(ImportError::Unsupported {
                id: "i-1".into(),
                component: "vpc".into(),
                detail: "no".into(),
            }),
            "cannot import `i-1` into `vpc`: no",
        );
        says(
            import(ImportError::Failed {
                id: "i-1".into(),
                component: "vpc".into(),
                detail: "boom".into(),
            }),
            "import of `i-1` into `vpc` failed: boom",
        );
        says(
            import(ImportError::Missing {
                kind: "aws".into(),
                resource: "vpc".into(),
                id: "vpc-9".into(),
                component: "vpc".into(),
            }),
            "`aws` has no `vpc` `vpc-9` to import into `vpc`",
        );
        says(
            import(ImportError::Unknown {
                kind: "aws".into(),
                id: "vpc-9".into(),
            }),
            "`aws` cannot tell whether `vpc-9` exists; nothing imported",
        );
    }

    #[test]
    fn files_plans_and_limits_read_as_before() {
        let limits = |problem| InstanceError::BadLimits {
            file: "/h/app/limits.yaml".into(),
            problem,
        };
        says(
            limits(LimitsProblem::NotUtf8),
            "/h/app/limits.yaml is not UTF-8 text",
        );
        says(
            limits(LimitsProblem::NotMapping { found: "a list" }),
            "/h/app/limits.yaml must be a mapping of provider kinds to numbers (`aws: 4`), not a list",
        );
        says(
            limits(LimitsProblem::NotPositive {
                kind: "aws".into(),
                value: "0".into(),
            }),
            "/h/app/limits.yaml: `aws` must be a whole number above 0, not `0`",
        );
        says(
            InstanceError::NotAPlan {
                what: "plan.json".into(),
                problem: PlanProblem::Unreadable("it has no `schema`".into()),
            },
            "plan.json is not a plan written by `dtk service plan --out`: it has no `schema`",
        );
        says(
            InstanceError::NotAPlan {
                what: "plan.json".into(),
                problem: PlanProblem::Schema {
                    found: "dtk.error/v1".into(),
                    expected: "dtk.service.plan/v1",
                },
            },
            "plan.json is a `dtk.error/v1` document, not a plan (`dtk.service.plan/v1`)",
        );
        says(
            InstanceError::BadPath {
                path: "../x".into(),
                problem: dtk_model::content::PathError::Parent("../x".into()),
            },
            "`../x`: `../x` goes up with `..`",
        );
        says(
            InstanceError::NoSuchPath {
                path: "nope".into(),
            },
            "the desired state has no file or directory `nope` (module files are under modules/NS/NAME/)",
        );
        says(
            InstanceError::Symlink {
                path: "/h/app/x".into(),
            },
            "/h/app/x is a symbolic link; the instance repository holds plain files only (put the file itself there)",
        );
        says(
            InstanceError::DefaultNotATarget { name: "app".into() },
            "`app` is not a target instance (stage a target assembly with `--base`)",
        );
        says(
            InstanceError::NoSuchWorkflow {
                target: "deploy".into(),
                service: "app".into(),
                workflows: vec!["restart".into(), "backup".into()],
            },
            "`deploy` is neither a workflow of `app` (it has: restart, backup) nor `[NODE/]CMP.ACTION`",
        );
        says(
            InstanceError::ModuleNotResolved {
                module: m("demo/web"),
            },
            "module demo/web did not resolve",
        );
        says(
            InstanceError::UndefinedNodeComponent {
                component: "nodes::node".into(),
            },
            "the target's node component `nodes::node` is not defined by its modules",
        );
    }
}
