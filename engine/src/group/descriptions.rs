//! What DescribeGroups, ConsumerGroupDescribe and ListGroups show of the groups this broker
//! coordinates, and the plain types the handlers build their answers from.

use bytes::Bytes;

use super::consumer;
use super::state::GroupState;
use super::store::OffsetEntry;
use super::Coordinator;
use super::GroupError;
use crate::internal_topic::TopicHost;

pub use crate::topic_jobs::GroupOffset;

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

impl Coordinator {
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

    /// ConsumerGroupDescribe for one group; `Err` is the error and the message to send with it.
    pub fn consumer_describe(
        &self,
        b: &dyn TopicHost,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, (GroupError, String)> {
        self.check(b, group_id).map_err(|e| (e, e.to_string()))?;
        let groups = self.groups.lock();
        let Some(g) = groups.get(group_id) else {
            return Err((
                GroupError::GroupIdNotFound,
                format!("group {group_id} does not exist"),
            ));
        };
        let Some(c) = &g.consumer else {
            return Err((
                GroupError::GroupIdNotFound,
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
                                .topics()
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
}
