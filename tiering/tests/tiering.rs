//! The tier over a local-directory store, with segments written by the engine's own log.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use engine::remote::{RemoteError, RemoteTier};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tiering::layout::{self, ObjectKind};
use tiering::{Tiering, TieringError};

/// Every offset, at several fetch sizes, reads back byte-identical to the local log.
async fn assert_reads_match(
    t: &Tiering,
    p: &engine::remote::RemotePartition,
    log: &engine::log::PartitionLog,
    end: i64,
) {
    for offset in 0..end {
        for max_bytes in [0usize, 700, 5_000, 100_000] {
            let remote = t.read(p, offset, max_bytes).await.expect("remote read");
            let local = log.read(offset, max_bytes, i64::MAX).expect("local read");
            assert_eq!(remote, local, "offset {offset} max_bytes {max_bytes}");
        }
    }
    assert_eq!(t.read(p, end, 1000).await.expect("read at end"), None);
}

#[test]
fn upload_then_read_every_offset_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of ~40 KiB: above the 24 KiB multipart threshold, so they go up in 8 KiB parts.
    let (log, segs) = build_log(&dir.path().join("log"), 160, 40 << 10);
    assert!(segs.len() >= 4, "want several segments, got {}", segs.len());
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    assert!(segs.iter().all(|s| s.size > cfg.multipart_threshold_bytes));
    let cache_cap = cfg.cache_bytes;
    let t = Tiering::start(cfg).unwrap();
    let p = partition(0);
    block_on(async {
        assert_eq!(t.open(&p).await.unwrap(), Default::default());
        upload_all(&t, &p, &segs).await;
        let ext = t.extent(&p).unwrap();
        assert_eq!((ext.start, ext.end), (0, log.sealed_end()));
        assert_eq!(ext.segments, segs.len() as u64);
        assert_eq!(t.backlog(&p), 0);
        let remote: Vec<_> = t.segments(&p);
        assert_eq!(remote.len(), segs.len());
        for (r, s) in remote.iter().zip(&segs) {
            assert_eq!(
                (r.base_offset, r.next_offset, r.size, r.max_timestamp),
                (s.base_offset, s.next_offset, s.size, s.max_timestamp)
            );
        }
        let m = t.manifest(&p).unwrap();
        assert_manifest_objects_exist(t.store().as_ref(), &m).await;
        assert!(m
            .segments
            .iter()
            .all(|s| s.object(ObjectKind::TimeIndex).is_some()));
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
        // Below the start is not remote; an unknown partition is an error.
        assert!(matches!(
            t.read(&partition(9), 0, 10).await,
            Err(RemoteError::UnknownPartition(_))
        ));
        // Timestamps: every timestamp a record has, and some between, agree with the local log.
        let last_ts = T0 + 10 * 1000;
        for ts in (T0 - 5..last_ts).step_by(37) {
            let local = log.offset_for_timestamp(ts).unwrap();
            let remote = t.offset_for_timestamp(&p, ts).await.unwrap();
            // The local log also searches its active segment (empty after the roll).
            assert_eq!(remote, local, "ts {ts}");
        }
    });
    assert!(
        t.cache_bytes() <= cache_cap,
        "cache {} over {}",
        t.cache_bytes(),
        cache_cap
    );
    let on_disk: u64 = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        on_disk <= cache_cap,
        "cache dir holds {on_disk} bytes, bound {cache_cap}"
    );
    let m = t.metrics();
    assert!(m.cache_hits.get() > 0 && m.cache_misses.get() > 0);
    assert_eq!(m.uploaded_segments.get(), segs.len() as u64);
    assert_eq!(m.backlog_segments.get(), 0);
    let mut reg = prometheus_client::registry::Registry::with_prefix("icestream");
    t.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for name in [
        "icestream_tiering_upload_backlog_segments",
        "icestream_tiering_uploaded_bytes_total",
        "icestream_tiering_cache_hits_total",
        "icestream_tiering_cache_misses_total",
        "icestream_tiering_remote_read_bytes_total",
        "icestream_tiering_upload_errors_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

#[test]
fn restart_sees_the_same_extent_and_reoffers_are_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let p = partition(1);
    let ext = {
        let t = Tiering::start(cfg.clone()).unwrap();
        block_on(async {
            t.open(&p).await.unwrap();
            upload_all(&t, &p, &segs).await;
        });
        t.extent(&p).unwrap()
    };
    let t = Tiering::start(cfg).unwrap();
    block_on(async {
        assert_eq!(t.open(&p).await.unwrap(), ext);
        let before = t.manifest(&p).unwrap();
        // The engine re-offers everything sealed on start: nothing is uploaded again.
        t.offer(&p, segs.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(t.metrics().uploaded_segments.get(), 0);
        assert_eq!(t.manifest(&p).unwrap(), before);
        assert_reads_match(&t, &p, &log, ext.end).await;
    });
}

#[test]
fn objects_left_by_a_crash_before_the_manifest_are_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let p = partition(2);
    let store = tiering::store::build_store(&cfg.store).unwrap();
    block_on(async {
        // A first run uploaded segment 0 fully, then crashed after writing segment 1's objects
        // (one of them torn: garbage) but before its manifest write.
        let t = Tiering::start(cfg.clone()).unwrap();
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs[..1]).await;
        drop(t);
        tiering::uploader::upload_objects(store.as_ref(), &cfg, p.topic_id, p.partition, &segs[1])
            .await
            .unwrap();
        let torn = layout::segment_key(
            p.topic_id,
            p.partition,
            segs[1].base_offset,
            ObjectKind::Log,
        );
        store
            .put(&torn, PutPayload::from(vec![0xAB; 100]))
            .await
            .unwrap();

        let t = Tiering::start(cfg.clone()).unwrap();
        let ext = t.open(&p).await.unwrap();
        assert_eq!(
            ext.end, segs[0].next_offset,
            "the manifest does not name segment 1"
        );
        upload_all(&t, &p, &segs).await;
        let m = t.manifest(&p).unwrap();
        assert_manifest_objects_exist(store.as_ref(), &m).await;
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
    });
}

