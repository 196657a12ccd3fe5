"""Transaction protocol v2 (KIP-890 part 2) with Java kafka-clients 4.x: the broker finalizes
`transaction.version` 2, so the producer sends no AddPartitionsToTxn nor AddOffsetsToTxn (the
partition leaders add partitions on Produce v12, the group coordinator its offsets partition on
TxnOffsetCommit v5) and every EndTxn v5 bumps its epoch. tests/compat/java's TxnV2 program
commits, aborts, commits offsets, runs transactions back to back, reads read_committed and
read_uncommitted, and is fenced by a second producer (tests/compat/build.sh builds it). On
three brokers too, once the controller finalized the level: partition leaders then add their
partitions through another broker's coordinator (AddPartitionsToTxn v5).

ICESTREAM_TXN_CONTROL=kafka runs it against Apache Kafka 4 (apache_kafka.py) instead: the
positive control that shows the program asks only what Kafka does.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from apache_kafka import ApacheKafka, classpath
from cluster import finalized_features, start_cluster, wait_formed

CONTROL = os.environ.get("ICESTREAM_TXN_CONTROL") == "kafka"
COMPAT = Path(__file__).resolve().parents[2] / "tests" / "compat"


@pytest.fixture(scope="module")
def built():
    subprocess.run([str(COMPAT / "build.sh")], check=True, timeout=1200)


@pytest.fixture
def target(built, broker_factory, tmp_path):
    """(bootstrap, broker or None)."""
    if CONTROL:
        k = ApacheKafka(tmp_path / "apache-kafka")
        try:
            k.start()
            yield k.bootstrap, None
        finally:
            k.stop()
        return
    # The coordinator logs at debug what only the v2 path does.
    b = broker_factory(env={"ICESTREAM_LOG": "info,engine::txn=debug"})
    yield b.bootstrap, b


def run_java(bootstrap: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    r = subprocess.run(
        ["java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath(),
         "compat.TxnV2", bootstrap],
        capture_output=True, text=True, timeout=400)
    print(r.stdout)
    info = dict(re.findall(r"^INFO (\S+?)=(.*)$", r.stdout, re.M))
    return r, info


def check_run(bootstrap: str, logs) -> None:
    r, info = run_java(bootstrap)
    failed = dict(re.findall(r"^FAIL (\S+): (.*)$", r.stdout, re.M))
    if failed:
        print(r.stderr[-8000:])
    assert not failed, failed
    assert re.search(r"^txn-v2: \d+ passed, 0 failed$", r.stdout, re.M), r.stdout[-2000:]
    assert r.returncode == 0
    assert info.get("finalized_transaction_version") == "2"
    # Protocol v2 bumps the producer epoch at the end of every transaction (v1 keeps it).
    epochs = [int(e) for e in info["epochs"].split(",")]
    assert epochs == list(range(epochs[0], epochs[0] + 4)), epochs
    if logs is not None:
        log = logs()
        assert "partitions added by their leader (transaction protocol v2)" in log
        assert "transaction ending with its epoch bumped (transaction protocol v2)" in log
        # TxnOffsetCommit v5 added the group's partition (no AddOffsetsToTxn came).
        assert re.search(r"partitions added by their leader .*__consumer_offsets", log)


@pytest.mark.timeout(600)
def test_java_transactions_with_protocol_v2(target):
    bootstrap, broker = target
    check_run(bootstrap, broker.log_text if broker is not None else None)


@pytest.mark.timeout(600)
@pytest.mark.skipif(CONTROL, reason="one Apache Kafka node is the control")
def test_java_transactions_with_protocol_v2_on_three_brokers(built, broker_factory):
    brokers = start_cluster(broker_factory, env={"ICESTREAM_LOG": "info,engine::txn=debug"})
    wait_formed(brokers)
    deadline = time.monotonic() + 30
    while not all(finalized_features(b).get("transaction.version") == 2 for b in brokers):
        assert time.monotonic() < deadline, [finalized_features(b) for b in brokers]
        time.sleep(0.2)
    check_run(",".join(b.bootstrap for b in brokers),
              lambda: "\n".join(b.log_text() for b in brokers))
