//! Avro: the schema is parsed with `apache-avro` (with its references as named types) and
//! payloads are decoded by a small binary reader of this module, which checks every length
//! against the bytes left (so no input can make it allocate more than the payload's size).

use std::collections::HashMap;

use apache_avro::schema::{Name, RecordField, Schema, UnionSchema};
use iceberg::spec::PrimitiveType;

use super::error::DecodeError;
use super::shape::{Shape, ShapeField};
use super::source::RegisteredSchema;
use super::value::Value;

/// Zero-width items (nulls, empty records) cost no bytes: cap arrays and maps at this many
/// entries beyond the payload's length.
const MAX_EXTRA_ITEMS: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct AvroDecoder {
    schema: Schema,
    names: HashMap<String, Schema>,
    /// apache-avro parses both `string` and `fixed(16)` with logical type uuid into
    /// `Schema::Uuid`; this says which encoding the schema's uuids use.
    fixed_uuid: bool,
}

/// Which encodings the schema texts use for `logicalType: uuid`: (string, fixed).
fn uuid_encodings(texts: &[&str]) -> (bool, bool) {
    fn walk(v: &serde_json::Value, found: &mut (bool, bool)) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("logicalType").and_then(|l| l.as_str()) == Some("uuid") {
                    match m.get("type").and_then(|t| t.as_str()) {
                        Some("string") => found.0 = true,
                        Some("fixed") if m.get("size").and_then(|s| s.as_u64()) == Some(16) => {
                            found.1 = true
                        }
                        _ => {}
                    }
                }
                m.values().for_each(|v| walk(v, found));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = (false, false);
    for t in texts {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
            walk(&v, &mut found);
        }
    }
    found
}

impl AvroDecoder {
    pub fn new(registered: &RegisteredSchema) -> Result<(Self, Shape), DecodeError> {
        let id = registered.id;
        let err =
            |e: apache_avro::Error| DecodeError::schema(id, format!("invalid Avro schema: {e}"));
        let (schema, others) = if registered.references.is_empty() {
            (
                Schema::parse_str(&registered.text).map_err(err)?,
                Vec::new(),
            )
        } else {
            Schema::parse_str_with_list(
                &registered.text,
                registered.references.iter().map(|(_, text)| text.as_str()),
            )
            .map_err(err)?
        };
        let mut names = HashMap::new();
        for s in others.iter().chain(std::iter::once(&schema)) {
            collect_names(s, &mut names);
        }
        let mut texts = vec![registered.text.as_str()];
        texts.extend(registered.references.iter().map(|(_, t)| t.as_str()));
        let (string_uuid, fixed_uuid) = uuid_encodings(&texts);
        if string_uuid && fixed_uuid {
            return Err(DecodeError::schema(
                id,
                "uses uuid on both string and fixed(16); apache-avro cannot tell them apart",
            ));
        }
        let decoder = AvroDecoder {
            schema,
            names,
            fixed_uuid,
        };
        let mut stack = Vec::new();
        let shape = decoder
            .shape(&decoder.schema, &mut stack)
            .map_err(|reason| DecodeError::schema(id, reason))?
            .ok_or_else(|| {
                DecodeError::schema(id, "the schema has no columns (null or an empty record)")
            })?;
        Ok((decoder, shape))
    }

