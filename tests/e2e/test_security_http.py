"""Authentication and authorization on the HTTP APIs: the schema registry with
confluent-kafka's SchemaRegistryClient and HTTP Basic, the Iceberg catalog with pyiceberg's
OAuth2 client credentials, the admin API for superusers only, and the CLI's --user/--password.

The brokers run with `--authorization --superusers User:admin,User:ANONYMOUS --http-auth
required`: User:ANONYMOUS (the PLAINTEXT Kafka clients of these tests) is a superuser so the
Kafka side needs no SASL here, and no HTTP request is anonymous once authentication is
required.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import ForbiddenError, NoSuchTableError, OAuthError, UnauthorizedError

from conftest import broker_binary, create_topic, http_get, produce

PASSWORDS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
SCHEMA = Schema(json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                            "fields": [{"name": "id", "type": "long"}]}), "AVRO")
SCHEMA_V2 = Schema(json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                               "fields": [{"name": "id", "type": "long"},
                                          {"name": "note", "type": "string", "default": ""}]}),
                   "AVRO")
SECURE_ARGS = ["--authorization", "--superusers", "User:admin,User:ANONYMOUS",
               "--http-auth", "required"]


def scram(mechanism: str, password: str, salt: bytes, iterations: int = 4096) -> dict:
    """A SCRAM credential as the broker stores it (RFC 5802: salt, StoredKey, ServerKey)."""
    h = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    salted = hashlib.pbkdf2_hmac(h, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", h).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {"salt": b64(salt), "iterations": iterations,
            "stored_key": b64(hashlib.new(h, client_key).digest()),
            "server_key": b64(hmac.new(salted, b"Server Key", h).digest())}


def acl(resource_type: str, name: str, principal: str, operation: str) -> dict:
    return {"resource_type": resource_type, "name": name, "pattern": "Literal",
            "principal": principal, "host": "*", "operation": operation, "permission": "Allow"}


def seed_security(broker, acls: list[dict]):
    """Users and ACLs in the broker's security state file before it starts.
    TODO(lead): once the store helper's APIs are merged, create them with
    ICESTREAM_BOOTSTRAP_USER, AlterUserScramCredentials and the admin API instead."""
    users = {u: {m: scram(m, p, os.urandom(16)) for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")}
             for u, p in PASSWORDS.items()}
    meta = broker.data_dir / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "security.json").write_text(json.dumps({"users": users, "acls": {"bindings": acls}}))


@pytest.fixture
def secured(broker_factory):
    """Makes a broker with authentication required and the users of PASSWORDS, given ACLs."""
    def make(acls: list[dict], args=None):
        b = broker_factory(args=SECURE_ARGS + list(args or []), start=False)
        seed_security(b, acls)
        return b.start()
    return make


def registry(broker, user: str | None = None, password: str | None = None):
    conf = {"url": broker.schema_registry_url}
    if user:
        conf["basic.auth.user.info"] = f"{user}:{password or PASSWORDS[user]}"
    return SchemaRegistryClient(conf)


def request(url: str, method: str = "GET", headers: dict | None = None,
            data: bytes | None = None):
    """(status, headers (case-insensitive, repeated ones with get_all), body)."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def basic(user: str, password: str | None = None) -> dict:
    token = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_schema_registry_basic_auth_and_subject_acls(secured):
    b = secured([acl("RegistrySubject", "orders-value", "User:alice", "Read")])

    admin = registry(b, "admin")
    orders_id = admin.register_schema("orders-value", SCHEMA)
    admin.register_schema("payments-value", SCHEMA)
    assert admin.get_latest_version("orders-value").schema_id == orders_id
    assert sorted(admin.get_subjects()) == ["orders-value", "payments-value"]

    # Without credentials, or with a wrong password: 401 in Confluent's error shape.
    for client in (registry(b), registry(b, "admin", "wrong"), registry(b, "mallory", "x")):
        with pytest.raises(SchemaRegistryError) as e:
            client.get_subjects()
        assert e.value.http_status_code == 401
        assert e.value.error_code == 40101
    status, headers, body = request(f"{b.schema_registry_url}/subjects")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert json.loads(body)["error_code"] == 40101

    # READ on one subject: reads it (and its schema by id), registers nothing, lists only it.
    alice = registry(b, "alice")
    assert alice.get_latest_version("orders-value").schema_id == orders_id
    assert json.loads(alice.get_schema(orders_id).schema_str)["name"] == "Order"
    assert alice.get_subjects() == ["orders-value"]
    with pytest.raises(SchemaRegistryError) as e:
        alice.register_schema("orders-value", SCHEMA_V2)
    assert (e.value.http_status_code, e.value.error_code) == (403, 40301)
    with pytest.raises(SchemaRegistryError) as e:
        alice.get_latest_version("payments-value")
    assert e.value.http_status_code == 403
    with pytest.raises(SchemaRegistryError) as e:
        alice.set_compatibility(subject_name="orders-value", level="NONE")
    assert e.value.http_status_code == 403

    # A user without ACLs sees nothing.
    bob = registry(b, "bob")
    assert bob.get_subjects() == []
    with pytest.raises(SchemaRegistryError) as e:
        bob.get_schema(orders_id)
    assert e.value.http_status_code == 403

    # The superuser's write went through; alice's did not.
    assert admin.get_versions("orders-value") == [1]


