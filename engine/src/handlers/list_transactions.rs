//! ListTransactions (v0-v1): the transactions this broker coordinates, filtered by state,
//! producer id and (v1) how long they have been running.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::authorize::Decisions;
use super::sb;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use crate::txn::ListFilter;

pub fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    // Only the transactional ids the client may describe are listed (as Kafka).
    let mut shown = Decisions::new(b, s, Operation::Describe, ResourceType::TransactionalId);
    let mut filter = ListFilter {
        min_duration_ms: if version >= 1 {
            req.duration_filter
        } else {
            -1
        },
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        ..ListFilter::default()
    };
    let mut unknown = Vec::new();
    for s in &req.state_filters {
        match crate::txn::TxnState::parse(s.as_str()) {
            Some(state) => filter.states.push(state),
            None => unknown.push(s.clone()),
        }
    }
    // Only unknown states asked for: nothing matches.
    let states = if filter.states.is_empty() && !unknown.is_empty() {
        vec![]
    } else {
        b.txns
            .list(b, &filter)
            .into_iter()
            .filter(|(id, _)| shown.allows(id))
            .map(|(id, m)| {
                TransactionState::default()
                    .with_transactional_id(TransactionalId(sb(id)))
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_transaction_state(sb(m.state.name()))
            })
            .collect()
    };
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
