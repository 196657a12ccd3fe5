//! What the group coordinator and the schema registry get of the broker: their internal
//! topics through [`TopicHost`], and the coordinator's ticker.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::{Broker, BrokerError};
use crate::internal_topic::{CreateError, CreateFuture, TopicHost};
use crate::metrics::Metrics;
use crate::topics::{Topic, TopicTable};

/// The group coordinator's ticker on shard 0 (session expiry, rebalance timeouts, following the
/// `__consumer_offsets` leaders) and its lag refresh at every scrape.
pub(super) fn start_group_ticker(b: &Arc<Broker>) {
    let weak: Weak<Broker> = Arc::downgrade(b);
    b.shards.run_on(0, move |_| {
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(crate::group::TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next_expiry = tokio::time::Instant::now();
            let expiring = Arc::new(std::sync::atomic::AtomicBool::new(false));
            loop {
                every.tick().await;
                let Some(b) = weak.upgrade() else { return };
                let host: Arc<dyn TopicHost> = b.clone();
                b.groups.follow_leader(&host);
                let now = tokio::time::Instant::now();
                b.groups.tick(&*b, now);
                // Offsets retention, off the ticker (it waits for its tombstones to commit).
                if now >= next_expiry && !expiring.swap(true, Ordering::AcqRel) {
                    next_expiry = now + b.groups.retention().check_interval;
                    let (b, expiring) = (b.clone(), expiring.clone());
                    tokio::task::spawn_local(async move {
                        b.groups.expire_offsets(&*b, crate::time::now_ms()).await;
                        expiring.store(false, Ordering::Release);
                    });
                }
            }
        });
    });
    let weak: Weak<Broker> = Arc::downgrade(b);
    b.metrics.on_scrape(Box::new(move || {
        if let Some(b) = weak.upgrade() {
            b.groups.refresh_lag(&*b);
        }
    }));
}

/// The group coordinator and the schema registry reach their internal topics through this.
impl TopicHost for Broker {
    fn node_id(&self) -> i32 {
        self.config.node_id
    }

    fn topics(&self) -> &TopicTable {
        &self.topics
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn cluster_size(&self) -> Option<usize> {
        self.cluster.as_ref().map(|c| c.members.all().len())
    }

    fn partition_leader_epoch(&self, t: &Topic, partition: i32) -> (i32, i32) {
        Broker::partition_leader_epoch(self, t, partition)
    }

    fn internal_partitions(&self, name: &str) -> Option<i32> {
        (name == crate::topics::OFFSETS_TOPIC)
            .then_some(self.config.offsets_topic_partitions)
            .flatten()
    }

    fn verify_txn<'a>(
        &'a self,
        txn_id: &'a str,
        producer_id: i64,
        epoch: i16,
        topic: &'a str,
        partition: i32,
    ) -> crate::partition::verify::VerifyFuture<'a> {
        Box::pin(super::txn_verify::verify(
            self,
            txn_id,
            topic,
            partition,
            producer_id,
            epoch,
        ))
    }

    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: i32,
        replication: i16,
        configs: &'a [(String, String)],
    ) -> CreateFuture<'a> {
        Box::pin(async move {
            let created = match self.plan_topic(name, partitions, replication, configs) {
                Ok(rec) => Broker::create_topic(self, rec).await,
                Err(e) => Err(e),
            };
            created.map_err(|e| match e {
                BrokerError::InvalidConfig(e) => CreateError::InvalidConfig(e.to_string()),
                BrokerError::TopicExists(n) => CreateError::Exists(n),
                e => CreateError::Other(e.to_string()),
            })
        })
    }
}
