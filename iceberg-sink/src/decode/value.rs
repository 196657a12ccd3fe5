//! Decoded values, independent of the source format. A [`Row`] is the top-level struct of one
//! record value; [`super::rows_to_arrow`] turns rows into Arrow arrays of an Iceberg type.

/// One decoded value. Numeric variants are the Iceberg primitive they map to; time values are
/// already in Iceberg's units (microseconds, days).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    /// Unscaled value and scale (e.g. `Decimal { unscaled: 12345, scale: 2 }` is 123.45).
    Decimal {
        unscaled: i128,
        scale: u32,
    },
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since the epoch (for both `timestamp` and `timestamptz` columns).
    Timestamp(i64),
    String(String),
    Binary(Vec<u8>),
    Uuid([u8; 16]),
    /// Fields by name, in schema order; a field missing from a struct reads as null.
    Struct(Vec<(String, Value)>),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value of a struct's field by name (`None` if absent or not a struct).
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => lookup(fields, name, 0),
            _ => None,
        }
    }
}

/// The decoded top-level struct of one record value: its columns by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub fields: Vec<(String, Value)>,
}

impl Row {
    /// The column's value by name (`None` if this row's schema version lacks it).
    pub fn get(&self, name: &str) -> Option<&Value> {
        lookup(&self.fields, name, 0)
    }
}

/// A field by name, trying position `hint` first: rows decoded with the table's schema
/// version hold their fields in column order, so the hint usually hits at once.
pub(crate) fn lookup<'a>(
    fields: &'a [(String, Value)],
    name: &str,
    hint: usize,
) -> Option<&'a Value> {
    match fields.get(hint) {
        Some((n, v)) if n == name => Some(v),
        _ => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
    }
}
