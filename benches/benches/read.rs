//! Read path of a 256 MiB log of 16 KiB batches (16 records of 1 KiB), 128 MiB segments:
//! sequential 1 MiB reads from the start (wrapping at the end), and random offset lookups
//! (one batch per read). The log is written and fdatasync'ed once before measuring; reads
//! are served from the page cache, as a consumer close to the tail would be.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use engine::log::{batch, LogConfig, PartitionLog};
use icestream_benches::{bench_batch, next_offset_after, XorShift};

const LOG_BYTES: usize = 256 << 20;
const READ_BYTES: usize = 1 << 20;

fn read(c: &mut Criterion) {
    let batch = bench_batch();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).expect("open log");
    let h = batch::validate(&batch).expect("valid");
    let mut written = 0;
    while written < LOG_BYTES {
        log.append(&h, &batch, 0, 0).expect("append");
        written += batch.len();
    }
    for f in log.take_dirty().expect("take_dirty") {
        f.sync_data().expect("fdatasync");
    }
    let end = log.next_offset();
    eprintln!(
        "read bench: log of {} MiB, {} segments, {} records",
        log.size_bytes() >> 20,
        log.segment_count(),
        end
    );

    let mut g = c.benchmark_group("read");
    g.measurement_time(Duration::from_secs(3));

    // Sequential 1 MiB reads (whole batches up to 1 MiB) from offset 0 to the end, then wrap.
    let first = log.read(0, READ_BYTES, end).expect("read").expect("data");
    g.throughput(Throughput::Bytes(first.len() as u64));
    let mut offset = 0i64;
    g.bench_function("sequential_1MiB", |b| {
        b.iter(|| {
            let chunk = log
                .read(offset, READ_BYTES, end)
                .expect("read")
                .expect("data");
            offset = next_offset_after(&chunk).expect("batches");
            if offset >= end {
                offset = 0;
            }
            black_box(chunk)
        })
    });

    // Random offset lookups: index search + one batch (16 KiB) read.
    g.throughput(Throughput::Bytes(batch.len() as u64));
    let mut rng = XorShift::new(0x1ce_57ea);
    g.bench_function("random_lookup_16KiB", |b| {
        b.iter(|| {
            let off = rng.below(end as u64) as i64;
            black_box(
                log.read(off, batch.len(), end)
                    .expect("read")
                    .expect("data"),
            )
        })
    });
    g.finish();
    drop(log);
    drop(dir);
}

criterion_group!(benches, read);
criterion_main!(benches);
