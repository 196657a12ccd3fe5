//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); a null topic list
//! means every partition the group committed. Partitions without a commit answer offset -1.
//! v9 carries the member id and epoch of KIP-848 members (STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID).
//! v7+ `require_stable`: a partition with a transactional commit pending answers
//! UNSTABLE_OFFSET_COMMIT (offset -1) until its transaction ends; the client retries.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::ResponseError;

use super::authorize;
use super::group_error::code;
use super::{sb, topic_name};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use std::collections::HashSet;

use crate::group::store::OffsetEntry;
use crate::group::FetchedTopic;

pub fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let group_denied = ResponseError::GroupAuthorizationFailed.code();
    let require_stable = version >= 7 && req.require_stable;
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
                if !authorize::group(b, s, Operation::Describe, g.group_id.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(group_denied);
                }
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
                let topics = stable(b, s, g.group_id.as_str(), wanted, require_stable);
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
    let checked = if authorize::group(b, s, Operation::Describe, req.group_id.as_str()) {
        b.groups
            .check(b, req.group_id.as_str())
            .map_err(|e| code(Some(e)))
    } else {
        Err(group_denied)
    };
    if let Err(not_here) = checked {
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
    let topics = stable(b, s, req.group_id.as_str(), wanted, require_stable);
    let topics = topics
        .into_iter()
        .map(|(t, ps)| {
            let parts = ps
                .into_iter()
                .map(|(p, e)| {
                    let r = OffsetFetchResponsePartition::default().with_partition_index(p);
                    let (offset, epoch, meta, error) = answer(e);
                    let r = r
                        .with_committed_offset(offset)
                        .with_metadata(Some(sb(meta)))
                        .with_error_code(error);
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

/// One partition's answer: its committed offset, or an error code (UNSTABLE_OFFSET_COMMIT,
/// TOPIC_AUTHORIZATION_FAILED).
type Fetched = Result<Option<OffsetEntry>, i16>;

/// The group's offsets; with `require_stable`, the partitions with a transactional commit
/// pending are unstable (`Err`). Only topics `s` may describe are shown: named ones it may
/// not answer TOPIC_AUTHORIZATION_FAILED, and a fetch of every topic leaves them out.
fn stable(
    b: &Broker,
    s: &Session,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(String, Vec<(i32, Fetched)>)> {
    let (op, rt) = (Operation::Describe, ResourceType::Topic);
    let (wanted, denied) = match wanted {
        Some(w) => {
            let (allowed, denied) = authorize::split(b, s, op, rt, w, |(t, _)| t.as_str());
            (Some(allowed), denied)
        }
        None => (None, Vec::new()),
    };
    let (mut topics, unstable) = b.groups.fetch_stable(group, wanted);
    if authorize::enabled(b) {
        let mut d = authorize::Decisions::new(b, s, op, rt);
        topics.retain(|(t, _)| d.allows(t));
    }
    let mut answers = mark_unstable(topics, &unstable, require_stable);
    let code = ResponseError::TopicAuthorizationFailed.code();
    answers.extend(
        denied
            .into_iter()
            .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, Err(code))).collect())),
    );
    answers
}

/// Each partition's offset, `Err` for those in `unstable` when `require_stable`.
fn mark_unstable(
    topics: Vec<FetchedTopic>,
    unstable: &HashSet<(String, i32)>,
    require_stable: bool,
) -> Vec<(String, Vec<(i32, Fetched)>)> {
    topics
        .into_iter()
        .map(|(t, ps)| {
            let ps = ps
                .into_iter()
                .map(|(p, e)| {
                    let r = if require_stable && unstable.contains(&(t.clone(), p)) {
                        Err(ResponseError::UnstableOffsetCommit.code())
                    } else {
                        Ok(e)
                    };
                    (p, r)
                })
                .collect();
            (t, ps)
        })
        .collect()
}

/// (offset, leader epoch, metadata, error code) of one partition.
fn answer(e: Fetched) -> (i64, i32, String, i16) {
    match e {
        Ok(Some(e)) => (e.offset, e.leader_epoch, e.metadata.unwrap_or_default(), 0),
        Ok(None) => (-1, -1, String::new(), 0),
        Err(code) => (-1, -1, String::new(), code),
    }
}

fn v8_topic((t, ps): (String, Vec<(i32, Fetched)>)) -> OffsetFetchResponseTopics {
    OffsetFetchResponseTopics::default()
        .with_name(topic_name(&t))
        .with_partitions(
            ps.into_iter()
                .map(|(p, e)| {
                    let (offset, epoch, meta, error) = answer(e);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(sb(meta)))
                        .with_error_code(error)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_stable_answers_unstable_for_pending_partitions_only() {
        let entry = OffsetEntry {
            offset: 5,
            leader_epoch: 1,
            metadata: None,
            commit_timestamp: 0,
            log_offset: 0,
        };
        let topics = || vec![("t".to_string(), vec![(0, Some(entry.clone())), (1, None)])];
        let unstable: HashSet<(String, i32)> = [("t".to_string(), 0)].into();
        let codes = |require_stable| {
            let t = v8_topic(
                mark_unstable(topics(), &unstable, require_stable)
                    .pop()
                    .unwrap(),
            );
            t.partitions
                .iter()
                .map(|p| (p.committed_offset, p.error_code))
                .collect::<Vec<_>>()
        };
        assert_eq!(codes(false), [(5, 0), (-1, 0)]);
        assert_eq!(codes(true), [(-1, 88), (-1, 0)]);
    }
}
