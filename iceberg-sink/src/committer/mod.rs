//! The committer: one broker per Iceberg topic lands every partition leader's translation
//! rounds in the topic's table, so that commits do not contend.
//!
//! Partition leaders' translators read their partitions and write Parquet data files into
//! the table's location, then hand the round (per partition: the table's next offset it
//! started from and the next offset after it, the offset ranges, the data files) to the
//! topic's committer: the translator on the Raft leader of the topic's partition 0, a
//! placement that fails over with Raft. On that broker the round goes in-process; from the
//! others, over HTTP to its Iceberg catalog listener ([`http`]), at the URL its hellos carry.
//!
//! The committer queues rounds per table and commits all that still fit the table
//! ([`batch::plan`]) in one fast-append snapshot with the merged offsets map, through the
//! compare-and-swap of [`crate::commit`] (two committers during a failover never both land a
//! round). Each round is answered Committed (the table's offsets after it) or Superseded (the
//! table's offsets: the sender drops its files and resumes from there). Its only durable
//! state is the table: a round lost with a committer is translated again from the table's
//! offsets, and a round the table already covers is answered Superseded.
//!
//! With a catalog the brokers do not share (each broker's own built-in catalog), every broker
//! is the committer of its own table.

pub mod batch;
pub(crate) mod http;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::topics::Topic;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{ErrorKind, TableIdent};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::commit::{self, Round};
use crate::error::SinkError;
use crate::metrics::Metrics;
use crate::offsets::{self, Offsets};
use crate::settings::{Mode, TopicSettings};
use crate::translator::Shared;

/// Commits between snapshot expiries.
const EXPIRE_EVERY: u32 = 10;
/// How long a translator keeps handing a round over while no committer takes it (an
/// election, a committer broker down) before it gives the round up and translates again.
const HANDOVER_PATIENCE: Duration = Duration::from_secs(30);

/// A round handed to the committer.
#[derive(Debug, Clone)]
pub struct Handover {
    pub topic: String,
    pub topic_id: Uuid,
    pub table: TableIdent,
    /// The schema and partition spec the data files were written with.
    pub schema_id: i32,
    pub partition_spec_id: i32,
    pub round: Round,
}

/// The committer's answer to a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// In the table; its offsets after the commit.
    Committed { offsets: Offsets },
    /// Not committed: the table already covers part of it. The table's offsets.
    Superseded { offsets: Offsets },
    /// This broker does not commit the topic; the leader of partition 0 as it sees it.
    NotCommitter { leader: Option<i32> },
}

#[derive(Debug, thiserror::Error)]
pub enum CommitterError {
    #[error("round refused: {0}")]
    BadRound(String),
    #[error("topic '{0}' does not exist here (or was recreated)")]
    UnknownTopic(String),
    #[error("table {table} not found")]
    NoTable { table: String },
    #[error("committing to {table}: {message}")]
    Commit { table: String, message: String },
    #[error("committer broker {node} at {url}: {message}")]
    Remote {
        node: i32,
        url: String,
        message: String,
    },
    #[error("no committer took the round of topic '{topic}' within {HANDOVER_PATIENCE:?} (partition 0 leader: {leader:?})")]
    NoCommitter { topic: String, leader: Option<i32> },
    #[error("the committer stopped before answering")]
    Dropped,
}

/// Where a topic's rounds go, as this broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Remote {
        node: i32,
        url: String,
    },
    /// No leader of partition 0 known, or its catalog URL not yet heard.
    Unknown(Option<i32>),
}

impl Target {
    /// The committer's node id, if known.
    pub fn node(&self, me: i32) -> Option<i32> {
        match self {
            Target::Local => Some(me),
            Target::Remote { node, .. } => Some(*node),
            Target::Unknown(l) => *l,
        }
    }
}

/// The committer of `topic`: this broker with a catalog it does not share or without a
/// cluster, else the leader of partition 0.
pub(crate) fn resolve(sh: &Shared, topic: &Topic) -> Target {
    let Some(cluster) = sh
        .broker
        .cluster
        .as_ref()
        .filter(|_| sh.config.shared_catalog)
    else {
        return Target::Local;
    };
    let leader = sh.broker.partition_leader(topic, 0);
    if leader == sh.broker.node_id() {
        return Target::Local;
    }
    if leader < 0 {
        return Target::Unknown(None);
    }
    match cluster
        .members
        .get(leader)
        .and_then(|m| m.iceberg_catalog_url)
    {
        Some(url) => Target::Remote { node: leader, url },
        None => Target::Unknown(Some(leader)),
    }
}

/// The committer's queues (one per table) and the tables it reads rounds' files against.
#[derive(Default)]
pub(crate) struct Committer {
    queues: Mutex<HashMap<TableIdent, Arc<TableQueue>>>,
    decode_tables: Mutex<HashMap<TableIdent, Table>>,
}

