//! JSON Schema: the schema compiles to a tree of typed nodes (local and cross-document `$ref`s
//! resolved, recursion rejected) and payloads are parsed with `serde_json` and checked against
//! it. What has no single Iceberg type is kept as its JSON text (docs/iceberg.md).

use std::collections::HashMap;

use iceberg::spec::PrimitiveType;
use serde_json::Value as J;

use super::error::DecodeError;
use super::json_schema::Doc;
use super::shape::{Shape, ShapeField};
use super::source::RegisteredSchema;
use super::time::{parse_date, parse_rfc3339_micros};
use super::value::Value;

/// Deepest schema nesting compiled (guards against pathological documents).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Boolean,
    Integer,
    Number,
    String,
    DateTime,
    Date,
    Uuid,
    Object(Vec<(String, Node)>),
    Map {
        value: Box<Node>,
        nullable: bool,
    },
    Array {
        items: Box<Node>,
        nullable: bool,
    },
    /// No single Iceberg type: the value's JSON text.
    Json,
}

#[derive(Debug)]
pub(crate) struct JsonDecoder {
    root: Node,
}

struct Ctx<'a> {
    main: &'a Doc,
    refs: &'a HashMap<String, Doc>,
    /// `$ref`s being expanded (document name, pointer), to reject recursion.
    stack: Vec<(String, String)>,
}

impl JsonDecoder {
    pub fn new(registered: &RegisteredSchema) -> Result<(Self, Shape), DecodeError> {
        let id = registered.id;
        let main = Doc::parse(&registered.text).map_err(|r| DecodeError::schema(id, r))?;
        let mut refs = HashMap::new();
        for (name, text) in &registered.references {
            let doc = Doc::parse(text)
                .map_err(|r| DecodeError::schema(id, format!("reference {name}: {r}")))?;
            refs.insert(name.clone(), doc);
        }
        let mut ctx = Ctx {
            main: &main,
            refs: &refs,
            stack: Vec::new(),
        };
        let (root, _) = compile(&main, "", &mut ctx, 0).map_err(|r| DecodeError::schema(id, r))?;
        let shape = shape(&root);
        Ok((JsonDecoder { root }, shape))
    }

    pub fn decode(&self, payload: &[u8]) -> Result<Value, String> {
        let v: J = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
        decode(&self.root, &v, "$")
    }
}

fn shape(node: &Node) -> Shape {
    let p = Shape::Primitive;
    match node {
        Node::Boolean => p(PrimitiveType::Boolean),
        Node::Integer => p(PrimitiveType::Long),
        Node::Number => p(PrimitiveType::Double),
        Node::String | Node::Json => p(PrimitiveType::String),
        Node::DateTime => p(PrimitiveType::Timestamptz),
        Node::Date => p(PrimitiveType::Date),
        Node::Uuid => p(PrimitiveType::Uuid),
        Node::Object(props) => Shape::Struct(
            props
                .iter()
                .map(|(name, n)| ShapeField::optional(name.clone(), shape(n)))
                .collect(),
        ),
        Node::Map { value, nullable } => Shape::Map {
            key: Box::new(p(PrimitiveType::String)),
            value: Box::new(shape(value)),
            value_required: !nullable,
        },
        Node::Array { items, nullable } => Shape::List {
            element: Box::new(shape(items)),
            element_required: !nullable,
        },
    }
}

