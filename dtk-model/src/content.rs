//! Module content: the files of a module's instance copy, as the nodes that run the
//! module's actions must see them.
//!
//! Every file is named by its content address (its git blob id), so a node's copy of a
//! module is brought up to date by comparing *manifests* — `(path, id, executable, size)`
//! per file — and sending only the files whose entry changed. The node keeps the manifest
//! it was last brought to beside the module's directory; this crate only defines the
//! values, the manifest text and the comparison (no IO): the providers that run commands
//! (`dtk-target-local`, `dtk-target-ssh`) do the copying.
//!
//! On a node, a module's files live in `NODE_DIR/modules/NS/NAME` ([`ModuleContent::dir`]);
//! command actions of the module run there, with `DTK_MODULE_DIR` naming it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use crate::ident::ModuleId;

/// One file of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Its path in the module, `/`-separated, relative (`bin/start-web`).
    pub path: String,
    /// Its content address: the git blob id (hex).
    pub id: String,
    /// Whether it is executable (git mode 100755).
    pub executable: bool,
    /// Its size in bytes.
    pub size: u64,
}

/// The error returned by a [`ContentStore`].
#[derive(Debug, Error)]
#[error("cannot read file {id} of the module's content")]
pub struct ContentError {
    /// The file's id.
    pub id: String,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where the bytes of module files come from (the instance repository's objects).
pub trait ContentStore: Send + Sync + 'static {
    /// The content of the file whose id is `id`.
    fn read(&self, id: &str) -> Result<Vec<u8>, ContentError>;
}

const _: fn(Option<Box<dyn ContentStore>>) = |_| {};

/// The files of one module, as the service's desired state holds them, and where to read
/// them. Cheap to clone.
#[derive(Clone)]
pub struct ModuleContent {
    /// The module.
    pub module: ModuleId,
    /// A digest of every file's path, id and mode (the git tree id of the instance copy):
    /// equal digests mean equal files.
    pub digest: String,
    /// Every file, by path.
    pub files: Arc<[ModuleFile]>,
    /// Reads the files' bytes.
    pub store: Arc<dyn ContentStore>,
}

impl fmt::Debug for ModuleContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleContent")
            .field("module", &self.module.to_string())
            .field("digest", &self.digest)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl ModuleContent {
    /// The module's directory inside a node's directory: `modules/NS/NAME`.
    pub fn dir(&self) -> String {
        module_dir(&self.module)
    }

    /// The manifest's path inside a node's directory: `modules/NS/.NAME.manifest` (beside
    /// the module's directory; no module name starts with `.`).
    pub fn manifest_path(&self) -> String {
        format!(
            "modules/{}/.{}.manifest",
            self.module.namespace, self.module.name
        )
    }

    /// The file at `path`, if the module has it.
    pub fn file(&self, path: &str) -> Option<&ModuleFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// The manifest a node keeps once its copy matches this content.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            digest: self.digest.clone(),
            files: self
                .files
                .iter()
                .map(|f| (f.path.clone(), (f.id.clone(), f.executable, f.size)))
                .collect(),
        }
    }
}

/// Where the files of `module` live inside a node's directory: `modules/NS/NAME`.
pub fn module_dir(module: &ModuleId) -> String {
    format!("modules/{}/{}", module.namespace, module.name)
}

/// What a node's copy of a module holds: the digest and every file's id, mode and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The digest of the content it was made from.
    pub digest: String,
    /// Path → (id, executable, size).
    pub files: BTreeMap<String, (String, bool, u64)>,
}

const MANIFEST_HEADER: &str = "dtk-module-manifest v1";

impl Manifest {
    /// The manifest as text: a header line with the digest, then `MODE ID SIZE PATH` per
    /// file (MODE `x` or `-`).
    pub fn to_text(&self) -> String {
        let mut s = format!("{MANIFEST_HEADER} {}\n", self.digest);
        for (path, (id, exec, size)) in &self.files {
            s.push_str(if *exec { "x " } else { "- " });
            s.push_str(id);
            s.push(' ');
            s.push_str(&size.to_string());
            s.push(' ');
            s.push_str(path);
            s.push('\n');
        }
        s
    }

    /// Reads [`to_text`](Self::to_text)'s output; `None` for anything else (a node
    /// whose manifest is damaged is brought up to date as if it had none).
    pub fn parse(text: &str) -> Option<Manifest> {
        let mut lines = text.lines();
        let digest = lines
            .next()?
            .strip_prefix(MANIFEST_HEADER)?
            .trim()
            .to_owned();
        let mut files = BTreeMap::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            let mut parts = line.splitn(4, ' ');
            let exec = match parts.next()? {
                "x" => true,
                "-" => false,
                _ => return None,
            };
            let id = parts.next()?.to_owned();
            let size = parts.next()?.parse().ok()?;
            let path = parts.next()?.to_owned();
            files.insert(path, (id, exec, size));
        }
        Some(Manifest { digest, files })
    }

    /// What brings a copy described by `self` (the node's manifest) to `want`: the files
    /// to send (new or changed: id or mode) and the paths to remove.
    pub fn changes_to<'w>(&self, want: &'w ModuleContent) -> SyncPlan<'w> {
        let mut send = Vec::new();
        for f in want.files.iter() {
            let same = self
                .files
                .get(&f.path)
                .is_some_and(|(id, exec, _)| *id == f.id && *exec == f.executable);
            if !same {
                send.push(f);
            }
        }
        let remove = self
            .files
            .keys()
            .filter(|p| want.file(p).is_none())
            .cloned()
            .collect();
        SyncPlan { send, remove }
    }
}

