//! DescribeClientQuotas (KIP-546): the quotas of every entity the filter's components match
//! (a name exactly, the default entity, or any named one), only entities with no other
//! component when `strict`. Needs DESCRIBE_CONFIGS on the cluster.

use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::ResponseError;

use super::sb;
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::quota::{EntityName, QuotaEntity};
use crate::security::Session;

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// One component of the filter: which names of an entity type match.
#[derive(Debug, Clone, PartialEq)]
enum Match {
    Exactly(String),
    Default,
    Specified,
}

impl Match {
    fn matches(&self, n: &EntityName) -> bool {
        match (self, n) {
            (Match::Exactly(a), EntityName::Name(b)) => a == b,
            (Match::Default, EntityName::Default) => true,
            (Match::Specified, EntityName::Name(_)) => true,
            _ => false,
        }
    }
}

/// The filter: for the user and the client id, a component if given.
#[derive(Debug, Default)]
struct Filter {
    user: Option<Match>,
    client_id: Option<Match>,
    /// An `ip` component: this broker keeps no IP quotas, so nothing matches.
    ip: bool,
}

fn parse(components: &[ComponentData]) -> Result<Filter, String> {
    let mut f = Filter::default();
    for c in components {
        let m = match c.match_type {
            0 => Match::Exactly(
                c._match
                    .as_ref()
                    .ok_or("Unexpected null match for entity type with match type EXACT")?
                    .to_string(),
            ),
            1 => Match::Default,
            2 => Match::Specified,
            t => return Err(format!("Unexpected match type {t}")),
        };
        let slot = match c.entity_type.as_str() {
            USER => &mut f.user,
            CLIENT_ID => &mut f.client_id,
            IP => {
                if f.ip {
                    return Err("Duplicate ip filter component entity type".into());
                }
                f.ip = true;
                continue;
            }
            other => return Err(format!("Custom entity type '{other}' not supported")),
        };
        if slot.is_some() {
            return Err(format!(
                "Duplicate {} filter component entity type",
                c.entity_type.as_str()
            ));
        }
        *slot = Some(m);
    }
    if f.ip && (f.user.is_some() || f.client_id.is_some()) {
        return Err("Invalid entity filter component combination, IP filter component should not be used with user or clientId filter component.".into());
    }
    Ok(f)
}

impl Filter {
    fn matches(&self, e: &QuotaEntity, strict: bool) -> bool {
        if self.ip {
            return false;
        }
        let part = |m: &Option<Match>, n: &Option<EntityName>| match (m, n) {
            (Some(m), Some(n)) => m.matches(n),
            (Some(_), None) => false,
            (None, Some(_)) => !strict,
            (None, None) => true,
        };
        part(&self.user, &e.user) && part(&self.client_id, &e.client_id)
    }
}

pub fn handle(
    b: &Broker,
    s: &Session,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if !super::authorize::cluster(b, s, Operation::DescribeConfigs) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(sb("Cluster authorization failed.")));
    }
    let filter = match parse(&req.components) {
        Ok(f) => f,
        Err(msg) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(sb(msg)))
        }
    };
    let state = b.security.state();
    let entries = state
        .quotas
        .set
        .iter()
        .filter(|(e, _)| filter.matches(e, req.strict))
        .map(|(e, values)| {
            EntryData::default()
                .with_entity(entity_data(e))
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| ValueData::default().with_key(sb(k.as_str())).with_value(*v))
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

fn entity_data(e: &QuotaEntity) -> Vec<EntityData> {
    let one = |t: &str, n: &EntityName| {
        EntityData::default()
            .with_entity_type(sb(t))
            .with_entity_name(match n {
                EntityName::Name(n) => Some(sb(n.as_str())),
                EntityName::Default => None,
            })
    };
    let mut out = Vec::new();
    if let Some(u) = &e.user {
        out.push(one(USER, u));
    }
    if let Some(c) = &e.client_id {
        out.push(one(CLIENT_ID, c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(t: &str, m: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(sb(t))
            .with_match_type(m)
            .with_match(name.map(sb))
    }

    #[test]
    fn filters_match_as_kip_546() {
        let alice = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: None,
        };
        let alice_etl = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: Some(EntityName::Name("etl".into())),
        };
        let default_user = QuotaEntity {
            user: Some(EntityName::Default),
            client_id: None,
        };
        let f = parse(&[comp(USER, 0, Some("alice"))]).unwrap();
        assert!(f.matches(&alice, false) && f.matches(&alice_etl, false));
        assert!(f.matches(&alice, true) && !f.matches(&alice_etl, true));
        assert!(!f.matches(&default_user, false));
        let f = parse(&[comp(USER, 1, None)]).unwrap();
        assert!(f.matches(&default_user, true) && !f.matches(&alice, false));
        let f = parse(&[comp(USER, 2, None), comp(CLIENT_ID, 2, None)]).unwrap();
        assert!(f.matches(&alice_etl, true) && !f.matches(&alice, false));
        let all = parse(&[]).unwrap();
        assert!(all.matches(&alice, false) && !all.matches(&alice, true));
        assert!(parse(&[comp(USER, 0, None)]).is_err());
        assert!(parse(&[comp(USER, 1, None), comp(USER, 2, None)]).is_err());
        assert!(parse(&[comp("bogus", 1, None)]).is_err());
        assert!(parse(&[comp(IP, 1, None), comp(USER, 1, None)]).is_err());
    }
}
