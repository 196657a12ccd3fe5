//! `icestream serve` flags for authentication and authorization. Each helper of issue 20
//! keeps its own section below.

use anyhow::Context;
use clap::Args;
use engine::security::{AuthzConfig, Principal};

// ---- Authorization (ACLs enforced, superusers) ----
// Stand-in from helper "authz" for its e2e tests: helper "store" owns these flags (same names
// and shape); on merge, store's section replaces this one.

#[derive(Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Enforce ACLs: what no ACL allows is denied (Kafka's authorizer with
    /// allow.everyone.if.no.acl.found=false). Off: every request is allowed
    #[arg(long, env = "ICESTREAM_AUTHORIZATION", default_value_t = false)]
    pub authorization: bool,
    /// Principals allowed everything, e.g. User:admin,User:ops (Kafka's super.users)
    #[arg(long, env = "ICESTREAM_SUPERUSERS", value_delimiter = ',')]
    pub superusers: Vec<String>,
}

impl SecurityArgs {
    pub fn authz_config(&self) -> anyhow::Result<AuthzConfig> {
        let super_users = self
            .superusers
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| Principal::parse(s).with_context(|| format!("--superusers: '{s}'")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AuthzConfig {
            enabled: self.authorization,
            super_users,
        })
    }
}