#[derive(Default)]
struct TableQueue {
    pending: Mutex<Vec<Pending>>,
    /// Held while committing: rounds arriving meanwhile wait in `pending` for the next commit.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The table as this committer last committed or loaded it (`None`: load it).
    table: Option<Table>,
    commits_since_expire: u32,
}

struct Pending {
    h: Handover,
    tx: oneshot::Sender<Result<Answer, CommitterError>>,
}

impl Committer {
    fn queue(&self, ident: &TableIdent) -> Arc<TableQueue> {
        self.queues.lock().entry(ident.clone()).or_default().clone()
    }

    /// Drops what this committer keeps for a table (its topic is gone).
    pub(crate) fn forget(&self, ident: &TableIdent) {
        self.queues.lock().remove(ident);
        self.decode_tables.lock().remove(ident);
    }

    /// The table to read a round's data files against: one that knows the round's schema and
    /// partition spec (reloaded when the cached one does not).
    pub(crate) async fn table_for(
        &self,
        sh: &Shared,
        ident: &TableIdent,
        schema_id: i32,
        spec_id: i32,
    ) -> Result<Table, CommitterError> {
        let knows = |t: &Table| {
            t.metadata().schema_by_id(schema_id).is_some()
                && t.metadata().partition_spec_by_id(spec_id).is_some()
        };
        if let Some(t) = self.decode_tables.lock().get(ident).filter(|t| knows(t)) {
            return Ok(t.clone());
        }
        let t = sh.catalog.load_table(ident).await.map_err(|e| {
            if e.kind() == ErrorKind::TableNotFound {
                CommitterError::NoTable {
                    table: ident.to_string(),
                }
            } else {
                CommitterError::Commit {
                    table: ident.to_string(),
                    message: e.to_string(),
                }
            }
        })?;
        self.decode_tables.lock().insert(ident.clone(), t.clone());
        Ok(t)
    }
}

/// Takes a round as the committer: answers NotCommitter unless this broker commits the
/// topic, else queues it and answers once a commit landed it or found it superseded.
pub(crate) async fn submit(sh: &Arc<Shared>, h: Handover) -> Result<Answer, CommitterError> {
    let topic = sh
        .broker
        .topics
        .get_internal(&h.topic)
        .filter(|t| t.id == h.topic_id)
        .ok_or_else(|| CommitterError::UnknownTopic(h.topic.clone()))?;
    let s = TopicSettings::of(&topic, &sh.broker.defaults(), &sh.config.default_namespace);
    if s.mode == Mode::Disabled {
        return Err(CommitterError::BadRound(format!(
            "topic '{}' has no iceberg.mode",
            h.topic
        )));
    }
    if s.table(&h.topic) != h.table {
        return Err(CommitterError::BadRound(format!(
            "topic '{}' is translated into {}, not {}",
            h.topic,
            s.table(&h.topic),
            h.table
        )));
    }
    batch::check(&h.round.advance).map_err(CommitterError::BadRound)?;
    if let Some(&(p, _, _)) = h
        .round
        .advance
        .iter()
        .find(|a| a.0 as usize >= topic.partitions.len())
    {
        return Err(CommitterError::BadRound(format!(
            "topic '{}' has no partition {p}",
            h.topic
        )));
    }
    if let t @ (Target::Remote { .. } | Target::Unknown(_)) = resolve(sh, &topic) {
        return Ok(Answer::NotCommitter {
            leader: t.node(sh.broker.node_id()),
        });
    }
    let queue = sh.committer.queue(&h.table);
    let (tx, rx) = oneshot::channel();
    queue.pending.lock().push(Pending { h, tx });
    // The commit runs in its own task, so a sender that goes away (a dropped connection)
    // does not cut a commit short; whichever task gets the lock first commits everything
    // queued by then, and the others find nothing left.
    let sh = sh.clone();
    tokio::spawn(async move {
        let mut state = queue.state.lock().await;
        let batch = std::mem::take(&mut *queue.pending.lock());
        if !batch.is_empty() {
            commit_batch(&sh, &mut state, batch).await;
        }
    });
    rx.await.unwrap_or(Err(CommitterError::Dropped))
}

