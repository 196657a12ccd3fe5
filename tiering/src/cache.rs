//! The read cache: fixed-size, aligned chunks of remote objects kept as files on local disk,
//! evicted least-recently-used to stay under a byte bound. A miss is one ranged GET of a whole
//! chunk; a reader moving forward through an object gets the next chunks fetched ahead.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::OnceCell;

use crate::error::TieringError;
use crate::layout::{fnv1a, FNV_OFFSET};
use crate::metrics::Metrics;

const SUFFIX: &str = ".chunk";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChunkId {
    key: Arc<str>,
    index: u64,
}

#[derive(Default)]
struct Lru {
    /// chunk -> (bytes, last use tick)
    entries: HashMap<ChunkId, (u64, u64)>,
    order: BTreeMap<u64, ChunkId>,
    bytes: u64,
    tick: u64,
    /// Last chunk read per object, to recognise sequential readers.
    last_read: HashMap<Arc<str>, u64>,
}

impl Lru {
    fn touch(&mut self, id: &ChunkId) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        self.order.remove(&e.1);
        self.tick += 1;
        e.1 = self.tick;
        self.order.insert(self.tick, id.clone());
        true
    }

    fn remove(&mut self, id: &ChunkId) {
        if let Some((len, tick)) = self.entries.remove(id) {
            self.order.remove(&tick);
            self.bytes -= len;
        }
    }
}

pub struct ChunkCache {
    dir: PathBuf,
    chunk: u64,
    cap: u64,
    read_ahead: usize,
    lru: parking_lot::Mutex<Lru>,
    inflight: parking_lot::Mutex<HashMap<ChunkId, Arc<OnceCell<Bytes>>>>,
    metrics: Metrics,
}