    pub fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let v = self.read(&self.schema, &mut r)?;
        if r.pos != payload.len() {
            return Err(format!(
                "{} trailing bytes after the Avro value",
                payload.len() - r.pos
            ));
        }
        Ok(v)
    }

    fn resolve<'a>(&'a self, s: &'a Schema) -> Result<&'a Schema, String> {
        match s {
            Schema::Ref { name } => self
                .names
                .get(&name.fullname(None))
                .ok_or_else(|| format!("unknown named type {}", name.fullname(None))),
            other => Ok(other),
        }
    }

    /// The shape of a schema; `None` for `null` (a field of type null carries nothing and
    /// gets no column).
    fn shape(&self, s: &Schema, stack: &mut Vec<String>) -> Result<Option<Shape>, String> {
        let p = |t| Ok(Some(Shape::Primitive(t)));
        match s {
            Schema::Null => Ok(None),
            Schema::Boolean => p(PrimitiveType::Boolean),
            Schema::Int => p(PrimitiveType::Int),
            Schema::Long => p(PrimitiveType::Long),
            Schema::Float => p(PrimitiveType::Float),
            Schema::Double => p(PrimitiveType::Double),
            Schema::Bytes => p(PrimitiveType::Binary),
            Schema::String | Schema::Enum(_) => p(PrimitiveType::String),
            Schema::Uuid => p(PrimitiveType::Uuid),
            Schema::Fixed(f) => p(PrimitiveType::Fixed(f.size as u64)),
            Schema::Decimal(d) => {
                if d.precision == 0 || d.precision > 38 || d.scale > d.precision {
                    return Err(format!(
                        "decimal({}, {}) has no Iceberg type (precision 1..=38, scale <= precision)",
                        d.precision, d.scale
                    ));
                }
                p(PrimitiveType::Decimal {
                    precision: d.precision as u32,
                    scale: d.scale as u32,
                })
            }
            Schema::BigDecimal => {
                Err("big-decimal (no fixed scale) has no Iceberg type".to_string())
            }
            Schema::Date => p(PrimitiveType::Date),
            Schema::TimeMillis | Schema::TimeMicros => p(PrimitiveType::Time),
            Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
                p(PrimitiveType::Timestamptz)
            }
            Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => p(PrimitiveType::Timestamp),
            Schema::Duration => Ok(Some(Shape::Struct(
                DURATION_FIELDS
                    .iter()
                    .map(|n| ShapeField::optional(*n, Shape::Primitive(PrimitiveType::Long)))
                    .collect(),
            ))),
            Schema::Array(a) => {
                let (inner, nullable) = self.nullable_shape(&a.items, stack)?;
                Ok(Some(Shape::List {
                    element: Box::new(inner.unwrap_or(Shape::Primitive(PrimitiveType::String))),
                    element_required: !nullable,
                }))
            }
            Schema::Map(m) => {
                let (inner, nullable) = self.nullable_shape(&m.types, stack)?;
                Ok(Some(Shape::Map {
                    key: Box::new(Shape::Primitive(PrimitiveType::String)),
                    value: Box::new(inner.unwrap_or(Shape::Primitive(PrimitiveType::String))),
                    value_required: !nullable,
                }))
            }
            Schema::Union(u) => match union_kind(u) {
                UnionKind::OnlyNull => Ok(None),
                UnionKind::Optional(i) => self.shape(&u.variants()[i], stack),
                UnionKind::Branches(branches) => {
                    let mut fields = Vec::new();
                    for (name, i) in branches {
                        if let Some(shape) = self.shape(&u.variants()[i], stack)? {
                            fields.push(ShapeField::optional(name, shape));
                        }
                    }
                    Ok((!fields.is_empty()).then_some(Shape::Struct(fields)))
                }
            },
            Schema::Record(r) => {
                let full = r.name.fullname(None);
                if stack.contains(&full) {
                    return Err(format!(
                        "record {full} is recursive; Iceberg has no recursive types"
                    ));
                }
                stack.push(full);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    if let Some(shape) = self.shape(&f.schema, stack)? {
                        let mut sf = ShapeField::optional(f.name.clone(), shape);
                        sf.doc = f.doc.clone();
                        fields.push(sf);
                    }
                }
                stack.pop();
                // A record without fields has no Iceberg/Parquet type: no column.
                Ok((!fields.is_empty()).then_some(Shape::Struct(fields)))
            }
            Schema::Ref { .. } => {
                let resolved = self.resolve(s)?;
                self.shape(resolved, stack)
            }
        }
    }

    /// The shape of a list item or map value, and whether it may be null.
    fn nullable_shape(
        &self,
        s: &Schema,
        stack: &mut Vec<String>,
    ) -> Result<(Option<Shape>, bool), String> {
        let nullable = match s {
            Schema::Null => true,
            Schema::Union(u) => u.variants().iter().any(|v| matches!(v, Schema::Null)),
            _ => false,
        };
        Ok((self.shape(s, stack)?, nullable))
    }

    fn read(&self, s: &Schema, r: &mut Reader<'_>) -> Result<Value, String> {
        Ok(match s {
            Schema::Null => Value::Null,
            Schema::Boolean => Value::Boolean(r.boolean()?),
            Schema::Int => Value::Int(r.int()?),
            Schema::Long => Value::Long(r.long()?),
            Schema::Float => Value::Float(f32::from_le_bytes(r.array::<4>()?)),
            Schema::Double => Value::Double(f64::from_le_bytes(r.array::<8>()?)),
            Schema::Bytes => Value::Binary(r.bytes()?.to_vec()),
            Schema::String => Value::String(r.string()?),
            Schema::Enum(e) => {
                let i = r.int()?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| format!("enum index {i} out of range for {}", e.name.name))?;
                Value::String(symbol.clone())
            }
            Schema::Uuid => {
                let b = if self.fixed_uuid {
                    r.take(16)?
                } else {
                    r.bytes()?
                };
                let u = if b.len() == 16 {
                    uuid::Uuid::from_slice(b).map_err(|e| e.to_string())?
                } else {
                    let text = std::str::from_utf8(b).map_err(|e| format!("uuid: {e}"))?;
                    uuid::Uuid::parse_str(text).map_err(|e| format!("uuid {text:?}: {e}"))?
                };
                Value::Uuid(*u.as_bytes())
            }
            Schema::Fixed(f) => Value::Binary(r.take(f.size)?.to_vec()),
            Schema::Decimal(d) => {
                let bytes = match self.resolve(&d.inner)? {
                    Schema::Fixed(f) => r.take(f.size)?,
                    _ => r.bytes()?,
                };
                Value::Decimal {
                    unscaled: be_i128(bytes)?,
                    scale: d.scale as u32,
                }
            }
            Schema::BigDecimal => return Err("big-decimal is not supported".into()),
            Schema::Date => Value::Date(r.int()?),
            Schema::TimeMillis => Value::Time(i64::from(r.int()?) * 1000),
            Schema::TimeMicros => Value::Time(r.long()?),
            Schema::TimestampMillis | Schema::LocalTimestampMillis => Value::Timestamp(
                r.long()?
                    .checked_mul(1000)
                    .ok_or("timestamp-millis out of range")?,
            ),
            Schema::TimestampMicros | Schema::LocalTimestampMicros => Value::Timestamp(r.long()?),
            Schema::TimestampNanos | Schema::LocalTimestampNanos => {
                Value::Timestamp(r.long()?.div_euclid(1000))
            }
            Schema::Duration => {
                let b = r.array::<12>()?;
                let part = |i: usize| {
                    Value::Long(i64::from(u32::from_le_bytes([
                        b[i],
                        b[i + 1],
                        b[i + 2],
                        b[i + 3],
                    ])))
                };
                Value::Struct(
                    DURATION_FIELDS
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.to_string(), part(4 * i)))
                        .collect(),
                )
            }
            Schema::Array(a) => {
                let mut items = Vec::new();
                self.blocks(r, |this, r| {
                    items.push(this.read(&a.items, r)?);
                    Ok(())
                })?;
                Value::List(items)
            }
            Schema::Map(m) => {
                let mut entries = Vec::new();
                self.blocks(r, |this, r| {
                    let k = r.string()?;
                    let v = this.read(&m.types, r)?;
                    entries.push((Value::String(k), v));
                    Ok(())
                })?;
                Value::Map(entries)
            }
            Schema::Union(u) => {
                let i = r.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .filter(|&i| i < u.variants().len())
                    .ok_or_else(|| format!("union branch {i} out of range"))?;
                let v = self.read(&u.variants()[branch], r)?;
                match union_kind(u) {
                    UnionKind::OnlyNull | UnionKind::Optional(_) => v,
                    UnionKind::Branches(branches) => {
                        let name = branches
                            .iter()
                            .find(|(_, i)| *i == branch)
                            .map(|(n, _)| n.clone());
                        match name {
                            Some(n) => Value::Struct(vec![(n, v)]),
                            None => Value::Null, // the null branch
                        }
                    }
                }
            }
            Schema::Record(rec) => {
                let mut fields = Vec::with_capacity(rec.fields.len());
                for f in &rec.fields {
                    let v = self.read(&f.schema, r)?;
                    if !is_null_schema(self, f) {
                        fields.push((f.name.clone(), v));
                    }
                }
                Value::Struct(fields)
            }
            Schema::Ref { .. } => {
                let resolved = self.resolve(s)?;
                self.read(resolved, r)?
            }
        })
    }

    /// Reads Avro blocks (count, [byte size if count < 0], items) until a 0 count.
    fn blocks(
        &self,
        r: &mut Reader<'_>,
        mut item: impl FnMut(&Self, &mut Reader<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        let limit = r.buf.len() + MAX_EXTRA_ITEMS;
        let mut total: usize = 0;
        loop {
            let count = r.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                r.long()?; // block size in bytes
            }
            let n = count.unsigned_abs();
            total = total.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            if total > limit {
                return Err(format!(
                    "array/map of {total} items is longer than the payload allows"
                ));
            }
            for _ in 0..n {
                item(self, r)?;
            }
        }
    }
}

