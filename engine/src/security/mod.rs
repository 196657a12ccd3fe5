//! Identity and access: who a connection is ([`Principal`], [`Session`]), what it may do
//! ([`acl`]), the users' SCRAM credentials ([`scram`]) and the client quotas ([`quota`]), all
//! kept in one [`state::SecurityState`].
//!
//! A leaf module, below `cluster` and `broker`: the controller replicates the state (a
//! `Command::Security` in its log), a single broker keeps it in `<data>/meta/security.json`,
//! the listeners authenticate connections into a [`Session`], and the handlers ask
//! [`state::SecurityState::authorize`] before acting.

pub mod acl;
pub mod http_auth;
pub mod quota;
pub mod scram;
pub mod state;
pub mod tls;
pub mod validate;

use std::net::IpAddr;
use std::sync::Arc;

/// Who a request comes from, as Kafka writes it: `User:alice`. `User:ANONYMOUS` is a
/// connection that did not authenticate (a PLAINTEXT listener).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }

    /// The broker acting for itself (inter-broker calls authenticated by the cluster
    /// credential): allowed everything, as Kafka's inter-broker principal is a superuser.
    pub fn broker() -> Self {
        Principal {
            kind: "Broker".into(),
            name: "icestream".into(),
        }
    }

    /// Parses `Type:name` (`User:alice`); the name may itself hold colons.
    pub fn parse(s: &str) -> Result<Self, InvalidPrincipal> {
        match s.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(Principal {
                kind: kind.into(),
                name: name.into(),
            }),
            _ => Err(InvalidPrincipal(s.into())),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a principal: expected Type:name, as User:alice")]
pub struct InvalidPrincipal(pub String);

/// An authenticated connection (or HTTP request): the principal, where it comes from and
/// the listener it arrived on. Handlers authorize against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub principal: Principal,
    pub host: IpAddr,
    /// The listener's name (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, ...): Metadata answers with
    /// that listener's advertised addresses.
    pub listener: Arc<str>,
}

impl Session {
    pub fn new(principal: Principal, host: IpAddr, listener: Arc<str>) -> Self {
        Session {
            principal,
            host,
            listener,
        }
    }

    /// A request the broker makes to itself or on no one's behalf (tests, internal calls).
    pub fn internal() -> Self {
        Session::new(
            Principal::broker(),
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            Arc::from("INTERNAL"),
        )
    }
}

/// A user the broker creates at start when it does not exist (`ICESTREAM_BOOTSTRAP_USER`, as
/// Redpanda's `RP_BOOTSTRAP_USER`). The password never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for BootstrapUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the operator configured: whether requests are authorized at all, and who may do
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzConfig {
    /// Off (the embedded default): every request is allowed. On: what no ACL allows is
    /// denied (Kafka's `allow.everyone.if.no.acl.found=false`).
    pub enabled: bool,
    /// Principals allowed everything (Kafka's `super.users`).
    pub super_users: Vec<Principal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_print() {
        let p = Principal::parse("User:CN=alice,O=acme").unwrap();
        assert_eq!(p.kind, "User");
        assert_eq!(p.name, "CN=alice,O=acme");
        assert_eq!(p.to_string(), "User:CN=alice,O=acme");
        assert!(Principal::parse("alice").is_err());
        assert!(Principal::parse("User:").is_err());
    }
}
