//! One transactional id's state and its transitions, as Kafka's TransactionMetadata
//! (transaction protocols v1 and v2). Pure: each request computes the state to write (or an
//! error), the coordinator writes it to `__transaction_state` and only then applies it.
//!
//! ```text
//! Empty / Complete* --AddPartitions--> Ongoing --EndTxn--> Prepare{Commit,Abort}
//!   --markers written--> Complete{Commit,Abort}
//! Ongoing --InitProducerId or timeout (epoch bumped: PrepareEpochFence)--> PrepareAbort
//! Empty / Complete* --InitProducerId--> Empty (epoch bumped)
//! ```
//!
//! Transaction protocol v2 (KIP-890 part 2, [`TxnVersion::V2`]): partition leaders add the
//! partitions (a producer's first batch there, its TxnOffsetCommit), and every EndTxn bumps
//! the producer's epoch: the Prepare* record carries the bumped epoch (the markers' epoch),
//! and once the epoch is exhausted a new producer id ([`TxnMeta::next_producer_id`]) that the
//! Complete* record takes on. The client is answered the producer id and epoch it continues
//! with; a retried EndTxn is recognised by the epoch before the bump. An abort with nothing
//! added (Empty, Complete*) is a transaction too: its epoch is bumped, no marker is written.

use std::collections::BTreeSet;

use super::error::TxnError;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    /// The ongoing transaction is being aborted with a bumped epoch (InitProducerId from a new
    /// producer, or a timeout); the record written is its PrepareAbort.
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Its code in a stored record (Kafka's TransactionState ids).
    pub fn code(self) -> u8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(c: u8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.code() == c)
    }

    /// The name DescribeTransactions and ListTransactions use (Kafka's `stateName`).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn parse(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether markers are to be written for it (then Complete*).
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// The transaction protocol a request speaks, as Kafka's `clientTransactionVersion` (whose
/// level it is stored as: 0 for v1, 2 for v2): EndTxn v5 and the AddPartitionsToTxn v4+ that
/// partition leaders send speak v2, and only once the cluster finalized `transaction.version`
/// 2; everything else v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TxnVersion {
    #[default]
    V1,
    V2,
}

impl TxnVersion {
    /// Its `transaction.version` level (Kafka's TV_0 for v1 clients, TV_2).
    pub fn level(self) -> u8 {
        match self {
            TxnVersion::V1 => 0,
            TxnVersion::V2 => 2,
        }
    }

    pub fn from_level(level: u8) -> Option<TxnVersion> {
        match level {
            0 | 1 => Some(TxnVersion::V1),
            2 => Some(TxnVersion::V2),
            _ => None,
        }
    }
}

/// Kafka's `isEpochExhausted`: the epoch cannot be bumped (a new producer id is taken).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A transactional id's state, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    /// The producer id before the last rotation (epoch exhausted), for KIP-360 retries.
    pub last_producer_id: i64,
    pub epoch: i16,
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the ongoing (or preparing) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the ongoing transaction began (-1: none).
    pub start_ms: i64,
    pub update_ms: i64,
    /// Transaction protocol v2, a prepared transaction whose epoch is exhausted: the producer
    /// id its producer continues with once it completes (-1: none, the same one).
    pub next_producer_id: i64,
    /// The protocol of the request that last changed it (Kafka's `clientTransactionVersion`).
    pub version: TxnVersion,
}

/// What InitProducerId does to an existing transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Write this state, then answer its producer id and epoch.
    Write(TxnMeta),
    /// The epoch is exhausted: ask again with a fresh producer id.
    NeedProducerId,
    /// An ongoing transaction: write this PrepareAbort (its epoch bumped, which fences the old
    /// producer), write its markers, and answer CONCURRENT_TRANSACTIONS (the client retries).
    FenceAndAbort(TxnMeta),
    /// A retry of a bump already done (KIP-360): answer these without writing.
    Answer(i64, i16),
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Write this Prepare* state, answer, then write the markers.
    Write(TxnMeta),
    /// A retry of an EndTxn already preparing or done with the same result: answer NONE (v2:
    /// with the current producer id and epoch).
    Done,
    /// v2, the epoch is exhausted: ask again with a fresh producer id.
    NeedProducerId,
}