/// Compiles a schema node of document `doc_name` ("" for the main document); returns the
/// node and whether it admits null.
fn compile(
    s: &Doc,
    doc_name: &str,
    ctx: &mut Ctx<'_>,
    depth: usize,
) -> Result<(Node, bool), String> {
    if depth > MAX_DEPTH {
        return Err(format!("schema nests deeper than {MAX_DEPTH} levels"));
    }
    let d = depth + 1;
    if !matches!(s, Doc::Object(_)) {
        // `true` (anything) and `false` (nothing) have no type.
        return Ok((Node::Json, true));
    }
    if let Some(r) = s.get("$ref").and_then(Doc::as_str) {
        return compile_ref(r, doc_name, ctx, d);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Doc::Array(branches)) = s.get(key) {
            let mut nullable = false;
            let mut nodes = Vec::new();
            for b in branches {
                if is_null_schema(b) {
                    nullable = true;
                    continue;
                }
                let (n, nb) = compile(b, doc_name, ctx, d)?;
                nullable |= nb;
                nodes.push(n);
            }
            return Ok((unify(nodes), nullable));
        }
    }
    if let Some(Doc::Array(parts)) = s.get("allOf") {
        let mut nodes = Vec::new();
        let mut nullable = true;
        for p in parts {
            let (n, nb) = compile(p, doc_name, ctx, d)?;
            nullable &= nb;
            nodes.push(n);
        }
        let merged = if nodes.iter().all(|n| matches!(n, Node::Object(_))) {
            let mut props: Vec<(String, Node)> = Vec::new();
            for n in nodes {
                if let Node::Object(ps) = n {
                    for (k, v) in ps {
                        if !props.iter().any(|(e, _)| *e == k) {
                            props.push((k, v));
                        }
                    }
                }
            }
            Node::Object(props)
        } else {
            unify(nodes)
        };
        return Ok((merged, nullable));
    }
    if let Some(Doc::Array(values)) = s.get("enum") {
        let node = if values
            .iter()
            .all(|v| matches!(v, Doc::String(_) | Doc::Null))
        {
            Node::String
        } else {
            Node::Json
        };
        return Ok((node, values.contains(&Doc::Null)));
    }
    let mut nullable = false;
    let types: Vec<&str> = match s.get("type") {
        Some(Doc::String(t)) => vec![t.as_str()],
        Some(Doc::Array(ts)) => ts.iter().filter_map(Doc::as_str).collect(),
        _ => {
            // No type: inferred from the keywords present.
            if s.get("properties").is_some() || s.get("additionalProperties").is_some() {
                vec!["object"]
            } else if s.get("items").is_some() {
                vec!["array"]
            } else {
                return Ok((Node::Json, true));
            }
        }
    };
    let mut typed: Vec<&str> = Vec::new();
    for t in types {
        if t == "null" {
            nullable = true;
        } else if !typed.contains(&t) {
            typed.push(t);
        }
    }
    let node = match typed.as_slice() {
        [] => Node::Json,
        ["integer", "number"] | ["number", "integer"] => Node::Number,
        [t] => match *t {
            "boolean" => Node::Boolean,
            "integer" => Node::Integer,
            "number" => Node::Number,
            "string" => match s.get("format").and_then(Doc::as_str) {
                Some("date-time") => Node::DateTime,
                Some("date") => Node::Date,
                Some("uuid") => Node::Uuid,
                _ => Node::String,
            },
            "object" => compile_object(s, doc_name, ctx, d)?,
            "array" => match s.get("items") {
                Some(items @ (Doc::Object(_) | Doc::Bool(true))) => {
                    let (n, nb) = compile(items, doc_name, ctx, d)?;
                    Node::Array {
                        items: Box::new(n),
                        nullable: nb,
                    }
                }
                // No items, or tuple validation: each element as its JSON text.
                _ => Node::Array {
                    items: Box::new(Node::Json),
                    nullable: true,
                },
            },
            _ => Node::Json,
        },
        _ => Node::Json,
    };
    Ok((node, nullable))
}

fn compile_object(s: &Doc, doc_name: &str, ctx: &mut Ctx<'_>, d: usize) -> Result<Node, String> {
    if let Some(Doc::Object(props)) = s.get("properties") {
        if !props.is_empty() {
            let mut out = Vec::with_capacity(props.len());
            for (name, p) in props {
                let (n, _) = compile(p, doc_name, ctx, d)?;
                out.push((name.clone(), n));
            }
            return Ok(Node::Object(out));
        }
    }
    match s.get("additionalProperties") {
        Some(ap @ Doc::Object(_)) => {
            let (n, nb) = compile(ap, doc_name, ctx, d)?;
            Ok(Node::Map {
                value: Box::new(n),
                nullable: nb,
            })
        }
        _ => Ok(Node::Json),
    }
}

