"""Leader epochs in a cluster are Raft terms (1 and up). A consumer that sees a partition's
leader epoch change under its fetch position validates the position with OffsetForLeaderEpoch
(KIP-320) and fetches again only once the new leader answers cleanly. The leader used to refuse
every epoch above 0 with UNKNOWN_LEADER_EPOCH, which librdkafka retries forever: the partition
was never fetched again after its leader died (the cause of the consumer group that "stopped
consuming a partition after its coordinator failed over", since the coordinator's broker also
led data partitions)."""

from __future__ import annotations

import struct
import time

from confluent_kafka import Consumer, TopicPartition

from cluster import metadata, start_cluster, wait_formed
from conftest import consumer_config, create_topic, produce, unique_topic
from kwire import Conn, frame, i32, request_header, string

NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75


def offset_for_leader_epoch(b, topic: str, current: int, asked: int) -> tuple[int, int, int]:
    """OffsetForLeaderEpoch v3 for partition 0, as a consumer sends it (replica id -1):
    (error code, leader epoch, end offset)."""
    body = (i32(-1) + i32(1) + string(topic) + i32(1) + i32(0) + i32(current) + i32(asked))
    with Conn.to(b.bootstrap) as conn:
        conn.send(frame(request_header(23, 3, 5) + body))
        _, resp = conn.recv_response()
    # throttle, one topic (name), one partition: error, partition, leader epoch, end offset
    (n,) = struct.unpack_from(">h", resp, 8)
    err, _partition, epoch, end = struct.unpack_from(">hiiq", resp, 10 + n + 4)
    return err, epoch, end


def settled_leader(b, topic: str, timeout: float = 30.0) -> int:
    """The partition's leader once it is the preferred replica (a new partition's first
    election may go elsewhere; leadership then moves to the preferred replica and stays)."""
    deadline = time.monotonic() + timeout
    while True:
        p = metadata(b, topic).topics[topic].partitions[0]
        if p.leader == p.replicas[0]:
            return p.leader
        assert time.monotonic() < deadline, (p.leader, p.replicas)
        time.sleep(0.2)


def consume(c: Consumer, n: int, timeout: float = 60.0) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"consumed {len(out)} of {n}"
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            out.append(m)
    return out


def test_a_consumer_keeps_fetching_a_partition_whose_leader_died(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("epoch")
    create_topic(brokers[0], topic, partitions=1, replication_factor=3)
    everyone = ",".join(b.bootstrap for b in brokers)
    leader = settled_leader(brokers[0], topic)
    produce(brokers[0], topic, [b"a%d" % i for i in range(20)], **{"bootstrap.servers": everyone})

    c = Consumer(consumer_config(brokers[0], **{"bootstrap.servers": everyone,
                                                "topic.metadata.refresh.interval.ms": 1000}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        first = consume(c, 20)
        assert [m.value() for m in first] == [b"a%d" % i for i in range(20)]
        epoch = first[-1].leader_epoch()
        assert epoch is not None and epoch >= 1, epoch

        # The leader answers its own epoch; a follower, an older and a newer epoch are refused
        # as Kafka refuses them.
        assert offset_for_leader_epoch(brokers[leader - 1], topic, epoch, epoch) == (0, epoch, 20)
        assert offset_for_leader_epoch(brokers[leader - 1], topic, -1, epoch) == (0, epoch, 20)
        assert offset_for_leader_epoch(brokers[leader - 1], topic, epoch + 1, epoch)[0] == \
            UNKNOWN_LEADER_EPOCH
        follower = next(b for i, b in enumerate(brokers, start=1) if i != leader)
        assert offset_for_leader_epoch(follower, topic, epoch, epoch)[0] == NOT_LEADER_OR_FOLLOWER

        # The leader dies under the consumer's position: the consumer validates it with the new
        # leader and goes on fetching what is produced there.
        brokers[leader - 1].kill9()
        alive = ",".join(b.bootstrap for b in brokers if b.running())
        produce(brokers[0] if brokers[0].running() else brokers[1], topic,
                [b"b%d" % i for i in range(20)], **{"bootstrap.servers": alive})
        second = consume(c, 20)
        assert [(m.offset(), m.value()) for m in second] == \
            [(20 + i, b"b%d" % i) for i in range(20)]
        new_epoch = second[-1].leader_epoch()
        assert new_epoch > epoch
    finally:
        c.close()

    new = metadata(follower, topic).topics[topic].partitions[0].leader
    assert new != leader
    # Where the old epoch ended, from the new leader; a client still on the old epoch is fenced.
    assert offset_for_leader_epoch(brokers[new - 1], topic, new_epoch, epoch) == (0, epoch, 20)
    assert offset_for_leader_epoch(brokers[new - 1], topic, epoch, epoch)[0] == \
        FENCED_LEADER_EPOCH
