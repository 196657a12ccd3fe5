//! Three partition actors in one Raft group, with no broker: the network is a closure that
//! hands each message to its addressee's channel unless the test cut that link. The actors run
//! as in production (their logs, Raft logs and syncs on disk), on a paused clock.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Cmd, PartitionError, PartitionHandle, ProduceOk};
use crate::config::{ClusterDefaults, TopicConfig};
use crate::log::batch::{self, BatchHeader, Compression, NewRecord};

type Links = Arc<Mutex<HashSet<(u64, u64)>>>;
type Routes = Arc<Mutex<BTreeMap<u64, mpsc::UnboundedSender<Cmd>>>>;

/// A disk whose syncs fail once told to (EIO), as a failing device's do.
#[derive(Default)]
struct TestDisk {
    failing: std::cell::Cell<bool>,
}

impl crate::durability::SyncFiles for TestDisk {
    fn sync_all(
        &self,
        files: Vec<Arc<std::fs::File>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>>>> {
        let failing = self.failing.get();
        Box::pin(async move {
            if failing {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            tokio::task::spawn_blocking(move || files.iter().try_for_each(|f| f.sync_data()))
                .await
                .map_err(std::io::Error::other)?
        })
    }
}

pub(super) struct Group {
    _dir: tempfile::TempDir,
    disks: BTreeMap<u64, std::rc::Rc<TestDisk>>,
    /// Whether leaders assign batches (the feature level, finalized).
    assigned: Arc<AtomicBool>,
    pub(super) handles: BTreeMap<u64, PartitionHandle>,
    /// Directed links `(from, to)` whose messages are dropped.
    cut: Links,
    /// `(term, index)` of every entry with a payload sent to a follower.
    sent: Arc<Mutex<HashSet<(u64, u64)>>>,
}

pub(super) fn spawn_group(dir: tempfile::TempDir) -> Group {
    spawn_group_with(dir, Default::default())
}

/// A group whose topic has the configs `pairs`.
pub(super) fn spawn_group_with(dir: tempfile::TempDir, pairs: Vec<(&str, &str)>) -> Group {
    let cut = Links::default();
    let routes = Routes::default();
    let sent: Arc<Mutex<HashSet<(u64, u64)>>> = Default::default();
    let defaults = ClusterDefaults {
        retention_check_interval_ms: 1000,
        ..Default::default()
    };
    let config = TopicConfig::from_pairs(pairs).unwrap().resolve(&defaults);
    let assigned = Arc::new(AtomicBool::new(true));
    let mut handles = BTreeMap::new();
    let mut disks = BTreeMap::new();
    for id in 1..=3u64 {
        let (cut, to_routes, sent) = (cut.clone(), routes.clone(), sent.clone());
        let send: crate::raft::SendFn = Arc::new(move |to, m| {
            for e in m.entries.iter().filter(|e| !e.data.is_empty()) {
                sent.lock().unwrap().insert((e.term, e.index));
            }
            if cut.lock().unwrap().contains(&(id, to)) {
                return;
            }
            if let Some(tx) = to_routes.lock().unwrap().get(&to) {
                let _ = tx.send(Cmd::Raft(Box::new(m)));
            }
        });
        let setup = crate::raft::RaftSetup {
            id,
            voters: vec![1, 2, 3],
            dir: dir.path().join(format!("raft-{id}")),
            send,
            leader: Default::default(),
            isr: Default::default(),
            lag_max: Duration::from_secs(30),
            min_insync: 1,
            preferred: 1,
            goal: vec![1, 2, 3],
            reassigning: false,
            adding: false,
            on_reassigned: Arc::new(|_| {}),
            leader_changes: Default::default(),
            rejected: Default::default(),
            chunks: {
                // A snapshot's chunks come from the leader's actor, as over the RPC listener.
                let routes = routes.clone();
                Arc::new(move |from, req| {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    if let Some(leader) = routes.lock().unwrap().get(&from) {
                        let _ = leader.send(Cmd::ReadChunk { req, reply });
                    }
                    tokio::task::spawn_local(async move {
                        let chunk = match answer.await {
                            Ok(Ok(c)) => Ok(c),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("the leader stopped".to_string()),
                        };
                        let _ = tx.send(chunk);
                    });
                    rx
                })
            },
            file_bytes: crate::raft::log_file::FILE_BYTES,
            throttles: Default::default(),
            assigned_entries: assigned.clone(),
            segments: None,
            election_seed: None,
        };
        let disk = std::rc::Rc::new(TestDisk::default());
        disks.insert(id, disk.clone());
        let env = super::Env {
            shard: 0,
            flusher: crate::durability::Flusher::Other(disk),
            metrics: Default::default(),
            clock: Arc::new(crate::time::SystemClock),
        };
        let dir = dir.path().join(format!("log-{id}"));
        let h = super::spawn(dir, config.clone(), env, None, Some(setup)).unwrap();
        routes.lock().unwrap().insert(id, h.tx.clone());
        handles.insert(id, h);
    }
    Group {
        _dir: dir,
        disks,
        assigned,
        handles,
        cut,
        sent,
    }
}

impl Group {
    /// The replica that leads as all of `among` see it, waiting for one of them to.
    pub(super) async fn leader(&self, among: &[u64]) -> u64 {
        for _ in 0..400 {
            let seen: Vec<(i32, i32)> = among
                .iter()
                .map(|id| {
                    let h = &self.handles[id];
                    crate::raft::leader_of(h.raft_leader.as_ref().unwrap())
                })
                .collect();
            if let Some(&(l, _)) = seen.first() {
                if among.contains(&(l as u64)) && seen.iter().all(|s| *s == seen[0]) {
                    return l as u64;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader among {among:?}");
    }

    pub(super) async fn produce(&self, on: u64, batch: Bytes) -> Result<ProduceOk, PartitionError> {
        let batches = batch::split_batches(&batch).unwrap();
        self.handles[&on]
            .ask(|reply| Cmd::Produce {
                batches,
                reply,
                acks_all: true,
                verify: None,
            })
            .await
    }

    /// Every batch replica `id` holds below its high watermark, as stored.
    async fn log_of(&self, id: u64) -> Vec<(BatchHeader, Bytes)> {
        let h = &self.handles[&id];
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let r = h
                .ask(|reply| Cmd::Read {
                    offset,
                    max_bytes: 1 << 20,
                    committed: false,
                    in_place: false,
                    reply,
                })
                .await
                .unwrap();
            let Some(records) = r.records else { break };
            let records = records.into_bytes().unwrap();
            for (hd, b) in batch::split_batches(&records).unwrap() {
                offset = hd.next_offset();
                out.push((hd, b));
            }
        }
        out
    }

    /// Every replica's log, checked to be the same batch for batch, byte for byte.
    pub(super) async fn identical(&self) -> Vec<(BatchHeader, Bytes)> {
        let first = self.log_of(1).await;
        for id in 2..=3 {
            assert_eq!(
                self.log_of(id).await,
                first,
                "replica {id} differs from replica 1"
            );
        }
        first
    }

    /// Sends a produce (acks=all) to replica `on` without waiting for its answer.
    fn send_produce(
        &self,
        on: u64,
        batch: Bytes,
    ) -> tokio::sync::oneshot::Receiver<Result<ProduceOk, PartitionError>> {
        let batches = batch::split_batches(&batch).unwrap();
        let (reply, waiting) = tokio::sync::oneshot::channel();
        let produce = Cmd::Produce {
            batches,
            reply,
            acks_all: true,
            verify: None,
        };
        self.handles[&on]
            .tx
            .send(produce)
            .unwrap_or_else(|_| panic!("replica {on} stopped"));
        waiting
    }

    /// Waits until every replica's high watermark reaches `end`.
    pub(super) async fn settle(&self, end: i64) {
        self.settle_on(&[1, 2, 3], end).await
    }

    /// Waits until the high watermark of each of `ids` reaches `end`.
    async fn settle_on(&self, ids: &[u64], end: i64) {
        for _ in 0..400 {
            if ids
                .iter()
                .all(|id| self.handles[id].marks.borrow().high >= end)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the replicas never reached {end}");
    }

    /// Stops every replica (files kept) and hands back their directory.
    pub(super) async fn stop(self) -> tempfile::TempDir {
        for h in self.handles.values() {
            h.stop(false, false).await;
        }
        self._dir
    }

    /// Bytes of every Raft log file and of every segment file of replica `id`.
    fn disk(&self, id: u64) -> (u64, u64) {
        let size = |dir: std::path::PathBuf, prefix: &str| -> u64 {
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(prefix))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        };
        let root = self._dir.path();
        (
            size(root.join(format!("raft-{id}")), "raft.log"),
            size(root.join(format!("log-{id}")), ".log"),
        )
    }

    fn isolate(&self, id: u64) {
        let mut cut = self.cut.lock().unwrap();
        for other in self.handles.keys().filter(|&&o| o != id) {
            cut.insert((id, *other));
            cut.insert((*other, id));
        }
    }
}

/// The wall clock, to stamp records as a client does: a record from 1970 is past the default
/// retention.ms, and retention deletes it once a checkpoint passes it.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A batch of `n` records, from an idempotent producer when `pid` is given.
pub(super) fn batch_of(n: usize, pid: Option<(i64, i32)>) -> Bytes {
    let records: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            value: Some(Bytes::from(format!("value-{i}"))),
            timestamp: now_ms(),
            ..Default::default()
        })
        .collect();
    let b = batch::encode_batch(&records, Compression::None).unwrap();
    match pid {
        Some((pid, seq)) => batch::with_producer(&b, pid, 0, seq),
        None => b,
    }
}

pub(super) fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, f());
}

