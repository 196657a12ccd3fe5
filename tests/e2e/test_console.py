"""The web console (/console on the admin listener) in a real browser, and the admin API routes
it uses: a broker filled with real data (Avro values through confluent-kafka's AvroSerializer,
a consumer group with lag, schema versions, an Iceberg topic), then console/tests/console.e2e.mjs
drives Debian's Chromium through every page with playwright-core and checks each page with
axe-core. Set ICESTREAM_CONSOLE_SCREENSHOTS=docs/console to (re)write the screenshots of
docs/console.md. scripts/test installs Chromium and console/node_modules and sets
ICESTREAM_REQUIRE_CONSOLE=1, so there a missing browser fails instead of skipping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import create_topic, produce, producer_config, unique_topic
from test_cli import cli

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

USER_V1 = {"type": "record", "name": "User", "namespace": "console.test",
           "fields": [{"name": "name", "type": "string"}, {"name": "n", "type": "int"}]}
USER_V2 = {**USER_V1, "fields": USER_V1["fields"] + [
    {"name": "email", "type": "string", "default": ""}]}
USER_V3 = {**USER_V1, "fields": USER_V2["fields"] + [
    {"name": "phone", "type": "string", "default": ""}]}
USER_BAD = {**USER_V1, "fields": [{"name": "name", "type": "string"},
                                  {"name": "n", "type": "string"}]}


def request(method: str, url: str, body=None, headers=None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def csrf_token(broker) -> str:
    status, html = request("GET", f"{broker.admin_url}/console")
    assert status == 200
    m = re.search(r'name="csrf-token" content="([0-9a-f]{32})"', html)
    assert m, html[:500]
    return m.group(1)


def test_console_page_and_assets_are_embedded(broker):
    status, html = request("GET", f"{broker.admin_url}/console/")
    assert status == 200 and "/console/assets/console.js" in html
    for asset in ("console.js", "console.css"):
        status, body = request("GET", f"{broker.admin_url}/console/assets/{asset}")
        assert status == 200 and len(body) > 500


def test_mutating_requests_from_other_sites_are_refused(broker):
    token = csrf_token(broker)
    own = f"127.0.0.1:{broker.admin_port}"
    url = f"{broker.admin_url}/v1/topics"

    def create(headers):
        name = unique_topic("csrf")
        status, body = request("POST", url, {"name": name, "partitions": 1}, headers)
        return status, body, name

    # Another site's page posting to the broker: refused whatever it sends.
    for headers in (
        {"Origin": "http://evil.example", "X-CSRF-Token": token},
        {"Origin": "null", "X-CSRF-Token": token},
        {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": token},
        # DNS rebinding: a name pointing at the broker, same Origin, token guessed right.
        {"Host": f"evil.example:{broker.admin_port}",
         "Origin": f"http://evil.example:{broker.admin_port}", "X-CSRF-Token": token},
        # The console's own origin without the token (e.g. a form on a page of the same host).
        {"Origin": f"http://{own}"},
        {"Origin": f"http://{own}", "X-CSRF-Token": "0" * 32},
    ):
        status, body, name = create(headers)
        assert status == 403 and "refused" in body, (headers, status, body)
    # The other routes of the admin listener are guarded alike.
    evil = {"Origin": "http://evil.example", "X-CSRF-Token": token}
    for method, path, body in (
        ("POST", "/v1/topics/unmount", {"topic": "x"}),
        ("POST", "/v1/cluster/decommission/7", None),
        ("POST", "/schema-registry/subjects/x/versions", {"schema": '"string"'}),
        ("PUT", "/schema-registry/config", {"compatibility": "NONE"}),
        ("POST", "/v1/connect/local/connectors", {"name": "x", "config": {}}),
        ("DELETE", "/v1/connect/local/connectors/x", None),
    ):
        status, text = request(method, broker.admin_url + path, body, evil)
        assert status == 403, (path, status, text)
    status, text = request("GET", f"{broker.schema_registry_url}/config")
    assert "NONE" not in text

    # The console itself, and programs that are not browsers (no Origin): accepted.
    status, body, name = create({"Origin": f"http://{own}", "X-CSRF-Token": token})
    assert status == 201, body
    status, body, name = create({})
    assert status == 201, body


def test_records_are_paged_with_bounds_key_filter_and_avro_decoding(broker):
    topic = create_topic(broker, unique_topic("browse"), 2)
    sr = SchemaRegistryClient({"url": broker.schema_registry_url})
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    p = Producer(producer_config(broker))
    for i in range(30):
        p.produce(topic, partition=0, key=f"k{i % 3}",
                  value=ser({"name": f"u{i}", "n": i}, SerializationContext(topic, MessageField.VALUE)),
                  headers={"h": b"v"})
    assert p.flush(30) == 0
    before = int(time.time() * 1000)
    produce(broker, topic, [{"value": b"\x00\xff\xfe raw", "partition": 0}])
    base = f"{broker.admin_url}/v1/topics/{topic}/records"

    status, body = request("GET", f"{base}?from=start&max_records=5")
    page = json.loads(body)
    assert status == 200 and [r["offset"] for r in page["records"]] == [0, 1, 2, 3, 4]
    assert page["next_offset"] >= 5 and page["high_watermark"] == 31
    first = page["records"][0]
    assert first["value"]["format"] == "avro" and first["value"]["decoded"] == {"name": "u0", "n": 0}
    assert first["key"] == {"format": "text", "text": "k0", "size": 2, "truncated": False}
    assert first["headers"] == [{"key": "h", "value": {"format": "text", "text": "v", "size": 1,
                                                       "truncated": False}}]

    page = json.loads(request("GET", f"{base}?from=end&max_records=3")[1])
    assert [r["offset"] for r in page["records"]] == [28, 29, 30]
    assert page["records"][-1]["value"]["format"] == "hex"

    page = json.loads(request("GET", f"{base}?from=offset&offset=10&key=k2&max_records=4")[1])
    assert [r["offset"] for r in page["records"]] == [11, 14, 17, 20]

    page = json.loads(request("GET", f"{base}?from=timestamp&timestamp={before}")[1])
    assert [r["offset"] for r in page["records"]] == [30]

    # Decoding can be turned off; empty partitions answer no records.
    page = json.loads(request("GET", f"{base}?from=start&max_records=1&decode=false")[1])
    assert page["records"][0]["value"]["format"] == "hex"
    page = json.loads(request("GET", f"{base}?partition=1&from=start")[1])
    assert page["records"] == []

    # The scan stops after max_bytes of the log (whole batches: at least one is read).
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    for i in range(20):
        p.produce(topic, partition=1, value=b"%03d" % i + b"." * 600)
        p.flush(30)
    page = json.loads(request("GET", f"{base}?partition=1&from=start&max_records=500&max_bytes=2048")[1])
    assert 1 <= len(page["records"]) <= 4 and page["scanned_bytes"] <= 2048 + 700, page["scanned_bytes"]
    assert page["next_offset"] == page["records"][-1]["offset"] + 1
    status, body = request("GET", f"{base}?partition=9")
    assert status == 400 and "no partition 9" in body


def commit(broker, group: str, topic: str, offsets: dict[int, int]) -> None:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


def committed(broker, group: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        c.close()


COMPAT_JAVA = ROOT / "tests" / "compat" / "java" / "target"


class ConnectWorker:
    """A real Kafka Connect worker (connect-runtime from Maven Central, built by
    tests/compat/build.sh) in distributed mode against the broker, running one sink connector
    named `s3-sink` (the compatibility suite's line-file sink) on `topic`."""

    def __init__(self, broker, topic: str, workdir: Path, url: str):
        cp = COMPAT_JAVA / "classpath.txt"
        if not cp.exists():
            pytest.fail(f"{cp} is missing: run tests/compat/build.sh", pytrace=False)
        self.url = url
        self.topic = topic
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        props = workdir / "worker.properties"
        gid = unique_topic("console-connect")
        props.write_text("\n".join([
            f"bootstrap.servers={broker.bootstrap}",
            f"group.id={gid}",
            f"config.storage.topic={gid}-configs",
            f"offset.storage.topic={gid}-offsets",
            f"status.storage.topic={gid}-status",
            "config.storage.replication.factor=1",
            "offset.storage.replication.factor=1",
            "status.storage.replication.factor=1",
            "key.converter=org.apache.kafka.connect.storage.StringConverter",
            "value.converter=org.apache.kafka.connect.storage.StringConverter",
            f"listeners={self.url}",
            "rest.advertised.host.name=127.0.0.1",
            "plugin.discovery=only_scan",
        ]) + "\n")
        classpath = cp.read_text().strip() + os.pathsep + str(COMPAT_JAVA / "classes")
        self.log = open(workdir / "connect.log", "wb")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", classpath,
             "org.apache.kafka.connect.cli.ConnectDistributed", str(props)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.wait(lambda: self.get("/connectors") == [], "the worker's REST API", 120)
        self.request("PUT", "/connectors/s3-sink/config", {
            "connector.class": "compat.LineFiles$Sink", "tasks.max": "1",
            "topics": topic, "file": str(workdir / "sink.txt")})
        self.wait(lambda: self.state() == ("RUNNING", ["RUNNING"]), "s3-sink running", 120)

    def request(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def get(self, path: str):
        try:
            return self.request("GET", path)
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            return None

    def state(self):
        st = self.get("/connectors/s3-sink/status")
        if not st:
            return None
        return st["connector"]["state"], [t["state"] for t in st["tasks"]]

    def wait(self, ok, what: str, timeout: float):
        deadline = time.monotonic() + timeout
        while not ok():
            assert self.proc.poll() is None, f"the Connect worker exited ({self.proc.returncode})"
            assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
            time.sleep(0.5)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def browser_ready() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "no node"
    for mod in ("playwright-core", "axe-core"):
        if not (CONSOLE / "node_modules" / mod).is_dir():
            return f"no console/node_modules/{mod} (cd console && npm ci)"
    return None


def test_console_in_a_browser(broker_factory):
    why = browser_ready()
    if why:
        if os.environ.get("ICESTREAM_REQUIRE_CONSOLE") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    from conftest import free_port
    connect_url = f"http://127.0.0.1:{free_port()}"
    broker = broker_factory(args=["--connect-url", f"local={connect_url}"])
    topic = create_topic(broker)
    connect = ConnectWorker(broker, topic, broker.workdir / "connect", connect_url)
    try:
        run_browser(broker, connect)
        # The page's pause, resume and restart reached the worker: it runs again.
        connect.wait(lambda: connect.state() == ("RUNNING", ["RUNNING"]), "s3-sink running", 60)
    finally:
        connect.stop()


def run_browser(broker, connect):
    sr = SchemaRegistryClient({"url": broker.schema_registry_url})

    # Messages: Avro values produced by confluent-kafka's serializer.
    avro_topic = create_topic(broker, unique_topic("orders"), 1)
    marker = f"alice-{unique_topic('m')[-8:]}"
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    p = Producer(producer_config(broker))
    for i in range(8):
        p.produce(avro_topic, key=f"user-{i}",
                  value=ser({"name": f"{marker}-{i}", "n": i},
                            SerializationContext(avro_topic, MessageField.VALUE)))
    assert p.flush(30) == 0

    # A group with lag 6 + 4 on an idle topic, no members.
    group_topic = create_topic(broker, unique_topic("payments"), 2)
    produce(broker, group_topic, [{"value": b"x", "partition": i % 2} for i in range(20)])
    group = unique_topic("billing")
    commit(broker, group, group_topic, {0: 4, 1: 6})

    # Two versions of a subject (v2 adds email).
    subject = unique_topic("users") + "-value"
    sr.register_schema(subject, Schema(json.dumps(USER_V1), "AVRO"))
    sr.register_schema(subject, Schema(json.dumps(USER_V2), "AVRO"))

    unmount_topic = create_topic(broker, unique_topic("archive"), 1)
    produce(broker, unmount_topic, [b"old-%d" % i for i in range(50)])
    # Unmounted by the CLI before the page opens: the Storage page lists it from the broker.
    cli_unmount_topic = create_topic(broker, unique_topic("cold"), 1)
    produce(broker, cli_unmount_topic, [b"cold-%d" % i for i in range(20)])
    cli(broker, "cluster", "storage", "unmount", cli_unmount_topic)

    iceberg_topic = create_topic(broker, unique_topic("lake"), 1, {
        "iceberg.mode": "key_value", "iceberg.target.lag.ms": "1000"})
    produce(broker, iceberg_topic, [{"key": b"k%d" % i, "value": b"v%d" % i} for i in range(10)])
    dlq_topic, dead_letters = schema_topic_with_dead_letters(broker, sr)

    load_topic = create_topic(broker, unique_topic("clicks"), 1)

    names = {
        "new_topic": unique_topic("console-made"), "load_topic": load_topic,
        "avro_topic": avro_topic, "avro_marker": marker,
        "group": group, "group_lag": 10,
        "subject": subject, "added_field": "email",
        "draft_incompatible": json.dumps(USER_BAD, indent=2),
        "draft_v3": json.dumps(USER_V3, indent=2),
        "unmount_topic": unmount_topic, "renamed_topic": unique_topic("thawed"),
        "cli_unmount_topic": cli_unmount_topic,
        "iceberg_topic": iceberg_topic, "iceberg_records": 10,
        "dlq_topic": dlq_topic, "dead_letters": dead_letters,
        "evil_topic": unique_topic("evil"),
        "connect_topic": connect.topic, "connect_file": str(connect.workdir / "sink-2.txt"),
    }
    env = dict(os.environ, CONSOLE_URL=broker.admin_url, CONSOLE_TEST=json.dumps(names),
               CHROMIUM=CHROMIUM)
    shots = os.environ.get("ICESTREAM_CONSOLE_SCREENSHOTS")
    if shots:
        env["CONSOLE_SCREENSHOTS"] = str((ROOT / shots).resolve())
    started = time.monotonic()
    res = subprocess.run(["node", str(CONSOLE / "tests" / "console.e2e.mjs")], cwd=CONSOLE,
                         env=env, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    assert res.returncode == 0, f"browser test failed:\n{res.stderr[-6000:]}\n{res.stdout[-2000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"console browser test: {took:.1f} s; {json.dumps(report)}")

    # What the browser did, seen from outside.
    assert committed(broker, group, group_topic, 0) == 10
    assert committed(broker, group, group_topic, 1) == 10
    assert sr.get_latest_version(subject).version == 3
    renamed = names["renamed_topic"]
    status, body = request("GET", f"{broker.admin_url}/v1/topics/{renamed}/storage")
    assert status == 200, body
    status, body = request("GET", f"{broker.admin_url}/v1/topics")
    listed = [t["name"] for t in json.loads(body)]
    assert names["new_topic"] not in listed and names["evil_topic"] not in listed
    assert renamed in listed and unmount_topic not in listed
    # Mounted under its new name with every record.
    page = json.loads(request("GET", f"{broker.admin_url}/v1/topics/{renamed}/records?from=start&max_records=100")[1])
    assert [r["value"]["text"] for r in page["records"]] == ["old-%d" % i for i in range(50)]
    # The connector the page created was deleted through its typed confirmation.
    assert connect.get("/connectors") == ["s3-sink"]
    for name, a in report["a11y"].items():
        assert a["serious"] == 0, (name, a)


def schema_topic_with_dead_letters(broker, sr) -> tuple[str, list[dict]]:
    """A value_schema_id_prefix topic with Avro values and, after them, three values the
    translator cannot decode (as tests/e2e/test_iceberg_topics.py); answers the topic and the
    dead letters as the console should show them."""
    topic = create_topic(broker, unique_topic("signups"), 1, {
        "iceberg.mode": "value_schema_id_prefix", "iceberg.target.lag.ms": "1000"})
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    ctx = SerializationContext(topic, MessageField.VALUE)
    good = [ser({"name": f"u{i}", "n": i}, ctx) for i in range(5)]
    bad = [b"not avro at all", b"\x00\x00\x00\x7f\xff\x02", good[0][:7]]
    produce(broker, topic, [{"key": b"u%d" % i, "value": v} for i, v in enumerate(good)]
            + [{"key": b"bad", "value": v} for v in bad])
    return topic, [
        {"offset": 5, "shown": "not avro at all", "reason_code": "bad_wire_format"},
        {"offset": 6, "shown": "0000007fff02", "reason_code": "unknown_schema_id"},
        {"offset": 7, "shown": good[0][:7].hex(), "reason_code": "payload_mismatch"},
    ]


def wait_for(f, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.3)


def test_iceberg_files_and_dead_letters_through_the_admin_api(broker):
    sr = SchemaRegistryClient({"url": broker.schema_registry_url})
    topic, dead = schema_topic_with_dead_letters(broker, sr)
    base = f"{broker.admin_url}/v1/iceberg/topics/{topic}"

    def dead_letters():
        status, body = request("GET", f"{base}/dead-letters")
        assert status == 200, body
        d = json.loads(body)
        return d if len(d["rows"]) == 3 else None

    d = wait_for(dead_letters, "three dead letters")
    assert d["table"] == f"kafka.{topic}~dlq" and d["total_records"] == 3
    assert [r["offset"] for r in d["rows"]] == [7, 6, 5]  # newest first
    by_offset = {r["offset"]: r for r in d["rows"]}
    assert by_offset[5]["value"] == {"format": "text", "text": "not avro at all", "size": 15,
                                     "truncated": False}
    assert by_offset[6]["value"] == {"format": "hex", "hex": "0000007fff02", "size": 6,
                                     "truncated": False}
    assert by_offset[7]["value"]["hex"] == dead[2]["shown"]
    for r in d["rows"]:
        code = next(x["reason_code"] for x in dead if x["offset"] == r["offset"])
        assert r["reason_code"] == code and r["reason"], r
        assert r["partition"] == 0 and r["key"]["text"] == "bad" and r["timestamp_ms"] > 0
    status, body = request("GET", f"{base}/dead-letters?limit=1")
    assert [r["offset"] for r in json.loads(body)["rows"]] == [7]

    def files():
        f = json.loads(request("GET", f"{base}/files")[1])
        return f if sum(x["record_count"] for x in f["files"]) == 5 else None

    f = wait_for(files, "the table's data files")
    assert f["table"] == f"kafka.{topic}" and f["total_records"] == 5
    assert f["total_files"] == len(f["files"]) and f["snapshot_id"]
    assert all(x["path"].endswith(".parquet") and x["file_size_in_bytes"] > 0 for x in f["files"])

    # A key_value topic has no dead-letter table; a topic without iceberg.mode no tables.
    kv = create_topic(broker, unique_topic("kv"), 1, {"iceberg.mode": "key_value"})
    status, body = request("GET", f"{broker.admin_url}/v1/iceberg/topics/{kv}/dead-letters")
    assert status == 200 and json.loads(body)["table_exists"] is False, body
    plain = create_topic(broker, unique_topic("plain"), 1)
    status, body = request("GET", f"{broker.admin_url}/v1/iceberg/topics/{plain}/files")
    assert status == 404 and "iceberg.mode" in body, body
    status, body = request("GET", f"{base}/files?limit=x")
    assert status == 400, body


def test_unmounts_listed_and_mount_under_a_new_name_through_the_admin_api(broker):
    url = broker.admin_url
    topic = create_topic(broker, unique_topic("hib"), 1)
    produce(broker, topic, [b"r%d" % i for i in range(10)])
    before = int(time.time() * 1000)
    cli(broker, "cluster", "storage", "unmount", topic)
    status, body = request("GET", f"{url}/v1/topics/unmount/status")
    assert status == 200, body
    [s] = [s for s in json.loads(body) if s["topic"] == topic]
    assert s["state"] == "done" and s["uploaded_records"] == s["total_records"] == 10
    assert before <= s["started_ms"] <= s["finished_ms"]

    taken = create_topic(broker, unique_topic("taken"), 1)
    for new_name, status_want, words in (
        ("no spaces", 422, "contains ' '"),
        ("x" * 250, 422, "1 to 249"),
        ("..", 422, "'.' or '..'"),
        ("__consumer_offsets", 422, "internal"),
        (taken, 409, "already exists"),
    ):
        status, body = request("POST", f"{url}/v1/topics/mount",
                               {"topic": topic, "new_name": new_name})
        assert status == status_want and words in body, (new_name, status, body)
    mountable = json.loads(request("GET", f"{url}/v1/topics/mountable")[1])
    assert topic in [m["topic"] for m in mountable]

    renamed = unique_topic("woken")
    status, body = request("POST", f"{url}/v1/topics/mount", {"topic": topic, "new_name": renamed})
    assert status == 200 and json.loads(body)["topic"] == renamed, body
    page = json.loads(request("GET", f"{url}/v1/topics/{renamed}/records?from=start")[1])
    assert [r["value"]["text"] for r in page["records"]] == ["r%d" % i for i in range(10)]


def test_group_reset_to_a_timestamp(broker):
    """`to: timestamp` moves each partition to its first record at or after the time, and to
    the end where none is that recent (as kafka-consumer-groups --to-datetime)."""
    topic = create_topic(broker, unique_topic("reset-ts"), 2)
    t0 = 1_700_000_000_000
    p = Producer(producer_config(broker))
    for i in range(10):  # partition 0: t0, t0+1000, ..., t0+9000
        p.produce(topic, partition=0, value=b"a%d" % i, timestamp=t0 + i * 1000)
    for i in range(4):  # partition 1: t0, ..., t0+3000
        p.produce(topic, partition=1, value=b"b%d" % i, timestamp=t0 + i * 1000)
    assert p.flush(30) == 0
    group = unique_topic("reset-ts-g")
    commit(broker, group, topic, {0: 0, 1: 0})
    url = f"{broker.admin_url}/v1/groups/{group}/reset"

    status, body = request("POST", url, {"topic": topic, "to": "timestamp", "timestamp": t0 + 5000})
    assert status == 200, body
    assert committed(broker, group, topic, 0) == 5
    assert committed(broker, group, topic, 1) == 4  # every record older: the end

    status, body = request("POST", url, {"topic": topic, "to": "timestamp", "timestamp": t0 + 2500,
                                         "partition": 1})
    assert status == 200, body
    assert committed(broker, group, topic, 0) == 5
    assert committed(broker, group, topic, 1) == 3

    status, body = request("POST", url, {"topic": topic, "to": "timestamp", "timestamp": 0})
    assert status == 200, body
    assert committed(broker, group, topic, 0) == 0 and committed(broker, group, topic, 1) == 0

    status, body = request("POST", url, {"topic": topic, "to": "timestamp"})
    assert status == 400 and "needs a timestamp" in body


def test_records_decode_protobuf_and_json_schema_values(broker):
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from test_schema_registry_protobuf import F, message_class

    sr = SchemaRegistryClient({"url": broker.schema_registry_url})
    topic = create_topic(broker, unique_topic("pb"), 1)
    pkg = unique_topic("pb").replace("-", "_")
    User = message_class(pkg, [("name", 1, F.TYPE_STRING), ("age", 2, F.TYPE_INT32)])
    ser = ProtobufSerializer(User, sr, {"use.deprecated.format": False})
    p = Producer(producer_config(broker))
    p.produce(topic, value=ser(User(name="bob", age=42),
                               SerializationContext(topic, MessageField.VALUE)))
    jtopic = create_topic(broker, unique_topic("js"), 1)
    schema = {"type": "object", "properties": {"id": {"type": "integer"},
                                               "tags": {"type": "array", "items": {"type": "string"}}}}
    jser = JSONSerializer(json.dumps(schema), sr)
    p.produce(jtopic, value=jser({"id": 7, "tags": ["a", "b"]},
                                 SerializationContext(jtopic, MessageField.VALUE)))
    assert p.flush(30) == 0

    page = json.loads(request("GET", f"{broker.admin_url}/v1/topics/{topic}/records")[1])
    v = page["records"][0]["value"]
    assert v["format"] == "protobuf" and v["decoded"] == {"name": "bob", "age": 42}, v
    page = json.loads(request("GET", f"{broker.admin_url}/v1/topics/{jtopic}/records")[1])
    v = page["records"][0]["value"]
    assert v["format"] == "json" and v["decoded"]["id"] == 7 and v["decoded"]["tags"] == ["a", "b"], v


def test_console_routes_work_on_every_broker_of_a_cluster(broker_factory):
    """The routes run the CLI's client against the broker's own Kafka listener, which finds
    controllers, leaders and coordinators on the other brokers."""
    from cluster import start_cluster, wait_formed

    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("c")
    status, body = request("POST", f"{brokers[1].admin_url}/v1/topics",
                           {"name": topic, "partitions": 3, "replicas": 3})
    assert status == 201, body
    deadline = time.monotonic() + 30
    while True:
        ok = []
        for b in brokers:
            status, body = request("GET", f"{b.admin_url}/v1/topics/{topic}")
            parts = json.loads(body).get("partitions", []) if status == 200 else []
            ok.append(len(parts) == 3 and all(p["leader"] >= 0 and len(p["isr"]) == 3
                                              for p in parts))
        if all(ok):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    for i, b in enumerate(brokers):
        for p in range(3):
            status, body = request("POST", f"{b.admin_url}/v1/topics/{topic}/records",
                                   {"partition": p, "key": f"b{i}", "value": f"from {i} to {p}"})
            assert status == 200, body
    for b in brokers:
        for p in range(3):
            page = json.loads(request("GET", f"{b.admin_url}/v1/topics/{topic}/records?partition={p}&from=start")[1])
            assert [r["value"]["text"] for r in page["records"]] == \
                [f"from {i} to {p}" for i in range(3)], page
    listed = json.loads(request("GET", f"{brokers[2].admin_url}/v1/topics")[1])
    t = next(t for t in listed if t["name"] == topic)
    assert t["replicas"] == 3 and t["under_replicated_partitions"] == 0
