//! Remote reads: locate the segment in the manifest, the batch through the segment's uploaded
//! offset index, and the bytes through the chunk cache. Only whole batches are returned.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use engine::log::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use engine::log::index::{OffsetIndex, TimeIndex};
use kafka_protocol::records::RecordBatchDecoder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::cache::ChunkCache;
use crate::error::TieringError;
use crate::layout::ObjectKind;
use crate::manifest::{ManifestSegment, ObjectRef, PartitionManifest};

/// Decoded index objects, bounded by their encoded size; oldest out first.
pub struct IndexCache {
    cap: u64,
    inner: parking_lot::Mutex<IndexMap>,
}

#[derive(Default)]
struct IndexMap {
    offsets: HashMap<String, Arc<OffsetIndex>>,
    times: HashMap<String, Arc<TimeIndex>>,
    order: VecDeque<(String, u64)>,
    bytes: u64,
}

impl IndexCache {
    pub fn new(cap: u64) -> Self {
        IndexCache {
            cap,
            inner: parking_lot::Mutex::new(IndexMap::default()),
        }
    }

    fn admit(&self, m: &mut IndexMap, key: &str, size: u64) {
        m.order.push_back((key.to_string(), size));
        m.bytes += size;
        while m.bytes > self.cap {
            let Some((k, s)) = m.order.pop_front() else {
                break;
            };
            m.offsets.remove(&k);
            m.times.remove(&k);
            m.bytes -= s;
        }
    }

    /// A segment's index object, decoded, from the cache or the store.
    async fn index<I: CachedIndex>(
        &self,
        store: &dyn ObjectStore,
        obj: &ObjectRef,
    ) -> Result<Arc<I>, TieringError> {
        let id = format!("{}#{}", obj.key, obj.size);
        if let Some(i) = I::map(&mut self.inner.lock()).get(&id) {
            return Ok(i.clone());
        }
        let bytes = get_whole(store, obj).await?;
        let idx = Arc::new(I::decode(&bytes).ok_or_else(|| {
            TieringError::corrupt(&obj.key, format!("{} does not decode", I::WHAT))
        })?);
        let mut m = self.inner.lock();
        if I::map(&mut m).insert(id.clone(), idx.clone()).is_none() {
            self.admit(&mut m, &id, obj.size);
        }
        Ok(idx)
    }

    pub async fn offset_index(
        &self,
        store: &dyn ObjectStore,
        obj: &ObjectRef,
    ) -> Result<Arc<OffsetIndex>, TieringError> {
        self.index(store, obj).await
    }

    pub async fn time_index(
        &self,
        store: &dyn ObjectStore,
        obj: &ObjectRef,
    ) -> Result<Arc<TimeIndex>, TieringError> {
        self.index(store, obj).await
    }
}

/// An index kind [`IndexCache`] holds: how it decodes and which map keeps it.
trait CachedIndex: Sized {
    /// What the index is, for errors.
    const WHAT: &'static str;
    fn decode(bytes: &[u8]) -> Option<Self>;
    fn map(m: &mut IndexMap) -> &mut HashMap<String, Arc<Self>>;
}

impl CachedIndex for OffsetIndex {
    const WHAT: &'static str = "offset index";
    fn decode(bytes: &[u8]) -> Option<Self> {
        OffsetIndex::decode(bytes)
    }
    fn map(m: &mut IndexMap) -> &mut HashMap<String, Arc<Self>> {
        &mut m.offsets
    }
}

impl CachedIndex for TimeIndex {
    const WHAT: &'static str = "time index";
    fn decode(bytes: &[u8]) -> Option<Self> {
        TimeIndex::decode(bytes)
    }
    fn map(m: &mut IndexMap) -> &mut HashMap<String, Arc<Self>> {
        &mut m.times
    }
}

