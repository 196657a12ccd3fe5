#!/usr/bin/env bash
# The Flusher's two backends at the broker (issue 23): a release broker started fresh per round
# with --io-backend io-uring and with --io-backend blocking (the order swaps every round), each
# driven by the librdkafka load generator with 1 KiB records and acks=all on 1 and 6 partitions,
# at 20,000 records/s for 5 s (ack latency) and saturated (300,000 records). Prints one line per
# round, backend and load: the load generator's MB/s, records/s and latency p50/p99/p99.9.
#   BROKER_BIN=target/release/icestream LOADGEN_BIN=path benches/uring/broker_ab.sh
# environment: ROUNDS=6, PORT_BASE=15000 (uses PORT_BASE+92, +644, +81, +181),
#   BENCH_DATA_PARENT=dir (default the system temp dir; each round's data is deleted).
set -u
BIN="${BROKER_BIN:?path of a release icestream binary}"
LG="${LOADGEN_BIN:?path of icestream-loadgen (benches/load)}"
ROUNDS="${ROUNDS:-6}"; P="${PORT_BASE:-15000}"; PARENT="${BENCH_DATA_PARENT:-${TMPDIR:-/tmp}}"
B="127.0.0.1:$((P + 92))"
for round in $(seq "$ROUNDS"); do
  order="io-uring blocking"; [ $((round % 2)) = 0 ] && order="blocking io-uring"
  for be in $order; do
    d="$PARENT/icestream-broker-ab-$$-$be"; rm -rf "$d"
    "$BIN" serve --data-dir "$d" --kafka-addr "$B" --admin-addr "127.0.0.1:$((P + 644))" \
      --schema-registry-addr "127.0.0.1:$((P + 81))" --iceberg-catalog-addr "127.0.0.1:$((P + 181))" \
      --io-backend "$be" > "$d.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do (echo > "/dev/tcp/${B%:*}/${B#*:}") 2>/dev/null && break; sleep 0.2; done
    "$LG" create-topics --brokers "$B" t1:1 t6:6 > /dev/null 2>&1
    for p in 1 6; do
      r=$("$LG" produce --brokers "$B" --topic "t$p" --partitions "$p" --duration-secs 5 --rate 20000 \
        --record-bytes 1024 --acks all 2>&1 | grep -o "MB/s.*" | tail -1)
      echo "round $round $be p=$p rate=20000: $r"
      r=$("$LG" produce --brokers "$B" --topic "t$p" --partitions "$p" --records 300000 \
        --record-bytes 1024 --acks all 2>&1 | grep -o "[0-9.]* MB/s.*" | tail -1)
      echo "round $round $be p=$p saturated: $r"
    done
    kill "$pid"; wait "$pid" 2>/dev/null; rm -rf "$d" "$d.log"
  done
done
