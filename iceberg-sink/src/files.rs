//! Writing Arrow batches as zstd Parquet data files of a table, split by its partition spec,
//! through iceberg's writer stack (Parquet -> rolling -> data file, fanned out per partition).

use arrow_array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::SinkError;

/// Data files roll at this size; one translation round rarely reaches it, so under load a
/// round's files are as large as the round (bounded by the translator's read budget).
pub const TARGET_FILE_BYTES: usize = 256 << 20;

/// Writes `batches` (all of the table's current schema) and returns the finished data files.
/// `prefix` makes the file names unique to this round (`<prefix>-<n>.parquet`).
pub async fn write(
    table: &Table,
    batches: Vec<RecordBatch>,
    prefix: String,
) -> Result<Vec<DataFile>, SinkError> {
    let meta = table.metadata();
    let schema = meta.current_schema().clone();
    let spec = meta.default_partition_spec().clone();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .build();
    let parquet = ParquetWriterBuilder::new(props, schema.clone());
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        TARGET_FILE_BYTES,
        table.file_io().clone(),
        DefaultLocationGenerator::new(meta)?,
        DefaultFileNameGenerator::new(prefix, None, DataFileFormat::Parquet),
    );
    let builder = DataFileWriterBuilder::new(rolling);
    if spec.is_unpartitioned() {
        let mut w = builder.build(None).await?;
        for b in batches {
            w.write(b).await?;
        }
        return Ok(w.close().await?);
    }
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
    let mut w = FanoutWriter::new(builder);
    for b in batches {
        for (key, part) in splitter.split(&b)? {
            w.write(key, part).await?;
        }
    }
    Ok(w.close().await?)
}
