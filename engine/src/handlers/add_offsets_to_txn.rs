//! AddOffsetsToTxn (v0-v4): the `__consumer_offsets` partition of the group joins the
//! producer's ongoing transaction (its TxnOffsetCommit writes there), created on first use.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use super::{authorize, txn_error};
use crate::broker::Broker;
use crate::group::store::{self, OFFSETS_TOPIC};
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let answer = |code: i16| AddOffsetsToTxnResponse::default().with_error_code(code);
    let id = req.transactional_id.0.as_str();
    if !authorize::transactional_id(b, s, Operation::Write, id) {
        return answer(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !authorize::group(b, s, Operation::Read, req.group_id.0.as_str()) {
        return answer(ResponseError::GroupAuthorizationFailed.code());
    }
    let t = match store::topic(b).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC} for a transaction");
            return answer(ResponseError::CoordinatorNotAvailable.code());
        }
    };
    let p = store::partition_for(req.group_id.0.as_str(), t.partitions.len());
    let r = b
        .txns
        .add_partitions(
            b,
            id,
            req.producer_id.0,
            req.producer_epoch,
            &[(OFFSETS_TOPIC.to_string(), p)],
            crate::txn::TxnVersion::V1,
        )
        .await;
    answer(txn_error::result_code(&r, version >= 2))
}
