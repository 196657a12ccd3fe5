"""Apache Spark 4 reads Icestream's topic tables through the built-in Iceberg REST catalog:
Spark SQL over a `key_value` topic and a JSON Schema topic returns exactly what was produced
(each partition and offset once), with typed columns, filters, counts and snapshot history,
against the local (`file://`) warehouse and against S3 (SeaweedFS `weed mini`).

One local Spark session (sparkkit.py) serves every test; each test registers its broker's
catalog under a new name."""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchTableError

from conftest import create_topic, produce, watermarks
from s3server import ACCESS_KEY, REGION, SECRET_KEY, WeedS3
from sparkkit import S3Access, spark  # noqa: F401  (spark: the session-wide fixture)
from test_iceberg_external_catalog import TABLE_BUCKET, weed_catalog
from test_iceberg_external_catalog import broker_args as external_broker_args

# The first test also pays for starting the JVM (10 s on an idle machine, 40 s on a busy one).
pytestmark = pytest.mark.timeout(300)

LAG_MS = 500
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
T0_MS = int(T0.timestamp() * 1000)
_names = itertools.count()


def catalog_name() -> str:
    """A new Spark catalog name: Spark keeps a catalog's settings from its first use."""
    return f"ice{next(_names)}"


def iceberg_topic(broker, partitions: int, mode: str = "key_value") -> str:
    return create_topic(broker, partitions=partitions,
                        config={"iceberg.mode": mode, "iceberg.target.lag.ms": str(LAG_MS)})


def builtin_catalog(broker) -> RestCatalog:
    return RestCatalog("icestream", uri=broker.iceberg_catalog_url)


def wait_committed(cat: RestCatalog, topic: str, n: int, timeout: float = 60.0):
    """Waits until the table's current snapshot holds `n` records, from the catalog's metadata
    alone (no data file is read, so it works for any warehouse). Returns the table."""
    deadline = time.monotonic() + timeout
    total = None
    while time.monotonic() < deadline:
        try:
            table = cat.load_table(("kafka", topic))
            snap = table.current_snapshot()
            total = int(snap.summary["total-records"]) if snap else 0
            if total >= n:
                return table
        except NoSuchTableError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"kafka.{topic} holds {total} records after {timeout}s, want {n}")


def positions(rows: list[dict]) -> list[tuple[int, int]]:
    return sorted((r["p"], r["o"]) for r in rows)


def key_value_records(n: int, partitions: int) -> list[dict]:
    # Twenty minutes apart: the default hour(kafka.timestamp) spec spreads them over hours.
    return [{"key": f"k{i}".encode(), "value": f"value-{i}".encode() * (1 + i % 3),
             "partition": i % partitions, "timestamp": T0_MS + i * 20 * 60_000}
            for i in range(n)]


