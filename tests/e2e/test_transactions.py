"""Kafka transactions on one broker, as real clients see them: transactional producers
(confluent-kafka, kafka-python, kafkajs) commit and abort, read_committed consumers see only
committed records and stop at the last stable offset, markers take offsets but never surface,
exactly-once consume-transform-produce across a crashed application, fencing, the broker's
transaction timeout, and SIGKILLs of the broker between and inside transactions.

ICESTREAM_TXN_CONTROL=kafka runs them against Apache Kafka (apache_kafka.py; tests/compat/build.sh
builds its classpath) instead: the positive control that shows a test asks only what Kafka
does.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import txnkit
from conftest import unique_topic
from txnkit import (consumer, hw_and_lso, kafka_error, poll_quiet, poll_until, read_until, run_txn,
                    txn_producer, wait_position, wait_stable)

CONTROL = os.environ.get("ICESTREAM_TXN_CONTROL") == "kafka"
KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"


class Target:
    """The broker under test: `bootstrap`, `broker` (an Icestream conftest.Broker) or `kafka`
    (an apache_kafka.ApacheKafka under the control)."""

    def __init__(self, bootstrap: str, broker=None, kafka=None):
        self.bootstrap = bootstrap
        self.broker = broker
        self.kafka = kafka

    def kill9_and_restart(self):
        if self.broker is not None:
            self.broker.kill9()
            self.broker.start()
            return
        # Apache Kafka: SIGKILL, then the same command again (its storage is formatted).
        k = self.kafka
        cmd = k.proc.args
        k.proc.kill()
        k.proc.wait()
        k.proc = subprocess.Popen(cmd, stdout=k._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            assert k.proc.poll() is None, k.log_tail()
            try:
                AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
                return
            except KafkaException:
                assert time.monotonic() < deadline, k.log_tail()

    def create_topic(self, partitions: int = 1, name: str | None = None) -> str:
        name = name or unique_topic("txn")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                            operation_timeout=10, request_timeout=20)[name].result(timeout=30)
        deadline = time.monotonic() + 15
        while True:
            t = admin.list_topics(topic=name, timeout=5).topics.get(name)
            if t is not None and t.error is None and len(t.partitions) == partitions and all(
                    p.leader >= 0 for p in t.partitions.values()):
                return name
            assert time.monotonic() < deadline, f"topic {name} has no leaders"
            time.sleep(0.05)


@pytest.fixture
def target(broker_factory, tmp_path):
    if CONTROL:
        from apache_kafka import ApacheKafka, java_available
        if not java_available():
            pytest.skip("Apache Kafka control: run tests/compat/build.sh first")
        k = ApacheKafka(tmp_path / "kafka").start()
        try:
            yield Target(k.bootstrap, kafka=k)
        finally:
            k.stop()
    else:
        b = broker_factory()
        yield Target(b.bootstrap, broker=b)


def tid() -> str:
    return "txn-" + uuid.uuid4().hex[:10]


# ---------------------------------------------------------------------------- 1. visibility


def test_committed_and_aborted_records_per_isolation_level(target):
    """Committed records reach read_committed consumers; aborted ones only read_uncommitted
    consumers; each transaction's marker takes one offset and is never returned, and a
    read_committed consumer's position moves past the markers."""
    bs = target.bootstrap
    topic = target.create_topic()
    p = txn_producer(bs, tid())
    committed = [b"c%d" % i for i in range(5)]
    aborted = [b"a%d" % i for i in range(5)]
    run_txn(p, topic, committed, commit=True)     # offsets 0-4, commit marker 5
    run_txn(p, topic, aborted, commit=False)      # offsets 6-10, abort marker 11
    run_txn(p, topic, [b"end"], commit=True)      # offset 12, commit marker 13
    p.flush(10)

    rc = read_until(bs, topic, b"end", "read_committed")
    assert rc == list(enumerate(committed)) + [(12, b"end")]
    ru = read_until(bs, topic, b"end", "read_uncommitted")
    assert ru == list(enumerate(committed)) + [(6 + i, v) for i, v in enumerate(aborted)] + [
        (12, b"end")]
    # Nothing follows the last record: the marker at 13 is no message, for either level.
    for isolation in ("read_committed", "read_uncommitted"):
        c = consumer(bs, isolation)
        try:
            c.assign([TopicPartition(topic, 0, 12)])
            assert poll_until(c, b"end") == [(12, b"end")]
            wait_position(c, topic, 0, 14)  # past the commit marker at 13
            assert poll_quiet(c, 0.5) == []
        finally:
            c.close()
    # Starting right at a marker, or inside the aborted range, a read_committed consumer
    # returns the next committed record.
    for start in (5, 8, 11):
        assert read_until(bs, topic, b"end", "read_committed", start=start) == [(12, b"end")]
    assert hw_and_lso(bs, topic) == (14, 14)
    assert txnkit.watermark_high(bs, topic, 0, "read_committed") == 14