async fn get_whole(store: &dyn ObjectStore, obj: &ObjectRef) -> Result<Bytes, TieringError> {
    let key = Path::from(obj.key.as_str());
    let bytes = store
        .get(&key)
        .await
        .map_err(|e| TieringError::store("get", &key, e))?
        .bytes()
        .await
        .map_err(|e| TieringError::store("get", &key, e))?;
    if bytes.len() as u64 != obj.size {
        return Err(TieringError::corrupt(
            &key,
            format!("{} bytes, the manifest says {}", bytes.len(), obj.size),
        ));
    }
    Ok(bytes)
}

/// The producer snapshot uploaded with `p`'s segment ending at `end`, found through the
/// stored manifest (a mount reads it before the partition is open). `None` when the manifest
/// names no segment ending there, or that segment has no snapshot (uploaded before
/// transactions, or pruned locally before its upload). A snapshot the manifest names but the
/// store lacks is damage, not absence.
pub async fn producer_snapshot(
    store: &dyn ObjectStore,
    p: &engine::remote::RemotePartition,
    end: i64,
) -> Result<Option<Bytes>, TieringError> {
    let key = crate::layout::partition_manifest_key(p.topic_id, p.partition);
    let Some(m) = PartitionManifest::load(store, &key)
        .await?
        .filter(|m| m.topic_id == p.topic_id && m.partition == p.partition)
    else {
        return Ok(None);
    };
    let Some(seg) = m.segments.iter().rev().find(|s| s.next_offset == end) else {
        return Ok(None);
    };
    let Some(obj) = seg.object(ObjectKind::ProducerSnapshot) else {
        return Ok(None);
    };
    match get_whole(store, obj).await {
        Err(TieringError::Store {
            source: object_store::Error::NotFound { .. },
            key,
            ..
        }) => Err(TieringError::corrupt(
            key,
            "the manifest names this producer snapshot but the store has none",
        )),
        other => other.map(Some),
    }
}

/// What a reader needs besides the manifest.
pub(crate) struct Reader<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub cache: &'a Arc<ChunkCache>,
    pub indexes: &'a IndexCache,
}

fn log_object(seg: &ManifestSegment) -> Result<(Path, u64), TieringError> {
    let o = seg
        .object(ObjectKind::Log)
        .ok_or_else(|| TieringError::corrupt(seg.base_offset, "segment without a log object"))?;
    Ok((Path::from(o.key.as_str()), seg.size))
}

fn index_object(seg: &ManifestSegment, kind: ObjectKind) -> Result<&ObjectRef, TieringError> {
    seg.object(kind).ok_or_else(|| {
        TieringError::corrupt(
            seg.base_offset,
            format!("segment without a {kind:?} object"),
        )
    })
}