impl TxnMeta {
    /// A new transactional id: a fresh producer id at epoch 0, no transaction.
    pub fn new(producer_id: i64, timeout_ms: i32, now: i64) -> TxnMeta {
        TxnMeta {
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            epoch: 0,
            last_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now,
            next_producer_id: NO_PRODUCER_ID,
            version: TxnVersion::V1,
        }
    }

    fn to(&self, state: TxnState, now: i64) -> TxnMeta {
        TxnMeta {
            state,
            update_ms: now,
            ..self.clone()
        }
    }

    /// InitProducerId for an existing id. `expected`: the producer id and epoch a KIP-360
    /// client (v3+) says it has; `fresh`: a new producer id, when [`InitStep::NeedProducerId`]
    /// asked for one.
    pub fn init(
        &self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh: Option<i64>,
        now: i64,
    ) -> Result<InitStep, TxnError> {
        let mut retry = false;
        if let Some((pid, epoch)) = expected {
            // Kafka's isValidProducerId and the retry checks of prepareIncrementProducerEpoch.
            if pid == self.producer_id {
                if epoch == self.epoch {
                } else if epoch == self.last_epoch && self.last_epoch != NO_PRODUCER_EPOCH {
                    retry = true;
                } else {
                    return Err(TxnError::ProducerFenced);
                }
            } else if pid == self.last_producer_id && epoch_exhausted(epoch) {
                retry = true;
            } else {
                return Err(TxnError::ProducerFenced);
            }
        }
        match self.state {
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::PrepareEpochFence
            | TxnState::Dead => Err(TxnError::ConcurrentTransactions),
            TxnState::Ongoing => Ok(InitStep::FenceAndAbort(self.fence_abort(now))),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if retry {
                    return Ok(InitStep::Answer(self.producer_id, self.epoch));
                }
                let mut next = self.to(TxnState::Empty, now);
                next.timeout_ms = timeout_ms;
                next.partitions.clear();
                next.start_ms = -1;
                if epoch_exhausted(self.epoch) {
                    let Some(pid) = fresh else {
                        return Ok(InitStep::NeedProducerId);
                    };
                    next.last_producer_id = self.producer_id;
                    next.producer_id = pid;
                    next.epoch = 0;
                    next.last_epoch = NO_PRODUCER_EPOCH;
                } else {
                    next.last_epoch = self.epoch;
                    next.epoch = self.epoch + 1;
                }
                Ok(InitStep::Write(next))
            }
        }
    }

    /// The ongoing transaction aborted with the epoch bumped (unless exhausted), so the
    /// producer that began it is fenced: Kafka's prepareFenceProducerEpoch then PrepareAbort.
    pub fn fence_abort(&self, now: i64) -> TxnMeta {
        let mut next = self.to(TxnState::PrepareAbort, now);
        if !epoch_exhausted(self.epoch) {
            next.last_epoch = self.epoch;
            next.epoch = self.epoch + 1;
        }
        next
    }

    /// The producer of a request: its id must be this id's, its epoch the current one.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// The producer id and epoch the producer continues with once this transaction completes
    /// (v2: the bumped epoch, or the next producer id at epoch 0).
    pub fn completed_identity(&self) -> (i64, i16) {
        if self.version == TxnVersion::V2 && self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.epoch)
        }
    }

    /// AddPartitionsToTxn (v2: from a partition leader): the state to write, or `None` when
    /// every partition is already in the ongoing transaction.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: i64,
        version: TxnVersion,
    ) -> Result<Option<TxnMeta>, TxnError> {
        // v2: the producer's next transaction begins while its last one still writes its
        // markers (it was answered at once with the epoch it goes on with): it waits.
        if self.state.is_prepare() && (producer_id, epoch) == self.completed_identity() {
            return Err(TxnError::ConcurrentTransactions);
        }
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead => Err(TxnError::InvalidTxnState),
            TxnState::Ongoing if partitions.iter().all(|p| self.partitions.contains(p)) => Ok(None),
            TxnState::Ongoing
            | TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {
                let mut next = self.to(TxnState::Ongoing, now);
                next.version = version;
                if self.state != TxnState::Ongoing {
                    next.partitions.clear();
                    next.start_ms = now;
                }
                next.partitions.extend(partitions.iter().cloned());
                Ok(Some(next))
            }
        }
    }

    /// Whether a partition is in the ongoing transaction of this producer (AddPartitionsToTxn
    /// v4+ `verify_only`, KIP-890).
    pub fn verify(
        &self,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), TxnError> {
        self.check_producer(producer_id, epoch)?;
        if self.state == TxnState::Ongoing && self.partitions.contains(partition) {
            Ok(())
        } else {
            Err(TxnError::InvalidTxnState)
        }
    }

    /// EndTxn (transaction protocol v1).
    pub fn end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<EndStep, TxnError> {
        self.check_producer(producer_id, epoch)?;
        let same = |c: TxnState, a: TxnState| {
            if self.state == if commit { c } else { a } {
                Ok(EndStep::Done)
            } else {
                Err(TxnError::InvalidTxnState)
            }
        };
        match self.state {
            TxnState::Ongoing => Ok(EndStep::Write(self.to(
                if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                },
                now,
            ))),
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                same(TxnState::PrepareCommit, TxnState::PrepareAbort)
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                same(TxnState::CompleteCommit, TxnState::CompleteAbort)
            }
            TxnState::PrepareEpochFence => Err(TxnError::ConcurrentTransactions),
            TxnState::Empty | TxnState::Dead => Err(TxnError::InvalidTxnState),
        }
    }

    /// EndTxn v5 (transaction protocol v2, as Kafka's endTransaction for TV_2): the epoch is
    /// bumped at every end, so a retry carries the epoch before the bump and a request with the
    /// current epoch is the next transaction's. `fresh`: a new producer id, when
    /// [`EndStep::NeedProducerId`] asked for one.
    ///
    /// | state          | abort, retry | abort, current | commit, retry | commit, current |
    /// |----------------|--------------|----------------|---------------|-----------------|
    /// | Empty          | fenced       | bump           | fenced        | invalid state   |
    /// | CompleteAbort  | done         | bump           | invalid state | invalid state   |
    /// | CompleteCommit | invalid state| bump           | done          | invalid state   |
    ///
    /// ("bump": an abort of a transaction that added nothing, its epoch bumped.) Ongoing with
    /// the current epoch prepares; Prepare* is busy (CONCURRENT_TRANSACTIONS) for its retries
    /// and for the producer's next request.
    pub fn end_v2(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now: i64,
        fresh: Option<i64>,
    ) -> Result<EndStep, TxnError> {
        let prepare = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        let bumped_from = |e: i16| e.checked_add(1) == Some(self.epoch);
        match self.state {
            TxnState::Ongoing => {
                self.check_producer(producer_id, epoch)?;
                self.prepare_v2(prepare, false, now, fresh)
            }
            TxnState::Empty => {
                self.check_producer(producer_id, epoch)?;
                if commit {
                    Err(TxnError::InvalidTxnState)
                } else {
                    self.prepare_v2(prepare, true, now, fresh)
                }
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                let mine =
                    producer_id == self.producer_id && (epoch == self.epoch || bumped_from(epoch));
                if mine || (producer_id, epoch) == self.completed_identity() {
                    Err(TxnError::ConcurrentTransactions)
                } else if producer_id != self.producer_id
                    && producer_id != self.completed_identity().0
                {
                    Err(TxnError::InvalidProducerIdMapping)
                } else {
                    Err(TxnError::ProducerFenced)
                }
            }
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                // The retry of an EndTxn that took a new producer id (its epoch ran out).
                let retry_on_rotation = producer_id != self.producer_id
                    && producer_id == self.last_producer_id
                    && epoch_exhausted(epoch)
                    && self.epoch == 0;
                if producer_id != self.producer_id && !retry_on_rotation {
                    return Err(TxnError::InvalidProducerIdMapping);
                }
                let completed = if commit {
                    TxnState::CompleteCommit
                } else {
                    TxnState::CompleteAbort
                };
                if retry_on_rotation || bumped_from(epoch) {
                    if self.state == completed {
                        Ok(EndStep::Done)
                    } else {
                        Err(TxnError::InvalidTxnState)
                    }
                } else if epoch != self.epoch {
                    Err(TxnError::ProducerFenced)
                } else if commit {
                    Err(TxnError::InvalidTxnState)
                } else {
                    self.prepare_v2(prepare, true, now, fresh)
                }
            }
            TxnState::PrepareEpochFence => Err(TxnError::ConcurrentTransactions),
            TxnState::Dead => Err(TxnError::InvalidTxnState),
        }
    }

    /// The Prepare* state of a v2 end: the epoch bumped (the markers carry it), a next producer
    /// id once it is exhausted. `nothing_added`: an abort of a transaction that added no
    /// partition, which starts now and has no marker to write.
    fn prepare_v2(
        &self,
        state: TxnState,
        nothing_added: bool,
        now: i64,
        fresh: Option<i64>,
    ) -> Result<EndStep, TxnError> {
        let mut next = self.to(state, now);
        next.version = TxnVersion::V2;
        if nothing_added {
            next.partitions.clear();
            next.start_ms = now;
        }
        if epoch_exhausted(self.epoch) {
            let Some(pid) = fresh else {
                return Ok(EndStep::NeedProducerId);
            };
            next.next_producer_id = pid;
        }
        next.last_epoch = self.epoch;
        next.epoch = self.epoch.saturating_add(1);
        Ok(EndStep::Write(next))
    }

    /// Every marker written: the Complete* state, no partitions. v2: the producer goes on
    /// with [`TxnMeta::completed_identity`] (as Kafka's prepareComplete, the last epoch is the
    /// one the markers carried).
    pub fn complete(&self, now: i64) -> TxnMeta {
        let mut next = self.to(
            if self.state == TxnState::PrepareCommit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            },
            now,
        );
        next.partitions.clear();
        if self.version == TxnVersion::V2 {
            let (pid, epoch) = self.completed_identity();
            if pid != self.producer_id {
                next.last_producer_id = self.producer_id;
            }
            next.producer_id = pid;
            next.epoch = epoch;
            next.last_epoch = self.epoch;
            next.next_producer_id = NO_PRODUCER_ID;
        }
        next
    }

    /// An ongoing transaction past its timeout (the ticker aborts it).
    pub fn timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && now >= self.start_ms.saturating_add(i64::from(self.timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str, n: i32) -> (String, i32) {
        (t.to_string(), n)
    }

    fn written(s: Result<InitStep, TxnError>) -> TxnMeta {
        match s {
            Ok(InitStep::Write(m)) => m,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn ongoing() -> TxnMeta {
        TxnMeta::new(7, 60_000, 0)
            .add_partitions(7, 0, &[p("a", 0), p("b", 1)], 10, TxnVersion::V1)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn states_have_kafka_names_and_codes() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_code(s.code()), Some(s));
            assert_eq!(TxnState::parse(s.name()), Some(s));
        }
        assert_eq!(TxnState::parse("ongoing"), None);
        assert_eq!(TxnState::from_code(8), None);
    }

    #[test]
    fn a_transaction_goes_ongoing_prepare_complete() {
        let m = ongoing();
        assert_eq!(m.state, TxnState::Ongoing);
        assert_eq!(m.start_ms, 10);
        assert_eq!(m.partitions.len(), 2);
        // Adding partitions already in: nothing to write; a new one: written.
        assert_eq!(
            m.add_partitions(7, 0, &[p("a", 0)], 20, TxnVersion::V1),
            Ok(None)
        );
        let m = m
            .add_partitions(7, 0, &[p("c", 2)], 20, TxnVersion::V1)
            .unwrap()
            .unwrap();
        assert_eq!((m.partitions.len(), m.start_ms), (3, 10));
        let EndStep::Write(prep) = m.end(7, 0, true, 30).unwrap() else {
            panic!("expected a write")
        };
        assert_eq!(prep.state, TxnState::PrepareCommit);
        assert_eq!(prep.partitions.len(), 3);
        let done = prep.complete(40);
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert!(done.partitions.is_empty());
        // The next transaction starts afresh.
        let next = done
            .add_partitions(7, 0, &[p("z", 0)], 50, TxnVersion::V1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (next.state, next.start_ms, next.partitions.len()),
            (TxnState::Ongoing, 50, 1)
        );
    }

    #[test]
    fn a_retried_end_txn_answers_none_for_the_same_result_only() {
        let EndStep::Write(prep) = ongoing().end(7, 0, false, 30).unwrap() else {
            panic!()
        };
        assert_eq!(prep.end(7, 0, false, 31), Ok(EndStep::Done));
        assert_eq!(prep.end(7, 0, true, 31), Err(TxnError::InvalidTxnState));
        let done = prep.complete(40);
        assert_eq!(done.end(7, 0, false, 41), Ok(EndStep::Done));
        assert_eq!(done.end(7, 0, true, 41), Err(TxnError::InvalidTxnState));
        // Nothing to end.
        assert_eq!(
            TxnMeta::new(7, 1000, 0).end(7, 0, true, 1),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn requests_are_checked_against_producer_id_and_epoch() {
        let m = ongoing();
        assert_eq!(
            m.end(8, 0, true, 1),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(m.end(7, 1, true, 1), Err(TxnError::ProducerFenced));
        assert_eq!(
            m.add_partitions(7, 3, &[p("x", 0)], 1, TxnVersion::V1),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(m.verify(7, 0, &p("a", 0)), Ok(()));
        assert_eq!(m.verify(7, 0, &p("x", 0)), Err(TxnError::InvalidTxnState));
        assert_eq!(m.verify(7, 1, &p("a", 0)), Err(TxnError::ProducerFenced));
        // Preparing: adds wait.
        let EndStep::Write(prep) = m.end(7, 0, true, 2).unwrap() else {
            panic!()
        };
        assert_eq!(
            prep.add_partitions(7, 0, &[p("x", 0)], 3, TxnVersion::V1),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn init_producer_id_bumps_the_epoch_and_fences_the_old_producer() {
        let m = TxnMeta::new(7, 60_000, 0);
        let m = written(m.init(30_000, None, None, 5));
        assert_eq!(
            (m.producer_id, m.epoch, m.last_epoch, m.timeout_ms),
            (7, 1, 0, 30_000)
        );
        assert_eq!(
            m.add_partitions(7, 0, &[p("a", 0)], 6, TxnVersion::V1),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn init_producer_id_with_an_ongoing_transaction_aborts_it_with_a_bumped_epoch() {
        let m = ongoing();
        let Ok(InitStep::FenceAndAbort(abort)) = m.init(60_000, None, None, 20) else {
            panic!("expected a fence")
        };
        assert_eq!(
            (abort.state, abort.epoch, abort.last_epoch),
            (TxnState::PrepareAbort, 1, 0)
        );
        assert_eq!(abort.partitions, m.partitions);
        // While it aborts, the new producer waits; the old one is fenced.
        assert_eq!(
            abort.init(60_000, None, None, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(abort.end(7, 0, true, 21), Err(TxnError::ProducerFenced));
        let done = abort.complete(22);
        let again = written(done.init(60_000, None, None, 23));
        assert_eq!((again.state, again.epoch), (TxnState::Empty, 2));
    }

    #[test]
    fn an_exhausted_epoch_takes_a_new_producer_id() {
        let mut m = TxnMeta::new(7, 60_000, 0);
        m.epoch = i16::MAX - 1;
        assert_eq!(m.init(60_000, None, None, 1), Ok(InitStep::NeedProducerId));
        let n = written(m.init(60_000, None, Some(99), 1));
        assert_eq!((n.producer_id, n.epoch, n.last_producer_id), (99, 0, 7));
        // A KIP-360 retry from the producer that held the exhausted epoch gets the new one.
        assert_eq!(
            n.init(60_000, Some((7, i16::MAX - 1)), None, 2),
            Ok(InitStep::Answer(99, 0))
        );
    }

    #[test]
    fn kip_360_expected_producer_ids_are_checked() {
        let m = written(TxnMeta::new(7, 60_000, 0).init(60_000, None, None, 1));
        assert_eq!(m.epoch, 1);
        // The current epoch: bumped again.
        assert_eq!(written(m.init(60_000, Some((7, 1)), None, 2)).epoch, 2);
        // The previous epoch: a retry of the bump that gave epoch 1.
        assert_eq!(
            m.init(60_000, Some((7, 0)), None, 2),
            Ok(InitStep::Answer(7, 1))
        );
        // Anything else is fenced.
        assert_eq!(
            m.init(60_000, Some((8, 1)), None, 2),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            m.init(60_000, Some((7, 5)), None, 2),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn ongoing_transactions_time_out() {
        let m = ongoing();
        assert!(!m.timed_out(10 + 59_999));
        assert!(m.timed_out(10 + 60_000));
        let abort = m.fence_abort(70_000);
        assert_eq!((abort.state, abort.epoch), (TxnState::PrepareAbort, 1));
        assert!(!abort.timed_out(i64::MAX));
        let mut exhausted = m.clone();
        exhausted.epoch = i16::MAX - 1;
        assert_eq!(exhausted.fence_abort(1).epoch, i16::MAX - 1);
    }

    fn ongoing_v2(epoch: i16) -> TxnMeta {
        let mut m = TxnMeta::new(7, 60_000, 0);
        m.epoch = epoch;
        m.add_partitions(7, epoch, &[p("a", 0)], 10, TxnVersion::V2)
            .unwrap()
            .unwrap()
    }

    fn prepared(s: Result<EndStep, TxnError>) -> TxnMeta {
        match s {
            Ok(EndStep::Write(m)) => m,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_v2_end_bumps_the_epoch_and_the_next_transaction_goes_on_with_it() {
        let m = ongoing_v2(3);
        assert_eq!(m.version, TxnVersion::V2);
        let prep = prepared(m.end_v2(7, 3, true, 20, None));
        // The markers carry the bumped epoch; the producer is answered it at once.
        assert_eq!(
            (
                prep.state,
                prep.epoch,
                prep.last_epoch,
                prep.next_producer_id
            ),
            (TxnState::PrepareCommit, 4, 3, NO_PRODUCER_ID)
        );
        assert_eq!(prep.completed_identity(), (7, 4));
        // Its next transaction waits for the markers; its retry is busy; a stale one fenced.
        assert_eq!(
            prep.add_partitions(7, 4, &[p("b", 0)], 21, TxnVersion::V2),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            prep.end_v2(7, 3, true, 21, None),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            prep.end_v2(7, 4, false, 21, None),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            prep.end_v2(7, 2, true, 21, None),
            Err(TxnError::ProducerFenced)
        );
        let done = prep.complete(30);
        assert_eq!(
            (done.state, done.producer_id, done.epoch, done.last_epoch),
            (TxnState::CompleteCommit, 7, 4, 4)
        );
        assert!(done.partitions.is_empty());
        // A retry (the epoch before the bump) answers NONE for the same result only.
        assert_eq!(done.end_v2(7, 3, true, 31, None), Ok(EndStep::Done));
        assert_eq!(
            done.end_v2(7, 3, false, 31, None),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            done.end_v2(7, 2, true, 31, None),
            Err(TxnError::ProducerFenced)
        );
        // The next transaction, with the bumped epoch, added by a partition leader.
        let next = done
            .add_partitions(7, 4, &[p("b", 0)], 40, TxnVersion::V2)
            .unwrap()
            .unwrap();
        assert_eq!(
            (next.state, next.start_ms, next.partitions.len()),
            (TxnState::Ongoing, 40, 1)
        );
        assert_eq!(
            done.add_partitions(7, 3, &[p("b", 0)], 40, TxnVersion::V2),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn a_v2_abort_with_nothing_added_bumps_the_epoch_and_a_commit_is_refused() {
        let empty = TxnMeta::new(7, 60_000, 0);
        assert_eq!(
            empty.end_v2(7, 0, true, 5, None),
            Err(TxnError::InvalidTxnState)
        );
        let abort = prepared(empty.end_v2(7, 0, false, 5, None));
        assert_eq!(
            (abort.state, abort.epoch, abort.start_ms),
            (TxnState::PrepareAbort, 1, 5)
        );
        assert!(abort.partitions.is_empty());
        let done = abort.complete(6);
        // From CompleteCommit or CompleteAbort with the current epoch: the same.
        let again = prepared(done.end_v2(7, 1, false, 7, None));
        assert_eq!((again.state, again.epoch), (TxnState::PrepareAbort, 2));
        assert_eq!(
            done.end_v2(7, 1, true, 7, None),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            done.end_v2(8, 1, false, 7, None),
            Err(TxnError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn a_v2_end_with_the_epoch_exhausted_takes_a_new_producer_id() {
        let m = ongoing_v2(i16::MAX - 1);
        assert_eq!(
            m.end_v2(7, i16::MAX - 1, true, 20, None),
            Ok(EndStep::NeedProducerId)
        );
        let prep = prepared(m.end_v2(7, i16::MAX - 1, true, 20, Some(99)));
        // The markers carry the last epoch of the old producer id.
        assert_eq!(
            (prep.producer_id, prep.epoch, prep.next_producer_id),
            (7, i16::MAX, 99)
        );
        assert_eq!(prep.completed_identity(), (99, 0));
        // The new producer id's first batch waits for the markers.
        assert_eq!(
            prep.add_partitions(99, 0, &[p("a", 0)], 21, TxnVersion::V2),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = prep.complete(30);
        assert_eq!(
            (
                done.producer_id,
                done.epoch,
                done.last_producer_id,
                done.next_producer_id
            ),
            (99, 0, 7, NO_PRODUCER_ID)
        );
        // A retry with the old producer id is recognised.
        assert_eq!(
            done.end_v2(7, i16::MAX - 1, true, 31, None),
            Ok(EndStep::Done)
        );
        assert_eq!(
            done.end_v2(7, 5, true, 31, None),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert!(done
            .add_partitions(99, 0, &[p("a", 0)], 32, TxnVersion::V2)
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_v1_transaction_keeps_its_epoch() {
        let EndStep::Write(prep) = ongoing().end(7, 0, true, 30).unwrap() else {
            panic!()
        };
        assert_eq!(prep.version, TxnVersion::V1);
        assert_eq!(prep.completed_identity(), (7, 0));
        let done = prep.complete(40);
        assert_eq!((done.producer_id, done.epoch, done.last_epoch), (7, 0, -1));
    }

    #[test]
    fn a_v2_transaction_timed_out_is_fenced_once_and_its_abort_then_answered() {
        let m = ongoing_v2(3);
        let abort = m.fence_abort(70_000);
        assert_eq!((abort.state, abort.epoch), (TxnState::PrepareAbort, 4));
        let done = abort.complete(70_001);
        assert_eq!((done.epoch, done.producer_id), (4, 7));
        // The producer that timed out aborts: a retry of the abort, answered with epoch 4.
        assert_eq!(done.end_v2(7, 3, false, 70_002, None), Ok(EndStep::Done));
        assert_eq!(
            done.end_v2(7, 3, true, 70_002, None),
            Err(TxnError::InvalidTxnState)
        );
    }
}
