"""The built-in schema registry, driven by the real confluent-kafka SchemaRegistryClient and
its Avro serializers: register, produce and consume Avro records through the broker, evolve
schemas compatibly and incompatibly, survive a restart, and refuse malformed schemas."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import (Delivered, admin_client, consume_all, create_topic, producer_config,
                      unique_topic)

CT = "application/vnd.schemaregistry.v1+json"

USER_V1 = {
    "type": "record", "name": "User", "namespace": "icestream.test",
    "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}],
}
# Compatible (BACKWARD): a new field with a default.
USER_V2 = {**USER_V1, "fields": USER_V1["fields"] + [
    {"name": "email", "type": ["null", "string"], "default": None}]}
# Incompatible (BACKWARD): a new field without a default.
USER_BAD = {**USER_V1, "fields": USER_V1["fields"] + [{"name": "country", "type": "string"}]}


def client(broker) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": broker.schema_registry_url})


def avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


def http(broker, method: str, path: str, body=None, ctype: str = CT):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(broker.schema_registry_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers.get("Content-Type")


def test_register_produce_consume_deserialize(broker):
    sr = client(broker)
    topic = create_topic(broker)
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    users = [{"name": f"user{i}", "age": 20 + i} for i in range(10)]
    p = Producer(producer_config(broker))
    for u in users:
        p.produce(topic, value=ser(u, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0

    subject = f"{topic}-value"
    assert subject in sr.get_subjects()
    latest = sr.get_latest_version(subject)
    assert latest.version == 1
    msgs = consume_all(broker, topic)
    assert len(msgs) == len(users)
    # Confluent wire format: magic byte 0 and the registered id.
    assert all(m.value()[0] == 0 and int.from_bytes(m.value()[1:5], "big") == latest.schema_id
               for m in msgs)
    de = AvroDeserializer(SchemaRegistryClient({"url": broker.schema_registry_url}))
    got = [de(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in msgs]
    assert got == users


def test_same_schema_same_id_and_evolution(broker):
    sr = client(broker)
    subject = unique_topic("sr") + "-value"
    id1 = sr.register_schema(subject, avro(USER_V1))
    # Registering it again (even with other whitespace) returns the same id and version.
    again = sr.register_schema(subject, Schema(json.dumps(USER_V1, indent=2), "AVRO"))
    assert again == id1
    assert sr.get_versions(subject) == [1]
    # Another subject with the same schema shares the global id.
    other = unique_topic("sr") + "-value"
    assert sr.register_schema(other, avro(USER_V1)) == id1

    assert sr.test_compatibility(subject, avro(USER_V2)) is True
    id2 = sr.register_schema(subject, avro(USER_V2))
    assert id2 != id1
    assert sr.get_versions(subject) == [1, 2]
    assert sr.lookup_schema(subject, avro(USER_V2)).version == 2

    assert sr.test_compatibility(subject, avro(USER_BAD)) is False
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subject, avro(USER_BAD))
    assert e.value.http_status_code == 409 and e.value.error_code == 409
    assert "incompatible" in e.value.error_message and "country" in e.value.error_message

    status, body, _ = http(broker, "POST",
                           f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                           {"schema": json.dumps(USER_BAD)})
    assert status == 200 and body["is_compatible"] is False and body["messages"]

    # With compatibility NONE for the subject the same change is accepted.
    sr.set_compatibility(subject, "NONE")
    assert sr.get_compatibility(subject) == "NONE"
    assert sr.register_schema(subject, avro(USER_BAD)) > id2
    assert sr.get_versions(subject) == [1, 2, 3]


def test_ids_and_versions_survive_a_restart(broker):
    sr = client(broker)
    subject = unique_topic("sr") + "-value"
    id1 = sr.register_schema(subject, avro(USER_V1))
    id2 = sr.register_schema(subject, avro(USER_V2))
    sr.set_compatibility(subject, "FULL")
    deleted = unique_topic("gone") + "-value"
    sr.register_schema(deleted, avro({"type": "enum", "name": "E", "symbols": ["A"]}))
    assert sr.delete_subject(deleted) == [1]
    broker.restart()

    sr = client(broker)
    assert sr.get_versions(subject) == [1, 2]
    assert sr.get_version(subject, 1).schema_id == id1
    assert sr.get_version(subject, 2).schema_id == id2
    assert json.loads(sr.get_schema(id2).schema_str) == json.loads(json.dumps(USER_V2))
    assert sr.get_compatibility(subject) == "FULL"
    assert deleted not in sr.get_subjects()
    status, body, _ = http(broker, "GET", "/subjects?deleted=true")
    assert deleted in body
    # A new schema after the restart gets a new id, not a reused one.
    id3 = sr.register_schema(unique_topic("sr") + "-value",
                             avro({"type": "fixed", "name": "F", "size": 4}))
    assert id3 not in (id1, id2)


def test_malformed_and_unsupported_schemas_are_422(broker):
    sr = client(broker)
    subject = unique_topic("bad") + "-value"
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subject, Schema('{"type": "record", "name": "X"}', "AVRO"))
    assert e.value.http_status_code == 422 and e.value.error_code == 42201
    assert "fields" in e.value.error_message.lower()

    status, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                           {"schema": "{not json"})
    assert (status, body["error_code"]) == (422, 42201)
    status, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                           {"schema": "syntax = \"proto3\";", "schemaType": "XML"})
    assert (status, body["error_code"]) == (422, 42201)
    assert "AVRO, JSON and PROTOBUF" in body["message"]


def test_rest_errors_and_content_types(broker):
    subject = unique_topic("rest") + "-value"
    status, body, ctype = http(broker, "GET", f"/subjects/{subject}/versions")
    assert (status, body["error_code"]) == (404, 40401) and ctype == CT
    status, body, _ = http(broker, "GET", "/schemas/ids/987654")
    assert (status, body["error_code"]) == (404, 40403)
    status, body, _ = http(broker, "GET", "/no/such/path")
    assert (status, body["error_code"]) == (404, 404)

    status, body, ctype = http(broker, "POST", f"/subjects/{subject}/versions",
                               {"schema": '"string"'}, ctype="application/json")
    assert status == 200 and ctype == CT
    sid = body["id"]
    status, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                           {"schema": '"string"'}, ctype="application/vnd.schemaregistry+json")
    assert (status, body) == (200, {"id": sid})
    status, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                           {"schema": '"string"'}, ctype="text/plain")
    assert status == 415

    status, body, _ = http(broker, "GET", f"/subjects/{subject}/versions/2")
    assert (status, body["error_code"]) == (404, 40402)
    status, body, _ = http(broker, "GET", f"/subjects/{subject}/versions/0")
    assert (status, body["error_code"]) == (422, 42202)
    status, body, _ = http(broker, "GET", f"/subjects/{subject}/versions/latest")
    assert status == 200 and body == {"subject": subject, "version": 1, "id": sid,
                                      "schema": '"string"'}
    status, body, _ = http(broker, "GET", f"/schemas/ids/{sid}/versions")
    assert {"subject": subject, "version": 1} in body
    assert http(broker, "GET", "/schemas/types")[1] == ["JSON", "PROTOBUF", "AVRO"]

    # Soft delete, then permanent delete.
    status, body, _ = http(broker, "DELETE", f"/subjects/{subject}?permanent=true")
    assert (status, body["error_code"]) == (404, 40405)
    assert http(broker, "DELETE", f"/subjects/{subject}")[:2] == (200, [1])
    assert http(broker, "DELETE", f"/subjects/{subject}")[1]["error_code"] == 40404
    assert http(broker, "DELETE", f"/subjects/{subject}?permanent=true")[:2] == (200, [1])
    assert http(broker, "GET", "/subjects?deleted=true")[1].count(subject) == 0

    # Config: global default, per subject, defaultToGlobal, bad levels.
    assert http(broker, "GET", "/config")[1] == {"compatibilityLevel": "BACKWARD"}
    status, body, _ = http(broker, "GET", f"/config/{subject}")
    assert (status, body["error_code"]) == (404, 40408)
    assert http(broker, "GET", f"/config/{subject}?defaultToGlobal=true")[1] == \
        {"compatibilityLevel": "BACKWARD"}
    status, body, _ = http(broker, "PUT", "/config", {"compatibility": "SIDEWAYS"})
    assert (status, body["error_code"]) == (422, 42203)


def test_read_only_mode_refuses_registration(broker):
    sr = client(broker)
    subject = unique_topic("ro") + "-value"
    sr.register_schema(subject, avro(USER_V1))
    assert http(broker, "GET", "/mode")[1] == {"mode": "READWRITE"}
    assert http(broker, "PUT", "/mode", {"mode": "READONLY"})[:2] == (200, {"mode": "READONLY"})
    try:
        with pytest.raises(SchemaRegistryError) as e:
            sr.register_schema(subject, avro(USER_V2))
        assert e.value.error_code == 42205
        # Reads still work, and registering an existing schema returns its id.
        assert sr.get_versions(subject) == [1]
    finally:
        assert http(broker, "PUT", "/mode", {"mode": "READWRITE"})[0] == 200
    sr.register_schema(subject, avro(USER_V2))


def test_schemas_topic_is_internal_and_in_confluent_format(broker):
    sr = client(broker)
    subject = unique_topic("fmt") + "-value"
    sid = sr.register_schema(subject, avro(USER_V1))
    md = admin_client(broker).list_topics(timeout=10)
    assert md.topics["_schemas"].partitions[0] is not None
    records = consume_all(broker, "_schemas")
    keys = [json.loads(m.key()) for m in records]
    assert {"keytype": "SCHEMA", "subject": subject, "version": 1, "magic": 1} in keys
    value = json.loads(records[keys.index(
        {"keytype": "SCHEMA", "subject": subject, "version": 1, "magic": 1})].value())
    assert value["id"] == sid and value["deleted"] is False
    assert json.loads(value["schema"]) == USER_V1
    p = Producer(producer_config(broker))
    d = Delivered()
    p.produce("_schemas", key=b"k", value=b"forged", on_delivery=d)
    p.flush(10)
    assert [e.code() for e, _, _ in d.errors] == [KafkaError.TOPIC_EXCEPTION]


# JSON Schema (schemaType JSON).
ORDER_V1 = {
    "type": "object", "title": "Order", "additionalProperties": False,
    "properties": {"id": {"type": "integer"}, "item": {"type": "string", "maxLength": 20}},
    "required": ["id", "item"],
}
# Compatible (BACKWARD): an optional property added to a closed content model, a bound widened
# and integer widened to number.
ORDER_V2 = {**ORDER_V1, "properties": {
    "id": {"type": "number"}, "item": {"type": "string", "maxLength": 40},
    "note": {"type": "string"}}}
# Incompatible (BACKWARD): a new required property and a type change.
ORDER_BAD = {**ORDER_V2, "properties": {**ORDER_V2["properties"], "item": {"type": "boolean"}},
             "required": ["id", "item", "note"]}


def jschema(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "JSON")


def test_json_schema_register_produce_consume_deserialize(broker):
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
    sr = client(broker)
    topic = create_topic(broker)
    ser = JSONSerializer(json.dumps(ORDER_V1), sr)
    orders = [{"id": i, "item": f"thing{i}"} for i in range(10)]
    p = Producer(producer_config(broker))
    for o in orders:
        p.produce(topic, value=ser(o, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0

    subject = f"{topic}-value"
    latest = sr.get_latest_version(subject)
    assert latest.version == 1 and latest.schema.schema_type == "JSON"
    assert json.loads(sr.get_schema(latest.schema_id).schema_str) == ORDER_V1
    msgs = consume_all(broker, topic)
    assert len(msgs) == len(orders)
    assert all(m.value()[0] == 0 and int.from_bytes(m.value()[1:5], "big") == latest.schema_id
               for m in msgs)
    de = JSONDeserializer(None, schema_registry_client=SchemaRegistryClient(
        {"url": broker.schema_registry_url}))
    got = [de(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in msgs]
    assert got == orders


def test_json_schema_identity_evolution_and_errors(broker):
    sr = client(broker)
    subject = unique_topic("js") + "-value"
    id1 = sr.register_schema(subject, jschema(ORDER_V1))
    # Whitespace and key order do not change the id.
    reordered = json.dumps(dict(reversed(list(ORDER_V1.items()))), indent=2)
    assert sr.register_schema(subject, Schema(reordered, "JSON")) == id1
    assert sr.get_versions(subject) == [1]
    assert sr.lookup_schema(subject, Schema(reordered, "JSON")).version == 1
    status, body, _ = http(broker, "GET", f"/schemas/ids/{id1}")
    assert status == 200 and body["schemaType"] == "JSON"

    assert sr.test_compatibility(subject, jschema(ORDER_V2)) is True
    id2 = sr.register_schema(subject, jschema(ORDER_V2))
    assert id2 != id1 and sr.get_versions(subject) == [1, 2]

    assert sr.test_compatibility(subject, jschema(ORDER_BAD)) is False
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subject, jschema(ORDER_BAD))
    assert e.value.http_status_code == 409 and e.value.error_code == 409
    assert "REQUIRED_ATTRIBUTE_ADDED" in e.value.error_message
    status, body, _ = http(broker, "POST",
                           f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                           {"schema": json.dumps(ORDER_BAD), "schemaType": "JSON"})
    assert status == 200 and body["is_compatible"] is False
    text = " ".join(body["messages"])
    assert "#/required/note" in text and "#/properties/item" in text and "TYPE_CHANGED" in text

    # A property added to an open content model is backward incompatible.
    open_subject = unique_topic("js") + "-value"
    open_v1 = {"type": "object", "properties": {"a": {"type": "string"}}}
    sr.register_schema(open_subject, jschema(open_v1))
    open_v2 = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(open_subject, jschema(open_v2))
    assert e.value.http_status_code == 409
    assert "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL" in e.value.error_message

    # Malformed JSON and non-schemas are 422/42201.
    for bad in ["{not json", "[1, 2]", "42", '{"type": "strng"}']:
        status, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                               {"schema": bad, "schemaType": "JSON"})
        assert (status, body["error_code"]) == (422, 42201), bad
        assert body["message"]


def test_json_schema_ids_survive_a_restart(broker):
    sr = client(broker)
    subject = unique_topic("js") + "-value"
    id1 = sr.register_schema(subject, jschema(ORDER_V1))
    id2 = sr.register_schema(subject, jschema(ORDER_V2))
    broker.restart()

    sr = client(broker)
    assert sr.get_versions(subject) == [1, 2]
    v2 = sr.get_version(subject, 2)
    assert v2.schema_id == id2 and v2.schema.schema_type == "JSON"
    assert sr.get_version(subject, 1).schema_id == id1
    # The same schema registered again after the restart keeps its id (identity is rebuilt).
    assert sr.register_schema(subject, jschema(ORDER_V1)) == id1
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subject, jschema(ORDER_BAD))
    assert e.value.http_status_code == 409
