//! Partition placement: replicas spread over brokers, preferred leaders balanced.

/// Assigns `replication` replicas to each of `partitions` partitions over `brokers` (sorted,
/// deduplicated). Partition `p`'s replicas are `replication` consecutive brokers starting at
/// `(start + p) % n`, so both replicas and first replicas (the preferred leaders) are spread
/// evenly; `start` (e.g. from the topic's name) keeps small topics off the same first broker.
pub fn assign(brokers: &[i32], partitions: i32, replication: i16, start: usize) -> Vec<Vec<i32>> {
    let mut b = brokers.to_vec();
    b.sort_unstable();
    b.dedup();
    let n = b.len();
    if n == 0 {
        return vec![];
    }
    let r = (replication.max(1) as usize).min(n);
    (0..partitions.max(0) as usize)
        .map(|p| (0..r).map(|i| b[(start + p + i) % n]).collect())
        .collect()
}

/// A stable start offset for a topic's placement.
pub fn start_for(topic: &str) -> usize {
    topic
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619)) as usize
}

/// The replicas of a partition with `leaving` replaced (in its position, so a preferred
/// leader is replaced by the new one) by the broker of `brokers` that is not yet a replica
/// and holds the fewest replicas in `load`; `None` if every broker already is one.
pub fn replace(
    brokers: &[i32],
    replicas: &[i32],
    leaving: i32,
    load: &std::collections::BTreeMap<i32, usize>,
) -> Option<Vec<i32>> {
    let new = brokers
        .iter()
        .filter(|b| **b != leaving && !replicas.contains(b))
        .min_by_key(|b| (load.get(b).copied().unwrap_or(0), **b))?;
    Some(
        replicas
            .iter()
            .map(|&r| if r == leaving { *new } else { r })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_distinct_and_leaders_balanced() {
        let a = assign(&[3, 1, 2], 6, 3, 0);
        assert_eq!(a.len(), 6);
        for r in &a {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
        }
        let mut leaders = [0; 4];
        for r in &a {
            leaders[r[0] as usize] += 1;
        }
        assert_eq!(&leaders[1..], &[2, 2, 2]);
        assert_eq!(
            assign(&[1, 2], 1, 3, 0),
            vec![vec![1, 2]],
            "capped at the broker count"
        );
    }
}

#[cfg(test)]
mod replace_tests {
    use super::*;

    #[test]
    fn replace_picks_the_least_loaded_other_broker_in_place() {
        let load = [(1, 5), (2, 5), (3, 5), (4, 1), (5, 0)]
            .into_iter()
            .collect();
        assert_eq!(
            replace(&[1, 2, 3, 4, 5], &[1, 2, 3], 1, &load),
            Some(vec![5, 2, 3])
        );
        assert_eq!(
            replace(&[1, 2, 3, 4], &[4, 2, 3], 2, &load),
            Some(vec![4, 1, 3])
        );
        assert_eq!(replace(&[1, 2, 3], &[1, 2, 3], 1, &load), None);
    }
}
