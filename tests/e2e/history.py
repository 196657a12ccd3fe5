"""A Jepsen-style history of Kafka operations and the checks a replicated log must pass.

Record every send, ack (with its offset), error and read; then `check()` reports:
- an acknowledged write missing from the reads (lost),
- a value read more than once, or read at a different offset than acknowledged,
- two values at one offset, or offsets that go backwards within one reader's partition,
- a value read that was never sent.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from collections import defaultdict


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent: dict[bytes, int] = {}                     # value -> partition
        self.acked: dict[bytes, tuple[int, int]] = {}        # value -> (partition, offset)
        self.errors: dict[bytes, str] = {}
        self.reads: list[tuple[str, int, int, bytes]] = []   # (reader, partition, offset, value)

    def send(self, value: bytes, partition: int):
        with self.lock:
            self.sent[value] = partition

    def ack(self, value: bytes, partition: int, offset: int):
        with self.lock:
            self.acked[value] = (partition, offset)

    def error(self, value: bytes, err: str):
        with self.lock:
            self.errors[value] = err

    def read(self, reader: str, partition: int, offset: int, value: bytes):
        with self.lock:
            self.reads.append((reader, partition, offset, value))

    def read_back(self, consumer, timeout: float = 60.0) -> int:
        """Polls an assigned consumer until it has returned as many records as were
        acknowledged and then goes quiet (or `timeout`), recording each read; closes it and
        returns how many records it read."""
        want = len(self.acked)
        got = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error() is not None:
                if got >= want and m is None:
                    break
                continue
            self.read("consumer", m.partition(), m.offset(), m.value())
            got += 1
        consumer.close()
        return got

    def check(self, exactly_once: bool = True) -> list[str]:
        problems = []
        final = defaultdict(list)  # reader -> [(partition, offset, value)]
        for reader, p, o, v in self.reads:
            final[reader].append((p, o, v))
        for reader, rs in final.items():
            at: dict[tuple[int, int], bytes] = {}
            where: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
            last: dict[int, int] = {}
            for p, o, v in rs:
                if p in last and o <= last[p]:
                    problems.append(f"{reader}: partition {p} read offset {o} after {last[p]}")
                last[p] = o
                if (p, o) in at and at[(p, o)] != v:
                    problems.append(f"{reader}: two values at {p}/{o}")
                at[(p, o)] = v
                where[v].append((p, o))
                if v not in self.sent:
                    problems.append(f"{reader}: read {v!r} that was never sent")
            for v, (p, o) in self.acked.items():
                seen = where.get(v, [])
                if not seen:
                    problems.append(f"{reader}: acknowledged {v!r} ({p}/{o}) lost")
                elif (p, o) not in seen:
                    problems.append(f"{reader}: {v!r} acknowledged at {p}/{o}, read at {seen}")
            if exactly_once:
                for v, seen in where.items():
                    if len(seen) > 1:
                        problems.append(f"{reader}: {v!r} read {len(seen)} times at {seen}")
        return problems


class Load:
    """An idempotent acks=all producer writing `<prefix>-<seq>` round-robin over `partitions`
    every 4 ms, in a thread, until `finish()`: every send, ack and error goes into `history`,
    and each ack's `(partition, time)` into `ack_times`."""

    def __init__(self, bootstrap: str, topic: str, partitions: list[int], prefix: bytes = b"v"):
        self.history = History()
        self.ack_times: list[tuple[int, float]] = []
        self.bootstrap, self.topic, self.partitions, self.prefix = (
            bootstrap, topic, partitions, prefix)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 2,
                      "message.timeout.ms": 60000, "retry.backoff.ms": 100,
                      "topic.metadata.refresh.interval.ms": 1000})
        seq = 0
        while not self.stop.is_set():
            part = self.partitions[seq % len(self.partitions)]
            value = b"%s-%06d" % (self.prefix, seq)

            def cb(err, msg, value=value):
                if err is None:
                    self.history.ack(value, msg.partition(), msg.offset())
                    self.ack_times.append((msg.partition(), time.monotonic()))
                else:
                    self.history.error(value, str(err))
            self.history.send(value, part)
            p.produce(self.topic, value=value, partition=part, on_delivery=cb)
            p.poll(0)
            seq += 1
            time.sleep(0.004)
        assert p.flush(90) == 0

    def acked(self) -> int:
        return len(self.history.acked)

    def check_read_back(self, **consumer_config):
        """Reads the load's partitions back from the start and asserts that every acknowledged
        record is there exactly once, in order (`History.check`)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused",
                      "enable.auto.commit": False, **consumer_config})
        c.assign([TopicPartition(self.topic, p, 0) for p in self.partitions])
        got = self.history.read_back(c)
        print(f"acked {len(self.history.acked)} errors {len(self.history.errors)} read {got}")
        problems = self.history.check(exactly_once=True)
        assert not problems, problems[:20]

    def finish(self):
        self.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive()


def replica_logs(b, topic, partition) -> bytes:
    """A broker's replica of a partition: its segment files, concatenated."""
    d = b.partition_dir(topic, partition)
    return b"".join(f.read_bytes() for f in sorted(d.glob("*.log")))


def wait_replicas_identical(brokers, topic, partitions, timeout: float = 30.0):
    """Waits until every broker's replica of each partition holds the same, non-empty log,
    byte for byte."""
    deadline = time.monotonic() + timeout
    for p in partitions:
        while True:
            logs = [replica_logs(b, topic, p) for b in brokers]
            if all(x == logs[0] for x in logs) and logs[0]:
                break
            assert time.monotonic() < deadline, f"partition {p} replicas differ: {[len(x) for x in logs]}"
            time.sleep(0.5)


def _selftest():
    h = History()
    for i in range(3):
        h.send(b"%d" % i, 0)
        h.ack(b"%d" % i, 0, i)
    h.read("r", 0, 0, b"0")
    h.read("r", 0, 1, b"1")
    assert any("lost" in p for p in h.check()), h.check()
    h.read("r", 0, 2, b"2")
    assert h.check() == []
    h.read("r", 0, 1, b"1")
    assert any("after" in p for p in h.check())
