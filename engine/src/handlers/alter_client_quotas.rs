//! AlterClientQuotas (KIP-546): sets or removes quota values of a user, a client id or a
//! user's client id (each possibly the default entity), answered per entry; `validate_only`
//! checks without changing anything. Needs ALTER_CONFIGS on the cluster.

use std::collections::HashSet;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData};
use kafka_protocol::messages::alter_client_quotas_response;
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::describe_client_quotas::{CLIENT_ID, IP, USER};
use super::sb;
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::quota::{
    EntityName, QuotaEntity, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};
use crate::security::state::SecurityChange;
use crate::security::{validate, Session};

pub async fn handle(
    b: &Broker,
    s: &Session,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = super::authorize::cluster(b, s, Operation::AlterConfigs);
    let mut results = Vec::with_capacity(req.entries.len());
    for e in &req.entries {
        let outcome = if !allowed {
            Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                "Cluster authorization failed.".to_string(),
            ))
        } else {
            match change(e) {
                Err(msg) => Err((ResponseError::InvalidRequest.code(), msg)),
                Ok(_) if req.validate_only => Ok(()),
                Ok(c) => b
                    .change_security(c)
                    .await
                    .map_err(|e| super::broker_error(&e)),
            }
        };
        let entity = e
            .entity
            .iter()
            .map(|d| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(d.entity_type.clone())
                    .with_entity_name(d.entity_name.clone())
            })
            .collect();
        let r = alter_client_quotas_response::EntryData::default().with_entity(entity);
        results.push(match outcome {
            Ok(()) => r,
            Err((code, msg)) => r.with_error_code(code).with_error_message(Some(sb(msg))),
        });
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

/// The change an entry asks for, or Kafka's message for why it is invalid.
fn change(e: &EntryData) -> Result<SecurityChange, String> {
    let entity = entity(&e.entity)?;
    let mut keys = HashSet::new();
    let mut changes = Vec::with_capacity(e.ops.len());
    for op in &e.ops {
        let key = op.key.as_str();
        if !keys.insert(key) {
            return Err(format!("Duplicate quota key {key} not updating quota"));
        }
        if !matches!(
            key,
            PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE | REQUEST_PERCENTAGE
        ) {
            return Err(format!("Invalid configuration key {key}"));
        }
        if op.remove {
            changes.push((key.to_string(), None));
            continue;
        }
        let v = op.value;
        if key != REQUEST_PERCENTAGE && v.fract() != 0.0 {
            return Err(format!("Configuration {key} must be a Long value"));
        }
        validate::quota_value(key, Some(v)).map_err(|e| e.0)?;
        changes.push((key.to_string(), Some(v)));
    }
    Ok(SecurityChange::AlterQuota { entity, changes })
}

fn entity(parts: &[EntityData]) -> Result<QuotaEntity, String> {
    let mut e = QuotaEntity {
        user: None,
        client_id: None,
    };
    for d in parts {
        let name = match &d.entity_name {
            Some(n) => EntityName::Name(n.to_string()),
            None => EntityName::Default,
        };
        let slot = match d.entity_type.as_str() {
            USER => &mut e.user,
            CLIENT_ID => &mut e.client_id,
            IP => return Err("IP quotas are not supported by this broker".into()),
            other => return Err(format!("Unhandled client quota entity type: {other}")),
        };
        if slot.is_some() {
            return Err(format!(
                "Invalid empty client quota entity: duplicate {}",
                d.entity_type.as_str()
            ));
        }
        *slot = Some(name);
    }
    if e.user.is_none() && e.client_id.is_none() {
        return Err("Invalid empty client quota entity".into());
    }
    validate::quota_entity(&e).map_err(|e| e.0)?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_client_quotas_request::OpData;

    fn ent(t: &str, n: Option<&str>) -> EntityData {
        EntityData::default()
            .with_entity_type(sb(t))
            .with_entity_name(n.map(sb))
    }

    fn op(k: &str, v: f64, remove: bool) -> OpData {
        OpData::default()
            .with_key(sb(k))
            .with_value(v)
            .with_remove(remove)
    }

    #[test]
    fn entries_are_checked_like_kafka() {
        let e = EntryData::default()
            .with_entity(vec![ent(USER, Some("alice")), ent(CLIENT_ID, None)])
            .with_ops(vec![
                op(PRODUCER_BYTE_RATE, 1048576.0, false),
                op(CONSUMER_BYTE_RATE, 0.0, true),
            ]);
        let SecurityChange::AlterQuota {
            entity: who,
            changes,
        } = change(&e).unwrap()
        else {
            panic!("not a quota change")
        };
        assert_eq!(who.user, Some(EntityName::Name("alice".into())));
        assert_eq!(who.client_id, Some(EntityName::Default));
        assert_eq!(changes[1], (CONSUMER_BYTE_RATE.to_string(), None));
        let with = |ops| e.clone().with_ops(ops);
        assert!(change(&with(vec![op(PRODUCER_BYTE_RATE, 1.5, false)])).is_err());
        assert!(change(&with(vec![op(REQUEST_PERCENTAGE, 1.5, false)])).is_ok());
        assert!(change(&with(vec![op("bogus", 1.0, false)])).is_err());
        assert!(change(&with(vec![op(PRODUCER_BYTE_RATE, -1.0, false)])).is_err());
        assert!(change(&with(vec![
            op(PRODUCER_BYTE_RATE, 1.0, false),
            op(PRODUCER_BYTE_RATE, 2.0, false)
        ]))
        .is_err());
        assert!(entity(&[]).is_err());
        assert!(entity(&[ent(USER, None), ent(USER, Some("a"))]).is_err());
        assert!(entity(&[ent(IP, Some("10.0.0.1"))]).is_err());
    }
}
