//! The clients of a run: producers that send acks=all produces to whichever replica they
//! believe leads (one of them idempotent, retrying a batch until it is acknowledged, one with
//! several produces in flight), and a reader that reads below the high watermark of a random
//! replica.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use engine::log::batch::{self, Compression, NewRecord};
use engine::partition::{Cmd, PartitionError, ProduceOk};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::history::{self, History};
use crate::schedule::NODES;
use crate::world::{Shared, World};

/// How long a client waits for an answer before it gives up on it.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

pub struct Load {
    pub world: Shared,
    pub history: Rc<RefCell<History>>,
    pub stop: Rc<Cell<bool>>,
}

/// A batch of one record per value, from producer `pid` at `seq` when idempotent.
fn batch_of(values: &[String], idempotent: Option<(i64, i32)>) -> Bytes {
    let records: Vec<NewRecord> = values
        .iter()
        .map(|v| NewRecord {
            value: Some(Bytes::from(v.clone())),
            ..Default::default()
        })
        .collect();
    let b = batch::encode_batch(&records, Compression::None).expect("encodes");
    match idempotent {
        Some((pid, seq)) => batch::with_producer(&b, pid, 0, seq),
        None => b,
    }
}

/// Sends a produce to `node` and waits for its answer (`None`: down or no answer in time).
async fn produce(
    world: &Shared,
    node: u64,
    batch: &Bytes,
) -> Option<Result<ProduceOk, PartitionError>> {
    let h = world.borrow().handle(node)?;
    let batches = batch::split_batches(batch).ok()?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    h.tx.send(Cmd::Produce {
        batches,
        reply,
        acks_all: true,
        verify: None,
    })
    .ok()?;
    tokio::time::timeout(ANSWER_WITHIN, answer).await.ok()?.ok()
}

/// The leader `node` knows of, if it is a node.
fn leader_seen_by(world: &Shared, node: u64) -> Option<u64> {
    let h = world.borrow().handle(node)?;
    let (l, _) = engine::raft::leader_of(h.raft_leader.as_ref()?);
    NODES.contains(&(l as u64)).then_some(l as u64)
}

impl Load {
    /// Producer `id` until the run stops; `idempotent` retries each batch until acknowledged.
    pub async fn producer(self: Rc<Self>, id: u32, idempotent: bool, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let pid = 1000 + id as i64;
        let (mut n, mut seq) = (0u64, 0i32);
        let mut target = NODES[rng.gen_range(0..NODES.len())];
        let mut pending: Option<Vec<String>> = None;
        while !self.stop.get() {
            let values = match pending.take() {
                Some(v) => v,
                None => {
                    n += 1;
                    let k = rng.gen_range(1..=3);
                    (0..k).map(|i| format!("p{id}-{n}-{i}")).collect()
                }
            };
            let batch = batch_of(&values, idempotent.then_some((pid, seq)));
            match produce(&self.world, target, &batch).await {
                Some(Ok(ok)) => {
                    let w = self.world.borrow();
                    let mut t = w.trace();
                    self.history
                        .borrow_mut()
                        .ack(&mut t, target, ok.base_offset, &values);
                    seq += values.len() as i32;
                }
                Some(Err(PartitionError::Sequence(e))) => {
                    let w = self.world.borrow();
                    w.trace().violation(format!(
                        "idempotent producer {pid} refused by {target} retrying {}: {e}",
                        values.join(",")
                    ));
                    // Start a new sequence of values rather than spin on this one.
                    return;
                }
                answer => {
                    if idempotent {
                        pending = Some(values);
                    }
                    target = match answer {
                        Some(Err(PartitionError::NotLeader)) => leader_seen_by(&self.world, target)
                            .unwrap_or_else(|| NODES[rng.gen_range(0..NODES.len())]),
                        _ => NODES[rng.gen_range(0..NODES.len())],
                    };
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(10..100))).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
        }
    }

