"""The compatibility suite (tests/compat, issue 18): the Java program (kafka-clients 4.x and
Kafka's own command-line tools, one JVM per broker) and the Go tests (franz-go with kadm, and
Sarama, one `go test` binary run per broker) against Icestream, and against Apache Kafka 4 as
the positive control proving each case right. docs/compatibility.md tabulates the results."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from apache_kafka import ApacheKafka, classpath
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tests" / "compat"
GO_TEST = COMPAT / "go" / "compat.test"
DEBEZIUM = COMPAT / "debezium" / "target"

# Cases Icestream is known to fail while Kafka passes, with the reason (docs/compatibility.md).
KNOWN_ICESTREAM_FAILURES: dict[str, str] = {}


@pytest.fixture(scope="module")
def built():
    # Resolving the Maven dependencies the first time takes a while.
    subprocess.run([str(COMPAT / "build.sh")], check=True, timeout=1200)


@pytest.fixture(scope="module")
def apache_kafka(built, tmp_path_factory):
    k = ApacheKafka(tmp_path_factory.mktemp("apache-kafka"))
    try:
        k.start()
    except Exception:
        k.stop()
        raise
    yield k
    k.stop()


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL from Debian's packages (scripts/test installs it) with wal_level=logical,
    for Debezium: its own cluster in a temporary directory, on a loopback port, run as the
    `postgres` user (it refuses root), trusting local connections."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        pytest.fail("PostgreSQL is not installed (scripts/test installs Debian's postgresql)")
    bindir = Path(bins[-1]).parent
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="compat-pg-"))
    root.chmod(0o755)
    data = root / "data"
    shutil.chown(root, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c wal_level=logical "
            f"-c max_replication_slots=10 -c max_wal_senders=10 -c unix_socket_directories={root}")
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts,
                            "-w", "start"], check=True, capture_output=True, timeout=120)
    yield port
    subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["icestream", "kafka"])
def target(request, built):
    """(name, bootstrap) of the broker under test."""
    if request.param == "kafka":
        return "kafka", request.getfixturevalue("apache_kafka").bootstrap
    b = request.getfixturevalue("broker_factory")(smp=2)
    return "icestream", b.bootstrap


def check_results(name: str, passed: set[str], failed: dict[str, str], output: str):
    assert passed or failed, f"no case ran against {name}:\n{output[-3000:]}"
    if name == "kafka":
        assert not failed, f"Apache Kafka fails cases, so they are wrong: {failed}"
        return
    unexpected = {c: why for c, why in failed.items() if c not in KNOWN_ICESTREAM_FAILURES}
    assert not unexpected, f"Icestream fails: {unexpected}"
    fixed = set(KNOWN_ICESTREAM_FAILURES) & passed
    assert not fixed, f"known failures now pass; update KNOWN_ICESTREAM_FAILURES: {fixed}"


@pytest.mark.timeout(600)
def test_java_clients_and_tools(target):
    name, bootstrap = target
    r = subprocess.run(
        ["java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath(),
         "compat.Compat", bootstrap],
        capture_output=True, text=True, timeout=900)
    print(r.stdout)
    passed = set(re.findall(r"^PASS (\S+)", r.stdout, re.M))
    failed = dict(re.findall(r"^FAIL (\S+): (.*)$", r.stdout, re.M))
    if failed:
        print(r.stderr[-8000:])
    check_results(name, passed, failed, r.stdout + r.stderr)
    assert re.search(r"^compat-java: \d+ passed, \d+ failed$", r.stdout, re.M), r.stdout[-2000:]
    if not failed:
        assert r.returncode == 0


@pytest.mark.timeout(600)
def test_go_franz_and_sarama(target):
    name, bootstrap = target
    env = dict(os.environ, COMPAT_BOOTSTRAP=bootstrap)
    r = subprocess.run([str(GO_TEST), "-test.v", "-test.count=1", "-test.timeout=300s"],
                       capture_output=True, text=True, timeout=400, env=env, cwd=COMPAT / "go")
    print(r.stdout[-6000:])
    passed = set(re.findall(r"^--- PASS: (\S+)", r.stdout, re.M))
    failed = {c: "see output" for c in re.findall(r"^--- FAIL: (\S+)", r.stdout, re.M)}
    if r.returncode != 0 and not failed:
        failed["go test"] = f"exit {r.returncode}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    check_results(name, passed, failed, r.stdout + r.stderr)


@pytest.mark.timeout(600)
def test_debezium_postgres(target, postgres):
    """Debezium's PostgreSQL connector on a Connect 4.3.2 worker (its own JVM and classpath:
    Debezium 3.6.1 does not run on 4.4's clients), a snapshot then WAL changes into the broker."""
    name, bootstrap = target
    cp = f"{DEBEZIUM / 'classes'}:{(DEBEZIUM / 'classpath.txt').read_text().strip()}"
    r = subprocess.run(
        ["java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp,
         "compat.dbz.Debezium", bootstrap, str(postgres)],
        capture_output=True, text=True, timeout=500)
    print(r.stdout)
    passed = set(re.findall(r"^PASS (\S+)", r.stdout, re.M))
    failed = dict(re.findall(r"^FAIL (\S+): (.*)$", r.stdout, re.M))
    if failed:
        print(r.stderr[-8000:])
    check_results(name, passed, failed, r.stdout + r.stderr)
