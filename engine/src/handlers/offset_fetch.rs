//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); a null topic list
//! means every partition the group committed. Partitions without a commit answer offset -1.
//! v9 carries the member id and epoch of KIP-848 members (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::group_error::code;
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::group::FetchedTopic;

pub fn handle(b: &Broker, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    // In a cluster only the group's coordinator (leader of its `__consumer_offsets`
    // partition) knows its offsets.
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let mut allowed = b.groups.check(b, g.group_id.as_str());
                // v9: a member of a KIP-848 group must fetch with its current epoch.
                if allowed.is_ok() && version >= 9 {
                    allowed = b.groups.validate_fetch(
                        g.group_id.as_str(),
                        g.member_id.as_deref(),
                        g.member_epoch,
                    );
                }
                if let Err(e) = allowed {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code(Some(e)));
                }
                let topics = b.groups.fetch(g.group_id.as_str(), wanted);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics.into_iter().map(v8_topic).collect())
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    if let Err(e) = b.groups.check(b, req.group_id.as_str()) {
        let not_here = code(Some(e));
        if version >= 2 {
            return OffsetFetchResponse::default().with_error_code(not_here);
        }
        // v0-1 carry errors per partition only.
        let topics = wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(
                        ps.into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(sb("")))
                                    .with_error_code(not_here)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let topics = b.groups.fetch(req.group_id.as_str(), wanted);
    let topics = topics
        .into_iter()
        .map(|(t, ps)| {
            let parts = ps
                .into_iter()
                .map(|(p, e)| {
                    let r = OffsetFetchResponsePartition::default().with_partition_index(p);
                    let (offset, epoch, meta) = match e {
                        Some(e) => (e.offset, e.leader_epoch, e.metadata.unwrap_or_default()),
                        None => (-1, -1, String::new()),
                    };
                    let r = r
                        .with_committed_offset(offset)
                        .with_metadata(Some(sb(meta)));
                    if version >= 5 {
                        r.with_committed_leader_epoch(epoch)
                    } else {
                        r
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(parts)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

fn v8_topic((t, ps): FetchedTopic) -> OffsetFetchResponseTopics {
    OffsetFetchResponseTopics::default()
        .with_name(topic_name(&t))
        .with_partitions(
            ps.into_iter()
                .map(|(p, e)| {
                    let (offset, epoch, meta) = match e {
                        Some(e) => (e.offset, e.leader_epoch, e.metadata.unwrap_or_default()),
                        None => (-1, -1, String::new()),
                    };
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(sb(meta)))
                })
                .collect(),
        )
}
