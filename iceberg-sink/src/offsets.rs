//! The Kafka offsets a table covers, recorded in its snapshots' summaries.
//!
//! Every commit writes the whole map `partition -> next offset` (cumulative, not just this
//! commit's part), so the current snapshot alone says where to resume; snapshots without it
//! (written by other engines) are skipped by walking to their parents.

use std::collections::BTreeMap;

use iceberg::spec::TableMetadata;

/// `0=1200,1=980`: for each partition, the first offset not yet in the table.
pub const NEXT_OFFSETS: &str = "icestream.kafka.next-offsets";
/// `0=1000-1199,1=900-979`: the offsets this snapshot added (inclusive ranges).
pub const RANGES: &str = "icestream.kafka.offset-ranges";
/// The topic's id: a recreated topic of the same name does not resume from the old offsets.
pub const TOPIC_ID: &str = "icestream.kafka.topic-id";

pub type Offsets = BTreeMap<i32, i64>;

/// One partition's part of a translation round: from the next offset to translate up to the
/// high watermark seen when the round started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

pub fn encode(offsets: &Offsets) -> String {
    offsets
        .iter()
        .map(|(p, o)| format!("{p}={o}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn encode_ranges(ranges: &BTreeMap<i32, (i64, i64)>) -> String {
    ranges
        .iter()
        .map(|(p, (a, b))| format!("{p}={a}-{b}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode(s: &str) -> Option<Offsets> {
    let mut out = Offsets::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (p, o) = part.split_once('=')?;
        out.insert(p.trim().parse().ok()?, o.trim().parse().ok()?);
    }
    Some(out)
}

/// The offsets the table covers for topic `topic_id`, from its newest snapshot that records
/// them; empty for a new table, or one written for another topic of the same name.
pub fn committed(meta: &TableMetadata, topic_id: &str) -> Offsets {
    let mut snap = meta.current_snapshot().cloned();
    while let Some(s) = snap {
        let props = &s.summary().additional_properties;
        if let Some(v) = props.get(NEXT_OFFSETS) {
            if props.get(TOPIC_ID).is_some_and(|t| t != topic_id) {
                return Offsets::new();
            }
            return decode(v).unwrap_or_default();
        }
        snap = s
            .parent_snapshot_id()
            .and_then(|id| meta.snapshot_by_id(id).cloned());
    }
    Offsets::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let o: Offsets = [(0, 10), (3, 7)].into_iter().collect();
        assert_eq!(decode(&encode(&o)), Some(o));
        assert_eq!(decode(""), Some(Offsets::new()));
        assert_eq!(decode("x=1"), None);
    }
}