impl Reader<'_> {
    /// The header of the batch holding `offset` in `seg` and its position, scanning from the
    /// offset index's floor entry.
    async fn locate(
        &self,
        seg: &ManifestSegment,
        offset: i64,
    ) -> Result<(u64, BatchHeader), TieringError> {
        let (key, size) = log_object(seg)?;
        let index = self
            .indexes
            .offset_index(
                self.store.as_ref(),
                index_object(seg, ObjectKind::OffsetIndex)?,
            )
            .await?;
        let target = offset.max(seg.base_offset);
        let rel = u32::try_from(target - seg.base_offset).unwrap_or(u32::MAX);
        let mut pos = index.floor(rel) as u64;
        loop {
            let h = self.header(&key, size, pos).await?;
            if h.base_offset < seg.base_offset || h.next_offset() > seg.next_offset {
                return Err(TieringError::corrupt(
                    &key,
                    format!(
                        "batch at {pos} holds offsets {}..{} outside the segment {}..{}",
                        h.base_offset,
                        h.next_offset(),
                        seg.base_offset,
                        seg.next_offset
                    ),
                ));
            }
            if h.last_offset() >= target {
                return Ok((pos, h));
            }
            pos += h.total_len() as u64;
        }
    }

    async fn header(&self, key: &Path, size: u64, pos: u64) -> Result<BatchHeader, TieringError> {
        if pos + HEADER_LEN as u64 > size {
            return Err(TieringError::corrupt(
                key,
                format!("no batch header at {pos}: the segment ends at {size}"),
            ));
        }
        let bytes = self
            .cache
            .read(self.store, key, size, pos..pos + HEADER_LEN as u64)
            .await?;
        let h = BatchHeader::parse(&bytes)
            .map_err(|e| TieringError::corrupt(key, format!("batch at {pos}: {e}")))?;
        if pos + h.total_len() as u64 > size {
            return Err(TieringError::corrupt(
                key,
                format!("batch at {pos} runs past the segment's end {size}"),
            ));
        }
        Ok(h)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` but at least one.
    pub async fn read(
        &self,
        m: &PartitionManifest,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Option<Bytes>, TieringError> {
        let ext = m.extent();
        if offset >= ext.end {
            return Ok(None);
        }
        if offset < ext.start {
            return Err(TieringError::OffsetNotRemote(offset));
        }
        let Some(i) = m.segment_for(offset) else {
            return Ok(None);
        };
        let seg = &m.segments[i];
        let (key, size) = log_object(seg)?;
        let (start, first) = self.locate(seg, offset).await?;
        // One read of the window the answer can use, then whole batches are cut from it.
        let want = (max_bytes as u64).max(first.total_len() as u64);
        let window_end = size.min(start.saturating_add(want));
        let buf = self
            .cache
            .read(self.store, &key, size, start..window_end)
            .await?;
        let mut end = first.total_len();
        while end + LOG_OVERHEAD <= buf.len() {
            let len =
                i32::from_be_bytes([buf[end + 8], buf[end + 9], buf[end + 10], buf[end + 11]]);
            if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
                return Err(TieringError::corrupt(
                    &key,
                    format!("batch at {} has length {len}", start + end as u64),
                ));
            }
            let total = LOG_OVERHEAD + len as usize;
            if end + total > buf.len() {
                break;
            }
            end += total;
        }
        Ok(Some(buf.slice(..end)))
    }

    /// The first offset at or after the manifest's start whose timestamp is at least `ts`.
    pub async fn offset_for_timestamp(
        &self,
        m: &PartitionManifest,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, TieringError> {
        let start = m.extent().start;
        for seg in &m.segments {
            if seg.max_timestamp < ts || seg.next_offset <= start {
                continue;
            }
            if let Some(hit) = self.search_segment(seg, ts, start).await? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    async fn search_segment(
        &self,
        seg: &ManifestSegment,
        ts: i64,
        start: i64,
    ) -> Result<Option<(i64, i64)>, TieringError> {
        let (key, size) = log_object(seg)?;
        let from = match seg.object(ObjectKind::TimeIndex) {
            Some(t) => {
                let ti = self.indexes.time_index(self.store.as_ref(), t).await?;
                seg.base_offset + ti.floor_below(ts) as i64
            }
            None => seg.base_offset,
        };
        let (mut pos, _) = self.locate(seg, from.max(start)).await?;
        while pos + HEADER_LEN as u64 <= size {
            let h = self.header(&key, size, pos).await?;
            let len = h.total_len() as u64;
            if h.max_timestamp >= ts && h.last_offset() >= start {
                if h.is_log_append_time() {
                    return Ok(Some((h.base_offset.max(start), h.max_timestamp)));
                }
                let mut bytes = self
                    .cache
                    .read(self.store, &key, size, pos..pos + len)
                    .await?;
                let set = RecordBatchDecoder::decode(&mut bytes)
                    .map_err(|e| TieringError::corrupt(&key, format!("batch at {pos}: {e}")))?;
                if let Some(r) = set
                    .records
                    .iter()
                    .find(|r| r.offset >= start && r.timestamp >= ts)
                {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
            pos += len;
        }
        Ok(None)
    }
}
