//! Who may do what in the catalog: an Iceberg table follows the ACLs of the topic it is named
//! after (table `<namespace>.<topic>`, or `<topic>~dlq` for a dead-letter table; in any
//! namespace): loading and reading it needs READ on the topic, listing DESCRIBE (lists are
//! filtered), committing to it ALTER (the broker writes its topics' tables; a commit from
//! outside changes what the broker made), dropping it DELETE, creating or registering one
//! CREATE on the topic or the cluster. Namespaces are the cluster's: DESCRIBE on CLUSTER to
//! list or load them, ALTER on CLUSTER to create, drop or change one.
//! The caller comes from the broker's HTTP authentication (`engine::http_auth::Caller`).

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::http_auth::Caller;
use engine::security::acl::{Operation, ResourceType};
use iceberg::TableIdent;

use super::error::CatalogError;

/// Kafka's name of the CLUSTER resource.
pub const CLUSTER: &str = "kafka-cluster";

/// The topic whose ACLs a table follows.
pub fn topic_of(table: &str) -> &str {
    table.strip_suffix("~dlq").unwrap_or(table)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Open (`/v1/config`), or checked by the handler (it reads the names from the body).
    Nothing,
    Cluster(Operation),
    Table(Operation),
}

fn need(method: &Method, path: &str) -> Need {
    use Operation::*;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    match segments.as_slice() {
        ["v1", "namespaces"] | ["v1", "namespaces", _] if read => Need::Cluster(Describe),
        ["v1", "namespaces"] | ["v1", "namespaces", _] => Need::Cluster(Alter),
        ["v1", "namespaces", _, "properties"] => Need::Cluster(Alter),
        ["v1", "namespaces", _, "tables", _] => Need::Table(match *method {
            Method::GET => Read,
            Method::HEAD => Describe,
            Method::DELETE => Delete,
            _ => Alter,
        }),
        ["v1", "namespaces", _, "tables", _, "metrics" | "credentials"] => Need::Table(Read),
        _ => Need::Nothing,
    }
}

/// Middleware refusing, with 403 and the REST spec's ForbiddenException, what the caller may
/// not do on the route's namespace or table.
pub async fn authorize(caller: Caller, req: Request, next: Next) -> Response {
    if !caller.authorizing() {
        return next.run(req).await;
    }
    let (op, rt, name) = match need(req.method(), req.uri().path()) {
        Need::Nothing => return next.run(req).await,
        Need::Cluster(op) => (op, ResourceType::Cluster, CLUSTER.to_string()),
        Need::Table(op) => {
            let (mut parts, body) = req.into_parts();
            let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
                .await
                .map(|Path(p)| p)
                .unwrap_or_default();
            let req = Request::from_parts(parts, body);
            let Some(table) = params.get("table") else {
                return next.run(req).await;
            };
            let topic = topic_of(table).to_string();
            return match check(&caller, op, ResourceType::Topic, &topic) {
                Ok(()) => next.run(req).await,
                Err(e) => e.into_response(),
            };
        }
    };
    match check(&caller, op, rt, &name) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(caller: &Caller, op: Operation, rt: ResourceType, name: &str) -> Result<(), CatalogError> {
    if caller.allowed(op, rt, name) {
        Ok(())
    } else {
        Err(CatalogError::Forbidden(caller.denied(op, rt, name)))
    }
}

/// `op` on the topic the table follows.
pub fn table(caller: &Caller, op: Operation, ident: &TableIdent) -> Result<(), CatalogError> {
    check(caller, op, ResourceType::Topic, topic_of(ident.name()))
}

/// Creating (or registering) a table: CREATE on its topic, or on the cluster (as Kafka's
/// CreateTopics).
pub fn create(caller: &Caller, name: &str) -> Result<(), CatalogError> {
    if caller.allowed(Operation::Create, ResourceType::Cluster, CLUSTER) {
        return Ok(());
    }
    check(
        caller,
        Operation::Create,
        ResourceType::Topic,
        topic_of(name),
    )
}

/// Whether a table shows up in the caller's lists.
pub fn listed(caller: &Caller, ident: &TableIdent) -> bool {
    !caller.authorizing()
        || caller.allowed(
            Operation::Describe,
            ResourceType::Topic,
            topic_of(ident.name()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    #[test]
    fn routes_need_their_topics_operations() {
        let t = "/v1/namespaces/icestream/tables/orders";
        let (creds, metrics) = (format!("{t}/credentials"), format!("{t}/metrics"));
        let cases = [
            (Method::GET, "/v1/config", Need::Nothing),
            (Method::GET, "/v1/namespaces", Need::Cluster(Describe)),
            (Method::POST, "/v1/namespaces", Need::Cluster(Alter)),
            (Method::HEAD, "/v1/namespaces/ns", Need::Cluster(Describe)),
            (Method::DELETE, "/v1/namespaces/ns", Need::Cluster(Alter)),
            (
                Method::POST,
                "/v1/namespaces/ns/properties",
                Need::Cluster(Alter),
            ),
            (Method::GET, "/v1/namespaces/ns/tables", Need::Nothing),
            (Method::POST, "/v1/namespaces/ns/tables", Need::Nothing),
            (Method::GET, t, Need::Table(Read)),
            (Method::HEAD, t, Need::Table(Describe)),
            (Method::POST, t, Need::Table(Alter)),
            (Method::DELETE, t, Need::Table(Delete)),
            (Method::GET, creds.as_str(), Need::Table(Read)),
            (Method::POST, metrics.as_str(), Need::Table(Read)),
            (Method::POST, "/v1/tables/rename", Need::Nothing),
        ];
        for (m, p, want) in cases {
            assert_eq!(need(&m, p), want, "{m} {p}");
        }
        assert_eq!(topic_of("orders~dlq"), "orders");
        assert_eq!(topic_of("orders"), "orders");
    }
}
