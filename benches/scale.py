#!/usr/bin/env python3
"""Start time, memory, threads, file descriptors and binary size of one broker with many
partitions (issue 23, item 3).

One run against the release binary ICESTREAM_BIN (default target/release/icestream):

1. the binary's size as built and stripped (`strip -o` of a copy; the original is untouched);
2. a fresh broker (`icestream serve` on a temp data dir, embedded defaults, loopback ports)
   and its time to ready: from process start to `/v1/status/ready` answering 200, to the
   first Metadata answer, and to Metadata naming a leader for every partition;
3. --partitions (10,000) partitions created through CreateTopics (topics of --per-topic 100,
   --topics-per-request 10 topics a request, confluent-kafka's AdminClient), timed;
4. idle after --settle (60) seconds: RSS, threads, open file descriptors, and the broker's
   CPU % over --idle-seconds (30);
5. restart (SIGTERM, start again) with the partitions on disk, timed like 2;
6. load: a producer (confluent-kafka, 1 KiB records, acks=all, linger.ms 5, round-robin over
   every partition) for --seconds (30), then a consumer reading them back (all partitions
   assigned from the beginning); RSS, CPU, threads and fds sampled every second;
7. restart after SIGTERM and after SIGKILL (crash recovery) with that data, timed like 2.

VmRSS and VmHWM come from /proc/<pid>/status, CPU from /proc/<pid>/stat (utime + stime),
sampled every --interval (1) seconds throughout. It prints a markdown report; with --out DIR
it also writes report.md, results.json and (with matplotlib, e.g. the bench venv
benches/.venv-bench) scale.png, RSS and CPU over time through the phases. The temp data is
deleted when it ends.

    ICESTREAM_BIN=target/release/icestream .venv/bin/python benches/scale.py \\
        [--partitions 10000] [--per-topic 100] [--seconds 30] [--settle 60] \\
        [--idle-seconds 30] [--smp N] [--data-parent DIR] [--out /tmp/scale-bench]
    benches/.venv-bench/bin/python benches/scale.py --plot /tmp/scale-bench
    # ICESTREAM_TEST_PORTS=LO-HI picks the broker's loopback ports in that range.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

try:  # the test venv has it; the bench venv, which only plots, does not
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    import kwire
except ImportError:
    pass

VALUE = b"x" * 1024
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOPIC_PREFIX = "scale-"


# ---------------------------------------------------------------------------- /proc


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(rest.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """Open descriptors by kind: segment files by extension, sockets, the rest by name."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/"):
            kind = "file *" + Path(target).suffix if Path(target).suffix else "file"
        else:
            kind = target.split(":")[0].split("[")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


