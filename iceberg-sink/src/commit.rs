//! Appending a round's data files so that each Kafka offset lands in a table once, while
//! several brokers commit to one table (in a cluster each translates the partitions it leads).
//!
//! iceberg-rust's `Transaction::commit` reloads the table and re-applies the append on
//! whatever snapshot is current, so a concurrent commit would be silently rebased with the
//! offsets map computed from an older snapshot, and two brokers that both believed they led a
//! partition during a failover would both land its records. A round therefore commits on the
//! exact snapshot it was computed from: [`Pinned`] hands the transaction that table as the
//! "refreshed" one, so the requirement sent to the catalog asserts our base snapshot, and a
//! conflict comes back to us. We then reload, check that nobody else advanced the partitions
//! this round covers (if someone did, the round is dropped: its rows are in the table already),
//! rebase the offsets map on the new snapshot and commit the same files again.

use std::collections::HashMap;

use async_trait::async_trait;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent,
};

use crate::error::SinkError;
use crate::offsets::{self, Offsets};

/// Commits rebased on another broker's commit before giving up on a round (it is then read
/// and written again from the table's offsets).
const MAX_REBASES: usize = 16;

/// What one round appends, per partition: the next offset the table held when the round was
/// computed (`None`: the table had none) and the next offset after the round.
pub struct Round {
    pub advance: Vec<(i32, Option<i64>, i64)>,
    pub files: Vec<DataFile>,
    /// Extra snapshot properties (offset ranges of this snapshot, the topic id).
    pub properties: HashMap<String, String>,
}

pub enum Outcome {
    /// Committed; the table as it is after the commit.
    Committed(Table),
    /// Another writer translated one of the round's partitions meanwhile: nothing was
    /// committed, and the round's files are orphans. The table as reloaded.
    Superseded(Table),
}

/// Appends `round` on `base`, rebasing on concurrent commits of other partitions.
pub async fn append(
    catalog: &dyn Catalog,
    mut base: Table,
    topic_id: &str,
    round: Round,
) -> std::result::Result<Outcome, SinkError> {
    for _ in 0..MAX_REBASES {
        let current = offsets::committed(base.metadata(), topic_id);
        if round
            .advance
            .iter()
            .any(|&(p, expected, _)| current.get(&p).copied() != expected)
        {
            return Ok(Outcome::Superseded(base));
        }
        let mut merged: Offsets = current;
        for &(p, _, next) in &round.advance {
            merged.insert(p, next);
        }
        let mut props = round.properties.clone();
        props.insert(offsets::NEXT_OFFSETS.to_string(), offsets::encode(&merged));
        props.insert(offsets::TOPIC_ID.to_string(), topic_id.to_string());
        let tx = Transaction::new(&base);
        let tx = tx
            .fast_append()
            .add_data_files(round.files.clone())
            .set_snapshot_properties(props)
            .apply(tx)?;
        let pinned = Pinned {
            inner: catalog,
            base: &base,
        };
        match tx.commit(&pinned).await {
            Ok(t) => return Ok(Outcome::Committed(t)),
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                base = catalog.load_table(base.identifier()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SinkError::Table {
        table: base.identifier().to_string(),
        message: format!("still conflicting after {MAX_REBASES} rebases"),
    })
}

/// A catalog whose `load_table` answers the round's base table, so the transaction builds its
/// requirements on it, and whose commit conflicts are not retried inside the transaction.
/// Everything else goes to the real catalog.
#[derive(Debug)]
struct Pinned<'a> {
    inner: &'a dyn Catalog,
    base: &'a Table,
}

#[async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        if table == self.base.identifier() {
            return Ok(self.base.clone());
        }
        self.inner.load_table(table).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await.map_err(|e| {
            if e.kind() == ErrorKind::CatalogCommitConflicts {
                e.with_retryable(false)
            } else {
                e
            }
        })
    }
}
