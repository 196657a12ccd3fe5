//! One consumer group's KIP-848 state machine (ConsumerGroupHeartbeat), free of I/O: every
//! method takes the current time, and topics are looked up through a function the coordinator
//! passes in. See `docs/consumer-groups.md`.
//!
//! - The **group epoch** is bumped whenever what the assignment depends on changes: a member
//!   joins or leaves, a subscription or the preferred assignor changes, a subscribed topic
//!   appears, disappears or grows.
//! - The **target assignment** is computed by the server-side assignor (`uniform`, sticky, or
//!   `range`) for the group epoch; its epoch is the **assignment epoch**.
//! - Each member converges to its target one step at a time (Kafka's CurrentAssignmentBuilder):
//!   partitions it must give up are revoked first, with its member epoch unchanged
//!   (`UnrevokedPartitions`) until a heartbeat's `topic_partitions` no longer lists them; then
//!   it takes the target epoch and the target partitions that nobody else still owns (assigned
//!   or being revoked), waiting in `UnreleasedPartitions` for the rest. So a partition never
//!   has two owners.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::assignor::{assign_range, assign_uniform};
use super::GroupError;

pub use super::assignor::Tp;

/// Kafka's `group.consumer.session.timeout.ms` default.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// The heartbeat interval members are told to use (Kafka's default is 5 s; a shorter one
/// makes reconciliation, which advances one heartbeat at a time, quicker).
pub const HEARTBEAT_INTERVAL_MS: i32 = 1_000;
/// The server-side assignors, the first being the default.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];
/// Kafka's `group.consumer.max.size` default.
pub const MAX_MEMBERS: usize = i32::MAX as usize;
/// The member epoch a member sends to leave the group.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member sends to leave temporarily (keeping its partitions).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// Sorted, without duplicates.
    pub subscribed: Vec<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout: Duration,
    /// Partitions the member may use.
    pub assigned: BTreeSet<Tp>,
    /// Partitions the member was asked to give up and still owns.
    pub revoking: BTreeSet<Tp>,
    /// A static member that left with epoch -2: its place and partitions are kept until its
    /// session times out or its instance id rejoins.
    pub left_temporarily: bool,
    pub(super) session_deadline: Instant,
    pub(super) revocation_deadline: Option<Instant>,
}

/// A ConsumerGroupHeartbeat, as the state machine needs it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Option<Vec<String>>,
    pub regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Vec<Tp>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatResult {
    pub error: Option<GroupError>,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent on full requests and whenever the assigned partitions changed.
    pub assignment: Option<BTreeSet<Tp>>,
}

