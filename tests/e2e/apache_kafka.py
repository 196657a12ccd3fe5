"""Apache Kafka 4 as the compatibility suite's positive control: one KRaft node (broker and
controller) started from the Maven jars of tests/compat/java, on loopback ports, with a
generated server.properties, its storage formatted by the StorageTool class first."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
JAVA_DIR = ROOT / "tests" / "compat" / "java"
CLASSPATH_FILE = JAVA_DIR / "target" / "classpath.txt"
CLASSES = JAVA_DIR / "target" / "classes"


def classpath() -> str:
    return f"{CLASSES}:{CLASSPATH_FILE.read_text().strip()}"


class ApacheKafka:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "kafka.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "ApacheKafka":
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={self.workdir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=1000",
            "log.cleaner.backoff.ms=1000",
            "",
        ]))
        log4j = self.workdir / "log4j2.yaml"
        log4j.write_text(
            "Configuration:\n  Appenders:\n    Console:\n      name: STDOUT\n"
            "      PatternLayout:\n        Pattern: \"[%d] %p %m (%c)%n\"\n"
            "  Loggers:\n    Root:\n      level: WARN\n      AppenderRef:\n        - ref: STDOUT\n")
        java = ["java", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath()]
        cluster_id = "IcestreamCompat" + uuid.uuid4().hex[:7]  # 22 characters, base64-safe
        subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id,
                               "-c", str(props)], check=True, capture_output=True, timeout=120)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(java + ["kafka.Kafka", str(props)], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Apache Kafka exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"Apache Kafka not listening after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def java_available() -> bool:
    return CLASSPATH_FILE.exists() and CLASSES.exists() and os.system("java -version >/dev/null 2>&1") == 0
