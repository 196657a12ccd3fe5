//! The coordinator driven through a fake [`TxnHost`]: a real single-node broker underneath for
//! `__transaction_state`, with producer ids, markers and the clock faked.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::time::Duration;

use super::*;
use crate::internal_topic::{CreateFuture, TopicHost};
use crate::metrics::Metrics;
use crate::topics::{Topic, TopicTable};
use TxnVersion::V1;

struct Fake {
    b: Arc<crate::Broker>,
    now: AtomicI64,
    next_pid: AtomicI64,
    markers: Mutex<Vec<MarkerBatch>>,
    /// Rounds of markers answered Retry before they are Written.
    retries: AtomicUsize,
    /// Who leads every partition, and in which term, as the coordinator is told.
    leader: AtomicI32,
    term: AtomicI32,
}

impl TopicHost for Fake {
    fn node_id(&self) -> i32 {
        TopicHost::node_id(&*self.b)
    }
    fn topics(&self) -> &TopicTable {
        TopicHost::topics(&*self.b)
    }
    fn metrics(&self) -> &Metrics {
        TopicHost::metrics(&*self.b)
    }
    fn cluster_size(&self) -> Option<usize> {
        None
    }
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }
    fn partition_leader_epoch(&self, _t: &Topic, _partition: i32) -> (i32, i32) {
        (
            self.leader.load(Ordering::Relaxed),
            self.term.load(Ordering::Relaxed),
        )
    }
    fn create_topic<'a>(
        &'a self,
        name: &'a str,
        partitions: i32,
        replication: i16,
        configs: &'a [(String, String)],
    ) -> CreateFuture<'a> {
        TopicHost::create_topic(&*self.b, name, partitions, replication, configs)
    }
}

impl TxnHost for Fake {
    fn new_producer_id(&self) -> HostFuture<'_, Result<i64, String>> {
        let id = self.next_pid.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(id) })
    }
    fn write_markers(&self, m: MarkerBatch) -> HostFuture<'_, Vec<MarkerOutcome>> {
        let retry = self
            .retries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        let n = m.partitions.len();
        self.markers.lock().push(m);
        Box::pin(async move {
            if retry {
                vec![MarkerOutcome::Retry("not yet".into()); n]
            } else {
                vec![MarkerOutcome::Written; n]
            }
        })
    }
}

async fn fake() -> (Arc<Fake>, Arc<dyn TxnHost>) {
    let dir = tempfile::tempdir().unwrap().keep();
    let b = crate::Broker::start(
        crate::BrokerConfig::for_tests(dir),
        crate::IoBackend::Blocking,
        None,
        None,
    )
    .await
    .unwrap();
    let f = Arc::new(Fake {
        b,
        now: AtomicI64::new(1_000_000),
        next_pid: AtomicI64::new(1000),
        markers: Mutex::default(),
        retries: AtomicUsize::new(0),
        leader: AtomicI32::new(0),
        term: AtomicI32::new(1),
    });
    let host: Arc<dyn TxnHost> = f.clone();
    (f, host)
}

