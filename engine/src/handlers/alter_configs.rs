//! AlterConfigs (legacy, non-incremental): the request's set replaces a topic's overrides, or
//! the dynamic configs of a broker or of every broker.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::{broker_error, broker_scope, config_pairs, sb, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::{Broker, BrokerError};
use crate::config::TopicConfig;
use crate::dynamic_config::Overrides;
use crate::security::acl::Operation;
use crate::security::Session;

pub async fn handle(b: &Broker, s: &Session, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let name = r.resource_name.as_str().to_string();
        if let Some(e) =
            super::authorize::config_resource(b, s, Operation::AlterConfigs, r.resource_type, &name)
        {
            responses.push(base.with_error_code(e.code()));
            continue;
        }
        let pairs = config_pairs(r.configs.iter().map(|c| (&c.name, c.value.as_ref())));
        if r.resource_type == RESOURCE_BROKER {
            let outcome = async {
                let scope = broker_scope(&name)?;
                let config: Overrides = pairs.into_iter().collect();
                crate::dynamic_config::validate(&config)?;
                if req.validate_only {
                    return Ok(());
                }
                b.set_broker_config(scope, config).await
            }
            .await;
            responses.push(respond(base, outcome));
            continue;
        }
        if r.resource_type != RESOURCE_TOPIC {
            responses.push(unsupported_resource(base, r.resource_type));
            continue;
        }
        let outcome = match TopicConfig::from_entries(&pairs) {
            Err(e) => Err(crate::broker::BrokerError::InvalidConfig(e)),
            Ok(cfg) if b.topics.record(&name).is_none() => {
                let _ = cfg;
                Err(crate::broker::BrokerError::UnknownTopic(name.clone()))
            }
            Ok(_) if req.validate_only => Ok(()),
            Ok(cfg) => b.set_topic_config(&name, cfg).await,
        };
        responses.push(respond(base, outcome));
    }
    AlterConfigsResponse::default().with_responses(responses)
}

fn respond(
    base: AlterConfigsResourceResponse,
    outcome: Result<(), BrokerError>,
) -> AlterConfigsResourceResponse {
    match outcome {
        Ok(()) => base,
        Err(e) => {
            let (code, msg) = broker_error(&e);
            base.with_error_code(code).with_error_message(Some(sb(msg)))
        }
    }
}

pub(crate) fn unsupported_resource(
    base: AlterConfigsResourceResponse,
    t: i8,
) -> AlterConfigsResourceResponse {
    base.with_error_code(ResponseError::InvalidRequest.code())
        .with_error_message(Some(sb(format!(
            "config resource type {t} cannot be altered; use topic (2) or broker (4)"
        ))))
}
