//! Transactions in a partition's Raft group (`super::txn`, `super::verify`): the last stable
//! offset and aborted transactions on every replica, markers and their fencing, and the KIP-890
//! check before a producer's first transactional batch; on the three actors of
//! [`super::group_tests`].

use bytes::Bytes;
use std::time::Duration;

use super::group_tests::{batch_of, now_ms, run, spawn_group, Group};
use super::{Cmd, PartitionError, ProduceOk};
use crate::log::batch::{self, NewRecord};

/// A client's transactional batch of `n` records from producer `pid` at sequence `seq`.
fn txn_batch(n: usize, pid: i64, seq: i32) -> Bytes {
    txn_batch_at(n, pid, 0, seq)
}

fn txn_batch_at(n: usize, pid: i64, epoch: i16, seq: i32) -> Bytes {
    let records: Vec<NewRecord> = (0..n)
        .map(|i| NewRecord {
            value: Some(Bytes::from(format!("txn-{pid}-{i}"))),
            timestamp: now_ms(),
            ..Default::default()
        })
        .collect();
    let b = crate::log::control::encode_transactional(&records, pid, epoch).unwrap();
    batch::with_producer(&b, pid, epoch, seq)
}

async fn marker(
    g: &Group,
    on: u64,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> Result<ProduceOk, PartitionError> {
    let marker = super::txn::Marker {
        producer_id: pid,
        producer_epoch: epoch,
        control: crate::log::control::ControlType::from_commit(commit),
        coordinator_epoch: 1,
    };
    g.handles[&on]
        .ask(|reply| Cmd::WriteMarker { marker, reply })
        .await
}

async fn read_committed(g: &Group, on: u64, offset: i64) -> super::ReadOk {
    g.handles[&on]
        .ask(|reply| Cmd::Read {
            offset,
            max_bytes: 1 << 20,
            committed: true,
            // As a plaintext Fetch reads: the aborted transactions come from the slice's end.
            in_place: true,
            reply,
        })
        .await
        .unwrap()
}

#[test]
fn open_transactions_hold_the_stable_offset_and_aborts_are_reported_on_every_replica() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let leader = g.leader(&[1, 2, 3]).await;
        assert_eq!(
            g.produce(leader, txn_batch(2, 7, 0))
                .await
                .unwrap()
                .base_offset,
            0
        );
        assert_eq!(
            g.produce(leader, batch_of(1, None))
                .await
                .unwrap()
                .base_offset,
            2
        );
        g.settle(3).await;
        // Producer 7's transaction is open at 0: read_committed sees nothing yet.
        for id in 1..=3 {
            assert_eq!(g.handles[&id].marks.borrow().stable, 0);
        }
        assert!(read_committed(&g, leader, 0).await.records.is_none());
        // Its abort marker releases the log, and read_committed reads report it.
        assert_eq!(
            marker(&g, leader, 7, 0, false).await.unwrap().base_offset,
            3
        );
        g.settle(4).await;
        let r = read_committed(&g, leader, 0).await;
        let aborted = crate::log::producer_state::AbortedTxn {
            producer_id: 7,
            first_offset: 0,
            last_offset: 3,
        };
        assert_eq!(r.aborted, vec![aborted]);
        assert_eq!(r.marks.stable, 4);
        // A committed transaction is no aborted one.
        assert_eq!(
            g.produce(leader, txn_batch(1, 8, 0))
                .await
                .unwrap()
                .base_offset,
            4
        );
        marker(&g, leader, 8, 0, true).await.unwrap();
        g.settle(6).await;
        assert_eq!(read_committed(&g, leader, 4).await.aborted, vec![]);
        // The producer's sequence continues across its marker; a marker of an older producer
        // epoch is refused.
        assert_eq!(
            g.produce(leader, txn_batch(1, 7, 2))
                .await
                .unwrap()
                .base_offset,
            6
        );
        let mut fenced = txn_batch(1, 7, 0);
        fenced = batch::with_producer(&fenced, 7, 1, 0);
        g.produce(leader, fenced).await.unwrap();
        assert!(matches!(
            marker(&g, leader, 7, 0, true).await,
            Err(PartitionError::Sequence(_))
        ));
        marker(&g, leader, 7, 1, true).await.unwrap();
        g.settle(9).await;
        g.identical().await;
        // After a restart every replica rebuilds the same state from its files.
        let dir = g.stop().await;
        let g = spawn_group(dir);
        let leader = g.leader(&[1, 2, 3]).await;
        g.settle(9).await;
        for id in 1..=3 {
            assert_eq!(
                g.handles[&id].marks.borrow().stable,
                g.handles[&id].marks.borrow().high
            );
            assert_eq!(read_committed(&g, id, 0).await.aborted, vec![aborted]);
        }
        assert_eq!(
            g.produce(leader, txn_batch(1, 9, 0))
                .await
                .unwrap()
                .base_offset,
            9
        );
        g.settle(10).await;
        assert_eq!(g.handles[&leader].marks.borrow().stable, 9);
    });
}

