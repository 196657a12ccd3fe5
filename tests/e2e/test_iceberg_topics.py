"""Iceberg topics: records produced with confluent-kafka become rows of an Iceberg table that
pyiceberg and DuckDB read through the built-in catalog, exactly once, through crashes."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchTableError

from conftest import (broker_binary, create_topic, http_get, produce, producer_config,
                      watermarks)
from test_iceberg_catalog import duckdb_connection

LAG_MS = 500


def catalog(broker) -> RestCatalog:
    return RestCatalog("icestream", uri=broker.iceberg_catalog_url)


def iceberg_topic(broker, partitions=1, **config) -> str:
    conf = {"iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS)}
    conf.update({k.replace("_", "."): v for k, v in config.items()})
    return create_topic(broker, partitions=partitions, config=conf)


def table_rows(broker, topic: str, ns: str = "kafka") -> list[dict]:
    try:
        t = catalog(broker).load_table((ns, topic))
    except NoSuchTableError:
        return []
    return t.scan().to_arrow().to_pylist()


def wait_rows(broker, topic: str, n: int, timeout: float = 60.0, ns: str = "kafka"):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = table_rows(broker, topic, ns)
        if len(rows) >= n:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"table {ns}.{topic} has {len(rows)} rows after {timeout}s, want {n}")


def high_watermarks(broker, topic: str, partitions: int) -> dict[int, int]:
    return {p: watermarks(broker, topic, p)[1] for p in range(partitions)}


def assert_exact(rows: list[dict], highs: dict[int, int]):
    """Every offset 0..high of every partition, once."""
    got: dict[int, list[int]] = {}
    for r in rows:
        got.setdefault(r["kafka"]["partition"], []).append(r["kafka"]["offset"])
    for p, high in highs.items():
        offs = sorted(got.get(p, []))
        assert len(offs) == len(set(offs)), f"partition {p}: duplicates"
        assert offs == list(range(high)), \
            f"partition {p}: {len(offs)} offsets, want 0..{high}; first gaps " \
            f"{sorted(set(range(high)) - set(offs))[:5]}"
    assert set(got) <= set(highs)


def describe(broker, topic: str) -> dict:
    status, body, _ = http_get(f"{broker.admin_url}/v1/iceberg/topics/{topic}")
    assert status == 200, body
    return json.loads(body)


def test_key_value_rows_match_what_was_produced(broker):
    topic = iceberg_topic(broker, partitions=3)
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode() * (i % 5),
                "partition": i % 3, "headers": [("h", f"x{i}".encode()), ("n", None)],
                "timestamp": 1_700_000_000_000 + i * 600_000}
               for i in range(300)]
    t0 = time.monotonic()
    d = produce(broker, topic, records)
    rows = wait_rows(broker, topic, 300)
    took = time.monotonic() - t0
    assert took < 15, f"visible after {took:.1f}s with a {LAG_MS} ms target lag"
    assert_exact(rows, high_watermarks(broker, topic, 3))
    by_pos = {(r["kafka"]["partition"], r["kafka"]["offset"]): r for r in rows}
    sent = {r["key"]: r for r in records}
    for (p, off, key, value, _, _) in d.ok:
        r = by_pos[(p, off)]
        assert r["key"] == key and r["value"] == value
        assert [(h["key"], h["value"]) for h in r["kafka"]["headers"]] == sent[key]["headers"]
        assert int(r["kafka"]["timestamp"].timestamp() * 1000) == sent[key]["timestamp"]

    # The snapshot summary records the offsets it covers; the spec is hour(timestamp).
    table = catalog(broker).load_table(("kafka", topic))
    summary = table.current_snapshot().summary
    nexts = dict(kv.split("=") for kv in summary["icestream.kafka.next-offsets"].split(","))
    assert {int(k): int(v) for k, v in nexts.items()} == high_watermarks(broker, topic, 3)
    assert [f.transform.__class__.__name__ for f in table.spec().fields] == ["HourTransform"]
    files = table.inspect.files().to_pylist()
    assert all(f["file_path"].endswith(".parquet") for f in files)

    # DuckDB reads the same rows through the catalog.
    con = duckdb_connection()
    con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                    ENDPOINT '{broker.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none')""")
    n, parts, maxoff = con.execute(
        f'SELECT count(*), count(DISTINCT kafka.partition), max(kafka."offset") '
        f'FROM ice.kafka."{topic}"').fetchone()
    assert (n, parts) == (300, 3) and maxoff == 99
    assert con.execute(f'SELECT value FROM ice.kafka."{topic}" WHERE key = \'k7\'').fetchone() \
        == (b"v7v7",)

    # Observability: describe route and /metrics.
    desc = describe(broker, topic)
    assert desc["table"] == f"kafka.{topic}" and desc["lag_records"] == 0
    assert desc["snapshot"]["summary"]["icestream.kafka.next-offsets"]
    assert desc["records_written"] == 300 and desc["files_written"] >= 1
    _, metrics, _ = http_get(f"{broker.admin_url}/metrics")
    assert f'icestream_iceberg_records_written_total{{topic="{topic}"}} 300' in metrics
    assert f'icestream_iceberg_translation_lag_records{{topic="{topic}"}} 0' in metrics
    cli = subprocess.run([str(broker_binary()), "--admin-url", broker.admin_url,
                          "--brokers", broker.bootstrap, "topic", "describe", topic],
                         capture_output=True, text=True, timeout=30)
    assert cli.returncode == 0, cli.stderr
    assert f"kafka.{topic}" in cli.stdout and "iceberg" in cli.stdout.lower()