#[test]
fn the_leader_assigns_offsets_and_every_replica_stores_the_same_batches() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let leader = g.leader(&[1, 2, 3]).await;
        let mut bases = Vec::new();
        for n in [3, 1, 5] {
            bases.push(
                g.produce(leader, batch_of(n, None))
                    .await
                    .unwrap()
                    .base_offset,
            );
        }
        assert_eq!(bases, [0, 3, 4]);
        g.settle(9).await;
        let log = g.identical().await;
        assert_eq!(log.len(), 3);
        for (h, _) in &log {
            // The leader epoch is the term the leader proposed in.
            assert!(h.partition_leader_epoch >= 1);
        }
    });
}

#[test]
fn a_retried_batch_is_answered_from_the_leaders_state_and_a_gap_is_refused() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let leader = g.leader(&[1, 2, 3]).await;
        let first = g.produce(leader, batch_of(2, Some((7, 0)))).await.unwrap();
        let retry = g.produce(leader, batch_of(2, Some((7, 0)))).await.unwrap();
        assert_eq!((first.base_offset, retry.base_offset), (0, 0));
        let next = g.produce(leader, batch_of(1, Some((7, 2)))).await.unwrap();
        assert_eq!(next.base_offset, 2);
        let gap = g.produce(leader, batch_of(1, Some((7, 9)))).await;
        assert!(matches!(gap, Err(PartitionError::Sequence(_))), "{gap:?}");
        g.settle(3).await;
        // Two entries: the retry was answered without one, the gap refused before proposing.
        assert_eq!(g.sent.lock().unwrap().len(), 2);
        for id in 1..=3 {
            let offsets: Vec<i64> = g
                .log_of(id)
                .await
                .iter()
                .map(|(h, _)| h.base_offset)
                .collect();
            assert_eq!(offsets, [0, 2], "replica {id}");
        }
    });
}

