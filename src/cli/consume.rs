//! `icestream topic consume`: a Fetch loop over the chosen partitions.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;
use serde_json::json;

use super::batches;
use super::client::Client;
use super::errors::{code_detail, hint};
use super::offsets::{list_offsets, topic_info, TopicInfo, EARLIEST, LATEST};
use super::output::{emit, emit_json, Printed};
use super::{ClientArgs, Format};

/// `-o/--offset`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Start,
    End,
    At(i64),
}

impl FromStr for StartOffset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "start" | "beginning" | "oldest" => Ok(StartOffset::Start),
            "end" | "newest" => Ok(StartOffset::End),
            n => match n.parse::<i64>() {
                Ok(o) if o >= 0 => Ok(StartOffset::At(o)),
                _ => Err(format!(
                    "'{s}' is not an offset: use start, end or a number >= 0"
                )),
            },
        }
    }
}

const MAX_WAIT_MS: i32 = 500;
const MAX_BYTES: i32 = 32 * 1024 * 1024;
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
const PARTITION_MAX_BYTES_LIMIT: i32 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Position {
    offset: i64,
    max_bytes: i32,
    /// Whether records came from this partition yet (an explicit offset out of range
    /// before that is the user's mistake; after it, retention moved the log start).
    consumed: bool,
}

pub async fn run(
    args: &ClientArgs,
    topic: &str,
    partition: Option<i32>,
    start: StartOffset,
    num: Option<u64>,
) -> Result<()> {
    if num == Some(0) {
        return Ok(());
    }
    let mut client = Client::connect(args).await?;
    let mut info = topic_info(&mut client, topic, "consume from").await?;
    let mut chosen = info.partitions.clone();
    if let Some(p) = partition {
        chosen.retain(|i| i.partition == p);
        if chosen.is_empty() {
            bail!(
                "partition {p} does not exist in topic '{topic}' ({} partitions): use -p 0..{}",
                info.partitions.len(),
                info.partitions.len().saturating_sub(1)
            );
        }
    }
    let mut positions: BTreeMap<i32, Position> = BTreeMap::new();
    let initial = match start {
        StartOffset::Start => Some(list_offsets(&mut client, topic, &chosen, EARLIEST).await?),
        StartOffset::End => Some(list_offsets(&mut client, topic, &chosen, LATEST).await?),
        StartOffset::At(_) => None,
    };
    for p in &chosen {
        let offset = match (&initial, start) {
            (_, StartOffset::At(o)) => o,
            (Some(m), _) => match m.get(&p.partition) {
                Some(Ok(o)) => *o,
                Some(Err(code)) => bail!(
                    "cannot find the offsets of {topic}[{}] ({}): {}",
                    p.partition,
                    code_detail(*code, None),
                    hint(*code)
                ),
                None => bail!(
                    "the broker did not answer ListOffsets for {topic}[{}]: check the broker log",
                    p.partition
                ),
            },
            (None, _) => 0,
        };
        positions.insert(
            p.partition,
            Position {
                offset,
                max_bytes: PARTITION_MAX_BYTES,
                consumed: false,
            },
        );
    }

    let mut remaining = num;
    loop {
        let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
        let mut leaderless = false;
        for &p in positions.keys() {
            match info.partitions.iter().find(|i| i.partition == p) {
                Some(i) if i.leader >= 0 => by_leader.entry(i.leader).or_default().push(p),
                _ => leaderless = true,
            }
        }
        let mut refresh = leaderless;
        for (leader, parts) in by_leader {
            let req = fetch_request(topic, &parts, &positions);
            let resp = client.node(leader).await?.send(&req).await?;
            if resp.error_code != 0 {
                bail!(
                    "cannot fetch from {topic} ({}): {}",
                    code_detail(resp.error_code, None),
                    hint(resp.error_code)
                );
            }
            let answers = resp
                .responses
                .iter()
                .filter(|t| t.topic.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter());
            for data in answers {
                let p = data.partition_index;
                let Some(pos) = positions.get_mut(&p) else {
                    continue;
                };
                match data.error_code {
                    0 => {}
                    // Leadership moved or the partition is not ready there yet.
                    3 | 5 | 6 | 74 | 75 => {
                        refresh = true;
                        continue;
                    }
                    1 if pos.consumed || !matches!(start, StartOffset::At(_)) => {
                        let earliest = earliest_offset(&mut client, &info, topic, p).await?;
                        eprintln!(
                            "note: offset {} of {topic}[{p}] is no longer in the log; continuing at {earliest}",
                            pos.offset
                        );
                        pos.offset = earliest;
                        continue;
                    }
                    1 => bail!(
                        "offset {} is out of range for {topic}[{p}] (log start {}, high watermark {}): use -o start, -o end or an offset in that range",
                        pos.offset,
                        data.log_start_offset,
                        data.high_watermark
                    ),
                    code => bail!(
                        "cannot fetch {topic}[{p}] at offset {} ({}): {}",
                        pos.offset,
                        code_detail(code, None),
                        hint(code)
                    ),
                }
                let Some(bytes) = data.records.clone().filter(|b| !b.is_empty()) else {
                    continue;
                };
                let batches = batches::split(bytes).map_err(|e| {
                    anyhow!(
                        "cannot read {topic}[{p}] at offset {} ({e}): check the broker log",
                        pos.offset
                    )
                })?;
                if batches.is_empty() {
                    // Only part of one batch fit: ask for more room next time.
                    if pos.max_bytes >= PARTITION_MAX_BYTES_LIMIT {
                        bail!(
                            "the record batch at {topic}[{p}]@{} is larger than {} MiB: this CLI cannot read it",
                            pos.offset,
                            PARTITION_MAX_BYTES_LIMIT / (1024 * 1024)
                        );
                    }
                    pos.max_bytes = pos
                        .max_bytes
                        .saturating_mul(2)
                        .min(PARTITION_MAX_BYTES_LIMIT);
                    continue;
                }
                for batch in &batches {
                    if batch.last_offset < pos.offset {
                        continue;
                    }
                    let records = batches::decode(batch).map_err(|e| {
                        anyhow!("cannot read {topic}[{p}] ({e}): the data may be corrupt; check the broker log")
                    })?;
                    for r in records
                        .iter()
                        .filter(|r| !r.control && r.offset >= pos.offset)
                    {
                        if print_record(args.format, topic, p, r)? == Printed::Closed {
                            return Ok(());
                        }
                        pos.consumed = true;
                        if let Some(n) = remaining.as_mut() {
                            *n -= 1;
                            if *n == 0 {
                                return Ok(());
                            }
                        }
                    }
                    pos.offset = pos.offset.max(batch.last_offset.saturating_add(1));
                }
            }
        }
        if refresh {
            tokio::time::sleep(Duration::from_millis(200)).await;
            info = topic_info(&mut client, topic, "consume from").await?;
        }
    }
}

