#!/usr/bin/env python3
"""Idle-partition cost: three brokers on loopback, PARTITIONS idle RF=3 partitions, nothing
produced. After the groups settle it samples, over WINDOW seconds, each broker's Raft frames sent
(`rpc_frames_sent` at /metrics), partition Raft messages sent, and CPU (utime + stime from
/proc/<pid>/stat), and prints them per second. Run it twice to compare:

    .venv/bin/python benches/raft_heartbeats.py [partitions] [window_s]            # batched
    BATCH=false .venv/bin/python benches/raft_heartbeats.py [partitions] [window_s]  # one frame per message

BATCH=false passes `--raft-batch-heartbeats false`, the behaviour before heartbeats were
batched (every Raft message its own frame). ICESTREAM_BIN picks the binary (default: the
debug build under $CARGO_TARGET_DIR).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import ScriptBrokers, metadata, start_cluster, wait_formed  # noqa: E402
from conftest import Broker, http_get  # noqa: E402


def counter(b: Broker, name: str) -> int:
    _, body, _ = http_get(f"{b.admin_url}/metrics")
    m = re.search(rf"^icestream_{name}(?:_total)?\s+(\d+)", body, re.M)
    return int(m.group(1)) if m else 0


def cpu_seconds(b: Broker) -> float:
    fields = Path(f"/proc/{b.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(partitions: int, window: float) -> None:
    batch = os.environ.get("BATCH", "true")
    tmp = Path(tempfile.mkdtemp(prefix="icestream-heartbeats-"))
    factory = ScriptBrokers(tmp, smp=1)

    try:
        brokers = start_cluster(factory, extra_args=["--raft-batch-heartbeats", batch,
                                                     "--log", "warn"])
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        # Several topics: one CreateTopics of thousands of partitions takes the debug build
        # long to open.
        per_topic = min(partitions, 50)
        names = []
        for i in range(0, partitions, per_topic):
            n = f"idle-{i // per_topic}"
            names.append(n)
            try:
                admin.create_topics([NewTopic(n, min(per_topic, partitions - i), 3)],
                                    operation_timeout=60)[n].result(120)
            except Exception as e:  # noqa: BLE001
                # The debug build may apply a large topic after the proposer stops waiting;
                # the topic still comes (checked below).
                print(f"create {n}: {e}; waiting for it", flush=True)
        deadline = time.monotonic() + 600

        def led_in(n):
            t = metadata(brokers[0], n).topics.get(n)
            return 0 if t is None or t.error else sum(1 for p in t.partitions.values() if p.leader > 0)

        while True:
            led = sum(led_in(n) for n in names)
            if led == partitions:
                break
            assert time.monotonic() < deadline, f"only {led} of {partitions} partitions have leaders"
            time.sleep(1)
        time.sleep(5)  # elections and catch-up settle
        before = [(counter(b, "rpc_frames_sent"), counter(b, "partition_raft_messages_sent"),
                   cpu_seconds(b)) for b in brokers]
        t0 = time.monotonic()
        time.sleep(window)
        dt = time.monotonic() - t0
        after = [(counter(b, "rpc_frames_sent"), counter(b, "partition_raft_messages_sent"),
                  cpu_seconds(b)) for b in brokers]
        print(f"{partitions} idle RF=3 partitions, batched heartbeats: {batch}, {dt:.1f} s window")
        total = [0.0, 0.0, 0.0]
        for i, (a, b) in enumerate(zip(before, after)):
            frames, msgs, cpu = ((y - x) / dt for x, y in zip(a, b))
            total = [total[0] + frames, total[1] + msgs, total[2] + cpu]
            print(f"  broker {i + 1}: {frames:9.0f} frames/s  {msgs:9.0f} raft msgs/s  "
                  f"{cpu * 100:6.1f}% CPU")
        print(f"  all:      {total[0]:9.0f} frames/s  {total[1]:9.0f} raft msgs/s  "
              f"{total[2] * 100:6.1f}% CPU")
    finally:
        factory.stop_all()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
         float(sys.argv[2]) if len(sys.argv) > 2 else 20.0)
