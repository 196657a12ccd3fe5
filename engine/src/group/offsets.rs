//! Committed offsets: OffsetCommit (validated by the group's state machine, appended to
//! `__consumer_offsets` with acks=all, then applied), OffsetFetch, DeleteGroups and
//! OffsetDelete (tombstones first), and the offsets an unmounted topic carries.

use tokio::time::Instant;

use super::descriptions::{FetchedTopic, GroupOffset};
use super::state::Group;
use super::store::OffsetEntry;
use super::store::{self, Key, OffsetValue, Value};
use super::GroupError;
use super::{Coordinator, MAX_METADATA_BYTES};
use crate::internal_topic::TopicHost;

/// An OffsetCommit for one group.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The request's version (KIP-848 members must commit with v9+).
    pub version: i16,
    /// The member's generation (classic) or member epoch (consumer protocol); -1 for a simple
    /// commit.
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// The outcome for each partition of each topic a request named, in the request's order.
pub type PartitionResults = Vec<(String, Vec<(i32, Result<(), GroupError>)>)>;

/// One partition's commit, as OffsetCommit carries it.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

impl Coordinator {
    /// OffsetCommit: validates, appends to `__consumer_offsets` (acks=all), then applies.
    pub async fn commit(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
        r: CommitRequest,
    ) -> PartitionResults {
        let CommitRequest {
            version,
            generation,
            member_id,
            instance_id,
            topics,
        } = r;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
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
        {
            let mut groups = self.groups.lock();
            let res = match groups.get_mut(group_id) {
                // KIP-848 groups: the generation field carries the member epoch (v9).
                Some(Group {
                    consumer: Some(c), ..
                }) if !c.is_empty() => {
                    if generation < 0 && member_id.is_empty() {
                        Err(GroupError::UnknownMemberId)
                    } else {
                        c.validate_commit(member_id, generation, version)
                    }
                }
                Some(g) => g.validate_commit(generation, member_id, instance_id, Instant::now()),
                // Kafka: commits for a group it does not know are simple commits (generation
                // -1), or come from a generation that no longer exists.
                None if generation < 0 => Ok(()),
                None => Err(GroupError::IllegalGeneration),
            };
            if let Err(e) = res {
                return all(e);
            }
        }
        let (entries, mut answers) = commit_records(b, group_id, &topics, b.now_ms());
        if entries.is_empty() {
            return answers;
        }
        match store::append(b, group_id, &entries).await {
            Ok(base) => {
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
                        g.apply_offset(&topic, partition, OffsetEntry::stored(v, base + i as i64));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "offset commit not persisted");
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

    /// Every group's committed offsets for `topic` (carried along when a topic is unmounted).
    pub fn committed_for_topic(&self, topic: &str) -> Vec<GroupOffset> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .iter()
            .flat_map(|(id, g)| {
                g.offsets
                    .iter()
                    .filter(|((t, _), _)| t == topic)
                    .map(|((_, p), e)| GroupOffset {
                        group: id.clone(),
                        partition: *p,
                        offset: e.offset,
                        metadata: e.metadata.clone(),
                    })
            })
            .collect();
        out.sort_by(|a, b| (&a.group, a.partition).cmp(&(&b.group, b.partition)));
        out
    }

    /// OffsetFetch for one group: the requested partitions, or every committed one (`None`).
    pub fn fetch(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<FetchedTopic> {
        let groups = self.groups.lock();
        Self::fetch_locked(groups.get(group_id), topics)
    }

    fn fetch_locked(
        g: Option<&Group>,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<FetchedTopic> {
        match topics {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| {
                            let e = g.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned());
                            (p, e)
                        })
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut out: Vec<FetchedTopic> = Vec::new();
                for ((t, p), e) in g.iter().flat_map(|g| g.offsets.iter()) {
                    match out.last_mut() {
                        Some((last, parts)) if last == t => parts.push((*p, Some(e.clone()))),
                        _ => out.push((t.clone(), vec![(*p, Some(e.clone()))])),
                    }
                }
                out
            }
        }
    }

