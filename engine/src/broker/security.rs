//! The security state in force on this broker (users, ACLs, quotas: `crate::security`) and
//! how it changes: through the controller in a cluster, in `<data>/meta/security.json` on a
//! single broker.
//!
//! In a cluster that file is a cache of the controller's state, as `broker-configs.json` is:
//! read at start, so that a restarted broker authorizes with the ACLs it last knew rather than
//! with none in the seconds before the controller's state reaches it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Broker, BrokerError};
use crate::config::InvalidConfig;
use crate::limits::quotas::{ClientQuotas, WindowConfig};
use crate::security::acl::{Operation, ResourceType};
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::state::{SecurityChange, SecurityState};
use crate::security::{validate, AuthzConfig, Session};

pub struct Security {
    config: AuthzConfig,
    state: parking_lot::RwLock<Arc<SecurityState>>,
    /// Held while the state is written: changes are stored in the order they are applied.
    write: tokio::sync::Mutex<()>,
    /// The clients' rates against the quotas in force (told of every change of them).
    pub quotas: ClientQuotas,
}

fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("security.json")
}

/// Reads the security state last stored (empty when the file is absent). A file that does not
/// decode, or holds what no change could have made, stops the start: running with no ACLs
/// (or other ones) instead would be a silent change of who may do what.
pub(crate) fn load(data_dir: &Path) -> Result<SecurityState, std::io::Error> {
    let path = file(data_dir);
    let bad = |e: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    match std::fs::read(&path) {
        Ok(b) => {
            let s = serde_json::from_slice::<SecurityState>(&b).map_err(|e| bad(e.to_string()))?;
            validate::state(&s).map_err(|e| bad(e.0))?;
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecurityState::default()),
        Err(e) => Err(e),
    }
}

impl Security {
    pub fn new(config: AuthzConfig, state: SecurityState) -> Self {
        Security {
            config,
            quotas: ClientQuotas::new(&state.quotas, WindowConfig::default()),
            state: parking_lot::RwLock::new(Arc::new(state)),
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// The state in force (a snapshot: cheap to take, never changes under the caller).
    pub fn state(&self) -> Arc<SecurityState> {
        self.state.read().clone()
    }

    pub fn config(&self) -> &AuthzConfig {
        &self.config
    }

    /// Whether `session` may do `op` on the resource (see [`SecurityState::authorize`]).
    pub fn authorize(
        &self,
        session: &Session,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.state
            .read()
            .authorize(&self.config, session, op, resource_type, name)
    }

    /// Replaces the state in force (the controller's, once applied).
    pub(crate) fn replace(&self, state: Arc<SecurityState>) {
        *self.state.write() = state.clone();
        self.quotas.update(&state.quotas);
    }
}

impl Broker {
    /// Applies a change to users, ACLs or quotas: on a single broker here (kept in
    /// `<data>/meta/security.json`), in a cluster through the controller. Returns once the
    /// change is in force on this broker.
    pub async fn change_security(&self, change: SecurityChange) -> Result<(), BrokerError> {
        validate::change(&change).map_err(|e| InvalidConfig(e.0))?;
        match &self.cluster {
            Some(c) => {
                use crate::cluster::features::SECURITY;
                if c.finalized_features().get(SECURITY).is_none_or(|l| *l < 1) {
                    // Proposed now, brokers of the previous release would not understand it.
                    return Err(BrokerError::Controller(format!(
                        "users, ACLs and quotas need every broker of the cluster on this release (feature {SECURITY} is not finalized yet)"
                    )));
                }
                Ok(c.propose(crate::cluster::Command::Security(change)).await?)
            }
            None => {
                let _guard = self.security.write.lock().await;
                let mut next = (*self.security.state()).clone();
                next.apply(&change);
                self.store_security(next)
            }
        }
    }

    /// Makes `state` the one in force (the controller's, in a cluster), stored first.
    pub(crate) async fn apply_security(&self, state: &SecurityState) -> Result<(), BrokerError> {
        let _guard = self.security.write.lock().await;
        if *self.security.state() == *state {
            return Ok(());
        }
        self.store_security(state.clone())
    }

    /// Writes `next` (atomically: temp file, fsync, rename, fsync of the directory) and puts
    /// it in force. Called with the write lock held.
    fn store_security(&self, next: SecurityState) -> Result<(), BrokerError> {
        if *self.security.state() == next {
            return Ok(());
        }
        let body = serde_json::to_vec_pretty(&next).map_err(std::io::Error::other)?;
        let path = file(&self.config.data_dir);
        if let Some(dir) = path.parent() {
            crate::log::power::create_dir_all(dir)?;
        }
        crate::log::files::write_atomic(&path, &body)?;
        tracing::debug!(
            users = next.users.len(),
            acls = next.acls.bindings.len(),
            quotas = next.quotas.set.len(),
            "security state in force"
        );
        self.security.replace(Arc::new(next));
        Ok(())
    }

    /// `ICESTREAM_BOOTSTRAP_USER`: creates user `name` with `password` (SCRAM-SHA-256 and -512,
    /// random 32-byte salts, 8192 iterations) unless it exists. On a single broker now; in a
    /// cluster from a task that waits for the controller and retries until it is done.
    pub async fn bootstrap_user(self: &Arc<Self>, name: String, password: String) {
        if self.cluster.is_none() {
            if let Err(e) = self.create_bootstrap_user(&name, &password).await {
                tracing::error!(user = %name, error = %e, "cannot create the bootstrap user");
            }
            return;
        }
        let broker = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(b) = broker.upgrade() else { return };
                let ready = b.cluster.as_ref().is_some_and(|c| {
                    c.controller_leader().is_some()
                        && c.finalized_features()
                            .get(crate::cluster::features::SECURITY)
                            .is_some_and(|l| *l >= 1)
                });
                if ready {
                    match b.create_bootstrap_user(&name, &password).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::debug!(user = %name, error = %e, "creating the bootstrap user failed; retrying")
                        }
                    }
                }
                drop(b);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn create_bootstrap_user(&self, name: &str, password: &str) -> Result<(), BrokerError> {
        validate::user_name(name).map_err(|e| InvalidConfig(e.0))?;
        for mechanism in [Mechanism::Sha256, Mechanism::Sha512] {
            if self.security.state().credential(name, mechanism).is_some() {
                continue;
            }
            let credential = new_credential(mechanism, password, BOOTSTRAP_ITERATIONS);
            self.change_security(SecurityChange::UpsertScram {
                user: name.to_string(),
                mechanism,
                credential,
            })
            .await?;
            tracing::info!(user = %name, mechanism = mechanism.name(), "bootstrap user created");
        }
        Ok(())
    }
}

/// Iterations of the credentials the broker makes itself (Redpanda's and rpk's choice).
pub const BOOTSTRAP_ITERATIONS: u32 = 8192;

/// A credential for `password` with a random 32-byte salt.
pub fn new_credential(mechanism: Mechanism, password: &str, iterations: u32) -> ScramCredential {
    use rand::RngCore;
    let mut salt = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    ScramCredential::new(mechanism, password.as_bytes(), &salt, iterations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{
        alter_client_quotas, alter_user_scram_credentials, create_acls, delete_acls, describe_acls,
        describe_client_quotas, describe_user_scram_credentials, sb,
    };
    use crate::security::Principal;
    use kafka_protocol::messages::*;

    async fn broker(authz: AuthzConfig) -> (Arc<Broker>, PathBuf) {
        let dir = tempfile::tempdir().unwrap().keep();
        let mut config = crate::BrokerConfig::for_tests(dir.clone());
        config.authz = authz;
        config.bootstrap_user = Some(crate::security::BootstrapUser {
            name: "admin".into(),
            password: "admin-secret".into(),
        });
        let b = Broker::start(config, crate::IoBackend::Blocking, None, None)
            .await
            .unwrap();
        (b, dir)
    }

    fn read_topic_acl(principal: &str) -> create_acls_request::AclCreation {
        create_acls_request::AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(sb("orders"))
            .with_resource_pattern_type(3)
            .with_principal(sb(principal))
            .with_host(sb("*"))
            .with_operation(3)
            .with_permission_type(3)
    }

    fn any_acl() -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1)
    }

