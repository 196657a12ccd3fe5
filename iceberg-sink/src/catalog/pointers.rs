//! Versioned, create-only pointer objects: the commit point of every catalog change, safe
//! across processes (several brokers over one store) on any store with create-if-absent (S3's
//! `If-None-Match: *`, the local filesystem's hard links).
//!
//! A pointer is a directory of versions, `<dir>/<version, 20 digits>.json`; its state is the
//! newest one. A change reads the newest version N, then creates N+1 with `PutMode::Create`:
//! of two writers that both read N, exactly one creates N+1 and the other is refused (it
//! reports CommitFailed, the client reloads and retries). A drop is a tombstone version, so
//! a dropped and re-created name keeps counting up and a writer still holding the dropped
//! table's version cannot land on the new one.
//!
//! Old versions are deleted (never the newest), but only once they are both beyond the newest
//! [`KEEP_VERSIONS`] and older than the store's prune age (minutes): a writer gives up
//! ([`COMMIT_DEADLINE`]) long before then, so it can never re-create a version that was
//! pruned and believe it won.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{CatalogError, Result};
use super::store::{to_json, Store};

/// Versions kept below the newest whatever their age.
pub const KEEP_VERSIONS: u64 = 8;
/// Default age past which a version beyond the newest [`KEEP_VERSIONS`] is deleted.
pub const PRUNE_AGE: Duration = Duration::from_secs(600);
/// A change whose read of the newest version is older than this is refused before it writes
/// (CommitFailed): it bounds how late a create can arrive, far below [`PRUNE_AGE`] even with
/// clocks some minutes apart.
pub const COMMIT_DEADLINE: Duration = Duration::from_secs(60);

/// One version's object.
#[derive(Debug, Serialize, Deserialize)]
struct Entry<T> {
    /// `None`: a tombstone (the table or namespace was dropped).
    #[serde(default = "no_state", skip_serializing_if = "Option::is_none")]
    state: Option<T>,
    /// A fresh id per write: a writer whose create was retried after its answer was lost
    /// finds its own object there and knows it won.
    writer: String,
}

fn no_state<T>() -> Option<T> {
    None
}

/// The newest version of a pointer, as read for a change.
#[derive(Debug)]
pub struct Current<T> {
    /// 0 when the pointer never existed.
    pub version: u64,
    /// `None` when it never existed or its newest version is a tombstone.
    pub state: Option<T>,
    read_at: Instant,
    /// The versions below the newest, for pruning.
    older: Vec<(u64, ObjectMeta)>,
}

impl<T> Current<T> {
    pub fn live(&self) -> Option<&T> {
        self.state.as_ref()
    }
}

