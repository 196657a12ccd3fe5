"""The reassignment throttle as `kafka-reassign-partitions --throttle` sets it: Kafka's
`leader.replication.throttled.rate` and `follower.replication.throttled.rate` dynamic broker
configs pace the bytes a replica a reassignment adds takes in (and its leader serves it); the
move completes with every record on the new replica, and /metrics shows the bytes that waited."""

from __future__ import annotations

import re

from confluent_kafka import Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigResource

from cluster import finalized_features, read_all, start_cluster, wait_formed
from conftest import http_get, unique_topic
from test_cluster_reassign import (alter_raw, create, kadmin, leaders, partition_view, wait_for,
                                   wait_reassigned)
from test_dynamic_broker_configs import alter, describe

RATE = 1 << 20  # bytes per second


def throttled_bytes(b, direction: str) -> float:
    status, text, _ = http_get(f"{b.admin_url}/metrics")
    assert status == 200
    m = re.search(rf"^icestream_replication_throttled_{direction}_bytes_total (\S+)$", text, re.M)
    assert m, f"icestream_replication_throttled_{direction}_bytes_total missing from /metrics"
    return float(m.group(1))


def test_a_throttled_reassignment_completes_with_every_record(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    wait_for("dynamic broker configs finalized", lambda: all(
        finalized_features(b).get("icestream.dynamic.broker.configs") == 1 for b in brokers))
    topic = unique_topic("moved")
    create(brokers[0], topic, 1, 1)
    wait_for("a leader", lambda: leaders(brokers[0], topic, 1))
    source = partition_view(brokers[0], topic, 0)[1][0]
    target = next(i for i in (1, 2, 3) if i != source)
    # About 3 MiB: seconds of catching up at 1 MiB/s.
    p = Producer({"bootstrap.servers": brokers[0].bootstrap, "acks": "all",
                  "linger.ms": 5})
    values = [b"%05d-" % i + b"x" * 4000 for i in range(800)]
    for v in values:
        p.produce(topic, value=v, partition=0)
    assert p.flush(60) == 0

    # What kafka-reassign-partitions --throttle sets, per broker id.
    alter(brokers[source - 1], str(source), AlterConfigOpType.SET,
          {"leader.replication.throttled.rate": str(RATE)})
    alter(brokers[target - 1], str(target), AlterConfigOpType.SET,
          {"follower.replication.throttled.rate": str(RATE)})
    entry = describe(brokers[target - 1], ConfigResource.Type.BROKER,
                     str(target))["follower.replication.throttled.rate"]
    assert entry.value == str(RATE) and not entry.is_read_only
    # Out of range is refused with the reason.
    try:
        alter(brokers[target - 1], str(target), AlterConfigOpType.SET,
              {"follower.replication.throttled.rate": "0"})
        raise AssertionError("a rate of 0 was accepted")
    except Exception as e:  # noqa: BLE001 (confluent-kafka raises KafkaException)
        assert "at least 1" in str(e), e

    # The partition moves whole to the target broker.
    admin = kadmin(brokers)
    assert alter_raw(admin, {(topic, 0): [target]})[(topic, 0)] == 0
    wait_reassigned(brokers, admin, topic, 0, [target])
    assert throttled_bytes(brokers[target - 1], "follower") > 0, "the follower throttle never engaged"
    # The new replica, now the only one, holds every record.
    assert [v for _, v in read_all(brokers[target - 1], topic)] == values

    # Removing the throttle (what --verify does once the move is done) is accepted.
    alter(brokers[target - 1], str(target), AlterConfigOpType.DELETE,
          {"follower.replication.throttled.rate": None})
    assert "follower.replication.throttled.rate" not in {
        k for k, e in describe(brokers[target - 1], ConfigResource.Type.BROKER, str(target)).items()
        if e.source == 2}
