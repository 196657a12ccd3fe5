//! Transactional offset commits (TxnOffsetCommit, KIP-98; fencing by member as KIP-447): the
//! offsets go to the group's `__consumer_offsets` partition as ONE transactional batch of the
//! producer, and stay pending per (group, producer id), invisible to OffsetFetch, until the
//! transaction's marker is written there ([`Coordinator::complete_txn`]): a commit applies them
//! (unless a newer commit by log position is already applied), an abort drops them. A replay
//! does the same from the log (`ownership::Rebuild`).

use std::collections::{BTreeMap, HashSet};

use tokio::time::Instant;

use super::offsets::{CommitPartition, PartitionResults};
use super::state::Group;
use super::store::{self, Key, OffsetEntry, Value};
use super::{Coordinator, GroupError};
use crate::internal_topic::TopicHost;
use crate::partition::verify::VerifyError;

/// One producer's pending offsets in one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingTxn {
    /// The `__consumer_offsets` partition they were written to (where the marker will be).
    pub partition: i32,
    pub offsets: BTreeMap<(String, i32), OffsetEntry>,
}

/// A TxnOffsetCommit for one group.
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// v3+ (KIP-447): the member's generation, -1 when not given.
    pub generation: i32,
    /// v3+: empty when not given.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

impl Group {
    /// Records a transactional commit of `producer_id` as pending (the newer by log position
    /// wins when the transaction commits the same partition twice).
    pub fn add_pending(
        &mut self,
        producer_id: i64,
        offsets_partition: i32,
        topic: String,
        partition: i32,
        e: OffsetEntry,
    ) {
        let p = self.pending_txn.entry(producer_id).or_default();
        p.partition = offsets_partition;
        match p.offsets.get(&(topic.clone(), partition)) {
            Some(cur) if cur.log_offset > e.log_offset => {}
            _ => {
                p.offsets.insert((topic, partition), e);
            }
        }
    }

    /// Forgets one pending offset of `producer_id`.
    pub fn drop_pending(&mut self, producer_id: i64, topic: &str, partition: i32) {
        if let Some(p) = self.pending_txn.get_mut(&producer_id) {
            p.offsets.remove(&(topic.to_string(), partition));
        }
    }

