"""Tiered storage: sealed segments go to object storage (the local filesystem default, and a
real S3 server, SeaweedFS `weed mini`, on loopback), old offsets are read back from there, and
nothing is lost when the broker dies mid-upload or the store goes away for a while."""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import http_get
from s3server import WeedS3

FAST_RETENTION = ["--retention-check-interval-ms", "200"]
# Small segments, and local retention that keeps nothing that is uploaded.
TIERED = {"remote.storage.enable": "true", "segment.bytes": "16384",
          "local.retention.bytes": "1"}


class LocalStore:
    """The filesystem default: objects under <data-dir>/objects."""

    def __init__(self, root: Path):
        self.root = root

    def list_keys(self, prefix: str = "") -> dict[str, int]:
        base = self.root / prefix
        if not base.exists():
            return {}
        out = {}
        for p in base.rglob("*"):
            if p.name.startswith("."):
                continue
            try:
                if p.is_file():
                    out[str(p.relative_to(self.root))] = p.stat().st_size
            except FileNotFoundError:
                pass  # retention removed it while we listed, as S3 listings allow too
        return out

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


@pytest.fixture
def weed(tmp_path):
    s3 = WeedS3(tmp_path).start()
    yield s3
    s3.stop()


@pytest.fixture(params=["local", "s3"])
def tiered_broker(request, broker_factory, tmp_path):
    """A broker tiering to the filesystem default or to a real S3 server, and its store."""
    if request.param == "local":
        b = broker_factory(args=FAST_RETENTION)
        return b, LocalStore(b.data_dir / "objects")
    s3 = WeedS3(tmp_path).start()
    request.addfinalizer(s3.stop)
    b = broker_factory(args=FAST_RETENTION + s3.broker_args(prefix="cluster-a"),
                       env=WeedS3.broker_env())
    return b, _Prefixed(s3, "cluster-a")


class _Prefixed:
    def __init__(self, s3: WeedS3, prefix: str):
        self.s3, self.prefix = s3, prefix

    def list_keys(self, prefix: str = "") -> dict[str, int]:
        full = f"{self.prefix}/{prefix}".rstrip("/")
        return {k[len(self.prefix) + 1:]: v for k, v in self.s3.list_keys(full).items()}

    def get(self, key: str) -> bytes:
        return self.s3.get(f"{self.prefix}/{key}")


def create_topic(b, name: str, partitions: int = 2, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    fs[name].result(15)


def produce(b, topic: str, count: int, partitions: int = 2, size: int = 300,
            start: int = 0) -> dict[tuple[int, int], tuple[bytes, bytes, list]]:
    """Produces `count` records with acks=all; returns {(partition, offset): (key, value, headers)}."""
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 8192,
                  "enable.idempotence": True})
    acked: dict[tuple[int, int], tuple[bytes, bytes, list]] = {}
    errors = []
    rnd = random.Random(start)

    def cb(err, msg):
        if err:
            errors.append(err)
        else:
            # Delivery reports carry no headers: the key says which record this was.
            seq = msg.key().decode().split("-")[1]
            acked[(msg.partition(), msg.offset())] = (msg.key(), msg.value(),
                                                      [("seq", seq.encode())])

    for i in range(start, start + count):
        key = f"key-{i}".encode()
        value = bytes(rnd.getrandbits(8) for _ in range(size))
        p.produce(topic, value=value, key=key, partition=i % partitions,
                  headers=[("seq", str(i).encode())], on_delivery=cb)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return acked


def consume_all(b, topic: str, partitions: int, expect: int, timeout: float = 60.0,
                start: int = 0) -> dict[tuple[int, int], tuple[bytes, bytes, list]]:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 1 << 20})
    c.assign([TopicPartition(topic, p, start) for p in range(partitions)])
    return poll_records(c, expect, timeout)


