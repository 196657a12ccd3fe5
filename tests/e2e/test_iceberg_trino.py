"""Trino reads Icestream topic tables through the broker's built-in Iceberg REST catalog.

A real Trino 476 server (trinokit.py: one per session, Iceberg connector only) gets a catalog
per broker at run time with `CREATE CATALOG ... USING iceberg` (`iceberg.catalog.type=rest`);
what the tests assert is what a Trino user sees: the rows produced with confluent-kafka, each
(partition, offset) once, typed columns for a schema-driven topic, `WHERE`, `COUNT(*)` and the
`$snapshots` metadata table, for a `file://` warehouse and for one on S3."""

from __future__ import annotations

import time

import pytest
from pyiceberg.catalog.rest import RestCatalog

from conftest import produce
from s3server import ACCESS_KEY, REGION, SECRET_KEY, WeedS3
from test_iceberg_topics import (USER_V1, USER_V2, avro_values, describe, high_watermarks,
                                 iceberg_topic, wait_rows)
from trinokit import S3Access, trino_catalog, trino_server  # noqa: F401 (fixtures)

# Trino's start (~30 s on two busy cores) counts towards the first test's time.
pytestmark = pytest.mark.timeout(300)


def table_name(catalog: str, topic: str) -> str:
    return f'{catalog}.kafka."{topic}"'


def snapshot_ids(broker, topic: str) -> set[int]:
    table = RestCatalog("icestream", uri=broker.iceberg_catalog_url).load_table(("kafka", topic))
    return {s.snapshot_id for s in table.snapshots()}


def next_offsets(summary: dict) -> dict[int, int]:
    pairs = (kv.split("=") for kv in summary["icestream.kafka.next-offsets"].split(","))
    return {int(p): int(o) for p, o in pairs}


def assert_each_position_once(positions: list[tuple[int, int]], delivered) -> None:
    assert len(positions) == len(set(positions)), "a (partition, offset) read twice"
    assert sorted(positions) == sorted((p, off) for (p, off, *_rest) in delivered.ok)


def test_trino_reads_a_key_value_topic_exactly(broker, trino_server, trino_catalog):
    topic = iceberg_topic(broker, partitions=3)
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode() * (i % 4),
                "partition": i % 3, "headers": [("h", f"x{i}".encode())],
                "timestamp": 1_700_000_000_000 + i * 600_000}
               for i in range(240)]
    d = produce(broker, topic, records)
    wait_rows(broker, topic, 240)
    table = table_name(trino_catalog(broker.iceberg_catalog_url), topic)

    rows = trino_server.query(
        f'SELECT kafka.partition, kafka."offset", kafka.timestamp, kafka.headers, key, value '
        f'FROM {table}')
    assert_each_position_once([(r[0], r[1]) for r in rows], d)
    sent = {r["key"]: r for r in records}
    by_pos = {(r[0], r[1]): r for r in rows}
    for (p, off, key, value, _, _) in d.ok:
        _, _, ts, headers, got_key, got_value = by_pos[(p, off)]
        assert (got_key, got_value) == (key, value)
        assert [tuple(h) for h in headers] == sent[key]["headers"]
        assert round(ts.timestamp() * 1000) == sent[key]["timestamp"]

    highs = high_watermarks(broker, topic, 3)
    assert trino_server.query(f"SELECT count(*) FROM {table}") == [[240]]
    per_partition = trino_server.query(
        f'SELECT kafka.partition, count(*), max(kafka."offset") + 1 FROM {table} '
        f'GROUP BY kafka.partition ORDER BY 1')
    assert per_partition == [[p, highs[p], highs[p]] for p in range(3)]
    k7 = [(p, off) for (p, off, key, *_rest) in d.ok if key == b"k7"]
    assert trino_server.query(
        f"SELECT kafka.partition, kafka.\"offset\", value FROM {table} "
        f"WHERE from_utf8(key) = 'k7'") == [[k7[0][0], k7[0][1], b"v7" * 3]]
    assert trino_server.query(
        f'SELECT count(*) FROM {table} WHERE kafka.partition = 1 AND kafka."offset" >= 50') \
        == [[highs[1] - 50]]

    # $snapshots: the same snapshots pyiceberg sees; the newest covers every offset.
    snaps = trino_server.query(
        f'SELECT snapshot_id, operation, summary FROM {table[:-1]}$snapshots" '
        f'ORDER BY committed_at')
    assert {s[0] for s in snaps} == snapshot_ids(broker, topic)
    assert all(s[1] == "append" for s in snaps)
    assert next_offsets(snaps[-1][2]) == highs

    # More records: the same catalog shows the new snapshot and rows (nothing cached stale).
    d2 = produce(broker, topic, [{"key": f"k{i}".encode(), "value": b"late", "partition": i % 3}
                                 for i in range(240, 300)])
    wait_rows(broker, topic, 300)
    assert trino_server.query(f"SELECT count(*), count_if(value = X'6c617465') FROM {table}") \
        == [[300, 60]]
    positions = trino_server.query(f'SELECT kafka.partition, kafka."offset" FROM {table}')
    d.ok.extend(d2.ok)
    assert_each_position_once([tuple(r) for r in positions], d)
    newest = trino_server.query(
        f'SELECT summary FROM {table[:-1]}$snapshots" ORDER BY committed_at DESC LIMIT 1')
    assert next_offsets(newest[0][0]) == high_watermarks(broker, topic, 3)


