//! InitProducerId for idempotent producers: a new producer id (epoch 0) every time, as Kafka
//! does for producers without a transactional id. Transactions are not implemented, so a
//! transactional id gets COORDINATOR_NOT_AVAILABLE, the answer FindCoordinator gives for them.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::{Broker, ProducerIdError};

pub async fn handle(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return failed(ResponseError::CoordinatorNotAvailable);
    }
    let allocated = b.new_producer_id().await;
    match allocated {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e @ ProducerIdError::Controller(_)) => {
            // Retriable: clients ask again (no controller leader for a moment, say).
            tracing::warn!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::CoordinatorNotAvailable)
        }
        Err(e @ ProducerIdError::Counter(_)) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::KafkaStorageError)
        }
    }
}
