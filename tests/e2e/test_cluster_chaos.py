"""acks=all produce to an RF=3 topic while partition leaders are SIGKILLed and restarted:
every acknowledged record is present exactly once, in order, and every replica's log ends up
byte-identical."""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, start_cluster, wait_formed
from conftest import unique_topic
from history import Load, wait_replicas_identical

PARTITIONS = 3


def leader_of(brokers, topic, partition):
    for b in brokers:
        if b.running():
            t = metadata(b, topic).topics.get(topic)
            if t is not None and partition in t.partitions and t.partitions[partition].leader > 0:
                return t.partitions[partition].leader
    return -1


def test_acked_records_survive_leader_sigkills(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("chaos")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        operation_timeout=15)[topic].result(timeout=30)
    deadline = time.monotonic() + 20
    while any(leader_of(brokers, topic, p) < 0 for p in range(PARTITIONS)):
        assert time.monotonic() < deadline, "no leaders"
        time.sleep(0.2)

    kills: list[tuple[int, float]] = []
    bootstrap = ",".join(b.bootstrap for b in brokers)
    load = Load(bootstrap, topic, list(range(PARTITIONS)))
    history, ack_times = load.history, load.ack_times
    try:
        for rnd in range(3):
            time.sleep(2)
            part = rnd % PARTITIONS
            victim = leader_of(brokers, topic, part)
            assert victim > 0
            killed_at = len(history.acked)
            brokers[victim - 1].kill9()
            t_kill = time.monotonic()
            time.sleep(2.5)
            kills.append((part, t_kill))
            brokers[victim - 1].start()
            print(f"round {rnd}: killed broker {victim} (leader of {part}) with {killed_at} acked")
    finally:
        time.sleep(2)
        load.finish()
    # Failover time: leader killed to the first acknowledged write on its partition.
    failovers = []
    for part, t_kill in kills:
        after = [t for p, t in ack_times if p == part and t > t_kill]
        failovers.append(round(min(after) - t_kill, 2) if after else float("inf"))
    # Printed, not asserted: the failover time's target (2 s) is benches/failover.py's to
    # measure (this machine's load moves it, and a round whose new leader is a broker killed
    # earlier waits out librdkafka's reconnect backoff towards it, up to 10 s: see
    # benches/README.md). Each partition must come back.
    print(f"failover seconds: {failovers}")
    assert max(failovers) < 30.0, f"a partition took no write after its leader's SIGKILL: {failovers}"
    assert len(history.acked) > 300, (len(history.acked), list(history.errors.items())[:5])

    # Read everything back from the leaders.
    load.check_read_back(**{"isolation.level": "read_uncommitted"})

    # Every replica holds the same log, byte for byte.
    wait_replicas_identical(brokers, topic, range(PARTITIONS))
