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
    let mut client = Client::connect(&args.brokers).await?;
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
    let mut client = Client::connect(&args.brokers).await?;
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
    let mut client = Client::connect(&args.brokers).await?;
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

/// A principal as rpk takes it: a bare name is a user.
fn principal(p: &str) -> String {
    if p.contains(':') {
        p.to_string()
    } else {
        format!("User:{p}")
    }
}

/// The resources the flags name, as (type, name).
fn resources(a: &AclArgs) -> Vec<(ResourceType, String)> {
    let mut out = Vec::new();
    out.extend(a.topic.iter().map(|n| (ResourceType::Topic, n.clone())));
    out.extend(a.group.iter().map(|n| (ResourceType::Group, n.clone())));
    if a.cluster {
        out.push((ResourceType::Cluster, "kafka-cluster".into()));
    }
    out.extend(
        a.transactional_id
            .iter()
            .map(|n| (ResourceType::TransactionalId, n.clone())),
    );
    out.extend(
        a.registry_subject
            .iter()
            .map(|n| (ResourceType::RegistrySubject, n.clone())),
    );
    if a.registry_global {
        out.push((ResourceType::Registry, "kafka-cluster".into()));
    }
    out
}

fn operations(a: &AclArgs) -> Result<Vec<Operation>> {
    a.operation
        .iter()
        .map(|o| operation(o).ok_or_else(|| anyhow!("unknown operation '{o}': use one of all, read, write, create, delete, alter, describe, cluster_action, describe_configs, alter_configs, idempotent_write")))
        .collect()
}

/// (principal, host, permission) triples the flags name.
fn who(a: &AclArgs) -> Vec<(String, String, Permission)> {
    let hosts = |h: &[String]| -> Vec<String> {
        if h.is_empty() {
            vec!["*".into()]
        } else {
            h.to_vec()
        }
    };
    let mut out = Vec::new();
    for p in &a.allow_principal {
        for h in hosts(&a.allow_host) {
            out.push((principal(p), h, Permission::Allow));
        }
    }
    for p in &a.deny_principal {
        for h in hosts(&a.deny_host) {
            out.push((principal(p), h, Permission::Deny));
        }
    }
    out
}

fn is_registry(t: ResourceType) -> bool {
    t.code().is_none()
}

