//! The translator's typed errors.

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("iceberg: {0}")]
    Iceberg(#[from] iceberg::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("reading the log: {0}")]
    Log(#[from] engine::log_reader::LogReadError),
    #[error("bad iceberg.partition.spec {0}")]
    PartitionSpec(String),
    #[error("table layout: {0}")]
    Layout(String),
    #[error("handing the round to the committer: {0}")]
    Committer(#[from] crate::committer::CommitterError),
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
}
