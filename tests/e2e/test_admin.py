"""Admin operations through confluent-kafka's AdminClient (librdkafka)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, OffsetSpec, ResourceType)

import kwire
from conftest import (Delivered, admin_client, consume_all, create_topic, partition_count,
                      produce, producer_config, unique_topic, watermarks)

INVALID_CONFIG = 40
UNKNOWN_TOPIC_OR_PARTITION = 3


def topic_configs(admin, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)


def kafka_error(excinfo) -> KafkaError:
    err = excinfo.value.args[0]
    assert isinstance(err, KafkaError), err
    return err


def test_create_topic_with_configs_and_describe(broker):
    admin = admin_client(broker)
    topic = create_topic(broker, partitions=3, config={
        "retention.ms": "86400000", "segment.bytes": "1048576",
        "cleanup.policy": "delete", "max.message.bytes": "200000"})
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "86400000"
    assert configs["segment.bytes"].value == "1048576"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["max.message.bytes"].value == "200000"
    assert not configs["retention.ms"].is_default
    # Keys left alone are described with their defaults.
    assert configs["message.timestamp.type"].value == "CreateTime"
    assert configs["message.timestamp.type"].is_default

    desc = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=20)
    assert desc.name == topic
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    assert all(p.leader is not None for p in desc.partitions)

    md = admin.list_topics(timeout=10)
    assert topic in md.topics
    assert len(md.topics[topic].partitions) == 3


def test_create_existing_topic_fails(broker):
    admin = admin_client(broker)
    topic = create_topic(broker)
    fs = admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=20)
    assert kafka_error(e).code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_validate_only_creates_nothing(broker):
    admin = admin_client(broker)
    topic = unique_topic("validate")
    fs = admin.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "1000"})],
                             validate_only=True, request_timeout=15)
    fs[topic].result(timeout=20)
    assert topic not in admin.list_topics(timeout=10).topics
    # An invalid one is still reported under validate_only.
    fs = admin.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "soon"})],
                             validate_only=True, request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=20)
    assert kafka_error(e).code() == KafkaError.INVALID_CONFIG
    # And the name is still free.
    create_topic(broker, topic, partitions=2)


@pytest.mark.parametrize("key,value", [
    ("no.such.setting", "1"),
    ("retention.ms", "not-a-number"),
    ("cleanup.policy", "shred"),
    ("message.timestamp.type", "WallClock"),
    ("max.message.bytes", "-5"),
])
def test_invalid_config_is_rejected_naming_the_key(broker, key, value):
    admin = admin_client(broker)
    topic = unique_topic("badcfg")
    fs = admin.create_topics([NewTopic(topic, 1, 1, config={key: value})], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=20)
    err = kafka_error(e)
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert key in err.str(), err.str()
    assert topic not in admin.list_topics(timeout=10).topics


def test_alter_and_incremental_alter_configs(broker):
    admin = admin_client(broker)
    topic = create_topic(broker, config={"retention.ms": "60000", "cleanup.policy": "delete"})

    # IncrementalAlterConfigs: SET one key, DELETE another (back to default).
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", "1073741824", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    configs = topic_configs(admin, topic)
    assert configs["retention.bytes"].value == "1073741824"
    assert configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"  # untouched

    # Legacy AlterConfigs replaces the whole set of topic overrides.
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.ms": "3600000"})
    admin.alter_configs([res], request_timeout=15)[res].result(timeout=20)
    configs = topic_configs(admin, topic)
    assert configs["segment.ms"].value == "3600000"
    assert configs["retention.bytes"].is_default
    assert configs["cleanup.policy"].is_default

    # Invalid values are refused, naming the key, and change nothing.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", "yesterday", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    err = kafka_error(e)
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "segment.ms" in err.str()
    assert topic_configs(admin, topic)["segment.ms"].value == "3600000"

    # Rules across keys hold for IncrementalAlterConfigs as for CreateTopics: tiering cannot
    # be turned on for a compacted topic.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("remote.storage.enable", "true",
                    incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        admin.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    assert kafka_error(e).code() == KafkaError.INVALID_CONFIG
    assert "remote.storage.enable" in kafka_error(e).str()
    assert topic_configs(admin, topic)["cleanup.policy"].is_default


def test_altered_max_message_bytes_takes_effect(broker):
    admin = admin_client(broker)
    topic = create_topic(broker)
    produce(broker, topic, [b"x" * 5000])
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    p = Producer(producer_config(broker, **{"compression.type": "none"}))
    d = Delivered()
    p.produce(topic, b"y" * 5000, on_delivery=d)
    p.flush(20)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert [m.value() for m in consume_all(broker, topic)] == [b"x" * 5000]


def test_create_partitions(broker):
    admin = admin_client(broker)
    topic = create_topic(broker, partitions=2)
    admin.create_partitions([NewPartitions(topic, 6)], request_timeout=15)[topic].result(timeout=20)
    deadline = time.monotonic() + 15
    while partition_count(broker, topic) != 6:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # The new partitions take writes and reads.
    d = produce(broker, topic, [{"value": b"p%d" % p, "partition": p} for p in range(6)])
    assert sorted((pp, o) for pp, o, *_ in d.ok) == [(p, 0) for p in range(6)]
    # Shrinking is refused.
    with pytest.raises(KafkaException) as e:
        admin.create_partitions([NewPartitions(topic, 3)], request_timeout=15)[topic].result(timeout=20)
    assert kafka_error(e).code() == KafkaError.INVALID_PARTITIONS


def test_delete_topics(broker):
    admin = admin_client(broker)
    topic = create_topic(broker, partitions=2)
    produce(broker, topic, [b"doomed"])
    admin.delete_topics([topic], request_timeout=15)[topic].result(timeout=20)
    assert topic not in admin.list_topics(timeout=10).topics
    # Deleting it again: unknown topic.
    with pytest.raises(KafkaException) as e:
        admin.delete_topics([topic], request_timeout=15)[topic].result(timeout=20)
    assert kafka_error(e).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # The name can be reused and starts empty.
    create_topic(broker, topic, partitions=1)
    assert watermarks(broker, topic, 0) == (0, 0)


def test_delete_records_moves_low_watermark(broker):
    admin = admin_client(broker)
    topic = create_topic(broker)
    produce(broker, topic, [b"r%d" % i for i in range(30)])
    tp = TopicPartition(topic, 0, 12)
    res = admin.delete_records([tp], request_timeout=15)
    deleted = list(res.values())[0].result(timeout=20)
    assert deleted.low_watermark == 12
    assert watermarks(broker, topic, 0) == (12, 30)
    values = [m.value() for m in consume_all(broker, topic)]
    assert values == [b"r%d" % i for i in range(12, 30)]
    earliest = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()},
                                  request_timeout=15)
    assert list(earliest.values())[0].result(timeout=20).offset == 12
    # Survives a restart.
    broker.restart()
    assert watermarks(broker, topic, 0) == (12, 30)


def test_list_offsets(broker):
    admin = admin_client(broker)
    topic = create_topic(broker)
    t0 = 1_600_000_000_000
    produce(broker, topic, [{"value": b"x", "timestamp": t0 + i * 10} for i in range(5)])
    tp = TopicPartition(topic, 0)
    for spec, want in [(OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 5),
                       (OffsetSpec.for_timestamp(t0 + 25), 3),
                       (OffsetSpec.max_timestamp(), 4)]:
        (fut,) = admin.list_offsets({tp: spec}, request_timeout=15).values()
        assert fut.result(timeout=20).offset == want, spec


def test_produce_to_unknown_topic_is_refused(broker):
    admin = admin_client(broker)
    topic = unique_topic("nosuch")
    p = Producer(producer_config(broker, **{"message.timeout.ms": 8000,
                                            "topic.metadata.propagation.max.ms": 1000}))
    d = Delivered()
    p.produce(topic, b"lost", on_delivery=d)
    p.flush(20)
    assert not d.ok
    assert [e.code() for e, _, _ in d.errors][0] in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                      KafkaError._UNKNOWN_TOPIC)
    assert topic not in admin.list_topics(timeout=10).topics
    # The broker's own answer to a Produce for it.
    with kwire.Conn.to(broker.bootstrap) as conn:
        err = kwire.produce_raw(conn, topic, 0, kwire.record_batch([b"lost"]))
    assert err == UNKNOWN_TOPIC_OR_PARTITION
    assert topic not in admin.list_topics(timeout=10).topics


def test_describe_cluster(broker):
    admin = admin_client(broker)
    cluster = admin.describe_cluster(request_timeout=15).result(timeout=20)
    assert cluster.cluster_id
    assert len(cluster.nodes) == 1
    (node,) = cluster.nodes
    assert (node.host, node.port) == ("127.0.0.1", broker.kafka_port)
    assert cluster.controller is not None and cluster.controller.id == node.id
