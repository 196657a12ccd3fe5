//! The web console (`/console` on the admin listener) and the admin API routes it needs
//! beyond the broker's own: topics, records, consumer groups and Kafka Connect. These routes
//! run the CLI's code (its Kafka client against this broker, `--format json`), so the console,
//! the CLI and any script see one behaviour. The schema registry's REST API is also served
//! under `/schema-registry` here, so the console's page talks to one origin.
//! docs/console.md describes the routes; docs/configuration.md lists them with the admin API.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::client::Client;
use crate::cli::offsets::{list_offsets, topic_info, EARLIEST, LATEST};
use crate::cli::{group, output, topic};
use crate::console_client::Caller;

/// The console's static files, built by Vite from console/ (see docs/console.md).
const INDEX_HTML: &str = include_str!("../console/dist/index.html");
const APP_JS: &str = include_str!("../console/dist/assets/console.js");
const APP_CSS: &str = include_str!("../console/dist/assets/console.css");

/// Most records one browse answers, and most bytes it reads from the partition.
const MAX_RECORDS: usize = 500;
const MAX_SCAN_BYTES: i32 = 4 * 1024 * 1024;
/// Longest value shown per record; the rest is cut (the record list says so).
const MAX_SHOWN_BYTES: usize = 64 * 1024;

pub struct Console {
    /// The Kafka listeners the console's calls use, per caller ([`Caller`]).
    pub kafka: crate::console_client::ConsoleKafka,
    pub registry: Arc<schema_registry::registry::Registry>,
    /// Kafka Connect REST URLs by name, from `--connect-url name=url`.
    pub connect: Vec<(String, String)>,
}

pub fn routes(console: Arc<Console>) -> Router {
    let registry = schema_registry::api::router(console.registry.clone());
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/assets/console.js", get(js))
        .route("/console/assets/console.css", get(css))
        .route("/v1/console/session", get(session))
        .route("/v1/topics", get(list_topics).post(create_topic))
        .route(
            "/v1/topics/{name}",
            get(describe_topic).delete(delete_topic),
        )
        .route("/v1/topics/{name}/configs", post(alter_configs))
        .route("/v1/topics/{name}/partitions", post(add_partitions))
        .route("/v1/topics/{name}/records", get(browse).post(produce))
        .route("/v1/groups", get(list_groups))
        .route("/v1/groups/{group}", get(describe_group))
        .route("/v1/groups/{group}/reset", post(reset_group))
        .route("/v1/connect", get(connect_list))
        .route("/v1/connect/{cluster}/connectors", post(connect_create))
        .route(
            "/v1/connect/{cluster}/connectors/{connector}",
            delete(connect_delete),
        )
        .route(
            "/v1/connect/{cluster}/connectors/{connector}/{action}",
            post(connect_action),
        )
        .with_state(console)
        .nest("/schema-registry", registry)
}