def assert_key_value_reads(spark, broker, lake: RestCatalog, cat: str, topic: str,  # noqa: F811
                           partitions: int):
    """Produces, waits for the commit in `lake` (the catalog the broker commits to, which
    Spark reads as `cat`), and checks what Spark SQL reads; then produces more and checks that
    Spark sees the new snapshot (nothing cached) and its history."""
    t = f"{cat}.kafka.`{topic}`"
    records = key_value_records(60, partitions)
    sent = produce(broker, topic, records)
    wait_committed(lake, topic, 60)

    rows = spark.sql(f"SELECT key, value, kafka.partition AS p, kafka.offset AS o, "
                     f"unix_millis(kafka.timestamp) AS ts FROM {t}")
    want = {(p, off): (k, v) for (p, off, k, v, _, _) in sent.ok}
    assert positions(rows) == sorted(want), "each (partition, offset) once, none missing"
    assert {(r["p"], r["o"]): (r["key"], r["value"]) for r in rows} == want
    assert {r["key"]: r["ts"] for r in rows} == {r["key"]: r["timestamp"] for r in records}
    highs = {p: watermarks(broker, topic, p)[1] for p in range(partitions)}
    assert {p: 1 + max(r["o"] for r in rows if r["p"] == p) for p in highs} == highs

    # A filter on the Kafka partition column, and one on the column the Iceberg spec
    # partitions by (hour(kafka.timestamp)): exact rows either way.
    part1 = spark.sql(f"SELECT kafka.partition AS p, kafka.offset AS o FROM {t} "
                      f"WHERE kafka.partition = 1")
    assert positions(part1) == sorted(k for k in want if k[0] == 1)
    cut = T0 + timedelta(hours=10)
    late = spark.sql(f"SELECT key FROM {t} "
                     f"WHERE kafka.timestamp >= TIMESTAMP '{cut:%Y-%m-%d %H:%M:%S}'")
    assert sorted(r["key"] for r in late) == sorted(
        r["key"] for r in records if r["timestamp"] >= int(cut.timestamp() * 1000))
    hours = spark.sql(f"SELECT partition.kafka_timestamp_hour AS h, record_count AS n "
                      f"FROM {t}.partitions")
    # 60 records 20 minutes apart: three in each of 20 hours (hours since the epoch).
    first_hour = T0_MS // 3_600_000
    assert sorted((h["h"], h["n"]) for h in hours) \
        == [(first_hour + i, 3) for i in range(20)], hours
    assert spark.sql(f"SELECT count(*) AS n, count_if(kafka.partition = 0) AS n0 FROM {t}") \
        == [{"n": 60, "n0": sum(1 for k in want if k[0] == 0)}]

    # More records: a later query sees the new snapshot, and the history lists both.
    first = spark.sql(f"SELECT snapshot_id FROM {t}.snapshots")
    more = produce(broker, topic, [{"key": b"late", "value": b"x", "partition": 0}])
    table = wait_committed(lake, topic, 61)
    assert spark.sql(f"SELECT count(*) AS n FROM {t}") == [{"n": 61}]
    (p, off, *_), = more.ok
    assert spark.sql(f"SELECT key FROM {t} WHERE kafka.partition = {p} "
                     f"AND kafka.offset = {off}") == [{"key": b"late"}]
    snaps = spark.sql(f"SELECT snapshot_id, parent_id, operation, "
                      f"summary['total-records'] AS total, "
                      f"summary['icestream.kafka.next-offsets'] AS next_offsets "
                      f"FROM {t}.snapshots")
    assert len(snaps) > len(first) >= 1
    assert sorted(s["snapshot_id"] for s in snaps) \
        == sorted(s.snapshot_id for s in table.snapshots())
    assert all(s["operation"] == "append" for s in snaps)
    # One line of history, first commit to the current snapshot.
    by_parent = {s["parent_id"]: s for s in snaps}
    chain = [by_parent[None]]
    while chain[-1]["snapshot_id"] in by_parent:
        chain.append(by_parent[chain[-1]["snapshot_id"]])
    assert len(chain) == len(snaps)
    assert chain[-1]["snapshot_id"] == table.current_snapshot().snapshot_id
    assert chain[-1]["total"] == "61"
    highs[p] += 1
    assert dict(map(int, kv.split("=")) for kv in chain[-1]["next_offsets"].split(",")) \
        == highs


def test_spark_reads_a_key_value_topic_from_the_local_warehouse(spark, broker):  # noqa: F811
    topic = iceberg_topic(broker, partitions=3)
    cat = spark.register_rest_catalog(catalog_name(), broker.iceberg_catalog_url)
    assert_key_value_reads(spark, broker, builtin_catalog(broker), cat, topic, partitions=3)
    location = spark.sql(f"DESCRIBE TABLE EXTENDED {cat}.kafka.`{topic}`")
    loc = [r["data_type"] for r in location if r["col_name"] == "Location"]
    assert loc and loc[0].startswith("file:"), location


# ------------------------------------------------------------------ schema-driven

ORDER = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "item": {"type": "string"},
        "price": {"type": "number"},
        "paid": {"type": "boolean"},
        "placed": {"type": "string", "format": "date-time"},
        "ship_to": {"type": "object", "properties": {"city": {"type": "string"},
                                                     "zip": {"type": "integer"}}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": ["string", "null"]},
    },
}


def order(i: int) -> dict:
    placed = T0 + timedelta(minutes=7 * i, microseconds=i)
    return {"id": i, "item": f"thing-{i}", "price": i * 1.25, "paid": i % 2 == 0,
            "placed": placed.isoformat(), "ship_to": {"city": f"c{i % 4}", "zip": 1000 + i},
            "tags": [f"t{j}" for j in range(i % 3)], "note": None if i % 5 else f"note {i}"}


