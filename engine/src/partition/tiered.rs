//! The partition actor's side of tiered storage: offering sealed segments to the remote tier,
//! local retention of what is uploaded, and total retention across both tiers.
//!
//! The actor owns retention for both tiers because only it knows the local log; the tier
//! reports what it holds (`extent`, `segments`) from memory, so none of this waits on the
//! object store.

use std::io;
use std::sync::Arc;

use crate::log::PartitionLog;
use crate::remote::{RemoteExtent, RemotePartition, RemoteSegment, RemoteTier, TierRole};

/// A partition's connection to the remote tier, made by the broker (which reads the manifest
/// before the partition opens).
#[derive(Clone)]
pub struct RemoteLink {
    pub tier: Arc<dyn RemoteTier>,
    pub id: RemotePartition,
    pub extent: RemoteExtent,
    /// Leader with epoch 0 on a single node; a cluster replica starts as a follower and the
    /// actor follows its Raft group's leadership.
    pub role: TierRole,
}

pub(super) struct Tiered {
    link: RemoteLink,
    /// Sealed segments up to here were offered already.
    offered_end: i64,
}

impl Tiered {
    pub(super) fn new(link: RemoteLink) -> Self {
        link.tier.set_role(&link.id, link.role);
        Tiered {
            offered_end: link.extent.end,
            link,
        }
    }

    pub(super) fn id(&self) -> &RemotePartition {
        &self.link.id
    }

    pub(super) fn tier(&self) -> Arc<dyn RemoteTier> {
        self.link.tier.clone()
    }

    /// Only the leader uploads and trims the remote tier.
    fn leads(&self) -> bool {
        matches!(self.link.role, TierRole::Leader { .. })
    }

    /// Follows the partition's leadership (called after every Raft cycle; cheap when unchanged).
    pub(super) fn set_role(&mut self, role: TierRole) {
        if self.link.role != role {
            self.link.role = role;
            self.link.tier.set_role(&self.link.id, role);
        }
    }

    /// Offers the segments sealed since the last offer (the leader's job). A new leader offers
    /// from where it last did: the tier skips what the previous leader uploaded.
    pub(super) fn offer_sealed(&mut self, log: &PartitionLog) {
        if !self.leads() || log.sealed_end() <= self.offered_end {
            return;
        }
        let segs = log.sealed_segments_from(self.offered_end.max(self.link.extent.end));
        if let Some(last) = segs.last() {
            self.offered_end = last.next_offset;
            self.link.tier.offer(&self.link.id, segs);
        }
    }

    /// Takes the tier's latest view of what is uploaded.
    pub(super) fn refresh(&mut self) {
        if let Some(e) = self.link.tier.extent(&self.link.id) {
            self.link.extent = e;
        }
    }

    /// The first offset of the partition over both tiers. The remote tier counts only when it
    /// reaches the local log, so a consumer never meets a gap.
    pub(super) fn start(&self, log: &PartitionLog) -> i64 {
        let local = log.local_start_offset();
        let e = self.link.extent;
        if !e.is_empty() && e.end >= local {
            log.log_start_offset().max(e.start).min(local)
        } else {
            local
        }
    }

    /// Local retention, then total retention across tiers; returns whether anything changed.
    pub(super) fn retention(&mut self, log: &mut PartitionLog, now_ms: i64) -> io::Result<bool> {
        if !self.leads() && log.sealed_end() > self.link.extent.end {
            // The leader may have uploaded what this follower holds: read its manifest, so
            // the next check can free local segments.
            self.link.tier.refresh(&self.link.id);
        }
        self.refresh();
        self.offer_sealed(log);
        let freed_local = log.apply_local_retention(now_ms, self.link.extent.end)?;
        let new_start = self.total_retention_start(log, now_ms);
        let moved = match new_start {
            Some(s) if s > self.start(log) => {
                log.delete_records_before(s)?;
                self.delete_remote_before(s);
                true
            }
            _ => {
                // A remote delete that failed earlier is retried until the tier catches up.
                let e = self.link.extent;
                if self.leads() && !e.is_empty() && e.start < log.log_start_offset() {
                    self.delete_remote_before(log.log_start_offset());
                }
                false
            }
        };
        Ok(freed_local > 0 || moved)
    }

    /// Where `retention.ms` / `retention.bytes` put the log start, counting remote segments
    /// and the local ones not uploaded yet as one log.
    fn total_retention_start(&self, log: &PartitionLog, now_ms: i64) -> Option<i64> {
        let cfg = log.config();
        if cfg.retention_ms < 0 && cfg.retention_bytes < 0 {
            return None;
        }
        let start = self.start(log);
        let remote = self.link.tier.segments(&self.link.id);
        let remote_end = remote.last().map_or(start, |s| s.next_offset);
        let local_sealed = log.local_segments();
        let local_sealed_bytes: u64 = local_sealed.iter().map(|s| s.size).sum();
        let active_bytes = log.size_bytes().saturating_sub(local_sealed_bytes);
        let sealed: Vec<RemoteSegment> = remote
            .into_iter()
            .filter(|s| s.next_offset > start)
            .chain(
                local_sealed
                    .into_iter()
                    .filter(|s| s.base_offset >= remote_end),
            )
            .collect();
        let mut total = sealed.iter().map(|s| s.size as i64).sum::<i64>() + active_bytes as i64;
        let mut new_start = None;
        for s in &sealed {
            let expired = cfg.retention_ms >= 0
                && s.max_timestamp >= 0
                && now_ms - s.max_timestamp > cfg.retention_ms;
            let over = cfg.retention_bytes >= 0 && total - s.size as i64 >= cfg.retention_bytes;
            if !(expired || over) {
                break;
            }
            total -= s.size as i64;
            new_start = Some(s.next_offset);
        }
        new_start
    }

    /// Tells the tier that offsets below `offset` are gone (DeleteRecords, retention). The log
    /// start is already persisted locally, so this may finish later or be retried.
    pub(super) fn delete_remote_before(&self, offset: i64) {
        if !self.leads() {
            // A follower trims only its local log; the leader trims the shared tier.
            return;
        }
        let tier = self.link.tier.clone();
        let id = self.link.id.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = tier.delete_before(&id, offset).await {
                tracing::warn!(topic = %id.topic, partition = id.partition, offset, error = %e, "remote delete failed; retried at the next retention check");
            }
        });
    }
}
