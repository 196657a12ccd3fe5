//! Credential vending: short-lived S3 credentials scoped to one table's prefix, handed to
//! clients in `loadTable` so engines can read a topic's table without the broker's keys.
//!
//! The broker calls STS `AssumeRole` on the configured role with its own credentials (the
//! standard AWS chain) and an inline session policy that allows only the table's objects:
//! Get/Put/Delete under `arn:aws:s3:::<bucket>/<table path>/*`, and ListBucket on the bucket
//! only for keys under that path. The session's rights are the intersection of the role's
//! policy and this one, so they never exceed the table even if the role is broad.
//!
//! The STS client is the AWS SDK's own (`aws-sdk-sts`), not a hand-made SigV4 request: it is
//! already in the build (aws-config uses it for web identity and role chains), and it signs,
//! retries, parses the XML answer and its error codes the way STS specifies them.
//!
//! Only tables inside the catalog's S3 warehouse get credentials: a table registered or
//! created at another location (the API lets a client choose one) could otherwise obtain
//! credentials for any prefix the role reaches, such as the broker's own tiered segments.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sts::error::DisplayErrorContext;
use serde::Serialize;
use serde_json::json;

/// Longest a loadTable waits for STS (all retries included) before answering 503.
const STS_TIMEOUT: Duration = Duration::from_secs(10);

/// Past this many cached tables, entries whose credentials have lapsed are dropped.
const CACHE_PRUNE_AT: usize = 256;

/// How the broker reaches STS and which role it assumes.
#[derive(Debug, Clone)]
pub struct VendingConfig {
    /// STS endpoint, e.g. `https://sts.us-east-1.amazonaws.com` or an S3-compatible server's.
    pub sts_endpoint: String,
    /// The role assumed for every table; the broker's identity must be trusted by it.
    pub role_arn: String,
    /// Signing region of the STS requests (the S3 region).
    pub region: String,
    /// Lifetime asked for each credential (STS accepts 900 s to the role's maximum).
    pub ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum VendingError {
    /// STS refused or could not be reached; the message never carries a secret.
    #[error("STS AssumeRole on {role} failed: {message}")]
    Sts { role: String, message: String },
    /// The table's location cannot be turned into a safe policy.
    #[error("cannot scope credentials to {location}: {reason}")]
    Scope { location: String, reason: String },
}

/// One credential handed out, with when it lapses.
#[derive(Clone)]
pub struct VendedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for VendedCredentials {
    // Secrets stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl VendedCredentials {
    /// The FileIO properties pyiceberg and Java's S3FileIO read. The expiry lets Java clients
    /// refresh through the `/credentials` endpoint before the session lapses.
    pub fn config(&self) -> HashMap<String, String> {
        let expires_ms = self
            .expires_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        HashMap::from([
            ("s3.access-key-id".into(), self.access_key_id.clone()),
            (
                "s3.secret-access-key".into(),
                self.secret_access_key.clone(),
            ),
            ("s3.session-token".into(), self.session_token.clone()),
            (
                "s3.session-token-expires-at-ms".into(),
                expires_ms.to_string(),
            ),
        ])
    }

    /// Still good for longer than `margin`.
    fn fresh(&self, margin: Duration) -> bool {
        self.expires_at
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left > margin)
    }
}

/// `StorageCredential` of the REST spec: the config applies to paths under `prefix`.
#[derive(Debug, Clone, Serialize)]
pub struct StorageCredential {
    pub prefix: String,
    pub config: HashMap<String, String>,
}

/// Where a table lives in S3, as the policy names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePrefix {
    pub bucket: String,
    /// Key prefix without slashes at either end, e.g. `lake/warehouse/kafka/orders`.
    pub path: String,
}

/// A cache slot: one STS call at a time per table; others wait for its answer.
type Slot = Arc<tokio::sync::Mutex<Option<VendedCredentials>>>;

/// Vends table-scoped credentials through STS, reusing each table's credential until a
/// quarter of its lifetime is left (so a client always gets at least three quarters).
pub struct CredentialVendor {
    client: aws_sdk_sts::Client,
    role_arn: String,
    ttl: Duration,
    cache: parking_lot::Mutex<HashMap<String, Slot>>,
}

