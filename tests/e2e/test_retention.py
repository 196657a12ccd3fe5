"""Segment rolling by segment.ms and retention by retention.bytes / retention.ms.

The broker checks retention periodically (every 10 s by default), so these
tests poll for the outcome with a bound rather than sleeping a fixed time.
"""

from __future__ import annotations

import time

from conftest import consume_all, create_topic, produce, watermarks

RETENTION_WAIT_S = 45


def wait_low_watermark_above(broker, topic, floor, timeout=RETENTION_WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        low, high = watermarks(broker, topic, 0)
        if low > floor:
            return low, high
        assert time.monotonic() < deadline, (
            f"retention removed nothing from {topic} in {timeout}s (low={low}, high={high})")
        time.sleep(0.5)


def test_retention_bytes_and_ms_remove_old_segments(broker):
    by_bytes = create_topic(broker, config={"segment.bytes": "4096", "retention.bytes": "8192"})
    by_time = create_topic(broker, config={"segment.bytes": "4096", "retention.ms": "1000"})
    values = [b"%05d" % i + b"#" * 250 for i in range(200)]  # ~50 KiB: a dozen segments
    old = int(time.time() * 1000) - 3_600_000
    for i in range(0, len(values), 10):
        produce(broker, by_bytes, values[i:i + 10], **{"linger.ms": 0})
        produce(broker, by_time, [{"value": v, "timestamp": old} for v in values[i:i + 10]],
                **{"linger.ms": 0})

    for topic in (by_bytes, by_time):
        low, high = wait_low_watermark_above(broker, topic, 0)
        assert high == len(values)
        # What is left is exactly the tail, still readable, with the same offsets.
        msgs = consume_all(broker, topic)
        assert [(m.offset(), m.value()) for m in msgs] == [
            (o, values[o]) for o in range(low, high)]
        # The active segment is never removed, and writes continue after it.
        d = produce(broker, topic, [b"new"])
        assert d.ok[0][1] == len(values)

    size = sum(f.stat().st_size for f in broker.partition_dir(by_bytes, 0).glob("*.log"))
    assert size <= 8192 + 2 * 4096 + 4096, f"{size} bytes of segments kept for retention.bytes=8192"


def test_segment_ms_rolls_segments(broker):
    topic = create_topic(broker, config={"segment.ms": "1000"})
    produce(broker, topic, [b"first"])
    deadline = time.monotonic() + 20
    n = 0
    while len(list(broker.partition_dir(topic, 0).glob("*.log"))) < 2:
        assert time.monotonic() < deadline, "segment.ms=1000 never rolled the segment"
        time.sleep(0.3)
        n += 1
        produce(broker, topic, [b"more-%d" % n])
    assert [m.value() for m in consume_all(broker, topic)] == [b"first"] + [
        b"more-%d" % i for i in range(1, n + 1)]
