//! Decoded rows -> Arrow arrays whose data types and field metadata are exactly those of
//! `iceberg::arrow::type_to_arrow_type` (so `PARQUET:field_id` is set as iceberg's Parquet
//! writer expects). Columns are matched by name, so rows decoded with an older schema version
//! read null in columns added later.

use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, LargeBinaryArray,
    LargeStringArray, ListArray, MapArray, PrimitiveArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;
use iceberg::arrow::{schema_to_arrow_schema, type_to_arrow_type};
use iceberg::spec::{NestedField, PrimitiveType, Schema, StructType, Type};

use super::error::DecodeError;
use super::ids::{display, join};
use super::value::{lookup, Row, Value};

/// Builds a `StructArray` of type `type_to_arrow_type(Type::Struct(ty))`, one element per
/// row. A column a row lacks is null; a null or missing value in a required column, or a
/// value of the wrong kind, is an error naming the column.
pub fn rows_to_arrow(rows: &[Row], ty: &StructType) -> Result<StructArray, DecodeError> {
    let dt = type_to_arrow_type(&Type::Struct(ty.clone()))
        .map_err(|e| DecodeError::column("", e.to_string()))?;
    let DataType::Struct(fields) = dt else {
        return Err(DecodeError::column(
            "",
            "iceberg struct is not an arrow struct",
        ));
    };
    let mut columns = Vec::with_capacity(fields.len());
    for (j, (f, af)) in ty.fields().iter().zip(fields.iter()).enumerate() {
        let vals: Vec<Option<&Value>> = rows
            .iter()
            .map(|r| lookup(&r.fields, &f.name, j).filter(|v| !v.is_null()))
            .collect();
        check_required(f, &vals, None, &f.name)?;
        columns.push(build(&f.field_type, af.data_type(), &vals, &f.name)?);
    }
    StructArray::try_new(fields, columns, None).map_err(|e| DecodeError::column("", e.to_string()))
}

/// Builds a `RecordBatch` whose schema is `iceberg::arrow::schema_to_arrow_schema(schema)`.
pub fn rows_to_record_batch(rows: &[Row], schema: &Schema) -> Result<RecordBatch, DecodeError> {
    let arrow_schema =
        schema_to_arrow_schema(schema).map_err(|e| DecodeError::column("", e.to_string()))?;
    let array = rows_to_arrow(rows, schema.as_struct())?;
    let (_, columns, _) = array.into_parts();
    RecordBatch::try_new(Arc::new(arrow_schema), columns)
        .map_err(|e| DecodeError::column("", e.to_string()))
}

fn check_required(
    f: &NestedField,
    vals: &[Option<&Value>],
    parent_valid: Option<&[bool]>,
    path: &str,
) -> Result<(), DecodeError> {
    if !f.required {
        return Ok(());
    }
    for (i, v) in vals.iter().enumerate() {
        let parent = parent_valid.map(|p| p[i]).unwrap_or(true);
        if parent && v.is_none() {
            return Err(DecodeError::column(
                &display(path),
                "required column is null or missing",
            ));
        }
    }
    Ok(())
}

fn mismatch(path: &str, expected: &str, got: &Value) -> DecodeError {
    let mut got = format!("{got:?}");
    if got.len() > 80 {
        let mut cut = 80;
        while !got.is_char_boundary(cut) {
            cut -= 1;
        }
        got.truncate(cut);
        got.push_str("...");
    }
    DecodeError::column(&display(path), format!("expected {expected}, got {got}"))
}

