//! The cluster metadata the controller's log builds: every topic record (with its replica
//! assignments and ongoing moves), the brokers being decommissioned, the finalized feature
//! levels and the blocks of producer ids handed out.
//!
//! The controller applies each committed command here, a pure state transition that every
//! broker computes alike ([`MetadataState::apply`]), and a reconciler brings this broker's
//! topic table and partition replicas in line with the result (the broker's `reconciler`,
//! through [`super::host::Reconciler`]): create what it lacks, delete what was deleted, start
//! and stop the replicas a move adds or removes. The state is also what the controller's checkpoint holds,
//! so that its Raft log can be dropped a file at a time (`raft::log_file`), and what a
//! controller replica behind the leader's first index is sent as a snapshot: small (a record
//! per topic), so it travels whole in one message.

use std::collections::{BTreeMap, BTreeSet};

use super::features::{self, Levels};
use super::producer_ids::{Block, BLOCK, FIRST};
use super::{validate, ApplyError, Command};
use crate::dynamic_config::DynamicConfigs;
use crate::security::state::SecurityState;
use crate::topics::TopicRecord;

/// The encoding's version; a newer one is refused with a message rather than misread.
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetadataState {
    pub version: u8,
    pub topics: BTreeMap<String, TopicRecord>,
    pub draining: BTreeSet<i32>,
    /// Finalized feature levels (absent from brokers that predate them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: Levels,
    /// The first producer id no block has held yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub next_producer_id: i64,
    /// Each broker's latest block of producer ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producer_ids: BTreeMap<i32, Block>,
    /// Dynamic broker configs.
    #[serde(default, skip_serializing_if = "DynamicConfigs::is_empty")]
    pub broker_configs: DynamicConfigs,
    /// Topics unmounted in this cluster and not mounted since (id to name): a broker that
    /// still holds one forgets it without touching its remote data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmounted: BTreeMap<uuid::Uuid, String>,
    /// Users' SCRAM credentials, ACLs and client quotas.
    #[serde(default, skip_serializing_if = "SecurityState::is_empty")]
    pub security: SecurityState,
}

