//! The schema-id seam: produce-time validation of the Confluent wire format asks the schema
//! registry, through this trait, whether a record's schema id is registered. The engine knows
//! nothing else of the registry; the binary sets it once the registry has started.

pub trait SchemaIds: Send + Sync {
    /// Whether `id` names a registered (not permanently deleted) schema. Called on the produce
    /// path for every record of a validating topic, so it must be an in-memory lookup.
    fn is_registered(&self, id: i32) -> bool;
}
