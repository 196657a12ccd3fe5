//! The `key_value` table layout and its Arrow batches:
//!
//! ```text
//! kafka  struct<partition int, offset long, timestamp timestamptz,
//!               headers list<struct<key string, value binary>>>   (required)
//! key    binary
//! value  binary
//! ```
//!
//! The `kafka` struct is shared with the schema-driven modes, which replace `value` by typed
//! columns. Arrays are built against the table's own Arrow schema (field ids in metadata),
//! so the Parquet files carry the ids Iceberg readers resolve columns by.

use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Fields, Schema as ArrowSchema};
use iceberg::spec::{ListType, NestedField, PrimitiveType, Schema, StructType, Type};
use kafka_protocol::records::Record;

use crate::error::SinkError;

/// Name of the metadata struct every Iceberg topic table starts with.
pub const META: &str = "kafka";

/// The metadata struct's fields, ids 2..=8 (the struct itself is 1).
pub fn meta_field() -> NestedField {
    let header = StructType::new(vec![
        NestedField::optional(7, "key", Type::Primitive(PrimitiveType::String)).into(),
        NestedField::optional(8, "value", Type::Primitive(PrimitiveType::Binary)).into(),
    ]);
    NestedField::required(
        1,
        META,
        Type::Struct(StructType::new(vec![
            NestedField::required(2, "partition", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::required(3, "offset", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(4, "timestamp", Type::Primitive(PrimitiveType::Timestamptz))
                .into(),
            NestedField::optional(
                5,
                "headers",
                Type::List(ListType::new(
                    NestedField::list_element(6, Type::Struct(header), true).into(),
                )),
            )
            .into(),
        ])),
    )
}

/// The whole `key_value` schema.
pub fn schema() -> Result<Schema, SinkError> {
    Ok(Schema::builder()
        .with_fields(vec![
            meta_field().into(),
            NestedField::optional(9, "key", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::optional(10, "value", Type::Primitive(PrimitiveType::Binary)).into(),
        ])
        .build()?)
}

/// One record as the translator hands it to a layout.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub partition: i32,
    pub record: &'a Record,
}

/// Builds the `kafka` struct column for `rows` against its Arrow type in `fields`.
pub fn meta_column(fields: &Fields, rows: &[Row<'_>]) -> Result<ArrayRef, SinkError> {
    let (_, meta) = fields
        .find(META)
        .ok_or_else(|| SinkError::Layout(format!("table has no '{META}' column")))?;
    let DataType::Struct(meta_fields) = meta.data_type() else {
        return Err(SinkError::Layout(format!("'{META}' is not a struct")));
    };
    let mut partition = Int32Builder::with_capacity(rows.len());
    let mut offset = Int64Builder::with_capacity(rows.len());
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows.len());
    let mut header_offsets = Vec::with_capacity(rows.len() + 1);
    header_offsets.push(0i32);
    let mut hkeys = StringBuilder::new();
    let mut hvalues = LargeBinaryBuilder::new();
    for r in rows {
        partition.append_value(r.partition);
        offset.append_value(r.record.offset);
        ts.append_value(r.record.timestamp.saturating_mul(1000));
        for (k, v) in &r.record.headers {
            hkeys.append_value(k.as_str());
            match v {
                Some(v) => hvalues.append_value(v),
                None => hvalues.append_null(),
            }
        }
        let n = i32::try_from(r.record.headers.len())
            .map_err(|_| SinkError::Layout("too many headers".into()))?;
        let last = *header_offsets.last().unwrap_or(&0);
        header_offsets.push(last + n);
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(meta_fields.len());
    for f in meta_fields.iter() {
        let col: ArrayRef = match f.name().as_str() {
            "partition" => Arc::new(partition.finish()),
            "offset" => Arc::new(offset.finish()),
            "timestamp" => {
                let tz = match f.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(ts.finish().with_timezone_opt(tz))
            }
            "headers" => {
                let DataType::List(elem) = f.data_type() else {
                    return Err(SinkError::Layout("headers is not a list".into()));
                };
                let DataType::Struct(hfields) = elem.data_type() else {
                    return Err(SinkError::Layout("header is not a struct".into()));
                };
                let kv = StructArray::try_new(
                    hfields.clone(),
                    vec![Arc::new(hkeys.finish()), Arc::new(hvalues.finish())],
                    None,
                )?;
                Arc::new(ListArray::try_new(
                    elem.clone(),
                    OffsetBuffer::new(header_offsets.clone().into()),
                    Arc::new(kv),
                    None,
                )?)
            }
            other => {
                return Err(SinkError::Layout(format!(
                    "unexpected field '{other}' in '{META}'"
                )))
            }
        };
        cols.push(col);
    }
    Ok(Arc::new(StructArray::try_new(
        meta_fields.clone(),
        cols,
        None,
    )?))
}

/// A round's batches in this layout: every record is a row, at most `rows_per_batch` rows a
/// batch.
pub fn batches(
    table_schema: &Schema,
    by_partition: &[(i32, Vec<Record>)],
    rows_per_batch: usize,
) -> Result<Vec<RecordBatch>, SinkError> {
    let schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(table_schema)?);
    let mut batches: Vec<RecordBatch> = Vec::new();
    for (p, recs) in by_partition {
        for chunk in recs.chunks(rows_per_batch) {
            let rows: Vec<Row<'_>> = chunk
                .iter()
                .map(|r| Row {
                    partition: *p,
                    record: r,
                })
                .collect();
            batches.push(batch(&schema, &rows)?);
        }
    }
    Ok(batches)
}

/// A `key_value` batch: the metadata struct, then the raw key and value bytes.
pub fn batch(schema: &Arc<ArrowSchema>, rows: &[Row<'_>]) -> Result<RecordBatch, SinkError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields().iter() {
        let col: ArrayRef = match f.name().as_str() {
            META => meta_column(schema.fields(), rows)?,
            "key" => bytes_column(rows.iter().map(|r| r.record.key.as_deref())),
            "value" => bytes_column(rows.iter().map(|r| r.record.value.as_deref())),
            other => {
                return Err(SinkError::Layout(format!(
                    "unexpected column '{other}' in a key_value table"
                )))
            }
        };
        cols.push(col);
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Raw bytes as Iceberg's binary (Arrow `LargeBinary`).
pub fn bytes_column<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> ArrayRef {
    let mut b = LargeBinaryBuilder::new();
    for v in values {
        match v {
            Some(v) => b.append_value(v),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}