fn fetch_request(topic: &str, parts: &[i32], positions: &BTreeMap<i32, Position>) -> FetchRequest {
    let partitions = parts
        .iter()
        .filter_map(|p| positions.get(p).map(|pos| (p, pos)))
        .map(|(p, pos)| {
            FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(pos.offset)
                .with_partition_max_bytes(pos.max_bytes)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(MAX_BYTES)
        .with_isolation_level(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)])
}

async fn earliest_offset(
    client: &mut Client,
    info: &TopicInfo,
    topic: &str,
    p: i32,
) -> Result<i64> {
    let part: Vec<_> = info
        .partitions
        .iter()
        .filter(|i| i.partition == p)
        .cloned()
        .collect();
    match list_offsets(client, topic, &part, EARLIEST).await?.get(&p) {
        Some(Ok(o)) => Ok(*o),
        Some(Err(code)) => Err(anyhow!(
            "cannot find the log start of {topic}[{p}] ({}): {}",
            code_detail(*code, None),
            hint(*code)
        )),
        None => Err(anyhow!(
            "the broker did not answer ListOffsets for {topic}[{p}]: check the broker log"
        )),
    }
}

fn lossy(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// One record as a JSON object.
pub fn record_json(topic: &str, partition: i32, r: &Record) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), json!(lossy(v))))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": lossy(&r.key),
        "value": lossy(&r.value),
        "headers": headers,
    })
}

fn print_record(format: Format, topic: &str, partition: i32, r: &Record) -> Result<Printed> {
    match format {
        Format::Json => emit_json(&record_json(topic, partition, r)),
        Format::Table => emit(&lossy(&r.value).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::TimestampType;

    #[test]
    fn offsets_parse() {
        assert_eq!("start".parse(), Ok(StartOffset::Start));
        assert_eq!("end".parse(), Ok(StartOffset::End));
        assert_eq!("42".parse(), Ok(StartOffset::At(42)));
        assert!("-3".parse::<StartOffset>().is_err());
        assert!("soon".parse::<StartOffset>().is_err());
    }

    #[test]
    fn records_as_json() {
        let mut headers = IndexMap::new();
        headers.insert(
            StrBytes::from_static_str("h"),
            Some(Bytes::from_static(b"v")),
        );
        let r = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 7,
            sequence: -1,
            timestamp: 1000,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers,
        };
        assert_eq!(
            record_json("t", 2, &r),
            json!({"topic": "t", "partition": 2, "offset": 7, "timestamp": 1000,
                   "key": null, "value": "hello", "headers": {"h": "v"}})
        );
    }
}
