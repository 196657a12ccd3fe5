//! One transactional id's state and its transitions, as Kafka's TransactionMetadata
//! (transaction protocol v1). Pure: each request computes the state to write (or an error),
//! the coordinator writes it to `__transaction_state` and only then applies it.
//!
//! ```text
//! Empty / Complete* --AddPartitions--> Ongoing --EndTxn--> Prepare{Commit,Abort}
//!   --markers written--> Complete{Commit,Abort}
//! Ongoing --InitProducerId or timeout (epoch bumped: PrepareEpochFence)--> PrepareAbort
//! Empty / Complete* --InitProducerId--> Empty (epoch bumped)
//! ```

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
    /// A retry of an EndTxn already preparing or done with the same result: answer NONE.
    Done,
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

    /// AddPartitionsToTxn: the state to write, or `None` when every partition is already in
    /// the ongoing transaction.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: i64,
    ) -> Result<Option<TxnMeta>, TxnError> {
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

    /// Every marker written: the Complete* state, no partitions.
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
            .add_partitions(7, 0, &[p("a", 0), p("b", 1)], 10)
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
        assert_eq!(m.add_partitions(7, 0, &[p("a", 0)], 20), Ok(None));
        let m = m.add_partitions(7, 0, &[p("c", 2)], 20).unwrap().unwrap();
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
            .add_partitions(7, 0, &[p("z", 0)], 50)
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
            m.add_partitions(7, 3, &[p("x", 0)], 1),
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
            prep.add_partitions(7, 0, &[p("x", 0)], 3),
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
            m.add_partitions(7, 0, &[p("a", 0)], 6),
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
}
