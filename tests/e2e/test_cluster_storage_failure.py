"""A replica whose disk fails stops: fsyncs of the partition leader's files fail with EIO (the
broker's test-only failpoint: the tests run as root, so permissions cannot make a disk fail),
the leader stops leading, produce continues on a new leader, and no acknowledged record is
lost. The broker reports itself not ready until it is restarted; after the restart its replica
catches up and all replicas hold the same log."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, start_cluster, wait_formed
from conftest import unique_topic
from history import Load, wait_replicas_identical


def leader_seen_by(b, topic: str) -> int:
    t = metadata(b, topic).topics.get(topic)
    if t is None or 0 not in t.partitions:
        return -1
    return t.partitions[0].leader


def ready(b) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(b.admin_url + "/v1/status/ready", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def failed_partitions_metric(b) -> float:
    with urllib.request.urlopen(b.admin_url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("icestream_storage_failed_partitions "):
                return float(line.split()[1])
    raise AssertionError("icestream_storage_failed_partitions not exported")


def test_a_leader_whose_fsync_fails_stops_leading_and_loses_no_acknowledged_record(
        broker_factory, tmp_path):
    trigger = tmp_path / "fail-fsync"
    brokers = start_cluster(broker_factory,
                            extra_args=["--unsafe-fail-fsync-file-for-tests", str(trigger)])
    wait_formed(brokers)
    topic = unique_topic("diskfail")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        operation_timeout=15)[topic].result(timeout=30)
    deadline = time.monotonic() + 20
    while (leader := leader_seen_by(brokers[0], topic)) < 1:
        assert time.monotonic() < deadline, "no leader"
        time.sleep(0.2)

    bootstrap = ",".join(b.bootstrap for b in brokers)
    load = Load(bootstrap, topic, [0])
    try:
        time.sleep(2)
        before = load.acked()
        assert before > 0, "nothing acknowledged before the failure"
        victim = brokers[leader - 1]
        data = victim.data_dir.resolve()
        # The partition's segments and its Raft log; the broker's other files keep working.
        trigger.write_text(f"{data}/kafka/{topic}/\n{data}/raft/{topic}-\n")
        # Another replica takes over, as every broker sees it.
        deadline = time.monotonic() + 30
        others = [b for b in brokers if b is not victim]
        while True:
            seen = {leader_seen_by(b, topic) for b in others}
            if len(seen) == 1 and (new := seen.pop()) not in (-1, leader):
                break
            assert time.monotonic() < deadline, f"leadership did not move off {leader}: {seen}"
            time.sleep(0.2)
        # The failed broker says so.
        status, body = ready(victim)
        assert status == 503 and body["status"] == "storage_failed", (status, body)
        assert failed_partitions_metric(victim) == 1
        # Writes continue on the new leader.
        moved_at = load.acked()
        deadline = time.monotonic() + 30
        while load.acked() < moved_at + 100:
            assert time.monotonic() < deadline, (
                "no writes acknowledged after the failover", list(load.history.errors.items())[-3:])
            time.sleep(0.2)
    finally:
        load.finish()
    print(f"leader {leader} failed; broker {new} leads; {load.acked()} acknowledged")

    # Every acknowledged record is there exactly once.
    load.check_read_back(**{"isolation.level": "read_uncommitted"})

    # The disk is "repaired" and the broker restarted: its replica catches up.
    trigger.unlink()
    victim.kill9()
    victim.start()
    deadline = time.monotonic() + 30
    while ready(victim)[0] != 200:
        assert time.monotonic() < deadline, ready(victim)
        time.sleep(0.2)
    assert failed_partitions_metric(victim) == 0
    wait_replicas_identical(brokers, topic, [0])
