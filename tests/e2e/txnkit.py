"""Helpers for the transaction tests (test_transactions.py, test_cluster_transactions.py):
transactional producers, reads that stop at a sentinel record, the last stable offset as
clients see it, FindCoordinator for a transactional id, the consume-transform-produce worker
(txn_worker.py) as a child process, and the exactly-once check of its output.

Reads stop at a sentinel (a record committed last) rather than after a quiet period: a
read_committed consumer returns records in offset order, so once it has returned the
sentinel it has returned every committed record before it and skipped every aborted one.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from confluent_kafka import (Consumer, IsolationLevel, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

import kwire

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------- producers


def txn_producer(bootstrap: str, transactional_id: str, init: bool = True, **overrides) -> Producer:
    """A confluent-kafka transactional producer, init_transactions() done."""
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
        "retry.backoff.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
    }
    conf.update(overrides)
    p = Producer(conf)
    if init:
        p.init_transactions(30)
    return p


def run_txn(p: Producer, topic: str, values: list[bytes], commit: bool = True,
            partition: int = 0) -> None:
    """One whole transaction of `values` to one partition, committed or aborted. The records
    are flushed (acknowledged) before the end, so an abort really has records to abort."""
    p.begin_transaction()
    for v in values:
        p.produce(topic, v, partition=partition)
    assert p.flush(30) == 0
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def retrying_call(fn, timeout: float = 60.0):
    """fn() again while it raises a retriable (neither fatal nor abortable) KafkaException,
    as librdkafka asks of commit_transaction and friends."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except KafkaException as e:
            err = e.args[0]
            if (err.retriable() and not err.fatal() and not err.txn_requires_abort()
                    and time.monotonic() < deadline):
                time.sleep(0.2)
                continue
            raise


def kafka_error(exc: BaseException) -> KafkaError:
    assert isinstance(exc, KafkaException), repr(exc)
    return exc.args[0]


# ---------------------------------------------------------------------------- consumers


def consumer(bootstrap: str, isolation: str, **overrides) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "icestream-e2e-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
    }
    conf.update(overrides)
    return Consumer(conf)


def read_until(bootstrap: str, topic: str, sentinel: bytes, isolation: str,
               partition: int = 0, timeout: float = 30.0,
               start: int = 0) -> list[tuple[int, bytes]]:
    """(offset, value) of every record of one partition from `start` up to and including the
    record whose value is `sentinel`."""
    c = consumer(bootstrap, isolation)
    try:
        c.assign([TopicPartition(topic, partition, start)])
        return poll_until(c, sentinel, timeout)
    finally:
        c.close()


def poll_until(c: Consumer, sentinel: bytes, timeout: float = 30.0) -> list[tuple[int, bytes]]:
    out = []
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"no {sentinel!r} after {timeout}s; read {out}"
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            continue
        out.append((m.offset(), m.value()))
        if m.value() == sentinel:
            return out


def poll_quiet(c: Consumer, seconds: float) -> list[tuple[int, bytes]]:
    """Whatever the consumer returns within `seconds` (an observation window for what must
    NOT arrive, never a wait for something to happen)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = c.poll(0.1)
        if m is not None and not m.error():
            out.append((m.offset(), m.value()))
    return out


def wait_position(c: Consumer, topic: str, partition: int, want: int, timeout: float = 15.0):
    """Polls (returning no record) until the consumer's position is `want`."""
    deadline = time.monotonic() + timeout
    pos = None
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        assert m is None or m.error(), f"unexpected record {m.offset()}: {m.value()!r}"
        pos = c.position([TopicPartition(topic, partition)])[0].offset
        if pos == want:
            return
    raise AssertionError(f"position {pos}, expected {want}")


# ---------------------------------------------------------------------------- offsets


def list_offset(bootstrap: str, topic: str, partition: int, isolation: IsolationLevel) -> int:
    """ListOffsets LATEST: the high watermark (read_uncommitted) or the last stable offset
    (read_committed)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, partition)
    fs = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation,
                            request_timeout=10)
    return fs[tp].result(timeout=20).offset


def hw_and_lso(bootstrap: str, topic: str, partition: int = 0,
               timeout: float = 20.0) -> tuple[int, int]:
    """(high watermark, last stable offset); asks again while ListOffsets fails (a broker
    just restarted may not lead the partition yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return (list_offset(bootstrap, topic, partition, IsolationLevel.READ_UNCOMMITTED),
                    list_offset(bootstrap, topic, partition, IsolationLevel.READ_COMMITTED))
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def watermark_high(bootstrap: str, topic: str, partition: int, isolation: str) -> int:
    """The high end get_watermark_offsets reports to a consumer of that isolation level."""
    c = consumer(bootstrap, isolation)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10,
                                       cached=False)[1]
    finally:
        c.close()


