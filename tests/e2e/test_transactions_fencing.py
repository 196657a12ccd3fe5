"""A zombie consumer-group member cannot commit offsets in a transaction (KIP-447): a
consume-transform-produce instance that lost its partitions in a rebalance, and sends offsets
with the group metadata of its old generation, is refused; its transaction must abort, and the
group's offsets are the live member's only."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from conftest import consumer_config, create_topic


def poll_until_assigned(consumers, timeout=30.0):
    """Polls every consumer until each has an assignment and none is rebalancing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.1)
        if all(c.assignment() for c in consumers):
            return
    raise AssertionError(f"assignments never settled: {[c.assignment() for c in consumers]}")


def test_zombie_member_cannot_commit_offsets_in_a_transaction(broker):
    topic = create_topic(broker, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    boot = broker.bootstrap
    warm = Producer({"bootstrap.servers": boot})
    for i in range(10):
        warm.produce(topic, f"in-{i}".encode(), partition=i % 2)
    assert warm.flush(15) == 0

    cfg = consumer_config(broker, **{"group.id": group, "isolation.level": "read_committed",
                                     "enable.auto.commit": False,
                                     "partition.assignment.strategy": "range"})
    zombie = Consumer(cfg)
    zombie.subscribe([topic])
    poll_until_assigned([zombie])
    stale = zombie.consumer_group_metadata()

    # A second member joins: the group moves to a new generation, the zombie's is stale.
    live = Consumer(cfg)
    live.subscribe([topic])
    poll_until_assigned([zombie, live])

    p = Producer({"bootstrap.servers": boot, "transactional.id": f"tx-{group}"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"out-zombie", partition=0)
    try:
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 7)], stale, 30)
        raise AssertionError("offsets from a stale generation were accepted")
    except KafkaException as e:
        err = e.args[0]
        # ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID: the transaction must be aborted.
        assert err.txn_requires_abort() or err.fatal(), err
        assert err.code() in (KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                              KafkaError.FENCED_INSTANCE_ID), err
    p.abort_transaction(30)

    # The live member's offsets, sent with its current metadata, are committed.
    p.begin_transaction()
    p.produce(topic, b"out-live", partition=1)
    p.send_offsets_to_transaction([TopicPartition(topic, 1, 3)], live.consumer_group_metadata(),
                                  30)
    p.commit_transaction(30)

    checker = Consumer(consumer_config(broker, **{"group.id": group,
                                                  "isolation.level": "read_committed"}))
    try:
        committed = {tp.partition: tp.offset for tp in
                     checker.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)],
                                       timeout=15)}
    finally:
        checker.close()
    assert committed == {0: -1001, 1: 3}, committed
    for c in (zombie, live):
        c.close()


def test_transaction_timeout_above_the_brokers_maximum_is_refused(broker_factory):
    """--transaction-max-timeout-ms (Kafka's transaction.max.timeout.ms) caps what a
    producer may ask for: above it, init_transactions fails with INVALID_TRANSACTION_TIMEOUT;
    at it, the producer works."""
    b = broker_factory(args=["--transaction-max-timeout-ms", "5000"])
    too_long = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "tx-long",
                         "transaction.timeout.ms": 6000})
    try:
        too_long.init_transactions(20)
        raise AssertionError("a timeout above the maximum was accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, e
    topic = create_topic(b)
    ok = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "tx-ok",
                   "transaction.timeout.ms": 5000})
    ok.init_transactions(20)
    ok.begin_transaction()
    ok.produce(topic, b"v")
    ok.commit_transaction(20)