def test_redpanda_config_names_are_accepted(broker):
    topic = create_topic(broker, config={"redpanda.iceberg.mode": "key_value",
                                         "redpanda.iceberg.target.lag.ms": str(LAG_MS),
                                         "redpanda.iceberg.partition.spec":
                                             "(day(redpanda.timestamp), kafka.partition)"})
    produce(broker, topic, [f"v{i}".encode() for i in range(20)])
    wait_rows(broker, topic, 20)
    table = catalog(broker).load_table(("kafka", topic))
    assert [f.name for f in table.spec().fields] == ["kafka_timestamp_day", "kafka_partition"]


def test_exactly_once_through_repeated_sigkill(broker):
    partitions = 3
    topic = iceberg_topic(broker, partitions=partitions)
    stop = threading.Event()
    sent = [0]

    def producer_loop():
        p = Producer(producer_config(broker, **{"message.timeout.ms": 120000, "acks": "all",
                                                "retries": 1000000,
                                                "enable.idempotence": True}))
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, key=str(i).encode(), value=b"x" * 100)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
            if i % 200 == 0:
                time.sleep(0.01)
        p.flush(120)
        sent[0] = i

    th = threading.Thread(target=producer_loop)
    th.start()
    rnd = random.Random(7)
    try:
        for _ in range(5):
            time.sleep(rnd.uniform(0.5, 2.0))
            broker.kill9()
            broker.restart()
    finally:
        stop.set()
        th.join(180)
    highs = high_watermarks(broker, topic, partitions)
    total = sum(highs.values())
    assert total > 1000
    rows = wait_rows(broker, topic, total, timeout=90)
    time.sleep(2 * LAG_MS / 1000)
    rows = table_rows(broker, topic)
    assert_exact(rows, highs)


def test_backfill_of_an_existing_topic_including_tiered_segments(broker_factory):
    broker = broker_factory(args=["--retention-check-interval-ms", "200"])
    topic = create_topic(broker, partitions=2, config={
        "remote.storage.enable": "true", "segment.bytes": "4096",
        "local.retention.bytes": "1"})
    produce(broker, topic, [{"value": b"y" * 200, "key": str(i).encode(), "partition": i % 2}
                            for i in range(1000)], **{"batch.size": 2048})
    highs = high_watermarks(broker, topic, 2)
    assert sum(highs.values()) == 1000
    # Wait until old segments left the local disk (uploaded, then locally deleted).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = describe_storage(broker, topic)
        if parts and all(p["local_start_offset"] > 0 for p in parts):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"segments never tiered: {parts}")
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource("topic", topic, set_config={
        "remote.storage.enable": "true", "segment.bytes": "4096",
        "local.retention.bytes": "1", "iceberg.mode": "key_value",
        "iceberg.target.lag.ms": str(LAG_MS)})
    for f in admin.alter_configs([res]).values():
        f.result(30)
    rows = wait_rows(broker, topic, 1000, timeout=90)
    assert_exact(rows, highs)


