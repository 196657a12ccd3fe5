//! Drops Raft messages from the network that raft-rs 0.7 would treat as impossible, before
//! they reach `RawNode::step`. raft-rs trusts its peers: a message no correct peer sends can
//! hit a `fatal!` (a panic) or silently wedge the group. Reachable from `step` with a remote
//! message, and guarded here:
//!
//! - `handle_heartbeat` calls `raft_log.commit_to(m.commit)`, fatal when `commit` is past the
//!   local last index. A correct leader sends `min(matched, committed)`, and `matched` is at
//!   most what this replica acknowledged having, so a larger commit is forged or corrupt.
//! - `maybe_append` is fatal when an entry conflicts with a committed one, and slices
//!   `ents[conflict - (index + 1)..]`, which underflows or panics unless the entries are
//!   contiguous from `index + 1`; `unstable.truncate_and_append` panics on a gap. A correct
//!   leader sends contiguous entries whose terms never decrease, lie between `log_term` and the
//!   message term, and agree with everything committed. (`m.commit` of an append needs no
//!   check: raft-rs clamps it to the last entry the message carries.)
//! - `term(idx)` is 0 past the log end, so an append with `log_term` 0 and a far `index`
//!   "matches" and appends at a gap: only index 0 has term 0.
//! - A leader's progress takes an append response's `index` as the follower's match: one past
//!   the leader's own log stalls that follower for good; a `request_snapshot` makes it build a
//!   snapshot, which this code never sends nor expects.
//! - Snapshots (`MsgSnapshot`) come only with a configuration raft-rs can restore (voters, no
//!   node 0), a term no later than the message's and data that is ours (`super::snapshot`;
//!   the controller also decodes the metadata it carries before stepping it).
//!   Proposals, read-index and transfer requests never cross the wire here (proposals and
//!   transfers happen on the leader), and a forged proposal would append arbitrary records,
//!   so they are dropped.
//! - Terms: raft-rs adds 1 on every campaign (a `u64::MAX` term overflows) and the partition
//!   leader epoch Kafka sees is the term as an `i32`.
//! - `MsgTimeoutNow` starts an election at once; only the current leader sends it.

use raft::eraftpb::{Message, MessageType};
use raft::{Raft, Storage};

/// No real group reaches this many elections; above it a term cannot be a leader epoch.
pub const MAX_TERM: u64 = i32::MAX as u64;

/// Why a message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("{ty:?} addressed to node {to}, this is node {me}")]
    NotForMe { ty: MessageType, to: u64, me: u64 },
    #[error("{ty:?} from {from}, which is not a member of this group")]
    UnknownPeer { ty: MessageType, from: u64 },
    #[error("{0:?} never comes from another broker")]
    NotRemote(MessageType),
    #[error("{ty:?} with term {term} (limit {MAX_TERM})")]
    Term { ty: MessageType, term: u64 },
    #[error("heartbeat from {from} commits {commit}, past this replica's last index {last}")]
    CommitPastLog { from: u64, commit: u64, last: u64 },
    #[error("append from {from} is impossible: {why}")]
    Entries { from: u64, why: String },
    #[error("append response from {from} acknowledges index {index}, past the last index {last}")]
    AckPastLog { from: u64, index: u64, last: u64 },
    #[error("append response from {from} requests a snapshot, which this code never sends")]
    SnapshotRequest { from: u64 },
    #[error("snapshot from {from} is impossible: {why}")]
    Snapshot { from: u64, why: &'static str },
    #[error("MsgTimeoutNow from {from}, which is not the leader of term {term}")]
    NotLeader { from: u64, term: u64 },
}

impl Rejected {
    /// The `reason` label of `icestream_rpc_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::NotForMe { .. } => "raft_not_for_me",
            Rejected::UnknownPeer { .. } => "raft_unknown_peer",
            Rejected::NotRemote(_) => "raft_message_type",
            Rejected::Term { .. } => "raft_term",
            Rejected::CommitPastLog { .. } => "raft_commit_past_log",
            Rejected::Entries { .. } => "raft_entries",
            Rejected::AckPastLog { .. } | Rejected::SnapshotRequest { .. } => "raft_response",
            Rejected::NotLeader { .. } => "raft_timeout_now",
            Rejected::Snapshot { .. } => "raft_snapshot",
        }
    }
}

