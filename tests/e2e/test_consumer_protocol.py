"""Consumer groups with the KIP-848 consumer protocol (`group.protocol=consumer`,
ConsumerGroupHeartbeat): server-side assignment, members joining late and leaving,
exactly-once consumption with commits, committed offsets across restarts, mixing with
classic groups, and the protocol's error codes on the wire."""

from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import create_topic, produce
from group_board import Board, balanced
from test_cli import cli_json
from kwire import Conn, frame, i32, request_header, string

CONSUMER_GROUP_HEARTBEAT = 68
CONSUMER_GROUP_DESCRIBE = 69
INVALID_REQUEST = 42
UNKNOWN_MEMBER_ID = 25
INCONSISTENT_GROUP_PROTOCOL = 23
GROUP_ID_NOT_FOUND = 69
FENCED_MEMBER_EPOCH = 110
UNSUPPORTED_ASSIGNOR = 112


def kip848_config(broker, group: str, **overrides) -> dict:
    # librdkafka refuses session.timeout.ms, heartbeat.interval.ms and
    # partition.assignment.strategy with group.protocol=consumer: the broker decides.
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    }
    conf.update(overrides)
    return conf


class Member(threading.Thread):
    """A consumer-protocol member polling in its own thread. A record counts as consumed
    only once its commit succeeded; a failed commit seeks back so it is delivered again."""

    def __init__(self, name, broker, group, topic, board, **conf):
        super().__init__(daemon=True, name=name)
        self.board = board
        self.consumer = Consumer(kip848_config(broker, group, **{"client.id": name}, **conf))
        self.topic = topic
        self.stop_flag = threading.Event()
        self.error = None
        self.commit_failures = 0

    def on_assign(self, consumer, partitions):
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
                    self.commit_failures += 1
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
        """Stops polling and closes the consumer (a heartbeat with member epoch -1)."""
        self.stop_flag.set()
        self.join(20)
        self.consumer.close()


class Trickle(threading.Thread):
    """Produces a record every few milliseconds until stopped (records in flight while
    partitions move)."""

    def __init__(self, broker, topic):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                                  "linger.ms": 2, "enable.idempotence": False})
        self.topic = topic
        self.stop_flag = threading.Event()
        self.ok: set[tuple[int, int]] = set()
        self.errors: list = []

    def _report(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.ok.add((msg.partition(), msg.offset()))

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            self.producer.produce(self.topic, key=f"t{i}".encode(), value=f"t{i}".encode(),
                                  on_delivery=self._report)
            self.producer.poll(0.005)
            i += 1
        self.producer.flush(30)

    def finish(self) -> set[tuple[int, int]]:
        self.stop_flag.set()
        self.join(40)
        assert not self.errors, self.errors[:5]
        return self.ok


def describe(broker, group):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    return admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)


def test_members_join_late_leave_and_every_record_is_consumed_once(broker):
    topic = create_topic(broker, partitions=6)
    group = f"g848-{topic}"
    board = Board()
    members = [Member(f"m{i}", broker, group, topic, board) for i in range(3)]
    try:
        for m in members[:2]:
            m.start()
        board.wait(lambda: balanced(board, ["m0", "m1"]), what="two members balanced")
        d = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode()}
                                    for i in range(300)])
        produced = {(p, o) for p, o, *_ in d.ok}

        # The third member joins while the others consume and records keep arriving.
        trickle = Trickle(broker, topic)
        trickle.start()
        members[2].start()
        board.wait(lambda: balanced(board, ["m0", "m1", "m2"]), what="three members balanced")
        produced |= trickle.finish()
        d = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"w{i}".encode()}
                                    for i in range(300)])
        produced |= {(p, o) for p, o, *_ in d.ok}
        board.wait(lambda: set(board.records) >= produced, what="records consumed")
        used = {n for names in board.records.values() for n in names}
        assert "m2" in used

        desc = describe(broker, group)
        assert len(desc.members) == 3
        assert str(desc.state).endswith("STABLE"), desc.state

        # m2 leaves, while records keep arriving: its partitions move to the others.
        trickle = Trickle(broker, topic)
        trickle.start()
        time.sleep(0.5)
        members[2].leave()
        board.wait(lambda: balanced(board, ["m0", "m1"]), what="rebalance after leave")
        time.sleep(0.5)
        produced |= trickle.finish()
        d = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"x{i}".encode()}
                                    for i in range(300)])
        produced |= {(p, o) for p, o, *_ in d.ok}
        board.wait(lambda: set(board.records) >= produced, what="all records consumed")

        assert not board.overlaps, board.overlaps
        dupes = {k: v for k, v in board.records.items() if len(v) > 1}
        assert not dupes, f"records consumed (and committed) twice: {list(dupes.items())[:5]}"
        assert set(board.records) == produced
        assert all(m.error is None for m in members), [m.error for m in members]
    finally:
        for m in members:
            if m.is_alive():
                m.leave()


