"""Unmount (hibernate) a topic into object storage and mount it back, with the CLI
(`icestream cluster storage ...`) and the admin API, against the filesystem default and a real
S3 server."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from conftest import http_get
from s3server import WeedS3
from test_cli import assert_one_line_error, cli, cli_json
from test_tiering import (FAST_RETENTION, LocalStore, consume_all, create_topic, poll_records,
                          produce)


def commit_offsets(b, group: str, topic: str, offsets: dict[int, int]) -> None:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


def resume_group(b, group: str, topic: str, expect: int, timeout: float = 30.0) -> dict:
    """Reads with the group from its committed offsets (no reset allowed)."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    c.subscribe([topic])
    return poll_records(c, expect, timeout)


def topic_unknown(b, topic: str) -> bool:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "probe"})
    try:
        md = c.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        return t is None or t.error is not None and \
            t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()


@pytest.fixture(params=["local", "s3"])
def store_args(request, tmp_path):
    if request.param == "local":
        return [], {}
    s3 = WeedS3(tmp_path).start()
    request.addfinalizer(s3.stop)
    return s3.broker_args(), WeedS3.broker_env()


def test_unmount_restart_mount_keeps_offsets_and_group(broker_factory, store_args):
    args, env = store_args
    b = broker_factory(args=FAST_RETENTION + args, env=env)
    # Not tiered before: unmount turns remote storage on and uploads everything.
    create_topic(b, "hibernate", 2, {"segment.bytes": "16384"})
    sent = produce(b, "hibernate", 2000)
    commit_offsets(b, "billing", "hibernate", {0: 400, 1: 700})

    res = cli(b, "cluster", "storage", "unmount", "hibernate")
    assert "unmounted 'hibernate'" in res.stdout
    assert "records" in res.stderr  # the progress line
    assert topic_unknown(b, "hibernate")
    assert not b.partition_dir("hibernate", 0).exists()

    listed = cli_json(b, "cluster", "storage", "list-mountable")
    [entry] = [m for m in listed if m["topic"] == "hibernate"]
    assert entry["partitions"] == 2 and entry["records"] == len(sent)
    assert entry["group_offsets"] == 2

    b.restart()
    assert topic_unknown(b, "hibernate")
    out = cli_json(b, "cluster", "storage", "mount", "hibernate")
    assert out["topic"] == "hibernate" and out["group_offsets"] == 2

    # Every record comes back with its offset, read from object storage.
    assert consume_all(b, "hibernate", 2, len(sent)) == sent
    # The group resumes where it committed.
    resumed = resume_group(b, "billing", "hibernate", len(sent) - 1100)
    assert min(o for (p, o) in resumed if p == 0) == 400
    assert min(o for (p, o) in resumed if p == 1) == 700
    assert len(resumed) == len(sent) - 1100

    # New records continue the offsets.
    more = produce(b, "hibernate", 10, start=5000)
    assert sorted(more)[0][1] == sum(1 for (p, _) in sent if p == 0)
    # Mounted once: its manifest is gone, so it cannot be mounted again.
    assert cli_json(b, "cluster", "storage", "list-mountable") == []


def test_mount_under_a_new_name(broker_factory):
    b = broker_factory(args=FAST_RETENTION)
    create_topic(b, "old-name", 1, {"remote.storage.enable": "true", "segment.bytes": "16384",
                                    "retention.ms": "123456789"})
    sent = produce(b, "old-name", 700, partitions=1)
    commit_offsets(b, "g", "old-name", {0: 350})
    cli(b, "cluster", "storage", "unmount", "old-name")
    out = cli_json(b, "cluster", "storage", "mount", "old-name", "--as", "new-name")
    assert out["topic"] == "new-name"
    assert topic_unknown(b, "old-name")
    assert consume_all(b, "new-name", 1, len(sent)) == sent
    resumed = resume_group(b, "g", "new-name", 350)
    assert min(o for (_, o) in resumed) == 350
    desc = cli_json(b, "topic", "describe", "new-name")
    assert {"name": "retention.ms", "value": "123456789"}.items() <= \
        next(c for c in desc["configs"] if c["name"] == "retention.ms").items()


def test_mount_errors_change_nothing(broker_factory):
    b = broker_factory(args=FAST_RETENTION)
    res = cli(b, "cluster", "storage", "mount", "never-unmounted", check=False)
    assert_one_line_error(res, "never-unmounted")

    create_topic(b, "damaged", 1, {"segment.bytes": "16384"})
    produce(b, "damaged", 100, partitions=1)
    cli(b, "cluster", "storage", "unmount", "damaged")
    store = LocalStore(b.data_dir / "objects")
    [key] = [k for k in store.list_keys("topics")]
    (store.root / key).write_text("{ not json")
    res = cli(b, "cluster", "storage", "mount", "damaged", check=False)
    assert_one_line_error(res, "damaged")
    assert topic_unknown(b, "damaged")
    assert not b.partition_dir("damaged", 0).exists()

    # Unknown topics and busy names are refused clearly too.
    res = cli(b, "cluster", "storage", "unmount", "no-such-topic", check=False)
    assert_one_line_error(res, "no-such-topic")
    create_topic(b, "taken", 1, {})
    create_topic(b, "movable", 1, {"segment.bytes": "16384"})
    cli(b, "cluster", "storage", "unmount", "movable")
    res = cli(b, "cluster", "storage", "mount", "movable", "--as", "taken", check=False)
    assert_one_line_error(res, "taken")
    assert "movable" in [m["topic"] for m in cli_json(b, "cluster", "storage", "list-mountable")]


def test_topic_describe_shows_local_and_remote(broker_factory):
    b = broker_factory(args=FAST_RETENTION)
    create_topic(b, "sizes", 1, {"remote.storage.enable": "true", "segment.bytes": "16384",
                                 "local.retention.bytes": "1"})
    produce(b, "sizes", 1500, partitions=1)
    deadline = time.monotonic() + 30
    while True:
        desc = cli_json(b, "topic", "describe", "sizes")
        s = desc["partitions"][0]["storage"]
        if s["local_start_offset"] > 0 and s["remote_bytes"] > 0:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.3)
    assert s["log_start_offset"] == 0 and s["remote_start_offset"] == 0
    assert s["remote_end_offset"] >= s["local_start_offset"]
    table = cli(b, "topic", "describe", "sizes").stdout
    assert "REMOTE-SIZE" in table and "LOCAL-START-OFFSET" in table