/// A topic being unmounted takes no other change until the unmount is done.
fn not_unmounting(rec: &TopicRecord) -> Result<(), ApplyError> {
    match rec.unmounting {
        Some(_) => Err(ApplyError::Other(format!(
            "topic '{}' is being unmounted",
            rec.name
        ))),
        None => Ok(()),
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Default for MetadataState {
    fn default() -> Self {
        MetadataState {
            version: VERSION,
            topics: BTreeMap::new(),
            draining: BTreeSet::new(),
            features: Levels::new(),
            next_producer_id: 0,
            producer_ids: BTreeMap::new(),
            broker_configs: DynamicConfigs::default(),
            unmounted: BTreeMap::new(),
            security: SecurityState::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("controller state undecodable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("controller state holds an impossible record: {0}")]
    Record(ApplyError),
    #[error("controller state version {0} is newer than this broker's ({VERSION}); upgrade it")]
    Version(u8),
}

/// What applying a command changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    Topic(String),
    Draining,
    /// Feature levels or producer id blocks: nothing on the broker to bring in line.
    Controller,
    /// Dynamic broker configs: every broker's topic defaults.
    BrokerConfigs,
    /// Users, ACLs or quotas: every broker's security state.
    Security,
}

impl MetadataState {
    /// Whether broker `id` is decommissioned: draining, and no topic has (or is moving) a
    /// replica on it. It then leaves Metadata and the controller group.
    pub fn decommissioned(&self, id: i32) -> bool {
        self.draining.contains(&id) && !self.topics.values().any(|r| r.involves(id))
    }

    /// Refuses a command that needs feature `name` before every broker supports it.
    pub(super) fn require(&self, name: &str, what: &str) -> Result<(), ApplyError> {
        match self.features.get(name) {
            Some(l) if *l >= 1 => Ok(()),
            _ => Err(ApplyError::Other(format!(
                "{what} need every broker of the cluster upgraded (feature {name} is not finalized)"
            ))),
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("topic records serialize")
            .into()
    }

    pub fn decode(b: &[u8]) -> Result<MetadataState, StateError> {
        let s: MetadataState = serde_json::from_slice(b)?;
        if s.version > VERSION {
            return Err(StateError::Version(s.version));
        }
        for (name, rec) in &s.topics {
            if *name != rec.name {
                return Err(StateError::Record(ApplyError::Invalid(format!(
                    "topic '{}' filed under '{name}'",
                    rec.name
                ))));
            }
            validate::snapshot_record(rec).map_err(StateError::Record)?;
        }
        crate::security::validate::state(&s.security)
            .map_err(|e| StateError::Record(ApplyError::Invalid(e.0)))?;
        Ok(s)
    }

    /// Applies a committed command (entry `index`), if it passes [`validate`] against `brokers`
    /// (the controller group's members at that entry) and the state; a refused one changes
    /// nothing, on every broker alike.
    pub fn apply(
        &mut self,
        cmd: Command,
        index: u64,
        brokers: &BTreeSet<i32>,
    ) -> Result<Changed, ApplyError> {
        validate::command(&cmd, brokers)?;
        match cmd {
            cmd @ (Command::Unmount { .. }
            | Command::UnmountSealed { .. }
            | Command::UnmountOffsets { .. }
            | Command::UnmountDone { .. }
            | Command::Mount(_)
            | Command::MountRestored { .. }
            | Command::MountDone { .. }) => self.apply_job(cmd, index),
            cmd @ (Command::Reassign { .. } | Command::Reassigned { .. }) => {
                let name = cmd.reassignment().map(|(t, ..)| t.to_string());
                let rec = name
                    .as_ref()
                    .and_then(|n| self.topics.get_mut(n))
                    .ok_or_else(|| ApplyError::UnknownTopic(name.clone().unwrap_or_default()))?;
                not_unmounting(rec)?;
                let mut next = rec.clone();
                super::reassign::apply(&mut next, cmd, index)?;
                *rec = next;
                Ok(Changed::Topic(rec.name.clone()))
            }
            Command::Decommission { node } => {
                self.draining.insert(node);
                Ok(Changed::Draining)
            }
            Command::FinalizeFeatures { levels } => {
                for (name, level) in levels {
                    let f = self.features.entry(name).or_default();
                    *f = (*f).max(level);
                }
                Ok(Changed::Controller)
            }
            Command::Security(change) => {
                self.require(features::SECURITY, "users, ACLs and quotas")?;
                self.security.apply(&change);
                Ok(Changed::Security)
            }
            Command::SetBrokerConfig { broker, config } => {
                self.require(features::DYNAMIC_BROKER_CONFIGS, "dynamic broker configs")?;
                self.broker_configs.set_scope(broker, config);
                Ok(Changed::BrokerConfigs)
            }
            Command::AllocateProducerIds { broker, request } => {
                self.require(features::PRODUCER_ID_BLOCKS, "producer id blocks")?;
                let start = self.next_producer_id.max(FIRST);
                self.next_producer_id = start + BLOCK;
                let block = Block {
                    request,
                    start,
                    len: BLOCK,
                };
                self.producer_ids.insert(broker, block);
                Ok(Changed::Controller)
            }
            Command::CreateTopic(rec) => match self.topics.get(&rec.name) {
                Some(_) => Err(ApplyError::TopicExists(rec.name)),
                None => {
                    let name = rec.name.clone();
                    self.topics.insert(name.clone(), rec);
                    Ok(Changed::Topic(name))
                }
            },
            Command::DeleteTopic { name, id } => match self.topics.get(&name) {
                Some(r) if r.id == id => {
                    not_unmounting(r)?;
                    self.topics.remove(&name);
                    Ok(Changed::Topic(name))
                }
                _ => Err(ApplyError::UnknownTopic(name)),
            },
            Command::SetTopicConfig { name, id, config } => {
                let rec = self.topic_mut(&name, id)?;
                not_unmounting(rec)?;
                // Only the topic's own overrides decide (brokers' defaults may differ): remote
                // storage turned on by an override is never turned off.
                if rec.config.remote_storage_set() && !config.remote_storage_set() {
                    return Err(ApplyError::Other(format!(
                        "topic '{name}' has remote storage on; turning it off is not supported"
                    )));
                }
                rec.config = config;
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
            Command::AddPartitions {
                name,
                id,
                from,
                assignments,
            } => {
                let rec = self.topic_mut(&name, id)?;
                not_unmounting(rec)?;
                if rec.partitions != from {
                    return Err(ApplyError::Other(format!(
                        "topic '{name}' has {} partitions, not {from}: another change came first",
                        rec.partitions
                    )));
                }
                rec.partitions += assignments.len() as i32;
                rec.assignments.extend(assignments);
                rec.changed_at = index;
                Ok(Changed::Topic(name))
            }
        }
    }

    pub(super) fn topic_mut(
        &mut self,
        name: &str,
        id: uuid::Uuid,
    ) -> Result<&mut TopicRecord, ApplyError> {
        self.topics
            .get_mut(name)
            .filter(|r| r.id == id)
            .ok_or_else(|| ApplyError::UnknownTopic(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, replicas: Vec<Vec<i32>>) -> TopicRecord {
        let (rf, n) = (replicas[0].len() as i16, replicas.len() as i32);
        TopicRecord::new(
            name,
            uuid::Uuid::new_v4(),
            rf,
            Default::default(),
            replicas,
            n,
        )
    }

    #[test]
    fn commands_change_the_metadata_alike_everywhere() {
        let brokers: BTreeSet<i32> = [1, 2, 3, 4].into();
        let mut s = MetadataState::default();
        let t = topic("orders", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        let id = t.id;
        assert_eq!(
            s.apply(Command::CreateTopic(t.clone()), 5, &brokers)
                .unwrap(),
            Changed::Topic("orders".into())
        );
        // A second create of the name is refused, whatever its id.
        assert!(matches!(
            s.apply(
                Command::CreateTopic(topic("orders", vec![vec![1]])),
                6,
                &brokers
            ),
            Err(ApplyError::TopicExists(_))
        ));
        // A move: the target is recorded with every broker involved, then completed.
        let reassign = Command::Reassign {
            topic: "orders".into(),
            id,
            partition: 1,
            target: Some(vec![4, 3, 1]),
        };
        s.apply(reassign, 7, &brokers).unwrap();
        let r = &s.topics["orders"];
        assert_eq!(r.targets[&1], vec![4, 3, 1]);
        assert_eq!(r.moving[&1], vec![2, 3, 1, 4]);
        assert_eq!(r.changed_at, 7);
        // A report of another target is refused and changes nothing.
        let wrong = Command::Reassigned {
            topic: "orders".into(),
            id,
            partition: 1,
            replicas: vec![4, 2, 1],
        };
        let before = s.clone();
        assert!(s.apply(wrong, 8, &brokers).is_err());
        assert_eq!(s, before);
        let done = Command::Reassigned {
            topic: "orders".into(),
            id,
            partition: 1,
            replicas: vec![4, 3, 1],
        };
        s.apply(done, 9, &brokers).unwrap();
        let r = &s.topics["orders"];
        assert_eq!(r.assignments[1], vec![4, 3, 1]);
        assert_eq!(r.initial[1], vec![2, 3, 1]);
        assert!(r.targets.is_empty() && r.moving.is_empty());
        // A config change, and partitions added from the count the topic has.
        let mut config = crate::config::TopicConfig::default();
        config.set_entry("retention.ms", "7200000").unwrap();
        let set = Command::SetTopicConfig {
            name: "orders".into(),
            id,
            config: config.clone(),
        };
        s.apply(set, 10, &brokers).unwrap();
        assert_eq!(s.topics["orders"].config, config);
        let grow = |from| Command::AddPartitions {
            name: "orders".into(),
            id,
            from,
            assignments: vec![vec![3, 1, 2]],
        };
        assert!(s.apply(grow(3), 11, &brokers).is_err());
        s.apply(grow(2), 11, &brokers).unwrap();
        let r = &s.topics["orders"];
        assert_eq!(
            (r.partitions, r.assignments[2].clone(), r.changed_at),
            (3, vec![3, 1, 2], 11)
        );
        // Commands naming brokers outside the group, or internal topics, are never applied.
        let outside = Command::Reassign {
            topic: "orders".into(),
            id,
            partition: 0,
            target: Some(vec![9]),
        };
        assert!(matches!(
            s.apply(outside, 10, &brokers),
            Err(ApplyError::Invalid(_))
        ));
        assert_eq!(
            s.apply(Command::Decommission { node: 4 }, 11, &brokers)
                .unwrap(),
            Changed::Draining
        );
        assert!(s.draining.contains(&4));
        // A delete must name the topic's id.
        let stale = Command::DeleteTopic {
            name: "orders".into(),
            id: uuid::Uuid::new_v4(),
        };
        assert!(matches!(
            s.apply(stale, 12, &brokers),
            Err(ApplyError::UnknownTopic(_))
        ));
        s.apply(
            Command::DeleteTopic {
                name: "orders".into(),
                id,
            },
            13,
            &brokers,
        )
        .unwrap();
        assert!(s.topics.is_empty());
        // The checkpoint's encoding gives the same state back.
        assert_eq!(MetadataState::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn security_changes_need_their_feature_and_valid_credentials() {
        use crate::security::scram::{Mechanism, ScramCredential};
        use crate::security::state::SecurityChange;
        let brokers: BTreeSet<i32> = [1, 2, 3].into();
        let mut s = MetadataState::default();
        let cred = ScramCredential::new(Mechanism::Sha256, b"pw", b"salt", 4096);
        let up = |c: ScramCredential| {
            Command::Security(SecurityChange::UpsertScram {
                user: "alice".into(),
                mechanism: Mechanism::Sha256,
                credential: c,
            })
        };
        // Before every broker supports it, refused alike everywhere.
        assert!(s.apply(up(cred.clone()), 1, &brokers).is_err());
        s.features.insert(features::SECURITY.into(), 1);
        assert_eq!(
            s.apply(up(cred.clone()), 2, &brokers).unwrap(),
            Changed::Security
        );
        // A forged credential (too few iterations) never enters the state.
        let mut weak = cred.clone();
        weak.iterations = 1;
        assert!(matches!(
            s.apply(up(weak), 3, &brokers),
            Err(ApplyError::Invalid(_))
        ));
        assert_eq!(
            s.security.credential("alice", Mechanism::Sha256),
            Some(&cred)
        );
        // The checkpoint carries it; an empty one is left out of the encoding.
        assert_eq!(MetadataState::decode(&s.encode()).unwrap(), s);
        let empty = MetadataState::default().encode();
        assert!(!String::from_utf8_lossy(&empty).contains("security"));
    }

    #[test]
    fn a_newer_or_damaged_encoding_is_refused() {
        let newer = MetadataState {
            version: 9,
            ..Default::default()
        };
        assert!(matches!(
            MetadataState::decode(&newer.encode()),
            Err(StateError::Version(9))
        ));
        assert!(matches!(
            MetadataState::decode(b"{\"topics\":"),
            Err(StateError::Decode(_))
        ));
        // A record with fewer replica lists than partitions, or filed under another name.
        let mut s = MetadataState::default();
        let mut t = topic("orders", vec![vec![1, 2]]);
        t.partitions = 3;
        s.topics.insert("orders".into(), t.clone());
        assert!(matches!(
            MetadataState::decode(&s.encode()),
            Err(StateError::Record(_))
        ));
        t.partitions = 1;
        s.topics.clear();
        s.topics.insert("other".into(), t);
        assert!(matches!(
            MetadataState::decode(&s.encode()),
            Err(StateError::Record(_))
        ));
    }
}
