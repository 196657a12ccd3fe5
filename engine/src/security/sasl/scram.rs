//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677), against the users'
//! stored credentials. Kafka's flavour: no channel binding (gs2 flag `n` only), an authzid
//! only if it names the user, and the `tokenauth` extension (delegation tokens) refused.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

use super::{SaslError, SaslMechanism, Step};
use crate::security::scram::{subtle_eq, Mechanism, ScramCredential};
use crate::security::state::SecurityState;
use crate::security::Principal;

pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
}

enum State {
    /// Waiting for client-first-message.
    First,
    /// Sent server-first-message; waiting for client-final-message.
    Final {
        user: String,
        /// base64 of the gs2 header, which `c=` must repeat.
        channel_binding: String,
        nonce: String,
        client_first_bare: String,
        server_first: String,
        credential: ScramCredential,
    },
    Over,
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> Self {
        ScramServer {
            mechanism,
            state: State::First,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn invalid(&self, why: &str) -> SaslError {
        tracing::debug!(
            mechanism = self.mechanism.name(),
            reason = why,
            "SCRAM exchange refused"
        );
        SaslError::InvalidCredentials(match self.mechanism {
            Mechanism::Sha256 => SaslMechanism::ScramSha256,
            Mechanism::Sha512 => SaslMechanism::ScramSha512,
        })
    }

    pub fn step(&mut self, token: &[u8], users: &SecurityState) -> Result<Step, SaslError> {
        match std::mem::replace(&mut self.state, State::Over) {
            State::First => self.first(token, users),
            State::Final {
                user,
                channel_binding,
                nonce,
                client_first_bare,
                server_first,
                credential,
            } => {
                let msg = std::str::from_utf8(token)
                    .map_err(|_| self.invalid("client-final-message is not UTF-8"))?;
                let (without_proof, proof) = msg
                    .rsplit_once(",p=")
                    .ok_or_else(|| self.invalid("client-final-message has no proof"))?;
                let mut attrs = without_proof.split(',');
                if attrs.next().and_then(|c| c.strip_prefix("c=")) != Some(&channel_binding) {
                    return Err(self.invalid("channel binding differs from the gs2 header"));
                }
                // RFC 5802 wants the nonce repeated exactly; Kafka (ScramSaslServer) only asks
                // that it end with it, because librdkafka 2.0 (Debian's kcat) sends the client
                // nonce twice. The fresh server nonce is still required, and the proof covers
                // the message as sent.
                let got = attrs.next().and_then(|r| r.strip_prefix("r="));
                if !got.is_some_and(|g| g.ends_with(&nonce)) {
                    tracing::debug!(?got, expected = %nonce, "SCRAM nonce mismatch");
                    return Err(self.invalid("nonce differs from the server's"));
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| self.invalid("proof is not base64"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let m = self.mechanism;
                let signature = m.hmac(&credential.stored_key, &[auth_message.as_bytes()]);
                if proof.len() != signature.len() {
                    return Err(self.invalid("proof has the wrong length"));
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
                if !subtle_eq(&m.hash(&client_key), &credential.stored_key) {
                    return Err(self.invalid("proof does not match"));
                }
                let server_signature = m.hmac(&credential.server_key, &[auth_message.as_bytes()]);
                Ok(Step::Done {
                    principal: Principal::user(user),
                    response: format!("v={}", B64.encode(server_signature)).into_bytes(),
                    credential_lifetime_ms: None,
                })
            }
            State::Over => Err(SaslError::Failed("SCRAM exchange already finished".into())),
        }
    }

    fn first(&mut self, token: &[u8], users: &SecurityState) -> Result<Step, SaslError> {
        let msg = std::str::from_utf8(token)
            .map_err(|_| self.invalid("client-first-message is not UTF-8"))?;
        // gs2-header: "n," [authzid] ","; "y" and "p=" ask for channel binding we do not do.
        let rest = msg
            .strip_prefix("n,")
            .ok_or_else(|| self.invalid("gs2 header is not 'n' (channel binding unsupported)"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| self.invalid("gs2 header is incomplete"))?;
        let gs2_header = &msg[..msg.len() - bare.len()];
        let authzid = match authzid {
            "" => None,
            a => Some(
                a.strip_prefix("a=")
                    .and_then(decode_saslname)
                    .ok_or_else(|| self.invalid("authzid is malformed"))?,
            ),
        };
        let mut attrs = bare.split(',');
        let mut first = attrs.next().unwrap_or_default();
        if first.starts_with("m=") {
            // RFC 5802: a mandatory extension the server does not understand fails.
            return Err(self.invalid("mandatory extension"));
        }
        let user = first
            .strip_prefix("n=")
            .and_then(decode_saslname)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| self.invalid("username is malformed"))?;
        first = attrs.next().unwrap_or_default();
        let client_nonce = first
            .strip_prefix("r=")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
            .ok_or_else(|| self.invalid("client nonce is malformed"))?;
        for ext in attrs {
            let (key, value) = ext
                .split_once('=')
                .ok_or_else(|| self.invalid("extension is malformed"))?;
            if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(SaslError::Failed(
                    "Authentication failed: delegation tokens are not supported".into(),
                ));
            }
        }
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(SaslError::Failed(
                "Authentication failed: Client requested an authorization id that is different from username".into(),
            ));
        }
        // An unknown user goes on with a made-up credential that no proof matches, so the
        // exchange looks the same as for a known user with a wrong password.
        let credential = users
            .credential(&user, self.mechanism)
            .cloned()
            .unwrap_or_else(|| fake_credential(self.mechanism, &user));
        // Alphanumeric, as Kafka's: librdkafka 2.0 mangles a nonce with '+' or '/'.
        let mut server_nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut server_nonce);
        let server_nonce: String = server_nonce.iter().map(|b| format!("{b:02x}")).collect();
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::Final {
            user,
            channel_binding: B64.encode(gs2_header),
            nonce,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            credential,
        };
        Ok(Step::Challenge(server_first.into_bytes()))
    }
}

/// RFC 5802's saslname: `=2C` is ',' and `=3D` is '='; any other '=' is malformed.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A credential for a user that does not exist: its salt is the same on every attempt (a
/// MAC of the name under a secret of this process), so probing cannot tell it from a real
/// one; its keys are random, so no proof matches.
fn fake_credential(mechanism: Mechanism, user: &str) -> ScramCredential {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut s);
        s
    });
    let salt = mechanism.hmac(secret, &[b"salt", user.as_bytes()]);
    let mut stored_key = vec![0u8; salt.len()];
    rand::rngs::OsRng.fill_bytes(&mut stored_key);
    ScramCredential {
        salt: salt[..16].to_vec(),
        iterations: Mechanism::MIN_ITERATIONS,
        server_key: stored_key.clone(),
        stored_key,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::security::state::SecurityChange;

    pub(crate) fn users_with(user: &str, password: &str) -> SecurityState {
        let mut s = SecurityState::default();
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            s.apply(&SecurityChange::UpsertScram {
                user: user.into(),
                mechanism: m,
                credential: ScramCredential::new(m, password.as_bytes(), b"0123456789abcdef", 4096),
            });
        }
        s
    }

    /// A SCRAM client, as RFC 5802 section 3 computes it.
    fn client_final(
        m: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        gs2: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, &[b"Client Key"]);
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(gs2));
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = m.hmac(&stored_key, &[auth.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = m.hmac(&salted, &[b"Server Key"]);
        let expected = m.hmac(&server_key, &[auth.as_bytes()]);
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(expected)).into_bytes(),
        )
    }

    fn exchange(
        m: Mechanism,
        users: &SecurityState,
        user: &str,
        password: &str,
        gs2: &str,
    ) -> Result<Step, SaslError> {
        let mut s = ScramServer::new(m);
        let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let Step::Challenge(first) = s.step(format!("{gs2}{bare}").as_bytes(), users)? else {
            panic!("expected a challenge");
        };
        let first = String::from_utf8(first).unwrap();
        assert!(first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let (fin, expected) = client_final(m, password, &bare, &first, gs2);
        let step = s.step(fin.as_bytes(), users)?;
        if let Step::Done { response, .. } = &step {
            assert_eq!(response, &expected, "server signature");
        }
        Ok(step)
    }

    #[test]
    fn both_mechanisms_authenticate_the_right_password() {
        let users = users_with("alice", "s3cret");
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            let step = exchange(m, &users, "alice", "s3cret", "n,,").unwrap();
            assert!(
                matches!(step, Step::Done { principal, credential_lifetime_ms: None, .. } if principal == Principal::user("alice"))
            );
            // An authzid naming the user is fine; its gs2 header is what `c=` must carry.
            assert!(exchange(m, &users, "alice", "s3cret", "n,a=alice,").is_ok());
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let users = users_with("alice", "s3cret");
        let m = Mechanism::Sha512;
        let e1 = exchange(m, &users, "alice", "wrong", "n,,").unwrap_err();
        let e2 = exchange(m, &users, "mallory", "s3cret", "n,,").unwrap_err();
        assert_eq!(e1, e2);
        assert_eq!(
            e1.client_message(false),
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
        );
        // The unknown user's salt does not change between attempts.
        let salt = |u: &str| {
            let mut s = ScramServer::new(m);
            let Ok(Step::Challenge(c)) = s.step(format!("n,,n={u},r=abc").as_bytes(), &users)
            else {
                panic!()
            };
            String::from_utf8(c)
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert_eq!(salt("mallory"), salt("mallory"));
    }

    #[test]
    fn malformed_and_refused_messages() {
        let users = users_with("alice", "s3cret");
        let m = Mechanism::Sha256;
        for bad in [
            "y,,n=alice,r=abc",
            "p=tls-unique,,n=alice,r=abc",
            "n,,r=abc",
            "n,,n=alice",
            "n,,n=alice,r=",
            "n,,n=al=ice,r=abc",
            "n,,m=x,n=alice,r=abc",
            "n,n=alice,r=abc",
            "\u{ff}",
        ] {
            let mut s = ScramServer::new(m);
            assert!(s.step(bad.as_bytes(), &users).is_err(), "{bad}");
        }
        let mut s = ScramServer::new(m);
        let e = s
            .step(b"n,,n=alice,r=abc,tokenauth=true", &users)
            .unwrap_err();
        assert!(e.client_message(false).contains("delegation tokens"));
        let mut s = ScramServer::new(m);
        let e = s.step(b"n,a=bob,n=alice,r=abc", &users).unwrap_err();
        assert!(e.client_message(false).contains("authorization id"));
        // Escaped names decode: "a,b=c".
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));

        // A final message with the wrong nonce, channel binding or a truncated proof fails.
        for tamper in ["nonce", "cbind", "proof"] {
            let mut s = ScramServer::new(m);
            let bare = "n=alice,r=abc";
            let Ok(Step::Challenge(first)) = s.step(format!("n,,{bare}").as_bytes(), &users) else {
                panic!()
            };
            let first = String::from_utf8(first).unwrap();
            let (fin, _) = client_final(m, "s3cret", bare, &first, "n,,");
            let fin = match tamper {
                "nonce" => fin.replacen(",r=abc", ",r=abd", 1),
                "cbind" => fin.replacen("c=biws", "c=eSws", 1),
                _ => fin[..fin.len() - 8].to_string(),
            };
            assert!(s.step(fin.as_bytes(), &users).is_err(), "{tamper}");
            // And the exchange is over.
            assert!(s.step(b"again", &users).is_err());
        }
    }
}
