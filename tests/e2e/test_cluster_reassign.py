"""Growing and reshaping a cluster: a broker that joins later, partition reassignment
(Kafka's AlterPartitionReassignments / ListPartitionReassignments, driven with kafka-python's
admin client) while an idempotent acks=all producer keeps writing, and decommissioning a
broker with `icestream cluster decommission`."""

from __future__ import annotations

import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, for_code
from kafka.protocol.admin import AlterPartitionReassignmentsRequest

from cluster import controller_leader, metadata, start_cluster, wait_formed
from conftest import broker_binary, free_port, unique_topic
import history
from history import replica_logs


def founders_and_fourth(broker_factory):
    """Three founding brokers and a fourth that joined later, the cluster formed."""
    founders = start_cluster(broker_factory)
    wait_formed(founders)
    fourth = join(broker_factory, founders, 4)
    brokers = founders + [fourth]
    wait_formed(brokers)
    return founders, fourth, brokers


def rpc_addr(b) -> str:
    return b.extra_args[b.extra_args.index("--rpc-addr") + 1]


def join(broker_factory, seeds, node_id):
    """A broker started later, with the founders as its seeds (not itself)."""
    args = ["--node-id", str(node_id), "--rpc-addr", f"127.0.0.1:{free_port()}",
            "--seeds", ",".join(rpc_addr(b) for b in seeds)]
    return broker_factory(args=args)


def create(b, name, partitions, rf, config=None):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf,
                                       config=config or {})],
                             operation_timeout=15, request_timeout=30)
    fs[name].result(timeout=40)


def wait_for(what, check, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def partition_view(b, topic, p):
    t = metadata(b, topic).topics.get(topic)
    if t is None or t.error is not None or p not in t.partitions:
        return None
    return t.partitions[p].leader, list(t.partitions[p].replicas)


def leaders(b, topic, partitions):
    """Every partition's (leader, replicas) as `b` sees them, once each has a leader."""
    vs = [partition_view(b, topic, p) for p in range(partitions)]
    return vs if all(v is not None and v[0] > 0 for v in vs) else None


def retrying(call, timeout=30.0):
    """kafka-python's admin client raises at once when the node it picks (from Metadata, which
    still lists a killed broker) refuses the connection; try again on retriable errors."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaError as e:
            if not e.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def kadmin(brokers) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=[b.bootstrap for b in brokers if b.running()],
                            request_timeout_ms=30000)


def alter_raw(admin: KafkaAdminClient, reassignments: dict, allow_rf_change: bool = True) -> dict:
    """AlterPartitionReassignments without kafka-python's input checks (which refuse an
    empty replica list client-side), so the broker's own validation is what answers."""
    _Topic = AlterPartitionReassignmentsRequest.ReassignableTopic
    _Partition = _Topic.ReassignablePartition
    topics: dict[str, list] = {}
    for (topic, p), replicas in reassignments.items():
        topics.setdefault(topic, []).append(_Partition(partition_index=p, replicas=replicas))
    request = AlterPartitionReassignmentsRequest(
        timeout_ms=30000, topics=[_Topic(name=t, partitions=ps) for t, ps in topics.items()],
        allow_replication_factor_change=allow_rf_change)

    def top_level_error(r):
        yield for_code(r.error_code)
    response = admin._manager.run(admin._send_request_to_controller, request, top_level_error)
    return {(t.name, p.partition_index): p.error_code
            for t in response.responses for p in t.partitions}


def raft_dirs(b, topic, partition):
    return [d for d in (b.data_dir / "raft").glob(f"{topic}-*/{partition}") if d.exists()]


class Load(history.Load):
    """The shared steady producer, on one partition."""

    def __init__(self, brokers, topic, partition=0):
        super().__init__(",".join(b.bootstrap for b in brokers), topic, [partition])
        self.partition = partition

    def check_read_back(self):
        """Every acknowledged record is read back exactly once, in order."""
        super().check_read_back()
        want = len(self.history.acked)
        assert want > 200, (want, list(self.history.errors.items())[:5])


def wait_reassigned(brokers, admin, topic, p, target):
    """Until no reassignment is listed and every broker's Metadata shows the target."""
    tp = KTopicPartition(topic, p)
    wait_for("the reassignment to complete",
             lambda: tp not in retrying(admin.list_partition_reassignments), timeout=60)
    wait_for("metadata to show the new replicas",
             lambda: all(partition_view(b, topic, p) is not None
                         and partition_view(b, topic, p)[1] == target
                         and partition_view(b, topic, p)[0] in target
                         for b in brokers if b.running()), timeout=30)