def test_group_consumer_commits_past_markers(target):
    """A read_committed group consumer that consumed everything commits the log end (the
    offset after the last marker), so its lag is zero."""
    bs = target.bootstrap
    topic = target.create_topic()
    p = txn_producer(bs, tid())
    run_txn(p, topic, [b"x0", b"x1"], commit=True)   # 0-1, marker 2
    run_txn(p, topic, [b"y0"], commit=False)         # 3, marker 4
    run_txn(p, topic, [b"end"], commit=True)         # 5, marker 6
    group = "g-" + uuid.uuid4().hex[:8]
    c = consumer(bs, "read_committed", **{"group.id": group, "enable.auto.offset.store": True,
                                          "session.timeout.ms": 6000})
    try:
        c.subscribe([topic])
        assert [v for _, v in poll_until(c, b"end")] == [b"x0", b"x1", b"end"]
        wait_position(c, topic, 0, 7)
        c.commit(asynchronous=False)
        (got,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert got.offset == 7
    finally:
        c.close()


# ---------------------------------------------------------------------------- 2. LSO


def test_open_transaction_holds_read_committed_at_last_stable_offset(target):
    bs = target.bootstrap
    topic = target.create_topic()
    plain = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 0})
    for i in range(3):
        plain.produce(topic, b"plain%d" % i, partition=0)      # offsets 0-2
    assert plain.flush(30) == 0
    p = txn_producer(bs, tid())
    p.begin_transaction()
    opened = [b"open%d" % i for i in range(3)]                 # offsets 3-5
    for v in opened:
        p.produce(topic, v, partition=0)
    assert p.flush(30) == 0

    ru = consumer(bs, "read_uncommitted")
    rc = consumer(bs, "read_committed")
    try:
        ru.assign([TopicPartition(topic, 0, 0)])
        rc.assign([TopicPartition(topic, 0, 0)])
        assert poll_until(ru, b"open2") == [(i, b"plain%d" % i) for i in range(3)] + [
            (3 + i, v) for i, v in enumerate(opened)]
        assert poll_until(rc, b"plain2") == [(i, b"plain%d" % i) for i in range(3)]
        # Held at the LSO (3) while the transaction is open, whatever it waits.
        assert poll_quiet(rc, 1.5) == []
        assert rc.position([TopicPartition(topic, 0)])[0].offset == 3
        assert hw_and_lso(bs, topic) == (6, 3)
        assert txnkit.watermark_high(bs, topic, 0, "read_uncommitted") == 6
        assert txnkit.watermark_high(bs, topic, 0, "read_committed") == 3
        # A plain record after the open transaction is behind the LSO too.
        plain.produce(topic, b"plain3", partition=0)            # offset 6
        assert plain.flush(30) == 0
        assert poll_until(ru, b"plain3") == [(6, b"plain3")]
        assert poll_quiet(rc, 0.5) == []
        assert hw_and_lso(bs, topic) == (7, 3)

        p.commit_transaction(30)                                # marker at 7
        assert poll_until(rc, b"plain3") == [(3 + i, v) for i, v in enumerate(opened)] + [
            (6, b"plain3")]
        assert wait_stable(bs, topic) == 8
    finally:
        ru.close()
        rc.close()


# ---------------------------------------------------------------------------- 3. exactly once


def test_consume_transform_produce_exactly_once_across_a_crash(target, tmp_path):
    bs = target.bootstrap
    partitions = 3
    src = target.create_topic(partitions)
    dst = target.create_topic(partitions)
    inputs = txnkit.produce_inputs(bs, src, partitions, 300)
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    result = txnkit.run_ctp(bs, tmp_path, src, dst, seed, hang_after=4)
    assert result["generations"] == 2
    txnkit.check_ctp_result(bs, src, dst, partitions, inputs, result)


KILL_ROUNDS = txnkit.env_int("ICESTREAM_TXN_KILL_ROUNDS", 4)


