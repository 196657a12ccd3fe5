//! `icestream serve` flags for clusters (`--seeds` and the rest): their checks and conversion
//! into the engine's `ClusterConfig`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use crate::serve::{limits, positive, ServeArgs};

/// The inter-broker authentication flag (docs/security.md, "Inter-broker authentication").
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterAuthArgs {
    /// File holding the secret the brokers of a cluster authenticate each other with (give
    /// every broker the same; at least 32 bytes, surrounding whitespace ignored; e.g.
    /// `head -c 32 /dev/urandom | base64 > secret; chmod 600 secret`): every RPC connection
    /// starts with a challenge-response handshake and every frame carries a MAC
    #[arg(long, env = "ICESTREAM_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
}

impl ClusterAuthArgs {
    /// The secret in `--cluster-secret-file`, if given: refused when shorter than 32 bytes,
    /// with a warning when others than its owner may read the file.
    pub fn secret(&self) -> anyhow::Result<Option<Arc<[u8]>>> {
        let Some(path) = &self.cluster_secret_file else {
            return Ok(None);
        };
        read_secret(path).map(Some)
    }
}

fn read_secret(path: &Path) -> anyhow::Result<Arc<[u8]>> {
    let raw = std::fs::read(path)
        .with_context(|| format!("--cluster-secret-file: cannot read {}", path.display()))?;
    let secret = raw.trim_ascii();
    if secret.len() < engine::cluster::rpc_auth::MIN_SECRET {
        bail!(
            "--cluster-secret-file {}: {}",
            path.display(),
            engine::cluster::rpc_auth::ShortSecret(secret.len())
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the cluster secret file may be read by others than its owner: chmod 600 it"
            );
        }
    }
    Ok(Arc::from(secret))
}

impl ServeArgs {
    /// Membership settings, when `--seeds` makes this broker part of a cluster; `secret` is
    /// `--cluster-secret-file`'s ([`ClusterAuthArgs::secret`]).
    pub fn cluster_config(
        &self,
        secret: Option<Arc<[u8]>>,
    ) -> anyhow::Result<Option<engine::cluster::ClusterConfig>> {
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if seeds.is_empty() {
            if secret.is_some() {
                tracing::warn!("--cluster-secret-file has no effect without --seeds");
            }
            return Ok(None);
        }
        let secret = secret
            .map(engine::cluster::rpc_auth::ClusterSecret::new)
            .transpose()?;
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
            secret,
            // Set from --rpc-tls when the broker starts, with the TLS files it loads.
            tls: None,
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
