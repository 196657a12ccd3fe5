//! KIP-890 on the produce path: how a partition leader asks the transaction coordinator about
//! a producer's transaction before its first batch there (the partition decides when to ask,
//! `partition::verify`). The coordinator is this broker's or another's, asked with
//! AddPartitionsToTxn as Kafka's partition leaders do (its AddPartitionsToTxnManager):
//!
//! - part 1 (transaction protocol v1 producers, Produce < v12): whether the producer's ongoing
//!   transaction includes the partition (`verify_only`, v4); nothing is added.
//! - part 2 (protocol v2, Produce v12+ once `transaction.version` 2 is finalized): the leader
//!   adds the partition to the transaction (v5, not `verify_only`), which begins it if need
//!   be. The group coordinator does the same for a TxnOffsetCommit v5 ([`add`]). While the
//!   producer's previous transaction still writes its markers the coordinator answers
//!   CONCURRENT_TRANSACTIONS: the add is retried here for a while, as Kafka's
//!   `add.partitions.to.txn.retry.backoff.*`.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TransactionalId};
use kafka_protocol::ResponseError;
use tokio::time::{Duration, Instant};

use super::Broker;
use crate::handlers::{sb, topic_name};
use crate::partition::verify::{Verify, VerifyError};
use crate::topics::TRANSACTIONS_TOPIC;
use crate::txn::{TxnError, TxnVersion};

/// Backoff between adds the coordinator is not ready for, and for how long in all: within a
/// produce's usual timeout, the previous transaction's markers have time to land.
const ADD_RETRY_MIN: Duration = Duration::from_millis(20);
const ADD_RETRY_MAX: Duration = Duration::from_millis(200);
const ADD_RETRY_FOR: Duration = Duration::from_secs(10);

/// One producer's transaction at one partition.
struct Ask {
    txn_id: String,
    topic: String,
    partition: i32,
    producer_id: i64,
    epoch: i16,
}

/// What a transactional produce to `topic`-`partition` carries to its partition. `adds`: the
/// producer speaks transaction protocol v2, the partition is added rather than checked.
pub(crate) fn verifier(
    b: &Arc<Broker>,
    txn_id: String,
    topic: String,
    partition: i32,
    producer_id: i64,
    epoch: i16,
    adds: bool,
) -> Verify {
    let b = b.clone();
    let a = Ask {
        txn_id,
        topic,
        partition,
        producer_id,
        epoch,
    };
    Verify {
        ask: Box::new(move || {
            Box::pin(async move {
                let r = if adds {
                    add_retrying(&b, &a).await
                } else {
                    once(&b, &a, false).await
                };
                r.map_err(verify_error)
            })
        }),
        adds,
    }
}

/// Adds `topic`-`partition` to the producer's transaction (protocol v2), here or through the
/// coordinator's broker: what the group coordinator does before a TxnOffsetCommit v5 writes.
pub(crate) async fn add(
    b: &Broker,
    txn_id: &str,
    topic: &str,
    partition: i32,
    producer_id: i64,
    epoch: i16,
) -> Result<(), VerifyError> {
    let a = Ask {
        txn_id: txn_id.to_string(),
        topic: topic.to_string(),
        partition,
        producer_id,
        epoch,
    };
    add_retrying(b, &a).await.map_err(verify_error)
}

/// Whether `topic`-`partition` is in the producer's ongoing transaction (protocol v1), here
/// or through the coordinator's broker: what the group coordinator checks before a
/// TxnOffsetCommit below v5 writes (`TopicHost::verify_txn`).
pub(crate) async fn verify(
    b: &Broker,
    txn_id: &str,
    topic: &str,
    partition: i32,
    producer_id: i64,
    epoch: i16,
) -> Result<(), VerifyError> {
    let a = Ask {
        txn_id: txn_id.to_string(),
        topic: topic.to_string(),
        partition,
        producer_id,
        epoch,
    };
    once(b, &a, false).await.map_err(verify_error)
}

