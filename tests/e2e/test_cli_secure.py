"""The CLI and the web console on a secured broker: the setup docs/security.md walks through
(a SASL_SSL listener, SCRAM users, authorization, https HTTP APIs) driven with
`--tls --tls-ca-file --user --password --sasl-mechanism`; the errors an operator sees for a
wrong password, a plaintext client on a TLS listener, an untrusted certificate and a missing
permission; an mTLS listener with `--tls-cert-file`/`--tls-key-file`; and the console's JSON
routes acting as the user whose HTTP Basic credentials they carry."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from conftest import broker_binary, free_port, unique_topic
from securekit import make_pki, secure_broker, ssl_context, tls_args
from test_cli import assert_one_line_error

ADMIN, ADMIN_PASSWORD = "admin", "change-me-7c1"


def run(*args, user: str | None = None, password: str | None = None,
        input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """The CLI with `args`; the password goes in the environment (never on the command line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICESTREAM_")}
    if user is not None:
        env["ICESTREAM_USER"] = user
    if password is not None:
        env["ICESTREAM_PASSWORD"] = password
    cmd = [str(broker_binary()), *args]
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60, env=env,
                         stdin=None if input is not None else subprocess.DEVNULL)
    if check:
        assert res.returncode == 0, (
            f"{' '.join(cmd)} exited {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}")
    return res


class SecureCli:
    """The CLI pointed at a secured broker's SASL_SSL listener and https APIs."""

    def __init__(self, b, pki, sasl_port: int, http: str = "https"):
        self.b, self.pki, self.sasl_port, self.http = b, pki, sasl_port, http

    def flags(self, mechanism: str = "SCRAM-SHA-512") -> list[str]:
        return ["--brokers", f"127.0.0.1:{self.sasl_port}",
                "--admin-url", f"{self.http}://127.0.0.1:{self.b.admin_port}",
                "--schema-registry-url",
                f"{self.http}://127.0.0.1:{self.b.schema_registry_port}",
                "--tls", "--tls-ca-file", self.pki.ca, "--sasl-mechanism", mechanism]

    def __call__(self, *args, user=ADMIN, password=ADMIN_PASSWORD, mechanism="SCRAM-SHA-512",
                 **kw) -> subprocess.CompletedProcess:
        return run(*self.flags(mechanism), *args, user=user, password=password, **kw)

    def json(self, *args, **kw):
        return json.loads(self("--format", "json", *args, **kw).stdout)


