//! A service's parse cache (`.dtk/parsed/`): its documents as parsed, keyed by the
//! SHA-256 of their text, so that a converge, plan or exec of a service whose document and
//! instance copies have not changed reads them back ([`dtk_model::cache`]) rather than
//! parsing them again. Parsing is most of what a no-op converge does, and most of a second
//! for a service of 100,000 components.
//!
//! The cache changes no result: an entry is the parse of exactly the text that names it,
//! made by this build of the parser (entries of other builds, damaged ones and ones that
//! cannot be read are passed over, and the text is parsed). Only successful parses are
//! kept: an error is found again, with its file's name, each time. Nothing here fails an
//! operation: an entry that cannot be written is left out. Entries are written through a
//! temporary file and a rename (not synced: after a crash an entry is whole or refused), and
//! the directory keeps the [`KEEP`] most recently written.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// How many entries a service's cache keeps (a service holds one document and a few
/// module copies; the work tree's and the committed document differ while edits wait).
pub(crate) const KEEP: usize = 16;

/// What an entry holds: the key's prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A service document ([`dtk_model::ServiceDoc`]).
    Service,
    /// An instance copy's definitions ([`dtk_model::dsl::parse_module_defs`]).
    ModuleDefs,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::ModuleDefs => "defs",
        }
    }
}

/// The parse cache in a directory.
#[derive(Debug, Clone)]
pub(crate) struct ParseCache {
    dir: PathBuf,
}

impl ParseCache {
    /// The cache of the service whose private directory (`.dtk`) is `private`.
    pub(crate) fn of(private: &Path) -> Self {
        ParseCache {
            dir: private.join("parsed"),
        }
    }

    fn entry(&self, kind: Kind, text: &str) -> PathBuf {
        let digest = Sha256::digest(text.as_bytes());
        self.dir
            .join(format!("{}-{}", kind.prefix(), hex::encode(digest)))
    }

    /// `text` parsed: the cached parse when there is one, else `parse()`, whose success is
    /// then cached.
    pub(crate) fn get_or_parse<T, E>(
        &self,
        kind: Kind,
        text: &str,
        parse: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
    {
        let path = self.entry(kind, text);
        if let Some(found) = read(&path) {
            return Ok(found);
        }
        let parsed = parse()?;
        self.write(&path, &parsed);
        Ok(parsed)
    }

    /// Records that `text` parses to `parsed` (which the caller has just parsed).
    pub(crate) fn put<T: Serialize>(&self, kind: Kind, text: &str, parsed: &T) {
        let path = self.entry(kind, text);
        self.write(&path, parsed);
    }

    fn write<T: Serialize>(&self, path: &Path, parsed: &T) {
        let entry = match dtk_model::cache::encode(parsed) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "parse cache: not encoded");
                return;
            }
        };
        let written = fs::create_dir_all(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                crate::repo::write_file_replace(path, &entry).map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => self.trim(),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "parse cache: not written");
            }
        }
    }

    /// Removes the oldest entries beyond [`KEEP`].
    fn trim(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut all: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, e.path()))
            })
            .collect();
        if all.len() <= KEEP {
            return;
        }
        all.sort();
        for (_, p) in &all[..all.len() - KEEP] {
            // Another process may have removed it first.
            let _ = fs::remove_file(p);
        }
    }
}

fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    match dtk_model::cache::decode(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "parse cache: entry passed over");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: s\ndependencies: {}\n";

    fn parse(text: &str) -> Result<dtk_model::ServiceDoc, dtk_model::DslError> {
        dtk_model::dsl::parse_service(text, "dtk.service.yaml")
    }

    #[test]
    fn a_second_read_of_the_same_text_is_the_cached_parse() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = ParseCache::of(d.path());
        let first = cache
            .get_or_parse(Kind::Service, DOC, || parse(DOC))
            .expect("parses");
        let mut calls = 0;
        let second = cache
            .get_or_parse(Kind::Service, DOC, || {
                calls += 1;
                parse(DOC)
            })
            .expect("cached");
        assert_eq!(calls, 0, "the second read parsed again");
        assert_eq!(first, second);
        // Other text, another entry.
        let other = "name: t\ndependencies: {}\n";
        let third = cache
            .get_or_parse(Kind::Service, other, || {
                calls += 1;
                parse(other)
            })
            .expect("parses");
        assert_eq!(calls, 1);
        assert_eq!(third.name, "t");
    }

    #[test]
    fn a_damaged_entry_is_parsed_again_and_replaced() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = ParseCache::of(d.path());
        cache
            .get_or_parse(Kind::Service, DOC, || parse(DOC))
            .expect("parses");
        let entry = cache.entry(Kind::Service, DOC);
        let mut bytes = fs::read(&entry).expect("entry written");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&entry, &bytes).expect("damage");
        let mut calls = 0;
        let doc = cache
            .get_or_parse(Kind::Service, DOC, || {
                calls += 1;
                parse(DOC)
            })
            .expect("parses");
        assert_eq!((calls, doc.name.as_str()), (1, "s"));
        assert_ne!(fs::read(&entry).expect("rewritten"), bytes);
    }

    #[test]
    fn errors_are_not_cached_and_old_entries_are_trimmed() {
        let d = tempfile::tempdir().expect("tempdir");
        let cache = ParseCache::of(d.path());
        let bad = "name: [unclosed\n";
        assert!(
            cache
                .get_or_parse(Kind::Service, bad, || parse(bad))
                .is_err()
        );
        assert!(!cache.entry(Kind::Service, bad).exists());
        for i in 0..KEEP + 5 {
            let text = format!("name: s{i}\ndependencies: {{}}\n");
            cache
                .get_or_parse(Kind::Service, &text, || parse(&text))
                .expect("parses");
        }
        let n = fs::read_dir(d.path().join("parsed")).expect("dir").count();
        assert_eq!(n, KEEP);
    }

    #[test]
    fn an_unwritable_cache_changes_nothing() {
        let d = tempfile::tempdir().expect("tempdir");
        // A file where the directory should be: nothing can be written under it.
        fs::write(d.path().join("parsed"), b"").expect("file");
        let cache = ParseCache::of(d.path());
        let doc = cache
            .get_or_parse(Kind::Service, DOC, || parse(DOC))
            .expect("parses");
        assert_eq!(doc.name, "s");
    }
}
