"""End-to-end freshness of Iceberg topics: time from a record's produce acknowledgement to its
row being visible in a pyiceberg scan of the topic's table (built-in catalog).

Starts its own broker (BROKER_BIN, default $CARGO_TARGET_DIR/debug/icestream) in a temp dir,
produces RATE records/s for SECONDS seconds to a key_value topic with iceberg.target.lag.ms
= LAG_MS, and polls the table every 100 ms. Run with the tests' venv:

    .venv/bin/python benches/iceberg_freshness.py        # LAG_MS=1000 RATE=200 SECONDS=20
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.catalog.rest import RestCatalog


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    lag_ms = int(os.environ.get("LAG_MS", "1000"))
    rate = int(os.environ.get("RATE", "200"))
    seconds = float(os.environ.get("SECONDS", "20"))
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/icestream/target"))
    binary = os.environ.get("BROKER_BIN", f"{target}/debug/icestream")
    ports = {k: free_port() for k in ("kafka", "admin", "sr", "ice")}
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [binary, "serve", "--data-dir", d, "--kafka-addr", f"127.0.0.1:{ports['kafka']}",
             "--admin-addr", f"127.0.0.1:{ports['admin']}",
             "--schema-registry-addr", f"127.0.0.1:{ports['sr']}",
             "--iceberg-catalog-addr", f"127.0.0.1:{ports['ice']}", "--smp", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/v1/status/ready")
                    break
                except OSError:
                    time.sleep(0.1)
            boot = f"127.0.0.1:{ports['kafka']}"
            admin = AdminClient({"bootstrap.servers": boot})
            admin.create_topics([NewTopic(
                "fresh", 3, 1, config={"iceberg.mode": "key_value",
                                       "iceberg.target.lag.ms": str(lag_ms)})])["fresh"].result()
            acked: dict[bytes, float] = {}
            seen: dict[bytes, float] = {}
            done = threading.Event()

            def poll():
                cat = RestCatalog("i", uri=f"http://127.0.0.1:{ports['ice']}")
                while not done.is_set() or len(seen) < len(acked):
                    # Visible as of the table state loaded now (the scan's own time excluded).
                    now = time.monotonic()
                    try:
                        keys = cat.load_table(("kafka", "fresh")).scan(
                            selected_fields=("key",)).to_arrow()["key"].to_pylist()
                    except Exception:
                        keys = []
                    for k in keys:
                        seen.setdefault(k, now)
                    if done.is_set() and time.monotonic() > end + 10 * lag_ms / 1000 + 10:
                        break
                    time.sleep(0.1)

            p = Producer({"bootstrap.servers": boot, "linger.ms": 0, "acks": "all"})
            t = threading.Thread(target=poll)
            t.start()
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < seconds:
                k = f"k{i}".encode()
                p.produce("fresh", key=k, value=b"x" * 100,
                          on_delivery=lambda err, m: acked.__setitem__(m.key(), time.monotonic()))
                p.poll(0)
                i += 1
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
            p.flush(30)
            end = time.monotonic()
            done.set()
            t.join()
            lat = sorted(seen[k] - acked[k] for k in acked if k in seen)
            q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]  # noqa: E731
            print(f"freshness, iceberg.target.lag.ms={lag_ms}, {rate} records/s for {seconds:.0f} s: "
                  f"{len(lat)}/{len(acked)} visible; p50 {q(0.5):.2f} s, p95 {q(0.95):.2f} s, "
                  f"max {lat[-1]:.2f} s, mean {statistics.mean(lat):.2f} s (scan every 0.1 s)")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
