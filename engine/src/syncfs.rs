//! One `syncfs(2)` per filesystem at a time, shared by every partition of the process.
//!
//! Why: on ext4 an `fdatasync` costs, for every file, a data write, an inode write and a disk
//! cache flush, each a block request (a VM exit on a virtual disk) and, through io_uring, a
//! wakeup of a kernel worker. A shard with six RF=3 partitions syncs twelve files per round
//! (segment and Raft log each), and those syncs were what made six partitions slower than one
//! (benches/README.md, "One syncfs for every partition"). `syncfs` writes every dirty file of
//! the filesystem, writes their inodes (several share an inode-table block) and flushes the
//! cache once: in one call, for every partition that asked meanwhile.
//!
//! Group commit across partitions: a caller's files are durable once a `syncfs` that started
//! after its call has completed. Each filesystem has one thread; it takes every request queued
//! when it starts a `syncfs`, and requests that arrive while it runs wait for the next one.
//!
//! Errors. `syncfs` reports a writeback error of any file of the filesystem since the last call
//! on its descriptor; it fails every caller of that round, since it cannot tell whose data was
//! lost (a disk that loses writes is not trusted for anyone). Each caller's own files are then
//! checked with `sync_file_range(SYNC_FILE_RANGE_WAIT_AFTER)`, which reports that file's
//! writeback errors since the descriptor last checked, as `fdatasync` on it would, and does no
//! I/O of its own: so an error that an earlier round reported to another caller still fails
//! the file it hit. A kernel or sandbox without `syncfs` (ENOSYS, EPERM) gets an `fdatasync` of
//! each file instead.
//!
//! The cost: a `syncfs` also writes whatever else is dirty on the filesystem. Give the data
//! directory its own filesystem, or keep the default (`--io-backend auto`, an `fdatasync` per
//! file) when other heavy writers share it (docs/operations.md).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tokio::sync::oneshot;

/// One caller's files and where its answer goes.
struct Request {
    files: Vec<Arc<File>>,
    /// The round that served it, and the outcome.
    done: oneshot::Sender<(u64, io::Result<()>)>,
}

/// The syncer of one filesystem.
struct FsSyncer {
    queue: Mutex<Vec<Request>>,
    wake: Condvar,
    /// Rounds started: the number of the round being run.
    rounds: AtomicU64,
}

/// Every filesystem's syncer, by device number.
fn syncers() -> &'static Mutex<HashMap<u64, Arc<FsSyncer>>> {
    static SYNCERS: OnceLock<Mutex<HashMap<u64, Arc<FsSyncer>>>> = OnceLock::new();
    SYNCERS.get_or_init(Default::default)
}

/// Makes every file durable: completes once a `syncfs` of each file's filesystem that started
/// after this call has completed and no file reported a writeback error.
pub async fn sync_files(files: Vec<Arc<File>>) -> io::Result<()> {
    let mut by_fs: HashMap<u64, Vec<Arc<File>>> = HashMap::new();
    for f in files {
        by_fs.entry(f.metadata()?.dev()).or_default().push(f);
    }
    let mut answers = Vec::with_capacity(by_fs.len());
    for (dev, files) in by_fs {
        answers.push(syncer_for(dev, &files[0])?.ask(files));
    }
    for a in answers {
        a.await
            .map_err(|_| io::Error::other("the syncfs thread stopped"))?
            .1?;
    }
    Ok(())
}

/// The syncer of device `dev`, started on first use with a descriptor on that filesystem.
fn syncer_for(dev: u64, sample: &File) -> io::Result<Arc<FsSyncer>> {
    let mut all = syncers().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = all.get(&dev) {
        return Ok(s.clone());
    }
    let handle = fs_handle(sample, dev)?;
    let syncer = Arc::new(FsSyncer {
        queue: Mutex::new(Vec::new()),
        wake: Condvar::new(),
        rounds: AtomicU64::new(0),
    });
    let run = syncer.clone();
    std::thread::Builder::new()
        .name("syncfs".into())
        .spawn(move || run.run(handle))?;
    all.insert(dev, syncer.clone());
    Ok(syncer)
}

/// A descriptor to call `syncfs` on: the nearest directory above `sample` on the same
/// filesystem, so that the syncer never keeps a deleted segment's blocks allocated (a directory
/// holds none); the file itself only if no such directory opens.
fn fs_handle(sample: &File, dev: u64) -> io::Result<File> {
    if let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", sample.as_raw_fd())) {
        for dir in path.ancestors().skip(1) {
            if let Ok(d) = File::open(dir) {
                if d.metadata().is_ok_and(|m| m.dev() == dev) {
                    return Ok(d);
                }
            }
        }
    }
    sample.try_clone()
}