#[test]
fn delete_before_moves_the_start_and_removes_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let p = partition(3);
    let t = Tiering::start(cfg.clone()).unwrap();
    let store = t.store();
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        let cut = segs[2].base_offset + 1;
        let ext = t.delete_before(&p, cut).await.unwrap();
        assert_eq!(ext.start, cut);
        assert_eq!(ext.segments, (segs.len() - 2) as u64);
        for s in &segs[..2] {
            for kind in [
                ObjectKind::Log,
                ObjectKind::OffsetIndex,
                ObjectKind::TimeIndex,
            ] {
                let k = layout::segment_key(p.topic_id, p.partition, s.base_offset, kind);
                assert!(
                    matches!(
                        store.head(&k).await,
                        Err(object_store::Error::NotFound { .. })
                    ),
                    "{k} still exists"
                );
            }
        }
        assert_manifest_objects_exist(store.as_ref(), &t.manifest(&p).unwrap()).await;
        assert!(matches!(
            t.read(&p, cut - 1, 100).await,
            Err(RemoteError::OffsetNotRemote(_))
        ));
        // The batch holding `cut` starts before it, as Kafka returns it.
        assert_eq!(
            t.read(&p, cut, 100).await.unwrap(),
            log.read(cut, 100, i64::MAX).unwrap()
        );
        // A smaller offset changes nothing; the start survives a restart.
        assert_eq!(t.delete_before(&p, 1).await.unwrap(), ext);
        drop(t);
        let t = Tiering::start(cfg.clone()).unwrap();
        assert_eq!(t.open(&p).await.unwrap(), ext);
        // Past the end: everything goes, and the start moves there.
        let end = log.sealed_end();
        let ext = t.delete_before(&p, end + 10).await.unwrap();
        assert_eq!((ext.start, ext.end, ext.segments), (end + 10, end + 10, 0));
        let left: Vec<_> = futures_util::TryStreamExt::try_collect::<Vec<_>>(
            store.list(Some(&layout::partition_prefix(p.topic_id, p.partition))),
        )
        .await
        .unwrap();
        assert_eq!(left.len(), 1, "only the manifest stays: {left:?}");
    });
}

