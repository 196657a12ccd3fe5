//! The schema-driven layouts (`value_schema_id_prefix`, `value_schema_latest`): the `kafka`
//! metadata struct and the raw `key`, then the value's fields as top-level columns, decoded
//! with the schema registry through [`crate::decode`].
//!
//! Records that cannot be decoded (bad wire format, unknown schema, payload mismatch, or a
//! schema change Iceberg cannot take) are returned as invalid, for the dead-letter table.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema as ArrowSchema;
use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::Catalog;
use kafka_protocol::records::Record;

use crate::decode::{self, DecodeError, DecoderCache, FieldIds, SchemaSource, ValueDecoder};
use crate::dlq::Letter;
use crate::error::SinkError;
use crate::key_value::{self, Row, META};

/// The columns every schema-driven table starts with (ids 1..=9).
pub fn base_schema() -> Result<Schema, SinkError> {
    Ok(Schema::builder()
        .with_fields(vec![
            key_value::meta_field().into(),
            NestedField::optional(9, "key", Type::Primitive(PrimitiveType::Binary)).into(),
        ])
        .build()?)
}

fn is_base(name: &str) -> bool {
    name == META || name == "key"
}

/// One record's fate.
pub enum Decoded<'a> {
    Valid {
        row: Row<'a>,
        value: decode::Row,
        decoder: Arc<ValueDecoder>,
    },
    Invalid {
        row: Row<'a>,
        code: &'static str,
        reason: String,
    },
}

/// A schema-driven round, decoded: each record's fate, and the table schema that takes every
/// value schema seen, with the schema ids whose change it cannot take (and why).
pub struct Plan<'a> {
    pub decoded: Vec<Decoded<'a>>,
    pub target: Schema,
    pub refused: HashMap<i32, String>,
}

/// Decodes record values of one topic, caching compiled schemas.
pub struct SchemaLayout {
    cache: DecoderCache,
    /// `Some(subject)` for `value_schema_latest`.
    latest_subject: Option<String>,
}

impl SchemaLayout {
    pub fn new(source: Arc<dyn SchemaSource>, topic: &str, latest: bool) -> Self {
        SchemaLayout {
            cache: DecoderCache::new(source),
            latest_subject: latest.then(|| format!("{topic}-value")),
        }
    }

    /// Decodes a round's records and works out the schema the table must have to take them.
    pub fn plan<'a>(
        &mut self,
        by_partition: &'a [(i32, Vec<Record>)],
        current: &Schema,
    ) -> Plan<'a> {
        let decoded = self.decode(by_partition);
        let mut decoders: Vec<Arc<ValueDecoder>> = Vec::new();
        for d in &decoded {
            if let Decoded::Valid { decoder, .. } = d {
                if !decoders.iter().any(|x| Arc::ptr_eq(x, decoder)) {
                    decoders.push(decoder.clone());
                }
            }
        }
        let (target, refused) = target_schema(current, &decoders);
        Plan {
            decoded,
            target,
            refused,
        }
    }

    /// Decodes a round's records; never fails as a whole.
    pub fn decode<'a>(&mut self, by_partition: &'a [(i32, Vec<Record>)]) -> Vec<Decoded<'a>> {
        self.cache.refresh_latest();
        let mut out = Vec::new();
        for (p, recs) in by_partition {
            for r in recs {
                let row = Row {
                    partition: *p,
                    record: r,
                };
                let res = match r.value.as_deref() {
                    None => Err(DecodeError::NullValue),
                    Some(v) => match &self.latest_subject {
                        Some(subject) => self.cache.decode_latest(subject, v),
                        None => self.cache.decode_prefixed(v),
                    },
                };
                out.push(match res {
                    Ok(d) => Decoded::Valid {
                        row,
                        value: d.row,
                        decoder: d.decoder,
                    },
                    Err(e) => Decoded::Invalid {
                        row,
                        code: e.code(),
                        reason: e.to_string(),
                    },
                });
            }
        }
        out
    }
}

/// The value columns a decoder brings, all optional at the top level (so rows of other schema
/// versions can leave them null), with ids stable against `current`.
fn incoming(current: &Schema, decoder: &ValueDecoder) -> StructType {
    let mut ids = FieldIds::from_schema(current);
    let vt = decoder.iceberg_type(&mut ids);
    let mut fields: Vec<NestedFieldRef> = current
        .as_struct()
        .fields()
        .iter()
        .filter(|f| is_base(&f.name))
        .cloned()
        .collect();
    for f in vt.fields() {
        let mut f = (**f).clone();
        f.required = false;
        fields.push(Arc::new(f));
    }
    StructType::new(fields)
}

/// The table schema that takes every decoder's values: `current` evolved in turn by each
/// schema version seen. Decoders whose change Iceberg cannot take are returned apart (their
/// records go to the dead-letter table).
pub fn target_schema(
    current: &Schema,
    decoders: &[Arc<ValueDecoder>],
) -> (Schema, HashMap<i32, String>) {
    let mut schema = current.clone();
    let mut refused = HashMap::new();
    for d in decoders {
        match decode::evolve(&schema, &incoming(&schema, d)) {
            Ok(Some(s)) => match additions(&schema, &s) {
                Ok(_) => schema = s,
                Err(reason) => {
                    refused.insert(d.schema_id(), reason);
                }
            },
            Ok(None) => {}
            Err(e) => {
                refused.insert(d.schema_id(), e.to_string());
            }
        }
    }
    (schema, refused)
}

/// The columns `target` adds to `current`, as `UpdateSchemaAction` additions (parent path,
/// field). Any other difference (type widening, required -> optional) is refused: the
/// catalog-neutral transaction API only adds columns.
pub fn additions(current: &Schema, target: &Schema) -> Result<Vec<AddColumn>, String> {
    let mut out = Vec::new();
    diff_struct(current.as_struct(), target.as_struct(), None, &mut out)?;
    Ok(out)
}