class Sampler(threading.Thread):
    """Samples the current broker process every `interval` seconds, tagged with the phase."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval = interval
        self.pid_of = lambda: None  # the broker's pid, from its start to its exit
        self.phase = "start"
        self.samples: list[dict] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()

    def run(self) -> None:
        last: tuple[int, float, float] | None = None  # pid, time, cpu seconds
        while not self._stop.wait(self.interval):
            pid = self.pid_of()
            if pid is None:
                continue
            try:
                st = proc_status(pid)
                cpu = cpu_seconds(pid)
                fds = open_fds(pid)
            except (OSError, ValueError, IndexError):
                continue  # between stop and start
            if st.get("VmRSS") is None:
                continue  # exited, not yet reaped
            now = time.monotonic()
            pct = None
            if last and last[0] == pid:
                pct = 100 * (cpu - last[2]) / (now - last[1])
            last = (pid, now, cpu)
            self.samples.append({"t": round(now - self.t0, 2), "phase": self.phase,
                                 "rss_kib": st.get("VmRSS"), "hwm_kib": st.get("VmHWM"),
                                 "threads": st.get("Threads"), "fds": fds,
                                 "cpu_pct": None if pct is None else round(pct, 1)})

    def stop(self) -> None:
        self._stop.set()

    def of(self, phase: str) -> list[dict]:
        return [s for s in self.samples if s["phase"] == phase]


# ---------------------------------------------------------------------------- the broker


_PORT_LO, _PORT_HI = (int(x) for x in
                      os.environ.get("ICESTREAM_TEST_PORTS", "10000-32000").split("-"))


def free_ports(n: int) -> list[int]:
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        p = rng.randrange(_PORT_LO, _PORT_HI)
        if p in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        ports.append(p)
    return ports


def metadata_v1(bootstrap: str, timeout: float = 5.0) -> dict[str, list[int]]:
    """Every topic's partition leaders, from a raw Metadata v1 request (a fresh connection,
    so that no client's reconnect backoff is timed)."""
    with kwire.Conn.to(bootstrap, timeout) as conn:
        conn.send(kwire.frame(kwire.request_header(3, 1, 7, "scale-bench")
                              + kwire.i32(-1)))  # every topic
        _, body = conn.recv_response()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        v = struct.unpack_from(fmt, body, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string() -> str | None:
        nonlocal pos
        n = take(">h")
        if n < 0:
            return None
        s = body[pos:pos + n].decode()
        pos += n
        return s

    for _ in range(take(">i")):  # brokers: node id, host, port, rack
        take(">i"), string(), take(">i"), string()
    take(">i")  # controller id
    topics: dict[str, list[int]] = {}
    for _ in range(take(">i")):
        take(">h")
        name = string()
        take(">b")
        leaders = []
        for _ in range(take(">i")):
            _err, _index, leader = take(">hii")
            for _ in range(2):  # replicas, isr
                count = take(">i")
                pos += 4 * count
            leaders.append(leader)
        topics[name] = leaders
    return topics


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Broker:
    """One `icestream serve` on a data dir and fixed loopback ports, across restarts."""

    def __init__(self, binary: Path, workdir: Path, smp: int | None):
        self.binary = binary
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        kafka, admin, registry, catalog = free_ports(4)
        self.bootstrap = f"127.0.0.1:{kafka}"
        self.ready_url = f"http://127.0.0.1:{admin}/v1/status/ready"
        self.args = [str(binary), "serve", "--data-dir", str(self.data_dir),
                     "--kafka-addr", self.bootstrap, "--admin-addr", f"127.0.0.1:{admin}",
                     "--schema-registry-addr", f"127.0.0.1:{registry}",
                     "--iceberg-catalog-addr", f"127.0.0.1:{catalog}"]
        if smp:
            self.args += ["--smp", str(smp)]
        self.proc: subprocess.Popen | None = None

    def start(self, partitions: int, timeout: float = 600) -> dict:
        """Starts the broker; returns seconds from the process start to ready, to the first
        Metadata answer and to every one of `partitions` partitions led."""
        with open(self.log_path, "ab") as log:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        return self.wait_ready(t0, partitions, timeout)

    def wait_ready(self, t0: float, partitions: int, timeout: float) -> dict:
        out: dict[str, float] = {}
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"broker exited with {self.proc.returncode}; see "
                                 f"{self.log_path}:\n{self.log_tail()}")
            if "ready_s" not in out and http_status(self.ready_url) == 200:
                out["ready_s"] = time.monotonic() - t0
            if "all_led_s" not in out:
                try:
                    topics = metadata_v1(self.bootstrap)
                except (OSError, struct.error, ConnectionError):
                    topics = None
                if topics is not None:
                    out.setdefault("metadata_s", time.monotonic() - t0)
                    led = sum(sum(1 for lead in leaders if lead >= 0)
                              for name, leaders in topics.items()
                              if name and name.startswith(TOPIC_PREFIX))
                    if led >= partitions:
                        out["all_led_s"] = time.monotonic() - t0
            if len(out) == 3:
                return {k: round(v, 3) for k, v in out.items()}
            time.sleep(0.02)
        raise SystemExit(f"broker not ready after {timeout} s ({out}):\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> float:
        """Sends `sig` and returns the seconds until the process exited."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise SystemExit(f"broker did not exit {timeout} s after signal {sig}")
        return round(time.monotonic() - t0, 3)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------- load


def topic_names(partitions: int, per_topic: int) -> list[tuple[str, int]]:
    """(topic, partitions) covering `partitions` in topics of `per_topic`."""
    out = []
    for i in range((partitions + per_topic - 1) // per_topic):
        out.append((f"{TOPIC_PREFIX}{i:04d}", min(per_topic, partitions - i * per_topic)))
    return out


def create_topics(bootstrap: str, topics: list[tuple[str, int]], per_request: int) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    t0 = time.monotonic()
    for i in range(0, len(topics), per_request):
        chunk = [NewTopic(name, n, 1) for name, n in topics[i:i + per_request]]
        for name, f in admin.create_topics(chunk, operation_timeout=120,
                                           request_timeout=300).items():
            f.result(300)
    answered = time.monotonic() - t0
    total = sum(n for _, n in topics)
    while True:  # CreateTopics answers once created; a leader may come later
        led = sum(sum(1 for lead in leaders if lead >= 0)
                  for name, leaders in metadata_v1(bootstrap, 30).items()
                  if name and name.startswith(TOPIC_PREFIX))
        if led >= total:
            break
        if time.monotonic() - t0 > 600:
            raise SystemExit(f"only {led} of {total} partitions led after 600 s")
        time.sleep(0.05)
    led_s = time.monotonic() - t0
    return {"answered_s": round(answered, 3), "all_led_s": round(led_s, 3),
            "partitions_per_s": round(total / led_s)}


def produce(bootstrap: str, targets: list[tuple[str, int]], seconds: float,
            window: int) -> dict:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "compression.type": "none", "queue.buffering.max.messages": window,
                  "message.timeout.ms": 120000})
    acked = [0]
    errors: list = []

    def cb(err, _msg):
        if err is None:
            acked[0] += 1
        else:
            errors.append(err)

    n = len(targets)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        topic, part = targets[i % n]
        try:
            p.produce(topic, VALUE, partition=part, on_delivery=cb)
            i += 1
        except BufferError:
            p.poll(0.005)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(300)
    elapsed = time.monotonic() - t0
    if errors or left:
        raise SystemExit(f"produce: {len(errors)} errors ({errors[:1]}), {left} unacknowledged")
    return {"records": acked[0], "elapsed_s": round(elapsed, 2),
            "records_per_s": round(acked[0] / elapsed),
            "mib_per_s": round(acked[0] * len(VALUE) / elapsed / MIB, 1)}


def consume(bootstrap: str, targets: list[tuple[str, int]], records: int,
            stall_s: float = 30) -> dict:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "scale-bench",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([TopicPartition(t, p, -2) for t, p in targets])  # from the beginning
    got = 0
    t0 = time.monotonic()
    last = t0
    while got < records:
        msgs = c.consume(num_messages=10000, timeout=1.0)
        now = time.monotonic()
        for m in msgs:
            if m.error() is None:
                got += 1
        if msgs:
            last = now
        elif now - last > stall_s:
            break
    elapsed = time.monotonic() - t0
    c.close()
    return {"records": got, "expected": records, "elapsed_s": round(elapsed, 2),
            "records_per_s": round(got / elapsed), "mib_per_s":
            round(got * len(VALUE) / elapsed / MIB, 1)}


# ---------------------------------------------------------------------------- the run


def binary_sizes(binary: Path, tmp: Path) -> dict:
    copy = tmp / "icestream.copy"
    stripped = tmp / "icestream.stripped"
    shutil.copyfile(binary, copy)  # never strip the original
    subprocess.run(["strip", "-o", str(stripped), str(copy)], check=True)
    out = {"path": str(binary), "bytes": binary.stat().st_size,
           "stripped_bytes": stripped.stat().st_size}
    copy.unlink()
    stripped.unlink()
    return out


def snapshot(pid: int) -> dict:
    st = proc_status(pid)
    return {"rss_kib": st["VmRSS"], "hwm_kib": st["VmHWM"], "threads": st["Threads"],
            "fds": open_fds(pid)}


def summary(samples: list[dict]) -> dict:
    rss = [s["rss_kib"] for s in samples if s["rss_kib"]]
    cpu = [s["cpu_pct"] for s in samples if s["cpu_pct"] is not None]
    fds = [s["fds"] for s in samples]
    thr = [s["threads"] for s in samples]
    if not rss:
        return {}
    return {"samples": len(rss), "rss_peak_kib": max(rss),
            "rss_mean_kib": round(sum(rss) / len(rss)),
            "hwm_end_kib": samples[-1]["hwm_kib"],
            "cpu_mean_pct": round(sum(cpu) / len(cpu), 1) if cpu else None,
            "fds_max": max(fds), "threads_max": max(thr)}


def machine() -> dict:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "mem_total_gib": round(int(mem.split()[1]) / MIB, 1),
            "kernel": platform.release(), "loadavg_start": os.getloadavg(),
            "nofile": [soft, hard], "checkout": commit}


def run(args) -> dict:
    binary = Path(os.environ.get("ICESTREAM_BIN") or ROOT / "target/release/icestream")
    if not binary.exists():
        raise SystemExit(f"{binary} does not exist: build it (cargo build --release --bin "
                         "icestream) or set ICESTREAM_BIN")
    # One descriptor per partition's active segment, plus connections: the broker inherits
    # this process's limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.partitions * 2 + 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    res: dict = {"args": vars(args), "machine": machine()}
    tmp = Path(tempfile.mkdtemp(prefix="icestream-scale-", dir=args.data_parent))
    sampler = Sampler(args.interval)
    b = Broker(binary, tmp, args.smp)
    sampler.pid_of = lambda: b.proc.pid if b.proc else None
    res["command"] = " ".join(b.args)
    topics = topic_names(args.partitions, args.per_topic)
    targets = [(t, p) for p in range(args.per_topic) for t, n in topics if p < n]
    try:
        res["binary"] = binary_sizes(binary, tmp)
        sampler.start()
        phases = res["phases"] = {}

        def phase(name: str) -> None:
            sampler.phase = name
            print(f"[scale] {time.strftime('%H:%M:%S')} {name}", file=sys.stderr)

        def settle(name: str, seconds: float) -> dict:
            phase(name)
            time.sleep(seconds)
            return {**snapshot(b.proc.pid), **summary(sampler.of(name))}

        phase("start-empty")
        phases["start_empty"] = {"ready": b.start(0)}
        phases["idle_empty"] = settle("idle-empty", 10)
        phase("create")
        phases["create"] = create_topics(b.bootstrap, topics, args.topics_per_request)
        phases["create"].update(snapshot(b.proc.pid))
        phases["settled"] = settle("settle", args.settle)
        phase("idle-cpu")
        pid = b.proc.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle_seconds)
        idle_pct = 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        phases["idle_cpu"] = {"cpu_pct": round(idle_pct, 2), "seconds": args.idle_seconds,
                              **snapshot(pid), "fd_kinds": fd_kinds(pid)}

        def restart(name: str, sig: int) -> dict:
            phase(name)
            stop_s = b.stop(sig)
            ready = b.start(args.partitions)
            out = {"signal": signal.Signals(sig).name, "stop_s": stop_s, "ready": ready}
            time.sleep(5)
            return {**out, **snapshot(b.proc.pid)}

        phases["restart_term_empty"] = restart("restart-term", signal.SIGTERM)
        phase("produce")
        cpu0 = cpu_seconds(b.proc.pid)
        phases["produce"] = produce(b.bootstrap, targets, args.seconds, args.window)
        phases["produce"]["broker_cpu_s"] = round(cpu_seconds(b.proc.pid) - cpu0, 1)
        phases["produce"].update(summary(sampler.of("produce")))
        phases["after_produce"] = settle("after-produce", 5)
        phase("consume")
        cpu0 = cpu_seconds(b.proc.pid)
        phases["consume"] = consume(b.bootstrap, targets, phases["produce"]["records"])
        phases["consume"]["broker_cpu_s"] = round(cpu_seconds(b.proc.pid) - cpu0, 1)
        phases["consume"].update(summary(sampler.of("consume")))
        phases["after_consume"] = settle("after-consume", 5)
        res["data_bytes"] = sum(f.stat().st_size for f in b.data_dir.rglob("*") if f.is_file())
        phases["restart_term_data"] = restart("restart-term-data", signal.SIGTERM)
        phases["restart_kill_data"] = restart("restart-kill-data", signal.SIGKILL)
        phase("end")
        b.stop()
    finally:
        sampler.stop()
        if b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()
        res["broker_log_tail"] = b.log_tail(20)
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["samples"] = sampler.samples
    return res


# ---------------------------------------------------------------------------- the report


def mib(kib: int | None) -> str:
    return "" if kib is None else f"{kib / 1024:,.0f}"


def report(res: dict) -> str:
    m, a, ph, bn = res["machine"], res["args"], res["phases"], res["binary"]
    n = a["partitions"]
    lines = [
        f"# Start, memory and size with {n:,} partitions",
        "",
        f"Machine: {m['nproc']} cores, {m['mem_total_gib']} GiB, kernel {m['kernel']}, "
        f"load average {' / '.join(f'{x:.2f}' for x in m['loadavg_start'])} at the start, "
        f"{' / '.join(f'{x:.2f}' for x in m['loadavg_end'])} at the end; "
        f"RLIMIT_NOFILE {m['nofile'][0]} / {m['nofile'][1]}; checkout {m['checkout']}.",
        f"Broker: `{res['command']}`",
        "",
        f"**Binary:** {bn['bytes'] / MIB:,.1f} MiB as built, "
        f"{bn['stripped_bytes'] / MIB:,.1f} MiB stripped.",
        "",
        f"**Creating {n:,} partitions** ({len(topic_names(n, a['per_topic']))} topics of "
        f"{a['per_topic']}, {a['topics_per_request']} topics per CreateTopics request): "
        f"answered in {ph['create']['answered_s']:.1f} s, every partition led after "
        f"{ph['create']['all_led_s']:.1f} s ({ph['create']['partitions_per_s']:,} "
        "partitions/s).",
        "",
        "| start | stop (s) | ready probe (s) | first Metadata (s) | all partitions led (s) | RSS after 5 s (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in [("start_empty", "fresh, empty data dir"),
                       ("restart_term_empty", f"after SIGTERM, {n:,} empty partitions"),
                       ("restart_term_data", f"after SIGTERM, {n:,} partitions with data"),
                       ("restart_kill_data", f"after SIGKILL (crash recovery), with data")]:
        r = ph[key]
        rd = r["ready"]
        rss = mib(r.get("rss_kib") or ph["idle_empty"]["rss_kib"])
        lines.append(f"| {label} | {r.get('stop_s', '')} | {rd['ready_s']:.2f} | "
                     f"{rd['metadata_s']:.2f} | {rd['all_led_s']:.2f} | {rss} |")
    lines += [
        "",
        "| phase | RSS now / peak / mean (MiB) | VmHWM (MiB) | threads | open fds | broker CPU % |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, r: dict, cpu: str | None = None) -> str:
        peak = mib(r.get("rss_peak_kib"))
        mean = mib(r.get("rss_mean_kib"))
        cur = mib(r.get("rss_kib"))
        cpu = cpu if cpu is not None else (f"{r['cpu_mean_pct']}" if r.get("cpu_mean_pct")
                                           is not None else "")
        return (f"| {label} | {cur or '-'} / {peak or '-'} / {mean or '-'} | "
                f"{mib(r.get('hwm_kib') or r.get('hwm_end_kib'))} | "
                f"{r.get('threads') or r.get('threads_max')} | "
                f"{r.get('fds') or r.get('fds_max')} | {cpu} |")

    p, c = ph["produce"], ph["consume"]
    lines += [
        row("idle, no partitions (10 s)", ph["idle_empty"]),
        row(f"idle, {n:,} partitions, after {a['settle']} s settled", ph["settled"]),
        row(f"idle, {n:,} partitions, the next {a['idle_seconds']} s", ph["idle_cpu"],
            f"{ph['idle_cpu']['cpu_pct']:.2f}"),
        row(f"producing {a['seconds']} s", p),
        row("5 s after producing", ph["after_produce"]),
        row("consuming", c),
        row("5 s after consuming", ph["after_consume"]),
        "",
        f"Load: produced {p['records']:,} records of 1 KiB over {n:,} partitions in "
        f"{p['elapsed_s']} s ({p['records_per_s']:,} records/s, {p['mib_per_s']} MiB/s, "
        f"broker CPU {p['broker_cpu_s']} s); consumed {c['records']:,} of {c['expected']:,} "
        f"in {c['elapsed_s']} s ({c['records_per_s']:,} records/s, {c['mib_per_s']} MiB/s, "
        f"broker CPU {c['broker_cpu_s']} s). Data dir {res['data_bytes'] / MIB:,.0f} MiB.",
        "",
        "Open descriptors at idle with the partitions: "
        + ", ".join(f"{k} {v:,}" for k, v in ph["idle_cpu"]["fd_kinds"].items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def plot(out: Path) -> None:
    """RSS and CPU % over time, one colour band per phase."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed here: plot with the bench venv: "
              f"benches/.venv-bench/bin/python {__file__} --plot {out}")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res = json.loads((out / "results.json").read_text())
    s = []
    for x in res["samples"]:  # a gap (a restart) breaks the lines
        if not x["rss_kib"]:
            continue
        if s and x["t"] - s[-1]["t"] > 2.5 * res["args"]["interval"]:
            s.append({**s[-1], "rss_kib": float("nan"), "hwm_kib": float("nan"),
                      "cpu_pct": None})
        s.append(x)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    t = [x["t"] for x in s]
    a1.plot(t, [x["rss_kib"] / 1024 for x in s], ".-", ms=2, label="VmRSS")
    a1.plot(t, [x["hwm_kib"] / 1024 for x in s], ":", label="VmHWM")
    a1.set_ylabel("MiB")
    a1.legend(loc="upper left")
    a2.plot(t, [x["cpu_pct"] if x["cpu_pct"] is not None else float("nan") for x in s],
            ".-", ms=2, color="tab:red")
    a2.set_ylabel("broker CPU % (of one core)")
    a2.set_xlabel("seconds since the bench started")
    # One shaded band and label per run of samples in the same phase.
    start = 0
    for i in range(1, len(s) + 1):
        if i == len(s) or s[i]["phase"] != s[start]["phase"]:
            for ax in (a1, a2):
                ax.axvspan(s[start]["t"], s[i - 1]["t"], alpha=0.08 * (1 + start % 2),
                           color="grey")
            a1.annotate(s[start]["phase"], (s[start]["t"], 1.0), xycoords=("data", "axes fraction"),
                        rotation=60, fontsize=7, va="bottom")
            start = i
    fig.suptitle(f"icestream with {res['args']['partitions']:,} partitions", y=0.995)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=110)
    print(f"wrote {out / 'scale.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=10000)
    ap.add_argument("--per-topic", type=int, default=100)
    ap.add_argument("--topics-per-request", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30, help="producing time")
    ap.add_argument("--settle", type=float, default=60, help="idle time after creation")
    ap.add_argument("--idle-seconds", type=float, default=30, help="idle CPU window")
    ap.add_argument("--window", type=int, default=100000,
                    help="records the producer may hold unacknowledged (librdkafka's default)")
    ap.add_argument("--interval", type=float, default=1.0, help="sampling period (s)")
    ap.add_argument("--smp", type=int, help="--smp for the broker (default: its own)")
    ap.add_argument("--data-parent", help="where the temp data dir goes (default $TMPDIR)")
    ap.add_argument("--out", type=Path, help="write report.md, results.json, scale.png here")
    ap.add_argument("--plot", type=Path, metavar="DIR", help="only draw DIR/scale.png")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot)
        return
    res = run(args)
    text = report(res)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text)
        (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str))
        plot(args.out)


if __name__ == "__main__":
    main()