def test_trino_reads_a_schema_driven_topic_as_typed_columns(broker, trino_server,
                                                            trino_catalog):
    topic = iceberg_topic(broker, partitions=2, **{"iceberg.mode": "value_schema_id_prefix"})
    v1 = [{"id": i, "name": f"user{i}", "tags": ["a"] * (i % 3)} for i in range(40)]
    d = produce(broker, topic, [{"value": v, "partition": i % 2}
                                for i, v in enumerate(avro_values(broker, topic, USER_V1, v1))])
    wait_rows(broker, topic, 40)
    table = table_name(trino_catalog(broker.iceberg_catalog_url), topic)

    columns = {c[0]: c[1] for c in trino_server.query(f"DESCRIBE {table}")}
    assert (columns["id"], columns["name"], columns["tags"]) == \
        ("bigint", "varchar", "array(varchar)")
    assert "email" not in columns
    rows = trino_server.query(f'SELECT id, name, tags, kafka.partition, kafka."offset" '
                              f'FROM {table}')
    assert sorted(r[0] for r in rows) == list(range(40))
    assert all(r[1] == f"user{r[0]}" and r[2] == ["a"] * (r[0] % 3) for r in rows)
    assert_each_position_once([(r[3], r[4]) for r in rows], d)

    # A field added mid-stream: Trino sees the new column, null for the older rows.
    v2 = [{"id": i, "name": f"user{i}", "tags": [], "email": f"u{i}@example.com"}
          for i in range(40, 60)]
    d2 = produce(broker, topic, [{"value": v, "partition": i % 2}
                                 for i, v in enumerate(avro_values(broker, topic, USER_V2, v2))])
    wait_rows(broker, topic, 60)
    columns = {c[0]: c[1] for c in trino_server.query(f"DESCRIBE {table}")}
    assert columns["email"] == "varchar"
    assert trino_server.query(f"SELECT count(*), count(email) FROM {table}") == [[60, 20]]
    assert trino_server.query(
        f"SELECT id, email FROM {table} WHERE id BETWEEN 38 AND 41 ORDER BY id") == \
        [[38, None], [39, None], [40, "u40@example.com"], [41, "u41@example.com"]]
    assert trino_server.query(
        f"SELECT sum(cardinality(tags)) FROM {table} WHERE name LIKE 'user1%'") == \
        [[sum(i % 3 for i in range(40) if str(i).startswith("1"))]]
    d.ok.extend(d2.ok)
    positions = trino_server.query(f'SELECT kafka.partition, kafka."offset" FROM {table}')
    assert_each_position_once([tuple(r) for r in positions], d)


# ------------------------------------------------------------------ S3 warehouse

WEED_TABLE_BUCKET = "lake"


@pytest.fixture
def weed(tmp_path):
    w = WeedS3(tmp_path / "s3", table_bucket=WEED_TABLE_BUCKET).start()
    yield w
    w.stop()


def weed_s3(w: WeedS3) -> S3Access:
    return S3Access(endpoint=w.endpoint, region=REGION, access_key=ACCESS_KEY,
                    secret_key=SECRET_KEY)


