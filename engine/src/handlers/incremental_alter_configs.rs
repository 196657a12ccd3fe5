//! IncrementalAlterConfigs: SET and DELETE individual topic config keys.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::{broker_error, sb, RESOURCE_TOPIC};
use crate::broker::{Broker, BrokerError};
use crate::config::{InvalidConfig, TopicConfig};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn handle(
    b: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if r.resource_type != RESOURCE_TOPIC {
            responses.push(
                base.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!("config resource type {} cannot be altered; broker settings are set at start-up", r.resource_type)))),
            );
            continue;
        }
        let name = r.resource_name.as_str().to_string();
        let outcome = async {
            let rec = b.topics.record(&name).ok_or_else(|| BrokerError::UnknownTopic(name.clone()))?;
            let mut cfg: TopicConfig = rec.config.clone();
            for c in &r.configs {
                let key = c.name.as_str();
                match c.config_operation {
                    OP_SET => {
                        let value = c.value.as_ref().map(|v| v.as_str()).unwrap_or("");
                        cfg.set_entry(key, value)?;
                    }
                    OP_DELETE => cfg.delete_entry(key)?,
                    op => {
                        return Err(InvalidConfig(format!(
                            "operation {op} on '{key}' is not supported: Icestream does not implement APPEND and SUBTRACT (use SET with the whole list)"
                        ))
                        .into())
                    }
                }
            }
            cfg.check_combination()?;
            if req.validate_only {
                return Ok(());
            }
            b.set_topic_config(&name, cfg).await
        }
        .await;
        responses.push(match outcome {
            Ok(()) => base,
            Err(e) => {
                let (code, msg) = broker_error(&e);
                base.with_error_code(code).with_error_message(Some(sb(msg)))
            }
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
