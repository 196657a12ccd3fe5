//! CreateTopics, with configs, broker defaults for -1 counts, and `validate_only`.

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::authorize::{self, Decisions};
use super::{broker_error, config_pairs, sb};
use crate::broker::Broker;
use crate::config::all_configs;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub async fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    // CREATE on the cluster, else on each topic; the configs are shown with DESCRIBE_CONFIGS.
    let on_cluster = authorize::cluster(b, s, Operation::Create);
    let mut create = Decisions::new(b, s, Operation::Create, ResourceType::Topic);
    let mut configs_shown = Decisions::new(b, s, Operation::DescribeConfigs, ResourceType::Topic);
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let r = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if !on_cluster && !create.allows(&name) {
            results.push(r.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        if !t.assignments.is_empty() {
            results.push(
                r.with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(sb("manual replica assignment is not supported; give a partition count instead"))),
            );
            continue;
        }
        let configs = config_pairs(t.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        let planned = b.plan_topic(&name, t.num_partitions, t.replication_factor, &configs);
        let outcome = match planned {
            Ok(rec) if req.validate_only => Ok(rec),
            Ok(rec) => b.create_topic(rec.clone()).await.map(|_| rec),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(rec) => {
                let r = r
                    .with_topic_id(if req.validate_only {
                        Default::default()
                    } else {
                        rec.id
                    })
                    .with_num_partitions(rec.partitions)
                    .with_replication_factor(rec.replication_factor);
                if version >= 5 && !configs_shown.allows(&name) {
                    r.with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code())
                } else if version >= 5 {
                    let defaults = b.defaults();
                    let cfgs = all_configs()
                        .map(|d| {
                            let (v, set) = rec.config.get(d.name, &defaults);
                            CreatableTopicConfigs::default()
                                .with_name(sb(d.name))
                                .with_value(Some(sb(v)))
                                .with_config_source(if set { 1 } else { 5 })
                        })
                        .collect();
                    r.with_configs(Some(cfgs))
                } else {
                    r
                }
            }
            Err(e) => {
                let (code, msg) = broker_error(&e);
                r.with_error_code(code).with_error_message(Some(sb(msg)))
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
