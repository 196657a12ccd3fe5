//! `icestream transaction list|describe|describe-producers|find-hanging|abort`: Kafka
//! transactions through the Kafka API, as `kafka-transactions.sh` and `rpk cluster txn` do.
//!
//! A transaction lives in two places: its coordinator (the leader of the transactional id's
//! `__transaction_state` partition) knows its state and partitions; each partition's leader
//! knows which producers hold a transaction open there (DescribeProducers). A transaction
//! open on a partition that its coordinator does not know is *hanging*: nothing will ever
//! end it, and it holds the partition's last stable offset back, so read_committed
//! consumers stop there. `abort` ends one by writing the abort marker the coordinator would
//! have written.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, FindCoordinatorRequest,
    ListTransactionsRequest, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use serde_json::json;

use super::client::{text, Client, Connection};
use super::errors::{code_detail, code_name, hint, topic_error};
use super::offsets::topic_info;
use super::output::{emit, emit_json_pretty};
use super::table::{key_values, Table};
use super::{ClientArgs, Format};
use engine::topics::TRANSACTIONS_TOPIC;

/// Kafka's default `transaction.max.timeout.ms`: no transaction may stay open longer, so one
/// open longer than this is a candidate for hanging.
pub const DEFAULT_MAX_TIMEOUT_MS: i64 = 900_000;

/// FindCoordinator key type of a transactional id (0 is a group).
const KEY_TYPE_TRANSACTION: i8 = 1;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The version to speak: the negotiated one, capped where the CLI builds the older layout.
fn version_capped<R: Request>(conn: &Connection, cap: i16) -> Result<i16> {
    Ok(conn.version::<R>()?.min(cap))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A transaction state as Kafka names it on the wire (ListTransactions, DescribeTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn as_str(self) -> &'static str {
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

    /// Whether the coordinator is still working on the transaction: it will write its
    /// markers to every partition it lists (the ones a hanging check trusts).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TxnState::Ongoing
                | TxnState::PrepareCommit
                | TxnState::PrepareAbort
                | TxnState::PrepareEpochFence
        )
    }
}

impl std::str::FromStr for TxnState {
    type Err = String;
    /// Kafka's spelling, any case, with or without `_`/`-` (`ongoing`, `PREPARE_COMMIT`).
    fn from_str(s: &str) -> Result<Self, String> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        TxnState::ALL
            .into_iter()
            .find(|t| t.as_str().to_ascii_lowercase() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = TxnState::ALL.iter().map(|t| t.as_str()).collect();
                format!("'{s}' is not a transaction state: use {}", names.join(", "))
            })
    }
}

/// A transaction a partition's leader holds open for a producer (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTxn {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i32,
    /// -1 when no marker was written for this producer yet.
    pub coordinator_epoch: i32,
    pub start_offset: i64,
    /// Timestamp of the producer's last batch on the partition (ms).
    pub last_timestamp: i64,
}

/// A transaction as its coordinator describes it (DescribeTransactions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    /// As the coordinator spells it; an unknown spelling is not trusted to be open.
    pub state: String,
    pub partitions: BTreeSet<(String, i32)>,
}

/// Open long enough to be checked: open transactions younger than the longest timeout a
/// transaction may have are left alone, as `kafka-transactions.sh find-hanging` does.
pub fn past_timeout(t: &OpenTxn, now_ms: i64, max_timeout_ms: i64) -> bool {
    now_ms.saturating_sub(t.last_timestamp) > max_timeout_ms
}

/// Whether a coordinator still drives the transaction `t` holds open: one of the
/// transactions described for its producer id is ongoing (or preparing its markers) with
/// that partition in it.
pub fn coordinator_knows(t: &OpenTxn, known: &[KnownTxn]) -> bool {
    known.iter().any(|k| {
        k.producer_id == t.producer_id
            && k.state.parse::<TxnState>().is_ok_and(TxnState::is_open)
            && k.partitions.contains(&(t.topic.clone(), t.partition))
    })
}

