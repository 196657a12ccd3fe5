//! `icestream group list|describe|delete|seek`: consumer groups through the Kafka API, as
//! `kafka-consumer-groups` and `rpk group` do.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use serde_json::json;

use super::client::{text, Client, Connection};
use super::errors::{code_detail, code_name};
use super::offsets::{list_offsets, topic_info, EARLIEST, LATEST};
use super::output::{emit, emit_json_pretty};
use super::table::{key_values, Table};
use super::{ClientArgs, Format};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Where a `seek` moves a group's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekTo {
    Start,
    End,
    Offset(i64),
    /// The first offset whose record timestamp is at or after this (ms since the epoch); the
    /// end offset where no record is that recent, as Kafka's `--to-datetime` does.
    Timestamp(i64),
}

impl std::str::FromStr for SeekTo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "start" | "earliest" | "beginning" => Ok(SeekTo::Start),
            "end" | "latest" => Ok(SeekTo::End),
            n if n.starts_with("ts:") => n[3..]
                .parse()
                .map(SeekTo::Timestamp)
                .map_err(|_| format!("'{n}' is not a timestamp: use ts:MILLISECONDS")),
            n => n.parse().map(SeekTo::Offset).map_err(|_| {
                format!(
                    "'{n}' is not a position: use start, end, an offset number or ts:MILLISECONDS"
                )
            }),
        }
    }
}

/// The version to speak: the negotiated one, capped where the CLI builds the older layout.
fn version_capped<R: Request>(conn: &Connection, cap: i16) -> Result<i16> {
    Ok(conn.version::<R>()?.min(cap))
}

/// The broker coordinating `group`.
async fn coordinator<'a>(client: &'a mut Client, group: &str) -> Result<&'a mut Connection> {
    let conn = client.any();
    let v = version_capped::<FindCoordinatorRequest>(conn, 3)?;
    let resp = conn
        .send_at(&FindCoordinatorRequest::default().with_key(sb(group)), v)
        .await?;
    if resp.error_code != 0 {
        bail!(
            "no coordinator for group '{group}' ({}): retry in a few seconds",
            code_detail(
                resp.error_code,
                resp.error_message.as_ref().map(|m| m.as_str())
            )
        );
    }
    client.node(resp.node_id.0).await
}

pub async fn list(args: &ClientArgs) -> Result<()> {
    let mut client = Client::connect(args).await?;
    // Each broker lists the groups it coordinates (in a cluster, those of the offsets
    // partitions it leads), so ask every broker, as Kafka's AdminClient does.
    let nodes: Vec<i32> = client
        .metadata(Some(&[]))
        .await?
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .collect();
    let mut groups = std::collections::BTreeSet::new();
    for node in nodes {
        let conn = match client.node(node).await {
            Ok(c) => c,
            // A broker that is down coordinates nothing until its partitions' new leaders
            // load its groups; say so rather than fail the whole listing.
            Err(e) => {
                eprintln!("warning: broker {node} not reached, its groups are not listed: {e}");
                continue;
            }
        };
        let resp = conn.send(&ListGroupsRequest::default()).await?;
        if resp.error_code != 0 {
            bail!(
                "cannot list groups on broker {node} ({})",
                code_name(resp.error_code)
            );
        }
        groups.extend(resp.groups.iter().map(|g| {
            (
                g.group_id.0.to_string(),
                text(&g.group_state),
                text(&g.protocol_type),
            )
        }));
    }
    if args.format == Format::Json {
        let v: Vec<_> = groups
            .iter()
            .map(|(g, s, p)| json!({"group": g, "state": s, "protocol_type": p}))
            .collect();
        emit_json_pretty(&json!(v))?;
        return Ok(());
    }
    let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
    for (g, s, p) in groups {
        t.row(vec![g, s, p]);
    }
    emit(&t.render())?;
    Ok(())
}

