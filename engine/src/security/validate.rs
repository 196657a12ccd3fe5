//! What a [`SecurityChange`] (and a stored [`SecurityState`]) must satisfy: checked by the
//! handlers before they propose, and again where a change is applied (a controller entry may
//! come from a forged proposal or outlive the code that wrote it), so that a bad credential or
//! an unbounded name never enters the state.

use super::acl::{AclBinding, AclFilter, ResourceType};
use super::quota::{EntityName, QuotaEntity, KEYS};
use super::scram::{Mechanism, ScramCredential};
use super::state::{SecurityChange, SecurityState};
use super::Principal;

/// The longest user name, principal, host or resource name kept (Kafka bounds none of them;
/// these are far above any real one and keep a forged entry small).
pub const MAX_NAME: usize = 1024;
/// The longest SCRAM salt accepted (clients send 16 to 64 bytes).
pub const MAX_SALT: usize = 1024;
/// The most ACLs (or filters) one change may carry.
pub const MAX_ACLS_PER_CHANGE: usize = 10_000;
/// Kafka's only name for the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Why a change is refused: the message is Kafka's where Kafka has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(msg.into()))
}

/// A bounded, non-empty name without control characters.
pub fn name(what: &str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return invalid(format!("{what} must not be empty"));
    }
    if s.len() > MAX_NAME {
        return invalid(format!("{what} is longer than {MAX_NAME} bytes"));
    }
    if s.chars().any(char::is_control) {
        return invalid(format!("{what} holds a control character"));
    }
    Ok(())
}

pub fn user_name(user: &str) -> Result<(), Invalid> {
    name("user name", user)
}

/// Kafka's check of an upsertion's iterations (`ScramMechanism.minIterations` and the
/// broker's upper bound).
pub fn iterations(mechanism: Mechanism, i: i64) -> Result<(), Invalid> {
    if i < i64::from(Mechanism::MIN_ITERATIONS) {
        return invalid(format!(
            "Too few iterations for {}: {i}, minimum is {}",
            mechanism.name(),
            Mechanism::MIN_ITERATIONS
        ));
    }
    if i > i64::from(Mechanism::MAX_ITERATIONS) {
        return invalid(format!(
            "Too many iterations for {}: {i}, maximum is {}",
            mechanism.name(),
            Mechanism::MAX_ITERATIONS
        ));
    }
    Ok(())
}

pub fn salt(s: &[u8]) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > MAX_SALT {
        return invalid(format!(
            "a salt of {} bytes: it must be 1 to {MAX_SALT}",
            s.len()
        ));
    }
    Ok(())
}

/// The length of the mechanism's hash (StoredKey, ServerKey and SaltedPassword).
pub fn key_len(mechanism: Mechanism) -> usize {
    match mechanism {
        Mechanism::Sha256 => 32,
        Mechanism::Sha512 => 64,
    }
}

pub fn credential(mechanism: Mechanism, c: &ScramCredential) -> Result<(), Invalid> {
    iterations(mechanism, i64::from(c.iterations))?;
    salt(&c.salt)?;
    let n = key_len(mechanism);
    if c.stored_key.len() != n || c.server_key.len() != n {
        return invalid(format!(
            "{} keys are {n} bytes, not {} and {}",
            mechanism.name(),
            c.stored_key.len(),
            c.server_key.len()
        ));
    }
    Ok(())
}

