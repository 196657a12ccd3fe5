"""Bad input on the Kafka port: each gets a Kafka error or a closed connection,
the broker stays up for everyone else, stored records stay intact, and no lie
about a size makes the broker allocate it."""

from __future__ import annotations

import random
import struct

import pytest
from confluent_kafka import KafkaError, Producer

import kwire
from conftest import (Delivered, assert_serves, consume_all, create_topic, produce,
                      producer_config, watermarks)

RSS_LIMIT = 500 * 1024 * 1024
UNSUPPORTED_VERSION = 35
CORRUPT_MESSAGE = 2


@pytest.fixture
def seeded(broker):
    """A broker holding a topic with 20 known records."""
    topic = create_topic(broker)
    values = [b"stored-%d" % i for i in range(20)]
    produce(broker, topic, values)
    return broker, topic, values


def check_still_serving(broker, topic, values):
    assert broker.running(), "broker died"
    assert broker.rss_bytes() < RSS_LIMIT, f"broker RSS {broker.rss_bytes() >> 20} MiB"
    assert_serves(broker, topic, values)


def assert_refused(conn, within=10.0):
    """The broker answered with some Kafka response or closed the connection."""
    what, _ = kwire.outcome(conn, within)
    assert what in ("closed", "response"), f"broker did neither answer nor close: {what}"
    return what


def test_random_garbage(seeded):
    broker, topic, values = seeded
    rng = random.Random(1234)
    for _ in range(5):
        with kwire.Conn.to(broker.bootstrap) as conn:
            conn.send(bytes(rng.getrandbits(8) for _ in range(4096)))
            kwire.outcome(conn, 2.0)  # whatever it does, it must not fall over
    check_still_serving(broker, topic, values)


def test_framed_garbage_is_refused(seeded):
    broker, topic, values = seeded
    rng = random.Random(99)
    for api_key in (0, 1, 3, 18, 19):  # Produce, Fetch, Metadata, ApiVersions, CreateTopics
        body = bytes(rng.getrandbits(8) for _ in range(200))
        payload = kwire.i16(api_key) + kwire.i16(3) + kwire.i32(5) + body
        with kwire.Conn.to(broker.bootstrap) as conn:
            conn.send(kwire.frame(payload))
            assert_refused(conn)
    check_still_serving(broker, topic, values)


def test_truncated_frame_then_close(seeded):
    broker, topic, values = seeded
    for _ in range(3):
        with kwire.Conn.to(broker.bootstrap) as conn:
            full = kwire.frame(kwire.request_header(3, 1, 1) + kwire.i32(-1))
            conn.send(full[: len(full) - 5])
    with kwire.Conn.to(broker.bootstrap) as conn:
        conn.send(kwire.i32(100) + b"\x00" * 10)
    check_still_serving(broker, topic, values)


@pytest.mark.parametrize("prefix", [0x7FFFFFFF, -1, -0x80000000, 0x40000000],
                         ids=["2GiB", "minus1", "int-min", "1GiB"])
def test_lying_length_prefix_is_refused_without_allocating(seeded, prefix):
    broker, topic, values = seeded
    with kwire.Conn.to(broker.bootstrap) as conn:
        conn.send(struct.pack(">i", prefix) + kwire.request_header(3, 1, 1) + b"\x00" * 64)
        what, _ = kwire.outcome(conn, 10.0)
        assert what == "closed", f"a frame length of {prefix} should close the connection: {what}"
    check_still_serving(broker, topic, values)


def test_unknown_api_key(seeded):
    broker, topic, values = seeded
    with kwire.Conn.to(broker.bootstrap) as conn:
        conn.send(kwire.frame(kwire.request_header(9999, 0, 42) + b"\x00" * 8))
        assert_refused(conn)
    check_still_serving(broker, topic, values)


def test_unsupported_api_versions_version_gets_v0_error_then_v0_works(seeded):
    broker, topic, values = seeded
    with kwire.Conn.to(broker.bootstrap) as conn:
        # What a client newer than the broker sends first (flexible header v2).
        conn.send(kwire.frame(kwire.request_header(18, 99, 77, flexible=True)
                              + kwire.uvarint(0)))
        corr, body = conn.recv_response()
        assert corr == 77
        error_code, apis = kwire.parse_api_versions_v0(body)
        assert error_code == UNSUPPORTED_VERSION
        assert 18 in apis and apis[18][1] >= 3, apis
        # The client then retries on the same connection with a version it finds there.
        assert kwire.api_versions(conn, correlation_id=78)[18] == apis[18]
    check_still_serving(broker, topic, values)


