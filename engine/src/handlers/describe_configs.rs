//! DescribeConfigs: a topic's effective configs (override or broker default) and a broker's,
//! each with where its value comes from (Kafka's config sources and synonyms).

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::{sb, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::Broker;
use crate::config::{all_configs, Kind};
use crate::dynamic_config::{dynamic_names, Source};
use crate::security::acl::Operation;
use crate::security::Session;

const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = Source::Default as i8;

pub fn handle(b: &Broker, s: &Session, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| {
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let (t, name) = (r.resource_type, r.resource_name.as_str());
            if let Some(e) =
                super::authorize::config_resource(b, s, Operation::DescribeConfigs, t, name)
            {
                return base.with_error_code(e.code());
            }
            match r.resource_type {
                RESOURCE_TOPIC => describe_topic(
                    b,
                    r.resource_name.as_str(),
                    &wanted,
                    req.include_synonyms,
                    req.include_documentation,
                    base,
                ),
                RESOURCE_BROKER => match super::broker_scope(r.resource_name.as_str()) {
                    Ok(scope) => base.with_configs(
                        broker_configs(b, scope, req.include_synonyms)
                            .into_iter()
                            .filter(|c| wanted(c.name.as_str()))
                            .collect(),
                    ),
                    Err(e) => base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(e.to_string()))),
                },
                other => base
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!(
                    "config resource type {other} is not supported; use topic (2) or broker (4)"
                )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_topic(
    b: &Broker,
    name: &str,
    wanted: &dyn Fn(&str) -> bool,
    synonyms: bool,
    docs: bool,
    base: DescribeConfigsResult,
) -> DescribeConfigsResult {
    let Some(rec) = b.topics.record(name) else {
        return base
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            .with_error_message(Some(sb(format!("topic '{name}' does not exist"))));
    };
    let defaults = b.defaults();
    let dynamic = b.dynamic_configs();
    let configs = all_configs()
        .filter(|d| wanted(d.name))
        .map(|d| {
            let (value, set) = rec.config.get(d.name, &defaults);
            // Where the broker default comes from: a dynamic config (this broker's, then every
            // broker's), else the start-up value.
            let dynamic = dynamic.lookup(b.node_id(), d.broker_name);
            let mut syn = Vec::new();
            if synonyms {
                let mut add = |name: &str, value: &str, source: i8| {
                    syn.push(
                        DescribeConfigsSynonym::default()
                            .with_name(sb(name))
                            .with_value(Some(sb(value)))
                            .with_source(source),
                    )
                };
                if set {
                    add(d.name, value, SOURCE_TOPIC);
                }
                if let Some((v, source)) = dynamic {
                    add(d.broker_name, v, source as i8);
                }
                let start_up = b
                    .config
                    .defaults
                    .topic
                    .get(d.name)
                    .map_or("", String::as_str);
                add(d.broker_name, start_up, SOURCE_DEFAULT);
            }
            let source = match (set, dynamic) {
                (true, _) => SOURCE_TOPIC,
                (false, Some((_, source))) => source as i8,
                (false, None) => SOURCE_DEFAULT,
            };
            DescribeConfigsResourceResult::default()
                .with_name(sb(d.name))
                .with_value(Some(sb(value)))
                .with_config_source(source)
                .with_config_type(config_type(d.kind))
                .with_synonyms(syn)
                .with_documentation(docs.then(|| sb(d.doc)))
        })
        .collect();
    base.with_configs(configs)
}

fn config_type(k: Kind) -> i8 {
    match k {
        Kind::Bool => 1,
        Kind::Choice(_) | Kind::Text | Kind::RackPreference => 2,
        Kind::Int(_) | Kind::IntIn(..) => 3,
        Kind::Long(_) => 5,
        Kind::Ratio => 6,
        Kind::List => 7,
    }
}

/// A broker's configs (`Some(id)`), each with its source; for every broker (`None`, Kafka's
/// entity default), only the dynamic configs set for all.
fn broker_configs(
    b: &Broker,
    scope: Option<i32>,
    synonyms: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = b.dynamic_configs();
    let changeable = dynamic_names();
    let result = |name: &str, value: &str, source: Source, syn: Vec<DescribeConfigsSynonym>| {
        DescribeConfigsResourceResult::default()
            .with_name(sb(name))
            .with_value(Some(sb(value)))
            .with_read_only(!changeable.contains(&name))
            .with_config_source(source as i8)
            .with_config_type(2)
            .with_synonyms(syn)
    };
    let Some(node) = scope else {
        return dynamic
            .cluster
            .iter()
            .map(|(k, v)| result(k, v, Source::Cluster, vec![]))
            .collect();
    };
    let d = &b.config.defaults;
    let mut pairs: Vec<(String, String)> = vec![
        (
            "auto.create.topics.enable".into(),
            d.auto_create_topics.to_string(),
        ),
        ("num.partitions".into(), d.default_partitions.to_string()),
        (
            "default.replication.factor".into(),
            d.default_replication_factor.to_string(),
        ),
        (
            "socket.request.max.bytes".into(),
            b.config.max_request_bytes.to_string(),
        ),
    ];
    // Kafka's default for the reassignment throttles: unthrottled.
    for name in [
        crate::dynamic_config::LEADER_THROTTLE,
        crate::dynamic_config::FOLLOWER_THROTTLE,
    ] {
        pairs.push((name.into(), i64::MAX.to_string()));
    }
    for def in all_configs() {
        pairs.push((
            def.broker_name.to_string(),
            d.topic.get(def.name).cloned().unwrap_or_default(),
        ));
    }
    pairs
        .into_iter()
        .map(|(k, start_up)| {
            let mut syn = Vec::new();
            let mut add = |value: &str, source: Source| {
                if synonyms {
                    syn.push(
                        DescribeConfigsSynonym::default()
                            .with_name(sb(k.as_str()))
                            .with_value(Some(sb(value)))
                            .with_source(source as i8),
                    );
                }
            };
            if let Some(v) = dynamic.brokers.get(&node).and_then(|o| o.get(&k)) {
                add(v, Source::Broker);
            }
            if let Some(v) = dynamic.cluster.get(&k) {
                add(v, Source::Cluster);
            }
            add(&start_up, Source::Static);
            let (value, source) = dynamic
                .lookup(node, &k)
                .map_or((start_up.as_str(), Source::Static), |(v, s)| (v, s));
            result(&k, value, source, syn)
        })
        .collect()
}
