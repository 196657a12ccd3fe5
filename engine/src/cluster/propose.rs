//! Proposals: a command goes to the controller leader (this broker's own controller, or the
//! leader's over RPC), and the caller waits until this broker has applied it too.

use std::time::Duration;

use tokio::sync::oneshot;

use super::controller::{Input, ProposeOutcome};
use super::rpc::Kind;
use super::{features, validate, ApplyError, Cluster, Command, ProposeReply};

impl Cluster {
    /// Commits a command through the controller, forwarding it to the leader; returns once
    /// this broker has applied it.
    pub async fn propose(&self, cmd: Command) -> Result<(), ApplyError> {
        // Kafka's default request.timeout.ms: a busy controller (a large topic is many Raft
        // groups to open on every broker) answers late rather than failing a create that then
        // happens anyway.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let unavailable =
            || ApplyError::Other("no controller leader (is a quorum of brokers up?)".into());
        let mut retry = false;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable());
            }
            let first = !std::mem::replace(&mut retry, true);
            let outcome = match self.propose_local(cmd.clone()).await {
                ProposeReply::NotLeader(l) if l != 0 && l != self.node_id() as u64 => {
                    self.forward(l as i32, &cmd).await
                }
                other => other,
            };
            match outcome {
                ProposeReply::Applied(res) => {
                    if let Err(e) = res {
                        // A retry of a create, delete, unmount or mount step whose first
                        // proposal committed (its answer was late or lost) finds its own
                        // effect: that is success.
                        let own_effect = !first
                            && matches!(
                                cmd,
                                Command::CreateTopic(_)
                                    | Command::DeleteTopic { .. }
                                    | Command::Unmount { .. }
                                    | Command::UnmountDone { .. }
                                    | Command::Mount(_)
                                    | Command::MountDone { .. }
                            )
                            && self.applied_here(&cmd);
                        if !own_effect {
                            return Err(e);
                        }
                    }
                    // The leader applied it; wait until this broker has too.
                    while !self.applied_here(&cmd) {
                        if tokio::time::Instant::now() >= deadline {
                            return Err(unavailable());
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    return Ok(());
                }
                ProposeReply::NotLeader(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// [`validate`] for a proposal arriving from a peer (before the controller starts,
    /// nothing is checked: it cannot be proposed anyway).
    pub(super) fn check_proposal(&self, cmd: &Command) -> Result<(), ApplyError> {
        if self.controller.get().is_none() {
            return Ok(());
        }
        validate::command(cmd, &self.controller_brokers())?;
        match self.topics.get() {
            Some(t) => validate::against_table(t, cmd),
            None => Ok(()),
        }
    }

    pub(super) async fn propose_local(&self, cmd: Command) -> ProposeReply {
        let Some(c) = self.controller.get() else {
            return ProposeReply::NotLeader(0);
        };
        let (tx, rx) = oneshot::channel();
        if c.tx.send(Input::Propose(Box::new(cmd), tx)).is_err() {
            return ProposeReply::NotLeader(0);
        }
        match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(ProposeOutcome::Applied(r))) => ProposeReply::Applied(r),
            Ok(Ok(ProposeOutcome::NotLeader(l))) => ProposeReply::NotLeader(l),
            // Lost leadership before the entry committed, or timed out: ask again.
            _ => ProposeReply::NotLeader(0),
        }
    }

    pub(super) async fn forward(&self, leader: i32, cmd: &Command) -> ProposeReply {
        let Some(m) = self.members.get(leader) else {
            return ProposeReply::NotLeader(0);
        };
        let Ok(body) = serde_json::to_vec(cmd) else {
            return ProposeReply::NotLeader(0);
        };
        match self
            .call(
                &m.rpc_addr,
                Kind::Propose,
                &body,
                Kind::ProposeResult,
                Duration::from_secs(6),
            )
            .await
        {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(ProposeReply::NotLeader(0)),
            Err(e) => {
                tracing::debug!(leader, error = %e, "forwarding a proposal failed");
                ProposeReply::NotLeader(0)
            }
        }
    }
    /// Whether this broker has applied `cmd` (its effect is in the topic table, or in the
    /// controller's state).
    pub(super) fn applied_here(&self, cmd: &Command) -> bool {
        let Some(topics) = self.topics.get() else {
            return false;
        };
        match cmd {
            Command::AllocateProducerIds { broker, request } => self
                .controller
                .get()
                .and_then(|c| c.producer_block(*broker))
                .is_some_and(|b| b.request == *request),
            Command::SetBrokerConfig { broker, config } => self
                .controller
                .get()
                .is_some_and(|c| c.broker_configs().scope(*broker) == *config),
            Command::Security(change) => self
                .controller
                .get()
                .is_some_and(|c| security_applied(&c.security(), change)),
            Command::FinalizeFeatures { levels } => self
                .controller
                .get()
                .is_some_and(|c| features::missing(levels, &c.features()).is_empty()),
            // The topic, not just its record: the record is stored (and synced) before the topic
            // with its open partitions becomes visible, and callers go on to use the topic.
            Command::CreateTopic(r) => topics.get(&r.name).is_some_and(|t| t.id == r.id),
            Command::DeleteTopic { name, id } => topics.record(name).is_none_or(|x| x.id != *id),
            Command::Reassign {
                topic,
                id,
                partition,
                target,
            } => topics.record(topic).is_none_or(|r| {
                let p = *partition;
                r.id != *id
                    || match target {
                        Some(t) => {
                            r.targets.get(&p) == Some(t)
                                || r.assignments.get(p.max(0) as usize) == Some(t)
                        }
                        // Cancelled: the target is the assignment again (or already gone).
                        None => r
                            .targets
                            .get(&p)
                            .is_none_or(|t| r.assignments.get(p.max(0) as usize) == Some(t)),
                    }
            }),
            Command::Reassigned {
                topic, partition, ..
            } => topics
                .record(topic)
                .is_none_or(|r| !r.targets.contains_key(partition)),
            Command::Decommission { node } => self.draining.lock().contains(node),
            Command::SetTopicConfig { name, id, config } => topics
                .record(name)
                .is_none_or(|r| r.id != *id || r.config == *config),
            Command::AddPartitions {
                name,
                id,
                from,
                assignments,
            } => {
                let count = from.saturating_add(assignments.len() as i32);
                topics.record(name).is_none_or(|r| {
                    r.id != *id
                        || (r.partitions >= count
                            && topics
                                .get(name)
                                .is_some_and(|t| t.partitions.len() as i32 >= count))
                })
            }
            // Unmount and mount steps: their effect on the topic's record (or its absence).
            Command::Unmount { name, id, .. } => topics
                .record(name)
                .is_none_or(|r| r.id != *id || r.unmounting.is_some()),
            Command::UnmountSealed {
                name,
                id,
                partition,
                ..
            } => topics.record(name).is_none_or(|r| {
                r.id != *id
                    || r.unmounting
                        .as_ref()
                        .is_none_or(|u| u.sealed.contains_key(partition))
            }),
            Command::UnmountOffsets { name, id, from, .. } => topics.record(name).is_none_or(|r| {
                r.id != *id
                    || r.unmounting
                        .as_ref()
                        .is_none_or(|u| from.iter().all(|p| u.offsets_from.contains(p)))
            }),
            Command::UnmountDone { name, id } => topics.record(name).is_none_or(|x| x.id != *id),
            Command::Mount(r) => topics
                .record(&r.name)
                .is_some_and(|x| x.id == r.id && x.incarnation != 0),
            Command::MountRestored { name, id, from } => topics.record(name).is_none_or(|r| {
                r.id != *id
                    || r.mounting
                        .as_ref()
                        .is_none_or(|m| from.iter().all(|p| m.restored.contains(p)))
            }),
            Command::MountDone { name, id } => topics
                .record(name)
                .is_none_or(|r| r.id != *id || r.mounting.is_none()),
        }
    }
}

/// Whether `state` shows a security change's effect: what a proposer waits for (a later change
/// undoing it first is rare, and then the proposer waits until its deadline).
fn security_applied(
    state: &crate::security::state::SecurityState,
    change: &crate::security::state::SecurityChange,
) -> bool {
    use crate::security::state::SecurityChange as C;
    match change {
        C::UpsertScram {
            user,
            mechanism,
            credential,
        } => state.credential(user, *mechanism) == Some(credential),
        C::DeleteScram { user, mechanism } => state.credential(user, *mechanism).is_none(),
        C::CreateAcls(bs) => bs.iter().all(|b| state.acls.bindings.contains(b)),
        C::DeleteAcls(fs) => !state
            .acls
            .bindings
            .iter()
            .any(|b| fs.iter().any(|f| f.matches(b))),
        C::AlterQuota { entity, changes } => {
            let set = state.quotas.set.get(entity);
            changes
                .iter()
                .all(|(k, v)| set.and_then(|m| m.get(k)).copied() == *v)
        }
    }
}
