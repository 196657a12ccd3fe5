//! The broker side of the controller: brings this broker's topics and partition replicas in
//! line with the cluster metadata the controller applied ([`crate::cluster::host::Reconciler`]),
//! as Redpanda's controller backend does. The controller only applies commands to its state;
//! opening, stopping, moving and deleting partitions happens here.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use crate::broker::{Broker, BrokerError};
use crate::cluster::host::{ReconcileError, ReconcileFuture, Reconciler};
use crate::cluster::metadata_state::MetadataState;
use crate::dynamic_config::DynamicConfigs;
use crate::partition::Cmd;
use crate::security::state::SecurityState;
use crate::topics::{Topic, TopicRecord};

/// The broker's [`Reconciler`]; weak, as the controller's task outlives no broker.
pub struct BrokerReconciler(pub Weak<Broker>);

impl BrokerReconciler {
    fn broker(&self) -> Result<Arc<Broker>, ReconcileError> {
        self.0
            .upgrade()
            .ok_or_else(|| ReconcileError("the broker is stopping".into()))
    }
}

impl Reconciler for BrokerReconciler {
    fn reconcile_all<'a>(&'a self, state: &'a MetadataState) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let b = self.broker()?;
            reconcile(&b, state)
                .await
                .map_err(|e| ReconcileError(e.to_string()))
        })
    }

    fn reconcile_topic<'a>(
        &'a self,
        name: &'a str,
        state: &'a MetadataState,
    ) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let b = self.broker()?;
            reconcile_topic(&b, name, state)
                .await
                .map_err(|e| ReconcileError(e.to_string()))
        })
    }

    fn security<'a>(&'a self, state: &'a SecurityState) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let b = self.broker()?;
            b.apply_security(state)
                .await
                .map_err(|e| ReconcileError(e.to_string()))
        })
    }

    fn broker_configs<'a>(&'a self, configs: &'a DynamicConfigs) -> ReconcileFuture<'a> {
        Box::pin(async move {
            let b = self.broker()?;
            b.apply_broker_configs(configs)
                .await
                .map_err(|e| ReconcileError(e.to_string()))
        })
    }
}

