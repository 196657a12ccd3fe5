"""Client quotas (KIP-13, KIP-219): a producer or consumer over its byte rate is throttled to
about that rate and sees throttle_time_ms, while an unquota'd client on the same broker goes
much faster; request_percentage throttles a client that keeps the broker busy.

Quotas are set before the broker starts in <data>/meta/security.json (the single broker's
security state); `icestream security quota alter` sets the same through AlterClientQuotas.

Rates are measured from bytes and wall time after a warm-up: a new client may send ten windows
of its quota at once before it is throttled (Kafka's sampled rate is taken over at least ten
1-second windows), so the first seconds run above the quota, on Kafka as here.
"""

from __future__ import annotations

import json
import os
import re
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition

from conftest import consumer_config, create_topic, http_get, producer_config

MiB = 1024 * 1024
QUOTA = 1 * MiB
# A generous band around the quota (KIP-13's windows make the rate bursty over seconds).
LOW, HIGH = 0.5 * QUOTA, 1.6 * QUOTA
WARMUP_S = 3.0
RUN_S = 15.0
VALUE = 1024
DEFAULT = object()


def write_quotas(broker, quotas) -> None:
    """Sets quotas before start: (user, client_id, {key: value}) with None for absent and
    DEFAULT for the default entity."""

    def entity(v):
        return None if v is None else ("Default" if v is DEFAULT else {"Name": v})

    state = {"quotas": {"set": [[{"user": entity(u), "client_id": entity(c)}, values]
                                for u, c, values in quotas]}}
    meta = broker.data_dir / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "security.json").write_text(json.dumps(state))


def quota_broker(broker_factory, quotas):
    b = broker_factory(start=False)
    write_quotas(b, quotas)
    return b.start()


