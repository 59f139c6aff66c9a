//! A home's team settings: which git remote it shares its catalog and services through
//! (`DTK_HOME/remote.json`, written by `dtk remote set`; the program may override it),
//! and who runs the program (the identity the commits and locks dtk makes carry). The
//! team operations themselves are in [`crate::team`] and [`crate::lease`].

use std::fs;
use std::path::Path;

use dtk_catalog::remote::{GitRemote, Identity};
use serde::{Deserialize, Serialize};

use crate::error::InstanceError;
use crate::repo::{Signature, io_err};

/// The file of `DTK_HOME` that names the remote.
pub const REMOTE_FILE: &str = "remote.json";
/// Where the remote in use comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteSource {
    /// `DTK_HOME/remote.json`, written by `dtk remote set`.
    Home,
    /// Given by the program (the `dtk` command line reads `DTK_REMOTE`).
    Override,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteFile {
    pub(crate) url: String,
}

/// A home's team settings: its remote and who runs the program.
#[derive(Debug, Clone)]
pub(crate) struct TeamSettings {
    pub(crate) remote: Option<GitRemote>,
    pub(crate) source: RemoteSource,
    pub(crate) operator: Operator,
}

impl TeamSettings {
    /// The settings of the home at `root`: the remote `dtk remote set` kept, and the
    /// operator of this process.
    pub(crate) fn load(root: &Path) -> Result<TeamSettings, InstanceError> {
        Ok(TeamSettings {
            remote: read_remote_file(root)?,
            source: RemoteSource::Home,
            operator: Operator::from_system(),
        })
    }
}

/// Who runs this program: the identity commits and locks carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The author of the commits dtk makes for the team.
    pub identity: Identity,
    /// The operating-system user.
    pub user: String,
    /// The host name.
    pub host: String,
}

impl Operator {
    /// The user running this process and the machine's host name; the identity is
    /// `USER <USER@HOST>`.
    pub fn from_system() -> Operator {
        let user = os_user();
        let host = hostname();
        Operator {
            identity: Identity {
                name: user.clone(),
                email: format!("{user}@{host}"),
            },
            user,
            host,
        }
    }

    pub(crate) fn signature(&self) -> Signature {
        Signature {
            name: self.identity.name.clone(),
            email: self.identity.email.clone(),
        }
    }
}

/// The name of the user running this process (from `/proc` and `/etc/passwd`; no
/// environment variable), else its uid.
fn os_user() -> String {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "?".to_owned());
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let _ = f.next()?;
                (f.next()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or(uid)
}

pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(crate) fn home_err(p: &Path, e: impl std::fmt::Display) -> InstanceError {
    InstanceError::Io {
        path: p.to_owned(),
        op: "parse",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Reads `DTK_HOME/remote.json`.
pub(crate) fn read_remote_file(root: &Path) -> Result<Option<GitRemote>, InstanceError> {
    let p = root.join(REMOTE_FILE);
    match fs::read(&p) {
        Ok(data) => {
            let f: RemoteFile = serde_json::from_slice(&data).map_err(|e| home_err(&p, e))?;
            Ok(Some(GitRemote::new(f.url)?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&p, "read")(e)),
    }
}
