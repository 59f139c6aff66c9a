//! The errors of the instance layer.

use std::path::PathBuf;

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
    /// The request does not make sense for this service (an unknown attribute path,
    /// an unknown assembly, a target that has not converged, ...).
    #[error("{message}")]
    Refused {
        /// What is wrong, and how to fix it.
        message: String,
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
}

impl InstanceError {
    /// A refusal with a message.
    pub fn refused(message: impl Into<String>) -> Self {
        InstanceError::Refused {
            message: message.into(),
        }
    }
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
