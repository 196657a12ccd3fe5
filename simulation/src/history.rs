//! What clients were told and what readers saw, checked as it happens and against every
//! replica's log at the end.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::trace::Trace;

/// A replica's log as read at the end: its log start, and `(offset, value)` of each record.
pub type Log = (i64, Vec<(i64, String)>);

#[derive(Default)]
pub struct History {
    /// Offset -> the value a produce was acknowledged with there.
    pub acked: BTreeMap<i64, String>,
    /// Value -> the offset it was acknowledged at.
    pub acked_at: BTreeMap<String, i64>,
    /// Offset -> the value a reader saw there (below the high watermark).
    pub seen: BTreeMap<i64, (String, u64)>,
    pub produces_acked: usize,
}

impl History {
    /// A produce of `values` was acknowledged at `base`.
    pub fn ack(&mut self, t: &mut Trace, node: u64, base: i64, values: &[String]) {
        self.produces_acked += 1;
        t.note(format!(
            "ack from {node}: {} at {base}..{}",
            values.join(","),
            base + values.len() as i64
        ));
        for (i, v) in values.iter().enumerate() {
            let at = base + i as i64;
            if let Some(old) = self.acked.insert(at, v.clone()) {
                if old != *v {
                    t.violation(format!(
                        "offset {at} acknowledged twice, with {old} and then {v} (an offset reused)"
                    ));
                }
            }
            if let Some(old) = self.acked_at.insert(v.clone(), at) {
                if old != at {
                    t.violation(format!(
                        "{v} acknowledged at offset {old} and again at {at} (written twice)"
                    ));
                }
            }
        }
    }

    /// A reader saw `records` on `node`, all below its high watermark.
    pub fn saw(&mut self, t: &mut Trace, node: u64, records: &[(i64, String)]) {
        for (at, v) in records {
            match self.seen.get(at) {
                Some((old, n)) if old != v => t.violation(format!(
                    "offset {at} read as {old} from {n} and later as {v} from {node}"
                )),
                Some(_) => {}
                None => {
                    self.seen.insert(*at, (v.clone(), node));
                }
            }
            if let Some(a) = self.acked.get(at) {
                if a != v {
                    t.violation(format!(
                        "offset {at} was acknowledged as {a} but {node} serves {v} there"
                    ));
                }
            }
        }
    }

    /// The end-of-run checks over each replica's whole log (`(offset, value)` from its log
    /// start to its high watermark), once they agree on where their logs end.
    pub fn check_logs(&self, t: &mut Trace, logs: &BTreeMap<u64, Log>) {
        let mut by_offset: BTreeMap<i64, (String, u64)> = BTreeMap::new();
        for (&node, (start, log)) in logs {
            let mut values: BTreeMap<&str, i64> = BTreeMap::new();
            let mut expect = *start;
            for (at, v) in log {
                if *at < expect {
                    t.violation(format!("{node} serves offset {at} twice or out of order"));
                }
                expect = at + 1;
                if let Some(first) = values.insert(v, *at) {
                    t.violation(format!("{node} holds {v} twice, at {first} and at {at}"));
                }
                match by_offset.get(at) {
                    Some((other, n)) if other != v => t.violation(format!(
                        "replicas differ at offset {at}: {n} holds {other}, {node} holds {v}"
                    )),
                    Some(_) => {}
                    None => {
                        by_offset.insert(*at, (v.clone(), node));
                    }
                }
            }
            let held: BTreeMap<i64, &str> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
            for (at, v) in self.acked.range(*start..) {
                match held.get(at) {
                    Some(h) if h == v => {}
                    Some(h) => t.violation(format!(
                        "acknowledged {v} at offset {at}, but {node} holds {h} there"
                    )),
                    None => t.violation(format!(
                        "acknowledged {v} at offset {at} is missing from {node} (log from {start})"
                    )),
                }
            }
            for (at, (v, from)) in self.seen.range(*start..) {
                if held.get(at).is_some_and(|h| h != v) {
                    t.violation(format!(
                        "offset {at} was read as {v} from {from}, but {node} holds {} there",
                        held[at]
                    ));
                }
            }
        }
    }
}

/// The `(offset, value)` of every record in `records` (whole batches as a partition serves
/// them).
pub fn decode(records: &Bytes) -> Result<Vec<(i64, String)>, String> {
    let mut buf = records.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| e.to_string())?;
    Ok(sets
        .into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            let v = r
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            (r.offset, v)
        })
        .collect())
}