/// Who may send to the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Members of the group's progress tracker (voters and learners) only: the controller,
    /// whose leader is always a founding voter every replica knows from its first start.
    Tracker,
    /// The caller checked the sender against the group's replicas in the controller's
    /// metadata (partition groups: a replica gaining a partition starts from the creation-time
    /// voters and learns later members from the log, so its tracker lags).
    Vouched,
}

/// `Ok` if `m`, received from another broker, is safe to step into `raft`.
pub fn check<T: Storage>(raft: &Raft<T>, m: &Message, peers: Peers) -> Result<(), Rejected> {
    use MessageType::*;
    let ty = m.get_msg_type();
    let remote = matches!(
        ty,
        MsgAppend
            | MsgAppendResponse
            | MsgRequestVote
            | MsgRequestVoteResponse
            | MsgRequestPreVote
            | MsgRequestPreVoteResponse
            | MsgHeartbeat
            | MsgHeartbeatResponse
            | MsgTimeoutNow
            | MsgSnapshot
    );
    if !remote {
        return Err(Rejected::NotRemote(ty));
    }
    if m.to != raft.id {
        return Err(Rejected::NotForMe {
            ty,
            to: m.to,
            me: raft.id,
        });
    }
    let known = match peers {
        Peers::Tracker => raft.prs().get(m.from).is_some(),
        Peers::Vouched => true,
    };
    if m.from == 0 || m.from == raft.id || !known {
        return Err(Rejected::UnknownPeer { ty, from: m.from });
    }
    if m.term > MAX_TERM || m.log_term > MAX_TERM {
        return Err(Rejected::Term { ty, term: m.term });
    }
    let last = raft.raft_log.last_index();
    match ty {
        MsgHeartbeat if m.commit > last => Err(Rejected::CommitPastLog {
            from: m.from,
            commit: m.commit,
            last,
        }),
        MsgAppend => check_append(raft, m).map_err(|why| Rejected::Entries { from: m.from, why }),
        MsgAppendResponse if m.request_snapshot != 0 => {
            Err(Rejected::SnapshotRequest { from: m.from })
        }
        MsgAppendResponse if m.index > last => Err(Rejected::AckPastLog {
            from: m.from,
            index: m.index,
            last,
        }),
        MsgSnapshot => check_snapshot(m).map_err(|why| Rejected::Snapshot { from: m.from, why }),
        MsgTimeoutNow if m.from != raft.leader_id || m.term != raft.term => {
            Err(Rejected::NotLeader {
                from: m.from,
                term: raft.term,
            })
        }
        _ => Ok(()),
    }
}

fn check_snapshot(m: &Message) -> Result<(), &'static str> {
    let snap = m.get_snapshot();
    let meta = snap.get_metadata();
    if meta.index == 0 || meta.index > MAX_TERM << 32 {
        return Err("index out of range");
    }
    if meta.term == 0 || meta.term > m.term {
        return Err("term out of range");
    }
    let cs = meta.get_conf_state();
    let ids = || {
        cs.voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
    };
    if cs.voters.is_empty() || ids().any(|&id| id == 0) {
        return Err("configuration without voters");
    }
    if super::snapshot::offset_of(snap).is_none() {
        return Err("data is not a partition snapshot");
    }
    Ok(())
}

