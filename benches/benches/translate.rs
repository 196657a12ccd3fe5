//! Iceberg translation throughput on one core: Kafka records -> Arrow (`key_value` layout) ->
//! zstd Parquet through iceberg's writers -> an append commit to the built-in catalog on the
//! local filesystem. The log read is left out (see `read`); this is the part the translator
//! adds. Prints records/s and MB/s of record payload (key + value + headers).
//!
//! `cargo bench -p icestream-benches --bench translate` (RECORDS=1000000 VALUE_BYTES=200)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog as _, NamespaceIdent, TableCreation};
use iceberg_sink::catalog::{Catalog, CatalogConfig};
use iceberg_sink::key_value::{self, Row};
use iceberg_sink::lake::BuiltinCatalog;
use iceberg_sink::{files, iceberg, spec};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{Record, TimestampType};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn records(n: usize, value_bytes: usize) -> Vec<Record> {
    let base_ts = 1_795_000_000_000i64;
    (0..n)
        .map(|i| {
            // Values that compress like typical JSON-ish payloads, not like zeros.
            let value: Vec<u8> = format!("{{\"id\":{i},\"user\":\"u{}\",\"pad\":\"", i % 9973)
                .bytes()
                .chain((0..value_bytes).map(|j| b'a' + ((i * 31 + j * 7) % 26) as u8))
                .take(value_bytes)
                .collect();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                // Two hours of data: two hour(timestamp) partitions.
                timestamp: base_ts + (i as i64 * 7_200_000 / n as i64),
                key: Some(Bytes::from(format!("key-{:08}", i % 100_000))),
                value: Some(Bytes::from(value)),
                headers: IndexMap::new(),
            }
        })
        .collect()
}

fn main() {
    let n = env("RECORDS", 1_000_000);
    let value_bytes = env("VALUE_BYTES", 200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("tempdir path");
        let store = object_store::local::LocalFileSystem::new_with_prefix(&root).expect("store");
        let inner = Arc::new(Catalog::new(
            Arc::new(store),
            CatalogConfig {
                warehouse_location: format!("file://{}/warehouse", root.display()),
                warehouse_path: object_store::path::Path::from("warehouse"),
                catalog_path: object_store::path::Path::from("catalog"),
            },
        ));
        let cat = BuiltinCatalog::new(inner).expect("catalog");
        let ns = NamespaceIdent::new("bench".into());
        cat.create_namespace(&ns, HashMap::new()).await.expect("ns");
        let schema = key_value::schema().expect("schema");
        let spec = spec::bind(&spec::parse("(hour(kafka.timestamp))").expect("spec"), &schema)
            .expect("bind");
        let table = cat
            .create_table(
                &ns,
                TableCreation::builder()
                    .name("t".into())
                    .schema(schema)
                    .partition_spec(spec)
                    .build(),
            )
            .await
            .expect("table");
        let recs = records(n, value_bytes);
        let payload: usize = recs
            .iter()
            .map(|r| r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len))
            .sum();

        let t0 = Instant::now();
        let arrow = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
                .expect("arrow schema"),
        );
        let mut batches = Vec::new();
        for chunk in recs.chunks(65_536) {
            let rows: Vec<Row<'_>> = chunk
                .iter()
                .map(|r| Row {
                    partition: 0,
                    record: r,
                })
                .collect();
            batches.push(key_value::batch(&arrow, &rows).expect("batch"));
        }
        let t_arrow = t0.elapsed();
        let data_files = files::write(&table, batches, "bench".into())
            .await
            .expect("write");
        let t_write = t0.elapsed();
        let parquet: u64 = data_files.iter().map(|f| f.file_size_in_bytes()).sum();
        let nfiles = data_files.len();
        let tx = Transaction::new(&table);
        let tx = tx
            .fast_append()
            .add_data_files(data_files)
            .apply(tx)
            .expect("append");
        tx.commit(&cat).await.expect("commit");
        let total = t0.elapsed().as_secs_f64();
        println!(
            "translate key_value: {n} records, {:.1} MB payload ({value_bytes} B values) -> {nfiles} Parquet files, {:.1} MB (zstd)",
            payload as f64 / 1e6,
            parquet as f64 / 1e6
        );
        println!(
            "  arrow {:.2} s, parquet {:.2} s, commit {:.3} s, total {:.2} s",
            t_arrow.as_secs_f64(),
            (t_write - t_arrow).as_secs_f64(),
            total - t_write.as_secs_f64(),
            total
        );
        println!(
            "  one core: {:.0} records/s, {:.1} MB/s of payload",
            n as f64 / total,
            payload as f64 / 1e6 / total
        );
    });
}