fn diff_struct(
    cur: &StructType,
    tgt: &StructType,
    parent: Option<&str>,
    out: &mut Vec<AddColumn>,
) -> Result<(), String> {
    for f in tgt.fields() {
        let path = match parent {
            Some(p) => format!("{p}.{}", f.name),
            None => f.name.clone(),
        };
        match cur.field_by_name(&f.name) {
            None => out.push(match parent {
                None => AddColumn::optional(&f.name, (*f.field_type).clone()),
                Some(p) => AddColumn::builder()
                    .parent(p.to_string())
                    .name(f.name.clone())
                    .field_type((*f.field_type).clone())
                    .build(),
            }),
            Some(c) => match (c.field_type.as_ref(), f.field_type.as_ref()) {
                (Type::Struct(cs), Type::Struct(ts)) => diff_struct(cs, ts, Some(&path), out)?,
                (a, b) if same_shape(a, b) => {
                    if c.required && !f.required {
                        return Err(format!("column {path} would become optional"));
                    }
                }
                (a, b) => return Err(format!("column {path} changes type from {a} to {b}")),
            },
        }
    }
    Ok(())
}

/// Equal types, ignoring field ids (lists and maps compare their element types).
fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::List(x), Type::List(y)) => {
            same_shape(&x.element_field.field_type, &y.element_field.field_type)
        }
        (Type::Map(x), Type::Map(y)) => {
            same_shape(&x.key_field.field_type, &y.key_field.field_type)
                && same_shape(&x.value_field.field_type, &y.value_field.field_type)
        }
        (Type::Struct(x), Type::Struct(y)) => {
            x.fields().len() == y.fields().len()
                && x.fields()
                    .iter()
                    .zip(y.fields())
                    .all(|(p, q)| p.name == q.name && same_shape(&p.field_type, &q.field_type))
        }
        _ => false,
    }
}

/// Evolves `table` from `current` to `target` (a commit of its own, before the data's); `None`
/// when it already has every column.
pub async fn evolve(
    catalog: &dyn Catalog,
    table: &Table,
    current: &Schema,
    target: &Schema,
) -> Result<Option<Table>, SinkError> {
    let adds = additions(current, target).map_err(SinkError::Layout)?;
    if adds.is_empty() {
        return Ok(None);
    }
    let tx = Transaction::new(table);
    let mut action = tx.update_schema();
    for a in adds {
        action = action.add_column(a);
    }
    Ok(Some(action.apply(tx)?.commit(catalog).await?))
}

/// A round's batches against the table's schema (at most `rows_per_batch` rows a batch), and
/// the records it cannot take, as dead letters: invalid ones, those of a schema whose change
/// was refused, and values that do not fit.
pub fn prepare<'a>(
    schema: &Schema,
    decoded: Vec<Decoded<'a>>,
    refused: &HashMap<i32, String>,
    rows_per_batch: usize,
) -> Result<(Vec<RecordBatch>, Vec<Letter<'a>>), SinkError> {
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(schema)?);
    let mut rows: Vec<Row<'a>> = Vec::new();
    let mut values = Vec::new();
    let mut letters = Vec::new();
    for d in decoded {
        match d {
            Decoded::Valid {
                row,
                value,
                decoder,
            } => match refused.get(&decoder.schema_id()) {
                Some(reason) => letters.push(Letter {
                    row,
                    code: "incompatible_schema",
                    reason: reason.clone(),
                }),
                None => match fits(schema, &value) {
                    Ok(()) => {
                        rows.push(row);
                        values.push(value);
                    }
                    Err(e) => letters.push(Letter {
                        row,
                        code: e.code(),
                        reason: e.to_string(),
                    }),
                },
            },
            Decoded::Invalid { row, code, reason } => letters.push(Letter { row, code, reason }),
        }
    }
    let mut batches = Vec::new();
    for (r, v) in rows
        .chunks(rows_per_batch)
        .zip(values.chunks(rows_per_batch))
    {
        batches.push(batch(schema, &arrow, r, v)?);
    }
    Ok((batches, letters))
}

/// A batch of valid rows against the table's schema: metadata and key built here, value
/// columns by [`decode::rows_to_arrow`] (columns a row's schema version lacks read null).
pub fn batch(
    table_schema: &Schema,
    arrow: &Arc<ArrowSchema>,
    rows: &[Row<'_>],
    values: &[decode::Row],
) -> Result<RecordBatch, SinkError> {
    let value_type = value_type(table_schema);
    let value_array =
        decode::rows_to_arrow(values, &value_type).map_err(|e| SinkError::Layout(e.to_string()))?;
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(arrow.fields().len());
    for f in arrow.fields().iter() {
        let col = match f.name().as_str() {
            META => key_value::meta_column(arrow.fields(), rows)?,
            "key" => key_value::bytes_column(rows.iter().map(|r| r.record.key.as_deref())),
            name => value_array
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| SinkError::Layout(format!("no value column '{name}' was built")))?,
        };
        cols.push(col);
    }
    Ok(RecordBatch::try_new(arrow.clone(), cols)?)
}

fn value_type(table_schema: &Schema) -> StructType {
    StructType::new(
        table_schema
            .as_struct()
            .fields()
            .iter()
            .filter(|f| !is_base(&f.name))
            .cloned()
            .collect(),
    )
}

/// Whether one decoded value fits the table schema on its own (to single out the rows that
/// make a whole batch fail).
pub fn fits(table_schema: &Schema, value: &decode::Row) -> Result<(), DecodeError> {
    decode::rows_to_arrow(std::slice::from_ref(value), &value_type(table_schema)).map(|_| ())
}
