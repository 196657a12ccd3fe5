//! Tests of the decode module across formats: real wire-format payloads, Arrow arrays checked
//! value by value, Iceberg types checked exactly, evolution and malformed input.

mod avro;
mod evolve;
mod fuzz;
mod json;
mod parquet;
mod protobuf;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, StructArray};
use iceberg::spec::{NestedField, PrimitiveType, Schema, StructType, Type};

use super::*;

/// An in-memory registry.
#[derive(Default)]
pub(super) struct MemSource {
    pub by_id: HashMap<i32, RegisteredSchema>,
    pub subjects: HashMap<String, i32>,
}

impl MemSource {
    pub fn with(schemas: Vec<RegisteredSchema>) -> Arc<Self> {
        let mut s = MemSource::default();
        for r in schemas {
            s.by_id.insert(r.id, r);
        }
        Arc::new(s)
    }
}

impl SchemaSource for MemSource {
    fn by_id(&self, id: i32) -> Option<RegisteredSchema> {
        self.by_id.get(&id).cloned()
    }
    fn latest(&self, subject: &str) -> Option<RegisteredSchema> {
        self.subjects.get(subject).and_then(|id| self.by_id(*id))
    }
}

pub(super) fn schema(id: i32, kind: SchemaKind, text: &str) -> RegisteredSchema {
    RegisteredSchema {
        id,
        kind,
        text: text.to_string(),
        references: Vec::new(),
    }
}

/// The column `name` of a struct array.
pub(super) fn col<'a>(a: &'a StructArray, name: &str) -> &'a ArrayRef {
    a.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// The Iceberg type of a top-level field.
pub(super) fn field_type(st: &StructType, name: &str) -> Type {
    st.field_by_name(name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .field_type
        .as_ref()
        .clone()
}

pub(super) fn opt(id: i32, name: &str, ty: Type) -> Arc<NestedField> {
    Arc::new(NestedField::optional(id, name, ty))
}

pub(super) fn p(t: PrimitiveType) -> Type {
    Type::Primitive(t)
}

/// Rows to Arrow through a table schema built from the decoder's type, checking that the
/// array's type is exactly iceberg's conversion of that schema.
pub(super) fn to_arrow(rows: &[Row], st: &StructType) -> StructArray {
    let arr = rows_to_arrow(rows, st).expect("rows_to_arrow");
    let expected = iceberg::arrow::type_to_arrow_type(&Type::Struct(st.clone())).unwrap();
    assert_eq!(arr.data_type(), &expected);
    let schema = Schema::builder()
        .with_fields(st.fields().iter().cloned())
        .build()
        .unwrap();
    let batch = rows_to_record_batch(rows, &schema).expect("rows_to_record_batch");
    assert_eq!(
        batch.schema().as_ref(),
        &iceberg::arrow::schema_to_arrow_schema(&schema).unwrap()
    );
    arr
}

#[test]
fn decoders_can_be_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ValueDecoder>();
    send_sync::<DecodedValue>();
    send::<DecoderCache>();
    send_sync::<DecodeError>();
}
