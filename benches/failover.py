#!/usr/bin/env python3
"""Failover-time benchmark: three brokers on loopback, an RF=3 single-partition topic, a steady
acks=all producer; the partition's leader is SIGKILLed and restarted N times. For each kill it
reports the time from the kill to the first acknowledged write on the partition (the new
leader's). Target: under 2 s.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/failover.py [kills]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import ScriptBrokers, metadata, start_cluster, wait_formed  # noqa: E402


def main(kills: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="icestream-failover-"))
    factory = ScriptBrokers(tmp)

    try:
        brokers = start_cluster(factory)
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        admin.create_topics([NewTopic("failover", 1, 3)], operation_timeout=15)["failover"].result(30)

        def leader() -> int:
            for b in brokers:
                if b.running():
                    t = metadata(b, "failover").topics.get("failover")
                    if t and t.partitions[0].leader > 0:
                        return t.partitions[0].leader
            return -1

        while leader() < 0:
            time.sleep(0.1)
        acks: list[float] = []
        stop = threading.Event()

        def produce():
            # librdkafka backs off reconnecting to a broker that refused connections (each
            # earlier round's victim, while it was down) up to reconnect.backoff.max.ms (10 s
            # by default); when that broker leads next, the client reaches it only then. Capped
            # at 1 s so the figures are the broker's failover, not the client's leftover backoff.
            p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers),
                          "acks": "all", "enable.idempotence": True, "linger.ms": 1,
                          "retry.backoff.ms": 50, "message.timeout.ms": 60000,
                          "reconnect.backoff.max.ms": 1000})
            while not stop.is_set():
                p.produce("failover", b"x", on_delivery=lambda e, m: e or acks.append(time.monotonic()))
                p.poll(0.002)
            p.flush(60)

        t = threading.Thread(target=produce)
        t.start()
        results = []
        for _ in range(kills):
            time.sleep(2)
            victim = leader()
            brokers[victim - 1].kill9()
            t_kill = time.monotonic()
            deadline = t_kill + 30
            while time.monotonic() < deadline and not any(a > t_kill for a in acks[-1000:]):
                time.sleep(0.01)
            first = min((a for a in acks[-5000:] if a > t_kill), default=float("inf"))
            results.append(first - t_kill)
            print(f"killed broker {victim}: first ack after {results[-1]:.2f} s", flush=True)
            brokers[victim - 1].start()
        stop.set()
        t.join(90)
        print(f"failover over {kills} kills: median {statistics.median(results):.2f} s, "
              f"max {max(results):.2f} s (target < 2 s)")
    finally:
        factory.stop_all()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
