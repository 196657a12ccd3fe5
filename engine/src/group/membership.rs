//! Classic-protocol membership through the coordinator: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup run the group's state machine ([`super::state::Group`]) under the lock and await
//! its answers outside it; the group records the state machine asks for are written here.

use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::offsets::store_error_code;
use super::state::{Group, JoinRequest, JoinResult, SyncRequest, SyncResult};
use super::store::{self, Key, Value, OFFSETS_TOPIC};
use super::{code, Coordinator, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS};
use crate::broker::Broker;

impl Coordinator {
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

    pub async fn sync(&self, b: &Broker, group_id: &str, r: SyncRequest) -> SyncResult {
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
            let p = g.sync(r, Instant::now());
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

    /// Writes the group record the group asks for ([`Group::take_store`]). A generation's
    /// assignment is answered to the members only once its record is committed (a task
    /// reports the outcome to the group, whatever becomes of the SyncGroup that started it);
    /// other records are not waited for: losing one in a crash only means a new coordinator
    /// sees an older, still consistent, group.
    pub(super) fn store_record(&self, b: &Broker, g: &mut Group) {
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
                    Err(store_error_code(&store::StoreError::Append {
                        topic: OFFSETS_TOPIC,
                        source: e,
                    }))
                }
                Err(_) => Err(code(ResponseError::CoordinatorNotAvailable)),
            };
            if let Some(g) = groups.lock().get_mut(&id) {
                g.stored(generation, result, Instant::now());
            }
        });
    }
}
