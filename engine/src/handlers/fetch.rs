//! Fetch: reads stored batches as they are, long-polls on partition watermarks until
//! `min_bytes` or `max_wait_ms`, and serves incremental fetch sessions (KIP-227).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::select_all;
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::authorize::{self, Decisions};
use super::{partition_error, topic_name};
use crate::broker::Broker;
use crate::fetch_session::{PartKey, SessionError, SessionPartition};
use crate::limits::fetch_memory::{ConnFetchMemory, Reservation};
use crate::log::file_slice::{FileSlice, Stored};
use crate::log::producer_state::AbortedTxn;
use crate::log_reader::LogReadError;
use crate::partition::{PartitionHandle, Watermarks};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

/// Largest response a fetch builds (Kafka's `fetch.max.bytes` default, 55 MiB).
const FETCH_MAX_BYTES: usize = 55 << 20;

/// Versions from 13 name topics by id.
const TOPIC_IDS_FROM: i16 = 13;

/// Versions from 11 carry the consumer's rack and may be served by followers (KIP-392).
const FOLLOWER_FETCH_FROM: i16 = 11;

struct Wanted {
    key: PartKey,
    topic_id: Uuid,
    offset: i64,
    max_bytes: i32,
    handle: Option<PartitionHandle>,
    unknown_code: i16,
    /// `(high watermark, log start)` last sent in this session.
    last: (i64, i64),
    /// The replica in the consumer's rack this leader sends it to instead of answering.
    redirect: Option<i32>,
}

/// A fetch's answer: the response, the memory reservation covering the records it holds in
/// memory (to be dropped once the response is written), and the file slices that stand in it
/// as placeholders, in the order they appear ([`crate::log::file_slice`]).
pub struct Answer {
    pub response: FetchResponse,
    pub memory: Option<Reservation>,
    pub files: Vec<FileSlice>,
}

