//! The errors of the catalog: what failed, on which module, version and path.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use dtk_model::{DslError, ModuleId, ModuleVersion, VersionReq};
use thiserror::Error;

/// The error returned by [`Catalog`](crate::Catalog) operations and by
/// [`validate_dir`](crate::validate_dir).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The catalog directory could not be created or opened.
    #[error("could not open the module catalog at {root}")]
    Open {
        /// The catalog's directory.
        root: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The catalog path exists but is not a git repository made by dtk.
    #[error("{root} exists but is not a module catalog (a bare git repository)")]
    NotACatalog {
        /// The catalog's directory.
        root: PathBuf,
    },

    /// The module directory does not exist or is not a directory.
    #[error("{dir} is not a directory")]
    NotADirectory {
        /// The directory given.
        dir: PathBuf,
    },

    /// The module directory has no `dtk.module.yaml`.
    #[error("{dir} holds no dtk.module.yaml, so it is not a module")]
    MissingManifest {
        /// The directory given.
        dir: PathBuf,
    },

    /// `dtk.module.yaml` is excluded by the module's own `.gitignore`.
    #[error("{path} is ignored by a .gitignore of the module, but a module must contain it")]
    ManifestIgnored {
        /// The manifest's path.
        path: PathBuf,
    },

    /// A file of the module directory could not be read.
    #[error("could not read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },

    /// Walking the module directory failed.
    #[error("could not list the files of {dir}")]
    Walk {
        /// The module directory.
        dir: PathBuf,
        /// What went wrong.
        #[source]
        source: ignore::Error,
    },

    /// `dtk.module.yaml` does not parse or validate. Nothing was written.
    #[error("{path} is not a valid module")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// Every located problem.
        #[source]
        source: DslError,
    },

    /// The module directory contains a symbolic link, which a module may not contain (it
    /// could point outside the module, and instance copies must be self-contained).
    #[error("{path} is a symbolic link; a module may not contain symbolic links")]
    Symlink {
        /// The link.
        path: PathBuf,
    },

    /// The module directory contains something other than files and directories (a socket,
    /// a FIFO, a device).
    #[error("{path} is neither a file nor a directory")]
    UnsupportedFile {
        /// The offending entry.
        path: PathBuf,
    },

    /// A path in the module directory is not valid UTF-8 or would leave the directory.
    #[error("{path} cannot be stored in a module: {reason}")]
    BadPath {
        /// The offending path.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The module id or version cannot be written as a git reference name.
    #[error("module {module} version {version} cannot be stored as the git reference `{name}`")]
    BadRefName {
        /// The module.
        module: ModuleId,
        /// The version.
        version: ModuleVersion,
        /// The reference name that git refuses.
        name: String,
    },

    /// A released version is already published with other content. Released versions are
    /// immutable: publish the change under a new version.
    #[error(
        "module {} version {} is already published as commit {} with other content (this \
         content would be commit {}); released versions never change, so publish it under a \
         new version",
        .0.module, .0.version, .0.existing, .0.refused
    )]
    VersionExists(Box<VersionExists>),

    /// The remote already holds a released version with other content: another machine
    /// published it first. Released versions are immutable there too.
    #[error(
        "module {} version {} is already published on the remote {} by {} as commit {} with \
         other content; released versions never change, so publish it under a new version",
        .0.module, .0.version, .0.remote, .0.author, .0.commit
    )]
    RemoteVersionExists(Box<RemoteVersionExists>),

    /// The team's remote could not be used.
    #[error(transparent)]
    Remote(#[from] RemoteError),

    /// No version of the module is published.
    #[error("module {module} is not in the catalog")]
    ModuleNotFound {
        /// The module.
        module: ModuleId,
    },

    /// The module is published, but not at this version.
    #[error(
        "module {module} has no version {version} (published: {})",
        list_versions(available)
    )]
    VersionNotFound {
        /// The module.
        module: ModuleId,
        /// The version asked for.
        version: ModuleVersion,
        /// The versions that are published, ascending.
        available: Vec<ModuleVersion>,
    },

    /// The module version has no file at this path.
    #[error("module {module} version {version} has no file {path}")]
    FileNotFound {
        /// The module.
        module: ModuleId,
        /// The version.
        version: ModuleVersion,
        /// The path asked for.
        path: String,
    },

    /// The `dtk.module.yaml` stored for a version no longer validates (written by another
    /// dtk, or edited by hand in the catalog).
    #[error("the stored dtk.module.yaml of module {module} version {version} is not valid")]
    StoredInvalid {
        /// The module.
        module: ModuleId,
        /// The version.
        version: ModuleVersion,
        /// Every located problem.
        #[source]
        source: DslError,
    },

    /// The catalog's git data is not what dtk wrote (a tag that is not a commit, a stored
    /// manifest for another module, ...).
    #[error("the catalog entry of module {module} version {version} is damaged: {what}")]
    Damaged {
        /// The module.
        module: ModuleId,
        /// The version.
        version: ModuleVersion,
        /// What is wrong.
        what: String,
    },

    /// A git operation on the catalog failed.
    #[error("could not {action}")]
    Git {
        /// What was being done, naming the module and version.
        action: String,
        /// What went wrong.
        #[source]
        source: gix::Error,
    },

    /// The catalog's lock or publish journal could not be used.
    #[error("could not {action} {path}")]
    Lock {
        /// What was being done (`lock`, `write the publish journal`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },

    /// The publish journal left by an interrupted publish cannot be read.
    #[error("the publish journal {path} is damaged: {what}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl CatalogError {
    /// The DSL diagnostics carried by this error, if it is about an invalid
    /// `dtk.module.yaml`.
    pub fn dsl_error(&self) -> Option<&DslError> {
        match self {
            CatalogError::Invalid { source, .. } | CatalogError::StoredInvalid { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }

    /// Whether the error is a refused request (bad input, a missing module, an immutable
    /// version) rather than a failure of the machine (IO, a damaged catalog).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            CatalogError::Open { .. }
                | CatalogError::ReadFile { .. }
                | CatalogError::Walk { .. }
                | CatalogError::Git { .. }
                | CatalogError::Lock { .. }
                | CatalogError::Journal { .. }
                | CatalogError::Damaged { .. }
                | CatalogError::StoredInvalid { .. }
        )
    }
}

