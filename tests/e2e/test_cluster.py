"""A three-broker cluster: membership, the controller Raft group and topic placement."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from cluster import controller_leader, finalized_features, metadata, start_cluster, wait_formed
from conftest import unique_topic


def create(b, name, partitions, rf):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                             operation_timeout=15, request_timeout=30)
    fs[name].result(timeout=40)


def wait_topic_everywhere(brokers, name, partitions, timeout=15.0, leaders=True):
    deadline = time.monotonic() + timeout
    while True:
        views = []
        for b in brokers:
            if not b.running():
                continue
            t = metadata(b, name).topics.get(name)
            views.append(None if t is None or t.error is not None else
                         {p.id: (p.leader, tuple(p.replicas)) for p in t.partitions.values()})
        if all(v is not None and len(v) == partitions for v in views) and \
                all(v == views[0] for v in views) and \
                (not leaders or all(leader > 0 for leader, _ in views[0].values())):
            return views[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {name} not the same on every broker: {views}")
        time.sleep(0.1)


def test_brokers_learn_each_other_and_metadata_lists_all(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    for b in brokers:
        md = metadata(b)
        assert sorted(md.brokers) == [1, 2, 3]
        for bid, bm in md.brokers.items():
            assert (bm.host, bm.port) == ("127.0.0.1", brokers[bid - 1].kafka_port)
    # Metadata sends admin clients to the broker that answers (it forwards to the controller
    # leader), a live one; librdkafka may ask any broker it knows, so which one is not fixed.
    # The admin API names the leader, the same on every broker.
    assert all(metadata(b).controller_id in (1, 2, 3) for b in brokers)
    assert len({controller_leader(b) for b in brokers}) == 1


def test_topics_go_through_the_controller_and_are_spread(broker_factory):
    # As in docker-compose.yml: topics default to RF 3.
    brokers = start_cluster(broker_factory, extra_args=["--default-replication-factor", "3"])
    wait_formed(brokers)
    name = unique_topic("rf3")
    create(brokers[1], name, 6, -1)
    # Leadership settles on each partition's preferred (first) replica: two per broker.
    deadline = time.monotonic() + 20
    while True:
        view = wait_topic_everywhere(brokers, name, 6)
        if all(leader == replicas[0] for leader, replicas in view.values()):
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.3)
    leaders = [leader for leader, _ in view.values()]
    assert sorted(leaders.count(i) for i in (1, 2, 3)) == [2, 2, 2], view
    for leader, replicas in view.values():
        assert sorted(replicas) == [1, 2, 3] and replicas[0] == leader
    # The same name again, from another broker: refused by the controller.
    with pytest.raises(KafkaException) as e:
        create(brokers[2], name, 1, 1)
    assert "TOPIC_ALREADY_EXISTS" in str(e.value)
    with pytest.raises(KafkaException) as e:
        create(brokers[0], unique_topic("rf4"), 1, 4)
    assert "REPLICATION_FACTOR" in str(e.value)


def test_controller_survives_losing_a_broker_and_restarts_from_its_log(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    first = unique_topic("before")
    create(brokers[0], first, 3, 2)
    wait_topic_everywhere(brokers, first, 3)
    leader = controller_leader(brokers[0])
    brokers[leader - 1].kill9()
    alive = [b for b in brokers if b.running()]
    # At once: the broker asked takes the create and forwards it to whichever leader the
    # survivors elect (a client sent to the dead leader would wait until its timeout).
    second = unique_topic("after")
    create(alive[0], second, 2, 3)
    assert controller_leader(alive[0]) not in (leader, -1)
    wait_topic_everywhere(alive, second, 2)
    # The killed broker comes back and catches up from the controller log.
    brokers[leader - 1].start()
    wait_topic_everywhere(brokers, first, 3)
    wait_topic_everywhere(brokers, second, 2)
    assert (brokers[leader - 1].data_dir / "controller" / "raft.log").stat().st_size > 0


def test_deleting_a_topic_removes_it_everywhere(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    name = unique_topic("del")
    create(brokers[0], name, 2, 3)
    wait_topic_everywhere(brokers, name, 2)
    admin = AdminClient({"bootstrap.servers": brokers[2].bootstrap})
    admin.delete_topics([name], operation_timeout=15)[name].result(timeout=30)
    deadline = time.monotonic() + 15
    while any(name in metadata(b).topics for b in brokers):
        assert time.monotonic() < deadline, "topic still listed somewhere"
        time.sleep(0.1)


def test_produce_goes_to_the_leader_and_min_insync_is_enforced(broker_factory):
    from confluent_kafka import Consumer, Producer, TopicPartition
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    name = unique_topic("lead")
    create(brokers[0], name, 3, 3)
    view = wait_topic_everywhere(brokers, name, 3)
    p = Producer({"bootstrap.servers": brokers[2].bootstrap, "acks": "all",
                  "message.timeout.ms": 20000})
    errors = []
    for i in range(30):
        p.produce(name, value=b"v%d" % i, partition=i % 3,
                  on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer({"bootstrap.servers": brokers[1].bootstrap, "group.id": "unused",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(name, part, 0) for part in range(3)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 30 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert sorted(got) == sorted(b"v%d" % i for i in range(30))
    # A non-leader refuses produce (a raw request straight to it).
    from kwire import Conn, produce_raw, record_batch
    not_leader = next(i for i in (1, 2, 3) if i != view[0][0])
    with Conn.to(brokers[not_leader - 1].bootstrap) as conn:
        assert produce_raw(conn, name, 0, record_batch([b"x"])) == 6  # NOT_LEADER_OR_FOLLOWER


@pytest.mark.parametrize("where", ["topic", "broker-default"])
def test_acks_all_needs_min_insync_replicas(broker_factory, where):
    from kwire import Conn, produce_raw, record_batch
    # Set on the topic, or as every broker's default for topics that set none.
    by_default = where == "broker-default"
    brokers = start_cluster(broker_factory, extra_args=(
        ["--default-min-insync-replicas", "3"] if by_default else []))
    wait_formed(brokers)
    name = unique_topic("isr")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=3,
                                  config={} if by_default else {"min.insync.replicas": "3"})],
                        operation_timeout=15)[name].result(timeout=30)
    res = ConfigResource(ResourceType.TOPIC, name)
    entry = admin.describe_configs([res], request_timeout=15)[res].result(timeout=20)[
        "min.insync.replicas"]
    assert entry.value == "3" and entry.is_default == by_default
    view = wait_topic_everywhere(brokers, name, 1)
    leader = view[0][0]
    with Conn.to(brokers[leader - 1].bootstrap) as conn:
        assert produce_raw(conn, name, 0, record_batch([b"x"])) == 0
    follower = next(i for i in (1, 2, 3) if i != leader)
    brokers[follower - 1].kill9()
    # The leader notices within an election timeout; then acks=all is refused.
    deadline = time.monotonic() + 10
    while True:
        with Conn.to(brokers[leader - 1].bootstrap) as conn:
            code = produce_raw(conn, name, 0, record_batch([b"y"]))
        if code == 19:  # NOT_ENOUGH_REPLICAS
            break
        assert code == 0 and time.monotonic() < deadline, code
        time.sleep(0.3)
    # min.insync.replicas binds acks=all only: acks=1 still commits on the live majority.
    with Conn.to(brokers[leader - 1].bootstrap) as conn:
        assert produce_raw(conn, name, 0, record_batch([b"z"]), acks=1) == 0


def test_producer_ids_are_unique_across_brokers(broker_factory):
    """Producer ids come from the controller in blocks (KIP-730) once every broker supports
    it: unique across brokers and across a broker's restart."""
    from kwire import Conn, init_producer_id
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    deadline = time.monotonic() + 30
    while not all(finalized_features(b).get("icestream.producer.id.blocks") == 1
                  for b in brokers):
        assert time.monotonic() < deadline, [finalized_features(b) for b in brokers]
        time.sleep(0.2)

    from test_cluster_reassign import icestream
    status = icestream("cluster", "status", "--admin-url", brokers[2].admin_url)
    # Every broker's release is listed.
    rows = [x.split() for x in status.stdout.splitlines() if x.split()[:1] in (["1"], ["2"], ["3"])]
    assert len(rows) == 3 and all(r[-1][0].isdigit() for r in rows), status.stdout
    line = next(x for x in status.stdout.splitlines() if x.startswith("finalized features:"))
    assert "icestream.producer.id.blocks=1" in line, status.stdout
    # Kafka clients read the same from ApiVersions (describeFeatures).
    from kafka.admin import KafkaAdminClient
    kadmin = KafkaAdminClient(bootstrap_servers=brokers[0].bootstrap)
    try:
        described = kadmin.describe_features()
    finally:
        kadmin.close()
    blocks = described["icestream.producer.id.blocks"]
    assert blocks["supported"] == (1, 1) and blocks["finalized"] == (1, 1), described
    assert blocks["finalized_epoch"] is not None and blocks["finalized_epoch"] > 0, described

    def ids_from(b, n=2):
        out = []
        for corr in range(3, 3 + n):
            with Conn.to(b.bootstrap) as conn:
                out.append(init_producer_id(conn, corr))
        return out

    ids = [i for b in brokers for i in ids_from(b)]
    assert len(set(ids)) == len(ids), ids
    # A broker killed and restarted takes a new block: nothing it hands out repeats.
    brokers[1].kill9()
    brokers[1].start()
    wait_formed(brokers)
    again = [i for b in brokers for i in ids_from(b)]
    assert len(set(ids + again)) == len(ids + again), (ids, again)
