"""Listeners hold under abuse: connection limits (total and per IP) close extra
connections at once, HTTP listeners close slow and idle connections, and a
client asking for huge fetches without reading pins no more than its fetch
memory budget while others keep producing and consuming.

Every test connects from 127.0.0.1, so a per-IP limit applies to the
well-behaved clients too: the tests hold limit-1 connections, show the next
works and the one after is closed, then release them and show recovery."""

from __future__ import annotations

import re
import socket
import time

from confluent_kafka import Producer

import kwire
from conftest import assert_serves, consume_all, create_topic, http_get, produce

LIMIT = 20


def refused(broker, listener: str) -> int:
    _, text, _ = http_get(f"{broker.admin_url}/metrics")
    m = re.search(r'icestream_connections_refused_total\{listener="%s"\} (\d+)' % listener, text)
    return int(m.group(1)) if m else 0


def open_kafka(broker, n: int) -> list[kwire.Conn]:
    """n connections, each shown to be served (ApiVersions answered)."""
    conns = []
    for _ in range(n):
        c = kwire.Conn.to(broker.bootstrap, timeout=5.0)
        kwire.api_versions(c)
        conns.append(c)
    return conns


def test_kafka_per_ip_limit_closes_extra_connections_and_recovers(broker_factory):
    broker = broker_factory(args=["--kafka-max-connections-per-ip", str(LIMIT)])
    topic = create_topic(broker)
    held = open_kafka(broker, LIMIT - 1)
    try:
        # The last slot serves a request...
        last = open_kafka(broker, 1)[0]
        # ...and the one after it is closed at once, not queued.
        started = time.monotonic()
        with kwire.Conn.to(broker.bootstrap, timeout=5.0) as extra:
            assert extra.closed_by_peer(within=5.0), "connection over the limit was kept"
        assert time.monotonic() - started < 2.0
        assert refused(broker, "kafka") >= 1
        last.close()
    finally:
        for c in held:
            c.close()
    # Slots are freed with the connections: a real client works again.
    time.sleep(0.5)
    produce(broker, topic, [b"after-limit"])
    assert [m.value() for m in consume_all(broker, topic)] == [b"after-limit"]


def test_kafka_total_limit(broker_factory):
    broker = broker_factory(args=["--kafka-max-connections", "5"])
    held = open_kafka(broker, 5)
    try:
        with kwire.Conn.to(broker.bootstrap, timeout=5.0) as extra:
            assert extra.closed_by_peer(within=5.0)
    finally:
        for c in held:
            c.close()
    time.sleep(0.5)
    open_kafka(broker, 1)[0].close()
    assert refused(broker, "kafka") == 1


