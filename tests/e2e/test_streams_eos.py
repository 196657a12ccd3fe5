"""Kafka transactions and exactly-once through real Java clients (tests/compat/streams, issue 17):

- kafka-clients 4.4 against one broker: a transactional producer commits and aborts,
  read_committed sees only committed records and read_uncommitted all of them, an open
  transaction holds the last stable offset, a second producer with the same transactional.id
  fences the first, a consume-transform-produce loop with sendOffsetsToTransaction(offsets,
  consumer.groupMetadata()), KIP-447 fencing of stale transactional offset commits; and the
  Kafka Streams word count once, in the same JVM.
- Kafka Streams 4.4 (processing.guarantee=exactly_once_v2) against three brokers, RF 3: a word
  count (repartition topic, state store and changelog) over 3000 lines; one broker (the one
  coordinating the app's transactions) is SIGKILLed mid-run, the second half of the input
  arrives while it is down, the app commits without it, and it is started again while the
  app is still at work. The committed output, read here with confluent-kafka
  read_committed, must hold for each word exactly the updates 1, 2, ..., n (n its count in
  the input): nothing lost, nothing duplicated by a retry, no aborted update visible.
- The same word count on one broker with the app itself SIGKILLed mid-run: a second instance
  finishes it once the coordinator has aborted the dead one's open transaction on its
  timeout; the output is still exact.

The same Java program passes every case against Apache Kafka 4.4 (tests/compat/README.md).
"""

from __future__ import annotations

import collections
import random
import re
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from apache_kafka import ApacheKafka
from cluster import start_cluster, wait_formed
from conftest import create_topic, unique_topic

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tests" / "compat"
STREAMS = COMPAT / "streams" / "target"

LINES = 3000
PARTITIONS = 3
VOCABULARY = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike "
              "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
              "zulu ice stream kafka raft").split()
CLIENT_CASES = ["txn_commit_and_abort", "txn_open_transaction_holds_lso", "txn_zombie_fenced",
                "txn_consume_transform_produce", "txn_offset_commit_kip447_fencing"]


@pytest.fixture(scope="module")
def streams_classpath() -> str:
    # Only this module's part: resolving kafka-streams the first time takes a while.
    subprocess.run([str(COMPAT / "build.sh"), "streams"], check=True, timeout=1200)
    return f"{STREAMS / 'classes'}:{(STREAMS / 'classpath.txt').read_text().strip()}"


def java(classpath: str, bootstrap: str, cases: list[str], props: dict[str, str]) -> list[str]:
    return (["java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
            + [f"-D{k}={v}" for k, v in props.items()]
            + ["-cp", classpath, "compat.streams.StreamsEos", bootstrap] + cases)


def results(stdout: str) -> tuple[set[str], dict[str, str]]:
    passed = set(re.findall(r"^PASS (\S+)", stdout, re.M))
    failed = dict(re.findall(r"^FAIL (\S+): (.*)$", stdout, re.M))
    return passed, failed


def make_lines(n: int, seed: int = 17) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(VOCABULARY) for _ in range(rnd.randint(1, 8))) for _ in range(n)]


def produce_lines(bootstrap: str, topic: str, lines: list[str]) -> None:
    """Idempotent, acks=all: a retry while a broker is down must not duplicate an input line."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "message.timeout.ms": 60000})
    for line in lines:
        p.produce(topic, value=line.encode(), on_delivery=lambda err, _m: err and errors.append(err))
        p.poll(0)
    left = p.flush(70)
    assert left == 0 and not errors, f"{left} undelivered, errors {errors[:5]}"


def end_offsets(bootstrap: str, topic: str, isolation: IsolationLevel) -> dict[int, int]:
    """Each partition's end offset as `isolation` sees it (read_committed: the last stable
    offset). A new AdminClient each time: librdkafka's (2.16) keeps sending ListOffsets to a
    partition's old leader after it died and answers offset -1001 without an error, even once
    Metadata names the new leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        fs = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)},
                                isolation_level=isolation, request_timeout=10)
        ends = {tp.partition: f.result(timeout=15).offset for tp, f in fs.items()}
    finally:
        # An error's traceback holds this frame: the client would live on, retrying its brokers.
        del admin
    assert all(o >= 0 for o in ends.values()), f"ListOffsets {topic} {isolation}: {ends}"
    return ends


