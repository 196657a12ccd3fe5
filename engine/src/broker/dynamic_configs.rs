//! Dynamic broker configs on this broker (see `crate::dynamic_config`): the topic defaults in
//! force, how they change, and the copy kept in `<data>/meta/broker-configs.json`.
//!
//! In a cluster that file is a cache of the controller's state, read at start so that no
//! partition applies the start-up defaults (a shorter retention, say) in the seconds before
//! the controller's state reaches this broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Broker, BrokerError};
use crate::config::{ClusterDefaults, InvalidConfig};
use crate::dynamic_config::{self, DynamicConfigs, Overrides};
use crate::partition::Cmd;
use crate::topics::Topic;

/// The dynamic configs and the topic defaults they make with the start-up ones.
pub(crate) struct InForce {
    configs: DynamicConfigs,
    defaults: Arc<ClusterDefaults>,
}

fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("broker-configs.json")
}

/// Reads the dynamic configs last in force (none when the file is absent).
pub(crate) fn load(
    data_dir: &Path,
    node: i32,
    base: &ClusterDefaults,
) -> Result<InForce, std::io::Error> {
    let path = file(data_dir);
    let configs = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice::<DynamicConfigs>(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DynamicConfigs::default(),
        Err(e) => return Err(e),
    };
    let defaults = Arc::new(configs.effective(node, base));
    Ok(InForce { configs, defaults })
}

impl Broker {
    /// The topic defaults in force: the start-up ones with the dynamic ones over them.
    pub fn defaults(&self) -> Arc<ClusterDefaults> {
        self.dynamic.read().defaults.clone()
    }

    /// The dynamic broker configs in force.
    pub fn dynamic_configs(&self) -> DynamicConfigs {
        self.dynamic.read().configs.clone()
    }

    /// Replaces the dynamic configs of one broker (`Some(id)`) or of all (`None`): through the
    /// controller in a cluster, on a single broker here.
    pub async fn set_broker_config(
        &self,
        scope: Option<i32>,
        config: Overrides,
    ) -> Result<(), BrokerError> {
        dynamic_config::validate(&config)?;
        match &self.cluster {
            Some(c) => {
                use crate::cluster::features::DYNAMIC_BROKER_CONFIGS;
                if c.finalized_features()
                    .get(DYNAMIC_BROKER_CONFIGS)
                    .is_none_or(|l| *l < 1)
                {
                    // Proposed now, brokers of the previous release would not understand it.
                    return Err(InvalidConfig(format!(
                        "dynamic broker configs need every broker of the cluster on this release (feature {DYNAMIC_BROKER_CONFIGS} is not finalized yet)"
                    ))
                    .into());
                }
                if let Some(id) = scope {
                    if c.members.get(id).is_none() {
                        return Err(
                            InvalidConfig(format!("broker {id} is not in this cluster")).into()
                        );
                    }
                }
                let cmd = crate::cluster::Command::SetBrokerConfig {
                    broker: scope,
                    config,
                };
                Ok(c.propose(cmd).await?)
            }
            None => {
                if scope.is_some_and(|id| id != self.node_id()) {
                    return Err(InvalidConfig(format!(
                        "broker {} is not this broker ({})",
                        scope.unwrap_or_default(),
                        self.node_id()
                    ))
                    .into());
                }
                let mut next = self.dynamic_configs();
                next.set_scope(scope, config);
                self.apply_broker_configs(&next).await
            }
        }
    }

    /// Sets the reassignment throttles from the dynamic configs in force.
    pub(crate) fn apply_throttles(&self) {
        let configs = self.dynamic_configs();
        let rate = |name| {
            configs
                .lookup(self.node_id(), name)
                .and_then(|(v, _)| v.parse::<u64>().ok())
                .filter(|r| *r > 0 && *r < i64::MAX as u64)
        };
        self.throttles
            .leader
            .set_rate(rate(dynamic_config::LEADER_THROTTLE));
        self.throttles
            .follower
            .set_rate(rate(dynamic_config::FOLLOWER_THROTTLE));
    }

    /// Makes `configs` the dynamic configs in force: stored first, then every topic whose
    /// resolved config changes tells its partitions (retention, segment size and the rest apply
    /// from their next check).
    pub(crate) async fn apply_broker_configs(
        &self,
        configs: &DynamicConfigs,
    ) -> Result<(), BrokerError> {
        let _guard = self.topics.change_lock.lock().await;
        if self.dynamic.read().configs == *configs {
            return Ok(());
        }
        let body = serde_json::to_vec_pretty(configs).map_err(std::io::Error::other)?;
        crate::log::files::write_atomic(&file(&self.config.data_dir), &body)?;
        let defaults = Arc::new(configs.effective(self.node_id(), &self.config.defaults));
        *self.dynamic.write() = InForce {
            configs: configs.clone(),
            defaults: defaults.clone(),
        };
        tracing::info!(cluster = ?configs.cluster, this_broker = ?configs.brokers.get(&self.node_id()), "dynamic broker configs in force");
        self.apply_throttles();
        for topic in self.topics.all() {
            let Some(rec) = self.topics.record(&topic.name) else {
                continue;
            };
            let resolved = rec.config.resolve(&defaults);
            if resolved == topic.resolved {
                continue;
            }
            if let Err(e) = super::check_config_change(&rec.name, &topic.resolved, &resolved) {
                tracing::warn!(topic = %rec.name, error = %e, "the new broker defaults leave this topic as it was");
                continue;
            }
            for handle in &topic.partitions {
                let _ = handle.tx.send(Cmd::Reconfigure(Box::new(resolved.clone())));
            }
            self.topics
                .publish(Topic::new(&rec, resolved, topic.partitions.clone()));
        }
        Ok(())
    }
}
