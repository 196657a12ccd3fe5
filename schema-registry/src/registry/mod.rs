//! The registry and its operations (reads, register, lookup, check, deletes, config, mode).
//! Every change is a record written to `_schemas` and acknowledged once committed; the state
//! then applies the same record the way a replay does, so the topic is the only source of
//! truth.
//!
//! - [`error`]: errors with the Confluent registry's HTTP statuses and codes.
//! - [`format`]: format dispatch (parse, identity, compatibility) over Avro, JSON, Protobuf.
//! - [`state`]: the state rebuilt from `_schemas`.
//! - [`record`]: the `_schemas` record encoding.
//! - [`leader`]: in a cluster, write routing to the `_schemas` leader and the tailer.

mod error;
mod format;
mod leader;
mod record;
mod state;

use std::sync::Arc;

use bytes::Bytes;
use engine::cluster::Cluster;
use engine::internal_topic::TopicHost;
use serde_json::{json, Value};

use crate::compat::Level;
use crate::protobuf;
use crate::store::{self, StoreError};

pub use error::RegistryError;
pub use format::{schema_type, Parsed, SchemaRequest};
pub use leader::{WriteRoute, APPLY_TIMEOUT};
pub use state::{Config, Mode, SchemaVersion, VersionEntry, VersionRef};

use format::{check_schemas, parse_request};
use leader::tail;
use record::{delete_subject_record, other_key, schema_key, schema_value};
use state::State;

pub struct Registry {
    /// The broker, as far as `_schemas` goes.
    host: Arc<dyn TopicHost>,
    /// In a cluster: the members, to find the `_schemas` leader's registry.
    peers: Option<Arc<Cluster>>,
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
    pub async fn open(
        host: Arc<dyn TopicHost>,
        peers: Option<Arc<Cluster>>,
    ) -> Result<Arc<Registry>, StoreError> {
        let mut state = State {
            next_id: 1,
            ..State::default()
        };
        let clustered = peers.is_some();
        if !clustered {
            store::replay(&*host, |k: Bytes, v: Option<Bytes>| {
                state.apply(&k, v.as_deref())
            })
            .await?;
        }
        let metrics = Arc::new(crate::metrics::Metrics::default());
        metrics.register(host.metrics());
        let registry = Arc::new(Registry {
            host,
            peers,
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
        let end = store::append(&*self.host, &records).await?;
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
                recs.push(delete_subject_record(subject, latest));
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
