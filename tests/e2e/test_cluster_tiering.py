"""Tiered storage in a three-broker cluster sharing one S3 bucket (SeaweedFS `weed mini` on
loopback): only each partition's Raft leader uploads, its manifest carries the leader epoch,
followers free their local segments once the leader's manifest covers them (and every replica
its Raft log, behind its checkpoint), and after the leader is SIGKILLed the new leader carries on
from the same manifest with nothing lost."""

from __future__ import annotations

import json
import time

from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, start_cluster, wait_formed
from s3server import WeedS3
from test_cluster import wait_topic_everywhere
from test_tiering import (FAST_RETENTION, consume_all, local_bases, metric, produce)

TIERED = {"remote.storage.enable": "true", "segment.bytes": "16384",
          "local.retention.bytes": "1", "min.insync.replicas": "2"}


def leader_of(brokers, topic: str, partition: int) -> int:
    for b in brokers:
        if b.running():
            p = metadata(b, topic).topics[topic].partitions[partition]
            if p.leader > 0:
                return p.leader
    return -1


def manifest(weed: WeedS3) -> dict | None:
    keys = [k for k in weed.list_keys() if k.endswith("/manifest.json")
            and not k.startswith("topics/")]
    if not keys:
        return None
    assert len(keys) == 1, keys
    return json.loads(weed.get(keys[0]))


def raft_log_bytes(b, topic: str) -> int:
    return sum(f.stat().st_size for f in (b.data_dir / "raft").glob(f"{topic}-*/0/raft.log*"))


def uploads(b) -> float:
    return metric(b, "icestream_tiering_uploaded_segments_total")


def wait_until(what: str, cond, timeout: float = 60.0, brokers=(), weed=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.3)
    state = [(b.workdir.name, b.running(), local_bases(b, "tiered", 0)) for b in brokers]
    logs = "\n".join(b.log_tail(30) for b in brokers)
    raise AssertionError(f"timed out waiting for {what}: {state} "
                         f"manifest={weed and manifest(weed)}\n{logs}")


def test_only_the_leader_uploads_and_a_new_leader_carries_on(broker_factory, tmp_path):
    weed = WeedS3(tmp_path / "s3").start()
    try:
        # Small Raft log files, so that the records produced span many of them.
        brokers = start_cluster(broker_factory, 3, FAST_RETENTION + weed.broker_args()
                                + ["--raft-log-file-bytes", "16384"], env=WeedS3.broker_env())
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        admin.create_topics([NewTopic("tiered", 1, 3, config=TIERED)],
                            request_timeout=30)["tiered"].result(40)
        wait_topic_everywhere(brokers, "tiered", 1)
        by_id = {i + 1: b for i, b in enumerate(brokers)}

        sent = produce(brokers[0], "tiered", 600, partitions=1)
        m = wait_until("a manifest naming segments",
                       lambda: (x := manifest(weed)) and x["segments"] and x, brokers=brokers, weed=weed)
        assert m["leader_epoch"] >= 1, m["leader_epoch"]
        # Each segment went up once, by whichever broker led when it was sealed (leadership
        # may move back to the preferred replica meanwhile): the uploads counted across the
        # three brokers are exactly the segments the manifest names.
        def settled():
            if any(metric(b, "icestream_tiering_upload_backlog_segments") for b in brokers):
                return None
            before = manifest(weed)
            total = sum(uploads(b) for b in brokers)
            return before == manifest(weed) and (before, total)
        m, total = wait_until("uploads to settle", settled, brokers=brokers, weed=weed)
        assert total == len(m["segments"]), (total, len(m["segments"]))
        assert m["leader_epoch"] >= 1, m["leader_epoch"]
        # Followers free what the leader's manifest covers, and every replica the Raft log
        # files before its checkpoint: of ~200 KB produced, at most a few 16 KiB files stay.
        for i, b in by_id.items():
            wait_until(f"broker {i} trims its local segments",
                       lambda b=b: local_bases(b, "tiered", 0)
                       and local_bases(b, "tiered", 0)[0] > 0, brokers=brokers, weed=weed)
            wait_until(f"broker {i} drops its first Raft log files",
                       lambda b=b: 0 < raft_log_bytes(b, "tiered") < 80_000,
                       brokers=brokers, weed=weed)
        # The leader (asked now: leadership may have gone back to the preferred replica) dies;
        # the new one uploads what comes next into the same manifest.
        leader = leader_of(brokers, "tiered", 0)
        m = manifest(weed)
        first_end = m["segments"][-1]["next_offset"]
        by_id[leader].kill9()
        sent.update(produce(brokers[0] if leader != 1 else brokers[1], "tiered", 600,
                            partitions=1, start=600))
        new_leader = wait_until("a new leader", lambda: (
            (l := leader_of(brokers, "tiered", 0)) > 0 and l != leader and l), brokers=brokers)
        m2 = wait_until("the new leader's manifest", lambda: (
            (x := manifest(weed)) and x["leader_epoch"] > m["leader_epoch"]
            and x["segments"][-1]["next_offset"] > first_end and x), brokers=brokers, weed=weed)
        assert m2["leader_epoch"] > m["leader_epoch"], (m["leader_epoch"], m2["leader_epoch"])
        assert uploads(by_id[new_leader]) > 0
        # Segments named are contiguous from the start: nothing skipped across the handover.
        segs = m2["segments"]
        assert segs[0]["base_offset"] == m2["log_start_offset"] == 0
        for a, b in zip(segs, segs[1:]):
            assert a["next_offset"] == b["base_offset"], (a, b)

        # Every acknowledged record reads back from the new leader, the old ones from S3.
        by_id[leader].start()
        got = consume_all(by_id[new_leader], "tiered", 1, len(sent))
        assert got == sent

    finally:
        weed.stop()
