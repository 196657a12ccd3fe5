"""Iceberg topics committed to an external Iceberg REST catalog: SeaweedFS `weed mini`'s
catalog (OAuth2 client credentials) with its S3 beside it. The broker writes Parquet to S3
and commits through the catalog; pyiceberg and DuckDB read the tables through the same
catalog; the table holds every offset exactly once across a catalog outage and SIGKILLs."""

from __future__ import annotations

import time

import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchTableError

from conftest import create_topic, produce
from s3server import ACCESS_KEY, REGION, SECRET_KEY, WeedS3
from test_iceberg_catalog import duckdb_connection
from test_iceberg_topics import LAG_MS, assert_exact, describe, high_watermarks

TABLE_BUCKET = "lake"


@pytest.fixture
def weed(tmp_path):
    w = WeedS3(tmp_path, table_bucket=TABLE_BUCKET).start()
    yield w
    w.stop()


def broker_args(w: WeedS3) -> list[str]:
    return ["--iceberg-catalog-uri", w.iceberg_url,
            "--iceberg-warehouse", f"s3://{TABLE_BUCKET}",
            "--iceberg-oauth2-client-id", ACCESS_KEY,
            "--iceberg-oauth2-client-secret", SECRET_KEY,
            "--iceberg-s3-endpoint", w.endpoint, "--iceberg-s3-region", REGION,
            "--iceberg-s3-path-style", "true"]


def weed_catalog(w: WeedS3) -> RestCatalog:
    return RestCatalog("weed", uri=w.iceberg_url, warehouse=f"s3://{TABLE_BUCKET}",
                       credential=f"{ACCESS_KEY}:{SECRET_KEY}",
                       **{"s3.endpoint": w.endpoint, "s3.access-key-id": ACCESS_KEY,
                          "s3.secret-access-key": SECRET_KEY, "s3.region": REGION,
                          "s3.path-style-access": "true"})


def rows_of(w: WeedS3, topic: str) -> list[dict]:
    try:
        return weed_catalog(w).load_table(("kafka", topic)).scan().to_arrow().to_pylist()
    except NoSuchTableError:
        return []


def wait_rows(w: WeedS3, topic: str, n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows = []
    last_error = None
    while time.monotonic() < deadline:
        try:
            rows = rows_of(w, topic)
        except OSError as e:
            # weed answers 500 INTERNAL_FAILURE for a moment after it restarts; the reader
            # retries like any S3 client would, within the same deadline.
            last_error = e
            time.sleep(0.3)
            continue
        if len(rows) >= n:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"{len(rows)} rows after {timeout}s, want {n} (last error: {last_error})")


def test_key_value_into_weed_catalog_through_outage_and_kills(weed, broker_factory):
    broker = broker_factory(args=broker_args(weed), env=WeedS3.broker_env())
    topic = create_topic(broker, partitions=3, config={
        "iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS)})
    produce(broker, topic, [{"key": str(i).encode(), "value": f"v{i}".encode(),
                             "partition": i % 3} for i in range(300)])
    rows = wait_rows(weed, topic, 300)
    assert_exact(rows, high_watermarks(broker, topic, 3))
    table = weed_catalog(weed).load_table(("kafka", topic))
    assert table.location().startswith("s3://")
    assert describe(broker, topic)["catalog"].startswith("REST")

    # The catalog and its S3 go away: produce goes on, the lag grows.
    weed.stop()
    t0 = time.monotonic()
    produce(broker, topic, [{"value": b"during", "partition": i % 3} for i in range(300)])
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 60  # object_store retries a while before a round fails
    while time.monotonic() < deadline:
        desc = describe(broker, topic)
        if desc["commit_errors"] > 0:
            break
        time.sleep(0.5)
    assert desc["lag_records"] == 300 and desc["commit_errors"] > 0, desc
    # A crash while the catalog is away changes nothing either.
    broker.kill9()
    broker.restart()
    weed.start()
    produce(broker, topic, [{"value": b"after", "partition": i % 3} for i in range(150)])
    broker.kill9()
    broker.restart()
    highs = high_watermarks(broker, topic, 3)
    assert sum(highs.values()) == 750
    rows = wait_rows(weed, topic, 750, timeout=90)
    time.sleep(1)
    assert_exact(rows_of(weed, topic), highs)

    # DuckDB reads the table through weed's catalog (OAuth2) and S3.
    con = duckdb_connection()
    host = weed.endpoint.removeprefix("http://")
    con.execute(f"""CREATE SECRET s3w (TYPE s3, KEY_ID '{ACCESS_KEY}', SECRET '{SECRET_KEY}',
                    REGION '{REGION}', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
    con.execute(f"""CREATE SECRET icew (TYPE iceberg, CLIENT_ID '{ACCESS_KEY}',
                    CLIENT_SECRET '{SECRET_KEY}',
                    OAUTH2_SERVER_URI '{weed.iceberg_url}/v1/oauth/tokens')""")
    con.execute(f"""ATTACH 's3://{TABLE_BUCKET}' AS weedice (TYPE iceberg,
                    ENDPOINT '{weed.iceberg_url}', SECRET icew)""")
    n, parts = con.execute(
        f'SELECT count(*), count(DISTINCT kafka.partition) FROM weedice.kafka."{topic}"'
    ).fetchone()
    assert (n, parts) == (750, 3)
