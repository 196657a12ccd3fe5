"""`icestream transaction list|describe|describe-producers|find-hanging|abort` against
transactions real clients leave open.

Two kinds of open transaction:
- one a confluent-kafka transactional producer left behind when it was killed (kill -9): its
  coordinator still knows it (Ongoing, with its partitions), so it is listed and described,
  and find-hanging does not report it even past a zero timeout;
- one a transactional offset commit (TxnOffsetCommit on the wire) outside any transaction
  leaves on `__consumer_offsets`, by a producer id no coordinator ever handed out for a
  transactional id: nothing will ever end it, so find-hanging reports it.
Either is aborted with `abort --start-offset`; a read_committed consumer then reads past the
first, and the second's offset is never committed.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from conftest import consumer_config, create_topic, produce
from kwire import Conn, frame, i16, i32, i64, init_producer_id, request_header, string
from test_cli import assert_one_line_error, cli, cli_json

# A transactional producer that opens a transaction on partitions 0 and 1 and then waits to be
# killed, as a producer that crashes mid-transaction.
OPEN_AND_WAIT = r"""
import sys, time
from confluent_kafka import Producer
bootstrap, txid, topic = sys.argv[1:4]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid,
              "transaction.timeout.ms": 60000, "linger.ms": 0})
p.init_transactions(30)
p.begin_transaction()
for part in (0, 1):
    p.produce(topic, value=b"in-txn-%d" % part, partition=part)
