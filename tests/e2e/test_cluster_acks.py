"""acks=1 in a cluster, as Kafka defines it: a partition leader answers once its own log holds
the produce, before the group commits it, naming the offsets the records get when the entry
is applied. An idempotent acks=all producer writing the same partition at the same time makes
some answers wait for the commit (its batches may turn out duplicates); every offset either
producer was told must be the one a consumer reads the record at."""

from __future__ import annotations

import threading

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import start_cluster, wait_formed
from conftest import unique_topic
from test_tiering import metric
from test_cluster_reassign import create, partition_view, wait_for

N = 3000


def produce(brokers, topic, tag, conf, reported):
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers),
                  "linger.ms": 2, **conf})
    errors = []

    def done(err, msg):
        if err is not None:
            errors.append(err)
        else:
            reported[msg.value()] = msg.offset()

    for i in range(N):
        p.produce(topic, value=b"%s-%05d" % (tag, i), partition=0, on_delivery=done)
        if i % 100 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]


def consume_all(b, topic, count):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique_topic("g"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = {}
    try:
        while len(got) < count:
            m = c.poll(10)
            assert m is not None, f"only {len(got)} of {count} records consumed"
            assert m.error() is None, m.error()
            got[m.value()] = m.offset()
    finally:
        c.close()
    return got


@pytest.mark.parametrize("caching", ["false", "true"])
def test_acks_1_is_answered_at_the_leaders_append_with_the_offsets_records_get(broker_factory,
                                                                              caching):
    # With write.caching the append is answered once written, without its sync.
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("acks1")
    create(brokers[0], topic, 1, 3, {"min.insync.replicas": "2", "write.caching": caching})
    leader = wait_for("a leader", lambda: (v := partition_view(brokers[0], topic, 0))
                      and v[0] > 0 and v[0])
    lead = brokers[leader - 1]

    # acks=1 alone: every answer is given at the leader's local append.
    alone = {}
    produce(brokers, topic, b"alone", {"acks": 1, "enable.idempotence": False}, alone)
    early = metric(lead, "icestream_produce_answered_at_local_append_total")
    assert early >= 1

    # Side by side with an idempotent acks=all producer.
    plain, idem = {}, {}
    t = threading.Thread(target=produce, args=(brokers, topic, b"plain",
                                               {"acks": 1, "enable.idempotence": False}, plain))
    t.start()
    produce(brokers, topic, b"idem", {"acks": "all", "enable.idempotence": True}, idem)
    t.join(90)
    assert len(alone) == len(plain) == len(idem) == N

    reported = {**alone, **plain, **idem}
    got = consume_all(brokers[0], topic, 3 * N)
    assert got == reported
    assert sorted(got.values()) == list(range(3 * N))
    for b in brokers:
        assert "answered with another offset" not in b.log_path.read_text()
