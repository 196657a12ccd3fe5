#!/usr/bin/env python3
"""Replication cost benchmark: one three-broker cluster on loopback, and the same producer
(confluent-kafka, 1 KiB values, linger 5 ms, not idempotent so acks=1 runs alike) writing into an RF=1 topic and into an
RF=3 topic, each with one partition led by the same broker when possible. It prints records/s
and MB/s of each and their ratio, then the answer latency of one record at a time to the RF=3
topic with acks=1 (answered at the leader's synced append) and acks=all (at commit). The brokers share this machine's cores and disk with the
producer, so absolute figures say little; the ratio, measured in one run, is the point.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/replication.py [records]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import ScriptBrokers, metadata, start_cluster, wait_formed  # noqa: E402

VALUE = b"x" * 1024


def run(brokers, topic: str, records: int, acks: str) -> float:
    """Seconds to produce and acknowledge `records` records."""
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers),
                  # Idempotence needs acks=all, so it is off for every run alike.
                  "acks": acks, "enable.idempotence": False, "linger.ms": 5,
                  "batch.size": 262144, "queue.buffering.max.messages": 200000})
    errors = []

    def cb(err, _msg):
        if err:
            errors.append(err)

    t0 = time.monotonic()
    for i in range(records):
        while True:
            try:
                p.produce(topic, VALUE, key=str(i).encode(), partition=0, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)
    took = time.monotonic() - t0
    if errors:
        raise SystemExit(f"{topic}: {len(errors)} delivery errors, first {errors[0]}")
    return took


def latency(brokers, topic: str, acks: str, n: int = 1000) -> tuple[float, float]:
    """p50 and p99 in ms of one record produced and answered at a time."""
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers),
                  "acks": acks, "enable.idempotence": False, "linger.ms": 0})
    p.produce(topic, VALUE, partition=0)
    p.flush(30)
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        p.produce(topic, VALUE, partition=0)
        assert p.flush(30) == 0
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    return took[n // 2], took[n * 99 // 100]


def main(records: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="icestream-replication-"))
    factory = ScriptBrokers(tmp)

    try:
        brokers = start_cluster(factory)
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        topics = [NewTopic("rf1", 1, 1), NewTopic("rf3", 1, 3, config={"min.insync.replicas": "2"})]
        for f in admin.create_topics(topics, operation_timeout=15).values():
            f.result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = metadata(brokers[0])
            if all(t in md.topics and md.topics[t].partitions[0].leader > 0
                   for t in ("rf1", "rf3")):
                break
            time.sleep(0.2)
        run(brokers, "rf3", min(records, 2000), "all")  # warm up connections and the groups
        rows = []
        for topic, acks in (("rf1", "all"), ("rf3", "all"), ("rf3", "1")):
            took = run(brokers, topic, records, acks)
            rows.append((topic, acks, records / took, records * len(VALUE) / took / 1e6))
        print(f"{'topic':6} {'acks':5} {'records/s':>10} {'MB/s':>8}")
        for topic, acks, rps, mbs in rows:
            print(f"{topic:6} {acks:5} {rps:10.0f} {mbs:8.1f}")
        print(f"RF=3 / RF=1 throughput, acks=all: {rows[1][2] / rows[0][2]:.2f}")
        lat = {acks: latency(brokers, "rf3", acks) for acks in ("1", "all", "1", "all")}
        print("RF=3, one record at a time (second of two rounds each):")
        for acks, (p50, p99) in lat.items():
            print(f"  acks={acks:3} p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    finally:
        factory.stop_all()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
