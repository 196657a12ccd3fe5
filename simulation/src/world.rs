//! The simulated cluster: three brokers' replicas of one partition, each the production
//! partition actor with its segment log and Raft log on a real (tmpfs) directory, its syncs
//! and wall clock simulated, and the network between them simulated; and how faults take
//! them down and bring them back.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::config::{ClusterDefaults, ResolvedTopicConfig, TopicConfig};
use engine::log::power;
use engine::partition::{PartitionHandle, Watermarks};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::clock::SimClock;
use crate::disk::SimDisk;
use crate::net::{Group, Net, Route};
use crate::schedule::{Fault, NODES};
use crate::trace::Trace;

pub struct Node {
    pub id: u64,
    /// The running replica; `None` while the node is down.
    pub handle: Option<PartitionHandle>,
    /// The running controller; `None` while the node is down.
    pub controller: Option<engine::cluster::controller::ControllerHandle>,
    /// The running group coordinator, over its `__consumer_offsets` replica.
    pub groups: Option<crate::host::Coordinator>,
    disk: Rc<SimDisk>,
    clock: Arc<SimClock>,
    /// The node's data directory (segments in `log/`, Raft log in `raft/`).
    root: PathBuf,
    ledger: PathBuf,
    _recording: power::Recording,
    /// How many times it was started (its election seed changes each time).
    starts: u64,
}

impl Node {
    pub fn disk_failing(&self) -> bool {
        self.disk.failing.get()
    }
}

/// The topic settings of a run, drawn from its seed.
pub struct Variant {
    pub pairs: Vec<(&'static str, &'static str)>,
    /// The Raft log's file size: small files rotate and go behind checkpoints often.
    pub file_bytes: u64,
}

impl Variant {
    pub fn draw(rng: &mut StdRng) -> Variant {
        let mut pairs = vec![];
        // Small segments roll often; some runs also delete old ones (retention), so that a
        // replica that was down long installs a snapshot.
        if rng.gen_bool(0.6) {
            pairs.push(("segment.bytes", "16384"));
        }
        if rng.gen_bool(0.3) {
            pairs.push(("retention.bytes", "32768"));
        }
        Variant {
            pairs,
            file_bytes: [16 << 10, 64 << 10, 1 << 20][rng.gen_range(0..3)],
        }
    }
}

pub struct World {
    pub seed: u64,
    pub nodes: BTreeMap<u64, Node>,
    pub net: Arc<Net>,
    pub trace: Arc<Mutex<Trace>>,
    pub rng: StdRng,
    config: ResolvedTopicConfig,
    /// `__consumer_offsets`' settings (compacted, as in production).
    offsets_config: ResolvedTopicConfig,
    file_bytes: u64,
    assigned: Arc<AtomicBool>,
    /// The nodes that are up, for the controllers' gossip.
    alive: Arc<Mutex<std::collections::BTreeSet<i32>>>,
    _dir: tempfile::TempDir,
}

pub type Shared = Rc<RefCell<World>>;

