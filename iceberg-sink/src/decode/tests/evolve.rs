use apache_avro::types::Value as A;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::Array;
use iceberg::spec::{NestedField, PrimitiveType as P, Schema, Type};

use super::*;

const V1: &str = r#"{"type": "record", "name": "User", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"}]}}
]}"#;

/// v2 adds an optional field at the top level and one inside the nested record (both
/// BACKWARD-compatible in Avro: they have defaults).
const V2: &str = r#"{"type": "record", "name": "User", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "int"], "default": null}]}},
    {"name": "email", "type": ["null", "string"], "default": null}
]}"#;

fn avro(id: i32, text: &str, v: A) -> Vec<u8> {
    let s = apache_avro::Schema::parse_str(text).unwrap();
    encode_wire_format(id, None, &apache_avro::to_avro_datum(&s, v).unwrap())
}

fn table(st: &StructType) -> Schema {
    Schema::builder()
        .with_schema_id(0)
        .with_fields(st.fields().iter().cloned())
        .build()
        .unwrap()
}

#[test]
fn v2_adds_optional_columns_and_old_rows_read_null() {
    let source = MemSource::with(vec![
        schema(1, SchemaKind::Avro, V1),
        schema(2, SchemaKind::Avro, V2),
    ]);
    let mut cache = DecoderCache::new(source);
    let r1 = cache
        .decode_prefixed(&avro(
            1,
            V1,
            A::Record(vec![
                ("id".into(), A::Long(1)),
                ("name".into(), A::String("ann".into())),
                (
                    "address".into(),
                    A::Record(vec![("city".into(), A::String("Lyon".into()))]),
                ),
            ]),
        ))
        .unwrap();
    let r2 = cache
        .decode_prefixed(&avro(
            2,
            V2,
            A::Record(vec![
                ("id".into(), A::Long(2)),
                ("name".into(), A::String("bob".into())),
                (
                    "address".into(),
                    A::Record(vec![
                        ("city".into(), A::String("Nice".into())),
                        ("zip".into(), A::Union(1, Box::new(A::Int(6000)))),
                    ]),
                ),
                (
                    "email".into(),
                    A::Union(1, Box::new(A::String("b@x".into()))),
                ),
            ]),
        ))
        .unwrap();

    // The table is created from v1.
    let t1 = table(&r1.decoder.iceberg_type(&mut FieldIds::new()));
    assert_eq!(t1.highest_field_id(), 4);
    assert_eq!(
        evolve(&t1, t1.as_struct()).unwrap(),
        None,
        "same schema: no change"
    );

    // v2's type with ids seeded from the table: old fields keep theirs.
    let mut ids = FieldIds::from_schema(&t1);
    let v2_type = r2.decoder.iceberg_type(&mut ids);
    assert_eq!(v2_type.field_by_name("id").unwrap().id, 1);
    assert_eq!(v2_type.field_by_name("address").unwrap().id, 3);
    let t2 = evolve(&t1, &v2_type)
        .unwrap()
        .expect("v2 evolves the table");
    assert_eq!(t2.schema_id(), 1);
    let expected = StructType::new(vec![
        opt(1, "id", p(P::Long)),
        opt(2, "name", p(P::String)),
        opt(
            3,
            "address",
            Type::Struct(StructType::new(vec![
                opt(4, "city", p(P::String)),
                opt(5, "zip", p(P::Int)),
            ])),
        ),
        opt(6, "email", p(P::String)),
    ]);
    assert_eq!(t2.as_struct(), &expected);
    // The ids evolve() gave the new fields are those the seeded FieldIds handed out.
    assert_eq!(&v2_type, &expected);
    assert_eq!(evolve(&t2, &v2_type).unwrap(), None);
    // An old-version decoder against the evolved table: nothing to add.
    let v1_again = r1.decoder.iceberg_type(&mut FieldIds::from_schema(&t2));
    assert_eq!(evolve(&t2, &v1_again).unwrap(), None);

    let arr = to_arrow(&[r1.row, r2.row], t2.as_struct());
    assert_eq!(
        col(&arr, "id")
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![1, 2]
    );
    let email = col(&arr, "email").as_string::<i32>();
    assert!(email.is_null(0), "v1 row reads null in the new column");
    assert_eq!(email.value(1), "b@x");
    let address = col(&arr, "address").as_struct();
    let zip = col(address, "zip").as_primitive::<arrow_array::types::Int32Type>();
    assert!(zip.is_null(0));
    assert_eq!(zip.value(1), 6000);
    assert_eq!(col(address, "city").as_string::<i32>().value(0), "Lyon");
}