def wait_stable(bootstrap: str, topic: str, partition: int = 0, timeout: float = 30.0,
                hw_at_least: int = 0) -> int:
    """Until the last stable offset equals the high watermark (no open transaction on the
    partition) and the high watermark is at least `hw_at_least`; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = hw_and_lso(bootstrap, topic, partition, timeout=0)
        except KafkaException as e:
            last = repr(e)
        else:
            if last[0] == last[1] and last[0] >= hw_at_least:
                return last[0]
        time.sleep(0.2)
    raise AssertionError(f"{topic}/{partition}: (hw, lso) {last} not stable after {timeout}s")


# ---------------------------------------------------------------------------- wire


def find_txn_coordinator(bootstrap: str, transactional_id: str) -> tuple[int, int]:
    """FindCoordinator v1 with key type 1 (transaction): (error code, node id)."""
    body = kwire.string(transactional_id) + kwire.i8(1)
    with kwire.Conn.to(bootstrap, timeout=5) as conn:
        conn.send(kwire.frame(kwire.request_header(10, 1, 11) + body))
        corr, resp = conn.recv_response()
    assert corr == 11
    _throttle, error_code = struct.unpack_from(">ih", resp, 0)
    pos = 6
    (msg_len,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + max(msg_len, 0)
    (node_id,) = struct.unpack_from(">i", resp, pos)
    return error_code, node_id


# ---------------------------------------------------------------------------- the worker


class Worker:
    """txn_worker.py in a child process: one generation of the consume-transform-produce loop.
    Its stdout lines (JSON events) are collected in `events` and a queue."""

    def __init__(self, spec: dict, log_path: Path):
        self.spec = spec
        self.events: list[dict] = []
        self.q: queue.Queue = queue.Queue()
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "txn_worker.py"), json.dumps(spec)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, cwd=HERE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"ev": "garbage", "line": line.decode(errors="replace")}
            self.events.append(ev)
            self.q.put(ev)
        self.q.put({"ev": "eof"})

    def wait_event(self, kinds: set[str], timeout: float, after: float = 0.0) -> dict:
        """The next event of one of `kinds` emitted after time.monotonic() `after` (or
        "eof" when the process ended)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, (f"worker: no {kinds} in {timeout}s; last events "
                              f"{self.events[-5:]}; its log ends:\n{self.log_tail(60)}")
            try:
                ev = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if ev["ev"] == "eof" or (ev["ev"] in kinds and ev.get("t", 0.0) > after):
                return ev

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def commits(self) -> int:
        return sum(1 for e in self.events if e["ev"] == "commit")

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.reader.join(10)
        self.log.close()

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"worker still running after {timeout}s; last events "
                                 f"{self.events[-5:]}; its log ends:\n{self.log_tail(60)}")
        self.reader.join(10)
        self.log.close()
        return code


def worker_spec(bootstrap: str, src: str, dst: str, group: str, transactional_id: str,
                generation: int, seed: int, abort_ratio: float = 0.25, batch: int = 20,
                hang_after: int | None = None, transaction_timeout_ms: int = 10000) -> dict:
    return {"bootstrap": bootstrap, "src": src, "dst": dst, "group": group,
            "transactional_id": transactional_id, "generation": generation, "seed": seed,
            "abort_ratio": abort_ratio, "batch": batch, "hang_after": hang_after,
            "transaction_timeout_ms": transaction_timeout_ms}


def produce_inputs(bootstrap: str, topic: str, partitions: int, n: int) -> dict[int, list[bytes]]:
    """n plain (idempotent, non-transactional) records round-robin over the partitions;
    returns each partition's values in offset order."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5})
    errors = []
    for i in range(n):
        p.produce(topic, b"in-%05d" % i, partition=i % partitions,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors[:3]
    return {q: [b"in-%05d" % i for i in range(n) if i % partitions == q]
            for q in range(partitions)}


def read_output(bootstrap: str, topic: str, partitions: int, isolation: str,
                timeout: float = 60.0) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of each partition up to its end for that isolation level (the high
    watermark, or the LSO), read from offset 0. Call once nothing writes to the topic."""
    out = {}
    for q in range(partitions):
        c = consumer(bootstrap, isolation)
        try:
            end = c.get_watermark_offsets(TopicPartition(topic, q), timeout=10, cached=False)[1]
            c.assign([TopicPartition(topic, q, 0)])
            got = []
            deadline = time.monotonic() + timeout
            while c.position([TopicPartition(topic, q)])[0].offset < end:
                assert time.monotonic() < deadline, (
                    f"{topic}/{q}: at {c.position([TopicPartition(topic, q)])} of {end}")
                m = c.poll(0.2)
                if m is not None and not m.error():
                    got.append((m.offset(), m.value()))
            out[q] = got
        finally:
            c.close()
    return out


