//! The dead-letter table `<topic>~dlq`: records a schema-driven topic could not decode, with
//! their raw key and value and why.
//!
//! ```text
//! kafka        struct<partition, offset, timestamp, headers>   (as in the topic's table)
//! key, value   binary
//! reason_code  string   a stable class (e.g. payload_mismatch, unknown_schema_id)
//! reason       string   the decoder's message
//! ```

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema as ArrowSchema;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use crate::error::SinkError;
use crate::key_value::{self, Row, META};

pub fn schema() -> Result<Schema, SinkError> {
    Ok(Schema::builder()
        .with_fields(vec![
            key_value::meta_field().into(),
            NestedField::optional(9, "key", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::optional(10, "value", Type::Primitive(PrimitiveType::Binary)).into(),
            NestedField::required(11, "reason_code", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(12, "reason", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()?)
}

/// One dead letter.
pub struct Letter<'a> {
    pub row: Row<'a>,
    pub code: &'static str,
    pub reason: String,
}

pub fn batch(arrow: &Arc<ArrowSchema>, letters: &[Letter<'_>]) -> Result<RecordBatch, SinkError> {
    let rows: Vec<Row<'_>> = letters
        .iter()
        .map(|l| Row {
            partition: l.row.partition,
            record: l.row.record,
        })
        .collect();
    let mut codes = StringBuilder::new();
    let mut reasons = StringBuilder::new();
    for l in letters {
        codes.append_value(l.code);
        reasons.append_value(&l.reason);
    }
    let (codes, reasons): (ArrayRef, ArrayRef) =
        (Arc::new(codes.finish()), Arc::new(reasons.finish()));
    let mut cols: Vec<ArrayRef> = Vec::new();
    for f in arrow.fields().iter() {
        cols.push(match f.name().as_str() {
            META => key_value::meta_column(arrow.fields(), &rows)?,
            "key" => key_value::bytes_column(rows.iter().map(|r| r.record.key.as_deref())),
            "value" => key_value::bytes_column(rows.iter().map(|r| r.record.value.as_deref())),
            "reason_code" => codes.clone(),
            "reason" => reasons.clone(),
            other => {
                return Err(SinkError::Layout(format!(
                    "unexpected column '{other}' in a dead-letter table"
                )))
            }
        });
    }
    Ok(RecordBatch::try_new(arrow.clone(), cols)?)
}
