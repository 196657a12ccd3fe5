//! The production controller, three of them in one process with no broker: messages travel
//! through an in-memory [`Peers`] that can cut a broker off, and each broker's reconciler
//! records what the controller hands it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use raft::eraftpb::Message;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::cluster::host::{ReconcileFuture, Reconciler};
use crate::topics::{TopicRecord, TopicTable};

/// Delivers controller messages between the brokers of one process; a broker in `cut` neither
/// sends nor receives.
#[derive(Default)]
struct Net {
    inboxes: OnceLock<BTreeMap<u64, mpsc::UnboundedSender<Input>>>,
    cut: Mutex<BTreeSet<u64>>,
    /// Brokers of the previous release: they announce no features.
    old: Mutex<BTreeSet<u64>>,
    /// Snapshot messages still to lose (a connection that drops them).
    lose_snapshots: std::sync::atomic::AtomicUsize,
}

struct Link {
    net: Arc<Net>,
    me: u64,
}

impl Peers for Link {
    fn send_controller(&self, to: u64, msg: &Message) {
        let cut = self.net.cut.lock();
        if cut.contains(&self.me) || cut.contains(&to) {
            return;
        }
        let lose = &self.net.lose_snapshots;
        if msg.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot
            && lose
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok()
        {
            return;
        }
        if let Some(tx) = self.net.inboxes.get().and_then(|i| i.get(&to)) {
            let _ = tx.send(Input::Raft(Box::new(msg.clone())));
        }
    }
    fn alive(&self) -> Vec<i32> {
        let cut = self.net.cut.lock();
        let all = self
            .net
            .inboxes
            .get()
            .map(|i| i.keys().copied().collect::<Vec<_>>());
        all.unwrap_or_default()
            .into_iter()
            .filter(|id| !cut.contains(id))
            .map(|id| id as i32)
            .collect()
    }
    fn features(&self) -> BTreeMap<i32, crate::cluster::features::Levels> {
        let old = self.net.old.lock();
        let levels = |id: i32| match old.contains(&(id as u64)) {
            true => Default::default(),
            false => crate::cluster::features::supported(),
        };
        self.alive()
            .into_iter()
            .map(|id| (id, levels(id)))
            .collect()
    }
    fn set_draining(&self, _: BTreeSet<i32>) {}
    fn drain(&self) {}
}

/// The topics each broker's reconciler was told about, and how many full reconciles ran.
#[derive(Default)]
struct Seen {
    topics: Mutex<BTreeMap<String, TopicRecord>>,
    full: Mutex<u64>,
    configs: Mutex<crate::dynamic_config::DynamicConfigs>,
}

impl Reconciler for Seen {
    fn broker_configs<'a>(
        &'a self,
        configs: &'a crate::dynamic_config::DynamicConfigs,
    ) -> ReconcileFuture<'a> {
        *self.configs.lock() = configs.clone();
        Box::pin(async { Ok(()) })
    }

    fn reconcile_all<'a>(&'a self, state: &'a MetadataState) -> ReconcileFuture<'a> {
        *self.topics.lock() = state.topics.clone();
        *self.full.lock() += 1;
        Box::pin(async { Ok(()) })
    }
    fn reconcile_topic<'a>(
        &'a self,
        name: &'a str,
        state: &'a MetadataState,
    ) -> ReconcileFuture<'a> {
        let mut t = self.topics.lock();
        match state.topics.get(name) {
            Some(r) => t.insert(name.to_string(), r.clone()),
            None => t.remove(name),
        };
        Box::pin(async { Ok(()) })
    }
}

struct Trio {
    _dir: tempfile::TempDir,
    net: Arc<Net>,
    handles: BTreeMap<u64, ControllerHandle>,
    seen: BTreeMap<u64, Arc<Seen>>,
    metrics: BTreeMap<u64, Arc<Metrics>>,
}

fn start_trio(snapshot_entries: u64) -> Trio {
    start_group(snapshot_entries, 3)
}