fn parts(ps: &[(&str, i32)]) -> Vec<(String, i32)> {
    ps.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// Ticks until `id` is in `state` (markers and writes run as local tasks).
async fn settle(c: &Coordinator, host: &Arc<dyn TxnHost>, id: &str, state: TxnState) -> TxnMeta {
    for _ in 0..200 {
        c.tick(host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let m = c.describe(&**host, id).unwrap();
        if m.state == state {
            return m;
        }
    }
    panic!(
        "{id} never reached {state:?}: {:?}",
        c.describe(&**host, id)
    );
}

fn run(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(tokio::task::LocalSet::new().run_until(f));
}

#[test]
fn a_transaction_commits_through_markers_and_a_retried_end_txn_is_answered() {
    run(async {
        let (f, host) = fake().await;
        let c = Coordinator::new(false);
        let h = &*host;
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Ok((1000, 0))
        );
        let ps = parts(&[("a", 0), ("b", 2)]);
        c.add_partitions(h, "tx", 1000, 0, &ps, V1).await.unwrap();
        assert_eq!(c.describe(h, "tx").unwrap().state, TxnState::Ongoing);
        assert_eq!(
            c.verify(h, "tx", 1000, 0, &parts(&[("a", 0), ("c", 0)])),
            vec![Ok(()), Err(TxnError::InvalidTxnState)]
        );
        c.end_txn(h, "tx", 1000, 0, true, V1).await.unwrap();
        // Retried while preparing: the same result is fine, the other is not.
        assert_eq!(c.end_txn(h, "tx", 1000, 0, true, V1).await, Ok((1000, 0)));
        assert_eq!(
            c.end_txn(h, "tx", 1000, 0, false, V1).await,
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            c.add_partitions(h, "tx", 1000, 0, &ps, V1).await,
            Err(TxnError::ConcurrentTransactions)
        );
        let done = settle(&c, &host, "tx", TxnState::CompleteCommit).await;
        assert!(done.partitions.is_empty());
        let markers = f.markers.lock().clone();
        assert_eq!(markers.len(), 1);
        assert_eq!(
            (
                markers[0].producer_id,
                markers[0].producer_epoch,
                markers[0].commit
            ),
            (1000, 0, true)
        );
        assert_eq!(markers[0].partitions, ps);
        assert_eq!(c.end_txn(h, "tx", 1000, 0, true, V1).await, Ok((1000, 0)));
        assert_eq!(
            c.end_txn(h, "tx", 1000, 0, false, V1).await,
            Err(TxnError::InvalidTxnState)
        );
        // The next transaction.
        c.add_partitions(h, "tx", 1000, 0, &parts(&[("a", 1)]), V1)
            .await
            .unwrap();
        let m = c.describe(h, "tx").unwrap();
        assert_eq!((m.state, m.partitions.len()), (TxnState::Ongoing, 1));
    });
}

#[test]
fn init_producer_id_fences_an_ongoing_transaction() {
    run(async {
        let (f, host) = fake().await;
        let c = Coordinator::new(false);
        let h = &*host;
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Ok((1000, 0))
        );
        c.add_partitions(h, "tx", 1000, 0, &parts(&[("a", 0)]), V1)
            .await
            .unwrap();
        // A new producer with the same id: the transaction is aborted with epoch 1.
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            c.end_txn(h, "tx", 1000, 0, true, V1).await,
            Err(TxnError::ProducerFenced)
        );
        settle(&c, &host, "tx", TxnState::CompleteAbort).await;
        let m = f.markers.lock()[0].clone();
        assert_eq!((m.producer_epoch, m.commit), (1, false));
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Ok((1000, 2))
        );
        assert_eq!(
            c.add_partitions(h, "tx", 1000, 1, &parts(&[("a", 0)]), V1)
                .await,
            Err(TxnError::ProducerFenced)
        );
        // Unknown producers and bad timeouts.
        assert_eq!(
            c.add_partitions(h, "other", 1000, 0, &parts(&[("a", 0)]), V1)
                .await,
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            c.init_producer_id(h, "tx", MAX_TIMEOUT_MS + 1, None).await,
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            c.describe(h, "nope"),
            Err(TxnError::TransactionalIdNotFound)
        );
    });
}

#[test]
fn timed_out_transactions_are_aborted_with_the_epoch_bumped_and_idle_ids_expire() {
    run(async {
        let (f, host) = fake().await;
        let c = Coordinator::new(false);
        let h = &*host;
        c.init_producer_id(h, "tx", 1_000, None).await.unwrap();
        c.add_partitions(h, "tx", 1000, 0, &parts(&[("a", 0)]), V1)
            .await
            .unwrap();
        c.tick(&host);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(c.describe(h, "tx").unwrap().state, TxnState::Ongoing);
        f.now.fetch_add(1_000, Ordering::Relaxed);
        let m = settle(&c, &host, "tx", TxnState::CompleteAbort).await;
        assert_eq!(m.epoch, 1);
        assert_eq!(
            c.end_txn(h, "tx", 1000, 0, true, V1).await,
            Err(TxnError::ProducerFenced)
        );
        let listed = c.list(
            h,
            &describe::ListFilter {
                states: vec![TxnState::CompleteAbort],
                min_duration_ms: -1,
                ..Default::default()
            },
        );
        assert_eq!(listed.len(), 1);
        // Idle for a week: forgotten, for good.
        f.now.fetch_add(ID_EXPIRATION_MS, Ordering::Relaxed);
        for _ in 0..100 {
            c.tick(&host);
            tokio::time::sleep(Duration::from_millis(10)).await;
            if c.describe(h, "tx").is_err() {
                break;
            }
        }
        assert_eq!(c.describe(h, "tx"), Err(TxnError::TransactionalIdNotFound));
        let again = Coordinator::new(false);
        again.load(h).await.unwrap();
        assert_eq!(
            again.describe(h, "tx"),
            Err(TxnError::TransactionalIdNotFound)
        );
        // A new producer with that id starts afresh.
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Ok((1001, 0))
        );
    });
}

