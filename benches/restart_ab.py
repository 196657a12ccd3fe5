#!/usr/bin/env python3
"""Restart time of two Icestream builds on the same data, alternating (issue 23: time to ready
with many partitions). One data dir gets PARTITIONS partitions (benches/scale.py's topics) and
SECONDS of 1 KiB records spread over all of them, written by build A; then each round restarts
the broker with A and with B in turn (SIGTERM between), timing from process start to
`/v1/status/ready`, to the first Metadata answer and to every partition led, and the process's
blocks written during start-up (/proc/<pid>/io write_bytes). Prints each restart and the
median of each build. Both builds must read the same data format.

    benches/restart_ab.py --a OLD_BINARY --b NEW_BINARY [--partitions 10000] [--seconds 20]
        [--rounds 3]

The temp data is deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import Broker, create_topics, produce, topic_names  # noqa: E402


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--partitions", type=int, default=10_000)
    ap.add_argument("--per-topic", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="icestream-restart-ab-"))
    topics = topic_names(a.partitions, a.per_topic)
    targets = [(t, p) for t, n in topics for p in range(n)]
    results: dict[str, list[dict]] = {"A": [], "B": []}
    broker = None
    try:
        broker = Broker(Path(a.a), tmp, None)
        broker.start(0)
        create_topics(broker.bootstrap, topics, 10)
        loaded = produce(broker.bootstrap, targets, a.seconds, 100_000)
        print(f"loaded {loaded['records']} records over {a.partitions} partitions", flush=True)
        broker.stop()
        for r in range(a.rounds):
            for name, binary in (("A", a.a), ("B", a.b)):
                broker.binary = Path(binary)
                broker.args[0] = binary
                res = broker.start(a.partitions)
                res["written_mib"] = round(write_bytes(broker.proc.pid) / 2**20, 1)
                broker.stop()
                results[name].append(res)
                print(f"round {r + 1} {name}: {res}", flush=True)
    finally:
        if broker is not None and broker.proc is not None and broker.proc.poll() is None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| build | ready s | first Metadata s | all led s | MiB written while starting |\n"
          f"|---|---:|---:|---:|---:|")
    for name, binary in (("A", a.a), ("B", a.b)):
        med = {k: statistics.median(r[k] for r in results[name])
               for k in ("ready_s", "metadata_s", "all_led_s", "written_mib")}
        print(f"| {name} ({binary}) | {med['ready_s']:.2f} | {med['metadata_s']:.2f} | "
              f"{med['all_led_s']:.2f} | {med['written_mib']:.1f} |")


if __name__ == "__main__":
    main()