/// The open transactions that are hanging: past the timeout and not known to any
/// coordinator. `known` holds what the coordinators said about the candidates' producer ids.
pub fn hanging<'a>(
    open: &'a [OpenTxn],
    known: &[KnownTxn],
    now_ms: i64,
    max_timeout_ms: i64,
) -> Vec<&'a OpenTxn> {
    open.iter()
        .filter(|t| past_timeout(t, now_ms, max_timeout_ms) && !coordinator_knows(t, known))
        .collect()
}

/// The broker nodes of the cluster.
async fn nodes(client: &mut Client) -> Result<Vec<i32>> {
    Ok(client
        .metadata(Some(&[]))
        .await?
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .collect())
}

/// One row of a ListTransactions answer, with the broker that coordinates it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub transactional_id: String,
    pub coordinator: i32,
    pub producer_id: i64,
    pub state: String,
}

/// ListTransactions on every broker: each coordinator lists only its own transactional ids.
/// `strict`: a broker that cannot answer is an error (it may coordinate what we look for);
/// otherwise a warning.
async fn list_everywhere(
    client: &mut Client,
    states: &[TxnState],
    producer_ids: &[i64],
    strict: bool,
) -> Result<Vec<Listed>> {
    let mut out = BTreeSet::new();
    let mut unknown_states = BTreeSet::new();
    for node in nodes(client).await? {
        let conn = match client.node(node).await {
            Ok(c) => c,
            Err(e) if !strict => {
                eprintln!(
                    "warning: broker {node} not reached, its transactions are not listed: {e}"
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let v = version_capped::<ListTransactionsRequest>(conn, 1)?;
        let req = ListTransactionsRequest::default()
            .with_state_filters(states.iter().map(|s| sb(s.as_str())).collect())
            .with_producer_id_filters(producer_ids.iter().map(|&p| ProducerId(p)).collect());
        let resp = conn.send_at(&req, v).await?;
        if resp.error_code != 0 {
            bail!(
                "cannot list transactions on broker {node} ({}): {}",
                code_name(resp.error_code),
                coordinator_hint(resp.error_code)
            );
        }
        unknown_states.extend(resp.unknown_state_filters.iter().map(text));
        out.extend(resp.transaction_states.iter().map(|t| Listed {
            transactional_id: t.transactional_id.0.to_string(),
            coordinator: node,
            producer_id: t.producer_id.0,
            state: text(&t.transaction_state),
        }));
    }
    if !unknown_states.is_empty() {
        eprintln!(
            "warning: the brokers do not know the state(s) {}",
            unknown_states.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(out.into_iter().collect())
}

/// What to do about a coordinator's error code.
fn coordinator_hint(code: i16) -> &'static str {
    match code {
        14..=16 => "the transaction coordinator is moving or loading; retry in a few seconds",
        _ => hint(code),
    }
}

pub async fn list(args: &ClientArgs, states: &[TxnState], producer_ids: &[i64]) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let rows = list_everywhere(&mut client, states, producer_ids, false).await?;
    emit_list(args.format, &rows)
}

fn emit_list(format: Format, rows: &[Listed]) -> Result<()> {
    if format == Format::Json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "transactional_id": r.transactional_id,
                    "coordinator": r.coordinator,
                    "producer_id": r.producer_id,
                    "state": r.state,
                })
            })
            .collect();
        emit_json_pretty(&json!(v))?;
        return Ok(());
    }
    emit(&list_table(rows))?;
    Ok(())
}

fn list_table(rows: &[Listed]) -> String {
    let mut t = Table::new(&["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"]);
    for r in rows {
        t.row(vec![
            r.transactional_id.clone(),
            r.coordinator.to_string(),
            r.producer_id.to_string(),
            r.state.clone(),
        ]);
    }
    t.render()
}

