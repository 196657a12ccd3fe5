"""TLS between brokers (issue 20, `--rpc-tls`): three brokers with certificates from one test CA
form a cluster, replicate an RF=3 topic and fail over; what crosses the network between them is
encrypted (a proxy between the brokers captures every RPC byte: a produced record's value never
appears in it, while without --rpc-tls it does); a process speaking plaintext RPC (a broker
without --rpc-tls, or test_cluster_forged.py's forged frames) is refused and told why, and a
client whose certificate another CA signed is refused at the TLS handshake.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid

import pytest

from confluent_kafka import Consumer, TopicPartition

from cluster import metadata, wait_formed
from conftest import BrokerDied, consume_all, free_port, produce, unique_topic
from kwire import Conn
from securekit import issue_broker_cert, make_pki, rpc_tls_args
from test_cluster import create, wait_topic_everywhere
from test_cluster_auth import SNAPSHOT_CHUNK, SNAPSHOT_READ, frame, read_frame, snapshot_read
from test_cluster_forged import (MSG_APPEND, MSG_HEARTBEAT, PROPOSE, RAFT, meta_file,
                                 raft_message, rejected, rpc_port, send, wait_rejected)
from test_cluster_groups import coordinator, describe_groups_v0
from test_cluster_reassign import wait_for


class CaptureProxy:
    """A loopback TCP proxy in front of one broker's RPC listener (its --advertised-rpc-addr,
    so every other broker calls it through here) that keeps every byte it relays, both ways."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.captured = bytearray()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def bytes(self) -> bytes:
        with self.lock:
            return bytes(self.captured)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket):
        try:
            while chunk := src.recv(1 << 16):
                with self.lock:
                    self.captured += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.listener.close()


def start_proxied_cluster(broker_factory, args_of):
    """Three brokers whose RPC is reached through a CaptureProxy each (their advertised RPC
    addresses and the seeds); `args_of(i)` adds broker i's flags. Returns (brokers, proxies)."""
    rpc_ports = [free_port() for _ in range(3)]
    proxies = [CaptureProxy(p) for p in rpc_ports]
    seeds = ",".join(p.addr for p in proxies)
    brokers = [broker_factory(args=[
        "--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc_ports[i]}",
        "--advertised-rpc-addr", proxies[i].addr, "--seeds", seeds, *args_of(i)], start=False)
        for i in range(3)]
    for b in brokers:
        b.start()
    wait_formed(brokers)
    return brokers, proxies


def captured(proxies) -> bytes:
    return b"".join(p.bytes() for p in proxies)


def markers(label: str, n: int = 20) -> list[bytes]:
    """Record values no other bytes on the wire could contain by chance."""
    return [f"{label}-{uuid.uuid4().hex}".encode() for _ in range(n)]