def wait_stable(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Until no transaction is open on any partition (last stable offset = high watermark):
    every transaction the app began has been committed or aborted, its markers written."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            lso = end_offsets(bootstrap, topic, IsolationLevel.READ_COMMITTED)
            hw = end_offsets(bootstrap, topic, IsolationLevel.READ_UNCOMMITTED)
            last = (lso, hw)
            if lso == hw:
                return hw
        except Exception as e:  # noqa: BLE001 - a broker still electing leaders: ask again
            last = repr(e)
        time.sleep(0.2)
    raise AssertionError(f"{topic}: a transaction stays open (read_committed end, high watermark): {last}")


def read_committed_updates(bootstrap: str, topic: str, timeout: float = 60.0) -> dict[str, list[int]]:
    """Every committed (word, count) update of the output, per word in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "icestream-e2e-unused",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    updates: dict[str, list[int]] = collections.defaultdict(list)
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, f"reading {topic}: only partitions {at_end} reached their end"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_end.add(m.partition())
                continue
            (count,) = struct.unpack(">q", m.value())
            updates[m.key().decode()].append(count)
    finally:
        c.close()
    return updates


def wait_for(cond, timeout: float, what: str, proc: subprocess.Popen, diag) -> None:
    """Until cond() holds; fails at the deadline or when the Java program exits first."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the Java program exited ({proc.returncode}) while waiting for {what}:\n{diag()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{diag()}")
        time.sleep(0.2)


def run_all_cases(classpath: str, bootstrap: str) -> None:
    """Every case in one JVM: the kafka-clients ones and the word count (1000 lines)."""
    r = subprocess.run(java(classpath, bootstrap, CLIENT_CASES + ["streams_wordcount_eos"],
                            {"streams.timeout.s": "90", "streams.lines": "1000"}),
                       capture_output=True, text=True, timeout=280)
    print(r.stdout)
    passed, failed = results(r.stdout)
    if failed or r.returncode != 0:
        print(r.stderr[-8000:])
    assert re.search(r"^streams-eos: \d+ passed, \d+ failed$", r.stdout, re.M), r.stdout[-2000:] + r.stderr[-3000:]
    assert not failed, f"failing cases: {failed}"
    assert passed == set(CLIENT_CASES) | {"streams_wordcount_eos"}
    assert r.returncode == 0


@pytest.mark.timeout(300)
def test_positive_control_apache_kafka(streams_classpath, tmp_path_factory):
    """Apache Kafka 4.4 (one KRaft node from tests/compat/java's jars) passes every case: the
    cases are right."""
    subprocess.run([str(COMPAT / "build.sh"), "java"], check=True, timeout=1200)
    k = ApacheKafka(tmp_path_factory.mktemp("apache-kafka"))
    try:
        k.start()
        run_all_cases(streams_classpath, k.bootstrap)
    finally:
        k.stop()


@pytest.mark.timeout(300)
def test_transactions_kafka_clients_single_broker(broker_factory, streams_classpath):
    run_all_cases(streams_classpath, broker_factory().bootstrap)


