//! Parse caches: parsed documents kept in a directory, keyed by the SHA-256 of their
//! text, and read back ([`dtk_model::cache`]) when the same text is read again. The
//! catalog keeps one for its modules (`parsed/` in the catalog); each service keeps one
//! for its document and instance copies (`dtk-instance`, `.dtk/parsed/`).
//!
//! A [`Store`] changes no result: an entry is the parse of exactly the text that names it,
//! made by this build of the parser; entries of other builds, damaged ones and ones that
//! cannot be read are passed over (the text is parsed). Only successful parses are kept,
//! so an error is found again, with its file's name, each time. Nothing here fails an
//! operation: an entry that cannot be written is left out. Entries are written through a
//! temporary file and a rename (not synced: after a crash an entry is whole or refused),
//! and a store keeps its most recently written entries, up to a number.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dtk_model::cache::{decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// A directory of parse cache entries, `KIND-SHA256` (the kind says what the entry holds,
/// the digest is the parsed text's).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    keep: usize,
}

impl Store {
    /// The store in `dir` (made when an entry is first written), which keeps the `keep`
    /// most recently written entries.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Store {
            dir: dir.into(),
            keep,
        }
    }

    fn entry(&self, kind: &str, text: &str) -> PathBuf {
        let digest = Sha256::digest(text.as_bytes());
        self.dir.join(format!("{kind}-{}", hex::encode(digest)))
    }

    /// `text` parsed: the cached parse of a `kind` when there is one, else `parse()`,
    /// whose success is then cached.
    pub fn get_or_parse<T, E>(
        &self,
        kind: &str,
        text: &str,
        parse: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
    {
        let path = self.entry(kind, text);
        if let Ok(bytes) = fs::read(&path) {
            match decode(&bytes) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "parse cache: entry passed over");
                }
            }
        }
        let parsed = parse()?;
        self.write(&path, &parsed);
        Ok(parsed)
    }

    /// Records that `text`, a `kind`, parses to what `entry` holds
    /// ([`dtk_model::cache::encode`] of a parse the caller has just made).
    pub fn put_entry(&self, kind: &str, text: &str, entry: &[u8]) {
        self.write_entry(&self.entry(kind, text), entry);
    }

    fn write<T: Serialize>(&self, path: &Path, parsed: &T) {
        match encode(parsed) {
            Ok(entry) => self.write_entry(path, &entry),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "parse cache: not encoded");
            }
        }
    }

    fn write_entry(&self, path: &Path, entry: &[u8]) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::create_dir_all(&self.dir)
            .and_then(|()| fs::write(&tmp, entry))
            .and_then(|()| fs::rename(&tmp, path));
        match written {
            Ok(()) => self.trim(),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                tracing::debug!(path = %path.display(), error = %e, "parse cache: not written");
            }
        }
    }

    /// Removes the oldest entries beyond `keep`.
    fn trim(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut all: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, e.path()))
            })
            .collect();
        if all.len() <= self.keep {
            return;
        }
        all.sort();
        for (_, p) in &all[..all.len() - self.keep] {
            // Another process may have removed it first.
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtk_model::ServiceDoc;

    const DOC: &str = "name: s\ndependencies: {}\n";

    fn parse(text: &str) -> Result<ServiceDoc, dtk_model::DslError> {
        dtk_model::dsl::parse_service(text, "dtk.service.yaml")
    }

    #[test]
    fn a_second_read_of_the_same_text_is_the_cached_parse() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let d = tmp.path();
        let store = Store::new(d.join("parsed"), 16);
        let first = store
            .get_or_parse("service", DOC, || parse(DOC))
            .expect("parses");
        let mut calls = 0;
        let second = store
            .get_or_parse("service", DOC, || {
                calls += 1;
                parse(DOC)
            })
            .expect("cached");
        assert_eq!(calls, 0, "the second read parsed again");
        assert_eq!(first, second);
        // Other text, another entry.
        let other = "name: t\ndependencies: {}\n";
        let third = store
            .get_or_parse("service", other, || {
                calls += 1;
                parse(other)
            })
            .expect("parses");
        assert_eq!(calls, 1);
        assert_eq!(third.name, "t");
    }

    #[test]
    fn a_damaged_store_entry_is_parsed_again_and_replaced() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let d = tmp.path();
        let store = Store::new(d.join("parsed"), 16);
        store
            .get_or_parse("service", DOC, || parse(DOC))
            .expect("parses");
        let entry = store.entry("service", DOC);
        let mut bytes = fs::read(&entry).expect("entry written");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&entry, &bytes).expect("damage");
        let mut calls = 0;
        let doc = store
            .get_or_parse("service", DOC, || {
                calls += 1;
                parse(DOC)
            })
            .expect("parses");
        assert_eq!((calls, doc.name.as_str()), (1, "s"));
        assert_ne!(fs::read(&entry).expect("rewritten"), bytes);
    }

    #[test]
    fn errors_are_not_cached_and_old_entries_are_trimmed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let d = tmp.path();
        let store = Store::new(d.join("parsed"), 16);
        let bad = "name: [unclosed\n";
        assert!(store.get_or_parse("service", bad, || parse(bad)).is_err());
        assert!(!store.entry("service", bad).exists());
        for i in 0..21 {
            let text = format!("name: s{i}\ndependencies: {{}}\n");
            store
                .get_or_parse("service", &text, || parse(&text))
                .expect("parses");
        }
        let n = fs::read_dir(d.join("parsed")).expect("dir").count();
        assert_eq!(n, 16);
    }

    #[test]
    fn an_unwritable_store_changes_nothing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let d = tmp.path();
        // A file where the directory should be: nothing can be written under it.
        fs::write(d.join("parsed"), b"").expect("file");
        let store = Store::new(d.join("parsed"), 16);
        let doc = store
            .get_or_parse("service", DOC, || parse(DOC))
            .expect("parses");
        assert_eq!(doc.name, "s");
    }
}
