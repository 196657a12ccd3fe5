//! The registry's errors, each with the Confluent registry's HTTP status and error code.

use super::store::StoreError;

/// Errors with the Confluent registry's HTTP statuses and error codes.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("{0}")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Version {0} for subject '{1}' was soft deleted.Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted(i32, String),
    #[error(
        "Version {0} for subject '{1}' was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted(i32, String),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("{0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibility,
    #[error("Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT")]
    InvalidMode,
    #[error("Subject {0} is in read-only mode")]
    ReadOnly(String),
    #[error("{0}")]
    NotPermitted(String),
    #[error("One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={0},version={1}}}.")]
    ReferenceExists(String, i32),
    #[error("{0}")]
    IdConflict(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotFound(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{0}\", details: [{1}]")]
    Incompatible(String, String),
    #[error("Error while storing the schema registry's state: {0}")]
    Store(#[from] StoreError),
    /// In a cluster: `_schemas` has no leader (or its registry is not known yet).
    #[error("Unknown leader: {0}")]
    UnknownLeader(String),
    #[error("Error while forwarding the request to the leader: {0}")]
    Forwarding(String),
    #[error("Operation timed out: {0}")]
    Timeout(String),
}

impl RegistryError {
    /// (HTTP status, Confluent error code)
    pub fn codes(&self) -> (u16, u32) {
        use RegistryError::*;
        match self {
            SubjectNotFound(_) => (404, 40401),
            VersionNotFound(_) => (404, 40402),
            SchemaNotFound(_) => (404, 40403),
            SubjectSoftDeleted(_) => (404, 40404),
            SubjectNotSoftDeleted(_) => (404, 40405),
            VersionSoftDeleted(..) => (404, 40406),
            VersionNotSoftDeleted(..) => (404, 40407),
            SubjectConfigNotFound(_) => (404, 40408),
            InvalidSchema(_) => (422, 42201),
            InvalidVersion(_) => (422, 42202),
            InvalidCompatibility => (422, 42203),
            InvalidMode => (422, 42204),
            ReadOnly(_) | NotPermitted(_) => (422, 42205),
            ReferenceExists(..) => (422, 42206),
            IdConflict(_) => (422, 42207),
            SubjectModeNotFound(_) => (404, 40409),
            Incompatible(..) => (409, 409),
            // A write that raced a leadership change: the leader is elsewhere now.
            Store(e) if e.not_leader() => (500, 50004),
            Store(_) => (500, 50001),
            Forwarding(_) => (500, 50003),
            UnknownLeader(_) => (500, 50004),
            Timeout(_) => (500, 50002),
        }
    }
}
