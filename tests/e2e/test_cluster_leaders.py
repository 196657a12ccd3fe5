"""Where partition leaders go: `redpanda.leaders.preference=racks:B` pins every partition's
leadership to its replica in rack B; without it the first replica leads, and ElectLeaders
(PREFERRED) puts it back there; UNCLEAN is refused (Raft never elects a replica missing
committed records)."""

from __future__ import annotations

from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from cluster import metadata, wait_formed
from conftest import free_port, unique_topic
from test_cluster_reassign import create, wait_for

PARTITIONS = 6
RACKS = {1: "a", 2: "b", 3: "c"}


def start_racked(broker_factory):
    """Three brokers, broker N in rack RACKS[N]."""
    ports = [free_port() for _ in RACKS]
    seeds = ",".join(f"127.0.0.1:{p}" for p in ports)
    brokers = [broker_factory(args=["--node-id", str(n), "--rpc-addr", f"127.0.0.1:{port}",
                                    "--seeds", seeds, "--rack", rack], start=False)
               for (n, rack), port in zip(RACKS.items(), ports)]
    for b in brokers:
        b.start()
    return brokers


def views(b, topic):
    t = metadata(b, topic).topics[topic]
    return {p: (v.leader, list(v.replicas)) for p, v in t.partitions.items()}


def set_preference(admin, topic, value):
    op = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("redpanda.leaders.preference", value or "", incremental_operation=op)])
    admin.incremental_alter_configs([res], request_timeout=30)[res].result(timeout=40)


def test_leaders_follow_the_rack_preference_and_elect_leaders_restores_preferred(
        broker_factory):
    brokers = start_racked(broker_factory)
    wait_formed(brokers)
    topic = unique_topic("pinned")
    create(brokers[0], topic, PARTITIONS, 3)
    first = wait_for("leaders on the first replicas", lambda: (v := views(brokers[0], topic))
                     and all(leader == r[0] for leader, r in v.values()) and v)
    assert len({r[0] for _, r in first.values()}) == 3, "preferred leaders spread over brokers"

    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    set_preference(admin, topic, "racks:b")
    wait_for("every leader in rack b", lambda: all(
        leader == 2 for leader, _ in views(brokers[0], topic).values()), timeout=30)
    # A broker restart does not lose the pinning: leadership comes back to rack b.
    brokers[1].stop()
    wait_for("leaders elsewhere while b is down", lambda: all(
        leader in (1, 3) for leader, _ in views(brokers[0], topic).values()), timeout=30)
    brokers[1].start()
    wait_for("every leader back in rack b", lambda: all(
        leader == 2 for leader, _ in views(brokers[0], topic).values()), timeout=60)

    # Without the preference the first replicas are preferred again: ElectLeaders moves them.
    set_preference(admin, topic, None)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    results = admin.elect_leaders(ElectionType.PREFERRED, tps).result(timeout=60)
    for tp, err in results.items():
        assert err is None or err.code() == KafkaError.ELECTION_NOT_NEEDED, (tp, err)
    wait_for("leaders on the first replicas again", lambda: all(
        leader == r[0] for leader, r in views(brokers[0], topic).values()), timeout=30)

    unclean = admin.elect_leaders(ElectionType.UNCLEAN, tps[:1]).result(timeout=30)
    err = unclean[tps[0]]
    assert err is not None and err.code() == KafkaError.INVALID_REQUEST, err