def wait_translated(broker, topic: str, n: int, timeout: float = 60.0) -> None:
    """Until the broker reports `n` records committed to the table and no lag (the reader
    here, Trino, is the one under test, so the wait asks the broker)."""
    deadline = time.monotonic() + timeout
    desc = None
    while time.monotonic() < deadline:
        desc = describe(broker, topic)
        # Until the translator has run once the route has no counters yet.
        if desc.get("records_written", 0) >= n and desc.get("lag_records") == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{topic}: not translated after {timeout}s: {desc}")


def test_trino_reads_a_topic_table_from_an_s3_warehouse(weed, broker_factory, trino_server,
                                                        trino_catalog):
    broker = broker_factory(args=weed.broker_args(prefix="cluster"), env=WeedS3.broker_env())
    topic = iceberg_topic(broker, partitions=2)
    d = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode(),
                                 "partition": i % 2} for i in range(100)])
    wait_translated(broker, topic, 100)
    # Trino gets S3 and no local file system: every byte it reads comes from the bucket.
    table = table_name(trino_catalog(broker.iceberg_catalog_url, s3=weed_s3(weed)), topic)

    files = [r[0] for r in trino_server.query(f'SELECT file_path FROM {table[:-1]}$files"')]
    assert files and all(f.startswith(f"s3://{weed.bucket}/") for f in files), files
    keys = weed.list_keys()
    assert all(f.removeprefix(f"s3://{weed.bucket}/") in keys for f in files)

    rows = trino_server.query(f'SELECT kafka.partition, kafka."offset", key, value FROM {table}')
    assert_each_position_once([(r[0], r[1]) for r in rows], d)
    assert all(r[3] == b"v" + r[2][1:] for r in rows)
    assert trino_server.query(f"SELECT count(*) FROM {table} WHERE from_utf8(key) = 'k9'") \
        == [[1]]
    snaps = trino_server.query(f'SELECT summary FROM {table[:-1]}$snapshots" '
                               f'ORDER BY committed_at DESC LIMIT 1')
    assert next_offsets(snaps[0][0]) == high_watermarks(broker, topic, 2)


def test_trino_reads_a_topic_table_on_s3_through_an_external_catalog(weed, broker_factory,
                                                                     trino_server,
                                                                     trino_catalog):
    """The broker commits to weed's Iceberg REST catalog (OAuth2) with the table on S3:
    Trino's S3 settings (the same as for the built-in catalog's S3 warehouse) read it."""
    broker = broker_factory(args=[
        "--iceberg-catalog-uri", weed.iceberg_url,
        "--iceberg-warehouse", f"s3://{WEED_TABLE_BUCKET}",
        "--iceberg-oauth2-client-id", ACCESS_KEY, "--iceberg-oauth2-client-secret", SECRET_KEY,
        "--iceberg-s3-endpoint", weed.endpoint, "--iceberg-s3-region", REGION,
        "--iceberg-s3-path-style", "true"], env=WeedS3.broker_env())
    topic = iceberg_topic(broker, partitions=2)
    d = produce(broker, topic, [{"key": f"k{i}".encode(), "value": f"v{i}".encode(),
                                 "partition": i % 2} for i in range(100)])
    wait_translated(broker, topic, 100)
    table = table_name(trino_catalog(weed.iceberg_url, s3=weed_s3(weed), extra={
        "iceberg.rest-catalog.warehouse": f"s3://{WEED_TABLE_BUCKET}",
        "iceberg.rest-catalog.security": "OAUTH2",
        "iceberg.rest-catalog.oauth2.credential": f"{ACCESS_KEY}:{SECRET_KEY}",
        "iceberg.rest-catalog.oauth2.server-uri": f"{weed.iceberg_url}/v1/oauth/tokens"}), topic)
    files = [r[0] for r in trino_server.query(f'SELECT file_path FROM {table[:-1]}$files"')]
    assert files and all(f.startswith(f"s3://{WEED_TABLE_BUCKET}/") for f in files), files
    rows = trino_server.query(f'SELECT kafka.partition, kafka."offset", key, value FROM {table}')
    assert_each_position_once([(r[0], r[1]) for r in rows], d)
    assert all(r[3] == b"v" + r[2][1:] for r in rows)
    assert trino_server.query(f"SELECT count(*) FROM {table} WHERE from_utf8(key) = 'k9'") \
        == [[1]]