    /// Applies (commit) or drops (abort) the pending offsets of `producer_id` written to
    /// `offsets_partition`; whether there were any.
    pub fn complete_pending(
        &mut self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> bool {
        if self
            .pending_txn
            .get(&producer_id)
            .is_none_or(|p| p.partition != offsets_partition)
        {
            return false;
        }
        let Some(p) = self.pending_txn.remove(&producer_id) else {
            return false;
        };
        if commit {
            for ((t, part), e) in p.offsets {
                self.apply_offset(&t, part, e);
            }
        }
        true
    }

    /// The partitions with a transactional commit not yet committed or aborted.
    pub fn pending_partitions(&self) -> HashSet<(String, i32)> {
        self.pending_txn
            .values()
            .flat_map(|p| p.offsets.keys().cloned())
            .collect()
    }

    /// Forgets the pending offsets of `topic` (deleted) in every transaction.
    pub fn forget_pending_topic(&mut self, topic: &str) {
        for p in self.pending_txn.values_mut() {
            p.offsets.retain(|(t, _), _| t != topic);
        }
    }
}

impl Coordinator {
    /// TxnOffsetCommit: validates, appends the offsets as one transactional batch (acks=all),
    /// then keeps them pending until the transaction ends.
    pub async fn txn_commit(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
        r: TxnCommitRequest,
    ) -> PartitionResults {
        let TxnCommitRequest {
            transactional_id,
            producer_id,
            producer_epoch,
            generation,
            member_id,
            instance_id,
            topics,
        } = r;
        let all = |e: GroupError| -> PartitionResults {
            topics
                .iter()
                .map(|(t, ps)| {
                    (
                        t.clone(),
                        ps.iter().map(|p| (p.partition, Err(e))).collect(),
                    )
                })
                .collect()
        };
        if group_id.is_empty() {
            return all(GroupError::InvalidGroupId);
        }
        if let Err(e) = self.check(b, group_id) {
            return all(e);
        }
        if let Err(e) = self.validate_txn_commit(group_id, generation, &member_id, instance_id) {
            return all(e);
        }
        let now_ms = b.now_ms();
        let (entries, mut answers) = super::offsets::commit_records(b, group_id, &topics, now_ms);
        if entries.is_empty() {
            return answers;
        }
        // KIP-890: only into a transaction that includes the group's offsets partition, or
        // a late or stray commit would open a transaction there that nobody ends.
        let verified = match b.topics().get(store::OFFSETS_TOPIC) {
            Some(t) => {
                let p = store::partition_for(group_id, t.partitions.len());
                b.verify_txn(
                    &transactional_id,
                    producer_id,
                    producer_epoch,
                    store::OFFSETS_TOPIC,
                    p,
                )
                .await
            }
            // Created with the first write; AddOffsetsToTxn found the partition, so this is a
            // transaction that never added it.
            None => Err(VerifyError::NotInTransaction),
        };
        if let Err(e) = verified {
            let failed = match e {
                VerifyError::NotInTransaction => GroupError::InvalidTxnState,
                VerifyError::Fenced => GroupError::InvalidProducerEpoch,
                VerifyError::Unavailable(_) => GroupError::CoordinatorNotAvailable,
            };
            for (_, outcomes) in &mut answers {
                for (_, o) in outcomes.iter_mut().filter(|(_, o)| o.is_ok()) {
                    *o = Err(failed);
                }
            }
            return answers;
        }
        match store::append_txn(b, group_id, &entries, producer_id, producer_epoch).await {
            Ok((offsets_partition, base)) => {
                let mut groups = self.groups.lock();
                let g = groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id));
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if let (
                        Key::Offset {
                            topic, partition, ..
                        },
                        Some(Value::Offset(v)),
                    ) = (k, v)
                    {
                        g.add_pending(
                            producer_id,
                            offsets_partition,
                            topic,
                            partition,
                            OffsetEntry::stored(v, base + i as i64),
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "transactional offset commit not persisted");
                let failed = GroupError::from(&e);
                for (_, outcomes) in &mut answers {
                    for (_, o) in outcomes.iter_mut().filter(|(_, o)| o.is_ok()) {
                        *o = Err(failed);
                    }
                }
            }
        }
        answers
    }

