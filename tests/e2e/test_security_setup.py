"""The secure setup docs/security.md walks through, as an operator runs it: a SASL_SSL listener
beside a loopback PLAINTEXT one, https HTTP APIs, authorization with a superuser from
ICESTREAM_BOOTSTRAP_USER; the superuser adds a user and a prefixed ACL through the admin API
(HTTP Basic over https), and that user's client writes where the ACL says and nowhere else.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from securekit import secure_broker, ssl_context

ADMIN, ADMIN_PASSWORD = "admin", "change-me-3b9"


def post(b, pki, path: str, body: dict, user: str, password: str) -> tuple[int, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(
        f"https://127.0.0.1:{b.admin_port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json", "authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ssl_context(pki)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def produce(conf: dict, topic: str) -> KafkaError | None:
    """Produces one record; the delivery error, or None."""
    errors = []
    p = Producer({**conf, "acks": "all", "message.timeout.ms": 15000})
    p.produce(topic, b"v", on_delivery=lambda err, _m: errors.append(err))
    p.flush(30)
    assert len(errors) == 1
    return errors[0]


def test_the_documented_secure_setup(broker_factory, tmp_path):
    b, pki, sasl_port = secure_broker(broker_factory, tmp_path, ADMIN, ADMIN_PASSWORD,
                                      "--sasl-mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256",
                                      http_tls=True)

    # Only the superuser manages users and ACLs.
    status, body = post(b, pki, "/v1/security/users", {"name": "etl", "password": "etl-pw"},
                        ADMIN, ADMIN_PASSWORD)
    assert status in (200, 201), body
    status, _ = post(b, pki, "/v1/security/users", {"name": "x", "password": "y"},
                     "etl", "etl-pw")
    assert status == 403
    status, _ = post(b, pki, "/v1/security/users", {"name": "x", "password": "y"},
                     ADMIN, "wrong")
    assert status == 401
    status, body = post(b, pki, "/v1/security/acls", {
        "resource_type": "topic", "name": "orders.", "pattern": "prefixed",
        "principal": "User:etl", "operation": "write"}, ADMIN, ADMIN_PASSWORD)
    assert status in (200, 201), body

    def sasl(user: str, password: str) -> dict:
        return {"bootstrap.servers": f"127.0.0.1:{sasl_port}", "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user,
                "sasl.password": password, "ssl.ca.location": pki.ca}

    # The superuser creates the topics over SASL_SSL.
    admin = AdminClient(sasl(ADMIN, ADMIN_PASSWORD))
    fs = admin.create_topics(
        [NewTopic(t, 1, 1) for t in ("orders.eu", "payments")])
    for f in fs.values():
        f.result(30)
    etl = {**sasl("etl", "etl-pw"), "enable.idempotence": False}
    assert produce(etl, "orders.eu") is None
    err = produce(etl, "payments")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # The loopback PLAINTEXT listener's anonymous clients get nothing without an ACL.
    err = produce({"bootstrap.servers": b.bootstrap, "enable.idempotence": False}, "orders.eu")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
