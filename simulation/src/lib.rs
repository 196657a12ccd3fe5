//! Deterministic simulation of Icestream's replicated partitions.
//!
//! One process runs three brokers' replicas of a partition: the production partition actor,
//! segment log, Raft log and raft-rs, each on its own directory. Only what is outside them is
//! simulated, from one seed: time (tokio's paused clock, which jumps to the next timer when
//! every task waits), the network ([`net`]), the disk's syncs and power cuts ([`disk`], and
//! the power-loss ledger in `engine::log::power`), wall clocks ([`clock`]) and the faults
//! ([`schedule`]). Everything runs on one thread, and every choice (message delays, election
//! timeouts, torn writes, the clients' requests) comes from the seed, so a seed replays
//! exactly: [`Report::digest`] is the same on every run of it.
//!
//! After the faults stop the network heals, every node restarts, and once the replicas agree
//! on where their logs end, [`history`] checks what clients were told against every
//! replica's log.

pub mod clock;
pub mod controller;
pub mod disk;
pub mod groups;
pub mod history;
pub mod host;
pub mod net;
pub mod schedule;
pub mod trace;
pub mod workload;
pub mod world;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::schedule::{Timed, NODES};
use crate::trace::Trace;
use crate::workload::Load;
use crate::world::World;

#[derive(Debug, Clone)]
pub struct Options {
    /// Simulated time under load and faults.
    pub duration_ms: u64,
    /// The mean gap between faults.
    pub mean_gap_ms: u64,
    /// Print each trace line as it happens.
    pub echo: bool,
    /// Run these faults instead of the seed's (shrinking).
    pub schedule: Option<Vec<Timed>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration_ms: 20_000,
            mean_gap_ms: 1_200,
            echo: false,
            schedule: None,
        }
    }
}

pub struct Report {
    pub seed: u64,
    pub schedule: Vec<Timed>,
    /// Messages delivered, requests answered, faults: what the simulator processed.
    pub events: u64,
    pub digest: u64,
    pub sim_ms: u64,
    pub wall: Duration,
    pub produces_acked: usize,
    pub records_acked: usize,
    /// Topic changes the controller acknowledged.
    pub controller_changes: usize,
    pub violations: Vec<String>,
    /// The last trace lines.
    pub tail: Vec<String>,
}

/// How long, in simulated time, the healed cluster has to agree on its logs.
const SETTLE: Duration = Duration::from_secs(120);

/// Runs seed `seed`.
pub fn run(seed: u64, opts: &Options) -> Report {
    let wall = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let local = tokio::task::LocalSet::new();
    let mut report = local.block_on(&rt, simulate(seed, opts));
    drop(local);
    report.wall = wall.elapsed();
    report
}

