//! Dynamic broker configs, as Kafka's (KIP-226): topic defaults changed at runtime through
//! AlterConfigs and IncrementalAlterConfigs on the broker resource, for the whole cluster
//! (resource name "", `kafka-configs --entity-default`) or for one broker (its id).
//!
//! A broker's effective topic defaults are its start-up ones (flags, config file) overlaid with
//! the cluster-wide dynamic ones, then with its own. In a cluster they live in the controller's
//! state, so every broker sees the same and they survive restarts and leader changes; a single
//! broker keeps them in `<data>/meta/broker-configs.json`.
//!
//! Only the `log.*`-style defaults that only shape how each partition keeps its log may change
//! at runtime. Defaults that would switch a subsystem on for every topic at once (tiering,
//! Iceberg, schema validation, leader pinning) stay start-up settings or per-topic configs.

use std::collections::BTreeMap;

use crate::config::{all_configs, validate_entry, ClusterDefaults, InvalidConfig};

/// Broker config name (`log.retention.ms`) to value.
pub type Overrides = BTreeMap<String, String>;

/// The topic configs (by their topic name) whose broker default may change at runtime.
const DYNAMIC: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "index.interval.bytes",
    "write.caching",
    "flush.ms",
    "flush.bytes",
    "min.insync.replicas",
    "local.retention.ms",
    "local.retention.bytes",
    "compression.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
];

/// Kafka's reassignment throttles (bytes per second; see `raft::throttle`): broker settings,
/// not topic defaults.
pub const LEADER_THROTTLE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_THROTTLE: &str = "follower.replication.throttled.rate";
const THROTTLES: &[&str] = &[LEADER_THROTTLE, FOLLOWER_THROTTLE];

/// Where a broker config's value comes from (Kafka's `ConfigSource` codes in DescribeConfigs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set for this broker (`DYNAMIC_BROKER_CONFIG`).
    Broker = 2,
    /// Set for every broker (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    Cluster = 3,
    /// A start-up flag or the config file (`STATIC_BROKER_CONFIG`).
    Static = 4,
    /// Icestream's default (`DEFAULT_CONFIG`).
    Default = 5,
}

/// The dynamic configs of a cluster (or a single broker).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynamicConfigs {
    /// For every broker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster: Overrides,
    /// For one broker each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<i32, Overrides>,
}

/// The topic config a dynamic broker config `name` is the default of.
fn topic_name(name: &str) -> Result<&'static str, InvalidConfig> {
    all_configs()
        .find(|d| d.broker_name == name && DYNAMIC.contains(&d.name))
        .map(|d| d.name)
        .ok_or_else(|| {
            let known = all_configs().any(|d| d.broker_name == name)
                || [
                    "auto.create.topics.enable",
                    "num.partitions",
                    "default.replication.factor",
                    "socket.request.max.bytes",
                ]
                .contains(&name);
            InvalidConfig(if known {
                format!("broker config '{name}' cannot be changed at runtime; set it at start-up")
            } else {
                format!(
                    "unknown dynamic broker config '{name}'; supported: {}",
                    dynamic_names().join(", ")
                )
            })
        })
}

/// The broker config names that may change at runtime.
pub fn dynamic_names() -> Vec<&'static str> {
    all_configs()
        .filter(|d| DYNAMIC.contains(&d.name))
        .map(|d| d.broker_name)
        .chain(THROTTLES.iter().copied())
        .collect()
}

/// Checks a whole set of dynamic broker configs: known names, valid values.
pub fn validate(overrides: &Overrides) -> Result<(), InvalidConfig> {
    for (name, value) in overrides {
        if THROTTLES.contains(&name.as_str()) {
            match value.trim().parse::<i64>() {
                Ok(v) if v >= 1 => continue,
                _ => {
                    return Err(InvalidConfig(format!(
                        "invalid value '{value}' for broker config '{name}': bytes per second, at least 1"
                    )))
                }
            }
        }
        let topic = topic_name(name)?;
        validate_entry(topic, value).map_err(|e| {
            InvalidConfig(e.0.replace(
                &format!("topic config '{topic}'"),
                &format!("broker config '{name}'"),
            ))
        })?;
    }
    Ok(())
}

