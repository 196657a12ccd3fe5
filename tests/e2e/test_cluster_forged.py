"""Forged inter-broker frames, sent to three brokers' RPC listeners from a process that is not
a broker (issue 12): each is refused and logged, nothing outside the data directories is
touched, no topic or replica changes, no broker panics, and produce and consume keep working
on an RF=3 topic after every forgery.

Frames are `u32 length, u8 kind, body` (engine/src/cluster/rpc.rs); Raft messages are raft-rs's
eraftpb.Message protobuf, encoded here by hand.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import controller_roles, finalized_features, metadata, start_cluster, wait_formed
from test_cluster_reassign import wait_for
from conftest import http_get, unique_topic
from test_cluster import create, wait_topic_everywhere

HELLO, MEMBERS, RAFT, PROPOSE, PROPOSE_RESULT, PARTITION_RAFT = 1, 2, 3, 4, 5, 6
MSG_APPEND, MSG_HEARTBEAT = 3, 8


# ----------------------------------------------------------------------------- wire


def frame(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def raft_message(msg_type: int, to: int, frm: int, term: int, commit: int = 0,
                 index: int = 0, log_term: int = 0) -> bytes:
    """eraftpb.Message: msg_type=1, to=2, from=3, term=4, log_term=5, index=6, commit=8."""
    fields = [(1, msg_type), (2, to), (3, frm), (4, term), (5, log_term), (6, index),
              (8, commit)]
    return b"".join(varint(n << 3) + varint(v) for n, v in fields if v)


def rpc_port(b) -> int:
    return int(b.extra_args[b.extra_args.index("--rpc-addr") + 1].rsplit(":", 1)[1])


def send(b, kind: int, body: bytes, answer: bool = False) -> bytes | None:
    """Sends one frame; with `answer`, the body of the answer frame (None if the broker
    closed the connection instead)."""
    with socket.create_connection(("127.0.0.1", rpc_port(b)), timeout=10) as s:
        s.sendall(frame(kind, body))
        if not answer:
            time.sleep(0.05)
            return None
        head = b""
        while len(head) < 5:
            chunk = s.recv(5 - len(head))
            if not chunk:
                return None
            head += chunk
        length, _kind = struct.unpack(">IB", head)
        rest = b""
        while len(rest) < length - 1:
            chunk = s.recv(length - 1 - len(rest))
            if not chunk:
                return None
            rest += chunk
        return rest


def propose(b, cmd: dict) -> dict:
    reply = send(b, PROPOSE, json.dumps(cmd).encode(), answer=True)
    assert reply is not None, "a proposal gets an answer"
    return json.loads(reply)


def meta_file(b) -> dict:
    return json.loads((b.data_dir / "meta" / "topics.json").read_text())


# ----------------------------------------------------------------------------- checks


def rejected(b, reason: str) -> float:
    """icestream_rpc_rejected_total{reason=...} on broker b."""
    status, text, _ = http_get(f"{b.admin_url}/metrics")
    assert status == 200
    total = 0.0
    for line in text.splitlines():
        if line.startswith("icestream_rpc_rejected_total{") and f'reason="{reason}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_rejected(brokers, reason: str, log_text: str, timeout: float = 10.0):
    """Every broker counted a rejection with `reason` and logged a warning containing it."""
    deadline = time.monotonic() + timeout
    while True:
        missing = [b.workdir.name for b in brokers
                   if rejected(b, reason) < 1 or not re.search(
                       "WARN.*rpc message rejected.*" + re.escape(log_text), b.log_text())]
        if not missing:
            return
        assert time.monotonic() < deadline, f"{reason} not rejected and logged on {missing}"
        time.sleep(0.1)


def tree(root) -> set[str]:
    """Every path under root except the brokers' data directories."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "data"]
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


class Traffic:
    """acks=all produce to an RF=3 topic and a read back of everything produced so far."""

    def __init__(self, brokers, topic):
        self.brokers = brokers
        self.topic = topic
        self.sent = 0
        bootstrap = ",".join(b.bootstrap for b in brokers)
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "message.timeout.ms": 20000})
        self.bootstrap = bootstrap

    def check(self, label: str, n: int = 20):
        errors = []
        for i in range(n):
            self.producer.produce(self.topic, f"{label}-{i}".encode(),
                                  on_delivery=lambda e, m: e and errors.append(e))
        assert self.producer.flush(30) == 0, f"{label}: produce did not finish"
        assert not errors, f"{label}: {errors}"
        self.sent += n
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": unique_topic("g"),
                      "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(self.topic, 0, 0)])
            got = 0
            deadline = time.monotonic() + 20
            while got < self.sent:
                assert time.monotonic() < deadline, f"{label}: read {got} of {self.sent}"
                for m in c.consume(500, timeout=1.0):
                    assert m.error() is None, m.error()
                    got += 1
            assert got == self.sent
        finally:
            c.close()


# ----------------------------------------------------------------------------- the test


