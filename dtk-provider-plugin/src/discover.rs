//! Finding plugins: executables named `dtk-provider-KIND` in a list of directories, each
//! described once (a `hello` handshake) and remembered in a cache file keyed by the
//! executable's path, size, modification time and inode, so that later runs only `stat`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::{PluginOptions, STDERR_TARGET};
use crate::wire::{
    HostMessage, MAX_LINE, Outgoing, PluginDescription, SUPPORTED_PROTOCOLS, WireError,
    parse_host_message,
};

/// The file name prefix of plugin executables: `dtk-provider-KIND` serves `KIND`.
pub const EXECUTABLE_PREFIX: &str = "dtk-provider-";

/// The kind an executable's file name says it serves: `aws` for `dtk-provider-aws`;
/// `None` for other names (and for `dtk-provider-aws.d`, `dtk-provider-.x`).
pub fn kind_of_executable(file_name: &str) -> Option<&str> {
    let kind = file_name.strip_prefix(EXECUTABLE_PREFIX)?;
    (!kind.contains('.') && dtk_model::ident::check_name("provider kind", kind).is_ok())
        .then_some(kind)
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The directories searched, in order (duplicates removed).
    pub searched: Vec<PathBuf>,
    /// Every plugin executable found, in search order.
    pub found: Vec<Found>,
}

/// One executable found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The kind its name says it serves.
    pub kind: String,
    /// Where it is.
    pub path: PathBuf,
    /// Whether it can be used.
    pub status: FoundStatus,
}

/// Whether a found executable can be used.
#[derive(Debug, Clone)]
pub enum FoundStatus {
    /// It answered `hello`; this is what it serves.
    Ready(PluginDescription),
    /// It failed its handshake or described itself wrongly; why.
    Unusable(String),
    /// An executable of the same name earlier in the search is used instead.
    Shadowed(PathBuf),
}