#[test]
fn evolve_widens_types_and_refuses_incompatible_changes() {
    let cur = Schema::builder()
        .with_schema_id(3)
        .with_fields(vec![
            opt(1, "n", p(P::Int)),
            opt(2, "f", p(P::Float)),
            opt(
                3,
                "d",
                p(P::Decimal {
                    precision: 10,
                    scale: 2,
                }),
            ),
            Arc::new(NestedField::required(4, "kafka_offset", p(P::Long))),
            opt(5, "s", p(P::String)),
        ])
        .build()
        .unwrap();
    let widened = StructType::new(vec![
        opt(1, "n", p(P::Long)),
        opt(2, "f", p(P::Double)),
        opt(
            3,
            "d",
            p(P::Decimal {
                precision: 12,
                scale: 2,
            }),
        ),
    ]);
    let next = evolve(&cur, &widened).unwrap().unwrap();
    assert_eq!(next.schema_id(), 4);
    assert_eq!(field_type(next.as_struct(), "n"), p(P::Long));
    assert_eq!(field_type(next.as_struct(), "f"), p(P::Double));
    assert_eq!(
        field_type(next.as_struct(), "d"),
        p(P::Decimal {
            precision: 12,
            scale: 2
        })
    );
    // Columns the value does not have (the translator's own) are left as they are.
    assert!(
        next.as_struct()
            .field_by_name("kafka_offset")
            .unwrap()
            .required
    );
    // Narrower incoming types fit the wider column: no change.
    let narrower = StructType::new(vec![opt(1, "n", p(P::Int))]);
    assert_eq!(evolve(&next, &narrower).unwrap(), None);

    let incompatible = StructType::new(vec![opt(5, "s", p(P::Long))]);
    let err = evolve(&cur, &incompatible).unwrap_err();
    assert_eq!(err.code(), "incompatible_schema");
    assert!(err.to_string().contains("at s:"), "{err}");
    let to_struct = StructType::new(vec![opt(
        5,
        "s",
        Type::Struct(StructType::new(vec![opt(9, "x", p(P::Int))])),
    )]);
    assert!(evolve(&cur, &to_struct).is_err());

    // New fields whose ids collide with existing ones (a FieldIds not seeded from the table)
    // get fresh ids.
    let colliding = StructType::new(vec![opt(1, "n", p(P::Int)), opt(2, "extra", p(P::String))]);
    let next = evolve(&cur, &colliding).unwrap().unwrap();
    assert_eq!(next.as_struct().field_by_name("extra").unwrap().id, 6);
}

#[test]
fn rows_to_arrow_reports_wrong_values_and_required_nulls() {
    let st = StructType::new(vec![
        Arc::new(NestedField::required(1, "id", p(P::Long))),
        opt(2, "s", p(P::String)),
    ]);
    let missing = Row {
        fields: vec![("s".into(), Value::String("x".into()))],
    };
    let err = rows_to_arrow(&[missing], &st).unwrap_err();
    assert!(err.to_string().contains("id: required column"), "{err}");
    let wrong = Row {
        fields: vec![("id".into(), Value::String("x".into()))],
    };
    let err = rows_to_arrow(&[wrong], &st).unwrap_err();
    assert!(err.to_string().contains("expected a long"), "{err}");
    let too_precise = Row {
        fields: vec![(
            "d".into(),
            Value::Decimal {
                unscaled: 123_456,
                scale: 0,
            },
        )],
    };
    let dst = StructType::new(vec![opt(
        1,
        "d",
        p(P::Decimal {
            precision: 4,
            scale: 0,
        }),
    )]);
    assert!(rows_to_arrow(&[too_precise], &dst).is_err());
    // No rows: an empty array of the right type.
    assert_eq!(rows_to_arrow(&[], &st).unwrap().len(), 0);
}
