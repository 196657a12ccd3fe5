//! What the console shows of an Iceberg topic's tables, read through the catalog the
//! translator commits to: the newest data files of a table's current snapshot, and the newest
//! rows of its dead-letter table. Both do bounded work whatever the table holds: manifests are
//! read newest first and only until enough files are found, and only the last rows of the
//! newest dead-letter files are decoded, within a byte budget.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use futures_util::TryStreamExt;
use iceberg::arrow::ArrowFileReader;
use iceberg::spec::{DataContentType, Literal, ManifestContentType, PrimitiveLiteral};
use iceberg::table::Table;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use serde::Serialize;

use crate::error::SinkError;
use crate::key_value::META;

/// Most manifests one listing reads: a table gets one manifest per commit, so an old,
/// busy table has many; the newest files are in the newest manifests.
pub const MAX_MANIFESTS: usize = 64;
/// Most bytes (compressed, as stored) of dead-letter columns one request reads. Raw keys and
/// values that would not fit are left out (the rows are still shown, with their sizes unknown).
pub const DEAD_LETTER_READ_BYTES: u64 = 16 << 20;
/// Most newest dead-letter files looked into for one request.
const MAX_DEAD_LETTER_FILES: usize = 16;
/// Longest key or value shown per dead letter; the rest is cut (`truncated`).
pub const SHOWN_BYTES: usize = 4096;

/// One data file of a table's current snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub record_count: u64,
    pub file_size_in_bytes: u64,
    /// `field=value` per partition field (transformed values, as Iceberg stores them).
    pub partition: String,
    /// The snapshot that added the file and its data sequence number (newer is larger).
    pub added_snapshot_id: Option<i64>,
    pub sequence_number: Option<i64>,
}

/// The newest data files of a table's current snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Files {
    pub snapshot_id: Option<i64>,
    /// All data files of the snapshot, from its summary (`total-data-files`), if it says.
    pub total_files: Option<u64>,
    pub total_records: Option<u64>,
    /// Newest first, at most the limit asked.
    pub files: Vec<FileInfo>,
    pub manifests: usize,
    pub manifests_read: usize,
}