    /// [`Coordinator::fetch`], and which of the partitions answered have a transactional
    /// commit pending (OffsetFetch `require_stable` answers UNSTABLE_OFFSET_COMMIT for them),
    /// seen at once.
    pub fn fetch_stable(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> (Vec<FetchedTopic>, std::collections::HashSet<(String, i32)>) {
        let groups = self.groups.lock();
        let pending = groups
            .get(group_id)
            .map(|g| g.pending_partitions())
            .unwrap_or_default();
        let fetched = Self::fetch_locked(groups.get(group_id), topics);
        let unstable = fetched
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, _)| (t.clone(), *p)))
            .filter(|k| pending.contains(k))
            .collect();
        (fetched, unstable)
    }

    /// OffsetFetch v9 member checks for a consumer group.
    pub fn validate_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), GroupError> {
        let groups = self.groups.lock();
        match groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(c) => c.validate_fetch(member_id, epoch),
            None => Ok(()),
        }
    }

    /// DeleteGroups for one group: only empty groups; writes tombstones first.
    pub async fn delete(&self, b: &dyn TopicHost, group_id: &str) -> Result<(), GroupError> {
        self.check(b, group_id)?;
        let entries: Vec<(Key, Option<Value>)> = {
            let groups = self.groups.lock();
            let g = groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
            if !g.is_empty() {
                return Err(GroupError::NonEmptyGroup);
            }
            g.offsets
                .keys()
                .map(|(t, p)| {
                    (
                        Key::Offset {
                            group: group_id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                        },
                        None,
                    )
                })
                .chain([
                    (Key::Group(group_id.to_string()), None),
                    (Key::Consumer(group_id.to_string()), None),
                ])
                .collect()
        };
        if let Err(e) = store::append(b, group_id, &entries).await {
            tracing::warn!(group = group_id, error = %e, "group deletion not persisted");
            return Err(GroupError::from(&e));
        }
        let mut groups = self.groups.lock();
        if groups.get(group_id).is_some_and(|g| g.is_empty()) {
            groups.remove(group_id);
        }
        Ok(())
    }

    /// A topic was deleted (or unmounted, its offsets carried in its manifest): its committed
    /// offsets go from every group this broker serves, as Kafka's coordinator does on
    /// partition deletion. Else a new topic of the same name would resume a group at the old
    /// offsets, silently skipping the records below them. The tombstones are queued on each
    /// group's partition without waiting (this runs in the controller's apply loop in a
    /// cluster); a later commit to that partition is ordered after them.
    pub fn forget_topic(&self, b: &dyn TopicHost, topic: &str) {
        let Some(t) = b.topics().get(store::OFFSETS_TOPIC) else {
            return;
        };
        let n = t.partitions.len();
        let mut by_group: std::collections::BTreeMap<String, Vec<(Key, Option<Value>)>> =
            Default::default();
        for o in self.committed_for_topic(topic) {
            if self.check(b, &o.group).is_err() {
                continue;
            }
            by_group.entry(o.group.clone()).or_default().push((
                Key::Offset {
                    group: o.group,
                    topic: topic.to_string(),
                    partition: o.partition,
                },
                None,
            ));
        }
        for (group, entries) in by_group {
            let Some(h) = t.partition(store::partition_for(&group, n)) else {
                continue;
            };
            let sent = store::send(h, &entries, b.now_ms());
            if let Some(g) = self.groups.lock().get_mut(&group) {
                g.offsets.retain(|(t, _), _| t != topic);
                g.forget_pending_topic(topic);
            }
            let topic = topic.to_string();
            tokio::spawn(async move {
                if !matches!(sent.await, Ok(Ok(_))) {
                    tracing::warn!(
                        group,
                        topic,
                        "offsets of a deleted topic not removed from __consumer_offsets"
                    );
                }
            });
        }
    }

    /// OffsetDelete: removes committed offsets of topics the group is not subscribed to.
    pub async fn delete_offsets(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<PartitionResults, GroupError> {
        self.check(b, group_id)?;
        let mut answers = Vec::new();
        let mut entries = Vec::new();
        {
            let groups = self.groups.lock();
            let g = groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
            let subscribed = if g.is_empty() {
                Some(Vec::new())
            } else {
                subscribed_topics(g)
            };
            for (t, ps) in topics {
                let topic = b.topics().get(&t);
                let mut outcomes = Vec::new();
                for p in ps {
                    let outcome = if topic.as_ref().and_then(|tp| tp.partition(p)).is_none() {
                        Err(GroupError::UnknownTopicOrPartition)
                    } else if subscribed.as_ref().is_none_or(|s| s.contains(&t)) {
                        // Non-consumer groups with members cannot be checked: refuse.
                        Err(GroupError::GroupSubscribedToTopic)
                    } else {
                        if g.offsets.contains_key(&(t.clone(), p)) {
                            entries.push((
                                Key::Offset {
                                    group: group_id.to_string(),
                                    topic: t.clone(),
                                    partition: p,
                                },
                                None,
                            ));
                        }
                        Ok(())
                    };
                    outcomes.push((p, outcome));
                }
                answers.push((t, outcomes));
            }
        }
        if entries.is_empty() {
            return Ok(answers);
        }
        if let Err(e) = store::append(b, group_id, &entries).await {
            tracing::warn!(group = group_id, error = %e, "offset deletion not persisted");
            return Err(GroupError::from(&e));
        }
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get_mut(group_id) {
            for (k, _) in entries {
                if let Key::Offset {
                    topic, partition, ..
                } = k
                {
                    // Kafka drops the pending transactional commits of a deleted offset too.
                    let pids: Vec<i64> = g.pending_txn.keys().copied().collect();
                    for pid in pids {
                        g.drop_pending(pid, &topic, partition);
                    }
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Ok(answers)
    }
}

/// The topics the members of `g` subscribe to: a KIP-848 group's subscriptions, or a classic
/// `consumer` group's when every member's metadata decodes (ConsumerProtocolSubscription).
fn subscribed_topics(g: &Group) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if let Some(c) = g.consumer.as_ref().filter(|c| !c.is_empty()) {
        return Some(c.subscribed_topics());
    }
    if g.protocol_type.as_deref() != Some("consumer") || g.members.is_empty() {
        return None;
    }
    let mut topics = Vec::new();
    for m in g.members.values() {
        let mut buf = m.metadata(g.protocol_name.as_deref());
        if buf.len() < 2 {
            return None;
        }
        let version = i16::from_be_bytes([buf[0], buf[1]]);
        let _ = bytes::Buf::get_i16(&mut buf);
        let sub = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)).ok()?;
        topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
    }
    Some(topics)
}

