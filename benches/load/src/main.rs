//! Load generator for the Icestream load benchmark.
//!
//! `produce`: a librdkafka producer (acks=all unless `--acks 1`) sends fixed-size records to a
//! topic as fast as the broker acknowledges them (or at a fixed `--rate`), with at most
//! `--window` messages outstanding, and reports MB/s, records/s and the per-message latency
//! from enqueue to delivery report. `--idempotence` turns on `enable.idempotence`;
//! `--transactional-id ID` makes it a transactional producer that commits every `--commit-ms`
//! (100) after each begin (flush, then commit, as benches/transactions.py); `--max-in-flight N`
//! sets `max.in.flight.requests.per.connection` (librdkafka's default, 1,000,000, unless
//! idempotent, which caps it at 5).
//!
//! `disk`: the disk's own sequential write + fdatasync throughput, in the given directory:
//! appends `--total-bytes` in chunks of each `--chunk-bytes`, one fdatasync per chunk (what a
//! broker flushing that many bytes per fdatasync would at best achieve).
//!
//! `create-topics` and `delete-topics` (src/admin.rs), `consume` and `e2e` (src/consume.rs):
//! topics created and deleted through the admin API, consume throughput, and
//! produce-to-consume latency at a fixed rate (benches/vs_kafka drives them).
//!
//! All print one JSON object per result on stdout and a readable line on stderr.

mod admin;
mod consume;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde_json::json;

pub(crate) fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  icestream-loadgen produce --brokers H:P --topic T --partitions N \
         [--records N] [--duration-secs S] [--record-bytes B] [--window M] [--linger-ms L] \
         [--acks all|1] [--rate R] [--idempotence] [--transactional-id ID] [--commit-ms MS] \
         [--max-in-flight N]\n  \
         icestream-loadgen consume --brokers H:P --topic T --partitions N --records N \
         [--timeout-secs S]\n  \
         icestream-loadgen e2e --brokers H:P --topic T --partitions N --rate R --records N \
         [--record-bytes B] [--acks all|1] [--linger-ms L]\n  \
         icestream-loadgen create-topics --brokers H:P [--replication-factor R] \
         [--config k=v,...] NAME:PARTITIONS...\n  \
         icestream-loadgen delete-topics --brokers H:P NAME...\n  \
         icestream-loadgen disk --dir D --total-bytes N --chunk-bytes B[,B...]"
    );
    ExitCode::from(2)
}

pub(crate) struct Args(Vec<String>);

impl Args {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(String::as_str)
    }
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    pub(crate) fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
            })
            .unwrap_or(default)
    }
    /// The arguments after the command that are neither a flag nor a flag's value (every flag
    /// of `create-topics` and `delete-topics` takes a value).
    pub(crate) fn positional(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 1;
        while i < self.0.len() {
            if self.0[i].starts_with("--") {
                i += 2;
            } else {
                out.push(self.0[i].clone());
                i += 1;
            }
        }
        out
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        return usage();
    };
    let args = Args(argv);
    match cmd.as_str() {
        "produce" => produce(&args),
        "disk" => disk(&args),
        "consume" => consume::consume(&args),
        "e2e" => consume::e2e(&args),
        "create-topics" => admin::create_topics(&args, &args.positional()),
        "delete-topics" => admin::delete_topics(&args, &args.positional()),
        _ => usage(),
    }
}

