//! `icestream cluster info|health|status|decommission|reassign`.

use anyhow::{bail, Result};
use kafka_protocol::messages::DescribeClusterRequest;
use serde_json::json;

use super::client::{text, Client};
use super::http::{get, parse_url, request, ADMIN_API};
use super::output::{emit, emit_json_pretty, emit_raw};
use super::table::{key_values, Table};
use super::{ClientArgs, Format};

#[derive(Debug, Clone)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
    fenced: Option<bool>,
}

pub async fn info(args: &ClientArgs) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let md = client.metadata(Some(&[])).await?;
    let mut cluster_id = md.cluster_id.as_ref().map(text);
    let mut controller = md.controller_id.0;
    let mut brokers: Vec<Broker> = md
        .brokers
        .iter()
        .map(|b| Broker {
            id: b.node_id.0,
            host: text(&b.host),
            port: b.port,
            rack: b.rack.as_ref().map(text),
            fenced: None,
        })
        .collect();
    let mut source = "Metadata";
    // DescribeCluster (KIP-700) is the admin view; prefer it when the broker has it.
    if client.any().supports::<DescribeClusterRequest>() {
        let resp = client
            .any()
            .send(&DescribeClusterRequest::default())
            .await?;
        if resp.error_code == 0 {
            source = "DescribeCluster";
            cluster_id = Some(text(&resp.cluster_id));
            controller = resp.controller_id.0;
            brokers = resp
                .brokers
                .iter()
                .map(|b| Broker {
                    id: b.broker_id.0,
                    host: text(&b.host),
                    port: b.port,
                    rack: b.rack.as_ref().map(text),
                    fenced: Some(b.is_fenced),
                })
                .collect();
        }
    }
    brokers.sort_by_key(|b| b.id);
    match args.format {
        Format::Json => {
            let list: Vec<_> = brokers
                .iter()
                .map(|b| {
                    json!({
                        "id": b.id,
                        "host": b.host,
                        "port": b.port,
                        "rack": b.rack,
                        "fenced": b.fenced,
                    })
                })
                .collect();
            emit_json_pretty(&json!({
                "cluster_id": cluster_id,
                "controller_id": (controller >= 0).then_some(controller),
                "brokers": list,
                "source": source,
            }))?;
        }
        Format::Table => {
            let mut out = key_values(&[
                ("CLUSTER", cluster_id.unwrap_or_else(|| "-".into())),
                (
                    "CONTROLLER",
                    if controller >= 0 {
                        controller.to_string()
                    } else {
                        "none".into()
                    },
                ),
            ]);
            out.push('\n');
            let mut t = Table::new(&["ID", "HOST", "PORT", "RACK"]);
            for b in &brokers {
                let id = if b.fenced == Some(true) {
                    format!("{} (fenced)", b.id)
                } else {
                    b.id.to_string()
                };
                t.row(vec![
                    id,
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            out.push_str(&t.render());
            emit_raw(&out)?;
        }
    }
    Ok(())
}

const READY_PATH: &str = "/v1/status/ready";

pub async fn health(args: &ClientArgs) -> Result<()> {
    let url = parse_url(&args.admin_url)?.with_auth(args);
    let answer = get(
        &url,
        READY_PATH,
        "is 'icestream serve' running? set --admin-url",
    )
    .await;
    let status = answer.as_ref().ok().map(|(s, _)| *s);
    let healthy = status == Some(200);
    match args.format {
        Format::Json => {
            emit_json_pretty(&json!({
                "healthy": healthy,
                "status": status,
                "admin_url": args.admin_url,
            }))?;
        }
        Format::Table => {
            emit(if healthy { "healthy" } else { "unhealthy" })?;
        }
    }
    let (status, body) = answer?;
    if !healthy {
        let detail = if body.is_empty() {
            format!("HTTP {status}")
        } else {
            format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )
        };
        bail!(
            "the broker at {} is not ready ({detail}): it may still be starting; check the broker log",
            args.admin_url
        );
    }
    Ok(())
}

const HINT: &str = "is 'icestream serve' running? set --admin-url";

/// `icestream cluster status`: every broker and whether it is active, draining or
/// decommissioned (from the admin API, which the controller's state backs).
pub async fn status(args: &ClientArgs) -> Result<()> {
    let url = parse_url(&args.admin_url)?.with_auth(args);
    let (code, body) = request(&url, ADMIN_API, "GET", "/v1/cluster/brokers", None, HINT).await?;
    if code != 200 {
        bail!(
            "the admin API answered HTTP {code}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    match args.format {
        Format::Json => {
            emit_json_pretty(&v)?;
        }
        Format::Table => {
            let mut t = Table::new(&[
                "ID",
                "HOST",
                "PORT",
                "ALIVE",
                "STATE",
                "CONTROLLER",
                "RELEASE",
            ]);
            for b in v["brokers"].as_array().into_iter().flatten() {
                t.row(vec![
                    b["id"].to_string(),
                    b["host"].as_str().unwrap_or("-").to_string(),
                    b["port"].to_string(),
                    if b["alive"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                    b["state"].as_str().unwrap_or("-").to_string(),
                    b["controller_role"].as_str().unwrap_or("-").to_string(),
                    b["release"].as_str().unwrap_or("-").to_string(),
                ]);
            }
            emit_raw(&t.render())?;
            // What every broker supports and the cluster therefore uses (a broker of an
            // earlier release holds a feature back until it is upgraded).
            let finalized: Vec<String> = v["finalized_features"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, level)| format!("{name}={level}"))
                .collect();
            emit_raw(&format!(
                "finalized features: {}\n",
                if finalized.is_empty() {
                    "none".to_string()
                } else {
                    finalized.join(", ")
                }
            ))?;
            let short = v["not_fully_replicated"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if short.is_empty() {
                emit_raw("every partition is fully replicated\n")?;
            } else {
                let ids = |x: &serde_json::Value| {
                    let v: Vec<String> = x
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|id| id.to_string())
                        .collect();
                    v.join(",")
                };
                let mut t = Table::new(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"]);
                for p in &short {
                    t.row(vec![
                        p["topic"].as_str().unwrap_or("-").to_string(),
                        p["partition"].to_string(),
                        p["leader"]
                            .as_i64()
                            .map_or("none".into(), |l| l.to_string()),
                        ids(&p["replicas"]),
                        ids(&p["isr"]),
                    ]);
                }
                emit_raw(&format!(
                    "{} partitions not fully replicated:\n",
                    short.len()
                ))?;
                emit_raw(&t.render())?;
            }
        }
    }
    Ok(())
}

/// `icestream cluster backup --out FILE`: the cluster metadata as the broker's controller has
/// applied it, written whole or not at all.
pub async fn backup(args: &ClientArgs, out: &std::path::Path) -> Result<()> {
    let url = parse_url(&args.admin_url)?.with_auth(args);
    let (code, body) = request(&url, ADMIN_API, "GET", "/v1/cluster/metadata", None, HINT).await?;
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
    if code != 200 {
        let msg = v["error"].as_str().map(str::to_string).unwrap_or(body);
        bail!("{msg}");
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, body.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    let topics = v["metadata"]["topics"].as_object().map_or(0, |t| t.len());
    match args.format {
        Format::Json => emit_json_pretty(&serde_json::json!({
            "file": out.display().to_string(),
            "index": v["index"],
            "topics": topics,
        }))?,
        Format::Table => emit(&format!(
            "cluster metadata as of controller entry {} ({topics} topics) written to {}",
            v["index"],
            out.display()
        ))?,
    };
    Ok(())
}

/// `icestream cluster decommission --node N`: marks the broker as draining; the controller
/// moves its replicas to the other brokers (follow with `icestream cluster status`).
pub async fn decommission(args: &ClientArgs, node: i32) -> Result<()> {
    let url = parse_url(&args.admin_url)?.with_auth(args);
    let path = format!("/v1/cluster/decommission/{node}");
    let (code, body) = request(&url, ADMIN_API, "POST", &path, None, HINT).await?;
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body.clone()));
    if code != 200 {
        let msg = v["error"].as_str().map(str::to_string).unwrap_or(body);
        bail!("{msg}");
    }
    match args.format {
        Format::Json => {
            emit_json_pretty(&v)?;
        }
        Format::Table => {
            emit(&format!(
                "broker {node} is draining: its replicas are moving to the other brokers; 'icestream cluster status' shows it as decommissioned once none is left"
            ))?;
        }
    }
    Ok(())
}

/// `icestream cluster reassign --topic T --partition P --replicas 2,3,4` (or `--cancel`):
/// Kafka's AlterPartitionReassignments.
pub async fn reassign(
    args: &ClientArgs,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
) -> Result<()> {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = Client::connect(args).await?;
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    replicas
                        .as_ref()
                        .map(|r| r.iter().map(|&id| BrokerId(id)).collect()),
                )])]);
    let resp = client.any().send(&req).await?;
    if resp.error_code != 0 {
        bail!(
            "{}: {}",
            super::errors::code_name(resp.error_code),
            resp.error_message.as_ref().map(text).unwrap_or_default()
        );
    }
    for t in &resp.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "{} partition {}: {}: {}",
                    text(&t.name.0),
                    p.partition_index,
                    super::errors::code_name(p.error_code),
                    p.error_message.as_ref().map(text).unwrap_or_default()
                );
            }
        }
    }
    let what = match &replicas {
        Some(r) => format!("moving to replicas {r:?}"),
        None => "reassignment cancelled".to_string(),
    };
    match args.format {
        Format::Json => {
            emit_json_pretty(&json!({
                "topic": topic,
                "partition": partition,
                "replicas": replicas,
            }))?;
        }
        Format::Table => {
            emit(&format!("{topic} partition {partition}: {what}"))?;
        }
    }
    Ok(())
}