/// Answers a fetch whose partition data is read within `memory`. With `in_place` (a plaintext
/// connection, which can sendfile), local batches are answered as file slices, not read.
pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: FetchRequest,
    memory: &ConnFetchMemory,
    in_place: bool,
) -> Answer {
    // A replica's fetch (replica id >= 0) needs CLUSTER_ACTION; a consumer's READ on each topic.
    // Checked on every fetch of a session too, so a revoked ACL stops the next one.
    let replica = req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0;
    let cluster_denied = replica && !authorize::cluster(b, s, Operation::ClusterAction);
    let mut readable = Decisions::new(b, s, Operation::Read, ResourceType::Topic);
    let by_id = version >= TOPIC_IDS_FROM;
    let unknown_code = if by_id {
        ResponseError::UnknownTopicId
    } else {
        ResponseError::UnknownTopicOrPartition
    }
    .code();
    // The partitions named in this request.
    let mut requested: IndexMap<PartKey, SessionPartition> = IndexMap::new();
    for t in &req.topics {
        let name = if by_id {
            b.topics
                .by_id(t.topic_id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        } else {
            t.topic.as_str().to_string()
        };
        for p in &t.partitions {
            requested.insert(
                (name.clone(), p.partition),
                SessionPartition {
                    topic_id: t.topic_id,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    last_high: -1,
                    last_start: -1,
                },
            );
        }
    }
    let forgotten: Vec<PartKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|f| {
            let name = if by_id {
                b.topics
                    .by_id(f.topic_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default()
            } else {
                f.topic.as_str().to_string()
            };
            f.partitions.iter().map(move |&p| (name.clone(), p))
        })
        .collect();

    // Resolve the session: what to fetch, and which session (if any) the answer belongs to.
    let (session_id, incremental, fetch_set) = match (req.session_id, req.session_epoch) {
        _ if version < 7 => (0, false, requested),
        (0, -1) => (0, false, requested),
        (id, -1) => {
            b.fetch_sessions.remove(id);
            (0, false, requested)
        }
        (id, 0) => {
            if id != 0 {
                b.fetch_sessions.remove(id);
            }
            let new_id = b.fetch_sessions.create(requested.clone()).unwrap_or(0);
            (new_id, false, requested)
        }
        (id, epoch) => {
            let res = b.fetch_sessions.update(id, epoch, |s| {
                for k in &forgotten {
                    s.parts.shift_remove(k);
                }
                for (k, p) in requested {
                    let (high, start) = s
                        .parts
                        .get(&k)
                        .map_or((-1, -1), |o| (o.last_high, o.last_start));
                    s.parts.insert(
                        k,
                        SessionPartition {
                            last_high: high,
                            last_start: start,
                            ..p
                        },
                    );
                }
                s.parts.clone()
            });
            match res {
                Ok(parts) => (id, true, parts),
                Err(e) => {
                    let code = match e {
                        SessionError::NotFound(_) => ResponseError::FetchSessionIdNotFound,
                        SessionError::BadEpoch { .. } => ResponseError::InvalidFetchSessionEpoch,
                    };
                    let response = FetchResponse::default()
                        .with_error_code(code.code())
                        .with_session_id(0);
                    return Answer {
                        response,
                        memory: None,
                        files: Vec::new(),
                    };
                }
            }
        }
    };

    // isolation_level 1: read_committed (up to the last stable offset).
    let committed = req.isolation_level == 1;
    let rack =
        Some(req.rack_id.as_str()).filter(|r| version >= FOLLOWER_FETCH_FROM && !r.is_empty());
    let wanted: Vec<Wanted> = fetch_set
        .into_iter()
        .map(|(key, sp)| {
            let topic = b.topics.get(&key.0);
            // Unknown ids stay UNKNOWN_TOPIC_ID; names are checked whether they exist or not.
            if (!by_id || topic.is_some()) && (cluster_denied || !readable.allows(&key.0)) {
                return Wanted {
                    topic_id: topic.as_ref().map_or(sp.topic_id, |t| t.id),
                    key,
                    offset: sp.fetch_offset,
                    max_bytes: sp.max_bytes,
                    handle: None,
                    unknown_code: ResponseError::TopicAuthorizationFailed.code(),
                    last: (sp.last_high, sp.last_start),
                    redirect: None,
                };
            }
            let handle = topic.as_ref().and_then(|t| t.partition(key.1)).cloned();
            let topic_id = topic.as_ref().map_or(sp.topic_id, |t| t.id);
            // The leader serves a partition, or names a replica in the consumer's rack; from v11
            // every replica serves consumers up to its own high watermark (KIP-392).
            let (handle, unknown_code, redirect) = match &topic {
                Some(t) if handle.is_some() => {
                    if b.leads(t, key.1) {
                        let redirect = rack.and_then(|r| read_replica_in(b, t, key.1, r));
                        (handle, unknown_code, redirect)
                    } else if version >= FOLLOWER_FETCH_FROM
                        && handle.as_ref().is_some_and(|h| h.raft_leader.is_some())
                    {
                        (handle, unknown_code, None)
                    } else {
                        (None, ResponseError::NotLeaderOrFollower.code(), None)
                    }
                }
                _ => (handle, unknown_code, None),
            };
            Wanted {
                key,
                topic_id,
                offset: sp.fetch_offset,
                max_bytes: sp.max_bytes,
                handle,
                unknown_code,
                last: (sp.last_high, sp.last_start),
                redirect,
            }
        })
        .collect();

    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(req.max_wait_ms.clamp(0, 60_000) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    // Kafka's broker-side fetch.max.bytes: one response never buffers more than this.
    let max_bytes = if req.max_bytes <= 0 {
        FETCH_MAX_BYTES
    } else {
        (req.max_bytes as usize).min(FETCH_MAX_BYTES)
    };
    let mut watchers: Vec<_> = wanted
        .iter()
        .filter_map(|w| w.handle.as_ref().map(|h| h.marks.clone()))
        .collect();
    for w in &mut watchers {
        w.borrow_and_update();
    }
    // Memory is reserved around each read and kept only for what the response holds; none
    // is held while long-polling.
    let (results, reservation) = loop {
        let mut reserved = memory.reserve(max_bytes).await;
        let budget = reserved.bytes().min(max_bytes);
        let results = read_all(b, &wanted, budget, committed, in_place).await;
        let bytes: usize = results.iter().map(PartResult::len).sum();
        // Errors and redirections are answered at once.
        let any_error = results.iter().any(|r| r.error != 0 || r.preferred >= 0);
        if bytes >= min_bytes
            || any_error
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            reserved.shrink_to(in_memory(&results));
            break (results, reserved);
        }
        drop(reserved);
        // Wait for any partition's watermarks to move, or the deadline.
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            let mut reserved = memory.reserve(max_bytes).await;
            let budget = reserved.bytes().min(max_bytes);
            let results = read_all(b, &wanted, budget, committed, in_place).await;
            reserved.shrink_to(in_memory(&results));
            break (results, reserved);
        }
    };

    let mut sent = Vec::new();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut files = Vec::new();
    for (w, mut r) in wanted.iter().zip(results) {
        let has_news = r.error != 0
            || r.preferred >= 0
            || r.len() > 0
            || (r.marks.high, r.marks.log_start) != w.last;
        if incremental && !has_news {
            continue;
        }
        sent.push((w.key.clone(), r.marks.high, r.marks.log_start));
        if r.len() > 0 {
            b.metrics
                .topic_fetched_bytes
                .get_or_create(&b.metrics.topic_label(&w.key.0))
                .inc_by(r.len() as u64);
        }
        let records = match r.records.take() {
            None => Bytes::new(),
            Some(Stored::Mem(bytes)) => bytes,
            Some(Stored::File(f)) => match f.placeholder() {
                Some(p) => {
                    files.push(f);
                    p
                }
                // Longer than a placeholder can be (a batch above 64 MiB): read it.
                None => f.read().unwrap_or_else(|e| {
                    tracing::warn!(topic = %w.key.0, partition = w.key.1, error = %e, "read failed");
                    r.error = ResponseError::KafkaStorageError.code();
                    Bytes::new()
                }),
            },
        };
        let pd = PartitionData::default()
            .with_partition_index(w.key.1)
            .with_error_code(r.error)
            .with_high_watermark(r.marks.high)
            .with_last_stable_offset(r.marks.stable)
            .with_aborted_transactions(r.aborted.map(|a| {
                a.into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            }))
            .with_log_start_offset(r.marks.log_start)
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(r.preferred))
            .with_records(Some(records));
        match topics.last_mut() {
            Some(t) if t.topic.as_str() == w.key.0 && (!by_id || t.topic_id == w.topic_id) => {
                t.partitions.push(pd)
            }
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(topic_name(&w.key.0))
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![pd]),
            ),
        }
    }
    if session_id != 0 {
        b.fetch_sessions.note_sent(session_id, &sent);
    }
    let response = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics);
    Answer {
        response,
        memory: Some(reservation),
        files,
    }
}

