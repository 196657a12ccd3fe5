//! The group's durable record (Kafka's GroupMetadataValue): what the group asks to have written
//! to `__consumer_offsets`, the outcome of writing a generation's assignment, and the state a
//! new coordinator restores from the record.

use bytes::Bytes;
use tokio::time::{Duration, Instant};

use super::{Group, GroupState, Member, SyncResult};
use crate::group::store::{GroupValue, MemberValue};
use crate::group::GroupError;

impl Group {
    /// The group record to write now, if any: the generation's assignment awaiting its
    /// record (write it, wait for the commit, then call [`Group::stored`]), or a record that
    /// may be written without waiting (the bool is false).
    pub fn take_store(&mut self) -> Option<(GroupValue, bool)> {
        if self.state == GroupState::CompletingRebalance
            && self.storing == Some(self.generation)
            && !self.store_requested
        {
            self.store_requested = true;
            return Some((self.record(), true));
        }
        if std::mem::take(&mut self.store_soon) {
            return Some((self.record(), false));
        }
        None
    }

    /// The outcome of writing the record of `generation`'s assignment: the group turns
    /// `Stable` and every member gets its assignment, or every waiting member gets `error`
    /// and the group rebalances (Kafka's `resetAndPropagateAssignmentError`).
    pub fn stored(&mut self, generation: i32, result: Result<(), GroupError>, now: Instant) {
        if self.state != GroupState::CompletingRebalance
            || self.generation != generation
            || self.storing != Some(generation)
        {
            return;
        }
        self.storing = None;
        self.store_requested = false;
        match result {
            Ok(()) => {
                self.state = GroupState::Stable;
                let (pt, pn) = (self.protocol_type.clone(), self.protocol_name.clone());
                for m in self.members.values_mut() {
                    m.deadline = now + m.session_timeout;
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResult {
                            error: None,
                            protocol_type: pt.clone(),
                            protocol_name: pn.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
            }
            Err(error) => {
                for m in self.members.values_mut() {
                    m.assignment = Bytes::new();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResult::error(error));
                    }
                }
                self.prepare_rebalance(now);
            }
        }
    }

    /// The group as its record stores it: members and assignments of a `Stable` group (or
    /// of a generation whose assignment is being stored), none of an empty one.
    pub fn record(&self) -> GroupValue {
        let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        let members = if self.state == GroupState::Empty {
            Vec::new()
        } else {
            self.members
                .values()
                .map(|m| MemberValue {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: millis(m.session_timeout),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect()
        };
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol_name: if members.is_empty() {
                None
            } else {
                self.protocol_name.clone()
            },
            leader: if members.is_empty() {
                None
            } else {
                self.leader.clone()
            },
            members,
        }
    }

    /// Takes the state a stored record describes (a new coordinator's replay): a group with
    /// members is `Stable` with their assignments, and each member's session starts now, so
    /// members that heartbeat to the new coordinator in time keep their partitions.
    pub fn restore(&mut self, v: GroupValue, now: Instant) {
        for m in self.members.values_mut() {
            m.join_waiter.take();
            m.sync_waiter.take();
        }
        self.members.clear();
        self.statics.clear();
        self.pending.clear();
        self.rebalance_deadline = None;
        self.storing = None;
        self.store_requested = false;
        self.store_soon = false;
        self.generation = v.generation;
        if !v.protocol_type.is_empty() {
            self.protocol_type = Some(v.protocol_type);
        }
        let millis = |ms: i32| Duration::from_millis(ms.max(0) as u64);
        for m in v.members {
            if let Some(inst) = &m.instance_id {
                self.statics.insert(inst.clone(), m.id.clone());
            }
            let session_timeout = millis(m.session_timeout_ms);
            self.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: millis(m.rebalance_timeout_ms),
                    protocol_type: self.protocol_type.clone().unwrap_or_default(),
                    protocols: m.protocols,
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    deadline: now + session_timeout,
                },
            );
        }
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
        } else {
            self.state = GroupState::Stable;
            self.protocol_name = v.protocol_name;
            self.leader = v.leader.filter(|l| self.members.contains_key(l));
        }
    }
}
