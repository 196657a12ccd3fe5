//! The network between the simulated brokers: each Raft message is delivered after a random
//! delay (so messages overtake each other), or lost, or delivered twice, as the current
//! [`Fault::Network`] says, unless a partition cuts its link. It also watches the leaders'
//! messages: two different senders of leader messages in one term break Raft's first
//! guarantee.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::partition::Cmd;
use raft::eraftpb::{Message, MessageType};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};

use crate::schedule::{Fault, NODES};
use crate::trace::Trace;

struct State {
    rng: StdRng,
    /// Directed links `(from, to)` whose messages are dropped.
    cut: HashSet<(u64, u64)>,
    loss_pct: u32,
    dup_pct: u32,
    max_delay_us: u64,
    /// Each running node's mailbox.
    routes: BTreeMap<u64, mpsc::UnboundedSender<Cmd>>,
    /// Who sent leader messages in each term.
    leaders: BTreeMap<u64, u64>,
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

    /// Where messages to `node` go (none while it is down).
    pub fn set_route(&self, node: u64, tx: Option<mpsc::UnboundedSender<Cmd>>) {
        let mut s = self.state();
        match tx {
            Some(tx) => s.routes.insert(node, tx),
            None => s.routes.remove(&node),
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

    /// The send function of node `from`'s Raft group.
    pub fn sender(self: &Arc<Self>, from: u64) -> engine::raft::SendFn {
        let net = self.clone();
        Arc::new(move |to, m| net.send(from, to, m))
    }

    fn send(self: &Arc<Self>, from: u64, to: u64, m: Message) {
        let mut s = self.state();
        if matches!(
            m.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) {
            let leader = *s.leaders.entry(m.term).or_insert(from);
            if leader != from {
                let term = m.term;
                drop(s);
                self.trace().violation(format!(
                    "two leaders in term {term}: {leader} and {from} both sent leader messages"
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
            tokio::task::spawn_local(async move {
                tokio::time::sleep(delay).await;
                net.deliver(from, to, m);
            });
        }
    }

    fn deliver(&self, from: u64, to: u64, m: Message) {
        let key = (from, to, m.get_msg_type() as i32, m.term, m.index);
        let tx = self.state().routes.get(&to).cloned();
        if let Some(tx) = tx {
            self.trace().tick(key);
            let _ = tx.send(Cmd::Raft(Box::new(m)));
        }
    }

    fn trace(&self) -> std::sync::MutexGuard<'_, Trace> {
        self.trace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How node `me` reads a snapshot's chunks from the leader: over the same links.
    pub fn chunks(self: &Arc<Self>, me: u64) -> engine::raft::snapshot::ChunkFn {
        let net = self.clone();
        Arc::new(move |leader, req| {
            let (tx, rx) = oneshot::channel();
            let route = net.state().routes.get(&leader).cloned();
            let up = net.reachable(me, leader) && net.reachable(leader, me);
            let Some(route) = route.filter(|_| up) else {
                return rx;
            };
            let (reply, answer) = oneshot::channel();
            let _ = route.send(Cmd::ReadChunk { req, reply });
            tokio::task::spawn_local(async move {
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
