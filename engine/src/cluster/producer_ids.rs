//! Producer ids from the controller in blocks, as Kafka's KIP-730: each broker hands out ids
//! from the block the controller's log gave it and asks for the next when it is used up, so
//! ids are unique cluster-wide with nothing kept per broker (a broker that restarts, or comes
//! back with an empty disk, just asks for a new block).
//!
//! Until every broker supports it (the feature level is finalized), brokers keep the earlier
//! scheme: their own counter spread by node id. Blocks start above anything that scheme hands
//! out, so the two never meet during an upgrade.

use std::ops::Range;
use std::sync::Arc;

use super::features::PRODUCER_ID_BLOCKS;
use super::{ApplyError, Cluster, Command};

/// Ids per block (Kafka's default).
pub const BLOCK: i64 = 1000;

/// The first block's first id: the earlier scheme (a broker's counter times `MAX_NODE_ID`,
/// plus its node id) would need 2^32 ids from one broker to get here.
pub const FIRST: i64 = 1 << 48;

/// A block of producer ids, as the controller's state records each broker's latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// The broker's request this block answers.
    pub request: u64,
    pub start: i64,
    pub len: i64,
}

/// Once fewer ids than this are left in the block, the next is fetched in the background
/// (Kafka prefetches at 90% too), so InitProducerId rarely waits on the controller.
const PREFETCH_BELOW: i64 = BLOCK / 10;

/// This broker's ids not handed out yet, and the next block if already fetched.
#[derive(Default)]
pub struct Allocator {
    current: tokio::sync::Mutex<Range<i64>>,
    next: parking_lot::Mutex<Option<Range<i64>>>,
    /// One request to the controller at a time: the block in its state is this broker's
    /// latest, which is how the answer is read.
    request: tokio::sync::Mutex<()>,
}

impl Cluster {
    /// The next producer id from this broker's block, asking the controller for a new block
    /// when it is used up. `None` while blocks are not finalized: the caller uses its own
    /// counter then.
    pub async fn producer_id(self: &Arc<Self>) -> Result<Option<i64>, ApplyError> {
        let Some(c) = self.controller.get() else {
            return Ok(None);
        };
        if c.feature(PRODUCER_ID_BLOCKS) < 1 {
            return Ok(None);
        }
        let mut current = self.producer_ids.current.lock().await;
        if current.is_empty() {
            let next = self.producer_ids.next.lock().take();
            *current = match next {
                Some(n) => n,
                None => self.fetch_block().await?,
            };
        }
        let id = current.next();
        if current.end - current.start < PREFETCH_BELOW && self.producer_ids.next.lock().is_none() {
            let me = self.clone();
            tokio::spawn(async move {
                match me.fetch_block().await {
                    Ok(b) => {
                        me.producer_ids.next.lock().get_or_insert(b);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "prefetching producer ids failed; fetched when needed")
                    }
                }
            });
        }
        Ok(id)
    }

    /// Asks the controller for a new block of producer ids.
    async fn fetch_block(&self) -> Result<Range<i64>, ApplyError> {
        let _one = self.producer_ids.request.lock().await;
        let me = self.node_id();
        let request = uuid::Uuid::new_v4().as_u64_pair().0;
        self.propose(Command::AllocateProducerIds {
            broker: me,
            request,
        })
        .await?;
        // `propose` returns once this broker applied it too.
        let block = self
            .controller
            .get()
            .and_then(|c| c.producer_block(me))
            .filter(|b| b.request == request)
            .ok_or_else(|| ApplyError::Other("the producer id block was not recorded".into()))?;
        tracing::debug!(
            start = block.start,
            len = block.len,
            "new block of producer ids"
        );
        Ok(block.start..block.start + block.len)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::metadata_state::MetadataState;
    use super::*;

    #[test]
    fn blocks_are_disjoint_and_wait_for_the_feature() {
        let brokers: BTreeSet<i32> = [1, 2, 3].into();
        let mut s = MetadataState::default();
        let alloc = |s: &mut MetadataState, broker, request| {
            s.apply(
                Command::AllocateProducerIds { broker, request },
                1,
                &brokers,
            )
        };
        // A cluster with a broker of the previous release: refused, the old scheme goes on.
        assert!(alloc(&mut s, 1, 7).is_err());
        assert!(s.producer_ids.is_empty());
        let levels = [(PRODUCER_ID_BLOCKS.to_string(), 1)].into();
        s.apply(Command::FinalizeFeatures { levels }, 2, &brokers)
            .unwrap();
        let mut seen: Vec<Range<i64>> = vec![];
        for (i, broker) in [1, 2, 1, 3].into_iter().enumerate() {
            alloc(&mut s, broker, i as u64).unwrap();
            let b = s.producer_ids[&broker];
            assert_eq!(b.request, i as u64);
            assert!(b.start >= FIRST && b.len == BLOCK);
            let r = b.start..b.start + b.len;
            assert!(
                seen.iter().all(|o| o.end <= r.start || r.end <= o.start),
                "{r:?} {seen:?}"
            );
            seen.push(r);
        }
        // A level never goes down.
        let lower = [(PRODUCER_ID_BLOCKS.to_string(), 0)].into();
        let _ = s.apply(Command::FinalizeFeatures { levels: lower }, 3, &brokers);
        assert_eq!(s.features[PRODUCER_ID_BLOCKS], 1);
        // The state survives its encoding (the controller's checkpoint and snapshot).
        let back = MetadataState::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
    }
}
