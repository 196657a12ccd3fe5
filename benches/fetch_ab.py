#!/usr/bin/env python3
"""Consume from the page cache with two Icestream builds side by side, in one run: the
before/after figure of a change to the Fetch path (issue 23).

Both brokers run at once (one node each, `--smp 1`, pinned to BROKER_CPUS, each on its own temp
dir); each gets the same topics, 1 and 6 partitions, filled once with RECORDS records of 1 KiB
by benches/load's librdkafka generator (acks=1). Then, in alternating rounds (A, B, A, B, ...),
the generator's consumer, pinned to CLIENT_CPUS, reads every record of a topic from the
beginning (assigned partitions, no group; from the page cache, nothing is read from the disk).
Per build and topic it prints the best and median MB/s, the broker's CPU seconds per GiB
consumed (/proc/<pid>/stat utime + stime, user and kernel apart) and the consumer's own CPU
seconds per GiB (its ceiling). With `--perf DIR`, one more consume per build and topic runs under
`perf record -g` (software cpu-clock: this VM has no hardware counters) and the flat profile's
top entries go to DIR/<build>-<partitions>p.txt.

    benches/fetch_ab.py --a OLD_BINARY --b NEW_BINARY [--records 1000000] [--rounds 5]
        [--loadgen PATH] [--perf DIR]

The brokers' temp dirs are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "vs_kafka"))

from brokers import CLK_TCK, Icestream, Ports, taskset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BROKER_CPUS = os.environ.get("BROKER_CPUS", "0")
CLIENT_CPUS = os.environ.get("CLIENT_CPUS", "1")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_client(cmd: list[str], timeout: float = 600) -> dict:
    p = subprocess.run(taskset(CLIENT_CPUS) + cmd, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def consume(loadgen: str, broker: Icestream, topic: str, parts: int, records: int,
            perf_out: Path | None = None) -> dict:
    pid = broker.procs[0].pid
    perf = None
    if perf_out is not None:
        perf_data = perf_out.with_suffix(".data")
        perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", str(perf_data),
                                 "-p", str(pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(1)
    u0, s0 = cpu_split(pid)
    c0 = children_cpu()
    res = run_client([loadgen, "consume", "--brokers", broker.bootstrap, "--topic", topic,
                      "--partitions", str(parts), "--records", str(records)])
    c1 = children_cpu()
    u1, s1 = cpu_split(pid)
    if perf is not None:
        perf.send_signal(2)
        perf.wait(60)
        report = subprocess.run(["perf", "report", "-i", str(perf_data), "--no-children",
                                 "--stdio", "--percent-limit", "1.5", "-g", "none"],
                                capture_output=True, text=True)
        perf_out.write_text(report.stdout)
        perf_data.unlink(missing_ok=True)
    gib = res["bytes"] / 2**30
    return {"mb_per_s": res["mb_per_s"], "user_s_per_gib": (u1 - u0) / gib,
            "sys_s_per_gib": (s1 - s0) / gib, "client_s_per_gib": (c1 - c0) / gib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="the build before (binary)")
    ap.add_argument("--b", required=True, help="the build after (binary)")
    ap.add_argument("--loadgen", default=str(ROOT / "target" / "loadgen" / "release" /
                                             "icestream-loadgen"))
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--partitions", default="1,6")
    ap.add_argument("--perf", type=Path, help="write perf profiles here")
    a = ap.parse_args()
    parts = [int(p) for p in a.partitions.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="icestream-fetch-ab-", dir=os.environ.get("TMPDIR")))
    ports = Ports()
    builds = {"A": Icestream(Path(a.a), tmp / "a", 1, BROKER_CPUS, 1, ports),
              "B": Icestream(Path(a.b), tmp / "b", 1, BROKER_CPUS, 1, ports)}
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        for b in builds.values():
            b.start()
            specs = [f"t{p}:{p}" for p in parts]
            subprocess.run([a.loadgen, "create-topics", "--brokers", b.bootstrap, *specs],
                           check=True, capture_output=True, timeout=120)
            for p in parts:
                run_client([a.loadgen, "produce", "--brokers", b.bootstrap, "--topic", f"t{p}",
                            "--partitions", str(p), "--records", str(a.records),
                            "--record-bytes", "1024", "--acks", "1", "--linger-ms", "5"])
        # One warm-up read each: the page cache and the brokers' indexes are hot for all.
        for b in builds.values():
            for p in parts:
                consume(a.loadgen, b, f"t{p}", p, a.records)
        for r in range(a.rounds):
            for p in parts:
                for name, b in builds.items():
                    res = consume(a.loadgen, b, f"t{p}", p, a.records)
                    results.setdefault((name, p), []).append(res)
                    print(f"round {r + 1} {name} {p}p: {res['mb_per_s']:.0f} MB/s, broker "
                          f"{res['user_s_per_gib']:.2f}+{res['sys_s_per_gib']:.2f} s/GiB "
                          f"(user+sys), consumer {res['client_s_per_gib']:.2f} s/GiB",
                          flush=True)
        if a.perf:
            a.perf.mkdir(parents=True, exist_ok=True)
            for name, b in builds.items():
                for p in parts:
                    consume(a.loadgen, b, f"t{p}", p, a.records, a.perf / f"{name}-{p}p.txt")
    finally:
        for b in builds.values():
            b.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{a.records} records of 1 KiB, {a.rounds} rounds; A = {a.a}, B = {a.b}\n")
    print("| build | partitions | best MB/s | median MB/s | broker user s/GiB | broker sys "
          "s/GiB | consumer s/GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p in parts:
        for name in builds:
            rs = results[(name, p)]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            print(f"| {name} | {p} | {max(r['mb_per_s'] for r in rs):.0f} | "
                  f"{med('mb_per_s'):.0f} | {med('user_s_per_gib'):.2f} | "
                  f"{med('sys_s_per_gib'):.2f} | {med('client_s_per_gib'):.2f} |")
    for p in parts:
        a_med = statistics.median(r["mb_per_s"] for r in results[("A", p)])
        b_med = statistics.median(r["mb_per_s"] for r in results[("B", p)])
        a_cpu = statistics.median(r["user_s_per_gib"] + r["sys_s_per_gib"]
                                  for r in results[("A", p)])
        b_cpu = statistics.median(r["user_s_per_gib"] + r["sys_s_per_gib"]
                                  for r in results[("B", p)])
        print(f"{p} partitions: B/A median MB/s {b_med / a_med:.2f}, broker CPU per GiB "
              f"B/A {b_cpu / a_cpu:.2f}")


if __name__ == "__main__":
    main()
