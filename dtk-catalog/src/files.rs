//! Reading a module directory: its manifest, validated, and the files that a publish
//! stores.

use std::path::{Component, Path, PathBuf};

use dtk_model::Module;
use ignore::WalkBuilder;

use crate::CatalogError;

/// The name of a module's manifest, at the root of its directory and of its catalog tree.
pub const MANIFEST: &str = "dtk.module.yaml";

/// One file of a module, in a directory or in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The path relative to the module's root, `/`-separated.
    pub path: String,
    /// The size in bytes.
    pub size: u64,
    /// Whether the file is executable (stored as git mode `100755`).
    pub executable: bool,
}

/// A module directory that passed [`validate_dir`]: its model and the files that
/// publishing it would store.
#[derive(Debug, Clone)]
pub struct ValidModule {
    /// The parsed and validated `dtk.module.yaml`.
    pub module: Module,
    /// Every file a publish stores (`.gitignore` honoured, `.git` skipped), by path.
    pub files: Vec<FileEntry>,
}

/// A file found in a module directory, with where it is on disk.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) entry: FileEntry,
    pub(crate) abs: PathBuf,
}

/// Checks a module directory without writing anything: `dtk.module.yaml` parses and
/// validates, and every file can be stored (no symbolic links, no special files, no
/// path that cannot be named in git). This is what `dtk module validate` runs, and what
/// [`Catalog::publish`](crate::Catalog::publish) runs before it writes.
pub fn validate_dir(dir: &Path) -> Result<ValidModule, CatalogError> {
    let (module, files) = scan(dir, None)?;
    Ok(ValidModule {
        module,
        files: files.into_iter().map(|f| f.entry).collect(),
    })
}

/// Reads and validates the manifest (through `cache`, when given), then lists the files
/// to store.
pub(crate) fn scan(
    dir: &Path,
    cache: Option<&crate::parse_cache::Store>,
) -> Result<(Module, Vec<SourceFile>), CatalogError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CatalogError::NotADirectory {
                dir: dir.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CatalogError::NotADirectory {
                dir: dir.to_owned(),
            });
        }
        Err(source) => {
            return Err(CatalogError::ReadFile {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let manifest = dir.join(MANIFEST);
    match std::fs::symlink_metadata(&manifest) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(CatalogError::Symlink { path: manifest });
        }
        Ok(m) if !m.is_file() => return Err(CatalogError::UnsupportedFile { path: manifest }),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CatalogError::MissingManifest {
                dir: dir.to_owned(),
            });
        }
        Err(source) => {
            return Err(CatalogError::ReadFile {
                path: manifest,
                source,
            });
        }
    }
    let bytes = std::fs::read(&manifest).map_err(|source| CatalogError::ReadFile {
        path: manifest.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| CatalogError::Invalid {
        path: manifest.clone(),
        source: not_utf8(
            &manifest.to_string_lossy(),
            e.as_bytes(),
            e.utf8_error().valid_up_to(),
        ),
    })?;
    let module =
        crate::parse_manifest(cache, &text, &manifest.to_string_lossy()).map_err(|source| {
            CatalogError::Invalid {
                path: manifest.clone(),
                source,
            }
        })?;
    let files = walk(dir)?;
    if !files.iter().any(|f| f.entry.path == MANIFEST) {
        return Err(CatalogError::ManifestIgnored { path: manifest });
    }
    Ok((module, files))
}

/// The located refusal of a manifest that is not UTF-8: where its first bad byte is.
fn not_utf8(file: &str, bytes: &[u8], valid: usize) -> dtk_model::DslError {
    let before = &bytes[..valid];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    dtk_model::DslError::single(dtk_model::Diagnostic {
        file: file.to_owned(),
        location: dtk_model::Location {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            offset: valid,
        },
        key: String::new(),
        message: format!("the file is not valid UTF-8 (byte {valid})"),
        help: Some("save dtk.module.yaml as UTF-8".to_owned()),
    })
}

/// Lists the files of `dir` that a publish stores, sorted by path.
///
/// Only the module's own `.gitignore` files (at any depth) apply: not those of the
/// directories above it, nor the user's global excludes, so the same directory always
/// publishes the same files. `.git` directories are skipped.
fn walk(dir: &Path) -> Result<Vec<SourceFile>, CatalogError> {
    let walker = WalkBuilder::new(dir)
        .standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut out = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|source| CatalogError::Walk {
            dir: dir.to_owned(),
            source,
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let Some(ft) = entry.file_type() else {
            return Err(CatalogError::UnsupportedFile {
                path: path.to_owned(),
            });
        };
        if ft.is_symlink() {
            return Err(CatalogError::Symlink {
                path: path.to_owned(),
            });
        }
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            return Err(CatalogError::UnsupportedFile {
                path: path.to_owned(),
            });
        }
        let rel = relative_path(dir, path)?;
        let meta = entry.metadata().map_err(|source| CatalogError::Walk {
            dir: dir.to_owned(),
            source,
        })?;
        out.push(SourceFile {
            entry: FileEntry {
                path: rel,
                size: meta.len(),
                executable: is_executable(&meta),
            },
            abs: path.to_owned(),
        });
    }
    out.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    Ok(out)
}

/// The `/`-separated path of `path` below `dir`, refusing anything that is not plainly
/// inside it or not UTF-8.
fn relative_path(dir: &Path, path: &Path) -> Result<String, CatalogError> {
    let bad = |reason| CatalogError::BadPath {
        path: path.to_owned(),
        reason,
    };
    let rel = path
        .strip_prefix(dir)
        .map_err(|_| bad("it is outside the module directory"))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_str().ok_or_else(|| bad("its name is not UTF-8"))?;
                if s.contains('\\') || s.contains('\n') {
                    return Err(bad("its name contains `\\` or a line break"));
                }
                parts.push(s);
            }
            _ => return Err(bad("it is outside the module directory")),
        }
    }
    if parts.is_empty() {
        return Err(bad("it is the module directory itself"));
    }
    Ok(parts.join("/"))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}