def check_exactly_once(inputs: dict[int, list[bytes]], output: dict[int, list[tuple[int, bytes]]],
                       aborted: set[str]) -> list[str]:
    """The worker writes `out|<input>|<txn tag>` to the input's partition. Reports (in
    history.py's style): an input missing from the output (lost), an input written more than
    once (duplicate), output from a transaction the worker aborted (aborted read), a value no
    input explains, and output out of the input's order."""
    problems = []
    for q, recs in output.items():
        seen = defaultdict(list)
        order = []
        for off, v in recs:
            parts = v.split(b"|")
            if len(parts) != 3 or parts[0] != b"out":
                problems.append(f"{q}/{off}: unexpected value {v!r}")
                continue
            inp, tag = parts[1], parts[2].decode()
            seen[inp].append((off, tag))
            order.append(inp)
            if tag in aborted:
                problems.append(f"{q}/{off}: {inp!r} from aborted transaction {tag}")
        want = inputs.get(q, [])
        for inp in want:
            if inp not in seen:
                problems.append(f"partition {q}: {inp!r} lost")
        for inp, where in seen.items():
            if inp not in want:
                problems.append(f"partition {q}: {inp!r} was never an input of this partition")
            elif len(where) > 1:
                problems.append(f"partition {q}: {inp!r} written {len(where)} times at {where}")
        if not problems and order != want:
            problems.append(f"partition {q}: output order differs from input order")
    return problems


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = consumer(bootstrap, "read_committed", **{"group.id": group})
    try:
        res = c.committed([TopicPartition(topic, q) for q in range(partitions)], timeout=20)
        return [tp.offset for tp in sorted(res, key=lambda tp: tp.partition)]
    finally:
        c.close()


def run_ctp(bootstrap: str, tmp_path: Path, src: str, dst: str, seed: int,
            hang_after: int | None, chaos=None,
            max_generations: int = 1, deadline_s: float = 120.0,
            transaction_timeout_ms: int = 10000, batch: int = 20) -> dict:
    """Runs txn_worker.py generations with one transactional id until one finishes. The
    first generation hangs inside a transaction after `hang_after` commits and is SIGKILLed
    (an application crash); `chaos(worker)` may kill brokers while a generation runs. Returns
    {"aborted": tags never committed, "events": all events, "generations": n}."""
    tx, group = "txn-" + uuid.uuid4().hex[:10], "ctp-" + uuid.uuid4().hex[:8]
    events = []
    gen = 0
    failures = 0
    deadline = time.monotonic() + deadline_s
    while True:
        gen += 1
        assert time.monotonic() < deadline, f"no generation finished in {deadline_s}s"
        spec = worker_spec(bootstrap, src, dst, group, tx, gen, seed,
                           hang_after=hang_after if gen == 1 else None, batch=batch,
                           transaction_timeout_ms=transaction_timeout_ms)
        w = Worker(spec, tmp_path / f"worker{gen}.log")
        try:
            if gen == 1 and hang_after is not None:
                ev = w.wait_event({"hang"}, timeout=deadline - time.monotonic())
                assert ev["ev"] == "hang", (ev, w.events[-5:], w.log_tail())
                w.kill9()
                events += w.events
                continue
            if chaos is not None:
                chaos(w)
            code = w.wait(max(deadline - time.monotonic(), 1))
        finally:
            if w.proc.poll() is None:
                w.kill9()
        events += w.events
        if code == 0:
            break
        failures += 1
        print(f"generation {gen} exited {code}: {w.events[-3:]}")
        assert failures < max_generations, (
            f"generation {gen} exited {code}: {w.events[-5:]}\n{w.log_tail()}")
    begun = {e["tag"] for e in events if e["ev"] == "begin"}
    committing = {e["tag"] for e in events if e["ev"] == "committing"}
    explicit = {e["tag"] for e in events if e["ev"] == "abort"}
    # A transaction whose commit was never asked for can only have been aborted.
    aborted = (begun - committing) | explicit
    print(f"{gen} generations, {len(begun)} transactions, {len(aborted)} aborted, "
          f"{sum(1 for e in events if e['ev'] == 'commit')} committed")
    return {"aborted": aborted, "events": events, "generations": gen, "group": group}


def check_ctp_result(bootstrap: str, src: str, dst: str, partitions: int, inputs: dict,
                     result: dict):
    for q in range(partitions):
        wait_stable(bootstrap, dst, q)
    out_rc = read_output(bootstrap, dst, partitions, "read_committed")
    problems = check_exactly_once(inputs, out_rc, result["aborted"])
    assert not problems, problems[:20]
    # The aborted transactions' records are really in the log (the test aborted something).
    out_ru = read_output(bootstrap, dst, partitions, "read_uncommitted")
    in_log = {v.split(b"|")[2].decode() for recs in out_ru.values() for _, v in recs}
    assert result["aborted"] & in_log, "no aborted transaction reached the log"
    ends = [len(inputs[q]) for q in range(partitions)]
    assert committed_offsets(bootstrap, result["group"], src, partitions) == ends


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