def poll_records(c: Consumer, expect: int, timeout: float
                 ) -> dict[tuple[int, int], tuple[bytes, bytes, list]]:
    """Polls until `expect` records arrived (or `timeout`), then closes the consumer;
    {(partition, offset): (key, value, headers)}, each record at most once."""
    got: dict[tuple[int, int], tuple[bytes, bytes, list]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            key = (m.partition(), m.offset())
            assert key not in got, f"record {key} delivered twice"
            got[key] = (m.key(), m.value(), m.headers())
    finally:
        c.close()
    return got


def local_bases(b, topic: str, partition: int) -> list[int]:
    d = b.partition_dir(topic, partition)
    return sorted(int(p.stem) for p in d.glob("*.log")) if d.exists() else []


def wait_local_trimmed(b, topic: str, partitions: int, timeout: float = 60.0) -> None:
    """Waits until uploaded segments have left local disk in every partition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(local_bases(b, topic, p) and local_bases(b, topic, p)[0] > 0
               for p in range(partitions)):
            return
        time.sleep(0.2)
    raise AssertionError(f"local segments never trimmed: "
                         f"{[local_bases(b, topic, p) for p in range(partitions)]}\n"
                         f"{b.log_tail(60)}")


def metric(b, name: str) -> float:
    status, body, _ = http_get(f"{b.admin_url}/metrics")
    assert status == 200
    total = 0.0
    found = False
    for line in body.splitlines():
        if re.match(rf"^{re.escape(name)}(\{{.*\}})? ", line):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"metric {name} not exported"
    return total


def wait_backlog_drained(b, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(b, "icestream_tiering_upload_backlog_segments") > 0:
        assert time.monotonic() < deadline, "upload backlog never drained"
        time.sleep(0.2)


def manifests(store) -> dict[str, dict]:
    return {k: json.loads(store.get(k)) for k in store.list_keys()
            if k.endswith("/manifest.json") and not k.startswith("topics/")}


def assert_manifests_match_store(store) -> int:
    """Every object a partition manifest names exists with its size; returns segments named.

    Manifests are read first: objects are uploaded before the manifest naming them, so a
    listing taken afterwards must hold everything they name. Retention does the reverse
    (manifest first, then deletes), so an object missing because retention just dropped it
    is checked once more against a fresh manifest."""
    for attempt in range(2):
        found = manifests(store)
        keys = store.list_keys()
        named, problems = 0, []
        for mkey, m in found.items():
            for seg in m["segments"]:
                named += 1
                for obj in seg["objects"]:
                    if obj["key"] not in keys:
                        problems.append(f"{mkey} names missing object {obj['key']}")
                    elif keys[obj["key"]] != obj["size"]:
                        problems.append(f"{obj['key']} has the wrong size")
        if not problems:
            return named
        time.sleep(0.5)
    raise AssertionError("; ".join(problems[:5]))


# ---------------------------------------------------------------------------- tests


def test_old_offsets_come_back_from_object_storage(tiered_broker):
    b, store = tiered_broker
    create_topic(b, "events", 2, TIERED)
    sent = produce(b, "events", 3000)
    wait_local_trimmed(b, "events", 2)
    wait_backlog_drained(b)

    logs = [k for k in store.list_keys() if k.endswith(".log")]
    assert len(logs) >= 10, logs
    assert assert_manifests_match_store(store) >= len(logs)

    got = consume_all(b, "events", 2, len(sent))
    assert got == sent, f"{len(got)} of {len(sent)} records read back"
    assert metric(b, "icestream_tiering_remote_read_bytes_total") > 0

    # The log still starts at 0 for clients; timestamps of old records resolve remotely.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "probe"})
    try:
        for p in range(2):
            low, high = c.get_watermark_offsets(TopicPartition("events", p), timeout=10)
            assert low == 0 and high == sum(1 for (q, _) in sent if q == p)
        found = c.offsets_for_times([TopicPartition("events", 0, 0)], timeout=10)
        assert found[0].offset == 0
    finally:
        c.close()


def test_restart_keeps_remote_offsets_readable(broker_factory):
    b = broker_factory(args=FAST_RETENTION)
    create_topic(b, "kept", 1, TIERED)
    sent = produce(b, "kept", 1500, partitions=1)
    wait_local_trimmed(b, "kept", 1)
    b.restart()
    assert consume_all(b, "kept", 1, len(sent)) == sent


def test_broker_killed_during_uploads_loses_nothing(broker_factory, weed):
    b = broker_factory(args=FAST_RETENTION + weed.broker_args(), env=WeedS3.broker_env())
    create_topic(b, "crashy", 2, TIERED)
    sent: dict = {}
    for round_ in range(4):
        sent.update(produce(b, "crashy", 800, start=round_ * 800))
        time.sleep(random.uniform(0.05, 0.4))  # uploads are in flight
        b.kill9()
        b.start()
    wait_local_trimmed(b, "crashy", 2)
    store = weed
    assert assert_manifests_match_store(store) > 0
    assert consume_all(b, "crashy", 2, len(sent)) == sent


def test_s3_outage_does_not_block_produce(broker_factory, weed):
    b = broker_factory(args=FAST_RETENTION + weed.broker_args(), env=WeedS3.broker_env())
    create_topic(b, "outage", 1, TIERED)
    sent = produce(b, "outage", 500, partitions=1)
    weed.stop()
    # Produce goes on while the store is down; the backlog grows instead.
    sent.update(produce(b, "outage", 1500, partitions=1, start=500))
    deadline = time.monotonic() + 20
    while metric(b, "icestream_tiering_upload_backlog_segments") == 0:
        assert time.monotonic() < deadline, "backlog never rose while S3 was down"
        time.sleep(0.2)
    while metric(b, "icestream_tiering_upload_errors_total") == 0:
        assert time.monotonic() < deadline + 30, "no upload error counted while S3 was down"
        time.sleep(0.3)
    weed.start()
    wait_backlog_drained(b, timeout=90)
    wait_local_trimmed(b, "outage", 1)
    assert assert_manifests_match_store(weed) > 0
    assert consume_all(b, "outage", 1, len(sent)) == sent


def test_tiering_refused_for_compacted_topics(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = admin.create_topics([NewTopic("compacted", 1, 1, config={
        "cleanup.policy": "compact", "remote.storage.enable": "true"})])
    with pytest.raises(KafkaException) as e:
        fs["compacted"].result(10)
    assert "compact" in str(e.value)


def test_total_retention_removes_remote_segments(broker_factory):
    b = broker_factory(args=FAST_RETENTION)
    store = LocalStore(b.data_dir / "objects")
    create_topic(b, "short", 1, dict(TIERED, **{"retention.bytes": "100000"}))
    produce(b, "short", 3000, partitions=1)
    deadline = time.monotonic() + 30
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "probe"})
    try:
        while True:
            low, high = c.get_watermark_offsets(TopicPartition("short", 0), timeout=10)
            total = sum(v for k, v in store.list_keys().items() if k.endswith(".log"))
            if low > 0 and total <= 100000 + 2 * 16384:
                break
            assert time.monotonic() < deadline, (low, total)
            time.sleep(0.3)
    finally:
        c.close()
    assert_manifests_match_store(store)
    got = consume_all(b, "short", 1, high - low, start=low)
    assert min(o for _, o in got) == low and len(got) == high - low
