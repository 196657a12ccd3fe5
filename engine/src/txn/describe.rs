//! What DescribeTransactions and ListTransactions show of the transactions this broker
//! coordinates.

use super::{Coordinator, TxnError, TxnMeta, TxnState};
use crate::internal_topic::TopicHost;

/// ListTransactions' filters (empty: any).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    /// v1: only transactions running longer than this (ms; negative: any).
    pub min_duration_ms: i64,
}

impl Coordinator {
    /// DescribeTransactions: the state of `id`.
    pub fn describe(&self, b: &dyn TopicHost, id: &str) -> Result<TxnMeta, TxnError> {
        self.check(b, id)?;
        self.inner
            .txns
            .lock()
            .get(id)
            .and_then(|e| e.meta.clone())
            .ok_or(TxnError::TransactionalIdNotFound)
    }

    /// ListTransactions: the ids this broker coordinates that pass the filter, sorted.
    pub fn list(&self, b: &dyn TopicHost, filter: &ListFilter) -> Vec<(String, TxnMeta)> {
        let now = b.now_ms();
        let mut out: Vec<_> = self
            .snapshot()
            .into_iter()
            .filter(|(_, m)| {
                // As Kafka's listTransactionStates (the duration counts from the last start).
                m.state != TxnState::Dead
                    && (filter.states.is_empty() || filter.states.contains(&m.state))
                    && (filter.producer_ids.is_empty()
                        || filter.producer_ids.contains(&m.producer_id))
                    && (filter.min_duration_ms < 0
                        || now.saturating_sub(m.start_ms) > filter.min_duration_ms)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
