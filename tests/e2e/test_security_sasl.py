"""SASL on Kafka listeners (issue 20): SCRAM-SHA-512/256, PLAIN and OAUTHBEARER with real
clients (kcat, confluent-kafka, kafka-python, aiokafka, kafkajs), the errors they print for
a wrong password, an unknown user or a bad token, a client without SASL refused, the v0
handshake with raw tokens, and KIP-368 re-authentication keeping a consumer going.

The user comes from ICESTREAM_BOOTSTRAP_USER, as an operator would create the first one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

import kwire
from conftest import unique_topic, which
from securekit import (jwks_for, make_pki, rsa_key, sasl_client_conf, sign_jwt, ssl_context,
                       tls_args)

USER, PASSWORD = "alice", "alice-secret-1"
SCRAM_FAILED = ("Authentication failed during authentication due to invalid credentials "
                "with SASL mechanism {}")


def sasl_broker(broker_factory, *args, mechanisms="SCRAM-SHA-256,SCRAM-SHA-512", env=None):
    """A broker whose one Kafka listener is SASL_SSL, with the test PKI's certificate and the
    bootstrap user; `b.pki` is the PKI its clients trust."""
    env = {"ICESTREAM_BOOTSTRAP_USER": f"{USER}:{PASSWORD}", **(env or {})}
    b = broker_factory(start=False, env=env)
    b.pki = make_pki(b.workdir / "pki")
    b.extra_args += ["--listeners", f"{PROTOCOL}://127.0.0.1:{b.kafka_port}",
                     *tls_args(b.pki), "--sasl-mechanisms", mechanisms,
                     "--auto-create-topics", "false", *args]
    return b.start()


# The listener's protocol and the clients' settings for it, in one place.
PROTOCOL = "SASL_SSL"


def b_protocol(_b) -> str:
    return PROTOCOL


def plaintext_protocol(_b) -> str:
    return "PLAINTEXT"


def kcat_tls_args(b) -> list[str]:
    return ["-X", f"ssl.ca.location={b.pki.ca}"]


def conf(broker, mechanism="SCRAM-SHA-512", user=USER, password=PASSWORD, **extra) -> dict:
    return {**sasl_client_conf(broker, mechanism, user, password, protocol=PROTOCOL,
                               ca_file=broker.pki.ca), **extra}


def kafka_python_conf(b, mechanism, user, password) -> dict:
    return {"bootstrap_servers": b.bootstrap, "security_protocol": PROTOCOL,
            "ssl_cafile": b.pki.ca, "sasl_mechanism": mechanism,
            "sasl_plain_username": user, "sasl_plain_password": password}


def aiokafka_conf(b, mechanism, user, password) -> dict:
    return {"bootstrap_servers": b.bootstrap, "security_protocol": PROTOCOL,
            "ssl_context": ssl_context(b.pki), "sasl_mechanism": mechanism,
            "sasl_plain_username": user, "sasl_plain_password": password}


def tls_conn(b) -> kwire.Conn:
    """A kwire connection over TLS to the SASL_SSL listener."""
    c = kwire.Conn.__new__(kwire.Conn)
    raw = socket.create_connection(("127.0.0.1", b.kafka_port), timeout=10)
    c.sock = ssl_context(b.pki).wrap_socket(raw, server_hostname="127.0.0.1")
    c.sock.settimeout(10)
    return c


KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"


def run_kafkajs(b, mechanism, spec, user=USER, password=PASSWORD, expect_error=False) -> dict:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the kafkajs test", pytrace=False)
    if not (KAFKAJS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=KAFKAJS_DIR, check=True, timeout=300)
    js_mech = mechanism.lower()
    spec = {"brokers": [b.bootstrap], "ssl": {"ca": b.pki.ca},
            "sasl": {"mechanism": js_mech, "username": user, "password": password}, **spec}
    r = subprocess.run(["node", "sasl.js", json.dumps(spec)], cwd=KAFKAJS_DIR,
                       capture_output=True, timeout=120)
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    if expect_error:
        assert r.returncode == 2, out
    else:
        assert r.returncode == 0, (out, r.stderr.decode(errors="replace")[-2000:])
    return out


def create_topic(broker, partitions=1) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = unique_topic("sasl")
    a = AdminClient(conf(broker))
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    return topic


def produce_confluent(broker, topic, values, **c):
    p = Producer({**conf(broker, **c), "acks": "all", "enable.idempotence": False})
    errors = []
    for v in values:
        p.produce(topic, v, partition=0,
                  on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert errors == []


def consume_confluent(broker, topic, n, **c) -> list[bytes]:
    cons = Consumer({**conf(broker, **c), "group.id": "g-" + uuid.uuid4().hex[:8],
                     "enable.auto.commit": False})
    try:
        cons.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m.value())
        return out
    finally:
        cons.close()


def auth_error(config) -> str:
    """The authentication error confluent-kafka (librdkafka) reports for `config`."""
    seen = []
    p = Producer({**config, "error_cb": lambda e: seen.append(e)})
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        p.poll(0.2)
    assert seen, "no error reported"
    return str(seen[0])


def metric(broker, name: str, **labels) -> float:
    with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"icestream_{name}(?:_total)?\{{(.*)\}} (\S+)", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


# ---------------------------------------------------------------------------- SCRAM-SHA-512


def test_scram_sha_512_clients_produce_and_consume(broker_factory):
    b = sasl_broker(broker_factory)
    topic = create_topic(b)

    produce_confluent(b, topic, [b"ck-0", b"ck-1"])

    # kcat (librdkafka)
    kc = [which("kcat"), "-b", b.bootstrap, "-X", "security.protocol=" + b_protocol(b),
          "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", f"sasl.username={USER}",
          "-X", f"sasl.password={PASSWORD}", *kcat_tls_args(b)]
    r = subprocess.run(kc + ["-P", "-t", topic, "-p", "0"], input="kc-0\nkc-1\n", text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr

    # kafka-python
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KPTopicPartition
    kp_conf = kafka_python_conf(b, "SCRAM-SHA-512", USER, PASSWORD)
    kp = KafkaProducer(**kp_conf, acks="all")
    kp.send(topic, b"kp-0", partition=0).get(30)
    kp.close()

    # aiokafka
    async def aio():
        from aiokafka import AIOKafkaProducer
        p = AIOKafkaProducer(**aiokafka_conf(b, "SCRAM-SHA-512", USER, PASSWORD))
        await p.start()
        try:
            await p.send_and_wait(topic, b"aio-0", partition=0)
        finally:
            await p.stop()
    asyncio.run(aio())

    # kafkajs
    run_kafkajs(b, "SCRAM-SHA-512", {"produce": {"topic": topic, "values": ["js-0"]}})

    want = [b"ck-0", b"ck-1", b"kc-0", b"kc-1", b"kp-0", b"aio-0", b"js-0"]
    assert consume_confluent(b, topic, len(want)) == want
    r = subprocess.run(kc + ["-C", "-t", topic, "-o", "beginning", "-e", "-q"], text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [w.decode() for w in want]
    kc_ = KafkaConsumer(**kp_conf, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    kc_.assign([KPTopicPartition(topic, 0)])
    got = []
    for m in kc_:
        got.append(m.value)
        if len(got) == len(want):
            break
    kc_.close()
    assert got == want

    async def aio_consume():
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition as ATP
        c = AIOKafkaConsumer(**aiokafka_conf(b, "SCRAM-SHA-512", USER, PASSWORD),
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            c.assign([ATP(topic, 0)])
            await c.seek_to_beginning()
            out = []
            while len(out) < len(want):
                batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 30)
                for msgs in batch.values():
                    out += [m.value for m in msgs]
            return out
        finally:
            await c.stop()
    assert asyncio.run(aio_consume()) == want
    out = run_kafkajs(b, "SCRAM-SHA-512", {"consume": {"topic": topic, "count": len(want)}})
    assert out["consumed"] == [w.decode() for w in want]
    assert metric(b, "kafka_sasl_authentications", mechanism="SCRAM-SHA-512",
                  result="success") >= 6


def test_scram_sha_256_and_plain(broker_factory):
    b = sasl_broker(broker_factory, mechanisms="SCRAM-SHA-256,PLAIN")
    topic = create_topic_with(b, "SCRAM-SHA-256")
    produce_confluent(b, topic, [b"s256"], mechanism="SCRAM-SHA-256")
    produce_confluent(b, topic, [b"plain"], mechanism="PLAIN")
    assert consume_confluent(b, topic, 2, mechanism="PLAIN") == [b"s256", b"plain"]
    assert consume_confluent(b, topic, 2, mechanism="SCRAM-SHA-256") == [b"s256", b"plain"]
    # PLAIN checks the password against the SCRAM credentials too.
    assert "Authentication failed: Invalid username or password" in auth_error(
        conf(b, "PLAIN", password="nope"))
    # A mechanism the listener does not offer is refused, naming those it does.
    e = auth_error(conf(b, "SCRAM-SHA-512"))
    assert "SCRAM-SHA-512" in e and "SCRAM-SHA-256,PLAIN" in e.replace(" ", ""), e


def create_topic_with(b, mechanism) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = unique_topic("sasl")
    a = AdminClient(conf(b, mechanism))
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    return topic


# ---------------------------------------------------------------------------- refusals


def test_wrong_password_and_unknown_user_are_refused(broker_factory, caplog):
    b = sasl_broker(broker_factory)
    msg = SCRAM_FAILED.format("SCRAM-SHA-512")
    # confluent-kafka / librdkafka
    for user, password in [(USER, "wrong"), ("mallory", PASSWORD)]:
        e = auth_error(conf(b, user=user, password=password))
        assert "SASL authentication error: " + msg in e, e
    # kcat prints librdkafka's error
    r = subprocess.run([which("kcat"), "-b", b.bootstrap, "-X",
                        "security.protocol=" + b_protocol(b), "-X",
                        "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=mallory", "-X",
                        "sasl.password=x", *kcat_tls_args(b), "-L", "-m", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert msg in r.stderr, r.stderr
    # kafka-python: bootstrapping fails, and its log says why.
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as KPError
    caplog.clear()
    with pytest.raises(KPError):
        KafkaProducer(**kafka_python_conf(b, "SCRAM-SHA-512", USER, "wrong"),
                      max_block_ms=10000).partitions_for("x")
    assert "SaslAuthenticationFailedError: " + msg in caplog.text, caplog.text[-3000:]
    # aiokafka
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AIOError

    async def aio():
        p = AIOKafkaProducer(**aiokafka_conf(b, "SCRAM-SHA-512", "mallory", PASSWORD))
        try:
            await p.start()
        finally:
            await p.stop()
    # aiokafka: bootstrapping fails, and its log says why.
    caplog.clear()
    with pytest.raises(AIOError):
        asyncio.run(aio())
    assert "Unable connect to " in caplog.text and msg in caplog.text, caplog.text[-3000:]
    # kafkajs
    out = run_kafkajs(b, "SCRAM-SHA-512", {"produce": {"topic": "x", "values": ["v"]}},
                      password="wrong", expect_error=True)
    assert msg in out["error"], out
    assert metric(b, "kafka_sasl_authentications", mechanism="SCRAM-SHA-512",
                  result="failure") >= 5


def test_a_client_without_sasl_is_refused(broker_factory):
    b = sasl_broker(broker_factory)
    # Before authenticating, only ApiVersions is answered: Metadata closes the connection.
    with tls_conn(b) as c:
        apis = kwire.api_versions(c)
        assert apis[17] == (0, 1) and apis[36] == (0, 2)  # SaslHandshake, SaslAuthenticate
        c.send(kwire.frame(kwire.request_header(3, 1, 2) + kwire.i32(-1)))
        assert kwire.outcome(c)[0] == "closed"
    # A plaintext client on the SASL_SSL listener gets no Kafka answer, whatever it sends.
    with kwire.Conn.to(b.bootstrap) as c:
        c.send(kwire.frame(kwire.request_header(18, 0, 1)))
        assert kwire.outcome(c)[0] != "response"
    # Nor does a librdkafka client that does not speak TLS and SASL.
    seen = []
    p = Producer({"bootstrap.servers": b.bootstrap, "error_cb": lambda e: seen.append(e),
                  "security.protocol": plaintext_protocol(b)})
    md = None
    try:
        md = p.list_topics(timeout=5)
    except KafkaException:
        pass
    assert md is None or not md.brokers


# ---------------------------------------------------------------------------- v0 handshake


def scram_client(mech: str, user: str, password: str):
    """A minimal RFC 5802 client: yields tokens, is sent challenges."""
    h = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}[mech]
    cnonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={cnonce}"
    server_first = yield ("n,," + bare).encode()
    attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
    assert attrs["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac(h().name, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", h).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{bare},{server_first.decode()},{without_proof}".encode()
    sig = hmac.new(h(client_key).digest(), auth, h).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    server_final = yield f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
    server_key = hmac.new(salted, b"Server Key", h).digest()
    want = base64.b64encode(hmac.new(server_key, auth, h).digest()).decode()
    assert server_final.decode() == f"v={want}"
    yield None


def test_v0_handshake_with_raw_tokens(broker_factory):
    """SaslHandshake v0, then the SCRAM tokens as raw length-prefixed frames (Kafka before
    1.0's framing, still served); then requests are served as the user."""
    b = sasl_broker(broker_factory)
    with tls_conn(b) as c:
        c.send(kwire.frame(kwire.request_header(17, 0, 1) + kwire.string("SCRAM-SHA-256")))
        corr, body = c.recv_response()
        assert corr == 1 and struct.unpack(">h", body[:2])[0] == 0
        client = scram_client("SCRAM-SHA-256", USER, PASSWORD)
        token = next(client)
        while token is not None:
            c.send(struct.pack(">i", len(token)) + token)
            (n,) = struct.unpack(">i", c._recv_exact(4))
            token = client.send(c._recv_exact(n))
        assert kwire.api_versions(c, 5)[3][1] >= 1  # still served
    # A wrong password over raw tokens: the connection is closed after the final token.
    with tls_conn(b) as c:
        c.send(kwire.frame(kwire.request_header(17, 0, 1) + kwire.string("SCRAM-SHA-256")))
        c.recv_response()
        client = scram_client("SCRAM-SHA-256", USER, "wrong")
        first = next(client)
        c.send(struct.pack(">i", len(first)) + first)
        (n,) = struct.unpack(">i", c._recv_exact(4))
        final = client.send(c._recv_exact(n))
        c.send(struct.pack(">i", len(final)) + final)
        assert kwire.outcome(c)[0] == "closed"


# ---------------------------------------------------------------------------- OAUTHBEARER


def oauth_broker(broker_factory, tmp_path, key, *args):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(jwks_for(key, "k1")))
    return sasl_broker(broker_factory, "--oauth-jwks-file", str(jwks), "--oauth-issuer",
                       "https://issuer.test", "--oauth-audience", "icestream", *args,
                       mechanisms="SCRAM-SHA-512,OAUTHBEARER")