def test_unsupported_produce_version(seeded):
    """Produce v0-v2 (message formats v0/v1) is refused, even though ApiVersions lists
    Produce from v0 for old librdkafka's compression check, as Kafka 4 does."""
    broker, topic, values = seeded
    with kwire.Conn.to(broker.bootstrap) as conn:
        body = kwire.i16(-1) + kwire.i32(1000) + kwire.i32(0)  # acks, timeout, no topics
        conn.send(kwire.frame(kwire.request_header(0, 0, 5) + body))
        what, payload = kwire.outcome(conn, 10.0)
        assert what in ("closed", "response"), what
    check_still_serving(broker, topic, values)


def test_lying_array_length_does_not_allocate(seeded):
    broker, topic, values = seeded
    before = broker.rss_bytes()
    # Metadata v1: topics array claims 2e9 entries, the frame has none.
    for _ in range(3):
        with kwire.Conn.to(broker.bootstrap) as conn:
            conn.send(kwire.frame(kwire.request_header(3, 1, 9) + kwire.i32(2_000_000_000)))
            assert_refused(conn)
            assert broker.rss_bytes() < RSS_LIMIT
    # The same lie in a flexible version (compact array length as a varint).
    with kwire.Conn.to(broker.bootstrap) as conn:
        lo, hi = kwire.api_versions(conn)[3]
        version = min(hi, 12)
        if version >= 9:
            conn.send(kwire.frame(kwire.request_header(3, version, 10, flexible=True)
                                  + kwire.uvarint(2_000_000_001)))
            assert_refused(conn)
    after = broker.rss_bytes()
    assert after < RSS_LIMIT, f"RSS grew from {before >> 20} to {after >> 20} MiB"
    check_still_serving(broker, topic, values)


@pytest.mark.parametrize("claimed", [2_000_000_000, 2, 0])
def test_batch_lying_about_its_record_count_is_rejected(seeded, claimed):
    """A batch with a valid CRC whose records-count field disagrees with the
    records inside (one) is corrupt: Kafka answers CORRUPT_MESSAGE and stores
    nothing, and no consumer ever sees it."""
    broker, topic, values = seeded
    with kwire.Conn.to(broker.bootstrap) as conn:
        batch = kwire.record_batch([b"one"], records_count=claimed)
        try:
            err = kwire.produce_raw(conn, topic, 0, batch)
            assert err != 0, f"a batch claiming {claimed} records but holding 1 was accepted"
        except (ConnectionError, OSError):
            pass  # closing the connection is also a refusal
    assert broker.rss_bytes() < RSS_LIMIT
    assert watermarks(broker, topic, 0) == (0, len(values))
    check_still_serving(broker, topic, values)


def test_batch_with_bad_crc_is_rejected_and_not_stored(seeded):
    broker, topic, values = seeded
    with kwire.Conn.to(broker.bootstrap) as conn:
        err = kwire.produce_raw(conn, topic, 0,
                                kwire.record_batch([b"evil"], corrupt_crc=True))
    assert err == CORRUPT_MESSAGE
    assert watermarks(broker, topic, 0) == (0, len(values))
    # A well-formed raw batch is accepted, so the rejection was about the CRC.
    with kwire.Conn.to(broker.bootstrap) as conn:
        assert kwire.produce_raw(conn, topic, 0, kwire.record_batch([b"raw-ok"])) == 0
    values.append(b"raw-ok")
    check_still_serving(broker, topic, values)


def test_record_over_max_message_bytes(seeded):
    broker, topic, values = seeded
    p = Producer(producer_config(broker, **{"message.max.bytes": 10_000_000,
                                            "compression.type": "none"}))
    d = Delivered()
    p.produce(topic, b"z" * (2 * 1024 * 1024), on_delivery=d)
    p.flush(30)
    assert not d.ok
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert watermarks(broker, topic, 0) == (0, len(values))

    # A per-topic limit below the cluster default.
    small = create_topic(broker, config={"max.message.bytes": "10000"})
    d = Delivered()
    p.produce(small, b"z" * 20_000, on_delivery=d)
    p.flush(30)
    p.produce(small, b"ok", on_delivery=d)
    p.flush(30)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert [m.value() for m in consume_all(broker, small)] == [b"ok"]
    check_still_serving(broker, topic, values)
