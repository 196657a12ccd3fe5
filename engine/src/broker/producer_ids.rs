//! Where InitProducerId's ids come from: in a cluster, the controller's blocks (unique
//! cluster-wide, see `cluster::producer_ids`) once every broker supports them; before that, and
//! on a single broker, this broker's own persisted counter (spread by node id in a cluster).

use super::Broker;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer id counter: {0}")]
    Counter(#[from] std::io::Error),
    #[error("no block of producer ids from the controller: {0}")]
    Controller(#[from] crate::cluster::ApplyError),
}

impl Broker {
    /// A producer id never handed out before, in this cluster.
    pub async fn new_producer_id(&self) -> Result<i64, ProducerIdError> {
        if let Some(c) = &self.cluster {
            if let Some(id) = c.producer_id().await? {
                return Ok(id);
            }
            return Ok(
                self.producer_ids.next()? * crate::cluster::MAX_NODE_ID + i64::from(c.node_id())
            );
        }
        Ok(self.producer_ids.next()?)
    }
}
