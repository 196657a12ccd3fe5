//! DescribeAcls: the ACLs a filter matches, grouped by resource pattern as Kafka answers.
//! Needs DESCRIBE on the cluster. The registry's ACLs (subjects, the registry as a whole)
//! have no Kafka resource type and are never listed here.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use crate::security::Session;

pub fn handle(b: &Broker, s: &Session, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if !super::authorize::cluster(b, s, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(msg) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(sb(msg)))
        }
    };
    let state = b.security.state();
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in state.acls.bindings.iter().filter(|a| f.matches(a)) {
        let Some(rt) = acl.resource_type.code() else {
            continue;
        };
        by_resource
            .entry((rt, acl.name.as_str(), acl.pattern.code()))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(sb(acl.principal.as_str()))
                    .with_host(sb(acl.host.as_str()))
                    .with_operation(acl.operation.code())
                    .with_permission_type(acl.permission.code()),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(sb(name))
                .with_pattern_type(pattern)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

/// A Kafka ACL filter (`AclBindingFilter`) from its wire fields: ANY (1) leaves a field open,
/// UNKNOWN (0) or a code Kafka does not know is invalid. The resource type ANY covers Kafka's
/// own types only ([`kafka_types`] expands it): the registry's ACLs stay out of Kafka's APIs.
pub(crate) fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let resource_type = match resource_type {
        1 => None,
        t => Some(ResourceType::from_code(t).ok_or_else(|| format!("Invalid resourceType {t}"))?),
    };
    let pattern = match pattern {
        1 => None,
        2 => Some(PatternFilter::Match),
        3 => Some(PatternFilter::Exactly(PatternType::Literal)),
        4 => Some(PatternFilter::Exactly(PatternType::Prefixed)),
        p => return Err(format!("Invalid patternType {p}")),
    };
    let operation = match operation {
        1 => None,
        o => Some(Operation::from_code(o).ok_or_else(|| format!("Invalid operation {o}"))?),
    };
    let permission = match permission {
        1 => None,
        p => Some(Permission::from_code(p).ok_or_else(|| format!("Invalid permissionType {p}"))?),
    };
    let text = |s: Option<&StrBytes>| s.map(|s| s.to_string());
    Ok(AclFilter {
        resource_type,
        name: text(name),
        pattern,
        principal: text(principal),
        host: text(host),
        operation,
        permission,
    })
}

/// Whether a binding is one Kafka's APIs show (not a registry ACL).
pub(crate) fn is_kafka(b: &AclBinding) -> bool {
    b.resource_type.code().is_some()
}

/// `f` as filters that match Kafka's resource types only.
pub(crate) fn kafka_types(f: AclFilter) -> Vec<AclFilter> {
    match f.resource_type {
        Some(_) => vec![f],
        None => [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
            ResourceType::TransactionalId,
            ResourceType::DelegationToken,
            ResourceType::User,
        ]
        .into_iter()
        .map(|t| AclFilter {
            resource_type: Some(t),
            ..f.clone()
        })
        .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_and_match_filters() {
        let f = filter(1, None, 1, None, None, 1, 1).unwrap();
        assert_eq!(f, AclFilter::default());
        let name = sb("orders");
        let f = filter(2, Some(&name), 2, None, None, 3, 3).unwrap();
        assert_eq!(f.resource_type, Some(ResourceType::Topic));
        assert_eq!(f.pattern, Some(PatternFilter::Match));
        assert_eq!(f.operation, Some(Operation::Read));
        assert!(filter(0, None, 1, None, None, 1, 1).is_err());
        assert!(filter(1, None, 0, None, None, 1, 1).is_err());
        assert!(filter(1, None, 1, None, None, 0, 1).is_err());
        assert!(filter(1, None, 1, None, None, 1, 9).is_err());
        assert_eq!(kafka_types(AclFilter::default()).len(), 6);
        let registry = AclBinding {
            resource_type: ResourceType::RegistrySubject,
            name: "orders-value".into(),
            pattern: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        assert!(!is_kafka(&registry));
        assert!(!kafka_types(AclFilter::default())
            .iter()
            .any(|f| f.matches(&registry)));
    }
}
