"""Credential vending by the built-in Iceberg catalog: with `--iceberg-sts-endpoint` and
`--iceberg-sts-role-arn`, loadTable hands a client that asks for it (`X-Iceberg-Access-
Delegation: vended-credentials`, which pyiceberg sends) short-lived S3 keys from STS
AssumeRole, scoped by a session policy to the table's prefix. The S3 and STS server is
SeaweedFS `weed mini`, given an IAM config with a role the broker's user may assume; weed
enforces session policies, so the test checks that the keys reach nothing outside the table.
Without the STS flags, loadTable carries no keys at all."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from pyiceberg.exceptions import ServiceUnavailableError

from s3server import ACCESS_KEY, REGION, SECRET_KEY, WeedS3
from test_iceberg_topics import (assert_exact, catalog, high_watermarks, iceberg_topic,
                                 wait_rows)
from conftest import produce

PREFIX = "lake"
TTL_SECS = 900
ROLE_ARN = "arn:aws:iam::000000000000:role/IcestreamTables"
# weed makes a static admin user from its AWS_ACCESS_KEY_ID, named "admin-" and the key's
# first 8 characters; the broker signs AssumeRole as that user.
BROKER_PRINCIPAL = f"arn:aws:iam::000000000000:user/admin-{ACCESS_KEY[:8]}"

# weed's advanced IAM config: the role trusts the broker's user only, and its own policy is
# the whole of S3, so any narrowing the test sees comes from the broker's session policy.
IAM_CONFIG = {
    "sts": {"tokenDuration": "1h", "maxSessionLength": "12h", "issuer": "seaweedfs-sts",
            # 32 bytes, base64: weed signs its session tokens with it.
            "signingKey": "aWNlc3RyZWFtLXRlc3Qtc2lnbmluZy1rZXktMzItYnl0ZXM="},
    "policy": {"defaultEffect": "Deny"},
    "roles": [{
        "roleName": "IcestreamTables",
        "roleArn": ROLE_ARN,
        "trustPolicy": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": BROKER_PRINCIPAL},
            "Action": ["sts:AssumeRole"]}]},
        "attachedPolicies": ["AllOfS3"],
    }],
    "policies": [{"name": "AllOfS3", "document": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*"],
         "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"]},
        {"Effect": "Allow", "Action": ["sts:ValidateSession"], "Resource": ["*"]},
    ]}}],
}

SECRETS = ("s3.access-key-id", "s3.secret-access-key", "s3.session-token")


@pytest.fixture(autouse=True)
def no_ambient_aws_credentials(monkeypatch):
    """The reader in this process gets S3 access from the catalog or not at all."""
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def weed(tmp_path):
    w = WeedS3(tmp_path, iam_config=IAM_CONFIG).start()
    yield w
    w.stop()


def vending_args(w: WeedS3, role_arn: str = ROLE_ARN) -> list[str]:
    return ["--iceberg-sts-endpoint", w.endpoint, "--iceberg-sts-role-arn", role_arn,
            "--iceberg-credentials-ttl-secs", str(TTL_SECS)]


def load_table(broker, topic: str, delegate: bool = True) -> tuple[int, dict]:
    """The raw loadTable answer, asking for vended credentials or not."""
    headers = {"X-Iceberg-Access-Delegation": "vended-credentials"} if delegate else {}
    req = urllib.request.Request(
        f"{broker.iceberg_catalog_url}/v1/namespaces/kafka/tables/{topic}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_table(broker, topic: str, delegate: bool, timeout: float = 60.0) -> tuple[int, dict]:
    """loadTable once the translator has created the table."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = load_table(broker, topic, delegate)
        if status != 404 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


def s3_client(config: dict | None, endpoint: str):
    keys = {} if config is None else {
        "aws_access_key_id": config["s3.access-key-id"],
        "aws_secret_access_key": config["s3.secret-access-key"],
        "aws_session_token": config["s3.session-token"]}
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **keys)


def denied(call) -> bool:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"] == "AccessDenied"
    return False


