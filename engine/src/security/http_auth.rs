//! The pure checks behind authentication on the HTTP APIs (admin API, schema registry,
//! Iceberg catalog): parsing `Authorization`, HTTP Basic against the SCRAM users (with a short
//! cache, since a SCRAM credential costs thousands of HMACs to check), the catalog's OAuth2
//! access tokens (HS256 JWTs), and the header brokers sign their own requests with.
//! `crate::http_auth` is the axum middleware built on these.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::scram::{subtle_eq, Mechanism, ScramCredential};
use super::state::SecurityState;

/// What an `Authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpAuthError {
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("unsupported authorization scheme '{0}': use Basic or Bearer")]
    Scheme(String),
    #[error("invalid user name or password")]
    BadPassword,
    #[error("invalid token: {0}")]
    BadToken(&'static str),
    #[error("invalid broker signature: {0}")]
    BadSignature(&'static str),
}

/// Parses `Basic <base64(user:password)>` or `Bearer <token>` (schemes are case-insensitive).
pub fn parse_authorization(value: &str) -> Result<Credentials, HttpAuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(HttpAuthError::Malformed(
        "expected '<scheme> <credentials>'",
    ))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| HttpAuthError::Malformed("Basic credentials are not base64"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| HttpAuthError::Malformed("Basic credentials are not UTF-8"))?;
        let (user, password) = text.split_once(':').ok_or(HttpAuthError::Malformed(
            "Basic credentials lack 'user:password'",
        ))?;
        if user.is_empty() {
            return Err(HttpAuthError::Malformed("empty user name"));
        }
        Ok(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(HttpAuthError::Malformed("empty bearer token"));
        }
        Ok(Credentials::Bearer(rest.to_string()))
    } else {
        Err(HttpAuthError::Scheme(scheme.chars().take(32).collect()))
    }
}

/// Whether `password` is `user`'s, checked against the SCRAM-SHA-512 credential, else the
/// SCRAM-SHA-256 one. An unknown user costs as much as a known one (a fixed fake credential),
/// so timing does not tell which users exist.
pub fn verify_password(state: &SecurityState, user: &str, password: &str) -> bool {
    let found = state
        .credential(user, Mechanism::Sha512)
        .map(|c| (Mechanism::Sha512, c))
        .or_else(|| {
            state
                .credential(user, Mechanism::Sha256)
                .map(|c| (Mechanism::Sha256, c))
        });
    match found {
        Some((mech, cred)) => cred.verify_password(mech, password.as_bytes()),
        None => {
            let fake = fake_credential();
            let _ = fake.verify_password(Mechanism::Sha512, password.as_bytes());
            false
        }
    }
}

fn fake_credential() -> &'static ScramCredential {
    static FAKE: std::sync::OnceLock<ScramCredential> = std::sync::OnceLock::new();
    FAKE.get_or_init(|| {
        ScramCredential::new(
            Mechanism::Sha512,
            b"no such user",
            b"icestream-fake-salt",
            8192,
        )
    })
}

/// The stored key a cached Basic check was made against: a credential changed since (new
/// password, user deleted) no longer matches it, and the entry is ignored.
fn credential_fingerprint(state: &SecurityState, user: &str) -> Option<Vec<u8>> {
    state
        .credential(user, Mechanism::Sha512)
        .or_else(|| state.credential(user, Mechanism::Sha256))
        .map(|c| c.stored_key.clone())
}

/// (user, SHA-256 of the password) to when it passed and the credential's stored key then.
type BasicEntries = HashMap<(String, [u8; 32]), (Instant, Vec<u8>)>;

/// Successful Basic checks for a minute, keyed by user and a SHA-256 of the password (never
/// the password itself).
pub struct BasicCache {
    ttl: Duration,
    max_entries: usize,
    entries: parking_lot::Mutex<BasicEntries>,
}

impl Default for BasicCache {
    fn default() -> Self {
        BasicCache::new(Duration::from_secs(60), 10_000)
    }
}

