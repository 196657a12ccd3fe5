//! `icestream cluster info|health`.

use anyhow::{bail, Result};
use kafka_protocol::messages::DescribeClusterRequest;
use serde_json::json;

use super::client::{text, Client};
use super::http::{get, parse_url};
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
    let mut client = Client::connect(&args.brokers).await?;
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
    let url = parse_url(&args.admin_url)?;
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
