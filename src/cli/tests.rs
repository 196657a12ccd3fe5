//! Tests of the CLI against a real Icestream broker started in-process on loopback: version
//! negotiation, produce and fetch round trips, offsets, topic commands and error lines.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use tokio::net::TcpListener;

use super::batches;
use super::client::Client;
use super::offsets::{list_offsets, topic_info, EARLIEST, LATEST};
use super::produce::{Acks, CompressionArg};

/// Starts a broker on an ephemeral port with a fresh data directory.
async fn start() -> (String, Arc<engine::Broker>) {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let config = engine::BrokerConfig::for_tests(dir);
    let broker = engine::net::start_broker(config, engine::IoBackend::Auto, None, None)
        .await
        .expect("broker starts");
    (broker.kafka_addr.to_string(), broker)
}

fn name(s: &str) -> TopicName {
    TopicName(kafka_protocol::protocol::StrBytes::from_string(
        s.to_string(),
    ))
}

async fn create(client: &mut Client, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_topics(vec![
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]);
    let resp = client.any().send(&req).await.expect("create");
    assert_eq!(resp.topics[0].error_code, 0);
}

#[tokio::test]
async fn produce_then_fetch_round_trip() {
    {
        let (addr, _broker) = start().await;
        let mut client = Client::connect_to(&addr, Default::default())
            .await
            .expect("connect");
        create(&mut client, "t", 3).await;
        let mut info = topic_info(&mut client, "t", "produce to")
            .await
            .expect("info");
        assert_eq!(info.partitions.len(), 3);

        let values = vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")];
        let key = Bytes::from_static(b"21");
        let partition = super::partitioner::partition_for_key(b"21", 3);
        for expect_base in [0, 2] {
            let batch =
                super::produce::encode_batch(&values, Some(&key), CompressionArg::Zstd.into())
                    .expect("encode");
            let off =
                super::produce::send_batch(&mut client, &mut info, partition, batch, Acks::All)
                    .await
                    .expect("produce");
            assert_eq!(off, Some(expect_base));
        }
        let hw = list_offsets(&mut client, "t", &info.partitions, LATEST)
            .await
            .expect("list");
        assert_eq!(hw.get(&partition), Some(&Ok(4)));
        let start = list_offsets(&mut client, "t", &info.partitions, EARLIEST)
            .await
            .expect("list");
        assert_eq!(start.get(&partition), Some(&Ok(0)));

        // Fetch from the middle of the first batch: the client must skip offset 0.
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_topics(vec![
                kafka_protocol::messages::fetch_request::FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        kafka_protocol::messages::fetch_request::FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(1)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let resp = client
            .node(0)
            .await
            .expect("node")
            .send(&req)
            .await
            .expect("fetch");
        let raw = resp.responses[0].partitions[0]
            .records
            .clone()
            .expect("records");
        let got: Vec<(i64, Bytes)> = batches::split(raw)
            .expect("split")
            .iter()
            .flat_map(|b| batches::decode(b).expect("decode"))
            .filter(|r| r.offset >= 1)
            .map(|r| (r.offset, r.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, values[1].clone()),
                (2, values[0].clone()),
                (3, values[1].clone())
            ]
        );
    }
}

#[tokio::test]
async fn consume_stops_after_n_records() {
    let (addr, _broker) = start().await;
    let mut client = Client::connect_to(&addr, Default::default())
        .await
        .expect("connect");
    create(&mut client, "c", 1).await;
    let mut info = topic_info(&mut client, "c", "produce to")
        .await
        .expect("info");
    let batch = super::produce::encode_batch(
        &[Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        None,
        CompressionArg::None.into(),
    )
    .expect("encode");
    super::produce::send_batch(&mut client, &mut info, 0, batch, Acks::Leader)
        .await
        .expect("produce");
    let args = super::ClientArgs {
        brokers: addr.clone(),
        admin_url: "http://127.0.0.1:1".into(),
        schema_registry_url: "http://127.0.0.1:1".into(),
        format: super::Format::Json,
        ..super::ClientArgs::defaults()
    };
    let run = super::consume::run(
        &args,
        "c",
        None,
        super::consume::StartOffset::At(1),
        Some(1),
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), run)
        .await
        .expect("consume finished")
        .expect("consume ok");
    // An explicit offset past the end is the user's mistake, said in one line.
    let run = super::consume::run(
        &args,
        "c",
        None,
        super::consume::StartOffset::At(9),
        Some(1),
    );
    let e = run.await.expect_err("out of range").to_string();
    assert!(e.starts_with("offset 9 is out of range for c[0]"), "{e}");
}

#[tokio::test]
async fn errors_are_one_actionable_line() {
    let (addr, _broker) = start().await;
    let mut client = Client::connect_to(&addr, Default::default())
        .await
        .expect("connect");
    let e = topic_info(&mut client, "missing", "describe")
        .await
        .expect_err("missing topic")
        .to_string();
    assert_eq!(
        e,
        "topic 'missing' does not exist (UNKNOWN_TOPIC_OR_PARTITION): list topics with 'icestream topic list'"
    );
    // Unsupported API: the broker does not advertise delegation tokens (not implemented).
    let e = client
        .any()
        .version::<CreateDelegationTokenRequest>()
        .expect_err("unsupported")
        .to_string();
    assert!(e.contains("does not support CreateDelegationToken"), "{e}");

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let e = Client::connect_to(&dead, Default::default())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert_eq!(
        e,
        format!("cannot reach broker at {dead} (connection refused): is 'icestream serve' running? set --brokers")
    );

    let args = super::ClientArgs {
        brokers: addr,
        admin_url: format!("http://{dead}"),
        schema_registry_url: "http://127.0.0.1:1".into(),
        format: super::Format::Table,
        ..super::ClientArgs::defaults()
    };
    let e = super::cluster::health(&args)
        .await
        .expect_err("down")
        .to_string();
    assert!(
        e.starts_with("cannot reach the admin API at http://"),
        "{e}"
    );
    assert!(!e.contains('\n'));
}

#[tokio::test]
async fn health_reads_the_real_admin_api() {
    let (addr, broker) = start().await;
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    tokio::spawn(engine::admin::serve(admin, broker));
    let args = super::ClientArgs {
        brokers: addr,
        admin_url: format!("http://{admin_addr}/"),
        schema_registry_url: "http://127.0.0.1:1".into(),
        format: super::Format::Json,
        ..super::ClientArgs::defaults()
    };
    super::cluster::health(&args).await.expect("healthy");
}

#[tokio::test]
async fn topic_commands_run_against_a_broker() {
    let (addr, broker) = start().await;
    for format in [super::Format::Table, super::Format::Json] {
        let args = super::ClientArgs {
            brokers: addr.clone(),
            admin_url: "http://127.0.0.1:1".into(),
            schema_registry_url: "http://127.0.0.1:1".into(),
            format,
            ..super::ClientArgs::defaults()
        };
        let topic = format!("{format:?}");
        super::topic::create(&args, &topic, 2, -1, &["retention.ms=1000".into()])
            .await
            .expect("create");
        let e = super::topic::create(&args, &topic, 2, -1, &[])
            .await
            .expect_err("exists")
            .to_string();
        assert!(e.contains("already exists (TOPIC_ALREADY_EXISTS"), "{e}");
        super::topic::list(&args).await.expect("list");
        super::topic::describe(&args, &topic)
            .await
            .expect("describe");
        super::cluster::info(&args).await.expect("info");
    }
    assert_eq!(broker.topics.all().len(), 2);
}

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The client options belong to the client commands: given before the command (as they
/// always could be) or after it, they reach it; `serve` neither shows nor takes them.
#[test]
fn client_options_belong_to_the_client_commands() {
    use clap::{CommandFactory, Parser};
    let parse = |v: &[&str]| crate::Cli::try_parse_from(super::hoist_client_options(argv(v)));
    let before = parse(&[
        "icestream",
        "--brokers",
        "h:1",
        "--format=json",
        "topic",
        "list",
    ])
    .unwrap();
    let crate::Command::Topic(c) = before.command else {
        panic!("not a topic command")
    };
    assert_eq!(c.args.brokers, "h:1");
    assert_eq!(c.args.format, super::Format::Json);
    let after = parse(&[
        "icestream",
        "cluster",
        "status",
        "--admin-url",
        "http://h:2",
    ])
    .unwrap();
    let crate::Command::Cluster(c) = after.command else {
        panic!("not a cluster command")
    };
    assert_eq!(c.args.admin_url, "http://h:2");
    let group = parse(&["icestream", "group", "--brokers", "h:3", "list"]).unwrap();
    let crate::Command::Group(c) = group.command else {
        panic!("not a group command")
    };
    assert_eq!(c.args.brokers, "h:3");

    let mut cmd = crate::Cli::command();
    let help = cmd
        .find_subcommand_mut("serve")
        .unwrap()
        .render_long_help()
        .to_string();
    // serve has TLS file flags of its own (the server's certificate), same names.
    let serves_too = ["--tls-ca-file", "--tls-cert-file", "--tls-key-file"];
    for o in super::CLIENT_OPTIONS
        .iter()
        .chain(&super::CLIENT_FLAGS)
        .filter(|o| !serves_too.contains(o))
    {
        assert!(!help.contains(&format!("{o} ")), "serve --help shows {o}");
    }
    let tls = parse(&[
        "icestream",
        "--tls",
        "--tls-ca-file",
        "ca.pem",
        "--sasl-mechanism",
        "SCRAM-SHA-256",
        "topic",
        "list",
    ])
    .unwrap();
    let crate::Command::Topic(c) = tls.command else {
        panic!("not a topic command")
    };
    assert!(c.args.tls);
    assert_eq!(c.args.tls_ca_file, Some("ca.pem".into()));
    assert_eq!(
        c.args.sasl_mechanism,
        Some(super::sasl::SaslMechanism::ScramSha256)
    );
    let err = parse(&["icestream", "--brokers", "h:1", "serve"])
        .err()
        .unwrap();
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
}

#[test]
fn hoisting_leaves_other_command_lines_alone() {
    let same = |v: &[&str]| assert_eq!(super::hoist_client_options(argv(v)), argv(v));
    same(&["icestream", "topic", "list", "--brokers", "h:1"]);
    same(&["icestream", "--help"]);
    same(&["icestream", "serve", "--data-dir", "d"]);
    assert_eq!(
        super::hoist_client_options(argv(&[
            "icestream",
            "--schema-registry-url",
            "http://r",
            "schema",
            "list"
        ])),
        argv(&[
            "icestream",
            "schema",
            "--schema-registry-url",
            "http://r",
            "list"
        ])
    );
}

/// Leaves a transaction open on `topic`[0] that no coordinator knows: a producer id from
/// InitProducerId without a transactional id, and one transactional batch appended straight to
/// the partition (a client's Produce would be refused: the leader asks the coordinator first,
/// KIP-890). Returns the producer id and the batch's offset.
async fn open_transaction(
    client: &mut Client,
    broker: &engine::Broker,
    topic: &str,
    epoch: i16,
) -> (i64, i64) {
    let pid = client
        .any()
        .send(&InitProducerIdRequest::default().with_transaction_timeout_ms(60_000))
        .await
        .expect("init producer id")
        .producer_id
        .0;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let batch = engine::log::control::encode_transactional(
        &[engine::log::batch::NewRecord {
            value: Some(Bytes::from_static(b"in-txn")),
            timestamp: now,
            ..Default::default()
        }],
        pid,
        epoch,
    )
    .expect("encode");
    let batches = engine::log::batch::split_batches(&batch).expect("split");
    let handle = broker
        .topics
        .get(topic)
        .expect("topic")
        .partition(0)
        .expect("partition")
        .clone();
    let ok = handle
        .ask(|reply| engine::partition::Cmd::Produce {
            batches,
            reply,
            acks_all: true,
            verify: None,
        })
        .await
        .expect("append");
    (pid, ok.base_offset)
}

fn args_for(addr: &str, format: super::Format) -> super::ClientArgs {
    super::ClientArgs {
        brokers: addr.to_string(),
        admin_url: "http://127.0.0.1:1".into(),
        schema_registry_url: "http://127.0.0.1:1".into(),
        format,
        ..super::ClientArgs::defaults()
    }
}

/// describe-producers, find-hanging and abort against a real partition holding an open
/// transaction (DescribeProducers and WriteTxnMarkers are the partition leader's; the
/// coordinator side, ListTransactions, may not be served by this broker yet).
#[tokio::test]
async fn abort_ends_a_transaction_left_open_on_a_partition() {
    use super::output::capture;
    use super::transaction::{self, AbortWhich};
    let (addr, broker) = start().await;
    let mut client = Client::connect_to(&addr, Default::default())
        .await
        .expect("connect");
    create(&mut client, "tx", 1).await;
    let mut info = topic_info(&mut client, "tx", "produce to")
        .await
        .expect("info");
    let plain = super::produce::encode_batch(
        &[Bytes::from_static(b"before")],
        None,
        CompressionArg::None.into(),
    )
    .expect("encode");
    super::produce::send_batch(&mut client, &mut info, 0, plain, Acks::All)
        .await
        .expect("produce");
    let (pid, start) = open_transaction(&mut client, &broker, "tx", 0).await;
    assert_eq!(start, 1);

    let json = args_for(&addr, super::Format::Json);
    let table = args_for(&addr, super::Format::Table);
    let out = capture(transaction::describe_producers(&json, "tx", 0))
        .await
        .expect("describe producers");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mine = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["producer_id"] == pid)
        .expect("the producer is listed");
    assert_eq!(mine["current_txn_start_offset"], 1);
    assert_eq!(mine["coordinator_epoch"], serde_json::Value::Null);
    let out = capture(transaction::describe_producers(&table, "tx", 0))
        .await
        .expect("describe producers");
    assert!(out.starts_with("PRODUCER-ID"), "{out}");

    // Younger than the timeout: not a candidate, so nothing to ask the coordinators.
    let out = capture(transaction::find_hanging(&json, Some("tx"), None, 900_000))
        .await
        .expect("find hanging");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );
    // Past a zero timeout it is a candidate; the coordinator never heard of this producer.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = capture(transaction::find_hanging(&json, Some("tx"), Some(0), 0)).await;
    if client.any().supports::<ListTransactionsRequest>() {
        let v: serde_json::Value = serde_json::from_str(&r.expect("find hanging")).unwrap();
        assert_eq!(v[0]["producer_id"], pid, "{v}");
        assert_eq!(v[0]["current_txn_start_offset"], 1, "{v}");
    } else {
        let e = r.expect_err("no coordinator API").to_string();
        assert!(
            e.starts_with("cannot ask the transaction coordinators"),
            "{e}"
        );
        assert!(e.contains("does not support ListTransactions"), "{e}");
        assert!(!e.contains('\n'));
    }

    let e = transaction::abort(&table, "tx", 0, AbortWhich::StartOffset(0))
        .await
        .expect_err("nothing open at 0")
        .to_string();
    assert!(
        e.starts_with("no transaction is open at offset 0 of tx[0]"),
        "{e}"
    );
    let e = transaction::abort(&table, "nope", 0, AbortWhich::StartOffset(1))
        .await
        .expect_err("no topic")
        .to_string();
    assert!(e.starts_with("topic 'nope' does not exist"), "{e}");
    let e = transaction::abort(&table, "tx", 3, AbortWhich::StartOffset(1))
        .await
        .expect_err("no partition")
        .to_string();
    assert!(e.starts_with("topic 'tx' has no partition 3"), "{e}");

    let out = capture(transaction::abort(
        &json,
        "tx",
        0,
        AbortWhich::StartOffset(1),
    ))
    .await
    .expect("abort");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["producer_id"], pid);
    assert_eq!(v["producer_epoch"], 0);
    assert_eq!(v["coordinator_epoch"], 0);
    let states = serde_json::from_str::<serde_json::Value>(
        &capture(transaction::describe_producers(&json, "tx", 0))
            .await
            .unwrap(),
    )
    .unwrap();
    let mine = states
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["producer_id"] == pid)
        .unwrap()
        .clone();
    assert_eq!(mine["current_txn_start_offset"], serde_json::Value::Null);
    assert_eq!(mine["coordinator_epoch"], 0);
    // Nothing open any more: no candidate, whatever the coordinators serve.
    let out = capture(transaction::find_hanging(&json, None, None, 0))
        .await
        .expect("find hanging");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );

    // A second transaction aborted by producer id with a newer coordinator epoch; then a
    // marker from an older coordinator epoch is refused with a line that says what to use.
    let pid2 = {
        let (p, s) = open_transaction(&mut client, &broker, "tx", 0).await;
        assert!(s > 1);
        p
    };
    let which = |c| AbortWhich::Producer {
        id: pid2,
        epoch: 0,
        coordinator_epoch: c,
    };
    capture(transaction::abort(&table, "tx", 0, which(5)))
        .await
        .expect("abort by producer id");
    let e = transaction::abort(&table, "tx", 0, which(3))
        .await
        .expect_err("stale coordinator epoch")
        .to_string();
    assert!(e.contains("TRANSACTION_COORDINATOR_FENCED"), "{e}");
    assert!(e.contains("coordinator epoch 3 is older"), "{e}");
}

