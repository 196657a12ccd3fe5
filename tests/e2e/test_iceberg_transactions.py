"""Iceberg topics written by transactional producers: the table holds exactly the committed
records (each (partition, offset) once, with its key and value), never a record of an aborted
transaction, and a transaction's records only once it has committed, since the translator
reads each partition only up to its last stable offset (`Broker::read_log`). Also across a
SIGKILL of the broker, between transactions and inside one.

Aborted transactions are flushed before the abort, so their records really are in the log
(checked with a read_uncommitted consumer), interleaved with other producers' committed
batches in the same partitions.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from conftest import consumer_config, Delivered, watermarks
from test_iceberg_catalog import duckdb_connection
from test_iceberg_topics import catalog, iceberg_topic, table_rows

Pos = tuple[int, int]          # (partition, offset)
KV = tuple[bytes, bytes]       # (key, value)


# ---------------------------------------------------------------------------- producers


class Txn:
    """A confluent-kafka transactional producer whose transactions are driven step by step,
    so that several producers' transactions can be open at once, their batches interleaved
    in the same partitions."""

    def __init__(self, broker, tid: str, **conf):
        self.tid = tid
        self.p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": tid,
                           "linger.ms": 0, "transaction.timeout.ms": 60000,
                           "message.timeout.ms": 30000, **conf})
        self.p.init_transactions(30)
        self.d: Delivered | None = None
        self.count = 0  # transactions begun

    def begin(self):
        self.p.begin_transaction()
        self.d = Delivered()
        self.count += 1

    def send(self, topic: str, partition: int, key: bytes, value: bytes, flush=True):
        self.p.produce(topic, key=key, value=value, partition=partition, on_delivery=self.d)
        if flush:
            self.flushed()

    def flushed(self):
        left = self.p.flush(30)
        assert left == 0, f"{self.tid}: {left} records undelivered"
        assert not self.d.errors, f"{self.tid}: delivery errors {self.d.errors[:3]}"

    def end(self, commit: bool) -> dict[Pos, KV]:
        """Flushes (so that even an aborted transaction's records are in the log), commits or
        aborts, and answers the transaction's records by position."""
        self.flushed()
        deadline = time.monotonic() + 30
        while True:
            try:
                (self.p.commit_transaction if commit else self.p.abort_transaction)(30)
                break
            except KafkaException as e:
                if not e.args[0].retriable() or time.monotonic() > deadline:
                    raise
        recs = {(p, off): (k, v) for (p, off, k, v, _, _) in self.d.ok}
        assert len(recs) == len(self.d.ok)
        self.d = None
        return recs


def tid(name: str) -> str:
    return f"ice-{name}-{uuid.uuid4().hex[:8]}"


def rounds(producers: list[Txn], topic: str, partitions: int, n: int, tag: str,
           committed: dict, aborted: dict, per_txn: int = 6,
           aborted_txns: list | None = None):
    """`n` rounds: in each, every producer begins a transaction, the producers send one record
    at a time in turn (each flushed, so their batches interleave in every partition), then
    each ends its own. A producer's every third transaction is aborted (staggered across
    producers)."""
    for r in range(n):
        for t in producers:
            t.begin()
        for m in range(per_txn):
            for i, t in enumerate(producers):
                key = f"{tag}-{t.tid}-{t.count}-{m}".encode()
                t.send(topic, (i + m + r) % partitions, key, key * (1 + m % 3))
        for i, t in enumerate(producers):
            commit = (t.count + i) % 3 != 0
            recs = t.end(commit)
            dup = recs.keys() & (committed.keys() | aborted.keys())
            assert not dup, f"offsets handed out twice: {sorted(dup)[:5]}"
            (committed if commit else aborted).update(recs)
            if not commit and aborted_txns is not None:
                aborted_txns.append(set(recs))


# ---------------------------------------------------------------------------- the table


def rows_by_pos(rows: list[dict]) -> dict[Pos, KV]:
    out: dict[Pos, KV] = {}
    dups = []
    for r in rows:
        pos = (r["kafka"]["partition"], r["kafka"]["offset"])
        if pos in out:
            dups.append(pos)
        out[pos] = (r["key"], r["value"])
    assert not dups, f"table holds these (partition, offset) more than once: {sorted(dups)[:10]}"
    return out


def check_subset(got: dict[Pos, KV], want: dict[Pos, KV], aborted: dict[Pos, KV],
                 open_: dict[Pos, KV]):
    """Every row of the table is one it may hold now, with the produced key and value."""
    in_aborted = sorted(got.keys() & aborted.keys())
    assert not in_aborted, f"table holds records of aborted transactions at {in_aborted[:10]}"
    in_open = sorted(got.keys() & open_.keys())
    assert not in_open, f"table holds records of a transaction not committed yet at {in_open[:10]}"
    extra = sorted(got.keys() - want.keys())
    assert not extra, (f"table holds rows it should not (yet): {extra[:10]}, e.g. "
                       f"{[got[p] for p in extra[:3]]}")
    wrong = [(p, got[p], want[p]) for p in got if got[p] != want[p]]
    assert not wrong, f"rows whose key/value differ from what was produced: {wrong[:3]}"


def wait_table(broker, topic: str, want: dict[Pos, KV], aborted: dict[Pos, KV],
               open_: dict[Pos, KV] | None = None, timeout: float = 30.0) -> dict[Pos, KV]:
    """Polls the table (pyiceberg) until it holds exactly `want`; every snapshot read on the way
    must be a subset of it (never an aborted or uncommitted record, never a duplicate)."""
    deadline = time.monotonic() + timeout
    while True:
        got = rows_by_pos(table_rows(broker, topic))
        check_subset(got, want, aborted, open_ or {})
        if got.keys() == want.keys():
            return got
        if time.monotonic() > deadline:
            missing = sorted(want.keys() - got.keys())
            raise AssertionError(f"table has {len(got)} of {len(want)} committed records after "
                                 f"{timeout}s; missing e.g. {missing[:10]}")
        time.sleep(0.2)


def next_offsets(broker, topic: str) -> dict[int, int]:
    summary = catalog(broker).load_table(("kafka", topic)).current_snapshot().summary
    pairs = summary["icestream.kafka.next-offsets"].split(",")
    return {int(k): int(v) for k, v in (kv.split("=") for kv in pairs)}


def read_log(broker, topic: str, partitions: int, isolation: str) -> dict[Pos, KV]:
    """Every record a consumer with `isolation` reads up to each partition's high watermark
    (markers take offsets but are never returned, so this waits on the position)."""
    highs = {p: watermarks(broker, topic, p)[1] for p in range(partitions)}
    c = Consumer(consumer_config(broker, **{"isolation.level": isolation}))
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: dict[Pos, KV] = {}
        deadline = time.monotonic() + 20
        while True:
            pos = {tp.partition: tp.offset for tp in
                   c.position([TopicPartition(topic, p) for p in range(partitions)])}
            if all(pos[p] >= highs[p] for p in range(partitions)):
                return out
            assert time.monotonic() < deadline, f"{isolation} read stuck at {pos}, highs {highs}"
            m = c.poll(0.2)
            if m is not None and not m.error() and m.offset() < highs[m.partition()]:
                out[(m.partition(), m.offset())] = (m.key(), m.value())
    finally:
        c.close()


def assert_aborted_records_are_in_the_log(broker, topic, partitions, committed, aborted):
    """The premise: the aborted records reached the log (a read_uncommitted consumer sees
    them) and a read_committed consumer sees exactly the committed ones."""
    ru = read_log(broker, topic, partitions, "read_uncommitted")
    assert {p: ru.get(p) for p in aborted} == aborted
    assert {p: ru.get(p) for p in committed} == committed
    assert read_log(broker, topic, partitions, "read_committed") == committed


# ---------------------------------------------------------------------------- tests


def test_table_holds_exactly_the_committed_transactions(broker):
    """Three transactional ids over three partitions, every third transaction aborted after
    its records were flushed, plus one transaction (on partitions 0 and 1) left open across
    all the others: while it is open, the table holds the committed records of partition 2
    and those of partitions 0 and 1 below the open transaction's first offset, nothing else;
    once it commits, every committed record, its own included; never an aborted one."""
    partitions = 3
    topic = iceberg_topic(broker, partitions=partitions)
    producers = [Txn(broker, tid(f"p{i}")) for i in range(3)]
    opener = Txn(broker, tid("open"))
    committed: dict[Pos, KV] = {}
    aborted: dict[Pos, KV] = {}
    txns: list[set[Pos]] = []

    rounds(producers, topic, partitions, 1, "before", committed, aborted, aborted_txns=txns)
    opener.begin()
    for m in range(4):
        opener.send(topic, m % 2, f"open-{m}".encode(), b"o" * (10 + m))
    rounds(producers, topic, partitions, 3, "during", committed, aborted, aborted_txns=txns)
    for m in range(4, 8):  # more records in the open transaction, after others' commits
        opener.send(topic, m % 2, f"open-{m}".encode(), b"o" * (10 + m))
    rounds(producers, topic, partitions, 2, "during2", committed, aborted, aborted_txns=txns)
    # The case that needs the aborted index per producer: committed batches of other producers
    # inside an aborted transaction's offset range, in the same partition.
    inside = {pos for t in txns for pos in committed
              if any(q[0] == pos[0] and q[1] < pos[1] for q in t)
              and any(q[0] == pos[0] and q[1] > pos[1] for q in t)}
    assert len(inside) >= 6, f"committed records inside aborted ranges: {sorted(inside)}"
    print(f"{len(inside)} committed records lie inside aborted transactions' ranges")
    open_recs = {(p, off): (k, v) for (p, off, k, v, _, _) in opener.d.ok}
    assert {p for p, _ in open_recs} == {0, 1}
    first_open = {p: min(o for q, o in open_recs if q == p) for p in (0, 1)}
    # A committed transaction on partition 2 only, after everything else is in the log: once
    # the table holds it, a round has run with the open transaction's records in the log.
    barrier = producers[0]
    barrier.begin()
    barrier.send(topic, 2, b"barrier", b"b")
    committed.update(barrier.end(True))
    assert len(aborted) >= 24 and len(committed) >= 60

    visible = {pos: kv for pos, kv in committed.items()
               if pos[0] == 2 or pos[1] < first_open[pos[0]]}
    assert len(visible) < len(committed), "no committed record behind the open transaction"
    wait_table(broker, topic, visible, aborted, open_recs)
    nexts = next_offsets(broker, topic)
    for p in (0, 1):
        assert nexts.get(p, 0) <= first_open[p], \
            f"partition {p}: table covers up to {nexts[p]}, past the open transaction at " \
            f"{first_open[p]}"

    committed.update(opener.end(True))
    got = wait_table(broker, topic, committed, aborted)
    assert got == committed
    assert_aborted_records_are_in_the_log(broker, topic, partitions, committed, aborted)

    # DuckDB reads the same rows through the catalog.
    con = duckdb_connection()
    con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                    ENDPOINT '{broker.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none')""")
    n, distinct = con.execute(
        f'SELECT count(*), count(DISTINCT (kafka.partition, kafka."offset")) '
        f'FROM ice.kafka."{topic}"').fetchone()
    assert (n, distinct) == (len(committed), len(committed))
    aborted_keys = sorted({k.decode() for k, _ in aborted.values()})
    keys = ", ".join(f"'{k}'" for k in aborted_keys)
    assert con.execute(f'SELECT count(*) FROM ice.kafka."{topic}" '
                       f'WHERE decode(key) IN ({keys})').fetchone() == (0,)


def test_sigkill_between_transactions(broker):
    """Transactions (every third aborted) before a SIGKILL that comes right after the last
    commit/abort answer (its markers possibly not yet written; a 3 s target lag, so likely
    before the translator read them), then more after the restart from new producers with the
    same transactional ids: the table ends up holding exactly the committed records."""
    partitions = 3
    topic = iceberg_topic(broker, partitions=partitions, **{"iceberg.target.lag.ms": "3000"})
    tids = [tid(f"k{i}") for i in range(2)]
    committed: dict[Pos, KV] = {}
    aborted: dict[Pos, KV] = {}

    producers = [Txn(broker, t) for t in tids]
    rounds(producers, topic, partitions, 3, "a", committed, aborted)
    wait_table(broker, topic, committed, aborted)
    rounds(producers, topic, partitions, 3, "b", committed, aborted)
    del producers
    before = rows_by_pos(table_rows(broker, topic))
    broker.kill9()
    broker.start()
    print(f"just before the kill the table held {len(before)} of {len(committed)} committed "
          "records")

    wait_table(broker, topic, committed, aborted)
    producers = [Txn(broker, t) for t in tids]
    rounds(producers, topic, partitions, 3, "c", committed, aborted)
    got = wait_table(broker, topic, committed, aborted)
    assert got == committed
    assert_aborted_records_are_in_the_log(broker, topic, partitions, committed, aborted)


def test_open_transaction_across_sigkill(broker):
    """A transaction open (its records flushed) when the broker is SIGKILLed: after the restart
    the partitions' last stable offsets still stop at it, so the table holds nothing of it nor
    anything behind it, until the same producer commits it; then all of it."""
    partitions = 3
    topic = iceberg_topic(broker, partitions=partitions)
    other = Txn(broker, tid("other"))
    opener = Txn(broker, tid("open"))
    committed: dict[Pos, KV] = {}
    aborted: dict[Pos, KV] = {}
    rounds([other], topic, partitions, 1, "before", committed, aborted)
    opener.begin()
    for m in range(4):
        opener.send(topic, m % 2, f"open-{m}".encode(), b"o" * (10 + m))
    rounds([other], topic, partitions, 3, "behind", committed, aborted)
    open_recs = {(p, off): (k, v) for (p, off, k, v, _, _) in opener.d.ok}
    first_open = {p: min(o for q, o in open_recs if q == p) for p in (0, 1)}

    broker.kill9()
    broker.start()
    other = Txn(broker, other.tid)
    other.begin()
    other.send(topic, 2, b"barrier", b"b")
    committed.update(other.end(True))
    visible = {pos: kv for pos, kv in committed.items()
               if pos[0] == 2 or pos[1] < first_open[pos[0]]}
    wait_table(broker, topic, visible, aborted, open_recs)

    committed.update(opener.end(True))
    got = wait_table(broker, topic, committed, aborted)
    assert got == committed
    assert_aborted_records_are_in_the_log(broker, topic, partitions, committed, aborted)
