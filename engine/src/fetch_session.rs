//! Incremental fetch sessions (KIP-227): the broker remembers what a consumer fetches so that
//! each request lists only partitions that changed, and each response only partitions with news.

use std::collections::HashMap;
use std::time::Instant;

use indexmap::IndexMap;
use parking_lot::Mutex;
use uuid::Uuid;

/// Key of a partition inside a session.
pub type PartKey = (String, i32);

#[derive(Debug, Clone)]
pub struct SessionPartition {
    pub topic_id: Uuid,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// Watermarks last sent, so unchanged partitions can be left out.
    pub last_high: i64,
    pub last_start: i64,
}

#[derive(Debug)]
pub struct Session {
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    pub parts: IndexMap<PartKey, SessionPartition>,
    last_used: Instant,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("fetch session {0} not found")]
    NotFound(i32),
    #[error("fetch session epoch {got} does not match the expected {expected}")]
    BadEpoch { got: i32, expected: i32 },
}

pub struct FetchSessions {
    sessions: Mutex<HashMap<i32, Session>>,
    slots: usize,
    next_id: Mutex<i32>,
}

impl FetchSessions {
    pub fn new(slots: usize) -> Self {
        FetchSessions {
            sessions: Mutex::new(HashMap::new()),
            slots,
            next_id: Mutex::new(0),
        }
    }

    /// Creates a session holding `parts`; `None` (a sessionless fetch) when no slot is free.
    pub fn create(&self, parts: IndexMap<PartKey, SessionPartition>) -> Option<i32> {
        if self.slots == 0 {
            return None;
        }
        let mut sessions = self.sessions.lock();
        if sessions.len() >= self.slots {
            // Evict the least recently used session; its consumer will start a new one.
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)?;
            sessions.remove(&oldest);
        }
        let id = {
            let mut n = self.next_id.lock();
            loop {
                *n = n.wrapping_add(1).max(1);
                if !sessions.contains_key(&*n) {
                    break *n;
                }
            }
        };
        sessions.insert(
            id,
            Session {
                next_epoch: 1,
                parts,
                last_used: Instant::now(),
            },
        );
        Some(id)
    }

    pub fn remove(&self, id: i32) {
        self.sessions.lock().remove(&id);
    }

    /// Runs `f` on session `id` if `epoch` is the one it expects, then advances the epoch.
    pub fn update<T>(
        &self,
        id: i32,
        epoch: i32,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Result<T, SessionError> {
        let mut sessions = self.sessions.lock();
        let s = sessions.get_mut(&id).ok_or(SessionError::NotFound(id))?;
        if s.next_epoch != epoch {
            return Err(SessionError::BadEpoch {
                got: epoch,
                expected: s.next_epoch,
            });
        }
        s.next_epoch = s.next_epoch.wrapping_add(1).max(1);
        s.last_used = Instant::now();
        Ok(f(s))
    }

    /// Records the watermarks sent for a session's partitions.
    pub fn note_sent(&self, id: i32, sent: &[(PartKey, i64, i64)]) {
        if let Some(s) = self.sessions.lock().get_mut(&id) {
            for (k, high, start) in sent {
                if let Some(p) = s.parts.get_mut(k) {
                    p.last_high = *high;
                    p.last_start = *start;
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(off: i64) -> SessionPartition {
        SessionPartition {
            topic_id: Uuid::nil(),
            fetch_offset: off,
            max_bytes: 1,
            last_high: -1,
            last_start: -1,
        }
    }

    #[test]
    fn epochs_and_eviction() {
        let s = FetchSessions::new(2);
        let a = s
            .create(IndexMap::from([(("t".to_string(), 0), part(0))]))
            .unwrap();
        assert_eq!(
            s.update(a, 2, |_| ()),
            Err(SessionError::BadEpoch {
                got: 2,
                expected: 1
            })
        );
        assert!(s.update(a, 1, |_| ()).is_ok());
        assert!(s.update(a, 2, |_| ()).is_ok());
        let b = s.create(IndexMap::new()).unwrap();
        let c = s.create(IndexMap::new()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.update(a, 3, |_| ()), Err(SessionError::NotFound(a)));
        assert!(s.update(b, 1, |_| ()).is_ok() && s.update(c, 1, |_| ()).is_ok());
    }
}