    /// Kafka's checks of a transactional commit: a group it does not know accepts commits
    /// without a generation (a simple group is made for them); member fields, when given
    /// (v3+), must name a current member of the current generation.
    fn validate_txn_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<String>,
    ) -> Result<(), GroupError> {
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id) {
            Some(Group {
                consumer: Some(c), ..
            }) if !c.is_empty() => {
                if generation < 0 && member_id.is_empty() && instance_id.is_none() {
                    return Ok(());
                }
                // The member epoch is the generation here (KIP-848 groups); a stale one is
                // ILLEGAL_GENERATION for TxnOffsetCommit, as Kafka answers.
                match c.validate_commit(member_id, generation, 9) {
                    Err(GroupError::StaleMemberEpoch) => Err(GroupError::IllegalGeneration),
                    other => other,
                }
            }
            Some(g) => g.validate_txn_commit(
                generation,
                member_id,
                instance_id.as_deref(),
                Instant::now(),
            ),
            None if generation < 0 => Ok(()),
            None => Err(GroupError::IllegalGeneration),
        }
    }

    /// A transaction marker of `producer_id` was written to partition `partition` of
    /// `__consumer_offsets`: its pending offsets in the groups of that partition are applied
    /// (`commit`) or dropped. While this broker is still loading the partition as its new
    /// leader, the outcome waits for the load to finish.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        if self.clustered {
            let roles = self.roles.lock();
            if matches!(
                roles.get(&partition),
                Some(super::ownership::Role::Loading(_))
            ) {
                self.deferred_txns
                    .lock()
                    .entry(partition)
                    .or_default()
                    .push((producer_id, commit));
                return;
            }
        }
        let mut groups = self.groups.lock();
        let mut ended = 0;
        for g in groups.values_mut() {
            if g.complete_pending(partition, producer_id, commit) {
                ended += 1;
            }
        }
        if ended > 0 {
            tracing::debug!(
                partition,
                producer_id,
                commit,
                groups = ended,
                "transactional offsets completed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::group::store::OffsetValue;
    use crate::group::MAX_METADATA_BYTES;
    use std::sync::Arc;

    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;
    use crate::group::ownership::Rebuild;
    use crate::group::store::Replayed;
    use crate::group::OffsetsRetention;
    use crate::internal_topic::{CreateError, CreateFuture};
    use crate::log::batch::{encode_batch, Compression, NewRecord};
    use crate::log::control::{encode_marker, encode_transactional, ControlType};
    use crate::metrics::Metrics;
    use crate::topics::{Topic, TopicTable};

    /// A single node's topics: `__consumer_offsets` (one partition) and `t` (two), each a
    /// partition actor on this thread's `LocalSet`, as the broker runs them.
    struct Host {
        _dir: tempfile::TempDir,
        topics: TopicTable,
        metrics: Metrics,
    }

    impl TopicHost for Host {
        fn node_id(&self) -> i32 {
            0
        }
        fn topics(&self) -> &TopicTable {
            &self.topics
        }
        fn metrics(&self) -> &Metrics {
            &self.metrics
        }
        fn cluster_size(&self) -> Option<usize> {
            None
        }
        fn partition_leader_epoch(&self, _: &Topic, _: i32) -> (i32, i32) {
            (0, 0)
        }
        fn create_topic<'a>(
            &'a self,
            name: &'a str,
            _: i32,
            _: i16,
            _: &'a [(String, String)],
        ) -> CreateFuture<'a> {
            Box::pin(async move { Err(CreateError::Exists(name.to_string())) })
        }
    }

    fn host() -> Host {
        use crate::config::{ClusterDefaults, TopicConfig};
        use crate::topics::TopicRecord;
        let dir = tempfile::tempdir().unwrap();
        let (topics, _) = TopicTable::load(dir.path(), None).unwrap();
        for (i, (name, n)) in [(store::OFFSETS_TOPIC, 1), ("t", 2)]
            .into_iter()
            .enumerate()
        {
            let rec = TopicRecord::new(
                name,
                uuid::Uuid::from_u128(i as u128 + 1),
                1,
                TopicConfig::default(),
                vec![],
                n,
            );
            let resolved = rec.config.resolve(&ClusterDefaults::default());
            let parts = (0..n)
                .map(|p| {
                    let env = crate::partition::Env {
                        shard: 0,
                        flusher: crate::durability::Flusher::Blocking,
                        metrics: Default::default(),
                        clock: Arc::new(crate::time::SystemClock),
                    };
                    let d = dir.path().join(format!("{name}-{p}"));
                    crate::partition::spawn(d, resolved.clone(), env, None, None).unwrap()
                })
                .collect();
            let topic = Topic::new(&rec, resolved, parts);
            topics.insert(rec, topic).unwrap();
        }
        Host {
            _dir: dir,
            topics,
            metrics: Metrics::default(),
        }
    }

    fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f());
    }

    fn part(partition: i32, offset: i64) -> CommitPartition {
        CommitPartition {
            partition,
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    fn txn(pid: i64, parts: Vec<CommitPartition>) -> TxnCommitRequest {
        TxnCommitRequest {
            transactional_id: "t".into(),
            producer_id: pid,
            producer_epoch: 0,
            generation: -1,
            member_id: String::new(),
            instance_id: None,
            topics: vec![("t".into(), parts)],
        }
    }

    /// The committed offset of `t`/`p` OffsetFetch would answer (-1: none).
    fn fetched(c: &Coordinator, group: &str, p: i32) -> i64 {
        let topics = c.fetch(group, Some(vec![("t".into(), vec![p])]));
        topics[0].1[0].1.as_ref().map_or(-1, |e| e.offset)
    }

    fn ok(r: &PartitionResults) -> bool {
        r.iter().all(|(_, ps)| ps.iter().all(|(_, o)| o.is_ok()))
    }

    fn errors(r: &PartitionResults) -> Vec<Result<(), GroupError>> {
        r.iter()
            .flat_map(|(_, ps)| ps.iter().map(|(_, o)| *o))
            .collect()
    }

    #[test]
    fn pending_offsets_are_invisible_until_the_transaction_commits() {
        run(|| async {
            let b = host();
            let c = Coordinator::default();
            let r = c
                .txn_commit(&b, "g", txn(7, vec![part(0, 10), part(1, 20)]))
                .await;
            assert!(ok(&r), "{r:?}");
            assert_eq!((fetched(&c, "g", 0), fetched(&c, "g", 1)), (-1, -1));
            let (_, unstable) = c.fetch_stable("g", Some(vec![("t".into(), vec![0, 1])]));
            assert_eq!(unstable.len(), 2);
            // Another producer's marker, or a marker in another partition, changes nothing.
            c.complete_txn(0, 8, true);
            c.complete_txn(1, 7, true);
            assert_eq!(fetched(&c, "g", 0), -1);
            c.complete_txn(0, 7, true);
            assert_eq!((fetched(&c, "g", 0), fetched(&c, "g", 1)), (10, 20));
            let (_, unstable) = c.fetch_stable("g", None);
            assert!(unstable.is_empty());
            // The batch is one transactional batch of the producer.
            let mut seen = Vec::new();
            store::replay(&b, 0, |r| seen.push(r)).await.unwrap();
            assert_eq!(seen.len(), 2);
            assert!(seen.iter().all(|r| matches!(
                r,
                Replayed::Record {
                    producer_id: Some(7),
                    ..
                }
            )));
        });
    }

    #[test]
    fn an_aborted_transaction_leaves_the_committed_offsets() {
        run(|| async {
            let b = host();
            let c = Coordinator::default();
            let plain = c
                .commit(
                    &b,
                    "g",
                    crate::group::CommitRequest {
                        version: 8,
                        generation: -1,
                        member_id: String::new(),
                        instance_id: None,
                        topics: vec![("t".into(), vec![part(0, 5)])],
                    },
                )
                .await;
            assert!(ok(&plain));
            assert!(ok(&c.txn_commit(&b, "g", txn(7, vec![part(0, 10)])).await));
            assert_eq!(fetched(&c, "g", 0), 5);
            c.complete_txn(0, 7, false);
            assert_eq!(fetched(&c, "g", 0), 5);
            assert!(c.groups.lock()["g"].pending_txn.is_empty());
            // A later commit marker for it finds nothing to apply.
            c.complete_txn(0, 7, true);
            assert_eq!(fetched(&c, "g", 0), 5);
        });
    }

    #[test]
    fn a_committed_transaction_does_not_overwrite_a_newer_plain_commit() {
        run(|| async {
            let b = host();
            let c = Coordinator::default();
            assert!(ok(&c.txn_commit(&b, "g", txn(7, vec![part(0, 10)])).await));
            let plain = c
                .commit(
                    &b,
                    "g",
                    crate::group::CommitRequest {
                        version: 8,
                        generation: -1,
                        member_id: String::new(),
                        instance_id: None,
                        topics: vec![("t".into(), vec![part(0, 3)])],
                    },
                )
                .await;
            assert!(ok(&plain));
            c.complete_txn(0, 7, true);
            assert_eq!(
                fetched(&c, "g", 0),
                3,
                "the plain commit came later in the log"
            );
        });
    }

    #[test]
    fn validation_is_kafkas() {
        run(|| async {
            let b = host();
            let c = Coordinator::default();
            // An unknown group with a generation: no such generation.
            let mut r = txn(7, vec![part(0, 1)]);
            r.generation = 3;
            r.member_id = "m".into();
            assert_eq!(
                errors(&c.txn_commit(&b, "g", r).await),
                [Err(GroupError::IllegalGeneration)]
            );
            assert_eq!(
                errors(&c.txn_commit(&b, "", txn(7, vec![part(0, 1)])).await),
                [Err(GroupError::InvalidGroupId)]
            );
            // Unknown partitions and oversized metadata are refused per partition; the rest
            // is written.
            let mut big = part(0, 1);
            big.metadata = Some("x".repeat(MAX_METADATA_BYTES + 1));
            let mut r = txn(9, vec![big, part(5, 1), part(1, 4)]);
            r.topics.push(("nope".into(), vec![part(0, 1)]));
            assert_eq!(
                errors(&c.txn_commit(&b, "g", r).await),
                [
                    Err(GroupError::OffsetMetadataTooLarge),
                    Err(GroupError::UnknownTopicOrPartition),
                    Ok(()),
                    Err(GroupError::UnknownTopicOrPartition),
                ]
            );
            assert_eq!(
                c.fetch_stable("g", Some(vec![("t".into(), vec![1])]))
                    .1
                    .len(),
                1
            );
        });
    }

    /// A stable classic group with one member, generation 1, static member `i` when given.
    fn stable_group(c: &Coordinator, instance: Option<&str>) -> String {
        use crate::group::state::{JoinRequest, SyncRequest};
        use std::time::Duration;
        let now = Instant::now();
        let mut groups = c.groups.lock();
        let g = groups
            .entry("g".to_string())
            .or_insert_with(|| Group::new("g"));
        let mut join = JoinRequest {
            member_id: String::new(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: instance.is_none(),
        };
        let ready = |p: crate::group::state::Pending<_>| match p {
            crate::group::state::Pending::Ready(j) => j,
            crate::group::state::Pending::Wait(mut rx) => rx.try_recv().expect("answered"),
        };
        let mut j: crate::group::state::JoinResult = ready(g.join(join.clone(), now));
        if j.error == Some(GroupError::MemberIdRequired) {
            join.member_id = j.member_id.clone();
            j = ready(g.join(join, now));
        }
        assert_eq!(j.error, None);
        let id = j.member_id;
        let _ = g.sync(
            SyncRequest {
                generation: 1,
                member_id: id.clone(),
                instance_id: instance.map(str::to_string),
                assignments: vec![(id.clone(), Bytes::new())],
                ..Default::default()
            },
            now,
        );
        if let Some((v, _)) = g.take_store() {
            g.stored(v.generation, Ok(()), now);
        }
        assert_eq!(g.generation, 1);
        id
    }

    #[test]
    fn members_are_fenced_as_kip_447_says() {
        run(|| async {
            let b = host();
            let c = Coordinator::default();
            let id = stable_group(&c, Some("i"));
            let with = |generation: i32, member: &str, instance: Option<&str>| {
                let mut r = txn(7, vec![part(0, 1)]);
                r.generation = generation;
                r.member_id = member.to_string();
                r.instance_id = instance.map(str::to_string);
                r
            };
            let cases = [
                (with(0, &id, Some("i")), GroupError::IllegalGeneration),
                (with(1, "other", None), GroupError::UnknownMemberId),
                (with(1, "other", Some("i")), GroupError::FencedInstanceId),
            ];
            for (r, e) in cases {
                assert_eq!(errors(&c.txn_commit(&b, "g", r).await), [Err(e)]);
            }
            // The member of the current generation, and a commit without member fields (before
            // v3) from a group with members, are accepted.
            assert!(ok(&c.txn_commit(&b, "g", with(1, &id, Some("i"))).await));
            let mut old = txn(8, vec![part(1, 1)]);
            old.producer_epoch = 0;
            assert!(ok(&c.txn_commit(&b, "g", old).await));
        });
    }

    #[test]
    fn the_coordinator_errors_are_offset_commits() {
        run(|| async {
            let b = host();
            // In a cluster, a group of a partition this broker does not serve yet.
            let c = Coordinator::new(true, OffsetsRetention::default());
            assert_eq!(
                errors(&c.txn_commit(&b, "g", txn(7, vec![part(0, 1)])).await),
                [Err(GroupError::CoordinatorLoadInProgress)]
            );
        });
    }

    #[test]
    fn outcomes_for_a_partition_being_loaded_wait_for_the_load() {
        let c = Coordinator::new(true, OffsetsRetention::default());
        c.roles
            .lock()
            .insert(0, crate::group::ownership::Role::Loading(3));
        c.complete_txn(0, 7, true);
        c.complete_txn(1, 8, false);
        assert_eq!(c.deferred_txns.lock().get(&0), Some(&vec![(7, true)]));
        assert_eq!(c.deferred_txns.lock().get(&1), None);
    }

    /// The entries of encoded batches as a replay sees them, offsets counted from 0.
    fn entries(batches: &[Bytes]) -> Vec<Replayed> {
        let mut out = Vec::new();
        let mut next = 0;
        for bytes in batches {
            let mut buf = bytes.clone();
            for mut r in RecordBatchDecoder::decode(&mut buf).unwrap().records {
                r.offset = next;
                next += 1;
                out.extend(Replayed::from_record(r));
            }
        }
        out
    }

    fn offset_record(group: &str, p: i32, offset: i64) -> NewRecord {
        NewRecord {
            key: Some(
                Key::Offset {
                    group: group.into(),
                    topic: "t".into(),
                    partition: p,
                }
                .encode(),
            ),
            value: Some(
                Value::Offset(OffsetValue {
                    offset,
                    leader_epoch: -1,
                    commit_timestamp: 1,
                    metadata: None,
                })
                .encode(),
            ),
            timestamp: 1,
            headers: vec![],
        }
    }

    fn rebuild(batches: &[Bytes]) -> HashMap<String, Group> {
        let mut r = Rebuild::new(0, Instant::now());
        for e in entries(batches) {
            r.apply(e);
        }
        r.finish()
    }

    fn offset_of(groups: &HashMap<String, Group>, group: &str, p: i32) -> Option<i64> {
        groups[group]
            .offsets
            .get(&("t".to_string(), p))
            .map(|e| e.offset)
    }

    #[test]
    fn replay_applies_a_transaction_only_when_its_commit_marker_follows() {
        let tx = |pid, recs: &[NewRecord]| encode_transactional(recs, pid, 0).unwrap();
        let marker = |pid, t| encode_marker(pid, 0, t, 0, 1);
        let plain = |recs: &[NewRecord]| encode_batch(recs, Compression::None).unwrap();
        let groups = rebuild(&[
            plain(&[offset_record("g", 0, 1)]),
            // Committed: applied at its marker.
            tx(7, &[offset_record("g", 0, 10), offset_record("g", 1, 11)]),
            // Aborted: dropped.
            tx(8, &[offset_record("g", 0, 99), offset_record("h", 0, 99)]),
            marker(7, ControlType::Commit),
            marker(8, ControlType::Abort),
            // No marker yet: pending.
            tx(9, &[offset_record("g", 1, 50), offset_record("h", 1, 51)]),
        ]);
        assert_eq!(offset_of(&groups, "g", 0), Some(10));
        assert_eq!(offset_of(&groups, "g", 1), Some(11));
        let g = &groups["g"];
        assert_eq!(g.pending_txn.keys().collect::<Vec<_>>(), [&9]);
        assert_eq!(g.pending_txn[&9].offsets[&("t".to_string(), 1)].offset, 50);
        assert_eq!(g.pending_txn[&9].partition, 0);
        // A group only a pending transaction names exists, with nothing committed.
        let h = &groups["h"];
        assert!(h.offsets.is_empty());
        assert_eq!(h.pending_txn[&9].offsets.len(), 1);
    }

    #[test]
    fn replay_keeps_a_newer_plain_commit_over_a_transaction_committed_after_it() {
        let groups = rebuild(&[
            encode_transactional(&[offset_record("g", 0, 10)], 7, 0).unwrap(),
            encode_batch(&[offset_record("g", 0, 3)], Compression::None).unwrap(),
            encode_marker(7, 0, ControlType::Commit, 0, 1),
        ]);
        assert_eq!(offset_of(&groups, "g", 0), Some(3));
        assert!(groups["g"].pending_txn.is_empty());
    }

    #[test]
    fn a_loaded_pending_transaction_completes_through_the_coordinator() {
        let groups = rebuild(&[
            encode_transactional(&[offset_record("g", 0, 10)], 7, 0).unwrap(),
            encode_transactional(&[offset_record("g", 1, 20)], 8, 0).unwrap(),
        ]);
        let c = Coordinator::default();
        c.groups.lock().extend(groups);
        assert_eq!(fetched(&c, "g", 0), -1);
        c.complete_txn(0, 7, true);
        c.complete_txn(0, 8, false);
        assert_eq!((fetched(&c, "g", 0), fetched(&c, "g", 1)), (10, -1));
    }

    #[test]
    fn replay_through_the_partition_sees_the_transactional_batch() {
        run(|| async {
            let b = host();
            let c = Coordinator::default();
            assert!(ok(&c.txn_commit(&b, "g", txn(7, vec![part(0, 10)])).await));
            // A restarted single node: the commit is still pending.
            let again = Coordinator::default();
            again.load(&b).await.unwrap();
            assert_eq!(fetched(&again, "g", 0), -1);
            // Fetching every partition lists committed ones only, as Kafka does.
            assert!(again.fetch_stable("g", None).1.is_empty());
            let one = Some(vec![("t".to_string(), vec![0])]);
            assert_eq!(again.fetch_stable("g", one).1.len(), 1);
            again.complete_txn(0, 7, true);
            assert_eq!(fetched(&again, "g", 0), 10);
        });
    }
}