@pytest.mark.timeout(300)
def test_streams_word_count_exactly_once_across_broker_restart(broker_factory, streams_classpath, tmp_path):
    brokers = start_cluster(broker_factory, 3)
    wait_formed(brokers)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    by_id = {i + 1: b for i, b in enumerate(brokers)}  # start_cluster's --node-id
    src, out = unique_topic("wc-in"), unique_topic("wc-out")
    for t in (src, out):
        create_topic(brokers[0], t, partitions=PARTITIONS, replication_factor=3)
    lines = make_lines(LINES)
    half = LINES // 2
    produce_lines(bootstrap, src, lines[:half])

    app = unique_topic("wc-app")
    stdout_path, stderr_path = tmp_path / "streams.out", tmp_path / "streams.err"
    t0 = time.monotonic()
    with open(stdout_path, "w") as so, open(stderr_path, "w") as se:
        proc = subprocess.Popen(
            java(streams_classpath, bootstrap, ["streams_wordcount_eos"],
                 {"streams.input": src, "streams.output": out, "streams.rf": "3", "streams.app": app,
                  "streams.expect.lines": str(LINES), "streams.timeout.s": "150",
                  # About 9 s of work for 3000 lines: the restart lands mid-run.
                  "streams.line.delay.ms": "3"}),
            stdout=so, stderr=se, stdin=subprocess.DEVNULL)
    # The word count's first step (lines to words, through Streams' repartition topic) shows
    # the app's progress: Streams runs it ahead of the counting step (so does it on Kafka).
    repartition = f"{app}-words-repartition"
    last_ends: dict[str, object] = {}

    def diag() -> str:
        return (f"last end offsets of {repartition}: {last_ends}\nstdout:\n{stdout_path.read_text()[-4000:]}\n"
                f"stderr:\n{stderr_path.read_text()[-6000:]}")

    def total(isolation: IsolationLevel) -> int:
        try:
            ends = end_offsets(bootstrap, repartition, isolation)
        except Exception as e:  # noqa: BLE001 - not created yet, leaders moving: ask again
            last_ends[str(isolation)] = repr(e)
            return -1
        last_ends[str(isolation)] = ends
        return sum(ends.values())

    try:
        # Mid-run: a quarter of the first half's words are through the first step.
        threshold = sum(len(line.split()) for line in lines[:half]) // 4
        wait_for(lambda: total(IsolationLevel.READ_UNCOMMITTED) >= threshold, 60,
                 f"{threshold} records in {repartition}", proc, diag)

        # The broker coordinating the app's transactions (the program prints it), else the
        # group's coordinator.
        m = re.search(r"^INFO .*coordinators group=(-?\d+) txn=(-?\d+)", stdout_path.read_text(), re.M)
        if m and int(m.group(2)) in by_id:
            victim_id, role = int(m.group(2)), "transaction coordinator"
        else:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            desc = admin.describe_consumer_groups([app], request_timeout=10)[app].result(timeout=15)
            victim_id, role = desc.coordinator.id, "group coordinator"
        victim = by_id[victim_id]
        written = total(IsolationLevel.READ_UNCOMMITTED)
        print(f"{time.monotonic() - t0:.1f}s: SIGKILL broker {victim_id} ({role}); {written} records in {repartition}")
        victim.kill9()
        produce_lines(bootstrap, src, lines[half:])
        print(f"{time.monotonic() - t0:.1f}s: second half of the input produced")
        # The app goes on without it: transactions begun after the kill commit.
        wait_for(lambda: total(IsolationLevel.READ_COMMITTED) >= written + 1000, 60,
                 f"1000 more committed records in {repartition} with broker {victim_id} down", proc, diag)
        print(f"{time.monotonic() - t0:.1f}s: committed past {written + 1000} without it; starting broker {victim_id}")
        victim.start()
        print(f"{time.monotonic() - t0:.1f}s: broker {victim_id} back")
        assert proc.poll() is None, f"the app finished before broker {victim_id} was back:\n{diag()}"
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout, stderr = stdout_path.read_text(), stderr_path.read_text()
    print(f"{time.monotonic() - t0:.1f}s: Java program exited {proc.returncode}")
    print(stdout)
    passed, failed = results(stdout)
    if failed or proc.returncode != 0:
        print(stderr[-8000:])
    assert "streams_wordcount_eos" in passed, f"the Streams app failed: {failed or stdout[-3000:]}"

    # Checked again here, independently of the Java program.
    check_output(bootstrap, src, out, lines)


