"""A single broker's data directory growing into a three-broker cluster: restarted with seeds
it founds the cluster keeping its topics, their records at their offsets, its consumer groups'
committed offsets and its schemas; reassignment then replicates its topics to the new brokers.
(Before, its topics were deleted: the cluster metadata did not have them.)"""

from __future__ import annotations

import json
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import metadata, read_all, wait_formed
from conftest import BrokerDied, consumer_config, create_topic, free_port, unique_topic
from test_cluster_reassign import (alter_raw, check_replicas, kadmin, partition_view,
                                   wait_for, wait_reassigned)

SCHEMA = {"schema": json.dumps({"type": "record", "name": "Order",
                                "fields": [{"name": "id", "type": "long"}]})}


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def committed(b, group, topic, partition):
    c = Consumer(consumer_config(b, **{"group.id": group}))
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=20)[0].offset
    finally:
        c.close()


def test_a_single_brokers_directory_founds_a_cluster_keeping_everything(broker_factory):
    single = broker_factory()
    topic = create_topic(single, unique_topic("orders"), partitions=2)
    p = Producer({"bootstrap.servers": single.bootstrap, "acks": "all"})
    for i in range(100):
        p.produce(topic, value=b"o-%03d" % i, partition=i % 2)
    assert p.flush(30) == 0
    c = Consumer(consumer_config(single, **{"group.id": "billing"}))
    c.commit(offsets=[TopicPartition(topic, 0, 30)], asynchronous=False)
    c.close()
    schema_id = post_json(f"{single.schema_registry_url}/subjects/orders-value/versions",
                          SCHEMA)["id"]
    before = {q: read_all(single, topic, q) for q in (0, 1)}
    assert [len(v) for v in before.values()] == [50, 50]
    single.stop()

    ports = [free_port() for _ in range(3)]
    seeds = ",".join(f"127.0.0.1:{x}" for x in ports)
    cluster_args = lambda n: ["--node-id", str(n), "--rpc-addr", f"127.0.0.1:{ports[n - 1]}",
                              "--seeds", seeds]
    single.extra_args = cluster_args(1)
    others = [broker_factory(args=cluster_args(n), start=False) for n in (2, 3)]
    single.start()
    for b in others:
        b.start()
    brokers = [single] + others
    wait_formed(brokers)

    # Every broker knows the topic, led by the broker that had it.
    for b in brokers:
        view = wait_for(f"{b.workdir.name} to know the topic",
                        lambda b=b: (v := partition_view(b, topic, 0)) and v[0] > 0 and v)
        assert view == (1, [1]), view
    assert {q: read_all(others[0], topic, q) for q in (0, 1)} == before
    assert committed(others[1], "billing", topic, 0) == 30
    with urllib.request.urlopen(f"{others[0].schema_registry_url}/schemas/ids/{schema_id}",
                                timeout=10) as r:
        assert json.loads(json.loads(r.read())["schema"]) == json.loads(SCHEMA["schema"])

    # More replicas by reassignment, copied from its segments.
    admin = kadmin(brokers)
    assert alter_raw(admin, {(topic, 0): [1, 2, 3], (topic, 1): [1, 2, 3]}) == \
        {(topic, 0): 0, (topic, 1): 0}
    for q in (0, 1):
        wait_reassigned(brokers, admin, topic, q, [1, 2, 3])
        check_replicas(brokers, topic, q, [1, 2, 3], removed=[])
    p = Producer({"bootstrap.servers": others[1].bootstrap, "acks": "all"})
    p.produce(topic, value=b"after", partition=0)
    assert p.flush(30) == 0
    assert read_all(others[1], topic, 0) == before[0] + [(50, b"after")]
    # The adopted topic survives a restart of every broker.
    for b in brokers:
        b.stop()
    for b in brokers:
        b.start()
    wait_formed(brokers)
    assert len(metadata(single, topic).topics[topic].partitions) == 2
    assert read_all(single, topic, 1) == before[1]

    # A single broker's directory founds a cluster; joining an existing one it is refused
    # (the cluster may have topics of the same names), and its topics stay on its disk.
    loner = broker_factory()
    mine = create_topic(loner, unique_topic("mine"))
    loner.stop()
    loner.extra_args = ["--node-id", "4", "--rpc-addr", f"127.0.0.1:{free_port()}",
                        "--seeds", seeds]
    with pytest.raises(BrokerDied):
        loner.start(timeout=30)
    loner.stop()
    assert "joins an existing cluster" in loner.log_text()
    assert (loner.data_dir / "kafka" / mine).is_dir()
