//! ListGroups: every group this node coordinates, filtered by state (v4+) and type (v5+:
//! "classic", or "consumer" for KIP-848 groups).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::authorize::{self, Decisions};
use super::sb;
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;

pub fn handle(b: &Broker, s: &Session, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    // DESCRIBE on the cluster lists every group; else the groups the client may describe.
    let every = authorize::cluster(b, s, Operation::Describe);
    let mut describable = Decisions::new(b, s, Operation::Describe, ResourceType::Group);
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = b
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, st, _)| states.is_empty() || states.contains(&st.to_lowercase()))
        .filter(|(_, _, _, ty)| types.is_empty() || types.iter().any(|t| t == ty))
        .filter(|(id, ..)| every || describable.allows(id))
        .map(|(id, pt, st, ty)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_protocol_type(sb(pt));
            let g = if version >= 4 {
                g.with_group_state(sb(st))
            } else {
                g
            };
            if version >= 5 {
                g.with_group_type(sb(ty))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