def check_output(bootstrap: str, src: str, out: str, lines: list[str]) -> None:
    """The input holds each line once; the committed output holds for each word exactly the
    updates 1..n, n its count in `lines`, and no transaction stays open on it."""
    hw_in = end_offsets(bootstrap, src, IsolationLevel.READ_UNCOMMITTED)
    assert sum(hw_in.values()) == len(lines), f"input holds {hw_in}, want {len(lines)} lines"
    want = collections.Counter(w for line in lines for w in line.split())
    wait_stable(bootstrap, out)
    updates = read_committed_updates(bootstrap, out)
    wrong = {}
    for word in sorted(set(want) | set(updates)):
        got = updates.get(word, [])
        if got != list(range(1, want[word] + 1)):
            dup = [c for c, k in collections.Counter(got).items() if k > 1][:5]
            wrong[word] = (f"want 1..{want[word]}, got {len(got)} updates, last {got[-1] if got else None}, "
                           f"repeated {dup}")
    assert not wrong, f"{len(wrong)} words counted wrong: {dict(list(wrong.items())[:5])}"
    final = {w: u[-1] for w, u in updates.items()}
    assert final == dict(want)


@pytest.mark.timeout(300)
def test_streams_word_count_exactly_once_across_app_crash(broker_factory, streams_classpath, tmp_path):
    """The Streams app SIGKILLed mid-run, with a transaction open; a second instance (a new
    transactional.id: its state directory is new) takes over once the dead member's session
    expires. It can only read past the dead one's open transaction once the coordinator
    aborts it on its timeout (10 s, Streams' default under exactly_once_v2); it restores the
    count store from the changelog, read_committed. The committed output is still exact."""
    b = broker_factory()
    src, out = unique_topic("wc-in"), unique_topic("wc-out")
    for t in (src, out):
        create_topic(b, t, partitions=PARTITIONS)
    lines = make_lines(LINES, seed=29)
    produce_lines(b.bootstrap, src, lines)
    app = unique_topic("wc-app")
    repartition = f"{app}-words-repartition"
    props = {"streams.input": src, "streams.output": out, "streams.app": app,
             "streams.expect.lines": str(LINES), "streams.timeout.s": "120",
             "streams.session.timeout.ms": "6000"}
    first_out = tmp_path / "first.out"
    with open(first_out, "w") as so, open(tmp_path / "first.err", "w") as se:
        first = subprocess.Popen(java(streams_classpath, b.bootstrap, ["streams_wordcount_eos"],
                                      dict(props, **{"streams.line.delay.ms": "3"})),
                                 stdout=so, stderr=se, stdin=subprocess.DEVNULL)
    try:
        threshold = sum(len(line.split()) for line in lines) // 3

        def progressed() -> bool:
            try:
                return sum(end_offsets(b.bootstrap, repartition, IsolationLevel.READ_UNCOMMITTED).values()) >= threshold
            except Exception:  # noqa: BLE001 - not created yet
                return False
        wait_for(progressed, 60, f"{threshold} records in {repartition}", first,
                 lambda: first_out.read_text()[-4000:] + (tmp_path / "first.err").read_text()[-4000:])
    finally:
        first.kill()
        first.wait()
    print(first_out.read_text())
    t0 = time.monotonic()
    r = subprocess.run(java(streams_classpath, b.bootstrap, ["streams_wordcount_eos"], props),
                       capture_output=True, text=True, timeout=200)
    print(f"second instance: {time.monotonic() - t0:.1f}s, exit {r.returncode}\n{r.stdout}")
    passed, failed = results(r.stdout)
    if failed or r.returncode != 0:
        print(r.stderr[-8000:])
    assert "streams_wordcount_eos" in passed, f"the second instance failed: {failed or r.stdout[-3000:]}"
    check_output(b.bootstrap, src, out, lines)
