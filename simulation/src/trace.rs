//! What a run did: every event counts towards its digest (two runs of one seed must end with
//! the same digest, or the simulation is not deterministic); the notable ones are kept as
//! lines, the last few hundred of which a failing run prints.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// Lines kept for a failing run's report.
const KEPT: usize = 300;

pub struct Trace {
    start: tokio::time::Instant,
    lines: VecDeque<String>,
    digest: std::hash::DefaultHasher,
    pub events: u64,
    /// Print each line as it happens (a replay's `--trace`).
    echo: bool,
    pub violations: Vec<String>,
}

impl Trace {
    pub fn new(echo: bool) -> Self {
        Trace {
            start: tokio::time::Instant::now(),
            lines: VecDeque::new(),
            // SipHash with fixed keys: the same on every run.
            digest: std::hash::DefaultHasher::new(),
            events: 0,
            echo,
            violations: Vec::new(),
        }
    }

    /// Simulated milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A notable event, kept as a line.
    pub fn note(&mut self, what: impl Into<String>) {
        let line = format!("{:>8} ms  {}", self.now_ms(), what.into());
        self.tick(&line);
        if self.echo {
            println!("{line}");
        }
        if self.lines.len() == KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// A routine event (a message delivered): counted and hashed, not kept.
    pub fn tick(&mut self, what: impl Hash) {
        self.events += 1;
        what.hash(&mut self.digest);
    }

    /// A broken invariant.
    pub fn violation(&mut self, what: String) {
        self.note(format!("VIOLATION: {what}"));
        self.violations.push(what);
    }

    pub fn digest(&self) -> u64 {
        self.digest.finish()
    }

    pub fn tail(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}
