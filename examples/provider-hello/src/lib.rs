//! A minimal third-party target provider for dtk: kind `hello`, one resource type, `file`.
//!
//! A component whose actions say `provider: hello.file` is realized by [`HelloProvider`]:
//! converge asks it to write the file `DIRECTORY/FILE_NAME` holding `Hello, NAME!`, and
//! delete asks it to remove that file. The bundled module [`MODULE`] (`demo/hello`, in
//! `module/dtk.module.yaml` beside this crate) declares such a component, `greeting`, and an
//! assembly of the same name.
//!
//! The crate depends on `dtk-model` alone (and `async-trait`, which the trait uses): that
//! is all a provider needs. A program embedding dtk registers it next to the built-in ones,
//! which publishes its module ([`Provider::modules`]) too:
//!
//! ```text
//! let mut home = dtk_instance::home::Home::open(dir)?;
//! home.register_provider(Arc::new(provider_hello::HelloProvider::new()))?;
//! // stage demo/hello `greeting`, set greeting/directory, converge
//! ```
//!
//! `tests/hello.rs` does exactly that, through a create, a no-op converge, edits, drift and a
//! delete; `docs/providers.md` walks through this file.
//!
//! # How it keeps the provider contract
//!
//! - **Idempotent**: `create` writes the whole file through a temporary file and a rename,
//!   so calling it again (a retry, a resumed run) gives the same file; `delete` of a file
//!   that is already gone succeeds.
//! - **Outputs**: `create` always returns both outputs (`path`, `greeting`), also when the
//!   file was already there.
//! - **Updates**: an edit of the inputs runs `update`, which the trait defaults to
//!   `create`; `create` then uses [`ResourceRequest::prior`] (the outputs recorded by the
//!   last run) to remove a file the edit moved away from.
//! - **Drift**: `read` reports [`Observed::Missing`] when the file is gone or was changed
//!   outside dtk, so the next converge writes it again.
//! - **Errors** say what failed and where (the operation, the component and the path), and
//!   bad inputs are [`ProviderError::InvalidInput`].

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use dtk_model::provider::{Observed, ResourceRequest};
use dtk_model::{Attributes, BundledModule, Provider, ProviderError, Value};

/// The provider kind: the `KIND` of `provider: KIND.RESOURCE`.
pub const KIND: &str = "hello";

/// The one resource type this provider handles.
pub const RESOURCE: &str = "file";

/// The text of the bundled `demo/hello` module, whose `greeting` component this provider
/// realizes.
pub const MODULE: &str = include_str!("../module/dtk.module.yaml");

/// The file name [`MODULE`] is reported under in diagnostics.
pub const MODULE_FILE: &str = "demo/hello/dtk.module.yaml";

/// The `hello` provider: writes greeting files. It keeps no state of its own (everything
/// it needs is in the request), so it is a unit struct.
#[derive(Debug, Clone, Copy, Default)]
pub struct HelloProvider;

impl HelloProvider {
    /// A provider; register it with `Home::register_provider`.
    pub fn new() -> Self {
        HelloProvider
    }
}

/// What a request's inputs ask for: the file and its text.
struct Spec {
    path: PathBuf,
    text: String,
}