/// Delivery reports land here, on the thread that polls the producer.
struct Ctx {
    t0: Instant,
    /// Enqueue-to-delivery latency of each acknowledged message, in microseconds.
    lat_us: Mutex<Vec<u32>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    /// Nanoseconds from `t0` at which the message was enqueued.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued_ns: usize) {
        match result {
            Ok(_) => {
                let us =
                    (self.t0.elapsed().as_nanos() as u64).saturating_sub(enqueued_ns as u64) / 1000;
                self.lat_us
                    .lock()
                    .unwrap()
                    .push(us.min(u32::MAX as u64) as u32);
            }
            Err((e, _)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn produce(args: &Args) -> ExitCode {
    let (Some(brokers), Some(topic)) = (args.get("--brokers"), args.get("--topic")) else {
        return usage();
    };
    let partitions = args.num("--partitions", 1).max(1) as i32;
    let records = args.num("--records", 200_000);
    let duration = Duration::from_secs(args.num("--duration-secs", 20));
    let record_bytes = args.num("--record-bytes", 1024) as usize;
    let window = args.num("--window", 16_384);
    let linger_ms = args.num("--linger-ms", 5);
    let acks = args.get("--acks").unwrap_or("all").to_string();
    // Records per second; 0 = as fast as acknowledged (bounded by the window).
    let rate = args.num("--rate", 0);

    let txn_id = args.get("--transactional-id").map(str::to_string);
    let idempotence = args.flag("--idempotence") || txn_id.is_some();
    let commit_every = Duration::from_millis(args.num("--commit-ms", 100));
    let max_in_flight = args.get("--max-in-flight").map(str::to_string);

    let ctx = Ctx {
        t0: Instant::now(),
        lat_us: Mutex::new(Vec::with_capacity(records as usize)),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("acks", &acks)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", (window * 2).to_string())
        .set("queue.buffering.max.kbytes", "2097151")
        .set("message.timeout.ms", "60000")
        .set("enable.idempotence", idempotence.to_string());
    if let Some(id) = &txn_id {
        cfg.set("transactional.id", id)
            .set("transaction.timeout.ms", "60000");
    }
    if let Some(n) = &max_in_flight {
        cfg.set("max.in.flight.requests.per.connection", n);
    }
    let producer: BaseProducer<Ctx> = match cfg.create_with_context(ctx) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot create producer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let txn_timeout = Duration::from_secs(60);
    if txn_id.is_some() {
        if let Err(e) = producer.init_transactions(txn_timeout) {
            eprintln!("init_transactions failed: {e}");
            return ExitCode::FAILURE;
        }
        if let Err(e) = producer.begin_transaction() {
            eprintln!("begin_transaction failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let payload = vec![b'x'; record_bytes];

    // Warm-up: metadata, connections, topic leaders; not measured.
    for i in 0..(100 * partitions as usize) {
        send(&producer, topic, (i % partitions as usize) as i32, &payload);
    }
    if let Err(e) = producer.flush(Duration::from_secs(30)) {
        eprintln!("warm-up flush failed: {e}");
        return ExitCode::FAILURE;
    }
    let mut commits_us: Vec<u32> = Vec::new();
    if txn_id.is_some() {
        if let Err(e) = end_transaction(&producer, txn_timeout, None) {
            eprintln!("warm-up commit failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let warm_errors = producer.context().errors.swap(0, Ordering::Relaxed);
    if warm_errors > 0 {
        eprintln!(
            "warm-up: {warm_errors} deliveries failed: {}",
            producer
                .context()
                .first_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    producer.context().lat_us.lock().unwrap().clear();

    let start = Instant::now();
    let mut sent = 0u64;
    let mut txn_began = start;
    while sent < records && start.elapsed() < duration {
        if txn_id.is_some() && txn_began.elapsed() >= commit_every {
            if let Err(e) = end_transaction(&producer, txn_timeout, Some(&mut commits_us)) {
                eprintln!(
                    "commit failed after {} transactions, {sent} records sent, {} in flight: {e}",
                    commits_us.len(),
                    producer.in_flight_count()
                );
                return ExitCode::FAILURE;
            }
            txn_began = Instant::now();
        }
        while producer.in_flight_count() as u64 >= window {
            producer.poll(Duration::from_millis(1));
        }
        if rate > 0 {
            pace(&producer, start, sent, rate);
        }
        send(
            &producer,
            topic,
            (sent % partitions as u64) as i32,
            &payload,
        );
        sent += 1;
        if sent.is_multiple_of(64) {
            producer.poll(Duration::ZERO);
        }
    }
    if txn_id.is_some() {
        // The last transaction: committed records only count once it is.
        let mut last = Vec::new();
        if let Err(e) = end_transaction(&producer, txn_timeout, Some(&mut last)) {
            eprintln!("final commit failed: {e}");
            return ExitCode::FAILURE;
        }
        commits_us.extend(last);
    } else if let Err(e) = producer.flush(Duration::from_secs(60)) {
        eprintln!("flush failed: {e}");
    }
    let elapsed = start.elapsed().as_secs_f64();
    commits_us.sort_unstable();

    let ctx = producer.context();
    let mut lat = std::mem::take(&mut *ctx.lat_us.lock().unwrap());
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let errors = ctx.errors.load(Ordering::Relaxed);
    let bytes = ok * record_bytes as u64;
    let mb_s = bytes as f64 / elapsed / 1e6;
    let out = json!({
        "kind": "produce",
        "topic": topic,
        "partitions": partitions,
        "record_bytes": record_bytes,
        "window": window,
        "linger_ms": linger_ms,
        "acks": acks,
        "rate": rate,
        "idempotence": idempotence,
        "transactional": txn_id.is_some(),
        "max_in_flight": max_in_flight,
        "transactions": commits_us.len(),
        "flush_commit_ms": {
            "p50": percentile(&commits_us, 50.0),
            "p99": percentile(&commits_us, 99.0),
        },
        "sent": sent,
        "acked": ok,
        "errors": errors,
        "first_error": ctx.first_error.lock().unwrap().clone(),
        "seconds": elapsed,
        "bytes": bytes,
        "mb_per_s": mb_s,
        "records_per_s": ok as f64 / elapsed,
        "latency_ms": {
            "p50": percentile(&lat, 50.0),
            "p99": percentile(&lat, 99.0),
            "p999": percentile(&lat, 99.9),
            "max": lat.last().map(|&v| v as f64 / 1000.0),
        },
    });
    eprintln!(
        "produce {topic} ({partitions} partitions): {ok} acked, {errors} failed in {elapsed:.2} s: \
         {mb_s:.1} MB/s, {:.0} records/s, latency p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms",
        ok as f64 / elapsed,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9)
    );
    println!("{out}");
    if errors > 0 || ok == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Waits (serving delivery reports) until record number `sent` is due at `rate` records/s
/// after `start`: a fixed schedule, so a stall is followed by a catch-up burst, as an
/// open-loop client would send.
pub(crate) fn pace<C: ProducerContext>(
    producer: &BaseProducer<C>,
    start: Instant,
    sent: u64,
    rate: u64,
) {
    let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let wait = due - now;
        if wait >= Duration::from_millis(1) {
            producer.poll(Duration::from_millis(1));
        } else {
            // librdkafka's poll timeout has millisecond resolution: a shorter one would spin,
            // and a spinning client thread starves librdkafka's own threads (and the e2e
            // consumer) on the client's core. Sleep instead, then serve delivery reports.
            std::thread::sleep(wait);
            producer.poll(Duration::ZERO);
        }
    }
}

/// Ends the open transaction (flush, then commit: so that delivery reports are served here)
/// and begins the next one; pushes the time both took to `took_us`.
fn end_transaction(
    producer: &BaseProducer<Ctx>,
    timeout: Duration,
    took_us: Option<&mut Vec<u32>>,
) -> Result<(), KafkaError> {
    let t = Instant::now();
    producer.flush(timeout)?;
    producer.commit_transaction(timeout)?;
    if let Some(v) = took_us {
        v.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    producer.begin_transaction()
}

/// Enqueues one message, waiting on delivery reports while librdkafka's queue is full.
fn send(producer: &BaseProducer<Ctx>, topic: &str, partition: i32, payload: &[u8]) {
    let mut rec = BaseRecord::<(), [u8], usize>::with_opaque_to(
        topic,
        producer.context().t0.elapsed().as_nanos() as usize,
    )
    .partition(partition)
    .payload(payload);
    loop {
        match producer.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce failed: {e}"),
        }
    }
}

fn disk(args: &Args) -> ExitCode {
    let (Some(dir), Some(chunks)) = (args.get("--dir"), args.get("--chunk-bytes")) else {
        return usage();
    };
    let total = args.num("--total-bytes", 256 << 20);
    let dir = PathBuf::from(dir);
    for chunk in chunks.split(',') {
        let chunk: usize = chunk.trim().parse().expect("--chunk-bytes: numbers");
        let n = (total as usize).div_ceil(chunk).max(1);
        let path = dir.join(format!("disk-baseline-{chunk}.bin"));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .expect("create baseline file");
        let buf = vec![0x5au8; chunk];
        let mut sync_us = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            f.write_all(&buf).expect("write");
            let t = Instant::now();
            f.sync_data().expect("fdatasync");
            sync_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        let elapsed = start.elapsed().as_secs_f64();
        drop(f);
        let _ = fs::remove_file(&path);
        sync_us.sort_unstable();
        let bytes = (n * chunk) as u64;
        let mb_s = bytes as f64 / elapsed / 1e6;
        eprintln!(
            "disk: {chunk} B per fdatasync: {mb_s:.1} MB/s ({n} syncs, fdatasync p50 {:.2} ms p99 {:.2} ms)",
            percentile(&sync_us, 50.0),
            percentile(&sync_us, 99.0)
        );
        println!(
            "{}",
            json!({
                "kind": "disk",
                "chunk_bytes": chunk,
                "bytes": bytes,
                "syncs": n,
                "seconds": elapsed,
                "mb_per_s": mb_s,
                "fdatasync_ms": {"p50": percentile(&sync_us, 50.0), "p99": percentile(&sync_us, 99.0)},
            })
        );
    }
    ExitCode::SUCCESS
}
