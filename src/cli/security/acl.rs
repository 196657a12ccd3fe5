//! `icestream security acl create|list|delete`: Kafka ACLs through CreateAcls, DescribeAcls and
//! DeleteAcls; the schema registry's ACLs through the admin API.

use super::*;

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

pub(super) async fn acl_create(args: &ClientArgs, a: &AclArgs) -> Result<()> {
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
        let mut client = Client::connect(args).await?;
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
        let url = http::parse_url(&args.admin_url)?.with_auth(args);
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
                crate::cli::errors::one_line(&body)
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

pub(super) async fn acl_list(args: &ClientArgs, a: &AclArgs) -> Result<()> {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut client: Option<Client> = None;
    for f in filters(a)? {
        if wants_registry(&f) {
            rows.extend(registry_acls(args, "GET", &f, "listing").await?);
            continue;
        }
        let c = match &mut client {
            Some(c) => c,
            None => client.insert(Client::connect(args).await?),
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

/// Lists (GET) or deletes (DELETE) the registry ACLs filter `f` matches, through the admin
/// API (Kafka's ACL APIs cannot express them); the ACLs listed or deleted.
async fn registry_acls(
    args: &ClientArgs,
    method: &str,
    f: &serde_json::Value,
    verb: &str,
) -> Result<Vec<serde_json::Value>> {
    let url = http::parse_url(&args.admin_url)?.with_auth(args);
    let (status, body) = http::request(
        &url,
        ADMIN_API,
        method,
        &format!("/v1/security/acls?{}", admin_query(f)),
        None,
        "is 'icestream serve' running? set --admin-url",
    )
    .await?;
    if status >= 300 {
        bail!(
            "{verb} registry ACLs refused (HTTP {status}): {}",
            crate::cli::errors::one_line(&body)
        );
    }
    serde_json::from_str(&body)
        .map_err(|e| anyhow!("the admin API answered ACLs that do not decode ({e})"))
}

pub(super) async fn acl_delete(args: &ClientArgs, a: &AclArgs) -> Result<()> {
    if resources(a).is_empty() && who(a).is_empty() {
        bail!("give a resource or a principal to delete ACLs of (every ACL would match)");
    }
    let mut rows = Vec::new();
    let mut kafka = Vec::new();
    for f in filters(a)? {
        if wants_registry(&f) {
            rows.extend(registry_acls(args, "DELETE", &f, "deleting").await?);
        } else {
            kafka.push(kafka_filter(&f));
        }
    }
    if !kafka.is_empty() {
        let mut client = Client::connect(args).await?;
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
