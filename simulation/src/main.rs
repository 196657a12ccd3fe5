//! `icestream-sim`: runs seeds of the deterministic simulation and reports what failed, with
//! the command that replays it.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use simulation::{run, Options, Report};

#[derive(Parser)]
#[command(about = "Deterministic simulation of Icestream's replicated partitions")]
struct Args {
    /// Seeds to run: one (`7`) or a range (`0..1000`).
    #[arg(long, default_value = "0..20")]
    seeds: String,
    /// Simulated seconds of load and faults per seed.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Mean milliseconds between faults.
    #[arg(long, default_value_t = 1200)]
    fault_gap_ms: u64,
    /// Print every trace line as it happens.
    #[arg(long)]
    trace: bool,
    /// Run each seed twice and fail if the two runs differ (the simulation is deterministic).
    #[arg(long)]
    check_replay: bool,
    /// On a failure, drop faults while the run still fails, and print what is left.
    #[arg(long)]
    shrink: bool,
    /// Run only these of the seed's faults (by position, as `--shrink` prints them).
    #[arg(long, value_delimiter = ',')]
    keep_faults: Option<Vec<usize>>,
}

fn seeds(s: &str) -> Option<std::ops::Range<u64>> {
    match s.split_once("..") {
        Some((a, b)) => Some(a.parse().ok()?..b.parse().ok()?),
        None => {
            let n: u64 = s.parse().ok()?;
            Some(n..n + 1)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let Some(range) = seeds(&args.seeds) else {
        eprintln!("--seeds takes N or A..B");
        return ExitCode::from(2);
    };
    let opts = Options {
        duration_ms: args.seconds * 1000,
        mean_gap_ms: args.fault_gap_ms,
        echo: args.trace,
        schedule: None,
    };
    let (mut events, mut wall, mut sim_ms, mut acked) = (0u64, 0f64, 0u64, 0usize);
    let mut faults: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    let n = range.end - range.start;
    for seed in range {
        let mut opts = opts.clone();
        if let Some(keep) = &args.keep_faults {
            let all = simulation::schedule::generate(seed, opts.duration_ms, opts.mean_gap_ms);
            opts.schedule = Some(keep.iter().filter_map(|&i| all.get(i).cloned()).collect());
        }
        let r = run(seed, &opts);
        if args.check_replay {
            let again = run(seed, &opts);
            if (again.digest, again.events) != (r.digest, r.events) {
                println!(
                    "seed {seed} ran differently twice: {} then {} events",
                    r.events, again.events
                );
                failed.push(seed);
            }
        }
        events += r.events;
        wall += r.wall.as_secs_f64();
        sim_ms += r.sim_ms;
        acked += r.records_acked;
        for f in &r.schedule {
            *faults.entry(f.fault.kind()).or_default() += 1;
        }
        if !r.violations.is_empty() {
            print_failure(&r, &args);
            if args.shrink {
                shrink(&r, &opts, &args);
            }
            failed.push(seed);
        }
    }
    println!(
        "{n} seeds, {} failed{}; {events} events in {wall:.1} s ({:.0} events/s), {:.0} s simulated, {acked} records acknowledged",
        failed.len(),
        if failed.is_empty() { String::new() } else { format!(" ({failed:?})") },
        events as f64 / wall.max(1e-9),
        sim_ms as f64 / 1000.0,
    );
    let kinds: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("faults injected: {}", kinds.join(", "));
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_failure(r: &Report, args: &Args) {
    println!("seed {} FAILED:", r.seed);
    for v in &r.violations {
        println!("  {v}");
    }
    println!("  faults:");
    for f in &r.schedule {
        println!("    {:>7} ms  {}", f.at_ms, f.fault);
    }
    println!("  last events:");
    for l in r.tail.iter().rev().take(80).rev() {
        println!("    {l}");
    }
    println!(
        "  replay: cargo run --release -p simulation -- --seeds {} --seconds {} --fault-gap-ms {} --trace",
        r.seed, args.seconds, args.fault_gap_ms
    );
}

/// Drops one fault at a time, keeping each removal after which the seed still fails.
fn shrink(r: &Report, opts: &Options, args: &Args) {
    // Positions in the seed's schedule, so that `--keep-faults` replays what is left.
    let mut kept: Vec<usize> = (0..r.schedule.len()).collect();
    let mut i = 0;
    while i < kept.len() {
        let mut fewer = kept.clone();
        fewer.remove(i);
        let o = Options {
            schedule: Some(fewer.iter().map(|&k| r.schedule[k].clone()).collect()),
            echo: false,
            ..opts.clone()
        };
        if !run(r.seed, &o).violations.is_empty() {
            kept = fewer;
        } else {
            i += 1;
        }
    }
    println!("  shrunk to {} of {} faults:", kept.len(), r.schedule.len());
    for &k in &kept {
        let f = &r.schedule[k];
        println!("    {:>7} ms  {}", f.at_ms, f.fault);
    }
    let keep: Vec<String> = kept.iter().map(|k| k.to_string()).collect();
    println!(
        "  replay: cargo run --release -p simulation -- --seeds {} --seconds {} --fault-gap-ms {} --keep-faults {} --trace",
        r.seed,
        args.seconds,
        args.fault_gap_ms,
        keep.join(",")
    );
}