/// Brokers 1 to `brokers`, the first three the founding voters; the others join as learners.
fn start_group(snapshot_entries: u64, brokers: u64) -> Trio {
    let dir = tempfile::tempdir().unwrap();
    let net = Arc::new(Net::default());
    let (mut handles, mut seen, mut inboxes) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut metrics = BTreeMap::new();
    for id in 1..=brokers {
        let data = dir.path().join(id.to_string());
        let (topics, _) = TopicTable::load(&data, Some("trio".into())).unwrap();
        let s = Arc::new(Seen::default());
        let env = Env {
            dir: data.join("controller"),
            file_bytes: 4096,
            snapshot_entries,
            topics: Arc::new(topics),
            metrics: metrics
                .entry(id)
                .or_insert_with(|| Arc::new(Metrics::new()))
                .clone(),
            peers: Arc::new(Link {
                net: net.clone(),
                me: id,
            }),
            reconciler: s.clone(),
            quorum_size: 3,
            assigned_entries: Default::default(),
            election_seed: None,
        };
        let h = start(env, id, &[1, 2, 3]).unwrap();
        inboxes.insert(id, h.tx.clone());
        handles.insert(id, h);
        seen.insert(id, s);
    }
    assert!(net.inboxes.set(inboxes).is_ok());
    Trio {
        _dir: dir,
        net,
        handles,
        seen,
        metrics,
    }
}

fn topic(name: &str) -> TopicRecord {
    let replicas = vec![vec![1, 2, 3]];
    TopicRecord::new(
        name,
        uuid::Uuid::new_v4(),
        3,
        Default::default(),
        replicas,
        1,
    )
}

