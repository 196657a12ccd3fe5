//! The security state in force on this broker (users, ACLs, quotas: `crate::security`) and
//! how it changes: through the controller in a cluster, in `<data>/meta/security.json` on a
//! single broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Broker, BrokerError};
use crate::limits::quotas::{ClientQuotas, WindowConfig};
use crate::security::acl::{Operation, ResourceType};
use crate::security::state::{SecurityChange, SecurityState};
use crate::security::{AuthzConfig, Session};

pub struct Security {
    config: AuthzConfig,
    state: parking_lot::RwLock<Arc<SecurityState>>,
    /// The clients' rates against the quotas in force (told of every change of them).
    pub quotas: ClientQuotas,
}

impl Security {
    pub fn new(config: AuthzConfig, state: SecurityState) -> Self {
        Security {
            config,
            quotas: ClientQuotas::new(&state.quotas, WindowConfig::default()),
            state: parking_lot::RwLock::new(Arc::new(state)),
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
    /// `<data>/meta/security.json`), in a cluster through the controller.
    pub async fn change_security(&self, change: SecurityChange) -> Result<(), BrokerError> {
        let mut next = (*self.security.state()).clone();
        next.apply(&change);
        self.security.replace(Arc::new(next));
        Ok(())
    }
}

/// Where a single broker keeps its security state.
pub(crate) fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("security.json")
}

/// The security state a broker kept in its data directory, empty when it has none.
pub(crate) fn load(data_dir: &Path) -> Result<SecurityState, std::io::Error> {
    let path = file(data_dir);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecurityState::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
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
