//! The client side of SASL on a Kafka connection: SaslHandshake, then SaslAuthenticate
//! carrying SCRAM-SHA-256/512 (RFC 5802, over the engine's SCRAM primitives), PLAIN or
//! OAUTHBEARER (RFC 7628, the token given as the password, as rpk takes it).
//!
//! The password is only ever in the SCRAM proof or the PLAIN/OAUTHBEARER token; no error
//! names it.

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use engine::security::scram::Mechanism as Scram;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::client::Connection;
use super::ClientArgs;

/// `--sasl-mechanism`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
    #[value(name = "PLAIN", alias = "plain")]
    Plain,
    /// The token (a JWT) is the password; the user is not sent.
    #[value(name = "OAUTHBEARER", alias = "oauthbearer")]
    OAuthBearer,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Who to authenticate as on every Kafka connection.
#[derive(Clone)]
pub struct Credentials {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The SASL credentials of `args`: `--sasl-mechanism` turns SASL on and needs `--user`
/// (OAUTHBEARER: the token as `--password`); `--user` alone is HTTP Basic only (as rpk and
/// Kafka's tools, SASL is never guessed).
pub fn credentials(args: &ClientArgs) -> Result<Option<Credentials>> {
    let Some(mechanism) = args.sasl_mechanism else {
        return Ok(None);
    };
    if mechanism == SaslMechanism::OAuthBearer {
        let Some(token) = args.password.clone().filter(|t| !t.is_empty()) else {
            bail!("--sasl-mechanism OAUTHBEARER needs the token as --password (or ICESTREAM_PASSWORD)");
        };
        return Ok(Some(Credentials {
            mechanism,
            user: args.user.clone().unwrap_or_default(),
            password: token,
        }));
    }
    let Some(user) = args.user.clone() else {
        bail!(
            "--sasl-mechanism {} needs --user and --password (or ICESTREAM_USER and ICESTREAM_PASSWORD)",
            mechanism.name()
        );
    };
    Ok(Some(Credentials {
        mechanism,
        user,
        password: args.password.clone().unwrap_or_default(),
    }))
}

/// Authenticates `conn` (after ApiVersions) with SaslHandshake and SaslAuthenticate; answers
/// the session's lifetime in ms (0: unlimited), after which the client must authenticate again.
pub async fn authenticate(conn: &mut Connection, creds: &Credentials) -> Result<i64> {
    let mech = creds.mechanism.name();
    let handshake = conn
        .exchange_negotiated(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech)),
        )
        .await?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        if offered.is_empty() {
            bail!(
                "the broker at {} refused SASL ({}): is it a SASL listener? drop --sasl-mechanism for PLAINTEXT or SSL listeners",
                conn.addr(),
                super::errors::code_detail(handshake.error_code, None)
            );
        }
        bail!(
            "the broker at {} does not offer {mech} (it offers {}): set --sasl-mechanism to one of them",
            conn.addr(),
            offered.join(", ")
        );
    }
    match creds.mechanism {
        SaslMechanism::Plain => {
            let token = format!("\0{}\0{}", creds.user, creds.password);
            Ok(step(conn, creds, token.into_bytes()).await?.1)
        }
        SaslMechanism::OAuthBearer => {
            let token = format!("n,,\x01auth=Bearer {}\x01\x01", creds.password);
            let (answer, lifetime_ms) = step(conn, creds, token.into_bytes()).await?;
            if !answer.is_empty() {
                // An error JSON as a challenge (RFC 7628 3.2.2): acknowledge it with %x01;
                // the broker then fails the exchange, and `step` says so.
                step(conn, creds, vec![1]).await?;
                bail!(
                    "the broker at {} refused the OAUTHBEARER token ({}): check the token in --password",
                    conn.addr(),
                    String::from_utf8_lossy(&answer)
                );
            }
            Ok(lifetime_ms)
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let m = if creds.mechanism == SaslMechanism::ScramSha256 {
                Scram::Sha256
            } else {
                Scram::Sha512
            };
            let mut client = ScramClient::new(m, &creds.user, &creds.password, &nonce());
            let (server_first, _) = step(conn, creds, client.first().into_bytes()).await?;
            let last = client
                .respond(&server_first)
                .map_err(|e| anyhow!("SCRAM with the broker at {} failed: {e}", conn.addr()))?;
            let (server_final, lifetime_ms) = step(conn, creds, last.into_bytes()).await?;
            client.verify(&server_final).map_err(|e| {
                anyhow!(
                    "the broker at {} failed to prove it knows user {}'s credential ({e}): is --brokers the right broker?",
                    conn.addr(),
                    creds.user
                )
            })?;
            Ok(lifetime_ms)
        }
    }
}

