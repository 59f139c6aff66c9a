//! The `credentials` resource and the store of the keys it is given.
//!
//! Keys are kept one file per handle in a directory only the owner may enter (0700), each
//! file readable and writable by its owner alone (0600), written to a temporary file and
//! renamed into place so that a reader never sees half a file. The file name is the
//! handle with every character but `A-Za-z0-9._-` written `%XX`, so no handle can name a
//! path outside the directory.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dtk_model::provider::Observed;
use dtk_model::{Attributes, ProviderError, Value};
use serde::{Deserialize, Serialize};

use super::{AwsProvider, Call, outputs};
use crate::settings::StaticCredentials;

/// Where [`super::AwsProvider`] keeps the keys of `credentials` components, by handle.
#[derive(Clone, Debug)]
pub struct CredentialStore {
    dir: PathBuf,
}

/// The error of a credential store operation. It names the handle and the file, never a
/// key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialStoreError {
    /// No keys are stored under the handle.
    #[error(
        "no AWS keys are stored under credentials handle `{handle}` (converge the target's credentials component; a deleted target's keys are gone)"
    )]
    Unknown {
        /// The handle.
        handle: String,
    },
    /// The file could not be read, written or removed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not what this store writes.
    #[error("{path} is not a stored credential of this provider (remove it and converge again)")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// The file's content. Never printed: its `Debug` shows the handle only.
#[derive(Serialize, Deserialize)]
struct Stored {
    handle: String,
    aws_access_key_id: String,
    aws_secret_access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aws_session_token: Option<String>,
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CredentialStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> CredentialStore {
        CredentialStore { dir: dir.into() }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the keys of `handle`.
    pub fn path(&self, handle: &str) -> PathBuf {
        let mut name = String::with_capacity(handle.len() + 5);
        for b in handle.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        // `.` and `..` alone would name directories.
        if name.chars().all(|c| c == '.') {
            name = name.replace('.', "%2E");
        }
        name.push_str(".json");
        self.dir.join(name)
    }

    /// Whether keys are stored under `handle`.
    pub fn contains(&self, handle: &str) -> bool {
        self.path(handle).is_file()
    }

    /// Stores `credentials` under `handle`, replacing what was there.
    pub fn save(
        &self,
        handle: &str,
        credentials: &StaticCredentials,
    ) -> Result<(), CredentialStoreError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| CredentialStoreError::Io { what, path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io("create", &self.dir))?;
        let stored = Stored {
            handle: handle.to_owned(),
            aws_access_key_id: credentials.access_key_id().to_owned(),
            aws_secret_access_key: credentials.secret_access_key().to_owned(),
            aws_session_token: credentials.session_token().map(str::to_owned),
        };
        let text =
            serde_json::to_vec_pretty(&stored).map_err(|_| CredentialStoreError::Malformed {
                path: self.path(handle),
            })?;
        let path = self.path(handle);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(&text).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io("write", &path))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// The keys stored under `handle`.
    pub fn load(&self, handle: &str) -> Result<StaticCredentials, CredentialStoreError> {
        let path = self.path(handle);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CredentialStoreError::Unknown {
                    handle: handle.to_owned(),
                });
            }
            Err(source) => {
                return Err(CredentialStoreError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        };
        // The parser's message could quote the file: it is not passed on.
        let stored: Stored = serde_json::from_slice(&text)
            .map_err(|_| CredentialStoreError::Malformed { path: path.clone() })?;
        if stored.handle != handle {
            return Err(CredentialStoreError::Malformed { path });
        }
        let mut c = StaticCredentials::new(stored.aws_access_key_id, stored.aws_secret_access_key);
        if let Some(t) = stored.aws_session_token {
            c = c.with_session_token(t);
        }
        Ok(c)
    }

    /// Removes the keys of `handle`; whether there were any.
    pub fn remove(&self, handle: &str) -> Result<bool, CredentialStoreError> {
        let path = self.path(handle);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CredentialStoreError::Io {
                what: "remove",
                path,
                source,
            }),
        }
    }
}

/// The handle of a `credentials` component: `SERVICE/COMPONENT`.
pub(crate) fn handle_of(call: &Call<'_, '_>) -> String {
    format!("{}/{}", call.req.service, call.req.component)
}

fn secret(call: &Call<'_, '_>, name: &str) -> Result<Option<String>, ProviderError> {
    match call.req.secrets.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.trim().to_owned())),
        // Never the value, only its kind.
        Some(v) => Err(call.invalid(format!(
            "the secret attribute `{name}` must be a string, not {}",
            v.kind_name()
        ))),
    }
}

fn required_secret(call: &Call<'_, '_>, name: &str) -> Result<String, ProviderError> {
    secret(call, name)?.ok_or_else(|| {
        call.invalid(format!(
            "the secret attribute `{name}` is not set (dtk service set-attribute {} {}/{name} VALUE)",
            call.req.service, call.req.component
        ))
    })
}

/// The keys of the request's secrets.
fn requested(call: &Call<'_, '_>) -> Result<StaticCredentials, ProviderError> {
    let key_id = required_secret(call, "aws_access_key_id")?;
    let secret_key = required_secret(call, "aws_secret_access_key")?;
    let mut creds = StaticCredentials::new(key_id, secret_key);
    if let Some(token) = secret(call, "aws_session_token")? {
        creds = creds.with_session_token(token);
    }
    Ok(creds)
}

pub(crate) fn create(p: &AwsProvider, call: &Call<'_, '_>) -> Result<Attributes, ProviderError> {
    let creds = requested(call)?;
    let handle = handle_of(call);
    p.store
        .save(&handle, &creds)
        .map_err(|e| ProviderError::failed(call.operation(), e.to_string()))?;
    p.forget_clients(&handle);
    tracing::info!(handle, "stored AWS credentials");
    Ok(outputs([("credentials_handle", Value::Str(handle))]))
}

/// `Missing` when no keys are stored under the component's handle, and also when the
/// request carries keys (the secret store's current values) other than the stored ones:
/// the keys were rotated since the last converge, which then stores the new ones. (The
/// planner's desired hash covers the *names* of secret inputs, not their values, so this
/// read is what notices a rotation.) Keys are compared, never shown.
pub(crate) fn read(p: &AwsProvider, call: &Call<'_, '_>) -> Result<Observed, ProviderError> {
    let handle = handle_of(call);
    if !p.store.contains(&handle) {
        return Ok(Observed::Missing);
    }
    let has_keys = ["aws_access_key_id", "aws_secret_access_key"]
        .iter()
        .all(|n| call.req.secrets.get(n).is_some());
    if has_keys {
        let stored = p
            .store
            .load(&handle)
            .map_err(|e| ProviderError::failed(call.operation(), e.to_string()))?;
        // Keys of the wrong type are create's to refuse; here they count as other keys.
        if requested(call).ok().as_ref() != Some(&stored) {
            tracing::info!(handle, "the stored AWS keys differ from the secret store's");
            return Ok(Observed::Missing);
        }
    }
    Ok(Observed::Present(outputs([(
        "credentials_handle",
        Value::Str(handle),
    )])))
}

pub(crate) fn delete(p: &AwsProvider, call: &Call<'_, '_>) -> Result<(), ProviderError> {
    let handle = handle_of(call);
    p.store
        .remove(&handle)
        .map_err(|e| ProviderError::failed(call.operation(), e.to_string()))?;
    p.forget_clients(&handle);
    Ok(())
}
