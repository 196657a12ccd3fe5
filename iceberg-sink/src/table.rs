//! Creating a topic's Iceberg table (the translator's, and the dead-letter table's).

use std::collections::HashMap;

use iceberg::spec::{Schema, TableProperties};
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, TableCreation, TableIdent};
use uuid::Uuid;

use crate::error::SinkError;
use crate::{offsets, spec};

/// Creates a topic's table (its namespace too, if need be), recording the topic and its id.
pub(crate) async fn create_table(
    catalog: &dyn Catalog,
    topic: &str,
    topic_id: Uuid,
    ident: &TableIdent,
    partition_spec: &str,
    schema: Schema,
) -> Result<Table, SinkError> {
    let terms = spec::parse(partition_spec)?;
    let spec = spec::bind(&terms, &schema)?;
    let cat = catalog;
    let ns = ident.namespace();
    if !cat.namespace_exists(ns).await? {
        match cat.create_namespace(ns, HashMap::new()).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec(spec)
        .properties([
            // A commit whose answer was lost must not be replayed blindly: the task
            // reloads the table and resumes from the offsets it records instead.
            (
                TableProperties::PROPERTY_COMMIT_NUM_RETRIES.to_string(),
                "0".to_string(),
            ),
            (
                "write.parquet.compression-codec".to_string(),
                "zstd".to_string(),
            ),
            ("icestream.topic".to_string(), topic.to_string()),
            (offsets::TOPIC_ID.to_string(), topic_id.to_string()),
        ])
        .build();
    let table = cat.create_table(ns, creation).await?;
    tracing::info!(topic = %topic, table = %ident, "created an Iceberg table for the topic");
    Ok(table)
}