@pytest.mark.timeout(120 + 45 * KILL_ROUNDS)
def test_consume_transform_produce_exactly_once_under_random_kills(target, tmp_path):
    """The loop of the test above over KILL_ROUNDS rounds (ICESTREAM_TXN_KILL_ROUNDS; 4 in
    CI, more for a soak), each after a random number of commits and a random delay: a SIGKILL
    of the broker (restarted at once) or of the loop itself (a new process with the same
    transactional.id takes over, fencing the old one's transaction). Afterwards the output
    holds every input exactly once, nothing of an aborted transaction, in input order, and the
    group's offsets are at the input's end."""
    bs = target.bootstrap
    partitions = 3
    src = target.create_topic(partitions)
    dst = target.create_topic(partitions)
    inputs = txnkit.produce_inputs(bs, src, partitions, 150 * KILL_ROUNDS)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = []
    print(f"seed {seed}, {KILL_ROUNDS} rounds")

    def chaos(w: txnkit.Worker):
        while len(kills) < KILL_ROUNDS:
            for _ in range(rng.randint(1, 3)):
                if w.wait_event({"commit", "done"}, timeout=60)["ev"] != "commit":
                    return
            # A random point in the next transaction, not a wait for anything.
            time.sleep(rng.uniform(0.0, 0.2))
            if rng.random() < 0.5:
                kills.append(("broker", w.commits()))
                target.kill9_and_restart()
            else:
                kills.append(("loop", w.commits()))
                w.kill9()
                return

    result = txnkit.run_ctp(bs, tmp_path, src, dst, seed, hang_after=None, chaos=chaos,
                            max_generations=2 + KILL_ROUNDS, deadline_s=60 + 40 * KILL_ROUNDS)
    print(f"kills: {kills}")
    assert len(kills) == KILL_ROUNDS, f"the loop finished after {kills}: too few inputs"
    txnkit.check_ctp_result(bs, src, dst, partitions, inputs, result)


# ---------------------------------------------------------------------------- 4. fencing, timeout


def test_second_producer_fences_the_first(target):
    bs = target.bootstrap
    topic = target.create_topic()
    t = tid()
    p1 = txn_producer(bs, t)
    p1.begin_transaction()
    p1.produce(topic, b"zombie0", partition=0)
    assert p1.flush(30) == 0

    # The newcomer's init aborts p1's open transaction and bumps the epoch.
    p2 = txn_producer(bs, t)
    with pytest.raises(KafkaException) as info:
        p1.produce(topic, b"zombie1", partition=0)
        p1.flush(10)
        p1.commit_transaction(30)
    err = kafka_error(info.value)
    assert err.fatal(), err
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                          KafkaError.INVALID_PRODUCER_EPOCH), err
    # A fenced producer stays fenced.
    with pytest.raises(KafkaException):
        p1.begin_transaction()

    run_txn(p2, topic, [b"fresh", b"end"], commit=True)
    rc = read_until(bs, topic, b"end", "read_committed")
    assert [v for _, v in rc] == [b"fresh", b"end"]
    ru = [v for _, v in read_until(bs, topic, b"end", "read_uncommitted")]
    # zombie0 stays in the log, aborted; zombie1 came after the fence and was refused.
    assert ru == [b"zombie0", b"fresh", b"end"]


