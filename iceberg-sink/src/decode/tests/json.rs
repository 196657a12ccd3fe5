use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType as P, Type};

use super::*;

const ORDER: &str = r##"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "required": ["id"],
  "properties": {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "price": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "created": {"type": "string", "format": "date-time"},
    "day": {"type": "string", "format": "date"},
    "address": {"type": "object", "properties": {
        "street": {"type": "string"}, "zip": {"type": "integer"}}},
    "attrs": {"type": "object", "additionalProperties": {"type": "integer"}},
    "anything": {},
    "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "maybe": {"type": ["string", "null"]},
    "point": {"$ref": "#/definitions/Point"},
    "money": {"$ref": "money.json"},
    "ratio": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]}
  },
  "definitions": {
    "Point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}
  }
}"##;

const MONEY: &str = r#"{"type": "object", "properties": {"currency": {"type": "string"}, "units": {"type": "integer"}}}"#;

fn registered(id: i32) -> RegisteredSchema {
    let mut r = schema(id, SchemaKind::Json, ORDER);
    r.references = vec![("money.json".into(), MONEY.into())];
    r
}

#[test]
fn json_schema_decodes_to_typed_columns() {
    let source = MemSource::with(vec![registered(31)]);
    let mut cache = DecoderCache::new(source);
    let v1 = serde_json::json!({
        "id": 1, "name": "book", "price": 12.5, "tags": ["a", "b"],
        "created": "2023-11-14T22:13:20.123456Z", "day": "2024-02-29",
        "address": {"street": "Main", "zip": 12345, "extra": true},
        "attrs": {"x": 1, "y": 2}, "anything": {"k": [1, 2]}, "either": "s",
        "maybe": null, "point": {"x": 1.5, "y": -2}, "money": {"currency": "EUR", "units": 3},
        "ratio": 2
    });
    let v2 = serde_json::json!({"id": 2, "either": 7, "unknown": "ignored"});
    let rows: Vec<Row> = [v1, v2]
        .iter()
        .map(|v| {
            let bytes = encode_wire_format(31, None, &serde_json::to_vec(v).unwrap());
            cache.decode_prefixed(&bytes).unwrap().row
        })
        .collect();
    let d = cache
        .decode_prefixed(&encode_wire_format(31, None, b"{}"))
        .unwrap();
    let st = d.decoder.iceberg_type(&mut FieldIds::new());
    let names: Vec<&str> = st.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id", "name", "price", "tags", "created", "day", "address", "attrs", "anything",
            "either", "maybe", "point", "money", "ratio"
        ],
        "columns follow the schema's declaration order"
    );
    assert_eq!(field_type(&st, "id"), p(P::Long));
    assert_eq!(field_type(&st, "price"), p(P::Double));
    assert_eq!(
        field_type(&st, "tags"),
        Type::List(ListType::new(Arc::new(NestedField::list_element(
            5,
            p(P::String),
            true
        ))))
    );
    assert_eq!(field_type(&st, "created"), p(P::Timestamptz));
    assert_eq!(field_type(&st, "day"), p(P::Date));
    let addr = st.field_by_name("address").unwrap().id;
    assert_eq!(
        field_type(&st, "address"),
        Type::Struct(StructType::new(vec![
            opt(addr + 1, "street", p(P::String)),
            opt(addr + 2, "zip", p(P::Long)),
        ]))
    );
    let attrs = st.field_by_name("attrs").unwrap().id;
    assert_eq!(
        field_type(&st, "attrs"),
        Type::Map(MapType::new(
            Arc::new(NestedField::map_key_element(attrs + 1, p(P::String))),
            Arc::new(NestedField::map_value_element(attrs + 2, p(P::Long), true)),
        ))
    );
    assert_eq!(field_type(&st, "anything"), p(P::String));
    assert_eq!(field_type(&st, "either"), p(P::String));
    assert_eq!(field_type(&st, "maybe"), p(P::String));
    assert!(matches!(field_type(&st, "point"), Type::Struct(_)));
    assert!(matches!(field_type(&st, "money"), Type::Struct(_)));
    assert_eq!(field_type(&st, "ratio"), p(P::Double));

    let arr = to_arrow(&rows, &st);
    assert_eq!(
        col(&arr, "id")
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![1, 2]
    );
    assert_eq!(col(&arr, "name").as_string::<i32>().value(0), "book");
    assert!(col(&arr, "name").is_null(1));
    assert_eq!(
        col(&arr, "price").as_primitive::<Float64Type>().value(0),
        12.5
    );
    let created = col(&arr, "created").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(created.value(0), 1_700_000_000_123_456);
    assert_eq!(
        col(&arr, "day").as_primitive::<Date32Type>().value(0),
        19_782
    );
    let address = col(&arr, "address").as_struct();
    assert_eq!(
        col(address, "zip").as_primitive::<Int64Type>().value(0),
        12345
    );
    assert!(address.is_null(1));
    let attrs_arr = col(&arr, "attrs").as_map();
    assert_eq!(
        attrs_arr
            .value(0)
            .column(1)
            .as_primitive::<Int64Type>()
            .value(1),
        2
    );
    assert_eq!(
        col(&arr, "anything").as_string::<i32>().value(0),
        r#"{"k":[1,2]}"#
    );
    let either = col(&arr, "either").as_string::<i32>();
    assert_eq!((either.value(0), either.value(1)), (r#""s""#, "7"));
    assert!(col(&arr, "maybe").is_null(0));
    let point = col(&arr, "point").as_struct();
    assert_eq!(col(point, "y").as_primitive::<Float64Type>().value(0), -2.0);
    let money = col(&arr, "money").as_struct();
    assert_eq!(col(money, "currency").as_string::<i32>().value(0), "EUR");
    assert_eq!(
        col(&arr, "ratio").as_primitive::<Float64Type>().value(0),
        2.0
    );
}

#[test]
fn json_payload_mismatches_are_errors_with_reasons() {
    let dec = ValueDecoder::new(&registered(32), &[]).unwrap();
    let cases: [(&[u8], &str); 7] = [
        (br#"{"id": "x"}"#, "$.id: expected an integer, got a string"),
        (br#"{"id": 1.5}"#, "is not a 64-bit integer"),
        (
            br#"{"tags": [null]}"#,
            "$.tags[0]: null where the schema allows none",
        ),
        (br#"{"created": "yesterday"}"#, "$.created: date-time"),
        (br#"{"address": []}"#, "$.address: expected an object"),
        (br#"{"id": 1"#, "invalid JSON"),
        (b"", "invalid JSON"),
    ];
    for (payload, reason) in cases {
        let err = dec.decode(payload).unwrap_err();
        assert!(err.to_string().contains(reason), "{err} lacks {reason}");
        assert_eq!(err.code(), "payload_mismatch");
    }
    // A top-level array: wrapped in the `value` column.
    let arr = ValueDecoder::new(
        &schema(
            33,
            SchemaKind::Json,
            r#"{"type": "array", "items": {"type": "integer"}}"#,
        ),
        &[],
    )
    .unwrap();
    let row = arr.decode(b"[1, 2]").unwrap();
    assert_eq!(
        row.get(SCALAR_COLUMN),
        Some(&Value::List(vec![Value::Long(1), Value::Long(2)]))
    );
}

#[test]
fn json_recursive_and_dangling_refs_are_rejected() {
    let rec = r##"{"type": "object", "properties": {"child": {"$ref": "#"}}}"##;
    let err = ValueDecoder::new(&schema(1, SchemaKind::Json, rec), &[]).unwrap_err();
    assert!(err.to_string().contains("recursive"), "{err}");
    let dangling = r##"{"type": "object", "properties": {"a": {"$ref": "#/definitions/Nope"}}}"##;
    let err = ValueDecoder::new(&schema(2, SchemaKind::Json, dangling), &[]).unwrap_err();
    assert!(err.to_string().contains("points at nothing"), "{err}");
    let err = ValueDecoder::new(&schema(3, SchemaKind::Json, "{"), &[]).unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn latest_mode_decodes_bare_and_prefixed_values() {
    let mut src = MemSource::default();
    src.by_id.insert(31, registered(31));
    src.subjects.insert("orders-value".into(), 31);
    let mut cache = DecoderCache::new(Arc::new(src));
    let bare = cache
        .decode_latest("orders-value", br#"{"id": 5}"#)
        .unwrap();
    assert_eq!(bare.row.get("id"), Some(&Value::Long(5)));
    let prefixed = encode_wire_format(31, None, br#"{"id": 6}"#);
    let d = cache.decode_latest("orders-value", &prefixed).unwrap();
    assert_eq!(d.row.get("id"), Some(&Value::Long(6)));
    assert_eq!(
        cache.decode_latest("nope-value", b"{}").unwrap_err(),
        DecodeError::UnknownSubject("nope-value".into())
    );
    assert_eq!(
        cache.decode_latest("orders-value", b"").unwrap_err(),
        DecodeError::NullValue
    );
}
