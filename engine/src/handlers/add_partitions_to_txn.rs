//! AddPartitionsToTxn (v0-v5): partitions join the producer's ongoing transaction
//! (`txn::Coordinator::add_partitions`). v0-v3: one transaction, from a client; v4+: a batch
//! of transactions, from brokers, where `verify_only` asks whether each partition is already
//! in the transaction (KIP-890) and adds nothing, and otherwise a partition leader adds it for
//! a transaction protocol v2 producer (KIP-890 part 2; Kafka's
//! `transactionVersionForAddPartitionsToTxn`: v4+ is TV_2). A partition of a topic that does
//! not exist fails the request: it gets UNKNOWN_TOPIC_OR_PARTITION, the others
//! OPERATION_NOT_ATTEMPTED.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::{topic_name, txn_error};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use crate::txn::{TxnError, TxnVersion};

/// What a request asks about one transaction's partitions.
#[derive(Debug, Clone, Copy)]
enum Ask {
    /// v4+ `verify_only`: whether each is in the transaction (KIP-890 part 1).
    Verify,
    /// Add them: for a client of protocol v1 (v0-v3), or a partition leader for one of v2.
    Add(TxnVersion),
}

/// The outcome of each partition of one transaction, grouped by topic as asked.
async fn one(
    b: &Broker,
    id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    ask: Ask,
    fenced_known: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let partitions: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
        .collect();
    let known = |(topic, p): &(String, i32)| {
        b.topics
            .get(topic)
            .is_some_and(|t| usize::try_from(*p).is_ok_and(|p| p < t.partitions.len()))
    };
    let outcomes: Vec<Result<(), TxnError>> = if !partitions.iter().all(known) {
        partitions
            .iter()
            .map(|p| {
                Err(if known(p) {
                    TxnError::OperationNotAttempted
                } else {
                    TxnError::UnknownTopicOrPartition
                })
            })
            .collect()
    } else {
        match ask {
            Ask::Verify => b.txns.verify(b, id, producer_id, epoch, &partitions),
            Ask::Add(version) => {
                let r = b
                    .txns
                    .add_partitions(b, id, producer_id, epoch, &partitions, version)
                    .await;
                vec![r; partitions.len()]
            }
        }
    };
    let mut outcomes = outcomes.into_iter();
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic_name(t.name.0.as_str()))
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            let r = outcomes.next().unwrap_or(Ok(()));
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(txn_error::result_code(&r, fenced_known))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// Every partition of `topics` answered with the code `code` gives it, nothing attempted.
fn refused(
    topics: &[AddPartitionsToTxnTopic],
    mut code: impl FnMut(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code(t.name.0.as_str(), p))
                        })
                        .collect(),
                )
        })
        .collect()
}

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        // A client's: WRITE on the transactional id, then on every topic; one topic denied
        // fails the request (the others OPERATION_NOT_ATTEMPTED, as Kafka).
        let topics = &req.v3_and_below_topics;
        let id = req.v3_and_below_transactional_id.0.as_str();
        let answer = |results| {
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
        };
        if !authorize::transactional_id(b, s, Operation::Write, id) {
            let code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return answer(refused(topics, |_, _| code));
        }
        let mut writable = Decisions::new(b, s, Operation::Write, ResourceType::Topic);
        if topics.iter().any(|t| !writable.allows(t.name.0.as_str())) {
            return answer(refused(topics, |t, p| {
                if !writable.allows(t) {
                    ResponseError::TopicAuthorizationFailed
                } else if b
                    .topics
                    .get(t)
                    .is_none_or(|t| p < 0 || p as usize >= t.partitions.len())
                {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                }
                .code()
            }));
        }
        let results = one(
            b,
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            Ask::Add(TxnVersion::V1),
            version >= 2,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    // v4+ come from brokers only.
    if !authorize::cluster(b, s, Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topic_results = one(
            b,
            t.transactional_id.0.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            if t.verify_only {
                Ask::Verify
            } else {
                Ask::Add(TxnVersion::V2)
            },
            true,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}
