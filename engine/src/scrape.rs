//! Gauges computed when `/metrics` is scraped rather than kept up to date on hot paths:
//! replication health (under-replicated, offline and led partitions), per-topic log sizes on
//! disk and in the remote tier, and the data directory's free space.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Weak};

use crate::broker::Broker;
use crate::metrics::TopicLabel;

/// Registers the collector with the broker's scrape hooks.
pub fn install(b: &Arc<Broker>) {
    let weak: Weak<Broker> = Arc::downgrade(b);
    let seen = parking_lot::Mutex::new(HashSet::<TopicLabel>::new());
    b.metrics.on_scrape(Box::new(move || {
        if let Some(b) = weak.upgrade() {
            refresh_replication(&b);
            refresh_sizes(&b, &mut seen.lock());
            refresh_disk(&b);
        }
    }));
}

fn refresh_replication(b: &Broker) {
    let me = b.node_id();
    // Offline partitions are counted by the controller leader alone, so that summing the
    // gauge over brokers counts each partition once, as Kafka's OfflinePartitionsCount.
    let counts_offline = b
        .cluster
        .as_ref()
        .is_some_and(|c| c.controller_leader() == Some(me));
    let (mut under, mut offline, mut led) = (0i64, 0i64, 0i64);
    for t in b.topics.all() {
        for p in 0..t.partitions.len() {
            let idx = p as i32;
            let (leader, _) = b.partition_leader_epoch(&t, idx);
            if leader == me {
                led += 1;
            }
            let replicas = t.assignments.get(p).map_or(1, |r| r.len().max(1));
            if let Some(view) = t.partitions[p].raft_view.as_ref() {
                let isr = view.read().isr.len();
                // The view is empty unless this replica leads.
                if isr > 0 && isr < replicas {
                    under += 1;
                }
            }
            if counts_offline {
                let alive = b
                    .cluster
                    .as_ref()
                    .is_some_and(|c| leader == me || (leader > 0 && c.members.is_alive(leader)));
                if !alive {
                    offline += 1;
                }
            }
        }
    }
    b.metrics.under_replicated_partitions.set(under);
    b.metrics.offline_partitions.set(offline);
    b.metrics.leader_partitions.set(led);
}

/// Per-topic bytes on local disk (the partition directories' files) and in the remote tier,
/// summed per label (topics past the label cap add up under `other`).
fn refresh_sizes(b: &Broker, seen: &mut HashSet<TopicLabel>) {
    let mut local: HashMap<TopicLabel, i64> = HashMap::new();
    let mut remote: HashMap<TopicLabel, i64> = HashMap::new();
    for t in b.topics.all() {
        let label = b.metrics.topic_label(&t.name);
        // A topic whose name cannot be a directory has none to measure.
        let on_disk = b.topic_dir(&t.name).map_or(0, |d| dir_bytes(&d));
        *local.entry(label.clone()).or_default() += on_disk as i64;
        if let (Some(tier), true) = (&b.remote, t.resolved.log.remote_storage) {
            let bytes: u64 = (0..t.partitions.len() as i32)
                .filter_map(|partition| {
                    tier.extent(&crate::remote::RemotePartition {
                        topic: t.name.clone(),
                        topic_id: t.id,
                        partition,
                    })
                })
                .map(|e| e.bytes)
                .sum();
            *remote.entry(label).or_default() += bytes as i64;
        }
    }
    for (label, v) in &local {
        b.metrics.log_local_bytes.get_or_create(label).set(*v);
    }
    for (label, v) in &remote {
        b.metrics.log_remote_bytes.get_or_create(label).set(*v);
    }
    // Deleted topics' gauges go away (their counters stay, see `TopicLabels`).
    for stale in seen.iter().filter(|l| !local.contains_key(*l)) {
        b.metrics.log_local_bytes.remove(stale);
        b.metrics.log_remote_bytes.remove(stale);
    }
    *seen = local.into_keys().collect();
}

/// Bytes of the files under `dir`, one level of partition directories deep.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn refresh_disk(b: &Broker) {
    if let Some((free, total)) = fs_space(&b.config.data_dir) {
        b.metrics.data_dir_free_bytes.set(free as i64);
        b.metrics.data_dir_total_bytes.set(total as i64);
    }
}

/// `(available to unprivileged users, total)` bytes of the file system holding `path`.
fn fs_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_space_of_a_real_directory() {
        let (free, total) = fs_space(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total);
    }

    #[test]
    fn dir_bytes_counts_nested_files() {
        let d = std::env::temp_dir().join(format!("icestream-scrape-{}", std::process::id()));
        std::fs::create_dir_all(d.join("0")).unwrap();
        std::fs::write(d.join("0").join("a.log"), [0u8; 10]).unwrap();
        std::fs::write(d.join("b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(&d), 15);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
