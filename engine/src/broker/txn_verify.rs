//! KIP-890 part 1 on the produce path: how a partition leader asks the transaction
//! coordinator whether a producer's ongoing transaction includes a partition (the partition
//! decides when to ask, `partition::verify`). The coordinator is this broker's
//! (`txn::Coordinator::verify`) or another's, asked with AddPartitionsToTxn v4 `verify_only`,
//! as Kafka's partition leaders do.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TransactionalId};
use kafka_protocol::ResponseError;

use super::Broker;
use crate::handlers::{sb, topic_name};
use crate::partition::verify::{Verify, VerifyError};
use crate::topics::TRANSACTIONS_TOPIC;
use crate::txn::TxnError;

/// What a transactional produce to `topic`-`partition` carries to its partition.
pub(crate) fn verifier(
    b: &Arc<Broker>,
    txn_id: String,
    topic: String,
    partition: i32,
    producer_id: i64,
    epoch: i16,
) -> Verify {
    let b = b.clone();
    Box::new(move || {
        Box::pin(async move { verify(&b, &txn_id, topic, partition, producer_id, epoch).await })
    })
}

pub(crate) async fn verify(
    b: &Broker,
    id: &str,
    topic: String,
    partition: i32,
    producer_id: i64,
    epoch: i16,
) -> Result<(), VerifyError> {
    match b.txns.check(b, id) {
        Ok(()) => {
            let answer = b
                .txns
                .verify(b, id, producer_id, epoch, &[(topic, partition)])
                .pop()
                .unwrap_or(Err(TxnError::NotCoordinator));
            answer.map_err(|e| match e {
                TxnError::InvalidTxnState | TxnError::InvalidProducerIdMapping => {
                    VerifyError::NotInTransaction
                }
                TxnError::ProducerFenced => VerifyError::Fenced,
                e => VerifyError::Unavailable(e.to_string()),
            })
        }
        Err(TxnError::NotCoordinator) => {
            ask_coordinator(b, id, topic, partition, producer_id, epoch).await
        }
        Err(e) => Err(VerifyError::Unavailable(e.to_string())),
    }
}

/// Asks the broker leading the id's `__transaction_state` partition.
async fn ask_coordinator(
    b: &Broker,
    id: &str,
    topic: String,
    partition: i32,
    producer_id: i64,
    epoch: i16,
) -> Result<(), VerifyError> {
    let unavailable = |why: String| VerifyError::Unavailable(why);
    let t = b
        .topics
        .get_internal(TRANSACTIONS_TOPIC)
        .ok_or_else(|| unavailable(format!("{TRANSACTIONS_TOPIC} does not exist")))?;
    let p = crate::txn::store::partition_for(id, t.partitions.len());
    let node = b.partition_leader(&t, p);
    if node < 0 || node == b.config.node_id {
        return Err(unavailable("no coordinator for the transaction now".into()));
    }
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(sb(id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(vec![partition])]),
    ]);
    let resp = crate::handlers::forward::ask_broker(b, node, 4, &req)
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
        Some(ResponseError::InvalidTxnState | ResponseError::InvalidProducerIdMapping) => {
            Err(VerifyError::NotInTransaction)
        }
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => {
            Err(VerifyError::Fenced)
        }
        Some(e) => Err(unavailable(format!("broker {node}: {e}"))),
    }
}
