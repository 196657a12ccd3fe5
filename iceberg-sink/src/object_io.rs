//! iceberg's file I/O over `object_store`, so that data files in S3 go through the same
//! storage client as tiered segments (iceberg 0.10 ships only local and in-memory storage).
//!
//! Paths are `s3://<bucket>/<key>` (also `s3a://`), and `file://` for files on this machine. The S3 client is configured from the
//! FileIO properties the catalog hands out (`s3.endpoint`, `s3.region`, `s3.access-key-id`,
//! `s3.secret-access-key`, `s3.session-token`, `s3.path-style-access`), falling back to the
//! standard `AWS_*` environment.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Builds [`ObjectStorage`] from a FileIO's properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStorageFactory {
    /// Properties that win over the catalog's (e.g. the broker's S3 endpoint).
    pub overrides: HashMap<String, String>,
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        let mut props = config.props().clone();
        props.extend(self.overrides.clone());
        Ok(Arc::new(ObjectStorage {
            props,
            stores: Arc::default(),
        }))
    }
}

/// One S3 client per bucket, made on first use.
#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectStorage {
    props: HashMap<String, String>,
    #[serde(skip)]
    stores: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

fn err(op: &str, path: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{op} {path}: {e}"))
}

impl ObjectStorage {
    /// The bucket's store and the key of `path`.
    fn locate(&self, path: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        if let Some(file) = path.strip_prefix("file://") {
            // Files on this machine: a table the built-in catalog on S3 took over from the
            // broker's earlier per-broker warehouse keeps its files there.
            let key =
                Path::parse(file.trim_start_matches('/')).map_err(|e| err("locate", path, e))?;
            let mut stores = self.stores.lock();
            let store = stores
                .entry("file://".to_string())
                .or_insert_with(|| Arc::new(object_store::local::LocalFileSystem::new()))
                .clone();
            return Ok((store, key));
        }
        let rest = path
            .strip_prefix("s3://")
            .or_else(|| path.strip_prefix("s3a://"))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::FeatureUnsupported,
                    format!(
                        "{path}: only s3:// and file:// locations are supported by this FileIO"
                    ),
                )
            })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stores = self.stores.lock();
        let store = match stores.get(bucket) {
            Some(s) => s.clone(),
            None => {
                let s: Arc<dyn ObjectStore> = Arc::new(self.build(bucket)?);
                stores.insert(bucket.to_string(), s.clone());
                s
            }
        };
        Ok((store, Path::from(key)))
    }

    fn build(&self, bucket: &str) -> Result<object_store::aws::AmazonS3> {
        let p = |k: &str| self.props.get(k).cloned();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(v) = p("s3.endpoint") {
            b = b
                .with_endpoint(&v)
                .with_allow_http(v.starts_with("http://"));
        }
        if let Some(v) = p("s3.region").or_else(|| p("client.region")) {
            b = b.with_region(v);
        }
        if let Some(v) = p("s3.access-key-id") {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = p("s3.secret-access-key") {
            b = b.with_secret_access_key(v);
        }
        if let Some(v) = p("s3.session-token") {
            b = b.with_token(v);
        }
        if p("s3.path-style-access").as_deref() == Some("true") {
            b = b.with_virtual_hosted_style_request(false);
        }
        b.build().map_err(|e| err("configure S3 for", bucket, e))
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (s, key) = self.locate(path)?;
        match s.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(err("head", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (s, key) = self.locate(path)?;
        let m = s.head(&key).await.map_err(|e| err("head", path, e))?;
        Ok(FileMetadata { size: m.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (s, key) = self.locate(path)?;
        let r = s.get(&key).await.map_err(|e| err("get", path, e))?;
        r.bytes().await.map_err(|e| err("get", path, e))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (store, key) = self.locate(path)?;
        Ok(Box::new(ObjectRead {
            store,
            key,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (s, key) = self.locate(path)?;
        s.put(&key, bs.into())
            .await
            .map(|_| ())
            .map_err(|e| err("put", path, e))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (store, key) = self.locate(path)?;
        Ok(Box::new(ObjectWrite {
            w: Some(BufWriter::new(store, key)),
            path: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (s, key) = self.locate(path)?;
        match s.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err("delete", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (s, key) = self.locate(path)?;
        let mut listing = s.list(Some(&key));
        while let Some(m) = listing.next().await {
            let m = m.map_err(|e| err("list", path, e))?;
            match s.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(err("delete", m.location.as_ref(), e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(p) = paths.next().await {
            self.delete(&p).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(
            Arc::new(self.clone_handle()),
            path.to_string(),
        ))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(
            Arc::new(self.clone_handle()),
            path.to_string(),
        ))
    }
}

impl ObjectStorage {
    /// A handle sharing this storage's clients.
    fn clone_handle(&self) -> ObjectStorage {
        ObjectStorage {
            props: self.props.clone(),
            stores: self.stores.clone(),
        }
    }
}

struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    key: Path,
    path: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.key, range)
            .await
            .map_err(|e| err("get", &self.path, e))
    }
}

/// Multipart upload for large files, one PUT for small ones (object_store's `BufWriter`).
struct ObjectWrite {
    w: Option<BufWriter>,
    path: String,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        let w = self
            .w
            .as_mut()
            .ok_or_else(|| err("write", &self.path, "file is closed"))?;
        w.write_all(&bs)
            .await
            .map_err(|e| err("write", &self.path, e))
    }

    async fn close(&mut self) -> Result<()> {
        let mut w = self
            .w
            .take()
            .ok_or_else(|| err("close", &self.path, "file is closed"))?;
        w.shutdown().await.map_err(|e| err("close", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `file://` paths go to the local filesystem beside S3 ones (a taken-over table's files).
    #[tokio::test]
    async fn file_paths_are_read_and_written_locally() {
        let dir = tempfile::tempdir().unwrap();
        let storage = ObjectStorage {
            props: HashMap::new(),
            stores: Arc::default(),
        };
        let path = format!("file://{}/t/data/x.parquet", dir.path().display());
        storage
            .write(&path, Bytes::from_static(b"rows"))
            .await
            .unwrap();
        assert!(storage.exists(&path).await.unwrap());
        assert_eq!(
            storage.read(&path).await.unwrap(),
            Bytes::from_static(b"rows")
        );
        assert_eq!(
            std::fs::read(dir.path().join("t/data/x.parquet")).unwrap(),
            b"rows"
        );
        assert!(storage.read("gs://b/k").await.is_err());
    }
}