async fn page() -> Response {
    let html = INDEX_HTML.replace("__CSRF_TOKEN__", engine::admin::csrf_token());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

async fn session(State(c): State<Arc<Console>>) -> Response {
    Json(json!({
        "authentication": "off",
        "csrf_token": engine::admin::csrf_token(),
        "schema_registry": "/schema-registry",
        "connect_clusters": c.connect.iter().map(|(n, _)| n).collect::<Vec<_>>(),
    }))
    .into_response()
}

fn error(status: StatusCode, e: anyhow::Error) -> Response {
    let msg = format!("{e:#}");
    let status = if msg.contains("does not exist") || msg.contains("UNKNOWN_TOPIC") {
        StatusCode::NOT_FOUND
    } else {
        status
    };
    (status, Json(json!({ "error": msg }))).into_response()
}

/// Runs a CLI command with `--format json` and answers what it printed.
async fn cli_json<F>(status: StatusCode, f: F) -> Response
where
    F: std::future::Future<Output = Result<()>>,
{
    match output::capture(f).await {
        Ok(text) => {
            let v: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
            (status, Json(v)).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Every topic with its size and replication health, from the cluster metadata.
async fn list_topics(Caller(args): Caller) -> Response {
    let res: Result<Value> = async {
        let mut client = Client::connect(&args).await?;
        let md = client.metadata(None).await?;
        let mut out: Vec<Value> = md
            .topics
            .iter()
            .map(|t| {
                let replicas = t
                    .partitions
                    .iter()
                    .map(|p| p.replica_nodes.len())
                    .max()
                    .unwrap_or(0);
                let under = t
                    .partitions
                    .iter()
                    .filter(|p| p.isr_nodes.len() < p.replica_nodes.len())
                    .count();
                let offline = t.partitions.iter().filter(|p| p.leader_id.0 < 0).count();
                json!({
                    "name": t.name.as_ref().map(|n| n.0.to_string()),
                    "partitions": t.partitions.len(),
                    "replicas": replicas,
                    "internal": t.is_internal,
                    "under_replicated_partitions": under,
                    "offline_partitions": offline,
                })
            })
            .collect();
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(json!(out))
    }
    .await;
    match res {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

#[derive(Deserialize)]
struct CreateTopic {
    name: String,
    #[serde(default = "minus_one")]
    partitions: i32,
    #[serde(default = "minus_one_i16")]
    replicas: i16,
    #[serde(default)]
    configs: std::collections::BTreeMap<String, String>,
}

fn minus_one() -> i32 {
    -1
}
fn minus_one_i16() -> i16 {
    -1
}

fn pairs(m: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    m.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

async fn create_topic(Caller(args): Caller, Json(b): Json<CreateTopic>) -> Response {
    let configs = pairs(&b.configs);
    cli_json(
        StatusCode::CREATED,
        topic::create(&args, &b.name, b.partitions, b.replicas, &configs),
    )
    .await
}

async fn describe_topic(Caller(args): Caller, Path(name): Path<String>) -> Response {
    cli_json(StatusCode::OK, topic::describe(&args, &name)).await
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

/// Deleting needs `?confirm=<topic name>`, the name typed again.
async fn delete_topic(
    Caller(args): Caller,
    Path(name): Path<String>,
    Query(q): Query<Confirm>,
) -> Response {
    if q.confirm.as_deref() != Some(name.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            anyhow!("to delete topic '{name}', repeat its name: ?confirm={name}"),
        );
    }
    cli_json(StatusCode::OK, topic::delete(&args, &[name])).await
}

#[derive(Deserialize)]
struct AlterConfigs {
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    delete: Vec<String>,
}

async fn alter_configs(
    Caller(args): Caller,
    Path(name): Path<String>,
    Json(b): Json<AlterConfigs>,
) -> Response {
    let set = pairs(&b.set);
    cli_json(
        StatusCode::OK,
        topic::alter_config(&args, &name, &set, &b.delete),
    )
    .await
}

#[derive(Deserialize)]
struct AddPartitions {
    count: i32,
}

async fn add_partitions(
    Caller(args): Caller,
    Path(name): Path<String>,
    Json(b): Json<AddPartitions>,
) -> Response {
    cli_json(StatusCode::OK, topic::add_partitions(&args, &name, b.count)).await
}

async fn list_groups(Caller(args): Caller) -> Response {
    cli_json(StatusCode::OK, group::list(&args)).await
}

async fn describe_group(Caller(args): Caller, Path(g): Path<String>) -> Response {
    cli_json(StatusCode::OK, group::describe(&args, &g)).await
}

#[derive(Deserialize)]
struct Reset {
    topic: String,
    /// `start`, `end`, an offset, or `timestamp` (with `timestamp`).
    to: String,
    partition: Option<i32>,
    /// Milliseconds since the epoch, for `to: "timestamp"`.
    timestamp: Option<i64>,
}

async fn reset_group(
    Caller(args): Caller,
    Path(g): Path<String>,
    Json(b): Json<Reset>,
) -> Response {
    let to: group::SeekTo = match (b.to.as_str(), b.timestamp) {
        ("timestamp", Some(ts)) => group::SeekTo::Timestamp(ts),
        ("timestamp", None) => {
            let e = anyhow!("to: timestamp needs a timestamp (milliseconds since the epoch)");
            return error(StatusCode::BAD_REQUEST, e);
        }
        (to, _) => match to.parse() {
            Ok(t) => t,
            Err(e) => return error(StatusCode::BAD_REQUEST, anyhow!("{e}")),
        },
    };
    cli_json(
        StatusCode::OK,
        group::seek(&args, &g, &b.topic, to, b.partition),
    )
    .await
}

#[derive(Deserialize)]
struct Browse {
    #[serde(default)]
    partition: i32,
    /// `start`, `end` (the last `max_records`), `offset` or `timestamp`.
    #[serde(default = "from_end")]
    from: String,
    offset: Option<i64>,
    timestamp: Option<i64>,
    max_records: Option<usize>,
    max_bytes: Option<i32>,
    /// Only records whose key, as text, contains this.
    key: Option<String>,
    /// `false` shows values as stored (text or hex) instead of decoding registry-framed ones.
    decode: Option<bool>,
}

fn from_end() -> String {
    "end".into()
}

/// One page of a partition's records: at most `max_records` (≤ 500) records, reading at most
/// `max_bytes` (≤ 4 MiB) of the log, so the broker's memory stays bounded whatever the topic.
async fn browse(
    State(c): State<Arc<Console>>,
    Caller(args): Caller,
    Path(name): Path<String>,
    Query(q): Query<Browse>,
) -> Response {
    match browse_page(&c, &args, &name, q).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn browse_page(
    c: &Console,
    args: &crate::cli::ClientArgs,
    name: &str,
    q: Browse,
) -> Result<Value> {
    let max_records = q.max_records.unwrap_or(50).clamp(1, MAX_RECORDS);
    let max_bytes = q
        .max_bytes
        .unwrap_or(1024 * 1024)
        .clamp(1024, MAX_SCAN_BYTES);
    let mut client = Client::connect(args).await?;
    let info = topic_info(&mut client, name, "browse").await?;
    let Some(p) = info
        .partitions
        .iter()
        .find(|p| p.partition == q.partition)
        .cloned()
    else {
        bail!("topic '{name}' has no partition {}", q.partition);
    };
    let one = std::slice::from_ref(&p);
    let offset_at = |m: std::collections::BTreeMap<i32, Result<i64, i16>>| {
        m.get(&p.partition)
            .and_then(|r| r.as_ref().ok().copied())
            .ok_or_else(|| anyhow!("partition {} has no leader right now", p.partition))
    };
    let log_start = offset_at(list_offsets(&mut client, name, one, EARLIEST).await?)?;
    let high = offset_at(list_offsets(&mut client, name, one, LATEST).await?)?;
    let start = match q.from.as_str() {
        "start" => log_start,
        "end" => (high - max_records as i64).max(log_start),
        "offset" => q
            .offset
            .ok_or_else(|| anyhow!("from=offset needs offset="))?
            .max(log_start),
        "timestamp" => {
            let ts = q
                .timestamp
                .ok_or_else(|| anyhow!("from=timestamp needs timestamp= (ms)"))?;
            match offset_at(list_offsets(&mut client, name, one, ts.max(0)).await?) {
                Ok(o) if o >= 0 => o,
                _ => high,
            }
        }
        other => bail!("from={other}: use start, end, offset or timestamp"),
    };
    let decode = q.decode.unwrap_or(true);
    let mut decoders = Decoders::new(c);
    let mut records = Vec::new();
    let mut pos = start;
    let mut scanned: i64 = 0;
    while records.len() < max_records && pos < high && scanned < max_bytes as i64 {
        let budget = (max_bytes as i64 - scanned).clamp(1024, 1024 * 1024) as i32;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(budget)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(p.partition)
                    .with_fetch_offset(pos)
                    .with_partition_max_bytes(budget)])]);
        let resp = client.node(p.leader).await?.send(&req).await?;
        let Some(part) = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|x| x.partition_index == p.partition)
        else {
            bail!("the broker did not answer for {name}[{}]", p.partition);
        };
        if part.error_code != 0 {
            bail!(
                "cannot read {name}[{}]: {}",
                p.partition,
                crate::cli::errors::code_detail(part.error_code, None)
            );
        }
        let data = part.records.clone().unwrap_or_default();
        if data.is_empty() {
            break;
        }
        scanned += data.len() as i64;
        let batches = crate::cli::batches::split(data)?;
        if batches.is_empty() {
            break;
        }
        for b in &batches {
            for r in crate::cli::batches::decode(b)? {
                if r.control || r.offset < pos || records.len() >= max_records {
                    continue;
                }
                if let Some(k) = q.key.as_deref().filter(|k| !k.is_empty()) {
                    let key = r.key.as_ref().map(|b| String::from_utf8_lossy(b));
                    if !key.is_some_and(|key| key.contains(k)) {
                        continue;
                    }
                }
                let headers: Vec<Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| json!({"key": k.as_str(), "value": v.as_ref().map(|v| decoders.shown(v, false))}))
                    .collect();
                records.push(json!({
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key": r.key.as_ref().map(|k| decoders.shown(k, false)),
                    "value": r.value.as_ref().map(|v| decoders.shown(v, decode)),
                    "headers": headers,
                }));
            }
            pos = pos.max(b.last_offset + 1);
        }
    }
    Ok(json!({
        "topic": name,
        "partition": p.partition,
        "log_start_offset": log_start,
        "high_watermark": high,
        "start_offset": start,
        "next_offset": pos,
        "scanned_bytes": scanned,
        "records": records,
    }))
}

/// Compiled decoders of the schemas a page meets (the Iceberg translator's decoders: Avro,
/// Protobuf and JSON Schema), by schema id and Protobuf message indexes.
struct Decoders<'a> {
    console: &'a Console,
    compiled:
        std::collections::HashMap<(i32, Vec<i32>), Option<iceberg_sink::decode::ValueDecoder>>,
}

impl<'a> Decoders<'a> {
    fn new(console: &'a Console) -> Self {
        Decoders {
            console,
            compiled: Default::default(),
        }
    }

    /// A key, value or header as the console shows it: decoded through the schema registry
    /// when it is framed with a registry schema id, else UTF-8 text, else hex.
    fn shown(&mut self, b: &Bytes, decode: bool) -> Value {
        if decode {
            if let Some(v) = self.decoded(b) {
                return v;
            }
        }
        let cut = b.len() > MAX_SHOWN_BYTES;
        let data = &b[..b.len().min(MAX_SHOWN_BYTES)];
        match std::str::from_utf8(data) {
            Ok(s) if !s.chars().any(|ch| ch.is_control() && !ch.is_whitespace()) => {
                json!({"format": "text", "text": s, "size": b.len(), "truncated": cut})
            }
            _ => {
                let hex: String = data.iter().map(|x| format!("{x:02x}")).collect();
                json!({"format": "hex", "hex": hex, "size": b.len(), "truncated": cut})
            }
        }
    }

    fn decoded(&mut self, b: &[u8]) -> Option<Value> {
        use iceberg_sink::decode::{split_wire_format, SchemaKind, SchemaSource, ValueDecoder};
        let wire = split_wire_format(b).ok()?;
        let id = wire.schema_id;
        let registered =
            crate::schema_source::RegistrySchemas(self.console.registry.clone()).by_id(id)?;
        let (indexes, payload) = match registered.kind {
            SchemaKind::Protobuf => wire.protobuf().ok()?,
            _ => (Vec::new(), wire.payload),
        };
        let format = match registered.kind {
            SchemaKind::Avro => "avro",
            SchemaKind::Protobuf => "protobuf",
            SchemaKind::Json => "json",
        };
        let decoder = self
            .compiled
            .entry((id, indexes.clone()))
            .or_insert_with(|| ValueDecoder::new(&registered, &indexes).ok());
        let decoded = match decoder.as_ref().map(|d| d.decode(payload)) {
            Some(Ok(row)) => Value::Object(
                row.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), value_json(v)))
                    .collect(),
            ),
            // A JSON value the translator's shape cannot hold is still JSON.
            _ if registered.kind == SchemaKind::Json => serde_json::from_slice(payload).ok()?,
            _ => return None,
        };
        Some(json!({"format": format, "schema_id": id, "decoded": decoded, "size": b.len()}))
    }
}

