use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::Array;
use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType as P, Type};
use prost_reflect::prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, Value as V};

use super::*;

const COMMON: &str = r#"syntax = "proto3";
package common;
message Money { string currency = 1; int64 units = 2; }
"#;

const ORDER: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/duration.proto";
import "common.proto";

message Other { string x = 1; }

message Order {
  uint64 big = 1;
  int32 small = 2;
  sint64 neg = 3;
  fixed32 f32 = 4;
  Status status = 5;
  repeated string tags = 6;
  map<string, int64> counts = 7;
  Line line = 8;
  repeated Line lines = 9;
  google.protobuf.Timestamp at = 10;
  google.protobuf.Int64Value maybe = 11;
  google.protobuf.UInt64Value maybe_big = 12;
  google.protobuf.Struct attrs = 13;
  google.protobuf.Duration took = 14;
  oneof pay { string card = 15; int64 cash = 16; }
  common.Money total = 17;
  optional string note = 18;
  bytes raw = 19;
  repeated uint64 bigs = 20;
  message Line { string sku = 1; uint32 qty = 2; }
  enum Status { NEW = 0; PAID = 1; }
}
"#;

pub(super) fn registered(id: i32) -> RegisteredSchema {
    let mut r = schema(id, SchemaKind::Protobuf, ORDER);
    r.references = vec![("common.proto".into(), COMMON.into())];
    r
}

