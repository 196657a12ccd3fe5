//! Classic-protocol membership through the coordinator: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup run the group's state machine ([`super::state::Group`]) under the lock and await
//! its answers outside it; the group records the state machine asks for are written here.

use tokio::time::Instant;

use super::state::{Group, JoinRequest, JoinResult, SyncRequest, SyncResult};
use super::store::{self, Key, Value, OFFSETS_TOPIC};
use super::GroupError;
use super::{Coordinator, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};
use crate::internal_topic::TopicHost;

impl Coordinator {
    pub async fn join(&self, b: &dyn TopicHost, group_id: &str, r: JoinRequest) -> JoinResult {
        let fail = |e: GroupError| JoinResult::error(e, &r.member_id);
        if group_id.is_empty() {
            return fail(GroupError::InvalidGroupId);
        }
        if let Err(e) = self.check(b, group_id) {
            return fail(e);
        }
        let ms = r.session_timeout.as_millis() as i32;
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&ms) {
            return fail(GroupError::InvalidSessionTimeout);
        }
        // Created before the group exists, so group records can always be written.
        if let Err(e) = store::partition(b, group_id).await {
            tracing::warn!(error = %e, "group coordinator unavailable");
            return fail(GroupError::CoordinatorNotAvailable);
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
                return fail(GroupError::InconsistentGroupProtocol);
            }
            if g.consumer.take().is_some() {
                send_consumer_record(b, group_id, None);
            }
            let p = g.join(r, Instant::now());
            self.store_record(b, g);
            p
        };
        // A join left unanswered: the member was removed, or this broker stopped coordinating
        // the group (then the client must look the coordinator up again).
        pending
            .get(|| {
                let e = self.check(b, group_id).err();
                JoinResult::error(e.unwrap_or(GroupError::UnknownMemberId), &member_id)
            })
            .await
    }

    pub async fn sync(&self, b: &dyn TopicHost, group_id: &str, r: SyncRequest) -> SyncResult {
        if let Err(e) = self.check(b, group_id) {
            return SyncResult::error(e);
        }
        let pending = {
            let mut groups = self.groups.lock();
            let Some(g) = groups.get_mut(group_id) else {
                return SyncResult::error(GroupError::UnknownMemberId);
            };
            let p = g.sync(r, Instant::now());
            self.store_record(b, g);
            p
        };
        pending
            .get(|| {
                let e = self.check(b, group_id).err();
                SyncResult::error(e.unwrap_or(GroupError::UnknownMemberId))
            })
            .await
    }

    pub fn heartbeat(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.check(b, group_id)?;
        match self.groups.lock().get_mut(group_id) {
            Some(g) => g.heartbeat(generation, member_id, instance_id, Instant::now()),
            None => Err(GroupError::UnknownMemberId),
        }
    }

    /// LeaveGroup: one outcome per (member id, instance id); `Err` when the group refuses the
    /// whole request.
    pub fn leave(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.check(b, group_id)?;
        let mut groups = self.groups.lock();
        let g = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let now = Instant::now();
        let outcomes = members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), now))
            .collect();
        self.store_record(b, g);
        Ok(outcomes)
    }

    /// Writes the group record the group asks for ([`Group::take_store`]). A generation's
    /// assignment is answered to the members only once its record is committed (a task
    /// reports the outcome to the group, whatever becomes of the SyncGroup that started it);
    /// other records are not waited for: losing one in a crash only means a new coordinator
    /// sees an older, still consistent, group.
    pub(super) fn store_record(&self, b: &dyn TopicHost, g: &mut Group) {
        // A KIP-848 group's state, when it changed: sent in order under the groups' lock, not
        // waited for (a new coordinator then restores the state before it, still consistent).
        if let Some(rec) = g.consumer.as_mut().and_then(|c| c.take_record()) {
            send_consumer_record(b, &g.id, Some(rec));
        }
        let Some((value, wait)) = g.take_store() else {
            return;
        };
        let generation = value.generation;
        let id = g.id.clone();
        let reply = match b.topics().get(OFFSETS_TOPIC) {
            Some(t) => {
                let p = store::partition_for(&id, t.partitions.len());
                store::send(
                    &t.partitions[p as usize],
                    &[(Key::Group(id.clone()), Some(Value::Group(value)))],
                    b.now_ms(),
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
                    Err(GroupError::from(&store::StoreError::Append {
                        topic: OFFSETS_TOPIC,
                        source: e,
                    }))
                }
                Err(_) => Err(GroupError::CoordinatorNotAvailable),
            };
            if let Some(g) = groups.lock().get_mut(&id) {
                g.stored(generation, result, Instant::now());
            }
        });
    }
}

/// Sends a KIP-848 group's record (`None`: a tombstone, it is a consumer group no more) to its
/// `__consumer_offsets` partition, in the order of the calls.
fn send_consumer_record(
    b: &dyn TopicHost,
    group: &str,
    rec: Option<super::consumer_record::GroupRecord>,
) {
    if let Some(t) = b.topics().get(OFFSETS_TOPIC) {
        let p = store::partition_for(group, t.partitions.len());
        // Not waited for: the partition appends it in order, whatever becomes of the answer.
        drop(store::send(
            &t.partitions[p as usize],
            &[(Key::Consumer(group.to_string()), rec.map(Value::Consumer))],
            b.now_ms(),
        ));
    }
}
