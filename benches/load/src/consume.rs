//! Consumer side of the load generator (used by benches/vs_kafka).
//!
//! `consume`: reads `--records` records from every partition of a topic from the beginning
//! (assigned, no group: no rebalance time in the figure) and reports MB/s and records/s.
//!
//! `e2e`: produce-to-consume latency. One process produces to a fresh topic at a fixed rate,
//! each value starting with the nanoseconds since the process's start at which it was
//! enqueued, while a consumer thread in the same process (same clock) reads the topic from the
//! beginning and records now minus that stamp. Warm-up records go first until the consumer
//! has seen one, so its start-up is not measured.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::{pace, percentile, usage, Args};

/// The stamp of warm-up records, which the consumer does not time.
const WARM_UP: u64 = u64::MAX;

fn consumer(brokers: &str, topic: &str, partitions: i32) -> Result<BaseConsumer, KafkaError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Required by librdkafka's consumer; nothing is committed and no group is joined.
        .set("group.id", "icestream-loadgen")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

pub(crate) fn consume(args: &Args) -> ExitCode {
    let (Some(brokers), Some(topic)) = (args.get("--brokers"), args.get("--topic")) else {
        return usage();
    };
    let partitions = args.num("--partitions", 1).max(1) as i32;
    let records = args.num("--records", 200_000);
    let timeout = Duration::from_secs(args.num("--timeout-secs", 120));
    let c = match consumer(brokers, topic, partitions) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The clock starts at the first record, so connection and metadata set-up are not counted.
    let mut start: Option<Instant> = None;
    let deadline = Instant::now() + timeout;
    let (mut n, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    while n < records && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                start.get_or_insert_with(Instant::now);
                n += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            None => {}
        }
    }
    let elapsed = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let mb_s = if elapsed > 0.0 {
        bytes as f64 / elapsed / 1e6
    } else {
        0.0
    };
    eprintln!(
        "consume {topic} ({partitions} partitions): {n} records in {elapsed:.2} s: {mb_s:.1} MB/s, \
         {errors} errors"
    );
    println!(
        "{}",
        json!({
            "kind": "consume", "topic": topic, "partitions": partitions, "records": n,
            "bytes": bytes, "seconds": elapsed, "mb_per_s": mb_s,
            "records_per_s": if elapsed > 0.0 { n as f64 / elapsed } else { 0.0 },
            "errors": errors, "first_error": first_error,
        })
    );
    if n < records {
        eprintln!("consume: only {n} of {records} records before the {timeout:?} timeout");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

pub(crate) fn e2e(args: &Args) -> ExitCode {
    let (Some(brokers), Some(topic)) = (args.get("--brokers"), args.get("--topic")) else {
        return usage();
    };
    let partitions = args.num("--partitions", 1).max(1) as i32;
    let records = args.num("--records", 20_000);
    let rate = args.num("--rate", 1_000).max(1);
    let record_bytes = (args.num("--record-bytes", 1024) as usize).max(8);
    let acks = args.get("--acks").unwrap_or("all").to_string();
    let linger_ms = args.num("--linger-ms", 1);
    let t0 = Instant::now();

    let c = match consumer(brokers, topic, partitions) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot create consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    // Set by the consumer at the first warm-up record: from then on it is fetching at the
    // tail, so its own start-up (group-less assignment, offset lookup, the first long poll)
    // is not counted in the measured records' latency.
    let live = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let live = live.clone();
        thread::spawn(move || {
            let mut lat_us: Vec<u32> = Vec::with_capacity(records as usize);
            // A record seen twice (a refetch) counts once, keyed by partition and offset.
            let mut seen: HashMap<(i32, i64), ()> = HashMap::new();
            while (lat_us.len() as u64) < records && !done.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let now = t0.elapsed().as_nanos() as u64;
                    let Some(p) = m.payload().filter(|p| p.len() >= 8) else {
                        continue;
                    };
                    if seen.insert((m.partition(), m.offset()), ()).is_some() {
                        continue;
                    }
                    let sent = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
                    if sent == WARM_UP {
                        live.store(true, Ordering::Relaxed);
                        continue;
                    }
                    lat_us.push((now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
                }
            }
            lat_us
        })
    };

    let producer: BaseProducer<DefaultProducerContext> = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", &acks)
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "none")
        .set("message.timeout.ms", "60000")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot create producer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut payload = vec![b'x'; record_bytes];
    payload[..8].copy_from_slice(&WARM_UP.to_le_bytes());
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    while !live.load(Ordering::Relaxed) {
        if Instant::now() > warm_deadline {
            eprintln!("e2e: the consumer saw no warm-up record within 60 s");
            return ExitCode::FAILURE;
        }
        let rec = BaseRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(&payload[..]);
        if let Err((e, _)) = producer.send(rec) {
            eprintln!("warm-up produce failed: {e}");
            return ExitCode::FAILURE;
        }
        producer.poll(Duration::from_millis(20));
    }
    let start = Instant::now();
    for i in 0..records {
        pace(&producer, start, i, rate);
        let stamp = t0.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&stamp.to_le_bytes());
        let mut rec = BaseRecord::<(), [u8]>::to(topic)
            .partition((i % partitions as u64) as i32)
            .payload(&payload[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    eprintln!("produce failed: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(60));
    // The consumer gets a bounded time to catch up after the last send.
    let wait_until = Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() && Instant::now() < wait_until {
        thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::Relaxed);
    let mut lat = reader.join().expect("consumer thread");
    lat.sort_unstable();
    let got = lat.len() as u64;
    eprintln!(
        "e2e {topic} ({partitions} partitions, {rate}/s, acks={acks}): {got}/{records} records, \
         p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9)
    );
    println!(
        "{}",
        json!({
            "kind": "e2e", "topic": topic, "partitions": partitions, "rate": rate, "acks": acks,
            "linger_ms": linger_ms, "records": records, "received": got,
            "latency_ms": {"p50": percentile(&lat, 50.0), "p99": percentile(&lat, 99.0),
                           "p999": percentile(&lat, 99.9),
                           "max": lat.last().map(|&v| v as f64 / 1000.0)},
        })
    );
    if got < records {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
