"""Unmount and mount of a topic in a three-broker cluster sharing one S3 bucket (SeaweedFS
`weed mini`), coordinated by the controller: a 6-partition RF=3 topic with a consumer group is
unmounted with the controller leader SIGKILLed right after the unmount started, and mounted
back with the (new) controller leader SIGKILLed while the mount restores group offsets. Each
operation resumes on the surviving brokers; in the end every record reads back at its offset,
the group resumes from its committed offsets, and new records continue the offsets. An Iceberg
topic's translation finishes before it is unmounted, and resumes after it is mounted."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)

from cluster import controller_leader, start_cluster, wait_formed
from conftest import http_get
from conftest import produce as produce_records
from s3server import WeedS3
from test_cli import cli, cli_json
from test_cluster import wait_topic_everywhere
from test_iceberg_external_catalog import TABLE_BUCKET, rows_of, wait_rows
from test_iceberg_external_catalog import broker_args as iceberg_args
from test_iceberg_topics import assert_exact, high_watermarks
from test_mount import commit_offsets, resume_group, topic_unknown
from test_tiering import FAST_RETENTION, consume_all, produce

TOPIC = "hibernating"
PARTITIONS = 6
# The consumer group's committed offsets, per partition (each partition gets 500 records).
COMMITTED = {p: 50 * (p + 1) for p in range(PARTITIONS)}


def post(b, path: str, body: dict, timeout: float = 60.0) -> tuple[int, dict]:
    req = urllib.request.Request(f"{b.admin_url}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get_json(b, path: str) -> tuple[int, dict]:
    status, body, _ = http_get(f"{b.admin_url}{path}")
    return status, json.loads(body) if body else {}


def wait_for(what: str, cond, brokers, timeout: float = 120.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except (OSError, urllib.error.URLError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    logs = "\n".join(b.log_tail(40) for b in brokers if b.running())
    raise AssertionError(f"timed out waiting for {what}: last {last!r}\n{logs}")


def survivor(brokers, by_id, avoid: int):
    return next(b for i, b in by_id.items() if i != avoid and b.running())


def test_unmount_and_mount_survive_losing_the_controller_leader(broker_factory, tmp_path):
    weed = WeedS3(tmp_path / "s3").start()
    try:
        brokers = start_cluster(broker_factory, 3, FAST_RETENTION + weed.broker_args(),
                                env=WeedS3.broker_env())
        wait_formed(brokers)
        by_id = {i + 1: b for i, b in enumerate(brokers)}
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        # Not tiered yet: the unmount turns remote storage on, so every segment is uploaded
        # while the unmount runs.
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={
            "segment.bytes": "16384", "min.insync.replicas": "2"})],
            request_timeout=30)[TOPIC].result(40)
        wait_topic_everywhere(brokers, TOPIC, PARTITIONS)
        sent = produce(brokers[0], TOPIC, 3000, partitions=PARTITIONS)
        commit_offsets(brokers[0], "billing", TOPIC, COMMITTED)

        # Unmount through a broker that does not lead the controller, then kill the leader.
        leader = controller_leader(brokers[0])
        asked = survivor(brokers, by_id, leader)
        status, body = post(asked, "/v1/topics/unmount", {"topic": TOPIC})
        assert status == 202, body
        status, first = get_json(asked, f"/v1/topics/unmount/status/{TOPIC}")
        assert status == 200 and first["state"] in ("sealing", "uploading"), first
        by_id[leader].kill9()
        # Hidden on every broker from the start.
        assert topic_unknown(asked, TOPIC)
        # Per-partition progress from the admin API while it runs.
        status, progress = get_json(asked, f"/v1/topics/unmount/status/{TOPIC}")
        if progress.get("state") != "done":
            assert [p["partition"] for p in progress["progress"]] == list(range(PARTITIONS))
        done = wait_for("the unmount to complete on the survivors", lambda: (
            (s := get_json(asked, f"/v1/topics/unmount/status/{TOPIC}")[1])
            and s.get("state") == "done" and s), brokers)
        assert done["total_records"] == len(sent)
        assert controller_leader(asked) != leader
        for b in brokers:
            if b.running():
                assert topic_unknown(b, TOPIC)
                wait_for("the replicas' files to go", lambda b=b: not any(
                    b.partition_dir(TOPIC, p).exists() for p in range(PARTITIONS)), brokers)
        listed = cli_json(asked, "cluster", "storage", "list-mountable")
        [entry] = [m for m in listed if m["topic"] == TOPIC]
        assert entry["partitions"] == PARTITIONS and entry["records"] == len(sent)
        assert entry["group_offsets"] == PARTITIONS

        # The killed broker comes back and forgets the topic too, keeping its remote data.
        by_id[leader].start()
        wait_formed(brokers)
        wait_for("the restarted broker to forget the topic", lambda: not any(
            by_id[leader].partition_dir(TOPIC, p).exists() for p in range(PARTITIONS)), brokers)
        assert any(k.startswith("topics/") for k in weed.list_keys())

        # Mount through a non-leader; kill the controller leader while the mount restores the
        # group's offsets.
        leader = controller_leader(brokers[0])
        asked = survivor(brokers, by_id, leader)
        answer = {}
        t = threading.Thread(target=lambda: answer.update(
            zip(("status", "body"), post(asked, "/v1/topics/mount", {"topic": TOPIC}))))
        t.start()
        seen = wait_for("the mount to start", lambda: (
            (s := get_json(asked, f"/v1/topics/mount/status/{TOPIC}"))[0] == 200 and s[1]),
            brokers, timeout=60, every=0.02)
        by_id[leader].kill9()
        assert seen["state"] == "mounting", seen
        t.join(90)
        assert answer.get("status") == 200, answer
        # Placed as it was unmounted: three replicas a partition.
        assert answer["body"]["replication_factor"] == 3, answer
        wait_for("the mount to complete", lambda: get_json(
            asked, f"/v1/topics/mount/status/{TOPIC}")[1].get("state") == "done", brokers)
        by_id[leader].start()
        wait_formed(brokers)
        wait_topic_everywhere(brokers, TOPIC, PARTITIONS)

        # Every record at its offset, from the tier; nothing downloaded to mount.
        assert consume_all(asked, TOPIC, PARTITIONS, len(sent)) == sent
        for b in brokers:
            for p in range(PARTITIONS):
                d = b.partition_dir(TOPIC, p)
                assert not d.exists() or sum(f.stat().st_size for f in d.glob("*.log")) == 0
        # The group resumes where it committed.
        resumed = resume_group(asked, "billing", TOPIC, len(sent) - sum(COMMITTED.values()))
        for p, offset in COMMITTED.items():
            assert min(o for (q, o) in resumed if q == p) == offset, p
        # New records continue each partition's offsets, on every replica.
        more = produce(asked, TOPIC, 60, partitions=PARTITIONS, start=10_000)
        for p in range(PARTITIONS):
            ends = [o for (q, o) in sent if q == p]
            assert min(o for (q, o) in more if q == p) == max(ends) + 1
        # Mounted once: its manifest is gone.
        assert [m for m in cli_json(asked, "cluster", "storage", "list-mountable")
                if m["topic"] == TOPIC] == []
        res = cli(asked, "cluster", "storage", "mount", TOPIC, check=False)
        assert res.returncode != 0

        # A broker killed between writing a mounted replica's files and recording the topic
        # leaves them behind; its next start removes them (the Raft checkpoint too, else the
        # mount's replica would find a checkpoint its empty log cannot match).
        b = brokers[0]
        b.kill9()
        ghost = f"ghost-{uuid.uuid4()}"
        [cp] = list((b.data_dir / "raft").glob(f"{TOPIC}-*/0/checkpoint"))
        (b.data_dir / "raft" / ghost / "0").mkdir(parents=True)
        shutil.copy(cp, b.data_dir / "raft" / ghost / "0" / "checkpoint")
        (b.data_dir / "kafka" / "ghost" / "0").mkdir(parents=True)
        b.start()
        assert not (b.data_dir / "raft" / ghost).exists()
        assert not (b.data_dir / "kafka" / "ghost").exists()
        assert cp.exists()
    finally:
        weed.stop()


def test_an_iceberg_topic_is_translated_whole_before_unmount_and_resumes_after_mount(
        broker_factory, tmp_path):
    weed = WeedS3(tmp_path / "s3", table_bucket=TABLE_BUCKET).start()
    try:
        brokers = start_cluster(broker_factory, 3, FAST_RETENTION + weed.broker_args()
                                + iceberg_args(weed), env=WeedS3.broker_env())
        wait_formed(brokers)
        topic = "lake_events"
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        # A target lag of ten minutes: nothing is translated before the unmount asks for it.
        admin.create_topics([NewTopic(topic, 3, 3, config={
            "iceberg.mode": "key_value", "iceberg.target.lag.ms": "600000",
            "remote.storage.enable": "true", "segment.bytes": "16384",
            "min.insync.replicas": "2"})], request_timeout=30)[topic].result(40)
        wait_topic_everywhere(brokers, topic, 3)
        records = [{"key": str(i).encode(), "value": f"v{i}".encode(), "partition": i % 3}
                   for i in range(450)]
        produce_records(brokers[0], topic, records[:300], **{"enable.idempotence": True})
        highs = high_watermarks(brokers[0], topic, 3)
        assert rows_of(weed, topic) == []

        # The CLI follows the unmount to its end with its progress line.
        res = cli(brokers[1], "cluster", "storage", "unmount", topic)
        assert f"unmounted '{topic}'" in res.stdout and "records" in res.stderr
        # Done means translated: the table holds every offset, read at once.
        assert_exact(rows_of(weed, topic), highs)

        body = cli_json(brokers[2], "cluster", "storage", "mount", topic,
                        "--replication-factor", "3")
        assert body["state"] == "done" and body["replication_factor"] == 3, body
        wait_topic_everywhere(brokers, topic, 3)
        admin.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(
                "iceberg.target.lag.ms", "500",
                incremental_operation=AlterConfigOpType.SET)])])[
            ConfigResource(ResourceType.TOPIC, topic)].result(30)
        produce_records(brokers[0], topic, records[300:], **{"enable.idempotence": True})
        highs = high_watermarks(brokers[0], topic, 3)
        assert sum(highs.values()) == 450
        # The translation resumes where the table stood: each offset once.
        assert_exact(wait_rows(weed, topic, 450), highs)
    finally:
        weed.stop()