fn verify_error(e: TxnError) -> VerifyError {
    match e {
        TxnError::InvalidTxnState | TxnError::InvalidProducerIdMapping => {
            VerifyError::NotInTransaction
        }
        TxnError::ProducerFenced => VerifyError::Fenced,
        e => VerifyError::Unavailable(e.to_string()),
    }
}

/// An add, again with backoff while the coordinator is busy with the transaction (its
/// previous one's markers, a state being written).
async fn add_retrying(b: &Broker, a: &Ask) -> Result<(), TxnError> {
    let until = Instant::now() + ADD_RETRY_FOR;
    let mut backoff = ADD_RETRY_MIN;
    loop {
        match once(b, a, true).await {
            Err(TxnError::ConcurrentTransactions) if Instant::now() + backoff < until => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ADD_RETRY_MAX);
            }
            r => return r,
        }
    }
}

/// Asks once: this broker's coordinator when it serves the id, else the one that does.
async fn once(b: &Broker, a: &Ask, add: bool) -> Result<(), TxnError> {
    let id = a.txn_id.as_str();
    match b.txns.check(b, id) {
        Ok(()) => {
            let p = [(a.topic.clone(), a.partition)];
            if add {
                b.txns
                    .add_partitions(b, id, a.producer_id, a.epoch, &p, TxnVersion::V2)
                    .await
            } else {
                b.txns
                    .verify(b, id, a.producer_id, a.epoch, &p)
                    .pop()
                    .unwrap_or(Err(TxnError::NotCoordinator))
            }
        }
        Err(TxnError::NotCoordinator) => ask_coordinator(b, a, add).await,
        Err(e) => Err(e),
    }
}

/// Asks the broker leading the id's `__transaction_state` partition: AddPartitionsToTxn v4
/// `verify_only` (part 1), v5 to add (part 2).
async fn ask_coordinator(b: &Broker, a: &Ask, add: bool) -> Result<(), TxnError> {
    let unavailable = |why: String| TxnError::CoordinatorNotAvailable(why);
    let t = b
        .topics
        .get_internal(TRANSACTIONS_TOPIC)
        .ok_or_else(|| unavailable(format!("{TRANSACTIONS_TOPIC} does not exist")))?;
    let p = crate::txn::store::partition_for(&a.txn_id, t.partitions.len());
    let node = b.partition_leader(&t, p);
    if node < 0 || node == b.config.node_id {
        return Err(unavailable("no coordinator for the transaction now".into()));
    }
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(sb(a.txn_id.as_str())))
            .with_producer_id(ProducerId(a.producer_id))
            .with_producer_epoch(a.epoch)
            .with_verify_only(!add)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&a.topic))
                .with_partitions(vec![a.partition])]),
    ]);
    let version = if add { 5 } else { 4 };
    let resp = crate::handlers::forward::ask_broker(
        b,
        &crate::security::Session::internal(),
        node,
        version,
        &req,
    )
    .await
    .map_err(|e| unavailable(format!("broker {node}: {e}")))?;
    let code = if resp.error_code != 0 {
        resp.error_code
    } else {
        resp.results_by_transaction
            .iter()
            .flat_map(|r| &r.topic_results)
            .flat_map(|t| &t.results_by_partition)
            .map(|p| p.partition_error_code)
            .next()
            .unwrap_or(ResponseError::UnknownServerError.code())
    };
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(ResponseError::InvalidTxnState) => Err(TxnError::InvalidTxnState),
        Some(ResponseError::InvalidProducerIdMapping) => Err(TxnError::InvalidProducerIdMapping),
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => {
            Err(TxnError::ProducerFenced)
        }
        Some(ResponseError::ConcurrentTransactions) => Err(TxnError::ConcurrentTransactions),
        Some(e) => Err(unavailable(format!("broker {node}: {e}"))),
    }
}
