//! `icestream_schema_registry_requests_total{method, resource, code}`: the registry's REST
//! requests. `resource` is the path's first segment from a fixed list, so that arbitrary
//! paths (subjects, ids, 404 probes) cannot grow the label set.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub resource: String,
    pub code: String,
}

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
}

const RESOURCES: &[&str] = &["subjects", "schemas", "config", "mode", "compatibility"];

impl Metrics {
    /// Registers beside the broker's metrics (so `icestream_schema_registry_...`).
    pub fn register(&self, broker: &engine::metrics::Metrics) {
        broker.register_with(|r| {
            r.register(
                "schema_registry_requests",
                "Schema registry REST requests, by method, resource (the path's first segment) and status code",
                self.requests.clone(),
            )
        });
    }
}

/// The path's first segment if it is one of the registry's resources, `root` for `/`, else
/// `other`.
fn resource(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.is_empty() {
        return "root";
    }
    RESOURCES
        .iter()
        .find(|r| **r == first)
        .copied()
        .unwrap_or("other")
}

/// Middleware counting every request once its answer is known.
pub async fn count(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "OTHER",
    }
    .to_string();
    let resource = resource(req.uri().path());
    let res = next.run(req).await;
    m.requests
        .get_or_create(&RequestLabels {
            method,
            resource: resource.to_string(),
            code: res.status().as_u16().to_string(),
        })
        .inc();
    res
}

#[cfg(test)]
mod tests {
    use super::resource;

    #[test]
    fn resources_are_bounded() {
        assert_eq!(resource("/subjects/a/versions"), "subjects");
        assert_eq!(resource("/"), "root");
        assert_eq!(resource("/../../etc"), "other");
    }
}