def check_replicas(brokers, topic, p, replicas, removed):
    """The new replicas' segment files are byte-identical; removed brokers hold nothing."""
    by_id = {i + 1: b for i, b in enumerate(brokers)}

    def same():
        logs = [replica_logs(by_id[r], topic, p) for r in replicas]
        return all(x == logs[0] for x in logs) and len(logs[0]) > 0
    wait_for("the new replicas' logs to be byte-identical", same, timeout=30)
    for r in removed:
        b = by_id[r]
        wait_for(f"broker {r} to drop its replica", lambda b=b: not raft_dirs(b, topic, p))
        d = b.partition_dir(topic, p)
        assert not d.exists() or replica_logs(b, topic, p) == b"", \
            f"broker {r} still holds data of {topic}/{p}"


def test_a_broker_joining_later_gets_the_metadata_and_new_replicas(broker_factory):
    founders = start_cluster(broker_factory)
    wait_formed(founders)
    old = unique_topic("before")
    create(founders[0], old, 2, 3)
    fourth = join(broker_factory, founders, 4)
    brokers = founders + [fourth]
    wait_formed(brokers)
    md = metadata(fourth)
    assert sorted(md.brokers) == [1, 2, 3, 4]
    # Admin requests go to the broker that answers Metadata (any live one; librdkafka picks
    # which), which forwards them to the controller leader, a founder.
    assert md.controller_id in (1, 2, 3, 4)
    assert controller_leader(fourth) in (1, 2, 3)
    wait_for("the joined broker to know the old topic",
             lambda: old in metadata(fourth).topics)
    # A topic created afterwards is placed on it too, and its replicas there work.
    new = unique_topic("after")
    create(fourth, new, 4, 3, {"min.insync.replicas": "2"})
    views = wait_for("leaders everywhere", lambda: leaders(fourth, new, 4))
    assert any(4 in replicas for _, replicas in views), views
    on_four = [p for p in range(4) if 4 in partition_view(fourth, new, p)[1]]
    p = on_four[0]
    prod = Producer({"bootstrap.servers": fourth.bootstrap, "acks": "all",
                     "enable.idempotence": True})
    for i in range(50):
        prod.produce(new, value=b"x-%d" % i, partition=p)
    assert prod.flush(30) == 0
    other = brokers[next(r for r in partition_view(fourth, new, p)[1] if r != 4) - 1]
    wait_for("broker 4's replica to hold the same records as another replica",
             lambda: replica_logs(fourth, new, p) == replica_logs(other, new, p))
    assert replica_logs(fourth, new, p)
    # Its controller replica survives a restart (it replays its log from the founders' voters).
    fourth.stop()
    fourth.start()
    wait_formed(brokers)
    assert new in metadata(fourth).topics


def test_reassignment_under_load_moves_the_partition_and_keeps_every_write(broker_factory):
    founders = start_cluster(broker_factory)
    wait_formed(founders)
    topic = unique_topic("move")
    create(founders[0], topic, 1, 3, {"min.insync.replicas": "2"})
    fourth = join(broker_factory, founders, 4)
    brokers = founders + [fourth]
    wait_formed(brokers)
    leader, replicas = wait_for("a leader", lambda: (v := partition_view(fourth, topic, 0))
                                and v[0] > 0 and v)
    # Move off the current leader onto the broker that joined.
    target = [r for r in replicas if r != leader] + [4]
    admin = kadmin(brokers)
    load = Load(brokers, topic)
    try:
        wait_for("acks before the move", lambda: load.acked() > 100)
        before = load.acked()
        started = time.monotonic()
        res = admin.alter_partition_reassignments({KTopicPartition(topic, 0): target})
        assert res == {KTopicPartition(topic, 0): None}, res
        listed = admin.list_partition_reassignments()
        tp = KTopicPartition(topic, 0)
        if tp in listed:  # it may already be done
            assert sorted(listed[tp]["adding_replicas"]) == [4], listed
            assert listed[tp]["removing_replicas"] == [leader], listed
        wait_reassigned(brokers, admin, topic, 0, target)
        took = time.monotonic() - started
        after = load.acked()
        wait_for("acks after the move", lambda: load.acked() > after + 100)
        print(f"move took {took:.2f} s (to Metadata showing it); acked {before} before, "
              f"{after - before} during it, errors {len(load.history.errors)}")
    finally:
        load.finish()
    load.check_read_back()
    check_replicas(brokers, topic, 0, target, removed=[leader])
    # The removed broker still serves the partition's metadata and redirects clients.
    assert partition_view(brokers[leader - 1], topic, 0)[1] == target
    # Restarts replay the controller log (the reassignment is not applied twice) and each
    # replica's Raft log from the creation-time voters through the conf changes: the new
    # replica comes back as a voter with the same data, the removed broker stays removed.
    expected = replica_logs(fourth, topic, 0)
    for b in (fourth, brokers[leader - 1]):
        b.stop()
        b.start()
    wait_formed(brokers)
    wait_for("the partition to have a leader again",
             lambda: (v := partition_view(fourth, topic, 0)) and v[0] in target and v[1] == target)
    assert replica_logs(fourth, topic, 0) == expected
    assert not raft_dirs(brokers[leader - 1], topic, 0)
    assert admin.list_partition_reassignments() == {}
    # The group still commits with the restarted replica among its voters.
    prod = Producer({"bootstrap.servers": fourth.bootstrap, "acks": "all"})
    prod.produce(topic, value=b"after-restart", partition=0)
    assert prod.flush(30) == 0
    check_replicas(brokers, topic, 0, target, removed=[leader])


