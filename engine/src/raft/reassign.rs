//! Reassignment: the leader moves the group's configuration to its goal replicas one safe step
//! at a time, each a conf change committed through the log (so every replica, and a replica
//! that starts later with an empty log, replays the same steps from the creation-time voters).
//! A new replica is caught up by appends from index 1 while the leader still has them, else by
//! a snapshot that carries the configuration at its index.

use raft::eraftpb::Entry;

use super::PartitionRaft;

impl PartitionRaft {
    /// A new goal from the controller: the reassignment target, or the assignment when none
    /// (completed or cancelled).
    pub fn set_goal(&mut self, goal: Vec<u64>, reassigning: bool, adding: bool, preferred: u64) {
        self.goal = goal;
        self.reassigning = reassigning;
        self.adding = adding;
        self.preferred = preferred;
        self.next_report = 0;
    }

    /// Voters (incoming and outgoing halves) and learners of the applied configuration.
    pub fn conf_state(&self) -> raft::eraftpb::ConfState {
        self.node.raft.prs().conf().to_conf_state()
    }

    pub(super) fn apply_conf_change(&mut self, e: &Entry) {
        let mut cc = raft::eraftpb::ConfChangeV2::default();
        if let Err(err) = protobuf::Message::merge_from_bytes(&mut cc, &e.data) {
            tracing::error!(index = e.index, error = %err, "undecodable conf change skipped");
            return;
        }
        if cc.leave_joint() && self.conf_state().voters_outgoing.is_empty() {
            // raft-rs proposes a second leave when the first is applied after `advance`
            // (run_ready's order); every replica skips it alike.
            return;
        }
        match self.node.apply_conf_change(&cc) {
            Ok(cs) => {
                tracing::info!(index = e.index, voters = ?cs.voters, outgoing = ?cs.voters_outgoing, learners = ?cs.learners, "partition configuration changed")
            }
            Err(err) => tracing::warn!(index = e.index, error = %err, "conf change refused"),
        }
    }

    fn propose_change(&mut self, changes: Vec<(u64, raft::eraftpb::ConfChangeType)>) {
        // One change is a simple change; several enter a joint configuration with automatic
        // leave (reconfigure leaves it explicitly if raft-rs has not).
        let cc = conf_change(&changes);
        if let Err(e) = self.node.propose_conf_change(vec![], cc) {
            tracing::debug!(error = %e, "conf change not proposed");
        }
    }

    /// One step towards the goal configuration; the leader calls it every half second.
    pub(super) fn reconfigure(&mut self) {
        use raft::eraftpb::ConfChangeType::{AddLearnerNode, AddNode, RemoveNode};
        let raft = &self.node.raft;
        // One conf change at a time: wait until the last one is applied.
        if raft.pending_conf_index > raft.raft_log.applied || self.goal.is_empty() {
            return;
        }
        let cs = self.conf_state();
        if cs.voters_outgoing.is_empty() {
            self.joint_seen = false;
        } else {
            // raft-rs leaves a joint configuration by itself at the next commit after the one
            // that entered it, but misses it when that was the last commit (we apply entries
            // after `advance`): then leave it here (an empty ConfChangeV2), one round later.
            if !std::mem::replace(&mut self.joint_seen, true) {
                return;
            }
            if let Err(e) = self
                .node
                .propose_conf_change(vec![], raft::eraftpb::ConfChangeV2::default())
            {
                tracing::debug!(error = %e, "leaving the joint configuration failed");
            }
            return;
        }
        let last = raft.raft_log.last_index();
        // A replica within a few entries of the leader's log, and heard from within an
        // election timeout, counts as caught up: joint consensus keeps it safe either way, this
        // only keeps commits from stalling. Without the second condition a dead learner
        // (matched 0) counted as caught up while the log was shorter than 64 entries, and the
        // joint change made it a voter of a configuration that then could not commit.
        let heard = &self.heard;
        let caught_up = |id: u64| {
            raft.prs().get(id).is_some_and(|p| p.matched + 64 >= last) && heard.lately(id)
        };
        let voter = |id: &u64| cs.voters.contains(id);
        let learner = |id: &u64| cs.learners.contains(id);
        // 1. Every new replica joins as a learner and receives the log.
        if let Some(&n) = self.goal.iter().find(|n| !voter(n) && !learner(n)) {
            self.propose_change(vec![(n, AddLearnerNode)]);
            return;
        }
        // 2. ... until it has caught up.
        if self.goal.iter().any(|&n| learner(&n) && !caught_up(n)) {
            return;
        }
        // 3. A leader that is being removed hands over to a target replica first.
        if !self.goal.contains(&self.id) {
            match self.goal.iter().find(|&&n| voter(&n) && caught_up(n)) {
                Some(&t) => self.node.transfer_leader(t),
                None => {
                    // No target replica votes yet: promote one (a single, simple change).
                    if let Some(&t) = self.goal.iter().find(|n| learner(n)) {
                        self.propose_change(vec![(t, AddNode)]);
                    }
                }
            }
            return;
        }
        // 4. One joint change: the new voters in, the old ones (and stray learners) out.
        let mut changes: Vec<_> = self
            .goal
            .iter()
            .filter(|n| !voter(n))
            .map(|&n| (n, AddNode))
            .collect();
        changes.extend(
            cs.voters
                .iter()
                .chain(cs.learners.iter())
                .filter(|n| !self.goal.contains(n))
                .map(|&n| (n, RemoveNode)),
        );
        if !changes.is_empty() {
            self.propose_change(changes);
            return;
        }
        // 5. The configuration is the goal: tell the controller (again now and then, until
        // it applies it and the goal stops being a reassignment).
        if self.reassigning && self.ticks >= self.next_report {
            self.next_report = self.ticks + 40;
            (self.on_reassigned)(self.goal.iter().map(|&n| n as i32).collect());
        }
    }
}

/// A ConfChangeV2 of these changes (automatic transition).
pub fn conf_change(
    changes: &[(u64, raft::eraftpb::ConfChangeType)],
) -> raft::eraftpb::ConfChangeV2 {
    let mut cc = raft::eraftpb::ConfChangeV2::default();
    cc.set_changes(
        changes
            .iter()
            .map(|&(id, ty)| {
                let mut c = raft::eraftpb::ConfChangeSingle {
                    node_id: id,
                    ..Default::default()
                };
                c.set_change_type(ty);
                c
            })
            .collect(),
    );
    cc
}
