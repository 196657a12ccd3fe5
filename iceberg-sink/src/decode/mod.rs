//! Decoding record values with the schema registry for the schema-driven `iceberg.mode`s
//! (`value_schema_id_prefix`, `value_schema_latest`).
//!
//! The translator's flow for one record value:
//!
//! 1. [`DecoderCache::decode_prefixed`] (or [`DecoderCache::decode_latest`]) splits the
//!    Confluent header ([`split_wire_format`]), compiles the schema once per schema id and
//!    Protobuf message type ([`ValueDecoder::new`]) and decodes the payload into a [`Row`];
//!    an `Err` carries the reason for the dead-letter table ([`DecodeError::code`]).
//! 2. [`ValueDecoder::iceberg_type`] gives the value's Iceberg struct type with field ids
//!    taken from [`FieldIds`] (seed it with the table's schema: a field keeps its id across
//!    schema versions), and [`evolve`] merges it into the table's schema (new optional columns,
//!    widened types) or reports the incompatible change.
//! 3. [`rows_to_arrow`] builds an Arrow `StructArray` whose fields are exactly those of
//!    `iceberg::arrow::schema_to_arrow_schema` (with `PARQUET:field_id` metadata); a column a
//!    row's schema version lacks reads as null.
//!
//! The type mapping of each format is in docs/iceberg.md ("Schema-driven modes: type mapping").
//!
//! A translation round, in outline (the table schema also holds the translator's own columns;
//! it may add them to each row as ordinary fields, e.g. a `Value::Struct` of Kafka metadata,
//! and build one batch):
//!
//! ```ignore
//! let mut cache = DecoderCache::new(source);            // one per partition translator
//! let mut ids = FieldIds::from_schema(&table_schema);
//! let mut evolved_for = HashSet::new();                 // schema versions already merged
//! let mut rows = Vec::new();
//! for record in records {
//!     match cache.decode_prefixed(record.value) {
//!         Ok(d) => {
//!             if evolved_for.insert(Arc::as_ptr(&d.decoder)) {
//!                 let incoming = d.decoder.iceberg_type(&mut ids);
//!                 match evolve(&table_schema, &incoming) {
//!                     Ok(Some(next)) => {
//!                         // commit AddSchema + SetCurrentSchema, then:
//!                         table_schema = next;
//!                         ids = FieldIds::from_schema(&table_schema);
//!                     }
//!                     Ok(None) => {}
//!                     Err(e) => { dead_letter(record, e.code(), e.to_string()); continue; }
//!                 }
//!             }
//!             rows.push(d.row);
//!         }
//!         Err(e) => dead_letter(record, e.code(), e.to_string()),
//!     }
//! }
//! let batch = rows_to_record_batch(&rows, &table_schema)?;   // iceberg's Arrow schema exactly
//! ```

mod arrow;
mod avro;
mod cache;
mod error;
mod evolve;
mod ids;
mod json;
mod json_schema;
mod protobuf;
mod shape;
mod source;
mod time;
mod value;
mod wire;

#[cfg(test)]
mod tests;

pub use arrow::{rows_to_arrow, rows_to_record_batch};
pub use cache::{DecodedValue, DecoderCache};
pub use error::DecodeError;
pub use evolve::evolve;
pub use ids::FieldIds;
pub use source::{RegisteredSchema, SchemaKind, SchemaSource};
pub use value::{Row, Value};
pub use wire::{
    encode_message_indexes, encode_wire_format, split_message_indexes, split_wire_format, WireValue,
};

use iceberg::spec::StructType;

use shape::{Shape, ShapeField};

/// Name of the single column of a value whose schema is not a record/object/message
/// (e.g. an Avro `"string"`): the value is wrapped in a struct with this one field.
pub const SCALAR_COLUMN: &str = "value";

