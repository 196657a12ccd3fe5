"""The two systems under test, started fresh on a temp dir and pinned with taskset: Icestream
(`icestream serve`, one node or three on loopback) and Apache Kafka 4.x in KRaft mode (one node
or three combined broker+controller nodes), from the Maven jars that tests/compat/build.sh
resolves into tests/compat/java/target/classpath.txt (the same resolution and start steps as
tests/e2e/apache_kafka.py, extended to three nodes, production JVM flags and an fsync variant).
Plus /proc readers for a process's CPU seconds and bytes written."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLASSPATH_FILE = ROOT / "tests" / "compat" / "java" / "target" / "classpath.txt"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Kafka's documented production JVM settings (docs "6.6 Java Version": "-Xmx6g -Xms6g
# -XX:MetaspaceSize=96m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
# -XX:G1HeapRegionSize=16M -XX:MinMetaspaceFreeRatio=50 -XX:MaxMetaspaceFreeRatio=80"), with the
# heap size a parameter: 6 GiB per broker is sized for a dedicated machine, not three brokers
# sharing one small VM with the load generator. kafka-run-class.sh adds the rest.
KAFKA_JVM_FLAGS = [
    "-XX:MetaspaceSize=96m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:G1HeapRegionSize=16M",
    "-XX:MinMetaspaceFreeRatio=50", "-XX:MaxMetaspaceFreeRatio=80",
    "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true",
]

# The broker settings of the distribution's config/server.properties (what "as shipped" means)
# that matter for throughput; Kafka's docs recommend keeping the default flush policy (no
# application fsync, durability from replication).
KAFKA_SHIPPED = {
    "num.network.threads": "3",
    "num.io.threads": "8",
    "socket.send.buffer.bytes": "102400",
    "socket.receive.buffer.bytes": "102400",
    "socket.request.max.bytes": "104857600",
    "log.segment.bytes": "1073741824",
    "log.retention.hours": "168",
    "log.retention.check.interval.ms": "300000",
    "group.initial.rebalance.delay.ms": "0",
}


class Ports:
    """Loopback ports: from `VS_KAFKA_PORTS=lo-hi` (handed out in order, each checked free) or
    the kernel's free ports. Never hands one out twice in a run."""

    def __init__(self) -> None:
        rng = os.environ.get("VS_KAFKA_PORTS", "")
        self.next, self.hi = (int(rng.split("-")[0]), int(rng.split("-")[1])) if rng else (0, 0)
        self.used: set[int] = set()

    def get(self) -> int:
        while True:
            if self.hi:
                if self.next > self.hi:
                    raise RuntimeError("VS_KAFKA_PORTS exhausted")
                port, self.next = self.next, self.next + 1
            else:
                port = 0
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                port = s.getsockname()[1]
            if port not in self.used:
                self.used.add(port)
                return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (counted when it dirties the page
    cache, so writes flushed later by the kernel are still the process's), /proc/<pid>/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError(f"no write_bytes in /proc/{pid}/io")


def taskset(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"port {port} not listening after {timeout}s:\n{tail(log)}")


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


class Cluster:
    """Common part: processes, their pids, counters, stop."""

    name = ""
    procs: list[subprocess.Popen]
    bootstrap: str

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def counters(self) -> dict:
        """CPU seconds and bytes written, summed over the cluster's processes."""
        return {"cpu_s": sum(cpu_seconds(p) for p in self.pids()),
                "write_bytes": sum(write_bytes(p) for p in self.pids())}

    def alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{self.name}: a broker exited with {p.returncode}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def block_requests(path: Path) -> dict:
    """Write and flush requests completed so far by the block device holding `path`
    (/proc/diskstats; every process's, so read it around a run on an otherwise quiet disk)."""
    st = os.stat(path)
    uevent = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/uevent")
    if not uevent.exists():  # tmpfs, overlay: no block device to count
        return {"writes": 0, "flushes": 0}
    name = next((line.split("=", 1)[1].strip() for line in uevent.read_text().splitlines()
                 if line.startswith("DEVNAME=")), "")
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == name:
            return {"writes": int(f[7]), "flushes": int(f[18]) if len(f) > 18 else 0}
    return {"writes": 0, "flushes": 0}


class Icestream(Cluster):
    def __init__(self, binary: Path, workdir: Path, nodes: int, cpus: str, smp: int,
                 ports: Ports, extra: list[str] = ()):
        self.name = "icestream"
        self.binary, self.workdir, self.nodes, self.cpus, self.smp = binary, workdir, nodes, cpus, smp
        self.extra = list(extra)
        self.kafka_ports = [ports.get() for _ in range(nodes)]
        self.admin_ports = [ports.get() for _ in range(nodes)]
        self.rpc_ports = [ports.get() for _ in range(nodes)]
        # Its other listeners (schema registry, Iceberg REST catalog) get ports of their own,
        # so several nodes (and a developer's broker on the defaults) never collide.
        self.registry_ports = [ports.get() for _ in range(nodes)]
        self.catalog_ports = [ports.get() for _ in range(nodes)]
        self.procs = []
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    def command(self, i: int) -> list[str]:
        cmd = [str(self.binary), "serve", "--data-dir", str(self.workdir / f"node{i}"),
               "--kafka-addr", f"127.0.0.1:{self.kafka_ports[i]}",
               "--admin-addr", f"127.0.0.1:{self.admin_ports[i]}",
               "--schema-registry-addr", f"127.0.0.1:{self.registry_ports[i]}",
               "--iceberg-catalog-addr", f"127.0.0.1:{self.catalog_ports[i]}",
               "--smp", str(self.smp), *self.extra]
        if self.nodes > 1:
            seeds = ",".join(f"127.0.0.1:{p}" for p in self.rpc_ports)
            cmd += ["--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{self.rpc_ports[i]}",
                    "--seeds", seeds]
        return cmd

    def settings(self) -> list[str]:
        return [" ".join(self.command(i)) for i in range(self.nodes)]

    def start(self, timeout: float = 60.0) -> "Icestream":
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(self.nodes):
            log = open(self.workdir / f"node{i}.log", "ab")
            self.procs.append(subprocess.Popen(taskset(self.cpus) + self.command(i), stdout=log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               env={**os.environ, "RUST_LOG": "warn"}))
        deadline = time.monotonic() + timeout
        for i, port in enumerate(self.admin_ports):
            while not self._ready(port, "/v1/status/ready"):
                if self.procs[i].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"icestream node {i} not ready:\n"
                                       f"{tail(self.workdir / f'node{i}.log')}")
                time.sleep(0.2)
        # A multi-node cluster is formed when every node lists every node and a controller.
        while self.nodes > 1:
            views = [self._brokers(p) for p in self.admin_ports]
            if all(v and v.get("controller") is not None and len(v.get("brokers", [])) ==
                   self.nodes for v in views):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"icestream cluster did not form: {views}")
            time.sleep(0.3)
        return self

    def metric(self, name: str) -> float:
        """A counter from every node's /metrics (`name` without labels), summed."""
        total = 0.0
        for port in self.admin_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.split("{", 1)[0].split(" ", 1)[0] == name:
                        total += float(line.rsplit(" ", 1)[1])
        return total

    @staticmethod
    def _ready(port: int, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    @staticmethod
    def _brokers(port: int) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/cluster/brokers",
                                        timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None


class Kafka(Cluster):
    def __init__(self, workdir: Path, nodes: int, cpus: str, heap: str, flush_every: bool,
                 ports: Ports):
        self.name = "kafka-fsync" if flush_every else "kafka"
        self.workdir, self.nodes, self.cpus, self.heap = workdir, nodes, cpus, heap
        self.flush_every = flush_every
        self.ports = [ports.get() for _ in range(nodes)]
        self.controller_ports = [ports.get() for _ in range(nodes)]
        self.procs = []
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def properties(self, i: int) -> dict[str, str]:
        rf = str(min(self.nodes, 3))
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(self.controller_ports))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(i + 1),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]},"
                         f"CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / f"node{i}" / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": "1",
            **KAFKA_SHIPPED,
        }
        if self.flush_every:
            props["log.flush.interval.messages"] = "1"
        return props

    def jvm(self) -> list[str]:
        return ["java", f"-Xms{self.heap}", f"-Xmx{self.heap}", *KAFKA_JVM_FLAGS]

    def settings(self) -> list[str]:
        """What the report prints: the JVM command line and node 1's server.properties."""
        shown = {k: v for k, v in self.properties(0).items()
                 if k not in ("log.dirs", "listeners", "advertised.listeners",
                              "controller.quorum.voters")}
        return [" ".join(self.jvm() + ["-cp", "<classpath>", "kafka.Kafka"])] + \
            [f"{k}={v}" for k, v in shown.items()]

    def start(self, timeout: float = 120.0) -> "Kafka":
        if not shutil.which("java"):
            raise RuntimeError("java not on PATH")
        cp = CLASSPATH_FILE.read_text().strip()
        log4j = self.workdir / "log4j2.yaml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log4j.write_text(
            "Configuration:\n  Appenders:\n    Console:\n      name: STDOUT\n"
            "      PatternLayout:\n        Pattern: \"[%d] %p %m (%c)%n\"\n"
            "  Loggers:\n    Root:\n      level: WARN\n      AppenderRef:\n        - ref: STDOUT\n")
        cluster_id = "IcestreamBench" + uuid.uuid4().hex[:8]  # 22 characters, base64-safe
        base = ["-cp", cp, f"-Dlog4j2.configurationFile={log4j}"]
        for i in range(self.nodes):
            node = self.workdir / f"node{i}"
            node.mkdir(parents=True, exist_ok=True)
            props = node / "server.properties"
            props.write_text("".join(f"{k}={v}\n" for k, v in self.properties(i).items()))
            subprocess.run(["java", "-XX:TieredStopAtLevel=1", *base, "kafka.tools.StorageTool",
                            "format", "-t", cluster_id, "-c", str(props)],
                           check=True, capture_output=True, timeout=120)
        for i in range(self.nodes):
            node = self.workdir / f"node{i}"
            log = open(node / "kafka.log", "ab")
            self.procs.append(subprocess.Popen(
                taskset(self.cpus) + self.jvm() + base + ["kafka.Kafka",
                                                          str(node / "server.properties")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for i, port in enumerate(self.ports):
            wait_port(port, self.procs[i], self.workdir / f"node{i}" / "kafka.log", timeout)
        return self