def catalog(broker, credential: str | None = None, token_uri: bool = False) -> RestCatalog:
    props = {"uri": broker.iceberg_catalog_url}
    if credential:
        props["credential"] = credential
    if token_uri:
        props["oauth2-server-uri"] = f"{broker.iceberg_catalog_url}/v1/oauth/tokens"
    return RestCatalog("icestream", **props)


def wait_rows(cat: RestCatalog, ident: tuple[str, str], n: int, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        try:
            rows = cat.load_table(ident).scan().to_arrow().to_pylist()
        except NoSuchTableError:
            rows = []
        if len(rows) >= n:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"table {ident} has {len(rows)} rows after {timeout}s, want {n}")


def test_iceberg_catalog_oauth2_client_credentials_and_topic_acls(secured):
    b = secured([acl("Topic", "lake", "User:alice", "Read")])
    create_topic(b, "lake", config={"iceberg.mode": "key_value", "iceberg.target.lag.ms": "500"})
    create_topic(b, "hidden", config={"iceberg.mode": "key_value",
                                      "iceberg.target.lag.ms": "500"})
    produce(b, "lake", [{"key": f"k{i}".encode(), "value": f"v{i}".encode()} for i in range(5)])
    produce(b, "hidden", [{"value": b"x"}])

    admin = catalog(b, f"admin:{PASSWORDS['admin']}")
    assert len(wait_rows(admin, ("kafka", "lake"), 5)) == 5
    wait_rows(admin, ("kafka", "hidden"), 1)
    assert ("kafka",) in admin.list_namespaces()

    # pyiceberg exchanges user:password for a token at /v1/oauth/tokens (its default, or
    # named by oauth2-server-uri as here); with READ on the topic, alice lists, loads and scans its table only.
    alice = catalog(b, f"alice:{PASSWORDS['alice']}", token_uri=True)
    assert alice.list_tables("kafka") == [("kafka", "lake")]
    rows = alice.load_table(("kafka", "lake")).scan().to_arrow().to_pylist()
    assert sorted(r["value"] for r in rows) == [f"v{i}".encode() for i in range(5)]
    with pytest.raises(ForbiddenError):
        alice.load_table(("kafka", "hidden"))
    with pytest.raises(ForbiddenError):
        alice.drop_table(("kafka", "lake"))
    with pytest.raises(ForbiddenError):
        alice.list_namespaces()

    # No credentials: refused; a wrong secret gets no token.
    with pytest.raises(UnauthorizedError):
        catalog(b)
    with pytest.raises(OAuthError):
        catalog(b, "alice:wrong")

    # The token endpoint itself, as Spark's Iceberg REST client calls it (Basic client auth).
    form = urllib.parse.urlencode({"grant_type": "client_credentials",
                                   "scope": "catalog"}).encode()
    status, headers, body = request(
        f"{b.iceberg_catalog_url}/v1/oauth/tokens", "POST",
        {**basic("admin"), "Content-Type": "application/x-www-form-urlencoded"}, form)
    assert status == 200, body
    token = json.loads(body)
    assert token["token_type"] == "bearer" and token["expires_in"] > 0
    assert token["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    # The token works on every HTTP API of the broker.
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert request(f"{b.admin_url}/v1/cluster", headers=bearer)[0] == 200
    assert request(f"{b.schema_registry_url}/subjects", headers=bearer)[0] == 200
    # A tampered token does not.
    forged = token["access_token"][:-2] + ("AA" if not token["access_token"].endswith("AA")
                                           else "BB")
    status, headers, body = request(f"{b.iceberg_catalog_url}/v1/namespaces",
                                    headers={"Authorization": f"Bearer {forged}"})
    assert status == 401 and json.loads(body)["error"]["type"] == "NotAuthorizedException"
    status, _, body = request(
        f"{b.iceberg_catalog_url}/v1/oauth/tokens", "POST",
        {"Content-Type": "application/x-www-form-urlencoded"},
        urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "bob",
                                "client_secret": "wrong"}).encode())
    assert status == 401 and json.loads(body)["error"] == "invalid_client"


