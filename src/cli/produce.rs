//! `icestream topic produce`: stdin lines become records, sent in batches.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use serde_json::json;
use std::io::BufRead;
use tokio::sync::mpsc;

use super::client::Client;
use super::errors::{code_detail, hint};
use super::offsets::{topic_info, TopicInfo};
use super::output::{emit, emit_json, Printed};
use super::partitioner::partition_for_key;
use super::{ClientArgs, Format};
use engine::log::batch::{self, NewRecord};

/// `--acks`
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// Wait until the partition's replicas committed the batch
    All,
    /// Wait for the leader only
    #[value(name = "1")]
    Leader,
    /// Do not wait (no offsets are reported)
    #[value(name = "0")]
    None,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
            Acks::None => 0,
        }
    }
}

/// `--compression`
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Self {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub key: Option<String>,
    pub partition: Option<i32>,
    pub acks: Acks,
    pub compression: CompressionArg,
}

/// A batch closes at this many records...
const MAX_BATCH_RECORDS: usize = 5_000;
/// ...or this many value bytes (below the default 1 MiB max.message.bytes)...
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// ...or when stdin has been quiet this long, so interactive lines go out at once.
const LINGER: Duration = Duration::from_millis(10);
/// How long the broker may wait for replicas before answering.
const PRODUCE_TIMEOUT_MS: i32 = 8_000;
/// Attempts for errors that mean "nothing was written, ask the new leader".
const ATTEMPTS: u32 = 4;

