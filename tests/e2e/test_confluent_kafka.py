"""The confluent-kafka Python client (librdkafka) against the broker."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer,
                             KafkaError, Producer, TopicPartition)

from conftest import (COMPRESSION_CODES, Delivered, consume_all, consumer_config, create_topic,
                      produce, producer_config, stored_compression, watermarks)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_keyed_records_with_headers_and_timestamps_round_trip(broker, codec):
    topic = create_topic(broker, partitions=4)
    base_ts = int(time.time() * 1000) - 60_000
    records = [
        {"key": f"user-{i % 9}".encode(),
         # Compressible even alone: librdkafka sends a batch uncompressed when
         # compressing would not make it smaller.
         "value": (f"payload {i} " * (1 + i % 5) + "~" * 300).encode(),
         "headers": [("seq", str(i).encode()), ("codec", codec.encode())],
         "timestamp": base_ts + i}
        for i in range(200)
    ]
    d = produce(broker, topic, records, **{"compression.type": codec, "linger.ms": 20})
    assert len(d.ok) == len(records)
    # Batches are stored as the client compressed them. (librdkafka enables
    # lz4 only when ApiVersions lists FindCoordinator, and otherwise silently
    # sends uncompressed batches: its debug log says "Disabling feature LZ4".)
    for p in {partition for partition, *_ in d.ok}:
        assert stored_compression(broker, topic, p) == {COMPRESSION_CODES[codec]}, (
            f"librdkafka's {codec} batches were not stored compressed: did the broker's "
            "ApiVersions make it fall back to no compression?")

    got = {(m.partition(), m.offset()): m for m in consume_all(broker, topic)}
    assert len(got) == len(records)
    for partition, offset, key, value, _h, _ts in d.ok:
        m = got[(partition, offset)]  # read back where the delivery report said
        seq = int(value.split()[1])
        assert m.key() == key == records[seq]["key"]
        assert m.value() == value == records[seq]["value"]
        assert m.headers() == records[seq]["headers"]
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, base_ts + seq)

    # Keys stick to one partition, and each partition keeps the send order.
    by_key = {}
    for partition, _o, key, *_ in d.ok:
        by_key.setdefault(key, set()).add(partition)
    assert all(len(ps) == 1 for ps in by_key.values()), by_key
    for p in range(4):
        seqs = [int(dict(m.headers())["seq"]) for (pp, _), m in sorted(got.items()) if pp == p]
        assert seqs == sorted(seqs)


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_many_batches_and_watermarks(broker, codec):
    topic = create_topic(broker, partitions=2)
    n = 5000
    d = produce(broker, topic, [{"value": f"{i:08d}".encode() * 16, "partition": i % 2}
                                for i in range(n)],
                **{"compression.type": codec, "linger.ms": 2, "batch.num.messages": 300})
    for partition, offset, _k, value, _h, _t in d.ok:
        assert offset == int(value[:8]) // 2
    for p in range(2):
        assert watermarks(broker, topic, p) == (0, n // 2)
    values = [m.value() for m in consume_all(broker, topic, [1])]
    assert values == [f"{i:08d}".encode() * 16 for i in range(1, n, 2)]


def test_offsets_for_times_and_assign_at_offset(broker):
    topic = create_topic(broker)
    t0 = 1_700_000_000_000
    produce(broker, topic, [{"value": b"v%d" % i, "timestamp": t0 + 1000 * i} for i in range(20)])

    c = Consumer(consumer_config(broker))
    try:
        res = c.offsets_for_times([TopicPartition(topic, 0, t0 + 5500)], timeout=10)
        assert res[0].error is None
        assert res[0].offset == 6
        res = c.offsets_for_times([TopicPartition(topic, 0, t0)], timeout=10)
        assert res[0].offset == 0
        # Later than every record: no offset (-1, "end").
        res = c.offsets_for_times([TopicPartition(topic, 0, t0 + 10**9)], timeout=10)
        assert res[0].offset == -1
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 20)
    finally:
        c.close()

    msgs = consume_all(broker, topic, [0], start={0: 15})
    assert [(m.offset(), m.value()) for m in msgs] == [(i, b"v%d" % i) for i in range(15, 20)]


def test_log_append_time_topic_stamps_records(broker):
    topic = create_topic(broker, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce(broker, topic, [{"value": b"x", "timestamp": 1_000_000_000_000}])
    after = int(time.time() * 1000)
    (m,) = consume_all(broker, topic)
    ts_type, ts = m.timestamp()
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= after + 1000


def test_acks_zero_and_acks_one(broker):
    topic = create_topic(broker)
    produce(broker, topic, [b"a1-%d" % i for i in range(50)], acks=1)
    p = Producer(producer_config(broker, acks=0))
    for i in range(50):
        p.produce(topic, b"a0-%d" % i)
    assert p.flush(30) == 0
    deadline = time.monotonic() + 15
    while watermarks(broker, topic, 0)[1] < 100:
        assert time.monotonic() < deadline, "acks=0 records never appeared"
        time.sleep(0.1)
    values = [m.value() for m in consume_all(broker, topic)]
    assert values == [b"a1-%d" % i for i in range(50)] + [b"a0-%d" % i for i in range(50)]


def test_long_poll_fetch_wakes_on_produce(broker):
    """A consumer waiting at the end of the log gets a new record well before
    its fetch.wait.max.ms runs out: the broker answers the parked fetch when
    data arrives instead of sleeping out max_wait_ms."""
    topic = create_topic(broker)
    produce(broker, topic, [b"first"])
    c = Consumer(consumer_config(broker, **{"fetch.wait.max.ms": 5000}))
    try:
        c.assign([TopicPartition(topic, 0, 1)])
        m = c.poll(1.5)  # nothing yet: the fetch parks at the log end
        assert m is None or m.error() is not None
        sent_at = [0.0]

        def later():
            time.sleep(0.5)
            sent_at[0] = time.monotonic()
            produce(broker, topic, [b"second"], **{"linger.ms": 0})

        t = threading.Thread(target=later)
        t.start()
        got = None
        deadline = time.monotonic() + 20
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got = m
        arrived = time.monotonic()
        t.join()
        assert got is not None and got.value() == b"second"
        assert arrived - sent_at[0] < 2.5, f"record arrived {arrived - sent_at[0]:.2f}s after produce"
    finally:
        c.close()


def test_near_limit_record_is_accepted(broker):
    topic = create_topic(broker)
    big = bytes(range(256)) * 3500  # ~896 KiB, under the 1 MiB default
    d = produce(broker, topic, [{"key": b"big", "value": big}], **{"compression.type": "none"})
    assert d.ok[0][1] == 0
    (m,) = consume_all(broker, topic, **{"fetch.max.bytes": 4 << 20})
    assert m.value() == big


def test_record_larger_than_fetch_limits_is_still_delivered(broker):
    """KIP-74: the first batch is returned even when it exceeds
    max.partition.fetch.bytes / fetch.max.bytes, so consumers make progress."""
    topic = create_topic(broker)
    values = [bytes([i]) * 100_000 for i in range(3)]
    produce(broker, topic, values, **{"compression.type": "none", "linger.ms": 0})
    msgs = consume_all(broker, topic, **{"max.partition.fetch.bytes": 1024,
                                         "fetch.max.bytes": 1024, "message.max.bytes": 1000})
    assert [m.value() for m in msgs] == values


def test_out_of_range_offset_resets_per_auto_offset_reset(broker):
    topic = create_topic(broker)
    produce(broker, topic, [b"r%d" % i for i in range(10)])
    for reset, first in [("earliest", 0), ("latest", None)]:
        c = Consumer(consumer_config(broker, **{"auto.offset.reset": reset}))
        try:
            c.assign([TopicPartition(topic, 0, 1000)])  # past the end: OFFSET_OUT_OF_RANGE
            got = None
            deadline = time.monotonic() + (15 if first is not None else 3)
            while got is None and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None and not m.error():
                    got = m
            if first is None:
                assert got is None  # reset to the end: nothing old is replayed
                produce(broker, topic, [b"new"])
                deadline = time.monotonic() + 15
                while got is None and time.monotonic() < deadline:
                    m = c.poll(0.2)
                    if m is not None and not m.error():
                        got = m
                assert got is not None and got.value() == b"new" and got.offset() == 10
            else:
                assert got is not None and got.offset() == first
        finally:
            c.close()
    c = Consumer(consumer_config(broker, **{"auto.offset.reset": "error"}))
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        err = None
        deadline = time.monotonic() + 15
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error():
                err = m.error()
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()


def test_concurrent_producers_on_one_partition_get_dense_unique_offsets(broker):
    topic = create_topic(broker, partitions=1)
    results: list[Delivered] = []

    def worker(n):
        results.append(produce(broker, topic, [b"w%d-%d" % (n, i) for i in range(400)],
                               **{"linger.ms": n}))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    offsets = sorted(o for d in results for _p, o, *_ in d.ok)
    assert offsets == list(range(1600))
    stored = {m.offset(): m.value() for m in consume_all(broker, topic)}
    for d in results:
        for _p, o, _k, v, _h, _t in d.ok:
            assert stored[o] == v


def test_many_partitions_across_shards(broker):
    partitions = 48
    topic = create_topic(broker, partitions=partitions)
    d = produce(broker, topic, [{"key": b"k%d" % i, "value": b"v%d" % i} for i in range(960)])
    used = {p for p, *_ in d.ok}
    assert len(used) > partitions // 2
    got = {(m.partition(), m.offset()): m.value() for m in consume_all(broker, topic)}
    assert got == {(p, o): v for p, o, _k, v, _h, _t in d.ok}


def test_assign_with_leader_epoch_validates_and_fetches(broker):
    """librdkafka validates an assigned offset that carries a leader epoch with
    OffsetForLeaderEpoch before fetching from it."""
    topic = create_topic(broker)
    produce(broker, topic, [b"e%d" % i for i in range(10)])
    first = consume_all(broker, topic)
    epoch = first[0].leader_epoch()
    assert epoch is not None and epoch >= 0
    broker.restart()
    c = Consumer(consumer_config(broker))
    try:
        c.assign([TopicPartition(topic, 0, 5, leader_epoch=epoch)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert not m.error(), m.error()
            got.append((m.offset(), m.value()))
        assert got == [(i, b"e%d" % i) for i in range(5, 10)]
    finally:
        c.close()