/// A decoded value as JSON: time values in the translator's units (days, microseconds),
/// bytes as hex, decimals as strings.
fn value_json(v: &iceberg_sink::decode::Value) -> Value {
    use iceberg_sink::decode::Value as V;
    match v {
        V::Null => Value::Null,
        V::Boolean(b) => json!(b),
        V::Int(i) | V::Date(i) => json!(i),
        V::Long(i) | V::Time(i) | V::Timestamp(i) => json!(i),
        V::Float(f) => json!(f),
        V::Double(f) => json!(f),
        V::Decimal { unscaled, scale } => {
            let s = unscaled.unsigned_abs().to_string();
            let scale = *scale as usize;
            let s = if scale == 0 {
                s
            } else {
                let s = format!("{s:0>width$}", width = scale + 1);
                format!("{}.{}", &s[..s.len() - scale], &s[s.len() - scale..])
            };
            json!(if *unscaled < 0 { format!("-{s}") } else { s })
        }
        V::String(s) => json!(s),
        V::Binary(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        V::Uuid(u) => json!(uuid::Uuid::from_bytes(*u).to_string()),
        V::Struct(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), value_json(v)))
                .collect(),
        ),
        V::List(items) => Value::Array(items.iter().map(value_json).collect()),
        V::Map(entries) => {
            // String keys make an object; other keys a list of [key, value] pairs.
            let object: Option<serde_json::Map<String, Value>> = entries
                .iter()
                .map(|(k, v)| match k {
                    V::String(k) => Some((k.clone(), value_json(v))),
                    _ => None,
                })
                .collect();
            object.map(Value::Object).unwrap_or_else(|| {
                Value::Array(
                    entries
                        .iter()
                        .map(|(k, v)| json!([value_json(k), value_json(v)]))
                        .collect(),
                )
            })
        }
    }
}

