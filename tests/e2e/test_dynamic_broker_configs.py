"""Dynamic broker configs (Kafka's KIP-226) as kafka-configs users change them: a topic default
set for every broker through one broker takes effect on every broker's replicas (old segments
go), DescribeConfigs on any broker shows it with its source, a broker's own value wins over the
cluster's, and both survive restarts; what cannot change at runtime is refused with the reason."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)

from cluster import finalized_features, start_cluster, wait_formed
from conftest import unique_topic
from test_cluster_reassign import create, leaders, wait_for

FEATURE = "icestream.dynamic.broker.configs"


def alter(b, name: str, op: AlterConfigOpType, entries: dict[str, str | None]):
    """IncrementalAlterConfigs on a broker id, with confluent-kafka."""
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    res = ConfigResource(ConfigResource.Type.BROKER, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v in entries.items()])
    list(admin.incremental_alter_configs([res]).values())[0].result(timeout=30)


def every_broker(b, request_of, process):
    """Sends kafka-python's own request for the broker resource "" (every broker): its admin
    client builds and decodes it, but refuses to route a name that is not a broker id (Kafka's
    kafka-configs --entity-default sends it; tests/compat covers that tool)."""
    from kafka.admin import ConfigResource as KResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        request = request_of(KafkaAdminClient, KResource(ConfigResourceType.BROKER, ""))
        response = admin._manager.run(admin._manager.send, request)
    finally:
        admin.close()
    return process(KafkaAdminClient, response)


def alter_every_broker(b, configs: dict, incremental: bool = True) -> str:
    """IncrementalAlterConfigs (`configs` maps a key to (op, value)) or the legacy AlterConfigs
    (the whole set) of every broker; the broker's answer ("OK" or the error)."""
    def request_of(cls, res):
        res.configs = configs
        return cls._alter_configs_request([res], False, incremental)
    return every_broker(b, request_of, lambda cls, r: cls._alter_configs_process_responses(
        r.responses)["broker"][""])


def describe_every_broker(b) -> dict[str, str]:
    """The dynamic configs set for every broker."""
    answer = every_broker(
        b, lambda cls, res: cls._describe_configs_request([res]),
        lambda cls, r: cls._describe_configs_process_responses([r], "all")["broker"][""])
    return {k: v["value"] for k, v in answer.items()}


def describe(b, rtype, name: str) -> dict[str, ConfigEntry]:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fut = list(admin.describe_configs([ConfigResource(rtype, name)]).values())[0]
    return fut.result(timeout=30)


def broker_id(b) -> int:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    return admin.describe_cluster().result(timeout=30).nodes[0].id


def segments(b, topic: str) -> list[int]:
    """The base offsets of the partition's segments on broker `b`'s disk."""
    return sorted(int(p.stem) for p in b.partition_dir(topic, 0).glob("*.log") if p.stem.isdigit())