def http_listeners(broker) -> dict[str, int]:
    return {
        "admin": broker.admin_port,
        "schema_registry": broker.schema_registry_port,
        "iceberg_catalog": broker.iceberg_catalog_port,
    }


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed `sock` (reading and discarding), or None."""
    start = time.monotonic()
    deadline = start + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            return None
        except OSError:
            return time.monotonic() - start
    return None


def test_http_slowloris_and_idle_connections_are_closed(broker_factory):
    broker = broker_factory(args=["--http-header-read-timeout-ms", "1000",
                                  "--http-idle-timeout-ms", "2000"])
    for name, port in http_listeners(broker).items():
        # A partial header line, then nothing: closed after the header timeout.
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /v1/status/ready HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        took = closed_within(slow, 10.0)
        slow.close()
        assert took is not None, f"{name}: slowloris connection held open"
        assert 0.7 <= took <= 4.0, f"{name}: closed after {took:.1f}s"
        # A kept-alive connection after a full request: closed after the idle timeout.
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.settimeout(5.0)
        assert idle.recv(65536).startswith(b"HTTP/1.1 ")
        took = closed_within(idle, 10.0)
        idle.close()
        assert took is not None, f"{name}: idle keep-alive connection held open"
        assert 1.5 <= took <= 5.0, f"{name}: idle connection closed after {took:.1f}s"
    # Still serving.
    assert http_get(f"{broker.admin_url}/v1/status/ready")[0] == 200
    assert http_get(f"{broker.schema_registry_url}/subjects")[0] == 200


def test_http_per_ip_limit(broker_factory):
    broker = broker_factory(args=["--http-max-connections-per-ip", "4"])
    port = broker.schema_registry_port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        assert http_get(f"{broker.schema_registry_url}/subjects")[0] == 200
        held.append(socket.create_connection(("127.0.0.1", port)))
        extra = socket.create_connection(("127.0.0.1", port))
        assert closed_within(extra, 3.0) is not None, "connection over the limit was kept"
        extra.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert http_get(f"{broker.schema_registry_url}/subjects")[0] == 200
    assert refused(broker, "schema_registry") >= 1


def fetch_v4(correlation_id: int, topic: str, partitions: int, max_bytes: int,
             max_wait_ms: int = 500) -> bytes:
    """Fetch v4 of every partition from offset 0, asking for `max_bytes` each and in all."""
    body = (kwire.i32(-1) + kwire.i32(max_wait_ms) + kwire.i32(1) + kwire.i32(max_bytes)
            + kwire.i8(0) + kwire.i32(1) + kwire.string(topic) + kwire.i32(partitions))
    for p in range(partitions):
        body += kwire.i32(p) + kwire.i64(0) + kwire.i32(max_bytes)
    return kwire.frame(kwire.request_header(1, 4, correlation_id) + body)


def test_fetch_that_is_never_read_pins_only_its_budget(broker_factory):
    budget = 16 << 20
    broker = broker_factory(args=["--fetch-memory-bytes-per-connection", str(budget),
                                  "--fetch-memory-bytes", str(128 << 20),
                                  "--kafka-write-stall-timeout-ms", "8000"])
    partitions = 4
    topic = create_topic(broker, partitions=partitions)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20,
                  "batch.size": 1 << 20, "message.max.bytes": 2 << 20, "acks": 1})
    value = b"x" * (256 << 10)
    for i in range(4 * 16 * partitions):  # 16 MiB per partition
        p.produce(topic, value, partition=i % partitions)
        p.poll(0)
    assert p.flush(60) == 0
    healthy = create_topic(broker)
    produce(broker, healthy, [b"before"])
    time.sleep(1.0)
    before = broker.rss_bytes()

    # 32 pipelined fetches of up to 2 GiB, never read: without a budget each would be
    # built in full (tens of MiB each) and held.
    abuser = socket.create_connection(("127.0.0.1", broker.kafka_port))
    abuser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for i in range(32):
        abuser.sendall(fetch_v4(i, topic, partitions, 0x7FFFFFFF))
    time.sleep(3.0)
    during = broker.rss_bytes()
    try:
        # Others are served meanwhile.
        produce(broker, healthy, [b"during"])
        assert [m.value() for m in consume_all(broker, healthy)] == [b"before", b"during"]
        grew = during - before
        assert grew < budget + (48 << 20), (
            f"RSS grew {grew >> 20} MiB with one non-reading fetcher "
            f"(budget {budget >> 20} MiB)")
        # The stalled connection is closed and its fetch memory freed.
        deadline = time.monotonic() + 30
        while metric(broker, "icestream_fetch_memory_bytes") != 0:
            assert time.monotonic() < deadline, "fetch memory of a stalled client never freed"
            time.sleep(0.5)
    finally:
        abuser.close()
    assert_serves(broker, healthy, [b"before", b"during"])


def metric(broker, name: str) -> int:
    _, text, _ = http_get(f"{broker.admin_url}/metrics")
    m = re.search(r"^%s (\d+)" % name, text, re.M)
    assert m, f"no {name} in /metrics"
    return int(m.group(1))


def test_pipelined_fetches_all_answer_within_a_small_budget(broker_factory):
    """A long-polling fetch followed on the same connection by one that fills the budget:
    both are answered, in order (the later one must not hold memory the earlier needs)."""
    broker = broker_factory(args=["--fetch-memory-bytes-per-connection", str(1 << 20)])
    empty, full = create_topic(broker), create_topic(broker)
    produce(broker, full, [b"y" * (300 << 10)] * 8)
    with kwire.Conn.to(broker.bootstrap, timeout=20.0) as c:
        c.send(fetch_v4(1, empty, 1, 1 << 20, max_wait_ms=5000))
        c.send(fetch_v4(2, full, 1, 64 << 20))
        time.sleep(0.5)
        produce(broker, empty, [b"wake"])
        assert c.recv_response()[0] == 1
        assert c.recv_response()[0] == 2
