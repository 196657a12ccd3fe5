#!/usr/bin/env python3
"""Rolling upgrade from the previous release under load: three brokers of the previous release
on loopback, one RF=3 topic of 6 partitions, an idempotent acks=all producer writing all the
time (tests/e2e/history.py's Load); each broker in turn is stopped with SIGTERM and started with
this release's binary, the next once the restarted one is back in every ISR. Then the producer
stops and every acknowledged record is read back (exactly once, at its offset). It prints, per
broker, how long it took from SIGTERM until the upgraded broker was back in every ISR and the
longest time one partition went without an acknowledgement meanwhile,
and at the end the records acknowledged, the delivery errors and the read-back verdict.

Build the previous release first, e.g. for the commit of the last release:

    git worktree add /tmp/prev <commit> && (cd /tmp/prev && cargo build --release --bins)
    ICESTREAM_PREV_BIN=/tmp/prev/target/release/icestream \\
    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/rolling_upgrade.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from cluster import (ScriptBrokers, finalized_features, metadata, start_cluster,  # noqa: E402
                     wait_formed)
from conftest import broker_binary  # noqa: E402
from history import Load  # noqa: E402
from test_cluster_reassign import create  # noqa: E402

PARTITIONS = 6


def fully_replicated(brokers, topic) -> bool:
    for b in brokers:
        t = metadata(b, topic).topics.get(topic)
        if t is None or len(t.partitions) != PARTITIONS or any(
                p.leader < 1 or sorted(p.isrs) != [1, 2, 3] for p in t.partitions.values()):
            return False
    return True


def wait(what, check, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def longest_gap(ack_times: list[tuple[int, float]], since: float) -> float:
    """The longest time one partition went without an acknowledgement since `since`."""
    worst = 0.0
    for p in range(PARTITIONS):
        ts = sorted(t for q, t in ack_times if q == p and t >= since)
        worst = max([worst] + [b - a for a, b in zip(ts, ts[1:])])
    return worst


def main() -> None:
    prev = os.environ.get("ICESTREAM_PREV_BIN")
    if not prev or not Path(prev).exists():
        raise SystemExit("set ICESTREAM_PREV_BIN to the previous release's binary (see --help)")
    new = broker_binary()
    tmp = Path(tempfile.mkdtemp(prefix="icestream-upgrade-"))
    factory = ScriptBrokers(tmp)

    def previous_release(args=None, start=True, env=None):
        b = factory(args=args, start=False, env=env)
        b.binary = Path(prev)
        if start:
            b.start()
        return b

    try:
        # A follower leaves the ISR 2 s after it stops, so its return is visible.
        brokers = start_cluster(previous_release, 3, ["--replica-lag-time-max-ms", "2000"])
        wait_formed(brokers)
        topic = "upgrade"
        create(brokers[0], topic, PARTITIONS, 3)
        wait("the topic fully replicated", lambda: fully_replicated(brokers, topic))
        load = Load(",".join(b.bootstrap for b in brokers), topic, list(range(PARTITIONS)))
        try:
            time.sleep(3)
            for i, b in enumerate(brokers):
                t0 = time.monotonic()
                code = b.stop()
                wait(f"broker {i + 1} out of the ISRs", lambda: not fully_replicated(
                    [x for x in brokers if x is not b], topic), timeout=60)
                b.binary = new
                b.start()
                wait(f"broker {i + 1} back in every ISR", lambda: fully_replicated(brokers, topic))
                took = time.monotonic() - t0
                gap = longest_gap(list(load.ack_times), t0)
                print(f"broker {i + 1}: exit code {code}, upgraded and back in every ISR in "
                      f"{took:.1f}s; longest a partition went without an ack meanwhile {gap * 1000:.0f} ms",
                      flush=True)
                time.sleep(2)
            # What needs every broker upgraded turns on by itself once the last one is.
            wait("the new release's features finalized",
                 lambda: finalized_features(brokers[0]).get("icestream.producer.id.blocks") == 1,
                 timeout=60)
            print(f"finalized features after the upgrade: {finalized_features(brokers[0])}",
                  flush=True)
        finally:
            load.finish()
        errors = load.history.errors
        print(f"acknowledged {load.acked()} records, {len(errors)} delivery errors")
        load.check_read_back()
        print("read back: every acknowledged record once, at its offset")
        if errors:
            raise SystemExit(f"delivery errors: {list(errors.items())[:5]}")
    finally:
        factory.stop_all()


if __name__ == "__main__":
    main()
