//! In a cluster, where writes (and a non-replica's reads) go: the registry of the `_schemas`
//! leader, which becomes the writer once it has read the topic to the end; and the tailer
//! through which every broker's registry follows its replica of `_schemas`.

use super::record::noop_record;
use super::{Registry, RegistryError};
use crate::store;

/// Where a write goes, in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRoute {
    /// This broker's registry is the writer (always, on a single node).
    Local,
    /// The registry of the `_schemas` leader, at this base URL.
    Forward(String),
}

/// How long a write waits for `_schemas` to have a leader before answering 50004.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a write waits for the local replica to apply it (or for a new writer to catch up).
pub const APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Registry {
    /// Whether this broker leads `_schemas` in the term its registry caught up in.
    pub(super) fn still_writer(&self) -> bool {
        let Some(t) = self.host.topics().get(store::SCHEMAS_TOPIC) else {
            return false;
        };
        let (leader, term) = self.host.partition_leader_epoch(&t, 0);
        leader == self.host.node_id() && *self.writer_term.lock() == Some(term)
    }

    /// In a cluster: the offset of `_schemas` up to which this registry has applied records.
    pub fn applied(&self) -> Option<i64> {
        self.applied.as_ref().map(|a| *a.borrow())
    }

    /// Waits until this registry has applied `_schemas` up to `end` (true), or `timeout`.
    pub async fn wait_applied(&self, end: i64, timeout: std::time::Duration) -> bool {
        let Some(a) = &self.applied else {
            return true;
        };
        let mut rx = a.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|&applied| applied >= end))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether this broker holds a replica of `_schemas` (so its state is complete). In a
    /// cluster of more than three brokers some do not; their registry forwards reads too.
    pub fn holds_replica(&self) -> bool {
        let Some(t) = self.host.topics().get(store::SCHEMAS_TOPIC) else {
            return true;
        };
        t.assignments
            .first()
            .is_none_or(|r| r.contains(&self.host.node_id()))
    }

    /// Where a read goes on a broker without a replica of `_schemas`: the leader's registry.
    pub fn route_read(&self) -> Result<WriteRoute, RegistryError> {
        let (Some(cluster), Some(t)) = (&self.peers, self.host.topics().get(store::SCHEMAS_TOPIC))
        else {
            return Ok(WriteRoute::Local);
        };
        forward_to(cluster, self.host.partition_leader(&t, 0))
    }

    /// Where a write (register, delete, config, mode) must go. On the `_schemas` leader the
    /// first write of a term waits until the registry has read the topic to the end: it
    /// commits a NOOP record (Confluent's own barrier) and waits until it is applied here,
    /// so ids are only assigned from a complete state.
    pub async fn route_write(&self) -> Result<WriteRoute, RegistryError> {
        let Some(cluster) = &self.peers else {
            return Ok(WriteRoute::Local);
        };
        let b = &*self.host;
        store::partition(b).await?;
        let t = b.topics().get(store::SCHEMAS_TOPIC).ok_or_else(|| {
            RegistryError::UnknownLeader(format!("{} is absent", store::SCHEMAS_TOPIC))
        })?;
        // A new topic, or a failover: wait a little for an election rather than fail.
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let (leader, term) = loop {
            let (leader, term) = b.partition_leader_epoch(&t, 0);
            if leader >= 0 || tokio::time::Instant::now() >= deadline {
                break (leader, term);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        if leader < 0 {
            return Err(RegistryError::UnknownLeader(format!(
                "{} has no leader",
                store::SCHEMAS_TOPIC
            )));
        }
        if leader != b.node_id() {
            return forward_to(cluster, leader);
        }
        if *self.writer_term.lock() == Some(term) {
            return Ok(WriteRoute::Local);
        }
        let _w = self.write.lock().await;
        if *self.writer_term.lock() != Some(term) {
            let end = store::append(b, &[noop_record()]).await?;
            if !self.wait_applied(end, APPLY_TIMEOUT).await {
                return Err(RegistryError::Timeout(format!(
                    "reading {} to the end as its new leader",
                    store::SCHEMAS_TOPIC
                )));
            }
            tracing::info!(term, "this broker's schema registry is now the writer");
            *self.writer_term.lock() = Some(term);
        }
        Ok(WriteRoute::Local)
    }
}

/// Applies `_schemas` records to the registry as this broker's replica commits them (cluster
/// only). Stops when the registry is dropped.
pub(super) async fn tail(registry: std::sync::Weak<Registry>) {
    let mut next = 0i64;
    loop {
        let Some(r) = registry.upgrade() else { return };
        let Some(p) = r
            .host
            .topics()
            .get(store::SCHEMAS_TOPIC)
            .map(|t| t.partitions[0].clone())
        else {
            drop(r);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let mut marks = p.marks.clone();
        let m = *marks.borrow_and_update();
        // Compaction may have removed what was never read (a broker far behind).
        next = next.max(m.log_start);
        if next < m.high {
            let read = engine::internal_topic::read_range(&p, next, m.high, |rec| {
                if let Some(key) = rec.key {
                    r.state.write().apply(&key, rec.value.as_deref());
                }
            })
            .await;
            match read {
                Ok(n) if n > next => next = n,
                // Nothing readable yet below the watermark: wait for the next change.
                Ok(_) => {
                    drop(r);
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        marks.changed(),
                    )
                    .await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read {}; retrying", store::SCHEMAS_TOPIC);
                    drop(r);
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            }
            if let Some(a) = &r.applied {
                a.send_replace(next);
            }
            continue;
        }
        drop(r);
        // Woken by the next commit; the timeout notices a dropped registry.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), marks.changed()).await;
    }
}

/// Forwarding to the registry of broker `leader` (the `_schemas` leader), at the URL it gossips.
fn forward_to(
    cluster: &engine::cluster::Cluster,
    leader: i32,
) -> Result<WriteRoute, RegistryError> {
    cluster
        .members
        .get(leader)
        .and_then(|m| m.schema_registry_url)
        .map(WriteRoute::Forward)
        .ok_or_else(|| {
            RegistryError::UnknownLeader(format!(
                "the schema registry of broker {leader} (the {} leader) is not known yet",
                store::SCHEMAS_TOPIC
            ))
        })
}
