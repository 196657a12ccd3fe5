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
