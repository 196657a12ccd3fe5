"""Kafka listeners and TLS: SSL listeners served to confluent-kafka, kafka-python and kcat;
plaintext clients and clients without a required certificate refused; each listener's
advertised address in Metadata (one broker and a three-broker cluster); the certificate
reloaded when its files change; the HTTP listeners over https (--http-tls)."""

from __future__ import annotations

import http.client
import logging
import subprocess
import time
import urllib.error
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaTimeoutError

from cluster import wait_formed
from conftest import free_port, http_get, unique_topic, which
from securekit import (confluent_ssl, https_get, kafka_python_ssl, kcat_ssl, make_pki,
                       peer_certificate, serve_https, tls_args)


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def ssl_broker(broker_factory, pki, client_auth=None, extra=()):
    """A broker whose only Kafka listener is SSL, on the port conftest chose for Kafka."""
    b = broker_factory(start=False)
    b.extra_args += ["--listeners", f"SSL://127.0.0.1:{b.kafka_port}",
                     *tls_args(pki, client_auth), *extra]
    return b.start()


def create_topic(bootstrap: str, conf: dict, partitions: int = 1) -> str:
    name = unique_topic("tls")
    admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)
    return name


def consume(bootstrap: str, conf: dict, topic: str, n: int, timeout: float = 30) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, **conf})
    c.assign([TopicPartition(topic, 0, 0)])
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            out.append(m.value())
    c.close()
    return out


def produce(bootstrap: str, conf: dict, topic: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", **conf})
    errors = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert errors == []


def client_logs(conf: dict, seconds: float = 3) -> list[str]:
    """What librdkafka logs while a producer with `conf` tries to connect for `seconds`."""
    logs: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            logs.append(record.getMessage())

    logger = logging.getLogger(f"rdkafka-{uuid.uuid4()}")
    logger.addHandler(Collect())
    logger.propagate = False
    p = Producer({**conf, "logger": logger, "reconnect.backoff.max.ms": 500})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        p.poll(0.2)
    return logs


def test_confluent_kafka_kafka_python_and_kcat_over_ssl(broker_factory, pki):
    b = ssl_broker(broker_factory, pki)
    ssl = confluent_ssl(pki)
    topic = create_topic(b.bootstrap, ssl)
    produce(b.bootstrap, ssl, topic, [b"ck-1", b"ck-2"])

    kp = KafkaProducer(bootstrap_servers=b.bootstrap, acks="all", **kafka_python_ssl(pki))
    kp.send(topic, b"kp-1").get(timeout=30)
    kp.close()

    kcat = [which("kcat"), "-b", b.bootstrap, *kcat_ssl(pki)]
    subprocess.run([*kcat, "-P", "-t", topic], input=b"kcat-1\n", check=True, timeout=60)

    want = [b"ck-1", b"ck-2", b"kp-1", b"kcat-1"]
    assert consume(b.bootstrap, ssl, topic, 4) == want

    kc = KafkaConsumer(bootstrap_servers=b.bootstrap, consumer_timeout_ms=10000,
                       **kafka_python_ssl(pki))
    kc.assign([KpTopicPartition(topic, 0)])
    kc.seek_to_beginning()
    got = []
    for m in kc:
        got.append(m.value)
        if len(got) == 4:
            break
    kc.close()
    assert got == want

    out = subprocess.run([*kcat, "-C", "-t", topic, "-o", "beginning", "-e", "-q"],
                         capture_output=True, check=True, timeout=60).stdout
    assert out.decode().splitlines() == [v.decode() for v in want]


def test_plaintext_clients_on_an_ssl_listener_are_refused(broker_factory, pki):
    b = ssl_broker(broker_factory, pki)
    logs = client_logs({"bootstrap.servers": b.bootstrap})
    assert any("Disconnected" in m and "APIVERSION_QUERY" in m for m in logs), logs

    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=b.bootstrap, bootstrap_timeout_ms=5000)

    out = subprocess.run([which("kcat"), "-b", b.bootstrap, "-L", "-m", "5"],
                         capture_output=True, timeout=60)
    assert out.returncode != 0
    # kcat's librdkafka names the likely cause.
    assert b"connecting to a SSL listener?" in out.stderr, out.stderr
    # The broker survived all of it and still serves TLS clients.
    assert create_topic(b.bootstrap, confluent_ssl(pki))


