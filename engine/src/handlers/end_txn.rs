//! EndTxn (v0-v5): commits or aborts the producer's transaction
//! (`txn::Coordinator::end_txn`). Answered once the transaction is prepared (written); its
//! markers are written afterwards. v5 speaks transaction protocol v2 (KIP-890 part 2, as
//! Kafka's `transactionVersionForEndTxn`) once the cluster finalized `transaction.version` 2:
//! the epoch is bumped at every end and the answer carries the producer id and epoch the
//! producer goes on with.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::{authorize, txn_error};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;
use crate::txn::TxnVersion;

pub async fn handle(b: &Broker, s: &Session, version: i16, req: EndTxnRequest) -> EndTxnResponse {
    if !authorize::transactional_id(b, s, Operation::Write, req.transactional_id.0.as_str()) {
        return EndTxnResponse::default()
            .with_error_code(
                kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code(),
            )
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    let protocol = if version >= 5 && b.transaction_version() >= 2 {
        TxnVersion::V2
    } else {
        TxnVersion::V1
    };
    let r = b
        .txns
        .end_txn(
            b,
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            protocol,
        )
        .await;
    let (pid, epoch) = r.as_ref().map_or((-1, -1), |&identity| identity);
    EndTxnResponse::default()
        .with_error_code(txn_error::result_code(&r.map(|_| ()), version >= 2))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

#[cfg(test)]
mod tests {
    //! A transaction through the handlers of a single-node broker: FindCoordinator,
    //! InitProducerId, AddPartitionsToTxn (v3, and v4 `verify_only`), AddOffsetsToTxn, EndTxn,
    //! DescribeTransactions, ListTransactions (markers: the stub, or the lead's path).

    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::*;
    use kafka_protocol::ResponseError;

    use crate::handlers::{
        add_offsets_to_txn, add_partitions_to_txn, describe_transactions, find_coordinator,
        init_producer_id, list_transactions, sb, topic_name,
    };
    use crate::internal_topic::TopicHost;

    fn sess() -> crate::security::Session {
        crate::security::Session::internal()
    }

    fn id() -> TransactionalId {
        TransactionalId(sb("tx-1"))
    }

    fn topics(ps: &[i32]) -> Vec<AddPartitionsToTxnTopic> {
        vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name("orders"))
            .with_partitions(ps.to_vec())]
    }

    #[tokio::test]
    async fn a_transaction_through_the_handlers() {
        let dir = tempfile::tempdir().unwrap().keep();
        let b = crate::Broker::start(
            crate::BrokerConfig::for_tests(dir),
            crate::IoBackend::Blocking,
            None,
            None,
        )
        .await
        .unwrap();
        TopicHost::create_topic(&*b, "orders", 2, -1, &[])
            .await
            .unwrap();

        let found = find_coordinator::handle(
            &b,
            &sess(),
            3,
            FindCoordinatorRequest::default()
                .with_key(sb("tx-1"))
                .with_key_type(1),
        )
        .await;
        assert_eq!((found.error_code, found.node_id.0), (0, b.node_id()));

        let init = |timeout| {
            InitProducerIdRequest::default()
                .with_transactional_id(Some(id()))
                .with_transaction_timeout_ms(timeout)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        let bad =
            init_producer_id::handle(&b, &sess(), 4, init(crate::txn::MAX_TIMEOUT_MS + 1)).await;
        assert_eq!(
            bad.error_code,
            ResponseError::InvalidTransactionTimeout.code()
        );
        let r = init_producer_id::handle(&b, &sess(), 4, init(60_000)).await;
        assert_eq!((r.error_code, r.producer_epoch), (0, 0));
        let pid = r.producer_id;

        // A partition that does not exist fails the request; the others are not attempted.
        let add = |ps: &[i32]| {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id())
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(0)
                .with_v3_and_below_topics(topics(ps))
        };
        let r = add_partitions_to_txn::handle(&b, &sess(), 3, add(&[0, 7])).await;
        let codes: Vec<i16> = r.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::OperationNotAttempted.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ]
        );
        let r = add_partitions_to_txn::handle(&b, &sess(), 3, add(&[0])).await;
        assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            0
        );
        let r = add_offsets_to_txn::handle(
            &b,
            &sess(),
            3,
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(id())
                .with_producer_id(pid)
                .with_producer_epoch(0)
                .with_group_id(GroupId(sb("g"))),
        )
        .await;
        assert_eq!(r.error_code, 0);

        // What a broker asks before appending (KIP-890).
        let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(id())
                .with_producer_id(pid)
                .with_producer_epoch(0)
                .with_verify_only(true)
                .with_topics(topics(&[0, 1])),
        ]);
        let r = add_partitions_to_txn::handle(&b, &sess(), 4, verify).await;
        let codes: Vec<i16> = r.results_by_transaction[0].topic_results[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        assert_eq!(codes, vec![0, ResponseError::InvalidTxnState.code()]);

        let d = describe_transactions::handle(
            &b,
            &sess(),
            DescribeTransactionsRequest::default().with_transactional_ids(vec![id()]),
        );
        let s = &d.transaction_states[0];
        assert_eq!((s.error_code, s.transaction_state.as_str()), (0, "Ongoing"));
        assert_eq!(s.topics.len(), 2);

        let end = |epoch, commit| {
            EndTxnRequest::default()
                .with_transactional_id(id())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_committed(commit)
        };
        // An old epoch: fenced, as each version knows it.
        assert_eq!(
            super::handle(&b, &sess(), 1, end(3, true)).await.error_code,
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            super::handle(&b, &sess(), 2, end(3, true)).await.error_code,
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(
            super::handle(&b, &sess(), 3, end(0, true)).await.error_code,
            0
        );
        let listed = |states: Vec<&str>| {
            list_transactions::handle(
                &b,
                &sess(),
                1,
                ListTransactionsRequest::default()
                    .with_state_filters(states.into_iter().map(sb).collect())
                    .with_duration_filter(-1),
            )
        };
        let mut done = false;
        for _ in 0..200 {
            if listed(vec!["CompleteCommit"]).transaction_states.len() == 1 {
                done = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(done, "the transaction never completed");
        let l = listed(vec!["Bogus"]);
        assert_eq!(l.unknown_state_filters, vec![sb("Bogus")]);
        assert!(l.transaction_states.is_empty());
        // A retried EndTxn.
        assert_eq!(
            super::handle(&b, &sess(), 3, end(0, true)).await.error_code,
            0
        );
        assert_eq!(
            super::handle(&b, &sess(), 3, end(0, false))
                .await
                .error_code,
            ResponseError::InvalidTxnState.code()
        );
    }

    /// A transaction protocol v2 producer (Java clients 4.x on a broker finalizing
    /// `transaction.version` 2): no AddPartitionsToTxn nor AddOffsetsToTxn; the partition
    /// leader adds its partition on Produce v12, the group coordinator its offsets partition
    /// on TxnOffsetCommit v5, and EndTxn v5 answers the bumped epoch, which the next
    /// transaction uses at once.
    #[tokio::test]
    async fn a_v2_transaction_through_the_handlers() {
        use crate::handlers::{produce, txn_offset_commit};
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };

        let dir = tempfile::tempdir().unwrap().keep();
        let b = crate::Broker::start(
            crate::BrokerConfig::for_tests(dir),
            crate::IoBackend::Blocking,
            None,
            None,
        )
        .await
        .unwrap();
        TopicHost::create_topic(&*b, "orders", 2, -1, &[])
            .await
            .unwrap();
        let r = init_producer_id::handle(
            &b,
            &sess(),
            5,
            InitProducerIdRequest::default()
                .with_transactional_id(Some(id()))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
        assert_eq!((r.error_code, r.producer_epoch), (0, 0));
        let pid = r.producer_id;

        let produce = |epoch: i16, seq: i32| {
            let records = [crate::log::batch::NewRecord {
                value: Some(bytes::Bytes::from(format!("v-{epoch}-{seq}"))),
                ..Default::default()
            }];
            let bytes = crate::log::control::encode_transactional(&records, pid.0, epoch).unwrap();
            let bytes = crate::log::batch::with_producer(&bytes, pid.0, epoch, seq);
            let req = ProduceRequest::default()
                .with_transactional_id(Some(id()))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name("orders"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(bytes))])]);
            let b = b.clone();
            async move {
                match produce::handle(&b, &sess(), 12, req).await.response {
                    Some(ResponseKind::Produce(r)) => {
                        r.responses[0].partition_responses[0].error_code
                    }
                    other => panic!("no produce response: {other:?}"),
                }
            }
        };
        let describe = || {
            let d = describe_transactions::handle(
                &b,
                &sess(),
                DescribeTransactionsRequest::default().with_transactional_ids(vec![id()]),
            );
            d.transaction_states[0].clone()
        };
        let end = |epoch, commit| {
            EndTxnRequest::default()
                .with_transactional_id(id())
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_committed(commit)
        };

        // The first batch begins the transaction: the leader added the partition.
        assert_eq!(produce(0, 0).await, 0);
        let s = describe();
        assert_eq!(s.transaction_state.as_str(), "Ongoing");
        assert_eq!(
            (s.topics.len(), s.topics[0].partitions.clone()),
            (1, vec![0])
        );
        // Offsets in the transaction: the group's partition joins it.
        let r = txn_offset_commit::handle(
            &b,
            &sess(),
            5,
            TxnOffsetCommitRequest::default()
                .with_transactional_id(id())
                .with_group_id(GroupId(sb("g")))
                .with_producer_id(pid)
                .with_producer_epoch(0)
                .with_generation_id(-1)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)])]),
        )
        .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert_eq!(describe().topics.len(), 2);
        // A stale epoch is fenced there too.
        let r = txn_offset_commit::handle(
            &b,
            &sess(),
            5,
            TxnOffsetCommitRequest::default()
                .with_transactional_id(id())
                .with_group_id(GroupId(sb("g")))
                .with_producer_id(pid)
                .with_producer_epoch(7)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("orders"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)])]),
        )
        .await;
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ResponseError::InvalidProducerEpoch.code()
        );

        // EndTxn v5: the bumped epoch, and the next transaction starts with it at once (its
        // first batch waits for the markers of this one).
        let r = super::handle(&b, &sess(), 5, end(0, true)).await;
        assert_eq!((r.error_code, r.producer_id, r.producer_epoch), (0, pid, 1));
        assert_eq!(produce(1, 0).await, 0);
        let s = describe();
        assert_eq!(
            (s.transaction_state.as_str(), s.producer_epoch),
            ("Ongoing", 1)
        );
        // The old epoch is fenced now; the transaction aborts with epoch 2.
        assert_eq!(
            super::handle(&b, &sess(), 5, end(0, true)).await.error_code,
            ResponseError::ProducerFenced.code()
        );
        let r = super::handle(&b, &sess(), 5, end(1, false)).await;
        assert_eq!((r.error_code, r.producer_epoch), (0, 2));
        // Its retry (the epoch before the bump) is answered once complete, with epoch 2.
        let mut retried = None;
        for _ in 0..200 {
            let r = super::handle(&b, &sess(), 5, end(1, false)).await;
            if r.error_code != ResponseError::ConcurrentTransactions.code() {
                retried = Some(r);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let r = retried.expect("the abort never completed");
        assert_eq!((r.error_code, r.producer_epoch), (0, 2));
        assert_eq!(describe().transaction_state.as_str(), "CompleteAbort");
        // The partition took the markers of both epochs and the next epoch's first batch.
        assert_eq!(produce(2, 0).await, 0);
    }
}