/// What a node needs to match a module's content (see [`Manifest::changes_to`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan<'w> {
    /// Files to write (new, or changed content or mode).
    pub send: Vec<&'w ModuleFile>,
    /// Paths to remove (gone from the module).
    pub remove: Vec<String>,
}

impl SyncPlan<'_> {
    /// Whether the node's copy already matches.
    pub fn is_empty(&self) -> bool {
        self.send.is_empty() && self.remove.is_empty()
    }
}

/// Why a path cannot name a file inside a directory (a module, a sandbox).
///
/// The error returned by [`check_relative_path`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path is empty.
    #[error("the path is empty")]
    Empty,
    /// The path is absolute.
    #[error("`{0}` is an absolute path")]
    Absolute(String),
    /// The path has a `..` component.
    #[error("`{0}` goes up with `..`")]
    Parent(String),
    /// The path holds a NUL byte, a newline or a backslash.
    #[error("`{0}` holds a character not allowed in a path (NUL, newline or backslash)")]
    BadCharacter(String),
}

/// Checks that `path` names something *inside* a directory: relative, without `..`,
/// without NUL, newline or backslash. `.` components and repeated `/` are allowed.
pub fn check_relative_path(path: &str) -> Result<(), PathError> {
    if path.trim().is_empty() {
        return Err(PathError::Empty);
    }
    if path.contains(['\0', '\n', '\r', '\\']) {
        return Err(PathError::BadCharacter(path.escape_debug().to_string()));
    }
    if path.starts_with('/') || path.starts_with('~') {
        return Err(PathError::Absolute(path.to_owned()));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(PathError::Parent(path.to_owned()));
    }
    Ok(())
}

/// `path` without `.` components and repeated `/` (`./bin//x` → `bin/x`); assumes
/// [`check_relative_path`] passed.
pub fn normalize_relative(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The file a shell line runs from the module's directory, when its first word is a
/// relative path starting with `./` (`./bin/start-web --port 80` → `bin/start-web`).
/// Used to report, before anything runs, a line that runs a file its module does not
/// have. Only the first word counts: a later `./x` may name a file an earlier command
/// made, or be relative to a directory a `cd` went to.
pub fn leading_dot_slash(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line.strip_prefix("./")?;
    let end = rest
        .find(|c: char| {
            c.is_whitespace() || matches!(c, ';' | '&' | '|' | ')' | '<' | '>' | '`' | '"' | '\'')
        })
        .unwrap_or(rest.len());
    let word = &rest[..end];
    if word.is_empty() || word.contains(['$', '*', '?', '[', '{', '\\']) {
        return None;
    }
    check_relative_path(word).ok()?;
    Some(normalize_relative(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoStore;
    impl ContentStore for NoStore {
        fn read(&self, id: &str) -> Result<Vec<u8>, ContentError> {
            Err(ContentError {
                id: id.to_owned(),
                source: "none".into(),
            })
        }
    }

    fn content(files: &[(&str, &str, bool)]) -> ModuleContent {
        let mut files: Vec<ModuleFile> = files
            .iter()
            .map(|(p, id, x)| ModuleFile {
                path: (*p).to_owned(),
                id: (*id).to_owned(),
                executable: *x,
                size: 3,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        ModuleContent {
            module: "demo/web".parse().expect("id"),
            digest: "d1".to_owned(),
            files: files.into(),
            store: Arc::new(NoStore),
        }
    }

    #[test]
    fn manifest_round_trips_and_diffs() {
        let old = content(&[
            ("bin/a", "1", true),
            ("b c.txt", "2", false),
            ("gone", "3", false),
        ]);
        let text = old.manifest().to_text();
        assert_eq!(
            text,
            "dtk-module-manifest v1 d1\n- 2 3 b c.txt\nx 1 3 bin/a\n- 3 3 gone\n"
        );
        let parsed = Manifest::parse(&text).expect("parses");
        assert_eq!(parsed, old.manifest());
        let new = content(&[
            ("bin/a", "1", false),
            ("b c.txt", "2", false),
            ("new", "4", false),
        ]);
        let plan = parsed.changes_to(&new);
        let sent: Vec<&str> = plan.send.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(sent, ["bin/a", "new"]);
        assert_eq!(plan.remove, ["gone"]);
        assert!(Manifest::parse("garbage").is_none());
        assert!(new.manifest().changes_to(&new).is_empty());
        assert_eq!(new.dir(), "modules/demo/web");
        assert_eq!(new.manifest_path(), "modules/demo/.web.manifest");
    }

    #[test]
    fn relative_paths_are_checked() {
        assert!(check_relative_path("bin/x").is_ok());
        assert!(check_relative_path("./bin//x").is_ok());
        assert_eq!(normalize_relative("./bin//x"), "bin/x");
        assert!(matches!(
            check_relative_path("/etc/x"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            check_relative_path("~/x"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            check_relative_path("a/../../x"),
            Err(PathError::Parent(_))
        ));
        assert!(matches!(check_relative_path(""), Err(PathError::Empty)));
        assert!(matches!(
            check_relative_path("a\nb"),
            Err(PathError::BadCharacter(_))
        ));
    }

    #[test]
    fn a_leading_dot_slash_word_is_found() {
        assert_eq!(
            leading_dot_slash("./bin/start-web --port 80 && ./bin/check").as_deref(),
            Some("bin/start-web")
        );
        assert_eq!(leading_dot_slash("  ./run.sh;x").as_deref(), Some("run.sh"));
        assert_eq!(leading_dot_slash("./a/./b|y").as_deref(), Some("a/b"));
        for line in ["echo ./x", "./$X", "./*.sh", "./", "./../up", "cd x && ./y"] {
            assert_eq!(leading_dot_slash(line), None, "{line}");
        }
    }
}