/// Searches `dirs` in order for `dtk-provider-KIND` executables and describes each
/// (the first of each name), from the cache file `cache` when it knows the executable
/// as it is now, else by starting it for a `hello` handshake (in parallel) and
/// remembering the answer there. With `retry_unusable`, executables remembered as
/// unusable are tried again.
///
/// Directories that do not exist or cannot be read are skipped; a cache that cannot be
/// read or written only costs handshakes.
pub fn discover(
    dirs: &[PathBuf],
    cache: Option<&Path>,
    options: &PluginOptions,
    retry_unusable: bool,
) -> Discovery {
    let mut searched: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !searched.contains(d) {
            searched.push(d.clone());
        }
    }
    let (mut cached, old_listings) = cache.map(read_cache).unwrap_or_default();
    // Candidates in search order; the first of each name wins.
    let mut firsts: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut candidates: Vec<(String, PathBuf, Option<FileKey>)> = Vec::new();
    // The listings to remember: those of directories not changed in the last moments.
    let mut listings: Vec<Listing> = Vec::new();
    for dir in &searched {
        let Some((listing, settled)) = list(dir, &old_listings) else {
            continue;
        };
        for name in &listing.names {
            let Some(kind) = kind_of_executable(name) else {
                continue;
            };
            let path = dir.join(name);
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.mode() & 0o111 == 0 {
                continue;
            }
            candidates.push((kind.to_owned(), path, Some(FileKey::of(&meta))));
        }
        if settled {
            listings.push(listing);
        }
    }
    let listings_changed = listings.len() != old_listings.len()
        || listings
            .iter()
            .any(|l| old_listings.get(&l.dir).is_none_or(|o| o.key != l.key));
    let mut found: Vec<Found> = Vec::new();
    let mut to_describe: Vec<usize> = Vec::new();
    for (kind, path, key) in candidates {
        if let Some(first) = firsts.get(&kind) {
            found.push(Found {
                kind,
                path,
                status: FoundStatus::Shadowed(first.clone()),
            });
            continue;
        }
        firsts.insert(kind.clone(), path.clone());
        let known = cached
            .get(&path)
            .filter(|e| Some(e.key) == key)
            .filter(|e| !(retry_unusable && matches!(e.outcome, Outcome::Unusable(_))));
        let status = match known {
            Some(e) => e.outcome.status(),
            None => {
                to_describe.push(found.len());
                FoundStatus::Unusable(String::new())
            }
        };
        found.push(Found { kind, path, status });
    }

    let known = cached.len();
    if !to_describe.is_empty() {
        let results: Vec<(usize, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = to_describe
                .iter()
                .map(|&i| {
                    let f = &found[i];
                    s.spawn(move || {
                        let outcome = match describe(&f.path, options)
                            .and_then(|d| validate(&f.kind, &d).map(|()| d))
                        {
                            Ok(d) => Outcome::Ready(d),
                            Err(why) => Outcome::Unusable(why),
                        };
                        (i, outcome)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (i, outcome) in results {
            found[i].status = outcome.status();
            if let Ok(meta) = std::fs::metadata(&found[i].path) {
                cached.insert(
                    found[i].path.clone(),
                    CacheEntry {
                        path: found[i].path.clone(),
                        key: FileKey::of(&meta),
                        outcome,
                    },
                );
            }
        }
    }
    // Only what was found this time is kept.
    let live: BTreeSet<&PathBuf> = found
        .iter()
        .filter(|f| !matches!(f.status, FoundStatus::Shadowed(_)))
        .map(|f| &f.path)
        .collect();
    cached.retain(|p, _| live.contains(p));
    if let Some(cache) = cache
        && (!to_describe.is_empty() || cached.len() != known || listings_changed)
        && let Err(e) = write_cache(cache, &cached, &listings)
    {
        tracing::debug!(cache = %cache.display(), error = %e, "cannot write the plugin cache");
    }
    Discovery { searched, found }
}

/// What identifies an executable's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileKey {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
}

impl FileKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileKey {
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ino: meta.ino(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Ready(PluginDescription),
    Unusable(String),
}

impl Outcome {
    fn status(&self) -> FoundStatus {
        match self {
            Outcome::Ready(d) => FoundStatus::Ready(d.clone()),
            Outcome::Unusable(why) => FoundStatus::Unusable(why.clone()),
        }
    }
}

/// The plugin executables' names in one searched directory, as it was when its key was
/// taken. A directory's modification time changes whenever an entry is added, removed or
/// renamed in it, so a directory whose key is unchanged is not read again (`PATH` holds
/// directories of thousands of entries, read on every start).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Listing {
    pub(crate) dir: PathBuf,
    pub(crate) key: FileKey,
    pub(crate) names: Vec<String>,
}

/// How recent a directory's modification may be for its listing to be remembered: within
/// this, another change may come in the same clock tick and leave the time as it is.
const RACY: Duration = Duration::from_secs(2);

/// The plugin executables' names in `dir`, sorted: as remembered in `old` when the
/// directory is unchanged, else read; and whether the listing may be remembered (a
/// listing taken just after a change may not). `None` when the directory cannot be read.
fn list(dir: &Path, old: &BTreeMap<PathBuf, Listing>) -> Option<(Listing, bool)> {
    let meta = std::fs::metadata(dir).ok()?;
    let key = FileKey::of(&meta);
    if let Some(l) = old.get(dir)
        && l.key == key
    {
        return Some((l.clone(), true));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            kind_of_executable(&name)?;
            Some(name)
        })
        .collect();
    names.sort();
    let settled = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age >= RACY);
    Some((
        Listing {
            dir: dir.to_owned(),
            key,
            names,
        },
        settled,
    ))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheEntry {
    path: PathBuf,
    key: FileKey,
    outcome: Outcome,
}

/// The cache file: which protocol versions the dtk that wrote it spoke (another dtk
/// describes again), and one entry per executable.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    protocols: Vec<u32>,
    entries: Vec<CacheEntry>,
    /// The searched directories' listings (absent in caches of older versions).
    #[serde(default)]
    dirs: Vec<Listing>,
}

pub(crate) type Cached = (BTreeMap<PathBuf, CacheEntry>, BTreeMap<PathBuf, Listing>);

pub(crate) fn read_cache(path: &Path) -> Cached {
    let Ok(data) = std::fs::read(path) else {
        return Cached::default();
    };
    match serde_json::from_slice::<CacheFile>(&data) {
        Ok(f) if f.protocols == SUPPORTED_PROTOCOLS => (
            f.entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
            f.dirs.into_iter().map(|l| (l.dir.clone(), l)).collect(),
        ),
        _ => Cached::default(),
    }
}

pub(crate) fn write_cache(
    path: &Path,
    entries: &BTreeMap<PathBuf, CacheEntry>,
    listings: &[Listing],
) -> std::io::Result<()> {
    let file = CacheFile {
        protocols: SUPPORTED_PROTOCOLS.to_vec(),
        entries: entries.values().cloned().collect(),
        dirs: listings.to_vec(),
    };
    let data = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Written whole then renamed: a reader sees the old cache or the new one.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Checks what a plugin says about itself: a protocol dtk speaks, valid and distinct kind
/// and resource names, the kind of its file name among its kinds (`kind`), and bundled
/// modules that parse.
pub fn validate(kind: &str, desc: &PluginDescription) -> Result<(), String> {
    if !SUPPORTED_PROTOCOLS.contains(&desc.protocol) {
        return Err(format!(
            "it chose protocol {}, which dtk does not speak (it speaks {SUPPORTED_PROTOCOLS:?})",
            desc.protocol
        ));
    }
    let mut kinds = BTreeSet::new();
    for p in &desc.providers {
        if p.kind.contains('.') || dtk_model::ident::check_name("provider kind", &p.kind).is_err() {
            return Err(format!(
                "it serves a kind with an invalid name, `{}`",
                p.kind
            ));
        }
        if !kinds.insert(p.kind.as_str()) {
            return Err(format!("it names kind `{}` twice", p.kind));
        }
        if let Some(r) = p
            .resources
            .iter()
            .find(|r| dtk_model::ident::check_name("resource", r).is_err())
        {
            return Err(format!(
                "kind `{}` has a resource with an invalid name, `{r}`",
                p.kind
            ));
        }
        for m in &p.modules {
            if let Err(e) = dtk_model::dsl::parse_module(&m.text, &m.origin) {
                return Err(format!(
                    "its bundled module {} does not parse: {e}",
                    m.origin
                ));
            }
        }
    }
    if !kinds.contains(kind) {
        return Err(format!(
            "its name says it serves kind `{kind}`, but it serves {}",
            if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    Ok(())
}

/// Starts the executable at `path`, makes the `hello` handshake, and stops it again
/// (closing its standard input, then killing it if it has not exited within 2 s).
/// Returns what it said about itself, or why it could not be used.
pub fn describe(path: &Path, options: &PluginOptions) -> Result<PluginDescription, String> {
    let mut cmd = std::process::Command::new(path);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut attempt = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if crate::spawn::busy(&e) && attempt < crate::spawn::BUSY_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(crate::spawn::BUSY_PAUSE);
            }
            other => break other.map_err(|e| format!("it cannot be started: {e}"))?,
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(stderr) = child.stderr.take() {
        let name = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(target: STDERR_TARGET, plugin = %name, "{line}");
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::channel::<Result<serde_json::Value, String>>();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let _ = tx.send(first_answer(stdout));
        });
    }
    let hello = serde_json::to_string(&Outgoing {
        id: Some(1),
        method: "hello",
        params: &options.hello(),
    })
    .map_err(|e| format!("the handshake cannot be written: {e}"))?;
    let mut stdin = child.stdin.take();
    if let Some(w) = stdin.as_mut() {
        // A plugin that exits at once breaks the pipe: its exit says more.
        let _ = w
            .write_all(hello.as_bytes())
            .and_then(|()| w.write_all(b"\n"));
        let _ = w.flush();
    }
    let answer = rx.recv_timeout(options.start_timeout);
    drop(stdin);
    let status = wait_or_kill(&mut child, Duration::from_secs(2));
    let value = match answer {
        Ok(Ok(v)) => v,
        Ok(Err(why)) => return Err(format!("{why}{status}")),
        Err(_) => {
            return Err(format!(
                "it did not answer `hello` within {:?}",
                options.start_timeout
            ));
        }
    };
    serde_json::from_value::<PluginDescription>(value)
        .map_err(|_| "it answered `hello` with a result dtk cannot read".to_owned())
}

/// The result of the answer to request 1, from a plugin's output.
fn first_answer(stdout: std::process::ChildStdout) -> Result<serde_json::Value, String> {
    let mut reader = BufReader::new(stdout);
    let mut line_no = 0u64;
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("its output cannot be read ({e})"))?;
        if n == 0 {
            return Err("it ended its output without answering `hello`".to_owned());
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        match parse_host_message(&line) {
            Ok(HostMessage::Response { id: 1, outcome }) => {
                return outcome.map_err(|e| match serde_json::from_value::<WireError>(e) {
                    Ok(WireError::Protocol { message }) => format!("it refused `hello`: {message}"),
                    _ => "it refused `hello`".to_owned(),
                });
            }
            Ok(_) => {}
            Err(why) => {
                return Err(format!(
                    "line {line_no} of its output ({} bytes) is not a protocol message: {why}",
                    line.len()
                ));
            }
        }
    }
}

/// Waits up to `limit` for `child` to exit, then kills its process group. Returns
/// `; it exited with status 3`-style text for messages (empty when it exited 0).
fn wait_or_kill(child: &mut std::process::Child, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return String::new(),
            Ok(Some(st)) => return format!(" ({})", exit_text(st)),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait();
                return String::new();
            }
        }
    }
}

fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited with status {code}"),
        (None, Some(sig)) => format!("it was killed by signal {sig}"),
        _ => format!("it ended: {status}"),
    }
}
