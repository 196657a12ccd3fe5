//! The committer's commits and wire format against a real table of the built-in catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use iceberg::table::Table;
use iceberg::{Catalog as _, NamespaceIdent, TableIdent};
use kafka_protocol::records::{Record, TimestampType};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use uuid::Uuid;

use super::wire::{decode_ranges, AnswerBody, RoundBody};
use super::{Answer, Handover};
use crate::catalog::{Catalog, CatalogConfig};
use crate::commit::{self, Round};
use crate::lake::BuiltinCatalog;
use crate::offsets::{self, Offsets};
use crate::{files, key_value};

fn record(offset: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1_700_000_000_000 + offset * 1000,
        key: Some(Bytes::from(format!("k{offset}"))),
        value: Some(Bytes::from(format!("v{offset}"))),
        headers: Default::default(),
    }
}

struct Lake {
    _dir: tempfile::TempDir,
    catalog: BuiltinCatalog,
    topic_id: Uuid,
    table: Table,
}

/// A `key_value` table partitioned by hour, as the translator creates it.
async fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let cat = Catalog::new(
        store,
        CatalogConfig {
            warehouse_location: format!("file://{}/warehouse", dir.path().display()),
            warehouse_path: Path::from("warehouse"),
            catalog_path: Path::from("catalog"),
        },
    );
    let catalog = BuiltinCatalog::new(Arc::new(cat)).unwrap();
    let topic_id = Uuid::new_v4();
    let ident = TableIdent::new(NamespaceIdent::new("kafka".into()), "t".into());
    let table = crate::table::create_table(
        &catalog,
        "t",
        topic_id,
        &ident,
        "(hour(kafka.timestamp))",
        key_value::schema().unwrap(),
    )
    .await
    .unwrap();
    Lake {
        _dir: dir,
        catalog,
        topic_id,
        table,
    }
}

/// A round of partition `p`'s offsets `from..to`, its files written into the table.
async fn round(table: &Table, p: i32, start: Option<i64>, from: i64, to: i64) -> Round {
    let recs: Vec<Record> = (from..to).map(record).collect();
    let batches =
        key_value::batches(table.metadata().current_schema(), &[(p, recs)], 1000).unwrap();
    let files = files::write(table, batches, Uuid::new_v4().to_string())
        .await
        .unwrap();
    Round {
        advance: vec![(p, start, to)],
        files,
        ranges: BTreeMap::from([(p, (from, to - 1))]),
    }
}

fn offsets_of(v: &[(i32, i64)]) -> Offsets {
    v.iter().copied().collect()
}

#[tokio::test]
async fn a_batch_lands_in_one_snapshot_and_a_stale_round_is_superseded() {
    let l = lake().await;
    let id = l.topic_id.to_string();
    let r0 = round(&l.table, 0, None, 0, 10).await;
    let r1 = round(&l.table, 1, None, 0, 4).await;
    // Partition 0 again from the same start: an old leader's round during a failover.
    let dup = round(&l.table, 0, None, 0, 7).await;
    let landed = commit::append_all(&l.catalog, l.table.clone(), &id, &[r0, r1, dup])
        .await
        .unwrap();
    assert_eq!(landed.committed, [true, true, false]);
    assert!(landed.snapshot);
    let meta = landed.table.metadata();
    assert_eq!(meta.snapshots().count(), 1, "one snapshot for the batch");
    assert_eq!(
        offsets::committed(meta, &id),
        offsets_of(&[(0, 10), (1, 4)])
    );
    let summary = &meta
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(summary[offsets::RANGES], "0=0-9,1=0-3");
    assert_eq!(summary["added-records"], "14");

    // Committed on the stale base (the empty table): the compare-and-swap fails, the table is
    // reloaded, and the round that starts where the table stands lands alone.
    let late = round(&l.table, 0, None, 0, 12).await;
    let next = round(&l.table, 1, Some(4), 4, 6).await;
    let landed = commit::append_all(&l.catalog, l.table.clone(), &id, &[late, next])
        .await
        .unwrap();
    assert_eq!(landed.committed, [false, true]);
    let reloaded = l.catalog.load_table(l.table.identifier()).await.unwrap();
    assert_eq!(
        offsets::committed(reloaded.metadata(), &id),
        offsets_of(&[(0, 10), (1, 6)])
    );
    assert_eq!(reloaded.metadata().snapshots().count(), 2);

    // Nothing fits: no snapshot.
    let again = round(&reloaded, 1, Some(4), 4, 6).await;
    let landed = commit::append_all(&l.catalog, reloaded, &id, &[again])
        .await
        .unwrap();
    assert_eq!(
        (landed.committed.as_slice(), landed.snapshot),
        (&[false][..], false)
    );
    assert_eq!(landed.table.metadata().snapshots().count(), 2);
}