/// Committed offsets of a group: topic -> partition -> offset.
async fn committed(
    client: &mut Client,
    group: &str,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let conn = coordinator(client, group).await?;
    let v = version_capped::<OffsetFetchRequest>(conn, 7)?;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_topics(None);
    let resp = conn.send_at(&req, v).await?;
    if resp.error_code != 0 {
        bail!(
            "cannot read the offsets of group '{group}' ({})",
            code_name(resp.error_code)
        );
    }
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.entry(t.name.0.to_string())
                    .or_default()
                    .insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

pub async fn describe(args: &ClientArgs, group: &str) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let conn = coordinator(&mut client, group).await?;
    let resp = conn
        .send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(sb(group))]))
        .await?;
    let g = resp
        .groups
        .first()
        .ok_or_else(|| anyhow!("the broker did not describe group '{group}'"))?;
    if g.error_code == 69 {
        bail!("group '{group}' does not exist (GROUP_ID_NOT_FOUND): list groups with 'icestream group list'");
    }
    if g.error_code != 0 {
        bail!(
            "cannot describe group '{group}' ({})",
            code_name(g.error_code)
        );
    }
    if text(&g.group_state) == "Dead" && g.members.is_empty() {
        // Kafka describes unknown groups as Dead: say it plainly, unless offsets exist.
        if committed(&mut client, group).await?.is_empty() {
            bail!("group '{group}' does not exist: list groups with 'icestream group list'");
        }
    }
    // Which member owns which partition, from the assignments (consumer protocol).
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut members = Vec::new();
    for m in &g.members {
        let parts = assigned(&m.member_assignment);
        for (t, p) in &parts {
            owner.insert((t.clone(), *p), text(&m.member_id));
        }
        members.push(json!({
            "member_id": text(&m.member_id),
            "group_instance_id": m.group_instance_id.as_ref().map(text),
            "client_id": text(&m.client_id),
            "host": text(&m.client_host),
            "partitions": parts.iter().map(|(t, p)| format!("{t}[{p}]")).collect::<Vec<_>>(),
        }));
    }
    let offsets = committed(&mut client, group).await?;
    let topics: BTreeSet<String> = offsets
        .keys()
        .cloned()
        .chain(owner.keys().map(|(t, _)| t.clone()))
        .collect();
    let mut rows = Vec::new();
    for topic in topics {
        let Ok(info) = topic_info(&mut client, &topic, "describe").await else {
            continue;
        };
        let ends = list_offsets(&mut client, &topic, &info.partitions, LATEST).await?;
        for p in &info.partitions {
            let current = offsets
                .get(&topic)
                .and_then(|o| o.get(&p.partition))
                .copied();
            let end = ends
                .get(&p.partition)
                .and_then(|r| r.as_ref().ok())
                .copied();
            let member = owner.get(&(topic.clone(), p.partition)).cloned();
            if current.is_none() && member.is_none() {
                continue;
            }
            let lag = match (current, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                (None, Some(e)) => Some(e),
                _ => None,
            };
            rows.push((topic.clone(), p.partition, current, end, lag, member));
        }
    }
    if args.format == Format::Json {
        let parts: Vec<_> = rows
            .iter()
            .map(|(t, p, c, e, l, m)| {
                json!({"topic": t, "partition": p, "committed_offset": c, "log_end_offset": e, "lag": l, "member_id": m})
            })
            .collect();
        emit_json_pretty(&json!({
            "group": group,
            "state": text(&g.group_state),
            "protocol_type": text(&g.protocol_type),
            "protocol": text(&g.protocol_data),
            "members": members,
            "partitions": parts,
            "total_lag": rows.iter().filter_map(|r| r.4).sum::<i64>(),
        }))?;
        return Ok(());
    }
    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut out = key_values(&[
        ("GROUP", group.to_string()),
        ("STATE", text(&g.group_state)),
        ("PROTOCOL", text(&g.protocol_data)),
        ("MEMBERS", g.members.len().to_string()),
        (
            "TOTAL-LAG",
            rows.iter().filter_map(|r| r.4).sum::<i64>().to_string(),
        ),
    ]);
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER",
    ]);
    for (topic, p, c, e, l, m) in rows {
        t.row(vec![
            topic,
            p.to_string(),
            dash(c),
            dash(e),
            dash(l),
            m.unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    emit(&out)?;
    Ok(())
}

/// `(topic, partition)` pairs of a consumer-protocol assignment (empty when not decodable).
fn assigned(bytes: &Bytes) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = bytes.slice(2..);
    match ConsumerProtocolAssignment::decode(&mut body, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(move |&p| (tp.topic.0.to_string(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub async fn delete(args: &ClientArgs, groups: &[String]) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let mut failures = Vec::new();
    for group in groups {
        let conn = coordinator(&mut client, group).await?;
        let resp = conn
            .send(&DeleteGroupsRequest::default().with_groups_names(vec![GroupId(sb(group))]))
            .await?;
        for r in &resp.results {
            if r.error_code == 0 {
                if args.format == Format::Table {
                    emit(&format!("Deleted group {}", r.group_id.0))?;
                }
            } else {
                let hint = match r.error_code {
                    68 => ": stop its consumers first (the group still has members)",
                    69 => ": list groups with 'icestream group list'",
                    _ => "",
                };
                failures.push(format!(
                    "{} ({}){hint}",
                    r.group_id.0,
                    code_name(r.error_code)
                ));
            }
        }
    }
    if args.format == Format::Json {
        emit_json_pretty(&json!({"deleted": groups.len() - failures.len(), "failed": failures}))?;
    }
    if !failures.is_empty() {
        bail!("cannot delete group {}", failures.join("; "));
    }
    Ok(())
}

/// Moves a group's committed offsets for a topic. The group must have no active members,
/// which Kafka also requires: a running consumer would overwrite them.
pub async fn seek(
    args: &ClientArgs,
    group: &str,
    topic: &str,
    to: SeekTo,
    partition: Option<i32>,
) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let info = topic_info(&mut client, topic, "seek in").await?;
    let mut parts: Vec<_> = info.partitions.clone();
    if let Some(p) = partition {
        parts.retain(|i| i.partition == p);
        if parts.is_empty() {
            bail!("topic '{topic}' has no partition {p}: see 'icestream topic describe {topic}'");
        }
    }
    let target: BTreeMap<i32, i64> = match to {
        SeekTo::Offset(n) => parts.iter().map(|p| (p.partition, n)).collect(),
        SeekTo::Start | SeekTo::End => {
            let ts = if to == SeekTo::Start {
                EARLIEST
            } else {
                LATEST
            };
            list_offsets(&mut client, topic, &parts, ts)
                .await?
                .into_iter()
                .map(|(p, r)| {
                    r.map(|o| (p, o))
                        .map_err(|c| anyhow!("partition {p}: {}", code_name(c)))
                })
                .collect::<Result<_>>()?
        }
        SeekTo::Timestamp(ts) => {
            let at = list_offsets(&mut client, topic, &parts, ts).await?;
            let ends = list_offsets(&mut client, topic, &parts, LATEST).await?;
            at.into_iter()
                .map(|(p, r)| {
                    let r = match r {
                        // No record at or after the timestamp: the end, as Kafka does.
                        Ok(o) if o < 0 => ends.get(&p).cloned().unwrap_or(Err(-1)),
                        r => r,
                    };
                    r.map(|o| (p, o))
                        .map_err(|c| anyhow!("partition {p}: {}", code_name(c)))
                })
                .collect::<Result<_>>()?
        }
    };
    let conn = coordinator(&mut client, group).await?;
    let v = version_capped::<OffsetCommitRequest>(conn, 7)?;
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(sb(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(sb(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partitions(
                target
                    .iter()
                    .map(|(&p, &o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                    })
                    .collect(),
            )]);
    let resp = conn.send_at(&req, v).await?;
    let errors: Vec<String> = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.error_code != 0)
        .map(|p| {
            format!(
                "partition {}: {}",
                p.partition_index,
                code_name(p.error_code)
            )
        })
        .collect();
    if !errors.is_empty() {
        let hint = if resp
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code == 25)
        {
            ": the group has active members; stop its consumers first"
        } else {
            ""
        };
        bail!(
            "cannot move the offsets of group '{group}' ({}){hint}",
            errors.join(", ")
        );
    }
    if args.format == Format::Json {
        emit_json_pretty(&json!({"group": group, "topic": topic, "offsets": target}))?;
    } else {
        let mut t = Table::new(&["TOPIC", "PARTITION", "NEW-OFFSET"]);
        for (p, o) in &target {
            t.row(vec![topic.to_string(), p.to_string(), o.to_string()]);
        }
        emit(&t.render())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SeekTo;

    #[test]
    fn seek_positions_parse() {
        assert_eq!("earliest".parse(), Ok(SeekTo::Start));
        assert_eq!("end".parse(), Ok(SeekTo::End));
        assert_eq!("42".parse(), Ok(SeekTo::Offset(42)));
        assert_eq!(
            "ts:1700000000000".parse(),
            Ok(SeekTo::Timestamp(1_700_000_000_000))
        );
        assert!("ts:soon".parse::<SeekTo>().is_err());
        assert!("later".parse::<SeekTo>().is_err());
    }
}
