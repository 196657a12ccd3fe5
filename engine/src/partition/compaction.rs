//! When a compacted partition's sealed segments are due for compaction: Kafka's
//! `min.cleanable.dirty.ratio`, `min.compaction.lag.ms` and `max.compaction.lag.ms` over the
//! sealed segments' sizes and timestamps (the actor runs the compaction itself).

use crate::config::ResolvedTopicConfig;

/// The end offset of the sealed segments to compact now, if a compaction is due: the
/// cleanable prefix (every record older than `min.compaction.lag.ms`) when its dirty share
/// (bytes past `compacted_through`) reaches `min.cleanable.dirty.ratio`, or a dirty segment
/// was first written more than `max.compaction.lag.ms` ago.
pub(super) fn plan(
    segs: &[crate::log::SealedSummary],
    compacted_through: i64,
    c: &ResolvedTopicConfig,
    now: i64,
) -> Option<i64> {
    let cleanable: Vec<_> = segs
        .iter()
        .take_while(|s| {
            c.min_compaction_lag_ms == 0 || now - s.max_timestamp >= c.min_compaction_lag_ms
        })
        .collect();
    let end = cleanable.last()?.next_offset;
    if end <= compacted_through {
        return None;
    }
    let total: u64 = cleanable.iter().map(|s| s.size).sum();
    let dirty: Vec<_> = cleanable
        .iter()
        .filter(|s| s.next_offset > compacted_through)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    let ratio = if total == 0 {
        1.0
    } else {
        dirty_bytes as f64 / total as f64
    };
    let overdue = dirty
        .iter()
        .any(|s| now.saturating_sub(s.created_ms) >= c.max_compaction_lag_ms);
    (ratio >= c.min_cleanable_dirty_ratio || overdue).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::plan as compaction_plan;
    use crate::config::{ClusterDefaults, TopicConfig};
    use crate::log::SealedSummary;

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> SealedSummary {
        SealedSummary {
            base_offset: base,
            next_offset: next,
            size,
            max_timestamp: ts,
            created_ms: ts,
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> crate::config::ResolvedTopicConfig {
        let mut p = vec![("cleanup.policy", "compact")];
        p.extend_from_slice(pairs);
        TopicConfig::from_pairs(p)
            .unwrap()
            .resolve(&ClusterDefaults::default())
    }

    #[test]
    fn dirty_ratio_lags_and_overdue_segments() {
        let segs = [seg(0, 10, 100, 1000), seg(10, 20, 100, 2000)];
        // Never compacted: all dirty.
        assert_eq!(compaction_plan(&segs, -1, &cfg(&[]), 3000), Some(20));
        // Half dirty meets the default 0.5, not 0.6.
        assert_eq!(compaction_plan(&segs, 10, &cfg(&[]), 3000), Some(20));
        let c = cfg(&[("min.cleanable.dirty.ratio", "0.6")]);
        assert_eq!(compaction_plan(&segs, 10, &c, 3000), None);
        // ...unless the dirty segment is older than max.compaction.lag.ms.
        let c = cfg(&[
            ("min.cleanable.dirty.ratio", "0.6"),
            ("max.compaction.lag.ms", "500"),
        ]);
        assert_eq!(compaction_plan(&segs, 10, &c, 3000), Some(20));
        // min.compaction.lag.ms keeps the young segment out.
        let c = cfg(&[("min.compaction.lag.ms", "1500")]);
        assert_eq!(compaction_plan(&segs, -1, &c, 3000), Some(10));
        assert_eq!(compaction_plan(&segs, 20, &cfg(&[]), 3000), None);
    }
}
