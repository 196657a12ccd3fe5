"""Racks, rack-aware placement, follower fetching (KIP-392) and the ISR in Metadata.

Three brokers in racks a, b, c. A confluent-kafka consumer giving `client.rack` = a follower's
rack is sent there by the leader (`preferred_read_replica`) and reads from it (the follower's
fetched-bytes metric grows); when that follower is SIGKILLed, librdkafka falls back to the
leader and the consumer goes on with no gap and no duplicate. The ISR in Metadata shrinks when
the follower dies and grows back once it has returned and caught up, on every broker.
"""

from __future__ import annotations

import re
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import metadata, wait_formed
from conftest import free_port, http_get, unique_topic


def start_racked_cluster(broker_factory, racks, extra_args=()):
    rpc_ports = [free_port() for _ in racks]
    seeds = ",".join(f"127.0.0.1:{p}" for p in rpc_ports)
    brokers = []
    for i, rack in enumerate(racks):
        args = ["--node-id", str(i + 1), "--rpc-addr", f"127.0.0.1:{rpc_ports[i]}",
                "--seeds", seeds, "--rack", rack] + list(extra_args)
        brokers.append(broker_factory(args=args, start=False))
    for b in brokers:
        b.start()
    wait_formed(brokers)
    return brokers


def create(brokers, name, partitions, rf):
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                        operation_timeout=15)[name].result(timeout=30)


def partitions_of(b, name):
    t = metadata(b, name).topics.get(name)
    return t.partitions if t is not None and t.error is None else {}


def wait_for(what, fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def fetched_bytes(b) -> int:
    status, body, _ = http_get(f"{b.admin_url}/metrics")
    assert status == 200
    m = re.search(r"^icestream_kafka_fetched_bytes(?:_total)?\s+(\d+)", body, re.M)
    assert m, "icestream_kafka_fetched_bytes missing from /metrics"
    return int(m.group(1))


def produce(brokers, name, values):
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers if b.running()),
                  "acks": "all", "enable.idempotence": True, "message.timeout.ms": 30000})
    errors = []
    for v in values:
        p.produce(name, v, partition=0,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(40) == 0
    assert not errors, errors


def test_racks_in_metadata_and_describe_cluster_and_rack_aware_placement(broker_factory):
    # Two brokers in rack a, one in b: with RF=2 every partition needs one replica in each
    # rack, which the plain consecutive placement would not give ((1, 2) is all rack a).
    brokers = start_racked_cluster(broker_factory, ["a", "a", "b"])
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=brokers[1].bootstrap)
    try:
        # A Metadata request (v1+ carries brokers' racks); kafka-python has no public call
        # returning the raw brokers list.
        md = admin._manager.run(admin._get_cluster_metadata, [])
        racks = {b["node_id"]: b["rack"] for b in md["brokers"]}
        described = admin.describe_cluster()
    finally:
        admin.close()
    assert racks == {1: "a", 2: "a", 3: "b"}, racks
    assert {b["broker_id"]: b["rack"] for b in described["brokers"]} == racks
    ck = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    described = ck.describe_cluster(request_timeout=10).result(timeout=15)
    assert {n.id: n.rack for n in described.nodes} == {1: "a", 2: "a", 3: "b"}
    assert described.controller is not None and described.controller.id in (1, 2, 3)

    name = unique_topic("racked")
    create(brokers, name, 6, 2)
    parts = wait_for("topic everywhere", lambda: partitions_of(brokers[2], name))
    rack = {1: "a", 2: "a", 3: "b"}
    first = []
    for p in parts.values():
        assert sorted(rack[r] for r in p.replicas) == ["a", "b"], p.replicas
        first.append(p.replicas[0])
    assert sorted(first.count(i) for i in (1, 2, 3)) == [2, 2, 2], first