/// The node coordinating transactional id `id` (FindCoordinator key type 1).
async fn coordinator_of(client: &mut Client, id: &str) -> Result<i32> {
    let conn = client.any();
    let v = version_capped::<FindCoordinatorRequest>(conn, 3)?;
    if v < 1 {
        bail!("the broker speaks only FindCoordinator v0, which cannot find transaction coordinators: upgrade the broker");
    }
    let resp = conn
        .send_at(
            &FindCoordinatorRequest::default()
                .with_key(sb(id))
                .with_key_type(KEY_TYPE_TRANSACTION),
            v,
        )
        .await?;
    if resp.error_code != 0 {
        let detail = code_detail(
            resp.error_code,
            resp.error_message.as_ref().map(|m| m.as_str()),
        );
        // A broker without transactions refuses the key type as an invalid request.
        if resp.error_code == 42 {
            bail!("the broker cannot find the coordinator of transactional id '{id}' ({detail}): upgrade it to a version with transactions");
        }
        bail!(
            "no coordinator for transactional id '{id}' ({detail}): {}",
            coordinator_hint(resp.error_code)
        );
    }
    Ok(resp.node_id.0)
}

/// DescribeTransactions of `ids` on `node`: per id, the description or its error code.
async fn describe_on(
    client: &mut Client,
    node: i32,
    ids: &[String],
) -> Result<Vec<(String, Result<Described, i16>)>> {
    let conn = client.node(node).await?;
    let req = DescribeTransactionsRequest::default().with_transactional_ids(
        ids.iter()
            .map(|i| TransactionalId(sb(i)))
            .collect::<Vec<_>>(),
    );
    let resp = conn.send(&req).await?;
    Ok(resp
        .transaction_states
        .iter()
        .map(|t| {
            let id = t.transactional_id.0.to_string();
            if t.error_code != 0 {
                return (id, Err(t.error_code));
            }
            let partitions = t
                .topics
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(|&p| (tp.topic.0.to_string(), p)))
                .collect();
            (
                id.clone(),
                Ok(Described {
                    coordinator: node,
                    known: KnownTxn {
                        transactional_id: id,
                        producer_id: t.producer_id.0,
                        state: text(&t.transaction_state),
                        partitions,
                    },
                    producer_epoch: t.producer_epoch,
                    timeout_ms: t.transaction_timeout_ms,
                    start_time_ms: t.transaction_start_time_ms,
                }),
            )
        })
        .collect())
}

/// A transaction as DescribeTransactions answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub coordinator: i32,
    pub known: KnownTxn,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_time_ms: i64,
}

pub async fn describe(args: &ClientArgs, id: &str) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let node = coordinator_of(&mut client, id).await?;
    let answers = describe_on(&mut client, node, &[id.to_string()]).await?;
    let d = match answers.into_iter().find(|(i, _)| i == id) {
        None => bail!("broker {node} did not describe transactional id '{id}': check the broker log"),
        Some((_, Err(105))) => bail!(
            "transactional id '{id}' does not exist (TRANSACTIONAL_ID_NOT_FOUND): list transactions with 'icestream transaction list'"
        ),
        Some((_, Err(code))) => bail!(
            "cannot describe transactional id '{id}' on broker {node} ({}): {}",
            code_name(code),
            coordinator_hint(code)
        ),
        Some((_, Ok(d))) => d,
    };
    emit_described(args.format, &d, now_ms())
}

fn emit_described(format: Format, d: &Described, now: i64) -> Result<()> {
    if format == Format::Json {
        let parts: Vec<_> = d
            .known
            .partitions
            .iter()
            .map(|(t, p)| json!({"topic": t, "partition": p}))
            .collect();
        emit_json_pretty(&json!({
            "transactional_id": d.known.transactional_id,
            "coordinator": d.coordinator,
            "state": d.known.state,
            "producer_id": d.known.producer_id,
            "producer_epoch": d.producer_epoch,
            "transaction_timeout_ms": d.timeout_ms,
            "transaction_start_time_ms": (d.start_time_ms >= 0).then_some(d.start_time_ms),
            "transaction_duration_ms": (d.start_time_ms >= 0).then(|| (now - d.start_time_ms).max(0)),
            "partitions": parts,
        }))?;
        return Ok(());
    }
    emit(&described_text(d, now))?;
    Ok(())
}

