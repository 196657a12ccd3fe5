//! DescribeConfigs: a topic's effective configs (override or cluster default) and the broker's.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::{sb, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::Broker;
use crate::config::{all_configs, Kind};

const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub fn handle(b: &Broker, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
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
            match r.resource_type {
                RESOURCE_TOPIC => describe_topic(
                    b,
                    r.resource_name.as_str(),
                    &wanted,
                    req.include_synonyms,
                    req.include_documentation,
                    base,
                ),
                RESOURCE_BROKER => base.with_configs(
                    broker_configs(b)
                        .into_iter()
                        .filter(|c| wanted(c.name.as_str()))
                        .collect(),
                ),
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
    let configs = all_configs()
        .filter(|d| wanted(d.name))
        .map(|d| {
            let (value, set) = rec.config.get(d.name, &b.config.defaults);
            let default = b
                .config
                .defaults
                .topic
                .get(d.name)
                .cloned()
                .unwrap_or_default();
            let mut syn = Vec::new();
            if synonyms {
                if set {
                    syn.push(
                        DescribeConfigsSynonym::default()
                            .with_name(sb(d.name))
                            .with_value(Some(sb(value)))
                            .with_source(SOURCE_TOPIC),
                    );
                }
                syn.push(
                    DescribeConfigsSynonym::default()
                        .with_name(sb(d.name))
                        .with_value(Some(sb(default)))
                        .with_source(SOURCE_DEFAULT),
                );
            }
            DescribeConfigsResourceResult::default()
                .with_name(sb(d.name))
                .with_value(Some(sb(value)))
                .with_config_source(if set { SOURCE_TOPIC } else { SOURCE_DEFAULT })
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

fn broker_configs(b: &Broker) -> Vec<DescribeConfigsResourceResult> {
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
    for def in all_configs() {
        pairs.push((
            def.broker_name.to_string(),
            d.topic.get(def.name).cloned().unwrap_or_default(),
        ));
    }
    pairs
        .into_iter()
        .map(|(k, v)| {
            DescribeConfigsResourceResult::default()
                .with_name(sb(k))
                .with_value(Some(sb(v)))
                .with_read_only(true)
                .with_config_source(SOURCE_STATIC_BROKER)
                .with_config_type(2)
        })
        .collect()
}
