#!/usr/bin/env python3
"""Two builds of a single broker side by side: ack latency at fixed rates, throughput, CPU per
GiB and fdatasyncs per second (issue 23; written to judge a change to the group commit).

Alternating rounds: each round starts a fresh single broker of each build (`--smp 1`, pinned
to BROKER_CPUS), creates a one-partition topic per case and produces to it with benches/load's
librdkafka generator (pinned to CLIENT_CPUS, acks=all, 1 KiB records): at each fixed rate
(open loop, linger 1 ms) for `--seconds`, then a throughput run (`--records`, linger 5 ms,
8192 in flight). Printed per build and case as JSON lines: ack p50/p99/p99.9, MB/s, the
broker's CPU seconds per GiB and its fdatasyncs per second
(`icestream_storage_fsync_seconds_count`) and the disk's write requests per fdatasync
(/proc/diskstats of the device holding the data dir: every process's, so run it on an
otherwise quiet disk); then a table of the medians over the rounds. `--a-args`/`--b-args` add
`serve` arguments to one side: one binary against itself with a setting changed.

    benches/ack_latency_ab.py --a OLD_BINARY --b NEW_BINARY [--loadgen PATH] [--rounds 3]
        [--rates 10000,50000] [--seconds 10] [--records 500000] [--data-parent DIR]
        [--a-args "--io-backend blocking"] [--b-args ...]

Each broker's temp dir is removed when it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "vs_kafka"))

from brokers import block_requests  # noqa: E402

BROKER_CPUS = os.environ.get("BROKER_CPUS", "0")
CLIENT_CPUS = os.environ.get("CLIENT_CPUS", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fsyncs(admin: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("icestream_storage_fsync_seconds_count"):
                return float(line.split()[1])
    return 0.0


def run_build(binary: str, extra: list[str], loadgen: str,
              a: argparse.Namespace) -> dict[str, dict]:
    d = tempfile.mkdtemp(prefix="ack-latency-ab-", dir=a.data_parent)
    kafka, admin = free_port(), free_port()
    p = subprocess.Popen(["taskset", "-c", BROKER_CPUS, binary, "serve", "--data-dir", d,
                          "--kafka-addr", f"127.0.0.1:{kafka}", "--admin-addr", f"127.0.0.1:{admin}",
                          "--schema-registry-addr", f"127.0.0.1:{free_port()}",
                          "--iceberg-catalog-addr", f"127.0.0.1:{free_port()}", "--smp", "1",
                          *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", kafka), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        bootstrap = f"127.0.0.1:{kafka}"
        cases = [(f"rate {r}", ["--rate", str(r), "--records", str(r * a.seconds), "--linger-ms", "1"])
                 for r in a.rates] + [("throughput", ["--records", str(a.records), "--linger-ms", "5"])]
        for i, (name, args) in enumerate(cases):
            topic = f"t{i}"
            subprocess.run([loadgen, "create-topics", "--brokers", bootstrap, f"{topic}:1"],
                           check=True, capture_output=True, timeout=120)
            c0, f0, t0 = cpu_seconds(p.pid), fsyncs(admin), time.monotonic()
            d0 = block_requests(Path(d))
            r = subprocess.run(["taskset", "-c", CLIENT_CPUS, loadgen, "produce", "--brokers",
                                bootstrap, "--topic", topic, "--partitions", "1",
                                "--record-bytes", "1024", "--window", "8192", "--acks", "all",
                                "--duration-secs", "60", *args],
                               capture_output=True, text=True, timeout=300)
            wall = time.monotonic() - t0
            d1, f1 = block_requests(Path(d)), fsyncs(admin)
            j = json.loads(r.stdout.strip().splitlines()[-1])
            gib = j["bytes"] / 2**30
            out[name] = {**j["latency_ms"], "mb_per_s": j["mb_per_s"],
                         "cpu_s_per_gib": (cpu_seconds(p.pid) - c0) / gib,
                         "fsyncs_per_s": (f1 - f0) / wall,
                         "disk_writes_per_fsync": (d1["writes"] - d0["writes"]) / max(f1 - f0, 1)}
            subprocess.run([loadgen, "delete-topics", "--brokers", bootstrap, topic],
                           capture_output=True, timeout=120)
    finally:
        p.terminate()
        p.wait(30)
        shutil.rmtree(d, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="baseline release binary")
    ap.add_argument("--b", required=True, help="candidate release binary")
    ap.add_argument("--loadgen", default=str(Path(os.environ.get("CARGO_TARGET_DIR", "target"))
                                             / "loadgen/release/icestream-loadgen"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rates", default="10000,50000")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--data-parent", default=None, help="where the brokers' temp dirs go")
    ap.add_argument("--a-args", default="", help="more `serve` arguments for build a")
    ap.add_argument("--b-args", default="", help="more `serve` arguments for build b")
    a = ap.parse_args()
    a.rates = [int(x) for x in a.rates.split(",") if x]
    rows: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(a.rounds):
        sides = [("a", a.a, shlex.split(a.a_args)), ("b", a.b, shlex.split(a.b_args))]
        order = sides if rnd % 2 == 0 else sides[::-1]
        for label, binary, extra in order:
            for case, res in run_build(binary, extra, a.loadgen, a).items():
                rows.setdefault((case, label), []).append(res)
                print(json.dumps({"round": rnd + 1, "build": label, "case": case, **res}),
                      flush=True)
    print("\n| case | build | ack p50 / p99 / p99.9 ms | MB/s | CPU s per GiB | fdatasyncs/s "
          "| disk writes per fdatasync |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (case, label), rs in sorted(rows.items()):
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"| {case} | {label} | {med['p50']:.2f} / {med['p99']:.2f} / {med['p999']:.2f} | "
              f"{med['mb_per_s']:.0f} | {med['cpu_s_per_gib']:.2f} | {med['fsyncs_per_s']:.0f} "
              f"| {med['disk_writes_per_fsync']:.2f} |")


if __name__ == "__main__":
    main()