assert p.flush(30) == 0, "transactional records not delivered"
print("open", flush=True)
time.sleep(600)
"""


def kill_with_open_transaction(broker, topic, txid, log_path):
    """Runs OPEN_AND_WAIT in a child process and kill -9s it once its transaction is open."""
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", OPEN_AND_WAIT, broker.bootstrap, txid,
                                  topic], stdout=subprocess.PIPE, stderr=log)
    try:
        line = child.stdout.readline().strip()
        assert line == b"open", f"the transactional producer failed: {log_path.read_text()}"
    finally:
        child.kill()
        child.wait()


def read_committed(broker, topic, partition, want, timeout):
    """Values a read_committed consumer reads from the partition's start: until `want` values
    arrived or `timeout` seconds passed."""
    c = Consumer(consumer_config(broker, **{"isolation.level": "read_committed"}))
    got = []
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            got.append(m.value())
    finally:
        c.close()
    return got


def of_producer(states, producer_id):
    mine = [s for s in states if s["producer_id"] == producer_id]
    assert len(mine) == 1, states
    return mine[0]


def test_transaction_of_a_killed_producer_is_known_not_hanging_and_abortable(broker, tmp_path):
    topic = create_topic(broker, partitions=2)
    txid = f"txid-{topic}"
    kill_with_open_transaction(broker, topic, txid, tmp_path / "producer.log")
    # Written after the open transaction: a read_committed consumer stops before it.
    produce(broker, topic, [{"value": b"after", "partition": 0}])

    listed = [t for t in cli_json(broker, "transaction", "list") if t["transactional_id"] == txid]
    assert len(listed) == 1, listed
    assert listed[0]["state"] == "Ongoing"
    pid = listed[0]["producer_id"]
    assert pid >= 0
    table = cli(broker, "transaction", "list").stdout
    assert "TRANSACTIONAL-ID" in table and txid in table
    assert txid in {t["transactional_id"] for t in
                    cli_json(broker, "transaction", "list", "--state", "Ongoing",
                             "--producer-id", str(pid))}
    assert txid not in {t["transactional_id"] for t in
                        cli_json(broker, "transaction", "list", "--state", "CompleteCommit")}

    desc = cli_json(broker, "transaction", "describe", txid)
    assert desc["state"] == "Ongoing"
    assert desc["producer_id"] == pid
    assert desc["transaction_timeout_ms"] == 60000
    assert desc["transaction_start_time_ms"] is not None
    assert desc["partitions"] == [{"topic": topic, "partition": 0},
                                  {"topic": topic, "partition": 1}]
    epoch = desc["producer_epoch"]
    assert "PRODUCER-EPOCH" in cli(broker, "transaction", "describe", txid).stdout
    assert_one_line_error(cli(broker, "transaction", "describe", f"no-{txid}", check=False),
                          f"no-{txid}", "does not exist")

    producers = cli_json(broker, "transaction", "describe-producers", "--topic", topic,
                         "--partition", "0")
    assert of_producer(producers, pid)["current_txn_start_offset"] == 0
    assert of_producer(producers, pid)["producer_epoch"] == epoch

    # Open past a zero timeout, but its coordinator has it Ongoing with both partitions (it
    # would abort it itself after 60 s): not hanging.
    assert cli_json(broker, "transaction", "find-hanging", "--topic", topic,
                    "--max-transaction-timeout-ms", "0") == []
    assert cli_json(broker, "transaction", "find-hanging", "--max-transaction-timeout-ms", "0") == []
    assert cli_json(broker, "transaction", "find-hanging") == []

    assert read_committed(broker, topic, 0, want=1, timeout=3) == []
    aborted = cli_json(broker, "transaction", "abort", "--topic", topic, "--partition", "0",
                       "--start-offset", "0")
    assert aborted["producer_id"] == pid
    assert aborted["producer_epoch"] == epoch
    assert aborted["coordinator_epoch"] == 0
    assert read_committed(broker, topic, 0, want=1, timeout=15) == [b"after"]
    producers = cli_json(broker, "transaction", "describe-producers", "--topic", topic,
                         "--partition", "0")
    assert of_producer(producers, pid)["current_txn_start_offset"] is None
    # Partition 1 is still open and still the coordinator's.
    producers = cli_json(broker, "transaction", "describe-producers", "--topic", topic,
                         "--partition", "1")
    assert of_producer(producers, pid)["current_txn_start_offset"] == 0
    assert cli_json(broker, "transaction", "find-hanging", "--topic", topic,
                    "--max-transaction-timeout-ms", "0") == []


def txn_offset_commit_without_transaction(broker, group, topic):
    """TxnOffsetCommit v0 of offset 5 for `topic`[0] by a fresh producer id (InitProducerId
    without a transactional id) that never added the group to a transaction
    (AddOffsetsToTxn). Returns (producer id, error code)."""
    with Conn.to(broker.bootstrap) as conn:
        producer_id = init_producer_id(conn)
        body = (string(f"never-registered-{group}") + string(group) + i64(producer_id) + i16(0)
                + i32(1) + string(topic) + i32(1) + i32(0) + i64(5) + string(None))
        conn.send(frame(request_header(28, 0, 11) + body))
        corr, resp = conn.recv_response()
        assert corr == 11
        # throttle_time_ms, [name, [partition_index, error_code]] with one of each
        (name_len,) = struct.unpack_from(">h", resp, 8)
        (code,) = struct.unpack_from(">h", resp, 8 + 2 + name_len + 4 + 4)
    return producer_id, code


def test_offset_commit_outside_a_transaction_is_refused_and_leaves_nothing_hanging(broker):
    """A transactional offset commit from a producer whose transaction never added the group
    (no AddOffsetsToTxn) would open a transaction on `__consumer_offsets` that no coordinator
    knows and nobody ends. The group coordinator asks the transaction coordinator first
    (KIP-890), so it is refused with INVALID_TXN_STATE, nothing hangs, nothing is committed.
    (find-hanging and abort of a real hanging transaction are covered in-process, in
    src/cli/tests.rs, which can write to a partition behind the coordinator's back.)"""
    topic = create_topic(broker, partitions=1)
    group = f"g-{topic}"
    pid, code = txn_offset_commit_without_transaction(broker, group, topic)
    assert code == 48, f"TxnOffsetCommit outside a transaction answered {code}, not INVALID_TXN_STATE"
    assert cli_json(broker, "transaction", "find-hanging", "--max-transaction-timeout-ms", "0") == []
    assert pid not in {t["producer_id"] for t in cli_json(broker, "transaction", "list")}
    c = Consumer(consumer_config(broker, **{"group.id": group, "isolation.level": "read_committed"}))
    try:
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=15)
        assert tp.offset < 0, tp
    finally:
        c.close()

    # Nothing open at that offset, no such topic: one line each, saying what to do.
    assert_one_line_error(
        cli(broker, "transaction", "abort", "--topic", topic, "--partition", "0",
            "--start-offset", "1000", check=False),
        "no transaction is open at offset 1000", "describe-producers")
    assert_one_line_error(
        cli(broker, "transaction", "abort", "--topic", f"no-{topic}", "--partition", "0",
            "--start-offset", "1", check=False),
        f"no-{topic}", "does not exist")
    assert_one_line_error(
        cli(broker, "transaction", "find-hanging", "--topic", f"no-{topic}", check=False),
        f"no-{topic}", "does not exist")


