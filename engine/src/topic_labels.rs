//! Bounds the cardinality of per-topic metric labels: the first [`TOPIC_LABEL_CAP`] topics
//! seen get their own `topic` label value; the rest are counted together under `other`, so a
//! broker with thousands of topics cannot blow up its scrape or Prometheus' memory.

use std::collections::HashSet;

/// Distinct `topic` label values per broker (internal topics included), `other` aside.
pub const TOPIC_LABEL_CAP: usize = 200;

/// The label value that topics past the cap share.
pub const OTHER: &str = "other";

#[derive(Debug, Default)]
pub struct TopicLabels {
    named: parking_lot::RwLock<HashSet<String>>,
}

impl TopicLabels {
    /// `topic` itself while under the cap (or already named), else [`OTHER`]. Topics keep their
    /// label until restart, even once deleted: a counter must not move between labels.
    pub fn label(&self, topic: &str) -> String {
        if self.named.read().contains(topic) {
            return topic.to_string();
        }
        let mut named = self.named.write();
        if named.contains(topic) || named.len() < TOPIC_LABEL_CAP {
            named.insert(topic.to_string());
            topic.to_string()
        } else {
            OTHER.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_past_the_cap_share_other() {
        let l = TopicLabels::default();
        for i in 0..TOPIC_LABEL_CAP {
            assert_eq!(l.label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(l.label("late"), OTHER);
        assert_eq!(l.label("t0"), "t0");
    }
}
