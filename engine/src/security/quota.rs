//! Client quotas (KIP-13, KIP-55, KIP-257): byte rates and request-time shares set for a user,
//! a client id, or both, each possibly the default entity. [`Quotas::effective`] picks the
//! most specific one as Kafka does.

use std::collections::BTreeMap;

/// Kafka's quota keys this broker enforces.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const KEYS: [&str; 3] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE];

/// One component of an entity: a name, or the default entity of its type (`Default`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum EntityName {
    Name(String),
    Default,
}

/// What a quota is set on (`/config/users/<user>/clients/<client-id>` in Kafka's terms):
/// a user, a client id, or a user's client id. At least one is present.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

/// Every quota set: entity to key to value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quotas {
    #[serde(with = "entries")]
    pub set: BTreeMap<QuotaEntity, BTreeMap<String, f64>>,
}

impl Quotas {
    /// The quota `key` for `user` (its principal's name) and `client_id`, from the most
    /// specific entity that sets it, in Kafka's order.
    pub fn effective(&self, user: &str, client_id: &str, key: &str) -> Option<f64> {
        self.matching(user, client_id, key).map(|(_, v)| v)
    }

    /// The entity [`Quotas::effective`] takes `key` from, and its value. The enforcer keeps
    /// one rate per matching entity, as Kafka: a quota set on a user alone is shared by all of
    /// that user's client ids.
    pub fn matching(&self, user: &str, client_id: &str, key: &str) -> Option<(&QuotaEntity, f64)> {
        let n = |s: &str| Some(EntityName::Name(s.to_string()));
        let d = || Some(EntityName::Default);
        let order = [
            (n(user), n(client_id)),
            (n(user), d()),
            (n(user), None),
            (d(), n(client_id)),
            (d(), d()),
            (d(), None),
            (None, n(client_id)),
            (None, d()),
        ];
        order.into_iter().find_map(|(user, client_id)| {
            self.set
                .get_key_value(&QuotaEntity { user, client_id })
                .and_then(|(e, m)| m.get(key).map(|v| (e, *v)))
        })
    }

    /// Sets (`Some`) or removes (`None`) values of one entity.
    pub fn alter(&mut self, entity: &QuotaEntity, changes: &[(String, Option<f64>)]) {
        let m = self.set.entry(entity.clone()).or_default();
        for (k, v) in changes {
            match v {
                Some(v) => m.insert(k.clone(), *v),
                None => m.remove(k),
            };
        }
        if m.is_empty() {
            self.set.remove(entity);
        }
    }
}

/// JSON objects need string keys: the map travels as a list of pairs.
mod entries {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Map = BTreeMap<QuotaEntity, BTreeMap<String, f64>>;

    pub fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        m.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        Ok(Vec::<(QuotaEntity, BTreeMap<String, f64>)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_wins() {
        let mut q = Quotas::default();
        let e = |u: Option<EntityName>, c: Option<EntityName>| QuotaEntity {
            user: u,
            client_id: c,
        };
        let name = |s: &str| Some(EntityName::Name(s.into()));
        q.alter(
            &e(Some(EntityName::Default), None),
            &[(PRODUCER_BYTE_RATE.into(), Some(10.0))],
        );
        q.alter(
            &e(name("alice"), None),
            &[(PRODUCER_BYTE_RATE.into(), Some(20.0))],
        );
        q.alter(
            &e(name("alice"), name("etl")),
            &[(PRODUCER_BYTE_RATE.into(), Some(30.0))],
        );
        q.alter(
            &e(None, name("etl")),
            &[(CONSUMER_BYTE_RATE.into(), Some(5.0))],
        );
        assert_eq!(q.effective("alice", "etl", PRODUCER_BYTE_RATE), Some(30.0));
        assert_eq!(q.effective("alice", "web", PRODUCER_BYTE_RATE), Some(20.0));
        assert_eq!(q.effective("bob", "web", PRODUCER_BYTE_RATE), Some(10.0));
        assert_eq!(q.effective("bob", "etl", CONSUMER_BYTE_RATE), Some(5.0));
        assert_eq!(q.effective("bob", "web", CONSUMER_BYTE_RATE), None);
        q.alter(
            &e(name("alice"), name("etl")),
            &[(PRODUCER_BYTE_RATE.into(), None)],
        );
        assert_eq!(q.effective("alice", "etl", PRODUCER_BYTE_RATE), Some(20.0));
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<Quotas>(&json).unwrap(), q);
    }
}
