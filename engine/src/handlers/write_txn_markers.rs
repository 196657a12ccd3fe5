//! WriteTxnMarkers (v1): a transaction coordinator on another broker has this broker, the
//! leader of some of a transaction's partitions, write the transaction's commit or abort
//! marker to them. Each partition is answered once its marker is committed.
//!
//! Kafka guards this API with the CLUSTER_ACTION permission, and so does this broker with
//! authorization on. Without it a client could send it too, and would at worst end its own
//! transactions (the partition refuses a marker for an older producer epoch or from an older
//! coordinator).

use futures_util::future::join_all;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::txn_markers::write_local;
use crate::broker::Broker;
use crate::log::control::ControlType;
use crate::partition::txn::Marker;
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = super::authorize::cluster(b, s, Operation::ClusterAction);
    let denied = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            control: ControlType::from_commit(m.transaction_result),
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let name = t.name.as_str();
            let writes = t.partition_indexes.iter().map(|&p| async move {
                let written = match allowed {
                    true => write_local(b, name, p, marker).await,
                    false => Ok(()),
                };
                let code = match written {
                    _ if !allowed => denied,
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::debug!(topic = %name, partition = p, error = %e, "marker not written");
                        e.code()
                    }
                };
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(p)
                    .with_error_code(code)
            });
            let partitions = join_all(writes).await;
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
