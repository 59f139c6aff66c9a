//! Module files in local sandboxes, and the `ADD` steps of command actions.
//!
//! A module's files are placed in `NODE_DIR/modules/NS/NAME` from a per-home content
//! store: one read-only file per content address (`CACHE/ab/cdef...`, `...x` for
//! executables), written once from the instance repository's objects and *hard-linked*
//! into every sandbox that uses it (copied where a link cannot be made). Bringing a
//! sandbox's copy up to date compares the manifest kept beside it
//! (`modules/NS/.NAME.manifest`) with the module's content and touches only what changed,
//! so converging an unchanged module writes nothing. Module files in a sandbox are
//! read-only: they are desired state, shared by every sandbox; an action that needs to
//! change one writes a copy (or uses `ADD`).

use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use dtk_model::ProviderError;
use dtk_model::content::{Manifest, ModuleContent, ModuleFile, check_relative_path};
use dtk_model::provider::{PutContent, PutFile};

/// A name for a temporary file no other sync of this process uses at the same time
/// (tasks of one converge sync the same module directory from several threads).
fn tmp_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// The lock of module directory `dir` within this process.
fn dir_lock(dir: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    type Locks =
        std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<std::sync::Mutex<()>>>>;
    static LOCKS: std::sync::OnceLock<Locks> = std::sync::OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Locks::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(dir.to_path_buf()).or_default().clone()
}

/// Brings the copy of `content` in `node_dir` up to date (see the [module
/// documentation](self)) and returns its directory. `cache` is the per-home content
/// store; without one, files are written straight from `content.store`.
pub fn sync_module(
    node_dir: &Path,
    content: &ModuleContent,
    cache: Option<&Path>,
) -> Result<PathBuf, ProviderError> {
    let op = || {
        format!(
            "place the files of module {} in {}",
            content.module,
            node_dir.display()
        )
    };
    let fail = |m: String| ProviderError::failed(op(), m);
    let dir = node_dir.join(content.dir());
    // Components of one module on one node start at once: one sync of a directory at a
    // time in this process (the others then find it up to date).
    let guard = dir_lock(&dir);
    let _held = guard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let manifest_path = node_dir.join(content.manifest_path());
    let old = fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|t| Manifest::parse(&t));
    if let Some(old) = &old
        && old.digest == content.digest
        && intact(&dir, old)
    {
        return Ok(dir);
    }
    let old = old.unwrap_or_default();
    let plan = old.changes_to(content);
    // A sync cut short leaves no manifest: the next one checks every file again.
    match fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(fail(format!(
                "cannot remove {}: {e}",
                manifest_path.display()
            )));
        }
    }
    fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    for path in &plan.remove {
        let p = dir.join(path);
        match fs::remove_file(&p) {
            Ok(()) => remove_empty_parents(&dir, &p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(format!("cannot remove {}: {e}", p.display()))),
        }
    }
    // Files the manifest says are there but that are missing or damaged go again too.
    let mut send: Vec<&ModuleFile> = plan.send;
    for f in content.files.iter() {
        if !send.iter().any(|s| s.path == f.path) && !file_ok(&dir.join(&f.path), f.size) {
            send.push(f);
        }
    }
    for f in send {
        check_relative_path(&f.path).map_err(|e| fail(format!("module file `{}`: {e}", f.path)))?;
        let target = dir.join(&f.path);
        let parent = ensure_dirs(&dir, &f.path).map_err(fail)?;
        let tmp = parent.join(tmp_name(".dtk-sync-"));
        let _ = fs::remove_file(&tmp);
        match cache {
            Some(cache) => {
                let cached = cached_file(cache, content, f).map_err(fail)?;
                if fs::hard_link(&cached, &tmp).is_err() {
                    fs::copy(&cached, &tmp)
                        .map_err(|e| fail(format!("cannot copy {}: {e}", cached.display())))?;
                    set_mode(&tmp, if f.executable { 0o555 } else { 0o444 }).map_err(fail)?;
                }
            }
            None => {
                let data = content
                    .store
                    .read(&f.id)
                    .map_err(|e| fail(format!("{e}: {}", source_text(&e))))?;
                write_new(&tmp, &data, if f.executable { 0o555 } else { 0o444 }).map_err(fail)?;
            }
        }
        fs::rename(&tmp, &target)
            .map_err(|e| fail(format!("cannot write {}: {e}", target.display())))?;
    }
    let text = content.manifest().to_text();
    let tmp = manifest_path.with_file_name(tmp_name(".dtk-manifest-"));
    write_new(&tmp, text.as_bytes(), 0o644).map_err(fail)?;
    fs::rename(&tmp, &manifest_path)
        .map_err(|e| fail(format!("cannot write {}: {e}", manifest_path.display())))?;
    Ok(dir)
}

fn source_text(e: &dtk_model::content::ContentError) -> String {
    e.source.to_string()
}

/// Whether every file of `manifest` is in `dir` with its size (a cheap check: one `stat`
/// per file, no reading).
fn intact(dir: &Path, manifest: &Manifest) -> bool {
    manifest
        .files
        .iter()
        .all(|(path, (_, _, size))| file_ok(&dir.join(path), *size))
}

