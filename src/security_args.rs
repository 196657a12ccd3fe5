//! `icestream serve` flags for authentication and authorization. Each helper of issue 20
//! keeps its own section below.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;

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
            // The OAUTHBEARER settings' JWT check plugs in here once they exist.
            bearer: None,
            token_ttl: std::time::Duration::from_secs(self.http_token_ttl_secs),
        };
        Ok(engine::http_auth::HttpAuth::new(broker.clone(), config)?)
    }
}

// ---- TEMPORARY (httpauth), until helper "store" lands its flags and its storage ----
// `--authorization`, `--superusers` and users/ACLs seeded from `<data>/meta/security.json`
// (a serialized `SecurityState`) so the HTTP tests can run; store's versions replace these.

#[derive(Args, Debug, Clone, Default)]
pub struct TempAuthzArgs {
    /// Enforce ACLs: what no ACL allows is denied
    #[arg(long, env = "ICESTREAM_AUTHORIZATION", default_value_t = false)]
    pub authorization: bool,
    /// Principals allowed everything, e.g. User:admin,User:ops (Kafka's super.users)
    #[arg(long, env = "ICESTREAM_SUPERUSERS", value_delimiter = ',')]
    pub superusers: Vec<String>,
}

impl TempAuthzArgs {
    pub fn authz_config(&self) -> anyhow::Result<engine::security::AuthzConfig> {
        let super_users = self
            .superusers
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                engine::security::Principal::parse(s)
                    .with_context(|| format!("--superusers: '{s}'"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(engine::security::AuthzConfig {
            enabled: self.authorization,
            super_users,
        })
    }
}

/// Applies the users and ACLs of `<data>/meta/security.json`, when the file exists.
pub async fn temp_seed_security(broker: &engine::Broker) -> anyhow::Result<()> {
    use engine::security::state::{SecurityChange, SecurityState};
    let path = broker.config.data_dir.join("meta").join("security.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let state: SecurityState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a security state", path.display()))?;
    for (user, creds) in state.users {
        for (mechanism, credential) in creds {
            let change = SecurityChange::UpsertScram {
                user: user.clone(),
                mechanism,
                credential,
            };
            broker.change_security(change).await?;
        }
    }
    let acls = state.acls.bindings.into_iter().collect();
    broker
        .change_security(SecurityChange::CreateAcls(acls))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
