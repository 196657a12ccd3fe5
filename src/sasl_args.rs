//! `icestream serve` flags for SASL on the Kafka listeners (mechanisms, OAUTHBEARER's token
//! checks, KIP-368 re-authentication). The section "SASL" of the security flags; kept in its
//! own file so that it merges beside the other security sections.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use engine::security::sasl::oauthbearer::OAuthConfig;
use engine::security::sasl::{SaslConfig, SaslMechanism};

#[derive(Args, Debug, Clone)]
pub struct SaslArgs {
    /// SASL mechanisms SASL_PLAINTEXT and SASL_SSL listeners offer: SCRAM-SHA-256,
    /// SCRAM-SHA-512, PLAIN, OAUTHBEARER (Kafka's sasl.enabled.mechanisms)
    #[arg(
        long,
        env = "ICESTREAM_SASL_MECHANISMS",
        value_delimiter = ',',
        default_value = "SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    pub sasl_mechanisms: Vec<String>,
    /// OAUTHBEARER: the JSON Web Key Set (a file) whose keys sign the accepted JWTs (RS*, PS*, ES*)
    #[arg(long, env = "ICESTREAM_OAUTH_JWKS_FILE")]
    pub oauth_jwks_file: Option<PathBuf>,
    /// OAUTHBEARER: the `iss` a token must carry (unset: not checked)
    #[arg(long, env = "ICESTREAM_OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,
    /// OAUTHBEARER: the `aud` a token must include (unset: not checked)
    #[arg(long, env = "ICESTREAM_OAUTH_AUDIENCE")]
    pub oauth_audience: Option<String>,
    /// OAUTHBEARER: the claim naming the principal (User:<claim>)
    #[arg(long, env = "ICESTREAM_OAUTH_PRINCIPAL_CLAIM", default_value = "sub")]
    pub oauth_principal_claim: String,
    /// A SASL session lasts at most this long, then the client must re-authenticate on its
    /// connection (KIP-368; Kafka's connections.max.reauth.ms). 0: no limit besides an
    /// OAUTHBEARER token's expiry
    #[arg(long, env = "ICESTREAM_SASL_MAX_REAUTH_MS", default_value_t = 0)]
    pub sasl_max_reauth_ms: u64,
}

impl SaslArgs {
    pub fn sasl_config(&self) -> anyhow::Result<Arc<SaslConfig>> {
        let mut mechanisms = Vec::new();
        for name in self
            .sasl_mechanisms
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let m = SaslMechanism::from_name(&name.to_ascii_uppercase()).with_context(|| {
                format!(
                    "--sasl-mechanisms: unknown mechanism '{name}'; known: {}",
                    SaslMechanism::ALL.map(|m| m.name()).join(", ")
                )
            })?;
            if !mechanisms.contains(&m) {
                mechanisms.push(m);
            }
        }
        if mechanisms.is_empty() {
            bail!("--sasl-mechanisms must name at least one mechanism");
        }
        let oauth = match (
            &self.oauth_jwks_file,
            mechanisms.contains(&SaslMechanism::OAuthBearer),
        ) {
            (Some(path), _) => Some(Arc::new(OAuthConfig::from_jwks_file(
                path,
                self.oauth_issuer.clone(),
                self.oauth_audience.clone(),
                self.oauth_principal_claim.clone(),
            )?)),
            (None, true) => bail!("--sasl-mechanisms OAUTHBEARER needs --oauth-jwks-file"),
            (None, false) => None,
        };
        Ok(Arc::new(SaslConfig {
            mechanisms,
            oauth,
            max_reauth_ms: self.sasl_max_reauth_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SaslArgs,
    }

    #[test]
    fn mechanisms_parse_and_oauth_needs_keys() {
        let c = T::parse_from(["t"]).a.sasl_config().unwrap();
        assert_eq!(c.names(), ["SCRAM-SHA-256", "SCRAM-SHA-512"]);
        let c = T::parse_from(["t", "--sasl-mechanisms", "PLAIN,scram-sha-512"])
            .a
            .sasl_config()
            .unwrap();
        assert_eq!(c.names(), ["PLAIN", "SCRAM-SHA-512"]);
        assert!(T::parse_from(["t", "--sasl-mechanisms", "GSSAPI"])
            .a
            .sasl_config()
            .is_err());
        assert!(T::parse_from(["t", "--sasl-mechanisms", "OAUTHBEARER"])
            .a
            .sasl_config()
            .is_err());
    }
}