impl BasicCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        BasicCache {
            ttl,
            max_entries,
            entries: Default::default(),
        }
    }

    fn key(user: &str, password: &str) -> (String, [u8; 32]) {
        let mut h = [0u8; 32];
        h.copy_from_slice(&Sha256::digest(password.as_bytes()));
        (user.to_string(), h)
    }

    /// Whether this user and password passed within the last minute against the credential
    /// still in force.
    pub fn hit(&self, state: &SecurityState, user: &str, password: &str, now: Instant) -> bool {
        let key = Self::key(user, password);
        let mut entries = self.entries.lock();
        let Some((at, fp)) = entries.get(&key) else {
            return false;
        };
        let fresh = now.saturating_duration_since(*at) < self.ttl;
        if fresh && credential_fingerprint(state, user).as_deref() == Some(fp.as_slice()) {
            return true;
        }
        entries.remove(&key);
        false
    }

    /// Remembers a successful check.
    pub fn insert(&self, state: &SecurityState, user: &str, password: &str, now: Instant) {
        let Some(fp) = credential_fingerprint(state, user) else {
            return;
        };
        let mut entries = self.entries.lock();
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(Self::key(user, password), (now, fp));
    }
}

/// A 32-byte key for one purpose, derived from the cluster secret (HMAC-SHA256 keyed by the
/// secret over a label), so the tokens one broker issues verify on every other.
pub fn derive_key(secret: &[u8], label: &str) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key size");
    m.update(label.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    out
}

/// A random key (a single broker without a cluster secret: its tokens die with the process).
pub fn random_key() -> [u8; 32] {
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key size");
    for p in parts {
        m.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&m.finalize().into_bytes());
    out
}

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// The `kid` of tokens this broker issues: another issuer's JWT is told apart before its
/// signature is checked.
pub const TOKEN_KID: &str = "icestream-catalog";
const TOKEN_ISSUER: &str = "icestream";

/// What a catalog token says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// An HS256 JWT for `user`, valid `ttl` from `now` (Unix seconds).
pub fn issue_token(key: &[u8; 32], user: &str, scope: Option<&str>, now: u64, ttl: u64) -> String {
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": TOKEN_KID});
    let claims = TokenClaims {
        iss: TOKEN_ISSUER.into(),
        sub: user.into(),
        iat: now,
        exp: now + ttl,
        scope: scope.map(str::to_string),
    };
    let signing_input = format!(
        "{}.{}",
        b64url().encode(header.to_string()),
        b64url().encode(serde_json::to_vec(&claims).expect("claims serialize"))
    );
    let sig = hmac256(key, &[signing_input.as_bytes()]);
    format!("{signing_input}.{}", b64url().encode(sig))
}

/// Whether `token` is a JWT this broker (or any broker of its cluster) would have issued:
/// `Ok(None)` when it is not one of ours at all (another issuer's: try the OAUTHBEARER
/// settings), `Ok(Some(claims))` when valid, an error when ours but bad or expired.
pub fn verify_token(
    key: &[u8; 32],
    token: &str,
    now: u64,
) -> Result<Option<TokenClaims>, HttpAuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpAuthError::BadToken("not a JWT"));
    };
    let header: serde_json::Value = b64url()
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(HttpAuthError::BadToken("malformed header"))?;
    if header.get("kid").and_then(|k| k.as_str()) != Some(TOKEN_KID) {
        return Ok(None);
    }
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(HttpAuthError::BadToken("unexpected algorithm"));
    }
    let sig = b64url()
        .decode(s)
        .map_err(|_| HttpAuthError::BadToken("malformed signature"))?;
    let expected = hmac256(key, &[h.as_bytes(), b".", c.as_bytes()]);
    if !subtle_eq(&sig, &expected) {
        return Err(HttpAuthError::BadToken("bad signature"));
    }
    let claims: TokenClaims = b64url()
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(HttpAuthError::BadToken("malformed claims"))?;
    if claims.iss != TOKEN_ISSUER {
        return Err(HttpAuthError::BadToken("unexpected issuer"));
    }
    if now >= claims.exp {
        return Err(HttpAuthError::BadToken("expired"));
    }
    Ok(Some(claims))
}

/// The header a broker signs its own HTTP requests to another broker with.
pub const BROKER_AUTH_HEADER: &str = "x-icestream-broker-auth";
/// How far a signed request's timestamp may be from the receiver's clock.
pub const BROKER_AUTH_SKEW_SECS: u64 = 60;