fn compile_ref(
    r: &str,
    doc_name: &str,
    ctx: &mut Ctx<'_>,
    d: usize,
) -> Result<(Node, bool), String> {
    let (target_doc, pointer) = match r.split_once('#') {
        Some((doc, ptr)) => (doc, ptr),
        None => (r, ""),
    };
    let name = if target_doc.is_empty() {
        doc_name.to_string()
    } else {
        target_doc.to_string()
    };
    let key = (name.clone(), pointer.to_string());
    if ctx.stack.contains(&key) {
        return Err(format!(
            "$ref {r:?} is recursive; Iceberg has no recursive types"
        ));
    }
    let doc: &Doc = if name.is_empty() {
        ctx.main
    } else {
        ctx.refs
            .get(&name)
            .ok_or_else(|| format!("$ref {r:?} names no reference of this schema"))?
    };
    let target = doc
        .pointer(pointer)
        .ok_or_else(|| format!("$ref {r:?} points at nothing"))?;
    ctx.stack.push(key);
    let out = compile(target, &name, ctx, d);
    ctx.stack.pop();
    out
}

fn is_null_schema(s: &Doc) -> bool {
    matches!(s.get("type"), Some(Doc::String(t)) if t == "null")
}

/// One node for several alternatives: the common one, number for integer|number, else JSON.
fn unify(nodes: Vec<Node>) -> Node {
    let mut it = nodes.into_iter();
    let Some(first) = it.next() else {
        return Node::Json;
    };
    let mut out = first;
    for n in it {
        out = match (out, n) {
            (a, b) if a == b => a,
            (Node::Integer | Node::Number, Node::Integer | Node::Number) => Node::Number,
            _ => return Node::Json,
        };
    }
    out
}

fn kind(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "an array",
        J::Object(_) => "an object",
    }
}

fn decode(node: &Node, v: &J, path: &str) -> Result<Value, String> {
    let wrong = |expected: &str| format!("{path}: expected {expected}, got {}", kind(v));
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(match node {
        Node::Json => Value::String(v.to_string()),
        Node::Boolean => Value::Boolean(v.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Node::Integer => match v {
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Long(i),
                None => {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() == 0.0
                        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                    {
                        Value::Long(f as i64)
                    } else {
                        return Err(format!("{path}: {n} is not a 64-bit integer"));
                    }
                }
            },
            _ => return Err(wrong("an integer")),
        },
        Node::Number => Value::Double(v.as_f64().ok_or_else(|| wrong("a number"))?),
        Node::String => Value::String(v.as_str().ok_or_else(|| wrong("a string"))?.to_string()),
        Node::DateTime => {
            let s = v.as_str().ok_or_else(|| wrong("a date-time string"))?;
            Value::Timestamp(
                parse_rfc3339_micros(s).map_err(|e| format!("{path}: date-time {s:?}: {e}"))?,
            )
        }
        Node::Date => {
            let s = v.as_str().ok_or_else(|| wrong("a date string"))?;
            Value::Date(parse_date(s).map_err(|e| format!("{path}: date {s:?}: {e}"))?)
        }
        Node::Uuid => {
            let s = v.as_str().ok_or_else(|| wrong("a uuid string"))?;
            let u = uuid::Uuid::parse_str(s).map_err(|e| format!("{path}: uuid {s:?}: {e}"))?;
            Value::Uuid(*u.as_bytes())
        }
        Node::Object(props) => {
            let obj = v.as_object().ok_or_else(|| wrong("an object"))?;
            let mut fields = Vec::with_capacity(props.len());
            for (name, n) in props {
                let value = match obj.get(name) {
                    Some(pv) => decode(n, pv, &format!("{path}.{name}"))?,
                    None => Value::Null,
                };
                fields.push((name.clone(), value));
            }
            Value::Struct(fields)
        }
        Node::Map { value, nullable } => {
            let obj = v.as_object().ok_or_else(|| wrong("an object"))?;
            let mut entries = Vec::with_capacity(obj.len());
            for (k, pv) in obj {
                let p = format!("{path}.{k}");
                if pv.is_null() && !nullable {
                    return Err(format!("{p}: null where the schema allows none"));
                }
                entries.push((Value::String(k.clone()), decode(value, pv, &p)?));
            }
            Value::Map(entries)
        }
        Node::Array { items, nullable } => {
            let arr = v.as_array().ok_or_else(|| wrong("an array"))?;
            let mut out = Vec::with_capacity(arr.len());
            for (i, item) in arr.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if item.is_null() && !nullable {
                    return Err(format!("{p}: null where the schema allows none"));
                }
                out.push(decode(items, item, &p)?);
            }
            Value::List(out)
        }
    })
}
