use std::collections::HashMap;

use apache_avro::types::Value as A;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::Array;
use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType as P, Type};

use super::*;

pub(super) const ORDER: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long", "doc": "order id"},
    {"name": "name", "type": "string"},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": ["null", "long"]}},
    {"name": "address", "type": ["null", {"type": "record", "name": "Address", "fields": [
        {"name": "street", "type": "string"},
        {"name": "zip", "type": "int"}
    ]}], "default": null},
    {"name": "billing", "type": ["null", "Address"], "default": null},
    {"name": "created", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "choice", "type": ["int", "string", "null"]},
    {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
    {"name": "ratio", "type": "double"},
    {"name": "ok", "type": "boolean"},
    {"name": "nothing", "type": "null"}
  ]
}"#;

pub(super) fn order_value(id: i64, note: Option<&str>, choice: A) -> A {
    let address = A::Record(vec![
        ("street".into(), A::String("1 rue de la Paix".into())),
        ("zip".into(), A::Int(75002)),
    ]);
    A::Record(vec![
        ("id".into(), A::Long(id)),
        ("name".into(), A::String("book".into())),
        (
            "price".into(),
            A::Decimal(apache_avro::Decimal::from(12345i64.to_be_bytes().to_vec())),
        ),
        (
            "tags".into(),
            A::Array(vec![A::String("a".into()), A::String("b".into())]),
        ),
        (
            "attrs".into(),
            A::Map(HashMap::from([
                ("x".to_string(), A::Union(1, Box::new(A::Long(7)))),
                ("y".to_string(), A::Union(0, Box::new(A::Null))),
            ])),
        ),
        ("address".into(), A::Union(1, Box::new(address))),
        ("billing".into(), A::Union(0, Box::new(A::Null))),
        ("created".into(), A::TimestampMillis(1_700_000_000_123)),
        ("local".into(), A::LocalTimestampMicros(42)),
        ("day".into(), A::Date(19_000)),
        ("at".into(), A::TimeMillis(3_600_000)),
        ("status".into(), A::Enum(1, "PAID".into())),
        (
            "note".into(),
            match note {
                Some(n) => A::Union(1, Box::new(A::String(n.into()))),
                None => A::Union(0, Box::new(A::Null)),
            },
        ),
        (
            "uid".into(),
            A::Uuid(uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap()),
        ),
        ("choice".into(), choice),
        ("code".into(), A::Fixed(4, b"AB12".to_vec())),
        ("ratio".into(), A::Double(0.25)),
        ("ok".into(), A::Boolean(true)),
        ("nothing".into(), A::Null),
    ])
}

/// What the Confluent Avro serializer writes: header + datum.
pub(super) fn wire(id: i32, schema: &apache_avro::Schema, v: A) -> Vec<u8> {
    let datum = apache_avro::to_avro_datum(schema, v).unwrap();
    encode_wire_format(id, None, &datum)
}

