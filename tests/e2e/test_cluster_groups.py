"""Consumer groups in a three-broker cluster: `__consumer_offsets` is a replicated topic and
the Raft leader of its partition coordinates every group, whichever broker a client
bootstrapped at; committed offsets survive SIGKILL of the coordinator."""

from __future__ import annotations

import struct
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from cluster import metadata, start_cluster, wait_formed
from conftest import create_topic, produce, unique_topic
from kwire import Conn, frame, i32, request_header, string
from test_groups import _request, commit_v2, fetch_v1, group_config, heartbeat_v1, join_v2

OFFSETS = "__consumer_offsets"
NOT_COORDINATOR = 16
OFFSETS_PARTITIONS = 6  # engine::group::store::CLUSTER_PARTITIONS
COORDINATOR_LOAD_IN_PROGRESS = 14


def find_coordinator_raw(b, group: str) -> tuple[int, int]:
    """FindCoordinator v0 straight to broker `b`: (error code, node id)."""
    with Conn.to(b.bootstrap) as conn:
        conn.send(frame(request_header(10, 0, 7) + string(group)))
        _, body = conn.recv_response()
    code, node = struct.unpack_from(">hi", body, 0)
    return code, node


def heartbeat_raw(b, group: str) -> int:
    """Heartbeat v0 straight to broker `b`: its error code."""
    with Conn.to(b.bootstrap) as conn:
        conn.send(frame(request_header(12, 0, 8) + string(group) + i32(1) + string("m")))
        _, body = conn.recv_response()
    (code,) = struct.unpack_from(">h", body, 0)
    return code