/// The leader's entry reaches both followers, but it is deposed before it learns that: the new
/// leader inherits the entry uncommitted, commits it with its own term's first entry, and then
/// answers the producer's retry with the entry's offsets instead of appending it again.
#[test]
fn a_new_leader_answers_a_retry_of_its_predecessors_uncommitted_batch_once() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let old = g.leader(&[1, 2, 3]).await;
        g.produce(old, batch_of(1, None)).await.unwrap();
        g.settle(1).await;
        // The followers' acknowledgements no longer reach the leader.
        let followers: Vec<u64> = (1..=3).filter(|&i| i != old).collect();
        for &f in &followers {
            g.cut.lock().unwrap().insert((f, old));
        }
        let waiting = g.send_produce(old, batch_of(4, Some((9, 0))));
        // Long enough for the append to reach the followers (the leader resends it anyway).
        tokio::time::sleep(Duration::from_millis(500)).await;
        g.isolate(old);
        let new = g.leader(&followers).await;
        assert_ne!(new, old);
        let retry = g.produce(new, batch_of(4, Some((9, 0)))).await.unwrap();
        assert_eq!(
            retry.base_offset, 1,
            "answered with the inherited entry's offsets"
        );
        let gap = g.produce(new, batch_of(1, Some((9, 5)))).await;
        assert!(matches!(gap, Err(PartitionError::Sequence(_))), "{gap:?}");
        let next = g.produce(new, batch_of(1, Some((9, 4)))).await.unwrap();
        assert_eq!(next.base_offset, 5);
        // The old leader rejoins as a follower; whoever waited on it is told to go elsewhere.
        g.cut.lock().unwrap().clear();
        let answer = waiting.await.unwrap();
        assert!(
            matches!(answer, Err(PartitionError::NotLeader))
                || answer.as_ref().is_ok_and(|ok| ok.base_offset == 1),
            "{answer:?}"
        );
        g.settle(6).await;
        let offsets: Vec<i64> = g
            .identical()
            .await
            .iter()
            .map(|(h, _)| h.base_offset)
            .collect();
        assert_eq!(offsets, [0, 1, 5]);
    });
}