impl HeartbeatResult {
    pub(super) fn error(e: GroupError, member_id: &str, message: impl Into<String>) -> Self {
        HeartbeatResult {
            error: Some(e),
            message: Some(message.into()),
            member_id: member_id.to_string(),
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// Looks a topic up by name: its id and partition count.
pub type TopicLookup<'a> = &'a dyn Fn(&str) -> Option<(Uuid, i32)>;

#[derive(Debug)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// The assignor the target assignment was last computed with.
    pub assignor: String,
    pub members: BTreeMap<String, Member>,
    pub target: BTreeMap<String, BTreeSet<Tp>>,
    /// Subscribed topics as last seen: name -> (id, partitions).
    pub metadata: BTreeMap<String, (Uuid, i32)>,
    pub session_timeout: Duration,
    /// A digest of what `__consumer_offsets` was last sent for this group
    /// ([`super::consumer_record`]): a heartbeat that changed nothing writes nothing.
    pub(super) stored: Option<u64>,
    /// Set by what may change the record (a heartbeat, an expiry): the group ticker asks for
    /// the record of every group ten times a second, and most have nothing new.
    pub(super) maybe_changed: bool,
}

impl Default for ConsumerGroup {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ConsumerGroup {
    /// A new consumer group; `epoch` carries on from a classic group this one replaces.
    pub fn new(epoch: i32) -> Self {
        ConsumerGroup {
            group_epoch: epoch.max(0),
            assignment_epoch: epoch.max(0),
            assignor: ASSIGNORS[0].to_string(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            session_timeout: SESSION_TIMEOUT,
            stored: None,
            maybe_changed: false,
        }
    }

    /// What `__consumer_offsets` holds for this group is its current state (restored from it).
    pub(super) fn mark_stored(&mut self) {
        self.stored = Some(self.digest());
    }

    /// A digest of everything the group's record holds, without building it (heartbeats
    /// come every second from every member; most change nothing).
    pub(super) fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.group_epoch, self.assignment_epoch, &self.assignor).hash(&mut h);
        (&self.target, &self.metadata, self.session_timeout).hash(&mut h);
        for m in self.members.values() {
            (
                &m.id,
                &m.instance_id,
                &m.rack_id,
                &m.client_id,
                &m.client_host,
            )
                .hash(&mut h);
            (m.epoch, m.previous_epoch, m.state as u8, &m.subscribed).hash(&mut h);
            (&m.server_assignor, m.rebalance_timeout, m.left_temporarily).hash(&mut h);
            (&m.assigned, &m.revoking).hash(&mut h);
        }
        h.finish()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kafka's consumer group states: Empty, Assigning, Reconciling, Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            !m.left_temporarily
                && (m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn subscribed_topics(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// A member's assigned partitions as classic `ConsumerProtocolAssignment` bytes (v0), so
    /// that DescribeGroups readers (the `icestream group` CLI) see who owns what.
    pub fn classic_assignment(&self, m: &Member) -> bytes::Bytes {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let names: BTreeMap<Uuid, &String> =
            self.metadata.iter().map(|(n, (id, _))| (*id, n)).collect();
        let mut topics: Vec<TopicPartition> = Vec::new();
        for (id, p) in &m.assigned {
            let Some(name) = names.get(id) else { continue };
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == name.as_str() => t.partitions.push(*p),
                _ => topics.push(
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string((*name).clone())))
                        .with_partitions(vec![*p]),
                ),
            }
        }
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(topics);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        match a.encode(&mut buf, 0) {
            Ok(()) => buf.freeze(),
            Err(_) => bytes::Bytes::new(),
        }
    }

    fn member_by_instance(&self, inst: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(inst))
    }

    fn bump(&mut self) {
        self.group_epoch += 1;
    }

    pub fn heartbeat(
        &mut self,
        r: HeartbeatRequest,
        topics: TopicLookup,
        now: Instant,
    ) -> HeartbeatResult {
        self.maybe_changed = true;
        let id = r.member_id.clone();
        let invalid = |m: &str| HeartbeatResult::error(GroupError::InvalidRequest, &id, m);
        if r.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if r.member_epoch < STATIC_LEAVE_EPOCH {
            return invalid("MemberEpoch is invalid.");
        }
        if r.member_epoch == STATIC_LEAVE_EPOCH && r.instance_id.is_none() {
            return invalid("InstanceId can't be null when MemberEpoch is -2.");
        }
        if r.member_epoch < 0 {
            return self.leave(&r, now);
        }
        if r.member_epoch == 0 {
            if r.subscribed.is_none() && r.regex.is_none() {
                return invalid("SubscribedTopicNames or SubscribedTopicRegex must be set.");
            }
            if r.rebalance_timeout_ms < 0 {
                return invalid("RebalanceTimeoutMs must be provided when joining.");
            }
        }
        if r.regex.as_deref().is_some_and(|s| !s.is_empty()) {
            return HeartbeatResult::error(
                GroupError::InvalidRegularExpression,
                &id,
                "regular expression subscriptions are not supported by this broker",
            );
        }
        if let Some(a) = r.server_assignor.as_deref() {
            if !ASSIGNORS.contains(&a) {
                return HeartbeatResult::error(
                    GroupError::UnsupportedAssignor,
                    &id,
                    format!("assignor {a} is not supported; use one of {ASSIGNORS:?}"),
                );
            }
        }
        let owned: Option<BTreeSet<Tp>> = r.owned.as_ref().map(|v| v.iter().copied().collect());
        let full = r.member_epoch == 0
            || (r.rebalance_timeout_ms != -1 && r.subscribed.is_some() && owned.is_some());

        // One heartbeat moves the group epoch by one at most, however many things changed.
        let epoch_before = self.group_epoch;
        let before: Option<BTreeSet<Tp>>;
        if r.member_epoch == 0 {
            match self.join(&r, now) {
                Ok(prev) => before = prev,
                Err(e) => return e,
            }
        } else {
            let Some(m) = self.members.get(&id) else {
                return HeartbeatResult::error(
                    GroupError::UnknownMemberId,
                    &id,
                    format!("member {id} is not in the group"),
                );
            };
            if m.left_temporarily {
                return HeartbeatResult::error(
                    GroupError::UnknownMemberId,
                    &id,
                    "member left the group",
                );
            }
            // Fields a heartbeat leaves unchanged are null (KIP-848), the instance id too.
            if r.instance_id.is_some() && m.instance_id != r.instance_id {
                return HeartbeatResult::error(
                    GroupError::FencedInstanceId,
                    &id,
                    "the instance id does not match the member's",
                );
            }
            let ok = r.member_epoch == m.epoch
                || (r.member_epoch == m.previous_epoch
                    && r.member_epoch < m.epoch
                    && owned.as_ref().is_some_and(|o| o.is_subset(&m.assigned)));
            if !ok {
                // The member must drop everything and rejoin with epoch 0; its partitions
                // are free from now on.
                let m_epoch = m.epoch;
                self.remove_member(&id);
                return HeartbeatResult::error(
                    GroupError::FencedMemberEpoch,
                    &id,
                    format!(
                        "member epoch {} is fenced (current {m_epoch})",
                        r.member_epoch
                    ),
                );
            }
            before = Some(m.assigned.clone());
        }

        // Update the member's metadata; changes that matter to the assignment bump the epoch.
        let mut changed = false;
        if let Some(m) = self.members.get_mut(&id) {
            m.session_deadline = now + self.session_timeout;
            if r.rebalance_timeout_ms > 0 {
                m.rebalance_timeout = Duration::from_millis(r.rebalance_timeout_ms as u64);
            }
            if let Some(s) = &r.subscribed {
                let mut s: Vec<String> = s.iter().filter(|t| !t.is_empty()).cloned().collect();
                s.sort();
                s.dedup();
                if s != m.subscribed {
                    m.subscribed = s;
                    changed = true;
                }
            }
            if r.server_assignor.is_some() && r.server_assignor != m.server_assignor {
                m.server_assignor = r.server_assignor.clone();
                changed = true;
            }
            if r.rack_id.is_some() {
                m.rack_id = r.rack_id.clone();
            }
            if !r.client_id.is_empty() {
                m.client_id = r.client_id.clone();
            }
        }
        if changed {
            self.bump();
        }
        self.refresh_metadata(topics);
        self.group_epoch = self.group_epoch.min(epoch_before + 1);
        self.update_target();
        self.reconcile(&id, owned.as_ref(), now);

        let Some(m) = self.members.get(&id) else {
            return HeartbeatResult::error(GroupError::UnknownMemberId, &id, "member is gone");
        };
        let assignment = if full || before.as_ref() != Some(&m.assigned) {
            Some(m.assigned.clone())
        } else {
            None
        };
        HeartbeatResult {
            error: None,
            message: None,
            member_id: id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            assignment,
        }
    }

    /// A join (epoch 0): a new member, a member rejoining with the same id, or a static member
    /// coming back under a new id. Returns the member's assigned partitions before, if any.
    fn join(
        &mut self,
        r: &HeartbeatRequest,
        now: Instant,
    ) -> Result<Option<BTreeSet<Tp>>, HeartbeatResult> {
        let id = r.member_id.clone();
        if let Some(inst) = r.instance_id.as_deref() {
            if let Some(prev) = self.member_by_instance(inst).cloned() {
                if prev.id != id {
                    if !prev.left_temporarily {
                        return Err(HeartbeatResult::error(
                            GroupError::UnreleasedInstanceId,
                            &id,
                            format!("instance id {inst} is still used by member {}", prev.id),
                        ));
                    }
                    // The static member takes its previous incarnation's place, epoch and
                    // partitions; the assignment does not change.
                    self.members.remove(&prev.id);
                    let target = self.target.remove(&prev.id).unwrap_or_default();
                    self.target.insert(id.clone(), target);
                    let mut m = prev;
                    m.id = id.clone();
                    m.left_temporarily = false;
                    m.client_host = r.client_host.clone();
                    m.session_deadline = now + self.session_timeout;
                    self.members.insert(id, m);
                    return Ok(None);
                }
            }
        }
        if let Some(m) = self.members.get_mut(&id) {
            // Rejoining with epoch 0 means the member holds nothing any more.
            m.assigned.clear();
            m.revoking.clear();
            m.revocation_deadline = None;
            m.state = MemberState::Stable;
            m.previous_epoch = m.epoch;
            m.epoch = 0;
            m.left_temporarily = false;
            return Ok(None);
        }
        if self.members.len() >= MAX_MEMBERS {
            return Err(HeartbeatResult::error(
                GroupError::GroupMaxSizeReached,
                &id,
                "the group is full",
            ));
        }
        self.members.insert(
            id.clone(),
            Member {
                id,
                instance_id: r.instance_id.clone(),
                rack_id: r.rack_id.clone(),
                client_id: r.client_id.clone(),
                client_host: r.client_host.clone(),
                epoch: 0,
                previous_epoch: -1,
                state: MemberState::Stable,
                subscribed: Vec::new(),
                server_assignor: None,
                rebalance_timeout: Duration::from_millis(r.rebalance_timeout_ms.max(0) as u64),
                assigned: BTreeSet::new(),
                revoking: BTreeSet::new(),
                left_temporarily: false,
                session_deadline: now + self.session_timeout,
                revocation_deadline: None,
            },
        );
        self.bump();
        Ok(None)
    }

    /// Epoch -1 (leave) or -2 (a static member leaving temporarily).
    fn leave(&mut self, r: &HeartbeatRequest, now: Instant) -> HeartbeatResult {
        let id = match self.members.get(&r.member_id) {
            Some(m) => m.id.clone(),
            None => match r
                .instance_id
                .as_deref()
                .and_then(|i| self.member_by_instance(i))
            {
                Some(m) => m.id.clone(),
                None => {
                    return HeartbeatResult::error(
                        GroupError::UnknownMemberId,
                        &r.member_id,
                        format!("member {} is not in the group", r.member_id),
                    )
                }
            },
        };
        if let (Some(m), Some(inst)) = (self.members.get(&id), r.instance_id.as_deref()) {
            if m.instance_id.as_deref() != Some(inst) || id != r.member_id {
                return HeartbeatResult::error(
                    GroupError::FencedInstanceId,
                    &r.member_id,
                    "the instance id belongs to another member",
                );
            }
        }
        if r.member_epoch == STATIC_LEAVE_EPOCH {
            if let Some(m) = self.members.get_mut(&id) {
                m.left_temporarily = true;
                m.session_deadline = now + self.session_timeout;
            }
        } else {
            self.remove_member(&id);
            self.update_target();
        }
        HeartbeatResult {
            error: None,
            message: None,
            member_id: r.member_id.clone(),
            member_epoch: r.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    fn remove_member(&mut self, id: &str) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.bump();
        }
    }

    /// Session expiry and revocations that outlast the member's rebalance timeout.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.id.clone(), "session expired"))
                } else if m.revocation_deadline.is_some_and(|d| d <= now) {
                    Some((m.id.clone(), "did not revoke within its rebalance timeout"))
                } else {
                    None
                }
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        for (id, why) in expired {
            tracing::info!(member = %id, "{why}; removing consumer group member");
            self.remove_member(&id);
        }
        self.maybe_changed = true;
        self.update_target();
    }

    /// Re-reads the subscribed topics; a change bumps the group epoch.
    fn refresh_metadata(&mut self, topics: TopicLookup) {
        let fresh: BTreeMap<String, (Uuid, i32)> = self
            .subscribed_topics()
            .into_iter()
            .filter_map(|t| topics(&t).map(|v| (t, v)))
            .collect();
        if fresh != self.metadata {
            self.metadata = fresh;
            self.bump();
        }
    }

    /// The assignor most members prefer (ties: the first in [`ASSIGNORS`]).
    fn preferred_assignor(&self) -> String {
        let mut best = (0usize, ASSIGNORS[0]);
        for a in ASSIGNORS {
            let n = self
                .members
                .values()
                .filter(|m| m.server_assignor.as_deref() == Some(*a))
                .count();
            if n > best.0 {
                best = (n, a);
            }
        }
        best.1.to_string()
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    fn update_target(&mut self) {
        if self.assignment_epoch >= self.group_epoch {
            return;
        }
        self.assignor = self.preferred_assignor();
        let subs: BTreeMap<String, Vec<(Uuid, i32)>> = self
            .members
            .values()
            .map(|m| {
                let ts = m
                    .subscribed
                    .iter()
                    .filter_map(|t| self.metadata.get(t).copied())
                    .collect();
                (m.id.clone(), ts)
            })
            .collect();
        self.target = if self.assignor == "range" {
            assign_range(&subs)
        } else {
            assign_uniform(&subs, &self.target)
        };
        self.assignment_epoch = self.group_epoch;
    }

    /// Partitions owned by members other than `id` (assigned or still being revoked).
    fn owned_by_others(&self, id: &str) -> BTreeSet<Tp> {
        self.members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| m.assigned.iter().chain(m.revoking.iter()).copied())
            .collect()
    }

    /// Moves one member a step towards its target assignment.
    fn reconcile(&mut self, id: &str, owned: Option<&BTreeSet<Tp>>, now: Instant) {
        let target_epoch = self.assignment_epoch;
        let target = self.target.get(id).cloned().unwrap_or_default();
        let others = self.owned_by_others(id);
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        if m.state == MemberState::UnrevokedPartitions {
            let done = owned.is_some_and(|o| o.is_disjoint(&m.revoking));
            if done {
                m.revoking.clear();
                m.revocation_deadline = None;
                m.state = MemberState::Stable;
            } else if m.epoch >= target_epoch {
                return;
            }
        }
        if m.state == MemberState::Stable && m.epoch == target_epoch {
            return;
        }
        // Next step: revoke what is no longer targeted, else take the epoch and what is free.
        let kept: BTreeSet<Tp> = m.assigned.intersection(&target).copied().collect();
        let mut revoke: BTreeSet<Tp> = m.assigned.difference(&target).copied().collect();
        revoke.extend(m.revoking.iter().copied());
        if !revoke.is_empty() {
            if m.state != MemberState::UnrevokedPartitions {
                m.revocation_deadline = Some(now + m.rebalance_timeout);
            }
            m.assigned = kept;
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            return;
        }
        let wanted: BTreeSet<Tp> = target.difference(&kept).copied().collect();
        let free: BTreeSet<Tp> = wanted.difference(&others).copied().collect();
        let unreleased = free.len() < wanted.len();
        m.assigned = kept.union(&free).copied().collect();
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        if m.epoch != target_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = target_epoch;
        }
    }

    /// OffsetCommit v9 rules for a member of this group (the group has members).
    pub fn validate_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        version: i16,
    ) -> Result<(), GroupError> {
        let m = self
            .members
            .get(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if version < 9 {
            return Err(GroupError::UnsupportedVersion);
        }
        if member_epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch v9 rules: a fetch naming a member must carry its current epoch.
    pub fn validate_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), GroupError> {
        if epoch < 0 && member_id.is_none_or(str::is_empty) {
            return Ok(());
        }
        let m = self
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(GroupError::UnknownMemberId)?;
        if epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer_record::GroupRecord;

    const T: Uuid = Uuid::from_u128(7);

    fn lookup(name: &str) -> Option<(Uuid, i32)> {
        (name == "t").then_some((T, 6))
    }

    fn hb(id: &str, epoch: i32, owned: Option<&BTreeSet<Tp>>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
            subscribed: (epoch == 0).then(|| vec!["t".to_string()]),
            owned: owned.map(|o| o.iter().copied().collect()),
            ..Default::default()
        }
    }

    fn parts(s: &BTreeSet<Tp>) -> Vec<i32> {
        s.iter().map(|(_, p)| *p).collect()
    }

    /// Heartbeats as a well-behaved client does: it reports what it owns after applying
    /// every assignment it got.
    struct Client {
        id: String,
        epoch: i32,
        owned: BTreeSet<Tp>,
    }

    impl Client {
        fn join(g: &mut ConsumerGroup, id: &str, now: Instant) -> Client {
            let r = g.heartbeat(hb(id, 0, Some(&BTreeSet::new())), &lookup, now);
            assert_eq!(r.error, None, "{r:?}");
            let mut c = Client {
                id: id.into(),
                epoch: r.member_epoch,
                owned: BTreeSet::new(),
            };
            c.apply(&r);
            c
        }
        fn apply(&mut self, r: &HeartbeatResult) {
            assert_eq!(r.error, None, "{r:?}");
            self.epoch = r.member_epoch;
            if let Some(a) = &r.assignment {
                self.owned = a.clone();
            }
        }
        fn beat(&mut self, g: &mut ConsumerGroup, now: Instant) -> HeartbeatResult {
            let r = g.heartbeat(hb(&self.id, self.epoch, Some(&self.owned)), &lookup, now);
            self.apply(&r);
            r
        }
    }

    fn no_overlap(cs: &[&Client]) {
        let mut seen = BTreeSet::new();
        for c in cs {
            for tp in &c.owned {
                assert!(seen.insert(*tp), "{tp:?} owned twice");
            }
        }
    }

    /// A new coordinator restores the group from its stored record mid-rebalance: the members
    /// heartbeat on with their epochs and the rebalance completes without overlap.
    #[test]
    fn a_group_restored_from_its_record_goes_on_where_it_was() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut a = Client::join(&mut g, "a", now);
        let mut b = Client::join(&mut g, "b", now);
        let rec = g.take_record().expect("a changed group has a record");
        assert!(g.take_record().is_none(), "nothing changed since");
        let bytes = rec.encode();
        let mut restored = GroupRecord::decode(&bytes)
            .and_then(|r| r.restore(now))
            .expect("the record restores");
        assert!(restored.take_record().is_none(), "restored as stored");
        assert_eq!(restored.group_epoch, g.group_epoch);
        // b still waits for a's partitions; a revokes, and both converge at the new place.
        for _ in 0..4 {
            a.beat(&mut restored, now);
            b.beat(&mut restored, now);
        }
        no_overlap(&[&a, &b]);
        assert_eq!(a.owned.len() + b.owned.len(), 6);
        assert_eq!((a.epoch, b.epoch), (2, 2));
        assert_eq!(restored.state_name(), "Stable");
        assert!(
            restored.take_record().is_some(),
            "the rebalance's progress is recorded"
        );
        // A record of a newer version is skipped, not misread.
        let mut newer = bytes.to_vec();
        newer[0] = 9;
        assert!(GroupRecord::decode(&newer).is_none());
    }

    #[test]
    fn first_member_gets_everything() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let a = Client::join(&mut g, "a", now);
        assert_eq!(a.epoch, 1);
        assert_eq!(parts(&a.owned), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn partitions_move_only_after_the_previous_owner_revoked_them() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut a = Client::join(&mut g, "a", now);
        let mut b = Client::join(&mut g, "b", now);
        assert_eq!(g.group_epoch, 2);
        // b's target partitions are still a's: it takes epoch 2 with nothing yet
        assert_eq!(b.epoch, 2);
        assert!(b.owned.is_empty());
        assert_eq!(g.members["b"].state, MemberState::UnreleasedPartitions);
        assert_eq!(g.state_name(), "Reconciling");
        // a is told to keep half; its epoch stays until it reports the revocation done
        let r = g.heartbeat(hb("a", 1, Some(&a.owned)), &lookup, now);
        assert_eq!(r.member_epoch, 1);
        let kept = r.assignment.clone().unwrap();
        assert_eq!(kept.len(), 3);
        // b heartbeats before a has revoked: nothing free yet
        b.beat(&mut g, now);
        assert!(b.owned.is_empty());
        no_overlap(&[&a, &b]);
        a.owned = kept;
        let r = a.beat(&mut g, now);
        assert_eq!(r.member_epoch, 2);
        assert!(r.assignment.is_none(), "unchanged assignment is not resent");
        let r = b.beat(&mut g, now);
        assert_eq!(r.assignment.as_ref().map(BTreeSet::len), Some(3));
        no_overlap(&[&a, &b]);
        assert_eq!(g.state_name(), "Stable");
        // a heartbeat whose assignment did not change carries none
        assert!(b.beat(&mut g, now).assignment.is_none());
    }

    #[test]
    fn leaving_member_hands_partitions_over() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut a = Client::join(&mut g, "a", now);
        let mut b = Client::join(&mut g, "b", now);
        for _ in 0..3 {
            a.beat(&mut g, now);
            b.beat(&mut g, now);
        }
        assert_eq!((a.owned.len(), b.owned.len()), (3, 3));
        let r = g.heartbeat(hb("b", LEAVE_EPOCH, None), &lookup, now);
        assert_eq!((r.error, r.member_epoch), (None, -1));
        a.beat(&mut g, now);
        assert_eq!(a.owned.len(), 6);
        assert_eq!(a.epoch, g.group_epoch);
        // the old member is gone
        let r = g.heartbeat(hb("b", b.epoch, Some(&b.owned)), &lookup, now);
        assert_eq!(r.error, Some(GroupError::UnknownMemberId));
    }

    #[test]
    fn stale_epochs_are_fenced_and_a_lost_response_is_tolerated() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut a = Client::join(&mut g, "a", now);
        let mut b = Client::join(&mut g, "b", now);
        for _ in 0..3 {
            a.beat(&mut g, now);
            b.beat(&mut g, now);
        }
        // a heartbeats with its previous epoch owning a subset of its partitions: accepted
        let prev = g.members["a"].previous_epoch;
        let r = g.heartbeat(hb("a", prev, Some(&a.owned)), &lookup, now);
        assert_eq!(r.error, None);
        // a future epoch is fenced, and the member is removed
        let r = g.heartbeat(hb("a", a.epoch + 5, Some(&a.owned)), &lookup, now);
        assert_eq!(r.error, Some(GroupError::FencedMemberEpoch));
        assert!(!g.members.contains_key("a"));
        // it rejoins with epoch 0
        let a2 = Client::join(&mut g, "a", now);
        assert_eq!(a2.epoch, g.group_epoch);
        assert_eq!(
            g.validate_commit("b", b.epoch - 1, 9),
            Err(GroupError::StaleMemberEpoch)
        );
        assert_eq!(
            g.validate_commit("zz", 1, 9),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_commit("b", b.epoch, 8),
            Err(GroupError::UnsupportedVersion)
        );
        assert!(g.validate_commit("b", b.epoch, 9).is_ok());
        assert!(g.validate_fetch(None, -1).is_ok());
        assert_eq!(
            g.validate_fetch(Some("b"), b.epoch + 1),
            Err(GroupError::StaleMemberEpoch)
        );
    }

    #[test]
    fn three_members_converge_without_overlap() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut cs = vec![
            Client::join(&mut g, "a", now),
            Client::join(&mut g, "b", now),
        ];
        for _ in 0..4 {
            for c in cs.iter_mut() {
                c.beat(&mut g, now);
            }
        }
        cs.push(Client::join(&mut g, "c", now));
        for _ in 0..4 {
            for c in cs.iter_mut() {
                c.beat(&mut g, now);
            }
            no_overlap(&cs.iter().collect::<Vec<_>>());
        }
        assert!(cs.iter().all(|c| c.owned.len() == 2));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn session_and_rebalance_timeouts_remove_members() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut a = Client::join(&mut g, "a", now);
        let _b = Client::join(&mut g, "b", now);
        // a is asked to revoke and never does: removed after its 30 s rebalance timeout
        let r = g.heartbeat(hb("a", a.epoch, Some(&a.owned)), &lookup, now);
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        a.epoch = r.member_epoch;
        g.tick(now + Duration::from_secs(29));
        assert!(g.members.contains_key("a"));
        g.tick(now + Duration::from_secs(31));
        assert!(!g.members.contains_key("a"));
        // b does not heartbeat: its session expires
        g.tick(now + SESSION_TIMEOUT + Duration::from_secs(1));
        assert!(g.members.is_empty());
        assert_eq!(g.state_name(), "Empty");
    }

    #[test]
    fn static_member_leaves_temporarily_and_returns_to_its_partitions() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut req = hb("s1", 0, Some(&BTreeSet::new()));
        req.instance_id = Some("i".into());
        let r = g.heartbeat(req.clone(), &lookup, now);
        let epoch = r.member_epoch;
        // later heartbeats leave unchanged fields null, the instance id too
        let r = g.heartbeat(hb("s1", epoch, None), &lookup, now);
        assert_eq!((r.error, r.member_epoch), (None, epoch));
        let mut wrong = hb("s1", epoch, None);
        wrong.instance_id = Some("other".into());
        assert_eq!(
            g.heartbeat(wrong, &lookup, now).error,
            Some(GroupError::FencedInstanceId)
        );
        let mut leave = hb("s1", STATIC_LEAVE_EPOCH, None);
        leave.instance_id = Some("i".into());
        let r = g.heartbeat(leave, &lookup, now);
        assert_eq!((r.error, r.member_epoch), (None, -2));
        assert_eq!(g.group_epoch, epoch, "no rebalance");
        // it comes back under a new member id: same epoch and partitions
        let mut other = req.clone();
        other.member_id = "s2".into();
        let r = g.heartbeat(other.clone(), &lookup, now);
        assert_eq!(r.error, None);
        assert_eq!(r.member_epoch, epoch);
        assert_eq!(r.assignment.map(|a| a.len()), Some(6));
        assert_eq!(g.group_epoch, epoch, "still no rebalance");
        // another member with the same instance id while that one is active is refused
        other.member_id = "s3".into();
        let r = g.heartbeat(other, &lookup, now);
        assert_eq!(r.error, Some(GroupError::UnreleasedInstanceId));
    }

    #[test]
    fn bad_requests_get_errors_not_panics() {
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        let mut r = hb("", 0, None);
        assert_eq!(
            g.heartbeat(r.clone(), &lookup, now).error,
            Some(GroupError::InvalidRequest)
        );
        r.member_id = "x".into();
        r.member_epoch = -3;
        assert_eq!(
            g.heartbeat(r.clone(), &lookup, now).error,
            Some(GroupError::InvalidRequest)
        );
        r.member_epoch = 0;
        r.server_assignor = Some("nope".into());
        assert_eq!(
            g.heartbeat(r.clone(), &lookup, now).error,
            Some(GroupError::UnsupportedAssignor)
        );
        r.server_assignor = None;
        r.subscribed = None;
        assert_eq!(
            g.heartbeat(r.clone(), &lookup, now).error,
            Some(GroupError::InvalidRequest)
        );
        r.member_epoch = 3;
        assert_eq!(
            g.heartbeat(r, &lookup, now).error,
            Some(GroupError::UnknownMemberId)
        );
        // unknown topics and subscriptions to nothing are fine
        let mut r = hb("y", 0, None);
        r.subscribed = Some(vec!["missing".into(), String::new()]);
        let res = g.heartbeat(r, &lookup, now);
        assert_eq!(res.error, None);
        assert_eq!(res.assignment, Some(BTreeSet::new()));
    }

    #[test]
    fn classic_view_of_an_assignment_decodes() {
        use kafka_protocol::messages::ConsumerProtocolAssignment;
        use kafka_protocol::protocol::Decodable;
        let now = Instant::now();
        let mut g = ConsumerGroup::new(0);
        Client::join(&mut g, "a", now);
        let mut b = g.classic_assignment(&g.members["a"]);
        assert_eq!(bytes::Buf::get_i16(&mut b), 0);
        let a = ConsumerProtocolAssignment::decode(&mut b, 0).unwrap();
        assert_eq!(a.assigned_partitions.len(), 1);
        assert_eq!(a.assigned_partitions[0].topic.0.as_str(), "t");
        assert_eq!(a.assigned_partitions[0].partitions, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn assignors() {
        let u = Uuid::from_u128(1);
        let v = Uuid::from_u128(2);
        let subs: BTreeMap<String, Vec<(Uuid, i32)>> = [
            ("a".to_string(), vec![(u, 3), (v, 2)]),
            ("b".to_string(), vec![(u, 3)]),
        ]
        .into();
        let r = assign_range(&subs);
        assert_eq!(r["a"], [(u, 0), (u, 1), (v, 0), (v, 1)].into());
        assert_eq!(r["b"], [(u, 2)].into());
        let un = assign_uniform(&subs, &BTreeMap::new());
        let total: usize = un.values().map(BTreeSet::len).sum();
        assert_eq!(total, 5);
        assert!(un["a"].len().abs_diff(un["b"].len()) <= 1);
        // sticky: the previous target is kept when still balanced
        let again = assign_uniform(&subs, &un);
        assert_eq!(again, un);
        // a third member takes some from both without moving the rest
        let mut subs3 = subs.clone();
        subs3.insert("c".into(), vec![(u, 3), (v, 2)]);
        let three = assign_uniform(&subs3, &un);
        assert!(three.values().all(|s| s.len() <= 2 && !s.is_empty()));
        for m in ["a", "b"] {
            assert!(three[m].is_subset(&un[m]));
        }
    }
}