async fn acl_create(args: &ClientArgs, a: &AclArgs) -> Result<()> {
    let pattern = match a.resource_pattern_type.to_ascii_lowercase().as_str() {
        "literal" => PatternType::Literal,
        "prefixed" => PatternType::Prefixed,
        other => bail!("--resource-pattern-type {other}: use literal or prefixed to create ACLs"),
    };
    let res = resources(a);
    let ops = operations(a)?;
    let who = who(a);
    if res.is_empty() || ops.is_empty() || who.is_empty() {
        bail!("give a resource (--topic, --group, --cluster, --transactional-id, --registry-subject, --registry-global), an --operation and an --allow-principal or --deny-principal");
    }
    let mut kafka = Vec::new();
    let mut registry = Vec::new();
    let mut rows = Vec::new();
    for (t, name) in &res {
        for (p, h, perm) in &who {
            for op in &ops {
                let j = acl_json(*t, name, pattern, p, h, *op, *perm);
                rows.push(j.clone());
                if is_registry(*t) {
                    registry.push(j);
                } else {
                    kafka.push(
                        AclCreation::default()
                            .with_resource_type(t.code().unwrap_or_default())
                            .with_resource_name(sb(name.as_str()))
                            .with_resource_pattern_type(pattern.code())
                            .with_principal(sb(p.as_str()))
                            .with_host(sb(h.as_str()))
                            .with_operation(op.code())
                            .with_permission_type(perm.code()),
                    );
                }
            }
        }
    }
    if !kafka.is_empty() {
        let mut client = Client::connect(&args.brokers).await?;
        let resp = client
            .any()
            .send(&CreateAclsRequest::default().with_creations(kafka))
            .await?;
        for r in &resp.results {
            if r.error_code != 0 {
                return Err(refused(
                    "creating ACLs",
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
        }
    }
    if !registry.is_empty() {
        let url = http::parse_url(&args.admin_url)?;
        let body = serde_json::Value::Array(registry).to_string();
        let (status, body) = http::request(
            &url,
            ADMIN_API,
            "POST",
            "/v1/security/acls",
            Some(&body),
            "is 'icestream serve' running? set --admin-url",
        )
        .await?;
        if status >= 300 {
            bail!(
                "creating registry ACLs refused (HTTP {status}): {}",
                super::errors::one_line(&body)
            );
        }
    }
    print_acls(args, &rows, "Created")
}

#[allow(clippy::too_many_arguments)]
fn acl_json(
    t: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    host: &str,
    op: Operation,
    perm: Permission,
) -> serde_json::Value {
    json!({
        "principal": principal,
        "host": host,
        "resource_type": resource_type_name(t),
        "name": name,
        "pattern": match pattern { PatternType::Literal => "literal", PatternType::Prefixed => "prefixed" },
        "operation": operation_name(op),
        "permission": match perm { Permission::Allow => "allow", Permission::Deny => "deny" },
    })
}

/// Filters the flags make for listing or deleting: each of them a JSON filter (the admin
/// API's shape), every field optional.
fn filters(a: &AclArgs) -> Result<Vec<serde_json::Value>> {
    let pattern = a.resource_pattern_type.to_ascii_lowercase();
    if !["literal", "prefixed", "match", "any"].contains(&pattern.as_str()) {
        bail!("--resource-pattern-type {pattern}: use literal, prefixed, match or any");
    }
    let res: Vec<(Option<ResourceType>, Option<String>)> = match resources(a) {
        r if r.is_empty() => vec![(None, None)],
        r => r.into_iter().map(|(t, n)| (Some(t), Some(n))).collect(),
    };
    let ops: Vec<Option<Operation>> = match operations(a)? {
        o if o.is_empty() => vec![None],
        o => o.into_iter().map(Some).collect(),
    };
    let mut who: Vec<(Option<String>, Option<String>, Option<Permission>)> = who(a)
        .into_iter()
        .map(|(p, h, perm)| {
            let explicit_host = match perm {
                Permission::Allow => !a.allow_host.is_empty(),
                Permission::Deny => !a.deny_host.is_empty(),
            };
            (Some(p), explicit_host.then_some(h), Some(perm))
        })
        .collect();
    if who.is_empty() {
        who.push((None, None, None));
    }
    let mut out = Vec::new();
    for (t, name) in &res {
        for op in &ops {
            for (p, h, perm) in &who {
                out.push(json!({
                    "resource_type": t.map_or("any", resource_type_name),
                    "name": name,
                    "pattern": if res.len() == 1 && t.is_none() { "any".to_string() } else { pattern.clone() },
                    "principal": p,
                    "host": h,
                    "operation": op.map_or("any", operation_name),
                    "permission": perm.map(|p| match p { Permission::Allow => "allow", Permission::Deny => "deny" }).unwrap_or("any"),
                }));
            }
        }
    }
    Ok(out)
}

fn code_of<T: Copy>(
    v: &serde_json::Value,
    any: i8,
    parse: impl Fn(&str) -> Option<T>,
    code: impl Fn(T) -> i8,
) -> i8 {
    match v.as_str() {
        None | Some("any") => any,
        Some(s) => parse(s).map_or(0, code),
    }
}

fn pattern_code(s: &str) -> i8 {
    match s {
        "match" => 2,
        "literal" => 3,
        "prefixed" => 4,
        _ => 1,
    }
}

fn opt(v: &serde_json::Value) -> Option<StrBytes> {
    v.as_str().map(sb)
}

fn kafka_filter(f: &serde_json::Value) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_type_filter(code_of(
            &f["resource_type"],
            1,
            engine::admin_security::resource_type,
            |t: ResourceType| t.code().unwrap_or(0),
        ))
        .with_resource_name_filter(opt(&f["name"]))
        .with_pattern_type_filter(pattern_code(f["pattern"].as_str().unwrap_or("any")))
        .with_principal_filter(opt(&f["principal"]))
        .with_host_filter(opt(&f["host"]))
        .with_operation(code_of(&f["operation"], 1, operation, |o: Operation| {
            o.code()
        }))
        .with_permission_type(code_of(
            &f["permission"],
            1,
            |s| match s {
                "allow" => Some(Permission::Allow),
                "deny" => Some(Permission::Deny),
                _ => None,
            },
            |p: Permission| p.code(),
        ))
}

/// Whether a filter may match registry ACLs (and so goes to the admin API too).
fn wants_registry(f: &serde_json::Value) -> bool {
    matches!(
        f["resource_type"].as_str(),
        Some("registry_subject") | Some("registry")
    )
}

fn admin_query(f: &serde_json::Value) -> String {
    let mut q = Vec::new();
    for k in [
        "resource_type",
        "name",
        "pattern",
        "principal",
        "host",
        "operation",
        "permission",
    ] {
        if let Some(v) = f[k].as_str() {
            q.push(format!("{k}={}", http::encode_segment(v)));
        }
    }
    q.join("&")
}

async fn acl_list(args: &ClientArgs, a: &AclArgs) -> Result<()> {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut client: Option<Client> = None;
    for f in filters(a)? {
        if wants_registry(&f) {
            let url = http::parse_url(&args.admin_url)?;
            let (status, body) = http::request(
                &url,
                ADMIN_API,
                "GET",
                &format!("/v1/security/acls?{}", admin_query(&f)),
                None,
                "is 'icestream serve' running? set --admin-url",
            )
            .await?;
            if status >= 300 {
                bail!(
                    "listing registry ACLs refused (HTTP {status}): {}",
                    super::errors::one_line(&body)
                );
            }
            let list: Vec<serde_json::Value> = serde_json::from_str(&body)
                .map_err(|e| anyhow!("the admin API answered ACLs that do not decode ({e})"))?;
            rows.extend(list);
            continue;
        }
        let c = match &mut client {
            Some(c) => c,
            None => client.insert(Client::connect(&args.brokers).await?),
        };
        let k = kafka_filter(&f);
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(k.resource_type_filter)
            .with_resource_name_filter(k.resource_name_filter)
            .with_pattern_type_filter(k.pattern_type_filter)
            .with_principal_filter(k.principal_filter)
            .with_host_filter(k.host_filter)
            .with_operation(k.operation)
            .with_permission_type(k.permission_type);
        let resp = c.any().send(&req).await?;
        if resp.error_code != 0 {
            return Err(refused(
                "listing ACLs",
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        for r in &resp.resources {
            for acl in &r.acls {
                rows.push(json!({
                    "principal": text(&acl.principal),
                    "host": text(&acl.host),
                    "resource_type": ResourceType::from_code(r.resource_type).map_or("unknown", resource_type_name),
                    "name": text(&r.resource_name),
                    "pattern": match r.pattern_type { 4 => "prefixed", _ => "literal" },
                    "operation": Operation::from_code(acl.operation).map_or("unknown", operation_name),
                    "permission": if acl.permission_type == Permission::Deny.code() { "deny" } else { "allow" },
                }));
            }
        }
    }
    let mut seen = BTreeSet::new();
    rows.retain(|r| seen.insert(r.to_string()));
    print_acls(args, &rows, "")
}

async fn acl_delete(args: &ClientArgs, a: &AclArgs) -> Result<()> {
    if resources(a).is_empty() && who(a).is_empty() {
        bail!("give a resource or a principal to delete ACLs of (every ACL would match)");
    }
    let mut rows = Vec::new();
    let mut kafka = Vec::new();
    for f in filters(a)? {
        if wants_registry(&f) {
            let url = http::parse_url(&args.admin_url)?;
            let (status, body) = http::request(
                &url,
                ADMIN_API,
                "DELETE",
                &format!("/v1/security/acls?{}", admin_query(&f)),
                None,
                "is 'icestream serve' running? set --admin-url",
            )
            .await?;
            if status >= 300 {
                bail!(
                    "deleting registry ACLs refused (HTTP {status}): {}",
                    super::errors::one_line(&body)
                );
            }
            let list: Vec<serde_json::Value> = serde_json::from_str(&body)
                .map_err(|e| anyhow!("the admin API answered ACLs that do not decode ({e})"))?;
            rows.extend(list);
        } else {
            kafka.push(kafka_filter(&f));
        }
    }
    if !kafka.is_empty() {
        let mut client = Client::connect(&args.brokers).await?;
        let resp = client
            .any()
            .send(&DeleteAclsRequest::default().with_filters(kafka))
            .await?;
        for r in &resp.filter_results {
            if r.error_code != 0 {
                return Err(refused(
                    "deleting ACLs",
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            for m in &r.matching_acls {
                rows.push(json!({
                    "principal": text(&m.principal),
                    "host": text(&m.host),
                    "resource_type": ResourceType::from_code(m.resource_type).map_or("unknown", resource_type_name),
                    "name": text(&m.resource_name),
                    "pattern": match m.pattern_type { 4 => "prefixed", _ => "literal" },
                    "operation": Operation::from_code(m.operation).map_or("unknown", operation_name),
                    "permission": if m.permission_type == Permission::Deny.code() { "deny" } else { "allow" },
                }));
            }
        }
    }
    print_acls(args, &rows, "Deleted")
}

fn print_acls(args: &ClientArgs, rows: &[serde_json::Value], verb: &str) -> Result<()> {
    if args.format == Format::Json {
        emit_json_pretty(&json!({ "acls": rows }))?;
        return Ok(());
    }
    if !verb.is_empty() {
        emit(&format!("{verb} {} ACL(s).", rows.len()))?;
    }
    let mut t = Table::new(&[
        "PRINCIPAL",
        "HOST",
        "RESOURCE-TYPE",
        "RESOURCE-NAME",
        "PATTERN",
        "OPERATION",
        "PERMISSION",
    ]);
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    for r in rows {
        t.row(vec![
            s(&r["principal"]),
            s(&r["host"]),
            s(&r["resource_type"]),
            s(&r["name"]),
            s(&r["pattern"]),
            s(&r["operation"]),
            s(&r["permission"]),
        ]);
    }
    emit(t.render().trim_end())?;
    Ok(())
}

/// The entity of `--name TYPE=NAME` and `--default TYPE` flags.
fn entity(names: &[String], defaults: &[String]) -> Result<Vec<(String, Option<String>)>> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for n in names {
        let (t, v) = n
            .split_once('=')
            .ok_or_else(|| anyhow!("--name {n}: use user=NAME or client-id=NAME"))?;
        out.push((entity_type(t)?, Some(v.to_string())));
    }
    for d in defaults {
        out.push((entity_type(d)?, None));
    }
    Ok(out)
}

fn entity_type(t: &str) -> Result<String> {
    match t {
        "user" => Ok("user".into()),
        "client-id" | "client_id" | "clientid" => Ok("client-id".into()),
        _ => bail!("entity type '{t}': use user or client-id"),
    }
}

async fn quota_alter(
    args: &ClientArgs,
    names: &[String],
    defaults: &[String],
    add: &[String],
    delete: &[String],
) -> Result<()> {
    let ent = entity(names, defaults)?;
    if ent.is_empty() {
        bail!(
            "give the entity: --name user=NAME, --name client-id=NAME or --default user|client-id"
        );
    }
    if add.is_empty() && delete.is_empty() {
        bail!("give --add KEY=VALUE or --delete KEY");
    }
    let mut ops = Vec::new();
    for a in add {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| anyhow!("--add {a}: use KEY=VALUE, e.g. producer_byte_rate=1048576"))?;
        let v: f64 = v
            .parse()
            .map_err(|_| anyhow!("--add {a}: '{v}' is not a number"))?;
        ops.push(OpData::default().with_key(sb(k)).with_value(v));
    }
    for k in delete {
        ops.push(OpData::default().with_key(sb(k.as_str())).with_remove(true));
    }
    let entry = alter_client_quotas_request::EntryData::default()
        .with_entity(
            ent.iter()
                .map(|(t, n)| {
                    alter_client_quotas_request::EntityData::default()
                        .with_entity_type(sb(t.as_str()))
                        .with_entity_name(n.as_deref().map(sb))
                })
                .collect(),
        )
        .with_ops(ops);
    let mut client = Client::connect(&args.brokers).await?;
    let resp = client
        .any()
        .send(&AlterClientQuotasRequest::default().with_entries(vec![entry]))
        .await?;
    for e in &resp.entries {
        if e.error_code != 0 {
            return Err(refused(
                "altering quotas",
                e.error_code,
                e.error_message.as_ref(),
            ));
        }
    }
    let desc = entity_text(ent.iter().map(|(t, n)| (t.as_str(), n.as_deref())));
    done(
        args,
        json!({ "entity": desc, "altered": true }),
        &format!("Altered quotas of {desc}."),
    )
}

fn entity_text<'a>(parts: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    parts
        .map(|(t, n)| match n {
            Some(n) => format!("{t}={n}"),
            None => format!("{t}=<default>"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn quota_describe(
    args: &ClientArgs,
    names: &[String],
    defaults: &[String],
    any: &[String],
    strict: bool,
) -> Result<()> {
    let mut components: Vec<ComponentData> = entity(names, defaults)?
        .into_iter()
        .map(|(t, n)| {
            let c = ComponentData::default().with_entity_type(sb(t));
            match n {
                Some(n) => c.with_match_type(0).with_match(Some(sb(n))),
                None => c.with_match_type(1).with_match(None),
            }
        })
        .collect();
    for t in any {
        components.push(
            ComponentData::default()
                .with_entity_type(sb(entity_type(t)?))
                .with_match_type(2)
                .with_match(None),
        );
    }
    let mut client = Client::connect(&args.brokers).await?;
    let resp = client
        .any()
        .send(
            &DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict),
        )
        .await?;
    if resp.error_code != 0 {
        return Err(refused(
            "describing quotas",
            resp.error_code,
            resp.error_message.as_ref(),
        ));
    }
    let entries = resp.entries.unwrap_or_default();
    let rows: Vec<(String, Vec<(String, f64)>)> = entries
        .iter()
        .map(|e| {
            let who = entity_text(e.entity.iter().map(|d| {
                (
                    d.entity_type.as_str(),
                    d.entity_name.as_ref().map(|n| n.as_str()),
                )
            }));
            let values = e.values.iter().map(|v| (text(&v.key), v.value)).collect();
            (who, values)
        })
        .collect();
    if args.format == Format::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(who, values)| {
                let v: serde_json::Map<String, serde_json::Value> =
                    values.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                json!({ "entity": who, "values": v })
            })
            .collect();
        emit_json_pretty(&json!({ "quotas": list }))?;
        return Ok(());
    }
    let mut t = Table::new(&["ENTITY", "KEY", "VALUE"]);
    for (who, values) in rows {
        for (k, v) in values {
            t.row(vec![who.clone(), k, format!("{v}")]);
        }
    }
    emit(t.render().trim_end())?;
    Ok(())
}