    /// Users, ACLs and quotas made through the Kafka APIs are in force and in
    /// `meta/security.json`, which the next start reads.
    #[tokio::test]
    async fn the_apis_change_the_stored_state() {
        let (b, dir) = broker(AuthzConfig::default()).await;
        let s = Session::internal();
        // The bootstrap user, both mechanisms.
        let admin = b.security.state();
        assert!(admin.credential("admin", Mechanism::Sha256).is_some());
        let cred = admin.credential("admin", Mechanism::Sha512).unwrap();
        assert_eq!(cred.iterations, BOOTSTRAP_ITERATIONS);
        assert!(cred.verify_password(Mechanism::Sha512, b"admin-secret"));

        let req = CreateAclsRequest::default()
            .with_creations(vec![read_topic_acl("User:alice"), read_topic_acl("alice")]);
        let r = create_acls::handle(&b, &s, req).await;
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(r.results[1].error_code, 42, "an unparsable principal");
        let d = describe_acls::handle(&b, &s, any_acl());
        assert_eq!(d.resources.len(), 1);
        assert_eq!(d.resources[0].acls[0].principal.as_str(), "User:alice");

        let salted = Mechanism::Sha256.salted_password(b"pw", b"NaCl", 4096);
        let up = alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(sb("alice"))
            .with_mechanism(1)
            .with_iterations(4096)
            .with_salt(bytes::Bytes::from_static(b"NaCl"))
            .with_salted_password(salted.into());
        let gone = alter_user_scram_credentials_request::ScramCredentialDeletion::default()
            .with_name(sb("nobody"))
            .with_mechanism(1);
        let r = alter_user_scram_credentials::handle(
            &b,
            &s,
            AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![up])
                .with_deletions(vec![gone]),
        )
        .await;
        let codes: Vec<(String, i16)> = r
            .results
            .iter()
            .map(|x| (x.user.to_string(), x.error_code))
            .collect();
        assert_eq!(codes, vec![("nobody".into(), 91), ("alice".into(), 0)]);
        assert!(b
            .security
            .state()
            .credential("alice", Mechanism::Sha256)
            .unwrap()
            .verify_password(Mechanism::Sha256, b"pw"));
        let d = describe_user_scram_credentials::handle(&b, &s, Default::default());
        let users: Vec<&str> = d.results.iter().map(|r| r.user.as_str()).collect();
        assert_eq!(users, vec!["admin", "alice"]);

