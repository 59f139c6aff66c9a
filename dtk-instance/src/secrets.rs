//! The secret store: values of `secret: true` attributes, kept outside every git
//! repository in `DTK_HOME/secrets/SERVICE.json`, readable by its owner alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dtk_model::{ComponentId, ServiceModel, Value};
use hmac::{KeyInit as _, Mac as _};

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

    /// The value of secret `attr` of component `id`: its own, else the one set on its
    /// node group (`group/cmp` for member `group:2/cmp`), which members share.
    pub fn effective(&self, id: &ComponentId, attr: &str) -> Option<&Value> {
        self.values
            .get(id.as_str())
            .and_then(|m| m.get(attr))
            .or_else(|| {
                let (node, rest) = id.as_str().split_once('/')?;
                let (group, _) = node.split_once(':')?;
                self.values.get(&format!("{group}/{rest}"))?.get(attr)
            })
    }

    /// Sets each component's [`secret_digest`](dtk_model::ComponentInstance::secret_digest):
    /// HMAC-SHA256 under the home's digest key (see [`digest_key`]) of the values of its
    /// set secret inputs, so that a changed secret changes the component's desired hash
    /// and converge runs it again. The digest says nothing of the values to whoever lacks
    /// the key. Does nothing (and makes no key) when no component has a secret set.
    pub fn apply_digests(&self, model: &mut ServiceModel) -> Result<(), InstanceError> {
        let set = |c: &dtk_model::ComponentInstance| {
            c.secret_inputs
                .iter()
                .any(|a| self.effective(&c.id, a).is_some())
        };
        if !model.components.iter().any(set) {
            return Ok(());
        }
        let key = digest_key(self.path.parent().unwrap_or(Path::new(".")))?;
        for c in &mut model.components {
            if !set(c) {
                continue;
            }
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| {
                InstanceError::Io {
                    path: self.path.clone(),
                    op: "digest",
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            for attr in &c.secret_inputs {
                let Some(v) = self.effective(&c.id, attr) else {
                    continue;
                };
                let value = serde_json::to_vec(v).unwrap_or_default();
                for part in [attr.as_bytes(), &value] {
                    mac.update(&(part.len() as u64).to_le_bytes());
                    mac.update(part);
                }
            }
            let tag = mac.finalize().into_bytes();
            c.secret_digest = Some(hex::encode(tag));
        }
        Ok(())
    }

    /// The names of the secrets set, by component id (never their values).
    pub fn names(&self) -> BTreeMap<String, Vec<String>> {
        self.values
            .iter()
            .map(|(c, m)| (c.clone(), m.keys().cloned().collect()))
            .filter(|(_, names): &(String, Vec<String>)| !names.is_empty())
            .collect()
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

    /// Renames the components secrets are kept under (in memory; [`save`](Self::save)
    /// writes): each key `rename` maps to a new one moves there. Returns whether any moved.
    pub(crate) fn rename_components(&mut self, rename: impl Fn(&str) -> Option<String>) -> bool {
        let old = std::mem::take(&mut self.values);
        let mut moved = false;
        for (k, v) in old {
            match rename(&k) {
                Some(new) => {
                    moved = true;
                    self.values.insert(new, v);
                }
                None => {
                    self.values.insert(k, v);
                }
            }
        }
        moved
    }

    /// Writes the store (mode 0600, atomically).
    pub(crate) fn save(&self) -> Result<(), InstanceError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
        let data = serde_json::to_vec_pretty(&self.values).map_err(|e| InstanceError::Io {
            path: self.path.clone(),
            op: "encode",
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        write_owner_only(&tmp, &data)?;
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

/// The key of the secret digests: 32 random bytes in `dir/.digest-key`, readable by its
/// owner alone, made on first use. Two processes making it at once agree on one: the
/// key is written aside and linked into place, and the loser reads the winner's.
pub fn digest_key(dir: &Path) -> Result<Vec<u8>, InstanceError> {
    use std::io::Read as _;
    let path = dir.join(".digest-key");
    match fs::read(&path) {
        Ok(key) if key.len() == 32 => return Ok(key),
        Ok(_) => {
            return Err(InstanceError::Io {
                path,
                op: "read",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a 32-byte key (remove it: every component with secrets will run again)",
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path, "read")(e)),
    }
    fs::create_dir_all(dir).map_err(io_err(dir, "create"))?;
    let mut key = vec![0u8; 32];
    let random = Path::new("/dev/urandom");
    fs::File::open(random)
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(io_err(random, "read"))?;
    let tmp = dir.join(format!(".digest-key.tmp-{}", std::process::id()));
    write_owner_only(&tmp, &key)?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::read(&path).map_err(io_err(&path, "read"))
        }
        Err(e) => Err(io_err(&path, "link")(e)),
    }
}

/// Writes `data` to a new `path` readable by its owner alone (mode 0600), synced to disk.
fn write_owner_only(path: &Path, data: &[u8]) -> Result<(), InstanceError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path, "create"))?;
    f.write_all(data).map_err(io_err(path, "write"))?;
    f.sync_all().map_err(io_err(path, "sync"))
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
