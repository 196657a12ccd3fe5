//! Background upload of sealed segments: one sequential worker per partition (so segments go
//! up in offset order), a global bound on concurrent uploads, retries with exponential backoff
//! forever. A segment leaves the queue only once its manifest entry is persisted.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::remote::SealedSegment;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::error::TieringError;
use crate::layout::{self, ObjectKind};
use crate::manifest::{ManifestSegment, ObjectRef, PartitionManifest};
use crate::partition::PartitionState;
use crate::{leadership, Inner};

/// Queues segments not yet covered; starts the partition's worker if it is idle.
pub(crate) fn offer(inner: &Arc<Inner>, st: &Arc<PartitionState>, segments: Vec<SealedSegment>) {
    let view = st.view();
    let mut q = st.queue.lock();
    if st.is_closed() || !st.leads() {
        return;
    }
    for seg in segments {
        // The end of the data uploaded or queued; the start of the log may lie beyond it.
        let data_end = q
            .items
            .back()
            .map(|s| s.next_offset)
            .or(view.segments.last().map(|s| s.next_offset));
        let covered = data_end.unwrap_or(i64::MIN).max(view.log_start_offset);
        if seg.next_offset <= covered || seg.next_offset <= seg.base_offset {
            continue;
        }
        if data_end.is_some_and(|end| seg.base_offset < end) {
            // Its objects would take the keys of an uploaded or queued segment's base.
            tracing::warn!(partition = %st.name(), base = seg.base_offset,
                "offered segment overlaps the uploaded or queued ones; skipped");
            continue;
        }
        inner.metrics.backlog_segments.inc();
        inner.metrics.backlog_bytes.inc_by(seg.size as i64);
        q.items.push_back(seg);
    }
    if !q.items.is_empty() && !q.worker {
        q.worker = true;
        inner.handle.spawn(run_worker(inner.clone(), st.clone()));
    }
}

/// A segment whose objects are in the store and whose manifest entry is not yet written.
struct Staged {
    seg: SealedSegment,
    objects: Vec<ObjectRef>,
}

impl Staged {
    /// The log's size as uploaded.
    fn size(&self) -> u64 {
        self.objects.first().map_or(self.seg.size, |o| o.size)
    }
}

enum Prepared {
    Staged(Staged),
    /// Already covered, overlapping, or its local files are gone: nothing to do.
    Skipped,
}

/// At most this many staged segments are named by one manifest write.
const MAX_BATCH_SEGMENTS: usize = 16;

