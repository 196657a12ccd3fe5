//! The admin API's users and ACLs (`/v1/security/...`), merged into `admin::router`: what
//! Kafka's APIs also do, plus the schema registry's ACLs (subjects and the registry as a
//! whole), which Kafka's APIs cannot express. Changes go through `Broker::change_security`,
//! as the Kafka APIs' do. Authentication of the admin API as a whole is not this file's.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::broker::security::{new_credential, BOOTSTRAP_ITERATIONS};
use crate::broker::Broker;
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};
use crate::security::scram::Mechanism;
use crate::security::state::SecurityChange;
use crate::security::validate;

pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/v1/security/users", get(list_users).post(create_user))
        .route(
            "/v1/security/users/{name}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route(
            "/v1/security/acls",
            get(list_acls).post(create_acls).delete(delete_acls),
        )
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

/// Why a request failed: its status and message.
type Fail = (StatusCode, String);

fn failed((status, msg): Fail) -> Response {
    error(status, msg)
}

fn broker_fail(e: &crate::broker::BrokerError) -> Fail {
    use crate::broker::BrokerError as E;
    let status = match e {
        E::InvalidConfig(_) => StatusCode::BAD_REQUEST,
        E::Controller(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}

fn broker_error(e: &crate::broker::BrokerError) -> Response {
    failed(broker_fail(e))
}

fn user_json(name: &str, mechanisms: impl Iterator<Item = Mechanism>) -> serde_json::Value {
    let m: Vec<&str> = mechanisms.map(Mechanism::name).collect();
    serde_json::json!({ "name": name, "mechanisms": m })
}

async fn list_users(State(b): State<Arc<Broker>>) -> Response {
    let state = b.security.state();
    let users: Vec<serde_json::Value> = state
        .users
        .iter()
        .map(|(n, creds)| user_json(n, creds.keys().copied()))
        .collect();
    Json(users).into_response()
}

async fn get_user(State(b): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    match b.security.state().users.get(&name) {
        Some(creds) => Json(user_json(&name, creds.keys().copied())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("user '{name}' does not exist"),
        ),
    }
}

/// A user to create (Redpanda's body: `username`, `password`, `algorithm`; no algorithm:
/// both SCRAM mechanisms).
#[derive(serde::Deserialize)]
struct NewUser {
    #[serde(alias = "name")]
    username: String,
    password: String,
    #[serde(default, alias = "mechanism")]
    algorithm: Option<String>,
}

#[derive(serde::Deserialize)]
struct NewPassword {
    password: String,
    #[serde(default, alias = "mechanism")]
    algorithm: Option<String>,
}

fn mechanisms(algorithm: Option<&str>) -> Result<Vec<Mechanism>, Fail> {
    match algorithm {
        None => Ok(vec![Mechanism::Sha256, Mechanism::Sha512]),
        Some(a) => match Mechanism::from_name(&a.to_ascii_uppercase()) {
            Some(m) => Ok(vec![m]),
            None => Err((
                StatusCode::BAD_REQUEST,
                format!("unknown mechanism '{a}': SCRAM-SHA-256 or SCRAM-SHA-512"),
            )),
        },
    }
}

async fn set_password(
    b: &Broker,
    name: &str,
    password: &str,
    algorithm: Option<&str>,
) -> Result<(), Fail> {
    if let Err(e) = validate::user_name(name) {
        return Err((StatusCode::BAD_REQUEST, e.0));
    }
    if password.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "the password must not be empty".into(),
        ));
    }
    for mechanism in mechanisms(algorithm)? {
        let change = SecurityChange::UpsertScram {
            user: name.to_string(),
            mechanism,
            credential: new_credential(mechanism, password, BOOTSTRAP_ITERATIONS),
        };
        b.change_security(change)
            .await
            .map_err(|e| broker_fail(&e))?;
    }
    Ok(())
}

async fn create_user(State(b): State<Arc<Broker>>, Json(u): Json<NewUser>) -> Response {
    if b.security.state().users.contains_key(&u.username) {
        return error(
            StatusCode::CONFLICT,
            format!("user '{}' already exists", u.username),
        );
    }
    match set_password(&b, &u.username, &u.password, u.algorithm.as_deref()).await {
        Ok(()) => {
            let state = b.security.state();
            let mechs = state
                .users
                .get(&u.username)
                .map(|c| c.keys().copied().collect::<Vec<_>>());
            (
                StatusCode::CREATED,
                Json(user_json(
                    &u.username,
                    mechs.unwrap_or_default().into_iter(),
                )),
            )
                .into_response()
        }
        Err(f) => failed(f),
    }
}

async fn update_user(
    State(b): State<Arc<Broker>>,
    Path(name): Path<String>,
    Json(p): Json<NewPassword>,
) -> Response {
    match set_password(&b, &name, &p.password, p.algorithm.as_deref()).await {
        Ok(()) => get_user(State(b), Path(name)).await,
        Err(f) => failed(f),
    }
}