def test_a_cluster_wide_default_reaches_every_broker_and_survives_restarts(broker_factory):
    brokers = start_cluster(broker_factory, extra_args=["--retention-check-interval-ms", "300"])
    wait_formed(brokers)
    wait_for("the feature finalized",
             lambda: all(finalized_features(b).get(FEATURE) == 1 for b in brokers))
    topic = unique_topic("dyn")
    # Small segments so that retention has sealed segments to delete.
    create(brokers[0], topic, 1, 3, config={"segment.bytes": "4096"})
    wait_for("a leader", lambda: leaders(brokers[0], topic, 1))
    p = Producer({"bootstrap.servers": brokers[0].bootstrap, "acks": "all",
                  "linger.ms": 0, "batch.size": 1024})
    for i in range(120):
        p.produce(topic, value=b"v" * 200, key=str(i).encode())
        p.poll(0)
    assert p.flush(30) == 0
    wait_for("several segments on every replica",
             lambda: all(len(segments(b, topic)) >= 4 for b in brokers))
    before = {b.workdir.name: segments(b, topic)[0] for b in brokers}
    assert set(before.values()) == {0}, before

    # Through broker 2, for every broker: retention by size.
    assert alter_every_broker(brokers[1], {"log.retention.bytes": ("SET", "8192")}) == "OK"
    # Old segments go on every replica, not only on the leader or the broker asked.
    wait_for("old segments deleted on every broker",
             lambda: all(segments(b, topic) and segments(b, topic)[0] > 0 for b in brokers))
    for b in brokers:
        entry = describe(b, ConfigResource.Type.TOPIC, topic)["retention.bytes"]
        assert entry.value == "8192"
        assert entry.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        # The topic's own override still wins.
        assert describe(b, ConfigResource.Type.TOPIC, topic)["segment.bytes"].value == "4096"

    # One broker's own value wins over the cluster's, on that broker only.
    alter(brokers[0], "3", AlterConfigOpType.SET, {"log.retention.ms": "3600000"})
    wait_for("broker 3's own retention.ms",
             lambda: describe(brokers[2], ConfigResource.Type.BROKER, "3")["log.retention.ms"].value
             == "3600000")
    own = describe(brokers[2], ConfigResource.Type.BROKER, "3")
    assert own["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert own["log.retention.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert not own["log.retention.bytes"].is_read_only
    assert own["num.partitions"].is_read_only
    other = describe(brokers[0], ConfigResource.Type.BROKER, "1")["log.retention.ms"]
    assert other.source == ConfigSource.STATIC_BROKER_CONFIG.value
    # The entity default lists what is set for every broker.
    assert describe_every_broker(brokers[0]) == {"log.retention.bytes": "8192"}

    # Both survive a SIGKILL of the broker that holds its own value, and a full restart.
    brokers[2].kill9()
    brokers[2].start()
    for b in brokers:
        b.stop()
    for b in brokers:
        b.start()
    wait_formed(brokers)
    for b in brokers:
        assert describe(b, ConfigResource.Type.TOPIC, topic)["retention.bytes"].value == "8192"
    assert describe(brokers[2], ConfigResource.Type.BROKER, "3")["log.retention.ms"].value \
        == "3600000"

    # DELETE brings back the start-up value everywhere.
    assert alter_every_broker(brokers[2], {"log.retention.bytes": ("DELETE", None)}) == "OK"
    wait_for("the start-up retention.bytes back",
             lambda: all(describe(b, ConfigResource.Type.TOPIC, topic)["retention.bytes"].value
                         == "-1" for b in brokers))


def test_what_cannot_change_at_runtime_is_refused_with_the_reason(broker_factory):
    broker = broker_factory()
    cases = {
        "num.partitions": ("3", "cannot be changed at runtime"),
        "log.remote.storage.enable": ("true", "cannot be changed at runtime"),
        "log.retention.ms": ("soon", "invalid value 'soon' for broker config 'log.retention.ms'"),
        "log.retention.weeks": ("1", "unknown dynamic broker config"),
    }
    for key, (value, why) in cases.items():
        answer = alter_every_broker(broker, {key: ("SET", value)})
        assert "InvalidConfig" in answer and why in answer, answer
    # The same through confluent-kafka, on the broker's own id.
    with pytest.raises(KafkaException) as refused:
        alter(broker, str(broker_id(broker)), AlterConfigOpType.SET, {"num.partitions": "3"})
    assert "cannot be changed at runtime" in str(refused.value)
    # Nothing refused was kept.
    assert describe_every_broker(broker) == {}


def test_a_single_broker_keeps_its_dynamic_configs_through_kafka_python(broker_factory):
    """kafka-python's admin client sends the legacy AlterConfigs: the whole set replaces what
    was set for the scope."""
    broker = broker_factory()
    topic = unique_topic("single")
    create(broker, topic, 1, 1)
    answer = alter_every_broker(broker, {"log.segment.bytes": "1048576",
                                         "log.retention.ms": "86400000"}, incremental=False)
    assert answer == "OK", answer
    broker.restart()
    entries = describe(broker, ConfigResource.Type.TOPIC, topic)
    assert entries["segment.bytes"].value == "1048576"
    assert entries["segment.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert entries["retention.ms"].value == "86400000"
    # A new set replaces the old one whole.
    answer = alter_every_broker(broker, {"log.retention.ms": "1000000"}, incremental=False)
    assert answer == "OK", answer
    entries = describe(broker, ConfigResource.Type.TOPIC, topic)
    assert entries["retention.ms"].value == "1000000"
    assert entries["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert describe_every_broker(broker) == {"log.retention.ms": "1000000"}