async fn simulate(seed: u64, opts: &Options) -> Report {
    let trace = Arc::new(Mutex::new(Trace::new(opts.echo)));
    let schedule = opts
        .schedule
        .clone()
        .unwrap_or_else(|| schedule::generate(seed, opts.duration_ms, opts.mean_gap_ms));
    let world = match World::new(seed, trace.clone()) {
        Ok(w) => w,
        Err(e) => panic!("cannot set up the simulation's directories: {e}"),
    };
    for id in NODES {
        world.borrow_mut().start(id);
    }
    let load = Rc::new(Load {
        world: world.clone(),
        history: Rc::new(RefCell::new(Default::default())),
        stop: Rc::new(Cell::new(false)),
    });
    let mut clients = Vec::new();
    for (id, idempotent) in [(1, false), (3, true)] {
        let s = world.borrow_mut().rng.gen();
        clients.push(tokio::task::spawn_local(
            load.clone().producer(id, idempotent, s),
        ));
    }
    let (s, window) = {
        let mut w = world.borrow_mut();
        (w.rng.gen(), w.rng.gen_range(2..=5))
    };
    clients.push(tokio::task::spawn_local(
        load.clone().pipelined(2, window, s),
    ));
    let s = world.borrow_mut().rng.gen();
    clients.push(tokio::task::spawn_local(load.clone().reader(s)));
    let commits: Rc<RefCell<groups::Commits>> = Default::default();
    let s = world.borrow_mut().rng.gen();
    clients.push(tokio::task::spawn_local(groups::committer(
        world.clone(),
        commits.clone(),
        load.stop.clone(),
        s,
    )));
    let acked: Rc<RefCell<controller::Acked>> = Default::default();
    let s = world.borrow_mut().rng.gen();
    clients.push(tokio::task::spawn_local(controller::admin(
        world.clone(),
        acked.clone(),
        load.stop.clone(),
        s,
    )));

    let start = tokio::time::Instant::now();
    for f in &schedule {
        tokio::time::sleep_until(start + Duration::from_millis(f.at_ms)).await;
        world.borrow_mut().check_alive();
        World::apply(&world, &f.fault).await;
    }
    tokio::time::sleep_until(start + Duration::from_millis(opts.duration_ms)).await;
    load.stop.set(true);
    for c in clients {
        let _ = c.await;
    }

    // The faults end: the network heals and every node runs again.
    world
        .borrow()
        .trace()
        .note("faults end: heal, restart every node");
    for f in [
        schedule::Fault::Heal,
        schedule::Fault::Network {
            loss_pct: 0,
            dup_pct: 0,
            max_delay_ms: 2,
        },
    ] {
        World::apply(&world, &f).await;
    }
    for id in NODES {
        let failing = world
            .borrow()
            .nodes
            .get(&id)
            .is_some_and(|n| n.handle.is_none() || n.disk_failing());
        if failing {
            World::apply(&world, &schedule::Fault::Restart { node: id }).await;
        }
    }
    settle_and_check(&world, &load).await;
    // The clients stopped: what they were told is final.
    let (acked, commits) = (acked.take(), commits.take());
    controller::check(&world, &acked, SETTLE).await;
    groups::check(&world, &commits, SETTLE).await;
    World::shut_down(&world).await;

    let sim_ms = start.elapsed().as_millis() as u64;
    let controller_changes = acked.changes;
    let t = trace.lock().unwrap_or_else(|e| e.into_inner());
    let h = load.history.borrow();
    Report {
        seed,
        schedule,
        events: t.events,
        digest: t.digest(),
        sim_ms,
        wall: Duration::ZERO,
        produces_acked: h.produces_acked,
        records_acked: h.acked.len(),
        controller_changes,
        violations: t.violations.clone(),
        tail: t.tail(),
    }
}

/// Waits until every replica runs and all agree on where the log ends, then checks each one's
/// whole log against the history.
async fn settle_and_check(world: &world::Shared, load: &Load) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut agreed_since: Option<tokio::time::Instant> = None;
    loop {
        world.borrow_mut().check_alive();
        let marks = world.borrow().marks();
        let agree = marks.len() == NODES.len()
            && marks
                .values()
                .all(|m| m.high == m.log_end && m.high == marks[&1].high);
        let now = tokio::time::Instant::now();
        match (agree, agreed_since) {
            // Agreed for a second: nothing was still in flight.
            (true, Some(since)) if now - since >= Duration::from_secs(1) => break,
            (true, None) => agreed_since = Some(now),
            (false, _) => agreed_since = None,
            _ => {}
        }
        if now >= deadline {
            let w = world.borrow();
            let state = workload::describe(&w);
            w.trace().violation(format!(
                "the healed replicas did not agree on their logs within {} s: {state}",
                SETTLE.as_secs()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut logs = std::collections::BTreeMap::new();
    for id in NODES {
        match workload::whole_log(world, id).await {
            Some(l) => {
                logs.insert(id, l);
            }
            None => world
                .borrow()
                .trace()
                .violation(format!("node {id} did not serve its whole log")),
        }
    }
    let w = world.borrow();
    let mut t = w.trace();
    let state = workload::describe(&w);
    t.note(format!("settled: {state}"));
    load.history.borrow().check_logs(&mut t, &logs);
}
