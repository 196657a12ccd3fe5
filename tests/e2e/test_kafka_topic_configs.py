"""Every Kafka 4 topic config name is accepted, type-checked, stored and described (issue 18);
the compaction scheduling configs and the produce-time timestamp bounds take effect."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, NewTopic

from conftest import Delivered, admin_client, consume_all, create_topic, producer_config, unique_topic

# Kafka 4's topic configs (TopicConfig / LogConfig), each set to a valid non-default value.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy": "compact,delete",
    "compression.type": "zstd",
    "compression.gzip.level": "5",
    "compression.lz4.level": "10",
    "compression.zstd.level": "7",
    "delete.retention.ms": "3600000",
    "file.delete.delay.ms": "30000",
    "flush.messages": "1000",
    "flush.ms": "500",
    "follower.replication.throttled.replicas": "*",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": "86400000",
    "max.message.bytes": "2097152",
    "message.timestamp.after.max.ms": "7200000",
    "message.timestamp.before.max.ms": "86400000000",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "1000",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "remote.storage.enable": "false",
    "retention.bytes": "1073741824",
    "retention.ms": "86400000",
    "segment.bytes": "16777216",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "1000",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "false",
    # Added in Kafka 4.1-4.4.
    "errors.deadletterqueue.group.enable": "true",
    "max.decompressed.message.bytes": "10485760",
    "remote.copy.lag.bytes": "1048576",
    "remote.copy.lag.ms": "1000",
}


def describe(broker, topic) -> dict:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = admin_client(broker)
    return admin.describe_configs([res])[res].result(timeout=20)


def test_topic_with_every_kafka_topic_config(broker):
    topic = create_topic(broker, config=KAFKA_TOPIC_CONFIGS)
    described = describe(broker, topic)
    for name, value in KAFKA_TOPIC_CONFIGS.items():
        assert name in described, f"{name} not described"
        entry = described[name]
        assert entry.value == value, (name, entry.value)
        assert entry.source == 1, (name, entry.source)  # DYNAMIC_TOPIC_CONFIG


def test_kafka_defaults_are_described(broker):
    topic = create_topic(broker)
    described = describe(broker, topic)
    assert described["min.cleanable.dirty.ratio"].value == "0.5"
    assert described["message.timestamp.after.max.ms"].value == "3600000"
    assert described["segment.jitter.ms"].value == "0"
    assert all(name in described for name in KAFKA_TOPIC_CONFIGS)


@pytest.mark.parametrize("name,value", [
    ("no.such.config", "1"),
    # Removed from Kafka in 4.0 (KIP-724), and Kafka 4 refuses it too.
    ("message.downconversion.enable", "true"),
    ("min.cleanable.dirty.ratio", "1.5"),
    ("compression.gzip.level", "0"),
    ("flush.messages", "0"),
    ("preallocate", "maybe"),
    ("segment.jitter.ms", "soon"),
])
def test_unknown_names_and_bad_values_are_refused(broker, name, value):
    topic = unique_topic()
    admin = admin_client(broker)
    fs = admin.create_topics([NewTopic(topic, 1, 1, config={name: value})])
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value


def test_dirty_ratio_compacts_down_to_latest_value_per_key(broker_factory):
    broker = broker_factory(args=["--retention-check-interval-ms", "300"])
    topic = create_topic(broker, config={
        "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01",
        "segment.ms": "100", "segment.bytes": "4096", "delete.retention.ms": "0"})
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    latest = {}
    deadline = time.monotonic() + 60
    round_ = 0
    msgs = []
    while True:
        d = Delivered()
        for k in range(10):
            p.produce(topic, key=b"k%d" % k, value=b"v%d-%d" % (k, round_) + b"x" * 60,
                      on_delivery=d)
        assert p.flush(20) == 0 and not d.errors, d.errors[:3]
        for _, offset, key, value, _, _ in d.ok:
            latest[key] = (offset, value)
        round_ += 1
        if round_ >= 5:
            msgs = consume_all(broker, topic, [0])
            # The records of sealed segments: all but the latest round may still be there in
            # the active segment, so look at what is older than the last round's records.
            last_round = {o for o, _ in latest.values()}
            older = [(m.key(), m.offset()) for m in msgs if m.offset() < min(last_round)]
            # Compacted: below the newest round, no key repeats.
            keys = [k for k, _ in older]
            if round_ >= 8 and len(keys) == len(set(keys)) and len(msgs) < 10 * round_ / 2:
                break
        assert time.monotonic() < deadline, f"not compacted after 60 s: {len(msgs)} records"
        time.sleep(0.3)
    # Every key still reads as its latest value.
    got = {}
    for m in consume_all(broker, topic, [0]):
        got[m.key()] = (m.offset(), m.value())
    assert got == latest


def test_min_compaction_lag_keeps_young_records(broker_factory):
    broker = broker_factory(args=["--retention-check-interval-ms", "300"])
    topic = create_topic(broker, config={
        "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "3600000", "segment.bytes": "4096"})
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    for r in range(20):
        for k in range(10):
            p.produce(topic, key=b"k%d" % k, value=b"v%d" % r + b"x" * 60)
        p.flush(20)
    time.sleep(2)  # several compaction checks: none may remove anything
    assert len(consume_all(broker, topic, [0])) == 200


@pytest.mark.parametrize("config,offset_ms", [
    ({"message.timestamp.after.max.ms": "60000"}, 3_600_000),
    ({"message.timestamp.before.max.ms": "60000"}, -3_600_000),
])
def test_timestamp_bounds(broker, config, offset_ms):
    topic = create_topic(broker, config=config)
    p = Producer(producer_config(broker))
    d = Delivered()
    now = int(time.time() * 1000)
    # One batch each: a bad timestamp fails its whole batch, as in Kafka.
    p.produce(topic, value=b"ok", timestamp=now, on_delivery=d)
    p.flush(20)
    p.produce(topic, value=b"off", timestamp=now + offset_ms, on_delivery=d)
    p.flush(20)
    assert [v for _, _, _, v, _, _ in d.ok] == [b"ok"]
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.INVALID_TIMESTAMP]
    # LogAppendTime topics take the broker's time and check nothing.
    topic = create_topic(broker, config={**config, "message.timestamp.type": "LogAppendTime"})
    d = Delivered()
    p.produce(topic, value=b"any", timestamp=now + offset_ms, on_delivery=d)
    p.flush(20)
    assert not d.errors and len(d.ok) == 1
