"""ACLs on every Kafka API (issue 20): a broker with `--authorization --superusers User:admin`
and a PLAINTEXT listener, whose clients are `User:ANONYMOUS`. ACLs for that principal decide
what confluent-kafka and kafka-python may do, and each client surfaces Kafka's error.

The ACLs are seeded in `<data>/meta/security.json` (the broker's own store, read at start)
between a first start without authorization, which creates the topics, and the start under
test. Once CreateAcls is served the same ACLs can be created through AdminClient.create_acls.
"""

import json
import time

import pytest
from confluent_kafka import (
    Consumer, KafkaError, KafkaException, Producer, TopicCollection,
)
from confluent_kafka.admin import AclOperation
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors

from conftest import admin_client, consumer_config, create_topic, produce, producer_config

ANONYMOUS = "User:ANONYMOUS"

# (resource type, name, pattern, operation): what User:ANONYMOUS is allowed.
ALLOWED = [
    ("Topic", "orders", "Literal", "Read"),
    ("Topic", "team-a.", "Prefixed", "Write"),
    ("Group", "etl", "Literal", "Read"),
    ("Cluster", "kafka-cluster", "Literal", "Describe"),
]


def seed_acls(broker, allowed):
    """Writes the broker's security state with ALLOW bindings for User:ANONYMOUS."""
    bindings = [
        {"resource_type": rt, "name": name, "pattern": pattern, "principal": ANONYMOUS,
         "host": "*", "operation": op, "permission": "Allow"}
        for rt, name, pattern, op in allowed
    ]
    meta = broker.data_dir / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "security.json").write_text(json.dumps({"acls": {"bindings": bindings}}))


@pytest.fixture
def secured(broker_factory):
    """A broker holding orders (3 records), payments, team-a.clicks, team-a.views and
    team-b.clicks, restarted with authorization on and the ALLOWED ACLs."""
    b = broker_factory()
    for t in ["orders", "payments", "team-a.clicks", "team-a.views", "team-b.clicks"]:
        create_topic(b, t)
    produce(b, "orders", [b"o1", b"o2", b"o3"])
    produce(b, "payments", [b"p1"])
    b.stop()
    seed_acls(b, ALLOWED)
    b.extra_args += ["--authorization", "--superusers", "User:admin"]
    b.start()
    return b


def deliver(broker, topic, value=b"x", **conf):
    """Produces one record with confluent-kafka; returns its delivery error (None: written)."""
    p = Producer(producer_config(broker, **{"message.timeout.ms": 10000, **conf}))
    got = []
    p.produce(topic, value, on_delivery=lambda err, msg: got.append(err))
    assert p.flush(30) == 0
    return got[0]


def first_error(consumer, timeout=30.0):
    """The first error a confluent-kafka consumer surfaces."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error():
            return msg.error()
    raise AssertionError(f"no error surfaced in {timeout}s")


def test_confluent_kafka_reads_only_what_it_may(secured):
    # Read on orders: consumed in the allowed group.
    c = Consumer(consumer_config(secured, **{"group.id": "etl", "auto.offset.reset": "earliest"}))
    try:
        c.subscribe(["orders"])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg)
        assert [m.value() for m in got] == [b"o1", b"o2", b"o3"]
        # READ on the group and the topic: the offset commits.
        [tp] = c.commit(message=got[-1], asynchronous=False)
        assert (tp.topic, tp.offset, tp.error) == ("orders", 3, None)
    finally:
        c.close()

    # Another topic: TOPIC_AUTHORIZATION_FAILED.
    c = Consumer(consumer_config(secured, **{"group.id": "etl"}))
    try:
        c.subscribe(["payments"])
        err = first_error(c)
        assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    finally:
        c.close()

    # Producing needs WRITE, which Read does not give.
    err = deliver(secured, "orders")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    err = deliver(secured, "payments")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # Metadata of every topic shows only orders (and the writable team-a.* topics).
    md = admin_client(secured).list_topics(timeout=10)
    assert sorted(md.topics) == ["orders", "team-a.clicks", "team-a.views"]


def test_kafka_python_reads_only_what_it_may(secured):
    c = KafkaConsumer("orders", bootstrap_servers=secured.bootstrap, group_id="etl",
                      auto_offset_reset="earliest", consumer_timeout_ms=10000,
                      enable_auto_commit=False)
    try:
        got = []
        for msg in c:
            got.append(msg.value)
            if len(got) == 3:
                break
        assert got == [b"o1", b"o2", b"o3"]
    finally:
        c.close()

    # kafka-python only logs a topic it may not read ("not authorized") and fetches nothing
    # from it, so its refusals are asserted on produce, where it raises.
    p = KafkaProducer(bootstrap_servers=secured.bootstrap, acks="all", max_block_ms=10000,
                      retries=0)
    try:
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            p.send("orders", b"x").get(timeout=30)
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            p.send("payments", b"x").get(timeout=30)
        # The prefixed ACL lets it write to team-a.*.
        md = p.send("team-a.clicks", b"click").get(timeout=30)
        assert md.offset == 0
    finally:
        p.close()


def test_prefixed_acl_allows_a_family_of_topics(secured):
    assert deliver(secured, "team-a.clicks") is None
    assert deliver(secured, "team-a.views") is None
    err = deliver(secured, "team-b.clicks")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # An idempotent producer needs no IDEMPOTENT_WRITE on the cluster when it may write to
    # some topic (Kafka 3's rule).
    assert deliver(secured, "team-a.clicks", **{"enable.idempotence": True}) is None


def test_group_acls(secured):
    c = Consumer(consumer_config(secured, **{"group.id": "other-group",
                                             "auto.offset.reset": "earliest"}))
    try:
        c.subscribe(["orders"])
        err = first_error(c)
        assert err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    finally:
        c.close()

    # Listing groups shows only those it may describe; describing another is refused.
    admin = admin_client(secured)
    f = admin.describe_consumer_groups(["other-group"])["other-group"]
    with pytest.raises(KafkaException) as e:
        f.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_transactional_producer_needs_write_on_its_transactional_id(secured):
    p = Producer(producer_config(secured, **{"transactional.id": "tx-1",
                                             "enable.idempotence": True}))
    with pytest.raises(KafkaException) as e:
        p.init_transactions(30)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.value


def test_authorized_operations(secured):
    admin = admin_client(secured)
    fs = admin.describe_topics(TopicCollection(["orders", "team-a.clicks"]),
                               include_authorized_operations=True)
    orders = fs["orders"].result(timeout=30)
    assert set(orders.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE}
    clicks = fs["team-a.clicks"].result(timeout=30)
    assert set(clicks.authorized_operations) == {AclOperation.WRITE, AclOperation.DESCRIBE}

    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert set(cluster.authorized_operations) == {AclOperation.DESCRIBE}

    # A topic it may not describe is refused by name.
    f = admin.describe_topics(TopicCollection(["payments"]))["payments"]
    with pytest.raises(KafkaException) as e:
        f.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