#[allow(clippy::too_many_arguments)]
fn broker_mac(
    key: &[u8; 32],
    method: &str,
    host: &str,
    path: &str,
    ts: u64,
    nonce: &str,
    body: &[u8],
    on_behalf: Option<&str>,
) -> [u8; 32] {
    let body_hash = Sha256::digest(body);
    let ts = ts.to_string();
    // v2 also covers the principal the broker vouches for; v1 (none) is unchanged.
    let (domain, tail): (&[u8], &[u8]) = match on_behalf {
        None => (b"icestream-broker-request-v1\n", b""),
        Some(p) => (b"icestream-broker-request-v2\n", p.as_bytes()),
    };
    hmac256(
        key,
        &[
            domain,
            method.as_bytes(),
            b"\n",
            host.as_bytes(),
            b"\n",
            path.as_bytes(),
            b"\n",
            ts.as_bytes(),
            b"\n",
            nonce.as_bytes(),
            b"\n",
            &body_hash,
            if on_behalf.is_some() { b"\n" } else { b"" },
            tail,
        ],
    )
}

/// The value of [`BROKER_AUTH_HEADER`] for `method path_and_query` to `host` (the `Host`
/// header: `host:port`) with `body` at `now` (Unix seconds): `v1 <ts> <nonce> <mac>`, the MAC
/// over method, host, path, timestamp, nonce and the body's SHA-256. The host binds it to the
/// broker it was sent to: replayed to another broker, it fails.
///
/// With `on_behalf` (a principal, `User:CN=alice,O=acme`: a client this broker authenticated
/// by its TLS certificate, whose request it forwards), `v2 <ts> <nonce> <mac> <principal,
/// base64url>`, the MAC covering the principal too: the receiver serves the request as that
/// principal instead of the broker's.
pub fn sign_broker_request(
    key: &[u8; 32],
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    now: u64,
    on_behalf: Option<&str>,
) -> String {
    use rand::RngCore;
    let mut n = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut n);
    let nonce = b64url().encode(n);
    let mac = broker_mac(key, method, host, path, now, &nonce, body, on_behalf);
    match on_behalf {
        None => format!("v1 {now} {nonce} {}", b64url().encode(mac)),
        Some(p) => format!(
            "v2 {now} {nonce} {} {}",
            b64url().encode(mac),
            b64url().encode(p)
        ),
    }
}

/// A [`BROKER_AUTH_HEADER`] that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Recorded in a [`ReplayCache`], so the same request is accepted once.
    pub mac: [u8; 32],
    /// The principal the broker vouches for (v2), else the request is the broker's own.
    pub on_behalf: Option<String>,
}

/// Checks a [`BROKER_AUTH_HEADER`] value.
pub fn verify_broker_request(
    key: &[u8; 32],
    value: &str,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> Result<SignedRequest, HttpAuthError> {
    let parts: Vec<&str> = value.split(' ').collect();
    let (ts, nonce, mac, on_behalf) = match parts.as_slice() {
        ["v1", ts, nonce, mac] => (*ts, *nonce, *mac, None),
        ["v2", ts, nonce, mac, p] => {
            let p = b64url()
                .decode(p)
                .ok()
                .and_then(|p| String::from_utf8(p).ok())
                .ok_or(HttpAuthError::BadSignature("malformed principal"))?;
            (*ts, *nonce, *mac, Some(p))
        }
        _ => return Err(HttpAuthError::BadSignature("malformed")),
    };
    let ts: u64 = ts
        .parse()
        .map_err(|_| HttpAuthError::BadSignature("malformed timestamp"))?;
    if ts.abs_diff(now) > BROKER_AUTH_SKEW_SECS {
        return Err(HttpAuthError::BadSignature(
            "timestamp too far from this broker's clock",
        ));
    }
    let got = b64url()
        .decode(mac)
        .map_err(|_| HttpAuthError::BadSignature("malformed MAC"))?;
    let expected = broker_mac(
        key,
        method,
        host,
        path,
        ts,
        nonce,
        body,
        on_behalf.as_deref(),
    );
    if !subtle_eq(&got, &expected) {
        return Err(HttpAuthError::BadSignature("wrong MAC"));
    }
    Ok(SignedRequest {
        mac: expected,
        on_behalf,
    })
}

/// The MACs of signed requests seen within the accepted clock window: a request captured and
/// sent again is refused.
pub struct ReplayCache {
    window: Duration,
    max_entries: usize,
    seen: parking_lot::Mutex<HashMap<[u8; 32], Instant>>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        // Twice the skew: a request is refused by timestamp before it could leave the cache.
        ReplayCache::new(Duration::from_secs(2 * BROKER_AUTH_SKEW_SECS + 1), 100_000)
    }
}

