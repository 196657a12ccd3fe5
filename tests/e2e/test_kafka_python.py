"""kafka-python (pure-Python client, Java-compatible murmur2 partitioner)."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, KafkaAdminClient
from kafka.errors import InvalidConfigurationError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from conftest import COMPRESSION_CODES, consume_all, create_topic, stored_compression, unique_topic

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def kp_producer(broker, **kw) -> KafkaProducer:
    conf = dict(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=10,
                enable_idempotence=False, request_timeout_ms=15000)
    conf.update(kw)
    return KafkaProducer(**conf)


def kp_consumer(broker, **kw) -> KafkaConsumer:
    conf = dict(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=15000)
    conf.update(kw)
    return KafkaConsumer(**conf)


def kp_admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)


def read_all(consumer: KafkaConsumer, tps: list[TopicPartition], timeout: float = 30.0) -> list:
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    out = []
    deadline = time.monotonic() + timeout
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        assert time.monotonic() < deadline, f"timed out at {[consumer.position(t) for t in tps]}"
        for _tp, records in consumer.poll(timeout_ms=500).items():
            out.extend(records)
    return sorted(out, key=lambda r: (r.partition, r.offset))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c or "none")
def test_keyed_records_round_trip_with_each_codec(broker, codec):
    partitions = 3
    topic = create_topic(broker, partitions=partitions)
    producer = kp_producer(broker, compression_type=codec)
    sent = []
    try:
        futures = []
        for i in range(120):
            key = f"account-{i % 11}".encode()
            value = f"event {i} ".encode() * (1 + i % 4) + b"~" * 300
            headers = [("i", str(i).encode())]
            futures.append((key, value, headers,
                            producer.send(topic, key=key, value=value, headers=headers)))
        producer.flush(30)
        for key, value, headers, fut in futures:
            md = fut.get(timeout=30)
            sent.append((md.partition, md.offset, key, value, headers))
    finally:
        producer.close(5)

    for p in {partition for partition, *_ in sent}:
        assert stored_compression(broker, topic, p) == {COMPRESSION_CODES[codec]}

    # kafka-python's default partitioner: murmur2(key) & 0x7fffffff % partitions.
    for partition, _o, key, _v, _h in sent:
        assert partition == (murmur2(key) & 0x7FFFFFFF) % partitions

    consumer = kp_consumer(broker)
    try:
        records = read_all(consumer, [TopicPartition(topic, p) for p in range(partitions)])
    finally:
        consumer.close()
    got = {(r.partition, r.offset): r for r in records}
    assert len(got) == len(sent)
    for partition, offset, key, value, headers in sent:
        r = got[(partition, offset)]
        assert (r.key, r.value, list(r.headers)) == (key, value, headers)

    # librdkafka reads kafka-python's batches too.
    assert len(consume_all(broker, topic)) == len(sent)


def test_offset_lookups(broker):
    topic = create_topic(broker, partitions=2)
    t0 = 1_650_000_000_000
    producer = kp_producer(broker)
    try:
        for i in range(10):
            producer.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=t0 + 100 * i)
        producer.flush(30)
    finally:
        producer.close(5)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = kp_consumer(broker)
    try:
        assert consumer.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert consumer.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 0}
        found = consumer.offsets_for_times({tp0: t0 + 350})
        assert found[tp0].offset == 4
        assert found[tp0].timestamp == t0 + 400
        assert consumer.offsets_for_times({tp0: t0 + 10_000})[tp0] is None

        consumer.assign([tp0])
        consumer.seek(tp0, 7)
        records = []
        deadline = time.monotonic() + 20
        while len(records) < 3 and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=500).values():
                records.extend(recs)
        assert [(r.offset, r.value, r.timestamp) for r in records] == [
            (i, b"v%d" % i, t0 + 100 * i) for i in range(7, 10)]
    finally:
        consumer.close()


def test_admin_create_describe_alter_partitions_delete(broker):
    admin = kp_admin(broker)
    topic = unique_topic("kp")
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1,
                                     "configs": {"retention.ms": "3600000",
                                                 "cleanup.policy": "delete"}}})
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
        assert topic in admin.list_topics()

        (desc,) = admin.describe_topics([topic])
        assert desc["name"] == topic
        assert desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1]

        res = ConfigResource("TOPIC", topic)
        configs = admin.describe_configs([res], config_filter="all")["topic"][topic]
        assert configs["retention.ms"]["value"] == "3600000"
        assert configs["cleanup.policy"]["value"] == "delete"
        assert "max.message.bytes" in configs

        result = admin.alter_configs([ConfigResource("TOPIC", topic, {"retention.ms": "7200000"})])
        assert result["topic"][topic] == "OK", result
        configs = admin.describe_configs([res], config_filter="all")["topic"][topic]
        assert configs["retention.ms"]["value"] == "7200000"
        # The untouched key keeps its value (incremental alter).
        assert configs["cleanup.policy"]["value"] == "delete"

        result = admin.alter_configs([ConfigResource("TOPIC", topic, {"retention.ms": "banana"})],
                                     raise_on_unknown=False)
        assert result["topic"][topic] != "OK"
        assert "retention.ms" in result["topic"][topic]

        admin.create_partitions({topic: 5})
        (desc,) = admin.describe_topics([topic])
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2, 3, 4]

        admin.delete_topics([topic])
        deadline = time.monotonic() + 15
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, "deleted topic still listed"
            time.sleep(0.1)
    finally:
        admin.close()


def test_admin_invalid_config_names_the_key(broker):
    admin = kp_admin(broker)
    topic = unique_topic("kp-bad")
    try:
        result = admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                              "configs": {"no.such.config": "1"}}},
                                     raise_errors=False)
        (t,) = result["topics"]
        assert t["error_code"] == InvalidConfigurationError.errno
        assert "no.such.config" in (t.get("error_message") or "")
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_consumer_follows_many_partitions_through_fetch_sessions(broker):
    """kafka-python keeps an incremental fetch session (KIP-227) open across
    polls; records arriving on any partition, and a changed assignment, must
    all be served through it."""
    partitions = 6
    topic = create_topic(broker, partitions=partitions)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = kp_consumer(broker, fetch_max_wait_ms=200)
    producer = kp_producer(broker, linger_ms=0)
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = {p: [] for p in range(partitions)}
        expected = {p: [] for p in range(partitions)}
        for rnd in range(8):
            for p in ((rnd * 5 + k) % partitions for k in range(3)):
                v = b"r%d-p%d" % (rnd, p)
                producer.send(topic, value=v, partition=p).get(timeout=20)
                expected[p].append(v)
            deadline = time.monotonic() + 20
            while any(len(got[p]) < len(expected[p]) for p in got):
                assert time.monotonic() < deadline, (rnd, got, expected)
                for tp, recs in consumer.poll(timeout_ms=300).items():
                    got[tp.partition].extend(r.value for r in recs)
        assert got == expected
        # Shrink the assignment: the session drops partitions and keeps serving the rest.
        consumer.assign(tps[:2])
        for p in (0, 1):
            consumer.seek(tps[p], len(expected[p]))
            producer.send(topic, value=b"tail-%d" % p, partition=p).get(timeout=20)
        tail = []
        deadline = time.monotonic() + 20
        while len(tail) < 2:
            assert time.monotonic() < deadline, tail
            for recs in consumer.poll(timeout_ms=300).values():
                tail.extend(r.value for r in recs)
        assert sorted(tail) == [b"tail-0", b"tail-1"]
    finally:
        producer.close(5)
        consumer.close()
