"""Transactions on a tiered topic: the aborted-transaction index travels with the segments.

Transactional producers (confluent-kafka) commit and abort on a topic whose segments go to
object storage and leave local disk at once. read_committed consumers from the beginning must
then see exactly the committed records although every transaction lives only in remote
segments: after local retention, after a restart (the producer snapshot on local disk is all
that remembers the aborted transactions), and after an unmount and a mount (the partition
starts from the snapshot uploaded with its last segment). read_uncommitted consumers see all.
An idempotent producer's retry after the mount is still recognised.
"""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import kwire

from test_cli import cli, cli_json
from test_tiering import FAST_RETENTION, TIERED, LocalStore, create_topic, local_bases

PARTITIONS = 2


def txn_producer(b, txn_id: str) -> Producer:
    p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": txn_id,
                  "linger.ms": 5, "batch.size": 4096})
    p.init_transactions(30)
    return p


def value(tag: str, i: int) -> bytes:
    return f"{tag}-{i:05d}-".encode() + b"x" * 200


def run_transactions(b, topic: str, rounds: int, tag: str) -> tuple[set, set]:
    """Two transactional producers interleave their transactions in both partitions; some
    abort (after a flush, so their records are in the log). Returns (committed, aborted)."""
    producers = [txn_producer(b, f"{topic}-{tag}-{n}") for n in range(2)]
    committed, aborted = set(), set()
    n = 0
    try:
        for r in range(rounds):
            for p in producers:
                p.begin_transaction()
            sent = [[], []]
            for i in range(30):
                for k, p in enumerate(producers):
                    v = value(f"{tag}{r}p{k}", i)
                    p.produce(topic, value=v, partition=n % PARTITIONS)
                    sent[k].append(v)
                    n += 1
            for k, p in enumerate(producers):
                assert p.flush(30) == 0
                if (r + k) % 3 == 0:
                    p.abort_transaction(30)
                    aborted.update(sent[k])
                else:
                    p.commit_transaction(30)
                    committed.update(sent[k])
    finally:
        for p in producers:
            p.flush(5)
    assert committed and aborted
    return committed, aborted


def high_watermarks(b, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                           cached=False)[1] for p in range(PARTITIONS)}
    finally:
        c.close()


