//! Who the web console's Kafka calls run as. The console runs the CLI's code against its own
//! broker; with HTTP Basic credentials on the admin API request (the admin API has checked
//! them already), those calls authenticate with the same user over SASL on a loopback SASL
//! listener, so the broker's ACLs apply to the logged-in user. Without credentials (no HTTP
//! authentication) they use a PLAINTEXT (else SSL) listener, as before. A bearer token goes
//! the same way as an OAUTHBEARER token, when the broker offers OAUTHBEARER.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use base64::Engine;
use engine::config::SecurityProtocol;
use engine::security::sasl::SaslMechanism as ServerMechanism;

use crate::cli::sasl::SaslMechanism;
use crate::cli::{ClientArgs, Format};
use crate::console::Console;

/// How the console reaches its broker's Kafka listeners.
#[derive(Debug, Clone)]
pub struct ConsoleKafka {
    /// For requests without credentials.
    pub anonymous: ClientArgs,
    /// For requests with HTTP Basic credentials (user and password filled in per request):
    /// a SASL listener and a mechanism it offers, if the broker has one.
    pub sasl: Option<ClientArgs>,
    /// For requests with a bearer token: the SASL listener with OAUTHBEARER, if offered.
    pub oauth: Option<ClientArgs>,
}

impl ConsoleKafka {
    /// Picks the listeners: loopback addresses first, plaintext before TLS (the console's
    /// connections never leave the host). A TLS listener (and the https admin API and
    /// registry with --http-tls) is trusted by pinning the broker's own certificate
    /// (`--tls-cert-file`), so no CA is needed.
    pub fn new(
        broker: &engine::broker::Broker,
        admin_url: String,
        schema_registry_url: String,
    ) -> Self {
        // The first listener's port may be 0 in the config: `kafka_addr` is where it is bound.
        let first = broker.kafka_addr;
        let listeners: Vec<(SecurityProtocol, SocketAddr)> = broker
            .config
            .kafka_listeners()
            .iter()
            .enumerate()
            .map(|(i, l)| (l.protocol, if i == 0 { first } else { l.addr }))
            .filter(|(_, a)| a.port() != 0)
            .collect();
        let pinned = broker.config.tls.as_ref().map(|t| t.cert_file.clone());
        let https = admin_url.starts_with("https://");
        let base = ClientArgs {
            http_pinned_cert: if https { pinned.clone() } else { None },
            admin_url,
            schema_registry_url,
            format: Format::Json,
            ..ClientArgs::defaults()
        };
        let args_for = |(protocol, addr): (SecurityProtocol, SocketAddr)| {
            let tls = matches!(protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl);
            ClientArgs {
                brokers: reachable(addr),
                tls_pinned_cert: if tls { pinned.clone() } else { None },
                ..base.clone()
            }
        };
        let pick = |protocols: &[SecurityProtocol]| {
            protocols.iter().find_map(|p| {
                let mut of: Vec<(SecurityProtocol, SocketAddr)> =
                    listeners.iter().filter(|(q, _)| q == p).copied().collect();
                of.sort_by_key(|(_, a)| !(a.ip().is_loopback() || a.ip().is_unspecified()));
                of.first().copied()
            })
        };
        let anonymous = pick(&[SecurityProtocol::Plaintext, SecurityProtocol::Ssl])
            .map(args_for)
            .unwrap_or_else(|| ClientArgs {
                brokers: reachable(first),
                ..base.clone()
            });
        let mechanism = [
            (ServerMechanism::ScramSha512, SaslMechanism::ScramSha512),
            (ServerMechanism::ScramSha256, SaslMechanism::ScramSha256),
            (ServerMechanism::Plain, SaslMechanism::Plain),
        ]
        .into_iter()
        .find(|(s, _)| broker.config.sasl.enabled(*s))
        .map(|(_, c)| c);
        let listener = pick(&[SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl]);
        let with = |m: Option<SaslMechanism>| match (m, listener) {
            (Some(m), Some(l)) => Some(ClientArgs {
                sasl_mechanism: Some(m),
                ..args_for(l)
            }),
            _ => None,
        };
        let oauth = broker
            .config
            .sasl
            .enabled(ServerMechanism::OAuthBearer)
            .then_some(SaslMechanism::OAuthBearer);
        ConsoleKafka {
            anonymous,
            sasl: with(mechanism),
            oauth: with(oauth),
        }
    }

    /// The client settings for a request carrying `authorization`.
    pub fn args_for(&self, authorization: Option<&HeaderValue>) -> ClientArgs {
        if let (Some((user, password)), Some(sasl)) = (basic_credentials(authorization), &self.sasl)
        {
            return ClientArgs {
                user: Some(user),
                password: Some(password),
                ..sasl.clone()
            };
        }
        if let (Some(token), Some(oauth)) = (bearer_token(authorization), &self.oauth) {
            return ClientArgs {
                password: Some(token),
                ..oauth.clone()
            };
        }
        self.anonymous.clone()
    }
}

/// `host:port` to connect to: the wildcard address becomes loopback.
fn reachable(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) if v.ip().is_unspecified() => format!("127.0.0.1:{}", v.port()),
        SocketAddr::V6(v) if v.ip().is_unspecified() => format!("[::1]:{}", v.port()),
        a => a.to_string(),
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer_token(h: Option<&HeaderValue>) -> Option<String> {
    let v = h?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

/// User and password of an `Authorization: Basic` header.
fn basic_credentials(h: Option<&HeaderValue>) -> Option<(String, String)> {
    let v = h?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The client settings of the request's caller, for a console handler.
pub struct Caller(pub ClientArgs);

impl FromRequestParts<Arc<Console>> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        c: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller(
            c.kafka.args_for(parts.headers.get(header::AUTHORIZATION)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers() {
        let h = HeaderValue::from_static("Basic YWxpY2U6czNjcjp0"); // alice:s3cr:t
        assert_eq!(
            basic_credentials(Some(&h)),
            Some(("alice".into(), "s3cr:t".into()))
        );
        assert_eq!(
            basic_credentials(Some(&HeaderValue::from_static("Bearer abc"))),
            None
        );
        assert_eq!(
            basic_credentials(Some(&HeaderValue::from_static("Basic !!"))),
            None
        );
        assert_eq!(basic_credentials(None), None);
        assert_eq!(
            bearer_token(Some(&HeaderValue::from_static("Bearer a.b.c"))),
            Some("a.b.c".into())
        );
        assert_eq!(bearer_token(Some(&h)), None);
    }
}