/// A compiled decoder for one schema (and, for Protobuf, one message type).
#[derive(Debug)]
pub struct ValueDecoder {
    schema_id: i32,
    kind: SchemaKind,
    fields: Vec<ShapeField>,
    /// True when the schema's top level is not a struct and values are wrapped in
    /// [`SCALAR_COLUMN`].
    wrapped: bool,
    format: Format,
}

#[derive(Debug)]
enum Format {
    Avro(Box<avro::AvroDecoder>),
    Protobuf(protobuf::ProtoDecoder),
    Json(json::JsonDecoder),
}

impl ValueDecoder {
    /// Compiles `schema`. For Protobuf, `message_indexes` selects the message type as in the
    /// wire format (`[0]` or `[]`: the file's first message; `[1, 0]`: the first nested message
    /// of the second one); other formats ignore it.
    pub fn new(schema: &RegisteredSchema, message_indexes: &[i32]) -> Result<Self, DecodeError> {
        let (format, shape) = match schema.kind {
            SchemaKind::Avro => {
                let (d, s) = avro::AvroDecoder::new(schema)?;
                (Format::Avro(Box::new(d)), s)
            }
            SchemaKind::Protobuf => {
                let (d, s) = protobuf::ProtoDecoder::new(schema, message_indexes)?;
                (Format::Protobuf(d), s)
            }
            SchemaKind::Json => {
                let (d, s) = json::JsonDecoder::new(schema)?;
                (Format::Json(d), s)
            }
        };
        Ok(Self::assemble(schema, format, shape))
    }

    /// A decoder for the Protobuf message type named `message` (`package.Message`, nested
    /// types as `package.Outer.Inner`) of a Protobuf schema.
    pub fn for_message(schema: &RegisteredSchema, message: &str) -> Result<Self, DecodeError> {
        if schema.kind != SchemaKind::Protobuf {
            return Err(DecodeError::schema(
                schema.id,
                "a message name applies to Protobuf schemas only",
            ));
        }
        let (d, shape) = protobuf::ProtoDecoder::named(schema, message)?;
        Ok(Self::assemble(schema, Format::Protobuf(d), shape))
    }

    fn assemble(schema: &RegisteredSchema, format: Format, shape: Shape) -> Self {
        let (fields, wrapped) = match shape {
            Shape::Struct(fields) => (fields, false),
            other => (vec![ShapeField::optional(SCALAR_COLUMN, other)], true),
        };
        ValueDecoder {
            schema_id: schema.id,
            kind: schema.kind,
            fields,
            wrapped,
            format,
        }
    }

    /// The registry id of the schema this decoder was compiled from.
    pub fn schema_id(&self) -> i32 {
        self.schema_id
    }

    pub fn kind(&self) -> SchemaKind {
        self.kind
    }

    /// The Iceberg struct type of decoded values, with field ids assigned through `ids` so
    /// that a field (identified by its name path) keeps its id across schema versions.
    pub fn iceberg_type(&self, ids: &mut FieldIds) -> StructType {
        shape::struct_type(&self.fields, ids, "")
    }

    /// Decodes one payload (without the Confluent header and, for Protobuf, without the
    /// message-index array). A payload that does not match the schema gives `Err` with the
    /// reason; no input makes this panic.
    pub fn decode(&self, payload: &[u8]) -> Result<Row, DecodeError> {
        let value = match &self.format {
            Format::Avro(d) => d.decode(payload),
            Format::Protobuf(d) => d.decode(payload),
            Format::Json(d) => d.decode(payload),
        }
        .map_err(|reason| DecodeError::payload(self.schema_id, reason))?;
        if self.wrapped {
            return Ok(Row {
                fields: vec![(SCALAR_COLUMN.to_string(), value)],
            });
        }
        match value {
            Value::Struct(fields) => Ok(Row { fields }),
            other => Err(DecodeError::payload(
                self.schema_id,
                format!("expected a struct at the top level, decoded {other:?}"),
            )),
        }
    }
}
