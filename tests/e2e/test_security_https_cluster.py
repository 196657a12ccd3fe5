"""HTTPS between brokers and client certificates on the HTTP APIs.

A three-broker cluster with --http-tls and --tls-client-auth required: a schema registered
through a broker that is not the registry's writer (forwarded over https, the forwarding broker
presenting its own certificate) is served by every broker; an Iceberg topic's rounds reach the
committer over https and its rows are read through each broker's catalog with pyiceberg. A
single broker with --http-tls and client certificates: the certificate's subject DN is the
principal (a superuser's certificate opens the admin API with no password, another's is
refused), a missing certificate fails the handshake (required) or gets 401 (requested), and
an Authorization header wins over the certificate."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchTableError

from cluster import metadata, wait_formed
from conftest import broker_binary, free_port, produce
from securekit import Pki, issue_broker_cert, make_pki, ssl_context, tls_args
from test_cluster import wait_topic_everywhere
from test_cluster_auth import secret_file
from test_cluster_schema_registry import UNAVAILABLE, record, schemas_leader
from test_iceberg_topics import LAG_MS, assert_exact, high_watermarks

ALICE = "User:CN=alice,O=acme"  # securekit's client certificate (O=acme, CN=alice)


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def call(url: str, pki: Pki, method: str = "GET", body: dict | None = None,
         cert: tuple[str, str] | None = None, headers: dict | None = None) -> tuple[int, str]:
    """(status, body) over https trusting the test CA, presenting `cert` (a PEM pair) if given;
    HTTP error statuses are returned, TLS failures raised."""
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(*cert)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def alice(pki: Pki) -> tuple[str, str]:
    return pki.client_cert, pki.client_key


def https_urls(b):
    return (f"https://127.0.0.1:{b.admin_port}", f"https://127.0.0.1:{b.schema_registry_port}",
            f"https://127.0.0.1:{b.iceberg_catalog_port}")


def serve_mtls(b, pki: Pki, cert: tuple[str, str] | None):
    """Makes `b` (not started) wait for its admin API over https, presenting `cert`."""

    def wait_ready(timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if b.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {b.proc.returncode}:\n{b.log_tail()}")
            try:
                status, body = call(f"{https_urls(b)[0]}/v1/status/ready", pki, cert=cert)
                if status == 200:
                    return
                last = f"HTTP {status} {body}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise TimeoutError(f"broker not ready over https after {timeout}s ({last})")

    b.wait_ready = wait_ready
    return b


def registry_client(b, pki: Pki) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": https_urls(b)[1], "ssl.ca.location": pki.ca,
                                 "ssl.certificate.location": pki.client_cert,
                                 "ssl.key.location": pki.client_key})


def catalog(b, pki: Pki) -> RestCatalog:
    """pyiceberg with the client certificate. Its default (legacy OAuth2) auth sends
    `Authorization: Bearer None` without a token, which would win over the certificate: the
    `noop` auth manager sends none."""
    return RestCatalog("icestream", uri=https_urls(b)[2], auth={"type": "noop"},
                       ssl={"cabundle": pki.ca,
                            "client": {"cert": pki.client_cert, "key": pki.client_key}})


@pytest.fixture(autouse=True)
def _no_ca_bundle_env(monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own CA (the
    test CA pyiceberg is given)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def wait_rows(b, pki: Pki, topic: str, n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        try:
            rows = catalog(b, pki).load_table(("kafka", topic)).scan().to_arrow().to_pylist()
        except NoSuchTableError:
            rows = []
        if len(rows) >= n:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"{topic} has {len(rows)} rows through {https_urls(b)[2]}, want {n}")


def test_a_cluster_calls_its_registry_and_committer_over_https(broker_factory, pki, tmp_path):
    peer = issue_broker_cert(pki, "peer")
    secret, _ = secret_file(tmp_path)
    rpc = [free_port() for _ in range(3)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in rpc)
    brokers = []
    for i in range(3):
        b = broker_factory(start=False, args=[
            "--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc[i]}", "--seeds", seeds,
            "--object-store-dir", str(tmp_path / "lake"),
            "--tls-cert-file", peer[0], "--tls-key-file", peer[1], "--tls-ca-file", pki.ca,
            "--tls-client-auth", "required", "--http-tls",
            # Alice (her certificate) administers; the PLAINTEXT Kafka clients here are
            # anonymous. With a cluster secret brokers sign what they send each other.
            "--authorization", "--superusers", f"{ALICE};User:ANONYMOUS",
            "--cluster-secret-file", secret])
        brokers.append(serve_mtls(b, pki, alice(pki)))
    for b in brokers:
        b.start()
    wait_formed(brokers)

    # The first write makes `_schemas` (retried while it has no writer yet); then a schema
    # registered through a broker that is not the writer is forwarded to it over https, the
    # forwarding broker vouching for alice (her certificate is not the one the writer sees):
    # without that the writer would refuse the write with 401.
    deadline = time.monotonic() + 40
    while True:
        try:
            registry_client(brokers[0], pki).register_schema(
                "first-value", Schema(json.dumps(record("First")), "AVRO"))
            break
        except SchemaRegistryError as e:
            assert e.error_code in UNAVAILABLE and time.monotonic() < deadline, e
            time.sleep(0.3)
    leader = schemas_leader(brokers)
    other = next(b for i, b in enumerate(brokers, start=1) if i != leader)
    schema = Schema(json.dumps(record("Payment", ("id", "amount"))), "AVRO")
    sid = registry_client(other, pki).register_schema("payments-value", schema)
    for b in brokers:
        deadline = time.monotonic() + 20
        while True:
            try:
                got = registry_client(b, pki).get_latest_version("payments-value")
                break
            except SchemaRegistryError as e:
                assert e.http_status_code == 404 and time.monotonic() < deadline, e
                time.sleep(0.1)
        assert got.schema_id == sid and json.loads(got.schema.schema_str)["name"] == "Payment"

    # An Iceberg topic: each partition's leader hands its rounds to the committer (the leader
    # of partition 0) over https; the rows are read through every broker's catalog.
    topic = "https_lake"
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(topic, 3, 2, config={
        "iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS)})],
        request_timeout=30)[topic].result(40)
    wait_topic_everywhere(brokers, topic, 3)
    produce(brokers[0], topic, [{"key": str(i).encode(), "value": f"v{i}".encode(),
                                 "partition": i % 3} for i in range(150)],
            **{"enable.idempotence": True})
    leaders = {p.id: p.leader for p in metadata(brokers[0], topic).topics[topic].partitions
               .values()}
    assert len(set(leaders.values())) > 1, \
        f"one broker leads every partition ({leaders}): no round goes to another broker"
    highs = high_watermarks(brokers[0], topic, 3)
    assert sum(highs.values()) == 150
    for b in brokers:
        assert_exact(wait_rows(b, pki, topic, 150), highs)
    # Only the committer committed: the other leaders' rows came to it as rounds, over https.
    for i, b in enumerate(brokers, start=1):
        status, body = call(f"{https_urls(b)[0]}/v1/iceberg/topics/{topic}", pki,
                            cert=alice(pki))
        assert status == 200, body
        st = json.loads(body)
        if i == leaders[0]:
            assert st["committer"]["this_broker"] and st["committer"]["commits"] >= 1, st
        else:
            assert st["committer"]["commits"] == 0 and st["records_written"] == 0, st


def test_a_cluster_with_http_tls_needs_a_ca_file(pki, tmp_path):
    r = subprocess.run([str(broker_binary()), "serve", "--data-dir", str(tmp_path / "d"),
                        "--node-id", "1", "--seeds", "127.0.0.1:1", *tls_args(pki),
                        "--http-tls"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "--http-tls with --seeds needs --tls-ca-file" in r.stderr, r.stderr


def test_client_certificate_is_the_principal_on_the_http_apis(broker_factory, pki):
    bob = (str(pki.dir / "bob.pem"), str(pki.dir / "bob.key"))
    pki.issue(*bob, server=False, O="acme", CN="bob")
    b = broker_factory(start=False, args=[*tls_args(pki, "required"), "--http-tls",
                                          "--authorization", "--superusers", ALICE])
    serve_mtls(b, pki, alice(pki)).start()
    admin, registry, _ = https_urls(b)
    # Alice's certificate, no password: a superuser, on the admin API and the registry.
    status, body = call(f"{admin}/v1/security/users", pki, cert=alice(pki))
    assert status == 200, body
    status, body = call(f"{registry}/subjects/s-value/versions", pki, "POST",
                        {"schema": json.dumps(record("S"))}, cert=alice(pki))
    assert status == 200 and "id" in json.loads(body), body
    # pyiceberg with the certificate (and no token) through the catalog.
    assert catalog(b, pki).list_namespaces() == []
    # Bob's certificate is another principal: not a superuser, no ACL.
    status, body = call(f"{admin}/v1/security/users", pki, cert=bob)
    assert status == 403 and "User:CN=bob,O=acme is not a superuser" in body, body
    status, body = call(f"{registry}/subjects", pki, cert=bob)
    assert status == 200 and json.loads(body) == [], body
    # An Authorization header wins over the certificate: wrong credentials are refused.
    status, body = call(f"{admin}/v1/security/users", pki, cert=alice(pki),
                        headers={"Authorization": "Basic bm9ib2R5Om5vcGU="})
    assert status == 401, body
    # No certificate: the handshake fails.
    with pytest.raises(OSError) as e:
        call(f"{admin}/v1/status/ready", pki)
    assert isinstance(e.value, (ssl.SSLError, ConnectionError)) or \
        isinstance(getattr(e.value, "reason", None), (ssl.SSLError, ConnectionError)), e.value


def test_a_requested_certificate_is_optional(broker_factory, pki):
    b = broker_factory(start=False, args=[*tls_args(pki, "requested"), "--http-tls",
                                          "--authorization", "--superusers", ALICE])
    serve_mtls(b, pki, None).start()
    admin = https_urls(b)[0]
    # Without a certificate or credentials: authentication required.
    status, body = call(f"{admin}/v1/security/users", pki)
    assert status == 401 and "authentication required" in body, body
    status, body = call(f"{admin}/v1/security/users", pki, cert=alice(pki))
    assert status == 200, body