def read_values(b, topic: str, isolation: str, timeout: float = 60.0) -> list[bytes]:
    """Every record's value from the beginning of each partition up to its high watermark
    (read_committed: positions pass markers and aborted records too)."""
    highs = high_watermarks(b, topic)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "fetch.max.bytes": 1 << 20})
    tps = [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
    c.assign(tps)
    out = []
    seen = set()
    deadline = time.monotonic() + timeout
    try:
        while True:
            m = c.poll(0.3)
            if m is not None:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                key = (m.partition(), m.offset())
                assert key not in seen, f"record {key} delivered twice"
                seen.add(key)
                out.append(m.value())
                continue
            pos = {tp.partition: tp.offset for tp in c.position(
                [TopicPartition(topic, p) for p in range(PARTITIONS)])}
            if all(pos[p] >= highs[p] for p in range(PARTITIONS)):
                return out
            assert time.monotonic() < deadline, \
                f"{isolation} read stuck at {pos}, high watermarks {highs}: {len(out)} records"
    finally:
        c.close()


def assert_reads(b, topic: str, committed: set, everything: set) -> None:
    got = read_values(b, topic, "read_committed")
    assert len(got) == len(set(got))
    leaked = set(got) - committed
    assert not leaked, f"{len(leaked)} records of aborted transactions read committed, " \
        f"e.g. {sorted(leaked)[:2]}"
    assert set(got) == committed, f"{len(committed - set(got))} committed records missing"
    assert set(read_values(b, topic, "read_uncommitted")) == everything


def wait_all_remote(b, topic: str, upto: dict[int, int], timeout: float = 60.0) -> None:
    """Waits until local retention removed every segment below `upto[p]`."""
    deadline = time.monotonic() + timeout
    while True:
        bases = {p: local_bases(b, topic, p) for p in range(PARTITIONS)}
        if all(bases[p] and bases[p][0] >= upto[p] for p in range(PARTITIONS)):
            return
        assert time.monotonic() < deadline, f"local segments {bases}, want from {upto}\n" \
            f"{b.log_tail(40)}"
        time.sleep(0.2)


def filler(b, topic: str, count: int, tag: str) -> set:
    """Plain records that push the transactions into sealed (so uploaded) segments."""
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    out = set()
    for i in range(count):
        v = value(tag, i)
        p.produce(topic, value=v, partition=i % PARTITIONS)
        out.add(v)
    assert p.flush(30) == 0
    return out


def test_read_committed_skips_aborted_transactions_in_tiered_segments(broker_factory):
    b = broker_factory(args=FAST_RETENTION)
    topic = "tx-tiered"
    create_topic(b, topic, PARTITIONS, dict(TIERED))
    committed, aborted = run_transactions(b, topic, rounds=12, tag="a")
    txn_end = high_watermarks(b, topic)
    plain = filler(b, topic, 400, "fill")
    committed |= plain
    everything = committed | aborted
    # Every transaction is now in segments that exist only in the object store.
    wait_all_remote(b, topic, txn_end)
    assert_reads(b, topic, committed, everything)

    # A restart rebuilds the producer state from the snapshot left beside the active segment.
    b.restart()
    assert_reads(b, topic, committed, everything)

    # Unmount and mount: the partitions start empty at their end, with the producer state
    # (and so the aborted transactions) of the snapshot uploaded with the last segment.
    # Not while a transaction is open: its marker would never reach the uploaded log.
    open_txn = txn_producer(b, f"{topic}-open")
    open_txn.begin_transaction()
    open_txn.produce(topic, value=value("open", 0), partition=1)
    assert open_txn.flush(30) == 0
    res = cli(b, "cluster", "storage", "unmount", topic, check=False)
    assert res.returncode != 0 and "transactions open" in res.stderr, res.stderr
    open_txn.commit_transaction(30)
    committed.add(value("open", 0))
    everything.add(value("open", 0))
    assert_reads(b, topic, committed, everything)

    # An idempotent producer's last batches go into the snapshot the unmount uploads.
    with kwire.Conn.to(b.bootstrap) as conn:
        pid = kwire.init_producer_id(conn)
        for seq in range(5):
            batch = kwire.record_batch([b"idem-%d" % seq], producer_id=pid, base_sequence=seq)
            assert kwire.produce_raw(conn, topic, 0, batch) == 0
    idem = {b"idem-%d" % seq for seq in range(5)}
    committed |= idem
    everything |= idem

    cli(b, "cluster", "storage", "unmount", topic)
    assert not b.partition_dir(topic, 0).exists()
    out = cli_json(b, "cluster", "storage", "mount", topic)
    assert out["topic"] == topic
    assert "producer state restored" in b.log_text()
    with kwire.Conn.to(b.bootstrap) as conn:
        # A retry of the last batch is answered and not stored again, and a gap is refused:
        # the producer's sequence survived the mount (an unknown producer would be taken).
        retry = kwire.record_batch([b"idem-4"], producer_id=pid, base_sequence=4)
        assert kwire.produce_raw(conn, topic, 0, retry) == 0
        gap = kwire.record_batch([b"idem-gap"], producer_id=pid, base_sequence=6)
        assert kwire.produce_raw(conn, topic, 0, gap) == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        nxt = kwire.record_batch([b"idem-5"], producer_id=pid, base_sequence=5)
        assert kwire.produce_raw(conn, topic, 0, nxt) == 0
    committed.add(b"idem-5")
    everything.add(b"idem-5")
    assert_reads(b, topic, committed, everything)

    # The mounted topic takes transactions again: nothing holds its last stable offset back,
    # and new aborts are skipped beside the old ones.
    more_committed, more_aborted = run_transactions(b, topic, rounds=3, tag="b")
    committed |= more_committed
    everything |= more_committed | more_aborted
    assert_reads(b, topic, committed, everything)


def test_mount_of_segments_uploaded_without_snapshots_starts_empty(broker_factory):
    """Segments uploaded by a release that did not upload producer snapshots (simulated by
    taking them out of the manifests): the mount goes on with a warning and empty producer
    state, so read_committed no longer skips the aborted transactions in tiered segments --
    what the mount did before snapshots came back, and what the test above rules out."""
    b = broker_factory(args=FAST_RETENTION)
    topic = "tx-old-upload"
    create_topic(b, topic, PARTITIONS, dict(TIERED))
    committed, aborted = run_transactions(b, topic, rounds=4, tag="a")
    committed |= filler(b, topic, 200, "fill")
    cli(b, "cluster", "storage", "unmount", topic)
    store = LocalStore(b.data_dir / "objects")
    stripped = 0
    for key in store.list_keys():
        if not key.endswith("/manifest.json") or key.startswith("topics/"):
            continue
        m = json.loads(store.get(key))
        for seg in m["segments"]:
            kept = [o for o in seg["objects"] if o["kind"] != "producer_snapshot"]
            stripped += len(seg["objects"]) - len(kept)
            seg["objects"] = kept
        (store.root / key).write_text(json.dumps(m))
    assert stripped > 0
    cli_json(b, "cluster", "storage", "mount", topic)
    assert "none was uploaded" in b.log_text()
    assert set(read_values(b, topic, "read_committed")) == committed | aborted


def test_cluster_mount_restores_aborted_transactions_on_every_replica(broker_factory, tmp_path):
    """The same in a three-broker cluster sharing an S3 bucket: each replica of the mounted
    topic downloads the snapshot before its Raft group starts, so whichever leads skips the
    aborted transactions, before and after a leader change."""
    from cluster import start_cluster, wait_formed
    from s3server import WeedS3
    from test_cluster import wait_topic_everywhere
    from test_cluster_mount import get_json, post, wait_for
    from confluent_kafka.admin import AdminClient, NewTopic

    weed = WeedS3(tmp_path / "s3").start()
    try:
        brokers = start_cluster(broker_factory, 3, FAST_RETENTION + weed.broker_args(),
                                env=WeedS3.broker_env())
        wait_formed(brokers)
        b = brokers[0]
        topic = "tx-cluster-tiered"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={
            **TIERED, "min.insync.replicas": "2"})], request_timeout=30)[topic].result(40)
        wait_topic_everywhere(brokers, topic, PARTITIONS)
        committed, aborted = run_transactions(b, topic, rounds=6, tag="c")
        committed |= filler(b, topic, 200, "fill")
        everything = committed | aborted
        assert_reads(b, topic, committed, everything)

        status, body = post(b, "/v1/topics/unmount", {"topic": topic})
        assert status == 202, body
        wait_for("the unmount", lambda: get_json(
            b, f"/v1/topics/unmount/status/{topic}")[1].get("state") == "done", brokers)
        status, body = post(b, "/v1/topics/mount", {"topic": topic})
        assert status == 200, body
        wait_for("the mount", lambda: get_json(
            b, f"/v1/topics/mount/status/{topic}")[1].get("state") == "done", brokers)
        wait_topic_everywhere(brokers, topic, PARTITIONS)
        for x in brokers:
            assert "producer state restored" in x.log_text()
        assert_reads(b, topic, committed, everything)

        # Another replica leads: it restored the same state.
        leaders = {p.id: p.leader for p in admin.list_topics(topic, timeout=10)
                   .topics[topic].partitions.values()}
        by_id = {i + 1: x for i, x in enumerate(brokers)}
        victim = leaders[0]
        by_id[victim].kill9()
        reader = next(x for i, x in by_id.items() if i != victim)
        wait_for("new leaders", lambda: all(
            p.leader not in (-1, victim) for p in AdminClient(
                {"bootstrap.servers": reader.bootstrap}).list_topics(topic, timeout=10)
            .topics[topic].partitions.values()), [reader])
        assert_reads(reader, topic, committed, everything)
    finally:
        weed.stop()
