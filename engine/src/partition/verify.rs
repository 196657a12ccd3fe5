//! KIP-890 part 1: before a leader appends a producer's first transactional batch to this
//! partition, it asks the transaction coordinator whether the producer's ongoing transaction
//! includes the partition. Without the check a batch that arrives late (a retry, a zombie)
//! after its transaction ended opens a transaction nobody will ever end: a hanging
//! transaction, which holds the last stable offset back, and read_committed consumers with it,
//! forever.
//!
//! The produce handler hands the partition a way to ask ([`Verify`]), used only when the
//! partition's producer state says the producer has no transaction open here. While an answer
//! is awaited, that producer's later produces wait behind it, so its batches keep their order;
//! a marker written for the producer meanwhile (its transaction ended) voids the answer.
//!
//! Under transaction protocol v2 (KIP-890 part 2) the ask adds the partition to the
//! transaction ([`Verify::adds`]), and the producer's first batch of a transaction may arrive
//! before the markers of its previous one: the coordinator adds it only once those are all
//! written, with the epoch the last end bumped to, which the markers carry too. Such a marker,
//! written while the add is awaited, leaves the answer good; only a marker of a newer epoch
//! (this transaction ended, or its producer fenced) voids it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use super::{Actor, PartitionError, ProduceOk, Reply};
use crate::log::batch::BatchHeader;

/// How a produce asks the coordinator about its transaction.
pub struct Verify {
    /// Asks once; called at most once per produce.
    pub ask: Box<dyn FnOnce() -> VerifyFuture<'static> + Send>,
    /// The ask adds the partition to the transaction (protocol v2) rather than checks it.
    pub adds: bool,
}

pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), VerifyError>> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the producer's transaction does not include this partition")]
    NotInTransaction,
    #[error("the producer's epoch is no longer the transaction's: fenced")]
    Fenced,
    #[error("the transaction coordinator cannot answer now: {0}")]
    Unavailable(String),
}

type Parked = (Vec<(BatchHeader, Bytes)>, Reply<ProduceOk>, bool);

/// A verification under way, answering for its producer id.
pub(super) type Asked = Pin<Box<dyn Future<Output = (i64, Result<(), VerifyError>)>>>;

/// Produces waiting for a verification, per producer id.
#[derive(Default)]
pub(super) struct Verifying {
    waiting: HashMap<i64, Waiting>,
    /// Verifications started since the run loop last collected them.
    started: Vec<Asked>,
}

struct Waiting {
    produces: VecDeque<Parked>,
    /// The epoch of the batch that asked, and whether its ask adds (see the module docs).
    epoch: i16,
    adds: bool,
    /// A marker for the producer that ends the transaction asked about was written meanwhile.
    void: bool,
}

impl Verifying {
    /// The verifications to poll.
    pub(super) fn take_started(&mut self) -> Vec<Asked> {
        std::mem::take(&mut self.started)
    }

    /// A marker for `producer_id` at `epoch` is being written: an answer still awaited about
    /// a transaction it ends is stale.
    pub(super) fn marker_written(&mut self, producer_id: i64, epoch: i16) {
        if let Some(w) = self.waiting.get_mut(&producer_id) {
            if !w.adds || epoch > w.epoch {
                w.void = true;
            }
        }
    }

    /// Refuses every waiting produce (the partition stops or fails).
    pub(super) fn refuse_all(&mut self, err: &impl Fn() -> PartitionError) {
        for (_, w) in self.waiting.drain() {
            for (_, reply, _) in w.produces {
                let _ = reply.send(Err(err()));
            }
        }
        self.started.clear();
    }
}

impl Actor {
    /// Appends a produce, or parks it until its producer's transaction is verified (see the
    /// module docs).
    pub(super) fn produce_verified(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        acks_all: bool,
        verify: Option<Verify>,
    ) {
        let first_txn = batches
            .iter()
            .find(|(h, _)| h.is_transactional() && !h.is_control())
            .map(|(h, _)| (h.producer_id, h.producer_epoch));
        let Some((pid, epoch)) = first_txn else {
            return self.produce_now(batches, reply, acks_all);
        };
        if let Some(w) = self.verifying.waiting.get_mut(&pid) {
            w.produces.push_back((batches, reply, acks_all));
            return;
        }
        let Some(verify) = verify else {
            return self.produce_now(batches, reply, acks_all);
        };
        let follower = self.raft.as_ref().is_some_and(|r| !r.is_leader());
        let states = match &self.assigner {
            Some(a) => a.producers(),
            None => self.log.producers(),
        };
        let open = states
            .entry(pid)
            .is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == epoch);
        if open || follower {
            return self.produce_now(batches, reply, acks_all);
        }
        let Verify { ask, adds } = verify;
        let asked = ask();
        self.verifying
            .started
            .push(Box::pin(async move { (pid, asked.await) }));
        self.verifying.waiting.insert(
            pid,
            Waiting {
                produces: VecDeque::from([(batches, reply, acks_all)]),
                epoch,
                adds,
                void: false,
            },
        );
    }

    /// A verification answered: the producer's produces go on, in order, or are refused.
    pub(super) fn verified(&mut self, pid: i64, res: Result<(), VerifyError>) {
        let Some(w) = self.verifying.waiting.remove(&pid) else {
            return;
        };
        let res = match res {
            Ok(()) if w.void => Err(VerifyError::NotInTransaction),
            other => other,
        };
        for (batches, reply, acks_all) in w.produces {
            match &res {
                Ok(()) => self.produce_now(batches, reply, acks_all),
                Err(e) => {
                    let _ = reply.send(Err(PartitionError::Verification(e.clone())));
                }
            }
        }
    }

    /// Appends (one node) or proposes (a cluster) a produce.
    pub(super) fn produce_now(
        &mut self,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: Reply<ProduceOk>,
        acks_all: bool,
    ) {
        if self.raft.is_some() {
            self.propose(batches, reply, acks_all);
        } else {
            use crate::replication::ReplicationGroup;
            let epoch = self.group.leader_epoch();
            let now = self.clock.now_ms();
            self.produce(batches, reply, acks_all, epoch, now);
        }
    }
}
