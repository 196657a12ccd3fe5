//! `icestream cluster storage unmount|mount|list-mountable`: hibernating topics into object
//! storage through the admin API.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::http::{encode_segment, parse_url, request, ADMIN_API};
use super::output::{emit, emit_json_pretty, emit_raw};
use super::table::Table;
use super::{ClientArgs, Format};

const HINT: &str = "is 'icestream serve' running? set --admin-url";

async fn call(args: &ClientArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let url = parse_url(&args.admin_url)?.with_auth(args);
    let body = body.map(|b| b.to_string());
    let (status, text) = request(&url, ADMIN_API, method, path, body.as_deref(), HINT).await?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    if !(200..300).contains(&status) {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        bail!("{msg} (HTTP {status})");
    }
    Ok(value)
}

/// Starts an unmount and follows it to the end with a progress bar on stderr.
pub async fn unmount(args: &ClientArgs, topic: &str) -> Result<()> {
    call(
        args,
        "POST",
        "/v1/topics/unmount",
        Some(json!({ "topic": topic })),
    )
    .await?;
    let path = format!("/v1/topics/unmount/status/{}", encode_segment(topic));
    let tty = std::io::stderr().is_terminal() && args.format == Format::Table;
    let mut last_stage = String::new();
    loop {
        let s = call(args, "GET", &path, None).await?;
        let stage = s["state"].as_str().unwrap_or("unknown").to_string();
        let done = s["uploaded_records"].as_u64().unwrap_or(0);
        let total = s["total_records"].as_u64().unwrap_or(0);
        let bytes = s["remote_bytes"].as_u64().unwrap_or(0);
        if tty {
            eprint!("\r{}", progress_line(&stage, done, total, bytes));
            let _ = std::io::stderr().flush();
        } else if stage != last_stage && args.format == Format::Table {
            eprintln!("{}", progress_line(&stage, done, total, bytes));
        }
        last_stage = stage.clone();
        match stage.as_str() {
            "done" => {
                if tty {
                    eprintln!();
                }
                return match args.format {
                    Format::Json => emit_json_pretty(&s).map(|_| ()),
                    Format::Table => emit(&format!(
                        "unmounted '{topic}': {} partitions, {} in object storage; mount it back with 'icestream cluster storage mount {topic}'",
                        s["partitions"].as_array().map_or(0, Vec::len),
                        human(bytes)
                    ))
                    .map(|_| ()),
                };
            }
            "failed" => {
                if tty {
                    eprintln!();
                }
                bail!(
                    "unmount of '{topic}' failed: {}; the topic is served again",
                    s["error"].as_str().unwrap_or("unknown error")
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `uploading  [#########.....] 1200 / 3000 records, 1.2 MiB in object storage`
fn progress_line(stage: &str, done: u64, total: u64, bytes: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH) as usize;
    format!(
        "{stage:<10} [{}{}] {done} / {total} records, {} in object storage",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        human(bytes)
    )
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub async fn mount(
    args: &ClientArgs,
    topic: &str,
    new_name: Option<&str>,
    replication_factor: Option<i16>,
) -> Result<()> {
    let body = json!({
        "topic": topic,
        "new_name": new_name,
        "replication_factor": replication_factor,
    });
    let r = call(args, "POST", "/v1/topics/mount", Some(body)).await?;
    match args.format {
        Format::Json => emit_json_pretty(&r)?,
        Format::Table => emit(&format!(
            "mounted '{}' as '{}': {} partitions, {} group offsets restored",
            topic,
            r["topic"].as_str().unwrap_or(topic),
            r["partitions"].as_array().map_or(0, Vec::len),
            r["group_offsets"].as_u64().unwrap_or(0)
        ))?,
    };
    if r["state"] == "mounting" && args.format == Format::Table {
        // A cluster answers once the topic is placed; its coordinators may still be restoring.
        eprintln!(
            "group offsets are still being restored; see /v1/topics/mount/status/{}",
            encode_segment(r["topic"].as_str().unwrap_or(topic))
        );
    }
    Ok(())
}

pub async fn list_mountable(args: &ClientArgs) -> Result<()> {
    let r = call(args, "GET", "/v1/topics/mountable", None).await?;
    let topics = r
        .as_array()
        .context("the admin API answered /v1/topics/mountable with something other than a list")?;
    match args.format {
        Format::Json => emit_json_pretty(&r)?,
        Format::Table => {
            let mut t = Table::new(&[
                "TOPIC",
                "TOPIC_ID",
                "PARTITIONS",
                "RECORDS",
                "UNMOUNTED_AT_MS",
            ]);
            for m in topics {
                t.row(vec![
                    m["topic"].as_str().unwrap_or("-").to_string(),
                    m["topic_id"].as_str().unwrap_or("-").to_string(),
                    m["partitions"].as_u64().unwrap_or(0).to_string(),
                    m["records"].as_i64().unwrap_or(0).to_string(),
                    m["unmounted_at_ms"]
                        .as_i64()
                        .map_or("-".into(), |t| t.to_string()),
                ]);
            }
            emit_raw(&t.render())?
        }
    };
    Ok(())
}

/// Per-partition storage of a topic from the admin API (`None` when it cannot be reached, so
/// `topic describe` still works with only the Kafka port).
pub async fn topic_storage(args: &ClientArgs, topic: &str) -> Option<Vec<Value>> {
    let path = format!("/v1/topics/{}/storage", encode_segment(topic));
    let v = call(args, "GET", &path, None).await.ok()?;
    v["partitions"].as_array().cloned()
}

/// A partition's storage columns for `topic describe`: local start, local size, remote size.
pub fn storage_columns(parts: Option<&[Value]>, partition: i32) -> [String; 3] {
    let p = parts.and_then(|ps| {
        ps.iter()
            .find(|p| p["partition"].as_i64() == Some(partition as i64))
    });
    match p {
        None => ["-".into(), "-".into(), "-".into()],
        Some(p) => [
            p["local_start_offset"]
                .as_i64()
                .map_or("-".into(), |o| o.to_string()),
            human(p["local_bytes"].as_u64().unwrap_or(0)),
            human(p["remote_bytes"].as_u64().unwrap_or(0)),
        ],
    }
}