def test_required_client_certificates(broker_factory, pki, tmp_path):
    b = ssl_broker(broker_factory, pki, client_auth="required")
    # No certificate: the handshake is refused.
    logs = client_logs({"bootstrap.servers": b.bootstrap, **confluent_ssl(pki)})
    assert any("alert certificate required" in m for m in logs), logs
    with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
        KafkaProducer(bootstrap_servers=b.bootstrap, bootstrap_timeout_ms=5000,
                      **kafka_python_ssl(pki))
    # A certificate from a CA the broker does not trust: refused too.
    other = make_pki(tmp_path / "other", ca_cn="Another CA")
    foreign = {**confluent_ssl(pki), "ssl.certificate.location": other.client_cert,
               "ssl.key.location": other.client_key}
    logs = client_logs({"bootstrap.servers": b.bootstrap, **foreign})
    assert any("SSL alert" in m for m in logs), logs

    # With the CA's client certificate (User:CN=alice,O=acme) every client works.
    conf = confluent_ssl(pki, client_cert=True)
    topic = create_topic(b.bootstrap, conf)
    produce(b.bootstrap, conf, topic, [b"alice-1"])
    kp = KafkaProducer(bootstrap_servers=b.bootstrap, acks="all",
                       **kafka_python_ssl(pki, client_cert=True))
    kp.send(topic, b"alice-2").get(timeout=30)
    kp.close()
    kcat = [which("kcat"), "-b", b.bootstrap, *kcat_ssl(pki, client_cert=True)]
    subprocess.run([*kcat, "-P", "-t", topic], input=b"alice-3\n", check=True, timeout=60)
    assert consume(b.bootstrap, conf, topic, 3) == [b"alice-1", b"alice-2", b"alice-3"]
    md = AdminClient({"bootstrap.servers": b.bootstrap, **conf}).list_topics(timeout=10)
    assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.kafka_port)]


def test_requested_client_certificates_are_optional(broker_factory, pki):
    b = ssl_broker(broker_factory, pki, client_auth="requested")
    for conf in (confluent_ssl(pki), confluent_ssl(pki, client_cert=True)):
        topic = create_topic(b.bootstrap, conf)
        produce(b.bootstrap, conf, topic, [b"v"])
        assert consume(b.bootstrap, conf, topic, 1) == [b"v"]


def test_each_listener_advertises_its_own_address(broker_factory, pki):
    b = broker_factory(start=False)
    ssl_port = free_port()
    b.extra_args += [
        "--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},EXTERNAL://127.0.0.1:{ssl_port}",
        "--listener-security-protocol-map", "EXTERNAL:SSL",
        "--advertised-listeners", f"EXTERNAL://localhost:{ssl_port}",
        *tls_args(pki)]
    b.start()
    plain = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert [(x.host, x.port) for x in plain.brokers.values()] == [("127.0.0.1", b.kafka_port)]
    tls = AdminClient({"bootstrap.servers": f"127.0.0.1:{ssl_port}", **confluent_ssl(pki)})
    md = tls.list_topics(timeout=10)
    assert [(x.host, x.port) for x in md.brokers.values()] == [("localhost", ssl_port)]
    # Clients follow those addresses: through each listener a record goes in and comes out.
    topic = create_topic(b.bootstrap, {})
    produce(b.bootstrap, {}, topic, [b"plain"])
    produce(f"127.0.0.1:{ssl_port}", confluent_ssl(pki), topic, [b"tls"])
    assert consume(f"127.0.0.1:{ssl_port}", confluent_ssl(pki), topic, 2) == [b"plain", b"tls"]
    # FindCoordinator too: a group over the TLS listener commits through its coordinator.
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{ssl_port}", "group.id": "g-tls",
                  "auto.offset.reset": "earliest", **confluent_ssl(pki)})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert got == [b"plain", b"tls"]


