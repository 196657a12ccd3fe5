#!/usr/bin/env bash
# Runs one pytest node id N times in a row and prints a summary: how many passed, how many
# failed, the run time, and where the failing runs' output is kept. For chasing intermittent
# failures (not run in CI). Usage:
#   benches/repeat.sh N tests/e2e/test_cluster_groups.py::test_members_follow_the_group_to_a_new_coordinator
# ICESTREAM_BIN defaults to the debug build scripts/test makes.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=$1; shift
export ICESTREAM_BIN="${ICESTREAM_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/icestream/target}/debug/icestream}"
out=$(mktemp -d -t repeat.XXXXXX)
pass=0; fail=0; start=$(date +%s)
for i in $(seq 1 "$n"); do
    if .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$out/run-$i.log" 2>&1; then
        pass=$((pass + 1)); rm -f "$out/run-$i.log"
    else
        fail=$((fail + 1)); echo "run $i failed: $out/run-$i.log"
    fi
done
echo "$pass passed, $fail failed in $(( $(date +%s) - start )) s (failing runs' output in $out)"