def test_consumer_reads_from_follower_in_its_rack_and_falls_back_to_leader(broker_factory):
    racks = ["a", "b", "c"]
    # A short lag bound so that the ISR visibly shrinks while the follower is down.
    brokers = start_racked_cluster(broker_factory, racks,
                                   ["--replica-lag-time-max-ms", "3000"])
    name = unique_topic("follower")
    create(brokers, name, 1, 3)

    def full_isr():
        p = partitions_of(brokers[0], name).get(0)
        return p if p is not None and p.leader > 0 and sorted(p.isrs) == [1, 2, 3] else None

    part = wait_for("leader elected with every replica in sync", full_isr)
    assert sorted(part.replicas) == [1, 2, 3]
    leader = part.leader
    follower = next(i for i in (1, 2, 3) if i != leader)
    other = next(i for i in (1, 2, 3) if i not in (leader, follower))
    fb = brokers[follower - 1]

    expected = [b"r-%04d" % i for i in range(300)]
    produce(brokers, name, expected[:100])

    before = fetched_bytes(fb)
    c = Consumer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers),
                  "group.id": "unused", "enable.auto.commit": False,
                  "client.rack": racks[follower - 1], "fetch.wait.max.ms": 200,
                  "topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 500,
                  "auto.offset.reset": "error"})
    c.assign([TopicPartition(name, 0, 0)])
    got: list[tuple[int, bytes]] = []

    def consume_until(n, timeout=60.0):
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            # Transport errors while the follower is down are expected; offsets must not reset.
            if m.error() is None:
                got.append((m.offset(), m.value()))
        assert len(got) >= n, f"consumed {len(got)} of {n}"

    try:
        consume_until(100)
        served = fetched_bytes(fb) - before
        assert served > 0, "the follower in the consumer's rack served no fetch"
        assert [v for _, v in got] == expected[:100]

        # The follower dies: the consumer reverts to the leader and continues.
        fb.kill9()
        produce(brokers, name, expected[100:200])
        consume_until(200)
        assert [o for o, _ in got] == list(range(200)), "gap or duplicate"
        assert [v for _, v in got] == expected[:200]

        # The ISR shrinks, as seen from the leader and from the other follower (gossip).
        for b in (brokers[leader - 1], brokers[other - 1]):
            wait_for(f"ISR without {follower} on broker {b.workdir.name}",
                     lambda b=b: sorted(partitions_of(b, name)[0].isrs)
                     == sorted([leader, other]))

        # It returns, catches up and is in sync again; reads go on without a gap.
        fb.start()
        for b in brokers:
            wait_for(f"ISR back to 3 on {b.workdir.name}",
                     lambda b=b: sorted(partitions_of(b, name).get(0).isrs) == [1, 2, 3]
                     if partitions_of(b, name).get(0) is not None else False, timeout=60)
        produce(brokers, name, expected[200:])
        consume_until(300)
        assert [o for o, _ in got] == list(range(300)), "gap or duplicate"
        assert [v for _, v in got] == expected
    finally:
        c.close()


def raw_fetch(bootstrap, version, topic, offset, rack=""):
    """One Fetch (v10 or v11, both non-flexible) of partition 0; returns
    (error, high watermark, preferred read replica or None, records bytes)."""
    import struct
    from kwire import Conn, frame, i8, i16, i32, i64, request_header, string
    assert version in (10, 11)
    body = i32(-1) + i32(100) + i32(1) + i32(1 << 20) + i8(0) + i32(0) + i32(-1)
    body += i32(1) + string(topic) + i32(1)
    body += i32(0) + i32(-1) + i64(offset) + i64(-1) + i32(1 << 20)
    body += i32(0)  # forgotten topics
    if version >= 11:
        body += string(rack)
    with Conn.to(bootstrap) as conn:
        conn.send(frame(request_header(1, version, 5) + body))
        corr, r = conn.recv_response()
    assert corr == 5
    pos = 4 + 2 + 4  # throttle, error, session id
    (ntopics,) = struct.unpack_from(">i", r, pos)
    assert ntopics == 1
    pos += 4
    (tlen,) = struct.unpack_from(">h", r, pos)
    pos += 2 + tlen + 4  # name, partition count (1)
    part, err, hw, _lso, _ls = struct.unpack_from(">ihqqq", r, pos)
    assert part == 0
    pos += 4 + 2 + 8 * 3
    (naborted,) = struct.unpack_from(">i", r, pos)
    pos += 4 + max(naborted, 0) * 16
    preferred = None
    if version >= 11:
        (preferred,) = struct.unpack_from(">i", r, pos)
        pos += 4
    (rlen,) = struct.unpack_from(">i", r, pos)
    records = r[pos + 4:pos + 4 + rlen] if rlen > 0 else b""
    return err, hw, preferred, records


