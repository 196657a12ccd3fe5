//! `icestream topic create|list|describe|delete|alter-config|add-partitions`.

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use serde_json::json;

use super::client::{text, Client};
use super::errors::{check_topic, code_name, topic_error};
use super::offsets::{list_offsets, topic_info, EARLIEST, LATEST};
use super::output::{emit, emit_json_pretty, emit_raw};
use super::table::{key_values, Table};
use super::{ClientArgs, Format};

/// How long the broker may take for an admin operation; below the client's request timeout.
const ADMIN_TIMEOUT_MS: i32 = 8_000;
/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
const NOT_CONTROLLER: i16 = 41;

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Splits `key=value`, or explains the expected form.
pub fn parse_key_value(s: &str, flag: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(anyhow!(
            "invalid config '{s}': use {flag} key=value, e.g. {flag} retention.ms=86400000"
        )),
    }
}

/// Sends an admin request to the bootstrap broker and, if it answers NOT_CONTROLLER,
/// once more to the controller named by the metadata. `build` gets the version to use.
async fn admin<R, B, N>(client: &mut Client, build: B, not_controller: N) -> Result<R::Response>
where
    R: Request,
    B: Fn(i16) -> R,
    N: Fn(&R::Response) -> bool,
{
    let conn = client.any();
    let version = conn.version::<R>()?;
    let resp = conn.send_at(&build(version), version).await?;
    if !not_controller(&resp) {
        return Ok(resp);
    }
    let controller = client.metadata(Some(&[])).await?.controller_id.0;
    if controller < 0 {
        bail!("the cluster has no controller right now (NOT_CONTROLLER): retry in a few seconds");
    }
    let conn = client.node(controller).await?;
    let version = conn.version::<R>()?;
    conn.send_at(&build(version), version).await
}

pub async fn create(
    args: &ClientArgs,
    name: &str,
    partitions: i32,
    replicas: i16,
    configs: &[String],
) -> Result<()> {
    if partitions == 0 || partitions < -1 {
        bail!("invalid --partitions {partitions}: use a positive number, or -1 for the broker default");
    }
    if replicas == 0 || replicas < -1 {
        bail!("invalid --replicas {replicas}: use a positive number, or -1 for the broker default");
    }
    let configs = configs
        .iter()
        .map(|c| parse_key_value(c, "-c"))
        .collect::<Result<Vec<_>>>()?;
    let mut client = Client::connect(args).await?;
    let version = client.any().version::<CreateTopicsRequest>()?;
    if version < 4 && (partitions < 0 || replicas < 0) {
        bail!("this broker needs explicit sizes (CreateTopics v{version}): give --partitions and --replicas");
    }
    let build = |_v: i16| {
        CreateTopicsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(replicas)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )])
    };
    let resp = admin(
        &mut client,
        build,
        |r: &kafka_protocol::messages::CreateTopicsResponse| {
            r.topics.iter().any(|t| t.error_code == NOT_CONTROLLER)
        },
    )
    .await?;
    let Some(t) = resp.topics.iter().find(|t| t.name.0.as_str() == name) else {
        bail!("the broker did not answer for topic '{name}' in CreateTopics: check 'icestream topic list' and the broker log");
    };
    check_topic("create", name, t.error_code, t.error_message.as_ref())?;
    // Brokers answer the chosen sizes from CreateTopics v5; older ones answer -1.
    let show = |answered: i64, asked: i64| if answered > 0 { answered } else { asked };
    let p = show(t.num_partitions.into(), partitions.into());
    let r = show(t.replication_factor.into(), replicas.into());
    match args.format {
        Format::Json => {
            emit_json_pretty(&json!({
                "topic": name,
                "topic_id": (!t.topic_id.is_nil()).then(|| t.topic_id.to_string()),
                "partitions": (p > 0).then_some(p),
                "replicas": (r > 0).then_some(r),
            }))?;
        }
        Format::Table => {
            let size = |n: i64| {
                if n > 0 {
                    n.to_string()
                } else {
                    "broker default".to_string()
                }
            };
            emit(&format!(
                "Created topic {name} (partitions {}, replicas {})",
                size(p),
                size(r)
            ))?;
        }
    }
    Ok(())
}

