#!/usr/bin/env bash
# Icestream against Apache Kafka 4.x on this machine, side by side in one run (issue 23):
# builds what it needs, runs benches/vs_kafka/run.py's matrix, writes the report.
#
# Usage: benches/vs_kafka/run.sh [--quick] [run.py options...]
#   --quick                 smoke run, about 3 minutes (one node, 6 partitions, acks=all)
#   (no option)             the full matrix: 1 and 3 nodes, 1 and 6 partitions, acks=1 and all,
#                           both clients, rates 10000 and 50000/s; about an hour
#   any run.py option       e.g. --nodes 3 --partitions 6 --records 500000 (run.py --help)
# Environment: BROKER_BIN (use this icestream binary instead of `cargo build --release`),
#   CARGO_TARGET_DIR (honoured), BROKER_CPUS (default 0), CLIENT_CPUS (default 1),
#   KAFKA_HEAP (default 1g), BENCH_DATA_PARENT (where brokers' temp dirs go; default the cargo
#   target dir, a real disk), VS_KAFKA_PORTS=lo-hi (loopback ports to use; default: any free),
#   REPORT_DIR (default benches/report/vs_kafka).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
REPORT="${REPORT_DIR:-$ROOT/benches/report/vs_kafka}"
VENV="$ROOT/benches/.venv-bench"
BROKER_CPUS="${BROKER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
KAFKA_HEAP="${KAFKA_HEAP:-1g}"

log() { printf '[vs_kafka] %s\n' "$*" >&2; }

# 1. System packages (idempotent): librdkafka for the load generator, taskset (util-linux).
if ! pkg-config --exists rdkafka 2>/dev/null || ! command -v taskset >/dev/null; then
    log "installing librdkafka-dev pkg-config util-linux"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq librdkafka-dev pkg-config util-linux >/dev/null
fi
command -v java >/dev/null && command -v mvn >/dev/null || {
    echo "java 17+ and mvn are needed (Apache Kafka and its tools come from Maven Central)" >&2; exit 1; }

# 2. Apache Kafka: kafka_2.13 + kafka-tools resolved by the compat suite (idempotent).
"$ROOT/tests/compat/build.sh" java
KAFKA_VERSION="$(tr ':' '\n' <"$ROOT/tests/compat/java/target/classpath.txt" | grep -o 'kafka_2.13-[0-9.]*\.jar' | head -1 | sed 's/kafka_2.13-//; s/\.jar//')"
log "Apache Kafka $KAFKA_VERSION, librdkafka $(pkg-config --modversion rdkafka)"

# 3. Builds: the broker (release) and the load generator, nice'd. The load generator gets its
#    own target dir below $TARGET so its build never waits on the broker's build lock.
if [ -n "${BROKER_BIN:-}" ]; then
    BROKER="$BROKER_BIN"
else
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" nice -n 10 cargo build --release --bin icestream)
    BROKER="$TARGET/release/icestream"
fi
CARGO_TARGET_DIR="$TARGET/loadgen" nice -n 10 cargo build --release --manifest-path "$ROOT/benches/load/Cargo.toml"
LOADGEN="$TARGET/loadgen/release/icestream-loadgen"

# 4. The bench venv with a pinned matplotlib (shared with benches/load).
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'matplotlib==3.10.9'
fi

# 5. Data on a real disk, both systems on the same one.
PARENT="${BENCH_DATA_PARENT:-$TARGET}"
mkdir -p "$PARENT" "$REPORT"
FSTYPE="$(df --output=fstype "$PARENT" | tail -1 | tr -d ' ')"
if [ "$FSTYPE" = tmpfs ] || [ "$FSTYPE" = ramfs ]; then
    echo "$PARENT is on $FSTYPE: set BENCH_DATA_PARENT to a directory on a real disk" >&2; exit 1
fi
SMP="$(taskset -c "$BROKER_CPUS" nproc)"
MACHINE="$(printf 'nproc %s (%s); %s; kernel %s; data on %s (%s); load average before the run: %s' \
    "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
    "$(free -h | awk '/^Mem:/ {print "memory " $2}')" "$(uname -r)" \
    "$(df --output=source "$PARENT" | tail -1 | tr -d ' ')" "$FSTYPE" "$(cut -d' ' -f1-3 /proc/loadavg)")"
log "machine: $MACHINE"
log "brokers pinned to CPUs $BROKER_CPUS (icestream --smp $SMP), clients to CPUs $CLIENT_CPUS"

"$VENV/bin/python" "$HERE/run.py" --broker "$BROKER" --loadgen "$LOADGEN" --out "$REPORT" \
    --data-parent "$PARENT" --broker-cpus "$BROKER_CPUS" --client-cpus "$CLIENT_CPUS" \
    --smp "$SMP" --kafka-heap "$KAFKA_HEAP" "$@"
"$VENV/bin/python" "$HERE/report.py" --results "$REPORT/results.jsonl" --out-dir "$REPORT" \
    --machine "$MACHINE" --kafka-version "$KAFKA_VERSION" \
    --librdkafka "$(pkg-config --modversion rdkafka)" \
    --icestream "$("$BROKER" --version 2>/dev/null || echo unknown) ($(git -C "$ROOT" rev-parse --short HEAD))"
log "report: $REPORT/report.md"
