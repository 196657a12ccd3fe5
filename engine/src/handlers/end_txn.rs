//! EndTxn (v0-v5, transaction protocol v1): commits or aborts the producer's transaction
//! (`txn::Coordinator::end_txn`). Answered once the transaction is prepared (written); its
//! markers are written afterwards.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::txn_error;
use crate::broker::Broker;

pub async fn handle(b: &Broker, version: i16, req: EndTxnRequest) -> EndTxnResponse {
    let r = b
        .txns
        .end_txn(
            b,
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
        )
        .await;
    // v5's producer id and epoch: unchanged under transaction protocol v1.
    let (pid, epoch) = match r {
        Ok(()) => (req.producer_id.0, req.producer_epoch),
        Err(_) => (-1, -1),
    };
    EndTxnResponse::default()
        .with_error_code(txn_error::result_code(&r, version >= 2))
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
        let bad = init_producer_id::handle(&b, 4, init(crate::txn::MAX_TIMEOUT_MS + 1)).await;
        assert_eq!(
            bad.error_code,
            ResponseError::InvalidTransactionTimeout.code()
        );
        let r = init_producer_id::handle(&b, 4, init(60_000)).await;
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
        let r = add_partitions_to_txn::handle(&b, 3, add(&[0, 7])).await;
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
        let r = add_partitions_to_txn::handle(&b, 3, add(&[0])).await;
        assert_eq!(
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
            0
        );
        let r = add_offsets_to_txn::handle(
            &b,
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
        let r = add_partitions_to_txn::handle(&b, 4, verify).await;
        let codes: Vec<i16> = r.results_by_transaction[0].topic_results[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        assert_eq!(codes, vec![0, ResponseError::InvalidTxnState.code()]);

        let d = describe_transactions::handle(
            &b,
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
            super::handle(&b, 1, end(3, true)).await.error_code,
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            super::handle(&b, 2, end(3, true)).await.error_code,
            ResponseError::ProducerFenced.code()
        );
        assert_eq!(super::handle(&b, 3, end(0, true)).await.error_code, 0);
        let listed = |states: Vec<&str>| {
            list_transactions::handle(
                &b,
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
        assert_eq!(super::handle(&b, 3, end(0, true)).await.error_code, 0);
        assert_eq!(
            super::handle(&b, 3, end(0, false)).await.error_code,
            ResponseError::InvalidTxnState.code()
        );
    }
}
