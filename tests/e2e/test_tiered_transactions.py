"""Transactions on a tiered topic: the aborted-transaction index travels with the segments.

Transactional producers (confluent-kafka) commit and abort on a topic whose segments go to
object storage and leave local disk at once. read_committed consumers from the beginning must
then see exactly the committed records although every transaction lives only in remote
segments: after local retention, after a restart (the producer snapshot on local disk is all
that remembers the aborted transactions), and after an unmount and a mount (the partition
starts from the snapshot uploaded with its last segment). read_uncommitted consumers see all.
"""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

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

    cli(b, "cluster", "storage", "unmount", topic)
    assert not b.partition_dir(topic, 0).exists()
    out = cli_json(b, "cluster", "storage", "mount", topic)
    assert out["topic"] == topic
    assert "producer state restored" in b.log_text()
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
