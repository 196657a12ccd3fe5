//! A proptest-free fuzz loop: random and mutated values through every decoder must give
//! `Ok` or `Err`, never a panic, and successful rows must build Arrow arrays or fail cleanly.

use super::*;

const AVRO: &str = r#"{"type": "record", "name": "R", "fields": [
    {"name": "a", "type": "long"}, {"name": "s", "type": ["null", "string"]},
    {"name": "l", "type": {"type": "array", "items": {"type": "map", "values": "double"}}},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
    {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 4}},
    {"name": "u", "type": ["int", "string", "null", {"type": "array", "items": "null"}]}
]}"#;

const PROTO: &str = r#"syntax = "proto3";
import "google/protobuf/timestamp.proto";
import "google/protobuf/struct.proto";
message M {
  uint64 u = 1; repeated sint32 r = 2; map<int64, string> m = 3;
  google.protobuf.Timestamp t = 4; google.protobuf.Struct s = 5;
  N n = 6; message N { double d = 1; bytes b = 2; }
}"#;

const JSON: &str = r#"{"type": "object", "properties": {
    "a": {"type": "integer"}, "t": {"type": "string", "format": "date-time"},
    "l": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}}}"#;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() % (max as u64 + 1)) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_and_mutated_values_never_panic() {
    let source = MemSource::with(vec![
        schema(1, SchemaKind::Avro, AVRO),
        schema(2, SchemaKind::Protobuf, PROTO),
        schema(3, SchemaKind::Json, JSON),
    ]);
    let mut cache = DecoderCache::new(source);
    let types: Vec<StructType> = [1, 2, 3]
        .iter()
        .map(|&id| {
            let reg = cache_schema(id);
            ValueDecoder::new(&reg, &[0])
                .unwrap()
                .iceberg_type(&mut FieldIds::new())
        })
        .collect();
    let seeds: Vec<Vec<u8>> = vec![
        // a=1, s=null, l=[{"k": 1.0}], e=Y, d=0x01, u=array of 1 null
        [
            &[0, 0, 0, 0, 1, 2, 0, 2, 2, 2, b'k'][..],
            &1.0f64.to_le_bytes(),
            &[0, 0, 2, 2, 1, 6, 2, 0],
        ]
        .concat(),
        encode_wire_format(
            2,
            Some(&[0]),
            &[
                8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0x12, 2, 1, 3,
            ],
        ),
        encode_wire_format(
            3,
            None,
            br#"{"a": 1, "t": "2020-01-01T00:00:00Z", "l": [{"x": 1}]}"#,
        ),
    ];
    for s in &seeds {
        let d = cache.decode_prefixed(s).expect("seed decodes");
        let idx = (d.decoder.schema_id() - 1) as usize;
        rows_to_arrow(&[d.row], &types[idx]).expect("seed builds");
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for i in 0..30_000 {
        let value = match i % 3 {
            // Entirely random bytes, sometimes with a valid header.
            0 => {
                let mut v = rng.bytes(40);
                if rng.next().is_multiple_of(2) {
                    let id = (rng.next() % 3 + 1) as i32;
                    v = encode_wire_format(id, None, &v);
                }
                v
            }
            // A seed with a few bytes flipped.
            1 => {
                let mut v = seeds[(rng.next() % 3) as usize].clone();
                for _ in 0..(rng.next() % 4 + 1) {
                    let at = (rng.next() as usize) % v.len();
                    v[at] = rng.next() as u8;
                }
                v
            }
            // A seed truncated or extended.
            _ => {
                let mut v = seeds[(rng.next() % 3) as usize].clone();
                let cut = (rng.next() as usize) % (v.len() + 1);
                v.truncate(cut);
                v.extend(rng.bytes(4));
                v
            }
        };
        if let Ok(d) = cache.decode_prefixed(&value) {
            ok += 1;
            let idx = (d.decoder.schema_id() - 1) as usize;
            let _ = rows_to_arrow(&[d.row], &types[idx]);
        }
        let _ = cache.decode_latest("s", &value);
    }
    assert!(ok > 100, "some mutations still decode ({ok})");
}

fn cache_schema(id: i32) -> RegisteredSchema {
    match id {
        1 => schema(1, SchemaKind::Avro, AVRO),
        2 => schema(2, SchemaKind::Protobuf, PROTO),
        _ => schema(3, SchemaKind::Json, JSON),
    }
}