def test_transaction_past_its_timeout_is_aborted_by_the_broker(target):
    bs = target.bootstrap
    topic = target.create_topic()
    t = tid()
    p = txn_producer(bs, t, **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    p.produce(topic, b"late0", partition=0)
    p.produce(topic, b"late1", partition=0)
    assert p.flush(30) == 0
    # Open: the LSO holds at 0 (unless a loaded machine took 3 s to get here, and the abort
    # marker is being written or written).
    assert hw_and_lso(bs, topic) in [(2, 0), (2, 2), (3, 3)]
    # The broker aborts it: an abort marker at 2 and the LSO released (Kafka checks every
    # transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default).
    assert wait_stable(bs, topic, timeout=40, hw_at_least=3) == 3
    with pytest.raises(KafkaException) as info:
        p.commit_transaction(30)
    print(f"commit after the timeout: {kafka_error(info.value)}")

    p2 = txn_producer(bs, t)
    run_txn(p2, topic, [b"end"], commit=True)
    assert read_until(bs, topic, b"end", "read_committed") == [(3, b"end")]
    assert read_until(bs, topic, b"end", "read_uncommitted") == [
        (0, b"late0"), (1, b"late1"), (3, b"end")]


# ---------------------------------------------------------------------------- 5. other clients


def test_kafka_python_transactions(target):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    bs = target.bootstrap
    topic = target.create_topic()
    p = KafkaProducer(bootstrap_servers=bs, transactional_id=tid(), linger_ms=5,
                      request_timeout_ms=15000, max_block_ms=30000)
    try:
        p.init_transactions()
        for values, commit in ([[b"k0", b"k1"], True], [[b"kx0", b"kx1"], False],
                               [[b"k2"], True], [[b"kx2"], False], [[b"end"], True]):
            p.begin_transaction()
            for v in values:
                p.send(topic, value=v, partition=0)
            p.flush(30)
            if commit:
                p.commit_transaction()
            else:
                p.abort_transaction()
    finally:
        p.close(5)
    want = [b"k0", b"k1", b"k2", b"end"]
    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                      isolation_level="read_committed", request_timeout_ms=15000,
                      fetch_max_wait_ms=100)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = []
        deadline = time.monotonic() + 30
        while b"end" not in got:
            assert time.monotonic() < deadline, got
            for recs in c.poll(timeout_ms=300).values():
                got.extend(r.value for r in recs)
        assert got == want
        # kafka-python's end_offsets use the consumer's isolation level: the LSO, past the
        # last marker.
        assert c.end_offsets([tp])[tp] == 12
    finally:
        c.close()
    assert [v for _, v in read_until(bs, topic, b"end", "read_committed")] == want
    assert len(read_until(bs, topic, b"end", "read_uncommitted")) == 7


def kafkajs_dir() -> Path:
    """tests/e2e/kafkajs with its node_modules (npm ci on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the kafkajs test", pytrace=False)
    if not (KAFKAJS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=KAFKAJS_DIR, check=True, timeout=300)
    return KAFKAJS_DIR


def test_kafkajs_transactions(target):
    bs = target.bootstrap
    topic = target.create_topic()
    d = kafkajs_dir()
    spec = {"brokers": [bs], "topic": topic, "transactionalId": tid(),
            "transactions": [{"values": ["j0", "j1"], "commit": True},
                             {"values": ["jx0", "jx1", "jx2"], "commit": False},
                             {"values": ["j2"], "commit": True},
                             {"values": ["end"], "commit": True}],
            "consume": {"groupId": "js-" + uuid.uuid4().hex[:8], "until": "end"}}
    r = subprocess.run(["node", "txn.js", json.dumps(spec)], cwd=d, capture_output=True,
                       timeout=100)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    consumed = json.loads(r.stdout.decode().strip().splitlines()[-1])["consumed"]
    # offsets: j0 0, j1 1, marker 2, jx 3-5, marker 6, j2 7, marker 8, end 9
    assert consumed == [[0, "j0"], [1, "j1"], [7, "j2"], [9, "end"]]
    assert read_until(bs, topic, b"end", "read_committed") == [
        (0, b"j0"), (1, b"j1"), (7, b"j2"), (9, b"end")]
    assert [o for o, _ in read_until(bs, topic, b"end", "read_uncommitted")] == [
        0, 1, 3, 4, 5, 7, 9]


# ---------------------------------------------------------------------------- 6. SIGKILL


def test_committed_transactions_survive_sigkill_between_transactions(target):
    bs = target.bootstrap
    topic = target.create_topic()
    p = txn_producer(bs, tid())
    run_txn(p, topic, [b"t0", b"t1"], commit=True)          # 0-1, marker 2
    run_txn(p, topic, [b"ax"], commit=False)                # 3, marker 4
    # Markers are written after EndTxn is answered: the transactions are over once both are
    # in the log. (A SIGKILL between the two is the coordinator's recovery, which
    # test_cluster_transactions.py covers.)
    assert wait_stable(bs, topic, hw_at_least=5) == 5
    target.kill9_and_restart()
    # (Apache Kafka answers an older high watermark for a moment after its restart.)
    assert wait_stable(bs, topic, hw_at_least=5) == 5
    # The same producer goes on after the restart: its epoch is still the current one.
    p.begin_transaction()
    p.produce(topic, b"t2", partition=0)
    p.produce(topic, b"end", partition=0)
    assert p.flush(30) == 0
    txnkit.retrying_call(lambda: p.commit_transaction(30))
    rc = read_until(bs, topic, b"end", "read_committed")
    assert [v for _, v in rc] == [b"t0", b"t1", b"t2", b"end"]


def test_sigkill_inside_transactions(target):
    """Two transactions are open when the broker is SIGKILLed: after the restart one producer
    commits its own (it completes), the other producer is gone and its transaction is aborted
    by the broker's timeout (10 s). read_committed never returns the abandoned records."""
    bs = target.bootstrap
    topic = target.create_topic()
    keep = txn_producer(bs, tid(), **{"transaction.timeout.ms": 60000})
    # Long enough for the steps before the SIGKILL on a loaded machine, short for the test.
    gone = txn_producer(bs, tid(), **{"transaction.timeout.ms": 10000})
    run_txn(keep, topic, [b"before"], commit=True)           # 0, marker 1
    wait_stable(bs, topic, hw_at_least=2)  # (the marker is written after the commit returns)
    gone.begin_transaction()
    gone.produce(topic, b"gone0", partition=0)               # 2
    assert gone.flush(30) == 0
    keep.begin_transaction()
    keep.produce(topic, b"kept0", partition=0)               # 3
    assert keep.flush(30) == 0
    gone.produce(topic, b"gone1", partition=0)               # 4
    assert gone.flush(30) == 0
    assert hw_and_lso(bs, topic) == (5, 2)

    target.kill9_and_restart()
    # Still open after the restart: the LSO is held at the first open transaction; (6, 3)
    # once the 10 s timeout has struck (the abort marker at 5, kept0 still open). (5, 3) is
    # Icestream's view while that marker is placed but below no high watermark yet (Kafka
    # would answer (5, 2); see PartitionLog::last_stable_offset): readers must still never
    # get gone0.
    assert hw_and_lso(bs, topic) in [(5, 2), (6, 3), (5, 3)]
    c = consumer(bs, "read_committed")
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        early = poll_quiet(c, 1.0)
    finally:
        c.close()
    assert not [v for _, v in early if v.startswith(b"gone")], early
    txnkit.retrying_call(lambda: keep.commit_transaction(30))
    wait_stable(bs, topic, timeout=40, hw_at_least=7)       # both markers written
    keep.begin_transaction()
    keep.produce(topic, b"end", partition=0)
    keep.commit_transaction(30)
    rc = read_until(bs, topic, b"end", "read_committed")
    assert [v for _, v in rc] == [b"before", b"kept0", b"end"]
    ru = [v for _, v in read_until(bs, topic, b"end", "read_uncommitted")]
    assert ru[:4] == [b"before", b"gone0", b"kept0", b"gone1"] and ru[-1] == b"end"