def test_transactions_across_a_cluster(broker_factory):
    """Three brokers: each coordinator lists only its own transactional ids, so `list` asks
    every broker; `describe` asks the one FindCoordinator names; find-hanging and abort ask
    each partition's leader, whichever broker the CLI bootstrapped at."""
    from confluent_kafka import Producer

    from cluster import start_cluster, wait_formed

    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    topic = create_topic(brokers[0], partitions=3, replication_factor=3)
    everyone = ",".join(b.bootstrap for b in brokers)
    producers = {}
    try:
        for i in range(6):
            txid = f"txid-{i}-{topic}"
            p = Producer({"bootstrap.servers": everyone, "transactional.id": txid,
                          "transaction.timeout.ms": 60000, "linger.ms": 0})
            p.init_transactions(30)
            p.begin_transaction()
            p.produce(topic, value=b"open", partition=i % 3)
            assert p.flush(30) == 0
            producers[txid] = p

        listed = {t["transactional_id"]: t for t in cli_json(brokers[0], "transaction", "list")
                  if t["transactional_id"] in producers}
        assert set(listed) == set(producers)
        assert all(t["state"] == "Ongoing" for t in listed.values())
        again = {t["transactional_id"]: t for t in cli_json(brokers[2], "transaction", "list")
                 if t["transactional_id"] in producers}
        assert again == listed
        for txid, t in listed.items():
            desc = cli_json(brokers[1], "transaction", "describe", txid)
            assert (desc["coordinator"], desc["producer_id"], desc["state"]) == (
                t["coordinator"], t["producer_id"], "Ongoing")
            assert desc["partitions"] == [{"topic": topic,
                                           "partition": int(txid.split("-")[1]) % 3}]

        # Every one is known to its coordinator: none hangs.
        assert cli_json(brokers[0], "transaction", "find-hanging",
                        "--max-transaction-timeout-ms", "0") == []

        # Abort txid-0's partition (0) through a broker that may not lead it.
        pid = listed[f"txid-0-{topic}"]["producer_id"]
        states = cli_json(brokers[2], "transaction", "describe-producers", "--topic", topic,
                          "--partition", "0")
        start = of_producer(states, pid)["current_txn_start_offset"]
        assert start is not None
        aborted = cli_json(brokers[2], "transaction", "abort", "--topic", topic,
                           "--partition", "0", "--start-offset", str(start))
        assert aborted["producer_id"] == pid
        states = cli_json(brokers[0], "transaction", "describe-producers", "--topic", topic,
                          "--partition", "0")
        assert of_producer(states, pid)["current_txn_start_offset"] is None

        # A transaction no coordinator knows, on whichever broker leads the group's
        # __consumer_offsets partition: found and aborted through brokers[0].
        hanging_pid, code = txn_offset_commit_without_transaction(brokers[1], f"g-{topic}", topic)
        if code == 0:
            time.sleep(0.01)
            found = cli_json(brokers[0], "transaction", "find-hanging",
                             "--max-transaction-timeout-ms", "0")
            assert [(h["topic"], h["producer_id"]) for h in found] == [
                ("__consumer_offsets", hanging_pid)], found
            cli(brokers[0], "transaction", "abort", "--topic", "__consumer_offsets",
                "--partition", str(found[0]["partition"]), "--start-offset",
                str(found[0]["current_txn_start_offset"]))
            assert cli_json(brokers[0], "transaction", "find-hanging",
                            "--max-transaction-timeout-ms", "0") == []
    finally:
        for p in producers.values():
            try:
                p.abort_transaction(10)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
