//! InitProducerId (with a transactional id), AddPartitionsToTxn (AddOffsetsToTxn adds its
//! `__consumer_offsets` partition through it; under transaction protocol v2 partition leaders
//! add through it) and EndTxn (v1 and v2), and the rule they share: the new
//! state is computed under the lock ([`Coordinator::begin`]), written to `__transaction_state`
//! and applied only once committed ([`Coordinator::commit`]).

use super::state::{EndStep, InitStep, TxnMeta, TxnVersion};
use super::store::{self, StoreError};
use super::{Coordinator, TxnError, TxnHost};

/// What EndTxn does next.
enum End {
    Write,
    Answer((i64, i16)),
    NeedProducerId,
}

/// What InitProducerId does next.
enum Init {
    Write,
    Fence,
    Answer(i64, i16),
    NeedProducerId,
}

fn store_error(e: StoreError) -> TxnError {
    if e.not_leader() {
        TxnError::NotCoordinator
    } else {
        TxnError::CoordinatorNotAvailable(e.to_string())
    }
}

impl Coordinator {
    /// Runs `f` on the id's state (`None`: unknown) under the lock. A refusal from `f` is
    /// answered first; then an id with a write in flight is CONCURRENT_TRANSACTIONS; else the
    /// state `f` returns (if any) becomes the id's pending write, for [`Coordinator::commit`].
    pub(super) fn begin<R>(
        &self,
        id: &str,
        f: impl FnOnce(Option<&TxnMeta>) -> Result<(Option<TxnMeta>, R), TxnError>,
    ) -> Result<(Option<TxnMeta>, R), TxnError> {
        let mut txns = self.inner.txns.lock();
        let entry = txns.get(id);
        let (target, r) = f(entry.and_then(|e| e.meta.as_ref()))?;
        if entry.is_some_and(|e| e.pending.is_some()) {
            return Err(TxnError::ConcurrentTransactions);
        }
        if let Some(t) = &target {
            txns.entry(id.to_string()).or_default().pending = Some(t.clone());
        }
        Ok((target, r))
    }

