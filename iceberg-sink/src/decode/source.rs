//! Where schemas come from: the binary implements [`SchemaSource`] over the schema registry.

/// The schema languages of the Confluent registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Avro,
    Protobuf,
    Json,
}

/// A registered schema with its references resolved, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    pub id: i32,
    pub kind: SchemaKind,
    pub text: String,
    /// The schemas it references: (import name, schema text). For Protobuf the import name
    /// is the path in the `import` statement; for Avro the referenced named types' schemas;
    /// for JSON Schema the `$ref` value that names the referenced document.
    pub references: Vec<(String, String)>,
}

/// Looks schemas up by id (`value_schema_id_prefix`) or as a subject's latest version
/// (`value_schema_latest`).
pub trait SchemaSource: Send + Sync {
    fn by_id(&self, id: i32) -> Option<RegisteredSchema>;
    fn latest(&self, subject: &str) -> Option<RegisteredSchema>;
}
