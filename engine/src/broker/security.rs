//! The security state in force on this broker (users, ACLs, quotas: `crate::security`) and
//! how it changes: through the controller in a cluster, in `<data>/meta/security.json` on a
//! single broker.

use std::sync::Arc;

use super::{Broker, BrokerError};
use crate::security::acl::{Operation, ResourceType};
use crate::security::state::{SecurityChange, SecurityState};
use crate::security::{AuthzConfig, Session};

pub struct Security {
    config: AuthzConfig,
    state: parking_lot::RwLock<Arc<SecurityState>>,
}

impl Security {
    pub fn new(config: AuthzConfig, state: SecurityState) -> Self {
        Security {
            config,
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
        *self.state.write() = state;
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

/// The ACLs (and users, quotas) last stored in `<data>/meta/security.json`, empty without
/// one. A stand-in from helper "authz" so its e2e tests can seed ACLs; helper "store" owns
/// the file (its loader, which refuses a bad file, replaces this one on merge).
pub(crate) fn load(data_dir: &std::path::Path) -> SecurityState {
    let path = data_dir.join("meta").join("security.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::error!(path = %path.display(), error = %e, "ignoring unreadable security state");
            SecurityState::default()
        }),
        Err(_) => SecurityState::default(),
    }
}
