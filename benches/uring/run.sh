#!/usr/bin/env bash
# tokio-uring against the shard's io-uring use (issue 23): builds benches/uring (a standalone
# crate outside the workspace, with its own Cargo.lock) in release and runs it once.
#   benches/uring/run.sh        # a markdown table on stdout, one progress line per cell on stderr
# environment: ROUNDS=3 CELL_SECS=0.5 CAP_MIB=256 BENCH_DATA_PARENT=dir (a real disk; default the
#   system temp dir; the files are deleted when the run ends), CARGO_TARGET_DIR (default the
#   repository's target/).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO_TARGET_DIR="$TARGET" nice -n 10 cargo build --release --quiet --manifest-path "$HERE/Cargo.toml"
exec "$TARGET/release/icestream-uring-bench"