    /// Writes the pending state `target` of `id` and applies it once committed. A broker
    /// deposed (or reloaded) meanwhile answers NOT_COORDINATOR: the client asks the new one.
    pub(super) async fn commit(
        &self,
        host: &dyn TxnHost,
        id: &str,
        target: &TxnMeta,
    ) -> Result<(), TxnError> {
        let written = store::append(host, id, Some(target)).await;
        let mut txns = self.inner.txns.lock();
        let Some(e) = txns.get_mut(id) else {
            return Err(TxnError::NotCoordinator);
        };
        if e.pending.as_ref() != Some(target) {
            return Err(TxnError::NotCoordinator);
        }
        e.pending = None;
        match written {
            Ok(()) => {
                e.meta = Some(target.clone());
                Ok(())
            }
            Err(err) => {
                if e.meta.is_none() {
                    txns.remove(id);
                }
                tracing::warn!(transactional_id = %id, error = %err, "cannot write a transaction's state");
                Err(store_error(err))
            }
        }
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use. A new id gets a
    /// fresh producer id at epoch 0; a known one its epoch bumped (a new producer id once the
    /// epoch is exhausted). An ongoing transaction is first aborted with the epoch bumped,
    /// fencing its producer, and the answer is CONCURRENT_TRANSACTIONS (the client retries).
    /// `expected`: KIP-360's producer id and epoch (v3+, when not -1).
    pub async fn init_producer_id(
        &self,
        host: &dyn TxnHost,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.inner.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        self.check(host, id)?;
        let now = host.now_ms();
        let mut fresh = None;
        // Twice at most: once more with a fresh producer id when the first round asked for one.
        for _ in 0..2 {
            let (target, next) = self.begin(id, |cur| {
                Ok(match cur {
                    None => match fresh {
                        Some(pid) => (Some(TxnMeta::new(pid, timeout_ms, now)), Init::Write),
                        None => (None, Init::NeedProducerId),
                    },
                    Some(m) => match m.init(timeout_ms, expected, fresh, now)? {
                        InitStep::Write(n) => (Some(n), Init::Write),
                        InitStep::FenceAndAbort(n) => (Some(n), Init::Fence),
                        InitStep::Answer(p, e) => (None, Init::Answer(p, e)),
                        InitStep::NeedProducerId => (None, Init::NeedProducerId),
                    },
                })
            })?;
            match (target, next) {
                (Some(t), Init::Write) => {
                    self.commit(host, id, &t).await?;
                    return Ok((t.producer_id, t.epoch));
                }
                (Some(t), Init::Fence) => {
                    self.commit(host, id, &t).await?;
                    tracing::info!(transactional_id = %id, epoch = t.epoch, "aborting the ongoing transaction of a fenced producer");
                    self.kick();
                    return Err(TxnError::ConcurrentTransactions);
                }
                (_, Init::Answer(p, e)) => return Ok((p, e)),
                _ => {
                    fresh = Some(
                        host.new_producer_id()
                            .await
                            .map_err(TxnError::ProducerIdUnavailable)?,
                    )
                }
            }
        }
        Err(TxnError::ConcurrentTransactions)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition): the partitions join the producer's ongoing transaction, which begins here.
    /// `version` v2: a partition leader adds them (KIP-890 part 2), on the producer's first
    /// batch there or its TxnOffsetCommit.
    pub async fn add_partitions(
        &self,
        host: &dyn TxnHost,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        version: TxnVersion,
    ) -> Result<(), TxnError> {
        self.check(host, id)?;
        let now = host.now_ms();
        let (target, ()) = self.begin(id, |cur| {
            let m = cur.ok_or(TxnError::InvalidProducerIdMapping)?;
            Ok((
                m.add_partitions(producer_id, epoch, partitions, now, version)?,
                (),
            ))
        })?;
        if let Some(t) = target {
            self.commit(host, id, &t).await?;
            if version == TxnVersion::V2 {
                tracing::debug!(transactional_id = %id, producer_id, epoch, partitions = ?partitions, "partitions added by their leader (transaction protocol v2)");
            }
        }
        Ok(())
    }

    /// AddPartitionsToTxn v4+ `verify_only` (KIP-890, for the Produce path): whether each
    /// partition is in the producer's ongoing transaction, in the order given (`Ok`: it is;
    /// INVALID_TXN_STATE: it is not). Writes nothing.
    pub fn verify(
        &self,
        host: &dyn TxnHost,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Vec<Result<(), TxnError>> {
        let checked = self.check(host, id).and_then(|_| {
            let txns = self.inner.txns.lock();
            txns.get(id)
                .and_then(|e| e.meta.clone())
                .ok_or(TxnError::InvalidProducerIdMapping)
        });
        partitions
            .iter()
            .map(|p| match &checked {
                Ok(m) => m.verify(producer_id, epoch, p),
                Err(e) => Err(e.clone()),
            })
            .collect()
    }

    /// EndTxn: the transaction is prepared (written), answered, and its markers are written
    /// afterwards by the ticker. A retry of an EndTxn with the same result answers `Ok`. The
    /// answer is the producer id and epoch the producer goes on with: v1 the request's; v2 the
    /// bumped epoch (a new producer id once the epoch is exhausted), see
    /// [`TxnMeta::end_v2`].
    pub async fn end_txn(
        &self,
        host: &dyn TxnHost,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        version: TxnVersion,
    ) -> Result<(i64, i16), TxnError> {
        self.check(host, id)?;
        let now = host.now_ms();
        let mut fresh = None;
        // Twice at most: once more with a fresh producer id when the first round asked for one.
        for _ in 0..2 {
            let (target, next) = self.begin(id, |cur| {
                let m = cur.ok_or(TxnError::InvalidProducerIdMapping)?;
                let step = match version {
                    TxnVersion::V1 => m.end(producer_id, epoch, commit, now)?,
                    TxnVersion::V2 => m.end_v2(producer_id, epoch, commit, now, fresh)?,
                };
                Ok(match step {
                    EndStep::Write(n) => (Some(n), End::Write),
                    // v2: the producer id and epoch the producer goes on with.
                    EndStep::Done if version == TxnVersion::V2 => {
                        (None, End::Answer(m.completed_identity()))
                    }
                    EndStep::Done => (None, End::Answer((producer_id, epoch))),
                    EndStep::NeedProducerId => (None, End::NeedProducerId),
                })
            })?;
            match (target, next) {
                (Some(t), _) => {
                    self.commit(host, id, &t).await?;
                    self.kick();
                    if version == TxnVersion::V1 {
                        return Ok((producer_id, epoch));
                    }
                    let (pid, bumped) = t.completed_identity();
                    tracing::debug!(transactional_id = %id, producer_id = pid, epoch = bumped, commit, "transaction ending with its epoch bumped (transaction protocol v2)");
                    return Ok((pid, bumped));
                }
                (None, End::Answer(identity)) => return Ok(identity),
                _ => {
                    fresh = Some(
                        host.new_producer_id()
                            .await
                            .map_err(TxnError::ProducerIdUnavailable)?,
                    )
                }
            }
        }
        Err(TxnError::ConcurrentTransactions)
    }
}
