//! Tiered storage for Icestream (not built yet; see the tiered-storage issue).
//!
//! This crate will hold object store access through `object_store` (local filesystem by
//! default, S3 through its AWS backend), the uploader of sealed segments with their indexes,
//! the partition manifests, the remote reader with its chunk cache, retention across tiers, and
//! topic mount / unmount. It plugs into the engine's seams ("segment sealed", "read below the
//! local start offset") and the engine never depends on it.
