//! `describe-producers` and `find-hanging`: what each partition's leader says is open there,
//! against what the coordinators know.

use super::*;

/// A partition to ask about, with its leader.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) leader: i32,
}

/// DescribeProducers on each partition's leader: the producers of each partition, or why a
/// partition could not be asked. `tolerant`: a leader that cannot be reached fails only its
/// partitions, not the whole call.
pub(super) async fn producers(
    client: &mut Client,
    targets: &[Target],
    tolerant: bool,
) -> Result<Vec<(Target, Result<Vec<OpenTxn>, String>)>> {
    let mut out = Vec::new();
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for t in targets {
        if t.leader < 0 {
            out.push((t.clone(), Err("LEADER_NOT_AVAILABLE".to_string())));
        } else {
            by_leader
                .entry(t.leader)
                .or_default()
                .entry(t.topic.clone())
                .or_default()
                .push(t.partition);
        }
    }
    for (leader, topics) in by_leader {
        let req = DescribeProducersRequest::default().with_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    TopicRequest::default()
                        .with_name(TopicName(sb(t)))
                        .with_partition_indexes(ps.clone())
                })
                .collect(),
        );
        let resp = match client.node(leader).await {
            Ok(conn) => conn.send(&req).await,
            Err(e) => Err(e),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) if tolerant => {
                let why = format!("broker {leader} did not answer: {e}");
                for (t, ps) in &topics {
                    for &p in ps {
                        let target = Target {
                            topic: t.clone(),
                            partition: p,
                            leader,
                        };
                        out.push((target, Err(why.clone())));
                    }
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut answered = BTreeSet::new();
        for t in &resp.topics {
            for p in &t.partitions {
                let topic = t.name.0.to_string();
                answered.insert((topic.clone(), p.partition_index));
                let target = Target {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    leader,
                };
                if p.error_code != 0 {
                    let why =
                        code_detail(p.error_code, p.error_message.as_ref().map(|m| m.as_str()));
                    out.push((target, Err(why)));
                    continue;
                }
                let states = p
                    .active_producers
                    .iter()
                    .map(|s| OpenTxn {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        producer_id: s.producer_id.0,
                        producer_epoch: s.producer_epoch,
                        coordinator_epoch: s.coordinator_epoch,
                        start_offset: s.current_txn_start_offset,
                        last_timestamp: s.last_timestamp,
                    })
                    .collect();
                out.push((target, Ok(states)));
            }
        }
        for (t, ps) in topics {
            for p in ps {
                if !answered.contains(&(t.clone(), p)) {
                    let target = Target {
                        topic: t.clone(),
                        partition: p,
                        leader,
                    };
                    out.push((target, Err("not answered".to_string())));
                }
            }
        }
    }
    Ok(out)
}

/// The partitions of `topic` (one when `partition` is given), with their leaders.
pub(super) async fn targets_of(
    client: &mut Client,
    topic: &str,
    partition: Option<i32>,
    action: &str,
) -> Result<Vec<Target>> {
    let info = topic_info(client, topic, action).await?;
    let targets: Vec<Target> = info
        .partitions
        .iter()
        .filter(|p| partition.is_none_or(|want| p.partition == want))
        .map(|p| Target {
            topic: topic.to_string(),
            partition: p.partition,
            leader: p.leader,
        })
        .collect();
    if let (Some(p), true) = (partition, targets.is_empty()) {
        bail!("topic '{topic}' has no partition {p}: see 'icestream topic describe {topic}'");
    }
    Ok(targets)
}

