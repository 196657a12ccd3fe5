"""DeleteRecords in a cluster is replicated: every replica moves its log start, and the move
survives a restart of every broker and a change of leader (before, the leader alone applied
it, and a restart lost it)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, start_cluster, wait_formed
from conftest import unique_topic


def leader(brokers, topic) -> int:
    for b in brokers:
        if b.running():
            t = metadata(b, topic).topics.get(topic)
            if t is not None and 0 in t.partitions and t.partitions[0].leader > 0:
                return t.partitions[0].leader
    return -1


def wait_leader(brokers, topic, not_this: int = -1) -> int:
    deadline = time.monotonic() + 30
    while (lead := leader(brokers, topic)) < 1 or lead == not_this:
        assert time.monotonic() < deadline, "no new leader"
        time.sleep(0.2)
    return lead


def replica_log_start(b, topic) -> int:
    f = b.partition_dir(topic, 0) / "log-start-offset"
    return int(f.read_text()) if f.exists() else 0


def visible(brokers, topic) -> tuple[tuple[int, int], list[bytes]]:
    """Watermarks and every record, as a client of the whole cluster sees them."""
    bootstrap = ",".join(b.bootstrap for b in brokers if b.running())
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                marks = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5, cached=False)
                break
            except Exception:  # a leader that is not known yet
                assert time.monotonic() < deadline
                time.sleep(0.2)
        c.assign([TopicPartition(topic, 0, marks[0])])
        values = []
        while len(values) < marks[1] - marks[0]:
            assert time.monotonic() < deadline, (marks, len(values))
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                values.append(m.value())
        return marks, values
    finally:
        c.close()


def test_delete_records_survives_restarts_and_leader_changes_on_every_replica(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("delrec")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        operation_timeout=15)[topic].result(timeout=30)
    wait_leader(brokers, topic)
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers), "acks": "all"})
    for i in range(50):
        p.produce(topic, b"r%d" % i, partition=0)
    assert p.flush(30) == 0

    # Sent to a broker that is not the leader first: it is refused there and the client
    # retries on the leader, as Kafka's admin clients do.
    res = admin.delete_records([TopicPartition(topic, 0, 20)], request_timeout=30)
    assert list(res.values())[0].result(timeout=30).low_watermark == 20
    want = ((20, 50), [b"r%d" % i for i in range(20, 50)])
    assert visible(brokers, topic) == want
    deadline = time.monotonic() + 10
    while [replica_log_start(b, topic) for b in brokers] != [20, 20, 20]:
        assert time.monotonic() < deadline, [replica_log_start(b, topic) for b in brokers]
        time.sleep(0.1)

    # Every broker restarts: each opens its segments and re-applies what its Raft log holds
    # after its checkpoint, DeleteRecords included.
    for b in brokers:
        b.kill9()
    for b in brokers:
        b.start()
    first = wait_leader(brokers, topic)
    assert visible(brokers, topic) == want
    assert [replica_log_start(b, topic) for b in brokers] == [20, 20, 20]

    # Two leader changes: each new leader serves the same start.
    gone = first
    for _ in range(2):
        brokers[gone - 1].kill9()
        new = wait_leader(brokers, topic, not_this=gone)
        assert visible(brokers, topic) == want, f"leader {new}"
        brokers[gone - 1].start()
        gone = new
