//! What every handler's authorization shares (Kafka's `AuthHelper`): asking the broker's
//! authorizer, splitting a request's resources into allowed and denied ones, and the
//! `authorized_operations` bit fields. Each handler makes its own check, in its own file, with
//! these; with authorization off ([`enabled`] false) they cost one load of a flag.

use std::collections::HashMap;

use crate::broker::Broker;
use crate::security::acl::{Operation, PatternType, Permission, ResourceType};
use crate::security::Session;

/// The cluster resource's one name, as Kafka's `CLUSTER_NAME`.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// What `authorized_operations` holds when the client did not ask for it (Kafka's
/// `Int.MinValue`).
pub const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Whether requests are authorized at all; handlers check it before doing any work for it.
#[inline]
pub fn enabled(b: &Broker) -> bool {
    b.security.config().enabled
}

/// Whether `s` may do `op` on the resource (always, with authorization off).
#[inline]
pub fn allowed(b: &Broker, s: &Session, op: Operation, rt: ResourceType, name: &str) -> bool {
    !enabled(b) || b.security.authorize(s, op, rt, name)
}

/// Whether `s` may do `op` on the cluster.
#[inline]
pub fn cluster(b: &Broker, s: &Session, op: Operation) -> bool {
    allowed(b, s, op, ResourceType::Cluster, CLUSTER_NAME)
}

/// Remembers one decision per name, since a request may name a topic many times.
pub struct Decisions<'a> {
    b: &'a Broker,
    s: &'a Session,
    op: Operation,
    rt: ResourceType,
    on: bool,
    seen: HashMap<String, bool>,
}

impl<'a> Decisions<'a> {
    pub fn new(b: &'a Broker, s: &'a Session, op: Operation, rt: ResourceType) -> Self {
        Decisions {
            b,
            s,
            op,
            rt,
            on: enabled(b),
            seen: HashMap::new(),
        }
    }

    /// Whether `name` is allowed (always with authorization off, without a lookup).
    pub fn allows(&mut self, name: &str) -> bool {
        if !self.on {
            return true;
        }
        if let Some(&d) = self.seen.get(name) {
            return d;
        }
        let d = self.b.security.authorize(self.s, self.op, self.rt, name);
        self.seen.insert(name.to_string(), d);
        d
    }
}

/// Splits `items` into those whose resource `s` may `op` and those it may not, keeping their
/// order (Kafka's `partitionSeqByAuthorized`).
pub fn split<T>(
    b: &Broker,
    s: &Session,
    op: Operation,
    rt: ResourceType,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> (Vec<T>, Vec<T>) {
    if !enabled(b) {
        return (items, Vec::new());
    }
    let mut d = Decisions::new(b, s, op, rt);
    items.into_iter().partition(|i| d.allows(name(i)))
}

/// The operations Kafka lists for a resource type (`AclEntry.supportedOperations`).
fn supported(rt: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match rt {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
        ResourceType::RegistrySubject | ResourceType::Registry => &[],
    }
}

/// The `authorized_operations` bit field of a resource: bit `code` set for each supported
/// operation `s` may do on it (Kafka's `AuthHelper.authorizedOperations`).
pub fn operations(b: &Broker, s: &Session, rt: ResourceType, name: &str) -> i32 {
    supported(rt)
        .iter()
        .filter(|&&op| allowed(b, s, op, rt, name))
        .fold(0, |bits, op| bits | (1 << op.code()))
}

/// Whether `s` may do `op` on some resource of type `rt` (Kafka's `authorizeByResourceType`):
/// an ALLOW for its principal and host on any name, literal or prefixed, that no DENY for it
/// on that type covers entirely. Kafka uses it to let a producer that may write to any topic
/// be idempotent without IDEMPOTENT_WRITE on the cluster.
pub fn any_of_type(b: &Broker, s: &Session, op: Operation, rt: ResourceType) -> bool {
    if !enabled(b) || allowed(b, s, op, rt, "") && allowed(b, s, op, rt, "*") {
        return true;
    }
    let state = b.security.state();
    let who = s.principal.to_string();
    let wildcard = format!("{}:*", s.principal.kind);
    let host = s.host.to_string();
    let applies = |bind: &crate::security::acl::AclBinding| {
        bind.resource_type == rt
            && (bind.principal == who || bind.principal == wildcard)
            && (bind.host == "*" || bind.host == host)
    };
    let denies: Vec<_> = state
        .acls
        .bindings
        .iter()
        .filter(|d| {
            applies(d)
                && d.permission == Permission::Deny
                && (d.operation == op || d.operation == Operation::All)
        })
        .collect();
    // A DENY on a literal `*` or a prefix of an ALLOW's name covers every resource that ALLOW
    // could allow; anything narrower leaves some name allowed.
    let covered = |name: &str, pattern: PatternType| {
        denies.iter().any(|d| match d.pattern {
            PatternType::Literal => {
                d.name == "*" || (pattern == PatternType::Literal && d.name == name)
            }
            PatternType::Prefixed => name.starts_with(d.name.as_str()),
        })
    };
    state.acls.bindings.iter().any(|a| {
        applies(a)
            && a.permission == Permission::Allow
            && (a.operation == op || a.operation == Operation::All)
            && !covered(&a.name, a.pattern)
    })
}

/// A config resource's check (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs): `op`
/// on the topic, or on the cluster for a broker; the error to answer when denied.
pub fn config_resource(
    b: &Broker,
    s: &Session,
    op: Operation,
    resource_type: i8,
    name: &str,
) -> Option<kafka_protocol::ResponseError> {
    use kafka_protocol::ResponseError as E;
    if !enabled(b) {
        return None;
    }
    match resource_type {
        super::RESOURCE_TOPIC if !allowed(b, s, op, ResourceType::Topic, name) => {
            Some(E::TopicAuthorizationFailed)
        }
        super::RESOURCE_BROKER if !cluster(b, s, op) => Some(E::ClusterAuthorizationFailed),
        _ => None,
    }
}

/// The error of a partition not served: TOPIC_AUTHORIZATION_FAILED when its topic was denied
/// (which is checked first, so a denied client learns nothing of what exists), else
/// UNKNOWN_TOPIC_OR_PARTITION.
pub fn unserved(denied: bool) -> i16 {
    use kafka_protocol::ResponseError as E;
    if denied {
        E::TopicAuthorizationFailed
    } else {
        E::UnknownTopicOrPartition
    }
    .code()
}

/// Whether `s` may do `op` on consumer group `id`.
#[inline]
pub fn group(b: &Broker, s: &Session, op: Operation, id: &str) -> bool {
    allowed(b, s, op, ResourceType::Group, id)
}

/// Whether `s` may do `op` on transactional id `id`.
#[inline]
pub fn transactional_id(b: &Broker, s: &Session, op: Operation, id: &str) -> bool {
    allowed(b, s, op, ResourceType::TransactionalId, id)
}

/// A response's entries for denied topics, each partition with its error code.
pub fn denied_topics<T>(
    denied: Vec<(String, Vec<(i32, i16)>)>,
    topic: impl Fn(kafka_protocol::messages::TopicName, Vec<(i32, i16)>) -> T,
) -> impl Iterator<Item = T> {
    denied
        .into_iter()
        .map(move |(name, ps)| topic(super::topic_name(&name), ps))
}

#[cfg(test)]
#[path = "authorize_tests.rs"]
mod tests;
