//! `abort`: writes the abort marker a coordinator would have written, to one partition.

use super::producers::{partition_producers, targets_of};
use super::*;

/// Which transaction `abort` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortWhich {
    /// The one open on the partition from this offset (its producer found with
    /// DescribeProducers).
    StartOffset(i64),
    Producer {
        id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    },
}

/// The marker to write for a transaction open at `offset`, as kafka-transactions.sh picks it:
/// that producer's id and epoch, and its last coordinator epoch (0 when it has none).
pub fn marker_for_start(states: &[OpenTxn], offset: i64) -> Option<(i64, i16, i32)> {
    states
        .iter()
        .find(|s| s.start_offset >= 0 && s.start_offset == offset)
        .map(|s| {
            (
                s.producer_id,
                i16::try_from(s.producer_epoch).unwrap_or(i16::MAX),
                s.coordinator_epoch.max(0),
            )
        })
}

/// The one-line error for a marker the partition refused.
pub fn abort_error(
    topic: &str,
    partition: i32,
    pid: i64,
    epoch: i16,
    cepoch: i32,
    code: i16,
    message: Option<&str>,
) -> anyhow::Error {
    let detail = code_detail(code, message);
    let tp = format!("{topic}[{partition}]");
    match code {
        47 | 90 => anyhow!(
            "cannot abort the transaction of producer {pid} on {tp} ({detail}): epoch {epoch} is older than the producer's current one, so that transaction was already ended; see 'icestream transaction describe-producers --topic {topic} --partition {partition}'"
        ),
        52 => anyhow!(
            "cannot abort the transaction of producer {pid} on {tp} ({detail}): coordinator epoch {cepoch} is older than the one of the producer's last marker there; use the COORDINATOR-EPOCH of 'icestream transaction describe-producers --topic {topic} --partition {partition}'"
        ),
        3 | 100 => topic_error("abort a transaction on", topic, code, message),
        _ => anyhow!(
            "cannot abort the transaction of producer {pid} on {tp} ({detail}): {}",
            hint(code)
        ),
    }
}

pub async fn abort(
    args: &ClientArgs,
    topic: &str,
    partition: i32,
    which: AbortWhich,
) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let targets = targets_of(
        &mut client,
        topic,
        Some(partition),
        "abort a transaction on",
    )
    .await?;
    let leader = targets[0].leader;
    if leader < 0 {
        bail!("{topic}[{partition}] has no leader (LEADER_NOT_AVAILABLE): leadership is moving; retry in a few seconds");
    }
    let (start_offset, (pid, epoch, cepoch)) = match which {
        AbortWhich::StartOffset(o) => {
            let states = partition_producers(&mut client, topic, partition).await?;
            let m = marker_for_start(&states, o).ok_or_else(|| {
                anyhow!("no transaction is open at offset {o} of {topic}[{partition}]: see the open ones with 'icestream transaction describe-producers --topic {topic} --partition {partition}'")
            })?;
            (Some(o), m)
        }
        AbortWhich::Producer {
            id,
            epoch,
            coordinator_epoch,
        } => (None, (id, epoch, coordinator_epoch)),
    };
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(cepoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(sb(topic)))
            .with_partition_indexes(vec![partition])])]);
    let resp = client.node(leader).await?.send(&req).await?;
    let code = resp
        .markers
        .iter()
        .filter(|m| m.producer_id.0 == pid)
        .flat_map(|m| m.topics.iter())
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .map(|p| p.error_code)
        .ok_or_else(|| {
            anyhow!("broker {leader} did not answer for {topic}[{partition}]: check the broker log")
        })?;
    if code != 0 {
        return Err(abort_error(
            topic, partition, pid, epoch, cepoch, code, None,
        ));
    }
    if args.format == Format::Json {
        emit_json_pretty(&json!({
            "topic": topic,
            "partition": partition,
            "producer_id": pid,
            "producer_epoch": epoch,
            "coordinator_epoch": cepoch,
            "start_offset": start_offset,
            "aborted": true,
        }))?;
    } else {
        let at = start_offset.map_or(String::new(), |o| format!(" started at offset {o}"));
        emit(&format!(
            "Aborted the transaction{at} of producer {pid} (epoch {epoch}, coordinator epoch {cepoch}) on {topic}[{partition}]"
        ))?;
    }
    Ok(())
}