def test_pyiceberg_reads_with_vended_keys_that_reach_only_the_table(weed, broker_factory):
    broker = broker_factory(args=weed.broker_args(PREFIX) + vending_args(weed),
                            env=WeedS3.broker_env())
    topic = iceberg_topic(broker, partitions=2)
    other = iceberg_topic(broker)
    produce(broker, topic, [{"key": b"k%d" % i, "value": b"v%d" % i, "partition": i % 2}
                            for i in range(200)])
    produce(broker, other, [{"value": b"elsewhere"}])

    # pyiceberg with no S3 keys of its own (see the autouse fixture): the endpoint and keys
    # come from loadTable, and it reads exactly what was produced.
    rows = wait_rows(broker, topic, 200)
    assert_exact(rows, high_watermarks(broker, topic, 2))
    wait_rows(broker, other, 1)

    status, body = load_table(broker, topic)
    assert status == 200, body
    location = body["metadata"]["location"]
    assert location.startswith(f"s3://{weed.bucket}/{PREFIX}/warehouse/kafka/"), location
    [cred] = body["storage-credentials"]
    assert cred["prefix"] == location
    vended = cred["config"]
    # The same keys in the table's config, for clients that read only that.
    assert {k: body["config"][k] for k in SECRETS} == {k: vended[k] for k in SECRETS}
    assert vended["s3.access-key-id"] != ACCESS_KEY
    assert vended["s3.secret-access-key"] != SECRET_KEY
    assert ACCESS_KEY not in json.dumps(body) and SECRET_KEY not in json.dumps(body)
    expires = int(vended["s3.session-token-expires-at-ms"]) / 1000
    assert time.time() < expires <= time.time() + TTL_SECS + 60
    # Cached per table: a second load hands out the same session.
    assert load_table(broker, topic)[1]["storage-credentials"][0]["config"] == vended
    # Another table gets a session of its own.
    other_keys = load_table(broker, other)[1]["storage-credentials"][0]["config"]
    assert other_keys["s3.access-key-id"] != vended["s3.access-key-id"]

    table_path = location.removeprefix(f"s3://{weed.bucket}/")
    other_path = load_table(broker, other)[1]["metadata"]["location"].removeprefix(
        f"s3://{weed.bucket}/")
    objects = weed.list_keys(PREFIX)
    mine = next(k for k in objects if k.startswith(table_path + "/data/"))
    theirs = next(k for k in objects if k.startswith(other_path + "/data/"))
    broker_own = next(k for k in objects if not k.startswith(f"{PREFIX}/warehouse/"))

    s3 = s3_client(vended, weed.endpoint)
    b = weed.bucket
    assert s3.get_object(Bucket=b, Key=mine)["Body"].read() == weed.get(mine)
    listed = s3.list_objects_v2(Bucket=b, Prefix=table_path + "/").get("Contents", [])
    assert mine in {o["Key"] for o in listed}
    s3.put_object(Bucket=b, Key=f"{table_path}/data/written-by-client", Body=b"x")
    s3.delete_object(Bucket=b, Key=f"{table_path}/data/written-by-client")
    # Nothing outside the table: not another table, not the broker's own objects.
    assert denied(lambda: s3.get_object(Bucket=b, Key=theirs))
    assert denied(lambda: s3.get_object(Bucket=b, Key=broker_own))
    assert denied(lambda: s3.list_objects_v2(Bucket=b, Prefix=other_path + "/"))
    assert denied(lambda: s3.list_objects_v2(Bucket=b, Prefix=""))
    assert denied(lambda: s3.put_object(Bucket=b, Key=f"{other_path}/data/x", Body=b"x"))
    assert denied(lambda: s3.delete_object(Bucket=b, Key=theirs))
    assert weed.get(theirs)

    # A client that does not ask for delegation gets the storage settings but no keys.
    status, body = load_table(broker, topic, delegate=False)
    assert status == 200
    assert "storage-credentials" not in body
    assert not set(SECRETS) & set(body["config"])

    # The spec's loadCredentials endpoint refreshes them.
    with urllib.request.urlopen(f"{broker.iceberg_catalog_url}/v1/namespaces/kafka/tables/"
                                f"{topic}/credentials", timeout=30) as r:
        refreshed = json.loads(r.read())["storage-credentials"]
    assert [c["prefix"] for c in refreshed] == [location]


def test_without_sts_flags_load_table_carries_no_keys(weed, broker_factory):
    broker = broker_factory(args=weed.broker_args(PREFIX), env=WeedS3.broker_env())
    topic = iceberg_topic(broker)
    produce(broker, topic, [{"value": b"v"}])
    status, body = wait_table(broker, topic, delegate=True)
    assert status == 200, body
    assert "storage-credentials" not in body
    assert not set(SECRETS) & set(body["config"]), body["config"]
    text = json.dumps(body)
    assert ACCESS_KEY not in text and SECRET_KEY not in text
    with urllib.request.urlopen(f"{broker.iceberg_catalog_url}/v1/namespaces/kafka/tables/"
                                f"{topic}/credentials", timeout=30) as r:
        assert json.loads(r.read()) == {"storage-credentials": []}


def test_sts_refusing_is_a_clear_503_without_keys(weed, broker_factory):
    # A role whose trust policy does not name the broker: weed's STS answers AccessDenied.
    untrusted = "arn:aws:iam::000000000000:role/NotTrusted"
    broker = broker_factory(args=weed.broker_args(PREFIX) + vending_args(weed, untrusted),
                            env=WeedS3.broker_env())
    topic = iceberg_topic(broker)
    produce(broker, topic, [{"value": b"v"}])
    status, body = wait_table(broker, topic, delegate=False)
    assert status == 200, body

    status, body = load_table(broker, topic)
    assert status == 503, body
    assert body["error"]["type"] == "ServiceUnavailableException"
    assert untrusted in body["error"]["message"]
    assert "AccessDenied" in body["error"]["message"]
    text = json.dumps(body)
    assert ACCESS_KEY not in text and SECRET_KEY not in text
    with pytest.raises(ServiceUnavailableError):
        catalog(broker).load_table(("kafka", topic))
    assert broker.running()


@pytest.mark.parametrize("extra, message", [
    # Vending is for an S3 warehouse: the default local object store has nothing to scope.
    (["--iceberg-sts-endpoint", "http://127.0.0.1:1", "--iceberg-sts-role-arn", ROLE_ARN],
     "--object-store s3"),
    (["--object-store", "s3", "--s3-bucket", "b", "--s3-endpoint", "http://127.0.0.1:1",
      "--iceberg-sts-endpoint",
      "http://127.0.0.1:1", "--iceberg-sts-role-arn", ROLE_ARN,
      "--iceberg-credentials-ttl-secs", "60"], "--iceberg-credentials-ttl-secs"),
    # The two flags go together.
    (["--iceberg-sts-endpoint", "http://127.0.0.1:1"], "--iceberg-sts-role-arn"),
])
def test_bad_vending_flags_stop_the_broker_with_a_message(broker_factory, extra, message):
    broker = broker_factory(args=extra, start=False)
    res = subprocess.run(broker.command(), capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, cwd=broker.workdir.parent)
    assert res.returncode != 0
    assert message in res.stderr + res.stdout, res.stderr
    assert "panicked" not in res.stderr