def oauth_conf(b, token_fn):
    base = {k: v for k, v in conf(b).items() if not k.startswith("sasl.")}
    return {**base, "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": token_fn}


def test_oauthbearer_with_a_signed_jwt(broker_factory, tmp_path):
    key = rsa_key()
    b = oauth_broker(broker_factory, tmp_path, key)
    topic = create_topic(b)

    def good(_config):
        exp = time.time() + 600
        return sign_jwt(key, "k1", {"sub": "svc-etl", "iss": "https://issuer.test",
                                    "aud": "icestream", "exp": int(exp)}), exp

    produce_confluent_conf(oauth_conf(b, good), topic, [b"jwt-0"])
    cons = Consumer({**oauth_conf(b, good), "group.id": "g-" + uuid.uuid4().hex[:8]})
    try:
        cons.assign([TopicPartition(topic, 0, 0)])
        got = None
        deadline = time.monotonic() + 30
        while got is None and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and m.error() is None:
                got = m.value()
        assert got == b"jwt-0"
    finally:
        cons.close()
    assert metric(b, "kafka_sasl_authentications", mechanism="OAUTHBEARER",
                  result="success") >= 1

    other = rsa_key()
    claims = {"sub": "svc-etl", "iss": "https://issuer.test", "aud": "icestream"}
    for name, token in [
        ("expired", sign_jwt(key, "k1", {**claims, "exp": int(time.time()) - 3600})),
        ("wrongly signed", sign_jwt(other, "k1", {**claims, "exp": int(time.time()) + 600})),
        ("wrong audience", sign_jwt(key, "k1", {**claims, "aud": "x",
                                                "exp": int(time.time()) + 600})),
    ]:
        e = auth_error(oauth_conf(b, lambda _c, t=token: (t, time.time() + 600)))
        assert '{"status":"invalid_token"}' in e, (name, e)