impl ReplayCache {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        ReplayCache {
            window,
            max_entries,
            seen: Default::default(),
        }
    }

    /// Records `mac`; false when it was seen before (a replay) or the cache is full of live
    /// entries (refusing is safer than forgetting one).
    pub fn first_time(&self, mac: [u8; 32], now: Instant) -> bool {
        let mut seen = self.seen.lock();
        if seen.len() >= self.max_entries {
            let window = self.window;
            seen.retain(|_, at| now.saturating_duration_since(*at) < window);
            if seen.len() >= self.max_entries {
                return false;
            }
        }
        match seen.entry(mac) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(now);
                true
            }
        }
    }
}

/// A `Basic` header value for `user:password` (the CLI, tests).
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::state::SecurityChange;

    fn state_with(user: &str, password: &str) -> SecurityState {
        let mut s = SecurityState::default();
        for mech in [Mechanism::Sha256, Mechanism::Sha512] {
            s.apply(&SecurityChange::UpsertScram {
                user: user.into(),
                mechanism: mech,
                credential: ScramCredential::new(mech, password.as_bytes(), b"salt", 4096),
            });
        }
        s
    }

    #[test]
    fn authorization_headers_parse() {
        assert_eq!(
            parse_authorization(&basic_header("alice", "pa:ss")).unwrap(),
            Credentials::Basic {
                user: "alice".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(
            parse_authorization("bearer abc.def.ghi").unwrap(),
            Credentials::Bearer("abc.def.ghi".into())
        );
        assert!(matches!(
            parse_authorization("Digest x"),
            Err(HttpAuthError::Scheme(_))
        ));
        assert!(parse_authorization("Basic !!!").is_err());
        assert!(parse_authorization("Basic").is_err());
        assert!(parse_authorization(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("nocolon")
        ))
        .is_err());
        assert!(parse_authorization("Bearer  ").is_err());
    }

    #[test]
    fn passwords_verify_and_cache_until_the_credential_changes() {
        let s = state_with("alice", "secret");
        assert!(verify_password(&s, "alice", "secret"));
        assert!(!verify_password(&s, "alice", "wrong"));
        assert!(!verify_password(&s, "bob", "secret"));
        // Only a SCRAM-SHA-256 credential: still checked.
        let mut only256 = s.clone();
        only256.apply(&SecurityChange::DeleteScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha512,
        });
        assert!(verify_password(&only256, "alice", "secret"));

        let cache = BasicCache::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        assert!(!cache.hit(&s, "alice", "secret", t0));
        cache.insert(&s, "alice", "secret", t0);
        assert!(cache.hit(&s, "alice", "secret", t0 + Duration::from_secs(30)));
        assert!(!cache.hit(&s, "alice", "other", t0));
        // Expired after a minute.
        assert!(!cache.hit(&s, "alice", "secret", t0 + Duration::from_secs(61)));
        // A new password drops the entry.
        cache.insert(&s, "alice", "secret", t0);
        let changed = state_with("alice", "new");
        assert!(!cache.hit(&changed, "alice", "secret", t0));
        // A deleted user too.
        cache.insert(&s, "alice", "secret", t0);
        assert!(!cache.hit(&SecurityState::default(), "alice", "secret", t0));
    }

    #[test]
    fn tokens_verify_expire_and_refuse_tampering() {
        let key = derive_key(b"a cluster secret of enough bytes!", "catalog-token");
        let t = issue_token(&key, "alice", Some("catalog"), 1000, 3600);
        let claims = verify_token(&key, &t, 1001).unwrap().unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.scope.as_deref(), Some("catalog"));
        assert!(matches!(
            verify_token(&key, &t, 4600),
            Err(HttpAuthError::BadToken("expired"))
        ));
        // Another broker with the same secret accepts it; another key does not.
        let same = derive_key(b"a cluster secret of enough bytes!", "catalog-token");
        assert!(verify_token(&same, &t, 1001).unwrap().is_some());
        assert!(verify_token(&random_key(), &t, 1001).is_err());
        // A changed claim breaks the signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64url().encode(br#"{"iss":"icestream","sub":"admin","iat":1000,"exp":9999}"#);
        parts[1] = &forged;
        assert!(verify_token(&key, &parts.join("."), 1001).is_err());
        // Another issuer's JWT is not ours to judge.
        let other = format!(
            "{}.{}.sig",
            b64url().encode(r#"{"alg":"RS256","kid":"k1"}"#),
            b64url().encode("{}")
        );
        assert_eq!(verify_token(&key, &other, 1001), Ok(None));
        assert!(verify_token(&key, "garbage", 1001).is_err());
    }

    #[test]
    fn broker_signatures_bind_the_request_and_refuse_replays() {
        let key = derive_key(b"a cluster secret of enough bytes!", "broker-request");
        let now = 1_700_000_000;
        const H: &str = "10.0.0.2:8181";
        let v = sign_broker_request(
            &key,
            "POST",
            H,
            "/icestream/v1/iceberg/rounds",
            b"{}",
            now,
            None,
        );
        const R: &str = "/icestream/v1/iceberg/rounds";
        let ok = |k: &[u8; 32], m: &str, h: &str, p: &str, b: &[u8], t: u64| {
            verify_broker_request(k, &v, m, h, p, b, t).is_ok()
        };
        assert!(ok(&key, "POST", H, R, b"{}", now + 5));
        // Another body, path, method, host (replayed to another broker) or key: refused.
        assert!(!ok(&key, "POST", H, R, b"{ }", now));
        assert!(!ok(&key, "POST", H, "/v1/cluster", b"{}", now));
        assert!(!ok(&key, "PUT", H, R, b"{}", now));
        assert!(!ok(&key, "POST", "10.0.0.3:8181", R, b"{}", now));
        assert!(!ok(
            &derive_key(b"another", "broker-request"),
            "POST",
            H,
            R,
            b"{}",
            now
        ));
        // Too old or from the future.
        assert!(!ok(&key, "POST", H, R, b"{}", now + 61));
        assert!(!ok(&key, "POST", H, R, b"{}", now - 61));
        assert!(verify_broker_request(&key, "v1 x y z", "POST", H, "/", b"", now).is_err());
        let signed = verify_broker_request(&key, &v, "POST", H, R, b"{}", now).unwrap();
        assert_eq!(signed.on_behalf, None);
        let mac = signed.mac;
        // Accepted once.
        let cache = ReplayCache::new(Duration::from_secs(121), 2);
        let t0 = Instant::now();
        assert!(cache.first_time(mac, t0));
        assert!(!cache.first_time(mac, t0 + Duration::from_secs(1)));
        // Full of live entries: refused rather than forgetting one.
        assert!(cache.first_time([1; 32], t0));
        assert!(!cache.first_time([2; 32], t0));
        // Once old entries age out, room again.
        assert!(cache.first_time([2; 32], t0 + Duration::from_secs(200)));
    }

    /// A principal the broker vouches for is bound by the MAC: another one, or the v1 form of
    /// the same request, is refused.
    #[test]
    fn broker_signatures_on_behalf_of_a_principal() {
        let key = derive_key(b"a cluster secret of enough bytes!", "broker-request");
        let now = 1_700_000_000;
        const H: &str = "10.0.0.2:8081";
        const P: &str = "/subjects/s/versions";
        let alice = "User:CN=alice,O=acme";
        let v = sign_broker_request(&key, "POST", H, P, b"{}", now, Some(alice));
        let signed = verify_broker_request(&key, &v, "POST", H, P, b"{}", now).unwrap();
        assert_eq!(signed.on_behalf.as_deref(), Some(alice));
        // Swap in another principal: the MAC no longer matches.
        let mut parts: Vec<String> = v.split(' ').map(str::to_string).collect();
        parts[4] = b64url().encode("User:CN=admin");
        let forged = parts.join(" ");
        assert!(verify_broker_request(&key, &forged, "POST", H, P, b"{}", now).is_err());
        // Drop the principal (v1 with the same MAC): refused too.
        let v1 = format!("v1 {} {} {}", parts[1], parts[2], parts[3]);
        assert!(verify_broker_request(&key, &v1, "POST", H, P, b"{}", now).is_err());
        assert!(verify_broker_request(&key, "v2 1 n m !!", "POST", H, P, b"{}", now).is_err());
    }
}
