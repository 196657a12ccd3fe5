//! SASL/PLAIN (RFC 4616), server side: `[authzid] NUL user NUL password`, checked against the
//! user's SCRAM credentials (the broker keeps no plain passwords). Only sensible over TLS.

use super::{SaslError, SaslMechanism, Step};
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::state::SecurityState;
use crate::security::Principal;

#[derive(Default)]
pub struct PlainServer {
    done: bool,
}

impl PlainServer {
    pub fn step(&mut self, token: &[u8], users: &SecurityState) -> Result<Step, SaslError> {
        if std::mem::replace(&mut self.done, true) {
            return Err(SaslError::Failed("PLAIN exchange already finished".into()));
        }
        let failed = |m: &str| SaslError::Failed(format!("Authentication failed: {m}"));
        let msg = std::str::from_utf8(token)
            .map_err(|_| SaslError::InvalidCredentials(SaslMechanism::Plain))?;
        let parts: Vec<&str> = msg.split('\0').collect();
        let [authzid, user, password] = parts[..] else {
            tracing::debug!(tokens = parts.len(), "SASL/PLAIN message without 3 tokens");
            return Err(SaslError::InvalidCredentials(SaslMechanism::Plain));
        };
        if user.is_empty() {
            return Err(failed("username not specified"));
        }
        if password.is_empty() {
            return Err(failed("password not specified"));
        }
        if !authzid.is_empty() && authzid != user {
            return Err(failed(
                "Client requested an authorization id that is different from username",
            ));
        }
        if !verify(users, user, password.as_bytes()) {
            return Err(failed("Invalid username or password"));
        }
        Ok(Step::Done {
            principal: Principal::user(user),
            response: Vec::new(),
            credential_lifetime_ms: None,
        })
    }
}

/// Whether `password` is `user`'s, by its SCRAM-SHA-512 credential, else its SCRAM-SHA-256
/// one. An unknown user costs the same key derivation as a known one.
pub fn verify(users: &SecurityState, user: &str, password: &[u8]) -> bool {
    for m in [Mechanism::Sha512, Mechanism::Sha256] {
        if let Some(c) = users.credential(user, m) {
            return c.verify_password(m, password);
        }
    }
    let decoy = ScramCredential {
        salt: vec![0; 16],
        iterations: Mechanism::MIN_ITERATIONS,
        stored_key: vec![0; 64],
        server_key: vec![0; 64],
    };
    let _ = decoy.verify_password(Mechanism::Sha512, password);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::sasl::scram::tests::users_with;

    #[test]
    fn plain_checks_the_scram_credentials() {
        let users = users_with("alice", "s3cret");
        let ok = PlainServer::default()
            .step(b"\0alice\0s3cret", &users)
            .unwrap();
        assert!(
            matches!(ok, Step::Done { principal, .. } if principal == Principal::user("alice"))
        );
        assert!(PlainServer::default()
            .step(b"alice\0alice\0s3cret", &users)
            .is_ok());
        let msg = |t: &[u8]| {
            PlainServer::default()
                .step(t, &users)
                .unwrap_err()
                .client_message(false)
        };
        assert_eq!(
            msg(b"\0alice\0wrong"),
            "Authentication failed: Invalid username or password"
        );
        assert_eq!(
            msg(b"\0bob\0s3cret"),
            "Authentication failed: Invalid username or password"
        );
        assert!(msg(b"bob\0alice\0s3cret").contains("authorization id"));
        assert!(msg(b"\0\0s3cret").contains("username not specified"));
        assert!(msg(b"\0alice\0").contains("password not specified"));
        assert!(msg(b"alice\0s3cret").contains("invalid credentials with SASL mechanism PLAIN"));
        // A user with only a SHA-256 credential is checked against it.
        let mut users = users_with("carol", "pw");
        users.apply(&crate::security::state::SecurityChange::DeleteScram {
            user: "carol".into(),
            mechanism: Mechanism::Sha512,
        });
        assert!(verify(&users, "carol", b"pw"));
        assert!(!verify(&users, "carol", b"pw2"));
    }
}
