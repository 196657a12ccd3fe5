//! InitProducerId (v0-v5). Without a transactional id (idempotent producers): a new producer
//! id (epoch 0) every time, as Kafka does. With one: the transaction coordinator's answer
//! (`txn::Coordinator::init_producer_id`: the id's producer id with its epoch bumped, fencing
//! older producers; KIP-360's producer id and epoch from v3).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{authorize, txn_error};
use crate::broker::{Broker, ProducerIdError};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        if !authorize::transactional_id(b, s, Operation::Write, id.0.as_str()) {
            return failed(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        let expected = (version >= 3 && req.producer_id.0 >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        return match b
            .txns
            .init_producer_id(b, id.0.as_str(), req.transaction_timeout_ms, expected)
            .await
        {
            Ok((pid, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(e) => failed(txn_error::code(&e, version >= 4)),
        };
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
    // (Kafka 3's rule, KIP-679).
    if authorize::enabled(b)
        && !authorize::cluster(b, s, Operation::IdempotentWrite)
        && !authorize::any_of_type(b, s, Operation::Write, ResourceType::Topic)
    {
        return failed(ResponseError::ClusterAuthorizationFailed.code());
    }
    let allocated = b.new_producer_id().await;
    match allocated {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e @ ProducerIdError::Controller(_)) => {
            // Retriable: clients ask again (no controller leader for a moment, say).
            tracing::warn!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::CoordinatorNotAvailable.code())
        }
        Err(e @ ProducerIdError::Counter(_)) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::KafkaStorageError.code())
        }
    }
}