def test_a_rotated_jwks_file_is_used_without_a_restart(broker_factory, tmp_path):
    """An identity provider rotates its signing key: once the JWKS file holds the new key
    (written to a temporary file and renamed into place), tokens signed with it authenticate
    on the running broker; a broken file written later keeps the keys in use."""
    old, new = rsa_key(), rsa_key()
    b = oauth_broker(broker_factory, tmp_path, old)
    topic = create_topic(b)
    claims = {"sub": "svc-etl", "iss": "https://issuer.test", "aud": "icestream"}

    def signed_by_new(_config):
        exp = time.time() + 600
        return sign_jwt(new, "k2", {**claims, "exp": int(exp)}), exp

    e = auth_error(oauth_conf(b, signed_by_new))
    assert '{"status":"invalid_token"}' in e, e
    jwks = tmp_path / "jwks.json"
    rotated = tmp_path / "jwks.json.new"
    rotated.write_text(json.dumps({"keys": jwks_for(old, "k1")["keys"]
                                   + jwks_for(new, "k2")["keys"]}))
    rotated.rename(jwks)
    # The broker rechecks the file every few seconds: wait for the new key to be in force.
    deadline = time.monotonic() + 30
    before = metric(b, "kafka_sasl_authentications", mechanism="OAUTHBEARER", result="success")
    while True:
        try:
            produce_confluent_conf({**oauth_conf(b, signed_by_new), "message.timeout.ms": 5000},
                                   topic, [b"rotated"])
            break
        except AssertionError:
            assert time.monotonic() < deadline, "a token signed by the rotated-in key never worked"
    assert metric(b, "kafka_sasl_authentications", mechanism="OAUTHBEARER",
                  result="success") > before
    jwks.write_text("{not json")
    produce_confluent_conf(oauth_conf(b, signed_by_new), topic, [b"after a broken file"])