/// Every partition of every topic, internal ones too (transactional offset commits hold
/// transactions open on `__consumer_offsets`).
pub(super) async fn all_targets(client: &mut Client) -> Result<Vec<Target>> {
    let md = client.metadata(None).await?;
    let mut out = Vec::new();
    for t in &md.topics {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        if t.error_code != 0 {
            continue;
        }
        for p in &t.partitions {
            out.push(Target {
                topic: name.clone(),
                partition: p.partition_index,
                leader: p.leader_id.0,
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// The producers of one partition, or its one-line error.
pub(super) async fn partition_producers(
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> Result<Vec<OpenTxn>> {
    let targets = targets_of(client, topic, Some(partition), "describe the producers of").await?;
    let answers = producers(client, &targets, false).await?;
    match answers.into_iter().next() {
        Some((_, Ok(states))) => Ok(states),
        Some((_, Err(why))) => bail!(
            "cannot read the producers of {topic}[{partition}] ({why}): {}",
            if why.starts_with("NOT_LEADER") || why.starts_with("LEADER_NOT") {
                "leadership is moving; retry in a few seconds"
            } else {
                "check the broker log"
            }
        ),
        None => Err(topic_error("describe the producers of", topic, 3, None)),
    }
}

pub async fn describe_producers(args: &ClientArgs, topic: &str, partition: i32) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let states = partition_producers(&mut client, topic, partition).await?;
    if args.format == Format::Json {
        emit_json_pretty(&json!(states.iter().map(open_json).collect::<Vec<_>>()))?;
        return Ok(());
    }
    let mut t = Table::new(&[
        "PRODUCER-ID",
        "PRODUCER-EPOCH",
        "COORDINATOR-EPOCH",
        "LAST-TIMESTAMP",
        "TXN-START-OFFSET",
    ]);
    let dash = |v: i64| {
        if v < 0 {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    for s in &states {
        t.row(vec![
            s.producer_id.to_string(),
            s.producer_epoch.to_string(),
            dash(s.coordinator_epoch.into()),
            s.last_timestamp.to_string(),
            dash(s.start_offset),
        ]);
    }
    emit(&t.render())?;
    Ok(())
}

pub(super) fn open_json(s: &OpenTxn) -> serde_json::Value {
    json!({
        "topic": s.topic,
        "partition": s.partition,
        "producer_id": s.producer_id,
        "producer_epoch": s.producer_epoch,
        "coordinator_epoch": (s.coordinator_epoch >= 0).then_some(s.coordinator_epoch),
        "last_timestamp": s.last_timestamp,
        "current_txn_start_offset": (s.start_offset >= 0).then_some(s.start_offset),
    })
}

pub async fn find_hanging(
    args: &ClientArgs,
    topic: Option<&str>,
    partition: Option<i32>,
    max_timeout_ms: i64,
) -> Result<()> {
    if max_timeout_ms < 0 {
        bail!("--max-transaction-timeout-ms must be 0 or more, not {max_timeout_ms}: use the brokers' transaction.max.timeout.ms");
    }
    let mut client = Client::connect(args).await?;
    let targets = match topic {
        Some(t) => targets_of(&mut client, t, partition, "check").await?,
        None => all_targets(&mut client).await?,
    };
    let mut open = Vec::new();
    let mut unchecked = Vec::new();
    for (t, r) in producers(&mut client, &targets, true).await? {
        match r {
            Ok(states) => open.extend(states.into_iter().filter(|s| s.start_offset >= 0)),
            Err(why) => unchecked.push(format!("{}[{}] ({why})", t.topic, t.partition)),
        }
    }
    if !unchecked.is_empty() {
        eprintln!(
            "warning: not checked, their leaders did not answer: {}; retry in a few seconds",
            unchecked.join(", ")
        );
    }
    let now = now_ms();
    let candidates: Vec<OpenTxn> = open
        .into_iter()
        .filter(|t| past_timeout(t, now, max_timeout_ms))
        .collect();
    let known = if candidates.is_empty() {
        Vec::new()
    } else {
        known_for(&mut client, &candidates).await?
    };
    let found = hanging(&candidates, &known, now, max_timeout_ms);
    emit_hanging(args.format, &found, now)
}

/// What the coordinators say about the candidates' producer ids: ListTransactions by producer
/// id on every broker, then DescribeTransactions of what they listed on the broker that listed
/// it. A broker that cannot answer is an error: it may coordinate one of them, and calling a
/// live transaction hanging could get it aborted.
pub(super) async fn known_for(
    client: &mut Client,
    candidates: &[OpenTxn],
) -> Result<Vec<KnownTxn>> {
    let pids: Vec<i64> = candidates
        .iter()
        .map(|c| c.producer_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    coordinators_available(client).await?;
    let listed = list_everywhere(client, &[], &pids, true)
        .await
        .map_err(|e| anyhow!("cannot ask the transaction coordinators about open transactions, so none is reported as hanging: {e:#}"))?;
    let mut by_node: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for l in listed {
        by_node
            .entry(l.coordinator)
            .or_default()
            .push(l.transactional_id);
    }
    let mut known = Vec::new();
    for (node, ids) in by_node {
        for (id, r) in describe_on(client, node, &ids).await? {
            match r {
                Ok(d) => known.push(d.known),
                // Gone since it was listed: the coordinator no longer knows it.
                Err(105) => {}
                Err(code) => bail!(
                    "cannot describe transactional id '{id}' on broker {node} ({}), so no transaction is reported as hanging: {}",
                    code_name(code),
                    coordinator_hint(code)
                ),
            }
        }
    }
    Ok(known)
}

/// Every `__transaction_state` partition has a leader among the brokers: a coordinator
/// missing during a failover would list none of its transactions, and they would look hanging.
pub(super) async fn coordinators_available(client: &mut Client) -> Result<()> {
    let md = client
        .metadata(Some(&[TRANSACTIONS_TOPIC.to_string()]))
        .await?;
    let nodes: BTreeSet<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    let Some(t) = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(TRANSACTIONS_TOPIC))
        .filter(|t| t.error_code == 0)
    else {
        // Never created: no coordinator has state to lose.
        return Ok(());
    };
    if let Some(p) = t
        .partitions
        .iter()
        .find(|p| !nodes.contains(&p.leader_id.0))
    {
        bail!(
            "partition {} of {TRANSACTIONS_TOPIC} has no live leader, so its transactions cannot be asked about and none is reported as hanging: retry in a few seconds",
            p.partition_index
        );
    }
    Ok(())
}

pub(super) fn emit_hanging(format: Format, found: &[&OpenTxn], now: i64) -> Result<()> {
    if format == Format::Json {
        let v: Vec<_> = found
            .iter()
            .map(|t| {
                let mut j = open_json(t);
                j["duration_ms"] = json!((now - t.last_timestamp).max(0));
                j
            })
            .collect();
        emit_json_pretty(&json!(v))?;
        return Ok(());
    }
    emit(&hanging_table(found, now))?;
    Ok(())
}

pub(super) fn hanging_table(found: &[&OpenTxn], now: i64) -> String {
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "PRODUCER-ID",
        "PRODUCER-EPOCH",
        "COORDINATOR-EPOCH",
        "START-OFFSET",
        "LAST-TIMESTAMP",
        "DURATION-MS",
    ]);
    for s in found {
        t.row(vec![
            s.topic.clone(),
            s.partition.to_string(),
            s.producer_id.to_string(),
            s.producer_epoch.to_string(),
            if s.coordinator_epoch < 0 {
                "-".into()
            } else {
                s.coordinator_epoch.to_string()
            },
            s.start_offset.to_string(),
            s.last_timestamp.to_string(),
            (now - s.last_timestamp).max(0).to_string(),
        ]);
    }
    t.render()
}
