//! The server side of the SASL mechanisms Kafka listeners offer: one state machine per
//! mechanism, fed the client's tokens, answering the bytes to send back or, once done, the
//! authenticated [`Principal`] and how long the credential stays valid.
//!
//! A leaf like the rest of `security`: it reads users from a [`SecurityState`] snapshot and
//! keys from an [`oauthbearer::OAuthConfig`], and knows nothing of connections.

pub mod oauthbearer;
pub mod plain;
pub mod scram;

use std::sync::Arc;

use super::state::SecurityState;
use super::Principal;

/// A mechanism a listener may offer, by Kafka's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    ScramSha256,
    ScramSha512,
    Plain,
    OAuthBearer,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::Plain,
        SaslMechanism::OAuthBearer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Mechanism names are case-sensitive in Kafka (`SaslServerAuthenticator`).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What SASL listeners offer and check against (`--sasl-mechanisms`, `--oauth-*`,
/// `--sasl-max-reauth-ms`).
#[derive(Debug, Clone)]
pub struct SaslConfig {
    pub mechanisms: Vec<SaslMechanism>,
    /// Required when OAUTHBEARER is offered.
    pub oauth: Option<Arc<oauthbearer::OAuthConfig>>,
    /// Kafka's `connections.max.reauth.ms`: a session lasts at most this long before the
    /// client must re-authenticate (KIP-368); 0: no limit besides a token's expiry.
    pub max_reauth_ms: u64,
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            mechanisms: vec![SaslMechanism::ScramSha256, SaslMechanism::ScramSha512],
            oauth: None,
            max_reauth_ms: 0,
        }
    }
}

impl SaslConfig {
    pub fn enabled(&self, m: SaslMechanism) -> bool {
        self.mechanisms.contains(&m)
    }

    /// The enabled mechanisms' names, as SaslHandshake lists them.
    pub fn names(&self) -> Vec<&'static str> {
        self.mechanisms.iter().map(|m| m.name()).collect()
    }

    /// A session's lifetime in ms (SaslAuthenticate's `session_lifetime_ms`): the shorter of
    /// `max_reauth_ms` and the credential's remaining life; 0 when neither applies.
    pub fn session_lifetime_ms(&self, credential_ms: Option<u64>) -> u64 {
        let max = (self.max_reauth_ms > 0).then_some(self.max_reauth_ms);
        match (max, credential_ms) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            // A token that expires this very millisecond still needs a lifetime above 0,
            // which would otherwise mean "none".
            (None, Some(b)) => b.max(1),
            (None, None) => 0,
        }
    }
}

/// One step's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the client's next token.
    Challenge(Vec<u8>),
    /// Authenticated: send `response` (maybe empty) and switch the connection to `principal`.
    Done {
        principal: Principal,
        response: Vec<u8>,
        /// The credential's remaining validity (an OAuth token's `exp`), if it has one.
        credential_lifetime_ms: Option<u64>,
    },
}

/// Why authentication failed. The message is what the client is told (Kafka's texts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaslError {
    /// Wrong password, unknown user, bad proof: Kafka words these alike, so a client cannot
    /// tell an unknown user from a wrong password.
    #[error("invalid credentials with SASL mechanism {0}")]
    InvalidCredentials(SaslMechanism),
    /// A failure whose message Kafka sends as is.
    #[error("{0}")]
    Failed(String),
}

impl SaslError {
    /// What SaslAuthenticate's `error_message` says, as Kafka's `SaslServerAuthenticator`.
    pub fn client_message(&self, reauthentication: bool) -> String {
        match self {
            SaslError::InvalidCredentials(m) => format!(
                "Authentication failed during {} due to invalid credentials with SASL mechanism {m}",
                if reauthentication {
                    "re-authentication"
                } else {
                    "authentication"
                }
            ),
            SaslError::Failed(msg) => msg.clone(),
        }
    }
}

/// A mechanism's server, mid-exchange.
pub enum Authenticator {
    Scram(scram::ScramServer),
    Plain(plain::PlainServer),
    OAuthBearer(oauthbearer::OAuthBearerServer),
}

impl Authenticator {
    /// A fresh server for `mechanism`, which must be enabled in `config`.
    pub fn new(mechanism: SaslMechanism, config: &SaslConfig) -> Result<Self, SaslError> {
        Ok(match mechanism {
            SaslMechanism::ScramSha256 => {
                Authenticator::Scram(scram::ScramServer::new(super::scram::Mechanism::Sha256))
            }
            SaslMechanism::ScramSha512 => {
                Authenticator::Scram(scram::ScramServer::new(super::scram::Mechanism::Sha512))
            }
            SaslMechanism::Plain => Authenticator::Plain(plain::PlainServer::default()),
            SaslMechanism::OAuthBearer => {
                let Some(oauth) = config.oauth.clone() else {
                    return Err(SaslError::Failed(
                        "OAUTHBEARER is not configured on this broker".into(),
                    ));
                };
                Authenticator::OAuthBearer(oauthbearer::OAuthBearerServer::new(oauth))
            }
        })
    }

    pub fn mechanism(&self) -> SaslMechanism {
        match self {
            Authenticator::Scram(s) => match s.mechanism() {
                super::scram::Mechanism::Sha256 => SaslMechanism::ScramSha256,
                super::scram::Mechanism::Sha512 => SaslMechanism::ScramSha512,
            },
            Authenticator::Plain(_) => SaslMechanism::Plain,
            Authenticator::OAuthBearer(_) => SaslMechanism::OAuthBearer,
        }
    }

    /// Feeds the client's next token. Any error ends the exchange.
    pub fn step(&mut self, token: &[u8], users: &SecurityState) -> Result<Step, SaslError> {
        match self {
            Authenticator::Scram(s) => s.step(token, users),
            Authenticator::Plain(p) => p.step(token, users),
            Authenticator::OAuthBearer(o) => o.step(token),
        }
    }
}