/// Reads stdin on a plain thread (tokio's `io-std` feature is not enabled, and a thread
/// blocked on a terminal must not keep the runtime from shutting down), so batching can
/// wait on a channel with a timeout.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(MAX_BATCH_RECORDS);
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(Ok(Bytes::from(line))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

/// Chooses partitions: fixed (`-p` or key hash) or round-robin over batches.
#[derive(Debug, Clone)]
struct Chooser {
    fixed: Option<i32>,
    next: u64,
    count: i32,
}

impl Chooser {
    fn new(opts: &ProduceOptions, topic: &TopicInfo) -> Result<Self> {
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if count == 0 {
            bail!(
                "topic '{}' has no partitions in the metadata: retry, or check 'icestream topic describe {}'",
                topic.name,
                topic.name
            );
        }
        let fixed = match (opts.partition, &opts.key) {
            (Some(p), _) if !(0..count).contains(&p) => bail!(
                "partition {p} does not exist in topic '{}' ({count} partitions): use -p 0..{}",
                topic.name,
                count - 1
            ),
            (Some(p), _) => Some(p),
            (None, Some(k)) => Some(partition_for_key(k.as_bytes(), count)),
            (None, None) => None,
        };
        // Start the rotation somewhere random so short runs spread over partitions.
        let next = uuid::Uuid::new_v4().as_u64_pair().0;
        Ok(Chooser { fixed, next, count })
    }

    fn next(&mut self) -> i32 {
        match self.fixed {
            Some(p) => p,
            None => {
                let p = (self.next % self.count as u64) as i32;
                self.next = self.next.wrapping_add(1);
                p
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One v2 record batch holding `values`.
pub(super) fn encode_batch(
    values: &[Bytes],
    key: Option<&Bytes>,
    compression: Compression,
) -> Result<Bytes> {
    let timestamp = now_ms();
    let records: Vec<NewRecord> = values
        .iter()
        .map(|v| NewRecord {
            key: key.cloned(),
            value: Some(v.clone()),
            timestamp,
            headers: Vec::new(),
        })
        .collect();
    batch::encode_batch(&records, compression).map_err(|e| anyhow!("{e}: try --compression none"))
}

pub async fn run(args: &ClientArgs, topic: &str, opts: ProduceOptions) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let mut info = topic_info(&mut client, topic, "produce to").await?;
    let mut chooser = Chooser::new(&opts, &info)?;
    let key = opts
        .key
        .as_ref()
        .map(|k| Bytes::from(k.clone().into_bytes()));
    let mut lines = spawn_stdin_reader();
    loop {
        let first = match lines.recv().await {
            None => break,
            Some(line) => line.map_err(stdin_error)?,
        };
        let mut bytes = first.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout(LINGER, lines.recv()).await {
                Ok(Some(line)) => {
                    let line = line.map_err(stdin_error)?;
                    bytes += line.len();
                    batch.push(line);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let partition = chooser.next();
        let records = encode_batch(&batch, key.as_ref(), opts.compression.into())?;
        let offset = send_batch(&mut client, &mut info, partition, records, opts.acks).await?;
        let printed = match args.format {
            Format::Json => emit_json(&json!({
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "records": batch.len(),
            }))?,
            Format::Table => match offset {
                Some(o) => emit(&format!(
                    "Produced {} records to {topic}[{partition}]@{o}",
                    batch.len()
                ))?,
                None => emit(&format!(
                    "Produced {} records to {topic}[{partition}] (acks=0: offset unknown)",
                    batch.len()
                ))?,
            },
        };
        if printed == Printed::Closed {
            break;
        }
    }
    Ok(())
}

fn stdin_error(e: std::io::Error) -> anyhow::Error {
    anyhow!("cannot read standard input ({e}): pipe one record value per line into the command")
}

/// Sends one batch to the partition leader; the base offset when acks is not 0.
pub(crate) async fn send_batch(
    client: &mut Client,
    info: &mut TopicInfo,
    partition: i32,
    records: Bytes,
    acks: Acks,
) -> Result<Option<i64>> {
    let topic = info.name.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let leader = info
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .unwrap_or(-1);
        let code = if leader < 0 {
            5 // LEADER_NOT_AVAILABLE
        } else {
            let req = ProduceRequest::default()
                .with_acks(acks.wire())
                .with_timeout_ms(PRODUCE_TIMEOUT_MS)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records.clone()))])]);
            let conn = client.node(leader).await?;
            let version = conn.version::<ProduceRequest>()?;
            if acks == Acks::None {
                conn.send_oneway(&req, version).await?;
                return Ok(None);
            }
            let resp = conn.send_at(&req, version).await?;
            let Some(p) = resp
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == partition)
            else {
                bail!("the broker did not answer for {topic}[{partition}] in Produce: check the broker log");
            };
            if p.error_code == 0 {
                return Ok(Some(p.base_offset));
            }
            let message = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
                p.record_errors
                    .iter()
                    .find_map(|r| r.batch_index_error_message.as_ref().map(|m| m.to_string()))
            });
            // Leadership moved or replicas are short: nothing was appended, so retry.
            if matches!(p.error_code, 5 | 6 | 19) && attempt < ATTEMPTS {
                p.error_code
            } else {
                bail!(
                    "cannot produce to {topic}[{partition}] ({}): {}",
                    code_detail(p.error_code, message.as_deref()),
                    hint(p.error_code)
                );
            }
        };
        if attempt >= ATTEMPTS {
            bail!(
                "cannot produce to {topic}[{partition}] ({}): {}",
                code_detail(code, None),
                hint(code)
            );
        }
        tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        *info = topic_info(client, &topic, "produce to").await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn topic(partitions: i32) -> TopicInfo {
        TopicInfo {
            name: "t".into(),
            topic_id: String::new(),
            internal: false,
            partitions: (0..partitions)
                .map(|p| super::super::offsets::PartitionInfo {
                    partition: p,
                    leader: 1,
                    replicas: vec![1],
                    isr: vec![1],
                    error_code: 0,
                })
                .collect(),
        }
    }

    fn opts(key: Option<&str>, partition: Option<i32>) -> ProduceOptions {
        ProduceOptions {
            key: key.map(str::to_string),
            partition,
            acks: Acks::All,
            compression: CompressionArg::None,
        }
    }

    #[test]
    fn keyed_batches_stay_on_the_hashed_partition() {
        let mut c = Chooser::new(&opts(Some("21"), None), &topic(7)).expect("chooser");
        let want = partition_for_key(b"21", 7);
        assert_eq!(c.next(), want);
        assert_eq!(c.next(), want);
    }

    #[test]
    fn unkeyed_batches_rotate() {
        let mut c = Chooser::new(&opts(None, None), &topic(3)).expect("chooser");
        let a = c.next();
        let b = c.next();
        let d = c.next();
        assert_eq!(b, (a + 1) % 3);
        assert_eq!(d, (a + 2) % 3);
    }

    #[test]
    fn explicit_partition_is_checked() {
        assert!(Chooser::new(&opts(None, Some(3)), &topic(3)).is_err());
        let mut c = Chooser::new(&opts(Some("k"), Some(2)), &topic(3)).expect("chooser");
        assert_eq!(c.next(), 2);
        assert!(Chooser::new(&opts(None, None), &topic(0)).is_err());
    }

    #[test]
    fn batches_round_trip() {
        let values = vec![Bytes::from_static(b"a"), Bytes::from_static(b"")];
        let key = Bytes::from_static(b"k");
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut bytes = encode_batch(&values, Some(&key), c).expect("encode");
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).expect("info");
            assert_eq!(info.len(), 1, "one batch");
            assert_eq!(info[0].base_sequence, -1);
            assert_eq!(info[0].producer_id, -1);
            let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("decode");
            let got: Vec<_> = sets[0].records.iter().map(|r| r.value.clone()).collect();
            assert_eq!(got, vec![Some(values[0].clone()), Some(values[1].clone())]);
            assert_eq!(sets[0].records[1].offset, 1);
            assert_eq!(sets[0].records[0].key.as_ref(), Some(&key));
        }
    }
}
