"""`icestream group list|describe|seek|delete` against a group a real consumer made."""

from __future__ import annotations

from confluent_kafka import Consumer

from conftest import consumer_config, create_topic, produce
from test_cli import assert_one_line_error, cli, cli_json


def consume_and_commit(broker, topic, group, n):
    c = Consumer(consumer_config(broker, **{"group.id": group, "auto.offset.reset": "earliest",
                                        "enable.auto.offset.store": True}))
    c.subscribe([topic])
    got = []
    try:
        while len(got) < n:
            m = c.poll(10)
            assert m is not None, f"only {len(got)} of {n} records consumed"
            assert m.error() is None, m.error()
            got.append(m)
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def test_group_list_describe_seek_delete(broker):
    topic = create_topic(broker, partitions=2)
    produce(broker, topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(10)])
    group = "cli-group"
    consume_and_commit(broker, topic, group, 10)

    listed = cli_json(broker, "group", "list")
    assert {"group": group, "state": "Empty", "protocol_type": "consumer"} in listed
    assert group in cli(broker, "group", "list").stdout

    desc = cli_json(broker, "group", "describe", group)
    assert desc["state"] == "Empty"
    lag = {(p["topic"], p["partition"]): (p["committed_offset"], p["log_end_offset"], p["lag"])
           for p in desc["partitions"]}
    assert lag == {(topic, 0): (5, 5, 0), (topic, 1): (5, 5, 0)}

    produce(broker, topic, [{"value": b"late", "partition": 0}] * 3)
    desc = cli_json(broker, "group", "describe", group)
    assert desc["total_lag"] == 3
    assert "TOTAL-LAG" in cli(broker, "group", "describe", group).stdout

    # Seek back to the start: the next consumer of the group re-reads everything.
    moved = cli_json(broker, "group", "seek", group, "--topic", topic, "--to", "start")
    assert moved["offsets"] == {"0": 0, "1": 0}
    again = consume_and_commit(broker, topic, group, 13)
    assert sorted(m.value() for m in again) == sorted([b"v%d" % i for i in range(10)] + [b"late"] * 3)

    assert cli(broker, "group", "delete", group).returncode == 0
    res = cli(broker, "group", "describe", group, check=False)
    assert_one_line_error(res, group, "does not exist")
    res = cli(broker, "group", "seek", group, "--topic", "no-such-topic", "--to", "end", check=False)
    assert_one_line_error(res, "no-such-topic")


def test_internal_offsets_topic_is_read_only_for_clients(broker):
    from confluent_kafka import KafkaError, KafkaException, Producer

    from conftest import Delivered, admin_client, producer_config

    topic = create_topic(broker)
    produce(broker, topic, [b"x"])
    consume_and_commit(broker, topic, "internal-check", 1)
    md = admin_client(broker).list_topics(timeout=10)
    assert "__consumer_offsets" in md.topics
    p = Producer(producer_config(broker))
    d = Delivered()
    p.produce("__consumer_offsets", key=b"k", value=b"forged", on_delivery=d)
    p.flush(10)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.TOPIC_EXCEPTION]
    admin = admin_client(broker)  # kept alive until its future resolves
    fut = admin.delete_topics(["__consumer_offsets"], request_timeout=10)
    try:
        fut["__consumer_offsets"].result(timeout=15)
        raise AssertionError("deleting __consumer_offsets succeeded")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.TOPIC_EXCEPTION, e
    # The group's offsets are intact.
    desc = cli_json(broker, "group", "describe", "internal-check")
    assert [p["committed_offset"] for p in desc["partitions"]] == [1]