const DURATION_FIELDS: [&str; 3] = ["months", "days", "milliseconds"];

fn is_null_schema(d: &AvroDecoder, f: &RecordField) -> bool {
    match d.resolve(&f.schema) {
        Ok(Schema::Null) => true,
        Ok(Schema::Union(u)) => matches!(union_kind(u), UnionKind::OnlyNull),
        _ => false,
    }
}

enum UnionKind {
    OnlyNull,
    /// `[null, T]` (in any order): T's index.
    Optional(usize),
    /// Several non-null branches: (struct field name, branch index).
    Branches(Vec<(String, usize)>),
}

fn union_kind(u: &UnionSchema) -> UnionKind {
    let non_null: Vec<usize> = u
        .variants()
        .iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s, Schema::Null))
        .map(|(i, _)| i)
        .collect();
    match non_null.len() {
        0 => UnionKind::OnlyNull,
        1 => UnionKind::Optional(non_null[0]),
        _ => {
            let mut names: Vec<(String, usize)> = Vec::new();
            for i in non_null {
                let mut name = branch_name(&u.variants()[i]);
                if names.iter().any(|(n, _)| *n == name) {
                    name = format!("{name}_{i}");
                }
                names.push((name, i));
            }
            UnionKind::Branches(names)
        }
    }
}

