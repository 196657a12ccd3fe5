//! `icestream serve` flags for authentication and authorization. Each helper of issue 20
//! keeps its own section below.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use engine::security::{AuthzConfig, BootstrapUser, Principal};

// ---- Authorization and users (ACLs enforced, superusers, the bootstrap user) ----

#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Enforce ACLs: what no ACL allows is denied (Kafka's authorizer with
    /// allow.everyone.if.no.acl.found=false). Off: every request is allowed
    #[arg(long, env = "ICESTREAM_AUTHORIZATION", default_value_t = false)]
    pub authorization: bool,
    /// Principals allowed everything, e.g. User:admin,User:ops (Kafka's super.users; `;`
    /// separates too, and a certificate's DN keeps its commas: User:CN=ops,O=acme;User:admin)
    #[arg(long, env = "ICESTREAM_SUPERUSERS")]
    pub superusers: Vec<String>,
}

/// A list of principals split at `;` (Kafka's separator) and at `,` where a new `Type:`
/// starts: a client certificate's principal, `User:CN=ops,O=acme`, holds commas of its own.
fn split_principals(list: &str) -> Vec<&str> {
    let starts_principal = |piece: &str| {
        piece.trim_start().split_once(':').is_some_and(|(kind, _)| {
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let mut out = Vec::new();
    for part in list.split(';') {
        let mut start = 0;
        let mut from = 0;
        while let Some(i) = part[from..].find(',').map(|i| i + from) {
            if starts_principal(&part[i + 1..]) {
                out.push(part[start..i].trim());
                start = i + 1;
            }
            from = i + 1;
        }
        out.push(part[start..].trim());
    }
    out
}

/// `ICESTREAM_BOOTSTRAP_USER=name:password`: a user created at start when it does not exist.
pub const BOOTSTRAP_USER_ENV: &str = "ICESTREAM_BOOTSTRAP_USER";

impl SecurityArgs {
    pub fn authz_config(&self) -> anyhow::Result<AuthzConfig> {
        let super_users = self
            .superusers
            .iter()
            .flat_map(|s| split_principals(s))
            .filter(|s| !s.is_empty())
            .map(|s| Principal::parse(s).with_context(|| format!("--superusers: '{s}'")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AuthzConfig {
            enabled: self.authorization,
            super_users,
        })
    }

    /// The bootstrap user from the environment, checked (`None` when unset).
    pub fn bootstrap_user() -> anyhow::Result<Option<BootstrapUser>> {
        let Ok(v) = std::env::var(BOOTSTRAP_USER_ENV) else {
            return Ok(None);
        };
        let (name, password) = parse_bootstrap_user(&v)?;
        Ok(Some(BootstrapUser { name, password }))
    }
}

fn parse_bootstrap_user(v: &str) -> anyhow::Result<(String, String)> {
    match v.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            engine::security::validate::user_name(name)
                .map_err(|e| anyhow::anyhow!("{BOOTSTRAP_USER_ENV}: {e}"))?;
            Ok((name.to_string(), password.to_string()))
        }
        _ => bail!("{BOOTSTRAP_USER_ENV} must be name:password"),
    }
}

// ---- HTTP APIs: authentication of the admin API, schema registry and Iceberg catalog ----

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpAuthMode {
    /// Every request is anonymous (User:ANONYMOUS)
    None,
    /// HTTP Basic (the SCRAM users) or a Bearer token, else 401
    Required,
}

#[derive(Args, Debug, Clone, Default)]
pub struct HttpAuthArgs {
    /// Authentication on the admin API, schema registry and Iceberg catalog: required (HTTP
    /// Basic with the SCRAM users, or a Bearer token from the catalog's /v1/oauth/tokens or the
    /// OAUTHBEARER issuer) or none [default: required with --authorization, else none]
    #[arg(long, env = "ICESTREAM_HTTP_AUTH", value_enum)]
    pub http_auth: Option<HttpAuthMode>,
    /// Lifetime of the access tokens the Iceberg catalog's /v1/oauth/tokens issues
    #[arg(long, env = "ICESTREAM_HTTP_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub http_token_ttl_secs: u64,
}

impl HttpAuthArgs {
    pub fn required(&self, authorization: bool) -> bool {
        match self.http_auth {
            Some(m) => m == HttpAuthMode::Required,
            None => authorization,
        }
    }

    /// Warns, before anything starts, of authentication or authorization in a cluster
    /// without a cluster secret: brokers cannot sign their requests to each other (the Iceberg
    /// committer's rounds are then refused with authorization on), and the catalog's tokens
    /// verify only on the broker that issued them.
    pub fn check(&self, config: &engine::BrokerConfig, clustered: bool) -> anyhow::Result<()> {
        let on = self.required(config.authz.enabled) || config.authz.enabled;
        if on && clustered && config.cluster_secret.is_none() {
            tracing::warn!("{}", engine::http_auth::NeedsClusterSecret);
        }
        Ok(())
    }

    /// The authentication every HTTP listener of `broker` shares.
    pub fn start(
        &self,
        broker: &Arc<engine::Broker>,
    ) -> anyhow::Result<Arc<engine::http_auth::HttpAuth>> {
        let required = self.required(broker.security.config().enabled);
        if self.http_token_ttl_secs == 0 {
            anyhow::bail!("--http-token-ttl-secs must be positive");
        }
        let config = engine::http_auth::HttpAuthConfig {
            required,
            // JWTs the OAUTHBEARER settings accept on the Kafka listeners.
            bearer: broker
                .config
                .sasl
                .oauth
                .clone()
                .map(|o| o as Arc<dyn engine::http_auth::BearerVerifier>),
            token_ttl: std::time::Duration::from_secs(self.http_token_ttl_secs),
        };
        Ok(engine::http_auth::HttpAuth::new(broker.clone(), config)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superusers_keep_the_commas_of_a_dn() {
        assert_eq!(
            split_principals("User:CN=ops,O=acme,User:admin;User:CN=x\\,y,OU=a:b"),
            vec!["User:CN=ops,O=acme", "User:admin", "User:CN=x\\,y,OU=a:b"]
        );
        assert_eq!(split_principals("User:a, User:b"), vec!["User:a", "User:b"]);
        assert_eq!(split_principals(""), vec![""]);
    }

    #[test]
    fn superusers_and_bootstrap_user_parse() {
        let a = SecurityArgs {
            authorization: true,
            superusers: vec!["User:admin".into(), " User:ops ".into()],
        };
        let c = a.authz_config().unwrap();
        assert!(c.enabled);
        assert_eq!(
            c.super_users,
            vec![Principal::user("admin"), Principal::user("ops")]
        );
        let bad = SecurityArgs {
            authorization: true,
            superusers: vec!["admin".into()],
        };
        assert!(bad.authz_config().is_err());
        assert_eq!(
            parse_bootstrap_user("admin:s3:cret").unwrap(),
            ("admin".into(), "s3:cret".into())
        );
        assert!(parse_bootstrap_user("admin").is_err());
        assert!(parse_bootstrap_user(":pw").is_err());
        assert!(parse_bootstrap_user("admin:").is_err());
    }

    #[test]
    fn http_auth_defaults_to_required_with_authorization() {
        let mut a = HttpAuthArgs::default();
        assert!(!a.required(false));
        assert!(a.required(true));
        a.http_auth = Some(HttpAuthMode::None);
        assert!(!a.required(true));
        a.http_auth = Some(HttpAuthMode::Required);
        assert!(a.required(false));
    }
}