def test_admin_api_needs_a_superuser(secured):
    b = secured([])
    status, headers, body = request(f"{b.admin_url}/v1/cluster")
    assert status == 401, body
    assert any(v.startswith("Basic") for v in headers.get_all("WWW-Authenticate"))
    assert request(f"{b.admin_url}/v1/cluster", headers=basic("alice"))[0] == 403
    assert request(f"{b.admin_url}/v1/cluster", headers=basic("admin", "wrong"))[0] == 401
    status, _, body = request(f"{b.admin_url}/v1/cluster", headers=basic("admin"))
    assert status == 200 and "cluster_id" in json.loads(body)
    # Readiness and metrics stay open for orchestrators and Prometheus.
    assert http_get(f"{b.admin_url}/v1/status/ready")[0] == 200
    assert http_get(f"{b.admin_url}/metrics")[0] == 200


def icestream(broker, *args, password: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ICESTREAM_PASSWORD"}
    if password is not None:
        env["ICESTREAM_PASSWORD"] = password
    cmd = [str(broker_binary()), "--brokers", broker.bootstrap, "--admin-url", broker.admin_url,
           "--schema-registry-url", broker.schema_registry_url, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def test_cli_authenticates_with_user_and_password(secured, tmp_path):
    b = secured([])
    schema = tmp_path / "order.avsc"
    schema.write_text(SCHEMA.schema_str)
    res = icestream(b, "schema", "register", "orders-value", "--file", str(schema),
                    "--user", "admin", password=PASSWORDS["admin"])
    assert res.returncode == 0, res.stderr
    res = icestream(b, "--format", "json", "schema", "list", "--user", "admin",
                    password=PASSWORDS["admin"])
    assert res.returncode == 0, res.stderr
    assert "orders-value" in res.stdout
    res = icestream(b, "--format", "json", "cluster", "status", "--user", "admin",
                    password=PASSWORDS["admin"])
    assert res.returncode == 0, res.stderr

    res = icestream(b, "schema", "list")
    assert res.returncode != 0
    assert "needs credentials" in res.stderr and "--user" in res.stderr
    res = icestream(b, "cluster", "status", "--user", "admin", password="wrong")
    assert res.returncode != 0 and "HTTP 401" in res.stderr


def test_authorization_without_http_authentication_is_anonymous(broker_factory):
    b = broker_factory(args=["--authorization", "--superusers", "User:admin",
                             "--http-auth", "none"])
    # Credentials are not looked at: the request is User:ANONYMOUS, not a superuser.
    status, _, body = request(f"{b.admin_url}/v1/cluster", headers=basic("admin"))
    assert status == 403 and "User:ANONYMOUS" in body
    with pytest.raises(SchemaRegistryError) as e:
        registry(b).get_latest_version("x-value")
    assert e.value.http_status_code == 403
