//! Protobuf: the `.proto` text and its references are compiled with `protox` (the
//! `google/protobuf/*.proto` well-known files are built in), the message type is picked by the
//! Confluent message-index array, and payloads are decoded with `prost-reflect`'s
//! `DynamicMessage`. Well-known types get their own mapping (docs/iceberg.md).

use std::collections::HashMap;

use iceberg::spec::PrimitiveType;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value as PValue,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::error::DecodeError;
use super::shape::{Shape, ShapeField};
use super::source::RegisteredSchema;
use super::value::Value;

/// The name the schema's own text is compiled under.
const MAIN_FILE: &str = "__icestream_value.proto";
/// `google.protobuf.Struct`/`Value`/`ListValue` are recursive: they are unrolled this many
/// levels deep, below which a nested struct or list value is kept as its JSON text.
const STRUCT_DEPTH: usize = 3;

#[derive(Debug)]
pub(crate) struct ProtoDecoder {
    message: MessageDescriptor,
}

struct MemoryResolver {
    files: HashMap<String, String>,
}

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(text) => File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl ProtoDecoder {
    pub fn new(
        registered: &RegisteredSchema,
        indexes: &[i32],
    ) -> Result<(Self, Shape), DecodeError> {
        let id = registered.id;
        let pool = compile(registered)?;
        let file = pool
            .get_file_by_name(MAIN_FILE)
            .ok_or_else(|| DecodeError::schema(id, "compiled schema has no file"))?;
        let message = select_message(file.messages().collect(), indexes)
            .map_err(|reason| DecodeError::schema(id, reason))?;
        Self::for_descriptor(id, message)
    }

    /// The decoder of the message type named `name` (`package.Message`).
    pub fn named(registered: &RegisteredSchema, name: &str) -> Result<(Self, Shape), DecodeError> {
        let id = registered.id;
        let pool = compile(registered)?;
        let message = pool
            .get_message_by_name(name.trim_start_matches('.'))
            .ok_or_else(|| DecodeError::schema(id, format!("no message type {name}")))?;
        Self::for_descriptor(id, message)
    }

    fn for_descriptor(id: i32, message: MessageDescriptor) -> Result<(Self, Shape), DecodeError> {
        let mut stack = Vec::new();
        let shape = message_shape(&message, &mut stack)
            .map_err(|reason| DecodeError::schema(id, reason))?
            .ok_or_else(|| {
                DecodeError::schema(id, format!("message {} has no fields", message.full_name()))
            })?;
        Ok((ProtoDecoder { message }, shape))
    }

    pub fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        let msg = DynamicMessage::decode(self.message.clone(), payload)
            .map_err(|e| format!("invalid {} message: {e}", self.message.full_name()))?;
        message_value(&msg)
    }
}

/// Compiles the schema text with its references as importable files.
fn compile(registered: &RegisteredSchema) -> Result<DescriptorPool, DecodeError> {
    let mut files: HashMap<String, String> = registered
        .references
        .iter()
        .map(|(name, text)| (name.clone(), text.clone()))
        .collect();
    files.insert(MAIN_FILE.to_string(), registered.text.clone());
    let mut resolver = ChainFileResolver::new();
    resolver.add(MemoryResolver { files });
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler
        .open_file(MAIN_FILE)
        .map_err(|e| DecodeError::schema(registered.id, format!("invalid Protobuf schema: {e}")))?;
    Ok(compiler.descriptor_pool())
}

/// The message type the Confluent message-index array names: `[i]` is the file's i-th
/// message, `[i, j]` the j-th nested message of that one, and so on (`[]` means `[0]`).
fn select_message(
    top: Vec<MessageDescriptor>,
    indexes: &[i32],
) -> Result<MessageDescriptor, String> {
    let indexes = if indexes.is_empty() {
        &[0][..]
    } else {
        indexes
    };
    let pick = |list: Vec<MessageDescriptor>, i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| list.get(i).cloned())
            .ok_or_else(|| format!("message index {i} out of range (path {indexes:?})"))
    };
    let mut msg = pick(top, indexes[0])?;
    for &i in &indexes[1..] {
        msg = pick(msg.child_messages().collect(), i)?;
    }
    Ok(msg)
}

fn prim(t: PrimitiveType) -> Shape {
    Shape::Primitive(t)
}

fn uint64() -> PrimitiveType {
    PrimitiveType::Decimal {
        precision: 20,
        scale: 0,
    }
}

