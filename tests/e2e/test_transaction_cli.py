"""`icestream transaction list|describe|describe-producers|find-hanging|abort` against
transactions real clients leave open.

Two kinds of open transaction:
- one a confluent-kafka transactional producer left behind when it was killed (kill -9): its
  coordinator still knows it (Ongoing, with its partitions), so it is listed and described,
  and find-hanging does not report it even past a zero timeout;
- one written on the wire by a producer id no coordinator ever handed out for a transactional
  id (InitProducerId without one, then a transactional batch): nothing will ever end it, so
  find-hanging reports it.
Either is aborted with `abort --start-offset`, after which a read_committed consumer reads
past it.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from conftest import consumer_config, create_topic, produce
from kwire import (Conn, api_versions, crc32c, frame, i8, i16, i32, i64,
                   init_producer_id, parse_produce_error, request_header, string, varint)
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


def transactional_batch(values, producer_id, producer_epoch):
    """A magic-v2 batch with the transactional attribute (0x10), base sequence 0."""
    records = b""
    for delta, value in enumerate(values):
        body = (i8(0) + varint(0) + varint(delta) + varint(-1)
                + varint(len(value)) + value + varint(0))
        records += varint(len(body)) + body
    now = int(time.time() * 1000)
    after_crc = (i16(0x10) + i32(len(values) - 1) + i64(now) + i64(now)
                 + i64(producer_id) + i16(producer_epoch) + i32(0) + i32(len(values)) + records)
    after_length = i32(0) + i8(2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return i64(0) + i32(len(after_length)) + after_length


def produce_transactional(broker, topic, partition, values, transactional_id):
    """A transactional batch of a fresh producer id that no coordinator ever gave to
    `transactional_id` (InitProducerId without one). Returns the producer id."""
    with Conn.to(broker.bootstrap) as conn:
        producer_id = init_producer_id(conn)
        lo, hi = api_versions(conn, correlation_id=5)[0]
        version = min(hi, 8)
        assert version >= max(lo, 3), f"broker serves Produce v{lo}-v{hi}"
        batch = transactional_batch(values, producer_id, 0)
        body = (string(transactional_id) + i16(-1) + i32(10_000)
                + i32(1) + string(topic)
                + i32(1) + i32(partition) + i32(len(batch)) + batch)
        conn.send(frame(request_header(0, version, 9) + body))
        corr, resp = conn.recv_response()
        assert corr == 9
        assert parse_produce_error(resp) == 0
    return producer_id


def test_hanging_transaction_is_found_and_aborted(broker):
    topic = create_topic(broker, partitions=1)
    produce(broker, topic, [{"value": b"before", "partition": 0}])
    pid = produce_transactional(broker, topic, 0, [b"hanging"], f"never-registered-{topic}")
    produce(broker, topic, [{"value": b"after", "partition": 0}])
    assert read_committed(broker, topic, 0, want=2, timeout=3) == [b"before"]

    # Younger than the default 15 minutes: not even a candidate.
    assert cli_json(broker, "transaction", "find-hanging", "--topic", topic) == []
    time.sleep(0.01)
    found = cli_json(broker, "transaction", "find-hanging", "--topic", topic,
                     "--max-transaction-timeout-ms", "0")
    assert len(found) == 1, found
    assert (found[0]["topic"], found[0]["partition"], found[0]["producer_id"],
            found[0]["current_txn_start_offset"]) == (topic, 0, pid, 1)
    everywhere = cli_json(broker, "transaction", "find-hanging", "--max-transaction-timeout-ms", "0")
    assert [(h["topic"], h["producer_id"]) for h in everywhere] == [(topic, pid)]
    table = cli(broker, "transaction", "find-hanging", "--topic", topic, "--partition", "0",
                "--max-transaction-timeout-ms", "0").stdout
    assert "START-OFFSET" in table and str(pid) in table
    assert pid not in {t["producer_id"] for t in cli_json(broker, "transaction", "list")}

    # Nothing open at offset 0, no such topic: one line each, saying what to do.
    assert_one_line_error(
        cli(broker, "transaction", "abort", "--topic", topic, "--partition", "0",
            "--start-offset", "0", check=False),
        "no transaction is open at offset 0", "describe-producers")
    assert_one_line_error(
        cli(broker, "transaction", "abort", "--topic", f"no-{topic}", "--partition", "0",
            "--start-offset", "1", check=False),
        f"no-{topic}", "does not exist")
    assert_one_line_error(
        cli(broker, "transaction", "find-hanging", "--topic", f"no-{topic}", check=False),
        f"no-{topic}", "does not exist")

    out = cli(broker, "transaction", "abort", "--topic", topic, "--partition", "0",
              "--start-offset", "1").stdout
    assert f"Aborted the transaction started at offset 1 of producer {pid}" in out
    assert read_committed(broker, topic, 0, want=2, timeout=15) == [b"before", b"after"]
    assert cli_json(broker, "transaction", "find-hanging", "--topic", topic,
                    "--max-transaction-timeout-ms", "0") == []
    # Aborting it again: nothing is open there any more.
    assert_one_line_error(
        cli(broker, "transaction", "abort", "--topic", topic, "--partition", "0",
            "--start-offset", "1", check=False),
        "no transaction is open at offset 1")
