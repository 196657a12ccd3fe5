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

/// Rack-aware assignment (Kafka's): when every broker has a rack, a partition's replicas go to
/// distinct racks as far as there are racks, and first replicas (preferred leaders) still go
/// round the brokers evenly. `brokers` is `(node id, rack)`; if any broker has no rack this is
/// [`assign`].
///
/// The brokers are ordered rack-alternated (a1, b1, c1, a2, b2, ...), partition `p`'s first
/// replica is the `(start + p)`-th of that list, and each further replica is the next broker in
/// the list whose rack the partition does not use yet (any unused broker once every rack is).
pub fn assign_racked(
    brokers: &[(i32, Option<String>)],
    partitions: i32,
    replication: i16,
    start: usize,
) -> Vec<Vec<i32>> {
    let ids: Vec<i32> = brokers.iter().map(|(id, _)| *id).collect();
    if brokers.is_empty() || brokers.iter().any(|(_, r)| r.is_none()) {
        return assign(&ids, partitions, replication, start);
    }
    let mut by_rack: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (id, rack) in brokers {
        let v = by_rack.entry(rack.as_deref().unwrap_or("")).or_default();
        if !v.contains(id) {
            v.push(*id);
        }
    }
    for v in by_rack.values_mut() {
        v.sort_unstable();
    }
    let rack_of: std::collections::HashMap<i32, &str> = by_rack
        .iter()
        .flat_map(|(r, ids)| ids.iter().map(move |id| (*id, *r)))
        .collect();
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let list: Vec<i32> = (0..deepest)
        .flat_map(|i| by_rack.values().filter_map(move |v| v.get(i).copied()))
        .collect();
    let n = list.len();
    let r = (replication.max(1) as usize).min(n);
    (0..partitions.max(0) as usize)
        .map(|p| {
            let first = (start + p) % n;
            let mut chosen: Vec<i32> = vec![list[first]];
            let mut racks: Vec<&str> = vec![rack_of[&list[first]]];
            // First pass: only new racks; second: any broker not chosen yet.
            for new_rack_only in [true, false] {
                for k in 1..n {
                    if chosen.len() == r {
                        break;
                    }
                    let b = list[(first + k) % n];
                    let rack = rack_of[&b];
                    if chosen.contains(&b) || (new_rack_only && racks.contains(&rack)) {
                        continue;
                    }
                    chosen.push(b);
                    racks.push(rack);
                }
            }
            chosen
        })
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

    #[test]
    fn racked_replicas_span_racks_and_leaders_stay_balanced() {
        let rack = |r: &str| Some(r.to_string());
        // Six brokers, racks of unequal sizes given in id order: a a a b b c.
        let brokers = vec![
            (1, rack("a")),
            (2, rack("a")),
            (3, rack("a")),
            (4, rack("b")),
            (5, rack("b")),
            (6, rack("c")),
        ];
        let rack_of = |id: i32| brokers.iter().find(|b| b.0 == id).unwrap().1.clone();
        for start in 0..6 {
            let a = assign_racked(&brokers, 12, 3, start);
            let mut leaders = [0; 7];
            for r in &a {
                let mut racks: Vec<_> = r.iter().map(|&id| rack_of(id)).collect();
                racks.sort();
                racks.dedup();
                assert_eq!(racks.len(), 3, "{r:?} spans every rack");
                leaders[r[0] as usize] += 1;
            }
            assert_eq!(&leaders[1..], &[2, 2, 2, 2, 2, 2], "start {start}");
        }
        // More replicas than racks: distinct brokers, every rack used.
        for r in assign_racked(&brokers, 6, 4, 0) {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 4);
        }
        // A broker without a rack: plain placement.
        let mixed = vec![(1, rack("a")), (2, None), (3, rack("b"))];
        assert_eq!(assign_racked(&mixed, 3, 2, 0), assign(&[1, 2, 3], 3, 2, 0));
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
