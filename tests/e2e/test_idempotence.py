"""Idempotent producers (enable.idempotence=true, acks=all, retries): when a connection dies
after the broker wrote a batch but before the client heard so, librdkafka retries the same
batch and the broker must recognise it, also across a broker restart."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

from chaos_proxy import ChaosProxy
from conftest import Delivered, consume_all, create_topic, free_port


@pytest.fixture
def proxied(broker_factory):
    """A broker that advertises a chaos proxy in front of it, so every client connection
    (bootstrap and after metadata) goes through the proxy."""
    kafka_port = free_port()
    proxy = ChaosProxy(kafka_port)
    broker = broker_factory(start=False)
    broker.kafka_port = kafka_port
    broker.extra_args = ["--advertised-kafka-addr", f"127.0.0.1:{proxy.port}"]
    broker.start()
    yield broker, proxy
    proxy.close()


def idempotent_producer(proxy: ChaosProxy, **extra) -> Producer:
    conf = {
        "bootstrap.servers": f"127.0.0.1:{proxy.port}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.num.messages": 50,
        "max.in.flight.requests.per.connection": 5,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "message.timeout.ms": 60000,
    }
    conf.update(extra)
    return Producer(conf)


def values_in_log(broker, topic):
    return [(m.offset(), m.value()) for m in consume_all(broker, topic, [0])]


def test_retries_after_dropped_connections_are_written_once(proxied):
    broker, proxy = proxied
    topic = create_topic(broker)
    p = idempotent_producer(proxy)
    d = Delivered()
    proxy.drop_produce_responses(count=6, every=3)
    sent = [b"rec-%05d" % i for i in range(3000)]
    for v in sent:
        p.produce(topic, v, partition=0, on_delivery=d)
        p.poll(0)
    assert p.flush(90) == 0
    assert not d.errors, d.errors[:5]
    assert proxy.dropped >= 1, "the proxy never cut a connection: the test proved nothing"
    log = values_in_log(broker, topic)
    # Exactly once and in order: offsets 0..n-1 hold the values as sent.
    assert [v for _, v in log] == sent
    assert [o for o, _ in log] == list(range(len(sent)))
    # Every delivery report names the offset where that value really is.
    assert sorted((o, v) for _, o, _, v, _, _ in d.ok) == log


def test_retry_after_broker_restart_is_written_once(proxied):
    broker, proxy = proxied
    topic = create_topic(broker)
    p = idempotent_producer(proxy)
    d = Delivered()
    for i in range(100):  # establish the producer id and sequence state
        p.produce(topic, b"before-%03d" % i, partition=0, on_delivery=d)
    assert p.flush(30) == 0
    proxy.drop_produce_responses(count=1)
    p.produce(topic, b"in-doubt", partition=0, on_delivery=d)
    p.poll(0)
    assert proxy.dropped_event.wait(30), "the produce response was never dropped"
    # The broker holds the batch durably; restart it before the client's retry arrives.
    broker.kill9()
    broker.start()
    stop = threading.Event()

    def pump():
        while not stop.is_set():
            p.poll(0.1)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    assert p.flush(60) == 0
    stop.set()
    t.join()
    assert not d.errors, d.errors[:5]
    for i in range(20):
        p.produce(topic, b"after-%02d" % i, partition=0, on_delivery=d)
    assert p.flush(30) == 0
    log = [v for _, v in values_in_log(broker, topic)]
    expected = [b"before-%03d" % i for i in range(100)] + [b"in-doubt"] + [b"after-%02d" % i for i in range(20)]
    assert log == expected


def test_out_of_order_sequence_is_refused(broker):
    """A batch that skips sequence numbers gets OUT_OF_ORDER_SEQUENCE_NUMBER and is not stored."""
    import kwire

    topic = create_topic(broker)
    with kwire.Conn.to(broker.bootstrap) as conn:
        pid = kwire.init_producer_id(conn)
        ok = kwire.produce_raw(conn, topic, 0, kwire.record_batch([b"a"], producer_id=pid, base_sequence=0))
        assert ok == 0
        dup = kwire.produce_raw(conn, topic, 0, kwire.record_batch([b"a"], producer_id=pid, base_sequence=0))
        assert dup == 0  # a duplicate is answered as success...
        gap = kwire.produce_raw(conn, topic, 0, kwire.record_batch([b"c"], producer_id=pid, base_sequence=5))
        assert gap == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    assert [v for _, v in values_in_log(broker, topic)] == [b"a"]  # ...and stored once
