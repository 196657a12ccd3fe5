//! DescribeLogDirs: the one log directory of this broker (`<data-dir>/kafka`) and the size of
//! each partition replica it holds, as `kafka-log-dirs` and AdminClient.describeLogDirs read it.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use kafka_protocol::ResponseError;

use super::{authorize, sb, topic_name};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // Without DESCRIBE on the cluster: no directories (and the error from v3, as Kafka).
    if !authorize::cluster(b, s, Operation::Describe) {
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let dir = b.config.data_dir.join("kafka");
    // None: every topic; else the named topics' listed partitions.
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions))
            .collect()
    });
    let me = b.node_id();
    let mut topics = Vec::new();
    for t in b.topics.all() {
        let parts: Vec<i32> = match &wanted {
            None => (0..t.partitions.len() as i32).collect(),
            Some(w) => match w.iter().find(|(n, _)| *n == t.name) {
                Some((_, ps)) => ps.clone(),
                None => continue,
            },
        };
        let mut partitions = Vec::new();
        for p in parts {
            // In a cluster, only the replicas placed on this broker live here.
            let here = t
                .assignments
                .get(p as usize)
                .is_none_or(|r| r.contains(&me));
            let Some(h) = t.partition(p).filter(|_| here) else {
                continue;
            };
            let (bytes, _) = h
                .ask(|reply| crate::partition::Cmd::LocalSize { reply })
                .await
                .unwrap_or_default();
            partitions.push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(p)
                    .with_partition_size(bytes as i64)
                    .with_offset_lag(0)
                    .with_is_future_key(false),
            );
        }
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&t.name))
                    .with_partitions(partitions),
            );
        }
    }
    let (total, usable) = volume_bytes(&dir).unwrap_or((-1, -1));
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(sb(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

/// The size and free space of the file system holding `dir` (statvfs).
fn volume_bytes(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frag = st.f_frsize as i64;
    Some((st.f_blocks as i64 * frag, st.f_bavail as i64 * frag))
}