/// Drains the partition's queue in offset order. Each attempt uploads the next segment's
/// objects while the manifest entries of the staged ones (objects up, entries not yet written)
/// are written, so one partition's uploads do not pause for every manifest PUT. While small
/// segments are queued, several are staged and named by one manifest write, up to
/// `manifest_batch_bytes`. An entry is still written only once its objects exist, and never
/// before the entries of the segments before it.
async fn run_worker(inner: Arc<Inner>, st: Arc<PartitionState>) {
    let min = Duration::from_millis(inner.config.retry_min_backoff_ms.max(1));
    let max = Duration::from_millis(inner.config.retry_max_backoff_ms.max(1));
    let mut backoff = min;
    let mut staged: Vec<Staged> = Vec::new();
    // After a failed manifest write only that write is retried: uploading the next segment
    // again and again meanwhile would only waste bandwidth.
    let mut record_failed = false;
    loop {
        let next = {
            let mut q = st.queue.lock();
            let next = q.items.get(staged.len()).cloned();
            // A replica that stopped leading drops what it staged: the new leader uploads it.
            if st.is_closed() || !st.leads() || (staged.is_empty() && next.is_none()) {
                q.worker = false;
                return;
            }
            next
        };
        let staged_bytes: u64 = staged.iter().map(Staged::size).sum();
        let full =
            staged_bytes >= inner.config.manifest_batch_bytes || staged.len() >= MAX_BATCH_SEGMENTS;
        let do_record = !staged.is_empty() && (next.is_none() || full || record_failed);
        let next = next.filter(|_| !record_failed);
        let (recorded, prepared) = {
            let _busy = st.busy.lock().await;
            if st.is_closed() {
                continue;
            }
            let _permit = inner.upload_permits.acquire().await;
            let record_staged = async {
                match do_record {
                    true => Some(record(&inner, &st, &staged).await),
                    false => None,
                }
            };
            let prepare_next = async {
                match &next {
                    Some(seg) => {
                        let after = staged.last().map(|s| s.seg.next_offset);
                        Some(prepare(&inner, &st, seg, after).await)
                    }
                    None => None,
                }
            };
            futures_util::future::join(record_staged, prepare_next).await
        };
        let mut failed = None;
        record_failed = matches!(recorded, Some(Err(_)));
        match recorded {
            Some(Ok(sizes)) => {
                for (s, size) in staged.drain(..).zip(sizes) {
                    if let Some(size) = size {
                        inner.metrics.uploaded_segments.inc();
                        inner.metrics.uploaded_bytes.inc_by(size);
                    }
                    dequeue(&inner, &st, s.seg.base_offset);
                }
            }
            Some(Err(e)) => failed = Some((staged.first().map(|s| s.seg.base_offset), e)),
            None => {}
        }
        match prepared {
            // Staged unless the manifest write beside it failed; then its objects are simply
            // uploaded again later (same keys).
            Some(Ok(Prepared::Staged(s))) if !record_failed => staged.push(s),
            Some(Ok(Prepared::Staged(_))) | None => {}
            Some(Ok(Prepared::Skipped)) => {
                if let Some(seg) = &next {
                    dequeue(&inner, &st, seg.base_offset);
                }
            }
            Some(Err(e)) => failed = failed.or(Some((next.as_ref().map(|s| s.base_offset), e))),
        }
        match failed {
            None => backoff = min,
            Some((base, e)) => {
                inner.metrics.upload_errors.inc();
                tracing::warn!(partition = %st.name(), base, error = %e,
                    retry_in_ms = backoff.as_millis() as u64, "segment upload failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = st.wake.notified() => {}
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

/// Removes a finished segment from the queue (unless close already drained it).
fn dequeue(inner: &Inner, st: &PartitionState, base: i64) {
    let mut q = st.queue.lock();
    if let Some(i) = q.items.iter().position(|s| s.base_offset == base) {
        if let Some(seg) = q.items.remove(i) {
            inner.metrics.backlog_segments.dec();
            inner.metrics.backlog_bytes.dec_by(seg.size as i64);
        }
    }
}

/// Why a segment adds nothing to the manifest `m`, if it does not.
fn redundant(st: &PartitionState, m: &PartitionManifest, seg: &SealedSegment) -> bool {
    if seg.next_offset <= m.covered_end() {
        return true;
    }
    match m.segments.last() {
        Some(last) if seg.base_offset < last.next_offset => {
            // Boundaries changed under an uploaded segment (a truncated and rewritten tail):
            // the manifest cannot hold both, and the uploaded one stays authoritative.
            tracing::warn!(partition = %st.name(), base = seg.base_offset,
                uploaded_end = last.next_offset, "segment overlaps the uploaded ones; skipped");
            true
        }
        _ => false,
    }
}

/// Uploads the segment's objects, unless the manifest covers it already or it overlaps the
/// recorded segments or the staged one (ending at `staged_end`), whose keys it would share.
async fn prepare(
    inner: &Inner,
    st: &PartitionState,
    seg: &SealedSegment,
    staged_end: Option<i64>,
) -> Result<Prepared, TieringError> {
    if redundant(st, &st.view(), seg) || staged_end.is_some_and(|end| seg.base_offset < end) {
        return Ok(Prepared::Skipped);
    }
    let store = inner.store.as_ref();
    match upload_objects(store, &inner.config, st.p.topic_id, st.p.partition, seg).await {
        Ok(objects) => Ok(Prepared::Staged(Staged {
            seg: seg.clone(),
            objects,
        })),
        // Only a vanished log means the segment is gone for good (its topic was deleted);
        // a missing index is transient (compaction rebuilds it) and is retried.
        Err(TieringError::Io { path, source })
            if source.kind() == std::io::ErrorKind::NotFound && !seg.log.exists() =>
        {
            tracing::error!(partition = %st.name(), base = seg.base_offset, %path,
                "local segment vanished before upload; segment skipped");
            Ok(Prepared::Skipped)
        }
        Err(e) => Err(e),
    }
}

/// Writes the manifest naming the staged segments, in one PUT. For each: `Some(size)` when it
/// was added, `None` when it turned out redundant. A closed partition gets no write: a deleted
/// partition must not get its manifest back.
async fn record(
    inner: &Arc<Inner>,
    st: &Arc<PartitionState>,
    staged: &[Staged],
) -> Result<Vec<Option<u64>>, TieringError> {
    let mut guard = st.manifest.lock().await;
    if st.is_closed() {
        return Ok(vec![None; staged.len()]);
    }
    // A deposed leader records nothing: the new one uploads the same segments.
    let Some(mut m) = leadership::base_for_write(inner, st, &mut guard).await? else {
        return Ok(vec![None; staged.len()]);
    };
    let mut sizes = Vec::with_capacity(staged.len());
    for s in staged {
        if redundant(st, &m, &s.seg) {
            sizes.push(None);
            continue;
        }
        m.segments.push(ManifestSegment {
            base_offset: s.seg.base_offset,
            next_offset: s.seg.next_offset,
            size: s.size(),
            max_timestamp: s.seg.max_timestamp,
            objects: s.objects.clone(),
        });
        sizes.push(Some(s.size()));
    }
    if sizes.iter().all(Option::is_none) {
        return Ok(sizes);
    }
    m.topic = st.p.topic.clone();
    m.store(inner.store.as_ref(), &st.manifest_key).await?;
    let m = Arc::new(m);
    *guard = m.clone();
    st.publish(m);
    Ok(sizes)
}

/// Uploads a segment's objects (log, indexes, producer snapshot) at their deterministic keys,
/// without touching the manifest. Public so tests can stage the state a crash leaves.
pub async fn upload_objects(
    store: &dyn ObjectStore,
    config: &crate::TieringConfig,
    topic_id: uuid::Uuid,
    partition: i32,
    seg: &SealedSegment,
) -> Result<Vec<ObjectRef>, TieringError> {
    let key = |k| layout::segment_key(topic_id, partition, seg.base_offset, k);
    // The log is uploaded as it is now (compaction may have rewritten it since the offer,
    // keeping its offsets), and the indexes must describe that same file: the log's identity
    // is taken before the indexes are read and checked again after the log is uploaded, and
    // a change means a retry.
    let before = file_id(&seg.log).await?;
    let size = before.1;
    let mut small = Vec::with_capacity(3);
    for (kind, path) in [
        (ObjectKind::OffsetIndex, Some(&seg.index)),
        (ObjectKind::TimeIndex, Some(&seg.time_index)),
        (ObjectKind::ProducerSnapshot, seg.producer_snapshot.as_ref()),
    ] {
        let Some(path) = path else { continue };
        match read_local(path).await {
            Ok(b) => small.push((kind, key(kind), b)),
            // Snapshots may be pruned locally; the segment is complete without one.
            Err(TieringError::Io { source, .. })
                if kind == ObjectKind::ProducerSnapshot
                    && source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let log_key = key(ObjectKind::Log);
    let log_put = async {
        if size > config.multipart_threshold_bytes {
            put_multipart(store, &log_key, &seg.log, size, config.multipart_part_bytes).await
        } else {
            let bytes = read_local(&seg.log).await?;
            if bytes.len() as u64 != size {
                return Err(changed(&seg.log));
            }
            put(store, &log_key, bytes).await
        }
    };
    // The small objects go up beside the log: their latency hides behind its transfer.
    let small_puts =
        futures_util::future::try_join_all(small.iter().map(|(_, k, b)| put(store, k, b.clone())));
    futures_util::future::try_join(log_put, small_puts).await?;
    if file_id(&seg.log).await? != before {
        return Err(changed(&seg.log));
    }
    let mut objects = vec![ObjectRef {
        kind: ObjectKind::Log,
        key: log_key.to_string(),
        size,
    }];
    objects.extend(small.into_iter().map(|(kind, k, b)| ObjectRef {
        kind,
        key: k.to_string(),
        size: b.len() as u64,
    }));
    Ok(objects)
}

fn changed(path: &FsPath) -> TieringError {
    TieringError::io(
        path,
        std::io::Error::other("segment changed while it was uploaded"),
    )
}

/// (inode, length, modification time) of a local file.
async fn file_id(path: &FsPath) -> Result<(u64, u64, Option<std::time::SystemTime>), TieringError> {
    use std::os::unix::fs::MetadataExt;
    let m = tokio::fs::metadata(path)
        .await
        .map_err(|e| TieringError::io(path, e))?;
    Ok((m.ino(), m.len(), m.modified().ok()))
}

async fn put(store: &dyn ObjectStore, key: &Path, bytes: Bytes) -> Result<(), TieringError> {
    store
        .put(key, PutPayload::from(bytes))
        .await
        .map_err(|e| TieringError::store("put", key, e))?;
    Ok(())
}

/// Reads a whole local file (on the blocking pool: one read, not tokio's small chunks).
async fn read_local(path: &FsPath) -> Result<Bytes, TieringError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read(owned))
        .await
        .map_err(|e| TieringError::io(path, std::io::Error::other(e)))?
        .map(Bytes::from)
        .map_err(|e| TieringError::io(path, e))
}

async fn put_multipart(
    store: &dyn ObjectStore,
    key: &Path,
    path: &FsPath,
    size: u64,
    part: u64,
) -> Result<(), TieringError> {
    // S3 wants parts of at least 5 MiB (but the last); the config documents it.
    let part = part.max(1) as usize;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| TieringError::io(path, e))?;
    let upload = store
        .put_multipart(key)
        .await
        .map_err(|e| TieringError::store("put_multipart", key, e))?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, part);
    let mut left = size;
    let mut buf = vec![0u8; part];
    let res: Result<(), TieringError> = async {
        while left > 0 {
            let n = (left as usize).min(part);
            f.read_exact(&mut buf[..n])
                .await
                .map_err(|e| TieringError::io(path, e))?;
            w.wait_for_capacity(4)
                .await
                .map_err(|e| TieringError::store("put_part", key, e))?;
            w.write(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }
    .await;
    match res {
        Ok(()) => {
            w.finish()
                .await
                .map_err(|e| TieringError::store("complete_multipart", key, e))?;
            Ok(())
        }
        Err(e) => {
            let _ = w.abort().await;
            Err(e)
        }
    }
}