impl ChunkCache {
    /// Opens the cache in `dir`, removing chunks a previous run left (their objects may have
    /// been rewritten since, and the LRU order is lost anyway).
    pub fn open(
        dir: &FsPath,
        chunk: u64,
        cap: u64,
        read_ahead: usize,
        metrics: Metrics,
    ) -> Result<Self, TieringError> {
        std::fs::create_dir_all(dir).map_err(|e| TieringError::io(dir, e))?;
        for entry in std::fs::read_dir(dir).map_err(|e| TieringError::io(dir, e))? {
            let entry = entry.map_err(|e| TieringError::io(dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(SUFFIX) || name.ends_with(".chunk.tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        metrics.cache_bytes.set(0);
        Ok(ChunkCache {
            dir: dir.to_path_buf(),
            chunk: chunk.max(4096),
            cap,
            read_ahead,
            lru: parking_lot::Mutex::new(Lru::default()),
            inflight: parking_lot::Mutex::new(HashMap::new()),
            metrics,
        })
    }

    fn file(&self, id: &ChunkId) -> PathBuf {
        let a = fnv1a(FNV_OFFSET, id.key.as_bytes());
        let b = fnv1a(0x84222325cbf29ce4, id.key.as_bytes());
        self.dir
            .join(format!("{a:016x}{b:016x}-{}{SUFFIX}", id.index))
    }

    /// Bytes held on disk now.
    pub fn bytes(&self) -> u64 {
        self.lru.lock().bytes
    }

    /// Reads `range` of the object `key` (whose size is `size`, from the manifest).
    pub async fn read(
        self: &Arc<Self>,
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        size: u64,
        range: Range<u64>,
    ) -> Result<Bytes, TieringError> {
        if range.end > size || range.start > range.end {
            return Err(TieringError::corrupt(
                key,
                format!("read {range:?} past the object's size {size}"),
            ));
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        // The size is part of the identity: an object rewritten at the same key (a re-upload)
        // with another size never serves stale chunks.
        let name: Arc<str> = Arc::from(format!("{key}#{size}"));
        let first = range.start / self.chunk;
        let last = (range.end - 1) / self.chunk;
        // The chunks of one read are fetched at once, not one after another.
        let parts = futures_util::future::try_join_all((first..=last).map(|index| {
            let c0 = index * self.chunk;
            let lo = range.start.max(c0) - c0;
            let hi = range.end.min(c0 + self.chunk) - c0;
            let id = ChunkId {
                key: name.clone(),
                index,
            };
            async move { self.chunk_slice(store, key, size, &id, lo..hi).await }
        }))
        .await?;
        self.read_ahead(store, key, size, &name, first, last);
        if let [one] = parts.as_slice() {
            return Ok(one.clone());
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    /// Starts fetching the chunks after `last` when the reader is moving forward.
    fn read_ahead(
        self: &Arc<Self>,
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        size: u64,
        name: &Arc<str>,
        first: u64,
        last: u64,
    ) {
        let sequential = {
            let mut lru = self.lru.lock();
            if lru.last_read.len() > 4096 {
                lru.last_read.clear();
            }
            let prev = lru.last_read.insert(name.clone(), last);
            first == 0 || prev.is_some_and(|p| p + 1 >= first && p <= last)
        };
        // Chunks fetched ahead must have room to wait in the cache, or they are wasted GETs.
        if !sequential
            || self.read_ahead == 0
            || self.cap < self.chunk * (1 + self.read_ahead as u64)
        {
            return;
        }
        let chunks = size.div_ceil(self.chunk);
        for index in last + 1..(last + 1 + self.read_ahead as u64).min(chunks) {
            let id = ChunkId {
                key: name.clone(),
                index,
            };
            if self.lru.lock().entries.contains_key(&id) || self.inflight.lock().contains_key(&id) {
                continue;
            }
            let (this, store, key) = (self.clone(), store.clone(), key.clone());
            tokio::spawn(async move {
                if let Err(e) = this.fetch_shared(&store, &key, size, &id).await {
                    tracing::debug!(error = %e, "read-ahead failed");
                }
            });
        }
    }

    async fn chunk_slice(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        size: u64,
        id: &ChunkId,
        within: Range<u64>,
    ) -> Result<Bytes, TieringError> {
        let hit = self.lru.lock().touch(id);
        if hit {
            let path = self.file(id);
            let len = (within.end - within.start) as usize;
            let at = within.start;
            let read = tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                let f = std::fs::File::open(path)?;
                let mut buf = BytesMut::zeroed(len);
                f.read_exact_at(&mut buf, at)?;
                Ok(buf.freeze())
            })
            .await;
            match read {
                Ok(Ok(b)) => {
                    self.metrics.cache_hits.inc();
                    return Ok(b);
                }
                // Evicted meanwhile (or the disk failed): fetch it again.
                _ => self.forget(id),
            }
        }
        self.metrics.cache_misses.inc();
        let chunk = self.fetch_shared(store, key, size, id).await?;
        Ok(chunk.slice(within.start as usize..within.end as usize))
    }

    fn forget(&self, id: &ChunkId) {
        let mut lru = self.lru.lock();
        lru.remove(id);
        self.metrics.cache_bytes.set(lru.bytes as i64);
    }

    /// Fetches a chunk once however many readers want it at the same time.
    async fn fetch_shared(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        size: u64,
        id: &ChunkId,
    ) -> Result<Bytes, TieringError> {
        let cell = self
            .inflight
            .lock()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let res = cell
            .get_or_try_init(|| self.fetch(store, key, size, id))
            .await
            .cloned();
        let mut inflight = self.inflight.lock();
        if inflight.get(id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(id);
        }
        res
    }

    async fn fetch(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &Path,
        size: u64,
        id: &ChunkId,
    ) -> Result<Bytes, TieringError> {
        let c0 = id.index * self.chunk;
        let c1 = (c0 + self.chunk).min(size);
        let bytes = store
            .get_range(key, c0..c1)
            .await
            .map_err(|e| TieringError::store("get_range", key, e))?;
        if bytes.len() as u64 != c1 - c0 {
            return Err(TieringError::corrupt(
                key,
                format!(
                    "range {c0}..{c1} returned {} bytes: the object is shorter than its manifest says",
                    bytes.len()
                ),
            ));
        }
        self.metrics.remote_read_bytes.inc_by(bytes.len() as u64);
        self.insert(id, bytes.clone()).await;
        Ok(bytes)
    }

    /// Writes a fetched chunk to disk and evicts the oldest ones past the bound. Failing to
    /// cache is not an error: the caller has the bytes.
    async fn insert(&self, id: &ChunkId, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.cap {
            return;
        }
        let path = self.file(id);
        let tmp = path.with_extension("chunk.tmp");
        let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
        let victims = {
            let mut lru = self.lru.lock();
            lru.remove(id);
            lru.tick += 1;
            let tick = lru.tick;
            lru.entries.insert(id.clone(), (len, tick));
            lru.order.insert(tick, id.clone());
            lru.bytes += len;
            let mut victims = Vec::new();
            while lru.bytes > self.cap {
                let Some((_, victim)) = lru.order.pop_first() else {
                    break;
                };
                if let Some((l, _)) = lru.entries.remove(&victim) {
                    lru.bytes -= l;
                }
                victims.push(victim);
            }
            self.metrics.cache_bytes.set(lru.bytes as i64);
            victims
        };
        for v in victims {
            let _ = std::fs::remove_file(self.file(&v));
        }
    }
}