pub async fn list(args: &ClientArgs) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let md = client.metadata(None).await?;
    let mut rows: Vec<(String, usize, usize, bool, i16)> = md
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_ref().map(|n| text(&n.0)).unwrap_or_default();
            let replicas = t
                .partitions
                .iter()
                .map(|p| p.replica_nodes.len())
                .max()
                .unwrap_or(0);
            (
                name,
                t.partitions.len(),
                replicas,
                t.is_internal,
                t.error_code,
            )
        })
        .collect();
    rows.sort();
    match args.format {
        Format::Json => {
            let topics: Vec<_> = rows
                .iter()
                .map(|(name, p, r, internal, err)| {
                    json!({
                        "name": name,
                        "partitions": p,
                        "replicas": r,
                        "internal": internal,
                        "error": (*err != 0).then(|| code_name(*err)),
                    })
                })
                .collect();
            emit_json_pretty(&json!(topics))?;
        }
        Format::Table => {
            let mut t = Table::new(&["NAME", "PARTITIONS", "REPLICAS", "INTERNAL"]);
            for (name, p, r, internal, err) in &rows {
                let name = if *err != 0 {
                    format!("{name} ({})", code_name(*err))
                } else {
                    name.clone()
                };
                t.row(vec![
                    name,
                    p.to_string(),
                    r.to_string(),
                    internal.to_string(),
                ]);
            }
            emit_raw(&t.render())?;
        }
    }
    Ok(())
}

/// `ConfigSource` names from the Kafka DescribeConfigs spec.
fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

const DEFAULT_CONFIG: i8 = 5;

/// (name, value, source) of the configs that differ from the defaults.
async fn non_default_configs(
    client: &mut Client,
    name: &str,
) -> Result<Option<Vec<(String, String, &'static str)>>> {
    if !client.any().supports::<DescribeConfigsRequest>() {
        return Ok(None);
    }
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    let resp = client.any().send(&req).await?;
    let mut out = Vec::new();
    for r in resp
        .results
        .iter()
        .filter(|r| r.resource_name.as_str() == name)
    {
        check_topic(
            "describe the configs of",
            name,
            r.error_code,
            r.error_message.as_ref(),
        )?;
        for c in r
            .configs
            .iter()
            .filter(|c| c.config_source != DEFAULT_CONFIG)
        {
            let value = if c.is_sensitive {
                "(sensitive)".to_string()
            } else {
                c.value.as_ref().map(text).unwrap_or_else(|| "-".into())
            };
            out.push((text(&c.name), value, config_source_name(c.config_source)));
        }
    }
    out.sort();
    Ok(Some(out))
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

pub async fn describe(args: &ClientArgs, name: &str) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let info = topic_info(&mut client, name, "describe").await?;
    let start = list_offsets(&mut client, name, &info.partitions, EARLIEST).await?;
    let end = list_offsets(&mut client, name, &info.partitions, LATEST).await?;
    let configs = non_default_configs(&mut client, name).await?;
    let storage = super::storage::topic_storage(args, name).await;
    let iceberg = iceberg_status(args, name).await;
    let replicas = info
        .partitions
        .iter()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(0);
    let offset = |m: &std::collections::BTreeMap<i32, Result<i64, i16>>, p: i32| {
        m.get(&p).and_then(|r| r.as_ref().ok().copied())
    };
    match args.format {
        Format::Json => {
            let partitions: Vec<_> = info
                .partitions
                .iter()
                .map(|p| {
                    let s = storage.as_ref().and_then(|ps| {
                        ps.iter()
                            .find(|s| s["partition"].as_i64() == Some(p.partition as i64))
                    });
                    json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "log_start_offset": offset(&start, p.partition),
                        "high_watermark": offset(&end, p.partition),
                        "storage": s,
                        "error": (p.error_code != 0).then(|| code_name(p.error_code)),
                    })
                })
                .collect();
            let configs = configs.map(|cs| {
                cs.iter()
                    .map(|(k, v, s)| json!({"name": k, "value": v, "source": s}))
                    .collect::<Vec<_>>()
            });
            emit_json_pretty(&json!({
                "name": info.name,
                "topic_id": (!info.topic_id.is_empty()).then_some(&info.topic_id),
                "internal": info.internal,
                "partition_count": info.partitions.len(),
                "replicas": replicas,
                "partitions": partitions,
                "configs": configs,
                "iceberg": iceberg,
            }))?;
        }
        Format::Table => {
            let mut out = key_values(&[
                ("NAME", info.name.clone()),
                (
                    "TOPIC ID",
                    if info.topic_id.is_empty() {
                        "-".to_string()
                    } else {
                        info.topic_id.clone()
                    },
                ),
                ("PARTITIONS", info.partitions.len().to_string()),
                ("REPLICAS", replicas.to_string()),
                ("INTERNAL", info.internal.to_string()),
            ]);
            let mut t = Table::new(&[
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "LOG-START-OFFSET",
                "HIGH-WATERMARK",
                "LOCAL-START-OFFSET",
                "LOCAL-SIZE",
                "REMOTE-SIZE",
            ]);
            let show = |v: Option<i64>| v.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
            for p in &info.partitions {
                let leader = if p.error_code != 0 {
                    code_name(p.error_code)
                } else if p.leader < 0 {
                    "none".into()
                } else {
                    p.leader.to_string()
                };
                t.row(
                    vec![
                        p.partition.to_string(),
                        leader,
                        ids(&p.replicas),
                        ids(&p.isr),
                        show(offset(&start, p.partition)),
                        show(offset(&end, p.partition)),
                    ]
                    .into_iter()
                    .chain(super::storage::storage_columns(
                        storage.as_deref(),
                        p.partition,
                    ))
                    .collect(),
                );
            }
            out.push('\n');
            out.push_str(&t.render());
            out.push('\n');
            match configs {
                None => out.push_str("configs: the broker does not support DescribeConfigs\n"),
                Some(cs) if cs.is_empty() => out.push_str("configs: all defaults\n"),
                Some(cs) => {
                    let mut t = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
                    for (k, v, s) in cs {
                        t.row(vec![k, v, s.to_string()]);
                    }
                    out.push_str(&t.render());
                }
            }
            if let Some(ice) = iceberg.as_ref().filter(|v| v["table"].is_string()) {
                out.push('\n');
                out.push_str(&iceberg_section(ice));
            }
            emit_raw(&out)?;
        }
    }
    Ok(())
}

