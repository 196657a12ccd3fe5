//! The state rebuilt from `_schemas`: subjects, versions, ids, configs and modes, and how
//! one `_schemas` record changes it (the same on replay, on the tailer and after a write).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::format::{has_refs, schema_type, with_refs, Deps, Parsed};
use super::RegistryError;
use crate::compat::Level;

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

    pub(super) fn read_only(self) -> bool {
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
pub(super) struct State {
    /// id -> schema text as first registered
    pub(super) by_id: BTreeMap<i32, String>,
    /// id -> schema type (`AVRO`, `JSON` or `PROTOBUF`)
    pub(super) type_by_id: HashMap<i32, &'static str>,
    /// id -> the references it was registered with
    pub(super) refs_by_id: HashMap<i32, Value>,
    /// id -> its identity (IMPORT refuses to give an id to another schema)
    pub(super) ident_by_id: HashMap<i32, String>,
    pub(super) id_by_schema: HashMap<String, i32>,
    /// identity under `normalize=true` -> id
    pub(super) id_by_normalized: HashMap<String, i32>,
    /// id -> versions (soft-deleted included) that use it: produce-time validation asks
    pub(super) uses: HashMap<i32, usize>,
    pub(super) subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    pub(super) config: Config,
    pub(super) subject_config: HashMap<String, Config>,
    pub(super) mode: Option<Mode>,
    pub(super) subject_mode: HashMap<String, Mode>,
    pub(super) next_id: i32,
}

impl State {
    /// Applies one `_schemas` record (Confluent's format). Unknown records are skipped.
    pub(super) fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
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
    pub(super) fn resolve_refs(&self, refs: &Value) -> Result<Deps, String> {
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
    pub(super) fn parsed(&self, id: i32) -> Result<Parsed, RegistryError> {
        let text = self.by_id.get(&id).cloned().unwrap_or_default();
        let refs = self.refs_by_id.get(&id).cloned().unwrap_or(Value::Null);
        self.resolve_refs(&refs)
            .and_then(|deps| Parsed::parse(self.type_of(id), &text, &deps))
            .map_err(RegistryError::InvalidSchema)
    }

    pub(super) fn level(&self, subject: &str) -> Level {
        self.subject_config
            .get(subject)
            .and_then(|c| c.level)
            .or(self.config.level)
            .unwrap_or(Level::Backward)
    }

    pub(super) fn normalize(&self, subject: &str) -> bool {
        self.subject_config
            .get(subject)
            .and_then(|c| c.normalize)
            .or(self.config.normalize)
            .unwrap_or(false)
    }

    /// A subject's own mode wins over the global one, except a global READONLY_OVERRIDE,
    /// which (as its name says, and as in Confluent's registry) applies to every subject.
    pub(super) fn mode_of(&self, subject: &str) -> Mode {
        if self.mode == Some(Mode::ReadOnlyOverride) {
            return Mode::ReadOnlyOverride;
        }
        self.subject_mode
            .get(subject)
            .copied()
            .or(self.mode)
            .unwrap_or(Mode::ReadWrite)
    }

    pub(super) fn versions(&self, subject: &str, deleted: bool) -> Vec<(i32, &VersionEntry)> {
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

    pub(super) fn version(
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

    pub(super) fn type_of(&self, id: i32) -> &'static str {
        self.type_by_id.get(&id).copied().unwrap_or("AVRO")
    }

    /// The parsed schemas of versions to check against.
    pub(super) fn parsed_versions(
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
    pub(super) fn referenced_by(&self, subject: &str, version: i32, deleted: bool) -> Vec<i32> {
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

#[cfg(test)]
mod tests {
    use super::super::record::{other_key, schema_key, schema_value};
    use super::*;

    fn apply(st: &mut State, k: String, v: Option<String>) {
        st.apply(k.as_bytes(), v.as_deref().map(str::as_bytes));
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
