"""The replicated log over time: a partition replica's Raft log is dropped a file at a time
behind its checkpoint (what its segments hold, synced), a restart keeps the segments and
re-applies only what came after the checkpoint, and a replica that needs entries the leader no
longer has (a new one added by reassignment) catches up from a snapshot: the leader's segments,
copied in chunks. Each record is written once per replica: the segments hold the batches, the
Raft log only where they are.

The brokers run with 64 KiB Raft log files so that a few MiB of records span many of them."""

from __future__ import annotations

import os

from confluent_kafka import Producer

from cluster import finalized_features, metadata, start_cluster, wait_formed
from conftest import free_port, unique_topic
from history import replica_logs
from test_tiering import metric
from test_cluster_reassign import (alter_raw, check_replicas, create, kadmin, partition_view,
                                   raft_dirs, rpc_addr, wait_for, wait_reassigned)

SMALL_FILES = ["--raft-log-file-bytes", "65536"]
RECORD = 1000


def produce(brokers, topic, n, start=0):
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers if b.running()),
                  "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, value=(b"%08d" % i).ljust(RECORD, b"."), partition=0)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def raft_log_bytes(b, topic) -> int:
    return sum(f.stat().st_size for d in raft_dirs(b, topic, 0) for f in d.glob("raft.log*"))


def segment_inodes(b, topic) -> dict[str, int]:
    d = b.partition_dir(topic, 0)
    return {f.name: f.stat().st_ino for f in d.glob("*.log")}


def segment_bytes(b, topic) -> int:
    return sum(f.stat().st_size for f in b.partition_dir(topic, 0).glob("*.log"))


def test_each_record_is_written_once_to_the_segments_not_also_to_the_raft_log(broker_factory):
    # Default (32 MiB) Raft log files: nothing is dropped behind a checkpoint during the test,
    # so the Raft log on disk is every entry this replica wrote.
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    # Until the controller finalizes assigned entries, produces are proposed the old way (an
    # older release could be a replica), and those entries are written whole to the Raft log,
    # with the entries after them until a checkpoint: the premise needs the feature in force.
    wait_for("assigned entries finalized everywhere", lambda: all(
        finalized_features(b).get("icestream.raft.assigned.entries") == 1 for b in brokers))
    topic = unique_topic("once")
    create(brokers[0], topic, 1, 3, {"min.insync.replicas": "2"})
    wait_for("a leader", lambda: (v := partition_view(brokers[0], topic, 0)) and v[0] > 0)
    produce(brokers, topic, 6000)
    wait_for("identical replicas", lambda: len({replica_logs(b, topic, 0) for b in brokers}) == 1)
    for b in brokers:
        segments, raft = segment_bytes(b, topic), raft_log_bytes(b, topic)
        assert segments > 6000 * RECORD
        assert raft * 20 < segments, f"{b.workdir.name}: raft log {raft} B, segments {segments} B"


def test_raft_logs_shrink_behind_checkpoints_and_a_restart_keeps_the_segments(broker_factory):
    brokers = start_cluster(broker_factory, extra_args=SMALL_FILES)
    wait_formed(brokers)
    topic = unique_topic("rlog")
    create(brokers[0], topic, 1, 3, {"min.insync.replicas": "2", "segment.bytes": "1048576"})
    wait_for("a leader", lambda: (v := partition_view(brokers[0], topic, 0)) and v[0] > 0)
    produce(brokers, topic, 6000)
    # ~6 MB produced; each replica's segments hold it all, its Raft log only what came after
    # its last checkpoint (once a second) plus the file that holds it.
    for b in brokers:
        wait_for(f"broker {b.workdir.name}'s raft log to shrink",
                 lambda b=b: raft_log_bytes(b, topic) < 1_000_000, timeout=20)
        assert all((d / "checkpoint").exists() for d in raft_dirs(b, topic, 0))
    wait_for("identical replicas", lambda: len({replica_logs(b, topic, 0) for b in brokers}) == 1)
    before = replica_logs(brokers[0], topic, 0)
    assert len(before) > 6000 * RECORD
    sealed = {b.workdir.name: segment_inodes(b, topic) for b in brokers}

    # Every broker is killed and restarted: the segments are opened where they are (the same
    # files, not rebuilt from the Raft log), and everything acknowledged is still there.
    for b in brokers:
        b.kill9()
    for b in brokers:
        b.start()
    wait_for("a leader after the restart",
             lambda: (v := partition_view(brokers[0], topic, 0)) and v[0] > 0)
    for b in brokers:
        now = segment_inodes(b, topic)
        kept = {n: i for n, i in sealed[b.workdir.name].items() if n in now}
        assert len(kept) >= len(sealed[b.workdir.name]) - 1, (kept, now)
        assert all(now[n] == i for n, i in kept.items()), f"{b.workdir.name} rewrote its segments"
    produce(brokers, topic, 1000, start=6000)
    wait_for("identical replicas after the restart",
             lambda: len({replica_logs(b, topic, 0) for b in brokers}) == 1)
    after = replica_logs(brokers[0], topic, 0)
    assert after.startswith(before) and len(after) > len(before)


def test_a_replica_added_after_the_log_was_truncated_catches_up_from_a_snapshot(broker_factory):
    founders = start_cluster(broker_factory, extra_args=SMALL_FILES)
    wait_formed(founders)
    topic = unique_topic("snap")
    create(founders[0], topic, 1, 3, {"min.insync.replicas": "2", "segment.bytes": "1048576"})
    fourth = broker_factory(args=["--node-id", "4", "--rpc-addr", f"127.0.0.1:{free_port()}",
                                  "--seeds", ",".join(rpc_addr(b) for b in founders)]
                            + SMALL_FILES)
    brokers = founders + [fourth]
    wait_formed(brokers)
    leader, replicas = wait_for("a leader", lambda: (v := partition_view(fourth, topic, 0))
                                and v[0] > 0 and v)
    produce(brokers, topic, 5000)
    # No replica's Raft log starts at its first entry any more, so whichever leads when the new
    # replica joins (leadership may move meanwhile) must send it a snapshot.
    for b in founders:
        if raft_dirs(b, topic, 0):
            wait_for(f"broker {b.workdir.name}'s first raft log file to go", lambda b=b: not any(
                (d / "raft.log").exists() for d in raft_dirs(b, topic, 0)), timeout=20)

    target = [r for r in replicas if r != leader][:1] + [leader, 4]
    admin = kadmin(brokers)
    try:
        assert alter_raw(admin, {(topic, 0): target}) == {(topic, 0): 0}
        wait_reassigned(brokers, admin, topic, 0, target)
    finally:
        admin.close()
    removed = [r for r in replicas if r not in target]
    check_replicas(brokers, topic, 0, target, removed)
    assert metric(fourth, "icestream_raft_snapshots_installed_total") >= 1
    assert len(replica_logs(fourth, topic, 0)) > 5000 * RECORD

    # The new replica keeps up afterwards, and survives a restart of its own.
    produce(brokers, topic, 500, start=5000)
    fourth.kill9()
    fourth.start()
    wait_formed(brokers)
    produce(brokers, topic, 500, start=5500)
    check_replicas(brokers, topic, 0, target, [])
    assert metadata(fourth, topic).topics[topic].partitions[0].leader in target
    assert os.path.getsize(next(iter(raft_dirs(fourth, topic, 0))) / "checkpoint") > 0
