"""Exactly-once consume-transform-produce on a three-broker cluster while the broker that
coordinates the transactional id (FindCoordinator key type 1) and the output partitions'
leaders are SIGKILLed and restarted, and the application itself crashes once mid-transaction.

ICESTREAM_TXN_CONTROL=kafka runs it on three Apache Kafka nodes instead (KRaft, each broker and
controller; tests/compat/build.sh builds the classpath): the positive control.

Rounds of broker kills: ICESTREAM_TXN_CHAOS_ROUNDS (default 2, what CI runs); input records:
ICESTREAM_TXN_INPUTS (default 300). A long run: ICESTREAM_TXN_CHAOS_ROUNDS=12
ICESTREAM_TXN_INPUTS=3000 with a larger pytest --timeout.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import txnkit
from cluster import metadata, start_cluster, wait_formed
from conftest import unique_topic

CONTROL = os.environ.get("ICESTREAM_TXN_CONTROL") == "kafka"
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


class KafkaNode:
    """One Apache Kafka KRaft node (broker and controller) of three, with what the test uses
    of conftest.Broker: bootstrap, running, kill9, start, workdir."""

    def __init__(self, workdir, node_id: int, port: int, voters: str, controller_port: int):
        from apache_kafka import classpath
        self.workdir, self.node_id, self.port = workdir, node_id, port
        workdir.mkdir(parents=True, exist_ok=True)
        self.props = workdir / "server.properties"
        self.props.write_text("\n".join([
            "process.roles=broker,controller", f"node.id={node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT", f"log.dirs={workdir / 'data'}",
            "offsets.topic.replication.factor=3", "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2",
            "transaction.state.log.num.partitions=3",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", ""]))
        log4j = workdir / "log4j2.yaml"
        log4j.write_text(
            "Configuration:\n  Appenders:\n    Console:\n      name: STDOUT\n"
            "      PatternLayout:\n        Pattern: \"[%d] %p %m (%c)%n\"\n"
            "  Loggers:\n    Root:\n      level: WARN\n      AppenderRef:\n        - ref: STDOUT\n")
        self.java = ["java", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                     f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath()]
        self.proc = None
        self.log = open(workdir / "kafka.log", "ab")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def format(self, cluster_id: str):
        subprocess.run(self.java + ["kafka.tools.StorageTool", "format", "-t", cluster_id,
                                    "-c", str(self.props)],
                       check=True, capture_output=True, timeout=120)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True):
        self.proc = subprocess.Popen(self.java + ["kafka.Kafka", str(self.props)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_up()

    def wait_up(self):
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"kafka {self.node_id} exited"
            try:
                if len(metadata(self).brokers) == 3:
                    return
            except Exception:  # not answering yet
                pass
            assert time.monotonic() < deadline, f"kafka {self.node_id} not up"
            time.sleep(0.5)

    def kill9(self):
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self.proc = None


def kafka_cluster(tmp_path):
    from conftest import free_port
    ports = [free_port() for _ in range(3)]
    cports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{cports[i]}" for i in range(3))
    nodes = [KafkaNode(tmp_path / f"kafka{i + 1}", i + 1, ports[i], voters, cports[i])
             for i in range(3)]
    cluster_id = "IcestreamTxn" + uuid.uuid4().hex[:10]
    for n in nodes:
        n.format(cluster_id)
    for n in nodes:  # all at once: each waits for a controller quorum
        n.start(wait=False)
    for n in nodes:
        n.wait_up()
    return nodes


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
    if CONTROL:
        from apache_kafka import java_available
        if not java_available():
            pytest.skip("Apache Kafka control: run tests/compat/build.sh first")
        brokers = kafka_cluster(tmp_path)
        try:
            wait_formed(brokers, timeout=120)
            run(brokers, tmp_path)
        finally:
            for b in brokers:
                b.kill9()
        return
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    run(brokers, tmp_path)


def run(brokers, tmp_path):
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
                            max_generations=3 + 2 * ROUNDS,
                            deadline_s=30 + 60 * ROUNDS + INPUTS // 10,
                            batch=10, transaction_timeout_ms=30000)
    print(f"kills: {kills}")
    assert any(what == "transaction coordinator" for _, _, what in kills), (
        "the worker finished before the coordinator was killed: more inputs needed")
    for b in brokers:
        if not b.running():
            b.start()
    wait_formed(brokers)
    txnkit.check_ctp_result(bootstrap, src, dst, PARTITIONS, inputs, result)