type VerifyAnswer = tokio::sync::oneshot::Sender<Result<(), super::verify::VerifyError>>;
type ProduceAnswer = tokio::sync::oneshot::Receiver<Result<ProduceOk, PartitionError>>;

/// A transactional produce whose verification answers what the test sends on the returned
/// channel.
fn verified_produce(g: &Group, on: u64, batch: Bytes) -> (VerifyAnswer, ProduceAnswer) {
    asked_produce(g, on, batch, false)
}

/// The same, `adds`: the ask adds the partition (transaction protocol v2).
fn asked_produce(g: &Group, on: u64, batch: Bytes, adds: bool) -> (VerifyAnswer, ProduceAnswer) {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let verify = super::verify::Verify {
        ask: Box::new(move || {
            Box::pin(async move {
                answered
                    .await
                    .unwrap_or(Err(super::verify::VerifyError::Unavailable(
                        "dropped".into(),
                    )))
            })
        }),
        adds,
    };
    let (reply, waiting) = tokio::sync::oneshot::channel();
    let produce = Cmd::Produce {
        batches: batch::split_batches(&batch).unwrap(),
        reply,
        acks_all: true,
        verify: Some(verify),
    };
    g.handles[&on].tx.send(produce).unwrap();
    (answer, waiting)
}

#[test]
fn a_first_transactional_batch_waits_for_the_coordinator_and_later_ones_keep_their_order() {
    use super::verify::VerifyError;
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let leader = g.leader(&[1, 2, 3]).await;
        // Not in the transaction: refused, nothing appended.
        let (answer, waiting) = verified_produce(&g, leader, txn_batch(1, 5, 0));
        answer.send(Err(VerifyError::NotInTransaction)).unwrap();
        assert!(matches!(
            waiting.await.unwrap(),
            Err(PartitionError::Verification(VerifyError::NotInTransaction))
        ));
        // A second produce of the same producer waits behind the first's verification.
        let (answer, first) = verified_produce(&g, leader, txn_batch(1, 5, 0));
        let (_unused, second) = verified_produce(&g, leader, txn_batch(2, 5, 1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(g.handles[&leader].marks.borrow().log_end, 0);
        answer.send(Ok(())).unwrap();
        assert_eq!(first.await.unwrap().unwrap().base_offset, 0);
        assert_eq!(second.await.unwrap().unwrap().base_offset, 1);
        // With the transaction open here, no more verification is asked for.
        let (_never, third) = verified_produce(&g, leader, txn_batch(1, 5, 3));
        assert_eq!(third.await.unwrap().unwrap().base_offset, 3);
        // A marker written while a verification is awaited voids its answer: the batch
        // belongs to a transaction that has ended.
        marker(&g, leader, 5, 0, true).await.unwrap();
        let (answer, late) = verified_produce(&g, leader, txn_batch(1, 6, 0));
        let (_m, _) = (marker(&g, leader, 6, 0, false).await.unwrap(), ());
        answer.send(Ok(())).unwrap();
        assert!(matches!(
            late.await.unwrap(),
            Err(PartitionError::Verification(VerifyError::NotInTransaction))
        ));
        g.settle(6).await;
        assert_eq!(g.handles[&leader].marks.borrow().stable, 6);
    });
}

#[test]
fn a_v2_first_batch_is_added_while_the_previous_transactions_marker_lands() {
    run(|| async {
        let g = spawn_group(tempfile::tempdir().unwrap());
        let leader = g.leader(&[1, 2, 3]).await;
        // Transaction 1 of producer 5 at epoch 0, open here.
        let (answer, first) = asked_produce(&g, leader, txn_batch_at(2, 5, 0, 0), true);
        answer.send(Ok(())).unwrap();
        assert_eq!(first.await.unwrap().unwrap().base_offset, 0);
        // Its EndTxn bumped the epoch to 1; the producer's next transaction begins before the
        // marker (epoch 1) reaches this partition. The marker lands while the add is awaited:
        // the answer stands, and the batch (epoch 1, sequence 0) is taken.
        let (answer, second) = asked_produce(&g, leader, txn_batch_at(1, 5, 1, 0), true);
        marker(&g, leader, 5, 1, true).await.unwrap();
        answer.send(Ok(())).unwrap();
        assert_eq!(second.await.unwrap().unwrap().base_offset, 3);
        // Later batches of the transaction follow without asking.
        let (_never, third) = asked_produce(&g, leader, txn_batch_at(1, 5, 1, 1), true);
        assert_eq!(third.await.unwrap().unwrap().base_offset, 4);
        marker(&g, leader, 5, 2, false).await.unwrap();
        // A marker of a newer epoch (the transaction asked about ended, or was fenced) voids it.
        let (answer, late) = asked_produce(&g, leader, txn_batch_at(1, 5, 2, 0), true);
        marker(&g, leader, 5, 3, false).await.unwrap();
        answer.send(Ok(())).unwrap();
        assert!(matches!(
            late.await.unwrap(),
            Err(PartitionError::Verification(
                super::verify::VerifyError::NotInTransaction
            ))
        ));
        g.settle(7).await;
        assert_eq!(g.handles[&leader].marks.borrow().stable, 7);
    });
}
