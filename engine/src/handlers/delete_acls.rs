//! DeleteAcls: every ACL any filter matches goes, in one change; each filter's answer lists
//! the ACLs it matched. Needs ALTER on the cluster. A filter of resource type ANY matches
//! Kafka's resource types only: the registry's ACLs are the admin API's.

use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::ResponseError;

use super::describe_acls::{filter, is_kafka, kafka_types};
use super::sb;
use crate::broker::Broker;
use crate::security::acl::{AclFilter, Operation};
use crate::security::state::SecurityChange;
use crate::security::Session;

pub async fn handle(b: &Broker, s: &Session, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let failed = |code: ResponseError, msg: Option<String>| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(msg.map(sb))
    };
    if !super::authorize::cluster(b, s, Operation::Alter) {
        let results = req
            .filters
            .iter()
            .map(|_| failed(ResponseError::ClusterAuthorizationFailed, None))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = req.filters.iter().map(parse).collect();
    let all: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|p| p.clone().ok())
        .flat_map(kafka_types)
        .collect();
    let state = b.security.state();
    let stored = if all.is_empty()
        || !state
            .acls
            .bindings
            .iter()
            .any(|a| all.iter().any(|f| f.matches(a)))
    {
        Ok(())
    } else {
        b.change_security(SecurityChange::DeleteAcls(all)).await
    };
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(msg), _) => failed(ResponseError::InvalidRequest, Some(msg)),
            (Ok(_), Err(e)) => {
                let (code, msg) = super::broker_error(e);
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(sb(msg)))
            }
            (Ok(f), Ok(())) => {
                let matching = state
                    .acls
                    .bindings
                    .iter()
                    .filter(|a| is_kafka(a) && f.matches(a))
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(a.resource_type.code().unwrap_or_default())
                            .with_resource_name(sb(a.name.as_str()))
                            .with_pattern_type(a.pattern.code())
                            .with_principal(sb(a.principal.as_str()))
                            .with_host(sb(a.host.as_str()))
                            .with_operation(a.operation.code())
                            .with_permission_type(a.permission.code())
                    })
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(matching)
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn parse(f: &DeleteAclsFilter) -> Result<AclFilter, String> {
    filter(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.host_filter.as_ref(),
        f.operation,
        f.permission_type,
    )
}