#[test]
fn a_failing_store_keeps_the_backlog_and_drains_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let inner = tiering::store::build_store(&cfg.store).unwrap();
    let flaky = Arc::new(FlakyStore::new(inner));
    flaky.fail.store(true, Ordering::SeqCst);
    let t = Tiering::start_with_store(cfg, flaky.clone()).unwrap();
    let p = partition(4);
    block_on(async {
        t.open(&p).await.unwrap();
        t.offer(&p, segs.clone());
        let m = t.metrics();
        eventually("two failed attempts", || m.upload_errors.get() >= 2).await;
        assert_eq!(t.backlog(&p), segs.len());
        assert_eq!(m.backlog_segments.get(), segs.len() as i64);
        assert_eq!(
            m.backlog_bytes.get(),
            segs.iter().map(|s| s.size as i64).sum::<i64>()
        );
        assert!(
            m.upload_errors.get() >= 2,
            "retried: {}",
            m.upload_errors.get()
        );
        assert!(t.extent(&p).unwrap().is_empty());
        // Recovery, then a few more transient failures on the way.
        flaky.fail_next.store(3, Ordering::SeqCst);
        flaky.fail.store(false, Ordering::SeqCst);
        upload_all(&t, &p, &segs).await;
        assert_eq!(t.backlog(&p), 0);
        assert_eq!(m.backlog_segments.get(), 0);
        assert_eq!(m.backlog_bytes.get(), 0);
        assert_manifest_objects_exist(flaky.as_ref(), &t.manifest(&p).unwrap()).await;
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
    });
}

#[test]
fn close_with_delete_removes_manifest_and_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, segs) = build_log(&dir.path().join("log"), 40, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let t = Tiering::start(cfg).unwrap();
    let store = t.store();
    let (p, q) = (partition(6), partition(7));
    block_on(async {
        for x in [&p, &q] {
            t.open(x).await.unwrap();
            upload_all(&t, x, &segs).await;
        }
        t.close(&q, false).await.unwrap();
        assert_eq!(t.extent(&q), None);
        t.close(&p, true).await.unwrap();
        let list = |x: &engine::remote::RemotePartition| {
            let prefix = layout::partition_prefix(x.topic_id, x.partition);
            futures_util::TryStreamExt::try_collect::<Vec<_>>(store.list(Some(&prefix)))
        };
        assert!(list(&p).await.unwrap().is_empty());
        assert!(
            !list(&q).await.unwrap().is_empty(),
            "closing without delete keeps the data"
        );
        let ext = t.open(&q).await.unwrap();
        assert_eq!(ext.end, segs.last().unwrap().next_offset);
    });
}

