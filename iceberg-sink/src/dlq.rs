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
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableIdent};
use uuid::Uuid;

use crate::error::SinkError;
use crate::key_value::{self, Row, META};
use crate::offsets::{self, Offsets, Span};
use crate::{commit, files};

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

/// One topic's dead-letter table, written by its translator task.
pub struct DeadLetters {
    topic: String,
    topic_id: Uuid,
    /// The table as last loaded or committed (`None`: not created yet) and the offsets it
    /// covers; `None` until loaded.
    loaded: Option<(Option<Table>, Offsets)>,
}

impl DeadLetters {
    pub fn new(topic: &str, topic_id: Uuid) -> Self {
        DeadLetters {
            topic: topic.to_string(),
            topic_id,
            loaded: None,
        }
    }

    /// Forgets the table as loaded: the next write reloads it.
    pub fn forget(&mut self) {
        self.loaded = None;
    }

    /// Commits dead letters to the table `ident` (`<topic>~dlq`), before the round's main
    /// commit, recording the round's offsets there too: after a crash before the main
    /// commit, the letters the table already holds are skipped. Returns how many it wrote.
    pub async fn write(
        &mut self,
        catalog: &dyn Catalog,
        ident: &TableIdent,
        mut letters: Vec<Letter<'_>>,
        spans: &[Span],
        next: &Offsets,
    ) -> Result<u64, SinkError> {
        if self.loaded.is_none() {
            self.loaded = Some(match catalog.load_table(ident).await {
                Ok(t) => {
                    let o = offsets::committed(t.metadata(), &self.topic_id.to_string());
                    (Some(t), o)
                }
                Err(e) if e.kind() == ErrorKind::TableNotFound => (None, Offsets::new()),
                Err(e) => return Err(e.into()),
            });
        }
        let (table, done) = self.loaded.clone().unwrap_or_default();
        letters.retain(|l| l.row.record.offset >= done.get(&l.row.partition).copied().unwrap_or(0));
        if letters.is_empty() {
            return Ok(0);
        }
        let table = match table {
            Some(t) => t,
            None => {
                crate::table::create_table(
                    catalog,
                    &self.topic,
                    self.topic_id,
                    ident,
                    "()",
                    schema()?,
                )
                .await?
            }
        };
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(
            table.metadata().current_schema(),
        )?);
        let n = letters.len() as u64;
        let batch = batch(&arrow, &letters)?;
        let data_files = files::write(&table, vec![batch], Uuid::new_v4().to_string()).await?;
        let topic_id = self.topic_id.to_string();
        let round = commit::Round {
            advance: spans
                .iter()
                .map(|s| {
                    let p = s.partition;
                    let n = next.get(&p).copied().unwrap_or(0);
                    (p, done.get(&p).copied(), n)
                })
                .collect(),
            files: data_files,
            ranges: Default::default(),
        };
        let table = match commit::append(catalog, table, &topic_id, round).await? {
            commit::Outcome::Committed(t) => t,
            commit::Outcome::Superseded(_) => {
                // Another broker wrote these dead letters (a leadership change): reload all.
                self.loaded = None;
                return Err(SinkError::Table {
                    table: ident.to_string(),
                    message: "dead letters superseded by another writer; reloading".into(),
                });
            }
        };
        let done = offsets::committed(table.metadata(), &topic_id);
        self.loaded = Some((Some(table), done));
        Ok(n)
    }
}