impl DynamicConfigs {
    pub fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.brokers.values().all(BTreeMap::is_empty)
    }

    /// The set for `scope` (`None`: every broker).
    pub fn scope(&self, scope: Option<i32>) -> Overrides {
        match scope {
            None => self.cluster.clone(),
            Some(id) => self.brokers.get(&id).cloned().unwrap_or_default(),
        }
    }

    /// Replaces the set for `scope`.
    pub fn set_scope(&mut self, scope: Option<i32>, overrides: Overrides) {
        match scope {
            None => self.cluster = overrides,
            Some(id) if overrides.is_empty() => {
                self.brokers.remove(&id);
            }
            Some(id) => {
                self.brokers.insert(id, overrides);
            }
        }
    }

    /// Broker `node`'s effective topic defaults over its start-up ones.
    pub fn effective(&self, node: i32, base: &ClusterDefaults) -> ClusterDefaults {
        let mut d = base.clone();
        let mine = self.brokers.get(&node);
        for (name, value) in self.cluster.iter().chain(mine.into_iter().flatten()) {
            // Checked when set; a name a later release dropped is skipped, not fatal.
            if let Ok(topic) = topic_name(name) {
                d.topic.insert(topic, value.clone());
            }
        }
        d
    }

    /// The dynamic value of broker config `name` for broker `node`, and where it is set.
    pub fn lookup(&self, node: i32, name: &str) -> Option<(&str, Source)> {
        if let Some(v) = self.brokers.get(&node).and_then(|o| o.get(name)) {
            return Some((v, Source::Broker));
        }
        self.cluster
            .get(name)
            .map(|v| (v.as_str(), Source::Cluster))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_brokers_own_value_wins_over_the_cluster_one() {
        let mut d = DynamicConfigs::default();
        d.set_scope(
            None,
            set(&[("log.retention.ms", "1000"), ("log.segment.bytes", "4096")]),
        );
        d.set_scope(Some(2), set(&[("log.retention.ms", "2000")]));
        let base = ClusterDefaults::default();
        let one = d.effective(1, &base);
        let two = d.effective(2, &base);
        assert_eq!(one.topic["retention.ms"], "1000");
        assert_eq!(two.topic["retention.ms"], "2000");
        assert_eq!(two.topic["segment.bytes"], "4096");
        assert_eq!(one.topic["cleanup.policy"], base.topic["cleanup.policy"]);
        assert_eq!(
            d.lookup(2, "log.retention.ms"),
            Some(("2000", Source::Broker))
        );
        assert_eq!(
            d.lookup(1, "log.retention.ms"),
            Some(("1000", Source::Cluster))
        );
        assert_eq!(d.lookup(1, "log.roll.ms"), None);
        // Emptying a broker's set removes it.
        d.set_scope(Some(2), Overrides::new());
        assert_eq!(d.effective(2, &base).topic["retention.ms"], "1000");
        assert!(d.brokers.is_empty());
    }

    #[test]
    fn only_log_defaults_with_valid_values_change_at_runtime() {
        assert!(validate(&set(&[
            ("log.retention.ms", "60000"),
            ("min.insync.replicas", "2")
        ]))
        .is_ok());
        let e = validate(&set(&[("log.retention.ms", "soon")])).unwrap_err();
        assert!(
            e.0.contains("invalid value 'soon' for broker config 'log.retention.ms'"),
            "{e}"
        );
        let e = validate(&set(&[("log.remote.storage.enable", "true")])).unwrap_err();
        assert!(e.0.contains("cannot be changed at runtime"), "{e}");
        let e = validate(&set(&[("num.partitions", "3")])).unwrap_err();
        assert!(e.0.contains("cannot be changed at runtime"), "{e}");
        let e = validate(&set(&[("log.retention.weeks", "3")])).unwrap_err();
        assert!(e.0.contains("unknown dynamic broker config"), "{e}");
    }
}
