//! Why a record value could not be decoded, or a schema could not be used.

/// Every failure of this module. A record that fails to decode is routed to the dead-letter
/// table with [`DecodeError::code`] and the error's text as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The value is shorter than the 5-byte Confluent header.
    #[error("value of {len} bytes is too short for the Confluent wire format (magic byte + 4-byte schema id)")]
    TooShort { len: usize },
    /// The first byte is not the Confluent magic byte 0.
    #[error("bad magic byte {0:#04x} (the Confluent wire format starts with 0x00)")]
    BadMagic(u8),
    /// The Protobuf message-index array after the schema id is malformed.
    #[error("bad Protobuf message-index array: {0}")]
    BadMessageIndexes(String),
    /// The value is empty or null (a tombstone), so there is nothing to decode.
    #[error("value is null (tombstone)")]
    NullValue,
    /// The schema source does not know this schema id.
    #[error("schema id {0} is not registered")]
    UnknownSchemaId(i32),
    /// The subject has no schema (for `value_schema_latest`).
    #[error("subject {0:?} has no registered schema")]
    UnknownSubject(String),
    /// The schema cannot be compiled or has a construct with no Iceberg type.
    #[error("schema {id} cannot be used: {reason}")]
    Schema { id: i32, reason: String },
    /// The payload does not match the schema.
    #[error("payload does not match schema {id}: {reason}")]
    Payload { id: i32, reason: String },
    /// Decoded rows do not fit the Iceberg type they are written as.
    #[error("cannot write column {path}: {reason}")]
    Column { path: String, reason: String },
    /// The new schema changes an existing column in a way Iceberg cannot evolve.
    #[error("incompatible schema change at {path}: {reason}")]
    Incompatible { path: String, reason: String },
}

impl DecodeError {
    /// A short stable class for the dead-letter table's `reason_code` column.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } | DecodeError::BadMagic(_) => "bad_wire_format",
            DecodeError::BadMessageIndexes(_) => "bad_message_indexes",
            DecodeError::NullValue => "null_value",
            DecodeError::UnknownSchemaId(_) => "unknown_schema_id",
            DecodeError::UnknownSubject(_) => "unknown_subject",
            DecodeError::Schema { .. } => "unusable_schema",
            DecodeError::Payload { .. } => "payload_mismatch",
            DecodeError::Column { .. } => "column_mismatch",
            DecodeError::Incompatible { .. } => "incompatible_schema",
        }
    }

    pub(crate) fn schema(id: i32, reason: impl Into<String>) -> Self {
        DecodeError::Schema {
            id,
            reason: reason.into(),
        }
    }

    pub(crate) fn payload(id: i32, reason: impl Into<String>) -> Self {
        DecodeError::Payload {
            id,
            reason: reason.into(),
        }
    }

    pub(crate) fn column(path: &str, reason: impl Into<String>) -> Self {
        DecodeError::Column {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn incompatible(path: &str, reason: impl Into<String>) -> Self {
        DecodeError::Incompatible {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}
