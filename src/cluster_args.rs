//! `icestream serve` flags for clusters (`--seeds` and the rest): their checks and conversion
//! into the engine's `ClusterConfig`.

use anyhow::bail;

use crate::serve::{limits, positive, ServeArgs};

impl ServeArgs {
    /// Membership settings, when `--seeds` makes this broker part of a cluster.
    pub fn cluster_config(&self) -> anyhow::Result<Option<engine::cluster::ClusterConfig>> {
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if seeds.is_empty() {
            return Ok(None);
        }
        for s in &seeds {
            if s.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                bail!("--seeds: '{s}' must be host:port");
            }
        }
        if !(1..=65535).contains(&self.node_id) {
            bail!(
                "--node-id must be between 1 and 65535 with --seeds, got {}",
                self.node_id
            );
        }
        let follower_fetch = match self.replica_selector.as_str() {
            "rack-aware" | "org.apache.kafka.common.replica.RackAwareReplicaSelector" => true,
            "leader" | "org.apache.kafka.common.replica.LeaderSelector" => false,
            other => bail!(
                "--replica-selector must be rack-aware or leader (or Kafka's class names), got '{other}'"
            ),
        };
        let rack = self
            .rack
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        if rack.as_ref().is_some_and(|r| r.len() > 255) {
            bail!("--rack must be at most 255 bytes");
        }
        if self.replica_lag_time_max_ms == 0 {
            bail!("--replica-lag-time-max-ms must be positive");
        }
        if self.raft_log_file_bytes < 4096 {
            bail!("--raft-log-file-bytes must be at least 4096");
        }
        if self.controller_quorum_size == 0 {
            bail!("--controller-quorum-size must be positive");
        }
        if self.controller_snapshot_entries == 0 {
            bail!("--controller-snapshot-entries must be positive");
        }
        Ok(Some(engine::cluster::ClusterConfig {
            node_id: self.node_id,
            rpc_addr: self.rpc_addr,
            advertised_rpc_addr: self.advertised_rpc_addr.clone(),
            seeds,
            rack,
            follower_fetch,
            replica_lag_max: std::time::Duration::from_millis(self.replica_lag_time_max_ms),
            batch_heartbeats: self.raft_batch_heartbeats,
            raft_log_file_bytes: self.raft_log_file_bytes,
            controller_snapshot_entries: self.controller_snapshot_entries,
            controller_quorum_size: self.controller_quorum_size,
            recover_controller: self.recover_controller,
            restore_metadata: self.restore_metadata.clone(),
            controlled_shutdown_timeout: std::time::Duration::from_millis(
                self.controlled_shutdown_timeout_ms,
            ),
            rpc_connections: limits(
                "rpc",
                self.rpc_max_connections,
                self.rpc_max_connections_per_ip,
            )?,
            send_queue: engine::cluster::send_queue::QueueLimits {
                max_frames: positive("rpc-send-queue-frames", self.rpc_send_queue_frames)?,
                max_bytes: positive("rpc-send-queue-bytes", self.rpc_send_queue_bytes)?,
            },
        }))
    }

    /// A cluster id every broker given the same seeds derives alike.
    pub(crate) fn seed_cluster_id(&self) -> Option<String> {
        if self.seeds.is_empty() {
            return None;
        }
        let mut seeds: Vec<&str> = self.seeds.iter().map(|s| s.trim()).collect();
        seeds.sort_unstable();
        let h = seeds.join(",").bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        Some(format!("icestream-{h:016x}"))
    }
}