#[test]
fn damaged_remote_data_is_a_typed_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, segs) = build_log(&dir.path().join("log"), 40, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let p = partition(8);
    let store = tiering::store::build_store(&cfg.store).unwrap();
    block_on(async {
        let t = Tiering::start(cfg.clone()).unwrap();
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        // A log object replaced by garbage: reads fail with Corrupt, never panic.
        let k = layout::segment_key(
            p.topic_id,
            p.partition,
            segs[1].base_offset,
            ObjectKind::Log,
        );
        store
            .put(&k, PutPayload::from(vec![0xFF; segs[1].size as usize]))
            .await
            .unwrap();
        let t = Tiering::start(cfg.clone()).unwrap();
        t.open(&p).await.unwrap();
        match t.read(&p, segs[1].base_offset, 1000).await {
            Err(RemoteError::Corrupt(msg)) => assert!(msg.contains(k.as_ref()), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A truncated object: also Corrupt.
        store
            .put(&k, PutPayload::from(vec![0u8; 10]))
            .await
            .unwrap();
        let t = Tiering::start(cfg.clone()).unwrap();
        t.open(&p).await.unwrap();
        assert!(matches!(
            t.read(&p, segs[1].base_offset + 1, 1000).await,
            Err(RemoteError::Corrupt(_))
        ));
        // A damaged manifest: open fails with Corrupt naming the manifest key.
        let mk = layout::partition_manifest_key(p.topic_id, p.partition);
        store
            .put(&mk, PutPayload::from(&b"{not json"[..]))
            .await
            .unwrap();
        let t = Tiering::start(cfg).unwrap();
        match t.open(&p).await {
            Err(RemoteError::Corrupt(msg)) => assert!(msg.contains(mk.as_ref()), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    });
}

#[test]
fn topic_manifests_put_get_list_delete() {
    use tiering::topic_manifest::{GroupOffset, PartitionOffsets};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let t = Tiering::start(cfg).unwrap();
    block_on(async {
        let mut m = tiering::TopicManifest::new("orders", uuid::Uuid::from_u128(7), 2, T0);
        m.partitions = vec![
            PartitionOffsets {
                partition: 0,
                log_start_offset: 0,
                log_end_offset: 10,
            },
            PartitionOffsets {
                partition: 1,
                log_start_offset: 3,
                log_end_offset: 3,
            },
        ];
        m.configs.insert("retention.ms".into(), "1000".into());
        m.group_offsets.push(GroupOffset {
            group: "g".into(),
            partition: 0,
            offset: 7,
            metadata: Some("m".into()),
        });
        t.put_topic_manifest(m.clone()).await.unwrap();
        let mut other = m.clone();
        other.topic = "audit.log-2".into();
        t.put_topic_manifest(other).await.unwrap();
        assert_eq!(t.get_topic_manifest("orders").await.unwrap(), m);
        assert_eq!(
            t.list_topic_manifests().await.unwrap(),
            vec!["audit.log-2".to_string(), "orders".to_string()]
        );
        assert!(matches!(
            t.get_topic_manifest("nope").await,
            Err(TieringError::TopicManifestMissing { .. })
        ));
        let key = layout::topic_manifest_key("bad").unwrap();
        t.store()
            .put(&key, PutPayload::from(&b"[]"[..]))
            .await
            .unwrap();
        match t.get_topic_manifest("bad").await {
            Err(TieringError::Corrupt { key: k, .. }) => assert_eq!(k, key.to_string()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        t.delete_topic_manifest("orders").await.unwrap();
        t.delete_topic_manifest("orders").await.unwrap();
        assert!(matches!(
            t.get_topic_manifest("orders").await,
            Err(TieringError::TopicManifestMissing { .. })
        ));
    });
}

#[test]
fn reads_run_on_the_tier_runtime_and_work_from_a_current_thread_runtime() {
    // The engine's shards are current-thread runtimes: awaiting the tier's futures there
    // must work, and dropping the tier inside one must not panic.
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 20, 8 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let p = partition(10);
    block_on(async {
        let t = Tiering::start(cfg).unwrap();
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        let local = tokio::task::LocalSet::new();
        let got = local
            .run_until(async { t.read(&p, 0, 1 << 20).await.unwrap() })
            .await;
        assert_eq!(got, log.read(0, 1 << 20, i64::MAX).unwrap());
        drop(t);
    });
}

#[test]
fn objects_a_crash_left_below_the_manifest_are_swept_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, segs) = build_log(&dir.path().join("log"), 40, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let p = partition(11);
    let store = tiering::store::build_store(&cfg.store).unwrap();
    block_on(async {
        let t = Tiering::start(cfg.clone()).unwrap();
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        t.delete_before(&p, segs[1].next_offset).await.unwrap();
        drop(t);
        // A crash between the manifest write and the deletes leaves segment 0's objects.
        tiering::uploader::upload_objects(store.as_ref(), &cfg, p.topic_id, p.partition, &segs[0])
            .await
            .unwrap();
        let k = layout::segment_key(
            p.topic_id,
            p.partition,
            segs[0].base_offset,
            ObjectKind::Log,
        );
        assert!(store.head(&k).await.is_ok());
        let t = Tiering::start(cfg.clone()).unwrap();
        t.open(&p).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.head(&k).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "orphan {k} not swept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_manifest_objects_exist(store.as_ref(), &t.manifest(&p).unwrap()).await;
    });
}

#[test]
fn a_segment_rewritten_after_its_offer_is_uploaded_as_it_is_now() {
    // Compaction may replace a sealed segment (same offsets, fewer bytes) after the offer.
    let dir = tempfile::tempdir().unwrap();
    let (log, mut segs) = build_log(&dir.path().join("log"), 40, 16 << 10);
    for s in &mut segs {
        s.size += 100;
    }
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let t = Tiering::start(cfg).unwrap();
    let p = partition(12);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        let m = t.manifest(&p).unwrap();
        for (r, s) in m.segments.iter().zip(&segs) {
            assert_eq!(r.size + 100, s.size);
        }
        assert_manifest_objects_exist(t.store().as_ref(), &m).await;
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
        let all = t.read(&p, 0, usize::MAX).await.unwrap().unwrap();
        assert_eq!(all.len() as u64, m.segments[0].size);
    });
    assert_eq!(t.metrics().backlog_bytes.get(), 0);
}

#[test]
fn offset_for_timestamp_never_answers_below_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let records = all_records(&segs);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let t = Tiering::start(cfg).unwrap();
    let p = partition(13);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        // A start inside a batch inside a segment.
        let cut = segs[1].base_offset + 3;
        t.delete_before(&p, cut).await.unwrap();
        let last_ts = records.last().unwrap().1;
        for ts in (T0 - 100..last_ts + 100).step_by(23) {
            let want = records.iter().find(|&&(o, t)| o >= cut && t >= ts).copied();
            assert_eq!(
                t.offset_for_timestamp(&p, ts).await.unwrap(),
                want,
                "ts {ts}"
            );
        }
    });
}