def test_leader_names_the_rack_replica_and_followers_serve_up_to_their_high_watermark(
        broker_factory):
    """Raw Fetch requests: the leader answers a consumer in a follower's rack with
    preferred_read_replica and no records, and one in its own rack (or with no rack) with
    records; a follower serves v11+ up to its high watermark, answers nothing (no error) at it
    and OFFSET_OUT_OF_RANGE beyond its log end; v10 and older still get NOT_LEADER_OR_FOLLOWER
    from a follower."""
    racks = ["a", "b", "c"]
    brokers = start_racked_cluster(broker_factory, racks)
    name = unique_topic("raw")
    create(brokers, name, 1, 3)

    def led():
        p = partitions_of(brokers[0], name).get(0)
        return p if p is not None and p.leader > 0 else None

    leader = wait_for("leader", led).leader
    produce(brokers, name, [b"x%d" % i for i in range(10)])
    follower = next(i for i in (1, 2, 3) if i != leader)
    lb, fb = brokers[leader - 1].bootstrap, brokers[follower - 1].bootstrap

    # The follower applies what the leader committed.
    wait_for("follower high watermark 10", lambda: raw_fetch(fb, 11, name, 0)[:2] == (0, 10))
    err, hw, preferred, records = raw_fetch(fb, 11, name, 0)
    assert (err, hw, preferred) == (0, 10, -1) and len(records) > 61
    assert raw_fetch(fb, 11, name, 10)[0::3] == (0, b"")
    assert raw_fetch(fb, 11, name, 11)[0] == 1  # OFFSET_OUT_OF_RANGE
    assert raw_fetch(fb, 10, name, 0)[0] == 6  # NOT_LEADER_OR_FOLLOWER

    # The leader sends a consumer in the follower's rack there once it is caught up.
    wait_for("redirect to the follower",
             lambda: raw_fetch(lb, 11, name, 0, racks[follower - 1])[2] == follower)
    err, _, _, records = raw_fetch(lb, 11, name, 0, racks[follower - 1])
    assert err == 0 and records == b""
    for rack in (racks[leader - 1], "", "nowhere"):
        err, hw, preferred, records = raw_fetch(lb, 11, name, 0, rack)
        assert (err, hw, preferred) == (0, 10, -1) and len(records) > 61, rack


def test_leader_selector_never_redirects_and_bad_raft_batches_are_dropped(broker_factory):
    """`--replica-selector leader` (Kafka's LeaderSelector): a consumer in a follower's rack is
    served by the leader. Malformed or unknown-partition PartitionRaftBatch frames sent to a
    broker's RPC listener neither crash it nor disturb the cluster."""
    import socket
    import struct

    racks = ["a", "b", "c"]
    brokers = start_racked_cluster(
        broker_factory, racks,
        ["--replica-selector", "org.apache.kafka.common.replica.LeaderSelector"])
    name = unique_topic("leadersel")
    create(brokers, name, 1, 3)

    def full_isr():
        p = partitions_of(brokers[0], name).get(0)
        return p if p is not None and p.leader > 0 and sorted(p.isrs) == [1, 2, 3] else None

    leader = wait_for("leader with every replica in sync", full_isr).leader
    produce(brokers, name, [b"y%d" % i for i in range(5)])
    follower = next(i for i in (1, 2, 3) if i != leader)
    err, hw, preferred, records = raw_fetch(brokers[leader - 1].bootstrap, 11, name, 0,
                                            racks[follower - 1])
    assert (err, hw, preferred) == (0, 5, -1) and records

    # Hostile frames of kind 7 (PartitionRaftBatch) to the follower's RPC listener.
    args = brokers[follower - 1].extra_args
    rpc_port = int(args[args.index("--rpc-addr") + 1].rsplit(":", 1)[1])

    def item(topic, part, msg):
        t = topic.encode()
        return struct.pack(">H", len(t)) + t + struct.pack(">iI", part, len(msg)) + msg

    def frame7(body):
        return struct.pack(">IB", len(body) + 1, 7) + body

    bad = [
        frame7(b""),                                              # no count
        frame7(struct.pack(">I", 5) + item(name, 0, b"\x08")),    # count larger than items
        frame7(struct.pack(">I", 1) + b"\x00\x10abc"),            # truncated item
        frame7(struct.pack(">I", 1) + item("no-such-topic", 0, b"")),  # unknown: dropped
        frame7(struct.pack(">I", 1) + item(name, 99, b"")),       # unknown partition: dropped
        frame7(struct.pack(">I", 1) + item(name, 0, b"\xff\xff\xff")),  # undecodable message
        struct.pack(">IB", 0x7fffffff, 7),                        # over the frame limit
    ]
    for f in bad:
        with socket.create_connection(("127.0.0.1", rpc_port), timeout=5) as s:
            s.sendall(f)
            s.settimeout(2)
            try:
                s.recv(1)
            except (socket.timeout, ConnectionError):
                pass
    assert brokers[follower - 1].running()
    produce(brokers, name, [b"z"])
    wait_for("follower applies the next record",
             lambda: raw_fetch(brokers[follower - 1].bootstrap, 11, name, 0)[:2] == (0, 6))
    wait_for("every replica still in sync", full_isr)


def test_unknown_replica_selector_is_refused(tmp_path):
    import subprocess
    from conftest import broker_binary
    port = free_port()
    res = subprocess.run(
        [str(broker_binary()), "serve", "--data-dir", str(tmp_path / "d"),
         "--kafka-addr", f"127.0.0.1:{free_port()}", "--admin-addr", f"127.0.0.1:{free_port()}",
         "--node-id", "1", "--rpc-addr", f"127.0.0.1:{port}", "--seeds", f"127.0.0.1:{port}",
         "--replica-selector", "closest"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode != 0
    assert "--replica-selector must be rack-aware or leader" in res.stderr + res.stdout
    assert "panicked" not in res.stderr
