//! A topic's Iceberg settings, read from its topic configs (`iceberg.*`, or Redpanda's
//! `redpanda.iceberg.*` names, which the engine stores under ours).

use engine::config::ClusterDefaults;
use engine::topics::Topic;
use iceberg::{NamespaceIdent, TableIdent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disabled,
    KeyValue,
    /// Values in the Confluent wire format, decoded with the schema their id names.
    SchemaIdPrefix,
    /// Values decoded with the latest schema of the subject `<topic>-value`.
    SchemaLatest,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::KeyValue => "key_value",
            Mode::SchemaIdPrefix => "value_schema_id_prefix",
            Mode::SchemaLatest => "value_schema_latest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    pub mode: Mode,
    pub target_lag_ms: u64,
    pub partition_spec: String,
    /// Drop the table when the topic is deleted.
    pub delete: bool,
    /// Undecodable records are dropped instead of going to the DLQ table.
    pub drop_invalid: bool,
    pub namespace: String,
}

impl TopicSettings {
    pub fn of(topic: &Topic, defaults: &ClusterDefaults, default_namespace: &str) -> Self {
        let get = |k: &str| topic.config.get(k, defaults).0.trim().to_string();
        let mode = match get("iceberg.mode").as_str() {
            "key_value" => Mode::KeyValue,
            "value_schema_id_prefix" => Mode::SchemaIdPrefix,
            "value_schema_latest" => Mode::SchemaLatest,
            _ => Mode::Disabled,
        };
        let ns = get("iceberg.namespace");
        TopicSettings {
            mode,
            target_lag_ms: get("iceberg.target.lag.ms")
                .parse()
                .unwrap_or(60_000)
                .max(100),
            partition_spec: get("iceberg.partition.spec"),
            delete: get("iceberg.delete") != "false",
            drop_invalid: get("iceberg.invalid.record.action") == "drop",
            namespace: if ns.is_empty() {
                default_namespace.to_string()
            } else {
                ns
            },
        }
    }

    pub fn namespace_ident(&self) -> NamespaceIdent {
        NamespaceIdent::from_strs(self.namespace.split('.'))
            .unwrap_or_else(|_| NamespaceIdent::new(self.namespace.clone()))
    }

    /// The topic's table: `<namespace>.<topic>`.
    pub fn table(&self, topic: &str) -> TableIdent {
        TableIdent::new(self.namespace_ident(), topic.to_string())
    }

    /// The dead-letter table: `<namespace>.<topic>~dlq`.
    pub fn dlq_table(&self, topic: &str) -> TableIdent {
        TableIdent::new(self.namespace_ident(), format!("{topic}~dlq"))
    }
}
