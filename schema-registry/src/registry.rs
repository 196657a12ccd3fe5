//! The registry's state (rebuilt from `_schemas`) and its operations. Every change is a
//! record written to `_schemas` and acknowledged once committed; the state then applies the
//! same record the way a replay does, so the topic is the only source of truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use engine::Broker;
use serde_json::{json, Value};

use crate::avro;
use crate::compat::Level;
use crate::store::{self, StoreError};
use crate::{json_schema, protobuf};

/// Errors with the Confluent registry's HTTP statuses and error codes.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("{0}")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Version {0} for subject '{1}' was soft deleted.Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted(i32, String),
    #[error(
        "Version {0} for subject '{1}' was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted(i32, String),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("{0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibility,
    #[error("Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT")]
    InvalidMode,
    #[error("Subject {0} is in read-only mode")]
    ReadOnly(String),
    #[error("{0}")]
    NotPermitted(String),
    #[error("One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={0},version={1}}}.")]
    ReferenceExists(String, i32),
    #[error("{0}")]
    IdConflict(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotFound(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{0}\", details: [{1}]")]
    Incompatible(String, String),
    #[error("Error while storing the schema registry's state: {0}")]
    Store(#[from] StoreError),
    /// In a cluster: `_schemas` has no leader (or its registry is not known yet).
    #[error("Unknown leader: {0}")]
    UnknownLeader(String),
    #[error("Error while forwarding the request to the leader: {0}")]
    Forwarding(String),
    #[error("Operation timed out: {0}")]
    Timeout(String),
}

impl RegistryError {
    /// (HTTP status, Confluent error code)
    pub fn codes(&self) -> (u16, u32) {
        use RegistryError::*;
        match self {
            SubjectNotFound(_) => (404, 40401),
            VersionNotFound(_) => (404, 40402),
            SchemaNotFound(_) => (404, 40403),
            SubjectSoftDeleted(_) => (404, 40404),
            SubjectNotSoftDeleted(_) => (404, 40405),
            VersionSoftDeleted(..) => (404, 40406),
            VersionNotSoftDeleted(..) => (404, 40407),
            SubjectConfigNotFound(_) => (404, 40408),
            InvalidSchema(_) => (422, 42201),
            InvalidVersion(_) => (422, 42202),
            InvalidCompatibility => (422, 42203),
            InvalidMode => (422, 42204),
            ReadOnly(_) | NotPermitted(_) => (422, 42205),
            ReferenceExists(..) => (422, 42206),
            IdConflict(_) => (422, 42207),
            SubjectModeNotFound(_) => (404, 40409),
            Incompatible(..) => (409, 409),
            // A write that raced a leadership change: the leader is elsewhere now.
            Store(StoreError::Append(engine::partition::PartitionError::NotLeader)) => (500, 50004),
            Store(_) => (500, 50001),
            Forwarding(_) => (500, 50003),
            UnknownLeader(_) => (500, 50004),
            Timeout(_) => (500, 50002),
        }
    }
}

/// A version as `GET /subjects/{s}/versions` names it: a number or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Latest,
    Number(i32),
}

