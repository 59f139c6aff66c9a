//! Starting an executable that may be busy for a moment. A leaf: imports nothing of this
//! crate.

/// How many times an executable that is busy (`ETXTBSY`: open for writing somewhere) is
/// started again, and how long to wait before each. A file just written is busy for as
/// long as a process forked meanwhile (by another thread of the writer) still holds the
/// descriptor it inherited, until that process execs: a moment, but a spawn can fall in
/// it. An installer copying a plugin into place makes the same window.
pub(crate) const BUSY_ATTEMPTS: u32 = 10;
pub(crate) const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether starting an executable failed because it is open for writing (`ETXTBSY`).
pub(crate) fn busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ExecutableFileBusy
}