impl Spec {
    /// Reads the inputs of `req`. `directory` is required; `name` and `file_name` have
    /// defaults in the module, and here too, for modules that leave them out.
    fn of(req: &ResourceRequest<'_>) -> Result<Spec, ProviderError> {
        let input = |name: &str| {
            req.inputs
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let invalid = |message: String| ProviderError::InvalidInput {
            resource: format!("{KIND}.{RESOURCE} of {}", req.component),
            message,
        };
        let Some(directory) = input("directory") else {
            return Err(invalid("`directory` is not set".to_owned()));
        };
        let file_name = input("file_name").unwrap_or("hello.txt");
        if file_name.contains('/') || file_name == "." || file_name == ".." {
            return Err(invalid(format!(
                "`file_name` must be a plain file name, not `{file_name}`"
            )));
        }
        let name = input("name").unwrap_or("world");
        Ok(Spec {
            path: Path::new(directory).join(file_name),
            text: format!("Hello, {name}!\n"),
        })
    }

    /// The outputs of the resource: the dynamic attributes of the module's component.
    fn outputs(&self) -> Attributes {
        let mut out = Attributes::new();
        out.insert(
            "path".to_owned(),
            Value::Str(self.path.display().to_string()),
        );
        out.insert(
            "greeting".to_owned(),
            Value::Str(self.text.trim_end().to_owned()),
        );
        out
    }
}

/// Refuses resource types other than `file`, and requests that were cancelled.
fn check(req: &ResourceRequest<'_>, operation: &str) -> Result<(), ProviderError> {
    if req.resource != RESOURCE {
        return Err(ProviderError::Unsupported {
            provider: KIND.to_owned(),
            what: format!("resource type `{}`", req.resource),
        });
    }
    if req.cancel.is_cancelled() {
        return Err(ProviderError::Cancelled {
            operation: op(operation, req),
        });
    }
    Ok(())
}

/// Names an operation for errors: `create hello.file for greeting`.
fn op(operation: &str, req: &ResourceRequest<'_>) -> String {
    format!("{operation} {KIND}.{RESOURCE} for {}", req.component)
}

/// Writes `text` to `path` whole: a reader (or a crash) sees the old file or the new one.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".dtk-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Removes `path`; a file that is already gone is not an error.
fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The file recorded by the last successful run, if any.
fn prior_path(req: &ResourceRequest<'_>) -> Option<PathBuf> {
    req.prior
        .and_then(|p| p.get("path"))
        .and_then(Value::as_str)
        .map(PathBuf::from)
}

// The files are a few bytes: plain blocking IO is fine here. A provider doing real work
// (network calls, long waits) uses async IO, or `tokio::task::spawn_blocking`.
#[async_trait]
impl Provider for HelloProvider {
    fn kind(&self) -> &str {
        KIND
    }

    fn resources(&self) -> Vec<String> {
        vec![RESOURCE.to_owned()]
    }

    fn modules(&self) -> Vec<BundledModule> {
        vec![BundledModule::new(MODULE_FILE, MODULE)]
    }

    async fn create(&self, req: &ResourceRequest<'_>) -> Result<Attributes, ProviderError> {
        check(req, "create")?;
        let spec = Spec::of(req)?;
        write_atomic(&spec.path, &spec.text).map_err(|e| {
            ProviderError::failed(
                op("create", req),
                format!("cannot write {}: {e}", spec.path.display()),
            )
        })?;
        // An edit of `directory` or `file_name` moved the file: remove the old one.
        if let Some(old) = prior_path(req).filter(|old| *old != spec.path) {
            remove(&old).map_err(|e| {
                ProviderError::failed(
                    op("update", req),
                    format!("cannot remove the previous file {}: {e}", old.display()),
                )
            })?;
        }
        Ok(spec.outputs())
    }

    async fn read(&self, req: &ResourceRequest<'_>) -> Result<Observed, ProviderError> {
        check(req, "read")?;
        let spec = Spec::of(req)?;
        match std::fs::read_to_string(&spec.path) {
            Ok(text) if text == spec.text => Ok(Observed::Present(spec.outputs())),
            // Changed outside dtk: converge writes it again, as for a missing file.
            Ok(_) => Ok(Observed::Missing),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Observed::Missing),
            Err(e) => Err(ProviderError::failed(
                op("read", req),
                format!("cannot read {}: {e}", spec.path.display()),
            )),
        }
    }

    async fn delete(&self, req: &ResourceRequest<'_>) -> Result<(), ProviderError> {
        check(req, "delete")?;
        // The file the last run wrote; the inputs say the same unless the record is lost.
        let path = match prior_path(req) {
            Some(p) => p,
            None => Spec::of(req)?.path,
        };
        remove(&path).map_err(|e| {
            ProviderError::failed(
                op("delete", req),
                format!("cannot remove {}: {e}", path.display()),
            )
        })
    }
}
