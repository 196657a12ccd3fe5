//! Feature levels, as Kafka's (KIP-584): what a cluster may rely on only once every broker
//! understands it.
//!
//! Each broker announces the features it supports (with the highest level of each) in its
//! gossip hello. The controller leader finalizes a level once every broker it knows of, live or
//! not, supports it, through a command in its log; from then on entries that need it may be
//! proposed, and a broker that lacks it is refused (its hello) rather than misreading them.
//! During a rolling upgrade the new behaviour therefore starts only after the last broker is
//! upgraded, and a previous release never meets an entry it cannot decode.

use std::collections::BTreeMap;

/// Feature name to level.
pub type Levels = BTreeMap<String, i16>;

/// Producer ids come from the controller in blocks (KIP-730), unique cluster-wide.
pub const PRODUCER_ID_BLOCKS: &str = "icestream.producer.id.blocks";
/// Dynamic broker configs through the controller (KIP-226).
pub const DYNAMIC_BROKER_CONFIGS: &str = "icestream.dynamic.broker.configs";

/// Users, ACLs and quotas through the controller (`Command::Security`).
pub const SECURITY: &str = "icestream.security";

/// Unmount and mount in a cluster: controller commands, and a Seal entry in partition logs
/// that an earlier release would skip.
pub const CLUSTER_UNMOUNT: &str = "icestream.cluster.unmount";

/// Partition leaders assign offsets, leader epochs and LogAppendTime, and check producer
/// sequences, when they propose a produce; replicas append the entry's batches as they are
/// (an earlier release would assign their offsets again).
pub const ASSIGNED_ENTRIES: &str = "icestream.raft.assigned.entries";

/// Kafka's own feature (KIP-890): level 2 is transaction protocol v2, where partition leaders
/// add partitions to transactions and every EndTxn bumps the producer epoch; Java clients 4.x
/// speak it once the cluster finalizes it. Its coordinator records (`txn::store` version 1)
/// are written only then, so a broker of an earlier release never meets one.
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// What this build supports: each feature with its highest level.
pub fn supported() -> Levels {
    [
        (PRODUCER_ID_BLOCKS.to_string(), 1),
        (DYNAMIC_BROKER_CONFIGS.to_string(), 1),
        (CLUSTER_UNMOUNT.to_string(), 1),
        (ASSIGNED_ENTRIES.to_string(), 1),
        (TRANSACTION_VERSION.to_string(), 2),
        (SECURITY.to_string(), 1),
    ]
    .into()
}

/// The lowest level of a supported feature: 0 for `transaction.version` (as Kafka's), 1 for
/// the others.
pub fn min_level(name: &str) -> i16 {
    if name == TRANSACTION_VERSION {
        0
    } else {
        1
    }
}

/// What a single node finalizes: everything it supports (it is the whole cluster).
pub fn finalized_alone() -> Levels {
    supported()
}

/// The levels to finalize next: for each feature every broker in `brokers` supports, the
/// highest level they all do, where that is above the finalized one. Nothing while `brokers`
/// is empty.
pub fn to_finalize<'a>(
    finalized: &Levels,
    brokers: impl IntoIterator<Item = &'a Levels>,
) -> Levels {
    let mut common: Option<Levels> = None;
    for b in brokers {
        common = Some(match common {
            None => b.clone(),
            Some(c) => c
                .into_iter()
                .filter_map(|(name, level)| b.get(&name).map(|l| (name, level.min(*l))))
                .collect(),
        });
    }
    common
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, level)| finalized.get(name).is_none_or(|f| level > f))
        .collect()
}

/// The finalized features (with their levels) that `supported` lacks.
pub fn missing(finalized: &Levels, supported: &Levels) -> Vec<String> {
    finalized
        .iter()
        .filter(|(name, level)| supported.get(*name).is_none_or(|s| s < level))
        .map(|(name, level)| format!("{name}={level}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(pairs: &[(&str, i16)]) -> Levels {
        pairs.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    #[test]
    fn a_level_is_finalized_only_when_every_broker_supports_it() {
        let new = levels(&[("a", 2), ("b", 1)]);
        let newer = levels(&[("a", 3), ("b", 1), ("c", 1)]);
        let old = Levels::new();
        let none = Levels::new();
        // A broker of the previous release (no features) holds everything back.
        assert!(to_finalize(&none, [&new, &newer, &old]).is_empty());
        // The lowest common level; features only some support wait.
        assert_eq!(
            to_finalize(&none, [&new, &newer]),
            levels(&[("a", 2), ("b", 1)])
        );
        // Nothing again once finalized; a higher common level later is finalized then.
        let done = levels(&[("a", 2), ("b", 1)]);
        assert!(to_finalize(&done, [&new, &newer]).is_empty());
        assert_eq!(to_finalize(&done, [&newer]), levels(&[("a", 3), ("c", 1)]));
        assert!(to_finalize(&none, []).is_empty());
    }

    #[test]
    fn a_broker_lacking_a_finalized_level_is_named() {
        let finalized = levels(&[("a", 2), ("b", 1)]);
        assert_eq!(
            missing(&finalized, &levels(&[("a", 1)])),
            vec!["a=2", "b=1"]
        );
        assert!(missing(&finalized, &levels(&[("a", 2), ("b", 3)])).is_empty());
    }
}
