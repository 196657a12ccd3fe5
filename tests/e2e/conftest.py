"""Fixtures that run the real `icestream` binary and talk to it with real clients.

The binary is $ICESTREAM_BIN, else the debug build in the target dir that
scripts/test uses ($CARGO_TARGET_DIR or ~/.cache/icestream/target).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def broker_binary() -> Path:
    env = os.environ.get("ICESTREAM_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/icestream/target")
    return Path(target) / "debug" / "icestream"


# Listening ports come from below the kernel's ephemeral range (32768-60999 on Linux): a port
# the kernel hands out for bind(0) is soon handed again as the source port of some outbound
# connection (weed's internal gRPC, a client), and the server started later finds it taken.
# Ports handed out once are not handed again in this run, so two servers never share one.
# ICESTREAM_TEST_PORTS=LO-HI narrows the range, so that two test runs on one machine (a
# benches/repeat.sh loop beside the suite) never pick the same port.
_PORT_LO, _PORT_HI = (int(x) for x in os.environ.get("ICESTREAM_TEST_PORTS", "10000-32000").split("-"))
_handed: set[int] = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(lo: int = _PORT_LO, hi: int = _PORT_HI, pair_offset: int | None = None) -> int:
    """A free loopback port in [lo, hi); with `pair_offset`, port + pair_offset is free too."""
    for _ in range(1000):
        p = _rng.randrange(lo, hi)
        ports = [p] if pair_offset is None else [p, p + pair_offset]
        if any(q in _handed for q in ports) or not all(port_is_free(q) for q in ports):
            continue
        _handed.update(ports)
        return p
    raise RuntimeError(f"no free port in [{lo}, {hi})")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, dict]:
    """(status, body, headers) of a GET; HTTP error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace"), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), dict(e.headers)


class BrokerDied(Exception):
    pass


