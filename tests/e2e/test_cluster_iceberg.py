"""An Iceberg topic in a three-broker cluster committing to one external Iceberg REST catalog
(SeaweedFS `weed mini`, with its S3): each partition is translated by its Raft leader, which
hands its rounds to the topic's committer (the leader of partition 0); the committer's commits
alone land in the table, and the table holds every offset exactly once across a SIGKILL of the
committer and its return."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, start_cluster, wait_formed
from conftest import produce
from s3server import WeedS3
from test_cluster import wait_topic_everywhere
from test_iceberg_external_catalog import TABLE_BUCKET, broker_args, wait_rows, weed_catalog
from test_iceberg_topics import LAG_MS, assert_exact, describe, high_watermarks
from test_iceberg_topics import wait_rows as builtin_rows

TOPIC = "clustered_events"
ROUNDS_PATH = "/icestream/v1/iceberg/rounds"


def records(start: int, n: int) -> list[dict]:
    return [{"key": str(i).encode(), "value": f"v{i}".encode(), "partition": i % 3}
            for i in range(start, start + n)]


def node_id(b) -> int:
    """The `--node-id` start_cluster gave `b`."""
    return int(b.extra_args[b.extra_args.index("--node-id") + 1])


def leader_of_partition_0(b) -> int:
    return metadata(b, TOPIC).topics[TOPIC].partitions[0].leader


def wait_committer(brokers, timeout: float = 30.0):
    """The broker every running broker names as the topic's committer, once they agree with
    the Kafka metadata's leader of partition 0 (just after a failover they may not yet)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        running = [b for b in brokers if b.running()]
        leader = leader_of_partition_0(running[0])
        seen = {node_id(b): describe(b, TOPIC)["committer"] for b in running}
        if all(c["node_id"] == leader and c["this_broker"] == (n == leader)
               for n, c in seen.items()):
            return next(b for b in running if node_id(b) == leader)
        time.sleep(0.2)
    raise AssertionError(f"no agreed committer after {timeout}s: {seen}")


def wait_written(b, n: int, timeout: float = 30.0) -> dict:
    """`b`'s status once its committer has counted `n` rows landed (the table may show them
    a moment before the committer's answer is counted)."""
    deadline = time.monotonic() + timeout
    st = describe(b, TOPIC)
    while st["records_written"] < n and time.monotonic() < deadline:
        time.sleep(0.2)
        st = describe(b, TOPIC)
    return st


def post_round(b, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{b.iceberg_catalog_url}{ROUNDS_PATH}", data=body,
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_one_committer_lands_every_leaders_rounds_exactly_once(broker_factory, tmp_path):
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
        # Every leader's rows were landed by the committer (the leader of partition 0, which
        # translates only its own partitions): its commits are the only ones.
        committer = wait_committer(brokers)
        parts = metadata(brokers[0], TOPIC).topics[TOPIC].partitions.values()
        leaders = {p.id: p.leader for p in parts}
        assert set(leaders.values()) != {node_id(committer)}, \
            f"the committer leads every partition ({leaders}): no round to hand over"
        st = wait_written(committer, 300)
        assert st["records_written"] == 300, st
        c = st["committer"]
        assert c["commits"] >= 1 and c["rounds"] >= c["commits"], c
        for b in brokers:
            if b is not committer:
                other = describe(b, TOPIC)
                assert other["committer"]["commits"] == 0, other
                assert other["records_written"] == 0, other

        # A forged round is refused with a 400, whoever gets it; the table is unchanged.
        status, body = post_round(committer, b"{not json")
        assert status == 400 and "malformed round" in body["error"], body
        topic_id = weed_catalog(weed).load_table(("kafka", TOPIC)).properties[
            "icestream.kafka.topic-id"]
        forged = {"topic": TOPIC, "topic_id": topic_id, "namespace": ["kafka"], "table": TOPIC,
                  "schema_id": 0, "partition_spec_id": 0,
                  "partitions": [{"partition": 0, "from": 5, "to": 1}],
                  "offset_ranges": "", "data_files": []}
        status, body = post_round(committer, json.dumps(forged).encode())
        assert status == 400 and "back to" in body["error"], body
        follower = next(b for b in brokers if b is not committer)
        status, body = post_round(follower, json.dumps(forged).encode())
        assert (status, body["outcome"], body["leader"]) == (200, "not_committer",
                                                             node_id(committer)), body

        # SIGKILL the committer: a new leader of partition 0 takes over committing, and rounds
        # it never answered are translated again from the table, neither lost nor repeated.
        victim = committer
        victim.kill9()
        alive = [b for b in brokers if b is not victim]
        produce(alive[0], TOPIC, records(300, 300), flush_timeout=60,
                **{"enable.idempotence": True})
        rows = wait_rows(weed, TOPIC, 600)
        assert_exact(rows, high_watermarks(alive[0], TOPIC, 3))
        successor = wait_committer(alive)
        assert successor is not victim
        bystander = next(b for b in alive if b is not successor)
        assert describe(bystander, TOPIC)["committer"]["commits"] == 0

        # It comes back as a follower (or takes partition 0 back and commits again): still
        # exact, and whoever commits now is the leader of partition 0.
        victim.start()
        produce(alive[0], TOPIC, records(600, 150), flush_timeout=60,
                **{"enable.idempotence": True})
        rows = wait_rows(weed, TOPIC, 750)
        assert_exact(rows, high_watermarks(alive[0], TOPIC, 3))
        wait_committer(brokers)
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
