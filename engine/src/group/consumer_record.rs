//! A KIP-848 consumer group as `__consumer_offsets` stores it (store kind 3, as Kafka keeps its
//! ConsumerGroup* records there): a coordinator that takes the group over restores its members
//! with their ids, epochs, subscriptions and partitions, so they heartbeat on at the new
//! coordinator without rejoining or losing their partitions. Session and revocation deadlines
//! start again at the restore.
//!
//! The whole group is one record, written (in order, under the coordinator's lock) whenever
//! what it holds changes: a small group state, rewritten only on membership and assignment
//! changes, not on every heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::consumer::{ConsumerGroup, Member, MemberState, Tp};

/// The record's version: a newer one is skipped (the group starts afresh), not misread.
pub const VERSION: u8 = 0;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberRecord>,
    pub target: BTreeMap<String, BTreeSet<Tp>>,
    pub metadata: BTreeMap<String, (Uuid, i32)>,
    pub session_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberRecord {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// `stable`, `unrevoked` or `unreleased`.
    pub state: String,
    pub subscribed: Vec<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: u64,
    pub assigned: BTreeSet<Tp>,
    pub revoking: BTreeSet<Tp>,
    pub left_temporarily: bool,
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Stable => "stable",
        MemberState::UnrevokedPartitions => "unrevoked",
        MemberState::UnreleasedPartitions => "unreleased",
    }
}

fn state_of(name: &str) -> Option<MemberState> {
    Some(match name {
        "stable" => MemberState::Stable,
        "unrevoked" => MemberState::UnrevokedPartitions,
        "unreleased" => MemberState::UnreleasedPartitions,
        _ => return None,
    })
}

impl ConsumerGroup {
    /// The group's record if it changed since the last one taken (to be stored now).
    pub fn take_record(&mut self) -> Option<GroupRecord> {
        if !std::mem::take(&mut self.maybe_changed) {
            return None;
        }
        let digest = self.digest();
        if self.stored == Some(digest) {
            return None;
        }
        self.stored = Some(digest);
        Some(GroupRecord::of(self))
    }
}

impl GroupRecord {
    pub fn of(g: &ConsumerGroup) -> GroupRecord {
        GroupRecord {
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberRecord {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    epoch: m.epoch,
                    previous_epoch: m.previous_epoch,
                    state: state_name(m.state).into(),
                    subscribed: m.subscribed.clone(),
                    server_assignor: m.server_assignor.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    assigned: m.assigned.clone(),
                    revoking: m.revoking.clone(),
                    left_temporarily: m.left_temporarily,
                })
                .collect(),
            target: g.target.clone(),
            metadata: g.metadata.clone(),
            session_timeout_ms: g.session_timeout.as_millis() as u64,
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        let mut b = vec![VERSION];
        b.extend(serde_json::to_vec(self).expect("a group record serializes"));
        b.into()
    }

    /// `None` for a record of a newer version or that does not decode.
    pub fn decode(b: &[u8]) -> Option<GroupRecord> {
        match b.split_first() {
            Some((&VERSION, body)) => serde_json::from_slice(body).ok(),
            _ => None,
        }
    }

    /// The group, its deadlines starting `now`; `None` if a member's state is unknown.
    pub fn restore(&self, now: Instant) -> Option<ConsumerGroup> {
        let session_timeout = Duration::from_millis(self.session_timeout_ms);
        let mut g = ConsumerGroup::new(self.group_epoch);
        g.assignment_epoch = self.assignment_epoch;
        g.assignor = self.assignor.clone();
        g.target = self.target.clone();
        g.metadata = self.metadata.clone();
        g.session_timeout = session_timeout;
        for m in &self.members {
            let state = state_of(&m.state)?;
            let rebalance_timeout = Duration::from_millis(m.rebalance_timeout_ms);
            let member = Member {
                id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                epoch: m.epoch,
                previous_epoch: m.previous_epoch,
                state,
                subscribed: m.subscribed.clone(),
                server_assignor: m.server_assignor.clone(),
                rebalance_timeout,
                assigned: m.assigned.clone(),
                revoking: m.revoking.clone(),
                left_temporarily: m.left_temporarily,
                session_deadline: now + session_timeout,
                revocation_deadline: (state == MemberState::UnrevokedPartitions)
                    .then(|| now + rebalance_timeout),
            };
            g.members.insert(m.id.clone(), member);
        }
        g.mark_stored();
        Some(g)
    }
}