        let entry = alter_client_quotas_request::EntryData::default()
            .with_entity(vec![alter_client_quotas_request::EntityData::default()
                .with_entity_type(sb("user"))
                .with_entity_name(Some(sb("alice")))])
            .with_ops(vec![alter_client_quotas_request::OpData::default()
                .with_key(sb("producer_byte_rate"))
                .with_value(1048576.0)]);
        let r = alter_client_quotas::handle(
            &b,
            &s,
            AlterClientQuotasRequest::default().with_entries(vec![entry]),
        )
        .await;
        assert_eq!(r.entries[0].error_code, 0);
        let q = describe_client_quotas::handle(&b, &s, Default::default());
        let entries = q.entries.unwrap();
        assert_eq!(entries[0].values[0].value, 1048576.0);

        assert_eq!(load(&dir).unwrap(), *b.security.state());

        let filter = delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(Some(sb("User:alice")))
            .with_operation(1)
            .with_permission_type(1);
        let r = delete_acls::handle(
            &b,
            &s,
            DeleteAclsRequest::default().with_filters(vec![filter]),
        )
        .await;
        assert_eq!(r.filter_results[0].matching_acls.len(), 1);
        assert!(b.security.state().acls.bindings.is_empty());
        assert_eq!(load(&dir).unwrap(), *b.security.state());
    }

    /// With authorization on, only a superuser (or an ACL on the cluster) may use them.
    #[tokio::test]
    async fn the_apis_need_their_cluster_acls() {
        let (b, _dir) = broker(AuthzConfig {
            enabled: true,
            super_users: vec![Principal::user("admin")],
        })
        .await;
        let host = "127.0.0.1".parse().unwrap();
        let alice = Session::new(Principal::user("alice"), host, Arc::from("PLAINTEXT"));
        let admin = Session::new(Principal::user("admin"), host, Arc::from("PLAINTEXT"));
        let req =
            || CreateAclsRequest::default().with_creations(vec![read_topic_acl("User:alice")]);
        let r = create_acls::handle(&b, &alice, req()).await;
        assert_eq!(r.results[0].error_code, 31);
        assert_eq!(describe_acls::handle(&b, &alice, any_acl()).error_code, 31);
        let d = describe_user_scram_credentials::handle(&b, &alice, Default::default());
        assert_eq!(d.error_code, 31);
        assert_eq!(
            describe_client_quotas::handle(&b, &alice, Default::default()).error_code,
            31
        );
        assert_eq!(
            create_acls::handle(&b, &admin, req()).await.results[0].error_code,
            0
        );
        // DESCRIBE on the cluster lets alice list ACLs, not change them.
        let describe = create_acls_request::AclCreation::default()
            .with_resource_type(4)
            .with_resource_name(sb("kafka-cluster"))
            .with_resource_pattern_type(3)
            .with_principal(sb("User:alice"))
            .with_host(sb("*"))
            .with_operation(8)
            .with_permission_type(3);
        let r = create_acls::handle(
            &b,
            &admin,
            CreateAclsRequest::default().with_creations(vec![describe]),
        )
        .await;
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(describe_acls::handle(&b, &alice, any_acl()).error_code, 0);
        assert_eq!(
            create_acls::handle(&b, &alice, req()).await.results[0].error_code,
            31
        );
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;
    use crate::security::quota::{EntityName, QuotaEntity, PRODUCER_BYTE_RATE};

    /// The request path's one check follows the quotas in force, and connections see a new
    /// generation to resolve their limits again.
    #[test]
    fn quotas_follow_the_state_in_force() {
        let security = Security::new(AuthzConfig::default(), SecurityState::default());
        assert!(!security.quotas.active());
        let before = security.quotas.generation();
        let mut next = SecurityState::default();
        next.apply(&SecurityChange::AlterQuota {
            entity: QuotaEntity {
                user: None,
                client_id: Some(EntityName::Name("etl".into())),
            },
            changes: vec![(PRODUCER_BYTE_RATE.into(), Some(1024.0))],
        });
        security.replace(Arc::new(next.clone()));
        assert!(security.quotas.active());
        assert_ne!(security.quotas.generation(), before);
        // A broker started with quotas kept in its data directory has them in force.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("meta")).unwrap();
        std::fs::write(file(dir.path()), serde_json::to_vec(&next).unwrap()).unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded, next);
        assert!(Security::new(AuthzConfig::default(), loaded)
            .quotas
            .active());
        assert_eq!(
            load(&dir.path().join("none")).unwrap(),
            SecurityState::default()
        );
    }
}
