//! InitProducerId for idempotent producers: a new producer id (epoch 0) every time, as Kafka
//! does for producers without a transactional id. Transactions are not implemented, so a
//! transactional id gets COORDINATOR_NOT_AVAILABLE, the answer FindCoordinator gives for them.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub fn handle(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
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
    // In a cluster every broker allocates from its own counter; spreading the ids by node id
    // keeps two brokers from handing out the same one (the controller should allocate blocks).
    let allocated = b.producer_ids.next().map(|id| match &b.cluster {
        Some(c) => id * crate::cluster::MAX_NODE_ID + c.node_id() as i64,
        None => id,
    });
    match allocated {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            failed(ResponseError::KafkaStorageError)
        }
    }
}
