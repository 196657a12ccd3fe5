"""Exactly-once consume-transform-produce on a three-broker cluster while the broker that
coordinates the transactional id (FindCoordinator key type 1) and the output partitions'
leaders are SIGKILLed and restarted, and the application itself crashes once mid-transaction.

Rounds of broker kills: ICESTREAM_TXN_CHAOS_ROUNDS (default 2, what CI runs); input records:
ICESTREAM_TXN_INPUTS (default 300). A long run: ICESTREAM_TXN_CHAOS_ROUNDS=12
ICESTREAM_TXN_INPUTS=3000 with a larger pytest --timeout.
"""

from __future__ import annotations

import random
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import txnkit
from cluster import metadata, start_cluster, wait_formed
from conftest import unique_topic

PARTITIONS = 3
ROUNDS = txnkit.env_int("ICESTREAM_TXN_CHAOS_ROUNDS", 2)
INPUTS = txnkit.env_int("ICESTREAM_TXN_INPUTS", 300)


def leader_of(brokers, topic, partition, timeout: float = 0.0) -> int:
    """The partition's leader as the first running broker that names one sees it; with a
    timeout, asks again until one does."""
    deadline = time.monotonic() + timeout
    while True:
        leader = _leader_of(brokers, topic, partition)
        if leader > 0 or time.monotonic() >= deadline:
            return leader
        time.sleep(0.2)


def _leader_of(brokers, topic, partition) -> int:
    for b in brokers:
        if b.running():
            try:
                t = metadata(b, topic).topics.get(topic)
            except Exception:  # a broker just killed or starting: ask the next
                continue
            if t is not None and partition in t.partitions and t.partitions[partition].leader > 0:
                return t.partitions[partition].leader
    return -1


def txn_coordinator(brokers, transactional_id: str, timeout: float = 30.0) -> int:
    """The node id FindCoordinator(key type 1) names, asked of the running brokers until one
    names a running broker."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for b in brokers:
            if not b.running():
                continue
            try:
                err, node = txnkit.find_txn_coordinator(b.bootstrap, transactional_id)
            except OSError as e:
                last = repr(e)
                continue
            last = (b.workdir.name, err, node)
            if err == 0 and 1 <= node <= len(brokers) and brokers[node - 1].running():
                return node
        time.sleep(0.2)
    raise AssertionError(f"no transaction coordinator for {transactional_id}: {last}")


def create(brokers, partitions: int) -> str:
    name = unique_topic("ctxn")
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        operation_timeout=15)[name].result(timeout=30)
    deadline = time.monotonic() + 20
    while any(_leader_of(brokers, name, p) < 0 for p in range(partitions)):
        assert time.monotonic() < deadline, f"{name}: no leaders"
        time.sleep(0.2)
    return name


@pytest.mark.timeout(90 + 60 * ROUNDS + INPUTS // 10)
def test_exactly_once_while_coordinator_and_leaders_are_killed(broker_factory, tmp_path):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    src = create(brokers, PARTITIONS)
    dst = create(brokers, PARTITIONS)
    inputs = txnkit.produce_inputs(bootstrap, src, PARTITIONS, INPUTS)
    seed = random.randrange(1 << 30)
    print(f"seed {seed}, {ROUNDS} rounds, {INPUTS} inputs")
    kills = []

    def chaos(w: txnkit.Worker):
        """Kills brokers while generation `w` runs; ROUNDS kills over all generations."""
        tx = w.spec["transactional_id"]
        while len(kills) < ROUNDS:
            rnd = len(kills)
            # Let it commit a little first (or finish: then the chaos is over).
            for _ in range(2):
                ev = w.wait_event({"commit", "done"}, timeout=60)
                if ev["ev"] != "commit":
                    return
            if rnd % 2 == 0:
                victim, what = txn_coordinator(brokers, tx), "transaction coordinator"
            else:
                # Alternately the output's and the input's partition leaders.
                topic = dst if rnd % 4 == 1 else src
                part = (rnd // 4) % PARTITIONS
                victim = leader_of(brokers, topic, part, timeout=30)
                what = f"leader of {topic}/{part}"
            assert victim > 0, what
            brokers[victim - 1].kill9()
            killed_at = time.monotonic()
            kills.append((rnd, victim, what))
            print(f"round {rnd}: killed broker {victim}, the {what}, after "
                  f"{w.commits()} commits")
            # Two of three brokers are enough: a transaction commits before it comes back.
            ev = w.wait_event({"commit", "done"}, timeout=60, after=killed_at)
            brokers[victim - 1].start()
            wait_formed(brokers)
            if ev["ev"] != "commit":
                return

    result = txnkit.run_ctp(bootstrap, tmp_path, src, dst, seed, hang_after=3, chaos=chaos,
                            max_generations=5, deadline_s=30 + 60 * ROUNDS + INPUTS // 10,
                            batch=10, transaction_timeout_ms=30000)
    print(f"kills: {kills}")
    assert any(what == "transaction coordinator" for _, _, what in kills), (
        "the worker finished before the coordinator was killed: more inputs needed")
    for b in brokers:
        if not b.running():
            b.start()
    wait_formed(brokers)
    txnkit.check_ctp_result(bootstrap, src, dst, PARTITIONS, inputs, result)