#[test]
fn closing_with_delete_during_an_upload_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let mut cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    cfg.manifest_batch_bytes = 0; // one manifest write per segment: the extent moves early
    let flaky = Arc::new(FlakyStore::new(
        tiering::store::build_store(&cfg.store).unwrap(),
    ));
    flaky.delay_ms.store(30, Ordering::SeqCst);
    let t = Tiering::start_with_store(cfg, flaky.clone()).unwrap();
    let p = partition(14);
    block_on(async {
        t.open(&p).await.unwrap();
        t.offer(&p, segs.clone());
        // Part way through: some segments recorded, one in flight.
        t.wait_uploaded(&p, segs[1].next_offset, Duration::from_secs(10))
            .await
            .unwrap();
        t.close(&p, true).await.unwrap();
        assert_eq!(t.metrics().backlog_segments.get(), 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let prefix = layout::partition_prefix(p.topic_id, p.partition);
        let left = futures_util::TryStreamExt::try_collect::<Vec<_>>(flaky.list(Some(&prefix)))
            .await
            .unwrap();
        assert!(left.is_empty(), "left behind: {left:?}");
        // Waiting on a closed partition is an error, not a hang.
        assert!(t
            .wait_uploaded(&p, 1, Duration::from_millis(50))
            .await
            .is_err());
    });
}

#[test]
fn wait_uploaded_times_out_while_the_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, segs) = build_log(&dir.path().join("log"), 20, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let flaky = Arc::new(FlakyStore::new(
        tiering::store::build_store(&cfg.store).unwrap(),
    ));
    flaky.fail.store(true, Ordering::SeqCst);
    let t = Tiering::start_with_store(cfg, flaky).unwrap();
    let p = partition(15);
    block_on(async {
        t.open(&p).await.unwrap();
        t.offer(&p, segs.clone());
        let r = t
            .wait_uploaded(&p, segs[0].next_offset, Duration::from_millis(200))
            .await;
        assert!(matches!(r, Err(TieringError::Timeout { .. })), "{r:?}");
    });
}

#[test]
fn a_sequential_reader_finds_the_next_chunks_fetched_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 64 << 10);
    let mut cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    cfg.cache_bytes = 1 << 20;
    cfg.read_ahead_chunks = 2;
    let chunk = cfg.chunk_bytes;
    assert!(segs[0].size > 4 * chunk);
    let t = Tiering::start(cfg).unwrap();
    let p = partition(16);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        let m = t.metrics();
        // The first read of chunk 0 misses and starts fetching chunks 1 and 2.
        let first = t.read(&p, 0, 1).await.unwrap().unwrap();
        eventually("chunks 1 and 2 fetched ahead", || {
            t.cache_bytes() >= 3 * chunk
        })
        .await;
        let misses = m.cache_misses.get();
        // Reading on through chunks 1 and 2 needs no further fetch of them.
        let mut offset = icestream_next_offset(&first);
        let mut read = first.len() as u64;
        while read < 3 * chunk - 2048 {
            let b = t.read(&p, offset, 1024).await.unwrap().unwrap();
            assert_eq!(Some(&b), log.read(offset, 1024, i64::MAX).unwrap().as_ref());
            read += b.len() as u64;
            offset = icestream_next_offset(&b);
        }
        assert_eq!(
            m.cache_misses.get(),
            misses,
            "chunks 1 and 2 were fetched ahead"
        );
        assert!(m.cache_hits.get() > 0);
    });
}

