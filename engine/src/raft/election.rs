//! Election timing from a seed, so that a simulation replays exactly.
//!
//! raft-rs draws a replica's randomized election timeout from its thread's RNG whenever the
//! replica's state resets (a new term, a lost pre-vote), and nothing outside it can observe
//! every reset. A seeded replica therefore narrows raft-rs's range to one value, so that its
//! draws are all the same, and takes the randomness from the seed instead: each tick of a
//! replica that does not lead reaches raft-rs only with probability [`TICK_ODDS`], which
//! spreads the replicas' effective timeouts (as the random timeout would) in an order the seed
//! fixes. Production passes no seed and keeps raft-rs's own randomized timeouts.

use raft::{Raft, StateRole, Storage};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The chance that a tick of a replica that does not lead reaches raft-rs.
const TICK_ODDS: f64 = 0.7;

pub struct SeededElections {
    rng: StdRng,
}

impl SeededElections {
    /// Seeds the replica's elections; narrows `config`'s election range to one value.
    pub fn new(seed: u64, config: &mut raft::Config) -> Self {
        let ticks = config.election_tick;
        config.min_election_tick = ticks;
        config.max_election_tick = ticks + 1;
        SeededElections {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Whether this tick reaches raft-rs (a leader's always does: its heartbeats keep time).
    pub fn tick<T: Storage>(&mut self, raft: &Raft<T>) -> bool {
        raft.state == StateRole::Leader || self.rng.gen_bool(TICK_ODDS)
    }
}
