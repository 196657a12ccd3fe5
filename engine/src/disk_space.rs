//! Free space on the data directory's volume, and the produce gate that keeps a nearly full
//! disk from becoming a failed one.
//!
//! A full disk is not a storage failure: a replica that hit ENOSPC mid-append would have to
//! stop (`partition::failure`). So produce is refused before that, with KAFKA_STORAGE_ERROR
//! (retriable: clients back off and retry), once the volume's free space falls below
//! `--storage-min-free-bytes` (default: 5% of the volume, at most 1 GiB). Everything else goes
//! on: reads, replication of already accepted data (followers apply through the partition, not
//! through Produce), offset commits, retention, tiering and compaction, which is what frees
//! space. The broker checks once a second and accepts produce again by itself as soon as the
//! free space is back above the minimum.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

/// The default minimum's cap: 5% of a large volume would be far more than a broker needs.
const DEFAULT_MIN_FREE_CAP: u64 = 1 << 30;

pub struct DiskSpace {
    dir: PathBuf,
    min_free: u64,
    free: AtomicU64,
    low: AtomicBool,
    free_gauge: Gauge,
    low_gauge: Gauge,
}

/// `(available to unprivileged writers, volume size)` in bytes.
fn statvfs(dir: &Path) -> io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

impl DiskSpace {
    /// Measures `dir`'s volume once; `min_free` overrides the default minimum.
    pub fn new(
        dir: &Path,
        min_free: Option<u64>,
        free_gauge: Gauge,
        low_gauge: Gauge,
    ) -> io::Result<Arc<DiskSpace>> {
        let (free, size) = statvfs(dir)?;
        let min_free = min_free.unwrap_or((size / 20).min(DEFAULT_MIN_FREE_CAP));
        let d = Arc::new(DiskSpace {
            dir: dir.to_path_buf(),
            min_free,
            free: AtomicU64::new(free),
            low: AtomicBool::new(false),
            free_gauge,
            low_gauge,
        });
        d.set(free);
        Ok(d)
    }

    fn set(&self, free: u64) {
        self.free.store(free, Ordering::Relaxed);
        self.free_gauge.set(free.min(i64::MAX as u64) as i64);
        let low = free < self.min_free;
        self.low_gauge.set(low as i64);
        let was = self.low.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::warn!(dir = %self.dir.display(), free, min_free = self.min_free, "disk nearly full: produce is refused until space frees");
        } else if was && !low {
            tracing::info!(dir = %self.dir.display(), free, min_free = self.min_free, "disk space recovered: produce accepted again");
        }
    }

    /// Measures again (once a second, from [`DiskSpace::watch`]).
    pub fn refresh(&self) -> io::Result<()> {
        let (free, _) = statvfs(&self.dir)?;
        self.set(free);
        Ok(())
    }

    /// Why produce is refused now, if it is.
    pub fn refusal(&self) -> Option<String> {
        if !self.low.load(Ordering::Relaxed) {
            return None;
        }
        Some(format!(
            "disk nearly full: {} MiB free on the data directory's volume, below the minimum of {} MiB (--storage-min-free-bytes); produce resumes once space frees",
            self.free.load(Ordering::Relaxed) >> 20,
            self.min_free >> 20
        ))
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Re-measures every second for as long as the broker runs.
    pub async fn watch(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.refresh() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot measure free disk space");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_is_refused_below_the_minimum_and_accepted_again_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let (free, _) = statvfs(dir.path()).unwrap();
        // A minimum above what is free: refused at once.
        let d = DiskSpace::new(
            dir.path(),
            Some(free * 2 + 1),
            Gauge::default(),
            Gauge::default(),
        )
        .unwrap();
        let why = d.refusal().expect("refused");
        assert!(why.contains("disk nearly full"), "{why}");
        assert_eq!(d.low_gauge.get(), 1);
        // Space frees (simulated by the measurement): accepted again.
        d.set(free * 3);
        assert_eq!(d.refusal(), None);
        assert_eq!(d.low_gauge.get(), 0);
        let d = DiskSpace::new(dir.path(), Some(0), Gauge::default(), Gauge::default()).unwrap();
        assert_eq!(d.refusal(), None);
    }
}
