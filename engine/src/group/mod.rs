//! The group coordinator (classic protocol, and the KIP-848 consumer protocol in
//! [`consumer`]): every group's state behind one mutex, durable
//! offsets and group records in `__consumer_offsets` (see [`store`]), consumer lag.
//!
//! Requests arrive on any shard. Each takes the lock briefly to run the group's state machine
//! ([`state::Group`]); waits (JoinGroup until the rebalance completes, a follower's SyncGroup
//! until the leader's) are oneshot channels awaited outside the lock. A ticker on shard 0
//! drives session expiry and rebalance timeouts every [`TICK`]. In a cluster a group is served
//! only by the Raft leader of its `__consumer_offsets` partition ([`Coordinator::check`]); the
//! ticker also follows those leaders, loading and dropping groups. See
//! `docs/consumer-groups.md`.

pub mod consumer;
pub mod state;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::time::{Duration, Instant};

use crate::broker::Broker;
use crate::metrics::LagLabels;
use state::{Group, GroupState, JoinRequest, JoinResult, OffsetEntry, SyncResult};
use store::{Key, OffsetValue, Value, OFFSETS_TOPIC};

/// How often session and rebalance timeouts are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Kafka's `group.min.session.timeout.ms` / `group.max.session.timeout.ms` defaults.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;
/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// One partition's commit, as OffsetCommit carries it.
/// A committed offset of one group, as carried with an unmounted topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub group: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A KIP-848 group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

/// Partitions by topic: (id, name, partitions).
pub type TopicAssignment = Vec<(uuid::Uuid, String, Vec<i32>)>;

#[derive(Debug, Clone)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assignment: TopicAssignment,
    pub target: TopicAssignment,
}

/// Committed offsets of one topic, as OffsetFetch returns them.
pub type FetchedTopic = (String, Vec<(i32, Option<OffsetEntry>)>);

/// Whether this broker coordinates the groups of one `__consumer_offsets` partition (cluster
/// only; on a single node it coordinates every group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    NotLeader,
    /// Replaying the partition as the leader of this term.
    Loading(i32),
    Serving(i32),
}

pub struct Coordinator {
    /// Shared with the tasks that finish a SyncGroup once its group record is committed.
    groups: Arc<Mutex<HashMap<String, Group>>>,
    lag_labels: Mutex<HashSet<LagLabels>>,
    /// In a cluster: groups follow the leaders of `__consumer_offsets` partitions.
    clustered: bool,
    /// By `__consumer_offsets` partition (cluster only; absent = not the leader). Lock order:
    /// `roles` before `groups`.
    roles: Mutex<HashMap<i32, Role>>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Self::new(false)
    }
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

impl Coordinator {
    /// `clustered`: the groups of each `__consumer_offsets` partition are coordinated by its
    /// Raft leader.
    pub fn new(clustered: bool) -> Self {
        Coordinator {
            groups: Arc::default(),
            lag_labels: Mutex::default(),
            clustered,
            roles: Mutex::default(),
        }
    }

    /// Whether this broker may serve requests for `group` now: 0, NOT_COORDINATOR (another
    /// broker leads the group's `__consumer_offsets` partition, or nobody does),
    /// COORDINATOR_LOAD_IN_PROGRESS (this broker leads it but has not replayed it yet).
    pub fn check(&self, b: &Broker, group: &str) -> i16 {
        if !self.clustered {
            return 0;
        }
        let Some(t) = b.topics.get(OFFSETS_TOPIC) else {
            return code(ResponseError::NotCoordinator);
        };
        let p = store::partition_for(group, t.partitions.len());
        let (leader, term) = b.partition_leader_epoch(&t, p);
        if leader != b.node_id() {
            return code(ResponseError::NotCoordinator);
        }
        match self.roles.lock().get(&p) {
            Some(Role::Serving(t)) if *t == term => 0,
            _ => code(ResponseError::CoordinatorLoadInProgress),
        }
    }

    /// The broker this one sees coordinating `group`, when that is another broker (cluster
    /// only): the Raft leader of the group's `__consumer_offsets` partition.
    pub fn coordinator_elsewhere(&self, b: &Broker, group: &str) -> Option<i32> {
        if !self.clustered {
            return None;
        }
        let t = b.topics.get(OFFSETS_TOPIC)?;
        let leader = b.partition_leader(&t, store::partition_for(group, t.partitions.len()));
        (leader >= 0 && leader != b.node_id()).then_some(leader)
    }