async fn delete_user(State(b): State<Arc<Broker>>, Path(name): Path<String>) -> Response {
    let Some(creds) = b.security.state().users.get(&name).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("user '{name}' does not exist"),
        );
    };
    for mechanism in creds.keys().copied() {
        let change = SecurityChange::DeleteScram {
            user: name.clone(),
            mechanism,
        };
        if let Err(e) = b.change_security(change).await {
            return broker_error(&e);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// An ACL as the admin API writes it: lower-case names (`registry_subject`, `prefixed`,
/// `describe_configs`, `allow`); Kafka's spellings are accepted too.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AclJson {
    pub resource_type: String,
    /// The resource's name; `kafka-cluster` for the cluster and the registry as a whole
    /// when left out.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "literal")]
    pub pattern: String,
    pub principal: String,
    #[serde(default = "any_host")]
    pub host: String,
    pub operation: String,
    #[serde(default = "allow")]
    pub permission: String,
}

fn literal() -> String {
    "literal".into()
}
fn any_host() -> String {
    "*".into()
}
fn allow() -> String {
    "allow".into()
}

/// `DescribeConfigs`, `describe_configs` and `describe-configs` alike.
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

pub fn resource_type(s: &str) -> Option<ResourceType> {
    Some(match norm(s).as_str() {
        "topic" => ResourceType::Topic,
        "group" => ResourceType::Group,
        "cluster" => ResourceType::Cluster,
        "transactionalid" => ResourceType::TransactionalId,
        "delegationtoken" => ResourceType::DelegationToken,
        "user" => ResourceType::User,
        "registrysubject" | "subject" => ResourceType::RegistrySubject,
        "registry" | "registryglobal" => ResourceType::Registry,
        _ => return None,
    })
}

pub fn resource_type_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Topic => "topic",
        ResourceType::Group => "group",
        ResourceType::Cluster => "cluster",
        ResourceType::TransactionalId => "transactional_id",
        ResourceType::DelegationToken => "delegation_token",
        ResourceType::User => "user",
        ResourceType::RegistrySubject => "registry_subject",
        ResourceType::Registry => "registry",
    }
}

pub fn operation(s: &str) -> Option<Operation> {
    Operation::ALL
        .into_iter()
        .find(|o| norm(operation_name(*o)) == norm(s))
}

pub fn operation_name(o: Operation) -> &'static str {
    match o {
        Operation::All => "all",
        Operation::Read => "read",
        Operation::Write => "write",
        Operation::Create => "create",
        Operation::Delete => "delete",
        Operation::Alter => "alter",
        Operation::Describe => "describe",
        Operation::ClusterAction => "cluster_action",
        Operation::DescribeConfigs => "describe_configs",
        Operation::AlterConfigs => "alter_configs",
        Operation::IdempotentWrite => "idempotent_write",
        Operation::CreateTokens => "create_tokens",
        Operation::DescribeTokens => "describe_tokens",
        Operation::TwoPhaseCommit => "two_phase_commit",
    }
}

fn pattern(s: &str) -> Option<PatternType> {
    match norm(s).as_str() {
        "literal" => Some(PatternType::Literal),
        "prefixed" => Some(PatternType::Prefixed),
        _ => None,
    }
}

fn permission(s: &str) -> Option<Permission> {
    match norm(s).as_str() {
        "allow" => Some(Permission::Allow),
        "deny" => Some(Permission::Deny),
        _ => None,
    }
}

/// The name a resource type has when none is given: the cluster's and the registry's one.
fn default_name(t: ResourceType) -> Option<&'static str> {
    match t {
        ResourceType::Cluster | ResourceType::Registry => Some(validate::CLUSTER_NAME),
        _ => None,
    }
}

impl AclJson {
    pub fn from_binding(b: &AclBinding) -> Self {
        AclJson {
            resource_type: resource_type_name(b.resource_type).into(),
            name: Some(b.name.clone()),
            pattern: match b.pattern {
                PatternType::Literal => "literal",
                PatternType::Prefixed => "prefixed",
            }
            .into(),
            principal: b.principal.clone(),
            host: b.host.clone(),
            operation: operation_name(b.operation).into(),
            permission: match b.permission {
                Permission::Allow => "allow",
                Permission::Deny => "deny",
            }
            .into(),
        }
    }

    pub fn binding(&self) -> Result<AclBinding, String> {
        let resource_type = resource_type(&self.resource_type)
            .ok_or_else(|| format!("unknown resource_type '{}'", self.resource_type))?;
        let name = match (&self.name, default_name(resource_type)) {
            (Some(n), _) => n.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => return Err("name is required for this resource_type".into()),
        };
        let b = AclBinding {
            resource_type,
            name,
            pattern: pattern(&self.pattern)
                .ok_or_else(|| format!("unknown pattern '{}'", self.pattern))?,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: operation(&self.operation)
                .ok_or_else(|| format!("unknown operation '{}'", self.operation))?,
            permission: permission(&self.permission)
                .ok_or_else(|| format!("unknown permission '{}'", self.permission))?,
        };
        if b.resource_type == ResourceType::Registry && b.name != validate::CLUSTER_NAME {
            return Err(format!(
                "the registry as a whole is named {}",
                validate::CLUSTER_NAME
            ));
        }
        validate::binding(&b).map_err(|e| e.0)?;
        Ok(b)
    }
}

