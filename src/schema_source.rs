//! The schema registry as the Iceberg translator's schema source (read-only use of its
//! public API): schemas by global id, a subject's latest version, references resolved.

use std::sync::Arc;

use iceberg_sink::decode::{RegisteredSchema, SchemaKind, SchemaSource};
use schema_registry::registry::{Registry, VersionRef};
use serde_json::Value;

pub struct RegistrySchemas(pub Arc<Registry>);

/// References nest at most this deep (a cycle cannot hang the translator).
const MAX_REFERENCE_DEPTH: usize = 16;

fn kind(schema_type: &str) -> SchemaKind {
    match schema_type {
        "PROTOBUF" => SchemaKind::Protobuf,
        "JSON" => SchemaKind::Json,
        _ => SchemaKind::Avro,
    }
}

impl RegistrySchemas {
    /// `(name, text)` of every schema `references` names, transitively, dependencies first.
    fn resolve(&self, references: &Value, depth: usize, out: &mut Vec<(String, String)>) {
        let Some(refs) = references.as_array() else {
            return;
        };
        if depth > MAX_REFERENCE_DEPTH {
            return;
        }
        for r in refs {
            let (Some(name), Some(subject), Some(version)) = (
                r["name"].as_str(),
                r["subject"].as_str(),
                r["version"].as_i64(),
            ) else {
                continue;
            };
            if out.iter().any(|(n, _)| n == name) {
                continue;
            }
            let Ok(v) = self
                .0
                .version(subject, VersionRef::Number(version as i32), false)
            else {
                continue;
            };
            self.resolve(&v.references, depth + 1, out);
            let text = self.0.shown(v.id).unwrap_or(v.schema);
            out.push((name.to_string(), text));
        }
    }
}

impl SchemaSource for RegistrySchemas {
    fn by_id(&self, id: i32) -> Option<RegisteredSchema> {
        let (text, uses) = self.0.by_id(id, true).ok()?;
        let mut references = Vec::new();
        if let Some((subject, version)) = uses.first() {
            if let Ok(v) = self.0.version(subject, VersionRef::Number(*version), true) {
                self.resolve(&v.references, 0, &mut references);
            }
        }
        Some(RegisteredSchema {
            id,
            kind: kind(self.0.schema_type_of(id)),
            // The decoder compiles `.proto` text; serializers register base64 descriptors.
            text: self.0.shown(id).unwrap_or(text),
            references,
        })
    }

    fn latest(&self, subject: &str) -> Option<RegisteredSchema> {
        let v = self.0.version(subject, VersionRef::Latest, false).ok()?;
        let mut references = Vec::new();
        self.resolve(&v.references, 0, &mut references);
        Some(RegisteredSchema {
            id: v.id,
            kind: kind(v.schema_type),
            text: self.0.shown(v.id).unwrap_or(v.schema),
            references,
        })
    }
}
