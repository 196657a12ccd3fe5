//! `icestream security user|acl|quota`: users' SCRAM credentials, ACLs and client quotas,
//! through Kafka's APIs (AlterUserScramCredentials, CreateAcls, AlterClientQuotas, ...) with
//! rpk's flags; the schema registry's ACLs, which Kafka's APIs cannot express, through the
//! admin API (`/v1/security/acls`).

use std::collections::BTreeSet;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::alter_client_quotas_request::{self, OpData};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterUserScramCredentialsRequest, CreateAclsRequest,
    DeleteAclsRequest, DescribeAclsRequest, DescribeClientQuotasRequest,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use engine::admin_security::{operation, operation_name, resource_type_name};
use engine::security::acl::{Operation, PatternType, Permission, ResourceType};
use engine::security::scram::Mechanism;

use super::client::{text, Client};
use super::errors::{code_detail, hint};
use super::http::{self, ADMIN_API};
use super::output::{emit, emit_json_pretty};
use super::table::Table;
use super::{ClientArgs, Format};

mod acl;
mod quota;

use acl::{acl_create, acl_delete, acl_list};
use quota::{quota_alter, quota_describe};

/// Iterations of the credentials the CLI makes (as the broker's bootstrap user).
const ITERATIONS: i32 = 8192;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum SecurityCommand {
    /// Users' SCRAM credentials
    #[command(subcommand)]
    User(UserCommand),
    /// ACLs (Kafka's model; rpk's flags)
    #[command(subcommand)]
    Acl(AclCommand),
    /// Client quotas (producer_byte_rate, consumer_byte_rate, request_percentage)
    #[command(subcommand)]
    Quota(QuotaCommand),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MechanismArg {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl MechanismArg {
    fn mechanisms(m: Option<Self>) -> Vec<Mechanism> {
        match m {
            None => vec![Mechanism::Sha256, Mechanism::Sha512],
            Some(MechanismArg::ScramSha256) => vec![Mechanism::Sha256],
            Some(MechanismArg::ScramSha512) => vec![Mechanism::Sha512],
        }
    }
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum UserCommand {
    /// Create a user, or set a user's password
    Create {
        name: String,
        /// The user's password (--password is the connection's own)
        #[arg(long, env = "ICESTREAM_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
        /// One mechanism (default: both)
        #[arg(long, value_enum)]
        mechanism: Option<MechanismArg>,
    },
    /// Delete a user's credentials (default: every mechanism's)
    Delete {
        name: String,
        #[arg(long, value_enum)]
        mechanism: Option<MechanismArg>,
    },
    /// List users and their mechanisms
    List,
}

/// rpk's ACL flags: principals and hosts, operations, resources.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AclArgs {
    /// Principals allowed (User:NAME; a bare name is a user)
    #[arg(long, value_delimiter = ',')]
    pub allow_principal: Vec<String>,
    /// Principals denied
    #[arg(long, value_delimiter = ',')]
    pub deny_principal: Vec<String>,
    /// Hosts the allowed principals may come from (default: *)
    #[arg(long, value_delimiter = ',')]
    pub allow_host: Vec<String>,
    /// Hosts the denied principals are denied from (default: *)
    #[arg(long, value_delimiter = ',')]
    pub deny_host: Vec<String>,
    /// Operations: all, read, write, create, delete, alter, describe, cluster_action,
    /// describe_configs, alter_configs, idempotent_write
    #[arg(long, value_delimiter = ',')]
    pub operation: Vec<String>,
    /// Topics
    #[arg(long, value_delimiter = ',')]
    pub topic: Vec<String>,
    /// Consumer groups
    #[arg(long, value_delimiter = ',')]
    pub group: Vec<String>,
    /// The cluster
    #[arg(long)]
    pub cluster: bool,
    /// Transactional ids
    #[arg(long, value_delimiter = ',')]
    pub transactional_id: Vec<String>,
    /// Schema registry subjects (through the admin API)
    #[arg(long, value_delimiter = ',')]
    pub registry_subject: Vec<String>,
    /// The schema registry as a whole (through the admin API)
    #[arg(long)]
    pub registry_global: bool,
    /// literal or prefixed (create); also match and any (list, delete)
    #[arg(long, default_value = "literal")]
    pub resource_pattern_type: String,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum AclCommand {
    /// Create ACLs: each principal, host, operation and resource given
    Create(AclArgs),
    /// List the ACLs the flags match (none: every ACL)
    List(AclArgs),
    /// Delete the ACLs the flags match
    Delete(AclArgs),
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum QuotaCommand {
    /// Set or remove quota values of one entity
    Alter {
        /// user=NAME or client-id=NAME (repeatable: both make a user's client id)
        #[arg(long, value_name = "TYPE=NAME")]
        name: Vec<String>,
        /// The default user or client id
        #[arg(long, value_name = "TYPE")]
        default: Vec<String>,
        /// KEY=VALUE to set (repeatable)
        #[arg(long, value_name = "KEY=VALUE")]
        add: Vec<String>,
        /// KEY to remove (repeatable)
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Show quotas (no flags: every entity's)
    Describe {
        /// user=NAME or client-id=NAME
        #[arg(long, value_name = "TYPE=NAME")]
        name: Vec<String>,
        /// The default user or client id
        #[arg(long, value_name = "TYPE")]
        default: Vec<String>,
        /// Any named user or client id
        #[arg(long, value_name = "TYPE")]
        any: Vec<String>,
        /// Only entities with exactly these components
        #[arg(long)]
        strict: bool,
    },
}

pub async fn run(args: &ClientArgs, cmd: SecurityCommand) -> Result<()> {
    match cmd {
        SecurityCommand::User(UserCommand::Create {
            name,
            new_password,
            mechanism,
        }) => user_create(args, &name, &new_password, mechanism).await,
        SecurityCommand::User(UserCommand::Delete { name, mechanism }) => {
            user_delete(args, &name, mechanism).await
        }
        SecurityCommand::User(UserCommand::List) => user_list(args).await,
        SecurityCommand::Acl(AclCommand::Create(a)) => acl_create(args, &a).await,
        SecurityCommand::Acl(AclCommand::List(a)) => acl_list(args, &a).await,
        SecurityCommand::Acl(AclCommand::Delete(a)) => acl_delete(args, &a).await,
        SecurityCommand::Quota(QuotaCommand::Alter {
            name,
            default,
            add,
            delete,
        }) => quota_alter(args, &name, &default, &add, &delete).await,
        SecurityCommand::Quota(QuotaCommand::Describe {
            name,
            default,
            any,
            strict,
        }) => quota_describe(args, &name, &default, &any, strict).await,
    }
}

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn refused(what: &str, code: i16, msg: Option<&StrBytes>) -> anyhow::Error {
    anyhow!(
        "{what} refused ({}): {}",
        code_detail(code, msg.map(|m| m.as_str())),
        hint(code)
    )
}

async fn user_create(
    args: &ClientArgs,
    name: &str,
    password: &str,
    mechanism: Option<MechanismArg>,
) -> Result<()> {
    if password.is_empty() {
        bail!("the new password is empty: give --new-password or ICESTREAM_NEW_PASSWORD");
    }
    let upsertions = MechanismArg::mechanisms(mechanism)
        .into_iter()
        .map(|m| {
            let salt = salt();
            let salted = m.salted_password(password.as_bytes(), &salt, ITERATIONS as u32);
            ScramCredentialUpsertion::default()
                .with_name(sb(name))
                .with_mechanism(m.code())
                .with_iterations(ITERATIONS)
                .with_salt(salt.into())
                .with_salted_password(salted.into())
        })
        .collect();
    let mut client = Client::connect(args).await?;
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
    let resp = client.any().send(&req).await?;
    for r in &resp.results {
        if r.error_code != 0 {
            return Err(refused(
                &format!("creating user '{name}'"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
    }
    done(
        args,
        json!({ "user": name, "created": true }),
        &format!("Created user '{name}'."),
    )
}

async fn user_delete(args: &ClientArgs, name: &str, mechanism: Option<MechanismArg>) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let mechanisms = match mechanism {
        Some(m) => MechanismArg::mechanisms(Some(m)),
        None => {
            // Every mechanism the user has.
            let req = DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![
                    kafka_protocol::messages::describe_user_scram_credentials_request::UserName::default()
                        .with_name(sb(name)),
                ]));
            let resp = client.any().send(&req).await?;
            if resp.error_code != 0 {
                return Err(refused(
                    "listing users",
                    resp.error_code,
                    resp.error_message.as_ref(),
                ));
            }
            let r = resp
                .results
                .first()
                .ok_or_else(|| anyhow!("the broker answered no result for user '{name}'"))?;
            if r.error_code != 0 {
                return Err(refused(
                    &format!("deleting user '{name}'"),
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            r.credential_infos
                .iter()
                .filter_map(|c| Mechanism::from_code(c.mechanism))
                .collect()
        }
    };
    let deletions = mechanisms
        .iter()
        .map(|m| {
            ScramCredentialDeletion::default()
                .with_name(sb(name))
                .with_mechanism(m.code())
        })
        .collect();
    let req = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
    let resp = client.any().send(&req).await?;
    for r in &resp.results {
        if r.error_code != 0 {
            return Err(refused(
                &format!("deleting user '{name}'"),
                r.error_code,
                r.error_message.as_ref(),
            ));
        }
    }
    done(
        args,
        json!({ "user": name, "deleted": true }),
        &format!("Deleted user '{name}'."),
    )
}

async fn user_list(args: &ClientArgs) -> Result<()> {
    let mut client = Client::connect(args).await?;
    let resp = client
        .any()
        .send(&DescribeUserScramCredentialsRequest::default().with_users(None))
        .await?;
    if resp.error_code != 0 {
        return Err(refused(
            "listing users",
            resp.error_code,
            resp.error_message.as_ref(),
        ));
    }
    let users: Vec<(String, Vec<String>)> = resp
        .results
        .iter()
        .map(|r| {
            let m = r
                .credential_infos
                .iter()
                .map(|c| {
                    let name = Mechanism::from_code(c.mechanism).map_or_else(
                        || format!("mechanism {}", c.mechanism),
                        |m| m.name().to_string(),
                    );
                    format!("{name} ({} iterations)", c.iterations)
                })
                .collect();
            (text(&r.user), m)
        })
        .collect();
    if args.format == Format::Json {
        let list: Vec<_> = users
            .iter()
            .map(|(u, m)| json!({ "name": u, "mechanisms": m }))
            .collect();
        emit_json_pretty(&json!({ "users": list }))?;
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "MECHANISMS"]);
    for (u, m) in users {
        t.row(vec![u, m.join(", ")]);
    }
    emit(t.render().trim_end())?;
    Ok(())
}

fn salt() -> Vec<u8> {
    use rand::RngCore;
    let mut s = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

fn done(args: &ClientArgs, j: serde_json::Value, line: &str) -> Result<()> {
    if args.format == Format::Json {
        emit_json_pretty(&j)?;
    } else {
        emit(line)?;
    }
    Ok(())
}
