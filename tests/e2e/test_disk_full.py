"""A nearly full disk refuses produce with a retriable error and recovers by itself.

The disk really fills: the broker is told to keep 1 GiB above what is free now
(--storage-min-free-bytes), then the test allocates a 2 GiB file on the same volume. Produce is
refused (kafka-python sees KafkaStorageError, librdkafka keeps retrying), reads go on, and once
the file is deleted the producer's retried record lands with nothing lost or duplicated.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer
from kafka.errors import KafkaStorageError

from conftest import consume_all, create_topic, http_get, produce, producer_config, unique_topic

GIB = 1 << 30


def metric(b, name: str) -> float:
    status, body, _ = http_get(f"{b.admin_url}/metrics")
    assert status == 200
    for line in body.splitlines():
        if re.match(rf"^{re.escape(name)} ", line):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exported")


def wait_metric(b, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(b, name) != value:
        assert time.monotonic() < deadline, f"{name} never became {value}"
        time.sleep(0.1)


def test_a_nearly_full_disk_refuses_produce_then_recovers(broker_factory, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    if free < 4 * GIB:
        pytest.fail(f"this test fills 2 GiB of the volume holding {tmp_path}; only {free >> 20} MiB free")
    b = broker_factory(args=["--storage-min-free-bytes", str(free - GIB)])
    topic = create_topic(b)
    produce(b, topic, [b"before-%d" % i for i in range(10)])
    assert metric(b, "icestream_storage_low_disk") == 0

    filler = tmp_path / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, 2 * GIB)
    try:
        wait_metric(b, "icestream_storage_low_disk", 1)
        # The error a client sees: KAFKA_STORAGE_ERROR, which Kafka clients treat as retriable.
        kp = KafkaProducer(bootstrap_servers=b.bootstrap, retries=0, acks="all")
        with pytest.raises(KafkaStorageError):
            kp.send(topic, b"refused").get(timeout=10)
        kp.close()
        # librdkafka retries: the record waits, undelivered.
        p = Producer(producer_config(b))
        delivered = []
        p.produce(topic, b"during", on_delivery=lambda err, msg: delivered.append(err))
        assert p.flush(3) == 1 and delivered == []
        # Reads go on.
        assert [m.value() for m in consume_all(b, topic)] == [b"before-%d" % i for i in range(10)]
        assert "disk nearly full" in b.log_tail(200)
    finally:
        filler.unlink()
    wait_metric(b, "icestream_storage_low_disk", 0)
    assert p.flush(30) == 0 and delivered == [None]
    values = [m.value() for m in consume_all(b, topic)]
    assert values == [b"before-%d" % i for i in range(10)] + [b"during"]


def test_in_a_cluster_a_full_leader_refuses_and_a_full_follower_keeps_replicating(
        broker_factory, tmp_path):
    """Three brokers on one volume; only broker 1 counts the filler as a nearly full disk.
    Led by broker 1, a partition refuses produce; led elsewhere, broker 1 as a follower keeps
    taking the acknowledged records (replication is not produce). Both recover by themselves."""
    from cluster import start_cluster, wait_formed
    from history import wait_replicas_identical
    from test_cluster_reassign import create, partition_view, wait_for

    free = shutil.disk_usage(tmp_path).free
    if free < 4 * GIB:
        pytest.fail(f"this test fills 2 GiB of the volume holding {tmp_path}; only {free >> 20} MiB free")
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    full = brokers[0]
    full.stop()
    full.extra_args += ["--storage-min-free-bytes", str(free - GIB)]
    full.start()
    wait_formed(brokers)
    # Two single-partition topics: one whose preferred leader is broker 1, one led elsewhere.
    led, other = None, None
    for i in range(12):
        name = unique_topic(f"full{i}")
        create(brokers[1], name, 1, 3, {"min.insync.replicas": "2"})
        leader = wait_for("a leader", lambda n=name: (v := partition_view(brokers[1], n, 0))
                          and v[0] > 0 and v[0])
        if leader == 1 and led is None:
            led = name
        elif leader != 1 and other is None:
            other = name
        if led and other:
            break
    assert led and other, "no topic led by broker 1 and one led elsewhere"

    filler = tmp_path / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, 2 * GIB)
    try:
        wait_metric(full, "icestream_storage_low_disk", 1)
        kp = KafkaProducer(bootstrap_servers=[b.bootstrap for b in brokers], retries=0,
                           acks="all")
        with pytest.raises(KafkaStorageError):
            kp.send(led, b"refused").get(timeout=10)
        for i in range(50):
            kp.send(other, b"kept-%d" % i).get(timeout=10)
        kp.close()
        # The nearly full follower holds them as the others do.
        wait_replicas_identical(brokers, other, [0])
    finally:
        filler.unlink()
    wait_metric(full, "icestream_storage_low_disk", 0)
    kp = KafkaProducer(bootstrap_servers=[b.bootstrap for b in brokers], acks="all")
    kp.send(led, b"after").get(timeout=30)
    kp.close()
    wait_replicas_identical(brokers, led, [0])