fn check_append<T: Storage>(raft: &Raft<T>, m: &Message) -> Result<(), String> {
    if m.log_term > m.term {
        return Err(format!(
            "previous entry's term {} is above the message term {}",
            m.log_term, m.term
        ));
    }
    if m.index > MAX_TERM << 16 {
        return Err(format!("previous index {} is out of range", m.index));
    }
    if m.log_term == 0 && m.index != 0 {
        return Err(format!("previous entry {} has term 0", m.index));
    }
    let committed = raft.raft_log.committed;
    let mut prev_term = m.log_term;
    for (i, e) in m.entries.iter().enumerate() {
        if e.index != m.index + 1 + i as u64 {
            return Err(format!(
                "entry {} follows index {} (entries must be contiguous)",
                e.index,
                m.index + i as u64
            ));
        }
        if e.term < prev_term || e.term > m.term {
            return Err(format!(
                "entry {} has term {} (previous {prev_term}, message {})",
                e.index, e.term, m.term
            ));
        }
        prev_term = e.term;
        // Committed entries never change: a different term there is fatal in raft-rs. An
        // entry before this replica's first index (behind its checkpoint) has no term here
        // (raft-rs says 0) and nothing to conflict with: raft-rs answers such an append with
        // its commit index, which is how a leader that lost track of this replica learns where
        // it is. Refusing it left that replica behind for good (found by the simulation,
        // docs/simulation.md).
        let known = raft.raft_log.term(e.index).ok().filter(|&t| t != 0);
        if e.index <= committed && known.is_some_and(|t| t != e.term) {
            return Err(format!(
                "entry {} (term {}) conflicts with the committed log (committed {committed})",
                e.index, e.term
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{ConfState, Entry};
    use raft::storage::MemStorage;
    use raft::RawNode;

    fn follower() -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let e = |index, term| Entry {
            index,
            term,
            ..Default::default()
        };
        storage.wl().append(&[e(1, 1), e(2, 1), e(3, 2)]).unwrap();
        storage.wl().set_hardstate(raft::eraftpb::HardState {
            term: 2,
            commit: 2,
            ..Default::default()
        });
        let config = crate::raft::log_file::raft_config(2);
        RawNode::new(&config, storage, &crate::raft::log_file::discard_logger()).unwrap()
    }

    fn msg(ty: MessageType, from: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(ty);
        m.from = from;
        m.to = 2;
        m.term = term;
        m
    }

    #[test]
    fn the_reported_forged_heartbeat_is_dropped_and_would_have_panicked() {
        let mut node = follower();
        let mut m = msg(MessageType::MsgHeartbeat, 1, 1 << 40);
        m.commit = 1_000_000;
        assert!(check(&node.raft, &m, Peers::Tracker).is_err());
        let mut m = msg(MessageType::MsgHeartbeat, 1, 9);
        m.commit = 1_000_000;
        let err = check(&node.raft, &m, Peers::Tracker).unwrap_err();
        assert_eq!(err.reason(), "raft_commit_past_log");
        // What the guard prevents: raft-rs panics on it.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.step(m)));
        assert!(stepped.is_err(), "raft-rs 0.7 panics on this heartbeat");
    }

    #[test]
    fn an_append_of_entries_behind_the_checkpoint_reaches_raft_rs() {
        let mut node = follower();
        // Entry 1 is behind this replica's checkpoint: it holds 2 (as the snapshot's) on.
        node.raft.raft_log.store.wl().compact(3).unwrap();
        let mut m = msg(MessageType::MsgAppend, 1, 2);
        m.commit = 2;
        m.entries = vec![Entry {
            index: 1,
            term: 1,
            ..Default::default()
        }]
        .into();
        assert!(check(&node.raft, &m, Peers::Tracker).is_ok());
        // raft-rs answers with where this replica is, which the leader goes on from.
        node.step(m).unwrap();
        let answers = node.raft.msgs.clone();
        assert!(
            answers
                .iter()
                .any(|a| a.get_msg_type() == MessageType::MsgAppendResponse
                    && !a.reject
                    && a.index == 2),
            "{answers:?}"
        );
    }

    #[test]
    fn impossible_messages_are_dropped() {
        let node = follower();
        let r = &node.raft;
        let e = |index, term| Entry {
            index,
            term,
            ..Default::default()
        };
        let rejected = |m: &Message| check(r, m, Peers::Tracker).unwrap_err().reason();
        let mut m = msg(MessageType::MsgHeartbeat, 1, 2);
        m.to = 3;
        assert_eq!(rejected(&m), "raft_not_for_me");
        assert_eq!(
            rejected(&msg(MessageType::MsgHeartbeat, 7, 2)),
            "raft_unknown_peer"
        );
        assert_eq!(
            rejected(&msg(MessageType::MsgHeartbeat, 2, 2)),
            "raft_unknown_peer"
        );
        for ty in [
            MessageType::MsgPropose,
            MessageType::MsgHup,
            MessageType::MsgTransferLeader,
            MessageType::MsgReadIndex,
        ] {
            assert_eq!(rejected(&msg(ty, 1, 2)), "raft_message_type", "{ty:?}");
        }
        // A snapshot only if it is one of ours.
        assert_eq!(
            rejected(&msg(MessageType::MsgSnapshot, 1, 2)),
            "raft_snapshot"
        );
        let vouched = |m: &Message| check(r, m, Peers::Vouched).unwrap_err().reason();
        let mut snap = msg(MessageType::MsgSnapshot, 1, 2);
        assert_eq!(vouched(&snap), "raft_snapshot");
        let cp = crate::raft::checkpoint::Checkpoint {
            index: 9,
            term: 2,
            conf: ConfState::from((vec![1, 2, 3], vec![])),
            offset: 100,
            first_file: 0,
            state: Default::default(),
        };
        snap.set_snapshot(crate::raft::snapshot::to_snapshot(&cp));
        assert_eq!(check(r, &snap, Peers::Vouched), Ok(()));
        snap.mut_snapshot().data = vec![1, 2].into();
        assert_eq!(vouched(&snap), "raft_snapshot");
        let mut later = cp.clone();
        later.term = 3;
        snap.set_snapshot(crate::raft::snapshot::to_snapshot(&later));
        assert_eq!(vouched(&snap), "raft_snapshot");
        let mut empty = cp;
        empty.conf = ConfState::default();
        snap.set_snapshot(crate::raft::snapshot::to_snapshot(&empty));
        assert_eq!(vouched(&snap), "raft_snapshot");
        assert_eq!(
            rejected(&msg(MessageType::MsgRequestVote, 1, u64::MAX)),
            "raft_term"
        );
        // Appends: a gap, a decreasing term, a term above the message's, a far index with
        // log_term 0, and a rewrite of a committed entry.
        let mut a = msg(MessageType::MsgAppend, 1, 3);
        a.index = 3;
        a.log_term = 2;
        a.entries = vec![e(4, 3), e(6, 3)].into();
        assert_eq!(rejected(&a), "raft_entries");
        a.entries = vec![e(4, 3), e(5, 2)].into();
        assert_eq!(rejected(&a), "raft_entries");
        a.entries = vec![e(4, 4)].into();
        assert_eq!(rejected(&a), "raft_entries");
        let mut far = msg(MessageType::MsgAppend, 1, 3);
        far.index = 1000;
        far.entries = vec![e(1001, 3)].into();
        assert_eq!(rejected(&far), "raft_entries");
        let mut rewrite = msg(MessageType::MsgAppend, 1, 3);
        rewrite.index = 1;
        rewrite.log_term = 1;
        rewrite.entries = vec![e(2, 3)].into();
        assert_eq!(rejected(&rewrite), "raft_entries");
        let mut ack = msg(MessageType::MsgAppendResponse, 1, 2);
        ack.index = 99;
        assert_eq!(rejected(&ack), "raft_response");
        ack.index = 3;
        ack.request_snapshot = 3;
        assert_eq!(rejected(&ack), "raft_response");
        assert_eq!(
            rejected(&msg(MessageType::MsgTimeoutNow, 3, 2)),
            "raft_timeout_now"
        );
        // What a correct leader sends passes.
        let mut ok = msg(MessageType::MsgAppend, 1, 3);
        ok.index = 3;
        ok.log_term = 2;
        ok.commit = 9;
        ok.entries = vec![e(4, 3), e(5, 3)].into();
        assert_eq!(check(r, &ok, Peers::Tracker), Ok(()));
        let mut hb = msg(MessageType::MsgHeartbeat, 1, 2);
        hb.commit = 3;
        assert_eq!(check(r, &hb, Peers::Tracker), Ok(()));
        // A vouched sender need not be in the tracker yet.
        let mut joined = msg(MessageType::MsgHeartbeat, 4, 2);
        joined.commit = 2;
        assert_eq!(check(r, &joined, Peers::Vouched), Ok(()));
    }
}