def test_certificate_reloaded_when_its_files_change(broker_factory, pki):
    b = ssl_broker(broker_factory, pki)
    first = peer_certificate("127.0.0.1", b.kafka_port, pki)
    assert first.subject.rfc4514_string() == "CN=localhost"
    pki.issue(pki.server_cert, pki.server_key, server=True, serial=4242, CN="localhost",
              O="renewed")
    deadline = time.monotonic() + 30
    cert = first
    while cert.serial_number != 4242 and time.monotonic() < deadline:
        time.sleep(0.5)
        cert = peer_certificate("127.0.0.1", b.kafka_port, pki)
    assert cert.serial_number == 4242, "the broker still presents its first certificate"
    assert cert.subject.rfc4514_string() == "CN=localhost,O=renewed"
    # Clients go on with the new certificate.
    conf = confluent_ssl(pki)
    topic = create_topic(b.bootstrap, conf)
    produce(b.bootstrap, conf, topic, [b"after-reload"])
    assert consume(b.bootstrap, conf, topic, 1) == [b"after-reload"]

    # A broken certificate file is refused: the broker keeps serving the one it has.
    with open(pki.server_cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    deadline = time.monotonic() + 30
    while ("cannot load the changed TLS certificate" not in b.log_text()
           and time.monotonic() < deadline):
        peer_certificate("127.0.0.1", b.kafka_port, pki)
        time.sleep(0.5)
    assert "cannot load the changed TLS certificate" in b.log_text()
    assert peer_certificate("127.0.0.1", b.kafka_port, pki).serial_number == 4242


def test_http_listeners_over_https(broker_factory, pki):
    b = broker_factory(start=False)
    b.extra_args += [*tls_args(pki), "--http-tls"]
    serve_https(b, pki).start()
    status, body = https_get(f"https://127.0.0.1:{b.admin_port}/v1/status/ready", pki)
    assert status == 200, body
    status, body = https_get(f"https://localhost:{b.schema_registry_port}/subjects", pki)
    assert (status, body) == (200, "[]")
    status, body = https_get(f"https://127.0.0.1:{b.iceberg_catalog_port}/v1/config", pki)
    assert status == 200, body
    # Plain http gets no answer from a TLS listener.
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        http_get(f"http://127.0.0.1:{b.admin_port}/v1/status/ready", timeout=5)
    # Kafka stays on its PLAINTEXT listener.
    topic = create_topic(b.bootstrap, {})
    produce(b.bootstrap, {}, topic, [b"x"])


def test_cluster_metadata_per_listener(broker_factory, pki):
    n = 3
    rpc = [free_port() for _ in range(n)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in rpc)
    brokers, ssl_ports = [], []
    for i in range(n):
        b = broker_factory(args=["--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc[i]}",
                                 "--seeds", seeds], start=False)
        port = free_port()
        b.extra_args += [
            "--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},SSL://127.0.0.1:{port}",
            "--advertised-listeners", f"SSL://localhost:{port}", *tls_args(pki)]
        brokers.append(b)
        ssl_ports.append(port)
    for b in brokers:
        b.start()
    wait_formed(brokers)
    plain_want = {i + 1: ("127.0.0.1", b.kafka_port) for i, b in enumerate(brokers)}
    ssl_want = {i + 1: ("localhost", p) for i, p in enumerate(ssl_ports)}

    def seen(bootstrap, conf):
        md = AdminClient({"bootstrap.servers": bootstrap, **conf}).list_topics(timeout=10)
        return {x.id: (x.host, x.port) for x in md.brokers.values()}

    for b, port in zip(brokers, ssl_ports):
        assert seen(b.bootstrap, {}) == plain_want
        # Membership gossip carries the listeners: every broker lists the others' SSL address.
        deadline = time.monotonic() + 30
        got = seen(f"127.0.0.1:{port}", confluent_ssl(pki))
        while got != ssl_want and time.monotonic() < deadline:
            time.sleep(0.3)
            got = seen(f"127.0.0.1:{port}", confluent_ssl(pki))
        assert got == ssl_want
    # A replicated topic produced and consumed over the SSL listeners.
    conf = confluent_ssl(pki)
    boot = ",".join(f"127.0.0.1:{p}" for p in ssl_ports)
    name = unique_topic("tls")
    admin = AdminClient({"bootstrap.servers": boot, **conf})
    for f in admin.create_topics([NewTopic(name, 3, 3)]).values():
        f.result(30)
    produce(boot, conf, name, [b"a", b"b"])
    c = Consumer({"bootstrap.servers": boot, "group.id": "g", "auto.offset.reset": "earliest",
                  **conf})
    c.subscribe([name])
    got, deadline = [], time.monotonic() + 60
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert sorted(got) == [b"a", b"b"]
