"""Acknowledged records survive SIGKILL; a torn or corrupt tail is cut off on start."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import (consume_all, create_topic, parse_batches, produce, producer_config,
                      watermarks)


def test_acknowledged_records_survive_sigkill(broker):
    partitions = 2
    topic = create_topic(broker, partitions=partitions)
    acked: dict[int, list[tuple[int, int]]] = {p: [] for p in range(partitions)}  # p -> [(seq, offset)]
    failed = []
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[msg.partition()].append((int(msg.value()), msg.offset()))
            else:
                failed.append(err)

    producer = Producer(producer_config(broker, **{
        "acks": "all", "linger.ms": 2, "message.timeout.ms": 4000,
        "socket.timeout.ms": 3000, "reconnect.backoff.max.ms": 200}))

    def run():
        seq = 0
        while not stop.is_set():
            try:
                producer.produce(topic, b"%d" % seq, partition=seq % partitions,
                                 on_delivery=on_delivery)
                seq += 1
            except BufferError:
                pass
            producer.poll(0.001 if seq % 50 == 0 else 0)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while sum(len(v) for v in acked.values()) < 3000:
        assert time.monotonic() < deadline, f"only {sum(len(v) for v in acked.values())} acks"
        assert t.is_alive()
        time.sleep(0.01)
    broker.kill9()  # mid-stream: batches are in flight
    time.sleep(0.3)
    stop.set()
    t.join(10)
    producer.flush(15)  # everything not acknowledged fails within message.timeout.ms
    with lock:
        acked_now = {p: list(v) for p, v in acked.items()}
    total = sum(len(v) for v in acked_now.values())
    assert total >= 3000
    assert failed, "the kill should have failed some in-flight records"

    broker.start()
    for p in range(partitions):
        stored = {m.offset(): int(m.value()) for m in consume_all(broker, topic, [p])}
        for seq, offset in acked_now[p]:
            assert stored.get(offset) == seq, (
                f"partition {p}: acknowledged record {seq} at offset {offset}, "
                f"found {stored.get(offset)!r}")
        # In order: acknowledged sequence numbers increase with their offsets.
        by_offset = sorted(acked_now[p], key=lambda so: so[1])
        assert [s for s, _ in by_offset] == sorted(s for s, _ in by_offset)
        # Offsets stay dense after recovery.
        assert sorted(stored) == list(range(len(stored)))
    # New writes append after what survived.
    d = produce(broker, topic, [{"value": b"-1", "partition": 0}])
    assert d.ok[0][1] == watermarks(broker, topic, 0)[1] - 1


# ---------------------------------------------------------------------------- torn tail

def active_segment(broker, topic: str, partition: int = 0) -> Path:
    d = broker.partition_dir(topic, partition)
    logs = sorted(d.glob("*.log"), key=lambda f: int(f.stem))
    assert logs, f"no segment files in {d}: {sorted(os.listdir(d)) if d.exists() else 'missing'}"
    for f in logs:
        assert len(f.stem) == 20 and f.stem.isdigit(), f.name
    return logs[-1]


@pytest.mark.parametrize("damage", ["mid-batch", "mid-header", "crc-flip"])
def test_torn_tail_is_truncated_on_start(broker, damage):
    topic = create_topic(broker)
    values = []
    for b in range(8):  # 8 separate batches of 10 records
        batch = [b"batch%d-rec%d" % (b, i) for i in range(10)]
        produce(broker, topic, batch, **{"linger.ms": 50})
        values += batch
    broker.stop()

    seg = active_segment(broker, topic)
    data = seg.read_bytes()
    batches = parse_batches(data)
    assert batches
    pos, base, _last_delta, size = batches[-1]
    if damage == "mid-batch":
        with open(seg, "r+b") as f:
            f.truncate(pos + size // 2)
    elif damage == "mid-header":
        with open(seg, "r+b") as f:
            f.truncate(pos + 7)
    else:  # same length, one flipped byte in the last record's value
        with open(seg, "r+b") as f:
            f.seek(pos + size - 3)
            b = f.read(1)
            f.seek(pos + size - 3)
            f.write(bytes([b[0] ^ 0xFF]))

    broker.start()
    survivors = values[:base]
    assert watermarks(broker, topic, 0) == (0, base)
    assert [m.value() for m in consume_all(broker, topic)] == survivors
    d = produce(broker, topic, [b"after-the-tear"])
    assert d.ok[0][1] == base
    assert [m.value() for m in consume_all(broker, topic)] == survivors + [b"after-the-tear"]
    # And it all survives another restart.
    broker.restart()
    assert [m.value() for m in consume_all(broker, topic)] == survivors + [b"after-the-tear"]


def test_segments_roll_and_everything_survives_restart(broker):
    topic = create_topic(broker, config={"segment.bytes": "16384"})
    values = [b"%06d" % i + b"." * 200 for i in range(600)]
    for i in range(0, len(values), 50):
        produce(broker, topic, values[i:i + 50], **{"linger.ms": 5})
    logs = sorted(broker.partition_dir(topic, 0).glob("*.log"))
    assert len(logs) >= 5, f"segment.bytes=16384 but only {len(logs)} segment files"
    broker.kill9()
    broker.start()
    assert watermarks(broker, topic, 0) == (0, len(values))
    assert [m.value() for m in consume_all(broker, topic)] == values


def test_time_and_offset_indexes_after_restart(broker):
    from confluent_kafka import Consumer, TopicPartition

    from conftest import consumer_config
    # Timestamps from 2023: keep them past the default 7-day retention, which would
    # (rightly) delete the sealed segments at the first retention check after restart.
    topic = create_topic(broker, config={"segment.bytes": "8192", "retention.ms": "-1"})
    t0 = 1_690_000_000_000
    for chunk in range(10):
        produce(broker, topic, [{"value": b"%04d" % i + b"-" * 100, "timestamp": t0 + 1000 * i}
                                for i in range(chunk * 30, chunk * 30 + 30)])
    broker.kill9()
    broker.start()
    c = Consumer(consumer_config(broker))
    try:
        for i in (0, 1, 137, 150, 299):
            (res,) = c.offsets_for_times([TopicPartition(topic, 0, t0 + 1000 * i - 500)], timeout=10)
            assert res.offset == i, (i, res)
    finally:
        c.close()
    for start in (0, 45, 170, 299):
        msgs = consume_all(broker, topic, [0], start={0: start})
        assert msgs[0].offset() == start and msgs[0].value()[:4] == b"%04d" % start
        assert len(msgs) == 300 - start


def test_topic_metadata_survives_restart(broker):
    from confluent_kafka.admin import ConfigResource, NewPartitions, ResourceType

    from conftest import admin_client, partition_count
    admin = admin_client(broker)
    kept = create_topic(broker, partitions=2, config={"retention.ms": "123456789",
                                                      "cleanup.policy": "delete"})
    admin.create_partitions([NewPartitions(kept, 3)], request_timeout=15)[kept].result(timeout=20)
    produce(broker, kept, [{"value": b"p%d" % p, "partition": p} for p in range(3)])
    gone = create_topic(broker)
    produce(broker, gone, [b"bye"])
    admin.delete_topics([gone], request_timeout=15)[gone].result(timeout=20)

    broker.kill9()
    broker.start()
    admin = admin_client(broker)
    topics = admin.list_topics(timeout=10).topics
    assert gone not in topics
    assert partition_count(broker, kept) == 3
    res = ConfigResource(ResourceType.TOPIC, kept)
    configs = admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert configs["retention.ms"].value == "123456789"
    assert configs["cleanup.policy"].value == "delete"
    for p in range(3):
        assert [m.value() for m in consume_all(broker, kept, [p])] == [b"p%d" % p]
    # The deleted name is free again and starts empty.
    create_topic(broker, gone)
    assert watermarks(broker, gone, 0) == (0, 0)