impl CredentialVendor {
    /// A vendor signing with the broker's credentials from the standard AWS chain.
    pub async fn new(config: VendingConfig) -> Self {
        // Same TLS stack as object_store (rustls on ring), not the SDK's default aws-lc.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(STS_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let sts = aws_sdk_sts::config::Builder::from(&shared)
            .endpoint_url(config.sts_endpoint.clone())
            .build();
        Self {
            client: aws_sdk_sts::Client::from_conf(sts),
            role_arn: config.role_arn,
            ttl: config.ttl,
            cache: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Credentials for the table at `location`, which is inside `warehouse`. `None` when
    /// there is nothing to vend for (a warehouse or table not in S3, or a table outside the
    /// warehouse): the answer then carries no keys at all.
    pub async fn vend(
        &self,
        warehouse: &str,
        location: &str,
    ) -> Result<Option<StorageCredential>, VendingError> {
        let Some(prefix) = table_prefix(warehouse, location)? else {
            return Ok(None);
        };
        let slot = self.slot(location);
        let mut cached = slot.lock().await;
        let margin = self.ttl / 4;
        let creds = match cached.as_ref().filter(|c| c.fresh(margin)) {
            Some(c) => c.clone(),
            None => {
                let c = self.assume_role(&prefix).await?;
                *cached = Some(c.clone());
                c
            }
        };
        Ok(Some(StorageCredential {
            prefix: location.trim_end_matches('/').to_string(),
            config: creds.config(),
        }))
    }

    fn slot(&self, location: &str) -> Slot {
        let mut cache = self.cache.lock();
        if !cache.contains_key(location) && cache.len() >= CACHE_PRUNE_AT {
            // A slot in use (locked) is kept; idle ones go once their credential has lapsed.
            cache.retain(|_, slot| {
                slot.try_lock().map_or(true, |c| {
                    c.as_ref().is_some_and(|c| c.fresh(Duration::ZERO))
                })
            });
        }
        cache.entry(location.to_string()).or_default().clone()
    }

    async fn assume_role(&self, prefix: &TablePrefix) -> Result<VendedCredentials, VendingError> {
        let sts_error = |message: String| VendingError::Sts {
            role: self.role_arn.clone(),
            message,
        };
        let out = self
            .client
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name(session_name(&prefix.path))
            .duration_seconds(i32::try_from(self.ttl.as_secs()).unwrap_or(i32::MAX))
            .policy(session_policy(prefix))
            .send()
            .await
            .map_err(|e| sts_error(DisplayErrorContext(&e).to_string()))?;
        let Some(c) = out.credentials() else {
            return Err(sts_error("the answer carried no credentials".into()));
        };
        let expires_at = SystemTime::try_from(*c.expiration())
            .map_err(|e| sts_error(format!("unreadable expiration: {e}")))?;
        tracing::debug!(table = %prefix.path, access_key_id = %c.access_key_id(), "vended table credentials");
        Ok(VendedCredentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().to_string(),
            expires_at,
        })
    }
}

/// Whether the client asked for vended credentials (`X-Iceberg-Access-Delegation`, a
/// comma-separated list of mechanisms). The spec makes delegation opt-in by this header;
/// pyiceberg sends it by default, Spark and Trino when configured to.
pub fn wants_vended_credentials(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all("x-iceberg-access-delegation")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.trim().eq_ignore_ascii_case("vended-credentials"))
}

/// The bucket and key prefix of a table at `location`, if it lies in the S3 `warehouse`.
pub fn table_prefix(warehouse: &str, location: &str) -> Result<Option<TablePrefix>, VendingError> {
    let (Some(wh), Some(table)) = (split_s3(warehouse), split_s3(location)) else {
        return Ok(None);
    };
    let refuse = |reason: &str| VendingError::Scope {
        location: location.to_string(),
        reason: reason.to_string(),
    };
    // Policy resources match `*` and `?` as wildcards, and dot segments may be resolved by
    // the store after the policy matched the literal key: either would widen the grant.
    if table.1.contains(['*', '?'])
        || table
            .1
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(refuse(
            "the path has wildcards, empty or dot segments, which a policy cannot pin down",
        ));
    }
    let inside = table.0 == wh.0
        && table
            .1
            .strip_prefix(wh.1)
            .is_some_and(|rest| wh.1.is_empty() || rest.starts_with('/'));
    if !inside || table.1 == wh.1 {
        // Not this catalog's to hand out: the client keeps whatever access it has.
        tracing::debug!(%location, %warehouse, "table outside the warehouse: no credentials vended");
        return Ok(None);
    }
    Ok(Some(TablePrefix {
        bucket: table.0.to_string(),
        path: table.1.to_string(),
    }))
}

