//! Injected fsync failures, for tests only (`serve --unsafe-fail-fsync-file-for-tests FILE`).
//!
//! A storage error cannot be provoked from outside when the tests run as root (permissions do
//! not stop root), so the broker itself fails the sync: while FILE exists, every
//! fsync/fdatasync of a file whose path starts with one of its lines fails with EIO, on the
//! blocking and the io_uring backends alike, without touching the disk. Removing FILE stops the failures (the
//! broker does not trust the disk again by itself: a replica that saw the error stays failed
//! until restarted). Without the setting each check is one relaxed load of an unset
//! `OnceLock`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

static TRIGGER: OnceLock<PathBuf> = OnceLock::new();

/// Watches `file` for the path whose syncs fail. Once per process.
pub fn enable(file: PathBuf) -> io::Result<()> {
    TRIGGER
        .set(file)
        .map_err(|_| io::Error::other("the fsync failpoint is already enabled"))
}

/// Fails with EIO if `file`'s absolute path starts with one of the lines of the trigger file
/// (a plain string prefix, so `<data>/raft/<topic>-` matches every directory of that topic).
pub fn check_sync(file: &File) -> io::Result<()> {
    let Some(trigger) = TRIGGER.get() else {
        return Ok(());
    };
    let Ok(prefixes) = std::fs::read_to_string(trigger) else {
        return Ok(());
    };
    let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
        return Ok(());
    };
    let path = path.to_string_lossy();
    let hit = prefixes
        .lines()
        .map(str::trim)
        .any(|p| !p.is_empty() && path.starts_with(p));
    if hit {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}
