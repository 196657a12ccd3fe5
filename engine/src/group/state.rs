//! One consumer group's classic-protocol state machine (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup), free of I/O: every method takes the current time, and the waits (a join that
//! completes when the rebalance does, a follower's sync that completes when the leader's does)
//! are oneshot channels the handlers await. The coordinator drives timeouts with [`Group::tick`].

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::store::OffsetEntry;
use super::GroupError;

mod record;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka uses in ListGroups / DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinResult {
    /// Set for a refused join (with `member_id`, the id a MEMBER_ID_REQUIRED member must use).
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
    pub skip_assignment: bool,
}

impl JoinResult {
    pub(super) fn error(e: GroupError, member_id: &str) -> Self {
        JoinResult {
            error: Some(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub(super) fn error(e: GroupError) -> Self {
        SyncResult {
            error: Some(e),
            ..Default::default()
        }
    }
}

/// An answer now, or a channel that delivers it later.
pub enum Pending<T> {
    Ready(T),
    Wait(oneshot::Receiver<T>),
}

impl<T> Pending<T> {
    /// Awaits the answer; `gone` is used if the group dropped the waiter without answering.
    pub async fn get(self, gone: impl FnOnce() -> T) -> T {
        match self {
            Pending::Ready(t) => t,
            Pending::Wait(rx) => rx.await.unwrap_or_else(|_| gone()),
        }
    }
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    deadline: Instant,
}

impl Member {
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| Some(n.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A SyncGroup, as the state machine needs it.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment: (member id, assignment bytes).
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id gets one with MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or their session ends.
    pending: HashMap<String, Instant>,
    /// group.instance.id -> member id.
    statics: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    pub offsets: BTreeMap<(String, i32), OffsetEntry>,
    /// Transactional offset commits not yet committed or aborted, by producer id (see
    /// [`super::txn_offsets`]): invisible to OffsetFetch until their transaction commits.
    pub pending_txn: HashMap<i64, super::txn_offsets::PendingTxn>,
    /// Set when the group record must be written without waiting (the group became empty, or
    /// a static member took its old id's place); taken by [`Group::take_store`].
    store_soon: bool,
    /// The generation whose assignment awaits its group record: the leader's SyncGroup is
    /// answered (and the group turns `Stable`) only once [`Group::stored`] reports it durable.
    storing: Option<i32>,
    /// The record of `storing` was handed out by [`Group::take_store`].
    store_requested: bool,
    /// Set while the group is a KIP-848 consumer group (ConsumerGroupHeartbeat); the classic
    /// fields above are then unused (no classic members), the offsets are shared.
    pub consumer: Option<super::consumer::ConsumerGroup>,
}

fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            offsets: BTreeMap::new(),
            pending_txn: HashMap::new(),
            store_soon: false,
            storing: None,
            store_requested: false,
            consumer: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.consumer.as_ref().is_none_or(|c| c.is_empty())
    }

    /// Whether the group is a consumer-protocol group with members.
    pub fn is_active_consumer_group(&self) -> bool {
        self.consumer.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// `consumer` for a KIP-848 group, `classic` otherwise (ListGroups v5).
    pub fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// The state name ListGroups / DescribeGroups show.
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(c) => c.state_name(),
            None => self.state.name(),
        }
    }

    /// Whether the member's protocols fit the group's (type, and one protocol all share).
    fn supports(&self, r: &JoinRequest) -> bool {
        if r.protocol_type.is_empty() || r.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != r.member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(r.protocol_type.as_str()) {
            return false;
        }
        r.protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(o, _)| o == n))
        })
    }

    pub fn join(&mut self, r: JoinRequest, now: Instant) -> Pending<JoinResult> {
        if !self.supports(&r) {
            return Pending::Ready(JoinResult::error(
                GroupError::InconsistentGroupProtocol,
                &r.member_id,
            ));
        }
        if r.member_id.is_empty() {
            if let Some(inst) = r.instance_id.clone() {
                if let Some(old) = self.statics.get(&inst).cloned() {
                    return self.replace_static(&old, r, now);
                }
                let id = new_member_id(&inst);
                return self.add_and_join(id, r, now);
            }
            let id = new_member_id(&r.client_id);
            if r.require_known_member_id {
                self.pending.insert(id.clone(), now + r.session_timeout);
                return Pending::Ready(JoinResult::error(GroupError::MemberIdRequired, &id));
            }
            return self.add_and_join(id, r, now);
        }
        if self.pending.remove(&r.member_id).is_some() {
            let id = r.member_id.clone();
            return self.add_and_join(id, r, now);
        }
        if let Err(e) = self.check_member(&r.member_id, r.instance_id.as_deref()) {
            return Pending::Ready(JoinResult::error(e, &r.member_id));
        }
        let id = r.member_id.clone();
        let Some(m) = self.members.get_mut(&id) else {
            return Pending::Ready(JoinResult::error(GroupError::UnknownMemberId, &id));
        };
        let changed = m.protocols != r.protocols;
        m.protocols = r.protocols;
        m.protocol_type = r.protocol_type;
        m.session_timeout = r.session_timeout;
        m.rebalance_timeout = r.rebalance_timeout;
        m.deadline = now + m.session_timeout;
        self.member_joined(&id, changed, now)
    }

    /// UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID checks shared by every member request.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(inst) = instance_id {
            match self.statics.get(inst) {
                Some(cur) if cur != member_id => return Err(GroupError::FencedInstanceId),
                None if self.members.contains_key(member_id) => {
                    return Err(GroupError::FencedInstanceId)
                }
                _ => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    fn add_and_join(&mut self, id: String, r: JoinRequest, now: Instant) -> Pending<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(r.protocol_type.clone());
        }
        if let Some(inst) = &r.instance_id {
            self.statics.insert(inst.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: r.instance_id,
                client_id: r.client_id,
                client_host: r.client_host,
                session_timeout: r.session_timeout,
                rebalance_timeout: r.rebalance_timeout,
                protocol_type: r.protocol_type,
                protocols: r.protocols,
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                deadline: now + r.session_timeout,
            },
        );
        self.member_joined(&id, true, now)
    }

    /// A known static member rejoined under a new member id: it takes the old id's place. In
    /// a stable group with unchanged metadata that needs no rebalance (KIP-345).
    fn replace_static(
        &mut self,
        old_id: &str,
        r: JoinRequest,
        now: Instant,
    ) -> Pending<JoinResult> {
        let Some(inst) = r.instance_id.clone() else {
            return Pending::Ready(JoinResult::error(GroupError::UnknownMemberId, old_id));
        };
        let new_id = new_member_id(&inst);
        let Some(mut m) = self.members.shift_remove(old_id) else {
            self.statics.remove(&inst);
            return self.add_and_join(new_id, r, now);
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(GroupError::FencedInstanceId, old_id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(GroupError::FencedInstanceId));
        }
        let changed = m.protocols != r.protocols;
        m.id = new_id.clone();
        m.protocols = r.protocols;
        m.protocol_type = r.protocol_type;
        m.client_id = r.client_id;
        m.session_timeout = r.session_timeout;
        m.rebalance_timeout = r.rebalance_timeout;
        m.deadline = now + m.session_timeout;
        self.members.insert(new_id.clone(), m);
        self.statics.insert(inst, new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && !changed {
            self.store_soon = true;
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            let mut res = self.current_result(&new_id, is_leader);
            res.skip_assignment = is_leader;
            return Pending::Ready(res);
        }
        self.member_joined(&new_id, changed, now)
    }

    fn current_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.member_list()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn member_list(&self) -> Vec<JoinedMember> {
        let proto = self.protocol_name.as_deref();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(proto),
            })
            .collect()
    }

    fn member_joined(&mut self, id: &str, changed: bool, now: Instant) -> Pending<JoinResult> {
        let is_leader = self.leader.as_deref() == Some(id);
        match self.state {
            GroupState::CompletingRebalance if !changed => {
                return Pending::Ready(self.current_result(id, is_leader))
            }
            GroupState::Stable if !changed && !is_leader => {
                return Pending::Ready(self.current_result(id, false))
            }
            _ => {}
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            m.join_waiter = Some(tx);
        }
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now);
        } else {
            self.prepare_rebalance(now);
        }
        Pending::Wait(rx)
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(GroupError::RebalanceInProgress));
            }
        }
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.try_complete_join(now);
    }

    /// Completes the join phase once every known member has rejoined, or the rebalance
    /// timeout has passed (members that did not rejoin are removed).
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        let timed_out = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !all_joined && !timed_out {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.rebalance_deadline = None;
        self.generation += 1;
        self.storing = None;
        self.store_requested = false;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.store_soon = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let list = self.member_list();
        let leader = self.leader.clone().unwrap_or_default();
        for m in self.members.values_mut() {
            m.deadline = now + m.session_timeout;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        list.clone()
                    } else {
                        Vec::new()
                    },
                    skip_assignment: false,
                });
            }
        }
    }

    /// Each member votes for its most preferred protocol that every member supports.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(o, _)| o == *n))
            })
            .collect();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| *c == n))
            {
                votes[i] += 1;
            }
        }
        let best = (0..candidates.len()).max_by_key(|&i| (votes[i], std::cmp::Reverse(i)))?;
        Some(candidates[best].clone())
    }

    /// Removes a member without starting a rebalance (the caller decides).
    fn drop_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.shift_remove(id) {
            if let Some(inst) = &m.instance_id {
                if self.statics.get(inst).map(String::as_str) == Some(id) {
                    self.statics.remove(inst);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(GroupError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(GroupError::UnknownMemberId));
            }
        }
    }

    /// Removes a member (left or expired) and rebalances the rest.
    fn remove_member(&mut self, id: &str, now: Instant) {
        self.drop_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty => {}
        }
    }

    pub fn sync(&mut self, r: SyncRequest, now: Instant) -> Pending<SyncResult> {
        let SyncRequest {
            generation,
            member_id,
            instance_id,
            protocol_type,
            protocol_name,
            assignments,
        } = r;
        let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
        let (protocol_type, protocol_name) = (protocol_type.as_deref(), protocol_name.as_deref());
        if let Err(e) = self.check_member(member_id, instance_id) {
            return Pending::Ready(SyncResult::error(e));
        }
        if generation != self.generation {
            return Pending::Ready(SyncResult::error(GroupError::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol_name.as_deref())
        {
            return Pending::Ready(SyncResult::error(GroupError::InconsistentGroupProtocol));
        }
        let ok = |g: &Group, assignment: Bytes| SyncResult {
            error: None,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            assignment,
        };
        let Some(m) = self.members.get_mut(member_id) else {
            return Pending::Ready(SyncResult::error(GroupError::UnknownMemberId));
        };
        m.deadline = now + m.session_timeout;
        match self.state {
            GroupState::Empty => Pending::Ready(SyncResult::error(GroupError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Pending::Ready(SyncResult::error(GroupError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let a = self.members[member_id].assignment.clone();
                Pending::Ready(ok(self, a))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.members[member_id].sync_waiter = Some(tx);
                // The leader's assignment, once per generation (a retried SyncGroup of the
                // leader while the record is being written only waits).
                if self.leader.as_deref() == Some(member_id) && self.storing.is_none() {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.storing = Some(self.generation);
                }
                Pending::Wait(rx)
            }
        }
    }

    /// A member request of the current generation from a known member: its session restarts.
    fn touch_member(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let m = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        m.deadline = now + m.session_timeout;
        Ok(())
    }

    pub fn heartbeat(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), GroupError> {
        self.touch_member(generation, member_id, instance_id, now)?;
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member, by member id or (v3+) group instance id.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), GroupError> {
        let id = match instance_id {
            Some(inst) => match self.statics.get(inst) {
                Some(cur) if member_id.is_empty() || cur == member_id => cur.clone(),
                Some(_) => return Err(GroupError::FencedInstanceId),
                None => return Err(GroupError::UnknownMemberId),
            },
            None => {
                if self.pending.remove(member_id).is_some() {
                    return Ok(());
                }
                if !self.members.contains_key(member_id) {
                    return Err(GroupError::UnknownMemberId);
                }
                member_id.to_string()
            }
        };
        self.remove_member(&id, now);
        Ok(())
    }

    /// Session expiry, expired pending member ids and the rebalance timeout.
    pub fn tick(&mut self, now: Instant) {
        if let Some(c) = &mut self.consumer {
            c.tick(now);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired; removing member");
            self.remove_member(&id, now);
        }
        let before = self.pending.len();
        self.pending.retain(|_, d| *d > now);
        if self.pending.len() != before {
            self.try_complete_join(now);
        }
        self.try_complete_join(now);
    }

    /// Kafka's rules for which commits a group accepts (classic protocol).
    pub fn validate_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), GroupError> {
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.touch_member(generation, member_id, instance_id, now)?;
        } else if self.state != GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Kafka's rules for which transactional commits a group accepts (classic protocol): as
    /// [`Group::validate_commit`], except that a commit without member fields (TxnOffsetCommit
    /// before v3 has none) is accepted from a non-empty group, and a rebalance does not refuse it.
    pub fn validate_txn_commit(
        &mut self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), GroupError> {
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.touch_member(generation, member_id, instance_id, now)?;
        }
        Ok(())
    }

    /// Applies a commit unless a newer one (by log position) is already applied.
    pub fn apply_offset(&mut self, topic: &str, partition: i32, e: OffsetEntry) {
        let key = (topic.to_string(), partition);
        match self.offsets.get(&key) {
            Some(cur) if cur.log_offset > e.log_offset => {}
            _ => {
                self.offsets.insert(key, e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(member: &str, instance: Option<&str>, meta: &'static [u8]) -> JoinRequest {
        JoinRequest {
            member_id: member.to_string(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(meta))],
            require_known_member_id: true,
        }
    }

    /// SyncGroup as the coordinator runs it: a leader's assignment is stored at once.
    fn sync(
        g: &mut Group,
        generation: i32,
        member: &str,
        instance: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Pending<SyncResult> {
        let p = g.sync(sync_req(generation, member, instance, assignments), now);
        if let Some((v, true)) = g.take_store() {
            g.stored(v.generation, Ok(()), now);
        }
        p
    }

    fn sync_req(
        generation: i32,
        member: &str,
        instance: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncRequest {
        SyncRequest {
            generation,
            member_id: member.to_string(),
            instance_id: instance.map(str::to_string),
            assignments,
            ..Default::default()
        }
    }

    fn ready<T>(p: Pending<T>) -> T {
        match p {
            Pending::Ready(t) => t,
            Pending::Wait(mut rx) => rx.try_recv().expect("answered"),
        }
    }

    fn wait<T>(p: Pending<T>) -> oneshot::Receiver<T> {
        match p {
            Pending::Wait(rx) => rx,
            Pending::Ready(_) => panic!("expected a wait"),
        }
    }

    /// Joins a fresh member (MEMBER_ID_REQUIRED round trip) and returns its join wait.
    fn join_new(g: &mut Group, now: Instant) -> (String, Pending<JoinResult>) {
        let first = ready(g.join(req("", None, b"m"), now));
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        let id = first.member_id.clone();
        let p = g.join(req(&id, None, b"m"), now);
        (id, p)
    }

    #[test]
    fn single_member_join_and_sync() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (id, p) = join_new(&mut g, now);
        let j = ready(p);
        assert_eq!(j.error, None);
        assert_eq!(j.generation, 1);
        assert_eq!(j.leader, id);
        assert_eq!(j.members.len(), 1);
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
        let s = ready(sync(
            &mut g,
            1,
            &id,
            None,
            vec![(id.clone(), Bytes::from_static(b"A"))],
            now,
        ));
        assert_eq!(s.assignment, Bytes::from_static(b"A"));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(1, &id, None, now), Ok(()));
        assert_eq!(
            g.heartbeat(0, &id, None, now),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat(1, "nope", None, now),
            Err(GroupError::UnknownMemberId)
        );
    }

    /// Two members joined and synced with `g.sync` itself (the store step driven by hand).
    fn two_member_group(
        g: &mut Group,
        now: Instant,
    ) -> (
        String,
        String,
        oneshot::Receiver<SyncResult>,
        oneshot::Receiver<SyncResult>,
    ) {
        let (a, pa) = join_new(g, now);
        ready(pa);
        let (b, pb) = join_new(g, now);
        let mut rb = wait(pb);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let ja = ready(g.join(req(&a, None, b"m"), now));
        let jb = rb.try_recv().unwrap();
        let (leader, other) = if ja.leader == a { (a, b) } else { (b, a) };
        assert_eq!(ja.generation, jb.generation);
        let sf = wait(g.sync(sync_req(ja.generation, &other, None, vec![]), now));
        let sl = wait(g.sync(
            sync_req(
                ja.generation,
                &leader,
                None,
                vec![
                    (leader.clone(), Bytes::from_static(b"L")),
                    (other.clone(), Bytes::from_static(b"O")),
                ],
            ),
            now,
        ));
        (leader, other, sl, sf)
    }

    #[test]
    fn an_assignment_is_answered_only_once_its_record_is_stored() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (leader, other, mut sl, mut sf) = two_member_group(&mut g, now);
        // Nobody has an assignment until the record is durable.
        assert!(sl.try_recv().is_err() && sf.try_recv().is_err());
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let (v, wait_for_it) = g.take_store().expect("the assignment's record");
        assert!(wait_for_it);
        assert!(g.take_store().is_none(), "asked once per generation");
        assert_eq!(v.generation, g.generation);
        assert_eq!(v.leader.as_deref(), Some(leader.as_str()));
        let assigned: HashMap<_, _> = v
            .members
            .iter()
            .map(|m| (m.id.clone(), m.assignment.clone()))
            .collect();
        assert_eq!(assigned[&leader], Bytes::from_static(b"L"));
        assert_eq!(assigned[&other], Bytes::from_static(b"O"));
        g.stored(v.generation, Ok(()), now);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(sl.try_recv().unwrap().assignment, Bytes::from_static(b"L"));
        assert_eq!(sf.try_recv().unwrap().assignment, Bytes::from_static(b"O"));
    }

    #[test]
    fn a_failed_store_answers_the_error_and_rebalances() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (_, _, mut sl, mut sf) = two_member_group(&mut g, now);
        let (v, _) = g.take_store().unwrap();
        let not_coordinator = GroupError::NotCoordinator;
        g.stored(v.generation, Err(not_coordinator), now);
        assert_eq!(sl.try_recv().unwrap().error, Some(not_coordinator));
        assert_eq!(sf.try_recv().unwrap().error, Some(not_coordinator));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        // A late outcome for a generation that is gone changes nothing.
        g.stored(v.generation, Ok(()), now);
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn a_new_coordinator_restores_a_stable_group_with_its_assignments() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (leader, other, _, _) = two_member_group(&mut g, now);
        let (v, _) = g.take_store().unwrap();
        g.stored(v.generation, Ok(()), now);
        let generation = g.generation;
        let record = g.record();

        let later = now + Duration::from_secs(60);
        let mut h = Group::new("g");
        h.restore(record, later);
        assert_eq!(h.state, GroupState::Stable);
        assert_eq!(h.generation, generation);
        assert_eq!(h.leader.as_deref(), Some(leader.as_str()));
        assert_eq!(h.protocol_name.as_deref(), Some("range"));
        // The members go on heartbeating and committing with their generation: no rebalance.
        assert_eq!(h.heartbeat(generation, &other, None, later), Ok(()));
        assert_eq!(h.heartbeat(generation, &leader, None, later), Ok(()));
        assert!(h.validate_commit(generation, &other, None, later).is_ok());
        // SyncGroup of the stored generation gets the stored assignment back.
        let s = ready(h.sync(sync_req(generation, &other, None, vec![]), later));
        assert_eq!((s.error, s.assignment), (None, Bytes::from_static(b"O")));
        // Each session starts at the restore: a member that never comes back expires.
        let nine_s = later + Duration::from_secs(9);
        assert_eq!(h.heartbeat(generation, &leader, None, nine_s), Ok(()));
        h.tick(later + Duration::from_secs(11));
        assert!(h.members.contains_key(&leader));
        assert!(!h.members.contains_key(&other));
        assert_eq!(h.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn an_empty_group_stores_its_generation_without_members() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, p) = join_new(&mut g, now);
        ready(p);
        ready(sync(&mut g, 1, &a, None, vec![], now));
        assert_eq!(g.leave(&a, None, now), Ok(()));
        assert_eq!(g.state, GroupState::Empty);
        let (v, wait_for_it) = g.take_store().expect("the empty group's record");
        assert!(!wait_for_it);
        assert_eq!((v.generation, v.members.len()), (2, 0));
        let mut h = Group::new("g");
        h.restore(v, now);
        assert_eq!((h.state, h.generation), (GroupState::Empty, 2));
    }

    #[test]
    fn second_member_triggers_rebalance_and_follower_waits_for_leader() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, p) = join_new(&mut g, now);
        ready(p);
        ready(sync(&mut g, 1, &a, None, vec![], now));
        let (b, pb) = join_new(&mut g, now);
        let mut rb = wait(pb);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(1, &a, None, now),
            Err(GroupError::RebalanceInProgress)
        );
        // a commit during the revoke phase with the old generation is still accepted
        assert!(g.validate_commit(1, &a, None, now).is_ok());
        let ja = ready(g.join(req(&a, None, b"m"), now));
        let jb = rb.try_recv().unwrap();
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty());
        assert_eq!(
            g.validate_commit(2, &a, None, now),
            Err(GroupError::RebalanceInProgress)
        );
        let mut sb = wait(sync(&mut g, 2, &b, None, vec![], now));
        assert!(sb.try_recv().is_err(), "follower waits for the leader");
        let sa = ready(sync(
            &mut g,
            2,
            &a,
            None,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            now,
        ));
        assert_eq!(sa.assignment, Bytes::from_static(b"A"));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        assert_eq!(
            g.validate_commit(1, &a, None, now),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_commit(2, "x", None, now),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_commit(-1, "", None, now),
            Err(GroupError::UnknownMemberId)
        );
        assert!(g.validate_commit(2, &b, None, now).is_ok());
    }

    #[test]
    fn rebalance_timeout_removes_members_that_do_not_rejoin() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, p) = join_new(&mut g, now);
        ready(p);
        ready(sync(&mut g, 1, &a, None, vec![], now));
        let (_b, pb) = join_new(&mut g, now);
        let mut rb = wait(pb);
        // a keeps heartbeating but never rejoins: the join completes at the rebalance timeout
        for s in [5, 14, 23] {
            g.tick(now + Duration::from_secs(s));
            assert_eq!(
                g.heartbeat(1, &a, None, now + Duration::from_secs(s)),
                Err(GroupError::RebalanceInProgress)
            );
        }
        g.tick(now + Duration::from_secs(29));
        assert!(rb.try_recv().is_err());
        g.tick(now + Duration::from_secs(31));
        let jb = rb.try_recv().unwrap();
        assert_eq!(jb.generation, 2);
        assert_eq!(jb.members.len(), 1, "b leads alone");
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn session_expiry_removes_member_and_rebalances() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, p) = join_new(&mut g, now);
        ready(p);
        ready(sync(&mut g, 1, &a, None, vec![], now));
        g.tick(now + Duration::from_secs(9));
        assert_eq!(g.members.len(), 1);
        g.tick(now + Duration::from_secs(11));
        assert!(g.members.is_empty());
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.generation, 2);
    }

    #[test]
    fn leave_triggers_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (a, p) = join_new(&mut g, now);
        ready(p);
        let (b, pb) = join_new(&mut g, now);
        let mut rb = wait(pb);
        let _ = rb.try_recv();
        assert_eq!(g.leave(&b, None, now), Ok(()));
        assert_eq!(g.leave(&b, None, now), Err(GroupError::UnknownMemberId));
        assert_eq!(g.members.len(), 1);
        assert!(g.members.contains_key(&a));
    }

    #[test]
    fn static_member_rejoins_without_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let a = ready(g.join(req("", Some("i1"), b"m"), now));
        assert_eq!(
            a.error, None,
            "static members need no MEMBER_ID_REQUIRED round"
        );
        let a = a.member_id;
        let mut rb = wait(g.join(req("", Some("i2"), b"m"), now));
        ready(g.join(req(&a, Some("i1"), b"m"), now));
        let b = rb.try_recv().unwrap().member_id;
        let mut sb = wait(sync(&mut g, 2, &b, None, vec![], now));
        ready(sync(
            &mut g,
            2,
            &a,
            Some("i1"),
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            now,
        ));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        // i2 restarts: same metadata, so no rebalance; it gets a new id and its assignment
        let j = ready(g.join(req("", Some("i2"), b"m"), now));
        assert_eq!(j.error, None);
        assert_eq!(j.generation, 2);
        assert_ne!(j.member_id, b);
        assert_eq!(g.state, GroupState::Stable);
        let s = ready(sync(&mut g, 2, &j.member_id, Some("i2"), vec![], now));
        assert_eq!(s.assignment, Bytes::from_static(b"B"));
        // the old incarnation is fenced
        assert_eq!(
            g.heartbeat(2, &b, Some("i2"), now),
            Err(GroupError::FencedInstanceId)
        );
        assert_eq!(g.heartbeat(2, &a, Some("i1"), now), Ok(()));
        // changed metadata does rebalance
        let _ = g.join(req("", Some("i2"), b"other"), now);
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn inconsistent_protocols_are_refused() {
        let now = Instant::now();
        let mut g = Group::new("g");
        let (_a, p) = join_new(&mut g, now);
        ready(p);
        let mut r = req("", None, b"m");
        r.protocols = vec![("roundrobin".into(), Bytes::new())];
        assert_eq!(
            ready(g.join(r, now)).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
    }

    /// Time is an argument everywhere, so timeouts are tested without sleeping (the engine's
    /// tokio has no `test-util` for paused time).
    #[tokio::test]
    async fn join_wait_completes_on_tick() {
        let mut g = Group::new("g");
        let now = Instant::now();
        let (a, p) = join_new(&mut g, now);
        ready(p);
        ready(sync(&mut g, 1, &a, None, vec![], now));
        let (_b, pb) = join_new(&mut g, now);
        g.tick(now + Duration::from_secs(31));
        let j = pb.get(JoinResult::default).await;
        assert_eq!(j.generation, 2);
    }
}
