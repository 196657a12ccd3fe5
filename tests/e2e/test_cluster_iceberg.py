"""An Iceberg topic in a three-broker cluster committing to one external Iceberg REST catalog
(SeaweedFS `weed mini`, with its S3): each partition is translated by its Raft leader, the
brokers' commits land in one table, and the table holds every offset exactly once across a
leader SIGKILL and its return."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, start_cluster, wait_formed
from conftest import http_get, produce
from s3server import WeedS3
from test_cluster import wait_topic_everywhere
from test_iceberg_external_catalog import TABLE_BUCKET, broker_args, wait_rows
from test_iceberg_topics import LAG_MS, assert_exact, high_watermarks
from test_iceberg_topics import wait_rows as builtin_rows

TOPIC = "clustered_events"


def records(start: int, n: int) -> list[dict]:
    return [{"key": str(i).encode(), "value": f"v{i}".encode(), "partition": i % 3}
            for i in range(start, start + n)]


def written(brokers) -> float:
    """Rows committed by the running brokers (a broker that committed none has no series)."""
    total = 0.0
    for b in brokers:
        if not b.running():
            continue
        status, body, _ = http_get(f"{b.admin_url}/metrics")
        assert status == 200
        total += sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                     if line.startswith("icestream_iceberg_records_written_total{"))
    return total


def test_leaders_translate_into_one_table_exactly_once(broker_factory, tmp_path):
    weed = WeedS3(tmp_path / "s3", table_bucket=TABLE_BUCKET).start()
    try:
        brokers = start_cluster(broker_factory, 3, broker_args(weed), env=WeedS3.broker_env())
        wait_formed(brokers)
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        admin.create_topics([NewTopic(TOPIC, 3, 3, config={
            "iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS),
            "min.insync.replicas": "2"})], request_timeout=30)[TOPIC].result(40)
        wait_topic_everywhere(brokers, TOPIC, 3)

        produce(brokers[0], TOPIC, records(0, 300), **{"enable.idempotence": True})
        rows = wait_rows(weed, TOPIC, 300)
        assert_exact(rows, high_watermarks(brokers[0], TOPIC, 3))
        # Each row was written by one broker: the leaders between them wrote 300, no more.
        assert written(brokers) == 300

        # Kill the leader of partition 0; the new leaders carry on in the same table.
        leader = metadata(brokers[1], TOPIC).topics[TOPIC].partitions[0].leader
        victim = brokers[leader - 1]
        victim.kill9()
        alive = [b for b in brokers if b is not victim]
        produce(alive[0], TOPIC, records(300, 300), flush_timeout=60,
                **{"enable.idempotence": True})
        rows = wait_rows(weed, TOPIC, 600)
        assert_exact(rows, high_watermarks(alive[0], TOPIC, 3))

        # It comes back as a follower (or takes its preferred partitions back): still exact.
        victim.start()
        produce(alive[0], TOPIC, records(600, 150), flush_timeout=60,
                **{"enable.idempotence": True})
        rows = wait_rows(weed, TOPIC, 750)
        assert_exact(rows, high_watermarks(alive[0], TOPIC, 3))
    finally:
        weed.stop()


def test_each_brokers_builtin_catalog_holds_the_partitions_it_replicates(broker_factory):
    brokers = start_cluster(broker_factory, 3)
    wait_formed(brokers)
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(TOPIC, 3, 3, config={
        "iceberg.mode": "key_value", "iceberg.target.lag.ms": str(LAG_MS)})],
        request_timeout=30)[TOPIC].result(40)
    wait_topic_everywhere(brokers, TOPIC, 3)
    produce(brokers[0], TOPIC, records(0, 300), **{"enable.idempotence": True})
    highs = high_watermarks(brokers[0], TOPIC, 3)
    for b in brokers:
        # Every broker replicates every partition (RF=3): its own table is the whole topic.
        assert_exact(builtin_rows(b, TOPIC, 300), highs)
