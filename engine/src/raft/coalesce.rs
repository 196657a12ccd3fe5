//! Fewer Raft messages per entry. raft-rs sends one append per proposal and follower, and a
//! follower acknowledges each append it persisted: a leader that proposed several produces in
//! one turn, or a follower whose one sync covered several appends, hands over several messages
//! to the same peer at once. Each is a frame to encode, route, step and answer. Merged here,
//! in the order raft-rs produced them:
//!
//! - an append that continues the previous append to the same peer (its `index` and
//!   `log_term` are that append's last entry) joins it, up to [`MAX_MERGED_BYTES`] of entries;
//!   the commit index is the later one's. This is raft-rs's own `batch_append`, which has no
//!   size bound (a turn may propose a thousand produces) and so is not switched on;
//! - an acknowledgement (accepted append response) followed by a later one to the same peer
//!   in the same term is replaced by it: accepting index `i` means the log matches the
//!   leader's up to `i`, so the later one says all the earlier one did, and the leader's
//!   progress frees every append in flight up to it (a lost message is no different).
//!
//! Nothing else is touched, and nothing moves past another message to the same peer.

use raft::eraftpb::{Message, MessageType};

/// Entries bytes one merged append may carry: raft-rs's own bound on an append
/// (`max_size_per_msg`), which what holds appends back (the reassignment throttle) counts on.
pub const MAX_MERGED_BYTES: usize = super::log_file::MAX_SIZE_PER_MSG as usize;

/// `msgs` with appends to the same peer merged and superseded acknowledgements dropped.
pub fn coalesce(msgs: Vec<Message>) -> Vec<Message> {
    if msgs.len() < 2 {
        return msgs;
    }
    let mut out: Vec<Message> = Vec::with_capacity(msgs.len());
    // The position in `out` of the last message to each peer (a group has a handful).
    let mut last: Vec<(u64, usize)> = Vec::new();
    for m in msgs {
        if let Some(&(_, i)) = last.iter().find(|(to, _)| *to == m.to) {
            let prev = &mut out[i];
            if continues(prev, &m) {
                let commit = m.commit;
                prev.mut_entries().extend(m.entries);
                prev.commit = prev.commit.max(commit);
                continue;
            }
            if supersedes(prev, &m) {
                *prev = m;
                continue;
            }
        }
        match last.iter_mut().find(|(to, _)| *to == m.to) {
            Some(slot) => slot.1 = out.len(),
            None => last.push((m.to, out.len())),
        }
        out.push(m);
    }
    out
}

/// Whether `next` is an append that picks up where `prev`, an append to the same peer, ends.
fn continues(prev: &Message, next: &Message) -> bool {
    if prev.get_msg_type() != MessageType::MsgAppend
        || next.get_msg_type() != MessageType::MsgAppend
        || prev.term != next.term
        || prev.from != next.from
    {
        return false;
    }
    let (end, end_term) = prev
        .entries
        .last()
        .map_or((prev.index, prev.log_term), |e| (e.index, e.term));
    (next.index, next.log_term) == (end, end_term) && bytes(prev) + bytes(next) <= MAX_MERGED_BYTES
}

/// Whether `next` acknowledges at least what `prev` did, both accepted appends of one term.
fn supersedes(prev: &Message, next: &Message) -> bool {
    let ack = |m: &Message| m.get_msg_type() == MessageType::MsgAppendResponse && !m.reject;
    ack(prev)
        && ack(next)
        && prev.term == next.term
        && prev.from == next.from
        && next.index >= prev.index
}

fn bytes(m: &Message) -> usize {
    m.entries
        .iter()
        .map(|e| e.data.len() + e.context.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn append(
        to: u64,
        index: u64,
        log_term: u64,
        entries: &[(u64, usize)],
        commit: u64,
    ) -> Message {
        let mut m = Message {
            to,
            from: 1,
            term: 2,
            index,
            log_term,
            commit,
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgAppend);
        m.set_entries(
            entries
                .iter()
                .enumerate()
                .map(|(k, &(term, len))| Entry {
                    index: index + 1 + k as u64,
                    term,
                    data: vec![7; len].into(),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .into(),
        );
        m
    }

    fn ack(to: u64, index: u64, reject: bool) -> Message {
        let mut m = Message {
            to,
            from: 2,
            term: 2,
            index,
            reject,
            ..Default::default()
        };
        m.set_msg_type(MessageType::MsgAppendResponse);
        m
    }

    fn indexes(m: &Message) -> Vec<u64> {
        m.entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn appends_that_continue_each_other_go_as_one_per_peer() {
        let msgs = vec![
            append(2, 10, 2, &[(2, 100)], 9),
            append(3, 10, 2, &[(2, 100)], 9),
            append(2, 11, 2, &[(2, 100), (2, 100)], 10),
            append(3, 11, 2, &[(2, 100), (2, 100)], 10),
            // Commit only, as raft-rs broadcasts when the commit index moves.
            append(2, 13, 2, &[], 11),
        ];
        let out = coalesce(msgs);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].to, indexes(&out[0]), out[0].commit),
            (2, vec![11, 12, 13], 11)
        );
        assert_eq!(
            (out[1].to, indexes(&out[1]), out[1].commit),
            (3, vec![11, 12, 13], 10)
        );
        assert_eq!((out[0].index, out[0].log_term), (10, 2));
    }

    #[test]
    fn appends_are_kept_apart_across_a_gap_a_term_another_message_or_the_size_bound() {
        let big = MAX_MERGED_BYTES / 2 + 1;
        let mut heartbeat = Message {
            to: 2,
            from: 1,
            term: 2,
            ..Default::default()
        };
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        let cases = vec![
            // Not where the first ends.
            vec![
                append(2, 10, 2, &[(2, 1)], 9),
                append(2, 12, 2, &[(2, 1)], 9),
            ],
            // Ends at the index but in another term.
            vec![
                append(2, 10, 2, &[(1, 1)], 9),
                append(2, 11, 2, &[(2, 1)], 9),
            ],
            // A heartbeat to the same peer between them stays between them.
            vec![
                append(2, 10, 2, &[(2, 1)], 9),
                heartbeat,
                append(2, 11, 2, &[(2, 1)], 9),
            ],
            vec![
                append(2, 10, 2, &[(2, big)], 9),
                append(2, 11, 2, &[(2, big)], 9),
            ],
        ];
        for msgs in cases {
            let n = msgs.len();
            assert_eq!(coalesce(msgs).len(), n);
        }
    }

    #[test]
    fn a_later_acknowledgement_replaces_an_earlier_one_and_rejections_stay() {
        let out = coalesce(vec![ack(1, 10, false), ack(3, 4, false), ack(1, 12, false)]);
        assert_eq!(
            out.iter().map(|m| (m.to, m.index)).collect::<Vec<_>>(),
            vec![(1, 12), (3, 4)]
        );
        let out = coalesce(vec![ack(1, 10, false), ack(1, 8, true), ack(1, 12, false)]);
        assert_eq!(
            out.len(),
            3,
            "a rejection and what surrounds it go as they are"
        );
    }
}