/// Bytes of records the results hold in memory (file slices hold none).
fn in_memory(results: &[PartResult]) -> usize {
    results
        .iter()
        .map(|r| match &r.records {
            Some(Stored::Mem(b)) => b.len(),
            _ => 0,
        })
        .sum()
}

struct PartResult {
    error: i16,
    marks: Watermarks,
    records: Option<Stored>,
    /// `preferred_read_replica` (-1: none); only ever set for v11+ requests.
    preferred: i32,
    /// read_committed: the aborted transactions overlapping `records`.
    aborted: Option<Vec<AbortedTxn>>,
}

impl PartResult {
    fn len(&self) -> usize {
        self.records.as_ref().map_or(0, Stored::len)
    }
}

/// KIP-392's rack-aware selection, on the leader: a live replica in the consumer's rack that
/// holds everything committed, unless the leader itself is in that rack or the broker's
/// `--replica-selector` is `leader`.
fn read_replica_in(b: &Broker, t: &crate::topics::Topic, p: i32, rack: &str) -> Option<i32> {
    let c = b.cluster.as_ref().filter(|c| c.config.follower_fetch)?;
    if c.config.rack.as_deref() == Some(rack) {
        return None;
    }
    let caught_up = t.partition(p)?.raft_view.as_ref()?.read().caught_up.clone();
    caught_up.into_iter().find(|&id| {
        c.members.is_alive(id) && c.members.get(id).and_then(|m| m.rack).as_deref() == Some(rack)
    })
}

