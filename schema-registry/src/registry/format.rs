//! Format dispatch: a schema of any type (Avro, JSON Schema, Protobuf) parsed with its
//! references, its identity, and its compatibility check, each handed to its format's module.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{RegistryError, State};
use crate::compat::Level;
use crate::{avro, json_schema, protobuf};

/// A schema type the registry parses: `AVRO` (also when `schemaType` is absent), `JSON` or
/// `PROTOBUF`.
pub fn schema_type(name: Option<&str>) -> Option<&'static str> {
    match name {
        None | Some("AVRO") => Some("AVRO"),
        Some("JSON") => Some("JSON"),
        Some("PROTOBUF") => Some("PROTOBUF"),
        _ => None,
    }
}

/// A parsed schema of any type.
pub enum Parsed {
    Avro(apache_avro::Schema),
    Json(Value),
    Protobuf(protobuf::Proto),
}

/// A schema's references, resolved: (name, type, text), dependencies before dependents.
pub(super) type Deps = Vec<(String, &'static str, String)>;

impl Parsed {
    pub(super) fn parse(schema_type: &str, text: &str, deps: &Deps) -> Result<Parsed, String> {
        match schema_type {
            "JSON" => {
                let v = json_schema::parse(text)?;
                if deps.is_empty() {
                    return Ok(Parsed::Json(v));
                }
                let mut docs = HashMap::new();
                for (name, _, t) in deps {
                    let d = json_schema::parse(t).map_err(|e| format!("reference {name}: {e}"))?;
                    docs.insert(name.clone(), d);
                }
                Ok(Parsed::Json(json_schema::inline_refs(&v, &docs)))
            }
            "PROTOBUF" => {
                let imports = deps
                    .iter()
                    .map(|(n, _, t)| (n.clone(), t.clone()))
                    .collect();
                protobuf::parse(text, &imports).map(Parsed::Protobuf)
            }
            _ if deps.is_empty() => avro::parse(text).map(Parsed::Avro),
            _ => avro::parse_with_refs(text, deps.iter().map(|(_, _, t)| t.as_str()))
                .map(Parsed::Avro),
        }
    }

    /// The identity of a schema: its type's canonical form, kept apart per type, plus its
    /// references (the same text with other references is another schema).
    pub(super) fn ident(&self, text: &str, refs: &Value) -> Result<String, String> {
        let base = match self {
            Parsed::Avro(_) => avro::canonical(text)?,
            Parsed::Json(_) => format!(
                "JSON:{}",
                json_schema::canonical(&serde_json::from_str(text).map_err(|e| e.to_string())?)
            ),
            Parsed::Protobuf(p) => protobuf::canonical(p),
        };
        Ok(with_refs(base, refs))
    }

    /// The identity under `normalize=true`: an Avro schema as the Avro library writes it back
    /// (`{"type":"int"}` is `"int"`, names fully qualified); the others are already normalized.
    pub(super) fn normalized_ident(&self, text: &str, refs: &Value) -> Result<String, String> {
        match self {
            Parsed::Avro(_) => Ok(with_refs(
                format!("AVRO:{}", self.normalized_text(text)?),
                refs,
            )),
            _ => self.ident(text, refs),
        }
    }

    /// The text stored under `normalize=true`.
    pub(super) fn normalized_text(&self, text: &str) -> Result<String, String> {
        match self {
            Parsed::Avro(s) => serde_json::to_string(s).map_err(|e| e.to_string()),
            Parsed::Json(_) => {
                let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
                Ok(json_schema::canonical(&v))
            }
            Parsed::Protobuf(_) => Ok(text.to_string()),
        }
    }
}

pub(super) fn with_refs(base: String, refs: &Value) -> String {
    if has_refs(refs) {
        format!("{base}|refs:{refs}")
    } else {
        base
    }
}

pub(super) fn has_refs(r: &Value) -> bool {
    r.as_array().is_some_and(|a| !a.is_empty())
}

/// Checks `new` against `existing` (version, parsed; oldest first) at `level`. Versions of
/// another type than the new schema are incompatible at any level but `NONE`.
pub(super) fn check_schemas(
    level: Level,
    new: &Parsed,
    existing: Vec<(i32, &'static str, Parsed)>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let new_type = match new {
        Parsed::Avro(_) => "AVRO",
        Parsed::Json(_) => "JSON",
        Parsed::Protobuf(_) => "PROTOBUF",
    };
    let (mut avros, mut jsons, mut protos) = (Vec::new(), Vec::new(), Vec::new());
    for (v, t, p) in existing {
        match p {
            Parsed::Avro(s) if new_type == "AVRO" => avros.push((v, s)),
            Parsed::Json(s) if new_type == "JSON" => jsons.push((v, s)),
            Parsed::Protobuf(s) if new_type == "PROTOBUF" => protos.push((v, s)),
            _ if level != Level::None => reasons.push(format!(
                "{}: version {v} is a {t} schema; the new schema is {new_type}",
                level.name()
            )),
            _ => {}
        }
    }
    match new {
        Parsed::Avro(n) => reasons.extend(avro::check(level, n, &avros)),
        Parsed::Json(n) => reasons.extend(json_schema::check(level, n, &jsons)),
        Parsed::Protobuf(n) => reasons.extend(protobuf::check(level, n, &protos)),
    }
    reasons
}

/// What a register or lookup request carries (`id` and `version` only in IMPORT mode).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Option<Value>,
    #[serde(default)]
    pub id: Option<i32>,
    #[serde(default)]
    pub version: Option<i32>,
}

/// A request's schema, parsed with its references.
pub(super) struct Request {
    pub(super) parsed: Parsed,
    pub(super) ident: String,
    pub(super) normalized_ident: String,
    /// The text to store: Avro and JSON minified (or, normalized, with keys sorted); a
    /// `.proto` file as sent (whitespace is part of its syntax).
    pub(super) text: String,
    pub(super) normalized_text: String,
    pub(super) schema_type: &'static str,
    pub(super) refs: Value,
}

pub(super) fn parse_request(st: &State, req: &SchemaRequest) -> Result<Request, RegistryError> {
    let Some(t) = schema_type(req.schema_type.as_deref()) else {
        return Err(RegistryError::InvalidSchema(format!(
            "Invalid schema: schemaType {} is not supported; the registry supports AVRO, JSON and PROTOBUF",
            req.schema_type.as_deref().unwrap_or_default()
        )));
    };
    let refs = req.references.clone().unwrap_or_else(|| json!([]));
    let invalid = |e: String| {
        RegistryError::InvalidSchema(format!("Invalid schema {}, details: {e}", req.schema))
    };
    let deps = st.resolve_refs(&refs).map_err(invalid)?;
    let parsed = Parsed::parse(t, &req.schema, &deps).map_err(invalid)?;
    let ident = parsed.ident(&req.schema, &refs).map_err(invalid)?;
    let normalized_ident = parsed
        .normalized_ident(&req.schema, &refs)
        .map_err(invalid)?;
    let text = if t == "PROTOBUF" {
        req.schema.clone()
    } else {
        avro::minify(&req.schema)
    };
    let normalized_text = parsed.normalized_text(&req.schema).map_err(invalid)?;
    Ok(Request {
        parsed,
        ident,
        normalized_ident,
        text,
        normalized_text,
        schema_type: t,
        refs,
    })
}
