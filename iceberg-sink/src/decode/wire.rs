//! The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, for Protobuf a
//! message-index array (zigzag varints: a count, then that many indexes; a lone 0 means `[0]`),
//! then the serialized payload.

use super::error::DecodeError;

/// Largest message-index array accepted (nesting depth of the message type).
const MAX_INDEXES: usize = 64;

/// A value split into its schema id and payload. `payload` still holds the Protobuf
/// message-index array: call [`WireValue::protobuf`] for Protobuf schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireValue<'a> {
    pub schema_id: i32,
    /// Everything after the 5-byte header.
    pub payload: &'a [u8],
}

impl<'a> WireValue<'a> {
    /// For Protobuf: reads the message-index array at the start of the payload and returns
    /// the indexes (`[0]` for the first message of the file) and the message bytes.
    pub fn protobuf(&self) -> Result<(Vec<i32>, &'a [u8]), DecodeError> {
        split_message_indexes(self.payload)
    }
}

/// Splits the Confluent header off a record value.
pub fn split_wire_format(value: &[u8]) -> Result<WireValue<'_>, DecodeError> {
    if value.is_empty() {
        return Err(DecodeError::NullValue);
    }
    if value[0] != 0 {
        return Err(DecodeError::BadMagic(value[0]));
    }
    if value.len() < 5 {
        return Err(DecodeError::TooShort { len: value.len() });
    }
    let schema_id = i32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok(WireValue {
        schema_id,
        payload: &value[5..],
    })
}

/// Reads a Protobuf message-index array: a zigzag varint count, then the indexes; a count
/// of 0 stands for `[0]` (the first message type of the file).
pub fn split_message_indexes(payload: &[u8]) -> Result<(Vec<i32>, &[u8]), DecodeError> {
    let (count, mut rest) = read_zigzag(payload)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 || count as usize > MAX_INDEXES {
        return Err(DecodeError::BadMessageIndexes(format!(
            "count {count} is out of range 0..={MAX_INDEXES}"
        )));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (index, r) = read_zigzag(rest)?;
        if index < 0 {
            return Err(DecodeError::BadMessageIndexes(format!(
                "negative index {index}"
            )));
        }
        indexes.push(index);
        rest = r;
    }
    Ok((indexes, rest))
}

/// Encodes a Protobuf message-index array as the Confluent serializer does (`[0]` as a
/// single 0 byte). Useful for producers and tests.
pub fn encode_message_indexes(indexes: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    if indexes == [0] {
        out.push(0);
        return out;
    }
    write_zigzag(indexes.len() as i32, &mut out);
    for &i in indexes {
        write_zigzag(i, &mut out);
    }
    out
}

/// Builds a complete wire-format value (header, Protobuf indexes if any, payload).
pub fn encode_wire_format(
    schema_id: i32,
    protobuf_indexes: Option<&[i32]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    if let Some(indexes) = protobuf_indexes {
        out.extend(encode_message_indexes(indexes));
    }
    out.extend_from_slice(payload);
    out
}

fn read_zigzag(bytes: &[u8]) -> Result<(i32, &[u8]), DecodeError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i >= 5 {
            return Err(DecodeError::BadMessageIndexes(
                "varint longer than 5 bytes".into(),
            ));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if value > u64::from(u32::MAX) {
                return Err(DecodeError::BadMessageIndexes(
                    "varint overflows 32 bits".into(),
                ));
            }
            let v = value as u32;
            let decoded = ((v >> 1) as i32) ^ -((v & 1) as i32);
            return Ok((decoded, &bytes[i + 1..]));
        }
    }
    Err(DecodeError::BadMessageIndexes("truncated varint".into()))
}

fn write_zigzag(v: i32, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_split() {
        let v = encode_wire_format(258, None, b"abc");
        assert_eq!(v[..5], [0, 0, 0, 1, 2]);
        let w = split_wire_format(&v).unwrap();
        assert_eq!(w.schema_id, 258);
        assert_eq!(w.payload, b"abc");
    }

    #[test]
    fn bad_headers_are_errors() {
        assert_eq!(split_wire_format(&[]), Err(DecodeError::NullValue));
        assert_eq!(
            split_wire_format(&[1, 0, 0, 0, 1]),
            Err(DecodeError::BadMagic(1))
        );
        assert_eq!(
            split_wire_format(&[0, 0, 1]),
            Err(DecodeError::TooShort { len: 3 })
        );
    }

    #[test]
    fn message_indexes_round_trip() {
        for idx in [vec![0], vec![1], vec![0, 2], vec![3, 1, 70], vec![300]] {
            let v = encode_wire_format(7, Some(&idx), b"\x08\x01");
            let w = split_wire_format(&v).unwrap();
            let (got, payload) = w.protobuf().unwrap();
            assert_eq!(got, idx);
            assert_eq!(payload, b"\x08\x01");
        }
        // [0] is the single byte 0, as Confluent writes it.
        assert_eq!(encode_message_indexes(&[0]), vec![0]);
        // count 1 (zigzag 2), index 2 (zigzag 4)
        assert_eq!(encode_message_indexes(&[2]), vec![2, 4]);
    }

    #[test]
    fn bad_message_indexes_are_errors() {
        assert!(split_message_indexes(&[]).is_err());
        assert!(split_message_indexes(&[0x80]).is_err());
        assert!(split_message_indexes(&[1]).is_err()); // count -1
        assert!(split_message_indexes(&[2]).is_err()); // count 1, index missing
        assert!(split_message_indexes(&[2, 1]).is_err()); // index -1
        assert!(split_message_indexes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}