fn file_ok(p: &Path, size: u64) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// The store's file for `f`, written from `content.store` the first time.
fn cached_file(cache: &Path, content: &ModuleContent, f: &ModuleFile) -> Result<PathBuf, String> {
    if f.id.len() < 3 || !f.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("module file `{}` has no valid content id", f.path));
    }
    let dir = cache.join(&f.id[..2]);
    let name = format!("{}{}", &f.id[2..], if f.executable { "x" } else { "" });
    let p = dir.join(name);
    if file_ok(&p, f.size) {
        return Ok(p);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let data = content
        .store
        .read(&f.id)
        .map_err(|e| format!("{e}: {}", source_text(&e)))?;
    // Unique per writer: two tasks of one process may place the same file at once.
    let tmp = dir.join(tmp_name(&format!(".tmp-{}-", &f.id[2..])));
    write_new(&tmp, &data, if f.executable { 0o555 } else { 0o444 })?;
    fs::rename(&tmp, &p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    Ok(p)
}

fn write_new(p: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let _ = fs::remove_file(p);
    let mut f = fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    f.write_all(data)
        .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    drop(f);
    set_mode(p, mode)
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", p.display()))
}

/// Makes the directories leading to `rel` under `base` (replacing anything in the way that
/// is not a directory, and never following a symbolic link); returns the last one.
fn ensure_dirs(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut dir = base.to_path_buf();
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let Some((_, parents)) = parts.split_last() else {
        return Err(format!("`{rel}` names no file"));
    };
    for part in parents {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&dir)
                    .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
                fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            Err(_) => {
                fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?
            }
        }
    }
    Ok(dir)
}

fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Places `put` under `cwd` (the action's directory) inside a sandbox: its target must be
/// relative and stay inside (no `..`, no symbolic link on the way); its content is a file
/// of `module` or rendered bytes.
pub fn put_file(
    cwd: &Path,
    put: &PutFile,
    module: Option<&ModuleContent>,
    cache: Option<&Path>,
) -> Result<(), String> {
    check_relative_path(&put.target).map_err(|e| {
        format!(
            "{}: the target must stay inside the node's sandbox: {e}",
            put.label
        )
    })?;
    let rel = dtk_model::content::normalize_relative(&put.target);
    let parent = ensure_dirs_no_follow(cwd, &rel).map_err(|e| format!("{}: {e}", put.label))?;
    let Some(name) = Path::new(&rel).file_name() else {
        return Err(format!("{}: the target names no file", put.label));
    };
    let target = parent.join(name);
    if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink() || m.is_dir()) {
        return Err(format!(
            "{}: {} is a symbolic link or a directory; it is not replaced",
            put.label,
            target.display()
        ));
    }
    let (data, executable) = match &put.content {
        PutContent::Rendered(bytes) => (bytes.clone(), false),
        PutContent::ModuleFile(path) => {
            let module = module.ok_or_else(|| {
                format!(
                    "{}: the action has no module to take `{path}` from",
                    put.label
                )
            })?;
            let f = module
                .file(&dtk_model::content::normalize_relative(path))
                .ok_or_else(|| {
                    format!(
                        "{}: module {} has no file `{path}`",
                        put.label, module.module
                    )
                })?;
            let data = match cache.map(|c| cached_file(c, module, f)) {
                Some(Ok(p)) => {
                    fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
                }
                _ => module
                    .store
                    .read(&f.id)
                    .map_err(|e| format!("{}: {e}: {}", put.label, source_text(&e)))?,
            };
            (data, f.executable)
        }
    };
    let mode = put.mode.unwrap_or(if executable { 0o755 } else { 0o644 });
    let tmp = parent.join(format!(".dtk-put-{}", std::process::id()));
    write_new(&tmp, &data, mode).map_err(|e| format!("{}: {e}", put.label))?;
    if let Some(owner) = &put.owner
        && let Err(e) = chown(&tmp, owner)
    {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: {e}", put.label));
    }
    fs::rename(&tmp, &target)
        .map_err(|e| format!("{}: cannot write {}: {e}", put.label, target.display()))
}

/// Like [`ensure_dirs`], but refuses (rather than replaces) a symbolic link or a file in
/// the way: the sandbox's own files are the action's, not dtk's.
fn ensure_dirs_no_follow(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut dir = base.to_path_buf();
    let path = Path::new(rel);
    let comps: Vec<Component<'_>> = path.components().collect();
    let Some((_, parents)) = comps.split_last() else {
        return Err("the target names no file".to_owned());
    };
    for c in parents {
        let Component::Normal(part) = c else {
            return Err(format!("`{rel}` is not a plain relative path"));
        };
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link: a target is never placed through one",
                    dir.display()
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", dir.display())),
            Err(_) => {
                fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?
            }
        }
    }
    Ok(dir)
}

fn chown(p: &Path, owner: &str) -> Result<(), String> {
    use nix::unistd::{Group, User};
    let (user, group) = match owner.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (owner, None),
    };
    let uid = match User::from_name(user) {
        Ok(Some(u)) => Some(u.uid),
        _ => match user.parse::<u32>() {
            Ok(n) => Some(nix::unistd::Uid::from_raw(n)),
            Err(_) => return Err(format!("owner `{user}` is not a user of this machine")),
        },
    };
    let gid = match group {
        None => None,
        Some(g) => match Group::from_name(g) {
            Ok(Some(g)) => Some(g.gid),
            _ => match g.parse::<u32>() {
                Ok(n) => Some(nix::unistd::Gid::from_raw(n)),
                Err(_) => return Err(format!("group `{g}` is not a group of this machine")),
            },
        },
    };
    nix::unistd::chown(p, uid, gid)
        .map_err(|e| format!("cannot give {} to `{owner}`: {e}", p.display()))
}