#[test]
fn markers_are_retried_and_prepared_transactions_resume_after_a_load() {
    run(async {
        let (f, host) = fake().await;
        let c = Coordinator::new(false);
        let h = &*host;
        c.init_producer_id(h, "tx", 60_000, None).await.unwrap();
        c.add_partitions(h, "tx", 1000, 0, &parts(&[("a", 0)]), V1)
            .await
            .unwrap();
        c.end_txn(h, "tx", 1000, 0, false, V1).await.unwrap();
        // Another coordinator replays the topic (a restart): it resumes the markers, which
        // are refused twice before they are written.
        f.retries.store(2, Ordering::Relaxed);
        let again = Coordinator::new(false);
        again.load(h).await.unwrap();
        assert_eq!(
            again.describe(h, "tx").unwrap().state,
            TxnState::PrepareAbort
        );
        settle(&again, &host, "tx", TxnState::CompleteAbort).await;
        assert_eq!(f.markers.lock().len(), 3);
        // And a third sees it complete.
        let third = Coordinator::new(false);
        third.load(h).await.unwrap();
        assert_eq!(
            third.describe(h, "tx").unwrap().state,
            TxnState::CompleteAbort
        );
    });
}

/// Ticks until `check` answers `want` for `id`.
async fn until_check(
    c: &Coordinator,
    host: &Arc<dyn TxnHost>,
    id: &str,
    want: Result<(), TxnError>,
) {
    for _ in 0..200 {
        c.tick(host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        if c.check(&**host, id) == want {
            return;
        }
    }
    panic!("check({id}) never answered {want:?}");
}

#[test]
fn in_a_cluster_ids_follow_the_leader_and_prepared_ones_resume_on_a_new_one() {
    run(async {
        let (f, host) = fake().await;
        let h = &*host;
        let c = Coordinator::new(true);
        // No topic yet: nobody coordinates.
        assert_eq!(c.check(h, "tx"), Err(TxnError::NotCoordinator));
        store::topic(h).await.unwrap();
        assert_eq!(c.check(h, "tx"), Err(TxnError::CoordinatorLoadInProgress));
        until_check(&c, &host, "tx", Ok(())).await;
        assert_eq!(c.served_partitions(h), Some(vec![0]));
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Ok((1000, 0))
        );
        c.add_partitions(h, "tx", 1000, 0, &parts(&[("a", 0)]), V1)
            .await
            .unwrap();
        // Its markers are refused for now.
        f.retries.store(usize::MAX, Ordering::Relaxed);
        c.end_txn(h, "tx", 1000, 0, true, V1).await.unwrap();
        c.tick(&host);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!f.markers.lock().is_empty());
        // Deposed: the ids are dropped (and their marker task stops).
        f.leader.store(5, Ordering::Relaxed);
        until_check(&c, &host, "tx", Err(TxnError::NotCoordinator)).await;
        assert_eq!(c.describe(h, "tx"), Err(TxnError::NotCoordinator));
        assert!(c.list(h, &ListFilter::default()).is_empty());
        // Leader again in a new term: loaded, and the prepared transaction resumes with the
        // new coordinator epoch.
        f.retries.store(0, Ordering::Relaxed);
        f.leader.store(0, Ordering::Relaxed);
        f.term.store(2, Ordering::Relaxed);
        until_check(&c, &host, "tx", Ok(())).await;
        settle(&c, &host, "tx", TxnState::CompleteCommit).await;
        let last = f.markers.lock().last().cloned().unwrap();
        assert_eq!((last.coordinator_epoch, last.commit), (2, true));
    });
}

