#!/usr/bin/env python3
"""Transactional produce throughput against plain idempotent produce, in the same run.

One broker (ICESTREAM_BIN; a release build, or the figures mean little) on loopback, --smp 2,
a fresh topic of --partitions partitions per run. confluent-kafka produces 1 KiB records
(acks=all, linger.ms 5, no compression, round-robin over the partitions, at most --window
records unacknowledged, 8192 as benches/load) for --seconds each way:

- idempotent: `enable.idempotence=true`, records enqueued as fast as the client takes them,
  then one flush;
- transactional: a `transactional.id`; every --commit-ms (100 ms) after `begin_transaction`
  the producer flushes and commits, then begins the next one.

It prints records/s and MB/s (values only, acknowledged and, for transactions, committed,
over the wall time including the final flush/commit) of both and their ratio, the commit
latency p50/p99 (the `commit_transaction` call after an explicit flush: the EndTxn round trip,
coordinator write included) and the whole end-of-transaction stall (flush + commit), the
broker's CPU seconds per GiB each way, and the markers the transactional run added to the log
(high watermarks minus records). With --rounds N the two runs alternate N times (idempotent
first) so that a drift of the machine shows. The report goes to --out: report.md,
results.json, and (with matplotlib, e.g. the bench venv benches/.venv-bench) transactions.png.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/transactions.py \\
        [--seconds 30] [--rounds 1] [--partitions 3] [--commit-ms 100] [--window 8192] \\
        [--out /tmp/txn-bench]
    benches/.venv-bench/bin/python benches/transactions.py --plot /tmp/txn-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

try:  # the test venv has them; the bench venv, which only plots, does not
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from cluster import ScriptBrokers
except ImportError:
    pass

VALUE = b"x" * 1024
MB = 1e6
GIB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=15)[name].result(30)
    deadline = time.monotonic() + 30
    while True:
        t = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: no leaders after 30 s")
        time.sleep(0.05)


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-unused"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                   for p in range(partitions))
    finally:
        c.close()


class Counter:
    def __init__(self):
        self.ok = 0
        self.errors: list = []

    def __call__(self, err, _msg):
        if err is None:
            self.ok += 1
        else:
            self.errors.append(err)


def base_conf(bootstrap: str, window: int) -> dict:
    # The same bounded window both ways: with an unbounded queue the transactional producer
    # would enqueue far more in 100 ms than the broker takes, and every commit would wait for
    # a long flush (the idempotent run for one long one at its end).
    return {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
            "batch.size": 1000000, "compression.type": "none",
            "queue.buffering.max.messages": window, "message.timeout.ms": 60000}


def enqueue(p, topic: str, i: int, partitions: int, cb) -> None:
    while True:
        try:
            p.produce(topic, VALUE, partition=i % partitions, on_delivery=cb)
            return
        except BufferError:
            p.poll(0.005)


def run_idempotent(bootstrap: str, topic: str, partitions: int, seconds: float,
                   window: int) -> dict:
    p = Producer({**base_conf(bootstrap, window), "enable.idempotence": True})
    cb = Counter()
    enqueue(p, topic, 0, partitions, cb)  # connection and producer id before the clock starts
    p.flush(30)
    cb.ok = 0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        enqueue(p, topic, i, partitions, cb)
        i += 1
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    elapsed = time.monotonic() - t0
    if cb.errors or left:
        raise SystemExit(f"idempotent: {len(cb.errors)} errors ({cb.errors[:1]}), {left} left")
    return {"records": cb.ok, "elapsed": elapsed}


def run_transactional(bootstrap: str, topic: str, partitions: int, seconds: float,
                      commit_ms: float, window: int) -> dict:
    p = Producer({**base_conf(bootstrap, window), "transactional.id": f"bench-{topic}",
                  "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    cb = Counter()
    commits: list[float] = []   # commit_transaction after the flush
    stalls: list[float] = []    # flush + commit_transaction
    durations: list[float] = []  # begin_transaction to commit_transaction's return
    committed = 0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        p.begin_transaction()
        tb = time.monotonic()
        n = 0
        while time.monotonic() - tb < commit_ms / 1000:
            enqueue(p, topic, i, partitions, cb)
            i += 1
            n += 1
            if n % 1000 == 0:
                p.poll(0)
        s0 = time.monotonic()
        left = p.flush(60)
        c0 = time.monotonic()
        p.commit_transaction(60)
        c1 = time.monotonic()
        durations.append(c1 - tb)
        if left or cb.errors:
            raise SystemExit(f"transactional: {len(cb.errors)} errors ({cb.errors[:1]}), "
                             f"{left} left")
        commits.append(c1 - c0)
        stalls.append(c1 - s0)
        committed += n
    elapsed = time.monotonic() - t0
    if cb.ok != committed:
        raise SystemExit(f"transactional: {cb.ok} delivered, {committed} committed")
    return {"records": committed, "elapsed": elapsed, "transactions": len(commits),
            "commit_s": commits, "stall_s": stalls, "duration_s": durations}


def plot(out: Path) -> None:
    """Records/s per run and mode; the commit latency distribution."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed here: plot with the bench venv: "
              f"benches/.venv-bench/bin/python {__file__} --plot {out}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = json.loads((out / "results.json").read_text())
    runs = res["runs"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(runs))
    w = 0.38
    a1.bar([i - w / 2 for i in x], [r["idempotent"]["records_per_s"] for r in runs], w,
           label="idempotent")
    a1.bar([i + w / 2 for i in x], [r["transactional"]["records_per_s"] for r in runs], w,
           label=f"transactional (commit {res['commit_ms']:g} ms after begin)")
    a1.set_xticks(list(x), [f"round {i + 1}" for i in x])
    a1.set(ylabel="records/s (1 KiB)", title="Produce throughput")
    a1.legend(loc="lower center")
    for key, label in (("commit_s", "commit_transaction (after flush)"),
                       ("stall_s", "flush + commit")):
        xs = sorted(v * 1000 for r in runs for v in r["transactional"][key])
        a2.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=label)
    a2.set(xlabel="ms", ylabel="fraction of transactions", title="End of transaction",
           xscale="log")
    a2.legend(loc="lower right")
    fig.suptitle(res["binary"], fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "transactions.png")
    print(f"plot: {out / 'transactions.png'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", type=Path, metavar="OUT",
                    help="only plot OUT/results.json from an earlier run")
    ap.add_argument("--seconds", type=float, default=30, help="produce time each way")
    ap.add_argument("--rounds", type=int, default=1, help="idempotent/transactional pairs")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--commit-ms", type=float, default=100)
    ap.add_argument("--window", type=int, default=8192,
                    help="records the client holds unacknowledged (queue.buffering.max.messages)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/txn-bench"))
    args = ap.parse_args()
    if args.plot:
        plot(args.plot)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    binary = os.environ.get("ICESTREAM_BIN", "(default debug build)")
    tmp = Path(tempfile.mkdtemp(prefix="icestream-txn-bench-"))
    factory = ScriptBrokers(tmp)
    runs = []
    try:
        b = factory()
        for r in range(args.rounds):
            run = {}
            for mode in ("idempotent", "transactional"):
                topic = f"{mode}-{r}"
                create_topic(b.bootstrap, topic, args.partitions)
                cpu0 = cpu_seconds(b.pid)
                if mode == "idempotent":
                    res = run_idempotent(b.bootstrap, topic, args.partitions, args.seconds,
                                         args.window)
                else:
                    res = run_transactional(b.bootstrap, topic, args.partitions, args.seconds,
                                            args.commit_ms, args.window)
                    res["markers"] = high_watermarks(b.bootstrap, topic, args.partitions) \
                        - res["records"]
                cpu = cpu_seconds(b.pid) - cpu0
                res["records_per_s"] = res["records"] / res["elapsed"]
                res["mb_per_s"] = res["records"] * len(VALUE) / res["elapsed"] / MB
                res["broker_cpu_s_per_gib"] = cpu / (res["records"] * len(VALUE) / GIB)
                run[mode] = res
                line = (f"round {r + 1} {mode:13}: {res['records']:8} records in "
                        f"{res['elapsed']:.1f} s = {res['records_per_s']:9.0f} records/s, "
                        f"{res['mb_per_s']:7.1f} MB/s, broker {res['broker_cpu_s_per_gib']:.1f} "
                        f"CPU s/GiB")
                if mode == "transactional":
                    line += (f"; {res['transactions']} transactions, commit p50 "
                             f"{pct(res['commit_s'], .5) * 1000:.1f} ms p99 "
                             f"{pct(res['commit_s'], .99) * 1000:.1f} ms, flush+commit p50 "
                             f"{pct(res['stall_s'], .5) * 1000:.1f} ms p99 "
                             f"{pct(res['stall_s'], .99) * 1000:.1f} ms, transaction p50 "
                             f"{pct(res['duration_s'], .5) * 1000:.0f} ms, "
                             f"{res['markers']} markers")
                print(line, flush=True)
            run["ratio"] = run["transactional"]["records_per_s"] / run["idempotent"]["records_per_s"]
            print(f"round {r + 1} ratio transactional/idempotent: {run['ratio']:.3f}", flush=True)
            runs.append(run)
    finally:
        factory.stop_all()
        if factory.made:
            shutil.copy(factory.made[0].log_path, args.out / "broker.log")
        shutil.rmtree(tmp, ignore_errors=True)

    commits = [v for r in runs for v in r["transactional"]["commit_s"]]
    stalls = [v for r in runs for v in r["transactional"]["stall_s"]]
    res = {"binary": binary, "seconds": args.seconds, "partitions": args.partitions,
           "commit_ms": args.commit_ms, "window": args.window, "runs": runs,
           "host": {"nproc": os.cpu_count(), "kernel": platform.release(),
                    "loadavg_end": os.getloadavg()}}
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    md = [f"# Transactional vs idempotent produce ({binary})", "",
          f"{args.partitions} partitions, 1 KiB records, acks=all, linger.ms 5, window "
          f"{args.window} records, {args.seconds:g} s each way, transactions committed "
          f"{args.commit_ms:g} ms after they begin; "
          f"{os.cpu_count()} CPUs, load average at the end "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
          "| round | mode | records/s | MB/s | broker CPU s/GiB | transactions | "
          "commit p50 / p99 ms | flush+commit p50 / p99 ms | transaction p50 ms | markers |",
          "|---:|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for i, r in enumerate(runs):
        d = r["idempotent"]
        md.append(f"| {i + 1} | idempotent | {d['records_per_s']:,.0f} | {d['mb_per_s']:.1f} "
                  f"| {d['broker_cpu_s_per_gib']:.1f} | | | | | |")
        t = r["transactional"]
        md.append(f"| {i + 1} | transactional | {t['records_per_s']:,.0f} | {t['mb_per_s']:.1f} "
                  f"| {t['broker_cpu_s_per_gib']:.1f} | {t['transactions']} "
                  f"| {pct(t['commit_s'], .5) * 1000:.1f} / {pct(t['commit_s'], .99) * 1000:.1f} "
                  f"| {pct(t['stall_s'], .5) * 1000:.1f} / {pct(t['stall_s'], .99) * 1000:.1f} "
                  f"| {pct(t['duration_s'], .5) * 1000:.0f} | {t['markers']} |")
        md.append(f"| {i + 1} | ratio | {r['ratio']:.3f} | | | | | | | |")
    md += ["", f"All rounds: commit p50 {pct(commits, .5) * 1000:.1f} ms, "
               f"p99 {pct(commits, .99) * 1000:.1f} ms; flush+commit p50 "
               f"{pct(stalls, .5) * 1000:.1f} ms, p99 {pct(stalls, .99) * 1000:.1f} ms "
               f"({len(commits)} transactions).", "", "![plot](transactions.png)"]
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    print(f"commit latency over all rounds: p50 {pct(commits, .5) * 1000:.1f} ms, "
          f"p99 {pct(commits, .99) * 1000:.1f} ms ({len(commits)} transactions)")
    plot(args.out)
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