fn handover(l: &Lake, r: Round) -> Handover {
    Handover {
        topic: "t".into(),
        topic_id: l.topic_id,
        table: l.table.identifier().clone(),
        schema_id: l.table.metadata().current_schema_id(),
        partition_spec_id: l.table.metadata().default_partition_spec_id(),
        round: r,
    }
}

#[tokio::test]
async fn a_round_travels_as_json_and_lands_like_the_original() {
    let l = lake().await;
    let h = handover(&l, round(&l.table, 2, None, 0, 5).await);
    let json = serde_json::to_vec(&RoundBody::of(&h, &l.table).unwrap()).unwrap();
    let back: RoundBody = serde_json::from_slice(&json).unwrap();
    let got = back.into_handover(&l.table).unwrap();
    assert_eq!(got.round.advance, h.round.advance);
    assert_eq!(got.round.ranges, h.round.ranges);
    assert_eq!(
        got.round.files, h.round.files,
        "data files, partition values and stats"
    );
    assert_eq!((got.topic.as_str(), got.table), ("t", h.table.clone()));
    let id = l.topic_id.to_string();
    let landed = commit::append_all(&l.catalog, l.table.clone(), &id, &[got.round])
        .await
        .unwrap();
    assert_eq!(landed.committed, [true]);
    let meta = landed.table.metadata();
    assert_eq!(offsets::committed(meta, &id), offsets_of(&[(2, 5)]));
    assert_eq!(
        meta.current_snapshot()
            .unwrap()
            .summary()
            .additional_properties["added-records"],
        "5"
    );
}

#[tokio::test]
async fn forged_rounds_are_refused() {
    let l = lake().await;
    let h = handover(&l, round(&l.table, 0, None, 0, 3).await);
    let good = serde_json::to_value(RoundBody::of(&h, &l.table).unwrap()).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        edit(&mut v);
        let body: RoundBody = serde_json::from_value(v).unwrap();
        body.into_handover(&l.table).unwrap_err()
    };
    let e = refused(&|v| v["data_files"][0]["file_path"] = "s3://elsewhere/x.parquet".into());
    assert!(e.contains("not under the table's location"), "{e}");
    let e = refused(&|v| {
        let p = v["data_files"][0]["file_path"]
            .as_str()
            .unwrap()
            .to_string();
        v["data_files"][0]["file_path"] = p.replace("/data/", "/data/../../../").into();
    });
    assert!(e.contains("not under the table's location"), "{e}");
    let e = refused(&|v| v["data_files"][0]["record_count"] = "many".into());
    assert!(e.contains("malformed data file"), "{e}");
    let e = refused(&|v| v["data_files"] = serde_json::json!([]));
    assert!(e.contains("no data files"), "{e}");
    let e = refused(&|v| v["schema_id"] = 42.into());
    assert!(e.contains("schema 42"), "{e}");
    let e = refused(&|v| v["partition_spec_id"] = 9.into());
    assert!(e.contains("partition spec 9"), "{e}");
    let e = refused(&|v| v["offset_ranges"] = "0=0-9".into());
    assert!(e.contains("outside the round"), "{e}");
    let e = refused(&|v| v["offset_ranges"] = "1=0-1".into());
    assert!(e.contains("does not advance"), "{e}");
    let e = refused(&|v| v["offset_ranges"] = "0=x".into());
    assert!(e.contains("malformed offset_ranges"), "{e}");
    let e = refused(&|v| v["partitions"][0]["to"] = (-1).into());
    assert!(e.contains("back to"), "{e}");
    let e = refused(&|v| v["namespace"] = serde_json::json!([]));
    assert!(!e.is_empty());
}

#[test]
fn answers_round_trip_and_ranges_decode() {
    for a in [
        Answer::Committed {
            offsets: offsets_of(&[(0, 3), (7, 9)]),
        },
        Answer::Superseded {
            offsets: Offsets::new(),
        },
        Answer::NotCommitter { leader: Some(2) },
        Answer::NotCommitter { leader: None },
    ] {
        let json = serde_json::to_string(&AnswerBody::of(&a)).unwrap();
        let back: AnswerBody = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_answer().unwrap(), a, "{json}");
    }
    let bad: AnswerBody =
        serde_json::from_str(r#"{"outcome":"committed","offsets":{"x":1}}"#).unwrap();
    assert!(bad.into_answer().is_err());
    let r = BTreeMap::from([(0, (1, 5)), (3, (0, 0))]);
    assert_eq!(decode_ranges(&offsets::encode_ranges(&r)), Some(r));
    assert_eq!(decode_ranges("0=1-2,0=3-4"), None);
    assert_eq!(decode_ranges("0=1"), None);
}
