//! KIP-848 server-side assignors: each maps the members' subscriptions (topic id and partition
//! count per member) to a target assignment; the consumer group ([`super::consumer`]) picks
//! one by name (`group.remote.assignor`).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A partition, by topic id.
pub type Tp = (Uuid, i32);

/// The sticky uniform assignor: partitions stay with their previous target owner while it is
/// subscribed, the rest go to the least loaded subscriber, then partitions move from the most
/// to the least loaded subscribers until no move evens the counts further.
pub fn assign_uniform(
    subs: &BTreeMap<String, Vec<(Uuid, i32)>>,
    previous: &BTreeMap<String, BTreeSet<Tp>>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let topic_subs: BTreeMap<Uuid, Vec<&String>> = {
        let mut t: BTreeMap<Uuid, Vec<&String>> = BTreeMap::new();
        for (m, ts) in subs {
            for (id, _) in ts {
                t.entry(*id).or_default().push(m);
            }
        }
        t
    };
    let all: BTreeSet<Tp> = subs
        .values()
        .flatten()
        .flat_map(|(id, n)| (0..(*n).max(0)).map(move |p| (*id, p)))
        .collect();
    let mut taken = BTreeSet::new();
    for (m, tps) in previous {
        let Some(mine) = subs.get(m) else { continue };
        for tp in tps {
            if all.contains(tp) && mine.iter().any(|(id, _)| *id == tp.0) && taken.insert(*tp) {
                out.get_mut(m).map(|s| s.insert(*tp));
            }
        }
    }
    for tp in all.difference(&taken.clone()) {
        let Some(cands) = topic_subs.get(&tp.0) else {
            continue;
        };
        if let Some(best) = cands.iter().min_by_key(|m| (out[**m].len(), (**m).clone())) {
            out.get_mut(*best).map(|s| s.insert(*tp));
            taken.insert(*tp);
        }
    }
    // Even out: each move lowers the sum of squared counts, so this ends.
    for _ in 0..all.len().saturating_mul(2).max(1) {
        let mut by_load: Vec<(&String, usize)> = out.iter().map(|(m, s)| (m, s.len())).collect();
        by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut mv: Option<(String, String, Tp)> = None;
        'find: for (a, na) in &by_load {
            for tp in out[*a].iter().rev() {
                let Some(cands) = topic_subs.get(&tp.0) else {
                    continue;
                };
                if let Some(b) = cands
                    .iter()
                    .filter(|b| out[**b].len() + 1 < *na)
                    .min_by_key(|b| (out[**b].len(), (**b).clone()))
                {
                    mv = Some(((*a).clone(), (*b).clone(), *tp));
                    break 'find;
                }
            }
        }
        let Some((a, b, tp)) = mv else { break };
        out.get_mut(&a).map(|s| s.remove(&tp));
        out.get_mut(&b).map(|s| s.insert(tp));
    }
    out
}

/// The range assignor: per topic, its subscribers (by member id) get contiguous ranges, the
/// first ones one partition more when the count does not divide evenly.
pub fn assign_range(subs: &BTreeMap<String, Vec<(Uuid, i32)>>) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let mut topics: BTreeMap<Uuid, (i32, Vec<&String>)> = BTreeMap::new();
    for (m, ts) in subs {
        for (id, n) in ts {
            topics.entry(*id).or_insert((*n, Vec::new())).1.push(m);
        }
    }
    for (id, (n, members)) in topics {
        let n = n.max(0) as usize;
        let k = members.len();
        let (per, extra) = (n / k, n % k);
        let mut p = 0usize;
        for (i, m) in members.iter().enumerate() {
            let count = per + usize::from(i < extra);
            if let Some(s) = out.get_mut(*m) {
                s.extend((p..p + count).map(|q| (id, q as i32)));
            }
            p += count;
        }
    }
    out
}