def test_a_reassignment_changes_the_replication_factor_unless_the_client_forbids_it(
        broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("rf")
    create(brokers[0], topic, 1, 2)
    prod = Producer({"bootstrap.servers": brokers[0].bootstrap, "acks": "all"})
    for i in range(100):
        prod.produce(topic, value=b"rf-%03d" % i, partition=0)
    assert prod.flush(30) == 0
    _, replicas = wait_for("a leader", lambda: (v := partition_view(brokers[0], topic, 0))
                           and v[0] > 0 and v)
    spare = next(i for i in (1, 2, 3) if i not in replicas)
    admin = kadmin(brokers)
    # AlterPartitionReassignments v1 with allow_replication_factor_change=false (KIP-860).
    refused = alter_raw(admin, {(topic, 0): replicas + [spare]}, allow_rf_change=False)
    assert refused[(topic, 0)] == 38, refused  # INVALID_REPLICATION_FACTOR
    # Allowed (the default): two replicas become three, then one.
    assert alter_raw(admin, {(topic, 0): replicas + [spare]})[(topic, 0)] == 0
    wait_for("three replicas", lambda: sorted(partition_view(brokers[0], topic, 0)[1])
             == [1, 2, 3] and not in_progress(admin, topic), timeout=60)
    check_replicas(brokers, topic, 0, [1, 2, 3], removed=[])
    keep = replicas[0]
    assert alter_raw(admin, {(topic, 0): [keep]})[(topic, 0)] == 0
    wait_for("one replica", lambda: partition_view(brokers[0], topic, 0)[1] == [keep]
             and not in_progress(admin, topic), timeout=60)
    check_replicas(brokers, topic, 0, [keep], removed=[i for i in (1, 2, 3) if i != keep])
    c = Consumer({"bootstrap.servers": brokers[0].bootstrap, "group.id": unique_topic("g"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 100 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [b"rf-%03d" % i for i in range(100)]


def in_progress(admin: KafkaAdminClient, topic: str) -> bool:
    """Whether ListPartitionReassignments shows a move of the topic."""
    listed = admin.list_partition_reassignments()
    return any(tp.topic == topic for tp in listed)


def test_bad_reassignments_get_kafka_error_codes(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("bad")
    create(brokers[0], topic, 1, 2)
    admin = kadmin(brokers)
    codes = alter_raw(admin, {
        (unique_topic("nope"), 0): [1, 2],
        (topic, 5): [1, 2],
    })
    assert set(codes.values()) == {3}, codes                     # UNKNOWN_TOPIC_OR_PARTITION
    for replicas in ([1, 99], [1, 1], []):
        codes = alter_raw(admin, {(topic, 0): replicas})
        assert codes == {(topic, 0): 39}, (replicas, codes)      # INVALID_REPLICA_ASSIGNMENT
    codes = alter_raw(admin, {(topic, 0): None})
    assert codes == {(topic, 0): 85}, codes                      # NO_REASSIGNMENT_IN_PROGRESS
    assert admin.list_partition_reassignments() == {}
    # Nothing changed and the brokers are fine.
    assert all(b.running() for b in brokers)
    assert len(wait_for("metadata", lambda: partition_view(brokers[0], topic, 0))[1]) == 2
    # A single broker has nothing to move replicas to.
    single = broker_factory()
    single_admin = KafkaAdminClient(bootstrap_servers=[single.bootstrap])
    create(single, topic, 1, 1)
    assert alter_raw(single_admin, {(topic, 0): [1]}) == {(topic, 0): 39}
    assert single_admin.list_partition_reassignments() == {}


def test_a_stuck_reassignment_is_listed_and_cancelling_it_goes_back(broker_factory):
    brokers = start_cluster(broker_factory, n=4)
    wait_formed(brokers)
    topic = unique_topic("cancel")
    create(brokers[0], topic, 1, 2, {"min.insync.replicas": "2"})
    _, replicas = wait_for("a leader", lambda: (v := partition_view(brokers[0], topic, 0))
                           and v[0] > 0 and v)
    # kafka-python sends admin requests to the controller Metadata named, the broker it asked:
    # one of the brokers it is given, which stay up.
    down = next(i for i in (4, 3, 2, 1) if i not in replicas)
    others = [i for i in (1, 2, 3, 4) if i not in replicas]
    admin = kadmin([b for i, b in enumerate(brokers) if i + 1 != down])
    load = Load(brokers, topic)
    try:
        wait_for("acks before", lambda: load.acked() > 100)
        # The new replica's broker is down: the move cannot finish and stays listed.
        brokers[down - 1].kill9()
        tp = KTopicPartition(topic, 0)
        target = [replicas[0], down]
        assert retrying(lambda: admin.alter_partition_reassignments({tp: target})) == {tp: None}
        listed = retrying(admin.list_partition_reassignments)
        assert listed[tp]["adding_replicas"] == [down], listed
        assert listed[tp]["removing_replicas"] == [replicas[1]], listed
        assert sorted(listed[tp]["replicas"]) == sorted(replicas + [down]), listed
        after = load.acked()
        wait_for("acks while the move is stuck", lambda: load.acked() > after + 100)
        assert tp in retrying(admin.list_partition_reassignments)
        # Cancelled: the group goes back to the old replicas (dropping the learner it added).
        assert retrying(lambda: admin.alter_partition_reassignments({tp: None})) == {tp: None}
        live = [b for i, b in enumerate(brokers) if i + 1 != down]
        wait_reassigned(live, admin, topic, 0, replicas)
        after = load.acked()
        wait_for("acks after the cancellation", lambda: load.acked() > after + 100)
    finally:
        load.finish()
    load.check_read_back()
    # The broker that was down catches up on the controller log and holds no replica.
    brokers[down - 1].start()
    wait_formed(brokers)
    check_replicas(brokers, topic, 0, replicas, removed=[down])
    # The icestream CLI drives the same API: a real move this time.
    out = icestream("cluster", "reassign", "--topic", topic, "--partition", "0",
                    "--replicas", ",".join(map(str, others)), "--brokers", brokers[0].bootstrap)
    assert out.returncode == 0, out.stderr
    wait_reassigned(brokers, kadmin(brokers), topic, 0, others)
    check_replicas(brokers, topic, 0, others, removed=replicas)
    bad = icestream("cluster", "reassign", "--topic", topic, "--partition", "0",
                    "--replicas", "1,1", "--brokers", brokers[0].bootstrap)
    assert bad.returncode != 0 and "INVALID_REPLICA_ASSIGNMENT" in bad.stderr, bad.stderr


def icestream(*args, timeout=60):
    return subprocess.run([str(broker_binary()), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_decommission_moves_every_replica_off_the_broker(broker_factory):
    founders, fourth, brokers = founders_and_fourth(broker_factory)
    topic = unique_topic("drain")
    create(brokers[0], topic, 4, 3, {"min.insync.replicas": "2"})
    views = wait_for("leaders", lambda: leaders(fourth, topic, 4))
    victim = 4
    held = [p for p, (_, r) in enumerate(views) if victim in r]
    assert held, views
    part = held[0]
    load = Load(brokers, topic, part)
    try:
        wait_for("acks before", lambda: load.acked() > 100)
        # Not enough brokers left for RF 3 once 4 and 3 would go: refused with a clear error.
        out = icestream("cluster", "decommission", "--node", str(victim),
                        "--admin-url", fourth.admin_url)
        assert out.returncode == 0, out.stderr
        wait_for("no replica left on the decommissioned broker", lambda: all(
            (v := partition_view(brokers[0], topic, p)) and victim not in v[1] and v[0] > 0
            for p in range(4)), timeout=90)
        status = icestream("cluster", "status", "--admin-url", brokers[0].admin_url,
                           "--format", "json")
        assert status.returncode == 0, status.stderr
        assert '"decommissioned"' in status.stdout, status.stdout
        refused = icestream("cluster", "decommission", "--node", "3",
                            "--admin-url", brokers[0].admin_url)
        assert refused.returncode != 0
        assert "replicas" in refused.stderr, refused.stderr
        unknown = icestream("cluster", "decommission", "--node", "99",
                            "--admin-url", brokers[0].admin_url)
        assert unknown.returncode != 0 and "not a member" in unknown.stderr, unknown.stderr
        # Now it can go away with no effect on reads or writes.
        fourth.kill9()
        after = load.acked()
        wait_for("acks with the broker gone", lambda: load.acked() > after + 100)
    finally:
        load.finish()
    load.check_read_back()
    _, replicas = partition_view(brokers[0], topic, part)
    check_replicas(brokers[:3], topic, part, replicas, removed=[])
    # The decommissioned broker deleted every replica it held.
    for p in held:
        assert not raft_dirs(fourth, topic, p), p
        assert replica_logs(fourth, topic, p) == b"", p
