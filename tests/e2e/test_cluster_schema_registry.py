"""The schema registry in a three-broker cluster: `_schemas` is replicated, the registry on its
leader is the only writer (the others forward writes to it), every broker serves reads from its
own replica; ids are one sequence across brokers and survive SIGKILL of the writer."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cluster import metadata, start_cluster, wait_formed
from conftest import consume_all, create_topic, producer_config, unique_topic

CT = "application/vnd.schemaregistry.v1+json"
SCHEMAS = "_schemas"
# Confluent's server-side errors: store, timeout, forwarding, unknown leader.
UNAVAILABLE = {50001, 50002, 50003, 50004}


def record(name: str, fields=("a",)) -> dict:
    return {"type": "record", "name": name, "namespace": "icestream.cluster",
            "fields": [{"name": f, "type": "string"} for f in fields]}


def http(b, method: str, path: str, body=None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(b.schema_registry_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", CT)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def register(b, subject: str, schema: dict):
    return http(b, "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})


def register_retrying(b, subject: str, schema: dict, timeout: float = 40.0) -> int:
    """Registers, retrying only the registry's 'no writer right now' errors (a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = register(b, subject, schema)
        if status == 200:
            return body["id"]
        assert status == 500 and body["error_code"] in UNAVAILABLE, (status, body)
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.3)


