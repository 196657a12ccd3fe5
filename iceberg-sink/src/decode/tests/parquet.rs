//! The Arrow batches built from decoded rows are what iceberg's Parquet writer expects: they
//! write to Parquet and read back identical, and the field ids survive the round trip.

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::arrow::ArrowWriter;
use apache_avro::types::Value as A;
use arrow_array::RecordBatch;
use prost_reflect::prost::Message;

use super::*;

fn round_trip(rows: &[Row], st: &StructType) {
    let schema = Schema::builder()
        .with_fields(st.fields().iter().cloned())
        .build()
        .unwrap();
    let batch = rows_to_record_batch(rows, &schema).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(buf))
        .unwrap()
        .build()
        .unwrap();
    let read: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(read.len(), 1);
    let back = &read[0];
    assert_eq!(back.num_rows(), rows.len());
    for (i, c) in batch.columns().iter().enumerate() {
        assert_eq!(
            back.column(i).as_ref(),
            c.as_ref(),
            "column {}",
            batch.schema().field(i).name()
        );
    }
    // The Parquet file's schema maps back to the same Iceberg schema (same field ids). Arrow
    // has no uuid type: a uuid column is FixedSizeBinary(16) and reads back as fixed[16]
    // from the file alone (readers use the table's schema, which says uuid).
    let from_parquet = iceberg::arrow::arrow_schema_to_schema(back.schema().as_ref()).unwrap();
    assert_eq!(
        format!("{:?}", from_parquet.as_struct()),
        format!("{:?}", schema.as_struct()).replace("Primitive(Uuid)", "Primitive(Fixed(16))")
    );
}

#[test]
fn avro_rows_round_trip_through_parquet() {
    let parsed = apache_avro::Schema::parse_str(super::avro::ORDER).unwrap();
    let dec = ValueDecoder::new(&schema(1, SchemaKind::Avro, super::avro::ORDER), &[]).unwrap();
    let rows: Vec<Row> = [
        super::avro::order_value(1, Some("a"), A::Union(0, Box::new(A::Int(1)))),
        super::avro::order_value(2, None, A::Union(2, Box::new(A::Null))),
    ]
    .into_iter()
    .map(|v| {
        let w = super::avro::wire(1, &parsed, v);
        dec.decode(&w[5..]).unwrap()
    })
    .collect();
    round_trip(&rows, &dec.iceberg_type(&mut FieldIds::new()));
}

#[test]
fn protobuf_rows_round_trip_through_parquet() {
    let pool = super::protobuf::pool();
    let dec = ValueDecoder::new(&super::protobuf::registered(1), &[1]).unwrap();
    let full = super::protobuf::full_order(&pool).encode_to_vec();
    let rows = vec![dec.decode(&full).unwrap(), dec.decode(b"").unwrap()];
    round_trip(&rows, &dec.iceberg_type(&mut FieldIds::new()));
}
