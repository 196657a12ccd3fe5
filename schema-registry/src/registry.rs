//! The registry's state (rebuilt from `_schemas`) and its operations. Every change is a
//! record written to `_schemas` and acknowledged once committed; the state then applies the
//! same record the way a replay does, so the topic is the only source of truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use engine::Broker;
use serde_json::{json, Value};

use crate::avro::{self, Level};
use crate::json_schema;
use crate::store::{self, StoreError};

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
    #[error("Invalid mode. Valid values are READWRITE and READONLY (IMPORT is not supported yet)")]
    InvalidMode,
    #[error("Subject {0} is in read-only mode")]
    ReadOnly(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{0}\", details: [{1}]")]
    Incompatible(String, String),
    #[error("Error while storing the schema registry's state: {0}")]
    Store(#[from] StoreError),
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
            ReadOnly(_) => (422, 42205),
            Incompatible(..) => (409, 409),
            Store(_) => (500, 50001),
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
    /// `AVRO` or `JSON`.
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

/// A schema type the registry parses: `AVRO` (also when `schemaType` is absent) or `JSON`.
pub fn schema_type(name: Option<&str>) -> Option<&'static str> {
    match name {
        None | Some("AVRO") => Some("AVRO"),
        Some("JSON") => Some("JSON"),
        _ => None,
    }
}

/// A parsed schema of either type.
pub enum Parsed {
    Avro(apache_avro::Schema),
    Json(Value),
}

impl Parsed {
    fn parse(schema_type: &str, text: &str) -> Result<Parsed, String> {
        if schema_type == "JSON" {
            json_schema::parse(text).map(Parsed::Json)
        } else {
            avro::parse(text).map(Parsed::Avro)
        }
    }

    /// The identity of a schema: its type's canonical form, kept apart per type.
    fn ident(&self, text: &str) -> Result<String, String> {
        match self {
            Parsed::Avro(_) => avro::canonical(text),
            Parsed::Json(v) => Ok(format!("JSON:{}", json_schema::canonical(v))),
        }
    }
}

/// The identity of a stored schema (replay); falls back to the text if it does not parse.
fn stored_ident(schema_type: &str, text: &str) -> String {
    Parsed::parse(schema_type, text)
        .and_then(|p| p.ident(text))
        .unwrap_or_else(|_| format!("{schema_type}:{text}"))
}

