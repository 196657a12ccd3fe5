"""Produce-time schema id validation (`confluent.value.schema.validation`, Redpanda's
`redpanda.key.schema.id.validation`): serializer output is accepted, raw or unregistered
records are refused with INVALID_RECORD and the reason, and nothing accepted is lost."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import Schema
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import Delivered, consume_all, create_topic, producer_config, unique_topic
from test_schema_registry import USER_V1, client


def test_schema_id_validation_on_produce(broker):
    from confluent_kafka.schema_registry.avro import AvroSerializer
    sr = client(broker)
    topic = create_topic(broker, config={"confluent.value.schema.validation": "true"})
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    ctx = SerializationContext(topic, MessageField.VALUE)
    good = [ser({"name": f"u{i}", "age": i}, ctx) for i in range(5)]
    unknown_id = b"\x00" + (987654).to_bytes(4, "big") + good[0][5:]
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    d = Delivered()
    for v in good:
        p.produce(topic, value=v, on_delivery=d)
    p.flush(30)
    bad = Delivered()
    p.produce(topic, value=b"raw bytes, no schema", on_delivery=bad)
    p.flush(30)
    p.produce(topic, value=unknown_id, on_delivery=bad)
    p.flush(30)
    p.produce(topic, key=b"k", value=None, on_delivery=d)  # a tombstone is not checked
    p.flush(30)
    for v in good:
        p.produce(topic, value=v, on_delivery=d)
    assert p.flush(30) == 0
    assert not d.errors, d.errors
    assert len(bad.errors) == 2
    assert all(e.code() == KafkaError.INVALID_RECORD for e, _, _ in bad.errors), bad.errors
    assert all("INVALID_RECORD" in e.name() for e, _, _ in bad.errors)
    msgs = consume_all(broker, topic)
    assert [m.value() for m in msgs] == good + [None] + good


def test_schema_id_validation_reasons_and_redpanda_alias(broker):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as PyKafkaError
    sr = client(broker)
    topic = create_topic(broker, config={"redpanda.key.schema.id.validation": "true"})
    sid = sr.register_schema(unique_topic("k"), Schema('"string"', "AVRO"))
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0, linger_ms=0)
    ok = prod.send(topic, key=b"\x00" + sid.to_bytes(4, "big") + b"\x02a", value=b"anything")
    ok.get(timeout=30)
    f = prod.send(topic, key=b"\x00" + (424242).to_bytes(4, "big"), value=b"v")
    with pytest.raises(PyKafkaError) as e:
        f.get(timeout=30)
    # kafka-python shows the partition's error_message (librdkafka only the code).
    assert "record 0: key schema id 424242 is not registered" in str(e.value), repr(e.value)
    f = prod.send(topic, key=b"raw key", value=b"v")
    with pytest.raises(PyKafkaError) as e:
        f.get(timeout=30)
    assert "key does not start with the Confluent wire-format magic byte 0" in str(e.value)
    # A null key is not checked.
    prod.send(topic, key=None, value=b"no key").get(timeout=30)
    prod.close()


def test_a_refused_partition_leaves_the_others_of_the_request_alone(broker):
    from confluent_kafka.schema_registry.avro import AvroSerializer
    sr = client(broker)
    topic = create_topic(broker, partitions=2,
                         config={"confluent.value.schema.validation": "true"})
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    good = ser({"name": "a", "age": 1}, SerializationContext(topic, MessageField.VALUE))
    # linger lets one Produce request carry both partitions
    p = Producer(producer_config(broker, **{"linger.ms": 200}))
    d = Delivered()
    for _ in range(3):
        p.produce(topic, partition=0, value=good, on_delivery=d)
        p.produce(topic, partition=1, value=b"not framed", on_delivery=d)
    assert p.flush(30) == 0
    assert {pt for pt, *_ in d.ok} == {0} and len(d.ok) == 3
    assert len(d.errors) == 3
    assert all(e.code() == KafkaError.INVALID_RECORD for e, _, _ in d.errors)
    assert [m.value() for m in consume_all(broker, topic, partitions=[0])] == [good] * 3
    assert consume_all(broker, topic, partitions=[1], timeout=3) == []
