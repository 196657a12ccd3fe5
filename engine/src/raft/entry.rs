//! The payload of a partition group's normal entries: how a produce or a command is encoded
//! when proposed, decoded when committed, and what an entry is to the segment log (one log).

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType};

use super::{Committed, ProposalId};

/// What a committed entry asks every replica to do, in commit order.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Append a produce's batches as the client sent them: every replica assigns offsets and
    /// checks producer sequences alike (entries proposed before leaders assigned them).
    Produce(Bytes),
    /// Append these batches as they are: the leader assigned their offsets, leader epoch and
    /// LogAppendTime, and checked their producers' sequences, when it proposed them.
    Append(Bytes),
    /// DeleteRecords: move the log start offset up to this offset (the leader resolved -1).
    DeleteRecords(i64),
    /// Seal the partition for an unmount: roll the active segment, and append nothing that
    /// comes after this entry in the log (every replica refuses it alike).
    Seal,
}

/// Entry payload: proposer (u64), a kind word, leader's time (i64), then the body. The kind word
/// once held a per-process proposal counter: 0 (or any small number, in logs written before) is
/// a produce whose body is its batches as sent; [`ASSIGNED`] a produce whose batches the leader
/// assigned; [`COMMAND`] is a command whose body is a type byte and its arguments.
pub(super) const HEADER: usize = 24;
pub(super) const COMMAND: u64 = u64::MAX;
/// Proposed only once the cluster finalized `cluster::features::ASSIGNED_ENTRIES`: a replica of
/// an earlier release would take it for a produce and assign its offsets again.
pub(super) const ASSIGNED: u64 = u64::MAX - 1;
/// Command type: DeleteRecords, followed by the offset (i64).
const DELETE_RECORDS: u8 = 1;
/// Command type: Seal (no arguments). Proposed only once the cluster finalized the feature
/// (`cluster::features::CLUSTER_UNMOUNT`), so no replica that would skip it ever reads it.
const SEAL: u8 = 2;

/// An entry's payload: the proposer, the kind word, the leader's time, then the body.
pub(super) fn encode(proposer: u64, kind: u64, now: i64, body: &[u8]) -> Vec<u8> {
    let mut data = ProduceEntry::start(proposer, kind, now, body.len());
    data.push(body);
    data.0
}

/// A produce entry's payload built in place: the header, then each batch appended once, so
/// that a produce's records are copied once on their way into the Raft log (into the entry),
/// not first into a body and then into the entry.
pub struct ProduceEntry(Vec<u8>);

impl ProduceEntry {
    pub(super) fn start(proposer: u64, kind: u64, now: i64, body_len: usize) -> Self {
        let mut data = Vec::with_capacity(HEADER + body_len);
        data.extend_from_slice(&proposer.to_be_bytes());
        data.extend_from_slice(&kind.to_be_bytes());
        data.extend_from_slice(&now.to_be_bytes());
        ProduceEntry(data)
    }

    /// Appends bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Whether nothing was appended after the header.
    pub fn is_empty(&self) -> bool {
        self.0.len() == HEADER
    }

    pub(super) fn into_data(self) -> Vec<u8> {
        self.0
    }
}

/// A DeleteRecords command's body.
pub(super) fn delete_records(offset: i64) -> Vec<u8> {
    let mut body = vec![DELETE_RECORDS];
    body.extend_from_slice(&offset.to_be_bytes());
    body
}

/// A Seal command's body.
pub(super) fn seal() -> Vec<u8> {
    vec![SEAL]
}

/// What a committed normal entry asks of every replica (`None`: nothing, as for a term's
/// first entry, or a command this release does not know, which every replica skips alike).
pub(super) fn decode(e: &Entry) -> Option<Committed> {
    if e.get_entry_type() != EntryType::EntryNormal || e.data.len() < HEADER {
        return None;
    }
    let d = &e.data;
    let word = |i: usize| u64::from_be_bytes(d[i..i + 8].try_into().expect("8 bytes"));
    let body = &d[HEADER..];
    let command = if word(8) == ASSIGNED {
        Command::Append(e.data.slice(HEADER..))
    } else if word(8) != COMMAND {
        Command::Produce(e.data.slice(HEADER..))
    } else {
        match (body.first(), body.get(1..9)) {
            (Some(&DELETE_RECORDS), Some(o)) => {
                Command::DeleteRecords(i64::from_be_bytes(o.try_into().expect("8 bytes")))
            }
            (Some(&SEAL), _) => Command::Seal,
            // Every replica skips it alike; a newer broker's command, say.
            _ => {
                tracing::error!(index = e.index, "unknown raft command skipped");
                return None;
            }
        }
    };
    Some(Committed {
        proposal: ProposalId {
            term: e.term,
            index: e.index,
        },
        epoch: e.term.min(i32::MAX as u64) as i32,
        now: word(16) as i64,
        command,
    })
}

/// The batches of an entry whose batches the leader assigned ([`Command::Append`]), if it is
/// one: what the segment log can hold in its place (one log).
pub fn assigned_batches(e: &Entry) -> Option<Bytes> {
    (kind_of(e) == Some(ASSIGNED) && e.data.len() > HEADER).then(|| e.data.slice(HEADER..))
}

/// Whether an entry appends records (either kind of produce).
pub fn is_produce(e: &Entry) -> bool {
    kind_of(e).is_some_and(|k| k != COMMAND)
}

/// A normal entry's kind word, if it has a payload.
fn kind_of(e: &Entry) -> Option<u64> {
    (e.get_entry_type() == EntryType::EntryNormal && e.data.len() >= HEADER)
        .then(|| u64::from_be_bytes(e.data[8..16].try_into().expect("8 bytes")))
}

/// What an entry after the checkpoint is to the segment log, for a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Its batches are in the segment log, at `[offset, next)`.
    Placed { offset: i64, next: i64 },
    /// Written whole; its assigned batches take `[offset, next)` when applied.
    Assigned { offset: i64, next: i64 },
    /// A produce as the client sent it: its offsets are decided when it is applied.
    AsSent,
    /// No records (a command, a configuration change, a term's first entry).
    Other,
}

/// What an entry written whole to the Raft log is to the segment log.
pub(super) fn recorded_whole(e: &Entry) -> Recorded {
    match assigned_batches(e).map(|b| batch_span(&b)) {
        Some(Some((offset, next))) => Recorded::Assigned { offset, next },
        Some(None) => Recorded::AsSent,
        None if is_produce(e) => Recorded::AsSent,
        None => Recorded::Other,
    }
}

/// The offsets a run of batches spans, `[first base, last next)`, if they parse.
fn batch_span(body: &[u8]) -> Option<(i64, i64)> {
    let mut pos = 0;
    let mut span: Option<(i64, i64)> = None;
    while pos < body.len() {
        let h = crate::log::batch::BatchHeader::parse(&body[pos..]).ok()?;
        if h.batch_length < 0 {
            return None;
        }
        span = Some((span.map_or(h.base_offset, |s| s.0), h.next_offset()));
        pos += h.total_len();
    }
    span
}
