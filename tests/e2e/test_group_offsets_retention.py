"""Offsets retention (Kafka's offsets.retention.minutes, KIP-211): a group that has members keeps
its committed offsets however old; once it has none for the retention period its offsets expire
and the group is deleted; a group that never had members (commits only) loses each offset once
it is that old. Expiry survives a restart (tombstones in __consumer_offsets)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from conftest import admin_client, consumer_config, create_topic, produce

RETENTION_MS = 3000
ARGS = ["--offsets-retention-ms", str(RETENTION_MS),
        "--offsets-retention-check-interval-ms", "200"]


def committed(b, group: str, topic: str) -> int:
    c = Consumer(consumer_config(b, **{"group.id": group}))
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def groups(b) -> set[str]:
    res = admin_client(b).list_consumer_groups(request_timeout=10).result()
    return {g.group_id for g in res.valid}


def wait_until(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_offsets_of_empty_groups_expire_and_members_keep_them(broker_factory):
    b = broker_factory(args=ARGS)
    topic = create_topic(b)
    produce(b, topic, [b"r%d" % i for i in range(10)])

    # A simple consumer: commits for an assigned partition, never a member.
    simple = Consumer(consumer_config(b, **{"group.id": "simple"}))
    simple.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    simple.close()

    # A group with a member that stays the whole time.
    member = Consumer(consumer_config(b, **{"group.id": "active", "auto.offset.reset": "earliest",
                                            "session.timeout.ms": 6000}))
    member.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 20
    while got < 10 and time.monotonic() < deadline:
        m = member.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    assert got == 10
    member.commit(offsets=[TopicPartition(topic, 0, 10)], asynchronous=False)
    assert committed(b, "simple", topic) == 4 and committed(b, "active", topic) == 10

    started = time.monotonic()
    wait_until("the simple group's offset to expire", lambda: committed(b, "simple", topic) < 0)
    assert time.monotonic() - started > 1.0, "not before the retention"
    assert "simple" not in groups(b)
    # Twice the retention later the member's group still has its offset.
    while time.monotonic() - started < 2 * RETENTION_MS / 1000:
        member.poll(0.2)
    assert committed(b, "active", topic) == 10

    # Once it has no member, its offsets go too, then the group.
    member.close()
    left = time.monotonic()
    wait_until("the emptied group's offset to expire", lambda: committed(b, "active", topic) < 0)
    assert time.monotonic() - left > 1.0, "not before the retention"
    wait_until("the emptied group deleted", lambda: "active" not in groups(b))

    # Expired offsets stay expired across a restart: their tombstones were written.
    b.restart()
    assert committed(b, "active", topic) < 0 and committed(b, "simple", topic) < 0
