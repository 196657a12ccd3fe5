//! In-process locks keyed by pointer object, so that changes to one namespace or table from
//! this broker run one at a time. Lock order: a namespace's lock before table locks, table
//! locks in key order; nothing waits on a lock while holding a later one.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

pub struct Guard {
    _guard: OwnedMutexGuard<()>,
}

impl Locks {
    pub async fn lock(&self, key: &str) -> Guard {
        let lock = {
            let mut map = self.map.lock();
            // Drop entries nobody holds or waits on, so the map stays as small as the set of
            // keys in use.
            if map.len() > 1024 {
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(key.to_string()).or_default().clone()
        };
        Guard {
            _guard: lock.lock_owned().await,
        }
    }

    /// Locks several keys in a fixed (sorted, deduplicated) order.
    pub async fn lock_all(&self, keys: &[String]) -> Vec<Guard> {
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.lock(key).await);
        }
        guards
    }
}
