//! Kafka's ACL model (KIP-11, KIP-290 prefixed patterns): an [`AclBinding`] allows or denies
//! a principal, from a host, one operation on a resource pattern. [`Acls::authorize`] is
//! Kafka's `StandardAuthorizer` decision: a matching DENY wins, then a matching ALLOW (with
//! Kafka's implied operations), and without either the request is denied.
//!
//! The schema registry's subjects (and the registry as a whole) are resources here too, as in
//! Redpanda; they have no Kafka resource type code and never appear in Kafka's DescribeAcls.

use std::net::IpAddr;

use super::Principal;

/// A resource type, with Kafka's wire codes (`org.apache.kafka.common.resource.ResourceType`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
    /// A schema registry subject (not a Kafka resource type).
    RegistrySubject,
    /// The schema registry as a whole: global config and mode (not a Kafka resource type).
    Registry,
}

impl ResourceType {
    /// Kafka's code, `None` for the registry's own types.
    pub fn code(self) -> Option<i8> {
        Some(match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
            ResourceType::RegistrySubject | ResourceType::Registry => return None,
        })
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }
}

/// An operation, with Kafka's wire codes (`org.apache.kafka.common.acl.AclOperation`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
    TwoPhaseCommit,
}

impl Operation {
    pub const ALL: [Operation; 14] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
        Operation::TwoPhaseCommit,
    ];

    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
            Operation::CreateTokens => 13,
            Operation::DescribeTokens => 14,
            Operation::TwoPhaseCommit => 15,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Operation::ALL.into_iter().find(|o| o.code() == code)
    }

    /// Operations an ALLOW of `self` also allows (Kafka: Read, Write, Delete and Alter imply
    /// Describe; AlterConfigs implies DescribeConfigs).
    fn implies(self, asked: Operation) -> bool {
        self == asked
            || self == Operation::All
            || (asked == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (asked == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum PatternType {
    /// The name exactly, or every resource of the type when the name is `*`.
    Literal,
    /// Every resource whose name starts with the pattern's.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL. `principal` may be `User:*` (everyone) and `host` `*` (anywhere).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Which ACLs DescribeAcls lists and DeleteAcls removes: each `None` matches anything.
/// `pattern: Match` is Kafka's MATCH filter: the patterns that would apply to `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: Option<PatternFilter>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PatternFilter {
    Exactly(PatternType),
    /// Kafka's MATCH: literal patterns equal to the name or `*`, and prefixed ones it starts with.
    Match,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let eq = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
            && eq(&self.principal, &b.principal)
            && eq(&self.host, &b.host)
            && match (self.pattern, &self.name) {
                (Some(PatternFilter::Match), Some(name)) => pattern_covers(b, name),
                (Some(PatternFilter::Match), None) => true,
                (Some(PatternFilter::Exactly(p)), name) => p == b.pattern && eq(name, &b.name),
                (None, name) => eq(name, &b.name),
            }
    }
}

/// Whether binding `b`'s pattern covers a resource called `name`.
fn pattern_covers(b: &AclBinding, name: &str) -> bool {
    match b.pattern {
        PatternType::Literal => b.name == name || b.name == "*",
        PatternType::Prefixed => name.starts_with(b.name.as_str()),
    }
}

/// The ACLs in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acls {
    pub bindings: std::collections::BTreeSet<AclBinding>,
}

impl Acls {
    /// Kafka's decision for `principal` from `host` doing `op` on the resource: DENY wins over
    /// ALLOW, and with neither the answer is no. Superusers and authorization being off are
    /// the caller's ([`super::state::SecurityState::authorize`]).
    pub fn authorize(
        &self,
        principal: &Principal,
        host: IpAddr,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let who = principal.to_string();
        let wildcard = format!("{}:*", principal.kind);
        let host = host.to_string();
        let mut allowed = false;
        for b in self.bindings.iter().filter(|b| {
            b.resource_type == resource_type
                && (b.principal == who || b.principal == wildcard)
                && (b.host == "*" || b.host == host)
                && pattern_covers(b, name)
        }) {
            match b.permission {
                Permission::Deny if b.operation == op || b.operation == Operation::All => {
                    return false
                }
                Permission::Allow if b.operation.implies(op) => allowed = true,
                _ => {}
            }
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        who: &str,
        op: Operation,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn literal_prefixed_wildcard_and_deny() {
        let alice = Principal::user("alice");
        let mut acls = Acls::default();
        let t = ResourceType::Topic;
        acls.bindings.insert(allow(
            t,
            "orders",
            PatternType::Literal,
            "User:alice",
            Operation::Read,
        ));
        acls.bindings.insert(allow(
            t,
            "team-a.",
            PatternType::Prefixed,
            "User:alice",
            Operation::Write,
        ));
        // Nothing yet on other topics.
        assert!(acls.authorize(&alice, HOST, Operation::Read, t, "orders"));
        assert!(!acls.authorize(&alice, HOST, Operation::Write, t, "orders"));
        assert!(!acls.authorize(&alice, HOST, Operation::Read, t, "payments"));
        // Read implies Describe; Write on a prefix covers every topic under it.
        assert!(acls.authorize(&alice, HOST, Operation::Describe, t, "orders"));
        assert!(acls.authorize(&alice, HOST, Operation::Write, t, "team-a.clicks"));
        assert!(!acls.authorize(&alice, HOST, Operation::Write, t, "team-b.clicks"));
        // Another principal gets nothing; User:* gives everyone.
        let bob = Principal::user("bob");
        assert!(!acls.authorize(&bob, HOST, Operation::Read, t, "orders"));
        acls.bindings.insert(allow(
            t,
            "*",
            PatternType::Literal,
            "User:*",
            Operation::Read,
        ));
        assert!(acls.authorize(&bob, HOST, Operation::Read, t, "payments"));
        // A DENY wins, for that host only.
        let mut deny = allow(
            t,
            "payments",
            PatternType::Literal,
            "User:bob",
            Operation::All,
        );
        deny.permission = Permission::Deny;
        deny.host = HOST.to_string();
        acls.bindings.insert(deny);
        assert!(!acls.authorize(&bob, HOST, Operation::Read, t, "payments"));
        assert!(acls.authorize(
            &bob,
            "10.0.0.8".parse().unwrap(),
            Operation::Read,
            t,
            "payments"
        ));
        // Resource types do not mix.
        assert!(!acls.authorize(&alice, HOST, Operation::Read, ResourceType::Group, "orders"));
    }

    #[test]
    fn filters_match_like_kafka() {
        let b = allow(
            ResourceType::Topic,
            "team-a.",
            PatternType::Prefixed,
            "User:alice",
            Operation::Write,
        );
        let any = AclFilter::default();
        assert!(any.matches(&b));
        let by_match = AclFilter {
            resource_type: Some(ResourceType::Topic),
            name: Some("team-a.clicks".into()),
            pattern: Some(PatternFilter::Match),
            ..Default::default()
        };
        assert!(by_match.matches(&b));
        let literal = AclFilter {
            name: Some("team-a.".into()),
            pattern: Some(PatternFilter::Exactly(PatternType::Literal)),
            ..Default::default()
        };
        assert!(!literal.matches(&b));
        for op in Operation::ALL {
            assert_eq!(Operation::from_code(op.code()), Some(op));
        }
    }
}