def https(b, pki, method: str, path: str, user: str | None = None,
          password: str | None = None) -> tuple[int, str]:
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["authorization"] = f"Basic {token}"
    req = urllib.request.Request(f"https://127.0.0.1:{b.admin_port}{path}", method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ssl_context(pki)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_cli_and_console_on_the_documented_secure_setup(broker_factory, tmp_path):
    b, pki, sasl_port = secure_broker(
        broker_factory, tmp_path, ADMIN, ADMIN_PASSWORD,
        "--sasl-mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN", http_tls=True)
    cli = SecureCli(b, pki, sasl_port)
    topic = unique_topic("secure-cli")

    # Topics, records and groups over SASL_SSL with SCRAM-SHA-512 (and the other mechanisms).
    assert cli.json("topic", "create", topic, "-p", "2")["topic"] == topic
    cli("topic", "produce", topic, "-k", "k", input="one\ntwo\nthree\n")
    recs = [json.loads(x) for x in cli("--format", "json", "topic", "consume", topic,
                                       "-n", "3").stdout.splitlines()]
    assert sorted(r["value"] for r in recs) == ["one", "three", "two"]
    for mechanism in ("SCRAM-SHA-256", "PLAIN"):
        topics = cli.json("topic", "list", mechanism=mechanism)
        assert topic in json.dumps(topics), topics
    cli("group", "seek", "secure-group", "--topic", topic, "--to", "start")
    assert "secure-group" in json.dumps(cli.json("group", "list"))

    # Users and ACLs through Kafka's APIs, the registry's ACLs through the https admin API.
    cli("security", "user", "create", "reader", "--new-password", "reader-pw")
    assert "reader" in [u["name"] for u in cli.json("security", "user", "list")["users"]]
    cli("security", "acl", "create", "--allow-principal", "reader",
        "--operation", "read,describe", "--topic", topic)
    cli("security", "acl", "create", "--allow-principal", "reader", "--operation", "read",
        "--registry-subject", f"{topic}-value")
    acls = cli.json("security", "acl", "list")["acls"]
    assert {(a["principal"], a["operation"]) for a in acls if a["name"] == topic} == {
        ("User:reader", "read"), ("User:reader", "describe")}
    registry = cli.json("security", "acl", "list", "--registry-subject", f"{topic}-value")
    assert [a["principal"] for a in registry["acls"]] == ["User:reader"]

    # The read-only user reads its topic and is refused a create with Kafka's error.
    recs = cli("--format", "json", "topic", "consume", topic, "-n", "3",
               user="reader", password="reader-pw").stdout.splitlines()
    assert len(recs) == 3
    res = cli("topic", "create", unique_topic("not-allowed"), user="reader",
              password="reader-pw", check=False)
    assert_one_line_error(res, "AUTHORIZATION_FAILED")
    assert res.returncode == 1

    # A wrong password: one line naming the user and the flags, never the password.
    res = cli("topic", "list", password="not-the-password", check=False)
    assert_one_line_error(res, "authentication failed for user admin", "--user/--password")
    assert res.returncode == 1
    assert "not-the-password" not in res.stderr

    # The https APIs with HTTP Basic: cluster health and a schema.
    health = cli.json("cluster", "health")
    assert health["healthy"] is True and health["admin_url"].startswith("https://"), health
    schema = tmp_path / "v.avsc"
    schema.write_text(json.dumps({"type": "record", "name": "V",
                                  "fields": [{"name": "a", "type": "string"}]}))
    out = cli.json("schema", "register", f"{topic}-value", "--file", str(schema))
    assert isinstance(out.get("id"), int), out
    assert cli.json("schema", "list")  # subjects listed over https

    # Deleting what was created, as the superuser.
    cli("security", "acl", "delete", "--allow-principal", "reader",
        "--operation", "read,describe", "--topic", topic)
    assert not [a for a in cli.json("security", "acl", "list")["acls"] if a["name"] == topic]
    cli("security", "user", "delete", "reader")
    assert "reader" not in [u["name"] for u in cli.json("security", "user", "list")["users"]]

    # Errors that name the flag to change.
    res = run("--brokers", f"127.0.0.1:{sasl_port}", "topic", "list", check=False)
    assert_one_line_error(res, "during ApiVersions: is it a TLS listener? add --tls")
    res = run("--brokers", f"127.0.0.1:{sasl_port}", "--tls", "topic", "list", check=False)
    assert_one_line_error(res, "not signed by a trusted CA", "--tls-ca-file")
    res = run("--brokers", f"127.0.0.1:{sasl_port}", "--tls-ca-file", pki.ca, "topic", "list",
              check=False)
    assert_one_line_error(res, "SASL listener", "--sasl-mechanism")
    res = run("--brokers", b.bootstrap, "--tls-ca-file", pki.ca, "topic", "list", check=False)
    assert_one_line_error(res, "drop --tls")

    # The console's JSON routes act as the logged-in user: the superuser sees the topic and
    # the group, which the anonymous loopback listener does not (authorization is on).
    anonymous = run("--brokers", b.bootstrap, "--format", "json", "topic", "list").stdout
    assert topic not in anonymous
    status, body = https(b, pki, "GET", "/v1/topics", ADMIN, ADMIN_PASSWORD)
    assert status == 200, body
    assert topic in [t["name"] for t in json.loads(body)], body
    status, body = https(b, pki, "GET", "/v1/groups", ADMIN, ADMIN_PASSWORD)
    assert status == 200 and "secure-group" in body, body
    status, body = https(b, pki, "GET", f"/v1/topics/{topic}", ADMIN, ADMIN_PASSWORD)
    assert status == 200 and json.loads(body)["partitions"], body
    status, body = https(b, pki, "GET", f"/v1/topics/{topic}/records?from=start",
                         ADMIN, ADMIN_PASSWORD)
    assert status == 200 and "three" in body, body
    for path in ("/v1/topics", "/v1/groups"):
        assert https(b, pki, "GET", path)[0] == 401
        assert https(b, pki, "GET", path, ADMIN, "wrong")[0] == 401


def test_cli_with_a_client_certificate(broker_factory, tmp_path):
    pki = make_pki(tmp_path / "pki")
    ssl_port = free_port()
    b = broker_factory(start=False, args=tls_args(pki, "required"))
    b.extra_args += ["--listeners",
                     f"PLAINTEXT://127.0.0.1:{b.kafka_port},SSL://127.0.0.1:{ssl_port}"]
    b.start()
    base = ["--brokers", f"127.0.0.1:{ssl_port}", "--tls-ca-file", pki.ca]
    mtls = [*base, "--tls-cert-file", pki.client_cert, "--tls-key-file", pki.client_key]
    topic = unique_topic("mtls-cli")
    run(*mtls, "topic", "create", topic)
    run(*mtls, "topic", "produce", topic, input="x\n")
    assert run(*mtls, "topic", "consume", topic, "-n", "1").stdout.strip().endswith("x")
    res = run(*base, "topic", "list", check=False)
    assert_one_line_error(res, "--tls-cert-file")
    res = run(*base, "--tls-cert-file", pki.client_cert, "topic", "list", check=False)
    assert_one_line_error(res, "--tls-cert-file needs --tls-key-file")


def test_a_long_consume_reauthenticates_its_connection(broker_factory, tmp_path):
    """With --sasl-max-reauth-ms the broker closes a connection whose SASL session ended
    (KIP-368); the CLI authenticates again before that, so `topic consume` keeps following."""
    b, pki, sasl_port = secure_broker(broker_factory, tmp_path, ADMIN, ADMIN_PASSWORD,
                                      "--sasl-max-reauth-ms", "1000",
                                      "--sasl-mechanisms", "SCRAM-SHA-512,PLAIN")
    cli = SecureCli(b, pki, sasl_port)
    topic = unique_topic("reauth")
    cli("topic", "create", topic)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICESTREAM_")}
    env.update(ICESTREAM_USER=ADMIN, ICESTREAM_PASSWORD=ADMIN_PASSWORD)
    consumer = subprocess.Popen(
        [str(broker_binary()), *cli.flags("PLAIN"), "topic", "consume", topic, "-n", "1"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        # Not an assertion on timing: the consumer must outlive its first 1 s session.
        time.sleep(2.5)
        assert consumer.poll() is None, consumer.communicate()
        cli("topic", "produce", topic, input="late\n")
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert consumer.returncode == 0, err
    assert out.strip().endswith("late"), out


def test_every_connection_of_a_cluster_client_authenticates(broker_factory):
    """In a three-broker cluster the CLI reaches each partition's leader on the SASL listener
    the metadata names (not only the bootstrap broker), authenticating every connection."""
    from cluster import wait_formed

    rpc = [free_port() for _ in range(3)]
    sasl = [free_port() for _ in range(3)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in rpc)
    brokers = []
    for i in range(3):
        b = broker_factory(start=False, env={"ICESTREAM_BOOTSTRAP_USER": f"{ADMIN}:{ADMIN_PASSWORD}"},
                           args=["--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc[i]}",
                                 "--seeds", seeds, "--sasl-mechanisms", "SCRAM-SHA-256"])
        b.extra_args += ["--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},"
                                        f"SASL_PLAINTEXT://127.0.0.1:{sasl[i]}"]
        brokers.append(b)
    for b in brokers:
        b.start()
    wait_formed(brokers)
    flags = ["--brokers", f"127.0.0.1:{sasl[0]}", "--sasl-mechanism", "SCRAM-SHA-256"]

    def sasl_cli(*args, **kw):
        return run(*flags, *args, user=ADMIN, password=ADMIN_PASSWORD, **kw)

    # The bootstrap user reaches the controller's store shortly after the cluster forms.
    deadline = time.monotonic() + 60
    while (res := sasl_cli("topic", "list", check=False)).returncode != 0:
        assert time.monotonic() < deadline, res.stderr
        time.sleep(0.2)

    topic = unique_topic("cluster-sasl")
    sasl_cli("topic", "create", topic, "-p", "3", "-r", "1")
    described = json.loads(sasl_cli("--format", "json", "topic", "describe", topic).stdout)
    leaders = {p["leader"] for p in described["partitions"]}
    assert len(leaders) > 1, described  # the partitions lead on several brokers
    for p in range(3):
        sasl_cli("topic", "produce", topic, "-p", str(p), input=f"v{p}\n")
    out = sasl_cli("--format", "json", "topic", "consume", topic, "-n", "3").stdout
    assert sorted(json.loads(x)["value"] for x in out.splitlines()) == ["v0", "v1", "v2"]
    res = run(*flags, "topic", "produce", topic, "-p", "1", input="x\n", user=ADMIN,
              password="wrong", check=False)
    assert_one_line_error(res, "authentication failed for user admin")


def test_an_oauthbearer_token_for_the_cli_and_the_console(broker_factory, tmp_path):
    """`--sasl-mechanism OAUTHBEARER` takes the JWT as the password (rpk's way) for Kafka and
    sends it as a bearer token to the HTTP APIs; the console's Kafka calls for a request with
    a bearer token use the same token."""
    from securekit import jwks_for, rsa_key, sign_jwt

    key = rsa_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(jwks_for(key, "k1")))
    b, pki, sasl_port = secure_broker(
        broker_factory, tmp_path, ADMIN, ADMIN_PASSWORD,
        "--sasl-mechanisms", "SCRAM-SHA-512,OAUTHBEARER", "--oauth-jwks-file", str(jwks),
        "--oauth-issuer", "https://issuer.test", "--oauth-audience", "icestream")
    claims = {"iss": "https://issuer.test", "aud": "icestream", "sub": ADMIN}
    token = sign_jwt(key, "k1", {**claims, "exp": int(time.time()) + 600})
    cli = SecureCli(b, pki, sasl_port, http="http")
    topic = unique_topic("oauth-cli")
    cli("topic", "create", topic, mechanism="OAUTHBEARER", user=None, password=token)
    listed = cli.json("topic", "list", mechanism="OAUTHBEARER", user=None,
                      password=token)
    assert topic in json.dumps(listed)
    # The admin API (superusers only) takes the same token as a bearer token.
    acls = cli.json("security", "acl", "list", "--registry-subject", f"{topic}-value",
                    mechanism="OAUTHBEARER", user=None, password=token)
    assert acls["acls"] == [], acls

    expired = sign_jwt(key, "k1", {**claims, "exp": int(time.time()) - 3600})
    res = cli("topic", "list", mechanism="OAUTHBEARER", user=None, password=expired,
              check=False)
    assert_one_line_error(res, "refused the OAUTHBEARER token", "--password")

    req = urllib.request.Request(f"{b.admin_url}/v1/topics",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert topic in [t["name"] for t in json.loads(r.read())]
