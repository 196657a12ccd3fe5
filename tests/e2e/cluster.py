"""Three `icestream serve` processes forming one cluster on loopback.

Each broker gets --node-id N, its own --rpc-addr and the same --seeds (every broker's RPC
address). Ports and data dirs stay the same across kill9()/start(), like conftest.Broker.
"""

from __future__ import annotations

import json
import time

from confluent_kafka.admin import AdminClient

from confluent_kafka import Consumer, TopicPartition

import kwire
from conftest import Broker, consumer_config, free_port, http_get


def start_cluster(broker_factory, n: int = 3, extra_args: list[str] | None = None,
                  env: dict[str, str] | None = None):
    rpc_ports = [free_port() for _ in range(n)]
    seeds = ",".join(f"127.0.0.1:{p}" for p in rpc_ports)
    brokers = []
    for i in range(n):
        args = ["--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc_ports[i]}",
                "--seeds", seeds] + list(extra_args or [])
        # Only pass env when given: the benches' own factories take args and start only.
        extra = {"env": env} if env else {}
        brokers.append(broker_factory(args=args, start=False, **extra))
    for b in brokers:
        b.start()
    return brokers


class ScriptBrokers:
    """A broker factory for scripts outside pytest (the benches): brokers under `root`, all
    stopped by `stop_all`."""

    def __init__(self, root, smp: int = 2):
        self.root = root
        self.smp = smp
        self.made: list[Broker] = []

    def __call__(self, args=None, start=True, env=None) -> Broker:
        b = Broker(self.root / f"broker{len(self.made)}", smp=self.smp, args=args, env=env)
        self.made.append(b)
        if start:
            b.start()
        return b

    def stop_all(self) -> None:
        for b in self.made:
            b.stop()


def metadata(b, topic: str | None = None):
    return AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic=topic, timeout=10)


def controller_leader(b) -> int:
    """The controller's Raft leader as `b` knows it, -1 while there is none: DescribeCluster
    names the leader (Metadata names the broker asked, which forwards admin requests to it;
    librdkafka's describe_cluster reads Metadata, hence the raw request)."""
    with kwire.Conn.to(b.bootstrap) as c:
        return kwire.describe_cluster_controller(c)


def wait_formed(brokers, timeout: float = 30.0):
    """Until every broker lists every broker and knows the controller leader."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok = True
        for b in brokers:
            if not b.running():
                continue
            md = metadata(b)
            leader = controller_leader(b)
            last = (b.workdir.name, sorted(md.brokers), leader)
            if len(md.brokers) != len(brokers) or leader < 1:
                ok = False
                break
        if ok:
            return
        time.sleep(0.2)
    raise AssertionError(f"cluster did not form in {timeout}s: {last}")


def controller_files(b) -> set[str]:
    return {f.name for f in (b.data_dir / "controller").iterdir()}


def wait_controller_log_truncated(brokers, timeout: float = 30.0):
    """Until each broker has a controller checkpoint and has dropped its first two log files.
    Each broker rolls its own files, so one broker's last entry may end a file of another's:
    only once two are gone are entries a stopped broker lacks gone, and it needs the snapshot."""
    for b in brokers:
        deadline = time.monotonic() + timeout
        while {"raft.log", "raft.log.1"} & controller_files(b) or \
                "checkpoint" not in controller_files(b):
            assert time.monotonic() < deadline, f"{b.workdir.name}: {sorted(controller_files(b))}"
            time.sleep(0.2)


def restart_all(brokers):
    """kill -9 every broker, start them all again, and wait for the cluster to form."""
    for b in brokers:
        b.kill9()
    for b in brokers:
        b.start()
    wait_formed(brokers)


def controller_roles(b) -> dict[int, str | None]:
    """Each broker's place in the controller group as `b` sees it: voter, learner or None."""
    status, body, _ = http_get(f"{b.admin_url}/v1/cluster/brokers")
    assert status == 200, body
    return {x["id"]: x.get("controller_role") for x in json.loads(body)["brokers"]}


def finalized_features(b) -> dict[str, int]:
    """The feature levels the controller finalized, as `b` sees them."""
    status, body, _ = http_get(f"{b.admin_url}/v1/cluster/brokers")
    assert status == 200, body
    return json.loads(body)["finalized_features"]


def read_all(b, topic: str, partition: int = 0) -> list[tuple[int, bytes]]:
    """Every record of a partition from offset 0, as (offset, value), read through `b`."""
    c = Consumer(consumer_config(b))
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    try:
        while (m := c.poll(3)) is not None:
            if m.error() is None:
                out.append((m.offset(), m.value()))
    finally:
        c.close()
    return out