/// Reads the wanted partitions in request order, handing each the rest of the response's
/// `max_bytes` (capped by its own limit): partitions whose shares fit are read together, so
/// what is read never exceeds `max_bytes` by more than one oversized first batch per partition
/// (KIP-74: the first non-empty partition always counts). Partitions left when the budget is
/// spent are answered without records, as Kafka does.
async fn read_all(
    b: &Broker,
    wanted: &[Wanted],
    max_bytes: usize,
    committed: bool,
    in_place: bool,
) -> Vec<PartResult> {
    let mut results: Vec<Option<PartResult>> = wanted.iter().map(|_| None).collect();
    let mut used = 0usize;
    let mut next = 0;
    'waves: while next < wanted.len() {
        let mut left = max_bytes.saturating_sub(used);
        let mut wave = Vec::new();
        while let Some(w) = wanted.get(next) {
            let reads_data = w.handle.is_some() && w.redirect.is_none();
            if reads_data {
                if left == 0 {
                    break;
                }
                let cap = (w.max_bytes.max(0) as usize).min(left);
                left -= cap;
                wave.push((next, cap));
            } else {
                wave.push((next, 0));
            }
            next += 1;
        }
        if wave.is_empty() {
            break 'waves;
        }
        let reads = futures_util::future::join_all(
            wave.iter()
                .map(|&(i, cap)| read_one(b, &wanted[i], cap, committed, in_place)),
        )
        .await;
        for ((i, _), mut r) in wave.into_iter().zip(reads) {
            let len = r.len();
            if len > 0 {
                if used > 0 && used + len > max_bytes {
                    r.records = None;
                } else {
                    used += len;
                }
            }
            results[i] = Some(r);
        }
    }
    results
        .into_iter()
        .zip(wanted)
        .map(|(r, w)| {
            r.unwrap_or_else(|| PartResult {
                error: 0,
                marks: w
                    .handle
                    .as_ref()
                    .map_or_else(unknown_marks, |h| *h.marks.borrow()),
                records: None,
                preferred: -1,
                aborted: None,
            })
        })
        .collect()
}

/// One partition's answer, with at most about `max` bytes of records.
async fn read_one(
    b: &Broker,
    w: &Wanted,
    max: usize,
    committed: bool,
    in_place: bool,
) -> PartResult {
    let Some(h) = &w.handle else {
        return PartResult {
            error: w.unknown_code,
            marks: unknown_marks(),
            records: None,
            preferred: -1,
            aborted: None,
        };
    };
    if let Some(id) = w.redirect {
        return PartResult {
            error: 0,
            marks: *h.marks.borrow(),
            records: None,
            preferred: id,
            aborted: None,
        };
    }
    let offset = w.offset;
    let id = crate::remote::RemotePartition {
        topic: w.key.0.clone(),
        topic_id: w.topic_id,
        partition: w.key.1,
    };
    match b
        .read_stored(&id, h, offset, max, committed, in_place)
        .await
    {
        Ok(read) => PartResult {
            error: 0,
            marks: read.marks,
            records: read.records,
            preferred: -1,
            aborted: committed.then_some(read.aborted),
        },
        Err(e) => {
            let error = match &e {
                LogReadError::Partition(e) => partition_error(e),
                _ => {
                    tracing::warn!(topic = %id.topic, partition = id.partition, offset, error = %e, "remote read failed");
                    ResponseError::KafkaStorageError.code()
                }
            };
            PartResult {
                error,
                marks: *h.marks.borrow(),
                records: None,
                preferred: -1,
                aborted: None,
            }
        }
    }
}

fn unknown_marks() -> Watermarks {
    Watermarks {
        local_start: -1,
        log_start: -1,
        high: -1,
        log_end: -1,
        stable: -1,
    }
}