#[test]
fn a_v2_transaction_bumps_the_epoch_at_its_end_and_resumes_after_a_load() {
    use TxnVersion::V2;
    run(async {
        let (f, host) = fake().await;
        let c = Coordinator::new(false);
        let h = &*host;
        assert_eq!(
            c.init_producer_id(h, "tx", 60_000, None).await,
            Ok((1000, 0))
        );
        // A partition leader adds the producer's first partition: the transaction begins.
        let ps = parts(&[("a", 0)]);
        c.add_partitions(h, "tx", 1000, 0, &ps, V2).await.unwrap();
        let m = c.describe(h, "tx").unwrap();
        assert_eq!((m.state, m.version), (TxnState::Ongoing, V2));
        // EndTxn v5: answered with the bumped epoch at once; the markers carry it (this
        // coordinator never ticks: its markers are left to the next one, below).
        assert_eq!(c.end_txn(h, "tx", 1000, 0, true, V2).await, Ok((1000, 1)));
        // The producer's next transaction waits while the markers are not all written; so
        // does a retry of the EndTxn.
        assert_eq!(
            c.add_partitions(h, "tx", 1000, 1, &ps, V2).await,
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            c.end_txn(h, "tx", 1000, 0, true, V2).await,
            Err(TxnError::ConcurrentTransactions)
        );
        // A restart meanwhile: the prepared transaction resumes with the bumped epoch.
        let again = Coordinator::new(false);
        again.load(h).await.unwrap();
        let m = again.describe(h, "tx").unwrap();
        assert_eq!(
            (m.state, m.epoch, m.last_epoch, m.version),
            (TxnState::PrepareCommit, 1, 0, V2)
        );
        let done = settle(&again, &host, "tx", TxnState::CompleteCommit).await;
        assert_eq!((done.producer_id, done.epoch), (1000, 1));
        let last = f.markers.lock().last().cloned().unwrap();
        assert_eq!((last.producer_epoch, last.commit), (1, true));
        // The retry is answered with the epoch to go on with; the other result is refused.
        assert_eq!(
            again.end_txn(h, "tx", 1000, 0, true, V2).await,
            Ok((1000, 1))
        );
        assert_eq!(
            again.end_txn(h, "tx", 1000, 0, false, V2).await,
            Err(TxnError::InvalidTxnState)
        );
        // The next transaction, at epoch 1, and an abort of one that added nothing.
        again
            .add_partitions(h, "tx", 1000, 1, &ps, V2)
            .await
            .unwrap();
        assert_eq!(
            again.end_txn(h, "tx", 1000, 1, false, V2).await,
            Ok((1000, 2))
        );
        settle(&again, &host, "tx", TxnState::CompleteAbort).await;
        let before = f.markers.lock().len();
        assert_eq!(
            again.end_txn(h, "tx", 1000, 2, false, V2).await,
            Ok((1000, 3))
        );
        let m = settle(&again, &host, "tx", TxnState::CompleteAbort).await;
        assert_eq!(m.epoch, 3);
        assert_eq!(f.markers.lock().len(), before, "nothing to mark");
        // A v1 EndTxn of the same producer keeps its epoch.
        again
            .add_partitions(h, "tx", 1000, 3, &ps, TxnVersion::V1)
            .await
            .unwrap();
        assert_eq!(
            again.end_txn(h, "tx", 1000, 3, true, TxnVersion::V1).await,
            Ok((1000, 3))
        );
        let m = settle(&again, &host, "tx", TxnState::CompleteCommit).await;
        assert_eq!(m.epoch, 3);
    });
}

#[test]
fn a_v2_end_with_the_epoch_exhausted_rotates_the_producer_id() {
    use TxnVersion::V2;
    run(async {
        let (f, host) = fake().await;
        let c = Coordinator::new(false);
        let h = &*host;
        c.init_producer_id(h, "tx", 60_000, None).await.unwrap();
        let last = i16::MAX - 1;
        if let Some(m) = c.inner.txns.lock().get_mut("tx").unwrap().meta.as_mut() {
            m.epoch = last;
        }
        c.add_partitions(h, "tx", 1000, last, &parts(&[("a", 0)]), V2)
            .await
            .unwrap();
        // A new producer id at epoch 0; the markers carry the old one's last epoch.
        assert_eq!(
            c.end_txn(h, "tx", 1000, last, true, V2).await,
            Ok((1001, 0))
        );
        let done = settle(&c, &host, "tx", TxnState::CompleteCommit).await;
        assert_eq!(
            (done.producer_id, done.epoch, done.last_producer_id),
            (1001, 0, 1000)
        );
        let m = f.markers.lock().last().cloned().unwrap();
        assert_eq!((m.producer_id, m.producer_epoch), (1000, i16::MAX));
        // The retry with the old producer id is recognised.
        assert_eq!(
            c.end_txn(h, "tx", 1000, last, true, V2).await,
            Ok((1001, 0))
        );
        c.add_partitions(h, "tx", 1001, 0, &parts(&[("a", 0)]), V2)
            .await
            .unwrap();
    });
}
