"""kcat (Debian's package, librdkafka inside) produces and consumes as a user would."""

from __future__ import annotations

import json
import subprocess
import zlib

import pytest

from conftest import COMPRESSION_CODES, create_topic, stored_compression, which

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat(broker, *args, input: str | None = None, timeout: float = 60) -> str:
    cmd = [which("kcat"), "-b", broker.bootstrap, "-X", "enable.idempotence=false", *args]
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}: {res.stderr}"
    return res.stdout


def consume(broker, topic: str) -> list[tuple[str, str, int, int]]:
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
               "-f", "%k %s %p %o\n")
    rows = []
    for line in out.splitlines():
        if not line:
            continue
        k, v, p, o = line.split(" ")
        rows.append((k, v, int(p), int(o)))
    return rows


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_keyed_records_round_trip_with_each_codec(broker, codec):
    partitions = 3
    topic = create_topic(broker, partitions=partitions)
    keys = [f"key{i % 7}" for i in range(70)]
    pad = "x" * 200  # compressible, so librdkafka does not fall back to sending uncompressed
    lines = [f"{k}:value-{i}-{codec}-{pad}" for i, k in enumerate(keys)]
    kcat(broker, "-P", "-t", topic, "-z", codec, "-K:", "-X", "acks=all",
         "-X", "linger.ms=20", input="\n".join(lines) + "\n")

    rows = consume(broker, topic)
    assert len(rows) == len(lines)
    # The batches are stored compressed as kcat sent them. (librdkafka <= 2.11,
    # kcat's on Debian 12, only compresses gzip/snappy/lz4 when the broker's
    # ApiVersions range for Produce includes v0; otherwise it logs "Broker does
    # not support compression type" and silently sends uncompressed batches.)
    for p in {p for _k, _v, p, _o in rows}:
        assert stored_compression(broker, topic, p) == {COMPRESSION_CODES[codec]}, (
            f"kcat's {codec} batches were not stored compressed: did the broker's ApiVersions "
            "make librdkafka fall back to no compression?")

    # Each key went to the partition librdkafka's default partitioner
    # (consistent_random: CRC-32 of the key, modulo the partition count) chose.
    for k, _v, p, _o in rows:
        assert p == zlib.crc32(k.encode()) % partitions, (k, p)

    # Every partition is dense from offset 0 and holds its records in the order sent.
    for p in range(partitions):
        in_p = [(o, k, v) for k, v, pp, o in rows if pp == p]
        assert [o for o, _, _ in in_p] == list(range(len(in_p)))
        sent = [(k, f"value-{i}-{codec}-{pad}") for i, k in enumerate(keys)
                if zlib.crc32(k.encode()) % partitions == p]
        assert [(k, v) for _, k, v in in_p] == sent


def test_kcat_metadata_lists_topic_and_broker(broker):
    topic = create_topic(broker, partitions=4)
    md = json.loads(kcat(broker, "-L", "-J"))
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    t = topics[topic]
    assert not t.get("error"), t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2, 3]
    broker_ids = {b["id"] for b in md["brokers"]}
    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap]
    for p in t["partitions"]:
        assert p["leader"] in broker_ids
        assert not p.get("error"), p


def test_kcat_consume_from_offset_and_tail(broker):
    topic = create_topic(broker)
    kcat(broker, "-P", "-t", topic, input="".join(f"v{i}\n" for i in range(10)))
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "6", "-e", "-q", "-f", "%o=%s\n")
    assert out.split() == [f"{i}=v{i}" for i in range(6, 10)]
    # Negative offset: the last 3 records.
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "-3", "-e", "-q", "-f", "%s\n")
    assert out.split() == ["v7", "v8", "v9"]
