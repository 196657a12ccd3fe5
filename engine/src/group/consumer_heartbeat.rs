//! ConsumerGroupHeartbeat (KIP-848) through the coordinator: the group's consumer-protocol
//! state machine ([`super::consumer::ConsumerGroup`]) under the lock.

use tokio::time::Instant;

use super::consumer;
use super::state::Group;
use super::store;
use super::Coordinator;
use super::GroupError;
use crate::internal_topic::TopicHost;

impl Coordinator {
    /// ConsumerGroupHeartbeat (KIP-848).
    pub async fn consumer_heartbeat(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
        r: consumer::HeartbeatRequest,
    ) -> consumer::HeartbeatResult {
        let fail =
            |e: GroupError, msg: &str| consumer::HeartbeatResult::error(e, &r.member_id, msg);
        if group_id.is_empty() {
            return fail(GroupError::InvalidGroupId, "GroupId can't be empty.");
        }
        if let Err(e) = self.check(b, group_id) {
            // The error's own text: "this broker is not the group's coordinator" or "... is
            // loading the group as its new coordinator".
            return fail(e, &e.to_string());
        }
        if r.member_epoch == 0 {
            if let Err(e) = store::partition(b, group_id).await {
                tracing::warn!(error = %e, "group coordinator unavailable");
                return fail(
                    GroupError::CoordinatorNotAvailable,
                    "the group coordinator is not available",
                );
            }
        }
        let lookup = |name: &str| {
            b.topics()
                .get(name)
                .map(|t| (t.id, t.partitions.len() as i32))
        };
        let mut groups = self.groups.lock();
        if r.member_epoch != 0 && !groups.contains_key(group_id) {
            return fail(
                GroupError::UnknownMemberId,
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
                    GroupError::GroupIdNotFound,
                    &format!("group {group_id} is a classic group with members"),
                );
            }
            if r.member_epoch != 0 {
                return fail(
                    GroupError::UnknownMemberId,
                    &format!("group {group_id} has no member {}", r.member_id),
                );
            }
            // An empty classic group becomes a consumer group; its offsets stay.
            g.consumer = Some(consumer::ConsumerGroup::new(g.generation));
        }
        let Some(c) = g.consumer.as_mut() else {
            return fail(GroupError::GroupIdNotFound, "not a consumer group");
        };
        let res = c.heartbeat(r.clone(), &lookup, Instant::now());
        // A join that failed leaves no trace of a group it would have created.
        if created && res.error.is_some() && g.is_empty() && g.offsets.is_empty() {
            groups.remove(group_id);
        } else {
            self.store_record(b, g);
        }
        res
    }
}