/// The producer's side: the same .proto compiled to a pool, messages built dynamically.
pub(super) fn pool() -> DescriptorPool {
    let mut files = HashMap::new();
    files.insert("order.proto".to_string(), ORDER.to_string());
    files.insert("common.proto".to_string(), COMMON.to_string());
    struct R(HashMap<String, String>);
    impl protox::file::FileResolver for R {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.0.get(name) {
                Some(t) => protox::file::File::from_source(name, t),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let mut chain = protox::file::ChainFileResolver::new();
    chain.add(R(files));
    chain.add(protox::file::GoogleFileResolver::new());
    let mut c = protox::Compiler::with_file_resolver(chain);
    c.include_imports(true);
    c.open_file("order.proto").unwrap();
    c.descriptor_pool()
}

fn msg(pool: &DescriptorPool, name: &str, fields: Vec<(&str, V)>) -> DynamicMessage {
    let mut m = DynamicMessage::new(pool.get_message_by_name(name).unwrap());
    for (k, v) in fields {
        m.set_field_by_name(k, v);
    }
    m
}

fn pv(pool: &DescriptorPool, kind: &str, v: V) -> V {
    V::Message(msg(pool, "google.protobuf.Value", vec![(kind, v)]))
}

pub(super) fn full_order(pool: &DescriptorPool) -> DynamicMessage {
    let line = |sku: &str, qty: u32| {
        V::Message(msg(
            pool,
            "shop.Order.Line",
            vec![("sku", V::String(sku.into())), ("qty", V::U32(qty))],
        ))
    };
    let inner_struct = msg(
        pool,
        "google.protobuf.Struct",
        vec![(
            "fields",
            V::Map(HashMap::from([(
                MapKey::String("a".into()),
                pv(
                    pool,
                    "list_value",
                    V::Message(msg(
                        pool,
                        "google.protobuf.ListValue",
                        vec![(
                            "values",
                            V::List(vec![
                                pv(pool, "number_value", V::F64(1.0)),
                                pv(pool, "string_value", V::String("x".into())),
                            ]),
                        )],
                    )),
                ),
            )])),
        )],
    );
    let attrs = msg(
        pool,
        "google.protobuf.Struct",
        vec![(
            "fields",
            V::Map(HashMap::from([
                (
                    MapKey::String("country".into()),
                    pv(pool, "string_value", V::String("fr".into())),
                ),
                (
                    MapKey::String("n".into()),
                    pv(pool, "number_value", V::F64(2.5)),
                ),
                (
                    MapKey::String("nested".into()),
                    pv(pool, "struct_value", V::Message(inner_struct)),
                ),
                (
                    MapKey::String("none".into()),
                    pv(pool, "null_value", V::EnumNumber(0)),
                ),
            ])),
        )],
    );
    msg(
        pool,
        "shop.Order",
        vec![
            ("big", V::U64(u64::MAX)),
            ("small", V::I32(-7)),
            ("neg", V::I64(-9_000_000_000)),
            ("f32", V::U32(u32::MAX)),
            ("status", V::EnumNumber(1)),
            (
                "tags",
                V::List(vec![V::String("a".into()), V::String("b".into())]),
            ),
            (
                "counts",
                V::Map(HashMap::from([
                    (MapKey::String("x".into()), V::I64(1)),
                    (MapKey::String("y".into()), V::I64(2)),
                ])),
            ),
            ("line", line("sku-1", 3)),
            (
                "lines",
                V::List(vec![line("sku-2", 1), line("sku-3", 4_000_000_000)]),
            ),
            (
                "at",
                V::Message(msg(
                    pool,
                    "google.protobuf.Timestamp",
                    vec![
                        ("seconds", V::I64(1_700_000_000)),
                        ("nanos", V::I32(123_456_789)),
                    ],
                )),
            ),
            (
                "maybe",
                V::Message(msg(
                    pool,
                    "google.protobuf.Int64Value",
                    vec![("value", V::I64(-5))],
                )),
            ),
            ("attrs", V::Message(attrs)),
            (
                "took",
                V::Message(msg(
                    pool,
                    "google.protobuf.Duration",
                    vec![("seconds", V::I64(90)), ("nanos", V::I32(500_000))],
                )),
            ),
            ("cash", V::I64(100)),
            (
                "total",
                V::Message(msg(
                    pool,
                    "common.Money",
                    vec![("currency", V::String("EUR".into())), ("units", V::I64(12))],
                )),
            ),
            ("raw", V::Bytes(vec![0, 1, 2].into())),
            ("bigs", V::List(vec![V::U64(0), V::U64(u64::MAX - 1)])),
        ],
    )
}

#[test]
fn protobuf_message_decodes_to_faithful_types() {
    let pool = pool();
    let source = MemSource::with(vec![registered(21)]);
    let mut cache = DecoderCache::new(source);
    // Order is the second message of the file: index array [1].
    let value = encode_wire_format(21, Some(&[1]), &full_order(&pool).encode_to_vec());
    let empty = encode_wire_format(
        21,
        Some(&[1]),
        &msg(
            &pool,
            "shop.Order",
            vec![("card", V::String("visa".into()))],
        )
        .encode_to_vec(),
    );
    let d = cache.decode_prefixed(&value).unwrap();
    let e = cache.decode_prefixed(&empty).unwrap();
    let st = d.decoder.iceberg_type(&mut FieldIds::new());

    let names: Vec<&str> = st.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "big",
            "small",
            "neg",
            "f32",
            "status",
            "tags",
            "counts",
            "line",
            "lines",
            "at",
            "maybe",
            "maybe_big",
            "attrs",
            "took",
            "card",
            "cash",
            "total",
            "note",
            "raw",
            "bigs"
        ]
    );
    let u64_type = p(P::Decimal {
        precision: 20,
        scale: 0,
    });
    assert_eq!(field_type(&st, "big"), u64_type);
    assert_eq!(field_type(&st, "small"), p(P::Int));
    assert_eq!(field_type(&st, "neg"), p(P::Long));
    assert_eq!(field_type(&st, "f32"), p(P::Long));
    assert_eq!(field_type(&st, "status"), p(P::String));
    assert_eq!(field_type(&st, "at"), p(P::Timestamptz));
    assert_eq!(field_type(&st, "maybe"), p(P::Long));
    assert_eq!(field_type(&st, "maybe_big"), u64_type);
    assert_eq!(field_type(&st, "took"), p(P::Long));
    assert_eq!(field_type(&st, "card"), p(P::String));
    assert_eq!(field_type(&st, "raw"), p(P::Binary));
    let counts = st.field_by_name("counts").unwrap().id;
    assert_eq!(
        field_type(&st, "counts"),
        Type::Map(MapType::new(
            Arc::new(NestedField::map_key_element(counts + 1, p(P::String))),
            Arc::new(NestedField::map_value_element(counts + 2, p(P::Long), true)),
        ))
    );
    let lines = st.field_by_name("lines").unwrap().id;
    assert_eq!(
        field_type(&st, "lines"),
        Type::List(ListType::new(Arc::new(NestedField::list_element(
            lines + 1,
            Type::Struct(StructType::new(vec![
                opt(lines + 2, "sku", p(P::String)),
                opt(lines + 3, "qty", p(P::Long)),
            ])),
            true
        ))))
    );
    let bigs = st.field_by_name("bigs").unwrap().id;
    assert_eq!(
        field_type(&st, "bigs"),
        Type::List(ListType::new(Arc::new(NestedField::list_element(
            bigs + 1,
            u64_type.clone(),
            true
        ))))
    );
    // Struct: map<string, Value struct>, unrolled.
    let Type::Map(attrs) = field_type(&st, "attrs") else {
        panic!("attrs is not a map")
    };
    assert_eq!(*attrs.key_field.field_type, p(P::String));
    let Type::Struct(value_struct) = attrs.value_field.field_type.as_ref().clone() else {
        panic!("Struct values are not structs")
    };
    let vnames: Vec<&str> = value_struct
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        vnames,
        [
            "null_value",
            "number_value",
            "string_value",
            "bool_value",
            "struct_value",
            "list_value"
        ]
    );
    assert!(matches!(
        field_type(&value_struct, "struct_value"),
        Type::Map(_)
    ));
    assert!(matches!(
        field_type(&value_struct, "list_value"),
        Type::List(_)
    ));

    let arr = to_arrow(&[d.row, e.row], &st);
    let big = col(&arr, "big").as_primitive::<Decimal128Type>();
    assert_eq!(big.value(0), i128::from(u64::MAX));
    assert_eq!((big.precision(), big.scale()), (20, 0));
    assert_eq!(
        big.value(1),
        0,
        "proto3 scalars without presence read their default"
    );
    assert_eq!(col(&arr, "small").as_primitive::<Int32Type>().value(0), -7);
    assert_eq!(
        col(&arr, "neg").as_primitive::<Int64Type>().value(0),
        -9_000_000_000
    );
    assert_eq!(
        col(&arr, "f32").as_primitive::<Int64Type>().value(0),
        i64::from(u32::MAX)
    );
    assert_eq!(col(&arr, "status").as_string::<i32>().value(0), "PAID");
    assert_eq!(col(&arr, "status").as_string::<i32>().value(1), "NEW");
    let tags = col(&arr, "tags").as_list::<i32>();
    assert_eq!(tags.value(0).as_string::<i32>().value(1), "b");
    assert_eq!(tags.value(1).len(), 0);
    let counts_arr = col(&arr, "counts").as_map();
    let c0 = counts_arr.value(0);
    assert_eq!(c0.column(0).as_string::<i32>().value(0), "x");
    assert_eq!(c0.column(1).as_primitive::<Int64Type>().value(1), 2);
    let line = col(&arr, "line").as_struct();
    assert_eq!(col(line, "sku").as_string::<i32>().value(0), "sku-1");
    assert!(line.is_null(1), "unset message field is null");
    let lines_arr = col(&arr, "lines").as_list::<i32>();
    let l0 = lines_arr.value(0);
    let l0 = l0.as_struct();
    assert_eq!(
        col(l0, "qty").as_primitive::<Int64Type>().value(1),
        4_000_000_000
    );
    let at = col(&arr, "at").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(at.value(0), 1_700_000_000_123_456);
    assert_eq!(at.timezone(), Some("+00:00"));
    assert!(at.is_null(1));
    let maybe = col(&arr, "maybe").as_primitive::<Int64Type>();
    assert_eq!(maybe.value(0), -5);
    assert!(maybe.is_null(1));
    assert!(col(&arr, "maybe_big").is_null(0), "unset wrapper is null");
    assert_eq!(
        col(&arr, "took").as_primitive::<Int64Type>().value(0),
        90_000_500
    );
    let card = col(&arr, "card").as_string::<i32>();
    let cash = col(&arr, "cash").as_primitive::<Int64Type>();
    assert!(card.is_null(0) && cash.value(0) == 100);
    assert!(card.value(1) == "visa" && cash.is_null(1));
    let total = col(&arr, "total").as_struct();
    assert_eq!(col(total, "currency").as_string::<i32>().value(0), "EUR");
    assert!(
        col(&arr, "note").is_null(0),
        "proto3 optional unset is null"
    );
    assert_eq!(col(&arr, "raw").as_binary::<i64>().value(0), [0, 1, 2]);
    let bigs_arr = col(&arr, "bigs").as_list::<i32>();
    let b0 = bigs_arr.value(0);
    assert_eq!(
        b0.as_primitive::<Decimal128Type>().value(1),
        i128::from(u64::MAX - 1)
    );

    // attrs: sorted keys country, n, nested, none.
    let attrs_arr = col(&arr, "attrs").as_map();
    let a0 = attrs_arr.value(0);
    let keys = a0.column(0).as_string::<i32>();
    assert_eq!(
        keys.iter().flatten().collect::<Vec<_>>(),
        ["country", "n", "nested", "none"]
    );
    let vals = a0.column(1).as_struct();
    assert_eq!(col(vals, "string_value").as_string::<i32>().value(0), "fr");
    assert_eq!(
        col(vals, "number_value")
            .as_primitive::<Float64Type>()
            .value(1),
        2.5
    );
    assert_eq!(
        col(vals, "null_value").as_string::<i32>().value(3),
        "NULL_VALUE"
    );
    let nested = col(vals, "struct_value").as_map();
    let n2 = nested.value(2);
    assert_eq!(n2.column(0).as_string::<i32>().value(0), "a");
    let inner_vals = n2.column(1).as_struct();
    let inner_list = col(inner_vals, "list_value").as_list::<i32>().value(0);
    let inner_list = inner_list.as_struct();
    assert_eq!(
        col(inner_list, "number_value")
            .as_primitive::<Float64Type>()
            .value(0),
        1.0
    );
    assert_eq!(
        col(inner_list, "string_value").as_string::<i32>().value(1),
        "x"
    );
    assert!(attrs_arr.is_null(1));
}