/// A leader that loses its followers before its entry reaches them: the entry is cut when it
/// rejoins, and the producer's retry goes in once, at the new leader.
#[test]
fn a_deposed_leaders_unreplicated_batch_is_cut_and_the_retry_goes_in_once() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let old = g.leader(&[1, 2, 3]).await;
        g.isolate(old);
        let waiting = g.send_produce(old, batch_of(2, Some((5, 0))));
        let followers: Vec<u64> = (1..=3).filter(|&i| i != old).collect();
        let new = g.leader(&followers).await;
        let retry = g.produce(new, batch_of(2, Some((5, 0)))).await.unwrap();
        assert_eq!(retry.base_offset, 0);
        assert_eq!(
            g.produce(new, batch_of(2, Some((5, 0))))
                .await
                .unwrap()
                .base_offset,
            0
        );
        g.cut.lock().unwrap().clear();
        assert!(matches!(
            waiting.await.unwrap(),
            Err(PartitionError::NotLeader)
        ));
        g.settle(2).await;
        for id in 1..=3 {
            let offsets: Vec<i64> = g
                .log_of(id)
                .await
                .iter()
                .map(|(h, _)| h.base_offset)
                .collect();
            assert_eq!(offsets, [0], "replica {id}");
        }
    });
}

/// One log: the batches are written to the segments once; the Raft log records where they are.
#[test]
fn batches_are_written_once_and_the_raft_log_records_where_they_are() {
    run(|| async {
        let g = spawn_group_with(
            tempfile::tempdir().unwrap(),
            vec![("segment.bytes", "200000")],
        );
        let leader = g.leader(&[1, 2, 3]).await;
        let mut end = 0;
        for _ in 0..40 {
            end = g
                .produce(leader, batch_of(2000, None))
                .await
                .unwrap()
                .base_offset
                + 2000;
        }
        g.settle(end).await;
        for id in 1..=3 {
            let (raft, segments) = g.disk(id);
            assert!(
                segments > 500_000,
                "replica {id}: {segments} bytes of segments"
            );
            assert!(
                raft * 20 < segments,
                "replica {id}: raft log {raft} B, segments {segments} B"
            );
        }
        assert_eq!(g.identical().await.len(), 40);
    });
}

/// A restart starts from the segments and the Raft log that points into them: every batch is
/// there, once, producer state included, and the group goes on at the next offset.
#[test]
fn a_restarted_group_keeps_every_batch_once_and_goes_on() {
    run(|| async {
        let g = spawn_group_with(
            tempfile::tempdir().unwrap(),
            vec![("segment.bytes", "100000")],
        );
        let leader = g.leader(&[1, 2, 3]).await;
        for i in 0..10 {
            g.produce(leader, batch_of(1000, Some((3, i * 1000))))
                .await
                .unwrap();
        }
        g.settle(10_000).await;
        let before = g.log_of(1).await;
        let dir = g.stop().await;
        let g = spawn_group_with(dir, vec![("segment.bytes", "100000")]);
        let leader = g.leader(&[1, 2, 3]).await;
        g.settle(10_000).await;
        for id in 1..=3 {
            assert_eq!(g.log_of(id).await, before, "replica {id} after the restart");
        }
        // The producer's state came back with the segments: a retry is answered, not written.
        let retry = g
            .produce(leader, batch_of(1000, Some((3, 9000))))
            .await
            .unwrap();
        assert_eq!(retry.base_offset, 9000);
        let next = g
            .produce(leader, batch_of(5, Some((3, 10_000))))
            .await
            .unwrap();
        assert_eq!(next.base_offset, 10_000);
        g.settle(10_005).await;
        assert_eq!(g.identical().await.len(), 11);
    });
}

/// A leader whose disk fails a sync (EIO) stops: it answers with the storage error, the others
/// elect a leader and go on, and every record acknowledged before is on them.
#[test]
fn a_leader_whose_disk_fails_a_sync_stops_and_no_acknowledged_record_is_lost() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let old = g.leader(&[1, 2, 3]).await;
        for n in [3, 4] {
            g.produce(old, batch_of(n, None)).await.unwrap();
        }
        g.disks[&old].failing.set(true);
        let refused = g.produce(old, batch_of(5, None)).await;
        assert!(
            matches!(refused, Err(PartitionError::Failed(_))),
            "{refused:?}"
        );
        let others: Vec<u64> = (1..=3).filter(|&i| i != old).collect();
        let new = g.leader(&others).await;
        let next = g.produce(new, batch_of(1, None)).await.unwrap();
        // The failed append may have committed on the others: the next one follows it.
        assert!(next.base_offset == 7 || next.base_offset == 12, "{next:?}");
        g.settle_on(&others, next.base_offset + 1).await;
        let logs = [g.log_of(others[0]).await, g.log_of(others[1]).await];
        assert_eq!(logs[0], logs[1]);
        let offsets: Vec<i64> = logs[0].iter().map(|(h, _)| h.base_offset).collect();
        assert_eq!(offsets[..2], [0, 3], "the acknowledged batches");
        let read = g.handles[&old]
            .ask(|reply| Cmd::Read {
                offset: 0,
                max_bytes: 1 << 20,
                committed: false,
                in_place: false,
                reply,
            })
            .await;
        assert!(matches!(read, Err(PartitionError::Failed(_))), "{read:?}");
    });
}