def test_spark_reads_a_json_schema_topic_as_typed_columns(spark, broker):  # noqa: F811
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = iceberg_topic(broker, partitions=2, mode="value_schema_id_prefix")
    ser = JSONSerializer(json.dumps(ORDER),
                         SchemaRegistryClient({"url": broker.schema_registry_url}))
    ctx = SerializationContext(topic, MessageField.VALUE)
    orders = [order(i) for i in range(40)]
    sent = produce(broker, topic, [{"key": str(o["id"]).encode(), "value": ser(o, ctx),
                                    "partition": o["id"] % 2} for o in orders])
    wait_committed(builtin_catalog(broker), topic, 40)

    cat = spark.register_rest_catalog(catalog_name(), broker.iceberg_catalog_url)
    t = f"{cat}.kafka.`{topic}`"
    types = spark.schema(t)
    assert types == {
        "kafka": "struct<partition:int,offset:bigint,timestamp:timestamp,"
                 "headers:array<struct<key:string,value:binary>>>",
        "key": "binary",
        "id": "bigint",
        "item": "string",
        "price": "double",
        "paid": "boolean",
        "placed": "timestamp",
        "ship_to": "struct<city:string,zip:bigint>",
        "tags": "array<string>",
        "note": "string",
    }, types

    rows = spark.sql(f"SELECT kafka.partition AS p, kafka.offset AS o, key, id, item, price, "
                     f"paid, unix_micros(placed) AS placed_us, ship_to, tags, note FROM {t}")
    by_key = {k: (p, off) for (p, off, k, _, _, _) in sent.ok}
    assert positions(rows) == sorted(by_key.values())
    got = {(r["p"], r["o"]): r for r in rows}
    for o in orders:
        r = got[by_key[str(o["id"]).encode()]]
        placed = datetime.fromisoformat(o["placed"])
        assert (r["id"], r["item"], r["price"], r["paid"], r["ship_to"], r["tags"], r["note"]) \
            == (o["id"], o["item"], o["price"], o["paid"], o["ship_to"], o["tags"], o["note"])
        assert r["placed_us"] == (placed - datetime(1970, 1, 1, tzinfo=timezone.utc)) \
            // timedelta(microseconds=1)

    # Typed columns filter and aggregate in Spark.
    picked = [o["id"] for o in orders if o["paid"] and o["ship_to"]["city"] == "c2" and o["tags"]]
    assert picked, "the filter must select something to mean anything"
    assert spark.sql(f"SELECT count(*) AS n, sum(id) AS s FROM {t} "
                     f"WHERE paid AND ship_to.city = 'c2' AND array_size(tags) > 0") \
        == [{"n": len(picked), "s": sum(picked)}]
    assert spark.sql(f"SELECT count(note) AS n FROM {t}") == [{"n": 8}]
    assert spark.sql(f"SELECT count(*) AS n FROM {t} WHERE kafka.partition = 1") == [{"n": 20}]


# ------------------------------------------------------------------ S3


@pytest.fixture
def weed(tmp_path):
    w = WeedS3(tmp_path).start()
    yield w
    w.stop()


def test_spark_reads_a_key_value_topic_from_an_s3_warehouse(spark, weed,  # noqa: F811
                                                            broker_factory):
    broker = broker_factory(args=weed.broker_args(), env=WeedS3.broker_env())
    topic = iceberg_topic(broker, partitions=2)
    produce(broker, topic, [b"first"])
    table = wait_committed(builtin_catalog(broker), topic, 1)
    # The catalog says where the files are; the client brings its own keys.
    assert table.location().startswith("s3://"), table.location()
    cat = spark.register_rest_catalog(
        catalog_name(), broker.iceberg_catalog_url,
        s3=S3Access(endpoint=weed.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                    region=REGION))
    assert spark.sql(f"SELECT value FROM {cat}.kafka.`{topic}`") == [{"value": b"first"}]
    # The same checks as on the local warehouse, on a fresh topic.
    topic2 = iceberg_topic(broker, partitions=3)
    assert_key_value_reads(spark, broker, builtin_catalog(broker), cat, topic2, partitions=3)


@pytest.fixture
def weed_lake(tmp_path):
    w = WeedS3(tmp_path, table_bucket=TABLE_BUCKET).start()
    yield w
    w.stop()


def test_spark_reads_a_topic_committed_to_an_external_s3_catalog(spark, weed_lake,  # noqa: F811
                                                                 broker_factory):
    """The S3 half of the Spark settings, working today: the broker commits to weed's own
    Iceberg REST catalog (OAuth2) with an s3:// warehouse, and Spark reads the table there
    with S3FileIO and the test's keys."""
    broker = broker_factory(args=external_broker_args(weed_lake), env=WeedS3.broker_env())
    topic = iceberg_topic(broker, partitions=3)
    cat = spark.register_rest_catalog(
        catalog_name(), weed_lake.iceberg_url,
        s3=S3Access(endpoint=weed_lake.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                    region=REGION),
        warehouse=f"s3://{TABLE_BUCKET}", **{
            "rest.auth.type": "oauth2", "credential": f"{ACCESS_KEY}:{SECRET_KEY}",
            "oauth2-server-uri": f"{weed_lake.iceberg_url}/v1/oauth/tokens"})
    assert_key_value_reads(spark, broker, weed_catalog(weed_lake), cat, topic, partitions=3)
    location = spark.sql(f"DESCRIBE TABLE EXTENDED {cat}.kafka.`{topic}`")
    loc = [r["data_type"] for r in location if r["col_name"] == "Location"]
    assert loc and loc[0].startswith(f"s3://{TABLE_BUCKET}/"), location
