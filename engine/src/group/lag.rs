//! Consumer lag in `/metrics`: `icestream_kafka_consumer_group_lag` = the partition's high
//! watermark minus the group's committed offset, computed at scrape time.

use std::collections::HashSet;

use super::Coordinator;
use crate::internal_topic::TopicHost;
use crate::metrics::LagLabels;

impl Coordinator {
    /// Sets `icestream_kafka_consumer_group_lag` = high watermark - committed offset.
    pub fn refresh_lag(&self, b: &dyn TopicHost) {
        let mut now_set = HashSet::new();
        {
            let groups = self.groups.lock();
            for g in groups.values() {
                for ((t, p), e) in &g.offsets {
                    if e.offset < 0 {
                        continue;
                    }
                    let Some(h) = b.topics().get(t).and_then(|tp| tp.partition(*p).cloned()) else {
                        continue;
                    };
                    let high = h.marks.borrow().high;
                    let labels = LagLabels {
                        group: g.id.clone(),
                        topic: t.clone(),
                        partition: p.to_string(),
                    };
                    b.metrics()
                        .consumer_group_lag
                        .get_or_create(&labels)
                        .set((high - e.offset).max(0));
                    now_set.insert(labels);
                }
            }
        }
        let mut last = self.lag_labels.lock();
        for stale in last.difference(&now_set) {
            b.metrics().consumer_group_lag.remove(stale);
        }
        *last = now_set;
    }
}
