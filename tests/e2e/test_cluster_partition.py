"""A broker cut off from the others (its RPC traffic dropped by proxies, clients still reach
it) while acks=all produce runs: the isolated leader stops acknowledging, the majority elects
a new one, and no acknowledged record is lost or duplicated; replicas converge after healing."""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient, NewTopic

from chaos_proxy import RpcBlackhole
from cluster import controller_leader, metadata
from conftest import free_port, unique_topic
from history import Load, wait_replicas_identical
from test_cluster_chaos import leader_of

PARTITIONS = 3


def test_isolated_leader_loses_no_acknowledged_write(broker_factory):
    ips = [f"127.0.0.{11 + i}" for i in range(3)]
    rpc_ports = [free_port() for _ in range(3)]
    proxies = [RpcBlackhole(ips[i], (ips[i], rpc_ports[i])) for i in range(3)]
    seeds = ",".join(p.addr for p in proxies)
    brokers = []
    for i in range(3):
        brokers.append(broker_factory(args=[
            "--node-id", str(i + 1), "--rpc-addr", f"{ips[i]}:{rpc_ports[i]}",
            "--advertised-rpc-addr", proxies[i].addr, "--seeds", seeds], start=False))
    for b in brokers:
        b.start()
    deadline = time.monotonic() + 30
    while any(len(metadata(b).brokers) != 3 or controller_leader(b) < 1 for b in brokers):
        assert time.monotonic() < deadline, "cluster did not form through the proxies"
        time.sleep(0.2)

    def cut(k: int, on: bool):
        proxies[k].drop_all = on
        for j in range(3):
            if j != k:
                if on:
                    proxies[j].drop_from.add(ips[k])
                else:
                    proxies[j].drop_from.discard(ips[k])

    topic = unique_topic("split")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=15)[topic].result(timeout=30)
    while any(leader_of(brokers, topic, p) < 0 for p in range(PARTITIONS)):
        assert time.monotonic() < deadline + 20, "no leaders"
        time.sleep(0.2)

    bootstrap = ",".join(b.bootstrap for b in brokers)
    load = Load(bootstrap, topic, list(range(PARTITIONS)), prefix=b"s")
    history = load.history
    try:
        for rnd in range(2):
            time.sleep(2)
            victim = leader_of(brokers, topic, rnd % PARTITIONS)
            assert victim > 0
            cut(victim - 1, True)
            # The majority elects another leader while the old one is cut off.
            other = brokers[victim % 3]
            t_cut = time.monotonic()
            while True:
                pm = metadata(other, topic).topics[topic].partitions[rnd % PARTITIONS]
                if pm.leader > 0 and pm.leader != victim:
                    break
                assert time.monotonic() - t_cut < 10, "no new leader on the majority side"
                time.sleep(0.1)
            print(f"round {rnd}: cut broker {victim}; new leader {pm.leader} after "
                  f"{time.monotonic() - t_cut:.2f} s")
            time.sleep(max(0.0, 4 - (time.monotonic() - t_cut)))
            cut(victim - 1, False)
    finally:
        time.sleep(3)
        load.finish()
    assert len(history.acked) > 300, (len(history.acked), list(history.errors.items())[:5])

    load.check_read_back()
    wait_replicas_identical(brokers, topic, range(PARTITIONS))
    for p in proxies:
        p.close()