/// Collects one Option per value through `get`, which returns `None` for a mismatch.
fn collect<'a, T>(
    vals: &[Option<&'a Value>],
    path: &str,
    expected: &str,
    get: impl Fn(&'a Value) -> Option<T>,
) -> Result<Vec<Option<T>>, DecodeError> {
    vals.iter()
        .map(|v| match v {
            None => Ok(None),
            Some(v) => get(v).map(Some).ok_or_else(|| mismatch(path, expected, v)),
        })
        .collect()
}

fn validity(vals: &[Option<&Value>]) -> Option<NullBuffer> {
    if vals.iter().all(|v| v.is_some()) {
        None
    } else {
        Some(NullBuffer::from_iter(vals.iter().map(|v| v.is_some())))
    }
}

fn build(
    ty: &Type,
    dt: &DataType,
    vals: &[Option<&Value>],
    path: &str,
) -> Result<ArrayRef, DecodeError> {
    match ty {
        Type::Primitive(p) => primitive(p, dt, vals, path),
        Type::Struct(st) => {
            let DataType::Struct(fields) = dt else {
                return Err(DecodeError::column(&display(path), "not an arrow struct"));
            };
            for v in vals.iter().flatten() {
                if !matches!(v, Value::Struct(_)) {
                    return Err(mismatch(path, "a struct", v));
                }
            }
            let valid: Vec<bool> = vals.iter().map(|v| v.is_some()).collect();
            let mut children = Vec::with_capacity(fields.len());
            for (j, (f, af)) in st.fields().iter().zip(fields.iter()).enumerate() {
                let p = join(path, &f.name);
                let child: Vec<Option<&Value>> = vals
                    .iter()
                    .map(|v| match v {
                        Some(Value::Struct(fs)) => lookup(fs, &f.name, j),
                        _ => None,
                    })
                    .map(|v| v.filter(|v| !v.is_null()))
                    .collect();
                check_required(f, &child, Some(&valid), &p)?;
                children.push(build(&f.field_type, af.data_type(), &child, &p)?);
            }
            Ok(Arc::new(
                StructArray::try_new(fields.clone(), children, validity(vals))
                    .map_err(|e| DecodeError::column(&display(path), e.to_string()))?,
            ))
        }
        Type::List(l) => {
            let DataType::List(efield) = dt else {
                return Err(DecodeError::column(&display(path), "not an arrow list"));
            };
            let p = join(path, super::ids::ELEMENT);
            let mut offsets = vec![0i32];
            let mut elements: Vec<Option<&Value>> = Vec::new();
            for v in vals {
                match v {
                    None => {}
                    Some(Value::List(items)) => {
                        elements.extend(items.iter().map(|i| Some(i).filter(|i| !i.is_null())))
                    }
                    Some(other) => return Err(mismatch(path, "a list", other)),
                }
                offsets.push(offset(elements.len(), path)?);
            }
            check_required(&l.element_field, &elements, None, &p)?;
            let values = build(
                &l.element_field.field_type,
                efield.data_type(),
                &elements,
                &p,
            )?;
            Ok(Arc::new(
                ListArray::try_new(
                    efield.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    values,
                    validity(vals),
                )
                .map_err(|e| DecodeError::column(&display(path), e.to_string()))?,
            ))
        }
        Type::Map(m) => {
            let DataType::Map(entries_field, sorted) = dt else {
                return Err(DecodeError::column(&display(path), "not an arrow map"));
            };
            let DataType::Struct(entry_fields) = entries_field.data_type() else {
                return Err(DecodeError::column(
                    &display(path),
                    "map entries not a struct",
                ));
            };
            let kp = join(path, super::ids::KEY);
            let vp = join(path, super::ids::VALUE);
            let mut offsets = vec![0i32];
            let mut keys: Vec<Option<&Value>> = Vec::new();
            let mut values: Vec<Option<&Value>> = Vec::new();
            for v in vals {
                match v {
                    None => {}
                    Some(Value::Map(entries)) => {
                        for (k, v) in entries {
                            keys.push(Some(k).filter(|k| !k.is_null()));
                            values.push(Some(v).filter(|v| !v.is_null()));
                        }
                    }
                    Some(other) => return Err(mismatch(path, "a map", other)),
                }
                offsets.push(offset(keys.len(), path)?);
            }
            check_required(&m.key_field, &keys, None, &kp)?;
            check_required(&m.value_field, &values, None, &vp)?;
            let key_array = build(
                &m.key_field.field_type,
                entry_fields[0].data_type(),
                &keys,
                &kp,
            )?;
            let value_array = build(
                &m.value_field.field_type,
                entry_fields[1].data_type(),
                &values,
                &vp,
            )?;
            let entries =
                StructArray::try_new(entry_fields.clone(), vec![key_array, value_array], None)
                    .map_err(|e| DecodeError::column(&display(path), e.to_string()))?;
            Ok(Arc::new(
                MapArray::try_new(
                    entries_field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    entries,
                    validity(vals),
                    *sorted,
                )
                .map_err(|e| DecodeError::column(&display(path), e.to_string()))?,
            ))
        }
    }
}

fn offset(len: usize, path: &str) -> Result<i32, DecodeError> {
    i32::try_from(len)
        .map_err(|_| DecodeError::column(&display(path), "more than 2^31 nested elements"))
}

fn primitive(
    p: &PrimitiveType,
    dt: &DataType,
    vals: &[Option<&Value>],
    path: &str,
) -> Result<ArrayRef, DecodeError> {
    let arr: ArrayRef = match p {
        PrimitiveType::Boolean => Arc::new(BooleanArray::from(collect(
            vals,
            path,
            "a boolean",
            |v| match v {
                Value::Boolean(b) => Some(*b),
                _ => None,
            },
        )?)),
        PrimitiveType::Int => Arc::new(PrimitiveArray::<Int32Type>::from(collect(
            vals,
            path,
            "an int",
            |v| match v {
                Value::Int(i) => Some(*i),
                _ => None,
            },
        )?)),
        PrimitiveType::Long => Arc::new(PrimitiveArray::<Int64Type>::from(collect(
            vals,
            path,
            "a long",
            |v| match v {
                Value::Int(i) => Some(i64::from(*i)),
                Value::Long(i) => Some(*i),
                _ => None,
            },
        )?)),
        PrimitiveType::Float => Arc::new(PrimitiveArray::<Float32Type>::from(collect(
            vals,
            path,
            "a float",
            |v| match v {
                Value::Float(f) => Some(*f),
                _ => None,
            },
        )?)),
        PrimitiveType::Double => Arc::new(PrimitiveArray::<Float64Type>::from(collect(
            vals,
            path,
            "a double",
            |v| match v {
                Value::Float(f) => Some(f64::from(*f)),
                Value::Double(f) => Some(*f),
                _ => None,
            },
        )?)),
        PrimitiveType::Decimal { precision, scale } => {
            let limit = 10i128.checked_pow(*precision).unwrap_or(i128::MAX);
            let expected = format!("a decimal({precision}, {scale})");
            let values = collect(vals, path, &expected, |v| match v {
                Value::Decimal { unscaled, scale: s } if s <= scale => {
                    let scaled = 10i128
                        .checked_pow(scale - s)
                        .and_then(|m| unscaled.checked_mul(m))?;
                    (scaled.checked_abs()? < limit).then_some(scaled)
                }
                _ => None,
            })?;
            let (p, s) = match dt {
                DataType::Decimal128(p, s) => (*p, *s),
                _ => return Err(DecodeError::column(&display(path), "not a decimal128")),
            };
            Arc::new(
                PrimitiveArray::<Decimal128Type>::from(values)
                    .with_precision_and_scale(p, s)
                    .map_err(|e| DecodeError::column(&display(path), e.to_string()))?,
            )
        }
        PrimitiveType::Date => Arc::new(PrimitiveArray::<Date32Type>::from(collect(
            vals,
            path,
            "a date",
            |v| match v {
                Value::Date(d) => Some(*d),
                _ => None,
            },
        )?)),
        PrimitiveType::Time => Arc::new(PrimitiveArray::<Time64MicrosecondType>::from(collect(
            vals,
            path,
            "a time",
            |v| match v {
                Value::Time(t) => Some(*t),
                _ => None,
            },
        )?)),
        PrimitiveType::Timestamp | PrimitiveType::Timestamptz => {
            let tz = match dt {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            Arc::new(
                PrimitiveArray::<TimestampMicrosecondType>::from(collect(
                    vals,
                    path,
                    "a timestamp",
                    |v| match v {
                        Value::Timestamp(t) => Some(*t),
                        _ => None,
                    },
                )?)
                .with_timezone_opt(tz),
            )
        }
        PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs => {
            let tz = match dt {
                DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            Arc::new(
                PrimitiveArray::<TimestampNanosecondType>::from(collect(
                    vals,
                    path,
                    "a timestamp",
                    |v| match v {
                        Value::Timestamp(t) => t.checked_mul(1000),
                        _ => None,
                    },
                )?)
                .with_timezone_opt(tz),
            )
        }
        PrimitiveType::String => {
            let values = collect(vals, path, "a string", |v| match v {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            })?;
            match dt {
                DataType::LargeUtf8 => Arc::new(LargeStringArray::from(values)),
                _ => Arc::new(StringArray::from(values)),
            }
        }
        PrimitiveType::Uuid => {
            let values = collect(vals, path, "a uuid", |v| match v {
                Value::Uuid(u) => Some(u.as_slice()),
                _ => None,
            })?;
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(values.into_iter(), 16)
                    .map_err(|e| DecodeError::column(&display(path), e.to_string()))?,
            )
        }
        PrimitiveType::Fixed(len) => {
            let expected = format!("fixed[{len}] bytes");
            let values = collect(vals, path, &expected, |v| match v {
                Value::Binary(b) if b.len() as u64 == *len => Some(b.as_slice()),
                _ => None,
            })?;
            match dt {
                DataType::FixedSizeBinary(size) => Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(values.into_iter(), *size)
                        .map_err(|e| DecodeError::column(&display(path), e.to_string()))?,
                ),
                _ => Arc::new(LargeBinaryArray::from(values)),
            }
        }
        PrimitiveType::Binary => {
            let values = collect(vals, path, "bytes", |v| match v {
                Value::Binary(b) => Some(b.as_slice()),
                _ => None,
            })?;
            match dt {
                DataType::Binary => Arc::new(BinaryArray::from(values)),
                _ => Arc::new(LargeBinaryArray::from(values)),
            }
        }
    };
    if arr.data_type() != dt {
        return Err(DecodeError::column(
            &display(path),
            format!("built {} for arrow type {dt}", arr.data_type()),
        ));
    }
    Ok(arr)
}
