//! DescribeGroups: state, protocol and members (with their metadata and assignment) of each
//! group; an unknown group is described as "Dead" with no members, as Kafka does.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;

use super::group_error::code;
use super::{authorize, sb};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub fn handle(
    b: &Broker,
    s: &Session,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = version >= 3 && req.include_authorized_operations;
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let g = DescribedGroup::default().with_group_id(id.clone());
            let g = if version >= 3 {
                g.with_authorized_operations(authorize::OPERATIONS_OMITTED)
            } else {
                g
            };
            // DESCRIBE on the group, before its existence is looked at (as Kafka).
            if !authorize::group(b, s, Operation::Describe, id.as_str()) {
                return g.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let g = if operations {
                g.with_authorized_operations(authorize::operations(
                    b,
                    s,
                    ResourceType::Group,
                    id.as_str(),
                ))
            } else {
                g
            };
            if let Err(e) = b.groups.check(b, id.as_str()) {
                return g.with_error_code(code(Some(e)));
            }
            let Some(d) = b.groups.describe(id.as_str()) else {
                let g = g.with_group_state(sb("Dead"));
                return if version >= 6 {
                    g.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(sb(format!("group {} does not exist", &*id))))
                } else {
                    g
                };
            };
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    let dm = DescribedGroupMember::default()
                        .with_member_id(sb(m.member_id))
                        .with_client_id(sb(m.client_id))
                        .with_client_host(sb(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        dm.with_group_instance_id(m.instance_id.map(sb))
                    } else {
                        dm
                    }
                })
                .collect();
            g.with_group_state(sb(d.state))
                .with_protocol_type(sb(d.protocol_type))
                .with_protocol_data(sb(d.protocol_name))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
