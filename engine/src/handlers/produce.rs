//! Produce: validate each batch (magic v2, length, CRC32C), hand it to the partition's actor,
//! and answer once the partition's replication group has committed it (acks=1/all) or at once
//! (acks=0, which gets no response at all). Topics with `confluent.value.schema.validation`
//! (or the key variant) also have each record's schema id checked against the registry.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::authorize::{self, Decisions};
use super::{partition_error, sb, Handled, HandlerFuture};
use crate::broker::Broker;
use crate::log::batch::{self, BatchError};
use crate::log::records;
use crate::partition::{Cmd, PartitionError, ProduceOk};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

enum Pending {
    Done(PartitionProduceResponse),
    /// The partition, the bytes sent to it (counted once appended) and the answer.
    Waiting(
        i32,
        usize,
        oneshot::Receiver<Result<ProduceOk, PartitionError>>,
    ),
}

pub fn handle(b: &Arc<Broker>, s: &Session, version: i16, req: ProduceRequest) -> HandlerFuture {
    let acks = req.acks;
    let txn_id = req
        .transactional_id
        .as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| t.to_string());
    let has_txn_id = txn_id.is_some();
    let valid_acks = matches!(acks, -1..=1);
    // WRITE on the transactional id fails the whole request, then WRITE on each topic its
    // partitions (as Kafka, before anything else is looked at).
    let txn_denied = txn_id.as_ref().is_some_and(|id| {
        !authorize::allowed(b, s, Operation::Write, ResourceType::TransactionalId, id)
    });
    let mut writable = Decisions::new(b, s, Operation::Write, ResourceType::Topic);
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for td in req.topic_data {
        let topic_denied = !writable.allows(td.name.as_str());
        let topic = b.topics.get(td.name.as_str());
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for pd in td.partition_data {
            let idx = pd.index;
            let fail = |e: ResponseError, msg: Option<String>| {
                Pending::Done(error_response(idx, e.code(), msg))
            };
            if txn_denied {
                parts.push(fail(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    None,
                ));
                continue;
            }
            if topic_denied {
                parts.push(fail(ResponseError::TopicAuthorizationFailed, None));
                continue;
            }
            if !valid_acks {
                parts.push(fail(
                    ResponseError::InvalidRequiredAcks,
                    Some(format!("acks must be -1, 0 or 1, got {acks}")),
                ));
                continue;
            }
            let Some(handle) = topic.as_ref().and_then(|t| t.partition(idx)) else {
                parts.push(fail(ResponseError::UnknownTopicOrPartition, None));
                continue;
            };
            if topic.as_ref().is_some_and(|t| !b.leads(t, idx)) {
                parts.push(fail(ResponseError::NotLeaderOrFollower, None));
                continue;
            }
            if let Some(why) = b.disk.refusal() {
                parts.push(fail(ResponseError::KafkaStorageError, Some(why)));
                continue;
            }
            // Only the broker writes its internal topics, as in Kafka.
            if crate::topics::is_internal(td.name.as_str()) {
                let why = format!("cannot produce to internal topic {}", td.name.as_str());
                parts.push(fail(ResponseError::InvalidTopicException, Some(why)));
                continue;
            }
            let Some(records) = pd.records else {
                parts.push(fail(
                    ResponseError::InvalidRecord,
                    Some("no records".into()),
                ));
                continue;
            };
            let batches = match batch::split_batches(&records) {
                Ok(v) => v,
                Err(e) => {
                    let code = match e {
                        BatchError::CorruptCrc { .. } => ResponseError::CorruptMessage,
                        BatchError::UnsupportedMagic(_) => {
                            ResponseError::UnsupportedForMessageFormat
                        }
                        _ => ResponseError::InvalidRecord,
                    };
                    parts.push(fail(code, Some(e.to_string())));
                    continue;
                }
            };
            // Checked here, on the connection's shard, so that decompression never stalls the
            // shard that owns the partition.
            let max = topic.as_ref().map_or(0, |t| t.resolved.max_message_bytes);
            if let Some((_, b)) = batches.iter().find(|(_, b)| b.len() > max) {
                let e = PartitionError::MessageTooLarge { size: b.len(), max };
                parts.push(fail(ResponseError::MessageTooLarge, Some(e.to_string())));
                continue;
            }
            let compacted = topic.as_ref().is_some_and(|t| t.resolved.compact);
            let limit = records::decompressed_limit(max);
            // Schema ids are checked in the same pass over the records as their framing.
            let mut schema_check = topic
                .as_ref()
                .filter(|t| t.resolved.value_schema_validation || t.resolved.key_schema_validation)
                .map(|t| SchemaIdCheck::new(b.schema_ids.get().map(|i| i.as_ref()), &t.resolved));
            let summaries: Result<Vec<_>, _> = batches
                .iter()
                .map(|(h, data)| {
                    records::check_with(data, h, limit, |i, k, v| {
                        if let Some(c) = schema_check.as_mut() {
                            c.record(i, k, v);
                        }
                    })
                })
                .collect();
            match summaries {
                Err(e) => {
                    parts.push(fail(ResponseError::InvalidRecord, Some(e.to_string())));
                    continue;
                }
                Ok(s) if compacted && s.iter().any(|s| s.null_key) => {
                    let why =
                        "a compacted topic (cleanup.policy=compact) needs a key on every record";
                    parts.push(fail(ResponseError::InvalidRecord, Some(why.into())));
                    continue;
                }
                Ok(s) => {
                    let bad = topic.as_ref().and_then(|t| {
                        timestamp_out_of_bounds(&t.resolved, &batches, &s, crate::time::now_ms())
                    });
                    if let Some(why) = bad {
                        parts.push(fail(ResponseError::InvalidTimestamp, Some(why)));
                        continue;
                    }
                }
            }
            if let Some(SchemaIdCheck { bad, failed, .. }) = schema_check {
                if let Some((first, _)) = bad.first() {
                    let why = match failed {
                        1 => first.clone(),
                        n => format!("{first} (and {} more records)", n - 1),
                    };
                    let mut r = error_response(idx, ResponseError::InvalidRecord.code(), Some(why));
                    // record_errors exists from Produce v8 (the encoder skips it below).
                    if version >= 8 {
                        r.record_errors = bad
                            .iter()
                            .map(|(m, i)| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(*i)
                                    .with_batch_index_error_message(Some(sb(m.clone())))
                            })
                            .collect();
                    }
                    parts.push(Pending::Done(r));
                    continue;
                }
            }
            // Markers are the transaction coordinators' (WriteTxnMarkers), never a client's.
            if batches.iter().any(|(h, _)| h.is_control()) {
                let e = PartitionError::ControlFromClient;
                parts.push(fail(ResponseError::InvalidRecord, Some(e.to_string())));
                continue;
            }
            if batches.iter().any(|(h, _)| h.is_transactional()) && !has_txn_id {
                let why = "transactional batches need the request's transactional id";
                parts.push(fail(ResponseError::InvalidRequest, Some(why.into())));
                continue;
            }
            // KIP-890: the partition asks the coordinator before a producer's first batch in
            // a transaction, if it has to (crate::partition::verify); v12+ (transaction
            // protocol v2) adds the partition to the transaction rather than checks it.
            let verify = txn_id.as_ref().and_then(|id| {
                let (h, _) = batches.iter().find(|(h, _)| h.is_transactional())?;
                Some(crate::broker::txn_verify::verifier(
                    b,
                    id.clone(),
                    td.name.to_string(),
                    idx,
                    h.producer_id,
                    h.producer_epoch,
                    version >= 12 && b.transaction_version() >= 2,
                ))
            });
            let (tx, rx) = oneshot::channel();
            let size = records.len();
            if handle
                .tx
                .send(Cmd::Produce {
                    batches,
                    reply: tx,
                    acks_all: acks == -1,
                    verify,
                })
                .is_err()
            {
                parts.push(fail(ResponseError::NotLeaderOrFollower, None));
                continue;
            }
            parts.push(Pending::Waiting(idx, size, rx));
        }
        topics.push((td.name, parts));
    }
    let metrics = b.metrics.clone();
    Box::pin(async move {
        let mut errors = Vec::new();
        let mut responses = Vec::with_capacity(topics.len());
        for (name, parts) in topics {
            let mut partition_responses = Vec::with_capacity(parts.len());
            let mut appended = 0u64;
            for p in parts {
                let r = match p {
                    Pending::Done(r) => r,
                    Pending::Waiting(idx, size, rx) => match rx.await {
                        Ok(Ok(ok)) => {
                            appended += size as u64;
                            PartitionProduceResponse::default()
                                .with_index(idx)
                                .with_base_offset(ok.base_offset)
                                .with_log_append_time_ms(ok.log_append_time)
                                .with_log_start_offset(ok.log_start_offset)
                        }
                        Ok(Err(e)) => error_response(idx, partition_error(&e), Some(e.to_string())),
                        Err(_) => {
                            error_response(idx, ResponseError::NotLeaderOrFollower.code(), None)
                        }
                    },
                };
                if r.error_code != 0 {
                    errors.push(r.error_code);
                }
                partition_responses.push(r);
            }
            if appended > 0 {
                metrics
                    .topic_produced_bytes
                    .get_or_create(&metrics.topic_label(name.as_str()))
                    .inc_by(appended);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partition_responses),
            );
        }
        if acks == 0 {
            return Handled {
                response: None,
                errors,
            };
        }
        Handled {
            response: Some(ResponseKind::Produce(
                ProduceResponse::default().with_responses(responses),
            )),
            errors,
        }
    })
}