class Broker:
    """One `icestream serve` process with its own data dir and loopback ports.

    The ports and data dir stay the same across stop()/start()/restart()/kill9().
    """

    def __init__(self, workdir: Path, smp: int = 2, args: list[str] | None = None,
                 env: dict[str, str] | None = None, use_default_flags: bool = True):
        self.binary = broker_binary()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        self.kafka_port = free_port()
        self.admin_port = free_port()
        self.schema_registry_port = free_port()
        self.iceberg_catalog_port = free_port()
        self.smp = smp
        self.extra_args = list(args or [])
        self.extra_env = dict(env or {})
        self.use_default_flags = use_default_flags
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.starts = 0

    # ------------------------------------------------------------------ addresses
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def schema_registry_url(self) -> str:
        return f"http://127.0.0.1:{self.schema_registry_port}"

    @property
    def iceberg_catalog_url(self) -> str:
        return f"http://127.0.0.1:{self.iceberg_catalog_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # ------------------------------------------------------------------ lifecycle
    def command(self) -> list[str]:
        cmd = [str(self.binary), "serve"]
        if self.use_default_flags:
            cmd += [
                "--data-dir", str(self.data_dir),
                "--kafka-addr", self.bootstrap,
                "--admin-addr", f"127.0.0.1:{self.admin_port}",
                "--schema-registry-addr", f"127.0.0.1:{self.schema_registry_port}",
                "--iceberg-catalog-addr", f"127.0.0.1:{self.iceberg_catalog_port}",
                "--smp", str(self.smp),
            ]
        return cmd + self.extra_args

    def start(self, timeout: float = READY_TIMEOUT_S) -> "Broker":
        assert not self.running(), "broker already running"
        if not self.binary.exists():
            pytest.fail(f"broker binary {self.binary} does not exist: build it with "
                        "`cargo build --bins` or set ICESTREAM_BIN", pytrace=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        # Without default flags the registry would take its default port 8081.
        env.setdefault("ICESTREAM_SCHEMA_REGISTRY_ADDR", f"127.0.0.1:{self.schema_registry_port}")
        env.setdefault("ICESTREAM_ICEBERG_CATALOG_ADDR", f"127.0.0.1:{self.iceberg_catalog_port}")
        env.update(self.extra_env)
        self._log_file = open(self.log_path, "ab")
        self.starts += 1
        self._log_file.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.admin_url}/v1/status/ready"
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerDied(f"broker exited with {self.proc.returncode} before it was "
                                 f"ready; log:\n{self.log_tail()}")
            try:
                status, _, _ = http_get(url, timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise TimeoutError(f"broker not ready after {timeout}s ({last}); log:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds.
        Returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        self._close_log()
        self.proc = None
        return code

    def kill9(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_log()
        self.proc = None

    def restart(self, timeout: float = READY_TIMEOUT_S) -> "Broker":
        self.stop()
        return self.start(timeout)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # ------------------------------------------------------------------ inspection
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / "kafka" / topic / str(partition)


# ---------------------------------------------------------------------------- pytest hooks


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def broker_factory(tmp_path, request):
    """Makes brokers: broker_factory(args=[...], env={...}, start=True, smp=2)."""
    made: list[Broker] = []
    counter = itertools.count()

    def make(args=None, env=None, start=True, smp=2, use_default_flags=True) -> Broker:
        b = Broker(tmp_path / f"broker{next(counter)}", smp=smp, args=args, env=env,
                   use_default_flags=use_default_flags)
        made.append(b)
        if start:
            b.start()
        return b

    yield make

    crashed = []
    for b in made:
        if b.proc is not None and b.proc.poll() is not None:
            crashed.append(f"{b.workdir.name} exited with code {b.proc.returncode} during the test")
        b.stop()
    rep = getattr(request.node, "rep_call", None)
    if crashed or rep is None or rep.failed:
        for b in made:
            sys.stderr.write(f"\n----- log of {b.workdir.name} ({b.log_path}) -----\n")
            sys.stderr.write(b.log_tail(400) + "\n")
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A running broker with default settings and --smp 2."""
    return broker_factory()


# ---------------------------------------------------------------------------- client helpers

_topic_counter = itertools.count()


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{next(_topic_counter)}-{uuid.uuid4().hex[:8]}"


def admin_client(broker: Broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker: Broker, name: str | None = None, partitions: int = 1,
                 config: dict | None = None, replication_factor: int = 1) -> str:
    name = name or unique_topic()
    admin = admin_client(broker)
    fs = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                  config=config or {})],
        operation_timeout=10, request_timeout=20)
    fs[name].result(timeout=30)
    wait_for_topic(broker, name, partitions if partitions > 0 else None)
    return name


def wait_for_topic(broker: Broker, name: str, partitions: int | None = None,
                   timeout: float = 15.0):
    """Waits until metadata shows the topic with a leader for every partition."""
    admin = admin_client(broker)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and t.partitions:
            if (partitions is None or len(t.partitions) == partitions) and all(
                    p.leader >= 0 for p in t.partitions.values()):
                return t
        last = t.error if t is not None else "absent"
        time.sleep(0.05)
    raise AssertionError(f"topic {name} not ready in metadata after {timeout}s: {last}")


def producer_config(broker: Broker, **overrides) -> dict:
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "enable.idempotence": False,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    conf.update(overrides)
    return conf


def consumer_config(broker: Broker, **overrides) -> dict:
    conf = {
        "bootstrap.servers": broker.bootstrap,
        # Required by confluent-kafka's Consumer, never used for coordination:
        # the tests only assign() and never commit.
        "group.id": "icestream-e2e-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
    }
    conf.update(overrides)
    return conf


class Delivered:
    """Collects confluent-kafka delivery reports."""

    def __init__(self):
        self.ok = []      # (partition, offset, key, value, headers, timestamp)
        self.errors = []  # (KafkaError, key, value)

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append((err, msg.key(), msg.value()))
        else:
            self.ok.append((msg.partition(), msg.offset(), msg.key(), msg.value(),
                            msg.headers(), msg.timestamp()))


def produce(broker: Broker, topic: str, records, flush_timeout: float = 30.0,
            **conf) -> Delivered:
    """Produces records (dicts of Producer.produce kwargs, or plain values) and
    waits for every delivery report. Fails the test on any delivery error."""
    p = Producer(producer_config(broker, **conf))
    d = Delivered()
    for r in records:
        kwargs = r if isinstance(r, dict) else {"value": r}
        p.produce(topic, on_delivery=d, **kwargs)
        p.poll(0)
    left = p.flush(flush_timeout)
    assert left == 0, f"{left} messages still undelivered after {flush_timeout}s"
    assert not d.errors, f"delivery errors: {d.errors[:5]}"
    return d


def watermarks(broker: Broker, topic: str, partition: int) -> tuple[int, int]:
    c = Consumer(consumer_config(broker))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def partition_count(broker: Broker, topic: str) -> int:
    md = admin_client(broker).list_topics(topic=topic, timeout=10)
    return len(md.topics[topic].partitions)


def consume_all(broker: Broker, topic: str, partitions=None, timeout: float = 30.0,
                start: dict | None = None, **conf) -> list:
    """Every record from each partition's start (or `start[p]`) up to the high
    watermark read when the call starts, via assign() (no consumer group).

    Returns confluent_kafka.Message objects sorted by (partition, offset).
    """
    c = Consumer(consumer_config(broker, **conf))
    try:
        if partitions is None:
            md = c.list_topics(topic, timeout=10)
            partitions = sorted(md.topics[topic].partitions)
        targets = {}
        assignment = []
        for p in partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            begin = (start or {}).get(p, low)
            if high > begin:
                targets[p] = high
                assignment.append(TopicPartition(topic, p, begin))
        if not assignment:
            return []
        c.assign(assignment)
        out = []
        pos = {p: None for p in targets}
        deadline = time.monotonic() + timeout
        while any(pos[p] is None or pos[p] + 1 < targets[p] for p in targets):
            if time.monotonic() > deadline:
                raise AssertionError(f"consume timed out: positions {pos}, targets {targets}")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consume error: {msg.error()}")
            p = msg.partition()
            if p in targets and msg.offset() < targets[p]:
                out.append(msg)
                pos[p] = msg.offset()
        out.sort(key=lambda m: (m.partition(), m.offset()))
        return out
    finally:
        c.close()


def assert_serves(broker: Broker, topic: str, expected_values: list[bytes], partition: int = 0):
    """The partition holds exactly `expected_values` from offset 0 and accepts a
    new record right after them (used after bad input and restarts)."""
    got = [m.value() for m in consume_all(broker, topic, [partition])]
    assert got == expected_values
    marker = f"after-{uuid.uuid4().hex}".encode()
    d = produce(broker, topic, [{"value": marker, "partition": partition}])
    assert d.ok[0][1] == len(expected_values)
    got = [m.value() for m in consume_all(broker, topic, [partition])]
    assert got == expected_values + [marker]
    expected_values.append(marker)


# ---------------------------------------------------------------------------- on-disk segments

def parse_batches(data: bytes) -> list[tuple[int, int, int, int]]:
    """(file position, base offset, last offset delta, total size) of every
    complete v2 RecordBatch in a segment file."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        size = 12 + length
        if length < 49 or pos + size > len(data):
            break
        magic = data[pos + 16]
        assert magic == 2, f"not a v2 batch at {pos}: magic {magic}"
        (last_delta,) = struct.unpack_from(">i", data, pos + 23)
        out.append((pos, base_offset, last_delta, size))
        pos += size
    # Anything after the last batch may only be preallocated zeros.
    assert not data[pos:].strip(b"\0"), (
        f"segment has {len(data) - pos} unparseable bytes after {len(out)} batches")
    return out


COMPRESSION_CODES = {"none": 0, None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_compression(broker: Broker, topic: str, partition: int) -> set[int]:
    """The compression codes (attributes & 7) of every batch stored on disk
    for a partition: the broker keeps client batches as they were sent."""
    codes = set()
    for seg in sorted(broker.partition_dir(topic, partition).glob("*.log")):
        data = seg.read_bytes()
        for pos, _base, _delta, _size in parse_batches(data):
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            codes.add(attributes & 7)
    return codes


def which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed (scripts/test installs it)", pytrace=False)
    return path
