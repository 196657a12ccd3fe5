//! Making appended bytes durable: fdatasync without blocking a shard.
//!
//! Appends and reads go to the page cache with plain `pwrite`/`pread`, which do not block on
//! the disk; the one call that does is `fdatasync`. Each shard therefore owns a [`Flusher`]:
//! where io_uring is available it submits `IORING_OP_FSYNC` (with DATASYNC) to a per-shard ring
//! whose completions wake the shard's runtime through an eventfd; otherwise it runs
//! `fdatasync` on tokio's blocking pool. We use the `io-uring` crate directly rather than
//! `tokio-uring`: that crate needs its own runtime driver and is barely maintained, while one
//! opcode on a ring polled by tokio is all this needs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use io_uring::{opcode, types, IoUring};

use crate::log::power;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// Which backend syncs segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring if the kernel allows it, else the blocking pool.
    Auto,
    IoUring,
    Blocking,
    /// One `syncfs` per filesystem at a time for every partition of the process
    /// ([`crate::syncfs`]).
    Syncfs,
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoBackend::Auto),
            "io-uring" | "io_uring" | "uring" => Ok(IoBackend::IoUring),
            "blocking" => Ok(IoBackend::Blocking),
            "syncfs" => Ok(IoBackend::Syncfs),
            other => Err(format!(
                "unknown I/O backend '{other}': use syncfs, auto, io-uring or blocking"
            )),
        }
    }
}

/// A shard's way to fdatasync files. Not `Send`: one per shard thread.
#[derive(Clone)]
pub enum Flusher {
    Uring(Rc<Uring>),
    Blocking,
    Syncfs,
    /// Another disk: a test's or a simulator's, which decides when each sync completes and
    /// whether it fails.
    Other(Rc<dyn SyncFiles>),
}

/// Makes files durable, as the partition actors and their Raft logs need it: the seam through
/// which a test or a simulator stands in for the disk's syncs (their timing and their errors).
pub trait SyncFiles {
    /// Syncs every file; the future completes once all are durable, or with the first error.
    fn sync_all(
        &self,
        files: Vec<Arc<File>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>>>>;

    /// Whether the actor's other blocking file work (checkpoints, compaction) runs in place
    /// rather than on the blocking pool: a simulated disk's does, so that it completes in the
    /// same order on every run.
    fn runs_inline(&self) -> bool {
        false
    }
}

impl Flusher {
    /// Builds the flusher for the calling shard; must run inside its tokio runtime.
    pub fn new(backend: IoBackend) -> io::Result<Self> {
        match backend {
            IoBackend::Blocking => Ok(Flusher::Blocking),
            IoBackend::Syncfs => Ok(Flusher::Syncfs),
            IoBackend::IoUring => Ok(Flusher::Uring(Uring::start()?)),
            IoBackend::Auto => Ok(Uring::start()
                .map(Flusher::Uring)
                .unwrap_or(Flusher::Blocking)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Flusher::Uring(_) => "io_uring",
            Flusher::Blocking => "blocking-pool fdatasync",
            Flusher::Syncfs => "syncfs",
            Flusher::Other(_) => "other",
        }
    }

    /// Runs blocking file work off the shard thread (in place on a disk that
    /// [`SyncFiles::runs_inline`]).
    pub async fn offload<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        match self {
            Flusher::Other(disk) if disk.runs_inline() => Ok(work()),
            _ => tokio::task::spawn_blocking(work)
                .await
                .map_err(io::Error::other),
        }
    }

