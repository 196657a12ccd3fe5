//! SASL on a Kafka connection (Kafka's `SaslServerAuthenticator`): SaslHandshake picks a
//! mechanism, SaslAuthenticate carries its tokens (or, after a v0 handshake, raw
//! length-prefixed tokens do), and success switches the connection to the authenticated
//! principal. Before that only ApiVersions is served; a session past its lifetime (KIP-368)
//! must re-authenticate on the same connection, as the same principal, before anything else.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use crate::metrics::Metrics;
use crate::security::sasl::{Authenticator, SaslConfig, SaslError, SaslMechanism, Step};
use crate::security::state::SecurityState;
use crate::security::{Principal, Session};

/// The SASL state of one connection on a SASL listener.
pub struct SaslConn {
    config: Arc<SaslConfig>,
    state: State,
}

enum State {
    /// Waiting for the first SaslHandshake.
    Handshake,
    /// A mechanism was picked: its tokens come next, in SaslAuthenticate requests or, after a
    /// v0 handshake, as raw frames.
    Authenticating {
        authenticator: Authenticator,
        raw: bool,
        /// Re-authentication: who the connection is, which must not change.
        previous: Option<Principal>,
    },
    Authenticated {
        mechanism: SaslMechanism,
        principal: Principal,
        /// When the session ends (KIP-368); `None`: never.
        expires: Option<Instant>,
    },
    /// Authentication failed: the connection closes once the answer is written.
    Failed,
}

/// What the connection does with a request on a SASL listener.
pub enum Verdict {
    /// Serve it as usual.
    Serve,
    /// Close the connection without answering (Kafka's behaviour for requests before
    /// authentication, or after the session expired).
    Close(String),
}

/// The answer to a SASL request, and what follows it.
pub struct Answer<T> {
    pub response: T,
    /// Close the connection once the answer is written.
    pub close: bool,
    /// The connection's new session (authentication succeeded).
    pub session: Option<Arc<Session>>,
}

impl SaslConn {
    pub fn new(config: Arc<SaslConfig>) -> Self {
        SaslConn {
            config,
            state: State::Handshake,
        }
    }

