//! The network between the simulated brokers: each Raft message is delivered after a random
//! delay (so messages overtake each other), or lost, or delivered twice, as the current
//! [`Fault::Network`] says, unless a partition cuts its link. It also watches the leaders'
//! messages: two different senders of leader messages in one term break Raft's first
//! guarantee.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::cluster::controller::Input;
use engine::partition::Cmd;
use raft::eraftpb::{Message, MessageType};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};

use crate::schedule::{Fault, NODES};
use crate::trace::Trace;

/// The two Raft groups every node is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// The partition under test.
    Partition,
    /// `__consumer_offsets`' one partition, under the group coordinators.
    Offsets,
    Controller,
}

impl Group {
    /// Where a node keeps this group's files.
    pub fn dir(self) -> &'static str {
        match self {
            Group::Partition => "data",
            Group::Offsets => "offsets",
            Group::Controller => "controller",
        }
    }
}

/// Where a node's messages for one group go.
#[derive(Clone)]
pub enum Route {
    Partition(mpsc::UnboundedSender<Cmd>),
    Controller(mpsc::UnboundedSender<Input>),
}

struct State {
    rng: StdRng,
    /// Directed links `(from, to)` whose messages are dropped.
    cut: HashSet<(u64, u64)>,
    loss_pct: u32,
    dup_pct: u32,
    max_delay_us: u64,
    /// Each running node's mailboxes.
    routes: BTreeMap<(Group, u64), Route>,
    /// Who sent leader messages in each group's terms.
    leaders: BTreeMap<(Group, u64), u64>,
}

pub struct Net {
    state: Mutex<State>,
    trace: Arc<Mutex<Trace>>,
}

impl Net {
    pub fn new(seed: u64, trace: Arc<Mutex<Trace>>) -> Arc<Self> {
        Arc::new(Net {
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(seed ^ 0x0e7_0e7),
                cut: HashSet::new(),
                loss_pct: 0,
                dup_pct: 0,
                max_delay_us: 2000,
                routes: BTreeMap::new(),
                leaders: BTreeMap::new(),
            }),
            trace,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where messages to `node` go in `group` (none while it is down).
    pub fn set_route(&self, group: Group, node: u64, route: Option<Route>) {
        let mut s = self.state();
        match route {
            Some(r) => s.routes.insert((group, node), r),
            None => s.routes.remove(&(group, node)),
        };
    }

    pub fn reachable(&self, from: u64, to: u64) -> bool {
        !self.state().cut.contains(&(from, to))
    }

    /// Applies a network fault; others are not its business.
    pub fn apply(&self, fault: &Fault) {
        let mut s = self.state();
        match fault {
            Fault::Partition { side } => {
                for &a in side {
                    for b in NODES.into_iter().filter(|b| !side.contains(b)) {
                        s.cut.insert((a, b));
                        s.cut.insert((b, a));
                    }
                }
            }
            Fault::OneWay { from, to } => {
                s.cut.insert((*from, *to));
            }
            Fault::Heal => s.cut.clear(),
            Fault::Network {
                loss_pct,
                dup_pct,
                max_delay_ms,
            } => {
                s.loss_pct = *loss_pct;
                s.dup_pct = *dup_pct;
                s.max_delay_us = max_delay_ms * 1000;
            }
            _ => {}
        }
    }

    /// The send function of node `from`'s replica in `group`.
    pub fn sender(self: &Arc<Self>, group: Group, from: u64) -> engine::raft::SendFn {
        let net = self.clone();
        Arc::new(move |to, m| net.send(group, from, to, m))
    }

    pub fn send(self: &Arc<Self>, group: Group, from: u64, to: u64, m: Message) {
        let mut s = self.state();
        if matches!(
            m.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) {
            let leader = *s.leaders.entry((group, m.term)).or_insert(from);
            if leader != from {
                let term = m.term;
                drop(s);
                self.trace().violation(format!(
                    "two {group:?} leaders in term {term}: {leader} and {from} both sent leader messages"
                ));
                s = self.state();
            }
        }
        let loss = s.loss_pct;
        if s.cut.contains(&(from, to)) || s.rng.gen_range(0..100) < loss {
            return;
        }
        let dup = s.dup_pct;
        let copies = if s.rng.gen_range(0..100) < dup { 2 } else { 1 };
        for _ in 0..copies {
            let max = s.max_delay_us;
            let delay = Duration::from_micros(s.rng.gen_range(0..=max));

            let (net, m) = (self.clone(), m.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                net.deliver(group, from, to, m);
            });
        }
    }

    fn deliver(&self, group: Group, from: u64, to: u64, m: Message) {
        let key = (group, from, to, m.get_msg_type() as i32, m.term, m.index);
        let route = self.state().routes.get(&(group, to)).cloned();
        if let Some(r) = route {
            self.trace().tick(key);
            let _ = match r {
                Route::Partition(tx) => tx.send(Cmd::Raft(Box::new(m))).is_ok(),
                Route::Controller(tx) => tx.send(Input::Raft(Box::new(m))).is_ok(),
            };
        }
    }

    fn trace(&self) -> std::sync::MutexGuard<'_, Trace> {
        self.trace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How node `me` reads a snapshot's chunks from the leader: over the same links.
    pub fn chunks(self: &Arc<Self>, group: Group, me: u64) -> engine::raft::snapshot::ChunkFn {
        let net = self.clone();
        Arc::new(move |leader, req| {
            let (tx, rx) = oneshot::channel();
            let route = net.state().routes.get(&(group, leader)).cloned();
            let up = net.reachable(me, leader) && net.reachable(leader, me);
            let Some(Route::Partition(route)) = route.filter(|_| up) else {
                return rx;
            };
            let (reply, answer) = oneshot::channel();
            let _ = route.send(Cmd::ReadChunk { req, reply });
            tokio::spawn(async move {
                let chunk = match answer.await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the leader stopped".to_string()),
                };
                let _ = tx.send(chunk);
            });
            rx
        })
    }
}
