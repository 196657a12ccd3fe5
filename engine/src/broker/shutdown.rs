//! Stopping a broker: in a cluster it first hands every leadership it holds to other replicas
//! (controlled shutdown), then flushes and stops its partitions and shards.

use std::sync::atomic::Ordering;

use super::Broker;

impl Broker {
    /// Stops accepting work, flushes every partition and stops the shards.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        if let Some(c) = &self.cluster {
            self.hand_off(c).await;
        }
        for t in self.topics.all_internal() {
            for p in &t.partitions {
                p.stop(false, false).await;
            }
        }
        self.shards.join();
    }

    /// Controlled shutdown: every partition replica here stops campaigning and hands the
    /// leadership it holds to another replica, as does the controller replica, so that
    /// clients move to the new leaders (answered NOT_LEADER_OR_FOLLOWER meanwhile, which they
    /// retry) before this broker's connections close. Waits until no leadership is left here,
    /// or `--controlled-shutdown-timeout-ms`.
    async fn hand_off(&self, c: &crate::cluster::Cluster) {
        use crate::raft::HandOff;
        let started = tokio::time::Instant::now();
        let deadline = started + c.config.controlled_shutdown_timeout;
        let mut led_at_first = None;
        loop {
            let mut led = 0usize;
            for t in self.topics.all_internal() {
                for h in t.partitions.iter().filter(|h| h.raft_leader.is_some()) {
                    let r = h
                        .ask(|reply| crate::partition::Cmd::HandOff { reply })
                        .await;
                    if matches!(r, Ok(HandOff::Started(_))) {
                        led += 1;
                    }
                }
            }
            let controller = c.hand_off_controller().await;
            led_at_first.get_or_insert(led + usize::from(controller));
            if led == 0 && !controller {
                tracing::info!(
                    leaderships = led_at_first.unwrap_or(0),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: leaderships handed over"
                );
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    partitions = led,
                    controller,
                    "controlled shutdown timed out; stopping while still leading"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