def by_id_eventually(b, sid: int, timeout: float = 20.0) -> dict:
    """A replica applies committed records shortly after the writer: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = http(b, "GET", f"/schemas/ids/{sid}")
        if status == 200:
            return body
        assert status == 404 and body["error_code"] == 40403, (status, body)
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.1)


def schemas_leader(brokers, dead: int | None = None, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        views = set()
        for b in brokers:
            if b.running():
                t = metadata(b, SCHEMAS).topics.get(SCHEMAS)
                views.add(None if t is None or t.error is not None else t.partitions[0].leader)
        if len(views) == 1:
            (leader,) = views
            if leader is not None and leader > 0 and leader != dead:
                return leader
        assert time.monotonic() < deadline, views
        time.sleep(0.2)


def test_one_id_sequence_across_brokers_and_avro_round_trip(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    b1, b2, b3 = brokers

    s = record("Order", ("id", "item"))
    status, body = register(b2, "orders-value", s)
    assert status == 200, body
    sid = body["id"]
    # Read your write on the broker that took it, at once.
    status, got = http(b2, "GET", "/subjects/orders-value/versions/latest")
    assert status == 200 and got["id"] == sid
    # Another broker serves it from its own replica, with the same id and schema.
    got = by_id_eventually(b3, sid)
    assert json.loads(got["schema"]) == s

    # `_schemas` is a replicated topic with one leader.
    md = metadata(b1, SCHEMAS).topics[SCHEMAS]
    assert sorted(md.partitions[0].replicas) == [1, 2, 3]
    leader = schemas_leader(brokers)

    # The same schema registered through two other brokers gets one id, and a new schema
    # registered on a non-leader is readable there right after the answer.
    others = [b for i, b in enumerate(brokers, start=1) if i != leader]
    t = record("Shipment", ("id",))
    ids = set()
    for b in others:
        status, body = register(b, "shipments-value", t)
        assert status == 200, body
        ids.add(body["id"])
        status, got = http(b, "GET", "/subjects/shipments-value/versions/latest")
        assert status == 200 and got["id"] == body["id"], got
    assert len(ids) == 1 and sid not in ids
    status, body = register(brokers[leader - 1], "other-subject", t)
    assert status == 200 and body["id"] in ids
    status, versions = http(others[0], "GET", "/subjects/shipments-value/versions")
    assert versions == [1]

    # Config changes go through the writer too.
    status, body = http(others[1], "PUT", "/config/orders-value", {"compatibility": "NONE"})
    assert status == 200, body
    status, body = http(others[1], "GET", "/config/orders-value")
    assert status == 200 and body["compatibilityLevel"] == "NONE"

    # Confluent's AvroSerializer on broker 1's registry, AvroDeserializer on broker 3's.
    topic = unique_topic("avro")
    create_topic(b1, topic, partitions=1, replication_factor=3)
    user = record("User", ("name", "city"))
    ser = AvroSerializer(SchemaRegistryClient({"url": b1.schema_registry_url}), json.dumps(user))
    users = [{"name": f"u{i}", "city": f"c{i}"} for i in range(10)]
    p = Producer(producer_config(b1))
    for u in users:
        p.produce(topic, value=ser(u, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0
    msgs = consume_all(b1, topic)
    user_id = int.from_bytes(msgs[0].value()[1:5], "big")
    by_id_eventually(b3, user_id)
    de = AvroDeserializer(SchemaRegistryClient({"url": b3.schema_registry_url}))
    assert [de(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in msgs] == users


def test_registration_survives_sigkill_of_the_writer(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    before = {}
    for i in range(3):
        s = record(f"Before{i}")
        before[register_retrying(brokers[i], f"before-{i}", s)] = s
    assert len(before) == 3
    leader = schemas_leader(brokers)
    brokers[leader - 1].kill9()
    killed_at = time.monotonic()
    alive = [b for b in brokers if b.running()]

    # Writes work through every remaining broker once a new leader is elected (until then
    # they fail with Confluent's 5000x errors, never hang); ids keep counting up.
    after = {}
    for i, b in enumerate(alive):
        s = record(f"After{i}")
        after[register_retrying(b, f"after-{i}", s)] = s
    # A figure, not an assertion: writer killed to two registrations done.
    print(f"registry writer failover: {time.monotonic() - killed_at:.2f}s")
    assert len(after) == 2 and min(after) > max(before)
    assert schemas_leader(alive, dead=leader) != leader
    # Existing ids are kept, on every survivor.
    for b in alive:
        for sid, s in {**before, **after}.items():
            assert json.loads(by_id_eventually(b, sid)["schema"]) == s
        # The same schema again: its existing id, no new version.
        status, body = register(b, "before-0", record("Before0"))
        assert status == 200 and body["id"] == min(before)

    # The killed broker comes back, catches up from its replica and serves every id.
    brokers[leader - 1].start()
    wait_formed(brokers)
    for sid, s in {**before, **after}.items():
        assert json.loads(by_id_eventually(brokers[leader - 1], sid)["schema"]) == s


def test_no_quorum_answers_confluent_errors_not_hangs(broker_factory):
    brokers = start_cluster(broker_factory)
    wait_formed(brokers)
    register_retrying(brokers[0], "q-0", record("Q0"))
    for b in brokers[1:]:
        b.kill9()
    # One broker of three: `_schemas` cannot commit. The write is refused with a Confluent
    # error body (after at most the registry's bounded waits), and reads still work.
    status, body = register(brokers[0], "q-1", record("Q1"))
    print(f"write without a quorum: {status} {body}")
    assert status == 500 and body["error_code"] in UNAVAILABLE, (status, body)
    status, body = http(brokers[0], "GET", "/subjects/q-0/versions/latest")
    assert status == 200, body


def test_a_broker_without_a_replica_forwards_reads_and_writes(broker_factory):
    # Four brokers, `_schemas` on three: the fourth has no replica, so its registry asks the
    # leader's for reads as well as writes.
    brokers = start_cluster(broker_factory, n=4)
    wait_formed(brokers)
    sid = register_retrying(brokers[0], "four-a", record("FourA"))
    replicas = metadata(brokers[0], SCHEMAS).topics[SCHEMAS].partitions[0].replicas
    assert len(replicas) == 3
    (outsider,) = [b for i, b in enumerate(brokers, start=1) if i not in replicas]
    assert json.loads(by_id_eventually(outsider, sid)["schema"]) == record("FourA")
    new = register_retrying(outsider, "four-b", record("FourB"))
    assert new != sid
    for b in brokers:
        assert json.loads(by_id_eventually(b, new)["schema"]) == record("FourB")
    status, subjects = http(outsider, "GET", "/subjects")
    assert status == 200 and {"four-a", "four-b"} <= set(subjects), subjects
