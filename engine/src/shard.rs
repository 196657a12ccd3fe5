//! Thread-per-core: each shard is one OS thread running a current-thread tokio runtime that
//! owns its partitions' actors outright. Other threads reach a shard only by message.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::config::ResolvedTopicConfig;
use crate::durability::{Flusher, IoBackend};
use crate::metrics::Metrics;
use crate::partition::{self, PartitionHandle};

type Job = Box<dyn FnOnce(&ShardContext) + Send>;

enum ShardMsg {
    Open {
        dir: PathBuf,
        config: Box<ResolvedTopicConfig>,
        remote: Option<Box<crate::partition::RemoteLink>>,
        raft: Option<Box<crate::raft::RaftSetup>>,
        reply: oneshot::Sender<std::io::Result<PartitionHandle>>,
    },
    Run(Job),
}

/// What code running on a shard can use.
pub struct ShardContext {
    pub id: usize,
    pub flusher: Flusher,
    pub metrics: Arc<Metrics>,
}

/// Handles to every shard.
pub struct Shards {
    senders: Vec<mpsc::UnboundedSender<ShardMsg>>,
    threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// The I/O backend each shard ended up with (for the start-up log).
    pub io_backend: String,
}

impl Shards {
    /// Starts `n` shard threads. Fails if a shard cannot build its runtime or flusher.
    pub fn start(n: usize, backend: IoBackend, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let mut senders = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let mut names = Vec::new();
        for id in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let metrics = metrics.clone();
            let t = std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || run_shard(id, backend, metrics, rx, ready_tx))?;
            match ready_rx.recv() {
                Ok(Ok(name)) => names.push(name),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(std::io::Error::other(format!(
                        "shard {id} died while starting"
                    )))
                }
            }
            senders.push(tx);
            threads.push(t);
        }
        names.dedup();
        Ok(Shards {
            senders,
            threads: parking_lot::Mutex::new(threads),
            io_backend: names.join(","),
        })
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Which shard owns a partition: spread a topic's partitions over consecutive shards.
    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        let h = topic
            .bytes()
            .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
        (h as usize + partition as usize) % self.senders.len()
    }

    /// Opens a partition's log on shard `shard` and starts its actor there.
    pub async fn open_partition(
        &self,
        shard: usize,
        dir: PathBuf,
        config: ResolvedTopicConfig,
        remote: Option<crate::partition::RemoteLink>,
    ) -> std::io::Result<PartitionHandle> {
        self.open_replicated(shard, dir, config, remote, None).await
    }

    /// [`Shards::open_partition`] as a member of a Raft group (`raft` given).
    pub async fn open_replicated(
        &self,
        shard: usize,
        dir: PathBuf,
        config: ResolvedTopicConfig,
        remote: Option<crate::partition::RemoteLink>,
        raft: Option<crate::raft::RaftSetup>,
    ) -> std::io::Result<PartitionHandle> {
        let (reply, rx) = oneshot::channel();
        self.senders[shard]
            .send(ShardMsg::Open {
                dir,
                config: Box::new(config),
                remote: remote.map(Box::new),
                raft: raft.map(Box::new),
                reply,
            })
            .map_err(|_| std::io::Error::other("shard stopped"))?;
        rx.await
            .map_err(|_| std::io::Error::other("shard stopped"))?
    }

    /// Runs `job` on shard `shard` (inside its runtime, so it may `spawn_local`).
    pub fn run_on(&self, shard: usize, job: impl FnOnce(&ShardContext) + Send + 'static) {
        let _ = self.senders[shard].send(ShardMsg::Run(Box::new(job)));
    }

    /// Stops every shard thread after its queued work, and waits for them.
    pub fn join(&self) {
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for (i, tx) in self.senders.iter().enumerate() {
            let _ = tx.send(ShardMsg::Run(Box::new(move |_| {
                STOP.with(|s| s.set(true));
                tracing::debug!(shard = i, "stopping");
            })));
        }
        for t in threads {
            let _ = t.join();
        }
    }
}

thread_local! {
    static STOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn run_shard(
    id: usize,
    backend: IoBackend,
    metrics: Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<ShardMsg>,
    ready: std::sync::mpsc::Sender<std::io::Result<String>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let flusher = match Flusher::new(backend) {
            Ok(f) => f,
            Err(e) => {
                let _ = ready.send(Err(std::io::Error::new(
                    e.kind(),
                    format!("shard {id}: io_uring unavailable: {e}"),
                )));
                return;
            }
        };
        let _ = ready.send(Ok(flusher.name().to_string()));
        let ctx = ShardContext {
            id,
            flusher,
            metrics,
        };
        while let Some(msg) = rx.recv().await {
            match msg {
                ShardMsg::Open {
                    dir,
                    config,
                    remote,
                    raft,
                    reply,
                } => {
                    let env = partition::Env {
                        shard: ctx.id,
                        flusher: ctx.flusher.clone(),
                        metrics: ctx.metrics.clone(),
                        clock: Arc::new(crate::time::SystemClock),
                    };
                    let res =
                        partition::spawn(dir, *config, env, remote.map(|r| *r), raft.map(|r| *r));
                    let _ = reply.send(res);
                }
                ShardMsg::Run(job) => job(&ctx),
            }
            if STOP.with(|s| s.get()) {
                break;
            }
        }
    });
}