/// Shapes of well-known types, by full name (`None` for other messages).
fn well_known_shape(name: &str) -> Option<Shape> {
    Some(match name {
        "google.protobuf.Timestamp" => prim(PrimitiveType::Timestamptz),
        "google.protobuf.Duration" => prim(PrimitiveType::Long),
        "google.protobuf.DoubleValue" => prim(PrimitiveType::Double),
        "google.protobuf.FloatValue" => prim(PrimitiveType::Float),
        "google.protobuf.Int64Value" => prim(PrimitiveType::Long),
        "google.protobuf.UInt64Value" => prim(uint64()),
        "google.protobuf.Int32Value" => prim(PrimitiveType::Int),
        "google.protobuf.UInt32Value" => prim(PrimitiveType::Long),
        "google.protobuf.BoolValue" => prim(PrimitiveType::Boolean),
        "google.protobuf.StringValue" => prim(PrimitiveType::String),
        "google.protobuf.BytesValue" => prim(PrimitiveType::Binary),
        "google.protobuf.Struct" => struct_shape(1),
        "google.protobuf.Value" => value_shape(1),
        "google.protobuf.ListValue" => list_value_shape(1),
        _ => return None,
    })
}

/// `google.protobuf.Struct` at nesting level `depth`: map<string, Value>.
fn struct_shape(depth: usize) -> Shape {
    Shape::Map {
        key: Box::new(prim(PrimitiveType::String)),
        value: Box::new(value_shape(depth)),
        value_required: true,
    }
}

fn list_value_shape(depth: usize) -> Shape {
    Shape::List {
        element: Box::new(value_shape(depth)),
        element_required: true,
    }
}

/// `google.protobuf.Value`: a struct of its oneof's members, at most one of them set.
fn value_shape(depth: usize) -> Shape {
    let (s, l) = if depth >= STRUCT_DEPTH {
        (prim(PrimitiveType::String), prim(PrimitiveType::String))
    } else {
        (struct_shape(depth + 1), list_value_shape(depth + 1))
    };
    Shape::Struct(vec![
        ShapeField::optional("null_value", prim(PrimitiveType::String)),
        ShapeField::optional("number_value", prim(PrimitiveType::Double)),
        ShapeField::optional("string_value", prim(PrimitiveType::String)),
        ShapeField::optional("bool_value", prim(PrimitiveType::Boolean)),
        ShapeField::optional("struct_value", s),
        ShapeField::optional("list_value", l),
    ])
}

/// A message's struct shape; `None` for a message with no fields (no Iceberg/Parquet type).
fn message_shape(
    msg: &MessageDescriptor,
    stack: &mut Vec<String>,
) -> Result<Option<Shape>, String> {
    if let Some(shape) = well_known_shape(msg.full_name()) {
        return Ok(Some(shape));
    }
    if stack.iter().any(|n| n == msg.full_name()) {
        return Err(format!(
            "message {} is recursive; Iceberg has no recursive types",
            msg.full_name()
        ));
    }
    stack.push(msg.full_name().to_string());
    let mut fields = Vec::new();
    for f in msg.fields() {
        if let Some(shape) = field_shape(&f, stack)? {
            fields.push(ShapeField::optional(f.name(), shape));
        }
    }
    stack.pop();
    Ok((!fields.is_empty()).then_some(Shape::Struct(fields)))
}

fn field_shape(f: &FieldDescriptor, stack: &mut Vec<String>) -> Result<Option<Shape>, String> {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return Err(format!("map field {} has no entry message", f.full_name()));
        };
        let key = kind_shape(&entry.map_entry_key_field().kind(), stack)?;
        let value = kind_shape(&entry.map_entry_value_field().kind(), stack)?;
        return Ok(match (key, value) {
            (Some(k), Some(v)) => Some(Shape::Map {
                key: Box::new(k),
                value: Box::new(v),
                value_required: true,
            }),
            _ => None,
        });
    }
    let shape = kind_shape(&f.kind(), stack)?;
    Ok(match shape {
        Some(s) if f.is_list() => Some(Shape::List {
            element: Box::new(s),
            element_required: true,
        }),
        other => other,
    })
}

fn kind_shape(kind: &Kind, stack: &mut Vec<String>) -> Result<Option<Shape>, String> {
    use PrimitiveType as P;
    Ok(Some(match kind {
        Kind::Double => prim(P::Double),
        Kind::Float => prim(P::Float),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => prim(P::Int),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => prim(P::Long),
        Kind::Uint32 | Kind::Fixed32 => prim(P::Long),
        Kind::Uint64 | Kind::Fixed64 => prim(uint64()),
        Kind::Bool => prim(P::Boolean),
        Kind::String => prim(P::String),
        Kind::Bytes => prim(P::Binary),
        Kind::Enum(_) => prim(P::String),
        Kind::Message(m) => return message_shape(m, stack),
    }))
}