    /// fdatasyncs every file, concurrently. Completed syncs are reported to the power-loss
    /// ledger when one is enabled (tests only, see `log::power`).
    pub async fn sync_all(&self, files: Vec<Arc<File>>) -> io::Result<()> {
        if power::skip_fsync() {
            // UNSAFE, tests only (`--unsafe-skip-fsync-for-tests`): acknowledge unsynced data.
            return Ok(());
        }
        match self {
            Flusher::Other(disk) => disk.sync_all(files).await,
            Flusher::Blocking => {
                let handle = tokio::task::spawn_blocking(move || {
                    files.iter().try_for_each(|f| power::sync_file(f, false))
                });
                handle.await.map_err(io::Error::other)?
            }
            Flusher::Syncfs => {
                let tokens = files
                    .iter()
                    .map(|f| {
                        crate::log::failpoint::check_sync(f)?;
                        Ok(power::before_sync(f))
                    })
                    .collect::<io::Result<Vec<_>>>()?;
                crate::syncfs::sync_files(files).await?;
                tokens.into_iter().for_each(power::after_sync);
                Ok(())
            }
            Flusher::Uring(u) => {
                let waits: Vec<_> = files
                    .into_iter()
                    .map(|f| {
                        crate::log::failpoint::check_sync(&f)?;
                        let token = power::before_sync(&f);
                        u.fdatasync(f).map(|w| (w, token))
                    })
                    .collect::<io::Result<_>>()?;
                for (w, token) in waits {
                    let res = w
                        .await
                        .map_err(|_| io::Error::other("io_uring driver stopped"))?;
                    if res < 0 {
                        return Err(io::Error::from_raw_os_error(-res));
                    }
                    power::after_sync(token);
                }
                Ok(())
            }
        }
    }
}

/// A submitted operation: the file it uses (kept open until completion) and its waiter.
type InFlight = (Arc<File>, oneshot::Sender<i32>);

/// A per-shard io_uring ring and the files its in-flight operations use.
pub struct Uring {
    ring: RefCell<IoUring>,
    inflight: RefCell<HashMap<u64, InFlight>>,
    next_id: std::cell::Cell<u64>,
}

impl Uring {
    fn start() -> io::Result<Rc<Self>> {
        let ring = IoUring::new(256)?;
        // SAFETY: eventfd returns a new descriptor we own, or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh, valid descriptor owned by nobody else.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        // Probe that the kernel really runs operations (seccomp may allow setup but not submit).
        let u = Rc::new(Uring {
            ring: RefCell::new(ring),
            inflight: RefCell::new(HashMap::new()),
            next_id: std::cell::Cell::new(1),
        });
        u.ring.borrow().submitter().submit()?;
        // SAFETY: `efd` is an OwnedFd, so the descriptor stays valid until AsyncFd drops it.
        let events = unsafe { AsyncFd::register(efd) }.map_err(io::Error::from)?;
        let driver = u.clone();
        tokio::task::spawn_local(async move { driver.drive(events).await });
        Ok(u)
    }

    fn fdatasync(&self, file: Arc<File>) -> io::Result<oneshot::Receiver<i32>> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let sqe = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(id);
        let (tx, rx) = oneshot::channel();
        let mut ring = self.ring.borrow_mut();
        // SAFETY: the file stays open in `inflight` until its completion is reaped.
        while unsafe { ring.submission().push(&sqe) }.is_err() {
            ring.submit()?;
        }
        self.inflight.borrow_mut().insert(id, (file, tx));
        ring.submit()?;
        Ok(rx)
    }

    async fn drive(self: Rc<Self>, events: AsyncFd<OwnedFd>) {
        loop {
            let Ok(mut guard) = events.readable().await else {
                return;
            };
            let mut counter = [0u8; 8];
            // SAFETY: reading 8 bytes from an eventfd into an 8-byte buffer.
            let _ =
                unsafe { libc::read(events.get_ref().as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
            guard.clear_ready();
            let done: Vec<(u64, i32)> = {
                let mut ring = self.ring.borrow_mut();
                ring.completion()
                    .map(|c| (c.user_data(), c.result()))
                    .collect()
            };
            for (id, res) in done {
                if let Some((_file, tx)) = self.inflight.borrow_mut().remove(&id) {
                    let _ = tx.send(res);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn both_backends_sync_files() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let dir = tempfile::tempdir().unwrap();
            for backend in [IoBackend::Auto, IoBackend::Blocking, IoBackend::Syncfs] {
                let f = dir.path().join(format!("{backend:?}"));
                let mut file = File::create(&f).unwrap();
                file.write_all(b"hello").unwrap();
                let flusher = Flusher::new(backend).unwrap();
                let files = vec![Arc::new(file), Arc::new(File::open(&f).unwrap())];
                flusher.sync_all(files).await.unwrap();
            }
        });
    }
}
