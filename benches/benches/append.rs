//! Append path: `validate` + `PartitionLog::append` of 16 KiB batches (16 records of 1 KiB),
//! to the page cache only, and with one fdatasync per batch (the worst case of acks=all with
//! no group commit: every produce waits for its own sync).
//!
//! Each sample opens a fresh log in a fresh temporary directory (on the same filesystem as
//! `$TMPDIR`, /tmp by default), so the log never grows past one sample's worth of data.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::log::{batch, LogConfig, PartitionLog};
use icestream_benches::bench_batch;

fn fresh_log() -> (tempfile::TempDir, PartitionLog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), LogConfig::default(), 0).expect("open log");
    (dir, log)
}

fn append(c: &mut Criterion) {
    let batch = bench_batch();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Bytes(batch.len() as u64));

    // validate (CRC32C of the whole batch) alone: the per-batch CPU cost before the log.
    g.bench_function("validate_16KiB", |b| {
        b.iter(|| batch::validate(black_box(&batch)).expect("valid"))
    });

    // validate + append to the page cache, no sync.
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("validate_append_16KiB", |b| {
        b.iter_custom(|iters| {
            let (_dir, mut log) = fresh_log();
            let start = Instant::now();
            for i in 0..iters {
                let h = batch::validate(&batch).expect("valid");
                black_box(log.append(&h, &batch, 0, i as i64).expect("append"));
            }
            start.elapsed()
        })
    });

    // validate + append + fdatasync of every dirty file after each batch.
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("validate_append_fdatasync_16KiB", |b| {
        b.iter_custom(|iters| {
            let (_dir, mut log) = fresh_log();
            let start = Instant::now();
            for i in 0..iters {
                let h = batch::validate(&batch).expect("valid");
                black_box(log.append(&h, &batch, 0, i as i64).expect("append"));
                for f in log.take_dirty().expect("take_dirty") {
                    f.sync_data().expect("fdatasync");
                }
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
