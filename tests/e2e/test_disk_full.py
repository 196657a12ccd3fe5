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

from conftest import consume_all, create_topic, http_get, produce, producer_config

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