fn icestream_next_offset(chunk: &[u8]) -> i64 {
    let mut pos = 0;
    let mut next = 0;
    while pos < chunk.len() {
        let h = engine::log::batch::BatchHeader::parse(&chunk[pos..]).unwrap();
        next = h.next_offset();
        pos += h.total_len();
    }
    next
}

#[test]
fn an_offer_overlapping_uploaded_or_queued_segments_never_overwrites_their_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let flaky = Arc::new(FlakyStore::new(
        tiering::store::build_store(&cfg.store).unwrap(),
    ));
    let t = Tiering::start_with_store(cfg, flaky.clone()).unwrap();
    let p = partition(17);
    // Same base as segment 0 (so the same keys), other boundaries and bytes.
    let mut rogue = segs[1].clone();
    rogue.base_offset = segs[0].base_offset;
    rogue.next_offset = segs[1].next_offset;
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs[..1]).await;
        t.offer(&p, vec![rogue.clone()]);
        // And while segments are still queued (the store is down).
        flaky.fail.store(true, Ordering::SeqCst);
        t.offer(&p, segs[1..3].to_vec());
        let mut rogue2 = segs[3].clone();
        rogue2.base_offset = segs[1].base_offset;
        t.offer(&p, vec![rogue2]);
        assert_eq!(t.backlog(&p), 2);
        flaky.fail.store(false, Ordering::SeqCst);
        upload_all(&t, &p, &segs).await;
        assert_eq!(t.manifest(&p).unwrap().segments.len(), segs.len());
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
    });
}

#[test]
fn failed_manifest_writes_are_retried_after_their_objects_are_up() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 60, 16 << 10);
    let cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    let flaky = Arc::new(FlakyStore::new(
        tiering::store::build_store(&cfg.store).unwrap(),
    ));
    flaky.fail_manifest_next.store(5, Ordering::SeqCst);
    let t = Tiering::start_with_store(cfg.clone(), flaky.clone()).unwrap();
    let p = partition(18);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        assert_eq!(flaky.failures.load(Ordering::SeqCst), 5);
        // While the manifest write fails, the next log is not uploaded over and over.
        let puts = flaky.log_puts.load(Ordering::SeqCst);
        assert!(
            puts <= segs.len() + 1,
            "{puts} log uploads for {} segments",
            segs.len()
        );
        assert_eq!(t.metrics().upload_errors.get(), 5);
        assert_eq!(t.metrics().uploaded_segments.get(), segs.len() as u64);
        assert_manifest_objects_exist(flaky.as_ref(), &t.manifest(&p).unwrap()).await;
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
        drop(t);
        let t = Tiering::start(cfg).unwrap();
        assert_eq!(t.open(&p).await.unwrap().end, log.sealed_end());
    });
}

#[test]
fn a_backlog_of_small_segments_is_recorded_in_few_manifest_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 120, 8 << 10);
    assert!(segs.len() > 20, "{} segments", segs.len());
    let mut cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    cfg.manifest_batch_bytes = 40 << 10;
    let flaky = Arc::new(FlakyStore::new(
        tiering::store::build_store(&cfg.store).unwrap(),
    ));
    let t = Tiering::start_with_store(cfg, flaky.clone()).unwrap();
    let p = partition(19);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        let writes = flaky.manifest_puts.load(Ordering::SeqCst);
        // About 5 segments of 8 KiB per 40 KiB batch, never more than 16.
        assert!(
            writes * 3 <= segs.len(),
            "{writes} manifest writes for {} segments",
            segs.len()
        );
        assert!(writes >= segs.len() / 16);
        assert_eq!(t.metrics().uploaded_segments.get(), segs.len() as u64);
        assert_manifest_objects_exist(flaky.as_ref(), &t.manifest(&p).unwrap()).await;
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
    });
}

