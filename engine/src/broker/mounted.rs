//! A replica of a topic mounted in a cluster starts from the tier: its log is empty at the
//! offset the topic was unmounted at (older offsets are read from the object store; only the
//! producer-state snapshot uploaded with the last segment is downloaded), and its Raft group
//! starts as of index 1 with that log, on every replica alike, so that the group's first entry
//! lands at the mounted end.
//!
//! The snapshot carries the idempotent producers' state and the aborted transactions as of the
//! mounted end: without it, read_committed reads of the tiered offsets would return the
//! records of aborted transactions, and producers' retries would not be recognised.

use std::path::Path;
use std::time::Duration;

use crate::broker::{Broker, BrokerError};
use crate::log::producer_state::{snapshot_path, ProducerStates};
use crate::raft::checkpoint::Checkpoint;
use crate::remote::{RemoteError, RemotePartition};
use crate::topics::TopicRecord;

/// Attempts at downloading a mounted partition's producer snapshot before the mount fails
/// (the store client retries each request a few times too).
const SNAPSHOT_ATTEMPTS: u32 = 4;
const SNAPSHOT_FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl Broker {
    /// Prepares partition `p` of a mounted topic on this broker if its replica is new here
    /// (no Raft checkpoint yet): an empty log at the mounted end and the group's checkpoint.
    pub(crate) async fn prepare_mounted(
        &self,
        rec: &TopicRecord,
        p: i32,
    ) -> Result<(), BrokerError> {
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
        // Before the checkpoint: a failure leaves the replica unprepared, to be tried again.
        let id = RemotePartition {
            topic: rec.name.clone(),
            topic_id: rec.id,
            partition: p,
        };
        self.restore_producer_state(&id, &dir, start, end).await?;
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

impl Broker {
    /// Writes the producer state a mounted partition had at its end `end` into its freshly
    /// initialised directory `dir`, as the snapshot `<end>.snapshot` the log loads when it
    /// opens: the snapshot uploaded with the remote segment ending there. A store that fails
    /// is retried a few times, then the mount fails (a clear error beats wrong reads); a
    /// damaged snapshot fails it too. A segment uploaded without a snapshot (before
    /// transactions) leaves the state empty, with a warning.
    pub(crate) async fn restore_producer_state(
        &self,
        id: &RemotePartition,
        dir: &Path,
        start: i64,
        end: i64,
    ) -> Result<(), BrokerError> {
        let Some(tier) = &self.remote else {
            return Ok(());
        };
        let what = format!(
            "mounting '{}' partition {}: the producer snapshot at offset {end}",
            id.topic, id.partition
        );
        let mut backoff = SNAPSHOT_FIRST_BACKOFF;
        let mut attempt = 1;
        let bytes = loop {
            match tier.producer_snapshot(id, end).await {
                Ok(b) => break b,
                Err(RemoteError::Store(e)) if attempt < SNAPSHOT_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, retry_in_ms = backoff.as_millis() as u64,
                        "{what}: download failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(RemoteError::Corrupt(e)) => {
                    return Err(RemoteError::Corrupt(format!("{what}: {e}")).into())
                }
                Err(e) => return Err(RemoteError::Store(format!("{what}: {e}")).into()),
            }
        };
        let Some(bytes) = bytes else {
            if end > start {
                tracing::warn!(
                    "{what}: none was uploaded (segments uploaded before transactions); \
                     the partition starts with no producer state, so read_committed reads of \
                     its tiered offsets do not skip aborted transactions"
                );
            }
            return Ok(());
        };
        let Some(states) = ProducerStates::decode_snapshot(&bytes) else {
            return Err(RemoteError::Corrupt(format!("{what}: not a producer snapshot")).into());
        };
        let ongoing = states.ongoing();
        if !ongoing.is_empty() {
            // Unmounted with a transaction open: its marker can no longer reach this log, so
            // the last stable offset stays at its first offset until one is written (an
            // admin abort, as for any hanging transaction).
            let open: Vec<(i64, i64)> = ongoing
                .iter()
                .map(|t| (t.producer_id, t.first_offset))
                .collect();
            tracing::warn!(?open, "{what}: transactions (producer id, first offset) were open at the unmount; read_committed consumers stop at the first until they are aborted");
        }
        crate::log::files::write_atomic(&snapshot_path(dir, end), &bytes)?;
        tracing::info!(
            producers = states.len(),
            aborted = states.aborted().len(),
            "{what}: producer state restored"
        );
        Ok(())
    }
}
