//! Which of a batch of rounds one commit lands, and the offsets map it records.
//!
//! A round fits the table when, for every partition it advances, the table's next offset is
//! still the one the round started from. A partition is advanced by one round per commit:
//! two rounds that claim it (an old and a new partition leader during a failover) started
//! from the same offset, so only the first can be right; the second is superseded.

use std::collections::BTreeSet;

use crate::offsets::Offsets;

/// What one commit of a batch does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes of the rounds it lands, in order.
    pub accepted: Vec<usize>,
    /// The table's whole offsets map after it: `current` advanced by every accepted round.
    pub next: Offsets,
}

/// Plans a commit on a table that covers `current`, of rounds given as their
/// `(partition, next offset they started from, next offset after them)` claims.
pub fn plan<'a>(
    current: &Offsets,
    rounds: impl IntoIterator<Item = &'a [(i32, Option<i64>, i64)]>,
) -> Plan {
    let mut next = current.clone();
    let mut claimed = BTreeSet::new();
    let mut accepted = Vec::new();
    for (i, advance) in rounds.into_iter().enumerate() {
        let fits = advance
            .iter()
            .all(|&(p, from, _)| current.get(&p).copied() == from && !claimed.contains(&p));
        if !fits {
            continue;
        }
        for &(p, _, to) in advance {
            claimed.insert(p);
            next.insert(p, to);
        }
        accepted.push(i);
    }
    Plan { accepted, next }
}

/// Why a round cannot be planned at all (bad input from a sender, never a race).
pub fn check(advance: &[(i32, Option<i64>, i64)]) -> Result<(), String> {
    if advance.is_empty() {
        return Err("the round advances no partition".into());
    }
    let mut seen = BTreeSet::new();
    for &(p, from, to) in advance {
        if p < 0 {
            return Err(format!("partition {p} is negative"));
        }
        if !seen.insert(p) {
            return Err(format!("partition {p} appears twice"));
        }
        if from.is_some_and(|f| f < 0) || to < from.unwrap_or(0) {
            return Err(format!(
                "partition {p}: the round goes from {from:?} back to {to}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(v: &[(i32, i64)]) -> Offsets {
        v.iter().copied().collect()
    }

    #[test]
    fn rounds_of_distinct_partitions_land_together_with_the_merged_map() {
        let current = offsets(&[(0, 10), (1, 20), (2, 5)]);
        let a = [(0, Some(10), 15)];
        let b = [(1, Some(20), 30), (3, None, 4)];
        let p = plan(&current, [&a[..], &b[..]]);
        assert_eq!(p.accepted, [0, 1]);
        assert_eq!(p.next, offsets(&[(0, 15), (1, 30), (2, 5), (3, 4)]));
    }

    #[test]
    fn a_round_from_a_stale_offset_is_superseded_and_the_others_still_land() {
        let current = offsets(&[(0, 10), (1, 20)]);
        // Started from 8: offsets 8-9 are in the table already (another writer's round).
        let stale = [(0, Some(8), 12)];
        // Believes the table had nothing for partition 1; it has 20.
        let unaware = [(1, None, 25)];
        let good = [(1, Some(20), 25)];
        let p = plan(&current, [&stale[..], &unaware[..], &good[..]]);
        assert_eq!(p.accepted, [2]);
        assert_eq!(p.next, offsets(&[(0, 10), (1, 25)]));
    }

    #[test]
    fn a_partition_is_advanced_by_one_round_per_commit() {
        // The old and the new leader of partition 0 both translated from offset 10.
        let current = offsets(&[(0, 10)]);
        let old = [(0, Some(10), 14)];
        let new = [(0, Some(10), 16), (1, None, 3)];
        let p = plan(&current, [&old[..], &new[..]]);
        assert_eq!(p.accepted, [0], "the second claim loses as a whole");
        assert_eq!(p.next, offsets(&[(0, 14)]));
        // Nor does a round that starts where another of the same batch ends chain onto it:
        // it was computed from a table that never held that offset.
        let next = [(0, Some(14), 20)];
        assert_eq!(plan(&current, [&old[..], &next[..]]).accepted, [0]);
    }

    #[test]
    fn nothing_fits_nothing_lands() {
        let current = offsets(&[(0, 10)]);
        let p = plan(&current, [&[(0, Some(9), 10)][..]]);
        assert!(p.accepted.is_empty());
        assert_eq!(p.next, current);
    }

    #[test]
    fn malformed_rounds_are_refused() {
        assert!(check(&[]).is_err());
        assert!(check(&[(0, None, 5), (0, Some(5), 6)]).is_err());
        assert!(check(&[(-1, None, 5)]).is_err());
        assert!(check(&[(0, Some(7), 5)]).is_err());
        assert!(check(&[(0, Some(-3), 5)]).is_err());
        assert!(check(&[(0, None, 0), (2, Some(7), 7), (1, Some(3), 9)]).is_ok());
    }
}
