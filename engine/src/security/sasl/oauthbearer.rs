//! SASL/OAUTHBEARER (RFC 7628), server side: the client sends a JWT, which must be signed by
//! a key of the configured JWKS, carry the configured issuer and audience, and be within its
//! `nbf`/`exp`. The principal is a claim of the token (`sub` by default); the session lasts
//! at most until the token expires (KIP-368).
//!
//! The JWKS file is reloaded when it changes (checked at most every few seconds, on use), so an
//! identity provider's key rotation needs no restart; a changed file that cannot be used keeps
//! the previous keys and logs why.
//!
//! A refused token is answered, as RFC 7628 and Kafka do, with an error challenge
//! (`{"status":"invalid_token"}`); the client acknowledges it with `%x01`, and the exchange
//! then fails with that JSON as the message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{SaslError, Step};
use crate::security::Principal;

/// Kafka's `sasl.oauthbearer.clock.skew.seconds` default.
const CLOCK_SKEW_S: u64 = 30;

/// The algorithms a token may be signed with: RSA and ECDSA, never `none` or HMAC (a JWKS of
/// public keys cannot verify a shared-secret MAC, and accepting one would let anyone forge).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// What tokens are checked against (`--oauth-jwks-file`, `--oauth-issuer`,
/// `--oauth-audience`, `--oauth-principal-claim`).
pub struct OAuthConfig {
    keys: parking_lot::Mutex<Keys>,
    /// The JWKS file, reloaded when it changes; `None` for keys given as JSON.
    file: Option<PathBuf>,
    check_every: std::time::Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub principal_claim: String,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("keys", &self.keys.lock().current.len())
            .field("file", &self.file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("principal_claim", &self.principal_claim)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthConfigError {
    #[error("cannot read the JWKS file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the JWKS file {0} is not a JSON Web Key Set: {1}")]
    Parse(String, serde_json::Error),
    #[error("the JWKS file {0} has an unusable key: {1}")]
    Key(String, jsonwebtoken::errors::Error),
    #[error("the JWKS file {0} has no keys")]
    Empty(String),
}

/// One key of the set: its `kid`, its `alg` and the key.
type Key = (Option<String>, Option<Algorithm>, DecodingKey);

struct Keys {
    current: Arc<Vec<Key>>,
    stamp: crate::security::tls::Stamp,
    checked: Instant,
}

fn parse_jwks(source: &str, json: &str) -> Result<Vec<Key>, OAuthConfigError> {
    let set: JwkSet =
        serde_json::from_str(json).map_err(|e| OAuthConfigError::Parse(source.into(), e))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| OAuthConfigError::Key(source.into(), e))?;
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.push((jwk.common.key_id.clone(), alg, key));
    }
    if keys.is_empty() {
        return Err(OAuthConfigError::Empty(source.into()));
    }
    Ok(keys)
}

fn read_jwks(path: &Path) -> Result<Vec<Key>, OAuthConfigError> {
    let source = path.display().to_string();
    let json =
        std::fs::read_to_string(path).map_err(|e| OAuthConfigError::Read(source.clone(), e))?;
    parse_jwks(&source, &json)
}

impl OAuthConfig {
    pub fn from_jwks_json(
        source: &str,
        json: &str,
        issuer: Option<String>,
        audience: Option<String>,
        principal_claim: String,
    ) -> Result<Self, OAuthConfigError> {
        let keys = parse_jwks(source, json)?;
        Ok(Self::with_keys(
            keys,
            None,
            issuer,
            audience,
            principal_claim,
        ))
    }

    /// Loads the file (the broker does not start when it cannot) and reloads it when it changes.
    pub fn from_jwks_file(
        path: &Path,
        issuer: Option<String>,
        audience: Option<String>,
        principal_claim: String,
    ) -> Result<Self, OAuthConfigError> {
        let stamp = crate::security::tls::stamp(path);
        let keys = read_jwks(path)?;
        let mut c = Self::with_keys(keys, Some(path.into()), issuer, audience, principal_claim);
        c.keys.get_mut().stamp = stamp;
        Ok(c)
    }

    fn with_keys(
        keys: Vec<Key>,
        file: Option<PathBuf>,
        issuer: Option<String>,
        audience: Option<String>,
        principal_claim: String,
    ) -> Self {
        OAuthConfig {
            keys: parking_lot::Mutex::new(Keys {
                current: Arc::new(keys),
                stamp: None,
                checked: Instant::now(),
            }),
            file,
            check_every: crate::security::tls::CHECK_EVERY,
            issuer,
            audience,
            principal_claim,
        }
    }

