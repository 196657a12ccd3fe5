"""One lakehouse per cluster: the built-in Iceberg catalog lives on the object store tiering
uses, so brokers over one S3 bucket (SeaweedFS `weed mini`) serve one catalog, and a table of
an Iceberg topic is one table whichever broker a reader asks. Pointer swaps are create-only
objects, so commits through different brokers never overwrite each other. Also: a data dir of
the previous release (per-broker catalog, pointers replaced in place) is migrated at start."""

from __future__ import annotations

import fcntl
import json
import shutil
import tarfile
import time
from pathlib import Path

import pyarrow as pa
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchTableError

from cluster import metadata, start_cluster, wait_formed
from conftest import Broker, create_topic, http_get, produce
from s3server import ACCESS_KEY, REGION, SECRET_KEY, WeedS3
from test_cluster import wait_topic_everywhere
from test_iceberg_catalog import duckdb_connection
from test_iceberg_topics import LAG_MS, assert_exact, high_watermarks
import sparkkit
import trinokit
from sparkkit import spark  # noqa: F401  (the session-wide Spark fixture)
from trinokit import trino_catalog, trino_server  # noqa: F401  (fixtures)

PREFIX = "lake1"
FIXTURES = Path(__file__).parent / "fixtures"
# Where make_legacy_catalog.py ran the previous release: its table metadata holds absolute
# file:// paths under this directory, so the fixture only reads correctly from here.
LEGACY_DIR = Path("/tmp/icestream-legacy-catalog-fixture")
LEGACY_TOPIC = "legacy_orders"


def load_table_config(broker, topic: str, ns: str = "kafka") -> dict:
    status, body, _ = http_get(f"{broker.iceberg_catalog_url}/v1/namespaces/{ns}/tables/{topic}")
    assert status == 200, body
    return json.loads(body)


def s3_catalog(broker) -> RestCatalog:
    """The broker's catalog; storage settings come from its answers, keys are the test's."""
    return RestCatalog("icestream", uri=broker.iceberg_catalog_url,
                       **{"s3.access-key-id": ACCESS_KEY, "s3.secret-access-key": SECRET_KEY})


def rows_of(broker, topic: str, ns: str = "kafka") -> list[dict]:
    try:
        return s3_catalog(broker).load_table((ns, topic)).scan().to_arrow().to_pylist()
    except NoSuchTableError:
        return []


def wait_rows(broker, topic: str, n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = rows_of(broker, topic)
        if len(rows) >= n:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"{len(rows)} rows of {topic} through {broker.iceberg_catalog_url} "
                         f"after {timeout}s, want {n}")


def duckdb_over(broker, config: dict):
    """DuckDB attached to the broker's catalog, its S3 secret built from what loadTable
    answered (endpoint, region, path style) plus the test's own keys."""
    con = duckdb_connection()
    host = config["s3.endpoint"].removeprefix("http://")
    style = "path" if config["s3.path-style-access"] == "true" else "vhost"
    con.execute(f"""CREATE SECRET s3lake (TYPE s3, KEY_ID '{ACCESS_KEY}', SECRET '{SECRET_KEY}',
                    REGION '{config["s3.region"]}', ENDPOINT '{host}', URL_STYLE '{style}',
                    USE_SSL false)""")
    # No vended credentials: without ACCESS_DELEGATION_MODE 'none' DuckDB would make a secret of
    # the table's config (endpoint, region, no keys) that shadows this one for its location.
    con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                    ENDPOINT '{broker.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none',
                    ACCESS_DELEGATION_MODE 'none')""")
    return con


def duckdb_pairs(broker, topic: str) -> tuple[int, int]:
    """(rows, distinct (partition, offset) pairs) of a topic's table, read by DuckDB."""
    con = duckdb_over(broker, load_table_config(broker, topic)["config"])
    return con.execute(
        f'SELECT count(*), count(DISTINCT (kafka.partition, kafka."offset")) '
        f'FROM ice.kafka."{topic}"').fetchone()


def engine_pairs(spark, trino_server, spark_cat: str, trino_cat: str,
                 topic: str) -> dict[str, tuple[int, int]]:
    """(rows, distinct (partition, offset) pairs) of a topic's table as Spark SQL and Trino
    read it through the catalogs they were given."""
    got = spark.sql(f"SELECT count(*) AS n, count(DISTINCT kafka.partition, kafka.offset) AS d "
                    f"FROM {spark_cat}.kafka.`{topic}`")[0]
    (n, d), = trino_server.query(f'SELECT count(*), count(DISTINCT (kafka.partition, '
                                 f'kafka."offset")) FROM {trino_cat}.kafka."{topic}"')
    return {"spark": (got["n"], got["d"]), "trino": (n, d)}