pub async fn delete(args: &ClientArgs, names: &[String]) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let build = |version: i16| {
        let req = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        if version >= 6 {
            req.with_topics(
                names
                    .iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                    .collect(),
            )
        } else {
            req.with_topic_names(names.iter().map(|n| topic_name(n)).collect())
        }
    };
    let resp = admin(
        &mut client,
        build,
        |r: &kafka_protocol::messages::DeleteTopicsResponse| {
            r.responses.iter().any(|t| t.error_code == NOT_CONTROLLER)
        },
    )
    .await?;
    let mut results = Vec::new();
    for name in names {
        let r = resp
            .responses
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name.as_str()));
        let (code, msg) = match r {
            Some(t) => (t.error_code, t.error_message.as_ref().map(text)),
            None => (-1, Some("no answer for this topic".to_string())),
        };
        results.push((name.clone(), code, msg));
    }
    match args.format {
        Format::Json => {
            let v: Vec<_> = results
                .iter()
                .map(|(n, code, msg)| {
                    json!({
                        "topic": n,
                        "deleted": *code == 0,
                        "error": (*code != 0).then(|| code_name(*code)),
                        "message": msg,
                    })
                })
                .collect();
            emit_json_pretty(&json!(v))?;
        }
        Format::Table => {
            for (n, code, _) in &results {
                if *code == 0 {
                    emit(&format!("Deleted topic {n}"))?;
                }
            }
        }
    }
    let failed: Vec<_> = results.iter().filter(|r| r.1 != 0).collect();
    if let Some((n, code, msg)) = failed.first() {
        let e = topic_error("delete", n, *code, msg.as_deref());
        if failed.len() > 1 {
            bail!("{e} (and {} more topics failed)", failed.len() - 1);
        }
        return Err(e);
    }
    Ok(())
}

pub async fn alter_config(
    args: &ClientArgs,
    name: &str,
    set: &[String],
    delete: &[String],
) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set key=value or --delete key");
    }
    let sets = set
        .iter()
        .map(|s| parse_key_value(s, "--set"))
        .collect::<Result<Vec<_>>>()?;
    if let Some(d) = delete
        .iter()
        .find(|d| d.trim().is_empty() || d.contains('='))
    {
        bail!("invalid --delete '{d}': give only the config key, e.g. --delete retention.ms");
    }
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let mut ops: Vec<AlterableConfig> = sets
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(SET)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    ops.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.trim().to_string()))
            .with_config_operation(DELETE)
            .with_value(None)
    }));
    let mut client = Client::connect(args).await?;
    let build = |_v: i16| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(ops.clone()),
        ])
    };
    let resp = admin(
        &mut client,
        build,
        |r: &kafka_protocol::messages::IncrementalAlterConfigsResponse| {
            r.responses.iter().any(|t| t.error_code == NOT_CONTROLLER)
        },
    )
    .await?;
    for r in resp
        .responses
        .iter()
        .filter(|r| r.resource_name.as_str() == name)
    {
        check_topic(
            "alter the configs of",
            name,
            r.error_code,
            r.error_message.as_ref(),
        )?;
    }
    match args.format {
        Format::Json => {
            let set: serde_json::Map<_, _> =
                sets.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            emit_json_pretty(&json!({"topic": name, "set": set, "deleted": delete}))?;
        }
        Format::Table => {
            let mut changes: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
            changes.extend(delete.iter().map(|k| format!("{k} (reset to default)")));
            emit(&format!(
                "Altered configs of topic {name}: {}",
                changes.join(", ")
            ))?;
        }
    }
    Ok(())
}

