//! `create-topics`: creates topics through the Kafka CreateTopics API (librdkafka's admin
//! client), so the benchmark creates them the same way on every broker it compares, all in one
//! request, and waits until each has a leader for every partition.
//!
//! `delete-topics`: deletes topics through the DeleteTopics API the same way, in one request,
//! and waits until metadata no longer lists any of them.

use std::future::Future;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{usage, Args};

/// Wakes the thread that waits in `block_on`.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs one future to completion on this thread (the admin client's futures are driven by
/// librdkafka's own threads; this only waits for them).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// `create-topics --brokers B --replication-factor R [--config k=v,...] name:partitions ...`
pub(crate) fn create_topics(args: &Args, specs: &[String]) -> ExitCode {
    let Some(brokers) = args.get("--brokers") else {
        return usage();
    };
    let rf = args.num("--replication-factor", 1) as i32;
    let configs: Vec<(String, String)> = args
        .get("--config")
        .unwrap_or("")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut topics = Vec::new();
    for spec in specs {
        let Some((name, p)) = spec.split_once(':') else {
            eprintln!("create-topics: '{spec}' is not name:partitions");
            return ExitCode::from(2);
        };
        let Ok(p) = p.parse::<i32>() else {
            eprintln!("create-topics: '{spec}': partitions not a number");
            return ExitCode::from(2);
        };
        topics.push((name.to_string(), p));
    }
    let (cfg, admin) = match admin_client(brokers) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(n, p)| {
            configs.iter().fold(
                NewTopic::new(n, *p, TopicReplication::Fixed(rf)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    match block_on(admin.create_topics(&new, &opts)) {
        Ok(results) => {
            for r in results {
                if let Err((name, code)) = r {
                    eprintln!("create-topics: {name}: {code}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Err(e) => {
            eprintln!("create-topics: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Until metadata names a leader for every partition of every topic.
    let probe = match metadata_client(&cfg) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, p) in &topics {
        loop {
            let ready = probe
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .and_then(|md| {
                    md.topics().first().map(|t| {
                        t.error().is_none()
                            && t.partitions().len() == *p as usize
                            && t.partitions().iter().all(|x| x.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("create-topics: {name} has no leader for every partition after 60 s");
                return ExitCode::FAILURE;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("created {} topics (replication factor {rf})", topics.len());
    ExitCode::SUCCESS
}

/// How long `delete-topics` waits for metadata to stop listing the deleted topics.
const DELETE_WAIT: Duration = Duration::from_secs(60);

/// `delete-topics --brokers B NAME...`
pub(crate) fn delete_topics(args: &Args, names: &[String]) -> ExitCode {
    let Some(brokers) = args.get("--brokers") else {
        return usage();
    };
    if names.is_empty() {
        return usage();
    }
    let (cfg, admin) = match admin_client(brokers) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut failed = false;
    match block_on(admin.delete_topics(&refs, &opts)) {
        Ok(results) => {
            for r in results {
                if let Err((name, code)) = r {
                    eprintln!("delete-topics: {name}: {code}");
                    failed = true;
                }
            }
        }
        Err(e) => {
            eprintln!("delete-topics: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    // Until metadata of all topics (not of the named ones: a request naming a topic could
    // create it again where auto-creation is on) lists none of them.
    let probe = match metadata_client(&cfg) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let t0 = Instant::now();
    let mut left: Vec<&str> = refs.clone();
    loop {
        if let Ok(md) = probe.fetch_metadata(None, Duration::from_secs(5)) {
            let listed: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
            for name in left.iter().filter(|n| !listed.contains(n)) {
                println!("deleted {name} ({:.1} s)", t0.elapsed().as_secs_f64());
            }
            left.retain(|n| listed.contains(n));
        }
        if left.is_empty() {
            return ExitCode::SUCCESS;
        }
        if t0.elapsed() > DELETE_WAIT {
            eprintln!(
                "delete-topics: metadata still lists {} after {} s",
                left.join(", "),
                DELETE_WAIT.as_secs()
            );
            return ExitCode::FAILURE;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// An admin client for `brokers` and the config it was made from; on failure, says why and
/// returns the exit code.
fn admin_client(
    brokers: &str,
) -> Result<(ClientConfig, AdminClient<DefaultClientContext>), ExitCode> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    match cfg.create() {
        Ok(a) => Ok((cfg, a)),
        Err(e) => {
            eprintln!("cannot create admin client: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// A consumer used only to read metadata; on failure, says why and returns the exit code.
fn metadata_client(cfg: &ClientConfig) -> Result<BaseConsumer, ExitCode> {
    cfg.create().map_err(|e| {
        eprintln!("cannot create metadata client: {e}");
        ExitCode::FAILURE
    })
}
