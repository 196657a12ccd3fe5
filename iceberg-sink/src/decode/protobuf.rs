//! Protobuf (in progress).

use super::error::DecodeError;
use super::shape::Shape;
use super::source::RegisteredSchema;
use super::value::Value;

#[derive(Debug)]
pub(crate) struct ProtoDecoder {}

impl ProtoDecoder {
    pub fn new(
        registered: &RegisteredSchema,
        _indexes: &[i32],
    ) -> Result<(Self, Shape), DecodeError> {
        Err(DecodeError::schema(
            registered.id,
            "Protobuf decoding is not built yet",
        ))
    }

    pub fn decode(&self, _payload: &[u8]) -> Result<Value, String> {
        Err("Protobuf decoding is not built yet".into())
    }
}
