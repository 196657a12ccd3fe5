//! CreateAcls: each creation checked as Kafka's `AclControlManager` does (a known resource
//! type, pattern, operation and permission; a parsable principal; `kafka-cluster` as the
//! CLUSTER's name), the valid ones stored in one change. Needs ALTER on the cluster.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;
use crate::security::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use crate::security::state::SecurityChange;
use crate::security::{validate, Session};

pub async fn handle(b: &Broker, s: &Session, req: CreateAclsRequest) -> CreateAclsResponse {
    let result = |code: i16, msg: Option<String>| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(msg.map(sb))
    };
    if !super::authorize::cluster(b, s, Operation::Alter) {
        let results = req
            .creations
            .iter()
            .map(|_| result(ResponseError::ClusterAuthorizationFailed.code(), None))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let parsed: Vec<Result<AclBinding, String>> = req.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    // One change for the whole request: one controller entry, one file write.
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        b.change_security(SecurityChange::CreateAcls(valid)).await
    };
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(msg), _) => result(ResponseError::InvalidRequest.code(), Some(msg)),
            (Ok(_), Ok(())) => result(0, None),
            (Ok(_), Err(e)) => {
                let (code, msg) = super::broker_error(e);
                result(code, Some(msg))
            }
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// The binding a creation asks for, or Kafka's message for why it is invalid.
fn binding(c: &AclCreation) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(c.resource_type)
        .ok_or_else(|| format!("Invalid resourceType {}", c.resource_type))?;
    let pattern = match c.resource_pattern_type {
        3 => PatternType::Literal,
        4 => PatternType::Prefixed,
        p => return Err(format!("Invalid patternType {p}")),
    };
    let operation = Operation::from_code(c.operation)
        .ok_or_else(|| format!("Invalid operation {}", c.operation))?;
    let permission = Permission::from_code(c.permission_type)
        .ok_or_else(|| format!("Invalid permissionType {}", c.permission_type))?;
    let b = AclBinding {
        resource_type,
        name: c.resource_name.to_string(),
        pattern,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation,
        permission,
    };
    validate::binding(&b).map_err(|e| e.0)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_checked_like_kafka() {
        let ok = AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(sb("orders"))
            .with_resource_pattern_type(3)
            .with_principal(sb("User:alice"))
            .with_host(sb("*"))
            .with_operation(3)
            .with_permission_type(3);
        let b = binding(&ok).unwrap();
        assert_eq!(
            (b.resource_type, b.operation, b.permission),
            (ResourceType::Topic, Operation::Read, Permission::Allow)
        );
        // ANY (1) and UNKNOWN (0) are filters' values, not an ACL's.
        assert!(binding(&ok.clone().with_resource_type(1)).is_err());
        assert!(binding(&ok.clone().with_resource_pattern_type(1)).is_err());
        assert!(binding(&ok.clone().with_resource_pattern_type(2)).is_err());
        assert!(binding(&ok.clone().with_operation(1)).is_err());
        assert!(binding(&ok.clone().with_permission_type(1)).is_err());
        assert!(binding(&ok.clone().with_principal(sb("alice"))).is_err());
        let cluster = ok.clone().with_resource_type(4);
        assert!(binding(&cluster).unwrap_err().contains("kafka-cluster"));
        assert!(binding(&cluster.with_resource_name(sb("kafka-cluster"))).is_ok());
    }
}
