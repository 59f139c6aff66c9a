//! The catalog lock and the publish journal.
//!
//! Every reference update of the catalog happens while one process holds an exclusive
//! lock on `ROOT/dtk.lock`. Before it moves a reference, a publish writes the journal
//! `ROOT/dtk-publish.journal` naming the references it will move, from which value to
//! which; it removes the journal when done. A journal found by the next holder of the
//! lock is the mark of a publish that was interrupted: see
//! [`Catalog::recover`](crate::Catalog::recover).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use crate::CatalogError;

/// The lock file, inside the catalog's git directory (git ignores unknown files there).
pub(crate) const LOCK_FILE: &str = "dtk.lock";
/// The publish journal, inside the catalog's git directory.
pub(crate) const JOURNAL_FILE: &str = "dtk-publish.journal";
const JOURNAL_TMP: &str = "dtk-publish.journal.tmp";
const JOURNAL_HEADER: &str = "dtk-publish-journal 1";

/// An exclusive lock on the catalog, released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct CatalogLock {
    _file: File,
}

/// Blocks until this process holds the catalog's exclusive lock.
pub(crate) fn lock(root: &Path) -> Result<CatalogLock, CatalogError> {
    let path = root.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| CatalogError::Lock {
            action: "open the lock file",
            path: path.clone(),
            source,
        })?;
    fs4::FileExt::lock(&file).map_err(|source| CatalogError::Lock {
        action: "lock",
        path,
        source,
    })?;
    Ok(CatalogLock { _file: file })
}

/// One reference a publish moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefChange {
    /// The full reference name.
    pub(crate) name: String,
    /// Its value before the publish; `None` when it did not exist.
    pub(crate) old: Option<ObjectId>,
    /// Its value after the publish.
    pub(crate) new: ObjectId,
}

/// What a publish in progress is about to do to the references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Journal {
    /// The module's branch, moved first.
    pub(crate) branch: RefChange,
    /// The version's tag, moved last: the publish is complete once it is moved.
    pub(crate) tag: RefChange,
}

impl Journal {
    pub(crate) fn encode(&self) -> String {
        let line = |c: &RefChange| {
            format!(
                "{} {} {}\n",
                c.name,
                c.old.map_or_else(|| "-".to_owned(), |o| o.to_string()),
                c.new
            )
        };
        format!(
            "{JOURNAL_HEADER}\n{}{}",
            line(&self.branch),
            line(&self.tag)
        )
    }

    pub(crate) fn decode(text: &str, path: &Path) -> Result<Journal, CatalogError> {
        let damaged = |what: &str| CatalogError::Journal {
            path: path.to_owned(),
            what: what.to_owned(),
        };
        let mut lines = text.lines();
        if lines.next() != Some(JOURNAL_HEADER) {
            return Err(damaged("its first line is not the journal header"));
        }
        let mut change = || -> Result<RefChange, CatalogError> {
            let line = lines.next().ok_or_else(|| damaged("a line is missing"))?;
            let parts: Vec<&str> = line.split(' ').collect();
            let [name, old, new] = parts.as_slice() else {
                return Err(damaged("a line does not have three fields"));
            };
            let id = |s: &str| {
                ObjectId::from_hex(s.as_bytes()).map_err(|_| damaged("an object id is not hex"))
            };
            Ok(RefChange {
                name: (*name).to_owned(),
                old: if *old == "-" { None } else { Some(id(old)?) },
                new: id(new)?,
            })
        };
        let branch = change()?;
        let tag = change()?;
        Ok(Journal { branch, tag })
    }

    /// Writes the journal atomically (a complete file appears, or none).
    pub(crate) fn write(&self, root: &Path) -> Result<(), CatalogError> {
        let tmp = root.join(JOURNAL_TMP);
        let path = root.join(JOURNAL_FILE);
        let io = |action, p: &PathBuf| {
            let p = p.clone();
            move |source| CatalogError::Lock {
                action,
                path: p,
                source,
            }
        };
        let mut f = File::create(&tmp).map_err(io("write the publish journal", &tmp))?;
        f.write_all(self.encode().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io("write the publish journal", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io("write the publish journal", &path))
    }

    /// The journal of an interrupted publish, if there is one.
    pub(crate) fn read(root: &Path) -> Result<Option<Journal>, CatalogError> {
        let path = root.join(JOURNAL_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Journal::decode(&text, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CatalogError::Lock {
                action: "read the publish journal",
                path,
                source,
            }),
        }
    }

    /// Whether a journal exists (a cheap check without the lock).
    pub(crate) fn exists(root: &Path) -> bool {
        root.join(JOURNAL_FILE).exists()
    }

    /// Removes the journal: the publish is complete, or undone.
    pub(crate) fn remove(root: &Path) -> Result<(), CatalogError> {
        let path = root.join(JOURNAL_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CatalogError::Lock {
                action: "remove the publish journal",
                path,
                source,
            }),
        }
    }
}