fn message_value(msg: &DynamicMessage) -> Result<Value, String> {
    let desc = msg.descriptor();
    if let Some(v) = well_known_value(msg, desc.full_name())? {
        return Ok(v);
    }
    let mut fields = Vec::new();
    for f in desc.fields() {
        // Fields of empty messages have no column: their (empty) struct values are ignored
        // when rows become Arrow arrays.
        let v = if f.supports_presence() && !msg.has_field(&f) {
            Value::Null
        } else {
            field_value(&f, &msg.get_field(&f))?
        };
        fields.push((f.name().to_string(), v));
    }
    Ok(Value::Struct(fields))
}

fn field_value(f: &FieldDescriptor, v: &PValue) -> Result<Value, String> {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            return Err("map without entry type".into());
        };
        let vk = entry.map_entry_value_field().kind();
        let PValue::Map(m) = v else {
            return Err(format!("field {} is not a map", f.name()));
        };
        let mut entries: Vec<(&MapKey, &PValue)> = m.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        return entries
            .into_iter()
            .map(|(k, v)| Ok((map_key(k), scalar_or_message(&vk, v)?)))
            .collect::<Result<Vec<_>, String>>()
            .map(Value::Map);
    }
    if f.is_list() {
        let PValue::List(items) = v else {
            return Err(format!("field {} is not a list", f.name()));
        };
        return items
            .iter()
            .map(|i| scalar_or_message(&f.kind(), i))
            .collect::<Result<Vec<_>, String>>()
            .map(Value::List);
    }
    scalar_or_message(&f.kind(), v)
}

fn uint64_value(u: u64) -> Value {
    Value::Decimal {
        unscaled: i128::from(u),
        scale: 0,
    }
}

fn map_key(k: &MapKey) -> Value {
    match k {
        MapKey::Bool(b) => Value::Boolean(*b),
        MapKey::I32(i) => Value::Int(*i),
        MapKey::I64(i) => Value::Long(*i),
        MapKey::U32(u) => Value::Long(i64::from(*u)),
        MapKey::U64(u) => uint64_value(*u),
        MapKey::String(s) => Value::String(s.clone()),
    }
}

fn enum_name(e: &EnumDescriptor, n: i32) -> String {
    e.get_value(n)
        .map(|v| v.name().to_string())
        .unwrap_or_else(|| n.to_string())
}

fn scalar_or_message(kind: &Kind, v: &PValue) -> Result<Value, String> {
    Ok(match (kind, v) {
        (_, PValue::Bool(b)) => Value::Boolean(*b),
        (_, PValue::I32(i)) => Value::Int(*i),
        (_, PValue::I64(i)) => Value::Long(*i),
        (_, PValue::U32(u)) => Value::Long(i64::from(*u)),
        (_, PValue::U64(u)) => uint64_value(*u),
        (_, PValue::F32(f)) => Value::Float(*f),
        (_, PValue::F64(f)) => Value::Double(*f),
        (_, PValue::String(s)) => Value::String(s.clone()),
        (_, PValue::Bytes(b)) => Value::Binary(b.to_vec()),
        (Kind::Enum(e), PValue::EnumNumber(n)) => Value::String(enum_name(e, *n)),
        (_, PValue::EnumNumber(n)) => Value::String(n.to_string()),
        (_, PValue::Message(m)) => message_value(m)?,
        (_, PValue::List(_) | PValue::Map(_)) => {
            return Err("nested list or map where a single value was expected".into())
        }
    })
}

fn get<'a>(msg: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, PValue>> {
    msg.get_field_by_name(name)
}

