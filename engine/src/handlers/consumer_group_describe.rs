//! ConsumerGroupDescribe (KIP-848): state, epochs, assignor and members (subscriptions,
//! current and target assignments) of consumer-protocol groups. Classic and unknown groups
//! get GROUP_ID_NOT_FOUND, as Kafka answers.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};

use super::group_error::code;
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::group::TopicAssignment;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

fn assignment(a: TopicAssignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        a.into_iter()
            .map(|(id, name, ps)| {
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(topic_name(&name))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

pub fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut topics = Decisions::new(b, s, Operation::Describe, ResourceType::Topic);
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let g = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(authorize::OPERATIONS_OMITTED);
            // DESCRIBE on the group, and on every topic its members name (as Kafka 4).
            if !authorize::group(b, s, Operation::Describe, id.as_str()) {
                return g.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let g = if req.include_authorized_operations {
                g.with_authorized_operations(authorize::operations(
                    b,
                    s,
                    ResourceType::Group,
                    id.as_str(),
                ))
            } else {
                g
            };
            let described = b.groups.consumer_describe(b, id.as_str());
            if let Ok(d) = &described {
                let named = d.members.iter().flat_map(|m| {
                    let assigned = m.assignment.iter().chain(&m.target).map(|(_, n, _)| n);
                    m.subscribed.iter().chain(assigned)
                });
                if let Some(t) = named.into_iter().find(|t| !topics.allows(t)) {
                    return g
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_error_message(Some(sb(format!(
                            "not authorized to describe topic {t} of this group"
                        ))));
                }
            }
            match described {
                Err((e, msg)) => g
                    .with_error_code(code(Some(e)))
                    .with_error_message(Some(sb(msg)))
                    .with_group_state(sb("Dead")),
                Ok(d) => g
                    .with_group_state(sb(d.state))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(sb(d.assignor))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let dm = Member::default()
                                    .with_member_id(sb(m.member_id))
                                    .with_instance_id(m.instance_id.map(sb))
                                    .with_rack_id(m.rack_id.map(sb))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(sb(m.client_id))
                                    .with_client_host(sb(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed.iter().map(|t| topic_name(t)).collect(),
                                    )
                                    .with_assignment(assignment(m.assignment))
                                    .with_target_assignment(assignment(m.target));
                                // member_type exists from v1: 1 = consumer protocol.
                                if version >= 1 {
                                    dm.with_member_type(1)
                                } else {
                                    dm
                                }
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