impl Trio {
    /// The leader every broker not cut off agrees on, within a few seconds.
    async fn leader(&self) -> u64 {
        for _ in 0..200 {
            let cut = self.net.cut.lock().clone();
            let seen: BTreeSet<u64> = self
                .handles
                .iter()
                .filter(|(id, _)| !cut.contains(id))
                .map(|(_, h)| h.leader())
                .collect();
            if let (1, Some(&l)) = (seen.len(), seen.first()) {
                if l != 0 && !cut.contains(&l) {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no controller leader");
    }

    async fn create(&self, rec: TopicRecord) -> Result<(), ApplyError> {
        self.propose(Command::CreateTopic(rec)).await
    }

    async fn propose(&self, cmd: Command) -> Result<(), ApplyError> {
        let leader = self.leader().await;
        let (tx, rx) = oneshot::channel();
        self.handles[&leader]
            .tx
            .send(Input::Propose(Box::new(cmd), tx))
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(ProposeOutcome::Applied(r))) => r,
            other => panic!("proposal not applied: {other:?}"),
        }
    }

    /// Waits until broker `id`'s reconciler was told about exactly `names`.
    async fn wait_seen(&self, id: u64, names: &[&str]) {
        let want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        for _ in 0..200 {
            let got: Vec<String> = self.seen[&id].topics.lock().keys().cloned().collect();
            if got == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got: Vec<String> = self.seen[&id].topics.lock().keys().cloned().collect();
        panic!("broker {id} saw {got:?}, not {want:?}");
    }
}

#[tokio::test]
async fn every_broker_reconciles_what_the_leader_commits() {
    let trio = start_trio(1024);
    trio.create(topic("orders")).await.unwrap();
    // The same name twice is refused, alike everywhere.
    assert!(matches!(
        trio.create(topic("orders")).await,
        Err(ApplyError::TopicExists(_))
    ));
    for id in 1..=3 {
        trio.wait_seen(id, &["orders"]).await;
    }
    let ids: BTreeSet<uuid::Uuid> = trio
        .seen
        .values()
        .map(|s| s.topics.lock()["orders"].id)
        .collect();
    assert_eq!(ids.len(), 1, "every broker has the first record");
}

#[tokio::test]
async fn a_broker_cut_off_past_the_leaders_first_index_catches_up_from_a_snapshot() {
    // A checkpoint every 2 entries, and small log files: the leader's log soon starts past
    // what the cut-off broker has.
    let trio = start_trio(2);
    trio.create(topic("a")).await.unwrap();
    trio.wait_seen(3, &["a"]).await;
    let fulls_before = *trio.seen[&3].full.lock();
    trio.net.cut.lock().insert(3);
    let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    for n in &names {
        trio.create(topic(n)).await.unwrap();
    }
    let leader = trio.leader().await;
    let files = std::fs::read_dir(trio._dir.path().join(leader.to_string()).join("controller"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("raft.log"))
        .count();
    assert!(files < 10, "the leader's log was truncated ({files} files)");
    trio.net.cut.lock().clear();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.insert(0, "a");
    trio.wait_seen(3, &want).await;
    assert_eq!(trio.metrics[&3].controller_snapshots_installed.get(), 1);
    assert!(
        *trio.seen[&3].full.lock() > fulls_before,
        "the snapshot was installed with a full reconcile"
    );
}

/// Waits until every broker in `ids` has the controller group `voters` (and no learner).
#[tokio::test]
async fn a_broker_whose_snapshot_was_lost_is_sent_another() {
    let trio = start_trio(2);
    trio.create(topic("a")).await.unwrap();
    trio.wait_seen(3, &["a"]).await;
    trio.net.cut.lock().insert(3);
    let names: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    for n in &names {
        trio.create(topic(n)).await.unwrap();
    }
    // The first snapshot the leader sends is lost on the way.
    trio.net
        .lose_snapshots
        .store(1, std::sync::atomic::Ordering::Relaxed);
    trio.net.cut.lock().clear();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.insert(0, "a");
    trio.wait_seen(3, &want).await;
    assert_eq!(
        trio.net
            .lose_snapshots
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a snapshot was lost"
    );
}

async fn wait_voters(group: &Trio, ids: &[u64], voters: &[i32]) {
    let want: BTreeSet<i32> = voters.iter().copied().collect();
    for _ in 0..300 {
        if ids
            .iter()
            .all(|id| group.handles[id].voters() == want && group.handles[id].brokers() == want)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got: Vec<_> = ids
        .iter()
        .map(|id| (id, group.handles[id].voters(), group.handles[id].brokers()))
        .collect();
    panic!("controller group not {want:?}: (broker, voters, members) {got:?}");
}

/// A broker that joined later takes a decommissioned voter's place, whichever tick the
/// leader's term began on. The promotion once read raft-rs's `recent_active`, which each
/// quorum check clears: when the leader's check fell on the same tick as its group upkeep,
/// no learner ever looked alive and the decommissioned voter stayed for good (about one term
/// in five). Several groups at once make terms that start on different ticks.
#[tokio::test]
async fn a_joining_broker_replaces_a_decommissioned_voter() {
    let groups: Vec<Trio> = (0..8).map(|_| start_group(1024, 4)).collect();
    futures_util::future::join_all(groups.iter().map(replace_voter_3)).await;
}

async fn replace_voter_3(g: &Trio) {
    wait_voters_and_learner(g).await;
    g.propose(Command::Decommission { node: 3 }).await.unwrap();
    // The decommissioned broker leaves the group and the learner becomes a voter, as seen by
    // the brokers that stay.
    wait_voters(g, &[1, 2, 4], &[1, 2, 4]).await;
}

/// Waits until the fourth broker is a learner of the founders' group.
async fn wait_voters_and_learner(group: &Trio) {
    let members: BTreeSet<i32> = [1, 2, 3, 4].into();
    for _ in 0..300 {
        if group.handles[&4].brokers() == members {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("broker 4 never joined: {:?}", group.handles[&4].brokers());
}

/// A feature is finalized only once every broker supports it: a broker of the previous
/// release holds it back until it is upgraded, and every broker then sees the same levels.
#[tokio::test]
async fn features_wait_for_the_last_broker_to_be_upgraded() {
    use crate::cluster::features::{supported, PRODUCER_ID_BLOCKS};
    let trio = start_trio(1024);
    trio.net.old.lock().insert(3);
    trio.create(topic("a")).await.unwrap();
    // The leader looks every second; give it a few looks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for h in trio.handles.values() {
        assert_eq!(
            h.feature(PRODUCER_ID_BLOCKS),
            0,
            "finalized with a broker lacking it"
        );
    }
    assert!(trio
        .propose(Command::AllocateProducerIds {
            broker: 1,
            request: 1
        })
        .await
        .is_err());
    trio.net.old.lock().clear();
    for _ in 0..100 {
        if trio.handles.values().all(|h| h.features() == supported()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, h) in &trio.handles {
        assert_eq!(h.features(), supported(), "broker {id}");
    }
    trio.propose(Command::AllocateProducerIds {
        broker: 2,
        request: 9,
    })
    .await
    .unwrap();
}