/// The details of [`CatalogError::VersionExists`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionExists {
    /// The module.
    pub module: ModuleId,
    /// The version.
    pub version: ModuleVersion,
    /// The commit the version is published as (hex).
    pub existing: String,
    /// The commit the refused content was written as, an unreferenced object (hex):
    /// `git diff EXISTING REFUSED` in the catalog shows the difference.
    pub refused: String,
}

/// Who required a version of a module during resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The module version that declares the dependency; `None` for the request itself
    /// (the root requirement given to [`Catalog::resolve`](crate::Catalog::resolve)).
    pub by: Option<(ModuleId, ModuleVersion)>,
    /// The requirement.
    pub req: VersionReq,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.by {
            Some((m, v)) => write!(f, "{m}@{v} requires {}", self.req),
            None => write!(f, "the request asks for {}", self.req),
        }
    }
}

/// The error returned by [`Catalog::resolve`](crate::Catalog::resolve).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// A required module is not in the catalog.
    #[error(
        "module {module} is not in the catalog ({})",
        requirement_text(required_by)
    )]
    ModuleNotFound {
        /// The module.
        module: ModuleId,
        /// Who required it.
        required_by: Box<Requirement>,
    },

    /// No published version of a module matches a requirement.
    #[error(
        "no published version of module {module} matches {} ({}; published: {})",
        required_by.req,
        requirement_text(required_by),
        list_versions(available)
    )]
    NoMatchingVersion {
        /// The module.
        module: ModuleId,
        /// The requirement no version matches.
        required_by: Box<Requirement>,
        /// The versions that are published, ascending.
        available: Vec<ModuleVersion>,
    },

    /// Each requirement on a module is matched by some published version, but no version
    /// matches all of them.
    #[error(
        "the requirements on module {module} cannot all be met: {}; published: {}",
        list_requirements(requirements),
        list_versions(available)
    )]
    Conflict {
        /// The module.
        module: ModuleId,
        /// Every requirement on it, in the order they were found.
        requirements: Vec<Requirement>,
        /// The versions that are published, ascending.
        available: Vec<ModuleVersion>,
    },

    /// Selecting versions kept changing: the choice of one module's version changes the
    /// requirements on another and back. Resolution does not backtrack; pin the versions
    /// of these modules in the requesting module.
    #[error(
        "the versions of {} do not settle: each choice changes the requirements of another; \
         pin their versions explicitly",
        modules.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Unsettled {
        /// The modules whose versions kept changing.
        modules: Vec<ModuleId>,
    },

    /// Reading the catalog failed while resolving.
    #[error("could not read module {module} from the catalog while resolving")]
    Catalog {
        /// The module being read.
        module: ModuleId,
        /// What went wrong.
        #[source]
        source: Box<CatalogError>,
    },
}

fn requirement_text(r: &Requirement) -> String {
    match &r.by {
        Some((m, v)) => format!("required by {m}@{v}"),
        None => "requested".to_owned(),
    }
}

fn list_requirements(rs: &[Requirement]) -> String {
    rs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn list_versions(vs: &[ModuleVersion]) -> String {
    if vs.is_empty() {
        return "none".to_owned();
    }
    vs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error returned when a remote cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The URL cannot be a remote (empty, an option, several lines).
    #[error("`{url}` is not a git URL dtk can use as a remote: {why}")]
    BadUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The remote could not be reached, or refused the connection (network, DNS,
    /// authentication, a repository that does not exist).
    #[error("cannot reach the remote {remote} ({op}): {message}")]
    Unreachable {
        /// The remote's URL (credentials removed).
        remote: String,
        /// What was being done: `fetch`, `push`, `list references`.
        op: &'static str,
        /// What git said (its first lines, credentials removed).
        message: String,
    },
    /// `git` failed in another way.
    #[error("git {op} with the remote {remote} failed: {message}")]
    Git {
        /// The remote's URL (credentials removed).
        remote: String,
        /// What was being done.
        op: &'static str,
        /// What git said.
        message: String,
    },
    /// `git` took too long and was stopped.
    #[error("git {op} with the remote {remote} did not finish within {} s", limit.as_secs())]
    Timeout {
        /// The remote's URL (credentials removed).
        remote: String,
        /// What was being done.
        op: &'static str,
        /// The time limit.
        limit: Duration,
    },
    /// The `git` program could not be run.
    #[error(
        "cannot run `git` in {} (dtk fetches and pushes with the system git: install it)",
        dir.display()
    )]
    Spawn {
        /// The repository it was run in.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The details of [`CatalogError::RemoteVersionExists`]: the version as the remote holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVersionExists {
    /// The module.
    pub module: ModuleId,
    /// The version.
    pub version: ModuleVersion,
    /// The remote (credentials removed).
    pub remote: String,
    /// The commit the remote holds for the version (hex).
    pub commit: String,
    /// Who published it (the commit's author).
    pub author: String,
    /// When (the commit's time, seconds since the Unix epoch).
    pub time: i64,
}
