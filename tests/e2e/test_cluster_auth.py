"""An authenticated cluster (issue 20): brokers started with the same --cluster-secret-file form,
replicate and survive a restart; a process without the secret, or with another one, neither
joins nor changes anything with forged frames (test_cluster_forged.py's); a captured handshake
replayed byte for byte, a tampered frame and a frame replayed within a connection are refused.

The handshake and the frame MACs are implemented here from their description
(engine/src/cluster/rpc_auth.rs, docs/security.md "Inter-broker authentication"), so a session
this test opens with the secret is a real one, which the broker answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from cluster import controller_roles, metadata, start_cluster, wait_formed
from conftest import BrokerDied, free_port, unique_topic
from kwire import Conn
from test_cluster import create, wait_topic_everywhere
from test_cluster_forged import (MSG_APPEND, MSG_HEARTBEAT, PARTITION_RAFT, PROPOSE, RAFT,
                                 Traffic, meta_file, raft_message, rejected, rpc_port, send,
                                 wait_rejected)
from test_cluster_groups import coordinator, describe_groups_v0
from test_cluster_reassign import wait_for

AUTH_HELLO, AUTH_CHALLENGE, AUTH_PROOF, AUTH_REFUSED = 10, 11, 12, 13
SNAPSHOT_READ, SNAPSHOT_CHUNK = 8, 9
PROOF = b"icestream-rpc-auth-v1 proof"
KEY = b"icestream-rpc-auth-v1 frame-key"
TAG = 16


def secret_file(dirpath, name: str = "cluster-secret") -> tuple[str, bytes]:
    """A new random secret in a file only its owner reads: (path, secret)."""
    secret = base64.b64encode(os.urandom(32))
    path = dirpath / name
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return str(path), secret


# ----------------------------------------------------------------------------- the protocol


def frame(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


def recv_exact(s: socket.socket, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def read_frame(s: socket.socket, tag: int = 0) -> tuple[bytes, int, bytes] | None:
    """(header, kind, body and tag) of the next frame, None if the broker closed."""
    head = recv_exact(s, 5)
    if head is None:
        return None
    length, kind = struct.unpack(">IB", head)
    rest = recv_exact(s, length - 1 + tag)
    return None if rest is None else (head, kind, rest)


def mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


class Session:
    """An RPC connection authenticated with the secret, as a broker opens one; every byte
    sent is kept in `sent`, as a capture of the connection would hold it."""

    def __init__(self, port: int, secret: bytes, node: int = 1):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sent = b""
        cn = os.urandom(32)
        self._send(frame(AUTH_HELLO, bytes([1]) + struct.pack(">i", node) + cn))
        got = read_frame(self.s)
        assert got is not None and got[1] == AUTH_CHALLENGE, got
        body = got[2]
        server = struct.unpack(">i", body[1:5])[0]
        sn, proof = body[5:37], body[37:]
        ids = struct.pack(">ii", node, server)
        assert hmac.compare_digest(proof, mac(secret, PROOF, b"server", cn, sn, ids)), \
            "the broker's proof does not match the secret"
        self._send(frame(AUTH_PROOF, mac(secret, PROOF, b"client", cn, sn, ids)))
        self.send_key = mac(secret, KEY, b"client-to-server", cn, sn, ids)
        self.recv_key = mac(secret, KEY, b"server-to-client", cn, sn, ids)
        self.send_seq = self.recv_seq = 0

    def _send(self, data: bytes):
        self.sent += data
        self.s.sendall(data)

    def sealed(self, kind: int, body: bytes) -> bytes:
        f = frame(kind, body)
        tag = mac(self.send_key, struct.pack(">Q", self.send_seq), f)[:TAG]
        self.send_seq += 1
        return f + tag

    def send_raw(self, data: bytes):
        self._send(data)

    def recv(self) -> tuple[int, bytes] | None:
        """The next frame (its MAC checked), None if the broker closed the connection."""
        got = read_frame(self.s, TAG)
        if got is None:
            return None
        head, kind, rest = got
        body, tag = rest[:-TAG], rest[-TAG:]
        want = mac(self.recv_key, struct.pack(">Q", self.recv_seq), head, body)[:TAG]
        assert hmac.compare_digest(tag, want), "the broker's frame fails its MAC"
        self.recv_seq += 1
        return kind, body

    def close(self):
        self.s.close()


def snapshot_read(topic: str) -> bytes:
    """A SnapshotRead (engine/src/cluster/snapshot_rpc.rs): harmless, and always answered."""
    t = topic.encode()
    return struct.pack(">H", len(t)) + t + struct.pack(">iqqqI", 0, 1, 0, 100, 1024)


def closed(s: socket.socket) -> bool:
    """Whether the broker closed the connection without answering anything more."""
    s.settimeout(10)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return True
    except ConnectionResetError:
        return True


# ----------------------------------------------------------------------------- the tests


def test_a_cluster_with_a_secret_forms_replicates_and_survives_a_restart(broker_factory,
                                                                         tmp_path):
    path, _ = secret_file(tmp_path)
    # Authorization on too (these plaintext clients are the superuser): the brokers' own calls
    # and the forwarded group read below are judged by the principal they carry.
    brokers = start_cluster(broker_factory, extra_args=[
        "--cluster-secret-file", path, "--authorization", "--superusers", "User:ANONYMOUS",
        "--http-auth", "none"])
    wait_formed(brokers)
    topic = unique_topic("auth")
    create(brokers[0], topic, 1, 3)
    wait_topic_everywhere(brokers, topic, 1)
    traffic = Traffic(brokers, topic)
    traffic.check("before")

    def in_sync(b):
        p = metadata(b, topic).topics[topic].partitions[0]
        return sorted(p.isrs) == [1, 2, 3]

    wait_for("every replica in sync", lambda: all(in_sync(b) for b in brokers))
    # A follower restarts, catches up over the authenticated RPC, and is in sync again.
    leader = metadata(brokers[0], topic).topics[topic].partitions[0].leader
    follower = brokers[leader % 3]
    follower.kill9()
    traffic.check("follower-down")
    follower.start()
    wait_formed(brokers)
    wait_for("the restarted follower in sync", lambda: all(in_sync(b) for b in brokers))
    traffic.check("after-restart")
    # Consumer groups work too: a broker that does not coordinate a group describes it on
    # the coordinator's behalf, over the RPC (handlers/forward.rs).
    group = unique_topic("g")
    c = Consumer({"bootstrap.servers": brokers[0].bootstrap, "group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    c.close()
    node = coordinator(brokers, group)
    other = brokers[node % 3]
    with Conn.to(other.bootstrap) as conn:
        assert describe_groups_v0(conn, group) == (0, "Empty", [])
    for b in brokers:
        assert rejected(b, "auth_bad_mac") == 0
        assert "panicked" not in b.log_text()


def test_a_process_without_the_secret_cannot_join_or_inject(broker_factory, tmp_path):
    path, secret = secret_file(tmp_path)
    wrong_path, _ = secret_file(tmp_path, "another-secret")
    brokers = start_cluster(broker_factory, extra_args=["--cluster-secret-file", path])
    wait_formed(brokers)
    topic = unique_topic("guarded")
    create(brokers[0], topic, 1, 3)
    view = wait_topic_everywhere(brokers, topic, 1)
    traffic = Traffic(brokers, topic)
    traffic.check("before")
    seeds = brokers[0].extra_args[brokers[0].extra_args.index("--seeds") + 1]

    # A fourth broker without the secret, then a fifth with another one, given the seeds.
    # (One at a time: each reason is logged at warn once a second.)
    def intruder(node: int, *args: str):
        return broker_factory(args=["--node-id", str(node), "--rpc-addr",
                                    f"127.0.0.1:{free_port()}", "--seeds", seeds, *args])

    def left_out(x):
        # Nobody learns it and it learns nobody, whatever time it is given.
        time.sleep(2)
        for b in brokers:
            assert sorted(controller_roles(b)) == [1, 2, 3]
            assert sorted(metadata(b).brokers) == [1, 2, 3]
        assert sorted(controller_roles(x)) == [int(x.extra_args[1])]
        assert "set the same --cluster-secret-file on every broker" in x.log_text()
        x.stop()
        time.sleep(1.1)

    none = intruder(4)
    wait_rejected(brokers, "auth_failed", "did not authenticate (it sent a Hello frame first)")
    wait_for("it says why", lambda: "requires cluster authentication" in none.log_text())
    left_out(none)
    wrong = intruder(5, "--cluster-secret-file", wrong_path)
    wait_rejected(brokers, "auth_failed", "this broker's proof does not match its cluster secret")
    wait_for("it says why", lambda: "its proof does not match this broker's cluster secret"
             in wrong.log_text())
    left_out(wrong)

    # The forged frames of test_cluster_forged.py, without a handshake: a Propose deleting
    # the topic is answered with the refusal, Raft messages are dropped with the connection.
    rec = next(t for t in meta_file(brokers[0])["topics"] if t["name"] == topic)
    delete = json.dumps({"DeleteTopic": {"name": topic, "id": rec["id"]}}).encode()
    head = struct.pack(">H", len(topic)) + topic.encode() + struct.pack(">i", 0)
    before = [rejected(b, "auth_failed") for b in brokers]
    for b in brokers:
        reply = send(b, PROPOSE, delete, answer=True)
        assert reply is not None and b"requires cluster authentication" in reply, reply
    wait_rejected(brokers, "auth_failed", "did not authenticate (it sent a Propose frame first)")
    time.sleep(1.1)
    for i, b in enumerate(brokers):
        me, other = i + 1, 1 if i != 0 else 2
        send(b, RAFT, raft_message(MSG_HEARTBEAT, me, other, 1 << 40, commit=1 << 40))
        send(b, RAFT, raft_message(MSG_APPEND, me, other, 1, index=1 << 20))
    wait_rejected(brokers, "auth_failed", "did not authenticate (it sent a Raft frame first)")
    time.sleep(1.1)
    for i, b in enumerate(brokers):
        me, other = i + 1, 1 if i != 0 else 2
        send(b, PARTITION_RAFT, head + raft_message(MSG_HEARTBEAT, me, other, 1 << 40,
                                                    commit=1 << 40))
    wait_rejected(brokers, "auth_failed",
                  "did not authenticate (it sent a PartitionRaft frame first)")
    for b, n in zip(brokers, before):
        assert rejected(b, "auth_failed") >= n + 4
        # The guards behind the authentication never saw them.
        assert rejected(b, "raft_term") == 0 and rejected(b, "raft_entries") == 0
    traffic.check("after-forgeries")
    assert wait_topic_everywhere(brokers, topic, 1) == view

    # With the secret, a session this test opens is answered (the protocol is as described).
    b = brokers[1]
    port = rpc_port(b)
    s = Session(port, secret)
    s.send_raw(s.sealed(SNAPSHOT_READ, snapshot_read("no-such-topic")))
    kind, body = s.recv()
    assert kind == SNAPSHOT_CHUNK and body[0] == 1 and b"no replica of no-such-topic" in body
    captured = s.sent
    s.close()
    time.sleep(1.1)

    # That session's bytes replayed byte for byte: the broker picks a new nonce, the old
    # proof answers nothing it asked, and the connection closes without an answer.
    n = rejected(b, "auth_failed")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as r:
        r.sendall(captured)
        got = read_frame(r)
        assert got is not None and got[1] == AUTH_CHALLENGE
        assert closed(r), "the replayed session was answered"
    wait_rejected([b], "auth_failed", "its proof does not match this broker's cluster secret")
    assert rejected(b, "auth_failed") > n

    # Within an authenticated connection: a frame sent twice (replayed), one with a flipped
    # byte (tampered) and one whose MAC was made for a later position (reordered) each close
    # it, unanswered.
    def refused_after(make):
        s = Session(port, secret)
        first = s.sealed(SNAPSHOT_READ, snapshot_read("x"))
        s.send_raw(first)
        assert s.recv()[0] == SNAPSHOT_CHUNK
        s.send_raw(make(s, first))
        assert closed(s.s)
        s.close()

    bad_mac = rejected(b, "auth_bad_mac")
    refused_after(lambda s, first: first)

    def tampered(s, first):
        f = bytearray(s.sealed(SNAPSHOT_READ, snapshot_read("x")))
        f[8] ^= 1
        return bytes(f)
    refused_after(tampered)

    def reordered(s, first):
        s.sealed(SNAPSHOT_READ, snapshot_read("skipped"))
        return s.sealed(SNAPSHOT_READ, snapshot_read("x"))
    refused_after(reordered)
    wait_for("three MAC failures counted", lambda: rejected(b, "auth_bad_mac") >= bad_mac + 3)
    assert "fails its MAC" in b.log_text()

    # Nothing changed: the topic, its replicas, and produce and consume on it.
    assert topic in metadata(brokers[0]).topics
    assert wait_topic_everywhere(brokers, topic, 1) == view
    traffic.check("after-replays")
    for x in brokers + [none, wrong]:
        assert "panicked" not in x.log_text()


def test_a_short_secret_is_refused_at_start(broker_factory, tmp_path):
    path = tmp_path / "short"
    path.write_text("too-short\n")
    path.chmod(0o600)
    b = broker_factory(args=["--cluster-secret-file", str(path)], start=False)
    with pytest.raises(BrokerDied, match="at least 32"):
        b.start(timeout=20)
    b.stop()