/// A filter from query parameters (GET) or a JSON body (DELETE): every field optional;
/// `pattern` may be `match` (Kafka's MATCH) or `any`.
#[derive(Default, serde::Deserialize)]
pub struct FilterJson {
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub permission: Option<String>,
}

fn any(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| norm(v) != "any")
}

impl FilterJson {
    pub fn filter(&self) -> Result<AclFilter, String> {
        let resource_type = match any(&self.resource_type) {
            None => None,
            Some(t) => {
                Some(resource_type(t).ok_or_else(|| format!("unknown resource_type '{t}'"))?)
            }
        };
        let pattern = match any(&self.pattern) {
            None => None,
            Some(p) if norm(p) == "match" => Some(PatternFilter::Match),
            Some(p) => Some(PatternFilter::Exactly(
                pattern(p).ok_or_else(|| format!("unknown pattern '{p}'"))?,
            )),
        };
        let operation = match any(&self.operation) {
            None => None,
            Some(o) => Some(operation(o).ok_or_else(|| format!("unknown operation '{o}'"))?),
        };
        let permission = match any(&self.permission) {
            None => None,
            Some(p) => Some(permission(p).ok_or_else(|| format!("unknown permission '{p}'"))?),
        };
        Ok(AclFilter {
            resource_type,
            name: self.name.clone(),
            pattern,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation,
            permission,
        })
    }
}

async fn list_acls(State(b): State<Arc<Broker>>, Query(q): Query<FilterJson>) -> Response {
    let f = match q.filter() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    Json(matching(&b, &f)).into_response()
}

/// The ACLs `f` matches now, as the API shows them.
fn matching(b: &Broker, f: &AclFilter) -> Vec<AclJson> {
    b.security
        .state()
        .acls
        .bindings
        .iter()
        .filter(|a| f.matches(a))
        .map(AclJson::from_binding)
        .collect()
}

/// One ACL or a list of them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(AclJson),
    Many(Vec<AclJson>),
}

async fn create_acls(State(b): State<Arc<Broker>>, Json(body): Json<OneOrMany>) -> Response {
    let list = match body {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(l) => l,
    };
    let mut bindings = Vec::with_capacity(list.len());
    for a in &list {
        match a.binding() {
            Ok(x) => bindings.push(x),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    if bindings.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no ACL given");
    }
    let created: Vec<AclJson> = bindings.iter().map(AclJson::from_binding).collect();
    match b
        .change_security(SecurityChange::CreateAcls(bindings))
        .await
    {
        Ok(()) => (StatusCode::CREATED, Json(created)).into_response(),
        Err(e) => broker_error(&e),
    }
}

/// Deletes what the filter (query parameters, or a JSON body) matches; answers the ACLs
/// deleted. An empty filter would delete every ACL: it must say `resource_type=any`.
async fn delete_acls(
    State(b): State<Arc<Broker>>,
    Query(q): Query<FilterJson>,
    body: Option<Json<FilterJson>>,
) -> Response {
    let fj = body.map(|Json(f)| f).unwrap_or(q);
    if fj.resource_type.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "give resource_type (any to match every type)",
        );
    }
    let f = match fj.filter() {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let deleted = matching(&b, &f);
    if !deleted.is_empty() {
        if let Err(e) = b.change_security(SecurityChange::DeleteAcls(vec![f])).await {
            return broker_error(&e);
        }
    }
    Json(deleted).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_read_in_any_spelling() {
        let a: AclJson = serde_json::from_value(serde_json::json!({
            "resource_type": "registry_subject", "name": "orders-value",
            "principal": "User:alice", "operation": "READ"
        }))
        .unwrap();
        let b = a.binding().unwrap();
        assert_eq!(b.resource_type, ResourceType::RegistrySubject);
        assert_eq!(
            (b.pattern, b.operation, b.permission, b.host.as_str()),
            (
                PatternType::Literal,
                Operation::Read,
                Permission::Allow,
                "*"
            )
        );
        let back = AclJson::from_binding(&b);
        assert_eq!(back.binding().unwrap(), b);
        let g: AclJson = serde_json::from_value(serde_json::json!({
            "resource_type": "registry", "principal": "User:ops",
            "operation": "AlterConfigs", "permission": "Deny"
        }))
        .unwrap();
        let g = g.binding().unwrap();
        assert_eq!(g.name, "kafka-cluster");
        assert_eq!(g.operation, Operation::AlterConfigs);
        for o in Operation::ALL {
            assert_eq!(operation(operation_name(o)), Some(o));
        }
        let f = FilterJson {
            resource_type: Some("any".into()),
            pattern: Some("match".into()),
            name: Some("orders-value".into()),
            ..Default::default()
        }
        .filter()
        .unwrap();
        assert!(f.matches(&b) && !f.matches(&g));
    }
}
