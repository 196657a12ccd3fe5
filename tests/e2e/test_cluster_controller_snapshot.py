"""The controller's log over time: every few entries each broker checkpoints the cluster
metadata and drops the controller log files before it; a broker that was down meanwhile, or
one that joins later, is sent that metadata as a snapshot and brings its topics to it
(creating what it missed, deleting what was deleted, data included); and every broker
restarts from its checkpoint.

The brokers checkpoint every 4 controller entries and keep 4 KiB controller log files, so that
a few topic creations and deletions span several files."""

from __future__ import annotations

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from cluster import (controller_files, metadata, restart_all, start_cluster,
                     wait_controller_log_truncated, wait_formed)
from conftest import free_port, unique_topic
from history import wait_replicas_identical
from test_tiering import metric
from test_cluster_reassign import create, rpc_addr, wait_for

SMALL = ["--controller-snapshot-entries", "4", "--raft-log-file-bytes", "4096"]


def topics_on(b, prefix) -> set[str]:
    return {t for t in metadata(b).topics if t.startswith(prefix)}


def produce(brokers, topic, n):
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers if b.running()),
                  "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, value=b"record-%04d" % i, partition=0)
    assert p.flush(30) == 0


def delete(b, names):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = admin.delete_topics(names, operation_timeout=15, request_timeout=30)
    for f in fs.values():
        f.result(timeout=40)


def test_brokers_behind_the_controller_log_catch_up_from_its_snapshot(broker_factory):
    brokers = start_cluster(broker_factory, extra_args=SMALL)
    wait_formed(brokers)
    prefix = unique_topic("ctl")
    gone = f"{prefix}-gone"
    create(brokers[0], gone, 1, 3)
    wait_for("a leader", lambda: (t := metadata(brokers[0], gone).topics.get(gone))
             and t.partitions[0].leader > 0)
    produce(brokers, gone, 100)
    third = brokers[2]
    others = brokers[:2]
    wait_for("every replica", lambda: all(b.partition_dir(gone, 0).exists() for b in brokers))
    wait_for("its replica", lambda: third.partition_dir(gone, 0).exists()
             and any(third.partition_dir(gone, 0).glob("*.log")))

    # One broker is down while topics come and go: more entries than the others keep.
    third.stop()
    names = [f"{prefix}-{i}" for i in range(24)]
    for n in names:
        create(brokers[0], n, 1, 3, {"retention.ms": "3600000", "segment.bytes": "1048576",
                                     "cleanup.policy": "delete", "max.message.bytes": "100000"})
    delete(brokers[0], [gone] + names[:3])
    kept = set(names[3:])
    wait_controller_log_truncated(others)
    # DeleteTopics is answered once the broker it was sent to applied it; the other applies
    # the same entries a moment later (metadata reaches brokers asynchronously, as in Kafka).
    wait_for("both brokers' topics", lambda: all(topics_on(b, prefix) == kept for b in others))

    # Back, it is sent the metadata as a snapshot: what it missed is created, what was
    # deleted goes, with its data, and its replicas of the new topics catch up.
    third.start()
    wait_formed(brokers)
    wait_for("the returning broker's topics", lambda: topics_on(third, prefix) == kept)
    wait_for("the snapshot counted",
             lambda: metric(third, "icestream_controller_snapshots_installed_total") >= 1)
    assert not third.partition_dir(gone, 0).exists()
    produce(brokers, names[5], 50)
    wait_replicas_identical(brokers, names[5], [0])

    # A broker that joins now gets the same snapshot, and sees the same topics.
    fourth = broker_factory(args=["--node-id", "4", "--rpc-addr", f"127.0.0.1:{free_port()}",
                                  "--seeds", ",".join(rpc_addr(b) for b in brokers)] + SMALL)
    brokers.append(fourth)
    wait_formed(brokers)
    wait_for("broker 4's topics", lambda: topics_on(fourth, prefix) == kept)
    wait_for("the snapshot counted",
             lambda: metric(fourth, "icestream_controller_snapshots_installed_total") >= 1)

    # Every broker restarts from its checkpoint; the metadata stays, and the controller still
    # commits (a new topic appears everywhere).
    restart_all(brokers)
    later = f"{prefix}-later"
    wait_for("a topic created after the restart", lambda: create_ok(brokers[0], later))
    for b in brokers:
        wait_for(f"{b.workdir.name}'s topics after the restart",
                 lambda b=b: topics_on(b, prefix) == kept | {later})
        assert "checkpoint" in controller_files(b)


def create_ok(b, name) -> bool:
    try:
        create(b, name, 1, 3)
        return True
    except Exception as e:  # the controller may still be electing a leader
        if "already exists" in str(e):
            return True
        return False
