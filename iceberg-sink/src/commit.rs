//! Appending translation rounds' data files so that each Kafka offset lands in a table once,
//! even while two brokers commit to one table (a committer failover, or the per-broker
//! committers of a catalog that is not shared, which never meet).
//!
//! iceberg-rust's `Transaction::commit` reloads the table and re-applies the append on
//! whatever snapshot is current, so a concurrent commit would be silently rebased with the
//! offsets map computed from an older snapshot, and two committers that both believed they
//! owned a topic during a failover would both land its records. A commit therefore lands on
//! the exact snapshot it was computed from: [`Pinned`] hands the transaction that table as the
//! "refreshed" one, so the requirement sent to the catalog asserts our base snapshot, and a
//! conflict comes back to us. We then reload, keep the rounds whose partitions nobody else
//! advanced (the others are superseded: their rows are in the table already), rebase the
//! offsets map on the new snapshot and commit their files again.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent,
};

use crate::committer::batch;
use crate::error::SinkError;
use crate::offsets;

/// Commits rebased on another writer's commit before giving up (the rounds are then read and
/// written again from the table's offsets).
const MAX_REBASES: usize = 16;

/// What one round appends, per partition: the next offset the table held when the round was
/// computed (`None`: the table had none) and the next offset after the round.
#[derive(Debug, Clone)]
pub struct Round {
    pub advance: Vec<(i32, Option<i64>, i64)>,
    pub files: Vec<DataFile>,
    /// The offsets this round added per partition (inclusive), for the snapshot summary.
    pub ranges: BTreeMap<i32, (i64, i64)>,
}

pub enum Outcome {
    /// Committed; the table as it is after the commit.
    Committed(Table),
    /// Another writer translated one of the round's partitions meanwhile: nothing was
    /// committed, and the round's files are orphans. The table as reloaded.
    Superseded(Table),
}

/// What [`append_all`] did with a batch of rounds.
pub struct Landed {
    /// The table after the commit (or as last loaded, when nothing was committed).
    pub table: Table,
    /// Per round, in order: whether it is in `table`'s new snapshot (else superseded).
    pub committed: Vec<bool>,
    /// Whether a snapshot was committed at all.
    pub snapshot: bool,
}

/// Appends one round on `base`, rebasing on concurrent commits of other partitions.
pub async fn append(
    catalog: &dyn Catalog,
    base: Table,
    topic_id: &str,
    round: Round,
) -> std::result::Result<Outcome, SinkError> {
    let landed = append_all(catalog, base, topic_id, std::slice::from_ref(&round)).await?;
    Ok(if landed.committed[0] {
        Outcome::Committed(landed.table)
    } else {
        Outcome::Superseded(landed.table)
    })
}

/// Appends every round of `rounds` that still fits the table ([`batch::plan`]) in one
/// fast-append snapshot on `base`, with the merged offsets map; rebases on conflicts.
pub async fn append_all(
    catalog: &dyn Catalog,
    mut base: Table,
    topic_id: &str,
    rounds: &[Round],
) -> std::result::Result<Landed, SinkError> {
    for _ in 0..MAX_REBASES {
        let current = offsets::committed(base.metadata(), topic_id);
        let plan = batch::plan(&current, rounds.iter().map(|r| r.advance.as_slice()));
        let mut committed = vec![false; rounds.len()];
        if plan.accepted.is_empty() {
            return Ok(Landed {
                table: base,
                committed,
                snapshot: false,
            });
        }
        let mut files = Vec::new();
        let mut ranges = BTreeMap::new();
        for &i in &plan.accepted {
            committed[i] = true;
            files.extend(rounds[i].files.iter().cloned());
            ranges.extend(rounds[i].ranges.iter().map(|(&p, &r)| (p, r)));
        }
        let mut props = HashMap::from([
            (
                offsets::NEXT_OFFSETS.to_string(),
                offsets::encode(&plan.next),
            ),
            (offsets::TOPIC_ID.to_string(), topic_id.to_string()),
        ]);
        if !ranges.is_empty() {
            props.insert(offsets::RANGES.to_string(), offsets::encode_ranges(&ranges));
        }
        let tx = Transaction::new(&base);
        let tx = tx
            .fast_append()
            .add_data_files(files)
            .set_snapshot_properties(props)
            .apply(tx)?;
        let pinned = Pinned {
            inner: catalog,
            base: &base,
        };
        match tx.commit(&pinned).await {
            Ok(table) => {
                return Ok(Landed {
                    table,
                    committed,
                    snapshot: true,
                })
            }
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