    /// Whether the next frame is a raw SASL token rather than a Kafka request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Authenticating { raw: true, .. })
    }

    /// Whether a request of `api` may be served now.
    pub fn admit(&self, api: ApiKey) -> Verdict {
        match (&self.state, api) {
            (_, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => Verdict::Serve,
            (State::Authenticated { expires, .. }, _) => match expires {
                Some(t) if Instant::now() >= *t => Verdict::Close(format!(
                    "{api:?} request after the SASL session expired (the client did not re-authenticate)"
                )),
                _ => Verdict::Serve,
            },
            // Before authenticating, clients ask which versions to use.
            (State::Handshake, ApiKey::ApiVersions) => Verdict::Serve,
            // Re-authenticating: the previous session still holds until it expires.
            (
                State::Authenticating {
                    previous: Some(_), ..
                },
                _,
            ) => Verdict::Serve,
            (_, api) => Verdict::Close(format!(
                "unexpected {api:?} request before SASL authentication"
            )),
        }
    }

    pub fn handshake(
        &mut self,
        version: i16,
        req: &SaslHandshakeRequest,
    ) -> Answer<SaslHandshakeResponse> {
        let names = self
            .config
            .names()
            .into_iter()
            .map(crate::handlers::sb)
            .collect();
        let resp = SaslHandshakeResponse::default().with_mechanisms(names);
        let asked = req.mechanism.as_str();
        let fail = |code: ResponseError| Answer {
            response: resp.clone().with_error_code(code.code()),
            close: true,
            session: None,
        };
        let previous = match &self.state {
            State::Handshake => None,
            // KIP-368: a v1 handshake on an authenticated connection re-authenticates, with
            // the same mechanism.
            State::Authenticated {
                mechanism,
                principal,
                ..
            } if version >= 1 => {
                if mechanism.name() != asked {
                    tracing::info!(
                        asked,
                        current = mechanism.name(),
                        "re-authentication with another SASL mechanism refused"
                    );
                    self.state = State::Failed;
                    return fail(ResponseError::UnsupportedSaslMechanism);
                }
                Some(principal.clone())
            }
            _ => {
                self.state = State::Failed;
                return fail(ResponseError::IllegalSaslState);
            }
        };
        let mechanism = SaslMechanism::from_name(asked).filter(|m| self.config.enabled(*m));
        let Some(mechanism) = mechanism else {
            self.state = State::Failed;
            return fail(ResponseError::UnsupportedSaslMechanism);
        };
        match Authenticator::new(mechanism, &self.config) {
            Ok(authenticator) => {
                self.state = State::Authenticating {
                    authenticator,
                    raw: version == 0,
                    previous,
                };
                Answer {
                    response: resp,
                    close: false,
                    session: None,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SASL mechanism cannot start");
                self.state = State::Failed;
                fail(ResponseError::UnsupportedSaslMechanism)
            }
        }
    }

    /// A SaslAuthenticate request.
    pub fn authenticate(
        &mut self,
        version: i16,
        req: &SaslAuthenticateRequest,
        users: &SecurityState,
        session: &Session,
        metrics: &Metrics,
    ) -> Answer<SaslAuthenticateResponse> {
        let resp = SaslAuthenticateResponse::default();
        match &self.state {
            State::Authenticating { raw: false, .. } => {}
            // Kafka answers this without closing (KafkaApis.handleSaslAuthenticateRequest).
            State::Authenticated { .. } => {
                return Answer {
                    response: resp
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(crate::handlers::sb(
                            "SaslAuthenticate request received after successful authentication",
                        ))),
                    close: false,
                    session: None,
                };
            }
            _ => {
                self.state = State::Failed;
                return Answer {
                    response: resp
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(crate::handlers::sb(
                            "Unexpected SaslAuthenticate request before SaslHandshake",
                        ))),
                    close: true,
                    session: None,
                };
            }
        }
        match self.step(
            &req.auth_bytes,
            users,
            session.host,
            &session.listener,
            metrics,
        ) {
            Ok(Stepped::Challenge(bytes)) => Answer {
                response: resp.with_auth_bytes(Bytes::from(bytes)),
                close: false,
                session: None,
            },
            Ok(Stepped::Done {
                response,
                session,
                lifetime_ms,
            }) => {
                let mut resp = resp.with_auth_bytes(Bytes::from(response));
                if version >= 1 {
                    resp = resp.with_session_lifetime_ms(lifetime_ms as i64);
                }
                Answer {
                    response: resp,
                    close: false,
                    session: Some(session),
                }
            }
            Err(message) => Answer {
                response: resp
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(crate::handlers::sb(message))),
                close: true,
                session: None,
            },
        }
    }

    /// A raw token after a v0 handshake: the raw answer, or `Err` to close the connection
    /// (the v0 protocol has no way to say why).
    pub fn raw_token(
        &mut self,
        token: &[u8],
        users: &SecurityState,
        session: &Session,
        metrics: &Metrics,
    ) -> Result<(Vec<u8>, Option<Arc<Session>>), String> {
        match self.step(token, users, session.host, &session.listener, metrics)? {
            Stepped::Challenge(bytes) => Ok((bytes, None)),
            Stepped::Done {
                response, session, ..
            } => Ok((response, Some(session))),
        }
    }

    fn step(
        &mut self,
        token: &[u8],
        users: &SecurityState,
        host: IpAddr,
        listener: &Arc<str>,
        metrics: &Metrics,
    ) -> Result<Stepped, String> {
        let State::Authenticating {
            authenticator,
            previous,
            ..
        } = &mut self.state
        else {
            return Err("no SASL exchange in progress".into());
        };
        let mechanism = authenticator.mechanism();
        let reauth = previous.is_some();
        let failed = |e: SaslError| {
            metrics.sasl_authentication(mechanism.name(), false);
            e.client_message(reauth)
        };
        match authenticator.step(token, users) {
            Ok(Step::Challenge(bytes)) => Ok(Stepped::Challenge(bytes)),
            Ok(Step::Done {
                principal,
                response,
                credential_lifetime_ms,
            }) => {
                if let Some(p) = previous.as_ref().filter(|p| **p != principal) {
                    let msg = format!(
                        "Cannot change principals during re-authentication from {p}: {principal}"
                    );
                    self.state = State::Failed;
                    return Err(failed(SaslError::Failed(msg)));
                }
                metrics.sasl_authentication(mechanism.name(), true);
                let lifetime_ms = self.config.session_lifetime_ms(credential_lifetime_ms);
                let expires =
                    (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms));
                tracing::debug!(%principal, %mechanism, reauth, lifetime_ms, "SASL authenticated");
                let session = Arc::new(Session::new(principal.clone(), host, listener.clone()));
                self.state = State::Authenticated {
                    mechanism,
                    principal,
                    expires,
                };
                Ok(Stepped::Done {
                    response,
                    session,
                    lifetime_ms,
                })
            }
            Err(e) => {
                tracing::info!(%mechanism, %host, error = %e, "SASL authentication failed");
                self.state = State::Failed;
                Err(failed(e))
            }
        }
    }
}

enum Stepped {
    Challenge(Vec<u8>),
    Done {
        response: Vec<u8>,
        session: Arc<Session>,
        lifetime_ms: u64,
    },
}