impl FsSyncer {
    /// Queues `files` for the next round.
    fn ask(&self, files: Vec<Arc<File>>) -> oneshot::Receiver<(u64, io::Result<()>)> {
        let (done, answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Request { files, done });
        self.wake.notify_one();
        answer
    }

    fn run(&self, fs: File) {
        let mut supported = true;
        loop {
            let round = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                while q.is_empty() {
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                std::mem::take(&mut *q)
            };
            let number = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
            // Every request taken was queued after its caller's writes, so this syncfs,
            // starting now, covers them.
            let shared = if supported {
                // SAFETY: `fs` is an open descriptor for the duration of the call.
                if unsafe { libc::syncfs(fs.as_raw_fd()) } == 0 {
                    Ok(())
                } else {
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::ENOSYS | libc::EPERM) => {
                            tracing::warn!(error = %e, "syncfs unavailable: syncing each file with fdatasync");
                            supported = false;
                            Ok(())
                        }
                        _ => Err(e),
                    }
                }
            } else {
                Ok(())
            };
            for r in round {
                let res = match &shared {
                    Err(e) => Err(io::Error::new(e.kind(), format!("syncfs: {e}"))),
                    Ok(()) if supported => r.files.iter().try_for_each(|f| file_errors(f)),
                    Ok(()) => r.files.iter().try_for_each(|f| f.sync_data()),
                };
                let _ = r.done.send((number, res));
            }
        }
    }
}

/// The writeback errors `file`'s pages met since its descriptor last checked (each reported
/// once per descriptor, as `fdatasync` reports them). Its pages were written by the `syncfs`
/// just completed, so this waits for nothing but pages written since.
fn file_errors(file: &File) -> io::Result<()> {
    // SAFETY: an open descriptor; offset 0 and length 0 mean the whole file.
    let r =
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WAIT_AFTER) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn written(dir: &std::path::Path, name: &str) -> Arc<File> {
        let mut f = File::create(dir.join(name)).unwrap();
        f.write_all(name.as_bytes()).unwrap();
        Arc::new(f)
    }

    #[test]
    fn requests_queued_together_share_one_round_and_later_ones_get_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let first = written(dir.path(), "first");
        let syncer = syncer_for(first.metadata().unwrap().dev(), &first).unwrap();
        let rt = rt();
        // 64 callers queued at once (the syncer cannot take the queue meanwhile): one round
        // serves them all.
        let answers: Vec<_> = {
            let mut queue = syncer.queue.lock().unwrap();
            let answers = (0..64)
                .map(|i| {
                    let (done, answer) = oneshot::channel();
                    let files = vec![written(dir.path(), &format!("f{i}"))];
                    queue.push(Request { files, done });
                    answer
                })
                .collect();
            syncer.wake.notify_one();
            answers
        };
        let rounds: Vec<u64> = rt.block_on(async {
            let mut out = Vec::new();
            for a in answers {
                let (n, res) = a.await.unwrap();
                res.unwrap();
                out.push(n);
            }
            out
        });
        assert!(rounds.iter().all(|&n| n == rounds[0]), "{rounds:?}");
        // A request made after that round completed is served by a later one.
        let (n, res) = rt.block_on(syncer.ask(vec![first])).unwrap();
        res.unwrap();
        assert!(n > rounds[0], "{n} after {}", rounds[0]);
    }

    #[test]
    fn the_syncer_holds_a_directory_not_the_file_it_first_saw() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("topic-0");
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("00000000000000000000.log");
        let f = File::create(&p).unwrap();
        let dev = f.metadata().unwrap().dev();
        // The file and its directory are deleted before the syncer opens its handle.
        std::fs::remove_file(&p).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        let h = fs_handle(&f, dev).unwrap();
        let m = h.metadata().unwrap();
        assert!(m.is_dir(), "the handle is the deleted file itself");
        assert_eq!(m.dev(), dev);
    }

    #[test]
    fn a_deleted_file_is_synced_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gone");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"x").unwrap();
        std::fs::remove_file(&p).unwrap();
        rt().block_on(sync_files(vec![Arc::new(f)])).unwrap();
    }
}