/// Kafka's checks of a new ACL (`AclControlManager.validateNewAcl`), and the bounds above.
pub fn binding(b: &AclBinding) -> Result<(), Invalid> {
    name("the resource name", &b.name)?;
    principal(&b.principal)?;
    name("the host", &b.host)?;
    if b.resource_type == ResourceType::Cluster && b.name != CLUSTER_NAME {
        return invalid(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    Ok(())
}

pub fn principal(p: &str) -> Result<(), Invalid> {
    name("the principal", p)?;
    Principal::parse(p).map_err(|e| Invalid(format!("Could not parse principal: {e}")))?;
    Ok(())
}

fn filter(f: &AclFilter) -> Result<(), Invalid> {
    for s in [&f.name, &f.principal, &f.host].into_iter().flatten() {
        if s.len() > MAX_NAME {
            return invalid(format!("a filter's field is longer than {MAX_NAME} bytes"));
        }
    }
    Ok(())
}

/// A quota key this broker knows, with a value Kafka would take.
pub fn quota_value(key: &str, value: Option<f64>) -> Result<(), Invalid> {
    if !KEYS.contains(&key) {
        return invalid(format!("Unknown quota key '{key}'"));
    }
    match value {
        Some(v) if !v.is_finite() || v <= 0.0 => {
            invalid(format!("Quota {key} must be a positive number, not {v}"))
        }
        _ => Ok(()),
    }
}

pub fn quota_entity(e: &QuotaEntity) -> Result<(), Invalid> {
    if e.user.is_none() && e.client_id.is_none() {
        return invalid("a quota entity names a user, a client id or both");
    }
    for n in [&e.user, &e.client_id].into_iter().flatten() {
        if let EntityName::Name(n) = n {
            // Kafka allows the empty client id as a name (a client that sets none).
            if n.len() > MAX_NAME || n.chars().any(char::is_control) {
                return invalid("a quota entity's name is too long or holds a control character");
            }
        }
    }
    Ok(())
}

pub fn change(c: &SecurityChange) -> Result<(), Invalid> {
    match c {
        SecurityChange::UpsertScram {
            user,
            mechanism,
            credential: cred,
        } => {
            user_name(user)?;
            credential(*mechanism, cred)
        }
        SecurityChange::DeleteScram { user, .. } => user_name(user),
        SecurityChange::CreateAcls(bs) => {
            if bs.len() > MAX_ACLS_PER_CHANGE {
                return invalid(format!("more than {MAX_ACLS_PER_CHANGE} ACLs at once"));
            }
            bs.iter().try_for_each(binding)
        }
        SecurityChange::DeleteAcls(fs) => {
            if fs.len() > MAX_ACLS_PER_CHANGE {
                return invalid(format!("more than {MAX_ACLS_PER_CHANGE} filters at once"));
            }
            fs.iter().try_for_each(filter)
        }
        SecurityChange::AlterQuota { entity, changes } => {
            quota_entity(entity)?;
            if changes.len() > KEYS.len() * 2 {
                return invalid("too many quota changes for one entity");
            }
            changes.iter().try_for_each(|(k, v)| quota_value(k, *v))
        }
    }
}

/// A whole stored state (a file, a controller snapshot): every part as a change would have it.
pub fn state(s: &SecurityState) -> Result<(), Invalid> {
    for (user, creds) in &s.users {
        user_name(user)?;
        for (m, c) in creds {
            credential(*m, c)?;
        }
    }
    s.acls.bindings.iter().try_for_each(binding)?;
    for (entity, values) in &s.quotas.set {
        quota_entity(entity)?;
        for (k, v) in values {
            quota_value(k, Some(*v))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{Operation, PatternType, Permission};

    fn acl(rt: ResourceType, name: &str, principal: &str, host: &str) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern: PatternType::Literal,
            principal: principal.into(),
            host: host.into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn credentials_are_bounded() {
        let m = Mechanism::Sha256;
        let good = ScramCredential::new(m, b"pw", b"salt", 4096);
        let up = |c: ScramCredential| SecurityChange::UpsertScram {
            user: "alice".into(),
            mechanism: m,
            credential: c,
        };
        assert!(change(&up(good.clone())).is_ok());
        let mut few = good.clone();
        few.iterations = 4095;
        assert!(change(&up(few))
            .unwrap_err()
            .0
            .contains("Too few iterations"));
        let mut many = good.clone();
        many.iterations = 16385;
        assert!(change(&up(many)).unwrap_err().0.contains("Too many"));
        let mut short = good.clone();
        short.stored_key.pop();
        assert!(change(&up(short)).is_err());
        let mut saltless = good.clone();
        saltless.salt.clear();
        assert!(change(&up(saltless)).is_err());
        // A SHA-256 credential filed under SHA-512 has keys of the wrong length.
        assert!(change(&SecurityChange::UpsertScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha512,
            credential: good,
        })
        .is_err());
        assert!(user_name("").is_err());
        assert!(user_name(&"a".repeat(MAX_NAME + 1)).is_err());
        assert!(user_name("a\nb").is_err());
    }

    #[test]
    fn acls_are_checked_as_kafka_does() {
        let t = ResourceType::Topic;
        assert!(binding(&acl(t, "orders", "User:alice", "*")).is_ok());
        assert!(binding(&acl(t, "orders", "User:alice", "10.0.0.1")).is_ok());
        assert!(binding(&acl(t, "orders", "alice", "*")).is_err());
        assert!(binding(&acl(t, "", "User:alice", "*")).is_err());
        let c = ResourceType::Cluster;
        assert!(binding(&acl(c, "kafka-cluster", "User:alice", "*")).is_ok());
        assert!(binding(&acl(c, "other", "User:alice", "*")).is_err());
    }

    #[test]
    fn quotas_take_known_keys_and_positive_values() {
        let e = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: None,
        };
        let alter = |k: &str, v| SecurityChange::AlterQuota {
            entity: e.clone(),
            changes: vec![(k.into(), v)],
        };
        assert!(change(&alter("producer_byte_rate", Some(1024.0))).is_ok());
        assert!(change(&alter("producer_byte_rate", None)).is_ok());
        assert!(change(&alter("producer_byte_rate", Some(-1.0))).is_err());
        assert!(change(&alter("producer_byte_rate", Some(f64::NAN))).is_err());
        assert!(change(&alter("bogus", Some(1.0))).is_err());
        let nobody = QuotaEntity {
            user: None,
            client_id: None,
        };
        assert!(quota_entity(&nobody).is_err());
    }
}
