//! Producer id allocation for InitProducerId, durable across restarts.
//!
//! Ids are handed out from blocks; the end of the current block is persisted before any id in
//! it is used, so after a crash allocation resumes past every id that may have been given out
//! and no two producers ever share an id.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::log::files::write_atomic;

const BLOCK: i64 = 1000;

pub struct ProducerIds {
    path: PathBuf,
    state: Mutex<(i64, i64)>, // (next id, end of the persisted block)
}

impl ProducerIds {
    pub fn load(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("meta").join("producer-ids");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIds {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// A producer id never handed out before.
    pub fn next(&self) -> std::io::Result<i64> {
        let mut st = self.state.lock();
        if st.0 >= st.1 {
            let end = st.0 + BLOCK;
            write_atomic(&self.path, end.to_string().as_bytes())?;
            st.1 = end;
        }
        let id = st.0;
        st.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("meta")).unwrap();
        let a = ProducerIds::load(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.next().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIds::load(dir.path()).unwrap();
        assert!(b.next().unwrap() >= 1000);
    }
}