#[test]
fn a_cache_of_zero_bytes_still_serves_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let (log, segs) = build_log(&dir.path().join("log"), 40, 16 << 10);
    let mut cfg = config(&dir.path().join("objects"), &dir.path().join("cache"));
    cfg.cache_bytes = 0;
    let t = Tiering::start(cfg).unwrap();
    let p = partition(22);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        assert_reads_match(&t, &p, &log, log.sealed_end()).await;
    });
    assert_eq!(t.cache_bytes(), 0);
    assert_eq!(t.metrics().cache_hits.get(), 0);
}

/// The producer snapshot uploaded with a segment comes back by the segment's end, with the
/// aborted transactions in it; ends no segment has, and segments uploaded without one, answer
/// `None`; a snapshot the manifest names but the store lost is a typed error.
#[test]
fn producer_snapshots_come_back_by_segment_end() {
    use engine::log::batch::{self, NewRecord};
    use engine::log::control::{encode_marker, encode_transactional, ControlType};
    use engine::log::producer_state::{AbortedTxn, ProducerStates};
    use engine::log::{LogConfig, PartitionLog};

    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&dir.path().join("log"), cfg, T0).unwrap();
    let rec = |i: i64| NewRecord {
        key: None,
        value: Some(bytes::Bytes::from(format!("v{i}"))),
        timestamp: T0 + i,
        headers: Vec::new(),
    };
    let append = |log: &mut PartitionLog, b: bytes::Bytes| {
        let h = batch::validate(&b).unwrap();
        log.append(&h, &b, 0, T0).unwrap();
    };
    // Producer 5 commits (offsets 0-1, marker 2); producer 6 aborts (3-4, marker 5).
    append(
        &mut log,
        encode_transactional(&[rec(0), rec(1)], 5, 0).unwrap(),
    );
    append(&mut log, encode_marker(5, 0, ControlType::Commit, 0, T0));
    append(
        &mut log,
        encode_transactional(&[rec(3), rec(4)], 6, 0).unwrap(),
    );
    append(&mut log, encode_marker(6, 0, ControlType::Abort, 0, T0));
    log.roll(T0).unwrap();
    append(&mut log, encode_transactional(&[rec(6)], 5, 0).unwrap());
    append(&mut log, encode_marker(5, 0, ControlType::Commit, 0, T0));
    log.roll(T0).unwrap();
    let mut segs = sealed_segments(&log);
    assert_eq!(segs.len(), 2);
    assert!(segs.iter().all(|s| s.producer_snapshot.is_some()));
    let local = std::fs::read(segs[1].producer_snapshot.as_ref().unwrap()).unwrap();

    let t = Tiering::start(config(
        &dir.path().join("objects"),
        &dir.path().join("cache"),
    ))
    .unwrap();
    let p = partition(0);
    let q = partition(1);
    block_on(async {
        t.open(&p).await.unwrap();
        upload_all(&t, &p, &segs).await;
        let got = t
            .producer_snapshot(&p, 8)
            .await
            .unwrap()
            .expect("a snapshot");
        assert_eq!(got, local);
        let states = ProducerStates::decode_snapshot(&got).unwrap();
        assert_eq!(
            states.aborted(),
            &[AbortedTxn {
                producer_id: 6,
                first_offset: 3,
                last_offset: 5,
            }]
        );
        assert!(states.entry(5).is_some());
        // The first segment's, by its own end; no segment ends at 7.
        assert!(t.producer_snapshot(&p, 6).await.unwrap().is_some());
        assert_eq!(t.producer_snapshot(&p, 7).await.unwrap(), None);
        // No manifest at all (nothing uploaded): none either.
        assert_eq!(t.producer_snapshot(&q, 8).await.unwrap(), None);

        // Uploaded without snapshots (releases before transactions): none.
        t.open(&q).await.unwrap();
        for s in &mut segs {
            s.producer_snapshot = None;
        }
        upload_all(&t, &q, &segs).await;
        assert_eq!(t.producer_snapshot(&q, 8).await.unwrap(), None);

        // Named by the manifest but gone from the store: damage, not absence.
        let key = layout::segment_key(p.topic_id, 0, 6, ObjectKind::ProducerSnapshot);
        t.store().delete(&key).await.unwrap();
        assert!(matches!(
            t.producer_snapshot(&p, 8).await,
            Err(RemoteError::Corrupt(_))
        ));
    });
}