/// Checks `new` against `existing` (version, type, text; oldest first) at `level`.
fn check_schemas(
    level: Level,
    new: &Parsed,
    existing: &[(i32, &'static str, String)],
) -> Result<Vec<String>, RegistryError> {
    let mut reasons = Vec::new();
    match new {
        Parsed::Avro(n) => {
            let mut olds = Vec::new();
            for (v, t, text) in existing {
                match Parsed::parse(t, text).map_err(RegistryError::InvalidSchema)? {
                    Parsed::Avro(s) => olds.push((*v, s)),
                    Parsed::Json(_) if level != Level::None => reasons.push(format!(
                        "{}: version {v} is a {t} schema; the new schema is AVRO",
                        level.name()
                    )),
                    Parsed::Json(_) => {}
                }
            }
            reasons.extend(avro::check(level, n, &olds));
        }
        Parsed::Json(n) => {
            let mut olds = Vec::new();
            for (v, t, text) in existing {
                match Parsed::parse(t, text).map_err(RegistryError::InvalidSchema)? {
                    Parsed::Json(s) => olds.push((*v, s)),
                    Parsed::Avro(_) if level != Level::None => reasons.push(format!(
                        "{}: version {v} is a {t} schema; the new schema is JSON",
                        level.name()
                    )),
                    Parsed::Avro(_) => {}
                }
            }
            reasons.extend(json_schema::check(level, n, &olds));
        }
    }
    Ok(reasons)
}

fn has_refs(r: &Value) -> bool {
    r.as_array().is_some_and(|a| !a.is_empty())
}

/// What a register or lookup request carries.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Option<Value>,
}

#[derive(Default)]
struct State {
    /// id -> schema text as first registered (minified)
    by_id: BTreeMap<i32, String>,
    /// id -> schema type (`AVRO` or `JSON`)
    type_by_id: HashMap<i32, &'static str>,
    id_by_schema: HashMap<String, i32>,
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    config: Option<Level>,
    subject_config: HashMap<String, Level>,
    read_only: bool,
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
                    if let Some(vs) = self.subjects.get_mut(&subject) {
                        vs.remove(&version);
                        if vs.is_empty() {
                            self.subjects.remove(&subject);
                        }
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
                let ident = if schema_type == "AVRO" {
                    avro::canonical(text).unwrap_or_else(|_| text.to_string())
                } else {
                    stored_ident(schema_type, text)
                };
                self.by_id.entry(id).or_insert_with(|| text.to_string());
                self.type_by_id.entry(id).or_insert(schema_type);
                self.id_by_schema.entry(ident).or_insert(id);
                self.next_id = self.next_id.max(id + 1);
                self.subjects.entry(subject).or_default().insert(
                    version,
                    VersionEntry {
                        id,
                        deleted: value["deleted"].as_bool().unwrap_or(false),
                        references: value
                            .get("references")
                            .cloned()
                            .unwrap_or_else(|| json!([])),
                    },
                );
            }
            Some("CONFIG") => {
                let level = value
                    .as_ref()
                    .and_then(|v| v["compatibilityLevel"].as_str())
                    .and_then(Level::parse);
                match (subject, level) {
                    (None, l) => self.config = l,
                    (Some(s), Some(l)) => {
                        self.subject_config.insert(s, l);
                    }
                    (Some(s), None) => {
                        self.subject_config.remove(&s);
                    }
                }
            }
            Some("MODE") if subject.is_none() => {
                self.read_only =
                    value.as_ref().and_then(|v| v["mode"].as_str()) == Some("READONLY");
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

    fn level(&self, subject: &str) -> Level {
        self.subject_config
            .get(subject)
            .copied()
            .or(self.config)
            .unwrap_or(Level::Backward)
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

    /// The versions to check against, with their type and text.
    fn texts(&self, against: &[(i32, i32)]) -> Vec<(i32, &'static str, String)> {
        against
            .iter()
            .map(|(v, id)| {
                (
                    *v,
                    self.type_of(*id),
                    self.by_id.get(id).cloned().unwrap_or_default(),
                )
            })
            .collect()
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

/// Parses a request's schema (Avro or JSON Schema).
/// Returns the parsed schema, its identity, the text to store and the schema type.
fn parse_request(
    req: &SchemaRequest,
) -> Result<(Parsed, String, String, &'static str), RegistryError> {
    let Some(t) = schema_type(req.schema_type.as_deref()) else {
        return Err(RegistryError::InvalidSchema(format!(
            "Invalid schema: schemaType {} is not supported; only AVRO and JSON are supported so far",
            req.schema_type.as_deref().unwrap_or_default()
        )));
    };
    let parsed = Parsed::parse(t, &req.schema).map_err(|e| {
        RegistryError::InvalidSchema(format!("Invalid schema {}, details: {e}", req.schema))
    })?;
    let ident = parsed
        .ident(&req.schema)
        .map_err(|e| RegistryError::InvalidSchema(format!("Invalid schema: {e}")))?;
    Ok((parsed, ident, avro::minify(&req.schema), t))
}

pub struct Registry {
    broker: Arc<Broker>,
    state: parking_lot::RwLock<State>,
    /// Serializes writers: a change is decided, committed and applied under it.
    write: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Rebuilds the state by reading `_schemas` from the start.
    pub async fn open(broker: Arc<Broker>) -> Result<Arc<Registry>, StoreError> {
        let mut state = State {
            next_id: 1,
            ..State::default()
        };
        store::replay(&broker, |k: Bytes, v: Option<Bytes>| {
            state.apply(&k, v.as_deref())
        })
        .await?;
        Ok(Arc::new(Registry {
            broker,
            state: parking_lot::RwLock::new(state),
            write: tokio::sync::Mutex::new(()),
        }))
    }

    async fn commit(&self, records: Vec<(String, Option<String>)>) -> Result<(), RegistryError> {
        store::append(&self.broker, &records).await?;
        let mut st = self.state.write();
        for (k, v) in &records {
            st.apply(k.as_bytes(), v.as_ref().map(|v| v.as_bytes()));
        }
        Ok(())
    }

    pub fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        let st = self.state.read();
        st.subjects
            .iter()
            .filter(|(s, vs)| s.starts_with(prefix) && vs.values().any(|e| deleted || !e.deleted))
            .map(|(s, _)| s.clone())
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

    /// The type (`AVRO` or `JSON`) of the schema with a global id.
    pub fn schema_type_of(&self, id: i32) -> &'static str {
        self.state.read().type_of(id)
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
        let in_use = st
            .subjects
            .values()
            .any(|vs| vs.values().any(|e| e.id == id));
        match st.by_id.get(&id) {
            Some(text) if in_use => Ok((text.clone(), uses)),
            _ => Err(RegistryError::SchemaNotFound(format!(
                "Schema {id} not found"
            ))),
        }
    }

    /// Registers a schema under a subject; returns its global id.
    pub async fn register(&self, subject: &str, req: &SchemaRequest) -> Result<i32, RegistryError> {
        let (parsed, ident, text, schema_type) = parse_request(req)?;
        let refs = req.references.clone().unwrap_or_else(|| json!([]));
        let _w = self.write.lock().await;
        let (version, id) = {
            let st = self.state.read();
            let live = st.versions(subject, false);
            if let Some(id) = st.id_by_schema.get(&ident) {
                if live.iter().any(|(_, e)| e.id == *id) {
                    return Ok(*id);
                }
            }
            if st.read_only {
                return Err(RegistryError::ReadOnly(subject.to_string()));
            }
            let against: Vec<(i32, i32)> = live.iter().map(|(v, e)| (*v, e.id)).collect();
            let reasons = check_schemas(st.level(subject), &parsed, &st.texts(&against))?;
            if !reasons.is_empty() {
                return Err(RegistryError::Incompatible(
                    subject.to_string(),
                    reasons.join(", "),
                ));
            }
            let version = st
                .subjects
                .get(subject)
                .and_then(|vs| vs.keys().next_back().copied())
                .unwrap_or(0)
                + 1;
            let id = st.id_by_schema.get(&ident).copied().unwrap_or(st.next_id);
            (version, id)
        };
        self.commit(vec![(
            schema_key(subject, version),
            Some(schema_value(
                subject,
                version,
                id,
                &text,
                schema_type,
                &refs,
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
    ) -> Result<SchemaVersion, RegistryError> {
        let (_, ident, _, _) = parse_request(req)?;
        let st = self.state.read();
        let live = st.versions(subject, deleted);
        if live.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let id = st.id_by_schema.get(&ident).copied();
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
        let (parsed, _, _, _) = parse_request(req)?;
        let st = self.state.read();
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
        check_schemas(level, &parsed, &st.texts(&against))
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
            if st.read_only {
                return Err(RegistryError::ReadOnly(subject.to_string()));
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
            if st.read_only {
                return Err(RegistryError::ReadOnly(subject.to_string()));
            }
            let sv = st.version(subject, v, permanent)?;
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

    /// The compatibility level: a subject's own (or, with `default_to_global`, the global
    /// one when it has none), or the global one.
    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Level, RegistryError> {
        let st = self.state.read();
        let global = st.config.unwrap_or(Level::Backward);
        match subject {
            None => Ok(global),
            Some(s) => match st.subject_config.get(s) {
                Some(l) => Ok(*l),
                None if default_to_global => Ok(global),
                None => Err(RegistryError::SubjectConfigNotFound(s.to_string())),
            },
        }
    }

    pub async fn set_config(
        &self,
        subject: Option<&str>,
        level: &str,
    ) -> Result<Level, RegistryError> {
        let level =
            Level::parse(&level.to_ascii_uppercase()).ok_or(RegistryError::InvalidCompatibility)?;
        let _w = self.write.lock().await;
        self.commit(vec![(
            other_key("CONFIG", subject),
            Some(json!({"compatibilityLevel": level.name()}).to_string()),
        )])
        .await?;
        Ok(level)
    }

    /// Removes a subject's own level; returns the level it had.
    pub async fn delete_config(&self, subject: &str) -> Result<Level, RegistryError> {
        let _w = self.write.lock().await;
        let old = self.config(Some(subject), false)?;
        self.commit(vec![(other_key("CONFIG", Some(subject)), None)])
            .await?;
        Ok(old)
    }

    pub fn mode(&self) -> &'static str {
        if self.state.read().read_only {
            "READONLY"
        } else {
            "READWRITE"
        }
    }

    pub async fn set_mode(&self, mode: &str) -> Result<&'static str, RegistryError> {
        let mode = match mode {
            "READWRITE" => "READWRITE",
            "READONLY" => "READONLY",
            _ => return Err(RegistryError::InvalidMode),
        };
        let _w = self.write.lock().await;
        self.commit(vec![(
            other_key("MODE", None),
            Some(json!({"mode": mode}).to_string()),
        )])
        .await?;
        Ok(mode)
    }
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
}