/// Sends one SaslAuthenticate token, answers the broker's and the session lifetime it gives.
async fn step(
    conn: &mut Connection,
    creds: &Credentials,
    token: Vec<u8>,
) -> Result<(Vec<u8>, i64)> {
    let resp = conn
        .exchange_negotiated(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        )
        .await?;
    match resp.error_code {
        0 => Ok((resp.auth_bytes.to_vec(), resp.session_lifetime_ms)),
        58 if creds.mechanism == SaslMechanism::OAuthBearer => bail!(
            "the broker refused the OAUTHBEARER token ({}): check the token in --password (expired? issuer, audience?)",
            resp.error_message
                .as_ref()
                .map(|m| super::errors::one_line(m.as_str()))
                .unwrap_or_default()
        ),
        // SASL_AUTHENTICATION_FAILED: a wrong password and an unknown user read alike.
        58 => bail!(
            "authentication failed for user {} with {}: check --user/--password",
            creds.user,
            creds.mechanism.name()
        ),
        code => bail!(
            "the broker at {} refused SASL authentication ({}{}): check --sasl-mechanism and the broker log",
            conn.addr(),
            super::errors::code_detail(code, None),
            resp.error_message
                .as_ref()
                .map(|m| format!(": {}", super::errors::one_line(m.as_str())))
                .unwrap_or_default()
        ),
    }
}

fn nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// A SCRAM client exchange (RFC 5802 section 3), no channel binding.
pub struct ScramClient {
    mech: Scram,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// Set by [`ScramClient::respond`]: the signature the server must send back.
    server_signature: Option<Vec<u8>>,
}

/// Iterations above this are refused: a hostile server could otherwise make the client spin.
const MAX_ITERATIONS: u32 = 1_000_000;

