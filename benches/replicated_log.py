#!/usr/bin/env python3
"""Replicated-log footprint benchmark (issue 13): three brokers on loopback, one RF=3 topic of
3 partitions with small retention (retention.bytes 64 MiB, segment.bytes 16 MiB per partition),
and librdkafka producing 1 KiB records with acks=all. After each GiB acknowledged it prints, per
broker, RSS and data directory size; at the end, each broker's time from restart (SIGTERM, then
start) to ready with its replicas led again; then CPU seconds and bytes written to disk (all
three brokers, /proc/<pid>/stat and /proc/<pid>/io) per acknowledged GiB, for the RF=3 topic and
an RF=1 topic in the same run. A report (Markdown table and a PNG plot) goes to --out.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/replicated_log.py \\
        [--gib 10] [--cost-gib 1] [--out /tmp/replicated-log]

Run it against two binaries (say main and a branch) with the same arguments to compare: the
machine is noisy, so compare the two runs' ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

try:  # the test venv has them; the bench venv, which only plots, does not
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from cluster import ScriptBrokers, metadata, start_cluster, wait_formed
except ImportError:
    pass

GIB = 1 << 30
VALUE = b"x" * 1024
PARTITIONS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def written_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def produce(brokers, topic: str, nbytes: int) -> None:
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers),
                  "acks": "all", "linger.ms": 5, "batch.size": 262144,
                  "queue.buffering.max.messages": 200000, "compression.type": "none"})
    errors = []

    def cb(err, _msg):
        if err:
            errors.append(err)

    for i in range(nbytes // len(VALUE)):
        while True:
            try:
                p.produce(topic, VALUE, partition=i % PARTITIONS, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
    left = p.flush(300)
    if errors or left:
        raise SystemExit(f"{topic}: {len(errors)} delivery errors ({errors[:1]}), {left} undelivered")


def wait_leaders(brokers, topic: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = metadata(brokers[0], topic).topics.get(topic)
        if t is not None and len(t.partitions) == PARTITIONS and all(
                p.leader > 0 for p in t.partitions.values()):
            return
        time.sleep(0.1)
    raise SystemExit(f"{topic}: no leaders after {timeout}s")


def ready(b) -> bool:
    try:
        with urllib.request.urlopen(b.admin_url + "/v1/status/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def plot(out: Path) -> None:
    """RSS and data directory size per broker against GiB produced, from out/samples.json."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed here: plot with the bench venv (benches/load/run.sh "
              f"makes it): benches/.venv-bench/bin/python {__file__} --plot {out}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = json.loads((out / "samples.json").read_text())
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name in sorted({r["broker"] for r in rows}):
        pts = [r for r in rows if r["broker"] == name]
        a1.plot([r["gib"] for r in pts], [r["rss"] / 2**20 for r in pts], marker="o", label=name)
        a2.plot([r["gib"] for r in pts], [r["disk"] / 2**20 for r in pts], marker="o", label=name)
    a1.set(xlabel="GiB produced (RF=3)", ylabel="RSS, MiB", title="Broker memory")
    a2.set(xlabel="GiB produced (RF=3)", ylabel="data directory, MiB", title="Broker disk")
    a1.legend()
    fig.tight_layout()
    fig.savefig(out / "footprint.png")
    print(f"plot: {out / 'footprint.png'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", type=Path, metavar="OUT",
                    help="only plot OUT/samples.json from an earlier run")
    ap.add_argument("--gib", type=int, default=10, help="GiB produced to the RF=3 topic")
    ap.add_argument("--cost-gib", type=float, default=1.0,
                    help="GiB produced to each topic for CPU and bytes written")
    ap.add_argument("--out", type=Path, default=Path("/tmp/replicated-log"))
    args = ap.parse_args()
    if args.plot:
        plot(args.plot)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="icestream-replicated-log-"))
    factory = ScriptBrokers(tmp)
    rows = []
    try:
        # Retention checked every second, so that a sample taken a second after each GiB shows
        # what retention keeps (with the default 10 s the samples alias with the checks).
        brokers = start_cluster(factory, extra_args=["--retention-check-interval-ms", "1000"])
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        small = {"retention.bytes": str(64 << 20), "segment.bytes": str(16 << 20)}
        topics = [NewTopic("rf3", PARTITIONS, 3, config={**small, "min.insync.replicas": "2"}),
                  NewTopic("rf1", PARTITIONS, 1, config=small)]
        for f in admin.create_topics(topics, operation_timeout=15).values():
            f.result(30)
        for t in ("rf3", "rf1"):
            wait_leaders(brokers, t)

        def sample(gib: int) -> None:
            for b in brokers:
                rows.append({"gib": gib, "broker": b.workdir.name, "rss": b.rss_bytes(),
                             "disk": du(b.data_dir), "raft": du(b.data_dir / "raft")})
            line = "  ".join(f"{r['broker']}: RSS {r['rss'] >> 20} MiB, disk {r['disk'] >> 20} MiB "
                             f"(raft logs {r['raft'] >> 20})" for r in rows[-len(brokers):])
            print(f"{gib:3} GiB  {line}", flush=True)

        sample(0)
        for gib in range(1, args.gib + 1):
            produce(brokers, "rf3", GIB)
            time.sleep(1.5)  # a retention check
            sample(gib)

        costs = {}
        for topic in ("rf3", "rf1"):
            pids = [b.pid for b in brokers]
            cpu0 = sum(cpu_seconds(p) for p in pids)
            w0 = sum(written_bytes(p) for p in pids)
            produce(brokers, topic, int(args.cost_gib * GIB))
            cpu = (sum(cpu_seconds(p) for p in pids) - cpu0) / args.cost_gib
            written = (sum(written_bytes(p) for p in pids) - w0) / args.cost_gib
            costs[topic] = (cpu, written)
            print(f"{topic}: {cpu:.1f} CPU s and {written / GIB:.2f} GiB written per acknowledged GiB",
                  flush=True)

        restarts = []
        for b in brokers:
            b.stop()
            t0 = time.monotonic()
            b.start(timeout=600)
            while not ready(b):
                time.sleep(0.05)
            took = time.monotonic() - t0
            restarts.append((b.workdir.name, took))
            print(f"{b.workdir.name}: ready {took:.2f} s after restart", flush=True)
            wait_leaders(brokers, "rf3")
    finally:
        factory.stop_all()

    (args.out / "samples.json").write_text(json.dumps(rows, indent=1))
    binary = os.environ.get("ICESTREAM_BIN", "(default)")
    md = [f"# Replicated log footprint ({binary})", "",
          "| GiB produced | broker | RSS MiB | data dir MiB | of which Raft logs MiB |",
          "|---:|---|---:|---:|---:|"]
    md += [f"| {r['gib']} | {r['broker']} | {r['rss'] >> 20} | {r['disk'] >> 20} "
           f"| {r.get('raft', 0) >> 20} |" for r in rows]
    md += ["", "| topic | CPU s / GiB | GiB written / GiB |", "|---|---:|---:|"]
    md += [f"| {t} | {c:.1f} | {w / GIB:.2f} |" for t, (c, w) in costs.items()]
    md += ["", "| broker | restart to ready, s |", "|---|---:|"]
    md += [f"| {n} | {s:.2f} |" for n, s in restarts]
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    plot(args.out)
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
