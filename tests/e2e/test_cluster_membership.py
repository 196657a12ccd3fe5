"""Cluster membership as an operator expects: a broker that joins later is a controller learner
until a decommissioned voter leaves, then it is promoted and the controller survives the loss of
an original voter; decommissioned and dead brokers leave Metadata; a cluster whose brokers do not
share an object store says so instead of tiering half-working."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic)

from cluster import controller_roles, metadata, start_cluster, wait_formed
import kwire
from conftest import unique_topic
from test_cluster_reassign import create, founders_and_fourth, icestream, leaders, wait_for


def test_a_decommissioned_voter_is_replaced_and_the_controller_survives_losing_a_founder(
        broker_factory):
    founders, fourth, brokers = founders_and_fourth(broker_factory)
    wait_for("broker 4 a controller learner",
             lambda: controller_roles(brokers[0]) == {1: "voter", 2: "voter", 3: "voter", 4: "learner"})
    topic = unique_topic("members")
    create(brokers[0], topic, 4, 3)
    wait_for("leaders", lambda: leaders(fourth, topic, 4))

    out = icestream("cluster", "decommission", "--node", "3", "--admin-url", fourth.admin_url)
    assert out.returncode == 0, out.stderr
    # Its replicas move to 1, 2 and 4; then 4 takes its vote and 3 leaves the group.
    wait_for("broker 4 promoted, broker 3 out of the controller group",
             lambda: controller_roles(brokers[0]) == {1: "voter", 2: "voter", 3: None, 4: "voter"},
             timeout=90)
    # Metadata and DescribeCluster no longer list the decommissioned broker, though it runs.
    assert brokers[2].running()
    wait_for("broker 3 gone from Metadata", lambda: sorted(metadata(brokers[0]).brokers) == [1, 2, 4])
    status = icestream("cluster", "status", "--admin-url", brokers[0].admin_url)
    assert status.returncode == 0, status.stderr
    row = next(line.split() for line in status.stdout.splitlines() if line.split()[:1] == ["3"])
    assert "decommissioned" in row, status.stdout
    brokers[2].stop()

    # Losing a founder still leaves a quorum (2 of the voters 1, 2, 4): topics can be created.
    brokers[0].kill9()
    after = unique_topic("after")
    create(fourth, after, 2, 2)
    wait_for("the new topic led", lambda: leaders(fourth, after, 2))
    # A dead broker leaves Metadata once its session times out.
    wait_for("broker 1 gone from Metadata", lambda: sorted(metadata(fourth).brokers) == [2, 4],
             timeout=30)


def test_a_restarted_broker_lists_every_live_broker_in_its_first_metadata_answer(broker_factory):
    # A client that reconnects to a broker the moment it is back (librdkafka, with its 50 ms
    # reconnect backoff) must not be told that the others are gone: it drops the brokers a
    # Metadata answer leaves out, and a transactional producer whose coordinator it dropped
    # stalled. The broker holds the list back until the other seeds answered its hellos.
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    restarted = brokers[1]
    restarted.kill9()
    starting = threading.Thread(target=restarted.start)
    starting.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = kwire.Conn.to(restarted.bootstrap, timeout=10)
            break
        except OSError:
            assert time.monotonic() < deadline, "the restarted broker never listened"
            time.sleep(0.001)
    with conn:
        listed = kwire.metadata_broker_ids(conn)
    starting.join()
    assert listed == [1, 2, 3]


def test_a_cluster_without_a_shared_object_store_refuses_tiered_topics(broker_factory):
    """Each broker's default object store is its own directory, where a new leader would not
    find what another uploaded: tiered topics are refused with the reason, not half-working."""
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    name = unique_topic("tiered")
    fs = admin.create_topics([NewTopic(name, 1, 3, config={"remote.storage.enable": "true"})],
                             request_timeout=30)
    with pytest.raises(KafkaException) as refused:
        fs[name].result(timeout=30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert "object store every broker shares" in str(refused.value)
    # Turning it on later is refused the same way; a plain topic works.
    plain = unique_topic("plain")
    create(brokers[0], plain, 1, 3)
    fs = admin.incremental_alter_configs([ConfigResource(
        ConfigResource.Type.TOPIC, plain,
        incremental_configs=[ConfigEntry("remote.storage.enable", "true",
                                         incremental_operation=AlterConfigOpType.SET)])])
    with pytest.raises(KafkaException) as refused:
        list(fs.values())[0].result(timeout=30)
    assert "object store every broker shares" in str(refused.value)
    assert "remote.storage.enable are refused" in brokers[0].log_text()