def engines_on(spark, trino_catalog, brokers, weed) -> dict[str, tuple[str, str]]:
    """Per broker (by catalog URL), a Spark and a Trino catalog on its catalog endpoint (S3
    keys: the test's)."""
    names = {}
    for b in brokers:
        sp = spark.register_rest_catalog(
            f"lake_{b.iceberg_catalog_port}",
            b.iceberg_catalog_url,
            s3=sparkkit.S3Access(endpoint=weed.endpoint, access_key=ACCESS_KEY,
                                 secret_key=SECRET_KEY, region=REGION))
        tr = trino_catalog(b.iceberg_catalog_url,
                           s3=trinokit.S3Access(endpoint=weed.endpoint, region=REGION,
                                                access_key=ACCESS_KEY, secret_key=SECRET_KEY))
        names[b.iceberg_catalog_url] = (sp, tr)
    return names


def records(start: int, n: int, partitions: int = 3) -> list[dict]:
    return [{"key": str(i).encode(), "value": f"v{i}".encode(), "partition": i % partitions}
            for i in range(start, start + n)]


def test_single_broker_on_s3_serves_its_catalog_from_the_bucket(broker_factory, tmp_path):
    weed = WeedS3(tmp_path / "s3")
    try:
        # The broker starts while S3 is not there yet (Kafka does not wait on the lake); the
        # catalog checks the store once it answers.
        b = broker_factory(args=weed.broker_args(PREFIX), env=WeedS3.broker_env())
        weed.start()
        topic = create_topic(b, partitions=2, config={
            "iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS)})
        produce(b, topic, records(0, 200, 2))
        assert_exact(wait_rows(b, topic, 200), high_watermarks(b, topic, 2))

        # What a client is told: where the warehouse is and how to reach it, no secrets.
        loaded = load_table_config(b, topic)
        assert loaded["metadata-location"].startswith(
            f"s3://{weed.bucket}/{PREFIX}/warehouse/kafka/{topic}/metadata/")
        cfg = loaded["config"]
        assert cfg["s3.endpoint"] == weed.endpoint
        assert cfg["s3.region"] == cfg["client.region"] == REGION
        assert cfg["s3.path-style-access"] == "true"
        assert not any("key" in k or "secret" in k or "token" in k for k in cfg), cfg
        status, body, _ = http_get(f"{b.iceberg_catalog_url}/v1/config")
        assert status == 200
        defaults = json.loads(body)["defaults"]
        assert defaults["warehouse"] == f"s3://{weed.bucket}/{PREFIX}/warehouse"
        assert defaults["s3.endpoint"] == weed.endpoint

        assert duckdb_pairs(b, topic) == (200, 200)
        # The catalog's state is in the bucket, versioned pointers under <prefix>/catalog.
        keys = weed.list_keys(PREFIX)
        assert any(k.startswith(f"{PREFIX}/catalog/tables/kafka/") and k.endswith(".json")
                   for k in keys), sorted(keys)[:20]
        assert not (b.data_dir / "objects" / "catalog" / "tables").exists()
    finally:
        weed.stop()


def test_brokers_on_one_bucket_serve_one_catalog(broker_factory, tmp_path, spark,  # noqa: F811
                                                 trino_server, trino_catalog):  # noqa: F811
    weed = WeedS3(tmp_path / "s3").start()
    try:
        brokers = start_cluster(broker_factory, 3, weed.broker_args(PREFIX),
                                env=WeedS3.broker_env())
        wait_formed(brokers)
        engines = engines_on(spark, trino_catalog, brokers, weed)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        topics = {"lake_rf1": 1, "lake_rf3": 3}
        futures = admin.create_topics([NewTopic(name, 3, rf, config={
            "iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS)})
            for name, rf in topics.items()], request_timeout=30)
        for f in futures.values():
            f.result(40)
        for name in topics:
            wait_topic_everywhere(brokers, name, 3)
            produce(brokers[0], name, records(0, 300), **{"enable.idempotence": True})
        highs = {name: high_watermarks(brokers[0], name, 3) for name in topics}
        for name in topics:
            for b in brokers:
                # Each broker's catalog endpoint, the same one table.
                assert_exact(wait_rows(b, name, 300), highs[name])
                assert duckdb_pairs(b, name) == (300, 300)
                assert engine_pairs(spark, trino_server, *engines[b.iceberg_catalog_url], name) \
                    == {"spark": (300, 300), "trino": (300, 300)}

        # A table made by pyiceberg through one broker, appended through another's catalog.
        first, second = s3_catalog(brokers[0]), s3_catalog(brokers[1])
        first.create_namespace("shared")
        made = first.create_table(("shared", "notes"), schema=pa.schema([("id", pa.int64())]))
        made.append(pa.table({"id": pa.array(range(0, 10), pa.int64())}))
        second.load_table(("shared", "notes")).append(
            pa.table({"id": pa.array(range(10, 25), pa.int64())}))
        for b in brokers:
            ids = s3_catalog(b).load_table(("shared", "notes")).scan().to_arrow()["id"]
            assert sorted(ids.to_pylist()) == list(range(25))
            con = duckdb_over(b, load_table_config(b, "notes", ns="shared")["config"])
            assert con.execute("SELECT count(*), sum(id) FROM ice.shared.notes").fetchone() \
                == (25, sum(range(25)))

        # The leader of partition 0 of the replicated topic dies; the others carry on.
        leader = metadata(brokers[1], "lake_rf3").topics["lake_rf3"].partitions[0].leader
        victim = brokers[leader - 1]
        victim.kill9()
        alive = [b for b in brokers if b is not victim]
        produce(alive[0], "lake_rf3", records(300, 150), flush_timeout=60,
                **{"enable.idempotence": True})
        rf3 = high_watermarks(alive[0], "lake_rf3", 3)
        assert sum(rf3.values()) == 450
        for b in alive:
            assert_exact(wait_rows(b, "lake_rf3", 450, timeout=90), rf3)
            assert duckdb_pairs(b, "lake_rf3") == (450, 450)
            assert engine_pairs(spark, trino_server, *engines[b.iceberg_catalog_url], "lake_rf3") \
                == {"spark": (450, 450), "trino": (450, 450)}
            # The unreplicated topic's table is in the bucket, whole, whoever wrote it.
            assert_exact(rows_of(b, "lake_rf1"), highs["lake_rf1"])
    finally:
        weed.stop()


def test_brokers_on_their_own_stores_keep_their_own_catalogs_and_say_so(broker_factory):
    brokers = start_cluster(broker_factory, 3)
    wait_formed(brokers)
    for b in brokers:
        assert "each broker serves its own Iceberg catalog" in b.log_text()
        assert "--object-store s3" in b.log_text()


def test_previous_release_data_dir_is_migrated():
    """The new binary on a data dir the previous release left (see fixtures/README.md)."""
    # One fixed directory for every run on this machine: take turns.
    lock = open(f"{LEGACY_DIR}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        run_on_legacy_fixture()
    finally:
        shutil.rmtree(LEGACY_DIR, ignore_errors=True)
        lock.close()


def run_on_legacy_fixture():
    shutil.rmtree(LEGACY_DIR, ignore_errors=True)
    LEGACY_DIR.mkdir(parents=True)
    with tarfile.open(FIXTURES / "legacy_catalog.tar.gz") as tar:
        tar.extractall(LEGACY_DIR, filter="data")
    legacy_pointer = LEGACY_DIR / "data/objects/catalog/tables/kafka" / f"{LEGACY_TOPIC}.json"
    before = json.loads(legacy_pointer.read_text())["metadata-location"]
    b = Broker(LEGACY_DIR, smp=1)
    try:
        b.start()
        cat = RestCatalog("icestream", uri=b.iceberg_catalog_url)
        table = cat.load_table(("kafka", LEGACY_TOPIC))
        assert table.metadata_location == before
        uuid = table.metadata.table_uuid
        highs = high_watermarks(b, LEGACY_TOPIC, 2)
        assert sum(highs.values()) == 300
        assert_exact(table.scan().to_arrow().to_pylist(), highs)
        con = duckdb_connection()
        con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                        ENDPOINT '{b.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none')""")
        query = (f'SELECT count(*), count(DISTINCT (kafka.partition, kafka."offset")) '
                 f'FROM ice.kafka."{LEGACY_TOPIC}"')
        assert con.execute(query).fetchone() == (300, 300)
        # The in-place pointer became the first of the versioned ones.
        assert not legacy_pointer.exists()
        versions = LEGACY_DIR / "data/objects/catalog/tables/kafka" / LEGACY_TOPIC
        assert len(list(versions.glob("*.json"))) == 1

        # Translation goes on into the same table.
        produce(b, LEGACY_TOPIC, records(300, 100, 2))
        highs = high_watermarks(b, LEGACY_TOPIC, 2)
        deadline = time.monotonic() + 60
        while True:
            table = cat.load_table(("kafka", LEGACY_TOPIC))
            rows = table.scan().to_arrow().to_pylist()
            if len(rows) >= 400 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert_exact(rows, highs)
        assert table.metadata.table_uuid == uuid
        assert str(table.metadata_location).startswith(f"file://{LEGACY_DIR}/data/objects/")
        con = duckdb_connection()
        con.execute(f"""ATTACH 'warehouse' AS ice (TYPE iceberg,
                        ENDPOINT '{b.iceberg_catalog_url}', AUTHORIZATION_TYPE 'none')""")
        assert con.execute(query).fetchone() == (400, 400)
        # A restart finds nothing left to migrate and serves the same table.
        b.restart()
        assert cat.load_table(("kafka", LEGACY_TOPIC)).metadata_location \
            == table.metadata_location
    except BaseException:
        print(b.log_tail(200))
        raise
    finally:
        b.stop()
