"""The built-in Iceberg REST catalog, driven by real engines: pyiceberg (RestCatalog with its
pyarrow FileIO) creates, appends, evolves, renames and drops tables, and DuckDB's iceberg
extension (loaded offline from the pinned duckdb-extension-* wheels) attaches the catalog
and queries what pyiceberg wrote."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import HourTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestampType

T0 = datetime(2026, 11, 23, 10, 15, 0)

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "name", StringType(), required=False),
    NestedField(3, "ts", TimestampType(), required=False),
)
SPEC = PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=HourTransform(),
                                    name="ts_hour"))
ARROW = pa.schema([("id", pa.int64()), ("name", pa.string()), ("ts", pa.timestamp("us"))])


def catalog(broker) -> RestCatalog:
    return RestCatalog("icestream", uri=broker.iceberg_catalog_url)


def rows(ids: range) -> pa.Table:
    """Rows spread over several hours, so the hour(ts) spec writes several partitions."""
    return pa.table({
        "id": list(ids),
        "name": [f"n{i}" for i in ids],
        "ts": [T0 + timedelta(minutes=37 * i) for i in ids],
    }, schema=ARROW)


def scanned(table) -> list[tuple]:
    got = table.scan().to_arrow().sort_by("id").to_pylist()
    return [tuple(r.values()) for r in got]


def expected(ids) -> list[tuple]:
    return [(i, f"n{i}", T0 + timedelta(minutes=37 * i)) for i in sorted(ids)]


def new_table(cat: RestCatalog, ns: str = "db", name: str | None = None):
    if ns not in [n[0] for n in cat.list_namespaces()]:
        cat.create_namespace(ns)
    return cat.create_table(f"{ns}.{name or 't_' + uuid.uuid4().hex[:8]}", schema=SCHEMA,
                            partition_spec=SPEC)


def http(method: str, url: str, body: dict | bytes | None = None) -> tuple[int, dict | None]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def test_pyiceberg_creates_appends_evolves_and_survives_restart(broker):
    cat = catalog(broker)
    cat.create_namespace("sales", {"owner": "ops"})
    assert ("sales",) in cat.list_namespaces()
    assert cat.load_namespace_properties("sales")["owner"] == "ops"

    table = cat.create_table("sales.orders", schema=SCHEMA, partition_spec=SPEC)
    assert table.spec().fields[0].transform == HourTransform()
    assert table.location().startswith("file://")
    table.append(rows(range(0, 10)))
    table.append(rows(range(10, 25)))
    table = cat.load_table("sales.orders")
    assert scanned(table) == expected(range(25))
    assert len(table.metadata.snapshots) == 2
    # hour(ts): 25 rows 37 minutes apart span 16 hours, so many partitions and data files.
    assert len(list(table.scan().plan_files())) > 2

    with table.update_schema() as update:
        update.add_column("region", StringType())
    table = cat.load_table("sales.orders")
    assert [f.name for f in table.schema().fields] == ["id", "name", "ts", "region"]
    more = rows(range(25, 28)).append_column("region", pa.array(["eu", "us", "eu"]))
    table.append(more)
    got = cat.load_table("sales.orders").scan().to_arrow().sort_by("id").to_pylist()
    assert len(got) == 28
    assert [r["region"] for r in got] == [None] * 25 + ["eu", "us", "eu"]

    # A filter on the partition source column prunes by hour and still returns exact rows.
    late = cat.load_table("sales.orders").scan(row_filter=f"ts >= '{(T0 + timedelta(hours=10)).isoformat()}'")
    assert sorted(r["id"] for r in late.to_arrow().to_pylist()) == [
        i for i in range(28) if T0 + timedelta(minutes=37 * i) >= T0 + timedelta(hours=10)]

    before = cat.load_table("sales.orders")
    broker.restart()
    cat = catalog(broker)
    assert cat.list_tables("sales") == [("sales", "orders")]
    after = cat.load_table("sales.orders")
    assert after.metadata_location == before.metadata_location
    assert after.metadata.current_snapshot_id == before.metadata.current_snapshot_id
    assert len(after.scan().to_arrow()) == 28
    after.append(rows(range(28, 30)).append_column("region", pa.array(["ap", "ap"])))
    assert len(cat.load_table("sales.orders").scan().to_arrow()) == 30


def test_concurrent_appends_both_land_after_a_conflict(broker, caplog):
    first, second = catalog(broker), catalog(broker)
    new_table(first, name="events")
    a = first.load_table("db.events")
    b = second.load_table("db.events")  # same base snapshot as `a`
    a.append(rows(range(0, 5)))
    # `b` is stale: its assert-ref-snapshot-id fails, the catalog answers 409
    # CommitFailedException, and pyiceberg refreshes and retries the append on its own.
    with caplog.at_level("WARNING", logger="pyiceberg.table"):
        b.append(rows(range(5, 10)))
    assert any("Commit failed due to a concurrent update" in r.getMessage()
               for r in caplog.records)
    assert scanned(first.load_table("db.events")) == expected(range(10))

    # The same conflict on the wire: a commit whose base snapshot is no longer current.
    base = broker.iceberg_catalog_url
    stale = a.metadata.current_snapshot_id
    assert stale != first.load_table("db.events").metadata.current_snapshot_id
    status, body = http("POST", f"{base}/v1/namespaces/db/tables/events", {
        "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": stale}],
        "updates": [{"action": "set-properties", "updates": {"k": "v"}}]})
    assert status == 409 and body["error"]["type"] == "CommitFailedException", body
    assert "k" not in first.load_table("db.events").properties

    # Two writers racing for real: each retries on 409 until its append lands.
    conflicts = [0, 0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(w: int, cat: RestCatalog) -> None:
        try:
            barrier.wait()
            for k in range(6):
                start = 100 + w * 1000 + k * 10
                for _ in range(50):
                    table = cat.load_table("db.events")
                    try:
                        table.append(rows(range(start, start + 10)))
                        break
                    except CommitFailedException:
                        conflicts[w] += 1
                else:
                    raise AssertionError(f"writer {w} never committed batch {k}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w, c)) for w, c in enumerate([first, second])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not errors, errors
    ids = list(range(10)) + [100 + w * 1000 + k * 10 + j
                             for w in range(2) for k in range(6) for j in range(10)]
    assert scanned(first.load_table("db.events")) == expected(ids)
    # 2 + 12 appends, each its own snapshot: nothing lost, nothing doubled.
    assert len(first.load_table("db.events").metadata.snapshots) == 14
    print(f"conflicts retried by the test's writers: {conflicts}")


def test_rename_drop_and_errors(broker):
    cat = catalog(broker)
    t = new_table(cat, ns="app", name="clicks")
    t.append(rows(range(3)))
    cat.create_namespace("archive")

    with pytest.raises(NamespaceAlreadyExistsError):
        cat.create_namespace("app")
    with pytest.raises(TableAlreadyExistsError):
        cat.create_table("app.clicks", schema=SCHEMA)
    with pytest.raises(NoSuchNamespaceError):
        cat.list_tables("nope")
    with pytest.raises(NoSuchNamespaceError):
        cat.create_table("nope.t", schema=SCHEMA)
    with pytest.raises(NoSuchNamespaceError):
        cat.load_namespace_properties("nope")
    with pytest.raises(NoSuchTableError):
        cat.load_table("app.missing")
    with pytest.raises(NoSuchTableError):
        cat.drop_table("app.missing")
    assert cat.table_exists("app.clicks") and not cat.table_exists("app.missing")
    assert cat.namespace_exists("app") and not cat.namespace_exists("nope")

    cat.rename_table("app.clicks", "archive.clicks_2025")
    assert not cat.table_exists("app.clicks")
    assert cat.list_tables("archive") == [("archive", "clicks_2025")]
    assert scanned(cat.load_table("archive.clicks_2025")) == expected(range(3))
    with pytest.raises(NoSuchTableError):
        cat.rename_table("app.clicks", "archive.again")

    with pytest.raises(NamespaceNotEmptyError):
        cat.drop_namespace("archive")
    location = cat.load_table("archive.clicks_2025").location()
    assert Path(location.removeprefix("file://")).exists()
    cat.purge_table("archive.clicks_2025")
    assert not cat.table_exists("archive.clicks_2025")
    assert not any(p.is_file() for p in Path(location.removeprefix("file://")).rglob("*"))
    cat.drop_namespace("archive")
    cat.drop_namespace("app")
    assert cat.list_namespaces() == []

    cat.create_namespace("props", {"a": "1", "b": "2"})
    summary = cat.update_namespace_properties("props", removals={"a", "zz"}, updates={"c": "3"})
    assert summary.removed == ["a"] and summary.missing == ["zz"] and summary.updated == ["c"]
    assert cat.load_namespace_properties("props") == {"b": "2", "c": "3"}

    # The wire format of errors: the REST spec's ErrorModel.
    base = broker.iceberg_catalog_url
    status, body = http("GET", f"{base}/v1/namespaces/nope/tables/x")
    assert status == 404
    assert body["error"]["type"] == "NoSuchTableException" and body["error"]["code"] == 404
    status, body = http("POST", f"{base}/v1/namespaces", b"{not json")
    assert status == 400 and body["error"]["type"] == "BadRequestException"
    status, body = http("POST", f"{base}/v1/namespaces/props/tables/x",
                        {"requirements": [{"type": "assert-nothing"}], "updates": []})
    assert status == 400 and body["error"]["type"] == "BadRequestException"
    status, body = http("GET", f"{base}/v1/config?warehouse=anything")
    assert status == 200 and "defaults" in body and "overrides" in body
    # The broker is still fine after bad input.
    assert cat.namespace_exists("props")


def duckdb_connection():
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_httpfs
    import duckdb_extension_iceberg
    import duckdb_extension_parquet

    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})
    for mod, name in [(duckdb_extension_parquet, "parquet"), (duckdb_extension_avro, "avro"),
                      (duckdb_extension_httpfs, "httpfs"), (duckdb_extension_iceberg, "iceberg")]:
        path = Path(mod.__file__).parent / "extensions" / f"v{duckdb.__version__}" / \
            f"{name}.duckdb_extension"
        con.execute(f"LOAD '{path}'")
    return con


def test_duckdb_reads_what_pyiceberg_wrote_and_writes_its_own(broker):
    cat = catalog(broker)
    table = new_table(cat, ns="lake", name="trips")
    table.append(rows(range(0, 40)))
    table.append(rows(range(40, 100)))

    con = duckdb_connection()
    con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                    ENDPOINT '{broker.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none')""")
    count, total, hours = con.execute(
        "SELECT count(*), sum(id), count(DISTINCT date_trunc('hour', ts)) FROM ice.lake.trips"
    ).fetchone()
    assert (count, total) == (100, sum(range(100)))
    assert hours == len({(T0 + timedelta(minutes=37 * i)).replace(minute=0) for i in range(100)})
    tables = {(r[1], r[2]) for r in con.execute("SHOW ALL TABLES").fetchall() if r[0] == "ice"}
    assert ("lake", "trips") in tables

    # DuckDB writes too: a staged create (CTAS), then an insert in a multi-statement
    # transaction (POST /v1/transactions/commit); pyiceberg reads the result.
    con.execute("CREATE SCHEMA ice.duck")
    con.execute("CREATE TABLE ice.duck.squares AS SELECT range AS n, range * range AS sq "
                "FROM range(50)")
    con.execute("BEGIN")
    con.execute("INSERT INTO ice.duck.squares VALUES (1000, 1000000)")
    con.execute("INSERT INTO ice.lake.trips SELECT id + 1000, name, ts FROM ice.lake.trips "
                "WHERE id < 5")
    with pytest.raises(Exception, match="more than one table"):
        con.execute("COMMIT")  # one transaction over two tables is refused, atomically
    con.execute("INSERT INTO ice.duck.squares VALUES (1000, 1000000)")
    got = cat.load_table("duck.squares").scan().to_arrow()
    assert len(got) == 51 and sum(got["sq"].to_pylist()) == sum(i * i for i in range(50)) + 10**6
    assert len(cat.load_table("lake.trips").scan().to_arrow()) == 100
