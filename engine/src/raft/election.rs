//! Election timeouts from a seeded generator, so that a simulation replays exactly.
//!
//! raft-rs draws a replica's randomized election timeout from its thread's RNG whenever the
//! replica changes role or term. With a seed, the replica replaces that draw before its next
//! tick, the only place the timeout is compared, through `Raft::set_randomized_election_timeout`
//! (which raft-rs offers for this), so no unseeded draw is ever used. Production passes no seed.

use raft::{Raft, StateRole, Storage};
use rand::{rngs::StdRng, Rng, SeedableRng};

pub struct SeededElections {
    rng: StdRng,
    /// raft-rs's range, `[min_election_tick, max_election_tick)` (its fields are private).
    range: std::ops::Range<usize>,
    /// The term and role the current timeout was drawn for.
    drawn_for: Option<(u64, StateRole)>,
}

impl SeededElections {
    pub fn new(seed: u64, config: &raft::Config) -> Self {
        SeededElections {
            rng: StdRng::seed_from_u64(seed),
            range: config.min_election_tick()..config.max_election_tick(),
            drawn_for: None,
        }
    }

    /// Call before every tick: draws a new timeout if raft-rs reset it since the last one.
    pub fn before_tick<T: Storage>(&mut self, raft: &mut Raft<T>) {
        let now = (raft.term, raft.state);
        if self.drawn_for == Some(now) {
            return;
        }
        self.drawn_for = Some(now);
        let t = self.rng.gen_range(self.range.clone());
        raft.set_randomized_election_timeout(t);
    }
}
