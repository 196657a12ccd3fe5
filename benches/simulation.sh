#!/usr/bin/env bash
# Many seeds of the deterministic simulation (simulation/, docs/simulation.md): the long run
# that CI's fixed seeds sample. Prints failures with their replay commands, then the seeds,
# events per second and faults injected.
#
#   benches/simulation.sh                 # seeds 0..1000, 20 simulated seconds each
#   benches/simulation.sh 1000..5000 60   # other seeds, 60 simulated seconds each
#   CHECK_REPLAY=1 benches/simulation.sh  # also run each seed twice and compare
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-0..1000}"
seconds="${2:-20}"
extra=()
if [ -n "${CHECK_REPLAY:-}" ]; then extra+=(--check-replay); fi
cargo build --release -q -p simulation
exec "${CARGO_TARGET_DIR:-target}/release/icestream-sim" --seeds "$seeds" --seconds "$seconds" "${extra[@]}"