/// The offset records of a commit, and each partition's answer so far: an unknown partition or
/// metadata over [`MAX_METADATA_BYTES`] is refused, the rest become records (OffsetCommit and
/// TxnOffsetCommit alike).
pub(super) fn commit_records(
    b: &dyn TopicHost,
    group_id: &str,
    topics: &[(String, Vec<CommitPartition>)],
    now_ms: i64,
) -> (Vec<(Key, Option<Value>)>, PartitionResults) {
    let mut entries = Vec::new();
    let mut answers: PartitionResults = Vec::new();
    for (t, ps) in topics {
        let topic = b.topics().get(t);
        let mut outcomes = Vec::with_capacity(ps.len());
        for p in ps {
            let outcome = if topic
                .as_ref()
                .and_then(|tp| tp.partition(p.partition))
                .is_none()
            {
                Err(GroupError::UnknownTopicOrPartition)
            } else if p
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                Err(GroupError::OffsetMetadataTooLarge)
            } else {
                entries.push((
                    Key::Offset {
                        group: group_id.to_string(),
                        topic: t.clone(),
                        partition: p.partition,
                    },
                    Some(Value::Offset(OffsetValue {
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        commit_timestamp: now_ms,
                        metadata: p.metadata.clone(),
                    })),
                ));
                Ok(())
            };
            outcomes.push((p.partition, outcome));
        }
        answers.push((t.clone(), outcomes));
    }
    (entries, answers)
}
