"""Apache Spark (pyspark, pinned in tests/requirements.txt) for the e2e tests: one local Spark
session per pytest session, and Iceberg REST catalogs registered on it by name.

Starting a JVM costs seconds, so every test that asks for the `spark` fixture shares one
session. A test module uses it with

    from sparkkit import spark  # noqa: F401  (the fixture)

    def test_x(spark, broker):
        spark.register_rest_catalog("c1", broker.iceberg_catalog_url)
        rows = spark.sql("SELECT count(*) AS n FROM c1.kafka.`t`")

The fixture is defined here rather than in conftest.py so that only tests that want a JVM
start one; the session itself is a module-level singleton, so two modules that import the
fixture still share one JVM.

Spark never downloads anything at run time: the Iceberg jars (iceberg-spark-runtime and
iceberg-aws-bundle) come from ~/.m2 through the classpath that tests/e2e/spark/build.sh
writes, and are passed as `spark.jars`. Without them (or without pyspark) the tests skip,
unless ICESTREAM_REQUIRE_SPARK=1 (scripts/test sets it), where they fail instead.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SPARK_DIR = Path(__file__).resolve().parent / "spark"
CLASSPATH = SPARK_DIR / "target" / "classpath.txt"
# Catalog names become part of Spark conf keys and of SQL identifiers.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class S3Access:
    """What S3FileIO needs to read an s3:// warehouse: where the store is and the client's
    own keys (the built-in catalog hands out the endpoint, never credentials)."""
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    path_style: bool = True


def _unavailable(why: str):
    if os.environ.get("ICESTREAM_REQUIRE_SPARK") == "1":
        pytest.fail(f"Spark is required here (ICESTREAM_REQUIRE_SPARK=1): {why}")
    pytest.skip(why)


def spark_jars() -> list[str]:
    """The Iceberg jars in ~/.m2, from build.sh's classpath file."""
    if not CLASSPATH.is_file():
        _unavailable(f"{CLASSPATH} is missing: run tests/e2e/spark/build.sh")
    jars = [j for j in CLASSPATH.read_text().strip().split(os.pathsep) if j]
    missing = [j for j in jars if not Path(j).is_file()]
    if not jars or missing:
        _unavailable(f"Iceberg jars missing ({missing or 'none listed'}): "
                     "run tests/e2e/spark/build.sh")
    return jars


class SparkKit:
    """One SparkSession and the catalogs registered on it."""

    def __init__(self, session, workdir: Path):
        self.session = session
        self.workdir = workdir
        self._catalogs: dict[str, dict[str, str]] = {}

    def register_rest_catalog(self, name: str, uri: str, s3: S3Access | None = None,
                              **extra: str) -> str:
        """Registers the Iceberg REST catalog at `uri` as Spark catalog `name`; with `s3`, its
        tables' files are read with S3FileIO and those keys. `extra` are more catalog
        properties (dots in names as given). Returns `name`.

        Spark builds a catalog from its conf on first use and keeps it, so a name can be
        registered once per session: tests use a fresh name for each broker."""
        if not _NAME.match(name):
            raise ValueError(f"catalog name {name!r} is not a plain SQL identifier")
        props = {
            "type": "rest",
            "uri": uri,
            # Topic tables change under the test; Spark's default CachingCatalog would keep
            # answering with the first snapshot it loaded.
            "cache-enabled": "false",
        }
        if s3 is not None:
            props.update({
                "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                "s3.endpoint": s3.endpoint,
                "s3.path-style-access": str(s3.path_style).lower(),
                "s3.access-key-id": s3.access_key,
                "s3.secret-access-key": s3.secret_key,
                "client.region": s3.region,
            })
        props.update(extra)
        if name in self._catalogs:
            if self._catalogs[name] != props:
                raise ValueError(f"catalog {name!r} is already registered with other "
                                 "settings; Spark keeps the first: use a new name")
            return name
        conf = self.session.conf
        conf.set(f"spark.sql.catalog.{name}", "org.apache.iceberg.spark.SparkCatalog")
        for k, v in props.items():
            conf.set(f"spark.sql.catalog.{name}.{k}", v)
        self._catalogs[name] = props
        return name

    def sql(self, query: str) -> list[dict]:
        """Runs `query` and returns its rows as dicts (structs as dicts too; binary values
        as bytes)."""
        return [_plain(r.asDict(recursive=True)) for r in self.session.sql(query).collect()]

    def schema(self, table: str) -> dict[str, str]:
        """Column name -> Spark type (simpleString) of `table`."""
        return {f.name: f.dataType.simpleString() for f in self.session.table(table).schema}


def _plain(v):
    # pyspark returns BinaryType as bytearray; the tests compare with what was produced.
    if isinstance(v, bytearray):
        return bytes(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


_kit: SparkKit | None = None


def shared_spark() -> SparkKit:
    """The test session's SparkKit, started on first call."""
    global _kit
    if _kit is not None:
        return _kit
    jars = spark_jars()
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        _unavailable(f"pyspark is not installed ({e}): pip install -r tests/requirements.txt")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("no java on PATH (Spark 4 needs Java 17+)")
    workdir = Path(tempfile.mkdtemp(prefix="icestream-spark-"))
    # Spark otherwise advertises the machine's first non-loopback address; the tests stay on
    # loopback.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # pyspark starts the JVM from its own jars with these settings passed to the launcher
    # (driver memory and Java options must be known before the JVM starts).
    builder = (
        SparkSession.builder.master("local[1]")
        .appName("icestream-e2e")
        .config("spark.driver.memory", "512m")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Loopback only: the driver's RPC and block manager listen on 127.0.0.1.
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.jars", ",".join(jars))
        .config("spark.sql.extensions",
                "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.warehouse.dir", str(workdir / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions",
                f"-Dlog4j2.configurationFile={SPARK_DIR / 'log4j2.properties'} "
                f"-Dderby.system.home={workdir}")
    )
    session = builder.getOrCreate()
    _kit = SparkKit(session, workdir)
    atexit.register(stop_spark)
    return _kit


def stop_spark() -> None:
    global _kit
    if _kit is None:
        return
    kit, _kit = _kit, None
    kit.session.stop()
    shutil.rmtree(kit.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def spark():
    """The shared SparkKit (a local[1] SparkSession with the Iceberg runtime)."""
    yield shared_spark()
    stop_spark()