class Progress:
    """(seconds since start, bytes so far) as a client sees them."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.total = 0
        self.points = [(0.0, 0)]

    def add(self, n: int) -> None:
        self.total += n
        self.points.append((time.monotonic() - self.t0, self.total))

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def at(self, t: float) -> int:
        return max(b for (s, b) in self.points if s <= t)

    def rate(self, start: float, end: float) -> float:
        return (self.at(end) - self.at(start)) / (end - start)


def produce_for(broker, topic, client_id, seconds) -> tuple[Progress, list[float]]:
    """Produces 1 KiB records as fast as the producer is let to for `seconds`; returns the
    acknowledged bytes over time and the throttles librdkafka reported (throttle_cb)."""
    throttles: list[float] = []
    p = Producer(producer_config(
        broker, **{
            "client.id": client_id,
            "batch.size": 65536,
            "queue.buffering.max.messages": 4096,
            "message.timeout.ms": 120000,
            "throttle_cb": lambda ev: throttles.append(ev.throttle_time),
        }))
    progress = Progress()

    def delivered(err, msg):
        if err is None:
            progress.add(len(msg.value()))

    value = os.urandom(VALUE)
    while progress.elapsed() < seconds:
        try:
            p.produce(topic, value, on_delivery=delivered)
            p.poll(0)
        except BufferError:
            p.poll(0.05)
    p.purge()
    p.flush(30)
    return progress, throttles


def fill(broker, topic, nbytes) -> None:
    """Writes `nbytes` of 1 KiB records with an unquota'd producer, in batches of 16 KiB: a
    fetch returns at least one whole batch, and a consumer's rate is only as even as the
    responses it gets are small beside its quota."""
    p = Producer(producer_config(broker, **{"client.id": "filler", "acks": 1,
                                            "batch.size": 16384}))
    value = os.urandom(VALUE)
    for _ in range(nbytes // VALUE):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0


def consume_for(broker, topic, client_id, seconds, total=None) -> tuple[Progress, list[float]]:
    """Reads partition 0 from the start for `seconds` (or until `total` bytes); returns the
    bytes read over time and the throttles librdkafka reported."""
    throttles: list[float] = []
    c = Consumer(consumer_config(
        broker, **{
            "client.id": client_id,
            "max.partition.fetch.bytes": 65536,
            "fetch.max.bytes": 65536,
            "message.max.bytes": 65536,
            "throttle_cb": lambda ev: throttles.append(ev.throttle_time),
        }))
    c.assign([TopicPartition(topic, 0, 0)])
    progress = Progress()
    try:
        while progress.elapsed() < seconds and (total is None or progress.total < total):
            for m in c.consume(num_messages=1000, timeout=0.1):
                if m.error() is None:
                    progress.add(len(m.value()))
    finally:
        c.close()
    return progress, throttles


def metric(broker, name: str, quota: str) -> float:
    _, body, _ = http_get(f"{broker.admin_url}/metrics")
    m = re.search(rf'^{name}{{quota="{quota}"}} (\S+)$', body, re.M)
    return float(m.group(1)) if m else 0.0


def kafka_python_throttle_max(metrics: dict) -> float:
    """The largest throttle-time-max kafka-python recorded, over its metric groups."""
    return max([v for group in metrics.values() for name, v in group.items()
                if name.endswith("throttle-time-max") and isinstance(v, (int, float))]
               or [0.0])


def test_producer_byte_rate_throttles_confluent_kafka_to_its_quota(broker_factory):
    broker = quota_broker(broker_factory, [(None, "quota-producer", {"producer_byte_rate": QUOTA})])
    topic = create_topic(broker)

    free, free_throttles = produce_for(broker, topic, "free-producer", 5.0)
    free_rate = free.rate(0.0, 5.0)
    assert free_rate > 3 * QUOTA, f"an unquota'd producer went at {free_rate / MiB:.2f} MiB/s"
    assert free_throttles == []

    limited, throttles = produce_for(broker, topic, "quota-producer", RUN_S)
    rate = limited.rate(WARMUP_S, RUN_S)
    print(f"unquota'd {free_rate / MiB:.2f} MiB/s, quota'd {rate / MiB:.2f} MiB/s, "
          f"throttles up to {max(throttles, default=0):.2f} s")
    assert LOW <= rate <= HIGH, f"{rate / MiB:.2f} MiB/s against a 1 MiB/s quota"
    assert throttles and max(throttles) > 0, "librdkafka saw no throttle_time_ms"
    assert metric(broker, "icestream_kafka_quota_throttle_seconds_total", "produce") > 0
    assert metric(broker, "icestream_kafka_quota_throttled_responses_total", "produce") > 0


def test_producer_byte_rate_throttles_kafka_python(broker_factory):
    broker = quota_broker(broker_factory, [(None, "quota-py", {"producer_byte_rate": QUOTA})])
    topic = create_topic(broker)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, client_id="quota-py",
                      batch_size=65536, linger_ms=5)
    progress = Progress()
    value = os.urandom(VALUE)
    sent = 0
    try:
        while progress.elapsed() < RUN_S:
            # At most about 1 MiB waiting, as a producer whose buffer is full.
            if sent - progress.total // VALUE >= 1024:
                time.sleep(0.01)
                continue
            p.send(topic, value).add_callback(lambda _md: progress.add(VALUE))
            sent += 1
        rate = progress.rate(WARMUP_S, RUN_S)
        throttle = kafka_python_throttle_max(p.metrics())
        print(f"kafka-python producer {rate / MiB:.2f} MiB/s, throttle-time-max {throttle} ms")
    finally:
        # What is still queued goes at the quota: about a second.
        p.close(timeout=60)
    assert LOW <= rate <= HIGH, f"{rate / MiB:.2f} MiB/s against a 1 MiB/s quota"
    assert throttle > 0, "kafka-python recorded no throttle time"


def test_consumer_byte_rate_throttles_a_consumer(broker_factory):
    broker = quota_broker(broker_factory, [(None, "quota-consumer", {"consumer_byte_rate": QUOTA})])
    topic = create_topic(broker)
    size = 40 * MiB
    fill(broker, topic, size)

    free, free_throttles = consume_for(broker, topic, "free-consumer", 60.0, total=size)
    assert free.total == size
    free_rate = free.total / free.points[-1][0]
    assert free_rate > 3 * QUOTA, f"an unquota'd consumer read at {free_rate / MiB:.2f} MiB/s"
    assert free_throttles == []

    limited, throttles = consume_for(broker, topic, "quota-consumer", RUN_S)
    rate = limited.rate(WARMUP_S, RUN_S)
    print(f"unquota'd {free_rate / MiB:.2f} MiB/s, quota'd {rate / MiB:.2f} MiB/s, "
          f"throttles up to {max(throttles, default=0):.2f} s")
    assert LOW <= rate <= HIGH, f"{rate / MiB:.2f} MiB/s against a 1 MiB/s quota"
    assert throttles and max(throttles) > 0, "librdkafka saw no throttle_time_ms"
    assert metric(broker, "icestream_kafka_quota_throttle_seconds_total", "fetch") > 0


def test_consumer_byte_rate_throttles_kafka_python(broker_factory):
    broker = quota_broker(broker_factory, [(None, "quota-py-consumer", {"consumer_byte_rate": QUOTA})])
    topic = create_topic(broker)
    fill(broker, topic, 40 * MiB)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, client_id="quota-py-consumer",
                      enable_auto_commit=False, max_partition_fetch_bytes=65536,
                      fetch_max_bytes=65536)
    c.assign([KTopicPartition(topic, 0)])
    c.seek_to_beginning()
    progress = Progress()
    try:
        while progress.elapsed() < RUN_S:
            for records in c.poll(timeout_ms=100).values():
                for r in records:
                    progress.add(len(r.value))
        rate = progress.rate(WARMUP_S, RUN_S)
        throttle = kafka_python_throttle_max(c.metrics())
        print(f"kafka-python consumer {rate / MiB:.2f} MiB/s, throttle-time-max {throttle} ms")
    finally:
        c.close()
    assert LOW <= rate <= HIGH, f"{rate / MiB:.2f} MiB/s against a 1 MiB/s quota"
    assert throttle > 0, "kafka-python recorded no throttle time"


def test_request_percentage_throttles_a_busy_client(broker_factory):
    # 0.1% of a thread: 10 ms of handling over the 10 s window, soon used up. The default
    # user's quota: every client of user ANONYMOUS (a PLAINTEXT listener's) has its own.
    broker = quota_broker(broker_factory, [(DEFAULT, "busy", {"request_percentage": 0.1})])
    topic = create_topic(broker)
    throttles: list[float] = []
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": "busy",
                         "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
    deadline = time.monotonic() + 60
    while not throttles and time.monotonic() < deadline:
        admin.list_topics(topic=topic, timeout=10)
        admin.poll(0)
    assert throttles, "no Metadata response carried a throttle"
    # Request-time throttles are capped at one window (1 s), as Kafka's.
    assert max(throttles) <= 1.0
    assert metric(broker, "icestream_kafka_quota_throttled_responses_total", "request") > 0