/// `<version>.json`'s version; `None` for any other name.
pub fn version_of_file(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn version_path(dir: &Path, version: u64) -> Path {
    dir.clone().join(format!("{version:020}.json"))
}

impl Store {
    /// Every version object directly in `dir`, oldest first.
    async fn versions(&self, dir: &Path) -> Result<Vec<(u64, ObjectMeta)>> {
        let depth = dir.parts().count() + 1;
        let metas: Vec<ObjectMeta> = self.objects.list(Some(dir)).try_collect().await?;
        let mut out: Vec<(u64, ObjectMeta)> = metas
            .into_iter()
            .filter(|m| m.location.parts().count() == depth)
            .filter_map(|m| Some((version_of_file(m.location.filename()?)?, m)))
            .collect();
        out.sort_by_key(|(v, _)| *v);
        Ok(out)
    }

    /// The newest version of the pointer at `dir`.
    pub async fn current<T: DeserializeOwned>(&self, dir: &Path) -> Result<Current<T>> {
        // The newest version is never deleted, so a vanished newest (a store that lists
        // what it no longer has) is worth one more look, not an error.
        for _ in 0..3 {
            let read_at = Instant::now();
            let mut older = self.versions(dir).await?;
            let Some((version, newest)) = older.pop() else {
                return Ok(Current {
                    version: 0,
                    state: None,
                    read_at,
                    older,
                });
            };
            let bytes = match self.objects.get(&newest.location).await {
                Ok(got) => got.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let entry: Entry<T> =
                serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
                    path: newest.location.to_string(),
                    message: e.to_string(),
                })?;
            return Ok(Current {
                version,
                state: entry.state,
                read_at,
                older,
            });
        }
        Err(CatalogError::Internal(format!(
            "the newest version under {dir} keeps vanishing"
        )))
    }

    /// Creates the version after `base` holding `state` (`None`: a tombstone). `false` if
    /// another writer created it first, or `base` was read too long ago to still be trusted.
    pub async fn put_next<B, T: Serialize>(
        &self,
        dir: &Path,
        base: &Current<B>,
        state: Option<&T>,
    ) -> Result<bool> {
        if self.no_create_if_absent.load(Ordering::Relaxed) {
            return Err(CatalogError::NoCreateIfAbsent(self.describe()));
        }
        if base.read_at.elapsed() > COMMIT_DEADLINE {
            return Ok(false);
        }
        let version = base.version + 1;
        let path = version_path(dir, version);
        let writer = uuid::Uuid::new_v4().to_string();
        let bytes = to_json(&Entry {
            state,
            writer: writer.clone(),
        })?;
        let opts = PutOptions::from(PutMode::Create);
        match self
            .objects
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                if !self.written_by(&path, &writer).await? {
                    return Ok(false);
                }
            }
            Err(object_store::Error::NotImplemented { .. }) => {
                return Err(CatalogError::NoCreateIfAbsent(self.describe()));
            }
            Err(e) => return Err(e.into()),
        }
        self.prune(&base.older, version).await;
        Ok(true)
    }

    /// Whether the object at `path` was written by `writer`.
    async fn written_by(&self, path: &Path, writer: &str) -> Result<bool> {
        let bytes = match self.objects.get(path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(serde_json::from_slice::<Entry<serde_json::Value>>(&bytes)
            .is_ok_and(|e| e.writer == writer))
    }

    /// Deletes the versions of `older` that are beyond the newest [`KEEP_VERSIONS`] below
    /// `newest` and older than the prune age. Failures only leave garbage, so they are logged.
    async fn prune(&self, older: &[(u64, ObjectMeta)], newest: u64) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let age_ms = self.prune_age.as_millis() as i64;
        for (v, meta) in older {
            let old_enough = now_ms - meta.last_modified.timestamp_millis() >= age_ms;
            if v + KEEP_VERSIONS < newest && old_enough {
                if let Err(e) = self.delete(&meta.location).await {
                    tracing::debug!(path = %meta.location, error = %e, "pruning an old catalog pointer version failed");
                }
            }
        }
    }

    /// Checks that the store refuses a second create of one object: without that, two
    /// brokers committing at once could both win and one's change would be lost. A store
    /// found wanting is remembered, and every later change refused.
    pub async fn probe_create_if_absent(&self) -> Result<()> {
        let verdict = self.probe_once().await;
        if let Err(CatalogError::NoCreateIfAbsent(_)) = &verdict {
            self.no_create_if_absent.store(true, Ordering::Relaxed);
        }
        verdict
    }

    async fn probe_once(&self) -> Result<()> {
        let path = self
            .root
            .clone()
            .join("probe")
            .join(format!("{}.json", uuid::Uuid::new_v4()));
        let create = |body: &'static str| {
            self.objects.put_opts(
                &path,
                PutPayload::from_static(body.as_bytes()),
                PutOptions::from(PutMode::Create),
            )
        };
        let first = create("{}").await;
        let second = match first {
            Ok(_) => create("{}").await,
            Err(object_store::Error::NotImplemented { .. }) => {
                return Err(CatalogError::NoCreateIfAbsent(self.describe()))
            }
            Err(e) => return Err(e.into()),
        };
        let _ = self.delete(&path).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
                Err(CatalogError::NoCreateIfAbsent(self.describe()))
            }
            Err(e) => Err(e.into()),
        }
    }
}
