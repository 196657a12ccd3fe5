#!/usr/bin/env python3
"""Icestream against Apache Kafka on the same machine, in one run (issue 23, item 1).

For each topology (one node RF=1, three nodes on loopback RF=3) and each system (Icestream;
Kafka as shipped, no fsync; Kafka with log.flush.interval.messages=1), starts the brokers fresh
on a temp dir, pins them to the broker cores and every client to the client cores, and runs:

- produce throughput for each (partitions, acks, client), then consume throughput of the same
  records, each with the brokers' CPU seconds (/proc/<pid>/stat) and bytes written
  (/proc/<pid>/io write_bytes) over the phase, and the client's own CPU seconds;
- ack latency p50/p99/p99.9 at each fixed rate (open loop, linger 1 ms; ProducerPerformance
  sends --latency-warmup-seconds x rate warm-up records first, which --warmup-records leaves
  out of its latency);
- end-to-end latency, produce to consume: librdkafka at the first fixed rate, and Kafka's own
  EndToEndLatency tool (one record at a time).

Each case's topic is deleted (`icestream-loadgen delete-topics`) as soon as the case has been
measured, on every system alike, so a run no longer keeps every case's data until the cluster
stops; a failed delete is logged and recorded, never fatal.

Clients: `icestream-loadgen` (librdkafka, benches/load) and Kafka's ProducerPerformance /
ConsumerPerformance / EndToEndLatency from the kafka-tools jar. Results go to results.jsonl;
report.py turns them into report.md and PNG plots. Normally started by run.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brokers import CLASSPATH_FILE, Icestream, Kafka, Ports, taskset

RECORD_BYTES = 1024


def log(msg: str) -> None:
    print(f"[vs_kafka {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Runner:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.ports = Ports()
        self.out = open(Path(args.out) / "results.jsonl", "a")
        self.cp = CLASSPATH_FILE.read_text().strip()

    # ------------------------------------------------------------------ clients
    def client(self, cmd: list[str], timeout: float) -> tuple[str, float, float, int]:
        """Runs one client pinned to the client cores: stdout, wall s, client CPU s, rc."""
        c0, t0 = children_cpu(), time.monotonic()
        try:
            p = subprocess.run(taskset(self.a.client_cpus) + cmd, capture_output=True,
                               text=True, timeout=timeout)
            out, err, rc = p.stdout, p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:  # killed; the phase is reported as failed
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else ""
            err, rc = f"timed out after {timeout:.0f} s", -1
        wall, cpu = time.monotonic() - t0, children_cpu() - c0
        if rc != 0:
            log(f"client failed ({rc}): {' '.join(cmd[:3])}...\n{err[-2000:]}")
        return out, wall, cpu, rc

    def java(self, cls: str, *args: str) -> list[str]:
        return ["java", f"-Xmx{self.a.client_heap}", "-cp", self.cp, cls, *args]

    def loadgen(self, *args: str) -> list[str]:
        return [self.a.loadgen, *args]

    def produce(self, cl, client: str, topic: str, parts: int, acks: str, records: int,
                rate: int = 0) -> dict:
        linger = str(self.a.latency_linger_ms if rate else 5)
        # ProducerPerformance at a fixed rate: warm-up records first, sent at the same rate and
        # left out of the steady-state latency (KIP-1052), so the JVM's start and JIT do not
        # count; `records` are then measured. (librdkafka's `produce` has its own, flushed
        # warm-up of 100 records per partition before it measures.)
        warmup = rate * self.a.latency_warmup_seconds if rate and client == "java" else 0
        if client == "librdkafka":
            cmd = self.loadgen("produce", "--brokers", cl.bootstrap, "--topic", topic,
                               "--partitions", str(parts), "--records", str(records),
                               "--duration-secs", str(self.a.max_seconds),
                               "--record-bytes", str(RECORD_BYTES), "--window", "8192",
                               "--acks", acks, "--linger-ms", linger, "--rate", str(rate))
        else:
            cmd = self.java("org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                            "--num-records", str(records + warmup),
                            "--record-size", str(RECORD_BYTES),
                            *(["--warmup-records", str(warmup)] if warmup else []),
                            "--throughput", str(rate or -1), "--producer-props",
                            f"bootstrap.servers={cl.bootstrap}", f"acks={acks}",
                            f"linger.ms={linger}", "batch.size=1000000",
                            "compression.type=none", "enable.idempotence=false")
        before = cl.counters()
        out, wall, cpu, rc = self.client(cmd, self.a.max_seconds * 3 + 120)
        after = cl.counters()
        res = {"ok": rc == 0, "client_cpu_s": cpu, "client_wall_s": wall,
               "broker_cpu_s": after["cpu_s"] - before["cpu_s"],
               "broker_write_bytes": after["write_bytes"] - before["write_bytes"]}
        if client == "librdkafka":
            j = json.loads(out.strip().splitlines()[-1]) if rc == 0 and out.strip() else {}
            res.update(bytes=j.get("bytes", 0), seconds=j.get("seconds"),
                       mb_per_s=j.get("mb_per_s", 0), latency_ms=j.get("latency_ms", {}))
        else:
            # "N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
            #  a ms 50th, b ms 95th, c ms 99th, d ms 99.9th." With --warmup-records a second
            # line, "N steady state records sent, ...", covers the records after the warm-up:
            # that one is taken.
            ms = list(re.finditer(
                r"(\d+)( steady state)? records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), "
                r"[\d.]+ ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, "
                r"\d+ ms 95th, (\d+) ms 99th, (\d+) ms 99.9th", out))
            steady = [x for x in ms if x[2]]
            m = (steady or ms or [None])[-1]
            if warmup and not steady:
                m = None  # asked for a warm-up and got no steady-state line: not comparable
            res["warmup_records"] = warmup
            if m:
                n, rps = int(m[1]), float(m[3])
                res.update(bytes=n * RECORD_BYTES, seconds=n / rps if rps else None,
                           mb_per_s=rps * RECORD_BYTES / 1e6,
                           latency_ms={"p50": float(m[6]), "p99": float(m[7]),
                                       "p999": float(m[8]), "max": float(m[5])})
            else:
                res.update(ok=False, bytes=0, mb_per_s=0, latency_ms={})
        return res

    def consume(self, cl, client: str, topic: str, parts: int, records: int) -> dict:
        if client == "librdkafka":
            cmd = self.loadgen("consume", "--brokers", cl.bootstrap, "--topic", topic,
                               "--partitions", str(parts), "--records", str(records),
                               "--timeout-secs", str(self.a.max_seconds * 2 + 30))
        else:
            cmd = self.java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
                            cl.bootstrap, "--topic", topic, "--num-records", str(records),
                            "--timeout", str((self.a.max_seconds * 2 + 30) * 1000),
                            "--group", f"bench-{topic}")
        before = cl.counters()
        out, wall, cpu, rc = self.client(cmd, self.a.max_seconds * 3 + 120)
        after = cl.counters()
        res = {"ok": rc == 0, "client_cpu_s": cpu, "client_wall_s": wall,
               "broker_cpu_s": after["cpu_s"] - before["cpu_s"],
               "broker_write_bytes": after["write_bytes"] - before["write_bytes"]}
        if client == "librdkafka":
            j = json.loads(out.strip().splitlines()[-1]) if rc == 0 and out.strip() else {}
            res.update(bytes=j.get("bytes", 0), seconds=j.get("seconds"),
                       mb_per_s=j.get("mb_per_s", 0))
        else:
            # Header then: start.time, end.time, data.consumed.in.MB, MB.sec,
            # data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
            # fetch.nMsg.sec. The fetch.* figures leave out the group join; MB there is MiB.
            rows = [ln.split(",") for ln in out.splitlines() if ln.count(",") >= 9]
            row = rows[-1] if rows and not rows[-1][0].startswith("start") else None
            if row:
                nmsg = int(float(row[4]))
                fetch_ms = float(row[7])
                res.update(bytes=nmsg * RECORD_BYTES, seconds=fetch_ms / 1000,
                           mb_per_s=float(row[8]) * 1.048576)
                res["ok"] = res["ok"] and nmsg >= records
            else:
                res.update(ok=False, bytes=0, mb_per_s=0)
        return res

    def e2e(self, cl, client: str, topic: str, acks: str, rate: int, records: int) -> dict:
        if client == "librdkafka":
            cmd = self.loadgen("e2e", "--brokers", cl.bootstrap, "--topic", topic,
                               "--partitions", "1", "--rate", str(rate), "--records",
                               str(records), "--record-bytes", str(RECORD_BYTES), "--acks", acks,
                               "--linger-ms", str(self.a.latency_linger_ms))
            out, wall, cpu, rc = self.client(cmd, records / rate + 120)
            j = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            return {"ok": rc == 0, "latency_ms": j.get("latency_ms", {}), "rate": rate}
        # EndToEndLatency: one record at a time, each sent, acknowledged and consumed before
        # the next; "Percentiles: 50th = a, 99th = b, 99.9th = c" in ms.
        cmd = self.java("org.apache.kafka.tools.EndToEndLatency", cl.bootstrap, topic,
                        str(records), acks, str(RECORD_BYTES))
        out, wall, cpu, rc = self.client(cmd, 600)
        m = re.search(r"50th = ([\d.]+), 99th = ([\d.]+), 99.9th = ([\d.]+)", out)
        lat = {"p50": float(m[1]), "p99": float(m[2]), "p999": float(m[3])} if m else {}
        return {"ok": rc == 0 and bool(m), "latency_ms": lat, "rate": "one at a time"}

    # ------------------------------------------------------------------ the matrix
    def record(self, **kv) -> None:
        self.out.write(json.dumps(kv) + "\n")
        self.out.flush()

    def create_topics(self, cl, rf: int, specs: list[str]) -> None:
        cfg = ["--config", "min.insync.replicas=2"] if rf >= 3 else []
        cmd = self.loadgen("create-topics", "--brokers", cl.bootstrap,
                           "--replication-factor", str(rf), *cfg, *specs)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if p.returncode != 0:
            raise RuntimeError(f"create-topics on {cl.name} failed: {p.stderr[-2000:]}")

    def delete_topic(self, cl, base: dict, topic: str) -> None:
        """Deletes one measured case's topic; a failure is logged and recorded, not raised."""
        t0 = time.monotonic()
        cmd = self.loadgen("delete-topics", "--brokers", cl.bootstrap, topic)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            ok, err = p.returncode == 0, p.stderr.strip()[-1000:]
        except subprocess.TimeoutExpired:
            ok, err = False, "timed out after 120 s"
        secs = time.monotonic() - t0
        if ok:
            log(f"{cl.name}: deleted {topic} ({secs:.1f} s)")
        else:
            log(f"{cl.name}: delete-topics {topic} FAILED (kept, the run goes on): {err}")
        self.record(kind="delete", **base, topic=topic, ok=ok, seconds=secs,
                    **({} if ok else {"error": err}))

    def system(self, kind: str, nodes: int, workdir: Path):
        if kind == "icestream":
            return Icestream(Path(self.a.broker), workdir, nodes, self.a.broker_cpus,
                             self.a.smp, self.ports)
        return Kafka(workdir, nodes, self.a.broker_cpus, self.a.kafka_heap,
                     kind == "kafka-fsync", self.ports)

    def run_system(self, kind: str, nodes: int) -> None:
        rf = min(nodes, 3)
        workdir = Path(tempfile.mkdtemp(prefix=f"vs-kafka-{kind}-{nodes}n-",
                                        dir=self.a.data_parent))
        cl = self.system(kind, nodes, workdir)
        base = {"system": kind, "nodes": nodes, "rf": rf}
        self.record(kind="settings", **base, settings=cl.settings())
        log(f"{kind}, {nodes} node(s): starting in {workdir}")
        t0 = time.monotonic()
        try:
            cl.start()
            self.record(kind="start", **base, seconds=time.monotonic() - t0)
            runs = [(p, a, c) for p in self.a.partitions for a in self.a.acks
                    for c in self.a.clients]
            lat = [(a, c, r) for a in self.a.acks for c in self.a.clients for r in self.a.rates]
            specs = [f"tp-{c}-p{p}-a{a}:{p}" for p, a, c in runs]
            specs += [f"lat-{c}-a{a}-r{r}:{self.a.latency_partitions}" for a, c, r in lat]
            specs += [f"e2e-{c}-a{a}:1" for a in self.a.acks for c in self.a.clients]
            self.create_topics(cl, rf, specs)
            acked: dict[tuple, int] = {}
            for p, a, c in runs:
                topic = f"tp-{c}-p{p}-a{a}"
                log(f"{kind} {nodes}n: produce {topic}")
                # ProducerPerformance has no time limit: it gets as many records as librdkafka
                # had acknowledged in this case within --max-seconds (a slow broker, e.g. Kafka
                # fsyncing every message, must not make it run for many minutes).
                n = self.a.records if c == "librdkafka" else \
                    min(self.a.records, acked.get((p, a)) or self.a.records)
                res = self.produce(cl, c, topic, p, a, n)
                if c == "librdkafka" and res.get("bytes"):
                    acked[(p, a)] = res["bytes"] // RECORD_BYTES
                self.record(kind="produce", **base, client=c, partitions=p, acks=a, **res)
                cl.alive()
                log(f"{kind} {nodes}n: consume {topic}")
                n = res.get("bytes", 0) // RECORD_BYTES or self.a.records
                res = self.consume(cl, c, topic, p, n)
                self.record(kind="consume", **base, client=c, partitions=p, acks=a, **res)
                cl.alive()
                self.delete_topic(cl, base, topic)
            for a, c, r in lat:
                topic = f"lat-{c}-a{a}-r{r}"
                log(f"{kind} {nodes}n: ack latency at {r}/s, {topic}")
                res = self.produce(cl, c, topic, self.a.latency_partitions, a,
                                   r * self.a.latency_seconds, rate=r)
                self.record(kind="latency", **base, client=c, acks=a, rate=r,
                            partitions=self.a.latency_partitions, **res)
                cl.alive()
                self.delete_topic(cl, base, topic)
            for a in self.a.acks:
                for c in self.a.clients:
                    topic = f"e2e-{c}-a{a}"
                    r = self.a.rates[0]
                    n = r * self.a.latency_seconds if c == "librdkafka" else self.a.e2e_serial
                    log(f"{kind} {nodes}n: end-to-end latency, {topic}")
                    res = self.e2e(cl, c, topic, a, r, n)
                    self.record(kind="e2e", **base, client=c, acks=a, **res)
                    cl.alive()
                    self.delete_topic(cl, base, topic)
        except Exception as e:  # one system failing must not lose the others' results
            log(f"{kind} {nodes}n FAILED: {e}")
            self.record(kind="error", **base, error=str(e)[-3000:])
        finally:
            cl.stop()
            if not self.a.keep:
                shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (~3 min): one node, 6 partitions, acks=all, small counts")
    ap.add_argument("--broker", required=True, help="the icestream release binary")
    ap.add_argument("--loadgen", required=True, help="benches/load's icestream-loadgen binary")
    ap.add_argument("--out", required=True, help="report directory")
    ap.add_argument("--data-parent", required=True, help="where the brokers' temp dirs go")
    ap.add_argument("--systems", default="icestream,kafka,kafka-fsync")
    ap.add_argument("--nodes", default="1,3", help="topologies: 1 (RF=1) and/or 3 (RF=3)")
    ap.add_argument("--partitions", default="1,6")
    ap.add_argument("--acks", default="1,all")
    ap.add_argument("--clients", default="librdkafka,java")
    ap.add_argument("--records", type=int, default=2_000_000, help="per produce run")
    ap.add_argument("--max-seconds", type=int, default=60, help="cap of one produce run")
    ap.add_argument("--rates", default="10000,50000", help="fixed rates for ack latency, rec/s")
    ap.add_argument("--latency-seconds", type=int, default=20)
    ap.add_argument("--latency-warmup-seconds", type=int, default=2,
                    help="ProducerPerformance's fixed-rate runs first send rate x this many "
                         "records (--warmup-records), left out of their latency")
    ap.add_argument("--latency-linger-ms", type=int, default=1,
                    help="linger.ms of both clients in the fixed-rate and end-to-end runs")
    ap.add_argument("--latency-partitions", type=int, default=1)
    ap.add_argument("--e2e-serial", type=int, default=5000,
                    help="records of Kafka's EndToEndLatency (one at a time)")
    ap.add_argument("--broker-cpus", default="0", help="taskset list for every broker")
    ap.add_argument("--client-cpus", default="1", help="taskset list for every client")
    ap.add_argument("--smp", type=int, default=1, help="icestream --smp (shards)")
    ap.add_argument("--kafka-heap", default="1g", help="Kafka's -Xms/-Xmx per broker")
    ap.add_argument("--client-heap", default="512m", help="-Xmx of Kafka's perf tools")
    ap.add_argument("--keep", action="store_true", help="keep the brokers' temp dirs")
    a = ap.parse_args()
    if a.quick:
        # Smoke-run sizes for every option not given explicitly (so `--quick --nodes 3` works).
        quick = {"nodes": "1", "partitions": "6", "acks": "all", "records": 200_000,
                 "max_seconds": 20, "rates": "10000", "latency_seconds": 5, "e2e_serial": 1000}
        for k, v in quick.items():
            if getattr(a, k) == ap.get_default(k):
                setattr(a, k, v)
    for k in ("systems", "clients", "acks"):
        setattr(a, k, [x for x in getattr(a, k).split(",") if x])
    for k in ("nodes", "partitions", "rates"):
        setattr(a, k, [int(x) for x in getattr(a, k).split(",") if x])
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "results.jsonl").write_text("")
    r = Runner(a)
    r.record(kind="run", args={k: v for k, v in vars(a).items()}, started=time.time())
    for nodes in a.nodes:
        for kind in a.systems:
            r.run_system(kind, nodes)
    r.record(kind="done", finished=time.time())
    log(f"results: {Path(a.out) / 'results.jsonl'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
