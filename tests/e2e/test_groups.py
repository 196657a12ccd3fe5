"""Consumer groups (classic protocol): real clients sharing partitions, rebalances,
committed offsets across restarts, static membership, lag, and the error codes the
protocol names for bad commits."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import create_topic, http_get, produce
from group_board import Board, balanced
from kwire import Conn, frame, i16, i32, i64, request_header, string

ASSIGNORS = ["range", "roundrobin", "cooperative-sticky"]


def group_config(broker, group: str, **overrides) -> dict:
    """A group consumer's config; `broker` is a Broker or a bootstrap string."""
    conf = {
        "bootstrap.servers": broker if isinstance(broker, str) else broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "fetch.wait.max.ms": 100,
    }
    conf.update(overrides)
    return conf


class Member(threading.Thread):
    """One group member polling in its own thread. A record counts as consumed only
    once its offset commit succeeded; a failed commit seeks back so the record is
    delivered again (to this member or to the partition's next owner)."""

    def __init__(self, name, broker, group, topic, board, **conf):
        super().__init__(daemon=True, name=name)
        self.board = board
        self.consumer = Consumer(group_config(broker, group, **{"client.id": name}, **conf))
        self.topic = topic
        self.stop_flag = threading.Event()
        self.assign_calls = 0
        self.error = None

    def on_assign(self, consumer, partitions):
        self.assign_calls += 1
        self.board.assign(self.name, [p.partition for p in partitions])

    def on_revoke(self, consumer, partitions):
        self.board.revoke(self.name, [p.partition for p in partitions])

    def run(self):
        try:
            self.consumer.subscribe([self.topic], on_assign=self.on_assign,
                                    on_revoke=self.on_revoke, on_lost=self.on_revoke)
            while not self.stop_flag.is_set():
                msg = self.consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                try:
                    self.consumer.commit(message=msg, asynchronous=False)
                except KafkaException:
                    try:
                        self.consumer.seek(TopicPartition(self.topic, msg.partition(),
                                                          msg.offset()))
                    except KafkaException:
                        pass
                    continue
                self.board.consumed(self.name, msg.partition(), msg.offset())
        except Exception as e:  # surfaced by the test
            self.error = e

    def leave(self):
        """Stops polling and closes the consumer (which sends LeaveGroup)."""
        self.stop_flag.set()
        self.join(20)
        self.consumer.close()


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_three_members_share_partitions_and_a_leaver_hands_them_over(broker, assignor):
    topic = create_topic(broker, partitions=6)
    group = f"g-{assignor}-{topic}"
    board = Board()
    members = [Member(f"m{i}", broker, group, topic, board,
                      **{"partition.assignment.strategy": assignor}) for i in range(3)]
    try:
        # The third member joins after the other two are consuming.
        for m in members[:2]:
            m.start()
        board.wait(lambda: balanced(board, ["m0", "m1"]), what="two members balanced")
        members[2].start()
        board.wait(lambda: balanced(board, ["m0", "m1", "m2"]), what="three members balanced")

        d = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode()}
                                    for i in range(600)])
        produced = {(p, o) for p, o, *_ in d.ok}
        board.wait(lambda: set(board.records) >= produced, what="600 records consumed")
        consumers_used = {n for names in board.records.values() for n in names}
        assert consumers_used == {"m0", "m1", "m2"}

        # m2 leaves: its partitions move to the others.
        left_with = board.by_member()["m2"]
        members[2].leave()
        board.wait(lambda: balanced(board, ["m0", "m1"]), what="rebalance after leave")
        d2 = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"w{i}".encode()}
                                     for i in range(300)])
        produced |= {(p, o) for p, o, *_ in d2.ok}
        board.wait(lambda: set(board.records) >= produced, what="300 more records consumed")
        for (p, o), names in board.records.items():
            if (p, o) in produced and p in left_with and (p, o) in {(x, y) for x, y, *_ in d2.ok}:
                assert names[0] in ("m0", "m1")

        assert not board.overlaps, board.overlaps
        dupes = {k: v for k, v in board.records.items() if len(v) > 1}
        assert not dupes, f"records consumed (and committed) twice: {list(dupes.items())[:5]}"
        assert set(board.records) == produced
        assert all(m.error is None for m in members), [m.error for m in members]
    finally:
        for m in members[:2]:
            if m.is_alive():
                m.leave()


KILLED_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
    if c.assignment():
        print("assigned", flush=True)
