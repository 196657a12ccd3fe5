"""Topic config changes and partition additions in a cluster, through the controller: asked of
any broker, applied on every one (a broker that was down meanwhile too, from the controller's
snapshot), kept across restarts, and a running consumer group is assigned new partitions
without a restart."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, ResourceType)
from kafka.admin import ConfigResource as KConfigResource

from cluster import (metadata, restart_all, start_cluster, wait_controller_log_truncated,
                     wait_formed)
from conftest import unique_topic
from history import wait_replicas_identical
from test_tiering import metric
from test_cluster_reassign import create, kadmin, wait_for

SMALL = ["--controller-snapshot-entries", "4", "--raft-log-file-bytes", "4096"]


def retention(b, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    entry = admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)["retention.ms"]
    return entry.value, entry.source


def partitions(b, topic):
    t = metadata(b, topic).topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p: (m.leader, list(m.replicas)) for p, m in t.partitions.items()}


def produce(brokers, topic, partition, n, tag):
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers if b.running()),
                  "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, value=b"%s-%d" % (tag, i), partition=partition)
    assert p.flush(30) == 0


def test_configs_and_partitions_change_on_every_broker(broker_factory):
    brokers = start_cluster(broker_factory, extra_args=SMALL)
    wait_formed(brokers)
    topic = unique_topic("grow")
    create(brokers[0], topic, 2, 3, {"retention.ms": "3600000"})
    wait_for("leaders", lambda: (v := partitions(brokers[0], topic))
             and all(leader > 0 for leader, _ in v.values()))
    produce(brokers, topic, 0, 20, b"before")

    # A consumer group reading the topic, started before it grows.
    consumer = Consumer({"bootstrap.servers": brokers[0].bootstrap, "group.id": unique_topic("g"),
                         "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 1000})
    consumer.subscribe([topic])
    seen = {}

    def poll():
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            seen.setdefault(m.partition(), []).append(m.value())
        return len(consumer.assignment())

    try:
        wait_for("the group's assignment", lambda: poll() == 2)

        # One broker is down while the topic changes (and enough other changes pass for its
        # controller log to be behind the others' first entries).
        third = brokers[2]
        third.stop()
        alive = brokers[:2]
        res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
        admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
        admin.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=40)
        fs = admin.create_partitions([NewPartitions(topic, 5)], request_timeout=30)
        fs[topic].result(timeout=40)
        # The group coordinator's topic keeps its count: groups are placed by it.
        fs = admin.create_partitions([NewPartitions("__consumer_offsets", 12)],
                                     request_timeout=30)
        with pytest.raises(KafkaException) as refused:
            fs["__consumer_offsets"].result(timeout=40)
        assert refused.value.args[0].code() == KafkaError.INVALID_PARTITIONS
        assert "fixed when it is created" in str(refused.value)
        for b in alive:
            assert retention(b, topic) == ("7200000", 1)  # DYNAMIC_TOPIC_CONFIG
            view = wait_for(f"{b.workdir.name}'s new partitions", lambda b=b: (
                (v := partitions(b, topic)) and len(v) == 5
                and all(leader > 0 for leader, _ in v.values()) and v))
            assert all(len(r) == 3 for _, r in view.values()), view
        # The new partitions are placed over all three brokers (the stopped one included: it
        # is still a member), preferred leaders spread.
        assert {r[0] for p, (_, r) in view.items() if p >= 2} | {r[0] for _, r in view.values()} \
            == {1, 2, 3}
        for i in range(24):
            create(brokers[0], f"{topic}-filler-{i}", 1, 1, {
                "retention.ms": "3600000", "segment.bytes": "1048576",
                "cleanup.policy": "delete", "max.message.bytes": "100000"})
        wait_controller_log_truncated(alive)

        # The running group is assigned the new partitions and reads what is produced there.
        wait_for("the group's new assignment", lambda: poll() == 5, timeout=30)
        produce(brokers, topic, 4, 10, b"new")
        wait_for("records of a new partition", lambda: (poll(), len(seen.get(4, [])) >= 10)[1])
    finally:
        consumer.close()

    third.start()
    wait_formed(brokers)
    wait_for("the returning broker's config", lambda: retention(third, topic)[0] == "7200000")
    wait_for("the returning broker's partitions", lambda: (
        (v := partitions(third, topic)) and len(v) == 5))
    wait_replicas_identical(brokers, topic, [4])
    wait_for("the snapshot counted",
             lambda: metric(third, "icestream_controller_snapshots_installed_total") >= 1)

    # Everything holds across a restart of every broker (the log replayed after each
    # broker's checkpoint brings no older config back).
    restart_all(brokers)
    for b in brokers:
        assert retention(b, topic) == ("7200000", 1)
        assert len(partitions(b, topic)) == 5
    # kafka-python's AlterConfigs (the whole set) through another broker, seen everywhere.
    kafka_python = kadmin([third])
    try:
        res = KConfigResource("TOPIC", topic, {"retention.ms": "10800000"})
        assert kafka_python.alter_configs([res])["topic"][topic] == "OK"
        got = kafka_python.describe_configs([KConfigResource("TOPIC", topic)])["topic"][topic]
        assert got["retention.ms"]["value"] == "10800000"
    finally:
        kafka_python.close()
    for b in brokers:
        wait_for(f"{b.workdir.name}'s config", lambda b=b: retention(b, topic) == ("10800000", 1))
    produce(brokers, topic, 3, 5, b"after")
    wait_replicas_identical(brokers, topic, [3, 4])
