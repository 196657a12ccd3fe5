#!/usr/bin/env python3
"""Plain, idempotent and transactional produce against one broker, in the same run (issue 23).

One broker (ICESTREAM_BIN, a release build) per --smp value, on loopback; for each round, each
partition count and each mode, a fresh topic and one run of the librdkafka load generator
(benches/load, `icestream-loadgen produce`: 1 KiB records, acks=all, linger.ms 5, batch.size
1 MB, at most --window records in flight, round-robin over the partitions) for --seconds:

- plain: `enable.idempotence=false` (librdkafka's default of 1,000,000 requests in flight);
- idempotent: `enable.idempotence=true` (librdkafka caps it at 5 requests in flight);
- transactional: a `transactional.id`, flush + commit every --commit-ms after each begin;
- plain5 / plain1: plain with `max.in.flight.requests.per.connection` 5 (the idempotent
  producer's documented cap) or 1 (what librdkafka's idempotent producer does per partition),
  without sequence numbers (only with --modes naming them).

A mode written `MODE@lib` (e.g. `idempotent@lib`) runs the load generator against the
librdkafka in --librdkafka DIR (LD_LIBRARY_PATH) instead of the system's: a patched build, to
show what a client change does against the same broker in the same run.

The modes alternate within a round, so each round's ratio idempotent/plain (and
transactional/plain) is measured minutes apart at most on this noisy machine. For each run it
prints records/s, MB/s, ack latency p50/p99, the broker's CPU seconds per GiB (utime+stime of
/proc/<pid>/stat), the client's (the load generator's rusage), Produce requests per second and
KiB per request, the broker's mean time per Produce request and per fdatasync and the
requests it held at once on average (its /metrics). --out gets results.json and report.md.
Each run's topic is deleted once measured, and the broker's data dir (under $TMPDIR) at the
end; a run does not start with less than --min-free-gib (8) free on that disk.

    ICESTREAM_BIN=$CARGO_TARGET_DIR/release/icestream [ICESTREAM_TEST_PORTS=LO-HI] \\
        .venv/bin/python benches/idempotence.py --loadgen <target>/release/icestream-loadgen \\
        [--smp 1,2] [--partitions 1,6] [--modes plain,plain1,idempotent,transactional] \\
        [--seconds 15] [--rounds 2] [--window 8192] [--commit-ms 100] \\
        [--librdkafka DIR --modes plain,idempotent,idempotent@lib] [--out /tmp/idem-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from cluster import ScriptBrokers  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

GIB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODE_ARGS = {
    "plain": [],
    "plain5": ["--max-in-flight", "5"],
    "plain1": ["--max-in-flight", "1"],
    "idempotent": ["--idempotence"],
    "transactional": ["--transactional-id", "TXN"],
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def produce_metrics(admin_url: str) -> dict:
    """Produce requests answered and fdatasyncs so far (the broker's /metrics)."""
    text = urllib.request.urlopen(f"{admin_url}/metrics", timeout=10).read().decode()
    out = {"requests": 0.0, "request_s": 0.0, "fsyncs": 0.0, "fsync_s": 0.0}
    names = {'icestream_kafka_request_seconds_count{api="Produce"': "requests",
             'icestream_kafka_request_seconds_sum{api="Produce"': "request_s",
             "icestream_storage_fsync_seconds_count": "fsyncs",
             "icestream_storage_fsync_seconds_sum": "fsync_s"}
    for line in text.splitlines():
        for prefix, key in names.items():
            if line.startswith(prefix):
                out[key] += float(line.split()[-1])
    return out


def delete_topic(bootstrap: str, topic: str) -> None:
    """A run writes gigabytes: its topic goes as soon as it is measured (the disk is shared)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
    except Exception as e:  # never created (a failed run), or the broker is gone
        print(f"deleting {topic}: {e}", file=sys.stderr)


def run_one(args, broker, loadgen: str, topic: str, partitions: int, mode: str) -> dict:
    try:
        return measure(args, broker, loadgen, topic, partitions, mode)
    finally:
        delete_topic(broker.bootstrap, topic)


def measure(args, broker, loadgen: str, topic: str, partitions: int, mode: str) -> dict:
    free = shutil.disk_usage(broker.data_dir).free / GIB
    if free < args.min_free_gib:
        return {"mode": mode, "partitions": partitions, "topic": topic, "failed": True,
                "error": f"not started: {free:.1f} GiB free on the data dir's disk"}
    subprocess.run([loadgen, "create-topics", "--brokers", broker.bootstrap,
                    f"{topic}:{partitions}"], check=True, stdout=subprocess.DEVNULL)
    base, _, lib = mode.partition("@")
    extra = [a.replace("TXN", f"txn-{topic}") for a in MODE_ARGS[base]]
    env = dict(os.environ)
    if lib:
        env["LD_LIBRARY_PATH"] = args.librdkafka
    cmd = [loadgen, "produce", "--brokers", broker.bootstrap, "--topic", topic,
           "--partitions", str(partitions), "--records", "100000000",
           "--duration-secs", str(args.seconds), "--window", str(args.window),
           "--linger-ms", "5", *extra]
    m0, cpu0, client0 = produce_metrics(broker.admin_url), cpu_seconds(broker.pid), children_cpu()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    client = children_cpu() - client0
    cpu = cpu_seconds(broker.pid) - cpu0
    m1 = produce_metrics(broker.admin_url)
    if p.returncode != 0:
        # Recorded and reported, not fatal: the other runs still count.
        return {"mode": mode, "partitions": partitions, "topic": topic, "failed": True,
                "error": p.stderr.strip()[-2000:]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    gib = res["bytes"] / GIB
    reqs = m1["requests"] - m0["requests"]
    out = {"mode": mode, "partitions": partitions, "topic": topic,
           "records_per_s": res["records_per_s"], "mb_per_s": res["mb_per_s"],
           "seconds": res["seconds"], "latency_ms": res["latency_ms"],
           "broker_cpu_s_per_gib": cpu / gib, "client_cpu_s_per_gib": client / gib,
           "broker_cpu_util": cpu / res["seconds"], "client_cpu_util": client / res["seconds"],
           "produce_requests_per_s": reqs / res["seconds"],
           "kib_per_request": res["bytes"] / 1024 / reqs if reqs else None,
           "fsyncs_per_s": (m1["fsyncs"] - m0["fsyncs"]) / res["seconds"],
           # The broker's own time per Produce request (received to answered) and per
           # fdatasync: with one request in flight per partition, these set the pace.
           "request_ms": 1000 * (m1["request_s"] - m0["request_s"]) / reqs if reqs else None,
           "fsync_ms": 1000 * (m1["fsync_s"] - m0["fsync_s"]) / (m1["fsyncs"] - m0["fsyncs"])
           if m1["fsyncs"] > m0["fsyncs"] else None,
           # Produce requests the broker held at once, on average (Little's law).
           "requests_in_broker": (m1["request_s"] - m0["request_s"]) / res["seconds"],
           "transactions": res.get("transactions", 0),
           "flush_commit_ms": res.get("flush_commit_ms")}
    return out


def fmt(r: dict) -> str:
    s = (f"{r['mode']:17} p{r['partitions']}: {r['records_per_s']:9.0f} rec/s "
         f"{r['mb_per_s']:7.1f} MB/s  p50/p99 {r['latency_ms']['p50']:.1f}/"
         f"{r['latency_ms']['p99']:.1f} ms  broker {r['broker_cpu_s_per_gib']:.2f} CPU s/GiB "
         f"({r['broker_cpu_util']:.2f} cores)  client {r['client_cpu_s_per_gib']:.2f} "
         f"({r['client_cpu_util']:.2f})  {r['produce_requests_per_s']:.0f} req/s "
         f"{r['kib_per_request'] or 0:.0f} KiB/req  broker {r['request_ms'] or 0:.1f} ms/req "
         f"({r['requests_in_broker']:.2f} held)  {r['fsyncs_per_s']:.0f} fsync/s of "
         f"{r['fsync_ms'] or 0:.1f} ms")
    if r["transactions"]:
        s += (f"  {r['transactions']} txns, flush+commit p50 "
              f"{r['flush_commit_ms']['p50']:.1f} ms")
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--smp", default="1,2")
    ap.add_argument("--partitions", default="1,6")
    ap.add_argument("--modes", default="plain,idempotent,transactional")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--window", type=int, default=8192)
    ap.add_argument("--commit-ms", type=int, default=100)
    ap.add_argument("--librdkafka", help="directory of the librdkafka.so.1 for MODE@lib modes")
    ap.add_argument("--min-free-gib", type=float, default=8)
    ap.add_argument("--out", type=Path, default=Path("/tmp/idem-bench"))
    args = ap.parse_args()
    modes = args.modes.split(",")
    MODE_ARGS["transactional"] += ["--commit-ms", str(args.commit_ms)]
    args.out.mkdir(parents=True, exist_ok=True)
    binary = os.environ.get("ICESTREAM_BIN", "(default debug build)")
    results = []
    for smp in [int(x) for x in args.smp.split(",")]:
        tmp = Path(tempfile.mkdtemp(prefix="icestream-idem-bench-"))
        factory = ScriptBrokers(tmp, smp=smp)
        failed = False
        try:
            b = factory()
            for rnd in range(args.rounds):
                for parts in [int(x) for x in args.partitions.split(",")]:
                    row = {}
                    for mode in modes:
                        topic = f"{mode.replace('@', '-')}-s{smp}-p{parts}-r{rnd}"
                        r = run_one(args, b, args.loadgen, topic, parts, mode)
                        r.update(smp=smp, round=rnd + 1, loadavg=os.getloadavg()[0])
                        results.append(r)
                        if r.get("failed"):
                            failed = True
                            print(f"smp {smp} round {rnd + 1} {mode} p{parts} FAILED: "
                                  f"{r['error']}", flush=True)
                            continue
                        row[mode] = r
                        print(f"smp {smp} round {rnd + 1} {fmt(r)}", flush=True)
                    if "plain" in row:
                        ratios = {m: row[m]["records_per_s"] / row["plain"]["records_per_s"]
                                  for m in row if m != "plain"}
                        print(f"smp {smp} round {rnd + 1} p{parts} ratios to plain: "
                              + ", ".join(f"{m} {v:.3f}" for m, v in ratios.items()), flush=True)
        finally:
            factory.stop_all()
            if failed and factory.made:  # the broker's side of a failed run
                shutil.copy(factory.made[0].log_path, args.out / f"broker-smp{smp}.log")
            shutil.rmtree(tmp, ignore_errors=True)
    (args.out / "results.json").write_text(json.dumps(
        {"binary": binary, "seconds": args.seconds, "window": args.window, "runs": results},
        indent=1))
    md = [f"# Plain, idempotent and transactional produce ({binary})", "",
          "| smp | round | partitions | mode | records/s | MB/s | ratio to plain | p50 / p99 ms "
          "| broker CPU s/GiB | client CPU s/GiB | Produce req/s | KiB/req | broker ms/req "
          "| requests held | fsync/s | fsync ms |", "|" + "---|" * 16]
    for r in results:
        if r.get("failed"):
            md.append(f"| {r['smp']} | {r['round']} | {r['partitions']} | {r['mode']} "
                      f"| failed: {r['error'].splitlines()[-1]} |" + " |" * 13)
            continue
        plain = next((x for x in results if x["mode"] == "plain" and not x.get("failed")
                      and x["smp"] == r["smp"]
                      and x["round"] == r["round"] and x["partitions"] == r["partitions"]), None)
        ratio = r["records_per_s"] / plain["records_per_s"] if plain else float("nan")
        md.append(f"| {r['smp']} | {r['round']} | {r['partitions']} | {r['mode']} "
                  f"| {r['records_per_s']:,.0f} | {r['mb_per_s']:.1f} | {ratio:.2f} "
                  f"| {r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.1f} "
                  f"| {r['broker_cpu_s_per_gib']:.2f} | {r['client_cpu_s_per_gib']:.2f} "
                  f"| {r['produce_requests_per_s']:,.0f} | {r['kib_per_request'] or 0:.0f} "
                  f"| {r['request_ms'] or 0:.1f} | {r['requests_in_broker']:.2f} "
                  f"| {r['fsyncs_per_s']:.0f} | {r['fsync_ms'] or 0:.1f} |")
    (args.out / "report.md").write_text("\n".join(md) + "\n")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