/// A log whose first entries were proposed as the client sent them (before the feature level
/// was finalized) and whose later ones are assigned: every replica holds the same batches, a
/// restart in between keeps them, and once the checkpoint has passed the old entries the new
/// ones are written once.
#[test]
fn entries_proposed_as_sent_then_assigned_make_one_log() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        g.assigned
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let leader = g.leader(&[1, 2, 3]).await;
        for i in 0..5 {
            let ok = g
                .produce(leader, batch_of(10, Some((4, i * 10))))
                .await
                .unwrap();
            assert_eq!(ok.base_offset, i64::from(i) * 10);
        }
        g.assigned.store(true, std::sync::atomic::Ordering::Relaxed);
        // A retry of an entry proposed as sent is answered from the leader's state.
        let retry = g
            .produce(leader, batch_of(10, Some((4, 40))))
            .await
            .unwrap();
        assert_eq!(retry.base_offset, 40);
        for i in 5..10 {
            g.produce(leader, batch_of(10, Some((4, i * 10))))
                .await
                .unwrap();
        }
        g.settle(100).await;
        assert_eq!(g.identical().await.len(), 10);
        let dir = g.stop().await;

        let g = spawn_group(dir);
        g.settle(100).await;
        assert_eq!(g.identical().await.len(), 10);
        // Past the next checkpoints, the entries are placed: the Raft logs barely grow. (By
        // then leadership has gone back to the preferred replica.)
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = g.leader(&[1, 2, 3]).await;
        let before: Vec<(u64, u64)> = (1..=3).map(|id| g.disk(id)).collect();
        let mut end = 100;
        for _ in 0..20 {
            end = g
                .produce(leader, batch_of(2000, None))
                .await
                .unwrap_or_else(|e| panic!("produce to {leader}: {e:?}"))
                .base_offset
                + 2000;
        }
        g.settle(end).await;
        for id in 1..=3u64 {
            let (raft, segments) = g.disk(id);
            let (raft0, segments0) = before[id as usize - 1];
            let (grew, written) = (raft.saturating_sub(raft0), segments - segments0);
            assert!(
                grew * 20 < written,
                "replica {id}: raft log grew {grew} B, segments {written} B"
            );
        }
        assert_eq!(g.identical().await.len(), 30);
    });
}

/// Retention removes segments whose batches were placed; raft-rs forgets those entries, so a
/// follower cut off meanwhile catches up from a snapshot (the leader's segments), not from
/// entries whose bytes are gone.
#[test]
fn retention_frees_placed_segments_and_a_follower_behind_them_gets_a_snapshot() {
    run(|| async {
        let g = spawn_group_with(
            tempfile::tempdir().unwrap(),
            vec![("segment.bytes", "20000"), ("retention.bytes", "40000")],
        );
        let leader = g.leader(&[1, 2, 3]).await;
        let behind = (1..=3).find(|&i| i != leader).unwrap();
        g.isolate(behind);
        let mut end = 0;
        for _ in 0..60 {
            end = g
                .produce(leader, batch_of(100, None))
                .await
                .unwrap()
                .base_offset
                + 100;
        }
        let others: Vec<u64> = (1..=3).filter(|&i| i != behind).collect();
        g.settle_on(&others, end).await;
        // Checkpoints, then retention, on the replicas that kept up.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for &id in &others {
            let start = g.handles[&id].marks.borrow().log_start;
            assert!(start > 0, "replica {id} kept its log from {start}");
        }
        g.cut.lock().unwrap().clear();
        g.settle(end).await;
        let logs: Vec<_> = [others[0], others[1], behind]
            .iter()
            .map(|&id| g.handles[&id].marks.borrow().log_start)
            .collect();
        assert!(
            logs[2] > 0,
            "the follower copied the retained log: starts at {}",
            logs[2]
        );
        let next = g.produce(leader, batch_of(5, None)).await.unwrap();
        assert_eq!(next.base_offset, end);
        g.settle(end + 5).await;
    });
}