    /// Follows the leaders of `__consumer_offsets` partitions (cluster only, from the ticker):
    /// a new leader replays its partition and then serves the partition's groups; a deposed
    /// one drops them.
    fn follow_leader(&self, b: &Arc<Broker>) {
        if !self.clustered {
            return;
        }
        let Some(t) = b.topics.get(OFFSETS_TOPIC) else {
            return;
        };
        let n = t.partitions.len();
        let mut roles = self.roles.lock();
        for p in 0..n as i32 {
            let (leader, term) = b.partition_leader_epoch(&t, p);
            let role = roles.get(&p).copied().unwrap_or(Role::NotLeader);
            if leader != b.node_id() {
                if role != Role::NotLeader {
                    tracing::info!(partition = p, "no longer the coordinator of its groups");
                    roles.remove(&p);
                    // Pending joins and syncs see their senders dropped and answer an error.
                    self.drop_partition(p, n);
                }
                continue;
            }
            if matches!(role, Role::Loading(t) | Role::Serving(t) if t == term) {
                continue;
            }
            roles.insert(p, Role::Loading(term));
            self.drop_partition(p, n);
            let b = b.clone();
            tokio::task::spawn_local(async move {
                let loaded = match load_as_leader(&b, p).await {
                    Ok(groups) => Some(groups),
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "cannot load groups as the new coordinator; retrying");
                        None
                    }
                };
                let mut roles = b.groups.roles.lock();
                if roles.get(&p) != Some(&Role::Loading(term)) {
                    return;
                }
                match loaded {
                    Some(loaded) => {
                        tracing::info!(
                            partition = p,
                            term,
                            groups = loaded.len(),
                            "now the coordinator of its groups"
                        );
                        b.groups.groups.lock().extend(loaded);
                        roles.insert(p, Role::Serving(term));
                    }
                    // The next tick tries again if this broker still leads.
                    None => {
                        roles.remove(&p);
                    }
                }
            });
        }
    }

    /// Forgets the groups of partition `p` of `n`.
    fn drop_partition(&self, p: i32, n: usize) {
        self.groups
            .lock()
            .retain(|id, _| store::partition_for(id, n) != p);
    }

    /// Rebuilds offsets and group records from `__consumer_offsets` (start-up, single node;
    /// in a cluster each partition's leader does it, see [`Coordinator::check`]).
    pub async fn load(&self, b: &Broker) -> Result<(), store::StoreError> {
        if self.clustered {
            return Ok(());
        }
        let n = b
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len());
        let mut groups = HashMap::new();
        for p in 0..n as i32 {
            groups.extend(replay_groups(b, p).await?);
        }
        *self.groups.lock() = groups;
        Ok(())
    }
}

/// A new leader's view: once its own write to the partition is committed, every entry of
/// earlier terms is applied locally, so the replay that follows sees every acknowledged commit.
async fn load_as_leader(b: &Broker, p: i32) -> Result<HashMap<String, Group>, store::StoreError> {
    store::barrier(b, p).await?;
    replay_groups(b, p).await
}

/// Groups and their offsets as `__consumer_offsets` records them, up to its high watermark.
async fn replay_groups(b: &Broker, p: i32) -> Result<HashMap<String, Group>, store::StoreError> {
    let mut groups = HashMap::<String, Group>::new();
    let mut records = 0u64;
    let now = Instant::now();
    store::replay(b, p, |log_offset, key, value| {
        records += 1;
        match (key, value) {
            (
                Key::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(Value::Offset(v)),
            ) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group))
                .apply_offset(&topic, partition, OffsetEntry::stored(v, log_offset)),
            (
                Key::Offset {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (Key::Group(group), Some(Value::Group(v))) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group))
                .restore(v, now),
            (Key::Group(group), None) => {
                groups.remove(&group);
            }
            // A value that does not decode for its key: skip it.
            _ => {}
        }
    })
    .await?;
    if records > 0 {
        tracing::info!(
            groups = groups.len(),
            records,
            partition = p,
            "restored consumer groups from {OFFSETS_TOPIC}"
        );
    }
    Ok(groups)
}

