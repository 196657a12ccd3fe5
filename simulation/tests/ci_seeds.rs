//! The simulation's seeds that CI runs: every invariant holds on each, and a seed replays
//! exactly. More seeds: `benches/simulation.sh`.

use simulation::{run, Options};

/// Seeds CI runs, each 20 s of simulated load and faults.
const CI_SEEDS: std::ops::Range<u64> = 0..24;

#[test]
fn a_seed_replays_exactly() {
    let opts = Options::default();
    let (a, b) = (run(7, &opts), run(7, &opts));
    assert!(a.events > 1000, "the run did little: {} events", a.events);
    assert_eq!(
        (a.digest, a.events, a.produces_acked),
        (b.digest, b.events, b.produces_acked),
        "seed 7 ran differently twice"
    );
}

#[test]
fn every_invariant_holds_on_the_ci_seeds() {
    let opts = Options::default();
    let mut failed = Vec::new();
    let (mut events, mut wall) = (0, 0.0);
    for seed in CI_SEEDS {
        let r = run(seed, &opts);
        events += r.events;
        wall += r.wall.as_secs_f64();
        assert!(
            r.produces_acked > 0,
            "seed {seed}: no produce was acknowledged"
        );
        if !r.violations.is_empty() {
            eprintln!("seed {seed} failed:");
            for v in &r.violations {
                eprintln!("  {v}");
            }
            for l in r.tail.iter().rev().take(60).rev() {
                eprintln!("    {l}");
            }
            eprintln!("  replay: cargo run --release -p simulation -- --seeds {seed} --trace");
            failed.push(seed);
        }
    }
    eprintln!(
        "{} seeds, {events} events in {wall:.1} s ({:.0} events/s)",
        CI_SEEDS.end - CI_SEEDS.start,
        events as f64 / wall
    );
    assert!(failed.is_empty(), "seeds {failed:?} broke an invariant");
}
