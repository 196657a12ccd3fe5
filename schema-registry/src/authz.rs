//! Who may do what in the registry, with Redpanda's model: subjects are ACL resources
//! (`RegistrySubject`) and the registry as a whole is one (`Registry`, for global config and
//! mode). READ on a subject reads its schemas (and compatibility checks against them), WRITE
//! registers, DELETE deletes, DESCRIBE lists its versions, DESCRIBE_CONFIGS/ALTER_CONFIGS read
//! and change its config and mode. Lists of subjects are filtered by DESCRIBE, and a schema by
//! id is readable by whoever may READ a subject holding it (see the handlers in `api`).
//! The caller comes from the broker's HTTP authentication (`engine::http_auth::Caller`).

use std::collections::HashMap;

use axum::extract::{Path, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::http_auth::Caller;
use engine::security::acl::{Operation, ResourceType};

/// The name the registry-wide resource is authorized under (a literal ACL on `*` or on this
/// name covers it).
pub const GLOBAL: &str = "";

/// What a route needs, decided from its method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing here: open routes, or lists the handler filters itself.
    Nothing,
    Subject(Operation),
    Global(Operation),
}

fn need(method: &Method, path: &str) -> Need {
    use Operation::*;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    let config = |subject: bool| {
        let op = if get { DescribeConfigs } else { AlterConfigs };
        if subject {
            Need::Subject(op)
        } else {
            Need::Global(op)
        }
    };
    match segments.as_slice() {
        ["subjects", _] if *method == Method::DELETE => Need::Subject(Delete),
        // A lookup: is this schema registered under the subject.
        ["subjects", _] => Need::Subject(Read),
        ["subjects", _, "versions"] if get => Need::Subject(Describe),
        ["subjects", _, "versions"] => Need::Subject(Write),
        ["subjects", _, "versions", _] if *method == Method::DELETE => Need::Subject(Delete),
        ["subjects", _, "versions", _, ..] => Need::Subject(Read),
        ["config" | "mode"] => config(false),
        ["config" | "mode", _] => config(true),
        ["compatibility", "subjects", _, ..] => Need::Subject(Read),
        _ => Need::Nothing,
    }
}

/// Middleware refusing, with 403 and Confluent's 40301, what the caller may not do.
pub async fn authorize(caller: Caller, req: Request, next: Next) -> Response {
    if !caller.authorizing() {
        return next.run(req).await;
    }
    let (resource_type, op, name) = match need(req.method(), req.uri().path()) {
        Need::Nothing => return next.run(req).await,
        Need::Global(op) => (ResourceType::Registry, op, GLOBAL.to_string()),
        Need::Subject(op) => {
            let (mut parts, body) = req.into_parts();
            let params = <Path<HashMap<String, String>> as axum::extract::FromRequestParts<
                (),
            >>::from_request_parts(&mut parts, &())
            .await
            .map(|Path(p)| p)
            .unwrap_or_default();
            let req = Request::from_parts(parts, body);
            let Some(subject) = params.get("subject").cloned() else {
                return next.run(req).await;
            };
            if caller.allowed(op, ResourceType::RegistrySubject, &subject) {
                return next.run(req).await;
            }
            return forbidden(&caller, op, ResourceType::RegistrySubject, &subject);
        }
    };
    if caller.allowed(op, resource_type, &name) {
        next.run(req).await
    } else {
        forbidden(&caller, op, resource_type, "registry")
    }
}

pub fn forbidden(caller: &Caller, op: Operation, rt: ResourceType, name: &str) -> Response {
    engine::http_auth::Api::Registry
        .error(
            axum::http::StatusCode::FORBIDDEN,
            &caller.denied(op, rt, name),
        )
        .into_response()
}

/// Whether the caller may read a schema used by `uses` (subject, version): READ on any of
/// those subjects.
pub fn may_read_any(caller: &Caller, uses: &[(String, i32)]) -> bool {
    !caller.authorizing()
        || uses
            .iter()
            .any(|(s, _)| caller.allowed(Operation::Read, ResourceType::RegistrySubject, s))
}

/// Whether a subject shows up in the caller's lists.
pub fn listed(caller: &Caller, subject: &str) -> bool {
    !caller.authorizing()
        || caller.allowed(Operation::Describe, ResourceType::RegistrySubject, subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    #[test]
    fn routes_need_redpandas_operations() {
        let cases = [
            (Method::GET, "/subjects", Need::Nothing),
            (Method::GET, "/schemas/ids/1", Need::Nothing),
            (Method::POST, "/subjects/s", Need::Subject(Read)),
            (Method::DELETE, "/subjects/s", Need::Subject(Delete)),
            (Method::GET, "/subjects/s/versions", Need::Subject(Describe)),
            (Method::POST, "/subjects/s/versions", Need::Subject(Write)),
            (
                Method::GET,
                "/subjects/s/versions/latest",
                Need::Subject(Read),
            ),
            (
                Method::GET,
                "/subjects/s/versions/1/schema",
                Need::Subject(Read),
            ),
            (
                Method::DELETE,
                "/subjects/s/versions/1",
                Need::Subject(Delete),
            ),
            (Method::GET, "/config", Need::Global(DescribeConfigs)),
            (Method::PUT, "/config", Need::Global(AlterConfigs)),
            (Method::PUT, "/mode", Need::Global(AlterConfigs)),
            (Method::GET, "/config/s", Need::Subject(DescribeConfigs)),
            (Method::DELETE, "/mode/s", Need::Subject(AlterConfigs)),
            (
                Method::POST,
                "/compatibility/subjects/s/versions/latest",
                Need::Subject(Read),
            ),
            (Method::GET, "/", Need::Nothing),
        ];
        for (m, p, want) in cases {
            assert_eq!(need(&m, p), want, "{m} {p}");
        }
    }
}
