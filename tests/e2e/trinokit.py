"""A real Trino server for the tests: one coordinator per pytest session, on loopback.

Trino (the server's lib/ and the Iceberg plugin only) is installed by tests/e2e/trino/install.sh
under ~/.cache/icestream/trino-<version> (scripts/test runs it); $ICESTREAM_TRINO_HOME points
elsewhere. It runs on Java 24+: $TRINO_JAVA_HOME, else the Temurin 25 JDK's usual path.

Catalogs are added at run time (`catalog.management=dynamic`, kept in memory), one per broker:
`TrinoServer.add_iceberg_catalog(broker.iceberg_catalog_url)` or, for a warehouse on S3,
`add_iceberg_catalog(url, s3=S3Access(...))`. Queries go through the `trino` Python client.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port, http_get

TRINO_VERSION = "476"
DEFAULT_JAVA_HOME = "/usr/lib/jvm/temurin-25-jdk-amd64"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0

# Small enough for CI's 2 cores beside three brokers and an S3 server; the tests' tables are
# a few hundred rows. Trino refuses to start unless per-node query memory plus the headroom
# fits in the heap.
HEAP = "1G"
SERVER_CONFIG = {
    "coordinator": "true",
    "node-scheduler.include-coordinator": "true",
    "node.environment": "icestream_test",
    "node.internal-address": "127.0.0.1",
    "node.bind-ip": "127.0.0.1",
    "http-server.log.enabled": "false",
    "web-ui.enabled": "false",
    "query.max-memory": "512MB",
    "query.max-memory-per-node": "256MB",
    "memory.heap-headroom-per-node": "256MB",
    "task.concurrency": "2",
    "catalog.management": "dynamic",
    "catalog.store": "memory",
}
# Only warnings and errors reach the log file: a started server logs ~800 lines otherwise.
LOG_LEVELS = {"io.trino": "WARN", "io.airlift": "WARN", "org.eclipse.jetty": "WARN",
              "io.trino.server.Server": "INFO"}
# C1 only (TieredStopAtLevel=1): on two busy cores C2's compiler threads roughly doubled the
# start (57 s against 27-31 s measured) and the tests' queries are small.
JVM_FLAGS = [
    f"-Xmx{HEAP}", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError",
    "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M", "-Djdk.attach.allowAttachSelf=true",
    "-XX:+EnableDynamicAgentLoading", "--enable-native-access=ALL-UNNAMED",
    "-Dfile.encoding=UTF-8",
]


def trino_home() -> Path:
    env = os.environ.get("ICESTREAM_TRINO_HOME")
    if env:
        return Path(env)
    return Path.home() / ".cache/icestream" / f"trino-{TRINO_VERSION}"


def java_binary() -> Path:
    return Path(os.environ.get("TRINO_JAVA_HOME", DEFAULT_JAVA_HOME)) / "bin" / "java"


def require_trino() -> None:
    """Skips (fails under ICESTREAM_REQUIRE_TRINO=1, as scripts/test sets) without Trino or
    its JDK."""
    missing = []
    if not (trino_home() / ".complete").exists():
        missing.append(f"Trino {TRINO_VERSION} at {trino_home()} (run tests/e2e/trino/install.sh)")
    if not java_binary().exists():
        missing.append(f"Java 24+ at {java_binary()} (set TRINO_JAVA_HOME)")
    if missing:
        msg = "Trino cannot run: missing " + "; ".join(missing)
        if os.environ.get("ICESTREAM_REQUIRE_TRINO") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@dataclass(frozen=True)
class S3Access:
    """How Trino reaches an S3 warehouse (its own credentials: the catalog vends none)."""
    endpoint: str
    region: str
    access_key: str
    secret_key: str
    path_style: bool = True


def iceberg_catalog_properties(catalog_url: str, s3: S3Access | None = None,
                               extra: dict[str, str] | None = None) -> dict[str, str]:
    """Properties of a Trino Iceberg catalog on a broker's built-in REST catalog.

    Without `s3` the table locations are `file://` paths on this machine, which Trino's
    native local file system reads (476 takes both `local://` and `file://`) with its root
    at `/`. With `s3`, Trino's native S3 file system and only that."""
    props = {
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": catalog_url,
    }
    if s3 is None:
        props.update({"fs.native-local.enabled": "true", "local.location": "/"})
    else:
        props.update({
            "fs.native-s3.enabled": "true",
            "s3.endpoint": s3.endpoint,
            "s3.region": s3.region,
            "s3.path-style-access": str(s3.path_style).lower(),
            "s3.aws-access-key": s3.access_key,
            "s3.aws-secret-key": s3.secret_key,
        })
    props.update(extra or {})
    return props


def sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class TrinoServer:
    """One Trino coordinator (which also runs the tasks) in `workdir`."""

    _catalog_names = itertools.count()

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "trino.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        etc = self.workdir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        config = dict(SERVER_CONFIG)
        config.update({
            "http-server.http.port": str(self.port),
            "discovery.uri": self.url,
            "plugin.dir": str(trino_home() / "plugin"),
        })
        (etc / "config.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in config.items()))
        (etc / "log.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in LOG_LEVELS.items()))
        return etc

    def start(self, timeout: float = START_TIMEOUT_S) -> "TrinoServer":
        etc = self._write_config()
        cmd = [str(java_binary()), "-cp", str(trino_home() / "lib" / "*"), *JVM_FLAGS,
               f"-Dconfig={etc / 'config.properties'}",
               f"-Dlog.levels-file={etc / 'log.properties'}",
               f"-Dnode.id=icestream-test-{os.getpid()}",
               # Read by the server itself (as the launcher passes it), not a config property.
               f"-Dnode.data-dir={self.workdir / 'data'}",
               "io.trino.server.TrinoServer"]
        env = dict(os.environ)
        env["JAVA_HOME"] = str(java_binary().parent.parent)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                         start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        # /v1/info says starting=false once the server is up; a query can still find no
        # active node for a moment after that, so readiness is a query that runs.
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Trino exited with {self.proc.returncode} while starting; "
                                   f"log:\n{self.log_tail()}")
            try:
                status, body, _ = http_get(f"{self.url}/v1/info", timeout=2)
                if status == 200 and '"starting":false' in body.replace(" ", ""):
                    if self.query("SELECT 1") == [[1]]:
                        return
                last = f"HTTP {status}: {body[:200]}"
            except Exception as e:  # connection refused, no active node yet
                last = repr(e)
            time.sleep(0.5)
        raise TimeoutError(f"Trino not ready after {timeout}s ({last}); log:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ SQL
    def connect(self, catalog: str | None = None, schema: str | None = None):
        import trino
        return trino.dbapi.connect(host="127.0.0.1", port=self.port, user="icestream-test",
                                   catalog=catalog, schema=schema, http_scheme="http")

    def query(self, sql: str, catalog: str | None = None, schema: str | None = None) -> list:
        """Every row of one statement, as lists (Trino rows come back as tuples)."""
        conn = self.connect(catalog, schema)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return cur.fetchall()
        finally:
            conn.close()

    def add_iceberg_catalog(self, catalog_url: str, s3: S3Access | None = None,
                            extra: dict[str, str] | None = None, name: str | None = None) -> str:
        """CREATE CATALOG over an Iceberg REST catalog (a broker's built-in one, or any other
        with `extra` properties such as OAuth2's); returns its name."""
        name = name or f"ice{next(self._catalog_names)}"
        props = iceberg_catalog_properties(catalog_url, s3, extra)
        with_clause = ", ".join(f'"{k}" = {sql_string(v)}' for k, v in props.items())
        self.query(f"CREATE CATALOG {name} USING iceberg WITH ({with_clause})")
        return name

    def drop_catalog(self, name: str) -> None:
        self.query(f"DROP CATALOG {name}")


@pytest.fixture(scope="session")
def trino_server(tmp_path_factory):
    """The session's Trino server, started on first use."""
    require_trino()
    server = TrinoServer(tmp_path_factory.mktemp("trino"))
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def trino_catalog(trino_server):
    """Adds Iceberg catalogs for the test's brokers: trino_catalog(broker.iceberg_catalog_url,
    s3=None, extra=None) returns the catalog's name; each is dropped after the test."""
    made: list[str] = []

    def add(catalog_url: str, s3: S3Access | None = None,
            extra: dict[str, str] | None = None) -> str:
        name = trino_server.add_iceberg_catalog(catalog_url, s3, extra)
        made.append(name)
        return name

    yield add
    for name in made:
        trino_server.drop_catalog(name)