def tls_client(port: int, ca: str, cert: str | None, key: str | None) -> ssl.SSLSocket:
    """A TLS connection to a broker's RPC port trusting `ca`, presenting `cert` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def snapshot_answer(port: int, ca: str, cert: str | None, key: str | None):
    """A SnapshotRead over TLS as this client: the answer frame's kind, or the error with
    which the connection failed (in the handshake, or the broker's alert right after it)."""
    try:
        with tls_client(port, ca, cert, key) as s:
            s.sendall(frame(SNAPSHOT_READ, snapshot_read("no-such-topic")))
            got = read_frame(s)
            return "closed" if got is None else got[1]
    except (ssl.SSLError, ConnectionError) as e:
        return e


def test_brokers_replicate_over_mutual_tls_and_refuse_what_has_no_certificate(
        broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    # Authorization on too (these plaintext clients are the superuser): a group read forwarded
    # to the coordinator carries its caller's principal, which only an authenticated RPC may.
    brokers, proxies = start_proxied_cluster(
        broker_factory, lambda i: rpc_tls_args(pki, f"broker-{i + 1}") + [
            "--authorization", "--superusers", "User:ANONYMOUS", "--http-auth", "none"])
    topic = unique_topic("rpctls")
    create(brokers[0], topic, 1, 3)
    view = wait_topic_everywhere(brokers, topic, 1)
    sent = markers("before")
    # acks=all: acknowledged once the followers have the records, through the proxies.
    produce(brokers[0], topic, sent)
    # A broker that does not coordinate a group describes it on the coordinator's behalf, over
    # the RPC (handlers/forward.rs; with authorization and no authenticated RPC it would not).
    group = unique_topic("g")
    c = Consumer({"bootstrap.servers": brokers[0].bootstrap, "group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    c.close()
    node = coordinator(brokers, group)
    with Conn.to(brokers[node % 3].bootstrap) as conn:
        assert describe_groups_v0(conn, group) == (0, "Empty", [])

    # (a) A broker without --rpc-tls given the seeds neither joins nor goes unexplained.
    seeds = ",".join(p.addr for p in proxies)
    plain = broker_factory(args=["--node-id", "4", "--rpc-addr", f"127.0.0.1:{free_port()}",
                                 "--seeds", seeds])
    wait_for("the plaintext broker says why",
             lambda: "its RPC requires TLS (--rpc-tls) and this broker speaks plaintext"
             in plain.log_text())
    wait_for("the cluster says why",
             lambda: any("it speaks plaintext: set --rpc-tls on every broker" in b.log_text()
                         for b in brokers))
    for b in brokers:
        assert sorted(metadata(b).brokers) == [1, 2, 3]
    plain.stop()
    # Refusals are logged at warn once a second per reason: the next ones in a new second.
    time.sleep(1.1)

    # (a) The forged frames of test_cluster_forged.py, in plaintext: a proposal deleting the
    # topic is answered with the refusal, Raft messages go nowhere; each is counted.
    rec = next(t for t in meta_file(brokers[0])["topics"] if t["name"] == topic)
    delete = json.dumps({"DeleteTopic": {"name": topic, "id": rec["id"]}}).encode()
    before = [rejected(b, "auth_failed") for b in brokers]
    for i, b in enumerate(brokers):
        reply = send(b, PROPOSE, delete, answer=True)
        assert reply is not None and b"its RPC requires TLS (--rpc-tls)" in reply, reply
        me, other = i + 1, 1 if i != 0 else 2
        send(b, RAFT, raft_message(MSG_HEARTBEAT, me, other, 1 << 40, commit=1 << 40))
        send(b, RAFT, raft_message(MSG_APPEND, me, other, 1, index=1 << 20))
    wait_rejected(brokers, "auth_failed", "it speaks plaintext: set --rpc-tls on every broker")
    for b, n in zip(brokers, before):
        wait_for("the forged connections counted", lambda: rejected(b, "auth_failed") >= n + 3)
        assert rejected(b, "raft_term") == 0 and rejected(b, "raft_entries") == 0

    # (b) TLS clients of the RPC port: a broker certificate of the cluster's CA is served (the
    # port speaks the RPC inside TLS); one another CA signed, or none, is refused in the
    # handshake and the broker logs why.
    other = make_pki(tmp_path / "other", ca_cn="Another CA")
    time.sleep(1.1)
    port = rpc_port(brokers[1])
    assert snapshot_answer(port, pki.ca, *issue_broker_cert(pki, "tester")) == SNAPSHOT_CHUNK
    # Refused: no frame is answered (the handshake fails, or the broker's alert ends it).
    refused = snapshot_answer(port, pki.ca, *issue_broker_cert(other, "intruder"))
    assert not isinstance(refused, int), refused
    wait_for("the broker says why", lambda: "its client certificate is not signed by a CA in "
             "this broker's --tls-ca-file" in brokers[1].log_text())
    time.sleep(1.1)
    no_cert = snapshot_answer(port, pki.ca, None, None)
    assert not isinstance(no_cert, int), no_cert
    wait_for("the broker says why", lambda: "it presented no certificate"
             in brokers[1].log_text())
    # A Kafka client's certificate of the same CA (clientAuth only) is no broker's.
    time.sleep(1.1)
    client = snapshot_answer(port, pki.ca, pki.client_cert, pki.client_key)
    assert not isinstance(client, int), client
    wait_for("the broker says why", lambda: "its client certificate lacks an extended key "
             "usage a broker's has" in brokers[1].log_text())
    # And the broker's certificate is not one another CA's clients trust.
    try:
        tls_client(port, other.ca, None, None).close()
        raise AssertionError("a client trusting another CA accepted the broker's certificate")
    except ssl.SSLCertVerificationError:
        pass

    # Nothing changed; then the leader dies and the others carry on, over TLS.
    assert wait_topic_everywhere(brokers, topic, 1) == view
    more = markers("after-refusals")
    produce(brokers[0], topic, more)
    sent += more
    leader = metadata(brokers[0], topic).topics[topic].partitions[0].leader
    brokers[leader - 1].kill9()
    survivors = [b for b in brokers if b.running()]
    wait_for("a new leader", lambda: metadata(survivors[0], topic).topics[topic]
             .partitions[0].leader not in (-1, leader))
    more = markers("after-failover")
    produce(survivors[0], topic, more)
    sent += more
    for b in survivors:
        got = [m.value() for m in consume_all(b, topic, [0])]
        assert set(sent) <= set(got), f"{len(set(sent) - set(got))} acknowledged records missing"

    # (c) Every byte between the brokers went through the proxies: no record's value in it.
    wire = captured(proxies)
    assert sum(p.connections for p in proxies) >= 4 and len(wire) > 10_000, len(wire)
    leaked = [v for v in sent if v in wire]
    assert not leaked, f"{len(leaked)} record values readable on the wire, e.g. {leaked[0]}"
    for b in survivors + [plain]:
        assert "panicked" not in b.log_text()


def test_without_rpc_tls_the_records_cross_the_network_readable(broker_factory):
    """The control of the capture above: the same cluster without --rpc-tls, and the proxies
    see the produced values (so the check there can fail)."""
    brokers, proxies = start_proxied_cluster(broker_factory, lambda i: [])
    topic = unique_topic("plainrpc")
    create(brokers[0], topic, 1, 3)
    wait_topic_everywhere(brokers, topic, 1)
    sent = markers("plain")
    produce(brokers[0], topic, sent)
    wire = captured(proxies)
    assert all(v in wire for v in sent)


def test_a_missing_ca_file_is_refused_at_start(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    args = rpc_tls_args(pki, "broker-1")
    args[args.index("--tls-ca-file") + 1] = str(tmp_path / "missing-ca.pem")
    b = broker_factory(args=["--node-id", "1", "--rpc-addr", f"127.0.0.1:{free_port()}",
                             "--seeds", "127.0.0.1:1", *args], start=False)
    with pytest.raises(BrokerDied, match=r"--rpc-tls .*--tls-ca-file.*missing-ca.pem"):
        b.start(timeout=20)
    b.stop()