def coordinator(brokers, group: str, timeout: float = 30.0, dead: int | None = None) -> int:
    """The node every live broker names as the group's coordinator, once they agree (and,
    after a kill, once they have noticed that `dead` is gone)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        answers = {find_coordinator_raw(b, group) for b in brokers if b.running()}
        last = answers
        if len(answers) == 1:
            code, node = next(iter(answers))
            if code == 0 and node != dead:
                return node
        time.sleep(0.2)
    raise AssertionError(f"brokers do not agree on a coordinator: {last}")


def partition_for(group: str, partitions: int) -> int:
    """Kafka's abs(groupId.hashCode()) % partitions (Java's String.hashCode)."""
    h = 0
    units = group.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


def offsets_leader(b, group: str) -> int:
    t = metadata(b, OFFSETS).topics[OFFSETS]
    return t.partitions[partition_for(group, len(t.partitions))].leader


def poll_until(consumers, done, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        for c in consumers:
            c.poll(0.2)


def test_one_group_across_brokers_and_the_offsets_topic_is_replicated(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("grp")
    create_topic(brokers[0], topic, partitions=4, replication_factor=3)
    group = unique_topic("g")

    # Every broker names the same coordinator: the leader of the group's partition of
    # __consumer_offsets (Kafka's hash), a topic replicated on all three brokers.
    node = coordinator(brokers, group)
    md = metadata(brokers[1], OFFSETS).topics[OFFSETS]
    assert len(md.partitions) == OFFSETS_PARTITIONS
    assert all(sorted(p.replicas) == [1, 2, 3] for p in md.partitions.values())
    assert offsets_leader(brokers[1], group) == node
    # Groups are spread over the partitions, so over several coordinators.
    deadline = time.monotonic() + 20
    while len({coordinator(brokers, f"{group}-{i}") for i in range(12)}) < 2:
        assert time.monotonic() < deadline, "one broker coordinates every group"
        time.sleep(0.5)
    # The other brokers refuse group requests, so clients go to the coordinator.
    others = [b for i, b in enumerate(brokers, start=1) if i != node]
    for b in others:
        assert heartbeat_raw(b, group) == NOT_COORDINATOR

    # Two consumers bootstrapped at different brokers form one group and split the
    # partitions between them.
    a = Consumer(group_config(brokers[0].bootstrap, group, **{"client.id": "a"}))
    c = Consumer(group_config(brokers[2].bootstrap, group, **{"client.id": "c"}))
    try:
        a.subscribe([topic])
        c.subscribe([topic])

        def split():
            pa = {p.partition for p in a.assignment()}
            pc = {p.partition for p in c.assignment()}
            return pa and pc and not (pa & pc) and pa | pc == {0, 1, 2, 3}

        poll_until([a, c], split)
        admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=20)
        assert len(desc.members) == 2
        assert desc.coordinator.id == node
    finally:
        a.close()
        c.close()


def test_committed_offsets_survive_sigkill_of_the_coordinator(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("commit")
    create_topic(brokers[0], topic, partitions=1, replication_factor=3)
    produce(brokers[0], topic, [b"r%d" % i for i in range(100)])
    group = unique_topic("g")
    everyone = ",".join(b.bootstrap for b in brokers)

    c = Consumer(group_config(everyone, group))
    c.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < 45:
        assert time.monotonic() < deadline, seen
        m = c.poll(0.5)
        if m is None or m.error() is not None:
            continue
        seen.append(m.offset())
        # Synchronous commits every 10 records; the last acknowledged one is offset 40.
        if m.offset() + 1 <= 40 and (m.offset() + 1) % 10 == 0:
            c.commit(message=m, asynchronous=False)
    assert seen == list(range(45))
    node = coordinator(brokers, group)
    # Kill the coordinator right away, while the consumer is still a member (no LeaveGroup,
    # no final commit): the commit of offset 40 was acknowledged, so it must survive.
    brokers[node - 1].kill9()
    killed_at = time.monotonic()
    c.close()
    alive = [b for b in brokers if b.running()]

    # A new coordinator takes over among the survivors.
    new = coordinator(alive, group, dead=node)
    assert offsets_leader(alive[0], group) == new

    r = Consumer(group_config(",".join(b.bootstrap for b in alive), group))
    try:
        got = r.committed([TopicPartition(topic, 0)], timeout=30)
        assert got[0].offset == 40
        # A figure, not an assertion: coordinator killed to committed offsets served again.
        print(f"group coordinator failover: {time.monotonic() - killed_at:.2f}s")
        r.subscribe([topic])
        resumed = []
        deadline = time.monotonic() + 60
        while len(resumed) < 60:
            assert time.monotonic() < deadline, resumed[:5]
            m = r.poll(0.5)
            if m is None or m.error() is not None:
                continue
            resumed.append((m.offset(), m.value()))
        # Exactly after the last committed offset: nothing committed re-read, nothing skipped.
        assert resumed == [(o, b"r%d" % o) for o in range(40, 100)]
        r.commit(asynchronous=False)
    finally:
        r.close()

    # The killed broker comes back as a follower and the group's offsets are the same there.
    brokers[node - 1].start()
    wait_formed(brokers)
    check = Consumer(group_config(brokers[node - 1].bootstrap, group))
    try:
        got = check.committed([TopicPartition(topic, 0)], timeout=30)
        assert got[0].offset == 100
    finally:
        check.close()


def test_kafka_python_group_in_a_cluster(broker_factory):
    from kafka import KafkaConsumer

    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("kp")
    create_topic(brokers[0], topic, partitions=2, replication_factor=3)
    produce(brokers[0], topic, [{"value": b"v%d" % i, "partition": i % 2} for i in range(20)])
    group = unique_topic("g")
    node = coordinator(brokers, group)
    # Bootstrapped at a broker that is not the coordinator.
    other = next(b for i, b in enumerate(brokers, start=1) if i != node)
    k = KafkaConsumer(topic, bootstrap_servers=other.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=20000)
    try:
        got = []
        for m in k:
            got.append(m.value)
            if len(got) == 20:
                break
        assert sorted(got) == sorted(b"v%d" % i for i in range(20))
        k.commit()
    finally:
        k.close()
    # The commit is visible through any broker (confluent-kafka, bootstrapped elsewhere).
    for b in brokers:
        c = Consumer(group_config(b.bootstrap, group))
        try:
            got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
            assert [tp.offset for tp in got] == [10, 10]
        finally:
            c.close()


def test_members_follow_the_group_to_a_new_coordinator(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("move")
    create_topic(brokers[0], topic, partitions=4, replication_factor=3)
    group = unique_topic("g")
    everyone = ",".join(b.bootstrap for b in brokers)
    members = [Consumer(group_config(everyone, group, **{"client.id": n})) for n in "ab"]
    seen: set[bytes] = set()

    def drain(until: set[bytes], timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        while not until <= seen:
            assert time.monotonic() < deadline, sorted(until - seen)[:5]
            for c in members:
                m = c.poll(0.2)
                if m is None or m.error() is not None:
                    continue
                seen.add(m.value())
                try:
                    c.commit(message=m, asynchronous=False)
                except Exception:  # a commit during the failover; the record is seen anyway
                    pass

    try:
        for c in members:
            c.subscribe([topic])
        first = {b"a%d" % i for i in range(40)}
        produce(brokers[0], topic, sorted(first))
        drain(first)
        node = coordinator(brokers, group)
        # The coordinator dies with both members in the group: they find the new coordinator
        # (which loads the group's committed offsets) and keep consuming.
        brokers[node - 1].kill9()
        alive = [b for b in brokers if b.running()]
        second = {b"b%d" % i for i in range(40)}
        produce(alive[0], topic, sorted(second),
                **{"bootstrap.servers": ",".join(b.bootstrap for b in alive)})
        drain(second)
        new = coordinator(alive, group, dead=node)
        admin = AdminClient({"bootstrap.servers": alive[0].bootstrap})
        deadline = time.monotonic() + 30
        while True:
            desc = admin.describe_consumer_groups([group])[group].result(timeout=20)
            # The admin client asks the coordinator it looked up once; should leadership of
            # the group's partition have moved since, that broker answers on the new
            # coordinator's behalf, so the description is right but names the broker asked.
            if len(desc.members) == 2 and desc.coordinator.id != node:
                break
            assert time.monotonic() < deadline, (len(desc.members), desc.coordinator.id)
            for c in members:
                c.poll(0.2)
    finally:
        for c in members:
            c.close()


def test_group_list_shows_the_groups_of_every_coordinator(broker_factory):
    from test_cli import cli_json
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("listed")
    create_topic(brokers[0], topic, partitions=1, replication_factor=3)
    produce(brokers[0], topic, [b"x"])
    groups = [unique_topic("lg") for _ in range(8)]
    # Once the offsets topic's leaders have spread, the groups have several coordinators.
    deadline = time.monotonic() + 30
    while len({coordinator(brokers, g) for g in groups}) < 2:
        assert time.monotonic() < deadline, "one broker coordinates every group"
        time.sleep(0.5)
    for g in groups:
        c = Consumer(group_config(brokers[0].bootstrap, g))
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        c.close()
    # Asked at one broker, the CLI lists every broker's groups.
    listed = {row["group"] for row in cli_json(brokers[0], "group", "list")}
    assert set(groups) <= listed, sorted(set(groups) - listed)


def sync_v1_assignment(conn, group: str, gen: int, member: str,
                       assignment: bytes | None) -> tuple[int, bytes]:
    """SyncGroup v1 (the leader's when `assignment` is given): (error code, the member's
    assignment as the coordinator answers it)."""
    given = (i32(1) + string(member) + i32(len(assignment)) + assignment
             if assignment is not None else i32(0))
    resp = _request(conn, 14, 1, string(group) + i32(gen) + string(member) + given)
    _throttle, err, n = struct.unpack_from(">ihi", resp, 0)
    return err, resp[10:10 + max(n, 0)]


def describe_groups_v0(conn, group: str) -> tuple[int, str, list[tuple[str, bytes]]]:
    """DescribeGroups v0 of one group: (error code, state, [(member id, assignment)])."""
    from test_groups import _str
    resp = _request(conn, 15, 0, i32(1) + string(group))
    (err,) = struct.unpack_from(">h", resp, 4)
    _group, pos = _str(resp, 6)
    state, pos = _str(resp, pos)
    for _ in range(2):  # protocol type, protocol
        _, pos = _str(resp, pos)
    (n,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    members = []
    for _ in range(n):
        member, pos = _str(resp, pos)
        for _ in range(2):  # client id, client host
            _, pos = _str(resp, pos)
        (meta,) = struct.unpack_from(">i", resp, pos)
        pos += 4 + max(meta, 0)
        (alen,) = struct.unpack_from(">i", resp, pos)
        members.append((member, resp[pos + 4:pos + 4 + max(alen, 0)]))
        pos += 4 + max(alen, 0)
    return err, state, members


def at_coordinator(brokers, group: str, call, dead: int | None = None, timeout: float = 30.0):
    """Runs `call(conn)` on a connection to the group's coordinator (`brokers`: every broker,
    node id = position + 1), again while the answer is COORDINATOR_LOAD_IN_PROGRESS or
    NOT_COORDINATOR (a new coordinator loading, or moving)."""
    deadline = time.monotonic() + timeout
    while True:
        node = coordinator([b for b in brokers if b.running()], group, dead=dead)
        with Conn.to(brokers[node - 1].bootstrap) as conn:
            got = call(conn)
        code = got[0] if isinstance(got, tuple) else got
        if code not in (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR):
            return node, got
        assert time.monotonic() < deadline, f"coordinator {node} still answers {code}"
        time.sleep(0.2)


def test_a_stable_group_keeps_its_members_and_assignment_across_coordinator_failover(
        broker_factory):
    """The exact message order of a member that outlives its coordinator, on the wire: join,
    sync with an assignment, commit; SIGKILL the coordinator; then the member goes on at the
    new coordinator with its member id and generation, without rejoining. Before member state
    was stored in __consumer_offsets, the new coordinator answered UNKNOWN_MEMBER_ID here and
    every member had to rebalance through a coordinator that may move again."""
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("keep")
    create_topic(brokers[0], topic, partitions=2, replication_factor=3)
    group = unique_topic("g")
    assignment = b"\x00\x00assignment-of-partitions-0-and-1"

    def join_and_sync(conn):
        err, gen, leader, member = join_v2(conn, group)
        if err != 0:
            return (err,)
        assert leader == member
        serr, got = sync_v1_assignment(conn, group, gen, member, assignment)
        return (serr, gen, member, got)

    node, (err, gen, member, got) = at_coordinator(brokers, group, join_and_sync)
    assert (err, got) == (0, assignment)
    _, code = at_coordinator(brokers, group,
                             lambda c: commit_v2(c, group, gen, member, topic, 0, 5))
    assert code == 0

    brokers[node - 1].kill9()
    alive = [b for b in brokers if b.running()]
    new, code = at_coordinator(brokers, group, lambda c: heartbeat_v1(c, group, gen, member),
                               dead=node)
    assert new != node
    assert code == 0, f"the new coordinator does not know the member (error {code})"
    _, code = at_coordinator(brokers, group,
                             lambda c: commit_v2(c, group, gen, member, topic, 1, 7), dead=node)
    assert code == 0
    _, (err, got) = at_coordinator(brokers, group,
                                   lambda c: sync_v1_assignment(c, group, gen, member, None),
                                   dead=node)
    assert (err, got) == (0, assignment)
    _, offsets = at_coordinator(brokers, group, lambda c: (0, fetch_v1(c, group, topic, 0),
                                                         fetch_v1(c, group, topic, 1)),
                                dead=node)
    assert offsets[1:] == (5, 7)
    # DescribeGroups at the new coordinator: the same stable group, member and assignment.
    _, desc = at_coordinator(brokers, group, lambda c: describe_groups_v0(c, group), dead=node)
    assert desc == (0, "Stable", [(member, assignment)])
    # The surviving broker that does not coordinate the group describes it on the
    # coordinator's behalf (admin clients that cached a coordinator are not left blind), but
    # refuses membership requests with NOT_COORDINATOR.
    deadline = time.monotonic() + 30
    while True:
        cur = coordinator(alive, group, dead=node)
        other = next(b for i, b in enumerate(brokers, start=1) if i not in (node, cur))
        with Conn.to(other.bootstrap) as conn:
            desc = describe_groups_v0(conn, group)
            beat = heartbeat_v1(conn, group, gen, member)
        if desc[0] not in (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR) and beat != 0:
            break
        assert time.monotonic() < deadline, (desc, beat)
        time.sleep(0.2)
    assert desc == (0, "Stable", [(member, assignment)])
    assert beat == NOT_COORDINATOR


def test_the_offsets_topic_partition_count_is_set_when_the_cluster_forms(broker_factory):
    brokers = start_cluster(broker_factory, extra_args=["--offsets-topic-partitions", "3"])
    wait_formed(brokers)
    coordinator(brokers, unique_topic("g"))
    assert len(metadata(brokers[1], OFFSETS).topics[OFFSETS].partitions) == 3
    # A later value is ignored (and said so): groups are placed by the count.
    b = brokers[0]
    b.stop()
    b.extra_args[b.extra_args.index("--offsets-topic-partitions") + 1] = "8"
    b.start()
    wait_formed(brokers)
    assert len(metadata(b, OFFSETS).topics[OFFSETS].partitions) == 3
    assert "--offsets-topic-partitions 8 ignored" in b.log_text()


def recreated_topic_starts_groups_afresh(b, brokers=None, rf: int = 1):
    """Commits offset 7 of a 10-record topic, deletes the topic and creates one of the same
    name with 10 new records: the group reads all 10 from offset 0, as on Kafka (the old
    topic's committed offsets went with it), instead of skipping 7 of them."""
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = create_topic(b, partitions=1, replication_factor=rf)
    produce(b, topic, [b"old"] * 10)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    c.close()
    admin.delete_topics([topic], operation_timeout=15)[topic].result(30)
    deadline = time.monotonic() + 30
    while any(topic in metadata(x).topics for x in (brokers or [b])):
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.2)
    create_topic(b, name=topic, partitions=1, replication_factor=rf)
    produce(b, topic, [b"new"] * 10)
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("billing", [TopicPartition(topic, 0)])])["billing"].result(30)
    assert committed.topic_partitions[0].offset < 0, committed.topic_partitions
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.offset(), m.value()))
    c.close()
    assert got == [(i, b"new") for i in range(10)], got


def test_a_deleted_topics_offsets_go_with_it(broker):
    recreated_topic_starts_groups_afresh(broker)


def test_a_deleted_topics_offsets_go_with_it_in_a_cluster(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    recreated_topic_starts_groups_afresh(brokers[1], brokers, rf=3)