/// The struct field name of a union branch: the simple name of a named type, else the Avro
/// type name (`int`, `string`, `array`, `map`, or the logical type such as `timestamp-millis`).
fn branch_name(s: &Schema) -> String {
    let named = |n: &Name| n.name.rsplit('.').next().unwrap_or(&n.name).to_string();
    match s {
        Schema::Record(r) => named(&r.name),
        Schema::Enum(e) => named(&e.name),
        Schema::Fixed(f) => named(&f.name),
        Schema::Ref { name } => named(name),
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        Schema::Decimal(_) | Schema::BigDecimal => "decimal".into(),
        Schema::Uuid => "uuid".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time_millis".into(),
        Schema::TimeMicros => "time_micros".into(),
        Schema::TimestampMillis => "timestamp_millis".into(),
        Schema::TimestampMicros => "timestamp_micros".into(),
        Schema::TimestampNanos => "timestamp_nanos".into(),
        Schema::LocalTimestampMillis => "local_timestamp_millis".into(),
        Schema::LocalTimestampMicros => "local_timestamp_micros".into(),
        Schema::LocalTimestampNanos => "local_timestamp_nanos".into(),
        Schema::Duration => "duration".into(),
    }
}

fn collect_names(s: &Schema, names: &mut HashMap<String, Schema>) {
    match s {
        Schema::Record(r) if names.insert(r.name.fullname(None), s.clone()).is_none() => {
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), s.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), s.clone());
        }
        Schema::Decimal(d) => collect_names(&d.inner, names),
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, names);
            }
        }
        _ => {}
    }
}

/// A big-endian two's-complement integer of up to 16 significant bytes.
fn be_i128(bytes: &[u8]) -> Result<i128, String> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let negative = bytes[0] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0 };
    let significant = bytes
        .iter()
        .position(|&b| b != fill)
        .map(|i| &bytes[i..])
        .unwrap_or(&[]);
    if significant.len() > 16 {
        return Err(format!(
            "decimal of {} bytes overflows 128 bits",
            bytes.len()
        ));
    }
    let mut buf = [fill; 16];
    buf[16 - significant.len()..].copy_from_slice(significant);
    let v = i128::from_be_bytes(buf);
    // A positive value whose top significant bit is set (or the reverse) lost its sign.
    if (v < 0) != negative {
        return Err("decimal overflows 128 bits".into());
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "truncated: needs {n} bytes at offset {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.take(1)?[0];
            if i == 9 && b > 1 {
                return Err("varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn int(&mut self) -> Result<i32, String> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("int {v} out of 32-bit range"))
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("boolean byte {b:#04x} is neither 0 nor 1")),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, String> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|e| format!("string is not UTF-8: {e}"))
    }
}