/// `s3://bucket/a/b/` into `("bucket", "a/b")`; `None` for other schemes.
fn split_s3(url: &str) -> Option<(&str, &str)> {
    let rest = ["s3://", "s3a://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, path.trim_matches('/')))
}

/// The inline session policy: the table's objects, and listing only under its path.
pub fn session_policy(prefix: &TablePrefix) -> String {
    let TablePrefix { bucket, path } = prefix;
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"
                ],
                "Resource": [format!("arn:aws:s3:::{bucket}/{path}/*")]
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [format!("arn:aws:s3:::{bucket}")],
                "Condition": {"StringLike": {"s3:prefix": [path.clone(), format!("{path}/*")]}}
            },
            {
                // Some clients ask for the bucket's region first; it names no key.
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation"],
                "Resource": [format!("arn:aws:s3:::{bucket}")]
            }
        ]
    })
    .to_string()
}

/// A RoleSessionName (2..=64 of `[\w+=,.@-]`) naming the table, so STS audit logs and the
/// assumed-role ARN say which table a session was for.
pub fn session_name(path: &str) -> String {
    let table: String = path
        .rsplit('/')
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join(".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("icestream-{table}");
    name.truncate(64);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const WH: &str = "s3://lake/pre/warehouse";

    fn prefix(location: &str) -> Option<TablePrefix> {
        table_prefix(WH, location).unwrap()
    }

    #[test]
    fn tables_inside_the_warehouse_are_scoped_to_their_path() {
        assert_eq!(
            prefix("s3://lake/pre/warehouse/kafka/orders"),
            Some(TablePrefix {
                bucket: "lake".into(),
                path: "pre/warehouse/kafka/orders".into()
            })
        );
        assert_eq!(
            prefix("s3://lake/pre/warehouse/kafka/orders/").map(|p| p.path),
            Some("pre/warehouse/kafka/orders".into())
        );
        // A warehouse at the bucket's root.
        assert_eq!(
            table_prefix("s3://lake", "s3://lake/kafka/t").unwrap(),
            Some(TablePrefix {
                bucket: "lake".into(),
                path: "kafka/t".into()
            })
        );
    }

    #[test]
    fn nothing_is_vended_outside_the_warehouse_or_off_s3() {
        for location in [
            "s3://lake/pre/tiered/topic",            // the broker's own objects
            "s3://lake/pre/warehouse",               // the whole warehouse
            "s3://lake/pre/warehouse-other/kafka/t", // a sibling sharing the string prefix
            "s3://other/pre/warehouse/kafka/t",      // another bucket
            "file:///data/objects/warehouse/kafka/t",
        ] {
            assert_eq!(prefix(location), None, "{location}");
        }
        assert_eq!(
            table_prefix("file:///data/warehouse", "s3://lake/pre/warehouse/kafka/t").unwrap(),
            None
        );
    }

    #[test]
    fn paths_a_policy_cannot_pin_down_are_refused() {
        for location in [
            "s3://lake/pre/warehouse/kafka/*",
            "s3://lake/pre/warehouse/kafka/t?",
            "s3://lake/pre/warehouse/kafka/../../tiered",
            "s3://lake/pre/warehouse//t",
        ] {
            let err = table_prefix(WH, location).unwrap_err();
            assert!(
                matches!(err, VendingError::Scope { .. }),
                "{location}: {err}"
            );
        }
    }

    #[test]
    fn the_session_policy_allows_the_table_path_only() {
        let policy: serde_json::Value = serde_json::from_str(&session_policy(&TablePrefix {
            bucket: "lake".into(),
            path: "pre/warehouse/kafka/orders".into(),
        }))
        .unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(
            statements[0]["Resource"],
            json!(["arn:aws:s3:::lake/pre/warehouse/kafka/orders/*"])
        );
        assert_eq!(statements[1]["Action"], json!(["s3:ListBucket"]));
        assert_eq!(
            statements[1]["Condition"]["StringLike"]["s3:prefix"],
            json!(["pre/warehouse/kafka/orders", "pre/warehouse/kafka/orders/*"])
        );
        // Nothing else may name an object or a wildcard resource.
        for s in statements {
            for r in s["Resource"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(
                    r == "arn:aws:s3:::lake"
                        || r.starts_with("arn:aws:s3:::lake/pre/warehouse/kafka/orders/"),
                    "{r}"
                );
            }
            assert_eq!(s["Effect"], "Allow");
        }
    }

    #[test]
    fn only_a_request_for_vended_credentials_gets_them() {
        use axum::http::{HeaderMap, HeaderValue};
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("X-Iceberg-Access-Delegation", HeaderValue::from_static(v));
            }
            wants_vended_credentials(&h)
        };
        assert!(with(&["vended-credentials"]));
        assert!(with(&["remote-signing, Vended-Credentials"]));
        assert!(with(&["remote-signing", "vended-credentials"]));
        assert!(!with(&[]));
        assert!(!with(&["remote-signing"]));
        assert!(!with(&["vended-credentials-please"]));
    }

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(
            session_name("pre/warehouse/kafka/orders"),
            "icestream-kafka.orders"
        );
        assert_eq!(session_name("t"), "icestream-t");
        let long = session_name(&format!("w/ns/{}", "x".repeat(100)));
        assert_eq!(long.len(), 64);
        let odd = session_name("w/n s/t%C3%A9");
        assert!(odd
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
    }

    /// Through the router: a table in an S3 warehouse, STS unreachable (nothing listens on
    /// port 1): asking for credentials is a 503 naming the role, with no keys; not asking
    /// still loads the table.
    #[tokio::test]
    async fn sts_failures_are_503_without_keys_and_only_for_requests_that_ask() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
        use iceberg::{NamespaceIdent, TableCreation};
        use tower::ServiceExt;

        use crate::catalog::{router, Catalog, CatalogConfig};

        let catalog = Catalog::new(
            Arc::new(object_store::memory::InMemory::new()),
            CatalogConfig {
                warehouse_location: WH.into(),
                warehouse_path: object_store::path::Path::from("warehouse"),
                catalog_path: object_store::path::Path::from("catalog"),
            },
        );
        let ns = NamespaceIdent::new("kafka".into());
        catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
        let schema = Schema::builder()
            .with_fields(vec![NestedField::optional(
                1,
                "id",
                Type::Primitive(PrimitiveType::Long),
            )
            .into()])
            .build()
            .unwrap();
        let creation = TableCreation::builder()
            .name("orders".into())
            .schema(schema)
            .build();
        catalog.create_table(&ns, creation).await.unwrap();
        let role = "arn:aws:iam::000000000000:role/Tables";
        catalog.enable_vending(
            CredentialVendor::new(VendingConfig {
                sts_endpoint: "http://127.0.0.1:1".into(),
                role_arn: role.into(),
                region: "us-east-1".into(),
                ttl: Duration::from_secs(900),
            })
            .await,
        );
        let app = router(Arc::new(catalog));
        let call = |path: &'static str, delegate: bool| {
            let app = app.clone();
            async move {
                let mut req = Request::builder().uri(path);
                if delegate {
                    req = req.header("X-Iceberg-Access-Delegation", "vended-credentials");
                }
                let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (
                    status,
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                )
            }
        };
        let table = "/v1/namespaces/kafka/tables/orders";
        let (status, v) = call(table, false).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(v.get("storage-credentials").is_none());
        assert!(v["config"].get("s3.access-key-id").is_none());
        for (path, delegate) in [
            (table, true),
            ("/v1/namespaces/kafka/tables/orders/credentials", false),
        ] {
            let (status, v) = call(path, delegate).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {v}");
            assert_eq!(v["error"]["type"], "ServiceUnavailableException");
            assert!(
                v["error"]["message"].as_str().unwrap().contains(role),
                "{v}"
            );
            assert!(v.get("config").is_none() && v.get("storage-credentials").is_none());
        }
    }

    #[test]
    fn the_config_carries_the_keys_and_expiry_for_clients() {
        let c = VendedCredentials {
            access_key_id: "ASIA1".into(),
            secret_access_key: "s".into(),
            session_token: "t".into(),
            expires_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        };
        let config = c.config();
        assert_eq!(config["s3.access-key-id"], "ASIA1");
        assert_eq!(config["s3.secret-access-key"], "s");
        assert_eq!(config["s3.session-token"], "t");
        assert_eq!(config["s3.session-token-expires-at-ms"], "1700000000123");
        assert!(!format!("{c:?}").contains("secret_access_key"));
        assert!(!c.fresh(Duration::ZERO));
    }
}