impl ScramClient {
    pub fn new(mech: Scram, user: &str, password: &str, nonce: &str) -> Self {
        // saslname: '=' and ',' escaped (RFC 5802 section 5.1).
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mech,
            password: password.to_string(),
            client_first_bare: format!("n={name},r={nonce}"),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// client-first-message.
    pub fn first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// client-final-message for the server-first-message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the server-first-message is not UTF-8".to_string())?;
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(format!("the broker answered error '{e}'"));
        }
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err("the server-first-message lacks its nonce, salt or iteration count".into());
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend the client's".into());
        }
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(format!("the broker asks for {iterations} iterations"));
        }
        let m = self.mech;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = m.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        self.server_signature = Some(m.hmac(&server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final-message's signature (the server knew the credential).
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| "the server-final-message is not UTF-8".to_string())?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(format!("the broker answered error '{e}'"));
        }
        let got = msg
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.split(',').next().unwrap_or("")).ok())
            .ok_or_else(|| "the server-final-message has no signature".to_string())?;
        match &self.server_signature {
            Some(want) if engine::security::scram::subtle_eq(want, &got) => Ok(()),
            _ => Err("its server signature does not match".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use engine::security::sasl::scram::ScramServer;
    use engine::security::sasl::{SaslError, Step};
    use engine::security::scram::ScramCredential;
    use engine::security::state::{SecurityChange, SecurityState};

    use super::*;

    fn users(user: &str, password: &str) -> SecurityState {
        let mut s = SecurityState::default();
        for m in [Scram::Sha256, Scram::Sha512] {
            s.apply(&SecurityChange::UpsertScram {
                user: user.into(),
                mechanism: m,
                credential: ScramCredential::new(m, password.as_bytes(), b"salt-of-16-bytes", 4096),
            });
        }
        s
    }

    /// A full exchange between this client and the broker's SCRAM server, in process.
    fn exchange(m: Scram, user: &str, password: &str, users: &SecurityState) -> Result<(), String> {
        let mut server = ScramServer::new(m);
        let mut client = ScramClient::new(m, user, password, &nonce());
        let Step::Challenge(first) = server
            .step(client.first().as_bytes(), users)
            .map_err(|e| e.to_string())?
        else {
            return Err("no challenge".into());
        };
        let last = client.respond(&first)?;
        match server.step(last.as_bytes(), users) {
            Ok(Step::Done {
                principal,
                response,
                ..
            }) => {
                assert_eq!(principal.name, user);
                client.verify(&response)
            }
            Ok(Step::Challenge(_)) => Err("a third round".into()),
            Err(e @ SaslError::InvalidCredentials(_)) => Err(e.to_string()),
            Err(e) => Err(format!("other: {e}")),
        }
    }

    #[test]
    fn scram_client_authenticates_against_the_broker_server() {
        let u = users("alice", "s3cret");
        for m in [Scram::Sha256, Scram::Sha512] {
            exchange(m, "alice", "s3cret", &u).expect("right password");
            let e = exchange(m, "alice", "wrong", &u).expect_err("wrong password");
            assert!(e.contains("invalid credentials"), "{e}");
            let e = exchange(m, "bob", "s3cret", &u).expect_err("unknown user");
            assert!(e.contains("invalid credentials"), "{e}");
        }
        // Names with the characters saslname escapes.
        let u = users("a=b,c", "pw");
        exchange(Scram::Sha512, "a=b,c", "pw", &u).expect("escaped name");
    }

    #[test]
    fn scram_client_refuses_a_server_that_cheats() {
        let mut c = ScramClient::new(Scram::Sha256, "alice", "pw", "abc");
        assert!(
            c.respond(b"r=xyz,s=c2FsdA==,i=4096").is_err(),
            "foreign nonce"
        );
        assert!(
            c.respond(b"r=abc,s=c2FsdA==,i=4096").is_err(),
            "no server nonce"
        );
        assert!(
            c.respond(b"r=abcd,s=c2FsdA==,i=999999999").is_err(),
            "too many iterations"
        );
        assert!(c.respond(b"e=other-error").is_err());
        assert!(c.respond(b"r=abcd,i=4096").is_err(), "no salt");
        c.respond(b"r=abcd,s=c2FsdA==,i=4096").expect("well formed");
        assert!(c.verify(b"v=AAAA").is_err(), "forged server signature");
        assert!(c.verify(b"e=invalid-proof").is_err());
    }

    #[test]
    fn sasl_is_on_only_with_a_mechanism() {
        let args = |m: Option<SaslMechanism>, user: Option<&str>, password: Option<&str>| {
            credentials(&ClientArgs {
                sasl_mechanism: m,
                user: user.map(String::from),
                password: password.map(String::from),
                ..ClientArgs::defaults()
            })
        };
        // --user alone is HTTP Basic only.
        assert!(args(None, Some("alice"), Some("pw")).unwrap().is_none());
        let e = args(Some(SaslMechanism::ScramSha512), None, Some("pw")).unwrap_err();
        assert!(e.to_string().contains("needs --user"), "{e}");
        let c = args(Some(SaslMechanism::Plain), Some("alice"), None)
            .unwrap()
            .unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", ""));
        // OAUTHBEARER: the token is the password, no user needed.
        let e = args(Some(SaslMechanism::OAuthBearer), None, None).unwrap_err();
        assert!(e.to_string().contains("token as --password"), "{e}");
        let c = args(Some(SaslMechanism::OAuthBearer), None, Some("a.b.c"))
            .unwrap()
            .unwrap();
        assert_eq!(c.password, "a.b.c");
    }

    #[test]
    fn credentials_never_show_the_password() {
        let c = Credentials {
            mechanism: SaslMechanism::Plain,
            user: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
