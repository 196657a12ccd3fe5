//! IncrementalAlterConfigs: SET and DELETE individual topic config keys, or dynamic broker
//! configs of one broker or of every broker.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::{broker_error, broker_scope, sb, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::{Broker, BrokerError};
use crate::config::{InvalidConfig, TopicConfig};
use crate::security::acl::Operation;
use crate::security::Session;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
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
        if r.resource_type == RESOURCE_BROKER {
            let outcome = async {
                let scope = broker_scope(&name)?;
                let mut config = b.dynamic_configs().scope(scope);
                for c in &r.configs {
                    let key = c.name.as_str().to_string();
                    match c.config_operation {
                        OP_SET => {
                            let value = c.value.as_ref().map(|v| v.as_str()).unwrap_or("");
                            config.insert(key, value.trim().to_string());
                        }
                        OP_DELETE => {
                            config.remove(&key);
                        }
                        op => return Err(unsupported_op(op, &key).into()),
                    }
                }
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
            responses.push(
                base.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!(
                        "config resource type {} cannot be altered; use topic (2) or broker (4)",
                        r.resource_type
                    )))),
            );
            continue;
        }
        let outcome = async {
            let rec = b
                .topics
                .record(&name)
                .ok_or_else(|| BrokerError::UnknownTopic(name.clone()))?;
            let mut cfg: TopicConfig = rec.config.clone();
            for c in &r.configs {
                let key = c.name.as_str();
                match c.config_operation {
                    OP_SET => {
                        let value = c.value.as_ref().map(|v| v.as_str()).unwrap_or("");
                        cfg.set_entry(key, value)?;
                    }
                    OP_DELETE => cfg.delete_entry(key)?,
                    op => return Err(unsupported_op(op, key).into()),
                }
            }
            cfg.check_combination()?;
            if req.validate_only {
                return Ok(());
            }
            b.set_topic_config(&name, cfg).await
        }
        .await;
        responses.push(respond(base, outcome));
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn unsupported_op(op: i8, key: &str) -> InvalidConfig {
    InvalidConfig(format!(
        "operation {op} on '{key}' is not supported: Icestream does not implement APPEND and SUBTRACT (use SET with the whole list)"
    ))
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
