//! The per-instance lock: one process at a time edits or converges a service instance.
//!
//! The lock is an exclusive `flock` (`File::try_lock`) on `.dtk/lock` inside the instance directory. The
//! kernel releases it when its holder dies, however it dies, so a dead holder's lock is
//! taken over without any stale-lock guessing. The file's content names the holder (pid,
//! host, since when) for the error a second process gets.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::InstanceError;
use crate::repo::io_err;

/// A held instance lock; released when dropped.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

/// Who holds a lock, as written in the lock file.
pub fn describe_holder(text: &str) -> String {
    let mut pid = None;
    let mut host = None;
    let mut since = None;
    let mut what = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => pid = Some(v.to_owned()),
            Some(("host", v)) => host = Some(v.to_owned()),
            Some(("since", v)) => since = v.parse::<u64>().ok(),
            Some(("operation", v)) => what = Some(v.to_owned()),
            _ => {}
        }
    }
    let ago = since
        .and_then(|s| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|n| n.as_secs().saturating_sub(s))
        })
        .map(|secs| format!(", for {secs} s"))
        .unwrap_or_default();
    format!(
        "pid {} on {}{}{ago}",
        pid.as_deref().unwrap_or("?"),
        host.as_deref().unwrap_or("?"),
        what.map(|w| format!(" ({w})")).unwrap_or_default(),
    )
}

pub(crate) fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl InstanceLock {
    /// Takes the lock of the instance in `dir` for `operation`, or fails at once with
    /// [`InstanceError::Locked`] naming the holder.
    pub fn acquire(
        service: &str,
        dir: &Path,
        operation: &str,
    ) -> Result<InstanceLock, InstanceError> {
        let private = dir.join(crate::repo::PRIVATE_DIR);
        fs::create_dir_all(&private).map_err(io_err(&private, "create"))?;
        let path = private.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path, "open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(InstanceError::Locked {
                    service: service.to_owned(),
                    holder: describe_holder(&text),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path, "lock")(e)),
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let info = format!(
            "pid={}\nhost={}\nsince={since}\noperation={operation}\n",
            std::process::id(),
            hostname()
        );
        file.set_len(0).map_err(io_err(&path, "truncate"))?;
        file.seek(SeekFrom::Start(0))
            .map_err(io_err(&path, "seek"))?;
        file.write_all(info.as_bytes())
            .map_err(io_err(&path, "write"))?;
        file.flush().map_err(io_err(&path, "write"))?;
        clear_stale_git_locks(&dir.join(".git"));
        Ok(InstanceLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the lock files a dtk killed in the middle of a git write left in the instance
/// repository's git directory (`HEAD.lock`, `index.lock`, `refs/**/*.lock`,
/// `packed-refs.lock`): git and gix refuse to write while one exists, so one left behind
/// would stop every later converge.
///
/// Called with the instance lock held, so no other dtk process writes the repository; dtk
/// is its only writer. A lock file younger than a second is given that second to go away
/// first, in case a `git` command of the user's (`git status` refreshing the index) holds
/// it right now.
fn clear_stale_git_locks(git_dir: &Path) {
    let mut found = Vec::new();
    for name in ["HEAD.lock", "index.lock", "packed-refs.lock"] {
        let p = git_dir.join(name);
        if p.is_file() {
            found.push(p);
        }
    }
    let mut stack = vec![git_dir.join("refs")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "lock") => {
                    found.push(p);
                }
                _ => {}
            }
        }
    }
    for p in found {
        let age = fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        let grace = std::time::Duration::from_secs(1);
        if age < grace {
            std::thread::sleep(grace - age);
        }
        let _ = fs::remove_file(&p);
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