def test_forged_frames_are_refused_and_the_cluster_keeps_working(broker_factory, tmp_path):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("forged")
    create(brokers[0], topic, 1, 3)
    view = wait_topic_everywhere(brokers, topic, 1)
    traffic = Traffic(brokers, topic)
    traffic.check("before")

    meta = meta_file(brokers[0])
    cluster_id = meta["cluster_id"]
    rec = next(t for t in meta["topics"] if t["name"] == topic)
    topics_before = sorted(metadata(brokers[0]).topics)
    outside_before = tree(tmp_path)

    def still_healthy(label: str):
        for b in brokers:
            assert b.running(), f"{b.workdir.name} exited"
            assert "panicked" not in b.log_text(), f"{b.workdir.name} panicked:\n{b.log_tail()}"
        traffic.check(label)
        # Rejections are logged at warn once a second per reason: the next step's warning
        # must not fall in the same second as this one's.
        time.sleep(1.1)

    # 1. CreateTopic whose name climbs out of the data directory.
    escape = {"CreateTopic": {
        "name": "../../../forged-escape", "id": str(uuid.uuid4()), "partitions": 1,
        "replication_factor": 1, "config": {"overrides": {}}, "assignments": [[1]]}}
    for b in brokers:
        reply = propose(b, escape)
        assert "Invalid" in json.dumps(reply), reply
    wait_rejected(brokers, "propose_invalid", "forged-escape")
    still_healthy("after-create")

    # 2. DeleteTopic of an internal topic.
    delete = {"DeleteTopic": {"name": "__consumer_offsets", "id": str(uuid.uuid4())}}
    for b in brokers:
        reply = propose(b, delete)
        assert "internal topic" in json.dumps(reply), reply
    wait_rejected(brokers, "propose_invalid", "__consumer_offsets")
    still_healthy("after-delete")

    # 3. Reassign to a broker that does not exist, and a Reassigned with no move in progress.
    reassign = {"Reassign": {"topic": topic, "id": rec["id"], "partition": 0,
                             "target": [1, 2, 77]}}
    reassigned = {"Reassigned": {"topic": topic, "id": rec["id"], "partition": 0,
                                 "replicas": [1]}}
    for b in brokers:
        assert "Invalid" in json.dumps(propose(b, reassign))
        assert "Invalid" in json.dumps(propose(b, reassigned))
    wait_rejected(brokers, "propose_invalid", "broker 77 is not in the controller group")
    still_healthy("after-reassign")

    # 4. A hello claiming live broker 2 from other addresses: refused, the connection closed.
    forged_member = {"node_id": 2, "rpc_addr": "127.0.0.1:9", "kafka_host": "127.0.0.1",
                     "kafka_port": 9, "incarnation": 12345}
    hello = {"cluster_id": cluster_id, "from": forged_member, "members": [forged_member]}
    for b in brokers:
        assert send(b, HELLO, json.dumps(hello).encode(), answer=True) is None
    wait_rejected(brokers, "hello_conflict", "claims it from 127.0.0.1:9")
    still_healthy("after-hello")

    # 4b. A hello from a broker of a release without the cluster's finalized features (as a
    # previous release's hello reads): refused with the reason, and it joins nothing.
    wait_for("the cluster's features finalized",
             lambda: all(finalized_features(b) for b in brokers))
    old_member = {"node_id": 9, "rpc_addr": "127.0.0.1:9", "kafka_host": "127.0.0.1",
                  "kafka_port": 9, "incarnation": 999}
    hello = {"cluster_id": cluster_id, "from": old_member, "members": [old_member]}
    for b in brokers:
        assert send(b, HELLO, json.dumps(hello).encode(), answer=True) is None
    wait_rejected(brokers, "hello_unsupported", "lacks the finalized features")
    assert all(9 not in controller_roles(b) for b in brokers)
    still_healthy("after-old-hello")

    # 5. The reported partition heartbeat: a huge term and a commit far past the log end,
    # "from" another replica; and one with a plausible term, so the commit check itself acts.
    head = struct.pack(">H", len(topic)) + topic.encode() + struct.pack(">i", 0)
    for b in brokers:
        me = brokers.index(b) + 1
        other = 1 if me != 1 else 2
        send(b, PARTITION_RAFT, head + raft_message(MSG_HEARTBEAT, me, other, 1 << 40,
                                                    commit=1 << 40))
        send(b, PARTITION_RAFT, head + raft_message(MSG_HEARTBEAT, me, other, 1,
                                                    commit=1 << 40))
    wait_rejected(brokers, "raft_term", "partition raft group")
    wait_rejected(brokers, "raft_commit_past_log", "partition raft group")
    still_healthy("after-partition-heartbeat")

    # 6. The same for the controller group, and an append that skips far past the log end.
    for b in brokers:
        me = brokers.index(b) + 1
        other = 1 if me != 1 else 2
        send(b, RAFT, raft_message(MSG_HEARTBEAT, me, other, 1 << 40, commit=1 << 40))
        send(b, RAFT, raft_message(MSG_HEARTBEAT, me, other, 1, commit=1 << 40))
        send(b, RAFT, raft_message(MSG_APPEND, me, other, 1, index=1 << 20))
    wait_rejected(brokers, "raft_commit_past_log", "controller raft group")
    wait_rejected(brokers, "raft_entries", "controller raft group")
    still_healthy("after-controller-heartbeat")

    # Nothing changed: no file outside the data directories, the same topics and replicas,
    # every broker at its own address.
    assert tree(tmp_path) == outside_before
    assert not any("forged-escape" in str(p) for p in tmp_path.rglob("*forged-escape*"))
    assert sorted(metadata(brokers[0]).topics) == topics_before
    assert wait_topic_everywhere(brokers, topic, 1) == view
    md = metadata(brokers[0])
    for bid, bm in md.brokers.items():
        assert bm.port == brokers[bid - 1].kafka_port, (bid, bm.port)
    assert meta_file(brokers[1])["topics"] == meta_file(brokers[0])["topics"]