/// The newest `limit` data files of `table`'s current snapshot, newest first.
pub async fn newest_files(table: &Table, limit: usize) -> Result<Files, SinkError> {
    let meta = table.metadata();
    let Some(snapshot) = meta.current_snapshot() else {
        return Ok(Files::default());
    };
    let summary = &snapshot.summary().additional_properties;
    let number = |k: &str| summary.get(k).and_then(|v| v.parse().ok());
    let mut out = Files {
        snapshot_id: Some(snapshot.snapshot_id()),
        total_files: number("total-data-files"),
        total_records: number("total-records"),
        ..Default::default()
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    let mut manifests: Vec<_> = list
        .entries()
        .iter()
        .filter(|m| m.content == ManifestContentType::Data)
        .collect();
    out.manifests = manifests.len();
    // A manifest holds files added up to its own sequence number, so once `limit` files are
    // at least as new as the next manifest, no older manifest can hold a newer file.
    manifests.sort_by_key(|m| std::cmp::Reverse(m.sequence_number));
    let mut files: Vec<FileInfo> = Vec::new();
    for (i, mf) in manifests.iter().enumerate().take(MAX_MANIFESTS) {
        let manifest = mf.load_manifest(table.file_io()).await?;
        out.manifests_read += 1;
        let names: Vec<String> = manifest
            .metadata()
            .partition_spec()
            .fields()
            .iter()
            .map(|f| f.name.clone())
            .collect();
        for e in manifest.entries() {
            if !e.is_alive() || e.content_type() != DataContentType::Data {
                continue;
            }
            let f = e.data_file();
            files.push(FileInfo {
                path: f.file_path().to_string(),
                record_count: f.record_count(),
                file_size_in_bytes: f.file_size_in_bytes(),
                partition: names
                    .iter()
                    .zip(f.partition().iter())
                    .map(|(n, v)| format!("{n}={}", literal(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
                added_snapshot_id: e.snapshot_id(),
                sequence_number: e.sequence_number(),
            });
        }
        let next = manifests.get(i + 1).map(|m| m.sequence_number);
        let newer = |f: &FileInfo| next.is_none_or(|n| f.sequence_number.unwrap_or(0) >= n);
        if next.is_none() || files.iter().filter(|f| newer(f)).count() >= limit {
            break;
        }
    }
    files.sort_by(|a, b| {
        b.sequence_number
            .cmp(&a.sequence_number)
            .then_with(|| b.path.cmp(&a.path))
    });
    files.truncate(limit);
    out.files = files;
    Ok(out)
}

fn literal(v: Option<&Literal>) -> String {
    match v {
        None => "null".into(),
        Some(Literal::Primitive(p)) => match p {
            PrimitiveLiteral::Boolean(b) => b.to_string(),
            PrimitiveLiteral::Int(i) => i.to_string(),
            PrimitiveLiteral::Long(l) => l.to_string(),
            PrimitiveLiteral::Float(f) => f.to_string(),
            PrimitiveLiteral::Double(d) => d.to_string(),
            PrimitiveLiteral::String(s) => s.clone(),
            PrimitiveLiteral::Binary(b) => hex(b),
            PrimitiveLiteral::Int128(i) => i.to_string(),
            PrimitiveLiteral::UInt128(u) => u.to_string(),
            other => format!("{other:?}"),
        },
        Some(other) => format!("{other:?}"),
    }
}

/// A raw key or value of a dead letter, as the records API shows values that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// `text` (valid UTF-8 without control characters) or `hex`.
    pub format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    pub size: usize,
    pub truncated: bool,
}

impl Shown {
    pub fn of(b: &[u8]) -> Shown {
        let cut = &b[..b.len().min(SHOWN_BYTES)];
        // A cut may split a UTF-8 character: what is valid up to there is still text.
        let text = match std::str::from_utf8(cut) {
            Ok(s) => Some(s),
            Err(e) if cut.len() < b.len() && e.error_len().is_none() => {
                std::str::from_utf8(&cut[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        }
        .filter(|s| {
            !s.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        });
        match text {
            Some(t) => Shown {
                format: "text",
                text: Some(t.to_string()),
                hex: None,
                size: b.len(),
                truncated: cut.len() < b.len(),
            },
            None => Shown {
                format: "hex",
                text: None,
                hex: Some(hex(cut)),
                size: b.len(),
                truncated: cut.len() < b.len(),
            },
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One row of a dead-letter table.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp_ms: Option<i64>,
    /// `None` when null, or when left out to stay within [`DEAD_LETTER_READ_BYTES`].
    pub key: Option<Shown>,
    pub value: Option<Shown>,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
}

/// The newest rows of a dead-letter table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetters {
    pub snapshot_id: Option<i64>,
    /// Rows of the table, from its snapshot summary.
    pub total_records: Option<u64>,
    /// Newest first (the newest file's last row first).
    pub rows: Vec<DeadLetter>,
    /// Why raw keys and values are missing from some rows, if they are.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<String>,
}

/// The newest `limit` rows of the dead-letter table `table`.
pub async fn newest_dead_letters(table: &Table, limit: usize) -> Result<DeadLetters, SinkError> {
    let files = newest_files(table, MAX_DEAD_LETTER_FILES).await?;
    let mut out = DeadLetters {
        snapshot_id: files.snapshot_id,
        total_records: files.total_records,
        ..Default::default()
    };
    let mut budget = DEAD_LETTER_READ_BYTES;
    for f in &files.files {
        if out.rows.len() >= limit {
            break;
        }
        let need = limit - out.rows.len();
        let mut rows = last_rows(table, f, need, &mut budget, &mut out.omitted).await?;
        rows.reverse();
        out.rows.extend(rows);
    }
    Ok(out)
}

/// The last `need` rows of one dead-letter file, oldest first, reading only the row groups
/// that hold them, and their raw keys and values only while `budget` lasts.
async fn last_rows(
    table: &Table,
    file: &FileInfo,
    need: usize,
    budget: &mut u64,
    omitted: &mut Vec<String>,
) -> Result<Vec<DeadLetter>, SinkError> {
    let input = table.file_io().new_input(&file.path)?;
    let reader = ArrowFileReader::new(input.metadata().await?, input.reader().await?);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let meta = builder.metadata().clone();
    let schema = builder.parquet_schema();
    // The row groups from the end that together hold the last `need` rows.
    let mut groups = Vec::new();
    let mut rows = 0usize;
    for (i, rg) in meta.row_groups().iter().enumerate().rev() {
        if rows >= need {
            break;
        }
        groups.push(i);
        rows += usize::try_from(rg.num_rows()).unwrap_or(0);
    }
    groups.reverse();
    // Stored bytes of each root column (kafka, key, value, ...) in those row groups.
    let mut root_bytes: HashMap<usize, u64> = HashMap::new();
    for &g in &groups {
        for (leaf, c) in meta.row_group(g).columns().iter().enumerate() {
            let root = schema.get_column_root_idx(leaf);
            *root_bytes.entry(root).or_default() += u64::try_from(c.compressed_size()).unwrap_or(0);
        }
    }
    let root_index = |name: &str| {
        (0..schema.root_schema().get_fields().len())
            .find(|&i| schema.root_schema().get_fields()[i].name() == name)
    };
    let cost = |names: &[&str]| -> u64 {
        names
            .iter()
            .filter_map(|n| root_index(n))
            .map(|i| root_bytes.get(&i).copied().unwrap_or(0))
            .sum()
    };
    let small = [META, "reason_code", "reason"];
    let raw = ["key", "value"];
    let small_cost = cost(&small);
    if small_cost > *budget {
        omitted.push(format!(
            "{}: its last rows take {small_cost} bytes, more than is read per request",
            file.path
        ));
        return Ok(Vec::new());
    }
    let with_raw = small_cost + cost(&raw) <= *budget;
    if !with_raw {
        omitted.push(format!(
            "{}: keys and values not shown, their last {need} rows take {} bytes",
            file.path,
            cost(&raw)
        ));
    }
    *budget -= small_cost + if with_raw { cost(&raw) } else { 0 };
    let columns: Vec<&str> = if with_raw {
        small.iter().chain(raw.iter()).copied().collect()
    } else {
        small.to_vec()
    };
    let mask = ProjectionMask::roots(schema, columns.iter().filter_map(|n| root_index(n)));
    let stream = builder
        .with_row_groups(groups)
        .with_offset(rows.saturating_sub(need))
        .with_limit(need)
        .with_projection(mask)
        .build()?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(letters(b));
    }
    Ok(out)
}

/// The rows of one batch of a dead-letter table; columns it lacks come out as `None`, so a
/// table written by another tool is shown as far as it matches.
fn letters(b: &RecordBatch) -> Vec<DeadLetter> {
    let col = |n: &str| b.column_by_name(n).cloned();
    let kafka = col(META);
    let kafka = kafka.as_ref().and_then(|c| c.as_struct_opt());
    let field = |n: &str| kafka.and_then(|k: &StructArray| k.column_by_name(n).cloned());
    let (partition, offset, ts) = (field("partition"), field("offset"), field("timestamp"));
    let (key, value) = (col("key"), col("value"));
    let (code, reason) = (col("reason_code"), col("reason"));
    (0..b.num_rows())
        .map(|i| DeadLetter {
            partition: partition
                .as_ref()
                .and_then(|c| c.as_primitive_opt::<Int32Type>())
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i)),
            offset: offset
                .as_ref()
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i)),
            timestamp_ms: ts
                .as_ref()
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                .filter(|a| a.is_valid(i))
                .map(|a| a.value(i).div_euclid(1000)),
            key: key.as_ref().and_then(|c| binary(c, i)).map(Shown::of),
            value: value.as_ref().and_then(|c| binary(c, i)).map(Shown::of),
            reason_code: code.as_ref().and_then(|c| string(c, i)).map(str::to_string),
            reason: reason
                .as_ref()
                .and_then(|c| string(c, i))
                .map(str::to_string),
        })
        .collect()
}

/// Row `i` of a binary column, whichever Arrow binary type the file was read as.
fn binary(c: &ArrayRef, i: usize) -> Option<&[u8]> {
    if !c.is_valid(i) {
        return None;
    }
    if let Some(a) = c.as_binary_opt::<i64>() {
        return Some(a.value(i));
    }
    if let Some(a) = c.as_binary_opt::<i32>() {
        return Some(a.value(i));
    }
    c.as_binary_view_opt().map(|a| a.value(i))
}

fn string(c: &ArrayRef, i: usize) -> Option<&str> {
    if !c.is_valid(i) {
        return None;
    }
    if let Some(a) = c.as_string_opt::<i32>() {
        return Some(a.value(i));
    }
    if let Some(a) = c.as_string_opt::<i64>() {
        return Some(a.value(i));
    }
    c.as_string_view_opt().map(|a| a.value(i))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use iceberg::{Catalog as _, NamespaceIdent, TableIdent};
    use kafka_protocol::records::{Record, TimestampType};
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;

    use super::*;
    use crate::catalog::{Catalog, CatalogConfig};
    use crate::dlq::{self, Letter};
    use crate::key_value::Row;
    use crate::lake::BuiltinCatalog;
    use crate::offsets::Span;

    fn record(offset: i64, value: &[u8]) -> Record {
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
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        }
    }

    /// Dead letters written by the translator's own writer in three commits (offsets 0-2,
    /// 3-4, 5) come back newest first, as many as asked, with their raw bytes and reasons.
    #[tokio::test]
    async fn newest_files_and_dead_letters_of_a_real_table() {
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
        let lake = BuiltinCatalog::new(Arc::new(cat)).unwrap();
        let ident = TableIdent::new(NamespaceIdent::new("kafka".into()), "t~dlq".into());
        let mut writer = dlq::DeadLetters::new("t", uuid::Uuid::new_v4());
        for (from, to) in [(0i64, 3i64), (3, 5), (5, 6)] {
            let records: Vec<Record> = (from..to)
                .map(|o| record(o, if o == 5 { b"\x00\xffraw" } else { b"not avro" }))
                .collect();
            let letters = records
                .iter()
                .map(|r| Letter {
                    row: Row {
                        partition: 0,
                        record: r,
                    },
                    code: "bad_wire_format",
                    reason: format!("no magic byte at offset {}", r.offset),
                })
                .collect();
            let next = BTreeMap::from([(0, to)]);
            let spans = [Span {
                partition: 0,
                from,
                to,
            }];
            writer
                .write(&lake, &ident, letters, &spans, &next)
                .await
                .unwrap();
        }
        let table = lake.load_table(&ident).await.unwrap();

        let files = newest_files(&table, 2).await.unwrap();
        assert_eq!(files.total_files, Some(3));
        assert_eq!(files.total_records, Some(6));
        assert_eq!(files.manifests, 3);
        assert_eq!(files.manifests_read, 2, "the oldest manifest is not read");
        let counts: Vec<u64> = files.files.iter().map(|f| f.record_count).collect();
        assert_eq!(counts, [1, 2]);
        assert!(files
            .files
            .iter()
            .all(|f| f.path.ends_with(".parquet") && f.file_size_in_bytes > 0));

        let all = newest_files(&table, 50).await.unwrap();
        assert_eq!(all.files.len(), 3);

        let dl = newest_dead_letters(&table, 4).await.unwrap();
        let offsets: Vec<Option<i64>> = dl.rows.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [Some(5), Some(4), Some(3), Some(2)]);
        let newest = &dl.rows[0];
        assert_eq!(newest.partition, Some(0));
        assert_eq!(newest.timestamp_ms, Some(1_700_000_000_005));
        assert_eq!(
            newest.value.as_ref().unwrap().hex.as_deref(),
            Some("00ff726177")
        );
        assert_eq!(newest.key.as_ref().unwrap().text.as_deref(), Some("k5"));
        assert_eq!(newest.reason_code.as_deref(), Some("bad_wire_format"));
        assert_eq!(newest.reason.as_deref(), Some("no magic byte at offset 5"));
        assert_eq!(
            dl.rows[1].value.as_ref().unwrap().text.as_deref(),
            Some("not avro")
        );
        assert_eq!(dl.total_records, Some(6));
        assert!(dl.omitted.is_empty());
    }

    #[test]
    fn raw_bytes_are_shown_as_text_or_hex_and_cut() {
        assert_eq!(Shown::of(b"hello").text.as_deref(), Some("hello"));
        let h = Shown::of(b"\x00\xff\x01");
        assert_eq!((h.format, h.hex.as_deref()), ("hex", Some("00ff01")));
        // 'é' is 2 bytes: after one 'a' the cut splits one, and the text stops before it.
        let long = format!("a{}", "é".repeat(SHOWN_BYTES));
        let s = Shown::of(long.as_bytes());
        assert_eq!(s.format, "text");
        assert!(s.truncated && s.size == 1 + 2 * SHOWN_BYTES);
        assert_eq!(s.text.as_deref().map(str::len), Some(SHOWN_BYTES - 1));
        let big = vec![0u8; SHOWN_BYTES + 10];
        let b = Shown::of(&big);
        assert!(b.truncated && b.hex.as_deref().map(str::len) == Some(2 * SHOWN_BYTES));
    }

    #[test]
    fn literals_read_as_text() {
        assert_eq!(literal(None), "null");
        assert_eq!(
            literal(Some(&Literal::Primitive(PrimitiveLiteral::Int(7)))),
            "7"
        );
        assert_eq!(
            literal(Some(&Literal::Primitive(PrimitiveLiteral::String(
                "a".into()
            )))),
            "a"
        );
    }
}