pub async fn add_partitions(args: &ClientArgs, name: &str, count: i32) -> Result<()> {
    if count < 1 {
        bail!("invalid --count {count}: give the new total number of partitions, larger than the current one");
    }
    let mut client = Client::connect(args).await?;
    let build = |_v: i16| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)
                .with_assignments(None)])
    };
    let resp = admin(
        &mut client,
        build,
        |r: &kafka_protocol::messages::CreatePartitionsResponse| {
            r.results.iter().any(|t| t.error_code == NOT_CONTROLLER)
        },
    )
    .await?;
    for r in resp.results.iter().filter(|r| r.name.0.as_str() == name) {
        check_topic(
            "add partitions to",
            name,
            r.error_code,
            r.error_message.as_ref(),
        )?;
    }
    match args.format {
        Format::Json => {
            emit_json_pretty(&json!({"topic": name, "partitions": count}))?;
        }
        Format::Table => {
            emit(&format!("Topic {name} now has {count} partitions"))?;
        }
    }
    Ok(())
}

/// The topic's Iceberg translation state (`GET /v1/iceberg/topics/{topic}`), if the broker
/// has it: `None` for brokers without Iceberg topics or when the admin API is unreachable.
async fn iceberg_status(args: &ClientArgs, topic: &str) -> Option<serde_json::Value> {
    let url = super::http::parse_url(&args.admin_url)
        .ok()?
        .with_auth(args);
    let path = format!("/v1/iceberg/topics/{}", super::http::encode_segment(topic));
    let (status, text) = super::http::request(
        &url,
        super::http::ADMIN_API,
        "GET",
        &path,
        None,
        "is 'icestream serve' running? set --admin-url",
    )
    .await
    .ok()?;
    (status == 200)
        .then(|| serde_json::from_str(&text).ok())
        .flatten()
}

/// `topic describe`'s Iceberg section: table, last snapshot, lag and write counters.
fn iceberg_section(v: &serde_json::Value) -> String {
    let s = |k: &str| match &v[k] {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(x) => x.clone(),
        other => other.to_string(),
    };
    let snap = &v["snapshot"];
    let snapshot = if snap.is_object() {
        format!(
            "{} at {} ms, covers {}",
            snap["snapshot_id"],
            snap["timestamp_ms"],
            snap["summary"]["icestream.kafka.next-offsets"]
                .as_str()
                .unwrap_or("-")
        )
    } else {
        "none yet".to_string()
    };
    let mut out = String::from("iceberg:\n");
    out.push_str(&key_values(&[
        ("ICEBERG MODE", s("mode")),
        (
            "TABLE",
            format!("{} ({} catalog)", s("table"), s("catalog")),
        ),
        ("LOCATION", s("location")),
        ("LAST SNAPSHOT", snapshot),
        (
            "LAG",
            format!(
                "{} records, {} ms (target {} ms)",
                s("lag_records"),
                s("lag_ms"),
                s("target_lag_ms")
            ),
        ),
        (
            "WRITTEN",
            format!(
                "{} records, {} files, {} bytes, {} commits",
                s("records_written"),
                s("files_written"),
                s("bytes_written"),
                s("commits")
            ),
        ),
        (
            "ERRORS",
            format!(
                "{} failed rounds, {} DLQ records{}",
                s("commit_errors"),
                s("dlq_records"),
                v["last_error"]
                    .as_str()
                    .map(|e| format!("; last: {e}"))
                    .unwrap_or_default()
            ),
        ),
    ]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("retention.ms=1000", "-c").ok(),
            Some(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(
            parse_key_value("a=b=c", "-c").ok(),
            Some(("a".into(), "b=c".into()))
        );
        assert_eq!(
            parse_key_value("cleanup.policy=", "-c").ok(),
            Some(("cleanup.policy".into(), "".into()))
        );
        let e = parse_key_value("nokey", "--set")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid config 'nokey': use --set key=value, e.g. --set retention.ms=86400000")
        );
        assert!(parse_key_value("=v", "-c").is_err());
    }
}
