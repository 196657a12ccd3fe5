//! DescribeTransactions (v0): the state of transactional ids this broker coordinates.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId,
};

use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::{sb, topic_name, txn_error};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub fn handle(
    b: &Broker,
    sess: &Session,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    // DESCRIBE on each transactional id; its partitions only of topics the client may describe.
    let mut topics_shown = Decisions::new(b, sess, Operation::Describe, ResourceType::Topic);
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let s = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            if !authorize::transactional_id(b, sess, Operation::Describe, id.0.as_str()) {
                return s.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            match b.txns.describe(b, id.0.as_str()) {
                Ok(m) => {
                    let mut topics = BTreeMap::<&str, Vec<i32>>::new();
                    for (t, p) in m.partitions.iter().filter(|(t, _)| topics_shown.allows(t)) {
                        topics.entry(t).or_default().push(*p);
                    }
                    s.with_transaction_state(sb(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.epoch)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    TopicData::default()
                                        .with_topic(topic_name(t))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                }
                Err(e) => s.with_error_code(txn_error::code(&e, true)),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