fn well_known_value(msg: &DynamicMessage, name: &str) -> Result<Option<Value>, String> {
    let int = |n: &str| match get(msg, n).as_deref() {
        Some(PValue::I64(i)) => *i,
        Some(PValue::I32(i)) => i64::from(*i),
        _ => 0,
    };
    let wrapped = || {
        get(msg, "value")
            .map(|v| scalar_or_message(&Kind::Bool, &v))
            .transpose()
            .map(|v| v.unwrap_or(Value::Null))
    };
    Ok(Some(match name {
        "google.protobuf.Timestamp" | "google.protobuf.Duration" => {
            let (seconds, nanos) = (int("seconds"), int("nanos"));
            let micros = seconds
                .checked_mul(1_000_000)
                .and_then(|s| s.checked_add(nanos / 1000))
                .ok_or_else(|| format!("{name} {seconds}s {nanos}ns out of range"))?;
            if name.ends_with("Timestamp") {
                Value::Timestamp(micros)
            } else {
                Value::Long(micros)
            }
        }
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => wrapped()?,
        "google.protobuf.Struct" => struct_value(msg, 1),
        "google.protobuf.Value" => dyn_value(msg, 1),
        "google.protobuf.ListValue" => list_value(msg, 1),
        _ => return Ok(None),
    }))
}

fn struct_value(msg: &DynamicMessage, depth: usize) -> Value {
    let mut entries = Vec::new();
    if let Some(PValue::Map(m)) = get(msg, "fields").as_deref() {
        let mut sorted: Vec<(&MapKey, &PValue)> = m.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            if let (MapKey::String(k), PValue::Message(v)) = (k, v) {
                entries.push((Value::String(k.clone()), dyn_value(v, depth)));
            }
        }
    }
    Value::Map(entries)
}

fn list_value(msg: &DynamicMessage, depth: usize) -> Value {
    let mut items = Vec::new();
    if let Some(PValue::List(l)) = get(msg, "values").as_deref() {
        for v in l {
            if let PValue::Message(v) = v {
                items.push(dyn_value(v, depth));
            }
        }
    }
    Value::List(items)
}

/// A `google.protobuf.Value` as the struct of `value_shape(depth)`.
fn dyn_value(msg: &DynamicMessage, depth: usize) -> Value {
    let desc = msg.descriptor();
    let mut fields: Vec<(String, Value)> = Vec::new();
    for f in desc.fields() {
        if !msg.has_field(&f) {
            continue;
        }
        let v = msg.get_field(&f);
        let value = match (f.name(), v.as_ref()) {
            ("null_value", _) => Value::String("NULL_VALUE".into()),
            ("number_value", PValue::F64(d)) => Value::Double(*d),
            ("string_value", PValue::String(s)) => Value::String(s.clone()),
            ("bool_value", PValue::Bool(b)) => Value::Boolean(*b),
            ("struct_value", PValue::Message(m)) if depth >= STRUCT_DEPTH => {
                Value::String(json_text(m))
            }
            ("struct_value", PValue::Message(m)) => struct_value(m, depth + 1),
            ("list_value", PValue::Message(m)) if depth >= STRUCT_DEPTH => {
                Value::String(json_text(m))
            }
            ("list_value", PValue::Message(m)) => list_value(m, depth + 1),
            _ => continue,
        };
        fields.push((f.name().to_string(), value));
    }
    Value::Struct(fields)
}

/// The canonical JSON of a Struct/ListValue/Value message (below `STRUCT_DEPTH`).
fn json_text(msg: &DynamicMessage) -> String {
    fn to_json(msg: &DynamicMessage) -> serde_json::Value {
        let desc = msg.descriptor();
        match desc.full_name() {
            "google.protobuf.Struct" => {
                let mut out = serde_json::Map::new();
                if let Some(PValue::Map(m)) = get(msg, "fields").as_deref() {
                    for (k, v) in m {
                        if let (MapKey::String(k), PValue::Message(v)) = (k, v) {
                            out.insert(k.clone(), to_json(v));
                        }
                    }
                }
                serde_json::Value::Object(out)
            }
            "google.protobuf.ListValue" => {
                let mut out = Vec::new();
                if let Some(PValue::List(l)) = get(msg, "values").as_deref() {
                    for v in l {
                        if let PValue::Message(v) = v {
                            out.push(to_json(v));
                        }
                    }
                }
                serde_json::Value::Array(out)
            }
            _ => {
                for f in desc.fields() {
                    if !msg.has_field(&f) {
                        continue;
                    }
                    return match msg.get_field(&f).as_ref() {
                        PValue::F64(d) => serde_json::Number::from_f64(*d)
                            .map(serde_json::Value::Number)
                            .unwrap_or(serde_json::Value::Null),
                        PValue::String(s) => serde_json::Value::String(s.clone()),
                        PValue::Bool(b) => serde_json::Value::Bool(*b),
                        PValue::Message(m) => to_json(m),
                        _ => serde_json::Value::Null,
                    };
                }
                serde_json::Value::Null
            }
        }
    }
    to_json(msg).to_string()
}