def describe_storage(broker, topic: str) -> list[dict]:
    status, body, _ = http_get(f"{broker.admin_url}/v1/topics/{topic}/storage")
    if status != 200:
        return []
    data = json.loads(body)
    return data.get("partitions", data if isinstance(data, list) else [])


def test_topic_delete_drops_the_table_unless_told_not_to(broker):
    dropped = iceberg_topic(broker)
    kept = iceberg_topic(broker, **{"iceberg.delete": "false"})
    for t in (dropped, kept):
        produce(broker, t, [b"a", b"b"])
        wait_rows(broker, t, 2)
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.delete_topics([dropped, kept], operation_timeout=10).values():
        f.result(30)
    cat = catalog(broker)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and cat.table_exists(("kafka", dropped)):
        time.sleep(0.2)
    assert not cat.table_exists(("kafka", dropped))
    assert cat.table_exists(("kafka", kept))
    assert len(table_rows(broker, kept)) == 2


def test_produce_is_unaffected_while_the_warehouse_is_unwritable(broker):
    topic = iceberg_topic(broker, partitions=2)
    produce(broker, topic, [b"first"] * 10)
    wait_rows(broker, topic, 10)
    # The tests run as root, so permissions do not stop writes: a plain file where the
    # table's data directory was makes every new data file fail (ENOTDIR).
    data_dir = broker.data_dir / "objects" / "warehouse" / "kafka" / topic / "data"
    assert data_dir.is_dir()
    moved = data_dir.with_name("data.away")
    data_dir.rename(moved)
    data_dir.write_bytes(b"")
    try:
        t0 = time.monotonic()
        produce(broker, topic, [b"during"] * 500)
        assert time.monotonic() - t0 < 10
        time.sleep(3)
        snap = catalog(broker).load_table(("kafka", topic)).current_snapshot()
        assert snap.summary["total-records"] == "10"  # metadata only: data files are away
        desc = describe(broker, topic)
        assert desc["lag_records"] == 500 and desc["commit_errors"] > 0, desc
        assert desc["lag_ms"] > 1000
    finally:
        data_dir.unlink()
        moved.rename(data_dir)
    rows = wait_rows(broker, topic, 510, timeout=60)
    time.sleep(1)
    assert_exact(table_rows(broker, topic), high_watermarks(broker, topic, 2))


# ------------------------------------------------------------------ schema-driven modes

USER_V1 = {"type": "record", "name": "User", "namespace": "shop",
           "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
                      {"name": "tags", "type": {"type": "array", "items": "string"}}]}
USER_V2 = dict(USER_V1, fields=USER_V1["fields"] + [
    {"name": "email", "type": ["null", "string"], "default": None}])


def avro_values(broker, topic: str, schema: dict, users: list[dict]) -> list[bytes]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    ser = AvroSerializer(SchemaRegistryClient({"url": broker.schema_registry_url}),
                         json.dumps(schema))
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [ser(u, ctx) for u in users]