impl World {
    pub fn new(seed: u64, trace: Arc<Mutex<Trace>>) -> std::io::Result<Shared> {
        let mut rng = StdRng::seed_from_u64(seed);
        let variant = Variant::draw(&mut rng);
        // tmpfs when there is one: the disk's durability is the ledger's, not the device's.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm")?,
            false => tempfile::tempdir()?,
        };
        let defaults = ClusterDefaults {
            retention_check_interval_ms: 1000,
            ..Default::default()
        };
        let config = TopicConfig::from_pairs(variant.pairs.clone())
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            .resolve(&defaults);
        trace
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(format!(
                "topic {:?}, Raft log files of {} KiB",
                variant.pairs,
                variant.file_bytes >> 10
            ));
        let offsets_config = TopicConfig::from_pairs(vec![
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16384"),
        ])
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?
        .resolve(&defaults);
        let net = Net::new(seed, trace.clone());
        let mut nodes = BTreeMap::new();
        for id in NODES {
            let root = dir.path().join(format!("node-{id}"));
            let ledger = dir.path().join(format!("ledger-{id}"));
            std::fs::create_dir_all(&root)?;
            let recording = power::record_under(&ledger, &root)?;
            nodes.insert(
                id,
                Node {
                    id,
                    handle: None,
                    controller: None,
                    groups: None,
                    disk: SimDisk::new(StdRng::seed_from_u64(rng.gen())),
                    clock: Arc::new(SimClock::new()),
                    root,
                    ledger,
                    _recording: recording,
                    starts: 0,
                },
            );
        }
        Ok(Rc::new(RefCell::new(World {
            seed,
            nodes,
            net,
            trace,
            rng,
            config,
            offsets_config,
            file_bytes: variant.file_bytes,
            assigned: Arc::new(AtomicBool::new(true)),
            alive: Default::default(),
            _dir: dir,
        })))
    }

    pub fn trace(&self) -> std::sync::MutexGuard<'_, Trace> {
        self.trace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts node `id` over whatever its directory holds: its replica of the partition under
    /// test, its replica of `__consumer_offsets` with a group coordinator, and its controller.
    pub fn start(&mut self, id: u64) {
        let (data_seed, offsets_seed, controller_seed) =
            (self.rng.gen(), self.rng.gen(), self.rng.gen());
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.handle.is_some() || node.controller.is_some() {
            return;
        }
        node.disk.failing.set(false);
        node.starts += 1;
        let starts = node.starts;
        match self.spawn_replica(id, Group::Partition, self.config.clone(), data_seed) {
            Ok(h) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.handle = Some(h);
                }
                self.trace()
                    .note(format!("node {id} started (start {starts})"));
            }
            Err(e) => self.cannot_start(id, "partition replica", e),
        }
        match self.spawn_replica(
            id,
            Group::Offsets,
            self.offsets_config.clone(),
            offsets_seed,
        ) {
            Ok(h) => {
                match crate::host::Coordinator::start(
                    id,
                    &self.root(id),
                    h,
                    self.handle(id),
                    self.clock(id),
                ) {
                    Ok(c) => {
                        if let Some(n) = self.nodes.get_mut(&id) {
                            n.groups = Some(c);
                        }
                    }
                    Err(e) => self.cannot_start(id, "group coordinator", e),
                }
            }
            Err(e) => self.cannot_start(id, "__consumer_offsets replica", e),
        }
        self.alive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id as i32);
        self.start_controller(id, controller_seed);
    }

    fn clock(&self, id: u64) -> Arc<SimClock> {
        self.nodes
            .get(&id)
            .map(|n| n.clock.clone())
            .unwrap_or_default()
    }

    fn root(&self, id: u64) -> PathBuf {
        self.nodes
            .get(&id)
            .map(|n| n.root.clone())
            .unwrap_or_default()
    }

    fn cannot_start(&self, id: u64, what: &str, e: String) {
        let files = listing(&self.root(id));
        let mut t = self.trace();
        t.violation(format!(
            "node {id}'s {what} cannot start over its own files: {e}"
        ));
        t.note(format!("node {id}'s files: {files}"));
    }

    /// Spawns node `id`'s replica in `group` (its files under `<root>/<group>/`).
    fn spawn_replica(
        &mut self,
        id: u64,
        group: Group,
        config: ResolvedTopicConfig,
        seed: u64,
    ) -> Result<PartitionHandle, String> {
        let net = self.net.clone();
        let (file_bytes, assigned) = (self.file_bytes, self.assigned.clone());
        let node = self.nodes.get(&id).ok_or("no such node")?;
        let dir = node.root.join(group.dir());
        let setup = engine::raft::RaftSetup {
            id,
            voters: NODES.to_vec(),
            dir: dir.join("raft"),
            send: net.sender(group, id),
            leader: Default::default(),
            isr: Default::default(),
            lag_max: Duration::from_secs(10),
            min_insync: 2,
            preferred: 1,
            goal: NODES.to_vec(),
            reassigning: false,
            adding: false,
            on_reassigned: Arc::new(|_| {}),
            leader_changes: Default::default(),
            rejected: Default::default(),
            chunks: net.chunks(group, id),
            file_bytes,
            throttles: Default::default(),
            assigned_entries: assigned,
            segments: None,
            election_seed: Some(seed),
        };
        let env = engine::partition::Env {
            shard: 0,
            flusher: engine::durability::Flusher::Other(node.disk.clone()),
            metrics: Default::default(),
            clock: node.clock.clone(),
        };
        // A panic on this node's files is a finding, not the end of the run.
        let h = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine::partition::spawn(dir.join("log"), config, env, None, Some(setup))
        }))
        .map_err(|p| format!("panicked: {}", panic_text(&p)))?
        .map_err(|e| e.to_string())?;
        net.set_route(group, id, Some(Route::Partition(h.tx.clone())));
        Ok(h)
    }

    /// Starts node `id`'s controller over its directory.
    fn start_controller(&mut self, id: u64, seed: u64) {
        let (net, alive) = (self.net.clone(), self.alive.clone());
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let root = node.root.clone();
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (topics, _) = engine::topics::TopicTable::load(&root, Some("sim".into()))
                .map_err(|e| e.to_string())?;
            let env = engine::cluster::controller::Env {
                dir: root.join("controller"),
                file_bytes: 4096,
                snapshot_entries: 16,
                topics: Arc::new(topics),
                metrics: Default::default(),
                peers: Arc::new(crate::host::SimPeers {
                    me: id,
                    net: net.clone(),
                    alive,
                }),
                reconciler: Arc::new(crate::host::SimReconciler),
                quorum_size: 3,
                assigned_entries: Default::default(),
                election_seed: Some(seed),
            };
            engine::cluster::controller::start(env, id, &NODES).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&p))));
        match started {
            Ok(c) => {
                net.set_route(Group::Controller, id, Some(Route::Controller(c.tx.clone())));
                node.controller = Some(c);
            }
            Err(e) => {
                let files = listing(&node.root);
                let mut t = self.trace();
                t.violation(format!("node {id}'s controller cannot start: {e}"));
                t.note(format!("node {id}'s files: {files}"));
            }
        }
    }

    /// Violations for replicas whose actor ended by itself (a panic) while the node was up.
    pub fn check_alive(&mut self) {
        let dead: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.handle.as_ref().is_some_and(|h| h.task.is_finished()))
            .map(|n| n.id)
            .collect();
        let stopped: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.controller.as_ref().is_some_and(|c| c.task.is_finished()))
            .map(|n| n.id)
            .collect();
        for id in stopped {
            self.net.set_route(Group::Controller, id, None);
            if let Some(n) = self.nodes.get_mut(&id) {
                n.controller = None;
            }
            self.trace()
                .violation(format!("node {id}'s controller stopped by itself"));
        }
        for id in dead {
            self.net.set_route(Group::Partition, id, None);
            if let Some(n) = self.nodes.get_mut(&id) {
                n.handle = None;
            }
            self.trace().violation(format!(
                "node {id}'s partition actor stopped by itself (a panic)"
            ));
        }
    }

    /// Takes node `id` down at once, its actor dropped mid-step, as a crash does; with
    /// `power`, its disk then loses what a power cut loses.
    pub async fn crash(world: &Shared, id: u64, power: bool) {
        let (handle, controller, groups) = {
            let mut w = world.borrow_mut();
            for g in [Group::Partition, Group::Offsets, Group::Controller] {
                w.net.set_route(g, id, None);
            }
            w.alive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(id as i32));
            match w.nodes.get_mut(&id) {
                Some(n) => (n.handle.take(), n.controller.take(), n.groups.take()),
                None => (None, None, None),
            }
        };
        let tasks = handle
            .map(|h| h.task)
            .into_iter()
            .chain(controller.map(|c| c.task))
            .chain(groups.into_iter().flat_map(|g| g.tasks()));
        for task in tasks {
            task.abort();
            // Aborting takes effect when the task is next scheduled.
            while !task.is_finished() {
                tokio::task::yield_now().await;
            }
        }
        if power {
            let mut w = world.borrow_mut();
            let mut rng = StdRng::seed_from_u64(w.rng.gen());
            let (ledger, root) = match w.nodes.get(&id) {
                Some(n) => (n.ledger.clone(), n.root.clone()),
                None => return,
            };
            let cut = power::apply_power_cut_with(&ledger, &root, &mut |_, synced, len| {
                // Some of what was written since the last sync reached the disk, maybe with
                // a hole where a page did not.
                let keep = rng.gen_range(synced..=len);
                let zeroed = (keep > synced && rng.gen_bool(0.3)).then(|| {
                    let from = rng.gen_range(synced..keep);
                    (from, rng.gen_range(from..=keep))
                });
                power::Torn { keep, zeroed }
            });
            let root = root.display().to_string();
            match cut {
                Ok(c) => {
                    let mut t = w.trace();
                    t.note(format!(
                        "power cut on {id}: {} entries undone, {} files cut, {} bytes lost",
                        c.entries_undone, c.files_truncated, c.bytes_lost
                    ));
                    for change in c.changes {
                        t.note(format!("  {}", change.replace(&root, "")));
                    }
                }
                Err(e) => w
                    .trace()
                    .violation(format!("power cut on {id} failed: {e}")),
            }
        } else {
            world.borrow().trace().note(format!("node {id} crashed"));
        }
    }

    /// Applies one fault.
    pub async fn apply(world: &Shared, fault: &Fault) {
        world.borrow().trace().note(format!("FAULT {fault}"));
        match fault {
            Fault::Crash { node } => World::crash(world, *node, false).await,
            Fault::PowerCut { node } => World::crash(world, *node, true).await,
            Fault::FsyncFails { node } => {
                if let Some(n) = world.borrow().nodes.get(node) {
                    n.disk.failing.set(true);
                }
            }
            Fault::Restart { node } => {
                let (up, failing) = match world.borrow().nodes.get(node) {
                    Some(n) => (n.handle.is_some(), n.disk.failing.get()),
                    None => return,
                };
                // After its disk failed, nobody knows what the page cache held.
                if up {
                    World::crash(world, *node, failing).await;
                }
                world.borrow_mut().start(*node);
            }
            Fault::ClockJump { node, ms } => {
                if let Some(n) = world.borrow().nodes.get(node) {
                    n.clock.jump(*ms);
                }
            }
            _ => world.borrow().net.apply(fault),
        }
    }

    /// The running replicas' handles.
    pub fn up(&self) -> Vec<(u64, PartitionHandle)> {
        self.nodes
            .values()
            .filter_map(|n| n.handle.clone().map(|h| (n.id, h)))
            .collect()
    }

    pub fn groups(&self, id: u64) -> Option<crate::host::Coordinator> {
        self.nodes.get(&id).and_then(|n| n.groups.clone())
    }

    pub fn controller(&self, id: u64) -> Option<engine::cluster::controller::ControllerHandle> {
        self.nodes.get(&id).and_then(|n| n.controller.clone())
    }

    pub fn handle(&self, id: u64) -> Option<PartitionHandle> {
        self.nodes.get(&id).and_then(|n| n.handle.clone())
    }

    /// Each running replica's watermarks.
    pub fn marks(&self) -> BTreeMap<u64, Watermarks> {
        self.up()
            .into_iter()
            .map(|(id, h)| (id, *h.marks.borrow()))
            .collect()
    }

    /// Stops every replica at once (the end of a run).
    pub async fn shut_down(world: &Shared) {
        for id in NODES {
            World::crash(world, id, false).await;
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `name:length` of every file under `root`, for a report.
fn listing(root: &std::path::Path) -> String {
    let mut out = Vec::new();
    for sub in [
        "data/raft",
        "data/log",
        "offsets/raft",
        "offsets/log",
        "controller",
    ] {
        let Ok(dir) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                format!("{sub}/{}:{len}", e.file_name().to_string_lossy())
            })
            .collect();
        names.sort();
        out.extend(names);
    }
    for sub in ["data/raft", "offsets/raft", "controller"] {
        if let Ok(Some(cp)) = engine::raft::checkpoint::Checkpoint::read(&root.join(sub)) {
            out.push(format!(
                "({sub} checkpoint: index {} term {} offset {} first file {})",
                cp.index, cp.term, cp.offset, cp.first_file
            ));
        }
    }
    out.join(" ")
}
