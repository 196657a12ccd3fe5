#!/usr/bin/env python3
"""What RF=3 costs against RF=1 on one three-node Icestream cluster, per acknowledged GiB, and
where the leader's time goes (issue 23: RF=3 at most 3.3x RF=1's CPU seconds and bytes written
per acknowledged GiB).

One cluster (three nodes on loopback, `--smp 1`, all pinned to BROKER_CPUS) gets a one-topic
RF=1 and an RF=3 topic (min.insync.replicas=2) of PARTITIONS partitions. For each topic, after
a warm-up, benches/load's librdkafka generator (pinned to CLIENT_CPUS) produces RECORDS records
of 1 KiB with acks=all, linger 5 ms, 8192 in flight. Printed per topic: MB/s, ack latency
p50/p99, and, summed over the three nodes, CPU seconds (/proc/<pid>/stat) and bytes written
(/proc/<pid>/io write_bytes) per acknowledged GiB, with the disk's write requests and cache
flushes per acknowledged MiB (/proc/diskstats of the device holding the cluster's temp dir:
every process's, so run it on an otherwise quiet disk) and the partition Raft messages the nodes
sent one another per acknowledged MiB (their /metrics), then the RF=3 / RF=1 ratios. With `--perf
DIR`, every node runs under `perf record --call-graph dwarf` during each topic's run and
DIR/<topic>-node<i>.txt gets its flat profile with the callers of each entry over 2 %.

    benches/replication_cost.py --broker BINARY [--loadgen PATH] [--records 300000]
        [--partitions 1] [--rounds 1] [--perf DIR] [--broker-args "--io-backend blocking"]

The cluster's temp dir is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "vs_kafka"))

from brokers import Icestream, Ports, block_requests, taskset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BROKER_CPUS = os.environ.get("BROKER_CPUS", "0")
# Partition Raft messages the nodes sent one another (appends, their acknowledgements, heartbeats).
MESSAGES = "icestream_partition_raft_messages_sent_total"
CLIENT_CPUS = os.environ.get("CLIENT_CPUS", "1")


def produce(loadgen: str, cl: Icestream, topic: str, parts: int, records: int) -> dict:
    p = subprocess.run(taskset(CLIENT_CPUS) + [
        loadgen, "produce", "--brokers", cl.bootstrap, "--topic", topic, "--partitions",
        str(parts), "--records", str(records), "--record-bytes", "1024", "--acks", "all",
        "--linger-ms", "5", "--window", "8192"], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"produce to {topic} failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def profile(data: Path, out: Path) -> None:
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--stdio",
                             "--sort", "sym", "--percent-limit", "2",
                             "-g", "caller,2,callee,function,percent"],
                            capture_output=True, text=True)
    # Keep each entry and the engine/protobuf frames that called it.
    keep = [line for line in report.stdout.splitlines()
            if line.strip() and not line.startswith("#") and
            (line.lstrip()[:1].isdigit() or "engine::" in line or "protobuf::" in line)]
    out.write_text("\n".join(keep) + "\n")
    data.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", required=True)
    ap.add_argument("--loadgen", default=str(ROOT / "target" / "loadgen" / "release" /
                                             "icestream-loadgen"))
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf", type=Path)
    ap.add_argument("--broker-args", default="", help="more `serve` arguments for every node")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="icestream-replication-cost-",
                                dir=os.environ.get("TMPDIR")))
    cl = Icestream(Path(a.broker), tmp, 3, BROKER_CPUS, 1, Ports(), shlex.split(a.broker_args))
    rows = []
    try:
        cl.start()
        for topic, rf in (("rf1", 1), ("rf3", 3)):
            cfg = ["--config", "min.insync.replicas=2"] if rf == 3 else []
            subprocess.run([a.loadgen, "create-topics", "--brokers", cl.bootstrap,
                            "--replication-factor", str(rf), *cfg, f"{topic}:{a.partitions}"],
                           check=True, capture_output=True, timeout=120)
            produce(a.loadgen, cl, topic, a.partitions, 20_000)  # warm up
        for r in range(a.rounds):
            for topic in ("rf1", "rf3"):
                perfs = []
                if a.perf and r == 0:
                    a.perf.mkdir(parents=True, exist_ok=True)
                    perfs = [subprocess.Popen(
                        ["perf", "record", "-F", "299", "--call-graph", "dwarf,16384", "-o",
                         str(a.perf / f"{topic}-node{i}.data"), "-p", str(pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        for i, pid in enumerate(cl.pids())]
                    time.sleep(1)
                before, disk0, msgs0 = cl.counters(), block_requests(tmp), cl.metric(MESSAGES)
                j = produce(a.loadgen, cl, topic, a.partitions, a.records)
                after, disk1, msgs1 = cl.counters(), block_requests(tmp), cl.metric(MESSAGES)
                for i, p in enumerate(perfs):
                    p.send_signal(2)
                    p.wait(120)
                    profile(a.perf / f"{topic}-node{i}.data", a.perf / f"{topic}-node{i}.txt")
                gib = j["bytes"] / 2**30
                row = {"topic": topic, "round": r + 1, "mb_per_s": j["mb_per_s"],
                       "p50": j["latency_ms"]["p50"], "p99": j["latency_ms"]["p99"],
                       "cpu_s_per_gib": (after["cpu_s"] - before["cpu_s"]) / gib,
                       "written_per_gib": (after["write_bytes"] - before["write_bytes"]) / 2**30
                       / gib,
                       "disk_writes_per_mib": (disk1["writes"] - disk0["writes"]) / (gib * 1024),
                       "disk_flushes_per_mib": (disk1["flushes"] - disk0["flushes"]) / (gib * 1024),
                       "raft_messages_per_mib": (msgs1 - msgs0) / (gib * 1024)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        cl.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| round | topic | MB/s | ack p50 / p99 ms | CPU s per GiB (3 nodes) | GiB written "
          f"per GiB | disk writes / flushes per MiB | Raft messages per MiB |\n"
          f"|---:|---|---:|---|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['round']} | {r['topic']} | {r['mb_per_s']:.0f} | {r['p50']:.1f} / "
              f"{r['p99']:.1f} | {r['cpu_s_per_gib']:.2f} | {r['written_per_gib']:.2f} | "
              f"{r['disk_writes_per_mib']:.1f} / {r['disk_flushes_per_mib']:.1f} | "
              f"{r['raft_messages_per_mib']:.1f} |")
    for r in range(1, a.rounds + 1):
        one, three = (next(x for x in rows if x["round"] == r and x["topic"] == t)
                      for t in ("rf1", "rf3"))
        print(f"round {r}: RF=3 / RF=1: throughput {three['mb_per_s'] / one['mb_per_s']:.2f}, "
              f"CPU per GiB {three['cpu_s_per_gib'] / one['cpu_s_per_gib']:.2f}, bytes written "
              f"per GiB {three['written_per_gib'] / one['written_per_gib']:.2f}")


if __name__ == "__main__":
    main()