#[test]
fn avro_record_decodes_to_typed_columns() {
    let parsed = apache_avro::Schema::parse_str(ORDER).unwrap();
    let source = MemSource::with(vec![schema(11, SchemaKind::Avro, ORDER)]);
    let mut cache = DecoderCache::new(source);
    let v1 = wire(
        11,
        &parsed,
        order_value(1, Some("gift"), A::Union(0, Box::new(A::Int(5)))),
    );
    let v2 = wire(
        11,
        &parsed,
        order_value(2, None, A::Union(1, Box::new(A::String("five".into())))),
    );
    let v3 = wire(
        11,
        &parsed,
        order_value(3, None, A::Union(2, Box::new(A::Null))),
    );
    let d1 = cache.decode_prefixed(&v1).unwrap();
    let d2 = cache.decode_prefixed(&v2).unwrap();
    let d3 = cache.decode_prefixed(&v3).unwrap();
    assert!(Arc::ptr_eq(&d1.decoder, &d2.decoder), "decoder is cached");

    let mut ids = FieldIds::new();
    let st = d1.decoder.iceberg_type(&mut ids);
    // Top level: every field optional, ids in schema order, `nothing` (type null) has no column.
    let names: Vec<&str> = st.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id", "name", "price", "tags", "attrs", "address", "billing", "created", "local",
            "day", "at", "status", "note", "uid", "choice", "code", "ratio", "ok"
        ]
    );
    assert!(st.fields().iter().all(|f| !f.required));
    assert_eq!(st.fields()[0].id, 1);
    assert_eq!(st.fields()[0].doc.as_deref(), Some("order id"));
    assert_eq!(field_type(&st, "id"), p(P::Long));
    assert_eq!(
        field_type(&st, "price"),
        p(P::Decimal {
            precision: 10,
            scale: 2
        })
    );
    assert_eq!(
        field_type(&st, "tags"),
        Type::List(ListType::new(Arc::new(NestedField::list_element(
            st.field_by_name("tags").unwrap().id + 1,
            p(P::String),
            true
        ))))
    );
    let attrs_id = st.field_by_name("attrs").unwrap().id;
    assert_eq!(
        field_type(&st, "attrs"),
        Type::Map(MapType::new(
            Arc::new(NestedField::map_key_element(attrs_id + 1, p(P::String))),
            Arc::new(NestedField::map_value_element(
                attrs_id + 2,
                p(P::Long),
                false
            )),
        ))
    );
    let addr_id = st.field_by_name("address").unwrap().id;
    assert_eq!(
        field_type(&st, "address"),
        Type::Struct(StructType::new(vec![
            opt(addr_id + 1, "street", p(P::String)),
            opt(addr_id + 2, "zip", p(P::Int)),
        ]))
    );
    // A named type used again by reference has the same shape (fresh ids).
    let bill_id = st.field_by_name("billing").unwrap().id;
    assert_eq!(
        field_type(&st, "billing"),
        Type::Struct(StructType::new(vec![
            opt(bill_id + 1, "street", p(P::String)),
            opt(bill_id + 2, "zip", p(P::Int)),
        ]))
    );
    assert_eq!(field_type(&st, "created"), p(P::Timestamptz));
    assert_eq!(field_type(&st, "local"), p(P::Timestamp));
    assert_eq!(field_type(&st, "day"), p(P::Date));
    assert_eq!(field_type(&st, "at"), p(P::Time));
    assert_eq!(field_type(&st, "status"), p(P::String));
    assert_eq!(field_type(&st, "note"), p(P::String));
    assert_eq!(field_type(&st, "uid"), p(P::Uuid));
    let choice_id = st.field_by_name("choice").unwrap().id;
    assert_eq!(
        field_type(&st, "choice"),
        Type::Struct(StructType::new(vec![
            opt(choice_id + 1, "int", p(P::Int)),
            opt(choice_id + 2, "string", p(P::String)),
        ]))
    );
    assert_eq!(field_type(&st, "code"), p(P::Fixed(4)));
    assert_eq!(field_type(&st, "ratio"), p(P::Double));
    assert_eq!(field_type(&st, "ok"), p(P::Boolean));
    // Ids are stable: the same decoder through the same FieldIds gives the same type.
    assert_eq!(d2.decoder.iceberg_type(&mut ids), st);

    let arr = to_arrow(&[d1.row, d2.row, d3.row], &st);
    assert_eq!(arr.len(), 3);
    let id = col(&arr, "id").as_primitive::<Int64Type>();
    assert_eq!(id.values().to_vec(), vec![1, 2, 3]);
    let price = col(&arr, "price").as_primitive::<Decimal128Type>();
    assert_eq!(price.value(0), 12345);
    assert_eq!((price.precision(), price.scale()), (10, 2));
    let tags = col(&arr, "tags").as_list::<i32>();
    let t0 = tags.value(0);
    assert_eq!(
        t0.as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("a"), Some("b")]
    );
    let attrs = col(&arr, "attrs").as_map();
    let a0 = attrs.value(0);
    let keys = a0.column(0).as_string::<i32>();
    let vals = a0.column(1).as_primitive::<Int64Type>();
    assert_eq!(keys.iter().collect::<Vec<_>>().len(), 2);
    for i in 0..2 {
        match keys.value(i) {
            "x" => assert_eq!(vals.value(i), 7),
            "y" => assert!(vals.is_null(i)),
            k => panic!("key {k}"),
        }
    }
    let address = col(&arr, "address").as_struct();
    assert_eq!(
        col(address, "street").as_string::<i32>().value(0),
        "1 rue de la Paix"
    );
    assert_eq!(
        col(address, "zip").as_primitive::<Int32Type>().value(0),
        75002
    );
    assert!(col(&arr, "billing").is_null(0));
    let created = col(&arr, "created").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(created.value(0), 1_700_000_000_123_000);
    assert_eq!(created.timezone(), Some("+00:00"));
    let local = col(&arr, "local").as_primitive::<TimestampMicrosecondType>();
    assert_eq!((local.value(0), local.timezone()), (42, None));
    assert_eq!(
        col(&arr, "day").as_primitive::<Date32Type>().value(0),
        19_000
    );
    assert_eq!(
        col(&arr, "at")
            .as_primitive::<Time64MicrosecondType>()
            .value(0),
        3_600_000_000
    );
    assert_eq!(col(&arr, "status").as_string::<i32>().value(0), "PAID");
    let note = col(&arr, "note").as_string::<i32>();
    assert_eq!(note.value(0), "gift");
    assert!(note.is_null(1));
    let uid = col(&arr, "uid").as_fixed_size_binary();
    assert_eq!(
        uid.value(0),
        uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8")
            .unwrap()
            .as_bytes()
    );
    let choice = col(&arr, "choice").as_struct();
    let ci = col(choice, "int").as_primitive::<Int32Type>();
    let cs = col(choice, "string").as_string::<i32>();
    assert_eq!((ci.value(0), cs.is_null(0)), (5, true));
    assert_eq!((ci.is_null(1), cs.value(1)), (true, "five"));
    assert!(choice.is_null(2));
    assert_eq!(col(&arr, "code").as_fixed_size_binary().value(0), b"AB12");
    assert_eq!(
        col(&arr, "ratio")
            .as_primitive::<arrow_array::types::Float64Type>()
            .value(0),
        0.25
    );
    assert!(col(&arr, "ok").as_boolean().value(0));
}