fn described_text(d: &Described, now: i64) -> String {
    let open = d.start_time_ms >= 0;
    let dash = |b: bool, v: i64| if b { v.to_string() } else { "-".into() };
    let mut out = key_values(&[
        ("TRANSACTIONAL-ID", d.known.transactional_id.clone()),
        ("COORDINATOR", d.coordinator.to_string()),
        ("STATE", d.known.state.clone()),
        ("PRODUCER-ID", d.known.producer_id.to_string()),
        ("PRODUCER-EPOCH", d.producer_epoch.to_string()),
        ("TIMEOUT-MS", d.timeout_ms.to_string()),
        ("START-TIME-MS", dash(open, d.start_time_ms)),
        ("DURATION-MS", dash(open, (now - d.start_time_ms).max(0))),
    ]);
    out.push('\n');
    let mut t = Table::new(&["TOPIC", "PARTITION"]);
    for (topic, p) in &d.known.partitions {
        t.row(vec![topic.clone(), p.to_string()]);
    }
    out.push_str(&t.render());
    out
}

mod abort;
mod producers;
pub use abort::{abort, AbortWhich};
#[cfg(test)]
use abort::{abort_error, marker_for_start};
#[cfg(test)]
use producers::hanging_table;
pub use producers::{describe_producers, find_hanging};

#[cfg(test)]
mod tests {
    use super::*;

    fn open(topic: &str, partition: i32, pid: i64, last_ts: i64) -> OpenTxn {
        OpenTxn {
            topic: topic.into(),
            partition,
            producer_id: pid,
            producer_epoch: 3,
            coordinator_epoch: -1,
            start_offset: 10,
            last_timestamp: last_ts,
        }
    }

    fn known(pid: i64, state: &str, parts: &[(&str, i32)]) -> KnownTxn {
        KnownTxn {
            transactional_id: format!("tx-{pid}"),
            producer_id: pid,
            state: state.into(),
            partitions: parts.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        }
    }

    #[test]
    fn states_parse_in_any_spelling() {
        assert_eq!("Ongoing".parse(), Ok(TxnState::Ongoing));
        assert_eq!("ongoing".parse(), Ok(TxnState::Ongoing));
        assert_eq!("PREPARE_COMMIT".parse(), Ok(TxnState::PrepareCommit));
        assert_eq!(
            "prepare-epoch-fence".parse(),
            Ok(TxnState::PrepareEpochFence)
        );
        let e = "open".parse::<TxnState>().unwrap_err();
        assert!(
            e.starts_with("'open' is not a transaction state: use Empty, Ongoing"),
            "{e}"
        );
    }

    #[test]
    fn young_transactions_are_never_hanging() {
        let now = 1_000_000;
        let t = [open("t", 0, 7, now - 5_000)];
        assert!(hanging(&t, &[], now, 10_000).is_empty());
        // Exactly at the timeout is not past it.
        let t = [open("t", 0, 7, now - 10_000)];
        assert!(hanging(&t, &[], now, 10_000).is_empty());
        let t = [open("t", 0, 7, now - 10_001)];
        assert_eq!(hanging(&t, &[], now, 10_000).len(), 1);
    }

    #[test]
    fn a_coordinator_that_knows_the_partition_keeps_it_from_hanging() {
        let now = 1_000_000;
        let t = [open("t", 0, 7, 0)];
        for state in [
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "PrepareEpochFence",
        ] {
            let k = [known(7, state, &[("t", 0), ("u", 1)])];
            assert!(hanging(&t, &k, now, 0).is_empty(), "{state}");
        }
    }

    #[test]
    fn hanging_when_the_coordinator_does_not_drive_that_transaction() {
        let now = 1_000_000;
        let t = [open("t", 0, 7, 0)];
        // Not listed at all.
        assert_eq!(hanging(&t, &[], now, 0), vec![&t[0]]);
        // Ongoing, but without this partition.
        assert_eq!(
            hanging(&t, &[known(7, "Ongoing", &[("t", 1), ("u", 0)])], now, 0).len(),
            1
        );
        // The partition, but for another producer id (the id moved on to a new one).
        assert_eq!(
            hanging(&t, &[known(8, "Ongoing", &[("t", 0)])], now, 0).len(),
            1
        );
        // Finished or idle as far as the coordinator knows.
        for state in ["Empty", "CompleteCommit", "CompleteAbort", "Dead", "Weird"] {
            assert_eq!(
                hanging(&t, &[known(7, state, &[("t", 0)])], now, 0).len(),
                1,
                "{state}"
            );
        }
    }

