//! ConsumerGroupHeartbeat (KIP-848) through the coordinator: the group's consumer-protocol
//! state machine ([`super::consumer::ConsumerGroup`]) under the lock.

use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::consumer;
use super::state::Group;
use super::store;
use super::Coordinator;
use crate::broker::Broker;

impl Coordinator {
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
                message: Some(if c == ResponseError::CoordinatorLoadInProgress.code() {
                    "this broker is loading the group as its new coordinator".into()
                } else {
                    "this broker is not the group's coordinator".into()
                }),
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
}
