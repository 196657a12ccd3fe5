//! Compiled decoders cached per schema id (and Protobuf message type), for the two
//! schema-driven modes.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::DecodeError;
use super::source::{SchemaKind, SchemaSource};
use super::value::Row;
use super::wire::split_wire_format;
use super::ValueDecoder;

/// One decoded record value and the decoder (schema version) that produced it.
#[derive(Debug, Clone)]
pub struct DecodedValue {
    pub decoder: Arc<ValueDecoder>,
    pub row: Row,
}

/// Decoders compiled on first use. Unknown schema ids are not remembered, so a schema
/// registered later is found on the next record.
pub struct DecoderCache {
    source: Arc<dyn SchemaSource>,
    by_id: HashMap<(i32, Vec<i32>), Arc<ValueDecoder>>,
    latest: HashMap<String, Arc<ValueDecoder>>,
}

impl DecoderCache {
    pub fn new(source: Arc<dyn SchemaSource>) -> Self {
        DecoderCache {
            source,
            by_id: HashMap::new(),
            latest: HashMap::new(),
        }
    }

    /// `value_schema_id_prefix`: the value is in the Confluent wire format.
    pub fn decode_prefixed(&mut self, value: &[u8]) -> Result<DecodedValue, DecodeError> {
        let wire = split_wire_format(value)?;
        let schema = self
            .source
            .by_id(wire.schema_id)
            .ok_or(DecodeError::UnknownSchemaId(wire.schema_id))?;
        let (indexes, payload) = if schema.kind == SchemaKind::Protobuf {
            wire.protobuf()?
        } else {
            (Vec::new(), wire.payload)
        };
        let key = (wire.schema_id, indexes);
        let decoder = match self.by_id.get(&key) {
            Some(d) => d.clone(),
            None => {
                let d = Arc::new(ValueDecoder::new(&schema, &key.1)?);
                self.by_id.insert(key, d.clone());
                d
            }
        };
        let row = decoder.decode(payload)?;
        Ok(DecodedValue { decoder, row })
    }

    /// `value_schema_latest`: the value is decoded with the subject's latest schema (for
    /// Protobuf its first message type). A value carrying a Confluent header with that same
    /// schema id is decoded as [`DecoderCache::decode_prefixed`] would (header and Protobuf
    /// message indexes honoured); any other value is taken as a bare payload.
    pub fn decode_latest(
        &mut self,
        subject: &str,
        value: &[u8],
    ) -> Result<DecodedValue, DecodeError> {
        self.decode_latest_message(subject, None, value)
    }

    /// Like [`DecoderCache::decode_latest`], with the Protobuf message type of bare payloads
    /// named (`package.Message`, nested types as `package.Outer.Inner`); `None` is the first
    /// message of the file. Other formats ignore the name.
    pub fn decode_latest_message(
        &mut self,
        subject: &str,
        protobuf_message: Option<&str>,
        value: &[u8],
    ) -> Result<DecodedValue, DecodeError> {
        let key = format!("{subject}\u{0}{}", protobuf_message.unwrap_or(""));
        let decoder = match self.latest.get(&key) {
            Some(d) => d.clone(),
            None => {
                let schema = self
                    .source
                    .latest(subject)
                    .ok_or_else(|| DecodeError::UnknownSubject(subject.to_string()))?;
                let d = Arc::new(match protobuf_message {
                    Some(name) if schema.kind == SchemaKind::Protobuf => {
                        ValueDecoder::for_message(&schema, name)?
                    }
                    _ => ValueDecoder::new(&schema, &[0])?,
                });
                self.latest.insert(key, d.clone());
                d
            }
        };
        if let Ok(wire) = split_wire_format(value) {
            if wire.schema_id == decoder.schema_id() {
                return self.decode_prefixed(value);
            }
        }
        if value.is_empty() && decoder.kind() != SchemaKind::Protobuf {
            return Err(DecodeError::NullValue);
        }
        let row = decoder.decode(value)?;
        Ok(DecodedValue { decoder, row })
    }

    /// Forgets the cached latest schemas, so the next `decode_latest` asks the source again
    /// (call it once per translation round to pick up new versions).
    pub fn refresh_latest(&mut self) {
        self.latest.clear();
    }
}