    #[test]
    fn only_the_unknown_partitions_of_a_producer_hang() {
        let now = 1_000_000;
        let t = [open("t", 0, 7, 0), open("t", 1, 7, 0), open("t", 2, 9, 0)];
        let k = [known(7, "Ongoing", &[("t", 0)])];
        let h: Vec<_> = hanging(&t, &k, now, 0)
            .iter()
            .map(|o| (o.partition, o.producer_id))
            .collect();
        assert_eq!(h, vec![(1, 7), (2, 9)]);
    }

    #[test]
    fn abort_by_start_offset_finds_the_producer() {
        let mut a = open("t", 0, 7, 0);
        a.start_offset = 4;
        a.producer_epoch = 2;
        let mut b = open("t", 0, 8, 0);
        b.start_offset = 9;
        b.coordinator_epoch = 5;
        let mut idle = open("t", 0, 6, 0);
        idle.start_offset = -1;
        let states = [idle, a, b];
        assert_eq!(marker_for_start(&states, 4), Some((7, 2, 0)));
        assert_eq!(marker_for_start(&states, 9), Some((8, 3, 5)));
        assert_eq!(marker_for_start(&states, 5), None);
        assert_eq!(marker_for_start(&states, -1), None);
    }

    #[test]
    fn abort_errors_say_what_to_do() {
        let e = abort_error("t", 0, 7, 1, 0, 47, None).to_string();
        assert!(
            e.contains("INVALID_PRODUCER_EPOCH") && e.contains("already ended"),
            "{e}"
        );
        let e = abort_error("t", 0, 7, 1, 0, 52, Some("old\ncoordinator")).to_string();
        assert!(!e.contains('\n'));
        assert!(
            e.contains("TRANSACTION_COORDINATOR_FENCED: old coordinator"),
            "{e}"
        );
        assert!(
            e.contains("describe-producers --topic t --partition 0"),
            "{e}"
        );
        let e = abort_error("gone", 2, 7, 1, 0, 3, None).to_string();
        assert!(e.starts_with("topic 'gone' does not exist"), "{e}");
    }

    #[test]
    fn tables_for_people() {
        let rows = [Listed {
            transactional_id: "tx-a".into(),
            coordinator: 1,
            producer_id: 42,
            state: "Ongoing".into(),
        }];
        assert_eq!(
            list_table(&rows),
            "TRANSACTIONAL-ID  COORDINATOR  PRODUCER-ID  STATE\n\
             tx-a              1            42           Ongoing\n"
        );
        let d = Described {
            coordinator: 0,
            known: known(42, "Ongoing", &[("t", 1), ("t", 0)]),
            producer_epoch: 3,
            timeout_ms: 60_000,
            start_time_ms: 1_000,
        };
        let s = described_text(&d, 3_500);
        assert!(
            s.starts_with(
                "TRANSACTIONAL-ID  tx-42\nCOORDINATOR       0\nSTATE             Ongoing\n"
            ),
            "{s}"
        );
        assert!(s.contains("DURATION-MS       2500\n"), "{s}");
        assert!(s.ends_with("TOPIC  PARTITION\nt      0\nt      1\n"), "{s}");
        let idle = Described {
            start_time_ms: -1,
            ..d
        };
        assert!(described_text(&idle, 3_500).contains("START-TIME-MS     -\n"));
        let o = open("t", 2, 7, 1_000);
        let h = hanging_table(&[&o], 4_000);
        assert_eq!(
            h.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            vec!["t", "2", "7", "3", "-", "10", "1000", "3000"]
        );
    }
}
