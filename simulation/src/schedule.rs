//! The faults a run injects, drawn from its seed before it starts: a list that a failing run
//! prints, and that shrinking cuts down to the faults the failure needs.

use std::fmt;

use rand::{rngs::StdRng, Rng, SeedableRng};

/// Broker ids of the simulated replicas.
pub const NODES: [u64; 3] = [1, 2, 3];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The process dies (kill -9): what it wrote stays in the page cache.
    Crash { node: u64 },
    /// The machine loses power: what was not synced is lost, writes in flight are torn, and
    /// files created or renamed in a directory that was not synced go back.
    PowerCut { node: u64 },
    /// The node's disk fails every sync with EIO from now until it restarts.
    FsyncFails { node: u64 },
    /// The node starts again (after a crash first, if it is still running).
    Restart { node: u64 },
    /// Messages between `side` and the other nodes are dropped, both ways.
    Partition { side: Vec<u64> },
    /// Messages from `from` to `to` are dropped.
    OneWay { from: u64, to: u64 },
    /// Every link carries messages again.
    Heal,
    /// The network's quality from now on: loss and duplication in percent, and the most a
    /// message is delayed (a random delay reorders messages).
    Network {
        loss_pct: u32,
        dup_pct: u32,
        max_delay_ms: u64,
    },
    /// The node's wall clock jumps by `ms` (forward or back).
    ClockJump { node: u64, ms: i64 },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash { node } => write!(f, "crash {node}"),
            Fault::PowerCut { node } => write!(f, "power cut {node}"),
            Fault::FsyncFails { node } => write!(f, "fsync fails on {node}"),
            Fault::Restart { node } => write!(f, "restart {node}"),
            Fault::Partition { side } => write!(f, "partition {side:?} from the rest"),
            Fault::OneWay { from, to } => write!(f, "drop messages {from} -> {to}"),
            Fault::Heal => write!(f, "heal the network"),
            Fault::Network {
                loss_pct,
                dup_pct,
                max_delay_ms,
            } => write!(
                f,
                "network: {loss_pct}% loss, {dup_pct}% duplicated, delay up to {max_delay_ms} ms"
            ),
            Fault::ClockJump { node, ms } => write!(f, "clock of {node} jumps {ms:+} ms"),
        }
    }
}

impl Fault {
    /// A short name, for counting the faults of many runs.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::PowerCut { .. } => "power cut",
            Fault::FsyncFails { .. } => "fsync failure",
            Fault::Restart { .. } => "restart",
            Fault::Partition { .. } => "partition",
            Fault::OneWay { .. } => "one-way loss",
            Fault::Heal => "heal",
            Fault::Network { .. } => "lossy network",
            Fault::ClockJump { .. } => "clock jump",
        }
    }
}

/// A fault and when it strikes, in ms of simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    pub at_ms: u64,
    pub fault: Fault,
}

/// The faults of seed `seed` over `duration_ms`: on average one every `mean_gap_ms`. A node
/// taken down comes back 0.2 to 6 s later; at most two are down at once (so the group is
/// sometimes without a quorum); a partition heals 0.5 to 8 s later.
pub fn generate(seed: u64, duration_ms: u64, mean_gap_ms: u64) -> Vec<Timed> {
    // Its own stream: the faults do not change when the network's draws do.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let mut out = Vec::new();
    // When each node is back up (0: up).
    let mut down_until = [0u64; 3];
    let mut healed_at = 0u64;
    let mut t = 500;
    while t < duration_ms {
        let up: Vec<usize> = (0..3).filter(|&i| down_until[i] <= t).collect();
        let node_of = |i: usize| NODES[i];
        let roll = rng.gen_range(0..100);
        match roll {
            0..=39 if up.len() > 1 => {
                let i = up[rng.gen_range(0..up.len())];
                let node = node_of(i);
                let fault = match rng.gen_range(0..10) {
                    0..=3 => Fault::Crash { node },
                    4..=7 => Fault::PowerCut { node },
                    _ => Fault::FsyncFails { node },
                };
                let back = t + rng.gen_range(200..6000);
                down_until[i] = back;
                out.push(Timed { at_ms: t, fault });
                out.push(Timed {
                    at_ms: back,
                    fault: Fault::Restart { node },
                });
            }
            40..=64 if healed_at <= t => {
                let fault = if rng.gen_bool(0.7) {
                    Fault::Partition {
                        side: vec![NODES[rng.gen_range(0..3)]],
                    }
                } else {
                    let from = NODES[rng.gen_range(0..3)];
                    let others: Vec<u64> = NODES.into_iter().filter(|&n| n != from).collect();
                    let to = others[rng.gen_range(0..others.len())];
                    Fault::OneWay { from, to }
                };
                healed_at = t + rng.gen_range(500..8000);
                out.push(Timed { at_ms: t, fault });
                out.push(Timed {
                    at_ms: healed_at,
                    fault: Fault::Heal,
                });
            }
            65..=84 => {
                let calm = rng.gen_bool(0.3);
                out.push(Timed {
                    at_ms: t,
                    fault: Fault::Network {
                        loss_pct: if calm { 0 } else { rng.gen_range(0..20) },
                        dup_pct: if calm { 0 } else { rng.gen_range(0..10) },
                        max_delay_ms: if calm { 2 } else { rng.gen_range(1..300) },
                    },
                });
            }
            85..=99 => {
                let node = NODES[rng.gen_range(0..3)];
                let ms = rng.gen_range(-600_000..600_000);
                out.push(Timed {
                    at_ms: t,
                    fault: Fault::ClockJump { node, ms },
                });
            }
            _ => {}
        }
        t += rng.gen_range(1..2 * mean_gap_ms.max(1));
    }
    out.sort_by_key(|f| f.at_ms);
    out
}