#[test]
fn transaction_commands_parse() {
    use clap::Parser;
    let parse = |v: &[&str]| crate::Cli::try_parse_from(super::hoist_client_options(argv(v)));
    let cmd = |v: &[&str]| match parse(v).expect("parses").command {
        crate::Command::Transaction(c) => c.command,
        _ => panic!("not a transaction command"),
    };
    use super::transaction::TxnState;
    use super::TransactionCommand as T;
    assert!(matches!(
        cmd(&["icestream", "transaction", "list", "--state", "ongoing", "--state", "PrepareAbort", "--producer-id", "7"]),
        T::List { states, producer_ids } if states == vec![TxnState::Ongoing, TxnState::PrepareAbort] && producer_ids == vec![7]
    ));
    assert!(matches!(
        cmd(&["icestream", "--format", "json", "transaction", "describe", "tx-1"]),
        T::Describe { transactional_id } if transactional_id == "tx-1"
    ));
    assert!(matches!(
        cmd(&["icestream", "transaction", "find-hanging"]),
        T::FindHanging {
            topic: None,
            partition: None,
            max_transaction_timeout_ms: 900_000
        }
    ));
    assert!(matches!(
        cmd(&["icestream", "transaction", "find-hanging", "--topic", "t", "-p", "2", "--max-transaction-timeout-ms", "0"]),
        T::FindHanging { topic: Some(t), partition: Some(2), max_transaction_timeout_ms: 0 } if t == "t"
    ));
    assert!(matches!(
        cmd(&[
            "icestream",
            "transaction",
            "abort",
            "--topic",
            "t",
            "--partition",
            "0",
            "--start-offset",
            "5"
        ]),
        T::Abort {
            start_offset: Some(5),
            producer_id: None,
            ..
        }
    ));
    assert!(matches!(
        cmd(&[
            "icestream",
            "transaction",
            "abort",
            "--topic",
            "t",
            "-p",
            "0",
            "--producer-id",
            "9",
            "--producer-epoch",
            "2",
            "--coordinator-epoch",
            "0"
        ]),
        T::Abort {
            start_offset: None,
            producer_id: Some(9),
            producer_epoch: Some(2),
            coordinator_epoch: Some(0),
            ..
        }
    ));
    // Refused: a bad state, --partition without --topic, no way to pick the transaction,
    // both ways at once, a producer id without its epochs.
    for bad in [
        &["icestream", "transaction", "list", "--state", "open"][..],
        &[
            "icestream",
            "transaction",
            "find-hanging",
            "--partition",
            "1",
        ],
        &[
            "icestream",
            "transaction",
            "abort",
            "--topic",
            "t",
            "-p",
            "0",
        ],
        &[
            "icestream",
            "transaction",
            "abort",
            "--topic",
            "t",
            "-p",
            "0",
            "--start-offset",
            "1",
            "--producer-id",
            "9",
            "--producer-epoch",
            "2",
            "--coordinator-epoch",
            "0",
        ],
        &[
            "icestream",
            "transaction",
            "abort",
            "--topic",
            "t",
            "-p",
            "0",
            "--producer-id",
            "9",
        ],
        &[
            "icestream",
            "transaction",
            "abort",
            "--topic",
            "t",
            "-p",
            "0",
            "--start-offset",
            "1",
            "--producer-epoch",
            "2",
        ],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}
