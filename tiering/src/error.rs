//! The crate's errors. Every store failure names the operation and the key.

use engine::remote::RemoteError;

#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    #[error("object store {op} {key}: {source}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("damaged object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("no topic manifest for topic {topic} (key {key})")]
    TopicManifestMissing { topic: String, key: String },
    #[error("local file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tiering config: {0}")]
    Config(String),
    #[error("remote tier does not track partition {0}")]
    UnknownPartition(String),
    #[error("offset {0} is not in the remote tier")]
    OffsetNotRemote(i64),
    #[error("timed out waiting for partition {partition} to upload up to offset {offset}")]
    Timeout { partition: String, offset: i64 },
    #[error("tiering runtime: {0}")]
    Runtime(String),
    /// A name that would not be one safe key segment (refused where the key is built).
    #[error(transparent)]
    Name(#[from] engine::names::NameError),
}

impl TieringError {
    pub(crate) fn store(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        TieringError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }

    pub(crate) fn corrupt(key: impl ToString, reason: impl ToString) -> Self {
        TieringError::Corrupt {
            key: key.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TieringError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<TieringError> for RemoteError {
    fn from(e: TieringError) -> Self {
        match e {
            TieringError::Corrupt { .. } | TieringError::TopicManifestMissing { .. } => {
                RemoteError::Corrupt(e.to_string())
            }
            TieringError::UnknownPartition(p) => RemoteError::UnknownPartition(p),
            TieringError::OffsetNotRemote(o) => RemoteError::OffsetNotRemote(o),
            other => RemoteError::Store(other.to_string()),
        }
    }
}
