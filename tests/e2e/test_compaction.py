"""Log compaction (cleanup.policy=compact): the latest value per key survives at its original
offset, tombstones go after delete.retention.ms, and a crash during compaction leaves a
complete, readable log."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Producer

from conftest import BrokerDied, Delivered, consume_all, create_topic, producer_config

KEYS = 20
UPDATES = 12
DELETED = range(5)  # keys k0..k4 get tombstones


def fill(broker, topic):
    """Writes updates and tombstones, then filler records so that all of them are in sealed
    segments. Returns {key: (offset, value)} of what compaction must keep."""
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    d = Delivered()
    for u in range(UPDATES):
        for k in range(KEYS):
            p.produce(topic, key=b"k%d" % k, value=b"k%d-v%d-" % (k, u) + b"x" * 80, on_delivery=d)
        p.flush(30)
    for k in DELETED:
        p.produce(topic, key=b"k%d" % k, value=None, on_delivery=d)
    p.flush(30)
    for f in range(120):
        p.produce(topic, key=b"filler-%d" % f, value=b"f" * 100, on_delivery=d)
        p.poll(0)
    assert p.flush(30) == 0 and not d.errors, d.errors[:3]
    latest = {}
    for _, offset, key, value, _, _ in d.ok:
        latest[key] = (offset, value)
    return {k: v for k, v in latest.items() if v[1] is not None}


def wait_compacted(broker, topic, keep, timeout=60):
    """Polls until the log below the filler holds exactly one record per kept key."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = consume_all(broker, topic, [0])
        seen = [(m.key(), m.offset(), m.value()) for m in msgs if not m.key().startswith(b"filler")]
        if sorted(seen, key=lambda r: r[1]) == sorted(((k, o, v) for k, (o, v) in keep.items()
                                                       if not k.startswith(b"filler")), key=lambda r: r[1]):
            return msgs
        assert time.monotonic() < deadline, f"not compacted after {timeout}s: {len(seen)} records {seen[:8]}"
        time.sleep(0.5)


COMPACT = {"cleanup.policy": "compact", "segment.bytes": "4096", "delete.retention.ms": "0"}


def test_compaction_keeps_latest_value_per_key_at_its_offset(broker_factory):
    broker = broker_factory(args=["--retention-check-interval-ms", "300"])
    topic = create_topic(broker, config=COMPACT)
    keep = fill(broker, topic)
    msgs = wait_compacted(broker, topic, keep)
    offsets = [m.offset() for m in msgs]
    assert offsets == sorted(offsets)
    for m in msgs:
        assert keep[m.key()] == (m.offset(), m.value())
    assert not any(m.key() == b"k%d" % k for m in msgs for k in DELETED)
    # Producing continues after compaction, at the next offset.
    d = Delivered()
    p = Producer(producer_config(broker))
    p.produce(topic, key=b"k7", value=b"after", on_delivery=d)
    p.flush(10)
    assert d.ok[0][1] == max(o for o, _ in keep.values()) + 1


def test_compacted_topic_refuses_records_without_key(broker):
    topic = create_topic(broker, config={"cleanup.policy": "compact"})
    p = Producer(producer_config(broker))
    d = Delivered()
    p.produce(topic, value=b"no key", on_delivery=d)
    p.flush(10)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.INVALID_RECORD]


@pytest.mark.parametrize("failpoint", ["compaction-before-swap", "compaction-mid-swap"])
def test_crash_during_compaction_leaves_a_complete_log(broker_factory, failpoint):
    # No compaction while the data is written (the first check runs at start, on an empty log).
    broker = broker_factory(args=["--retention-check-interval-ms", "600000"])
    topic = create_topic(broker, config=COMPACT)
    keep = fill(broker, topic)
    before = [(m.offset(), m.key(), m.value()) for m in consume_all(broker, topic, [0])]
    broker.stop()
    # Start with the failpoint: the broker aborts in the middle of its first compaction,
    # which runs as the partition opens (possibly before the broker reports ready).
    broker.extra_args = ["--retention-check-interval-ms", "300"]
    broker.extra_env = {"ICESTREAM_FAILPOINT": failpoint}
    try:
        broker.start()
    except BrokerDied:
        pass
    deadline = time.monotonic() + 30
    while broker.proc.poll() is None:
        assert time.monotonic() < deadline, "the failpoint never fired"
        time.sleep(0.1)
    assert "failpoint " + failpoint in broker.log_text()
    broker.extra_env = {}
    broker.start()
    # Whatever the crash interrupted, every key still reads as its latest value...
    after = consume_all(broker, topic, [0])
    latest = {}
    for m in after:
        latest[m.key()] = (m.offset(), m.value())
    for k, (o, v) in keep.items():
        assert latest[k] == (o, v)
    # ...no record appears that was not there before, and compaction then completes.
    assert {(m.offset(), m.key(), m.value()) for m in after} <= set(before)
    wait_compacted(broker, topic, keep)
