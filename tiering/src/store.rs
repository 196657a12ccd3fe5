//! Builds the one storage client, `object_store`, from the config. S3 credentials come from
//! the standard AWS chain (environment, profile, web identity, container and instance
//! metadata) through aws-config, adapted to object_store's `CredentialProvider`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::{AmazonS3Builder, AwsCredential, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{CredentialProvider, ObjectStore};
use tokio::sync::{Mutex, OnceCell};

use crate::config::StoreConfig;
use crate::error::TieringError;

/// Credentials are refreshed this long before they expire, so no request signs with a
/// credential that lapses in flight.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

pub fn build_store(cfg: &StoreConfig) -> Result<Arc<dyn ObjectStore>, TieringError> {
    match cfg {
        StoreConfig::Local { root } => {
            std::fs::create_dir_all(root).map_err(|e| TieringError::io(root, e))?;
            let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| {
                TieringError::Config(format!("object root {}: {e}", root.display()))
            })?;
            Ok(Arc::new(fs))
        }
        StoreConfig::S3 {
            bucket,
            prefix,
            region,
            endpoint,
            path_style,
            allow_http,
        } => {
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_allow_http(*allow_http)
                .with_virtual_hosted_style_request(!path_style)
                .with_credentials(Arc::new(AwsChainCredentials::new(region.clone())))
                // `If-None-Match: *` / `If-Match` on PUT: the Iceberg catalog's commits are
                // create-only objects and rely on a second create being refused.
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                // Few quick retries inside the client: uploads retry forever on their own, and
                // a read should fail within a fetch's patience rather than after 3 minutes.
                .with_retry(object_store::RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(20),
                    ..Default::default()
                });
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            let s3 = b
                .build()
                .map_err(|e| TieringError::Config(format!("S3 bucket {bucket}: {e}")))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(PrefixStore::new(s3, prefix)))
            }
        }
    }
}

/// object_store's credential provider over aws-config's default chain. The chain is built on
/// first use (it is async), and a credential is reused until shortly before it expires.
#[derive(Debug)]
pub struct AwsChainCredentials {
    region: String,
    chain: OnceCell<Option<SharedCredentialsProvider>>,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl AwsChainCredentials {
    pub fn new(region: String) -> Self {
        AwsChainCredentials {
            region,
            chain: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    /// Over a given provider instead of the default chain.
    pub fn with_provider(provider: SharedCredentialsProvider) -> Self {
        AwsChainCredentials {
            region: String::new(),
            chain: OnceCell::new_with(Some(Some(provider))),
            cached: Mutex::new(None),
        }
    }

    async fn chain(&self) -> Option<&SharedCredentialsProvider> {
        self.chain
            .get_or_init(|| async {
                // Same TLS stack as object_store (rustls on ring), not aws-lc.
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(self.region.clone()))
                    .http_client(http)
                    .load()
                    .await
                    .credentials_provider()
            })
            .await
            .as_ref()
    }
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(e),
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AwsChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        // One refresh at a time: concurrent requests wait for it instead of stampeding.
        let mut cached = self.cached.lock().await;
        if let Some((cred, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|t| {
                t.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
            });
            if fresh {
                return Ok(cred.clone());
            }
        }
        let Some(chain) = self.chain().await else {
            return Err(generic(std::io::Error::other(
                "no AWS credentials provider is configured",
            )));
        };
        let c = chain.provide_credentials().await.map_err(generic)?;
        let cred = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *cached = Some((cred.clone(), c.expiry()));
        Ok(cred)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::future;
    use aws_credential_types::Credentials;

    use super::*;

    /// Hands out credentials that expire `ttl` from now, counting calls.
    #[derive(Debug)]
    struct Expiring {
        ttl: Duration,
        calls: Arc<AtomicUsize>,
    }

    impl ProvideCredentials for Expiring {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("key-{n}"),
                "secret",
                Some("token".into()),
                Some(SystemTime::now() + self.ttl),
                "test",
            )))
        }
    }

    async fn creds(ttl: Duration) -> (Vec<String>, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let p = AwsChainCredentials::with_provider(SharedCredentialsProvider::new(Expiring {
            ttl,
            calls: calls.clone(),
        }));
        let mut keys = Vec::new();
        for _ in 0..3 {
            let c = p.get_credential().await.unwrap();
            assert_eq!(c.token.as_deref(), Some("token"));
            keys.push(c.key_id.clone());
        }
        (keys, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn credentials_are_reused_until_shortly_before_they_expire() {
        let (keys, calls) = creds(Duration::from_secs(3600)).await;
        assert_eq!((keys, calls), (vec!["key-0".to_string(); 3], 1));
        // Inside the refresh margin: every request gets a fresh credential.
        let (keys, calls) = creds(Duration::from_secs(60)).await;
        assert_eq!(calls, 3);
        assert_eq!(keys, ["key-0", "key-1", "key-2"]);
    }
}