def test_avro_values_become_columns_and_the_schema_evolves(broker):
    topic = iceberg_topic(broker, partitions=2, **{"iceberg.mode": "value_schema_id_prefix"})
    v1 = [{"id": i, "name": f"user{i}", "tags": ["a"] * (i % 3)} for i in range(50)]
    produce(broker, topic, [{"value": v, "key": str(i).encode(), "partition": i % 2}
                            for i, v in enumerate(avro_values(broker, topic, USER_V1, v1))])
    rows = wait_rows(broker, topic, 50)
    assert sorted(r["id"] for r in rows) == list(range(50))
    assert all(r["name"] == f"user{r['id']}" and r["tags"] == ["a"] * (r["id"] % 3)
               for r in rows)
    assert "email" not in rows[0]

    # A new optional field mid-stream: the table gains the column, old rows read null.
    v2 = [{"id": i, "name": f"user{i}", "tags": [], "email": f"u{i}@example.com"}
          for i in range(50, 80)]
    produce(broker, topic, [{"value": v, "partition": i % 2}
                            for i, v in enumerate(avro_values(broker, topic, USER_V2, v2))])
    # Malformed values: no wire-format header, an unknown schema id, a truncated payload.
    bad = [b"not avro at all", b"\x00\x00\x00\x7f\xff\x02", avro_values(
        broker, topic, USER_V2, [v2[0]])[0][:7]]
    produce(broker, topic, [{"value": v, "key": b"bad", "partition": 0} for v in bad])
    rows = wait_rows(broker, topic, 80)
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == 80 and sorted(by_id) == list(range(80))
    assert all(by_id[i]["email"] is None for i in range(50))
    assert all(by_id[i]["email"] == f"u{i}@example.com" for i in range(50, 80))
    dlq = wait_rows(broker, f"{topic}~dlq", 3)
    assert sorted(r["value"] for r in dlq) == sorted(bad)
    codes = {r["value"]: r["reason_code"] for r in dlq}
    assert codes[bad[0]] == "bad_wire_format"
    assert codes[bad[1]] == "unknown_schema_id"
    assert codes[bad[2]] == "payload_mismatch"
    assert all(r["reason"] for r in dlq)
    # Offsets: table + DLQ hold every offset of every partition exactly once.
    assert_exact(rows + dlq, high_watermarks(broker, topic, 2))
    desc = describe(broker, topic)
    assert desc["dlq_records"] == 3

    con = duckdb_connection()
    con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                    ENDPOINT '{broker.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none')""")
    assert con.execute(f'SELECT count(*), count(email) FROM ice.kafka."{topic}"').fetchone() \
        == (80, 30)


def test_invalid_records_can_be_dropped(broker):
    topic = iceberg_topic(broker, **{"iceberg.mode": "value_schema_id_prefix",
                                     "iceberg.invalid.record.action": "drop"})
    good = avro_values(broker, topic, USER_V1, [{"id": 1, "name": "a", "tags": []}])
    produce(broker, topic, good + [b"garbage"] + good)
    wait_rows(broker, topic, 2)
    time.sleep(1)
    assert not catalog(broker).table_exists(("kafka", f"{topic}~dlq"))
    _, metrics, _ = http_get(f"{broker.admin_url}/metrics")
    assert f'icestream_iceberg_dropped_records_total{{topic="{topic}"}} 1' in metrics


def test_protobuf_values_become_columns(broker):
    """Protobuf values serialized by confluent-kafka (registered as base64 descriptors) become
    columns; a field added mid-stream becomes a column that older rows read as null."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto

    def message_class(pkg, fields):
        fdp = descriptor_pb2.FileDescriptorProto(name=f"{pkg}/order.proto", package=pkg,
                                                 syntax="proto3")
        m = fdp.message_type.add(name="Order")
        for name, number, ftype in fields:
            m.field.add(name=name, number=number, type=ftype, label=F.LABEL_OPTIONAL)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.Order"))

    topic = iceberg_topic(broker, **{"iceberg.mode": "value_schema_id_prefix"})
    pkg = "shop_" + topic.replace("-", "_")
    V1 = message_class(pkg, [("id", 1, F.TYPE_STRING), ("quantity", 2, F.TYPE_INT32)])
    V2 = message_class(pkg, [("id", 1, F.TYPE_STRING), ("quantity", 2, F.TYPE_INT32),
                             ("note", 3, F.TYPE_STRING)])
    sr = SchemaRegistryClient({"url": broker.schema_registry_url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser1 = ProtobufSerializer(V1, sr, {"use.deprecated.format": False})
    values = [ser1(V1(id=f"o{i}", quantity=i), ctx) for i in range(20)]
    ser2 = ProtobufSerializer(V2, sr, {"use.deprecated.format": False})
    values += [ser2(V2(id=f"o{i}", quantity=i, note=f"n{i}"), ctx) for i in range(20, 30)]
    produce(broker, topic, values)
    rows = wait_rows(broker, topic, 30)
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == sorted(f"o{i}" for i in range(30))
    assert all(by_id[f"o{i}"]["quantity"] == i for i in range(30))
    assert all(by_id[f"o{i}"]["note"] is None for i in range(20))
    assert all(by_id[f"o{i}"]["note"] == f"n{i}" for i in range(20, 30))
    assert_exact(rows, high_watermarks(broker, topic, 1))


def test_value_schema_latest_decodes_bare_avro_payloads(broker):
    import io

    import fastavro
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    topic = iceberg_topic(broker, **{"iceberg.mode": "value_schema_latest"})
    sr = SchemaRegistryClient({"url": broker.schema_registry_url})
    sr.register_schema(f"{topic}-value", Schema(json.dumps(USER_V1), "AVRO"))
    parsed = fastavro.parse_schema(USER_V1)

    def bare(u):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, u)
        return buf.getvalue()

    produce(broker, topic, [bare({"id": i, "name": f"n{i}", "tags": []}) for i in range(20)])
    rows = wait_rows(broker, topic, 20)
    assert sorted((r["id"], r["name"]) for r in rows) == [(i, f"n{i}") for i in range(20)]
    assert_exact(rows, high_watermarks(broker, topic, 1))


def test_files_follow_the_target_lag_not_the_produce_rate(broker):
    """Thousands of small produce requests over ~4 s with a 2 s target lag: a handful of
    commits and files, not one per request."""
    topic = iceberg_topic(broker, **{"iceberg.target.lag.ms": "2000"})
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    n = 0
    start = time.monotonic()
    while time.monotonic() - start < 4:
        p.produce(topic, value=b"v" * 50)
        p.poll(0)
        n += 1
        if n % 50 == 0:
            p.flush(10)
    p.flush(30)
    rows = wait_rows(broker, topic, n, timeout=30)
    assert len(rows) == n
    desc = describe(broker, topic)
    assert desc["commits"] <= 8, desc
    assert desc["files_written"] <= 2 * desc["commits"], desc


def test_schema_mode_with_dead_letters_exactly_once_through_sigkill(broker):
    """Valid Avro values and garbage interleaved while the broker is killed: the table and the
    DLQ together hold every offset once (the DLQ is committed first and skips what it has)."""
    topic = iceberg_topic(broker, partitions=2, **{"iceberg.mode": "value_schema_id_prefix"})
    good = avro_values(broker, topic, USER_V1, [{"id": i, "name": "x", "tags": []}
                                                 for i in range(10)])
    stop = threading.Event()

    def producer_loop():
        p = Producer(producer_config(broker, **{"message.timeout.ms": 120000,
                                                "enable.idempotence": True}))
        i = 0
        while not stop.is_set():
            v = b"garbage-%d" % i if i % 7 == 0 else good[i % 10]
            try:
                p.produce(topic, value=v)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
            if i % 100 == 0:
                time.sleep(0.01)
        p.flush(120)

    th = threading.Thread(target=producer_loop)
    th.start()
    try:
        for _ in range(4):
            time.sleep(random.uniform(0.5, 1.5))
            broker.kill9()
            broker.restart()
    finally:
        stop.set()
        th.join(180)
    highs = high_watermarks(broker, topic, 2)
    total = sum(highs.values())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows, dlq = table_rows(broker, topic), table_rows(broker, f"{topic}~dlq")
        if len(rows) + len(dlq) >= total:
            break
        time.sleep(0.3)
    time.sleep(1)
    rows, dlq = table_rows(broker, topic), table_rows(broker, f"{topic}~dlq")
    assert dlq and all(r["value"].startswith(b"garbage-") for r in dlq)
    assert_exact(rows + dlq, highs)