/// Brings this broker's topic table to `state`: topics it lacks are created, topics `state`
/// lacks (or has under another id) were deleted and go with their files, and records that
/// differ are synced partition by partition.
async fn reconcile(b: &Broker, state: &MetadataState) -> Result<(), BrokerError> {
    // The topic defaults first: the topics below resolve their configs against them.
    b.apply_broker_configs(&state.broker_configs).await?;
    b.apply_security(&state.security).await?;
    let mut names: BTreeSet<String> = b.topics.records().into_iter().map(|r| r.name).collect();
    names.extend(state.topics.keys().cloned());
    let mut first_error = None;
    for name in names {
        // One topic failing (a disk error creating its files) does not hold back the others.
        if let Err(e) = reconcile_topic(b, &name, state).await {
            tracing::warn!(topic = %name, error = %e, "cannot bring a topic in line with the cluster metadata; will retry");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Brings one topic on this broker to its record in `state` (absent: it does not exist).
async fn reconcile_topic(b: &Broker, name: &str, state: &MetadataState) -> Result<(), BrokerError> {
    let wanted = state.topics.get(name);
    let local = b.topics.record(name);
    if let Some(l) = &local {
        // A single broker's topic this broker adopted is not the cluster's yet: kept until the
        // controller has it (`adopt`), never deleted for being absent.
        if l.adopted && wanted.is_none_or(|w| w.id != l.id) {
            return match wanted {
                None => Ok(()),
                Some(w) => Err(BrokerError::Controller(format!(
                    "topic '{name}' of this broker's single-broker data ({}) conflicts with the cluster's ({}); rename or delete one",
                    l.id, w.id
                ))),
            };
        }
        if crate::cluster::unmount::replaced(l, wanted) {
            // An unmounted topic (or an older incarnation of a mounted one) goes without its
            // remote data, which the mount reads.
            let keep_remote = crate::cluster::unmount::keeps_remote(state, l);
            match b
                .delete_topic_local(name, keep_remote, wanted.is_none())
                .await
            {
                Ok(()) | Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let Some(w) = wanted else { return Ok(()) };
    let Some(l) = b.topics.record(name) else {
        return b.create_topic_local(w.clone()).await.map(|_| ());
    };
    if l == *w {
        return Ok(());
    }
    if crate::cluster::unmount::replaced(&l, Some(w)) {
        // Still here after the delete above: not served (being unmounted), so not deleted.
        return Err(BrokerError::Controller(format!(
            "topic '{name}' here is {} but the cluster's is {}; it is not served, so it was not replaced",
            l.id, w.id
        )));
    }
    // Configs first (new partitions open with them), then the partitions added, then the
    // replicas of every partition that moved, persisting the whole record.
    if l.config != w.config {
        b.set_topic_config_local(name, w.config.clone(), w.changed_at)
            .await?;
    }
    if l.partitions < w.partitions {
        let new = w
            .assignments
            .get(l.partitions.max(0) as usize..)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        b.add_partitions_local(name, w.partitions, new, w.changed_at)
            .await?;
    }
    resync(b, w.clone()).await
}

/// Brings a topic on this broker in line with `rec`, a newer record of it: each partition
/// whose replicas or move changed is synced, and the record is persisted.
async fn resync(b: &Broker, rec: TopicRecord) -> Result<(), BrokerError> {
    let _guard = b.topics.change_lock.lock().await;
    let old = b.topics.record(&rec.name);
    let moved = |p: i32| {
        let Some(old) = &old else { return true };
        let i = p as usize;
        old.assignments.get(i) != rec.assignments.get(i)
            || old.targets.get(&p) != rec.targets.get(&p)
            || old.moving.get(&p) != rec.moving.get(&p)
    };
    let changed: Vec<i32> = (0..rec.partitions).filter(|&p| moved(p)).collect();
    if changed.is_empty() {
        let current = b
            .topics
            .get_internal(&rec.name)
            .ok_or_else(|| BrokerError::UnknownTopic(rec.name.clone()))?;
        let topic = Topic::new(&rec, current.resolved.clone(), current.partitions.clone());
        b.topics.insert(rec, topic)?;
        return Ok(());
    }
    for p in changed {
        sync(b, rec.clone(), p).await?;
    }
    Ok(())
}

/// Persists `rec` and brings partition `p` on this broker in line with it: starts a replica
/// this broker gains, stops (and deletes) one it lost, or tells the running one its goal.
async fn sync(b: &Broker, rec: TopicRecord, p: i32) -> Result<(), BrokerError> {
    let current = b
        .topics
        .get_internal(&rec.name)
        .ok_or_else(|| BrokerError::UnknownTopic(rec.name.clone()))?;
    let mut partitions = current.partitions.clone();
    let i = usize::try_from(p).unwrap_or(usize::MAX);
    let (Some(handle), Some(assigned)) = (partitions.get(i), rec.assignments.get(i)) else {
        return Err(BrokerError::Controller(format!(
            "topic '{}' has no partition {p} here",
            rec.name
        )));
    };
    let assigned = assigned.clone();
    let has = handle.raft_leader.is_some();
    let wants = rec.replica_on(p, b.node_id());
    if has != wants {
        // Stop what runs there (a placeholder for a non-replica, or the replica leaving) and
        // delete its files, then open what this broker now holds.
        partitions[i].stop(true, false).await;
        if let Ok(dir) = b.raft_dir(&rec, p) {
            let _ = std::fs::remove_dir_all(dir);
        }
        partitions[i] = b.open_partition(&rec, p, &current.resolved).await?;
        tracing::info!(topic = %rec.name, partition = p, replica = wants, "partition replica {}", if wants { "started" } else { "removed" });
    } else if has {
        let target = rec.targets.get(&p);
        let preferred = crate::broker::leader_preference::preferred(b, &rec, p, &current.resolved);
        b.leaders_told.note(&rec.name, p, preferred);
        let _ = partitions[i].tx.send(Cmd::Goal {
            replicas: target
                .unwrap_or(&assigned)
                .iter()
                .map(|&r| r as u64)
                .collect(),
            reassigning: target.is_some(),
            adding: crate::broker::adding_replica(target, &assigned, b.node_id()),
            preferred: preferred.max(0) as u64,
        });
    }
    // A reassignment changes replicas only: the record's configs are the topic's.
    let topic = Topic::new(&rec, current.resolved.clone(), partitions);
    b.topics.insert(rec, topic)?;
    Ok(())
}