#[test]
fn protobuf_message_indexes_select_nested_types() {
    let pool = pool();
    let line = msg(
        &pool,
        "shop.Order.Line",
        vec![("sku", V::String("s".into())), ("qty", V::U32(2))],
    );
    let source = MemSource::with(vec![registered(22)]);
    let mut cache = DecoderCache::new(source);
    // Nested types are counted in descriptor order, as the Confluent serializer does.
    let order = pool.get_message_by_name("shop.Order").unwrap();
    let nested: Vec<String> = order
        .child_messages()
        .map(|m| m.name().to_string())
        .collect();
    let line_index = nested.iter().position(|n| n == "Line").unwrap() as i32;
    let entry_index = nested.iter().position(|n| n == "CountsEntry").unwrap() as i32;
    let d = cache
        .decode_prefixed(&encode_wire_format(
            22,
            Some(&[1, line_index]),
            &line.encode_to_vec(),
        ))
        .unwrap();
    assert_eq!(d.row.get("qty"), Some(&Value::Long(2)));
    // The synthetic map entry type is a nested message too.
    let dec = ValueDecoder::new(&registered(22), &[1, entry_index]).unwrap();
    let names: Vec<String> = dec
        .iceberg_type(&mut FieldIds::new())
        .fields()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names, ["key", "value"]);
    // protoc and protox both place the map entry where its field is declared.
    assert_eq!(nested, ["CountsEntry", "Line"]);
    let other = msg(&pool, "shop.Other", vec![("x", V::String("o".into()))]);
    let d = cache
        .decode_prefixed(&encode_wire_format(22, Some(&[0]), &other.encode_to_vec()))
        .unwrap();
    assert_eq!(d.row.get("x"), Some(&Value::String("o".into())));
    let err = cache
        .decode_prefixed(&encode_wire_format(22, Some(&[7]), b""))
        .unwrap_err();
    assert!(
        err.to_string().contains("message index 7 out of range"),
        "{err}"
    );
}

