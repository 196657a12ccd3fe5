//! Helpers shared by the integration tests: real segments written by the engine's own log,
//! and an object store that fails on demand.
#![allow(dead_code)]

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::log::batch::{self, Compression, NewRecord};
use engine::log::{LogConfig, PartitionLog};
use engine::remote::{RemotePartition, SealedSegment};
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tiering::{StoreConfig, Tiering, TieringConfig};

pub const T0: i64 = 1_700_000_000_000;

pub fn partition(n: i32) -> RemotePartition {
    RemotePartition {
        topic: "orders".into(),
        topic_id: uuid::Uuid::from_u128(0xfeed_0000 + n as u128),
        partition: n,
    }
}

/// A config over a local object root, with small chunks so reads cross chunk boundaries.
pub fn config(objects: &FsPath, cache: &FsPath) -> TieringConfig {
    TieringConfig {
        store: StoreConfig::Local {
            root: objects.to_path_buf(),
        },
        cache_dir: cache.to_path_buf(),
        cache_bytes: 48 << 10,
        chunk_bytes: 8 << 10,
        retry_min_backoff_ms: 10,
        retry_max_backoff_ms: 50,
        multipart_threshold_bytes: 24 << 10,
        multipart_part_bytes: 8 << 10,
        ..TieringConfig::default()
    }
}

/// Writes `batches` batches of varied sizes and codecs with the engine's log, rolling every
/// `segment_bytes`, and returns the log and its sealed segments as the engine offers them.
pub fn build_log(
    dir: &FsPath,
    batches: usize,
    segment_bytes: u64,
) -> (PartitionLog, Vec<SealedSegment>) {
    let cfg = LogConfig {
        segment_bytes,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir, cfg, T0).expect("open log");
    let codecs = [
        Compression::None,
        Compression::Zstd,
        Compression::None,
        Compression::Gzip,
    ];
    let mut n = 0i64;
    for b in 0..batches {
        let count = 1 + (b * 7) % 13;
        let records: Vec<NewRecord> = (0..count)
            .map(|i| {
                n += 1;
                NewRecord {
                    key: Some(Bytes::from(format!("k{b}-{i}"))),
                    value: Some(Bytes::from(vec![
                        (b % 251) as u8;
                        50 + (b * 37 + i * 11) % 900
                    ])),
                    timestamp: T0 + n * 10,
                    headers: Vec::new(),
                }
            })
            .collect();
        let bytes = batch::encode_batch(&records, codecs[b % codecs.len()]).expect("encode");
        let h = batch::validate(&bytes).expect("valid");
        log.append(&h, &bytes, 0, T0).expect("append");
    }
    log.roll(T0).expect("roll");
    let sealed = sealed_segments(&log);
    (log, sealed)
}

pub fn sealed_segments(log: &PartitionLog) -> Vec<SealedSegment> {
    let dir = log.dir();
    let bases = log.sealed_bases();
    let mut out = Vec::new();
    for (i, &base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).copied().unwrap_or(log.sealed_end());
        let logp = dir.join(format!("{base:020}.log"));
        let bytes = std::fs::read(&logp).expect("read segment");
        let mut max_ts = -1;
        let mut pos = 0;
        while pos < bytes.len() {
            let h = batch::BatchHeader::parse(&bytes[pos..]).expect("header");
            max_ts = max_ts.max(h.max_timestamp);
            pos += h.total_len();
        }
        let snap: PathBuf = dir.join(format!("{next:020}.snapshot"));
        out.push(SealedSegment {
            base_offset: base,
            next_offset: next,
            size: bytes.len() as u64,
            max_timestamp: max_ts,
            log: logp,
            index: dir.join(format!("{base:020}.index")),
            time_index: dir.join(format!("{base:020}.timeindex")),
            producer_snapshot: snap.exists().then_some(snap),
        });
    }
    out
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub async fn upload_all(t: &Tiering, p: &RemotePartition, segs: &[SealedSegment]) {
    use engine::remote::RemoteTier;
    t.offer(p, segs.to_vec());
    let end = segs.last().map_or(0, |s| s.next_offset);
    t.wait_uploaded(p, end, Duration::from_secs(30))
        .await
        .expect("uploaded");
}

/// Every object the manifest names exists with the size it records.
pub async fn assert_manifest_objects_exist(
    store: &dyn ObjectStore,
    m: &tiering::PartitionManifest,
) {
    use object_store::ObjectStoreExt;
    for s in &m.segments {
        for o in &s.objects {
            let meta = store
                .head(&Path::from(o.key.as_str()))
                .await
                .unwrap_or_else(|e| panic!("manifest names missing object {}: {e}", o.key));
            assert_eq!(meta.size, o.size, "size of {}", o.key);
        }
    }
}

/// A store that fails writes while `fail` is set or while `fail_next` is above zero.
#[derive(Debug)]
pub struct FlakyStore {
    pub inner: Arc<dyn ObjectStore>,
    pub fail: AtomicBool,
    pub fail_next: AtomicUsize,
    pub failures: AtomicUsize,
    /// Fails this many writes of manifests (objects go through).
    pub fail_manifest_next: AtomicUsize,
    /// Writes of manifests that reached the inner store.
    pub manifest_puts: AtomicUsize,
    /// Writes of segment logs that reached the inner store.
    pub log_puts: AtomicUsize,
    /// Milliseconds every write waits before it happens.
    pub delay_ms: std::sync::atomic::AtomicU64,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FlakyStore {
            inner,
            fail: AtomicBool::new(false),
            fail_next: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
            fail_manifest_next: AtomicUsize::new(0),
            log_puts: AtomicUsize::new(0),
            manifest_puts: AtomicUsize::new(0),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn check(&self, path: &Path) -> object_store::Result<()> {
        let counted = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let manifest = path.filename() == Some("manifest.json")
            && self
                .fail_manifest_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if counted || manifest || self.fail.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: format!("injected failure writing {path}").into(),
            });
        }
        if path.extension() == Some("log") {
            self.log_puts.fetch_add(1, Ordering::SeqCst);
        }
        if path.filename() == Some("manifest.json") {
            self.manifest_puts.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl std::fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlakyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Every record of the given segments as (offset, timestamp), decoded from the local files.
pub fn all_records(segs: &[SealedSegment]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for s in segs {
        let mut bytes = Bytes::from(std::fs::read(&s.log).expect("segment"));
        while !bytes.is_empty() {
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decode");
            out.extend(set.records.iter().map(|r| (r.offset, r.timestamp)));
        }
    }
    out
}

/// Waits (up to 30 s, for loaded machines) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