#[derive(Deserialize)]
struct Produce {
    partition: Option<i32>,
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// Produces one record (acks=all): the partition given, else murmur2 of the key, else 0.
async fn produce(
    Caller(args): Caller,
    Path(name): Path<String>,
    Json(b): Json<Produce>,
) -> Response {
    let res: Result<Value> = async {
        let mut client = Client::connect(&args).await?;
        let mut info = topic_info(&mut client, &name, "produce to").await?;
        let n = info.partitions.len() as i32;
        let key = b.key.filter(|k| !k.is_empty()).map(Bytes::from);
        let partition = match (b.partition, &key) {
            (Some(p), _) if (0..n).contains(&p) => p,
            (Some(p), _) => bail!("topic '{name}' has no partition {p}"),
            (None, Some(k)) => crate::cli::partitioner::partition_for_key(k, n),
            (None, None) => 0,
        };
        let record = engine::log::batch::NewRecord {
            key,
            value: b.value.map(Bytes::from),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            headers: b
                .headers
                .into_iter()
                .map(|(k, v)| (k, Some(Bytes::from(v))))
                .collect(),
        };
        let batch =
            engine::log::batch::encode_batch(&[record], kafka_protocol::records::Compression::None)
                .map_err(|e| anyhow!("{e}"))?;
        let offset = crate::cli::produce::send_batch(
            &mut client,
            &mut info,
            partition,
            batch,
            crate::cli::produce::Acks::All,
        )
        .await?;
        Ok(json!({"topic": name, "partition": partition, "offset": offset}))
    }
    .await;
    match res {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

fn connect_url(c: &Console, cluster: &str) -> Result<crate::cli::http::HttpUrl> {
    let Some((_, url)) = c.connect.iter().find(|(n, _)| n == cluster) else {
        bail!("no Kafka Connect cluster '{cluster}': give serve --connect-url {cluster}=URL");
    };
    crate::cli::http::parse_service_url(url, crate::cli::http::CONNECT)
}

/// Every configured Kafka Connect cluster's connectors with their status and tasks.
async fn connect_list(State(c): State<Arc<Console>>) -> Response {
    let mut out = Vec::new();
    for (cluster, url) in &c.connect {
        let res: Result<Value> = async {
            let u = connect_url(&c, cluster)?;
            let (code, body) = crate::cli::http::request(
                &u,
                crate::cli::http::CONNECT,
                "GET",
                "/connectors?expand=status&expand=info",
                None,
                "check --connect-url",
            )
            .await?;
            if code != 200 {
                bail!("Kafka Connect answered {code}: {body}");
            }
            Ok(serde_json::from_str(&body)?)
        }
        .await;
        out.push(match res {
            Ok(v) => json!({"cluster": cluster, "url": url, "connectors": v}),
            Err(e) => json!({"cluster": cluster, "url": url, "error": format!("{e:#}")}),
        });
    }
    Json(json!(out)).into_response()
}

/// Sends one request to a Connect cluster; a status of 300 or more is an error that carries
/// Connect's own message.
async fn connect_call(
    c: &Console,
    cluster: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let u = connect_url(c, cluster)?;
    let (code, text) = crate::cli::http::request(
        &u,
        crate::cli::http::CONNECT,
        method,
        path,
        body,
        "check --connect-url",
    )
    .await?;
    if code >= 300 {
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
            .unwrap_or(text);
        bail!("Kafka Connect answered {code}: {msg}");
    }
    Ok((code, text))
}

/// Connect's status as ours when it answered 4xx (the request's fault), else 502.
fn connect_error(e: anyhow::Error) -> Response {
    let msg = format!("{e:#}");
    let status = msg
        .strip_prefix("Kafka Connect answered ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (400..500).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(json!({ "error": msg }))).into_response()
}

#[derive(Deserialize)]
struct NewConnector {
    name: String,
    config: serde_json::Map<String, Value>,
}

/// Creates a connector: Connect's `POST /connectors` with `{name, config}`.
async fn connect_create(
    State(c): State<Arc<Console>>,
    Path(cluster): Path<String>,
    Json(b): Json<NewConnector>,
) -> Response {
    let res: Result<Value> = async {
        if b.name.trim().is_empty() {
            bail!("a connector needs a name");
        }
        // Connect's config values are strings; numbers and booleans are given as text.
        let config: serde_json::Map<String, Value> = b
            .config
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(_) => (k, v),
                other => (k, Value::String(other.to_string())),
            })
            .collect();
        let body = json!({"name": b.name, "config": config}).to_string();
        let (code, text) = connect_call(&c, &cluster, "POST", "/connectors", Some(&body)).await?;
        let created: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(json!({"cluster": cluster, "connector": b.name, "status": code, "created": created}))
    }
    .await;
    match res {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => connect_error(e),
    }
}

/// Deletes a connector: Connect's `DELETE /connectors/{name}`.
async fn connect_delete(
    State(c): State<Arc<Console>>,
    Path((cluster, connector)): Path<(String, String)>,
) -> Response {
    let enc = crate::cli::http::encode_segment(&connector);
    let path = format!("/connectors/{enc}");
    match connect_call(&c, &cluster, "DELETE", &path, None).await {
        Ok((code, _)) => Json(json!({"cluster": cluster, "connector": connector, "status": code}))
            .into_response(),
        Err(e) => connect_error(e),
    }
}

/// `pause`, `resume` or `restart` a connector (restart includes its tasks).
async fn connect_action(
    State(c): State<Arc<Console>>,
    Path((cluster, connector, action)): Path<(String, String, String)>,
) -> Response {
    let res: Result<Value> = async {
        let u = connect_url(&c, &cluster)?;
        let enc = crate::cli::http::encode_segment(&connector);
        let (method, path) = match action.as_str() {
            "pause" => ("PUT", format!("/connectors/{enc}/pause")),
            "resume" => ("PUT", format!("/connectors/{enc}/resume")),
            "restart" => (
                "POST",
                format!("/connectors/{enc}/restart?includeTasks=true"),
            ),
            other => bail!("unknown action '{other}': use pause, resume or restart"),
        };
        let (code, body) = crate::cli::http::request(
            &u,
            crate::cli::http::CONNECT,
            method,
            &path,
            None,
            "check --connect-url",
        )
        .await?;
        if code >= 300 {
            bail!("Kafka Connect answered {code}: {body}");
        }
        Ok(json!({"cluster": cluster, "connector": connector, "action": action, "status": code}))
    }
    .await;
    match res {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

#[cfg(test)]
mod tests {
    use super::value_json;
    use iceberg_sink::decode::Value as V;
    use serde_json::json;

    #[test]
    fn decoded_values_as_json() {
        let d = |unscaled, scale| value_json(&V::Decimal { unscaled, scale });
        assert_eq!(d(12345, 2), json!("123.45"));
        assert_eq!(d(-5, 3), json!("-0.005"));
        assert_eq!(d(7, 0), json!("7"));
        assert_eq!(value_json(&V::Binary(vec![0, 255])), json!("00ff"));
        let m = V::Map(vec![(V::String("a".into()), V::Int(1))]);
        assert_eq!(value_json(&m), json!({"a": 1}));
        let m = V::Map(vec![(V::Int(2), V::Null)]);
        assert_eq!(value_json(&m), json!([[2, null]]));
        let s = V::Struct(vec![("x".into(), V::List(vec![V::Boolean(true)]))]);
        assert_eq!(value_json(&s), json!({"x": [true]}));
    }
}
