#!/usr/bin/env python3
"""Listeners under abuse, on loopback: one broker, then at once
  - IDLE idle connections to the Kafka listener (default 10,000; the broker is started with
    connection limits that admit them),
  - SLOW slowloris connections on each HTTP listener (admin, schema registry, Iceberg catalog)
    sending a partial request head and one more byte per second,
  - FETCHERS raw clients that each pipeline 32 Fetch requests of 50 MiB over the partitions of a
    topic holding DATA_MIB MiB, and never read.
It prints the broker's RSS (VmRSS) against a stated bound, and the latency (p50/p99) of a
well-behaved client's produce (acks=all, flushed) and produce-to-consume round trip, before the
abuse and during it. Bounded: ROUNDS round trips per phase, HOLD seconds of abuse at most.

    .venv/bin/python benches/abuse.py

Environment: IDLE=10000 SLOW=50 FETCHERS=4 DATA_MIB=200 ROUNDS=200 HOLD=40; ICESTREAM_BIN picks
the binary (default: the debug build under $CARGO_TARGET_DIR). Not run in CI.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

import kwire  # noqa: E402
from cluster import ScriptBrokers  # noqa: E402
from conftest import create_topic, http_get  # noqa: E402

IDLE = int(os.environ.get("IDLE", 10_000))
SLOW = int(os.environ.get("SLOW", 50))
FETCHERS = int(os.environ.get("FETCHERS", 4))
DATA_MIB = int(os.environ.get("DATA_MIB", 200))
ROUNDS = int(os.environ.get("ROUNDS", 200))
HOLD = float(os.environ.get("HOLD", 40))
PARTITIONS = 4
FETCH_MAX = 50 << 20
# The broker's defaults, which this bench does not change.
PER_CONN_BUDGET = 64 << 20
BROKER_BUDGET = 512 << 20
# What one idle Kafka connection may cost the broker (frame buffer, task, socket state).
PER_IDLE_CONN = 32 << 10
SLACK = 96 << 20
MiB = 1 << 20


def metric(b, name: str) -> int:
    _, text, _ = http_get(f"{b.admin_url}/metrics")
    return sum(int(float(v)) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", text, re.M))


def fetch_v4(corr: int, topic: str) -> bytes:
    body = (kwire.i32(-1) + kwire.i32(500) + kwire.i32(1) + kwire.i32(FETCH_MAX) + kwire.i8(0)
            + kwire.i32(1) + kwire.string(topic) + kwire.i32(PARTITIONS))
    for p in range(PARTITIONS):
        body += kwire.i32(p) + kwire.i64(0) + kwire.i32(FETCH_MAX)
    return kwire.frame(kwire.request_header(1, 4, corr) + body)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def round_trips(b, topic: str, rounds: int) -> tuple[list[float], list[float]]:
    """(produce latencies, produce-to-consume latencies) of `rounds` single records."""
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "abuse-probe",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, hi)])
    prod, e2e = [], []
    try:
        for i in range(rounds):
            t0 = time.monotonic()
            p.produce(topic, b"probe-%d" % i, partition=0)
            assert p.flush(30) == 0, "probe produce timed out"
            prod.append(time.monotonic() - t0)
            while True:
                m = c.poll(30)
                assert m is not None, "probe consume timed out"
                if m.error() is None and m.value() == b"probe-%d" % i:
                    break
            e2e.append(time.monotonic() - t0)
    finally:
        c.close()
    return prod, e2e


def fill(b, topic: str) -> None:
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                  "acks": 1, "message.max.bytes": 2 << 20})
    value = b"x" * (256 << 10)
    for i in range(DATA_MIB * 4):
        p.produce(topic, value, partition=i % PARTITIONS)
        p.poll(0)
    assert p.flush(120) == 0


class Slowloris(threading.Thread):
    """Keeps SLOW connections per HTTP port sending one header byte a second; counts how many
    the broker closed and how long each lived."""

    def __init__(self, ports: list[int], stop: threading.Event):
        super().__init__(daemon=True)
        self.ports, self.stop_ev = ports, stop
        self.lifetimes: list[float] = []

    def open(self, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        s.send(b"GET /v1/status/ready HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        return [s, port, time.monotonic()]

    def run(self):
        conns = [self.open(p) for p in self.ports for _ in range(SLOW)]
        while not self.stop_ev.wait(1.0):
            for c in conns:
                try:
                    c[0].send(b"a")
                    if c[0].recv(1024) == b"":
                        raise ConnectionError
                except BlockingIOError:
                    pass
                except OSError:
                    self.lifetimes.append(time.monotonic() - c[2])
                    c[0].close()
                    c[:] = self.open(c[1])
        for c in conns:
            c[0].close()


def rss_sampler(b, stop: threading.Event, out: list[int]):
    while not stop.wait(0.2):
        try:
            out.append(b.rss_bytes())
        except (OSError, AssertionError):
            return


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, IDLE + 4 * SLOW + 2000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if want < IDLE + 1000:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for IDLE={IDLE}")
    tmp = Path(tempfile.mkdtemp(prefix="icestream-abuse-"))
    factory = ScriptBrokers(tmp, smp=2)
    try:
        b = factory(args=["--kafka-max-connections", str(IDLE + 1000),
                          "--kafka-max-connections-per-ip", str(IDLE + 1000), "--log", "warn"])
        data = create_topic(b, "abuse-data", partitions=PARTITIONS)
        probe = create_topic(b, "abuse-probe")
        t = time.monotonic()
        fill(b, data)
        print(f"produced {DATA_MIB} MiB to {PARTITIONS} partitions in {time.monotonic() - t:.1f} s")
        round_trips(b, probe, 20)  # warm up
        time.sleep(1)
        rss_before = b.rss_bytes()
        prod0, e2e0 = round_trips(b, probe, ROUNDS)

        stop = threading.Event()
        samples: list[int] = []
        threading.Thread(target=rss_sampler, args=(b, stop, samples), daemon=True).start()
        abuse_start = time.monotonic()
        idle = []
        for _ in range(IDLE):
            s = socket.socket()
            s.connect(("127.0.0.1", b.kafka_port))
            idle.append(s)
        opened = time.monotonic() - abuse_start
        slow = Slowloris([b.admin_port, b.schema_registry_port, b.iceberg_catalog_port], stop)
        slow.start()
        fetchers = []
        for _ in range(FETCHERS):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", b.kafka_port))
            for i in range(32):
                s.sendall(fetch_v4(i, data))
            fetchers.append(s)
        time.sleep(5)
        open_conns = metric(b, "icestream_kafka_connections")
        fetch_mem = metric(b, "icestream_fetch_memory_bytes")
        prod1, e2e1 = round_trips(b, probe, ROUNDS)
        during = time.monotonic() - abuse_start
        if during < HOLD:
            time.sleep(min(10.0, HOLD - during))
        stop.set()
        for s in idle + fetchers:
            s.close()
        slow.join(5)
        refused = metric(b, "icestream_connections_refused_total")
        peak = max(samples) if samples else b.rss_bytes()

        fetch_bound = min(FETCHERS * PER_CONN_BUDGET, BROKER_BUDGET)
        bound = rss_before + fetch_bound + IDLE * PER_IDLE_CONN + SLACK
        print(f"abuse: {IDLE} idle Kafka connections opened in {opened:.1f} s "
              f"({open_conns} open at the broker), {SLOW} slowloris per HTTP listener, "
              f"{FETCHERS} never-reading fetchers x 32 fetches of 50 MiB")
        print(f"fetch memory reserved during the abuse: {fetch_mem / MiB:.0f} MiB "
              f"(budget {PER_CONN_BUDGET >> 20} MiB per connection, {BROKER_BUDGET >> 20} MiB per broker)")
        if slow.lifetimes:
            print(f"slowloris connections closed by the broker: {len(slow.lifetimes)}, lived "
                  f"{min(slow.lifetimes):.1f}-{max(slow.lifetimes):.1f} s")
        else:
            print("slowloris connections closed by the broker: 0")
        print(f"connections refused: {refused}")
        print(f"broker RSS: before {rss_before / MiB:.0f} MiB, peak during {peak / MiB:.0f} MiB, "
              f"bound {bound / MiB:.0f} MiB (before + {fetch_bound >> 20} MiB fetch budget + "
              f"{IDLE} x {PER_IDLE_CONN >> 10} KiB + {SLACK >> 20} MiB): "
              f"{'within' if peak <= bound else 'OVER'}")
        print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
        for name, xs in [("produce, before", prod0), ("produce, during", prod1),
                         ("produce->consume, before", e2e0), ("produce->consume, during", e2e1)]:
            print(f"{name:24}{pct(xs, 0.5):10.1f}{pct(xs, 0.99):10.1f}")
        print(f"(mean produce before {statistics.mean(prod0) * 1000:.1f} ms, "
              f"during {statistics.mean(prod1) * 1000:.1f} ms)")
        assert b.running(), "broker died"
    finally:
        factory.stop_all()


if __name__ == "__main__":
    main()