#[test]
fn protobuf_recursive_and_invalid_schemas_are_rejected() {
    let rec = r#"syntax = "proto3"; message Tree { repeated Tree children = 1; string v = 2; }"#;
    let err = ValueDecoder::new(&schema(1, SchemaKind::Protobuf, rec), &[0]).unwrap_err();
    assert!(err.to_string().contains("recursive"), "{err}");
    let bad = r#"syntax = "proto3"; message M { strin x = 1; }"#;
    let err = ValueDecoder::new(&schema(2, SchemaKind::Protobuf, bad), &[0]).unwrap_err();
    assert!(err.to_string().contains("invalid Protobuf schema"), "{err}");
    let missing = r#"syntax = "proto3"; import "nowhere.proto"; message M { string x = 1; }"#;
    assert!(ValueDecoder::new(&schema(3, SchemaKind::Protobuf, missing), &[0]).is_err());
}

#[test]
fn protobuf_malformed_payloads_are_errors() {
    let pool = pool();
    let good = full_order(&pool).encode_to_vec();
    let dec = ValueDecoder::new(&registered(23), &[1]).unwrap();
    let mut errors = 0;
    for len in 0..good.len() {
        if dec.decode(&good[..len]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > good.len() / 2, "most truncations are detected");
    let err = dec
        .decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
        .unwrap_err();
    assert_eq!(err.code(), "payload_mismatch");
    assert!(err.to_string().contains("shop.Order"), "{err}");
    // A bad message-index array in the wire format.
    let source = MemSource::with(vec![registered(23)]);
    let mut cache = DecoderCache::new(source);
    let err = cache.decode_prefixed(&[0, 0, 0, 0, 23, 0x80]).unwrap_err();
    assert_eq!(err.code(), "bad_message_indexes");
}

#[test]
fn protobuf_latest_mode_names_the_message_or_follows_the_header() {
    let pool = pool();
    let mut src = MemSource::default();
    src.by_id.insert(24, registered(24));
    src.subjects.insert("orders-value".into(), 24);
    let mut cache = DecoderCache::new(Arc::new(src));
    let line = msg(
        &pool,
        "shop.Order.Line",
        vec![("sku", V::String("s".into())), ("qty", V::U32(9))],
    )
    .encode_to_vec();
    // A bare payload of a named (nested) message type.
    let d = cache
        .decode_latest_message("orders-value", Some("shop.Order.Line"), &line)
        .unwrap();
    assert_eq!(d.row.get("qty"), Some(&Value::Long(9)));
    // A bare payload with no name: the file's first message (shop.Other, field 1 = string).
    let other = msg(&pool, "shop.Other", vec![("x", V::String("o".into()))]).encode_to_vec();
    let d = cache.decode_latest("orders-value", &other).unwrap();
    assert_eq!(d.row.get("x"), Some(&Value::String("o".into())));
    // A value with the latest schema's header: its message indexes are honoured.
    let framed = encode_wire_format(24, Some(&[1, 1]), &line);
    let d = cache.decode_latest("orders-value", &framed).unwrap();
    assert_eq!(d.row.get("sku"), Some(&Value::String("s".into())));
    let err = cache
        .decode_latest_message("orders-value", Some("shop.Nope"), &line)
        .unwrap_err();
    assert!(
        err.to_string().contains("no message type shop.Nope"),
        "{err}"
    );
}