#[test]
fn avro_non_record_schema_is_one_value_column() {
    let source = MemSource::with(vec![schema(3, SchemaKind::Avro, r#""string""#)]);
    let mut cache = DecoderCache::new(source);
    let parsed = apache_avro::Schema::parse_str(r#""string""#).unwrap();
    let d = cache
        .decode_prefixed(&wire(3, &parsed, A::String("hello".into())))
        .unwrap();
    let st = d.decoder.iceberg_type(&mut FieldIds::new());
    assert_eq!(
        st,
        StructType::new(vec![opt(1, SCALAR_COLUMN, p(P::String))])
    );
    let arr = to_arrow(&[d.row], &st);
    assert_eq!(col(&arr, "value").as_string::<i32>().value(0), "hello");
}

#[test]
fn avro_references_resolve_named_types() {
    let address = r#"{"type": "record", "name": "Address", "namespace": "shop",
        "fields": [{"name": "city", "type": "string"}]}"#;
    let text = r#"{"type": "record", "name": "Customer", "namespace": "shop",
        "fields": [{"name": "home", "type": "shop.Address"}]}"#;
    let mut reg = schema(4, SchemaKind::Avro, text);
    reg.references = vec![("shop.Address".into(), address.into())];
    let dec = ValueDecoder::new(&reg, &[]).unwrap();
    let st = dec.iceberg_type(&mut FieldIds::new());
    assert_eq!(
        st,
        StructType::new(vec![opt(
            1,
            "home",
            Type::Struct(StructType::new(vec![opt(2, "city", p(P::String))]))
        )])
    );
    // Payload: string "Paris" = zigzag len 10, bytes.
    let row = dec.decode(b"\x0aParis").unwrap();
    assert_eq!(
        row.get("home"),
        Some(&Value::Struct(vec![(
            "city".into(),
            Value::String("Paris".into())
        )]))
    );
}

#[test]
fn avro_recursive_and_unusable_schemas_are_rejected_with_reasons() {
    let recursive = r#"{"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"]}]}"#;
    let err = ValueDecoder::new(&schema(5, SchemaKind::Avro, recursive), &[]).unwrap_err();
    assert!(err.to_string().contains("recursive"), "{err}");
    assert_eq!(err.code(), "unusable_schema");
    let err = ValueDecoder::new(&schema(6, SchemaKind::Avro, "{not json"), &[]).unwrap_err();
    assert!(err.to_string().contains("invalid Avro schema"), "{err}");
    let wide = r#"{"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2}"#;
    let err = ValueDecoder::new(&schema(7, SchemaKind::Avro, wide), &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("decimal(40, 2) has no Iceberg type"),
        "{err}"
    );
}

#[test]
fn avro_malformed_payloads_are_errors_with_reasons() {
    let parsed = apache_avro::Schema::parse_str(ORDER).unwrap();
    let source = MemSource::with(vec![schema(11, SchemaKind::Avro, ORDER)]);
    let mut cache = DecoderCache::new(source);
    let good = wire(
        11,
        &parsed,
        order_value(1, Some("n"), A::Union(0, Box::new(A::Int(5)))),
    );
    // Every truncation fails with a reason, never a panic.
    for len in 0..good.len() {
        let err = cache.decode_prefixed(&good[..len]).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
    let mut trailing = good.clone();
    trailing.push(0);
    let err = cache.decode_prefixed(&trailing).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
    let mut other_id = good.clone();
    other_id[4] = 99;
    assert_eq!(
        cache.decode_prefixed(&other_id).unwrap_err(),
        DecodeError::UnknownSchemaId(99)
    );
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    assert_eq!(
        cache.decode_prefixed(&bad_magic).unwrap_err(),
        DecodeError::BadMagic(1)
    );
    // A string length claiming far more bytes than the payload holds.
    let dec = ValueDecoder::new(&schema(1, SchemaKind::Avro, r#""string""#), &[]).unwrap();
    let err = dec.decode(&[0xfe, 0xff, 0xff, 0xff, 0x0f]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    // An array block of 2^62 zero-width items.
    let arr = ValueDecoder::new(
        &schema(2, SchemaKind::Avro, r#"{"type": "array", "items": "null"}"#),
        &[],
    )
    .unwrap();
    let err = arr
        .decode(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0])
        .unwrap_err();
    assert!(err.to_string().contains("longer than the payload"), "{err}");
    // Bad enum index, bad boolean byte.
    let e = ValueDecoder::new(
        &schema(
            3,
            SchemaKind::Avro,
            r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#,
        ),
        &[],
    )
    .unwrap();
    assert!(e
        .decode(&[4])
        .unwrap_err()
        .to_string()
        .contains("enum index 2"));
    let b = ValueDecoder::new(&schema(4, SchemaKind::Avro, r#""boolean""#), &[]).unwrap();
    assert!(b.decode(&[2]).is_err());
}

#[test]
fn avro_uuid_on_fixed_is_read_as_16_raw_bytes() {
    let text = r#"{"type": "record", "name": "R", "fields": [
        {"name": "id", "type": {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}},
        {"name": "n", "type": "int"}]}"#;
    let dec = ValueDecoder::new(&schema(1, SchemaKind::Avro, text), &[]).unwrap();
    let mut payload = (0u8..16).collect::<Vec<u8>>();
    payload.push(6); // n = 3
    let row = dec.decode(&payload).unwrap();
    let mut expected = [0u8; 16];
    expected
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    assert_eq!(row.get("id"), Some(&Value::Uuid(expected)));
    assert_eq!(row.get("n"), Some(&Value::Int(3)));
    let mixed = r#"{"type": "record", "name": "R", "fields": [
        {"name": "a", "type": {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}},
        {"name": "b", "type": {"type": "string", "logicalType": "uuid"}}]}"#;
    let err = ValueDecoder::new(&schema(2, SchemaKind::Avro, mixed), &[]).unwrap_err();
    assert!(err.to_string().contains("cannot tell them apart"), "{err}");
}

#[test]
fn avro_empty_records_have_no_column() {
    let text = r#"{"type": "record", "name": "R", "fields": [
        {"name": "e", "type": {"type": "record", "name": "Empty", "fields": []}},
        {"name": "n", "type": "int"}]}"#;
    let dec = ValueDecoder::new(&schema(1, SchemaKind::Avro, text), &[]).unwrap();
    assert_eq!(
        dec.iceberg_type(&mut FieldIds::new()),
        StructType::new(vec![opt(1, "n", p(P::Int))])
    );
    let row = dec.decode(&[4]).unwrap();
    assert_eq!(row.get("n"), Some(&Value::Int(2)));
    let st = dec.iceberg_type(&mut FieldIds::new());
    assert_eq!(to_arrow(&[row], &st).len(), 1);
    let empty = r#"{"type": "record", "name": "Empty", "fields": []}"#;
    let err = ValueDecoder::new(&schema(2, SchemaKind::Avro, empty), &[]).unwrap_err();
    assert!(err.to_string().contains("no columns"), "{err}");
}

#[test]
fn avro_blocks_with_byte_sizes_and_several_blocks_decode() {
    // Java's buffered encoders write a negative count followed by the block's byte size.
    let dec = ValueDecoder::new(
        &schema(1, SchemaKind::Avro, r#"{"type": "array", "items": "int"}"#),
        &[],
    )
    .unwrap();
    // Block 1: count -2 (zigzag 3), size 2, items 1, 2; block 2: count 1, item 3; end 0.
    let row = dec.decode(&[3, 4, 2, 4, 2, 6, 0]).unwrap();
    assert_eq!(
        row.get(SCALAR_COLUMN),
        Some(&Value::List(vec![
            Value::Int(1),
            Value::Int(2),
            Value::Int(3)
        ]))
    );
}
