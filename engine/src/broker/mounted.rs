//! A replica of a topic mounted in a cluster starts from the tier: its log is empty at the
//! offset the topic was unmounted at (older offsets are read from the object store, nothing is
//! downloaded), and its Raft group starts as of index 1 with that log, on every replica alike,
//! so that the group's first entry lands at the mounted end.

use crate::broker::{Broker, BrokerError};
use crate::raft::checkpoint::Checkpoint;
use crate::topics::TopicRecord;

impl Broker {
    /// Prepares partition `p` of a mounted topic on this broker if its replica is new here
    /// (no Raft checkpoint yet): an empty log at the mounted end and the group's checkpoint.
    pub(crate) fn prepare_mounted(&self, rec: &TopicRecord, p: i32) -> Result<(), BrokerError> {
        let Some(&(start, end)) = usize::try_from(p).ok().and_then(|i| rec.mounted.get(i)) else {
            return Ok(());
        };
        if !rec.replica_on(p, self.node_id()) {
            return Ok(());
        }
        let raft_dir = self.raft_dir(rec, p)?;
        let failed = |e: String| {
            BrokerError::Storage(std::io::Error::other(format!(
                "mounting '{}' partition {p}: {e}",
                rec.name
            )))
        };
        if Checkpoint::read(&raft_dir)
            .map_err(|e| failed(e.to_string()))?
            .is_some()
        {
            return Ok(());
        }
        let Some(voters) = rec.initial_replicas(p) else {
            return Ok(());
        };
        let dir = self.topic_dir(&rec.name)?.join(p.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        crate::log::PartitionLog::init_at(&dir, start, end, crate::time::now_ms())?;
        crate::log::power::create_dir_all(&raft_dir).map_err(|e| failed(e.to_string()))?;
        let cp = Checkpoint {
            index: 1,
            term: 1,
            conf: raft::eraftpb::ConfState::from((
                voters.iter().map(|&v| v as u64).collect::<Vec<_>>(),
                vec![],
            )),
            offset: end,
            first_file: 0,
            state: Default::default(),
        };
        cp.write(&raft_dir).map_err(|e| failed(e.to_string()))
    }
}
