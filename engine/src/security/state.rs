//! Everything security keeps: users' SCRAM credentials, ACLs and client quotas, changed only
//! by [`SecurityChange`]s (a pure transition, applied alike by every broker from the
//! controller's log, or by a single broker to its own file).

use std::collections::BTreeMap;

use super::acl::{AclBinding, AclFilter, Acls, Operation, ResourceType};
use super::quota::{QuotaEntity, Quotas};
use super::scram::{Mechanism, ScramCredential};
use super::{AuthzConfig, Session};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecurityState {
    /// User name to its credentials, one per mechanism.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    #[serde(default)]
    pub acls: Acls,
    #[serde(default)]
    pub quotas: Quotas,
}

/// A change to [`SecurityState`], as the controller log (or a single broker's file) holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SecurityChange {
    /// Sets a user's credential for one mechanism (AlterUserScramCredentials upsertion).
    UpsertScram {
        user: String,
        mechanism: Mechanism,
        credential: ScramCredential,
    },
    /// Removes a user's credential for one mechanism; the user goes with its last one.
    DeleteScram {
        user: String,
        mechanism: Mechanism,
    },
    CreateAcls(Vec<AclBinding>),
    /// Removes every ACL any filter matches.
    DeleteAcls(Vec<AclFilter>),
    /// Sets (`Some`) or removes (`None`) quota values of one entity.
    AlterQuota {
        entity: QuotaEntity,
        changes: Vec<(String, Option<f64>)>,
    },
}

impl SecurityState {
    /// No user, ACL or quota (what a controller snapshot leaves out).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.acls.bindings.is_empty() && self.quotas.set.is_empty()
    }

    pub fn apply(&mut self, change: &SecurityChange) {
        match change {
            SecurityChange::UpsertScram {
                user,
                mechanism,
                credential,
            } => {
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            SecurityChange::DeleteScram { user, mechanism } => {
                if let Some(m) = self.users.get_mut(user) {
                    m.remove(mechanism);
                    if m.is_empty() {
                        self.users.remove(user);
                    }
                }
            }
            SecurityChange::CreateAcls(bs) => self.acls.bindings.extend(bs.iter().cloned()),
            SecurityChange::DeleteAcls(fs) => self
                .acls
                .bindings
                .retain(|b| !fs.iter().any(|f| f.matches(b))),
            SecurityChange::AlterQuota { entity, changes } => self.quotas.alter(entity, changes),
        }
    }

    /// Whether `session` may do `op` on the resource: always with authorization off, for a
    /// superuser or the broker itself, else as the ACLs say.
    pub fn authorize(
        &self,
        config: &AuthzConfig,
        session: &Session,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        !config.enabled
            || session.principal == super::Principal::broker()
            || config.super_users.contains(&session.principal)
            || self
                .acls
                .authorize(&session.principal, session.host, op, resource_type, name)
    }

    /// A user's credential for a mechanism.
    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        self.users.get(user).and_then(|m| m.get(&mechanism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{PatternType, Permission};
    use crate::security::Principal;
    use std::sync::Arc;

    #[test]
    fn changes_apply_and_authorize() {
        let mut s = SecurityState::default();
        let cred = ScramCredential::new(Mechanism::Sha512, b"secret", b"salt", 4096);
        s.apply(&SecurityChange::UpsertScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha512,
            credential: cred.clone(),
        });
        assert_eq!(s.credential("alice", Mechanism::Sha512), Some(&cred));
        let read = AclBinding {
            resource_type: ResourceType::Topic,
            name: "orders".into(),
            pattern: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        s.apply(&SecurityChange::CreateAcls(vec![read.clone()]));
        let alice = Session::new(
            Principal::user("alice"),
            "127.0.0.1".parse().unwrap(),
            Arc::from("SASL_SSL"),
        );
        let on = AuthzConfig {
            enabled: true,
            super_users: vec![Principal::user("admin")],
        };
        let t = ResourceType::Topic;
        assert!(s.authorize(&on, &alice, Operation::Read, t, "orders"));
        assert!(!s.authorize(&on, &alice, Operation::Write, t, "orders"));
        assert!(s.authorize(
            &AuthzConfig::default(),
            &alice,
            Operation::Write,
            t,
            "orders"
        ));
        let mut admin = alice.clone();
        admin.principal = Principal::user("admin");
        assert!(s.authorize(&on, &admin, Operation::Write, t, "orders"));
        s.apply(&SecurityChange::DeleteAcls(vec![AclFilter {
            principal: Some("User:alice".into()),
            ..Default::default()
        }]));
        assert!(!s.authorize(&on, &alice, Operation::Read, t, "orders"));
        s.apply(&SecurityChange::DeleteScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha512,
        });
        assert!(s.users.is_empty());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SecurityState>(&json).unwrap(), s);
    }
}