/// Commits every round of `batch` that fits (all name the same table) and answers each.
async fn commit_batch(sh: &Shared, state: &mut State, batch: Vec<Pending>) {
    let ident = batch[0].h.table.clone();
    let topic = batch[0].h.topic.clone();
    let topic_id = batch[0].h.topic_id.to_string();
    let fail = |batch: Vec<Pending>, message: String| {
        for p in batch {
            let _ = p.tx.send(Err(CommitterError::Commit {
                table: ident.to_string(),
                message: message.clone(),
            }));
        }
    };
    let base = match state.table.take() {
        Some(t) => t,
        None => match sh.catalog.load_table(&ident).await {
            Ok(t) => t,
            Err(e) => return fail(batch, e.to_string()),
        },
    };
    // Rounds written with a partition spec the table no longer has as its default cannot be
    // appended: their senders translate again with the table as it is now.
    let spec_id = base.metadata().default_partition_spec_id();
    let (batch, stale): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|p| p.h.partition_spec_id == spec_id && p.h.topic_id.to_string() == topic_id);
    let current = offsets::committed(base.metadata(), &topic_id);
    for p in stale {
        let _ = p.tx.send(Ok(Answer::Superseded {
            offsets: current.clone(),
        }));
    }
    if batch.is_empty() {
        state.table = Some(base);
        return;
    }
    let (rounds, txs): (Vec<Round>, Vec<_>) = batch.into_iter().map(|p| (p.h.round, p.tx)).unzip();
    let landed = match commit::append_all(sh.catalog.as_ref(), base, &topic_id, &rounds).await {
        Ok(l) => l,
        Err(e) => {
            // The table is the truth: the next batch reloads it.
            tracing::warn!(table = %ident, error = %e, "Iceberg commit failed");
            for tx in txs {
                let _ = tx.send(Err(CommitterError::Commit {
                    table: ident.to_string(),
                    message: e.to_string(),
                }));
            }
            return;
        }
    };
    let after = offsets::committed(landed.table.metadata(), &topic_id);
    let label = Metrics::label(&topic);
    let m = &sh.metrics;
    for ((round, tx), &ok) in rounds.iter().zip(txs).zip(&landed.committed) {
        let answer = if ok {
            m.rounds.get_or_create(&label).inc();
            m.records
                .get_or_create(&label)
                .inc_by(round.files.iter().map(|f| f.record_count()).sum());
            m.files
                .get_or_create(&label)
                .inc_by(round.files.len() as u64);
            m.bytes
                .get_or_create(&label)
                .inc_by(round.files.iter().map(|f| f.file_size_in_bytes()).sum());
            Answer::Committed {
                offsets: after.clone(),
            }
        } else {
            m.rounds_superseded.get_or_create(&label).inc();
            Answer::Superseded {
                offsets: after.clone(),
            }
        };
        let _ = tx.send(Ok(answer));
    }
    state.table = Some(landed.table);
    if landed.snapshot {
        m.commits.get_or_create(&label).inc();
        state.commits_since_expire += 1;
        if state.commits_since_expire >= EXPIRE_EVERY {
            state.commits_since_expire = 0;
            expire(sh, state).await;
        }
    }
}

/// Expires snapshots past the policy; a failure only delays it.
async fn expire(sh: &Shared, state: &mut State) {
    let Some(table) = state.table.take() else {
        return;
    };
    let older = engine::time::now_ms() - sh.config.snapshot_max_age_ms;
    let tx = Transaction::new(&table);
    let res = async {
        let tx = tx
            .expire_snapshots()
            .retain_last(sh.config.snapshots_keep.max(1))
            .expire_older_than_ms(older)
            .apply(tx)?;
        tx.commit(sh.catalog.as_ref()).await
    }
    .await;
    match res {
        Ok(t) => state.table = Some(t),
        Err(e) => tracing::warn!(table = %table.identifier(), error = %e, "snapshot expiry failed"),
    }
}

/// Hands a round to the topic's committer (in-process or over HTTP), re-resolving it while
/// none takes the round. Sending a round again is safe: a round the table already covers is
/// answered Superseded.
pub(crate) async fn hand_over(
    sh: &Arc<Shared>,
    table: &Table,
    h: Handover,
) -> Result<Answer, SinkError> {
    let deadline = Instant::now() + HANDOVER_PATIENCE;
    let mut backoff = Duration::from_millis(50);
    let mut body = None;
    loop {
        let topic = sh
            .broker
            .topics
            .get_internal(&h.topic)
            .ok_or_else(|| CommitterError::UnknownTopic(h.topic.clone()))?;
        let (answer, leader) = match resolve(sh, &topic) {
            Target::Local => (submit(sh, h.clone()).await, Some(sh.broker.node_id())),
            Target::Remote { node, url } => {
                let b = match body.take() {
                    Some(b) => b,
                    None => wire::RoundBody::of(&h, table).map_err(CommitterError::BadRound)?,
                };
                let answer = http::send(&sh.broker, &url, &b).await.map_err(|e| match e {
                    http::SendError::Refused(message) => CommitterError::BadRound(message),
                    http::SendError::Transport(message) => CommitterError::Remote {
                        node,
                        url: url.clone(),
                        message,
                    },
                });
                body = Some(b);
                (answer, Some(node))
            }
            Target::Unknown(l) => (Ok(Answer::NotCommitter { leader: l }), l),
        };
        match answer {
            // No committer now, or it is down or failing over: the next resolution may find
            // another (or the same one back).
            Ok(Answer::NotCommitter { .. })
            | Err(CommitterError::Remote { .. } | CommitterError::Commit { .. }) => {}
            Ok(a) => return Ok(a),
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(match answer {
                Err(e) => e.into(),
                Ok(_) => CommitterError::NoCommitter {
                    topic: h.topic.clone(),
                    leader,
                }
                .into(),
            });
        }
        if let Err(e) = &answer {
            tracing::debug!(topic = %h.topic, error = %e, "handing a round over failed; trying again");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests;
