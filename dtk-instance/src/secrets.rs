//! The secret store: values of `secret: true` attributes, kept outside every git
//! repository in `DTK_HOME/secrets/SERVICE.json`, readable by its owner alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dtk_model::{ComponentId, Value};

use crate::error::InstanceError;
use crate::repo::io_err;

/// The secrets of one service: component id → attribute → value.
#[derive(Clone, Default, PartialEq)]
pub struct SecretStore {
    path: PathBuf,
    values: BTreeMap<String, BTreeMap<String, Value>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .values
            .iter()
            .flat_map(|(c, m)| m.keys().map(move |k| format!("{c}/{k}")))
            .collect();
        f.debug_struct("SecretStore")
            .field("path", &self.path)
            .field("names", &names)
            .finish()
    }
}

impl SecretStore {
    /// Loads the store at `path` (empty if the file does not exist).
    pub fn load(path: &Path) -> Result<SecretStore, InstanceError> {
        let values = match fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| InstanceError::Io {
                path: path.to_path_buf(),
                op: "parse",
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err(path, "read")(e)),
        };
        Ok(SecretStore {
            path: path.to_path_buf(),
            values,
        })
    }

    /// The secrets of a component.
    pub fn component(&self, id: &ComponentId) -> BTreeMap<String, Value> {
        self.values.get(id.as_str()).cloned().unwrap_or_default()
    }

    /// Whether a secret is set.
    pub fn is_set(&self, id: &ComponentId, attr: &str) -> bool {
        self.values
            .get(id.as_str())
            .is_some_and(|m| m.contains_key(attr))
    }

    /// Every secret value, for scrubbing them out of logs and outputs.
    pub fn all_values(&self) -> Vec<String> {
        self.values
            .values()
            .flat_map(|m| m.values().map(Value::to_shell_text))
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Sets a secret and writes the store (mode 0600, atomically).
    pub fn set(&mut self, id: &ComponentId, attr: &str, value: Value) -> Result<(), InstanceError> {
        self.values
            .entry(id.as_str().to_owned())
            .or_default()
            .insert(attr.to_owned(), value);
        self.save()
    }

    fn save(&self) -> Result<(), InstanceError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
        let data = serde_json::to_vec_pretty(&self.values).map_err(|e| InstanceError::Io {
            path: self.path.clone(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err(&tmp, "create"))?;
            f.write_all(&data).map_err(io_err(&tmp, "write"))?;
            f.sync_all().map_err(io_err(&tmp, "sync"))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path, "rename"))
    }

    /// Removes the store's file.
    pub fn remove(path: &Path) -> Result<(), InstanceError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(path, "remove")(e)),
        }
    }
}

/// Replaces every occurrence of a secret value in `text` with `<redacted>`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if s.len() >= 4 {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}