/// Produce-time schema id validation (`confluent.value.schema.validation` and friends): each
/// non-null value (key) must start with the Confluent wire format, magic byte 0 and a
/// big-endian schema id the registry holds. Collects (message, record index in its batch) for
/// the first records that fail (at most [`MAX_RECORD_ERRORS`], to bound the response) and how
/// many failed.
struct SchemaIdCheck<'a> {
    ids: Option<&'a dyn crate::schema_ids::SchemaIds>,
    key: bool,
    value: bool,
    bad: Vec<(String, i32)>,
    failed: usize,
}

impl<'a> SchemaIdCheck<'a> {
    fn new(
        ids: Option<&'a dyn crate::schema_ids::SchemaIds>,
        cfg: &crate::config::ResolvedTopicConfig,
    ) -> Self {
        SchemaIdCheck {
            ids,
            key: cfg.key_schema_validation,
            value: cfg.value_schema_validation,
            bad: Vec::new(),
            failed: 0,
        }
    }

    fn record(&mut self, i: i32, key: Option<&[u8]>, value: Option<&[u8]>) {
        for (on, what, field) in [(self.key, "key", key), (self.value, "value", value)] {
            let Some(field) = field.filter(|_| on) else {
                continue;
            };
            let why = match field {
                [0, a, b, c, d, ..] => {
                    let id = i32::from_be_bytes([*a, *b, *c, *d]);
                    if self.ids.is_some_and(|ids| ids.is_registered(id)) {
                        continue;
                    }
                    format!("record {i}: {what} schema id {id} is not registered")
                }
                [0, ..] => format!(
                    "record {i}: {what} is shorter than the Confluent wire-format header (magic byte 0 and a 4-byte schema id)"
                ),
                _ => format!(
                    "record {i}: {what} does not start with the Confluent wire-format magic byte 0"
                ),
            };
            self.failed += 1;
            if self.bad.len() < MAX_RECORD_ERRORS {
                self.bad.push((why, i));
            }
            return;
        }
    }
}

