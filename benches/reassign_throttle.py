#!/usr/bin/env python3
"""How the reassignment throttle paces a move: three brokers on loopback, one partition of
SIZE_MIB MiB moved whole from its broker to another (AlterPartitionReassignments), once with no
throttle and once per rate in RATES_MIB (`follower.replication.throttled.rate` on the receiving
broker and `leader.replication.throttled.rate` on the sending one, as
`kafka-reassign-partitions --throttle` sets them). It prints, per run, the time the move took,
the rate that makes (size / time) and the bytes that waited on each side
(`icestream_replication_throttled_{follower,leader}_bytes_total`). The move is done when every
broker's Metadata shows the new replica alone; the rate includes the joint-consensus steps.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/reassign_throttle.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AlterConfigOpType  # noqa: E402

from cluster import ScriptBrokers, start_cluster, wait_formed  # noqa: E402
from test_cluster_reassign import (alter_raw, create, kadmin, leaders, partition_view,  # noqa: E402
                                   wait_for, wait_reassigned)
from test_cluster_reassign_throttle import throttled_bytes  # noqa: E402
from test_dynamic_broker_configs import alter  # noqa: E402

SIZE_MIB = int(os.environ.get("SIZE_MIB", "32"))
RATES_MIB = [float(r) for r in os.environ.get("RATES_MIB", "8,4").split(",")]


def fill(b, topic: str) -> None:
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20,
                  "batch.size": 1 << 20, "compression.type": "none"})
    value = os.urandom(16 << 10)
    for _ in range(SIZE_MIB * 64):
        p.produce(topic, value=value, partition=0)
        p.poll(0)
    assert p.flush(120) == 0


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="icestream-throttle-"))
    factory = ScriptBrokers(tmp)
    try:
        brokers = start_cluster(factory, 3)
        wait_formed(brokers)
        admin = kadmin(brokers)
        print(f"moving one partition of {SIZE_MIB} MiB to another broker", flush=True)
        for rate in [None] + RATES_MIB:
            topic = f"throttle-{rate or 'off'}".replace(".", "_")
            create(brokers[0], topic, 1, 1)
            wait_for("a leader", lambda: leaders(brokers[0], topic, 1))
            source = partition_view(brokers[0], topic, 0)[1][0]
            target = next(i for i in (1, 2, 3) if i != source)
            fill(brokers[0], topic)
            src, dst = brokers[source - 1], brokers[target - 1]
            if rate is not None:
                bps = str(int(rate * (1 << 20)))
                alter(src, str(source), AlterConfigOpType.SET,
                      {"leader.replication.throttled.rate": bps})
                alter(dst, str(target), AlterConfigOpType.SET,
                      {"follower.replication.throttled.rate": bps})
            before = (throttled_bytes(dst, "follower"), throttled_bytes(src, "leader"))
            t0 = time.monotonic()
            assert alter_raw(admin, {(topic, 0): [target]})[(topic, 0)] == 0
            wait_reassigned(brokers, admin, topic, 0, [target])
            took = time.monotonic() - t0
            waited = (throttled_bytes(dst, "follower") - before[0],
                      throttled_bytes(src, "leader") - before[1])
            label = "no throttle" if rate is None else f"throttle {rate:g} MiB/s"
            print(f"{label}: moved in {took:.1f}s ({SIZE_MIB / took:.1f} MiB/s); waited: "
                  f"follower {waited[0] / (1 << 20):.1f} MiB, leader {waited[1] / (1 << 20):.1f} MiB",
                  flush=True)
            if rate is not None:
                alter(src, str(source), AlterConfigOpType.DELETE,
                      {"leader.replication.throttled.rate": None})
                alter(dst, str(target), AlterConfigOpType.DELETE,
                      {"follower.replication.throttled.rate": None})
    finally:
        factory.stop_all()


if __name__ == "__main__":
    main()