impl VersionRef {
    pub fn parse(s: &str) -> Result<VersionRef, RegistryError> {
        if s == "latest" || s == "-1" {
            return Ok(VersionRef::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(VersionRef::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_string())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VersionEntry {
    pub id: i32,
    pub deleted: bool,
    pub references: Value,
}

/// One subject's version as the API returns it.
#[derive(Debug, Clone)]
pub struct SchemaVersion {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: String,
    pub references: Value,
    /// `AVRO`, `JSON` or `PROTOBUF`.
    pub schema_type: &'static str,
}

impl SchemaVersion {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "subject": self.subject,
            "version": self.version,
            "id": self.id,
            "schema": self.schema,
        });
        if self.schema_type != "AVRO" {
            v["schemaType"] = self.schema_type.into();
        }
        if has_refs(&self.references) {
            v["references"] = self.references.clone();
        }
        v
    }
}

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
type Deps = Vec<(String, &'static str, String)>;

impl Parsed {
    fn parse(schema_type: &str, text: &str, deps: &Deps) -> Result<Parsed, String> {
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
    fn ident(&self, text: &str, refs: &Value) -> Result<String, String> {
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
    fn normalized_ident(&self, text: &str, refs: &Value) -> Result<String, String> {
        match self {
            Parsed::Avro(_) => Ok(with_refs(
                format!("AVRO:{}", self.normalized_text(text)?),
                refs,
            )),
            _ => self.ident(text, refs),
        }
    }

    /// The text stored under `normalize=true`.
    fn normalized_text(&self, text: &str) -> Result<String, String> {
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

fn with_refs(base: String, refs: &Value) -> String {
    if has_refs(refs) {
        format!("{base}|refs:{refs}")
    } else {
        base
    }
}

fn has_refs(r: &Value) -> bool {
    r.as_array().is_some_and(|a| !a.is_empty())
}

/// Checks `new` against `existing` (version, parsed; oldest first) at `level`. Versions of
/// another type than the new schema are incompatible at any level but `NONE`.
fn check_schemas(
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

/// A registry or subject mode, as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
    ReadOnlyOverride,
    Import,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Mode::ReadWrite,
            "READONLY" => Mode::ReadOnly,
            "READONLY_OVERRIDE" => Mode::ReadOnlyOverride,
            "IMPORT" => Mode::Import,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::ReadOnlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
        }
    }

    fn read_only(self) -> bool {
        matches!(self, Mode::ReadOnly | Mode::ReadOnlyOverride)
    }
}

/// A compatibility config (global or a subject's): each part may be unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    pub level: Option<Level>,
    pub normalize: Option<bool>,
}

impl Config {
    pub fn to_json(self) -> Value {
        let mut v = json!({});
        if let Some(l) = self.level {
            v["compatibilityLevel"] = l.name().into();
        }
        if let Some(n) = self.normalize {
            v["normalize"] = n.into();
        }
        v
    }
}

#[derive(Default)]
struct State {
    /// id -> schema text as first registered
    by_id: BTreeMap<i32, String>,
    /// id -> schema type (`AVRO`, `JSON` or `PROTOBUF`)
    type_by_id: HashMap<i32, &'static str>,
    /// id -> the references it was registered with
    refs_by_id: HashMap<i32, Value>,
    /// id -> its identity (IMPORT refuses to give an id to another schema)
    ident_by_id: HashMap<i32, String>,
    id_by_schema: HashMap<String, i32>,
    /// identity under `normalize=true` -> id
    id_by_normalized: HashMap<String, i32>,
    /// id -> versions (soft-deleted included) that use it: produce-time validation asks
    uses: HashMap<i32, usize>,
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    config: Config,
    subject_config: HashMap<String, Config>,
    mode: Option<Mode>,
    subject_mode: HashMap<String, Mode>,
    next_id: i32,
}

impl State {
    /// Applies one `_schemas` record (Confluent's format). Unknown records are skipped.
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = serde_json::from_slice::<Value>(key) else {
            return;
        };
        let value = value.and_then(|v| serde_json::from_slice::<Value>(v).ok());
        let subject = key["subject"].as_str().map(str::to_string);
        match key["keytype"].as_str() {
            Some("SCHEMA") => {
                let (Some(subject), Some(version)) = (subject, key["version"].as_i64()) else {
                    return;
                };
                let version = version as i32;
                let Some(value) = value else {
                    let mut removed = None;
                    if let Some(vs) = self.subjects.get_mut(&subject) {
                        removed = vs.remove(&version);
                        if vs.is_empty() {
                            self.subjects.remove(&subject);
                        }
                    }
                    if let Some(old) = removed {
                        self.unuse(old.id);
                    }
                    return;
                };
                let (Some(id), Some(text)) = (value["id"].as_i64(), value["schema"].as_str())
                else {
                    return;
                };
                let id = id as i32;
                let Some(schema_type) = schema_type(value["schemaType"].as_str()) else {
                    return;
                };
                let refs = value
                    .get("references")
                    .cloned()
                    .unwrap_or_else(|| json!([]));
                if !self.by_id.contains_key(&id) {
                    let (ident, norm) = self.idents(schema_type, text, &refs);
                    self.by_id.insert(id, text.to_string());
                    self.type_by_id.insert(id, schema_type);
                    self.refs_by_id.insert(id, refs.clone());
                    self.id_by_schema.entry(ident.clone()).or_insert(id);
                    self.id_by_normalized.entry(norm).or_insert(id);
                    self.ident_by_id.insert(id, ident);
                }
                // An imported id may be the largest there is: saturate, the next
                // registration then fails instead of wrapping.
                self.next_id = self.next_id.max(id.saturating_add(1));
                let entry = VersionEntry {
                    id,
                    deleted: value["deleted"].as_bool().unwrap_or(false),
                    references: refs,
                };
                *self.uses.entry(id).or_default() += 1;
                if let Some(old) = self
                    .subjects
                    .entry(subject)
                    .or_default()
                    .insert(version, entry)
                {
                    self.unuse(old.id);
                }
            }
            Some("CONFIG") => {
                let c = Config {
                    level: value
                        .as_ref()
                        .and_then(|v| v["compatibilityLevel"].as_str())
                        .and_then(Level::parse),
                    normalize: value.as_ref().and_then(|v| v["normalize"].as_bool()),
                };
                match subject {
                    None => self.config = c,
                    Some(s) if value.is_some() => {
                        self.subject_config.insert(s, c);
                    }
                    Some(s) => {
                        self.subject_config.remove(&s);
                    }
                }
            }
            Some("MODE") => {
                let mode = value
                    .as_ref()
                    .and_then(|v| v["mode"].as_str())
                    .and_then(Mode::parse);
                match (subject, mode) {
                    (None, m) => self.mode = m,
                    (Some(s), Some(m)) => {
                        self.subject_mode.insert(s, m);
                    }
                    (Some(s), None) => {
                        self.subject_mode.remove(&s);
                    }
                }
            }
            Some("DELETE_SUBJECT") => {
                let (Some(subject), Some(upto)) =
                    (subject, value.as_ref().and_then(|v| v["version"].as_i64()))
                else {
                    return;
                };
                if let Some(vs) = self.subjects.get_mut(&subject) {
                    for (_, e) in vs.range_mut(..=upto as i32) {
                        e.deleted = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn unuse(&mut self, id: i32) {
        if let Some(n) = self.uses.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.uses.remove(&id);
            }
        }
    }

    /// The identity and normalized identity of a stored schema; the text itself if it does
    /// not parse (it was valid when registered, but a reference may have gone since).
    fn idents(&self, schema_type: &'static str, text: &str, refs: &Value) -> (String, String) {
        let parsed = self
            .resolve_refs(refs)
            .and_then(|deps| Parsed::parse(schema_type, text, &deps));
        match parsed {
            Ok(p) => {
                let fallback = || format!("{schema_type}:{text}");
                (
                    p.ident(text, refs).unwrap_or_else(|_| fallback()),
                    p.normalized_ident(text, refs)
                        .unwrap_or_else(|_| fallback()),
                )
            }
            Err(_) => {
                let t = format!("{schema_type}:{text}");
                (with_refs(t.clone(), refs), with_refs(t, refs))
            }
        }
    }

    /// Resolves references (and theirs) to (name, type, text), dependencies first.
    fn resolve_refs(&self, refs: &Value) -> Result<Deps, String> {
        let mut out = Deps::new();
        let mut seen = std::collections::HashSet::new();
        self.collect_refs(refs, &mut out, &mut seen, 0)?;
        Ok(out)
    }

    fn collect_refs(
        &self,
        refs: &Value,
        out: &mut Deps,
        seen: &mut std::collections::HashSet<String>,
        depth: usize,
    ) -> Result<(), String> {
        let Some(list) = refs.as_array() else {
            return if refs.is_null() {
                Ok(())
            } else {
                Err("references must be an array".into())
            };
        };
        if depth > 32 {
            return Err("references nest more than 32 levels deep".into());
        }
        for r in list {
            let (Some(name), Some(subject)) = (r["name"].as_str(), r["subject"].as_str()) else {
                return Err(format!(
                    "a reference needs a name, a subject and a version: {r}"
                ));
            };
            let version = match r["version"].as_i64() {
                Some(-1) => VersionRef::Latest,
                Some(n) if n >= 1 && n <= i32::MAX as i64 => VersionRef::Number(n as i32),
                _ => {
                    return Err(format!(
                        "reference {name}: invalid version {}",
                        r["version"]
                    ))
                }
            };
            if !seen.insert(name.to_string()) {
                continue;
            }
            let sv = self.version(subject, version, false).map_err(|_| {
                format!(
                    "reference {name}: subject '{subject}' version {} not found",
                    r["version"]
                )
            })?;
            self.collect_refs(&sv.references, out, seen, depth + 1)?;
            out.push((name.to_string(), sv.schema_type, sv.schema));
        }
        Ok(())
    }

    /// Parses a stored schema by id, with its references.
    fn parsed(&self, id: i32) -> Result<Parsed, RegistryError> {
        let text = self.by_id.get(&id).cloned().unwrap_or_default();
        let refs = self.refs_by_id.get(&id).cloned().unwrap_or(Value::Null);
        self.resolve_refs(&refs)
            .and_then(|deps| Parsed::parse(self.type_of(id), &text, &deps))
            .map_err(RegistryError::InvalidSchema)
    }

    fn level(&self, subject: &str) -> Level {
        self.subject_config
            .get(subject)
            .and_then(|c| c.level)
            .or(self.config.level)
            .unwrap_or(Level::Backward)
    }

    fn normalize(&self, subject: &str) -> bool {
        self.subject_config
            .get(subject)
            .and_then(|c| c.normalize)
            .or(self.config.normalize)
            .unwrap_or(false)
    }

    /// A subject's own mode wins over the global one, except a global READONLY_OVERRIDE,
    /// which (as its name says, and as in Confluent's registry) applies to every subject.
    fn mode_of(&self, subject: &str) -> Mode {
        if self.mode == Some(Mode::ReadOnlyOverride) {
            return Mode::ReadOnlyOverride;
        }
        self.subject_mode
            .get(subject)
            .copied()
            .or(self.mode)
            .unwrap_or(Mode::ReadWrite)
    }

    fn versions(&self, subject: &str, deleted: bool) -> Vec<(i32, &VersionEntry)> {
        self.subjects
            .get(subject)
            .map(|vs| {
                vs.iter()
                    .filter(|(_, e)| deleted || !e.deleted)
                    .map(|(v, e)| (*v, e))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn version(
        &self,
        subject: &str,
        v: VersionRef,
        deleted: bool,
    ) -> Result<SchemaVersion, RegistryError> {
        let live = self.versions(subject, deleted);
        if live.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let found = match v {
            VersionRef::Latest => live.last().copied(),
            VersionRef::Number(n) => live.iter().find(|(x, _)| *x == n).copied(),
        };
        let Some((version, e)) = found else {
            let n = match v {
                VersionRef::Number(n) => n.to_string(),
                VersionRef::Latest => "latest".into(),
            };
            return Err(RegistryError::VersionNotFound(n));
        };
        Ok(SchemaVersion {
            subject: subject.to_string(),
            version,
            id: e.id,
            schema: self.by_id.get(&e.id).cloned().unwrap_or_default(),
            references: e.references.clone(),
            schema_type: self.type_of(e.id),
        })
    }

    fn type_of(&self, id: i32) -> &'static str {
        self.type_by_id.get(&id).copied().unwrap_or("AVRO")
    }

    /// The parsed schemas of versions to check against.
    fn parsed_versions(
        &self,
        against: &[(i32, i32)],
    ) -> Result<Vec<(i32, &'static str, Parsed)>, RegistryError> {
        against
            .iter()
            .map(|(v, id)| Ok((*v, self.type_of(*id), self.parsed(*id)?)))
            .collect()
    }

    /// Ids of the versions (soft-deleted ones only with `deleted`) whose references name
    /// `subject` at `version`.
    fn referenced_by(&self, subject: &str, version: i32, deleted: bool) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .subjects
            .values()
            .flat_map(|vs| vs.values())
            .filter(|e| deleted || !e.deleted)
            .filter(|e| {
                e.references.as_array().is_some_and(|rs| {
                    rs.iter().any(|r| {
                        r["subject"].as_str() == Some(subject)
                            && r["version"].as_i64() == Some(version as i64)
                    })
                })
            })
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Keys are written byte for byte as Confluent's registry writes them (attribute order
/// included), so that compaction treats a key from either the same way.
fn schema_key(subject: &str, version: i32) -> String {
    format!(
        r#"{{"keytype":"SCHEMA","subject":{},"version":{version},"magic":1}}"#,
        Value::from(subject)
    )
}

fn other_key(keytype: &str, subject: Option<&str>) -> String {
    format!(
        r#"{{"keytype":"{keytype}","subject":{},"magic":0}}"#,
        subject.map_or(Value::Null, Value::from)
    )
}

fn schema_value(
    subject: &str,
    version: i32,
    id: i32,
    schema: &str,
    schema_type: &str,
    refs: &Value,
    deleted: bool,
) -> String {
    let mut v = json!({
        "subject": subject,
        "version": version,
        "id": id,
        "schema": schema,
        "deleted": deleted,
    });
    if schema_type != "AVRO" {
        v["schemaType"] = schema_type.into();
    }
    if has_refs(refs) {
        v["references"] = refs.clone();
    }
    v.to_string()
}

/// A request's schema, parsed with its references.
struct Request {
    parsed: Parsed,
    ident: String,
    normalized_ident: String,
    /// The text to store: Avro and JSON minified (or, normalized, with keys sorted); a
    /// `.proto` file as sent (whitespace is part of its syntax).
    text: String,
    normalized_text: String,
    schema_type: &'static str,
    refs: Value,
}

fn parse_request(st: &State, req: &SchemaRequest) -> Result<Request, RegistryError> {
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

pub struct Registry {
    broker: Arc<Broker>,
    /// Request counters, counted by the API's middleware.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    state: parking_lot::RwLock<State>,
    /// Serializes writers: a change is decided, committed and applied under it.
    write: tokio::sync::Mutex<()>,
    /// In a cluster: the offset of `_schemas` up to which the state has applied records (the
    /// tailer is the only thing that applies them); `None` on a single node.
    applied: Option<tokio::sync::watch::Sender<i64>>,
    /// In a cluster: the `_schemas` leader term in which this registry caught up as the
    /// writer (it assigns ids only then).
    writer_term: parking_lot::Mutex<Option<i32>>,
}

/// Where a write goes, in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRoute {
    /// This broker's registry is the writer (always, on a single node).
    Local,
    /// The registry of the `_schemas` leader, at this base URL.
    Forward(String),
}

/// How long a write waits for `_schemas` to have a leader before answering 50004.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a write waits for the local replica to apply it (or for a new writer to catch up).
pub const APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Produce-time schema id validation asks here (an in-memory lookup under a read lock).
impl engine::schema_ids::SchemaIds for Registry {
    fn is_registered(&self, id: i32) -> bool {
        self.state.read().uses.contains_key(&id)
    }
}

/// `GET /schemas` filters.
#[derive(Debug, Clone, Default)]
pub struct SchemasQuery {
    pub subject_prefix: String,
    pub deleted: bool,
    pub latest_only: bool,
    pub offset: usize,
    pub limit: Option<usize>,
}

impl Registry {
    /// Rebuilds the state by reading `_schemas` from the start.
    ///
    /// In a cluster the state is instead built by a task that tails this broker's replica of
    /// `_schemas` as records are committed and applied, from the first broker start on.
    pub async fn open(broker: Arc<Broker>) -> Result<Arc<Registry>, StoreError> {
        let mut state = State {
            next_id: 1,
            ..State::default()
        };
        let clustered = broker.cluster.is_some();
        if !clustered {
            store::replay(&broker, |k: Bytes, v: Option<Bytes>| {
                state.apply(&k, v.as_deref())
            })
            .await?;
        }
        let metrics = Arc::new(crate::metrics::Metrics::default());
        metrics.register(&broker);
        let registry = Arc::new(Registry {
            broker,
            metrics,
            state: parking_lot::RwLock::new(state),
            write: tokio::sync::Mutex::new(()),
            applied: clustered.then(|| tokio::sync::watch::channel(0).0),
            writer_term: parking_lot::Mutex::new(None),
        });
        if clustered {
            tokio::spawn(tail(Arc::downgrade(&registry)));
        }
        Ok(registry)
    }

    async fn commit(&self, records: Vec<(String, Option<String>)>) -> Result<(), RegistryError> {
        if self.applied.is_some() && !self.still_writer() {
            // Leadership moved (and maybe came back in a later term) since the write was
            // routed here: the decision may rest on a state missing the other leader's writes.
            return Err(RegistryError::UnknownLeader(format!(
                "this broker no longer leads {} in the term it caught up in",
                store::SCHEMAS_TOPIC
            )));
        }
        let end = store::append(&self.broker, &records).await?;
        if self.applied.is_some() {
            // The tailer applies it, as on every other broker.
            if !self.wait_applied(end, APPLY_TIMEOUT).await {
                return Err(RegistryError::Timeout(format!(
                    "the write to {} was committed but not applied here yet",
                    store::SCHEMAS_TOPIC
                )));
            }
            return Ok(());
        }
        let mut st = self.state.write();
        for (k, v) in &records {
            st.apply(k.as_bytes(), v.as_ref().map(|v| v.as_bytes()));
        }
        Ok(())
    }

    /// Whether this broker leads `_schemas` in the term its registry caught up in.
    fn still_writer(&self) -> bool {
        let Some(t) = self.broker.topics.get(store::SCHEMAS_TOPIC) else {
            return false;
        };
        let (leader, term) = self.broker.partition_leader_epoch(&t, 0);
        leader == self.broker.node_id() && *self.writer_term.lock() == Some(term)
    }

    /// In a cluster: the offset of `_schemas` up to which this registry has applied records.
    pub fn applied(&self) -> Option<i64> {
        self.applied.as_ref().map(|a| *a.borrow())
    }

    /// Waits until this registry has applied `_schemas` up to `end` (true), or `timeout`.
    pub async fn wait_applied(&self, end: i64, timeout: std::time::Duration) -> bool {
        let Some(a) = &self.applied else {
            return true;
        };
        let mut rx = a.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|&applied| applied >= end))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether this broker holds a replica of `_schemas` (so its state is complete). In a
    /// cluster of more than three brokers some do not; their registry forwards reads too.
    pub fn holds_replica(&self) -> bool {
        let Some(t) = self.broker.topics.get(store::SCHEMAS_TOPIC) else {
            return true;
        };
        t.assignments
            .first()
            .is_none_or(|r| r.contains(&self.broker.node_id()))
    }

    /// Where a read goes on a broker without a replica of `_schemas`: the leader's registry.
    pub fn route_read(&self) -> Result<WriteRoute, RegistryError> {
        let (Some(cluster), Some(t)) = (
            &self.broker.cluster,
            self.broker.topics.get(store::SCHEMAS_TOPIC),
        ) else {
            return Ok(WriteRoute::Local);
        };
        forward_to(cluster, self.broker.partition_leader(&t, 0))
    }

    /// Where a write (register, delete, config, mode) must go. On the `_schemas` leader the
    /// first write of a term waits until the registry has read the topic to the end: it
    /// commits a NOOP record (Confluent's own barrier) and waits until it is applied here,
    /// so ids are only assigned from a complete state.
    pub async fn route_write(&self) -> Result<WriteRoute, RegistryError> {
        let Some(cluster) = &self.broker.cluster else {
            return Ok(WriteRoute::Local);
        };
        let b = &self.broker;
        store::partition(b).await?;
        let t = b.topics.get(store::SCHEMAS_TOPIC).ok_or_else(|| {
            RegistryError::UnknownLeader(format!("{} is absent", store::SCHEMAS_TOPIC))
        })?;
        // A new topic, or a failover: wait a little for an election rather than fail.
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let (leader, term) = loop {
            let (leader, term) = b.partition_leader_epoch(&t, 0);
            if leader >= 0 || tokio::time::Instant::now() >= deadline {
                break (leader, term);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        if leader < 0 {
            return Err(RegistryError::UnknownLeader(format!(
                "{} has no leader",
                store::SCHEMAS_TOPIC
            )));
        }
        if leader != b.node_id() {
            return forward_to(cluster, leader);
        }
        if *self.writer_term.lock() == Some(term) {
            return Ok(WriteRoute::Local);
        }
        let _w = self.write.lock().await;
        if *self.writer_term.lock() != Some(term) {
            let noop = (r#"{"keytype":"NOOP","magic":0}"#.to_string(), None);
            let end = store::append(b, &[noop]).await?;
            if !self.wait_applied(end, APPLY_TIMEOUT).await {
                return Err(RegistryError::Timeout(format!(
                    "reading {} to the end as its new leader",
                    store::SCHEMAS_TOPIC
                )));
            }
            tracing::info!(term, "this broker's schema registry is now the writer");
            *self.writer_term.lock() = Some(term);
        }
        Ok(WriteRoute::Local)
    }

    pub fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        let st = self.state.read();
        st.subjects
            .iter()
            .filter(|(s, vs)| s.starts_with(prefix) && vs.values().any(|e| deleted || !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Every subject version matching the query (`GET /schemas`), by subject then version.
    pub fn schemas(&self, q: &SchemasQuery) -> Vec<SchemaVersion> {
        let st = self.state.read();
        let mut out = Vec::new();
        for s in st
            .subjects
            .keys()
            .filter(|s| s.starts_with(&q.subject_prefix))
        {
            let vs = st.versions(s, q.deleted);
            let vs = if q.latest_only {
                &vs[vs.len().saturating_sub(1)..]
            } else {
                &vs[..]
            };
            for (v, _) in vs {
                if let Ok(sv) = st.version(s, VersionRef::Number(*v), q.deleted) {
                    out.push(sv);
                }
            }
        }
        out.into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .collect()
    }

    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, RegistryError> {
        let st = self.state.read();
        let vs: Vec<i32> = st
            .versions(subject, deleted)
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        if vs.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(vs)
    }

    pub fn version(
        &self,
        subject: &str,
        v: VersionRef,
        deleted: bool,
    ) -> Result<SchemaVersion, RegistryError> {
        self.state.read().version(subject, v, deleted)
    }

    /// The ids of the schemas whose references name this subject version.
    pub fn referenced_by(&self, subject: &str, v: VersionRef) -> Result<Vec<i32>, RegistryError> {
        let st = self.state.read();
        let sv = st.version(subject, v, false)?;
        Ok(st.referenced_by(subject, sv.version, false))
    }

    /// The type (`AVRO`, `JSON` or `PROTOBUF`) of the schema with a global id.
    pub fn schema_type_of(&self, id: i32) -> &'static str {
        self.state.read().type_of(id)
    }

    /// The references a schema id was registered with.
    pub fn references_of(&self, id: i32) -> Value {
        self.state
            .read()
            .refs_by_id
            .get(&id)
            .cloned()
            .unwrap_or_else(|| json!([]))
    }

    /// A Protobuf schema as a base64 `FileDescriptorProto` (`format=serialized`); other types
    /// and unparsable schemas as stored.
    pub fn serialized(&self, id: i32) -> Option<String> {
        let st = self.state.read();
        match st.parsed(id) {
            Ok(Parsed::Protobuf(p)) => Some(p.serialized(&format!("schema_{id}.proto"))),
            _ => None,
        }
    }

    /// How responses show a schema: a Protobuf schema registered as a base64 descriptor is
    /// shown as `.proto` text, as Confluent's registry does (None: show it as stored).
    pub fn shown(&self, id: i32) -> Option<String> {
        let st = self.state.read();
        let text = st.by_id.get(&id)?;
        if st.type_of(id) != "PROTOBUF" || !protobuf::is_descriptor(text) {
            return None;
        }
        let refs = st.refs_by_id.get(&id).cloned().unwrap_or(Value::Null);
        let imports = st
            .resolve_refs(&refs)
            .ok()?
            .into_iter()
            .map(|(n, _, t)| (n, t))
            .collect();
        let parsed = protobuf::parse(text, &imports).ok()?;
        protobuf::to_text(&parsed, &imports)
    }

    /// The schema with a global id, with the subjects and versions that use it.
    pub fn by_id(
        &self,
        id: i32,
        deleted: bool,
    ) -> Result<(String, Vec<(String, i32)>), RegistryError> {
        let st = self.state.read();
        let uses: Vec<(String, i32)> = st
            .subjects
            .iter()
            .flat_map(|(s, vs)| {
                vs.iter()
                    .filter(|(_, e)| e.id == id && (deleted || !e.deleted))
                    .map(move |(v, _)| (s.clone(), *v))
            })
            .collect();
        match st.by_id.get(&id) {
            Some(text) if st.uses.contains_key(&id) => Ok((text.clone(), uses)),
            _ => Err(RegistryError::SchemaNotFound(format!(
                "Schema {id} not found"
            ))),
        }
    }

    /// Registers a schema under a subject; returns its global id. In IMPORT mode the
    /// request's `id` and `version` are kept and compatibility is not checked.
    pub async fn register(
        &self,
        subject: &str,
        req: &SchemaRequest,
        normalize: bool,
    ) -> Result<i32, RegistryError> {
        let _w = self.write.lock().await;
        let (version, id, text, r) = {
            let st = self.state.read();
            let r = parse_request(&st, req)?;
            let mode = st.mode_of(subject);
            if mode.read_only() {
                return Err(RegistryError::ReadOnly(subject.to_string()));
            }
            let import = mode == Mode::Import;
            if !import && (req.id.is_some() || req.version.is_some()) {
                return Err(RegistryError::NotPermitted(format!(
                    "Subject {subject} is not in import mode: a schema id or version may only be given in IMPORT mode"
                )));
            }
            let normalize = normalize || st.normalize(subject);
            let existing = if normalize {
                st.id_by_normalized.get(&r.normalized_ident).copied()
            } else {
                st.id_by_schema.get(&r.ident).copied()
            };
            let live = st.versions(subject, false);
            let next_version = st
                .subjects
                .get(subject)
                .and_then(|vs| vs.keys().next_back().copied())
                .unwrap_or(0)
                .saturating_add(1);
            let text = if normalize {
                r.normalized_text.clone()
            } else {
                r.text.clone()
            };
            if import {
                let id = req.id.or(existing).unwrap_or(st.next_id);
                if id < 1 {
                    return Err(RegistryError::IdConflict(format!("Invalid schema id {id}")));
                }
                if st.ident_by_id.get(&id).is_some_and(|i| *i != r.ident) {
                    return Err(RegistryError::IdConflict(format!(
                        "Overwrite new schema with id {id} is not permitted: the id names another schema"
                    )));
                }
                let version = req.version.unwrap_or(next_version);
                if version < 1 {
                    return Err(RegistryError::InvalidVersion(version.to_string()));
                }
                match st.subjects.get(subject).and_then(|vs| vs.get(&version)) {
                    Some(e) if e.id == id => return Ok(id),
                    Some(_) => {
                        return Err(RegistryError::IdConflict(format!(
                            "Overwrite new schema with version {version} of subject {subject} is not permitted"
                        )))
                    }
                    None => {}
                }
                (version, id, text, r)
            } else {
                if let Some(id) = existing {
                    if live.iter().any(|(_, e)| e.id == id) {
                        return Ok(id);
                    }
                }
                let against: Vec<(i32, i32)> = live.iter().map(|(v, e)| (*v, e.id)).collect();
                let reasons =
                    check_schemas(st.level(subject), &r.parsed, st.parsed_versions(&against)?);
                if !reasons.is_empty() {
                    return Err(RegistryError::Incompatible(
                        subject.to_string(),
                        reasons.join(", "),
                    ));
                }
                let id = existing.unwrap_or(st.next_id);
                if id == i32::MAX && existing.is_none() && st.by_id.contains_key(&id) {
                    return Err(RegistryError::IdConflict("No schema ids are left".into()));
                }
                if next_version == i32::MAX
                    && st
                        .versions(subject, true)
                        .iter()
                        .any(|(v, _)| *v == i32::MAX)
                {
                    return Err(RegistryError::InvalidVersion(next_version.to_string()));
                }
                (next_version, id, text, r)
            }
        };
        self.commit(vec![(
            schema_key(subject, version),
            Some(schema_value(
                subject,
                version,
                id,
                &text,
                r.schema_type,
                &r.refs,
                false,
            )),
        )])
        .await?;
        Ok(id)
    }

    /// Finds the version of a subject that holds this schema.
    pub fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        deleted: bool,
        normalize: bool,
    ) -> Result<SchemaVersion, RegistryError> {
        let st = self.state.read();
        let r = parse_request(&st, req)?;
        let live = st.versions(subject, deleted);
        if live.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let id = if normalize || st.normalize(subject) {
            st.id_by_normalized.get(&r.normalized_ident).copied()
        } else {
            st.id_by_schema.get(&r.ident).copied()
        };
        let found = live.iter().rev().find(|(_, e)| Some(e.id) == id);
        match found {
            Some((v, _)) => st.version(subject, VersionRef::Number(*v), deleted),
            None => Err(RegistryError::SchemaNotFound("Schema not found".into())),
        }
    }

    /// Checks a schema against a version (or, for `latest`, the versions the level names);
    /// returns the reasons it is incompatible.
    pub fn check(
        &self,
        subject: &str,
        v: Option<VersionRef>,
        req: &SchemaRequest,
    ) -> Result<Vec<String>, RegistryError> {
        let st = self.state.read();
        let r = parse_request(&st, req)?;
        let level = st.level(subject);
        let live = st.versions(subject, false);
        let against: Vec<(i32, i32)> = match v {
            Some(VersionRef::Number(n)) => {
                let sv = st.version(subject, VersionRef::Number(n), false)?;
                vec![(sv.version, sv.id)]
            }
            // Confluent answers 40401 for `latest` of an unknown subject, but treats a check
            // against all versions of an unknown subject as compatible.
            Some(_) if live.is_empty() => {
                return Err(RegistryError::SubjectNotFound(subject.to_string()))
            }
            _ => live.iter().map(|(v, e)| (*v, e.id)).collect(),
        };
        Ok(check_schemas(
            level,
            &r.parsed,
            st.parsed_versions(&against)?,
        ))
    }

    /// Soft-deletes every version of a subject, or (permanent) removes soft-deleted ones.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let _w = self.write.lock().await;
        let records = {
            let st = self.state.read();
            let all = st.versions(subject, true);
            if all.is_empty() {
                return Err(RegistryError::SubjectNotFound(subject.to_string()));
            }
            if st.mode_of(subject).read_only() {
                return Err(RegistryError::ReadOnly(subject.to_string()));
            }
            // A version other schemas reference cannot go (Confluent's 42206).
            for (v, _) in &all {
                if !st.referenced_by(subject, *v, permanent).is_empty() {
                    return Err(RegistryError::ReferenceExists(subject.to_string(), *v));
                }
            }
            let live = st.versions(subject, false);
            if permanent {
                if !live.is_empty() {
                    return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
                }
                all.iter()
                    .map(|(v, _)| (schema_key(subject, *v), None))
                    .collect::<Vec<_>>()
            } else {
                if live.is_empty() {
                    return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
                }
                let latest = live.last().map_or(0, |(v, _)| *v);
                let mut recs: Vec<(String, Option<String>)> = live
                    .iter()
                    .map(|(v, e)| {
                        let text = st.by_id.get(&e.id).cloned().unwrap_or_default();
                        (
                            schema_key(subject, *v),
                            Some(schema_value(
                                subject,
                                *v,
                                e.id,
                                &text,
                                st.type_of(e.id),
                                &e.references,
                                true,
                            )),
                        )
                    })
                    .collect();
                recs.push((
                    json!({"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0})
                        .to_string(),
                    Some(json!({"subject": subject, "version": latest}).to_string()),
                ));
                recs
            }
        };
        let versions: Vec<i32> = records
            .iter()
            .filter_map(|(k, _)| serde_json::from_str::<Value>(k).ok()?["version"].as_i64())
            .map(|v| v as i32)
            .collect();
        self.commit(records).await?;
        Ok(versions)
    }

    /// Soft-deletes one version, or (permanent) removes a soft-deleted one.
    pub async fn delete_version(
        &self,
        subject: &str,
        v: VersionRef,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let _w = self.write.lock().await;
        let record = {
            let st = self.state.read();
            if st.mode_of(subject).read_only() {
                return Err(RegistryError::ReadOnly(subject.to_string()));
            }
            let sv = st.version(subject, v, permanent)?;
            if !st.referenced_by(subject, sv.version, permanent).is_empty() {
                return Err(RegistryError::ReferenceExists(
                    subject.to_string(),
                    sv.version,
                ));
            }
            let deleted = st.subjects[subject][&sv.version].deleted;
            if permanent {
                if !deleted {
                    return Err(RegistryError::VersionNotSoftDeleted(
                        sv.version,
                        subject.to_string(),
                    ));
                }
                (schema_key(subject, sv.version), None)
            } else {
                if deleted {
                    return Err(RegistryError::VersionSoftDeleted(
                        sv.version,
                        subject.to_string(),
                    ));
                }
                (
                    schema_key(subject, sv.version),
                    Some(schema_value(
                        subject,
                        sv.version,
                        sv.id,
                        &sv.schema,
                        sv.schema_type,
                        &sv.references,
                        true,
                    )),
                )
            }
        };
        let version = serde_json::from_str::<Value>(&record.0)
            .ok()
            .and_then(|k| k["version"].as_i64())
            .unwrap_or(0) as i32;
        self.commit(vec![record]).await?;
        Ok(version)
    }

    /// The config: a subject's own (or, with `default_to_global`, the global one when it has
    /// none), or the global one (its level defaults to BACKWARD).
    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Config, RegistryError> {
        let st = self.state.read();
        let global = Config {
            level: Some(st.config.level.unwrap_or(Level::Backward)),
            normalize: st.config.normalize,
        };
        match subject {
            None => Ok(global),
            Some(s) => match st.subject_config.get(s) {
                Some(c) if default_to_global => Ok(Config {
                    level: c.level.or(global.level),
                    normalize: c.normalize.or(global.normalize),
                }),
                Some(c) => Ok(*c),
                None if default_to_global => Ok(global),
                None => Err(RegistryError::SubjectConfigNotFound(s.to_string())),
            },
        }
    }

    /// Sets a level and/or `normalize`; a part left out keeps its current value.
    pub async fn set_config(
        &self,
        subject: Option<&str>,
        level: Option<&str>,
        normalize: Option<bool>,
    ) -> Result<Config, RegistryError> {
        let level = match level {
            Some(l) => Some(
                Level::parse(&l.to_ascii_uppercase()).ok_or(RegistryError::InvalidCompatibility)?,
            ),
            None if normalize.is_none() => return Err(RegistryError::InvalidCompatibility),
            None => None,
        };
        let _w = self.write.lock().await;
        let current = {
            let st = self.state.read();
            match subject {
                None => st.config,
                Some(s) => st.subject_config.get(s).copied().unwrap_or_default(),
            }
        };
        let c = Config {
            level: level.or(current.level),
            normalize: normalize.or(current.normalize),
        };
        self.commit(vec![(
            other_key("CONFIG", subject),
            Some(c.to_json().to_string()),
        )])
        .await?;
        Ok(Config { level, normalize })
    }

    /// Removes a subject's own config; returns the config it had.
    pub async fn delete_config(&self, subject: &str) -> Result<Config, RegistryError> {
        let _w = self.write.lock().await;
        let old = self.config(Some(subject), false)?;
        self.commit(vec![(other_key("CONFIG", Some(subject)), None)])
            .await?;
        Ok(old)
    }

    /// The registry's mode, or a subject's (40409 without one of its own, unless
    /// `default_to_global`).
    pub fn mode(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        let st = self.state.read();
        let global = st.mode.unwrap_or(Mode::ReadWrite);
        match subject {
            None => Ok(global),
            Some(s) => match st.subject_mode.get(s) {
                Some(m) => Ok(*m),
                None if default_to_global => Ok(global),
                None => Err(RegistryError::SubjectModeNotFound(s.to_string())),
            },
        }
    }

    /// Sets the registry's or a subject's mode. IMPORT, as in Confluent's registry, only on
    /// an empty registry (subject) unless `force`.
    pub async fn set_mode(
        &self,
        subject: Option<&str>,
        mode: &str,
        force: bool,
    ) -> Result<Mode, RegistryError> {
        let mode = Mode::parse(mode).ok_or(RegistryError::InvalidMode)?;
        let _w = self.write.lock().await;
        if mode == Mode::Import && !force {
            let st = self.state.read();
            let non_empty = match subject {
                Some(s) => st.subjects.contains_key(s),
                None => !st.subjects.is_empty(),
            };
            if non_empty {
                return Err(RegistryError::NotPermitted(
                    "Cannot import since found existing subjects".into(),
                ));
            }
        }
        self.commit(vec![(
            other_key("MODE", subject),
            Some(json!({"mode": mode.name()}).to_string()),
        )])
        .await?;
        Ok(mode)
    }

    /// Removes a subject's own mode; returns the mode it had.
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode, RegistryError> {
        let _w = self.write.lock().await;
        let old = self.mode(Some(subject), false)?;
        self.commit(vec![(other_key("MODE", Some(subject)), None)])
            .await?;
        Ok(old)
    }
}

/// Applies `_schemas` records to the registry as this broker's replica commits them (cluster
/// only). Stops when the registry is dropped.
async fn tail(registry: std::sync::Weak<Registry>) {
    let mut next = 0i64;
    loop {
        let Some(r) = registry.upgrade() else { return };
        let Some(p) = r
            .broker
            .topics
            .get(store::SCHEMAS_TOPIC)
            .map(|t| t.partitions[0].clone())
        else {
            drop(r);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let mut marks = p.marks.clone();
        let m = *marks.borrow_and_update();
        // Compaction may have removed what was never read (a broker far behind).
        next = next.max(m.log_start);
        if next < m.high {
            let read = engine::internal_topic::read_range(&p, next, m.high, |rec| {
                if let Some(key) = rec.key {
                    r.state.write().apply(&key, rec.value.as_deref());
                }
            })
            .await;
            match read {
                Ok(n) if n > next => next = n,
                // Nothing readable yet below the watermark: wait for the next change.
                Ok(_) => {
                    drop(r);
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        marks.changed(),
                    )
                    .await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read {}; retrying", store::SCHEMAS_TOPIC);
                    drop(r);
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            }
            if let Some(a) = &r.applied {
                a.send_replace(next);
            }
            continue;
        }
        drop(r);
        // Woken by the next commit; the timeout notices a dropped registry.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), marks.changed()).await;
    }
}

/// Forwarding to the registry of broker `leader` (the `_schemas` leader), at the URL it gossips.
fn forward_to(
    cluster: &engine::cluster::Cluster,
    leader: i32,
) -> Result<WriteRoute, RegistryError> {
    cluster
        .members
        .get(leader)
        .and_then(|m| m.schema_registry_url)
        .map(WriteRoute::Forward)
        .ok_or_else(|| {
            RegistryError::UnknownLeader(format!(
                "the schema registry of broker {leader} (the {} leader) is not known yet",
                store::SCHEMAS_TOPIC
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(st: &mut State, k: String, v: Option<String>) {
        st.apply(k.as_bytes(), v.as_deref().map(str::as_bytes));
    }

    #[test]
    fn keys_are_in_confluent_form() {
        assert_eq!(
            schema_key("a\"b", 3),
            r#"{"keytype":"SCHEMA","subject":"a\"b","version":3,"magic":1}"#
        );
        assert_eq!(
            other_key("CONFIG", None),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
    }

    #[test]
    fn replay_rebuilds_versions_ids_deletes_and_config() {
        let mut st = State {
            next_id: 1,
            ..State::default()
        };
        let (a, b) = (r#""string""#, r#""long""#);
        let none = json!([]);
        apply(
            &mut st,
            schema_key("s", 1),
            Some(schema_value("s", 1, 1, a, "AVRO", &none, false)),
        );
        apply(
            &mut st,
            schema_key("s", 2),
            Some(schema_value("s", 2, 2, b, "AVRO", &none, false)),
        );
        apply(
            &mut st,
            schema_key("t", 1),
            Some(schema_value("t", 1, 1, a, "AVRO", &none, false)),
        );
        apply(
            &mut st,
            other_key("CONFIG", Some("s")),
            Some(r#"{"compatibilityLevel":"FULL"}"#.into()),
        );
        assert_eq!(st.next_id, 3);
        assert_eq!(st.id_by_schema[r#""long""#], 2);
        assert_eq!(st.level("s"), Level::Full);
        assert_eq!(st.level("t"), Level::Backward);
        // soft delete of t, then permanent delete of its version
        apply(
            &mut st,
            other_key("DELETE_SUBJECT", Some("t")),
            Some(r#"{"subject":"t","version":1}"#.into()),
        );
        assert!(st.versions("t", false).is_empty());
        assert_eq!(st.versions("t", true).len(), 1);
        apply(&mut st, schema_key("t", 1), None);
        assert!(!st.subjects.contains_key("t"));
        // the config tombstone removes the subject's level
        apply(&mut st, other_key("CONFIG", Some("s")), None);
        assert_eq!(st.level("s"), Level::Backward);
        assert_eq!(st.version("s", VersionRef::Latest, false).unwrap().id, 2);
        // records that are not the registry's are skipped
        st.apply(b"not json", Some(b"x"));
        st.apply(br#"{"keytype":"NOOP","magic":0}"#, None);
        assert_eq!(st.subjects.len(), 1);
    }

    #[test]
    fn replay_rebuilds_modes_normalize_references_and_live_ids() {
        let mut st = State {
            next_id: 1,
            ..State::default()
        };
        let none = json!([]);
        let addr = r#"{"type":"record","name":"Address","namespace":"t","fields":[{"name":"city","type":"string"}]}"#;
        let person = r#"{"type":"record","name":"P","namespace":"t","fields":[{"name":"home","type":"t.Address"}]}"#;
        let refs = json!([{"name": "t.Address", "subject": "addr", "version": 1}]);
        apply(
            &mut st,
            schema_key("addr", 1),
            Some(schema_value("addr", 1, 1, addr, "AVRO", &none, false)),
        );
        apply(
            &mut st,
            schema_key("person", 1),
            Some(schema_value("person", 1, 7, person, "AVRO", &refs, false)),
        );
        // imported ids move the next id past them; the reference resolves on replay
        assert_eq!(st.next_id, 8);
        assert!(matches!(st.parsed(7), Ok(Parsed::Avro(_))));
        assert_eq!(st.referenced_by("addr", 1, false), [7]);
        apply(
            &mut st,
            other_key("MODE", Some("person")),
            Some(r#"{"mode":"IMPORT"}"#.into()),
        );
        apply(
            &mut st,
            other_key("CONFIG", None),
            Some(r#"{"normalize":true}"#.into()),
        );
        assert_eq!(st.mode_of("person"), Mode::Import);
        assert_eq!(st.mode_of("addr"), Mode::ReadWrite);
        assert!(st.normalize("addr") && st.level("addr") == Level::Backward);
        apply(
            &mut st,
            other_key("MODE", None),
            Some(r#"{"mode":"READONLY_OVERRIDE"}"#.into()),
        );
        assert_eq!(st.mode_of("person"), Mode::ReadOnlyOverride);
        apply(&mut st, other_key("MODE", None), None);
        apply(&mut st, other_key("MODE", Some("person")), None);
        assert_eq!(st.mode_of("person"), Mode::ReadWrite);
        // an id stays registered while a version (even soft-deleted) uses it
        assert!(st.uses.contains_key(&7));
        apply(
            &mut st,
            schema_key("person", 1),
            Some(schema_value("person", 1, 7, person, "AVRO", &refs, true)),
        );
        assert_eq!(st.uses.get(&7), Some(&1));
        apply(&mut st, schema_key("person", 1), None);
        assert!(!st.uses.contains_key(&7) && st.uses.contains_key(&1));
    }
}