def test_a_jwt_is_a_bearer_token_on_the_http_apis(broker_factory, tmp_path):
    """A JWT the OAUTHBEARER settings accept authenticates HTTP requests too, as its subject."""
    key = rsa_key()
    b = oauth_broker(broker_factory, tmp_path, key, "--authorization", "--superusers",
                     "User:svc-ops", "--http-auth", "required")
    claims = {"iss": "https://issuer.test", "aud": "icestream", "exp": int(time.time()) + 600}

    def get(token):
        req = urllib.request.Request(f"{b.admin_url}/v1/cluster",
                                     headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert get(sign_jwt(key, "k1", {**claims, "sub": "svc-ops"})) == 200
    # Authenticated, but not a superuser: the admin API refuses it.
    assert get(sign_jwt(key, "k1", {**claims, "sub": "svc-etl"})) == 403
    assert get(sign_jwt(rsa_key(), "k1", {**claims, "sub": "svc-ops"})) == 401


def produce_confluent_conf(config, topic, values):
    p = Producer({**config, "acks": "all", "enable.idempotence": False})
    errors = []
    for v in values:
        p.produce(topic, v, partition=0, on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(30) == 0
    assert errors == []


# ---------------------------------------------------------------------------- KIP-368


def test_reauthentication_keeps_a_consumer_consuming(broker_factory):
    """With sessions of 3 s, a consumer that keeps consuming for several lifetimes
    re-authenticates on its connections (the broker would close a connection whose session
    expired) and misses nothing."""
    b = sasl_broker(broker_factory, "--sasl-max-reauth-ms", "3000")
    topic = create_topic(b)
    p = Producer({**conf(b), "acks": "all", "enable.idempotence": False})
    cons = Consumer({**conf(b), "group.id": "g-" + uuid.uuid4().hex[:8],
                     "auto.offset.reset": "earliest", "enable.auto.commit": True})
    cons.subscribe([topic])
    before = metric(b, "kafka_sasl_authentications", mechanism="SCRAM-SHA-512",
                    result="success")
    got = []
    sent = 0
    # Until the broker counted re-authentications beyond the first logins of both clients'
    # connections (several session lifetimes), producing one record per poll round.
    while (metric(b, "kafka_sasl_authentications", mechanism="SCRAM-SHA-512",
                  result="success") < before + 8):
        p.produce(topic, f"r{sent}".encode(), partition=0)
        sent += 1
        p.poll(0)
        m = cons.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
        assert sent < 400, "re-authentications were not counted"
    assert p.flush(30) == 0
    deadline = time.monotonic() + 30
    while len(got) < sent and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    cons.close()
    assert got == [f"r{i}".encode() for i in range(sent)]
    # No connection was closed for an expired session: the clients re-authenticated in time.
    assert "SASL session expired" not in b.log_text()


def sasl_authenticate_v1(c: kwire.Conn, corr: int, token: bytes) -> tuple[int, str | None, bytes, int]:
    """SaslAuthenticate v1: (error_code, error_message, auth_bytes, session_lifetime_ms)."""
    c.send(kwire.frame(kwire.request_header(36, 1, corr) + kwire.i32(len(token)) + token))
    got, body = c.recv_response()
    assert got == corr
    (err, mlen) = struct.unpack_from(">hh", body, 0)
    pos = 4
    msg = None
    if mlen >= 0:
        msg, pos = body[pos:pos + mlen].decode(), pos + mlen
    (n,) = struct.unpack_from(">i", body, pos)
    auth = body[pos + 4:pos + 4 + n]
    (lifetime,) = struct.unpack_from(">q", body, pos + 4 + n)
    return err, msg, auth, lifetime


def test_an_expired_session_is_closed_unless_reauthenticated(broker_factory):
    """SaslAuthenticate v1 announces the session's lifetime; once it has passed, a request
    closes the connection, while a connection that re-authenticated goes on."""
    b = sasl_broker(broker_factory, "--sasl-max-reauth-ms", "1000")

    def login(c, corr):
        c.send(kwire.frame(kwire.request_header(17, 1, corr) + kwire.string("SCRAM-SHA-256")))
        assert struct.unpack(">h", c.recv_response()[1][:2])[0] == 0
        client = scram_client("SCRAM-SHA-256", USER, PASSWORD)
        token, lifetime = next(client), None
        while token is not None:
            err, msg, auth, lifetime = sasl_authenticate_v1(c, corr + 1, token)
            assert err == 0, msg
            token = client.send(auth)
        return lifetime

    with tls_conn(b) as stale, tls_conn(b) as fresh:
        assert login(stale, 10) == 1000
        assert login(fresh, 10) == 1000
        time.sleep(1.2)
        assert login(fresh, 20) == 1000  # re-authentication on the same connection
        kwire.api_versions(fresh, 30)
        stale.send(kwire.frame(kwire.request_header(18, 0, 30)))
        assert kwire.outcome(stale)[0] == "closed"
    assert "SASL session expired" in b.log_text()