"""


def test_killed_member_is_expired_and_its_partitions_move(broker):
    """A member that dies without LeaveGroup is removed when its session times out."""
    topic = create_topic(broker, partitions=4)
    group = f"g-killed-{topic}"
    board = Board()
    survivor = Member("s", broker, group, topic, board)
    survivor.start()
    victim = subprocess.Popen([sys.executable, "-c", KILLED_MEMBER, broker.bootstrap, group,
                               topic], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        board.wait(lambda: len(board.by_member().get("s", [])) == 2,
                   what="survivor shares the partitions with the victim")
        assert victim.stdout.readline().strip() == b"assigned"
        victim.kill()
        victim.wait()
        killed_at = time.monotonic()
        board.wait(lambda: len(board.by_member().get("s", [])) == 4, timeout=30,
                   what="victim's partitions moved to the survivor")
        # Not before the 6 s session timeout.
        assert time.monotonic() - killed_at > 4
        assert not board.overlaps, board.overlaps
    finally:
        if victim.poll() is None:
            victim.kill()
        survivor.leave()


def committed(broker, group, topic, partitions):
    c = Consumer(group_config(broker, group))
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def lag_metrics(broker, group) -> dict[tuple[str, str], float]:
    status, body, _ = http_get(f"{broker.admin_url}/metrics")
    assert status == 200
    out = {}
    for line in body.splitlines():
        if line.startswith("icestream_kafka_consumer_group_lag{") and f'group="{group}"' in line:
            labels, value = line.rsplit(" ", 1)
            topic = labels.split('topic="')[1].split('"')[0]
            part = labels.split('partition="')[1].split('"')[0]
            out[(topic, part)] = float(value)
    return out


def consume_n(consumer, n, timeout=30.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out.append(msg)
    return out


def test_committed_offsets_survive_restart_and_a_new_consumer_resumes(broker):
    topic = create_topic(broker, partitions=3)
    group = f"g-restart-{topic}"
    produce(broker, topic, [{"value": f"old-{i}".encode(), "partition": i % 3}
                            for i in range(90)])
    c = Consumer(group_config(broker, group))
    c.subscribe([topic])
    got = consume_n(c, 90)
    assert len(got) == 90
    c.commit(asynchronous=False)
    c.close()
    before = committed(broker, group, topic, range(3))
    assert before == {0: 30, 1: 30, 2: 30}

    produce(broker, topic, [{"value": f"mid-{i}".encode(), "partition": i % 3}
                            for i in range(12)])
    lag = lag_metrics(broker, group)
    assert sum(lag.values()) == 12, lag

    broker.restart()
    assert committed(broker, group, topic, range(3)) == before
    assert sum(lag_metrics(broker, group).values()) == 12

    # kafka-python reads the same committed offsets.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                       enable_auto_commit=False, request_timeout_ms=15000)
    try:
        assert {p: kc.committed(KTP(topic, p)) for p in range(3)} == before
    finally:
        kc.close()

    c = Consumer(group_config(broker, group))
    c.subscribe([topic])
    try:
        got = consume_n(c, 12)
        assert sorted(m.value() for m in got) == sorted(f"mid-{i}".encode() for i in range(12))
        assert consume_n(c, 1, timeout=2) == [], "consumed something already committed"
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert sum(lag_metrics(broker, group).values()) == 0


def test_kafka_python_group_consumer_then_confluent_resumes(broker):
    from kafka import KafkaConsumer
    topic = create_topic(broker, partitions=2)
    group = f"g-kp-{topic}"
    produce(broker, topic, [f"a-{i}".encode() for i in range(40)])
    kc = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       request_timeout_ms=15000, session_timeout_ms=6000,
                       heartbeat_interval_ms=500)
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 40 and time.monotonic() < deadline:
        for _tp, msgs in kc.poll(timeout_ms=500).items():
            seen.extend(m.value for m in msgs)
    kc.commit()
    kc.close()
    assert sorted(seen) == sorted(f"a-{i}".encode() for i in range(40))

    produce(broker, topic, [f"b-{i}".encode() for i in range(10)])
    c = Consumer(group_config(broker, group))
    c.subscribe([topic])
    try:
        got = consume_n(c, 10)
        assert sorted(m.value() for m in got) == sorted(f"b-{i}".encode() for i in range(10))
    finally:
        c.close()


def test_static_member_rejoins_without_rebalance(broker):
    topic = create_topic(broker, partitions=4)
    group = f"g-static-{topic}"
    board = Board()
    conf = {"group.instance.id": None, "session.timeout.ms": 30000}
    a = Member("a", broker, group, topic, board, **{**conf, "group.instance.id": "inst-a"})
    b = Member("b", broker, group, topic, board, **{**conf, "group.instance.id": "inst-b"})
    a.start()
    b.start()
    try:
        board.wait(lambda: balanced(board, ["a", "b"], 4), what="two static members balanced")
        time.sleep(1)
        a_parts = board.by_member()["a"]
        b_calls = b.assign_calls
        # A static member's close sends no LeaveGroup (KIP-345): the broker keeps its place.
        a.leave()
        a2 = Member("a2", broker, group, topic, board, **{**conf, "group.instance.id": "inst-a"})
        a2.start()
        try:
            board.wait(lambda: board.by_member().get("a2") == a_parts,
                       what="restarted static member got its partitions back")
            time.sleep(2)
            assert b.assign_calls == b_calls, "the other member was rebalanced"
            assert board.by_member()["b"] != []
        finally:
            a2.leave()
    finally:
        b.leave()
    # Closed static members keep their place until their session times out.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # kept alive for the future
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    assert sorted(m.group_instance_id for m in desc.members) == ["inst-a", "inst-b"]
    assert str(desc.state).endswith("STABLE")


# ------------------------------------------------------------------ bad input, on the wire

def _request(conn, api, version, body, corr=11):
    conn.send(frame(request_header(api, version, corr) + body))
    got, resp = conn.recv_response()
    assert got == corr
    return resp


def _str(buf, pos):
    (n,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    if n < 0:
        return None, pos
    return buf[pos:pos + n].decode(), pos + n


def join_v2(conn, group, member=""):
    proto = i32(1) + string("range") + i32(0)
    body = (string(group) + i32(10000) + i32(10000) + string(member) + string("consumer")
            + proto)
    resp = _request(conn, 11, 2, body)
    _throttle, err, gen = struct.unpack_from(">ihi", resp, 0)
    _proto, pos = _str(resp, 10)
    leader, pos = _str(resp, pos)
    member_id, pos = _str(resp, pos)
    return err, gen, leader, member_id


def sync_v1(conn, group, gen, member, assignment=b""):
    body = (string(group) + i32(gen) + string(member) + i32(1) + string(member)
            + i32(len(assignment)) + assignment)
    resp = _request(conn, 14, 1, body)
    _throttle, err = struct.unpack_from(">ih", resp, 0)
    return err


def heartbeat_v1(conn, group, gen, member):
    resp = _request(conn, 12, 1, string(group) + i32(gen) + string(member))
    return struct.unpack_from(">ih", resp, 0)[1]


def commit_v2(conn, group, gen, member, topic, partition, offset):
    body = (string(group) + i32(gen) + string(member) + i64(-1) + i32(1) + string(topic)
            + i32(1) + i32(partition) + i64(offset) + string(""))
    resp = _request(conn, 8, 2, body)
    (ntopics,) = struct.unpack_from(">i", resp, 0)
    assert ntopics == 1
    _name, pos = _str(resp, 4)
    nparts, part, err = struct.unpack_from(">iih", resp, pos)
    assert (nparts, part) == (1, partition)
    return err


def fetch_v1(conn, group, topic, partition):
    body = string(group) + i32(1) + string(topic) + i32(1) + i32(partition)
    resp = _request(conn, 9, 1, body)
    _name, pos = _str(resp, 4)
    _n, _p, offset = struct.unpack_from(">iiq", resp, pos)
    return offset


UNKNOWN_TOPIC_OR_PARTITION = 3
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
NON_EMPTY_GROUP = 68


def test_bad_commits_get_the_protocols_error_codes(broker):
    topic = create_topic(broker, partitions=2)
    group = f"g-bad-{topic}"
    with Conn.to(broker.bootstrap) as conn:
        err, gen, leader, member = join_v2(conn, group)
        assert (err, gen, leader) == (0, 1, member)
        assert sync_v1(conn, group, gen, member) == 0
        assert heartbeat_v1(conn, group, gen, member) == 0

        assert commit_v2(conn, group, gen, member, topic, 0, 5) == 0
        assert fetch_v1(conn, group, topic, 0) == 5
        assert commit_v2(conn, group, gen, "no-such-member", topic, 0, 7) == UNKNOWN_MEMBER_ID
        assert commit_v2(conn, group, gen - 1, member, topic, 0, 7) == ILLEGAL_GENERATION
        assert commit_v2(conn, group, gen + 5, member, topic, 0, 7) == ILLEGAL_GENERATION
        # A group-less (simple) commit is refused while the group has members.
        assert commit_v2(conn, group, -1, "", topic, 0, 7) == UNKNOWN_MEMBER_ID
        assert commit_v2(conn, group, gen, member, topic, 9, 7) == UNKNOWN_TOPIC_OR_PARTITION
        assert commit_v2(conn, group, gen, member, "no-such-topic", 0, 7) == \
            UNKNOWN_TOPIC_OR_PARTITION
        assert heartbeat_v1(conn, group, gen - 1, member) == ILLEGAL_GENERATION
        assert heartbeat_v1(conn, group, gen, "no-such-member") == UNKNOWN_MEMBER_ID
        assert fetch_v1(conn, group, topic, 0) == 5, "a refused commit changed the offset"

        # A group that does not exist: only simple commits (generation -1) are accepted.
        other = group + "-simple"
        assert commit_v2(conn, other, 3, "x", topic, 1, 4) == ILLEGAL_GENERATION
        assert commit_v2(conn, other, -1, "", topic, 1, 4) == 0
        assert fetch_v1(conn, other, topic, 1) == 4

    # DeleteGroups refuses a group with members; the member's session then expires.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    assert e.value.args[0].code() == NON_EMPTY_GROUP
    admin.delete_consumer_groups([group + "-simple"], request_timeout=10)[
        group + "-simple"].result(timeout=15)
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
    ids = {g.group_id for g in listed.valid}
    assert group in ids and group + "-simple" not in ids