    /// Producer `id` with up to `window` produces in flight at once, as a client with
    /// `max.in.flight.requests.per.connection` above one (not idempotent, so never retried):
    /// a leader that is about to lose its term then holds several of its produces at once.
    pub async fn pipelined(self: Rc<Self>, id: u32, window: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let target = Rc::new(Cell::new(NODES[rng.gen_range(0..NODES.len())]));
        let inflight = Rc::new(Cell::new(0usize));
        let mut n = 0u64;
        while !self.stop.get() {
            if inflight.get() >= window {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            n += 1;
            let k = rng.gen_range(1..=3);
            let values: Vec<String> = (0..k).map(|i| format!("q{id}-{n}-{i}")).collect();
            let next = NODES[rng.gen_range(0..NODES.len())];
            let (load, target, inflight) = (self.clone(), target.clone(), inflight.clone());
            inflight.set(inflight.get() + 1);
            tokio::task::spawn_local(async move {
                let to = target.get();
                let answer = produce(&load.world, to, &batch_of(&values, None)).await;
                match answer {
                    Some(Ok(ok)) => {
                        let w = load.world.borrow();
                        let mut t = w.trace();
                        load.history
                            .borrow_mut()
                            .ack(&mut t, to, ok.base_offset, &values);
                    }
                    Some(Err(PartitionError::NotLeader)) => {
                        target.set(leader_seen_by(&load.world, to).unwrap_or(next))
                    }
                    _ => target.set(next),
                }
                inflight.set(inflight.get() - 1);
            });
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
        }
        while inflight.get() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reads a random stretch below a random replica's high watermark now and then.
    pub async fn reader(self: Rc<Self>, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        while !self.stop.get() {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..300))).await;
            let up = self.world.borrow().up();
            if up.is_empty() {
                continue;
            }
            let (node, h) = up[rng.gen_range(0..up.len())].clone();
            let marks = *h.marks.borrow();
            if marks.high <= marks.log_start {
                continue;
            }
            let offset = rng.gen_range(marks.log_start..marks.high);
            if let Some(records) = read(&self.world, node, offset, 4096).await {
                let w = self.world.borrow();
                let mut t = w.trace();
                self.history.borrow_mut().saw(&mut t, node, &records);
            }
        }
    }
}

/// The records `node` serves from `offset` below its high watermark, decoded.
pub async fn read(
    world: &Shared,
    node: u64,
    offset: i64,
    max_bytes: usize,
) -> Option<Vec<(i64, String)>> {
    let h = world.borrow().handle(node)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    h.tx.send(Cmd::Read {
        offset,
        max_bytes,
        committed: false,
        in_place: false,
        reply,
    })
    .ok()?;
    let r = tokio::time::timeout(ANSWER_WITHIN, answer)
        .await
        .ok()?
        .ok()?
        .ok()?;
    let records = r.records?.into_bytes().ok()?;
    match history::decode(&records) {
        Ok(mut rs) => {
            rs.retain(|(o, _)| *o >= offset && *o < r.marks.high);
            Some(rs)
        }
        Err(e) => {
            world
                .borrow()
                .trace()
                .violation(format!("{node} served records that do not decode: {e}"));
            None
        }
    }
}

/// Node `node`'s whole log below its high watermark: its log start and its records.
pub async fn whole_log(world: &Shared, node: u64) -> Option<history::Log> {
    let h = world.borrow().handle(node)?;
    let marks = *h.marks.borrow();
    let mut out = Vec::new();
    let mut offset = marks.log_start;
    while offset < marks.high {
        let rs = read(world, node, offset, 1 << 20).await?;
        let Some(last) = rs.last() else { break };
        offset = last.0 + 1;
        out.extend(rs);
    }
    Some((marks.log_start, out))
}

/// Every running replica's watermarks, for reports.
pub fn describe(w: &World) -> String {
    w.marks()
        .iter()
        .map(|(id, m)| {
            format!(
                "{id}: start {} high {} end {}",
                m.log_start, m.high, m.log_end
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