def test_decisions_survive_sigkill_before_their_markers(target):
    """EndTxn is answered once the decision is durable, before the markers are written: a
    SIGKILL right after commit/abort returned must not lose the decision. After the restart
    the coordinator finishes both: the committed records appear, the aborted ones never."""
    if target.broker is None:
        # Apache Kafka 4.4 had not written the pending marker 30 s after such a SIGKILL in
        # this single-node setup (not investigated): no control for this one.
        pytest.skip("Icestream only")
    bs = target.bootstrap
    topic = target.create_topic()
    pa = txn_producer(bs, tid())
    pc = txn_producer(bs, tid())
    pa.begin_transaction()
    pc.begin_transaction()
    pa.produce(topic, b"a0", partition=0)
    pc.produce(topic, b"c0", partition=0)
    assert pa.flush(30) == 0 and pc.flush(30) == 0
    pa.produce(topic, b"a1", partition=0)
    pc.produce(topic, b"c1", partition=0)
    assert pa.flush(30) == 0 and pc.flush(30) == 0
    pa.abort_transaction(30)
    pc.commit_transaction(30)
    target.kill9_and_restart()
    # 4 records and 2 markers; a coordinator that resumes after the restart may write a
    # marker again (Kafka allows that: a marker without an open transaction changes nothing).
    wait_stable(bs, topic, timeout=40, hw_at_least=6)
    p = txn_producer(bs, tid())
    run_txn(p, topic, [b"end"], commit=True)
    rc = [v for _, v in read_until(bs, topic, b"end", "read_committed")]
    assert sorted(rc[:-1]) == [b"c0", b"c1"] and rc[-1] == b"end"
    ru = [v for _, v in read_until(bs, topic, b"end", "read_uncommitted")]
    assert sorted(ru[:4]) == [b"a0", b"a1", b"c0", b"c1"] and ru[4:] == [b"end"]