/// Record errors listed in one partition's produce response.
const MAX_RECORD_ERRORS: usize = 100;

fn error_response(idx: i32, code: i16, msg: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(idx)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(msg.map(sb))
}

/// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` check of CreateTime topics: every
/// record's timestamp must lie within those bounds of the broker's clock. None when all do.
fn timestamp_out_of_bounds(
    cfg: &crate::config::ResolvedTopicConfig,
    batches: &[(batch::BatchHeader, bytes::Bytes)],
    summaries: &[records::Summary],
    now: i64,
) -> Option<String> {
    if cfg.log.log_append_time {
        return None;
    }
    for ((h, _), s) in batches.iter().zip(summaries) {
        if h.base_timestamp < 0 {
            continue;
        }
        let oldest = h.base_timestamp as i128 + s.min_timestamp_delta as i128;
        let newest = h.base_timestamp as i128 + s.max_timestamp_delta as i128;
        let now = now as i128;
        if now - oldest > cfg.timestamp_before_max_ms as i128 {
            return Some(format!(
                "record timestamp {oldest} is more than message.timestamp.before.max.ms={} before the broker's time {now}",
                cfg.timestamp_before_max_ms
            ));
        }
        if newest - now > cfg.timestamp_after_max_ms as i128 {
            return Some(format!(
                "record timestamp {newest} is more than message.timestamp.after.max.ms={} after the broker's time {now}",
                cfg.timestamp_after_max_ms
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema id errors of `batches`, checked as the produce path checks them.
    fn schema_id_errors(
        ids: Option<&dyn crate::schema_ids::SchemaIds>,
        cfg: &crate::config::ResolvedTopicConfig,
        batches: &[(batch::BatchHeader, bytes::Bytes)],
        limit: usize,
    ) -> (Vec<(String, i32)>, usize) {
        let mut c = SchemaIdCheck::new(ids, cfg);
        for (h, data) in batches {
            records::check_with(data, h, limit, |i, k, v| c.record(i, k, v)).unwrap();
        }
        (c.bad, c.failed)
    }
    use crate::config::{ClusterDefaults, TopicConfig};
    use crate::log::batch::{encode_batch, split_batches, Compression, NewRecord};
    use bytes::Bytes;

    struct Only(i32);
    impl crate::schema_ids::SchemaIds for Only {
        fn is_registered(&self, id: i32) -> bool {
            id == self.0
        }
    }

    fn batch(values: &[Option<&[u8]>]) -> Vec<(batch::BatchHeader, Bytes)> {
        let records: Vec<NewRecord> = values
            .iter()
            .map(|v| NewRecord {
                key: None,
                value: v.map(Bytes::copy_from_slice),
                timestamp: 0,
                headers: Vec::new(),
            })
            .collect();
        split_batches(&encode_batch(&records, Compression::Zstd).unwrap()).unwrap()
    }

    #[test]
    fn schema_ids_are_checked_per_record() {
        let cfg = TopicConfig::from_pairs([("confluent.value.schema.validation", "true")])
            .unwrap()
            .resolve(&ClusterDefaults::default());
        let good: &[u8] = &[0, 0, 0, 0, 7, 1, 2];
        let ids = Only(7);
        let ok = batch(&[Some(good), None, Some(good)]);
        assert_eq!(schema_id_errors(Some(&ids), &cfg, &ok, 1 << 20).1, 0);
        let bad = batch(&[
            Some(good),
            Some(b"raw"),
            Some(&[0, 0, 0, 0, 42]),
            Some(&[0, 1]),
        ]);
        let (errors, failed) = schema_id_errors(Some(&ids), &cfg, &bad, 1 << 20);
        assert_eq!(failed, 3);
        let idx: Vec<i32> = errors.iter().map(|e| e.1).collect();
        assert_eq!(idx, [1, 2, 3]);
        assert_eq!(
            errors[0].0,
            "record 1: value does not start with the Confluent wire-format magic byte 0"
        );
        assert_eq!(
            errors[1].0,
            "record 2: value schema id 42 is not registered"
        );
        // Without a registry no id is registered.
        assert_eq!(schema_id_errors(None, &cfg, &ok, 1 << 20).1, 2);
        // A batch of many bad records lists the first ones only.
        let many = batch(&vec![Some(&b"raw"[..]); 1000]);
        let (errors, failed) = schema_id_errors(Some(&ids), &cfg, &many, 1 << 20);
        assert_eq!((errors.len(), failed), (MAX_RECORD_ERRORS, 1000));
    }
}