    /// The keys to check a token against now, reloading the file first if it changed.
    fn keys(&self) -> Arc<Vec<Key>> {
        let mut k = self.keys.lock();
        let Some(path) = &self.file else {
            return k.current.clone();
        };
        if k.checked.elapsed() >= self.check_every {
            k.checked = Instant::now();
            let stamp = crate::security::tls::stamp(path);
            if stamp != k.stamp {
                k.stamp = stamp;
                match read_jwks(path) {
                    Ok(keys) => {
                        tracing::info!(file = %path.display(), keys = keys.len(), "JWKS reloaded");
                        k.current = Arc::new(keys);
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "cannot load the changed JWKS file; still checking tokens against the previous keys"
                    ),
                }
            }
        }
        k.current.clone()
    }

    /// The principal a token names and its remaining lifetime in ms, or why it is refused.
    pub fn validate(&self, token: &str, now_s: u64) -> Result<(String, u64), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let keys = self.keys();
        let candidates: Vec<&DecodingKey> = keys
            .iter()
            .filter(|(kid, alg, _)| {
                (header.kid.is_none() || *kid == header.kid) && alg.is_none_or(|a| a == header.alg)
            })
            .map(|(_, _, k)| k)
            .collect();
        if candidates.is_empty() {
            return Err(format!("no key in the JWKS for kid {:?}", header.kid));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = CLOCK_SKEW_S;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let mut last = String::new();
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, key, &v) {
                Ok(data) => {
                    let principal = data
                        .claims
                        .get(&self.principal_claim)
                        .and_then(|c| c.as_str())
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| format!("no '{}' claim", self.principal_claim))?;
                    let exp = data.claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
                    let lifetime_ms = exp.saturating_sub(now_s).saturating_mul(1000);
                    return Ok((principal.to_string(), lifetime_ms));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

pub struct OAuthBearerServer {
    config: Arc<OAuthConfig>,
    /// The error JSON sent as a challenge, awaiting the client's `%x01`.
    error: Option<String>,
    done: bool,
}

impl OAuthBearerServer {
    pub fn new(config: Arc<OAuthConfig>) -> Self {
        OAuthBearerServer {
            config,
            error: None,
            done: false,
        }
    }

    pub fn step(&mut self, token: &[u8]) -> Result<Step, SaslError> {
        if let Some(error) = self.error.take() {
            // Whatever the client says after our error, the exchange has failed.
            self.done = true;
            return Err(SaslError::Failed(error));
        }
        if std::mem::replace(&mut self.done, true) {
            return Err(SaslError::Failed(
                "OAUTHBEARER exchange already finished".into(),
            ));
        }
        let (authzid, jwt) = parse_initial_response(token)
            .ok_or_else(|| SaslError::Failed("Invalid OAUTHBEARER client first message".into()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.config.validate(jwt, now) {
            Ok((principal, lifetime_ms)) => {
                if let Some(a) = authzid.filter(|a| *a != principal) {
                    return Err(SaslError::Failed(format!(
                        "Authentication failed: Client requested an authorization id ({a}) that is different from the token's principal name ({principal})"
                    )));
                }
                Ok(Step::Done {
                    principal: Principal::user(principal),
                    response: Vec::new(),
                    credential_lifetime_ms: Some(lifetime_ms),
                })
            }
            Err(why) => {
                tracing::info!(reason = %why, "OAUTHBEARER token refused");
                let json = r#"{"status":"invalid_token"}"#.to_string();
                self.error = Some(json.clone());
                self.done = false;
                Ok(Step::Challenge(json.into_bytes()))
            }
        }
    }
}

/// RFC 7628's client initial response: `n,[a=authzid],` `%x01` `key=value%x01`... `%x01`,
/// one key being `auth=Bearer <token>`. The other keys (Kafka's SASL extensions) are ignored.
fn parse_initial_response(msg: &[u8]) -> Option<(Option<&str>, &str)> {
    let msg = std::str::from_utf8(msg).ok()?;
    let rest = msg.strip_prefix("n,")?;
    let (authzid, rest) = rest.split_once(',')?;
    let authzid = match authzid {
        "" => None,
        a => Some(a.strip_prefix("a=")?),
    };
    let pairs = rest.strip_prefix('\x01')?.strip_suffix("\x01\x01")?;
    let mut token = None;
    for kv in pairs.split('\x01') {
        let (k, v) = kv.split_once('=')?;
        if k == "auth" {
            let (scheme, t) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            token = Some(t.trim_start_matches(' '));
        }
    }
    token.filter(|t| !t.is_empty()).map(|t| (authzid, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EC P-256 key pair (generated for these tests only) as PKCS#8 and as a JWK.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPVaa+TI+wRknKbQq
IwvgJsb/4dUot+5dCRFdfqSeMmWhRANCAARP89BnelJGELAHHft0U3MvBUdoxnxN
J7HMmuuCe/0ZM4rypBM5iw2NaeoSOckGHGo1AowyNkVx0GiPcOuReCG1
-----END PRIVATE KEY-----";
    const EC_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"T_PQZ3pSRhCwBx37dFNzLwVHaMZ8TSexzJrrgnv9GTM","y":"ivKkEzmLDY1p6hI5yQYcajUCjDI2RXHQaI9w65F4IbU"}]}"#;

    fn config() -> OAuthConfig {
        OAuthConfig::from_jwks_json(
            "test",
            EC_JWKS,
            Some("https://issuer.test".into()),
            Some("icestream".into()),
            "sub".into(),
        )
        .unwrap()
    }

    fn token(claims: serde_json::Value, kid: &str) -> String {
        let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        let key = jsonwebtoken::EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        jsonwebtoken::encode(&h, &claims, &key).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn message(jwt: &str) -> Vec<u8> {
        format!("n,,\x01host=localhost\x01auth=Bearer {jwt}\x01\x01").into_bytes()
    }

    #[test]
    fn a_changed_jwks_file_is_used_without_a_restart_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        // The same key under another kid: tokens naming "k1" find no key until the file has it.
        std::fs::write(&path, EC_JWKS.replace("\"k1\"", "\"k0\"")).unwrap();
        let mut c = OAuthConfig::from_jwks_file(
            &path,
            Some("https://issuer.test".into()),
            Some("icestream".into()),
            "sub".into(),
        )
        .unwrap();
        c.check_every = std::time::Duration::ZERO;
        let jwt = token(
            serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "icestream", "exp": now() + 600}),
            "k1",
        );
        let refused = c.validate(&jwt, now()).unwrap_err();
        assert!(refused.contains("no key in the JWKS"), "{refused}");
        // Rotated in by renaming a new file into place, as provisioning tools do.
        let next = dir.path().join("jwks.json.new");
        std::fs::write(&next, EC_JWKS).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(c.validate(&jwt, now()).unwrap().0, "alice");
        // A broken file keeps the keys in use.
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(c.validate(&jwt, now()).unwrap().0, "alice");
    }

    #[test]
    fn a_valid_token_authenticates_with_its_lifetime() {
        let c = Arc::new(config());
        let jwt = token(
            serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "icestream", "exp": now() + 600}),
            "k1",
        );
        let mut s = OAuthBearerServer::new(c.clone());
        let Step::Done {
            principal,
            credential_lifetime_ms: Some(ms),
            response,
        } = s.step(&message(&jwt)).unwrap()
        else {
            panic!()
        };
        assert_eq!(principal, Principal::user("alice"));
        assert!(response.is_empty());
        assert!((590_000..=600_000).contains(&ms), "{ms}");
        // An authzid naming someone else is refused.
        let mut s = OAuthBearerServer::new(c);
        let m = format!("n,a=bob,\x01auth=Bearer {jwt}\x01\x01");
        assert!(s
            .step(m.as_bytes())
            .unwrap_err()
            .client_message(false)
            .contains("(bob)"));
    }

    #[test]
    fn bad_tokens_get_the_rfc7628_error() {
        let c = Arc::new(config());
        let good = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "icestream", "exp": now() + 600});
        let mut expired = good.clone();
        expired["exp"] = (now() - 3600).into();
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = "https://evil.test".into();
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "other".into();
        let mut no_sub = good.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        let mut not_yet = good.clone();
        not_yet["nbf"] = (now() + 3600).into();
        let tampered = {
            let t = token(good.clone(), "k1");
            let mut parts: Vec<String> = t.split('.').map(String::from).collect();
            parts[1] = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                serde_json::json!({"sub": "admin", "iss": "https://issuer.test", "aud": "icestream", "exp": now() + 600}).to_string(),
            );
            parts.join(".")
        };
        let unsigned = format!(
            "{}.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"alg":"none"}"#
            ),
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                good.to_string()
            )
        );
        for jwt in [
            token(expired, "k1"),
            token(wrong_iss, "k1"),
            token(wrong_aud, "k1"),
            token(no_sub, "k1"),
            token(not_yet, "k1"),
            token(good.clone(), "unknown-kid"),
            tampered,
            unsigned,
        ] {
            let mut s = OAuthBearerServer::new(c.clone());
            assert_eq!(
                s.step(&message(&jwt)).unwrap(),
                Step::Challenge(br#"{"status":"invalid_token"}"#.to_vec())
            );
            let e = s.step(b"\x01").unwrap_err();
            assert_eq!(e.client_message(false), r#"{"status":"invalid_token"}"#);
        }
        for bad in [
            &b"n,,auth=Bearer x\x01\x01"[..],
            b"n,,\x01auth=Basic x\x01\x01",
            b"y,,\x01auth=Bearer x\x01\x01",
            b"n,,\x01\x01",
        ] {
            assert!(OAuthBearerServer::new(c.clone()).step(bad).is_err());
        }
    }
}