def consume_n(consumer, n, timeout=45.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out.append(msg)
    return out


def committed(broker, group, topic, partitions):
    c = Consumer(kip848_config(broker, group))
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_committed_offsets_survive_restart(broker, assignor):
    topic = create_topic(broker, partitions=6)
    group = f"g848-restart-{assignor}-{topic}"
    produce(broker, topic, [{"value": f"old-{i}".encode(), "partition": i % 6}
                            for i in range(60)])
    c = Consumer(kip848_config(broker, group, **{"group.remote.assignor": assignor}))
    c.subscribe([topic])
    got = consume_n(c, 60)
    assert len(got) == 60
    c.commit(asynchronous=False)
    c.close()
    before = committed(broker, group, topic, range(6))
    assert before == {p: 10 for p in range(6)}

    produce(broker, topic, [{"value": f"new-{i}".encode(), "partition": i % 6}
                            for i in range(12)])
    broker.restart()
    assert committed(broker, group, topic, range(6)) == before

    c = Consumer(kip848_config(broker, group, **{"group.remote.assignor": assignor}))
    c.subscribe([topic])
    try:
        got = consume_n(c, 12)
        assert sorted(m.value() for m in got) == sorted(f"new-{i}".encode() for i in range(12))
        assert consume_n(c, 1, timeout=2) == [], "consumed something already committed"
        c.commit(asynchronous=False)
    finally:
        c.close()
    assert committed(broker, group, topic, range(6)) == {p: 12 for p in range(6)}


def test_static_member_returns_to_its_partitions_without_a_rebalance(broker):
    """A static member's close is a heartbeat with epoch -2: its place and partitions are
    kept, and its instance id rejoining under a new member id gets them back."""
    topic = create_topic(broker, partitions=4)
    group = f"g848-static-{topic}"
    board = Board()
    a = Member("a", broker, group, topic, board, **{"group.instance.id": "inst-a"})
    b = Member("b", broker, group, topic, board, **{"group.instance.id": "inst-b"})
    a.start()
    b.start()
    try:
        board.wait(lambda: balanced(board, ["a", "b"], 4), what="two static members balanced")
        a_parts = board.by_member()["a"]
        b_parts = board.by_member()["b"]
        # `icestream group describe` (DescribeGroups) shows who owns which partition.
        cli_desc = cli_json(broker, "group", "describe", group)
        assert cli_desc["protocol_type"] == "consumer"
        assert sorted(m["group_instance_id"] for m in cli_desc["members"]) == ["inst-a", "inst-b"]
        owners = {p["partition"] for p in cli_desc["partitions"] if p["member_id"]}
        assert owners == {0, 1, 2, 3}
        epoch_before = describe(broker, group)
        a.leave()
        desc = describe(broker, group)
        assert sorted(m.group_instance_id for m in desc.members) == ["inst-a", "inst-b"]
        a2 = Member("a2", broker, group, topic, board, **{"group.instance.id": "inst-a"})
        a2.start()
        try:
            board.wait(lambda: board.by_member().get("a2") == a_parts,
                       what="restarted static member got its partitions back")
            time.sleep(2)
            assert board.by_member()["b"] == b_parts, "the other member was rebalanced"
            desc = describe(broker, group)
            assert len(desc.members) == 2
            assert str(desc.state).endswith("STABLE")
            assert {m.member_id for m in desc.members} != \
                {m.member_id for m in epoch_before.members}
        finally:
            a2.leave()
    finally:
        b.leave()
    assert not board.overlaps, board.overlaps


# ------------------------------------------------------------------ on the wire

def cstr(s):
    if s is None:
        return b"\x00"
    b = s.encode()
    return bytes([len(b) + 1]) + b  # uvarint length + 1 (short strings only)


def carray(items):
    if items is None:
        return b"\x00"
    return bytes([len(items) + 1]) + b"".join(items)


def heartbeat(conn, group, member, epoch, topics=None, owned=None, assignor=None,
              version=1, corr=7):
    body = (cstr(group) + cstr(member) + i32(epoch) + cstr(None) + cstr(None)
            + i32(30000 if epoch == 0 else -1)
            + carray(None if topics is None else [cstr(t) for t in topics]))
    if version >= 1:
        body += cstr(None)  # regex
    body += cstr(assignor) + carray(owned) + b"\x00"
    header = request_header(CONSUMER_GROUP_HEARTBEAT, version, corr, flexible=True)
    conn.send(frame(header + body))
    got, resp = conn.recv_response()
    assert got == corr
    # response header v1 has a tagged-field byte first
    _tags, _throttle, err = struct.unpack_from(">bih", resp, 0)
    pos = 7
    n = resp[pos]
    pos += 1 + max(n - 1, 0)  # error message
    n = resp[pos]
    member_id = resp[pos + 1:pos + n].decode() if n else None
    pos += 1 + max(n - 1, 0)
    epoch_out, _interval = struct.unpack_from(">ii", resp, pos)
    return err, member_id, epoch_out


def test_protocol_errors_on_the_wire(broker):
    topic = create_topic(broker, partitions=2)
    group = f"g848-wire-{topic}"
    with Conn.to(broker.bootstrap) as conn:
        member = uuid.uuid4().hex
        assert heartbeat(conn, group, "", 0, [topic])[0] == INVALID_REQUEST
        assert heartbeat(conn, group, member, 0, [topic], assignor="nope")[0] == \
            UNSUPPORTED_ASSIGNOR
        assert heartbeat(conn, group, member, 3, None)[0] == UNKNOWN_MEMBER_ID
        err, mid, epoch = heartbeat(conn, group, member, 0, [topic], owned=[])
        assert (err, mid) == (0, member)
        assert epoch >= 1
        assert heartbeat(conn, group, member, epoch)[:1] == (0,)
        # v0 hands out a member id
        err, mid0, _ = heartbeat(conn, group, "", 0, [topic], owned=[], version=0)
        assert err == 0 and mid0
        assert heartbeat(conn, group, mid0, -1, version=0)[::2] == (0, -1)
        # a future epoch is fenced
        assert heartbeat(conn, group, member, epoch + 10)[0] == FENCED_MEMBER_EPOCH
        # and must rejoin with epoch 0
        assert heartbeat(conn, group, member, epoch)[0] == UNKNOWN_MEMBER_ID
        err, _, epoch = heartbeat(conn, group, member, 0, [topic], owned=[])
        assert err == 0 and epoch >= 1

    # A classic group with members refuses consumer-protocol members and vice versa.
    classic = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group + "-classic",
                        "session.timeout.ms": 6000, "auto.offset.reset": "earliest"})
    classic.subscribe([topic])
    deadline = time.monotonic() + 30
    while not classic.assignment() and time.monotonic() < deadline:
        classic.poll(0.2)
    try:
        with Conn.to(broker.bootstrap) as conn:
            assert heartbeat(conn, group + "-classic", uuid.uuid4().hex, 0, [topic],
                             owned=[])[0] == GROUP_ID_NOT_FOUND
            # `group` still has `member`, a consumer-protocol member: JoinGroup is refused.
            err, *_ = join_v2(conn, group)
            assert err == INCONSISTENT_GROUP_PROTOCOL
    finally:
        classic.close()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=15).valid}
    assert str(listed[group].type).endswith("CONSUMER")
    assert str(listed[group + "-classic"].type).endswith("CLASSIC")


def join_v2(conn, group, member=""):
    proto = i32(1) + string("range") + i32(0)
    body = (string(group) + i32(10000) + i32(10000) + string(member) + string("consumer")
            + proto)
    conn.send(frame(request_header(11, 2, 9) + body))
    got, resp = conn.recv_response()
    assert got == 9
    _throttle, err, gen = struct.unpack_from(">ihi", resp, 0)
    return err, gen
