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
use crate::manifest::{ManifestSegment, ObjectRef};
use crate::partition::PartitionState;
use crate::Inner;

/// Queues segments not yet covered; starts the partition's worker if it is idle.
pub(crate) fn offer(inner: &Arc<Inner>, st: &Arc<PartitionState>, segments: Vec<SealedSegment>) {
    let covered = st.view().covered_end();
    let mut q = st.queue.lock();
    if st.is_closed() {
        return;
    }
    for seg in segments {
        let queued_end = q
            .items
            .back()
            .map_or(covered, |s| s.next_offset.max(covered));
        if seg.next_offset <= queued_end || seg.next_offset <= seg.base_offset {
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

/// Forgets the queue of a closing partition (the engine re-offers on its next start).
pub(crate) fn drop_queue(inner: &Inner, st: &PartitionState) {
    let mut q = st.queue.lock();
    for seg in q.items.drain(..) {
        inner.metrics.backlog_segments.dec();
        inner.metrics.backlog_bytes.dec_by(seg.size as i64);
    }
}

enum Outcome {
    /// Uploaded and recorded, with the log's size as uploaded.
    Uploaded(u64),
    /// Already covered, overlapping, or its local files are gone: nothing to do.
    Skipped,
}

async fn run_worker(inner: Arc<Inner>, st: Arc<PartitionState>) {
    loop {
        let seg = {
            let mut q = st.queue.lock();
            match q.items.front() {
                Some(s) if !st.is_closed() => s.clone(),
                _ => {
                    q.worker = false;
                    return;
                }
            }
        };
        let mut backoff = Duration::from_millis(inner.config.retry_min_backoff_ms.max(1));
        let max = Duration::from_millis(inner.config.retry_max_backoff_ms.max(1));
        loop {
            let res = {
                let _busy = st.busy.lock().await;
                if st.is_closed() {
                    break;
                }
                let _permit = inner.upload_permits.acquire().await;
                upload_one(&inner, &st, &seg).await
            };
            match res {
                Ok(Outcome::Uploaded(size)) => {
                    inner.metrics.uploaded_segments.inc();
                    inner.metrics.uploaded_bytes.inc_by(size);
                    break;
                }
                Ok(Outcome::Skipped) => break,
                Err(e) => {
                    inner.metrics.upload_errors.inc();
                    tracing::warn!(partition = %st.name(), base = seg.base_offset, error = %e,
                        retry_in_ms = backoff.as_millis() as u64, "segment upload failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = st.wake.notified() => {}
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
        let mut q = st.queue.lock();
        if q.items.front().map(|s| s.base_offset) == Some(seg.base_offset) {
            q.items.pop_front();
            inner.metrics.backlog_segments.dec();
            inner.metrics.backlog_bytes.dec_by(seg.size as i64);
        }
    }
}

async fn upload_one(
    inner: &Inner,
    st: &PartitionState,
    seg: &SealedSegment,
) -> Result<Outcome, TieringError> {
    let view = st.view();
    if seg.next_offset <= view.covered_end() {
        return Ok(Outcome::Skipped);
    }
    if let Some(last) = view.segments.last() {
        if seg.base_offset < last.next_offset {
            // Boundaries changed under an uploaded segment (a truncated and rewritten tail):
            // the manifest cannot hold both, and the uploaded one stays authoritative.
            tracing::warn!(partition = %st.name(), base = seg.base_offset,
                uploaded_end = last.next_offset, "segment overlaps the uploaded ones; skipped");
            return Ok(Outcome::Skipped);
        }
    }
    let objects = match upload_objects(
        inner.store.as_ref(),
        &inner.config,
        st.p.topic_id,
        st.p.partition,
        seg,
    )
    .await
    {
        // Only a vanished log means the segment is gone for good (its topic was deleted);
        // a missing index is transient (compaction rebuilds it) and is retried.
        Err(TieringError::Io { path, source })
            if source.kind() == std::io::ErrorKind::NotFound && !seg.log.exists() =>
        {
            tracing::error!(partition = %st.name(), base = seg.base_offset, %path,
                "local segment vanished before upload; segment skipped");
            return Ok(Outcome::Skipped);
        }
        r => r?,
    };
    let size = objects.first().map_or(seg.size, |o| o.size);
    let mut guard = st.manifest.lock().await;
    if st.is_closed() {
        // A deleted partition must not get its manifest back.
        return Ok(Outcome::Skipped);
    }
    let mut m = (**guard).clone();
    if seg.next_offset <= m.covered_end() {
        return Ok(Outcome::Skipped);
    }
    m.topic = st.p.topic.clone();
    m.segments.push(ManifestSegment {
        base_offset: seg.base_offset,
        next_offset: seg.next_offset,
        size,
        max_timestamp: seg.max_timestamp,
        objects,
    });
    m.store(inner.store.as_ref(), &st.manifest_key).await?;
    let m = Arc::new(m);
    *guard = m.clone();
    st.publish(m);
    Ok(Outcome::Uploaded(size))
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