impl Coordinator {
    /// Starts the ticker (session expiry, rebalance timeouts) on shard 0.
    pub fn start_ticker(b: &Arc<Broker>) {
        let weak: Weak<Broker> = Arc::downgrade(b);
        b.shards.run_on(0, move |_| {
            tokio::task::spawn_local(async move {
                let mut every = tokio::time::interval(TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let Some(b) = weak.upgrade() else { return };
                    b.groups.follow_leader(&b);
                    b.groups.tick(&b, Instant::now());
                }
            });
        });
        let weak: Weak<Broker> = Arc::downgrade(b);
        b.metrics.on_scrape(Box::new(move || {
            if let Some(b) = weak.upgrade() {
                b.groups.refresh_lag(&b);
            }
        }));
    }

    pub fn tick(&self, b: &Broker, now: Instant) {
        let mut groups = self.groups.lock();
        for g in groups.values_mut() {
            g.tick(now);
            self.store_record(b, g);
        }
    }

    pub async fn join(&self, b: &Broker, group_id: &str, r: JoinRequest) -> JoinResult {
        let fail = |e: ResponseError| JoinResult {
            error: e.code(),
            generation: -1,
            member_id: r.member_id.clone(),
            ..Default::default()
        };
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let c = self.check(b, group_id);
        if c != 0 {
            return JoinResult {
                error: c,
                ..fail(ResponseError::NotCoordinator)
            };
        }
        let ms = r.session_timeout.as_millis() as i32;
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&ms) {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        // Created before the group exists, so group records can always be written.
        if let Err(e) = store::partition(b, group_id).await {
            tracing::warn!(error = %e, "group coordinator unavailable");
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        let member_id = r.member_id.clone();
        let pending = {
            let mut groups = self.groups.lock();
            let g = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            // KIP-848: a consumer group with members refuses classic members; an empty one
            // becomes a classic group again.
            if g.is_active_consumer_group() {
                return fail(ResponseError::InconsistentGroupProtocol);
            }
            g.consumer = None;
            let p = g.join(r, Instant::now());
            self.store_record(b, g);
            p
        };
        // A join left unanswered: the member was removed, or this broker stopped coordinating
        // the group (then the client must look the coordinator up again).
        pending
            .get(|| JoinResult {
                error: match self.check(b, group_id) {
                    0 => code(ResponseError::UnknownMemberId),
                    c => c,
                },
                generation: -1,
                member_id,
                ..Default::default()
            })
            .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        b: &Broker,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let unknown = || SyncResult {
            error: code(ResponseError::UnknownMemberId),
            ..Default::default()
        };
        let c = self.check(b, group_id);
        if c != 0 {
            return SyncResult {
                error: c,
                ..Default::default()
            };
        }
        let pending = {
            let mut groups = self.groups.lock();
            let Some(g) = groups.get_mut(group_id) else {
                return unknown();
            };
            let p = g.sync(
                generation,
                member_id,
                instance_id,
                protocol_type,
                protocol_name,
                assignments,
                Instant::now(),
            );
            self.store_record(b, g);
            p
        };
        pending
            .get(|| match self.check(b, group_id) {
                0 => unknown(),
                c => SyncResult {
                    error: c,
                    ..Default::default()
                },
            })
            .await
    }

    pub fn heartbeat(
        &self,
        b: &Broker,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let c = self.check(b, group_id);
        if c != 0 {
            return c;
        }
        match self.groups.lock().get_mut(group_id) {
            Some(g) => g.heartbeat(generation, member_id, instance_id, Instant::now()),
            None => code(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup: one error code per (member id, instance id).
    pub fn leave(
        &self,
        b: &Broker,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        let c = self.check(b, group_id);
        if c != 0 {
            return Err(c);
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Err(code(ResponseError::UnknownMemberId));
        };
        let now = Instant::now();
        let codes = members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), now))
            .collect();
        self.store_record(b, g);
        Ok(codes)
    }

    /// OffsetCommit: validates, appends to `__consumer_offsets` (acks=all), then applies.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        b: &Broker,
        version: i16,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        topics: Vec<(String, Vec<CommitPartition>)>,
    ) -> Vec<(String, Vec<(i32, i16)>)> {
        let all = |c: i16| -> Vec<(String, Vec<(i32, i16)>)> {
            topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|p| (p.partition, c)).collect()))
                .collect()
        };
        if group_id.is_empty() {
            return all(code(ResponseError::InvalidGroupId));
        }
        let c = self.check(b, group_id);
        if c != 0 {
            return all(c);
        }
        {
            let mut groups = self.groups.lock();
            let res = match groups.get_mut(group_id) {
                // KIP-848 groups: the generation field carries the member epoch (v9).
                Some(Group {
                    consumer: Some(c), ..
                }) if !c.is_empty() => {
                    if generation < 0 && member_id.is_empty() {
                        Err(ResponseError::UnknownMemberId)
                    } else {
                        c.validate_commit(member_id, generation, version)
                    }
                }
                Some(g) => g.validate_commit(generation, member_id, instance_id, Instant::now()),
                // Kafka: commits for a group it does not know are simple commits (generation
                // -1), or come from a generation that no longer exists.
                None if generation < 0 => Ok(()),
                None => Err(ResponseError::IllegalGeneration),
            };
            if let Err(e) = res {
                return all(e.code());
            }
        }
        let mut entries = Vec::new();
        let mut answers: Vec<(String, Vec<(i32, i16)>)> = Vec::new();
        for (t, ps) in &topics {
            let topic = b.topics.get(t);
            let mut codes = Vec::with_capacity(ps.len());
            for p in ps {
                let c = if topic
                    .as_ref()
                    .and_then(|tp| tp.partition(p.partition))
                    .is_none()
                {
                    code(ResponseError::UnknownTopicOrPartition)
                } else if p
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
                {
                    code(ResponseError::OffsetMetadataTooLarge)
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
                            commit_timestamp: crate::time::now_ms(),
                            metadata: p.metadata.clone(),
                        })),
                    ));
                    0
                };
                codes.push((p.partition, c));
            }
            answers.push((t.clone(), codes));
        }
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
                let failed = store_error_code(&e);
                for (_, codes) in &mut answers {
                    for (_, c) in codes.iter_mut().filter(|(_, c)| *c == 0) {
                        *c = failed;
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
        let g = groups.get(group_id);
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

    /// (group id, protocol type, state, group type) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .values()
            .map(|g| {
                let pt = if g.consumer.is_some() {
                    "consumer".to_string()
                } else {
                    g.protocol_type.clone().unwrap_or_default()
                };
                (g.id.clone(), pt, g.state_name(), g.group_type())
            })
            .collect();
        out.sort();
        out
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        if let Some(c) = &g.consumer {
            // A KIP-848 group through the classic API: members without protocol bytes.
            return Some(GroupDescription {
                state: c.state_name(),
                protocol_type: "consumer".into(),
                protocol_name: c.assignor.clone(),
                members: c
                    .members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: Bytes::new(),
                        assignment: c.classic_assignment(m),
                    })
                    .collect(),
            });
        }
        let proto = g.protocol_name.as_deref();
        Some(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: if g.state == GroupState::Stable {
                g.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(proto),
                    assignment: if g.state == GroupState::Stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(
        &self,
        b: &Broker,
        group_id: &str,
        r: consumer::HeartbeatRequest,
    ) -> consumer::HeartbeatResult {
        let fail = |e: ResponseError, msg: &str| consumer::HeartbeatResult {
            error: e.code(),
            message: Some(msg.to_string()),
            member_id: r.member_id.clone(),
            member_epoch: -1,
            ..Default::default()
        };
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId, "GroupId can't be empty.");
        }
        let c = self.check(b, group_id);
        if c != 0 {
            return consumer::HeartbeatResult {
                error: c,
                message: Some("this broker is not the group's coordinator".into()),
                ..fail(ResponseError::NotCoordinator, "")
            };
        }
        if r.member_epoch == 0 {
            if let Err(e) = store::partition(b, group_id).await {
                tracing::warn!(error = %e, "group coordinator unavailable");
                return fail(
                    ResponseError::CoordinatorNotAvailable,
                    "the group coordinator is not available",
                );
            }
        }
        let lookup = |name: &str| {
            b.topics
                .get(name)
                .map(|t| (t.id, t.partitions.len() as i32))
        };
        let mut groups = self.groups.lock();
        if r.member_epoch != 0 && !groups.contains_key(group_id) {
            return fail(
                ResponseError::UnknownMemberId,
                &format!("group {group_id} has no member {}", r.member_id),
            );
        }
        let created = !groups.contains_key(group_id);
        let g = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        if g.consumer.is_none() {
            if !g.members.is_empty() {
                return fail(
                    ResponseError::GroupIdNotFound,
                    &format!("group {group_id} is a classic group with members"),
                );
            }
            if r.member_epoch != 0 {
                return fail(
                    ResponseError::UnknownMemberId,
                    &format!("group {group_id} has no member {}", r.member_id),
                );
            }
            // An empty classic group becomes a consumer group; its offsets stay.
            g.consumer = Some(consumer::ConsumerGroup::new(g.generation));
        }
        let Some(c) = g.consumer.as_mut() else {
            return fail(ResponseError::GroupIdNotFound, "not a consumer group");
        };
        let res = c.heartbeat(r.clone(), &lookup, Instant::now());
        // A join that failed leaves no trace of a group it would have created.
        if created && res.error != 0 && g.is_empty() && g.offsets.is_empty() {
            groups.remove(group_id);
        }
        res
    }

    /// ConsumerGroupDescribe for one group; `Err` is the error code and message.
    pub fn consumer_describe(
        &self,
        b: &Broker,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, (i16, String)> {
        let c = self.check(b, group_id);
        if c != 0 {
            return Err((c, "this broker is not the group's coordinator".into()));
        }
        let groups = self.groups.lock();
        let Some(g) = groups.get(group_id) else {
            return Err((
                code(ResponseError::GroupIdNotFound),
                format!("group {group_id} does not exist"),
            ));
        };
        let Some(c) = &g.consumer else {
            return Err((
                code(ResponseError::GroupIdNotFound),
                format!("group {group_id} is not a consumer group"),
            ));
        };
        let names =
            |s: &std::collections::BTreeSet<consumer::Tp>| -> Vec<(uuid::Uuid, String, Vec<i32>)> {
                let mut out: Vec<(uuid::Uuid, String, Vec<i32>)> = Vec::new();
                for (id, p) in s {
                    match out.last_mut() {
                        Some((last, _, ps)) if last == id => ps.push(*p),
                        _ => {
                            let name = b
                                .topics
                                .by_id(*id)
                                .map(|t| t.name.clone())
                                .unwrap_or_default();
                            out.push((*id, name, vec![*p]));
                        }
                    }
                }
                out
            };
        Ok(ConsumerGroupDescription {
            state: c.state_name(),
            group_epoch: c.group_epoch,
            assignment_epoch: c.assignment_epoch,
            assignor: c.assignor.clone(),
            members: c
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.clone(),
                    assignment: names(&m.assigned),
                    target: names(&c.target.get(&m.id).cloned().unwrap_or_default()),
                })
                .collect(),
        })
    }

    /// OffsetFetch v9 member checks for a consumer group: 0 or an error code.
    pub fn validate_fetch(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> i16 {
        let groups = self.groups.lock();
        match groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(c) => match c.validate_fetch(member_id, epoch) {
                Ok(()) => 0,
                Err(e) => e.code(),
            },
            None => 0,
        }
    }

    /// DeleteGroups for one group: only empty groups; writes tombstones first.
    pub async fn delete(&self, b: &Broker, group_id: &str) -> i16 {
        let c = self.check(b, group_id);
        if c != 0 {
            return c;
        }
        let entries: Vec<(Key, Option<Value>)> = {
            let groups = self.groups.lock();
            let Some(g) = groups.get(group_id) else {
                return code(ResponseError::GroupIdNotFound);
            };
            if !g.is_empty() {
                return code(ResponseError::NonEmptyGroup);
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
                .chain(std::iter::once((Key::Group(group_id.to_string()), None)))
                .collect()
        };
        if let Err(e) = store::append(b, group_id, &entries).await {
            tracing::warn!(group = group_id, error = %e, "group deletion not persisted");
            return store_error_code(&e);
        }
        let mut groups = self.groups.lock();
        if groups.get(group_id).is_some_and(|g| g.is_empty()) {
            groups.remove(group_id);
        }
        0
    }

    /// OffsetDelete: removes committed offsets of topics the group is not subscribed to.
    pub async fn delete_offsets(
        &self,
        b: &Broker,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<(String, Vec<(i32, i16)>)>, i16> {
        let c = self.check(b, group_id);
        if c != 0 {
            return Err(c);
        }
        let mut answers = Vec::new();
        let mut entries = Vec::new();
        {
            let groups = self.groups.lock();
            let Some(g) = groups.get(group_id) else {
                return Err(code(ResponseError::GroupIdNotFound));
            };
            let subscribed = if g.is_empty() {
                Some(Vec::new())
            } else {
                g.subscribed_topics()
            };
            for (t, ps) in topics {
                let topic = b.topics.get(&t);
                let mut codes = Vec::new();
                for p in ps {
                    let c = if topic.as_ref().and_then(|tp| tp.partition(p)).is_none() {
                        code(ResponseError::UnknownTopicOrPartition)
                    } else if subscribed.as_ref().is_none_or(|s| s.contains(&t)) {
                        // Non-consumer groups with members cannot be checked: refuse.
                        code(ResponseError::GroupSubscribedToTopic)
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
                        0
                    };
                    codes.push((p, c));
                }
                answers.push((t, codes));
            }
        }
        if entries.is_empty() {
            return Ok(answers);
        }
        if let Err(e) = store::append(b, group_id, &entries).await {
            tracing::warn!(group = group_id, error = %e, "offset deletion not persisted");
            return Err(store_error_code(&e));
        }
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get_mut(group_id) {
            for (k, _) in entries {
                if let Key::Offset {
                    topic, partition, ..
                } = k
                {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        Ok(answers)
    }

    /// Sets `icestream_kafka_consumer_group_lag` = high watermark - committed offset.
    pub fn refresh_lag(&self, b: &Broker) {
        let mut now_set = HashSet::new();
        {
            let groups = self.groups.lock();
            for g in groups.values() {
                for ((t, p), e) in &g.offsets {
                    if e.offset < 0 {
                        continue;
                    }
                    let Some(h) = b.topics.get(t).and_then(|tp| tp.partition(*p).cloned()) else {
                        continue;
                    };
                    let high = h.marks.borrow().high;
                    let labels = LagLabels {
                        group: g.id.clone(),
                        topic: t.clone(),
                        partition: p.to_string(),
                    };
                    b.metrics
                        .consumer_group_lag
                        .get_or_create(&labels)
                        .set((high - e.offset).max(0));
                    now_set.insert(labels);
                }
            }
        }
        let mut last = self.lag_labels.lock();
        for stale in last.difference(&now_set) {
            b.metrics.consumer_group_lag.remove(stale);
        }
        *last = now_set;
    }
}

/// The error a client sees when `__consumer_offsets` refused a write: a deposed leader is no
/// longer the coordinator (the client looks it up again); anything else is unavailability.
fn store_error_code(e: &store::StoreError) -> i16 {
    match e {
        store::StoreError::Append(crate::partition::PartitionError::NotLeader) => {
            code(ResponseError::NotCoordinator)
        }
        _ => code(ResponseError::CoordinatorNotAvailable),
    }
}

impl Coordinator {
    /// Writes the group record the group asks for ([`Group::take_store`]). A generation's
    /// assignment is answered to the members only once its record is committed (a task
    /// reports the outcome to the group, whatever becomes of the SyncGroup that started it);
    /// other records are not waited for: losing one in a crash only means a new coordinator
    /// sees an older, still consistent, group.
    fn store_record(&self, b: &Broker, g: &mut Group) {
        let Some((value, wait)) = g.take_store() else {
            return;
        };
        let generation = value.generation;
        let id = g.id.clone();
        let reply = match b.topics.get(OFFSETS_TOPIC) {
            Some(t) => {
                let p = store::partition_for(&id, t.partitions.len());
                store::send(
                    &t.partitions[p as usize],
                    &[(Key::Group(id.clone()), Some(Value::Group(value)))],
                )
            }
            None => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Err(crate::partition::PartitionError::Stopped));
                rx
            }
        };
        if !wait {
            return;
        }
        let groups = self.groups.clone();
        tokio::spawn(async move {
            let result = match reply.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    tracing::warn!(group = %id, generation, error = %e, "group assignment not stored; the group rebalances");
                    Err(store_error_code(&store::StoreError::Append(e)))
                }
                Err(_) => Err(code(ResponseError::CoordinatorNotAvailable)),
            };
            if let Some(g) = groups.lock().get_mut(&id) {
                g.stored(generation, result, Instant::now());
            }
        });
    }
}
