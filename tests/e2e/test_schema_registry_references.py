"""Schema references for every format, with the real clients: Avro named types from another
subject (AvroSerializer), JSON Schema `$ref` to a reference's name (JSONSerializer), Protobuf
imports; `/referencedby`; deleting a referenced version fails with 42206."""

from __future__ import annotations

import json

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import consume_all, create_topic, producer_config, unique_topic
from test_schema_registry import avro, client, http


def test_references_for_every_format(broker):
    sr = client(broker)
    # Avro: a record using a named type from another subject.
    addr_subject = unique_topic("addr")
    addr = {"type": "record", "name": "Address", "namespace": "t",
            "fields": [{"name": "city", "type": "string"}]}
    sr.register_schema(addr_subject, avro(addr))
    person = {"type": "record", "name": "Person", "namespace": "t",
              "fields": [{"name": "name", "type": "string"}, {"name": "home", "type": "t.Address"}]}
    refs = [SchemaReference("t.Address", addr_subject, 1)]
    person_subject = unique_topic("person") + "-value"
    pid = sr.register_schema(person_subject, Schema(json.dumps(person), "AVRO", refs))
    got = sr.get_version(person_subject, 1)
    assert got.schema_id == pid and got.schema.references[0].name == "t.Address"
    # Without the reference the named type is unknown.
    st, body, _ = http(broker, "POST", f"/subjects/{person_subject}/versions",
                       {"schema": json.dumps(person)})
    assert (st, body["error_code"]) == (422, 42201)

    # JSON Schema: $ref to a reference's name.
    jaddr_subject = unique_topic("jaddr")
    sr.register_schema(jaddr_subject, Schema(json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}}), "JSON"))
    jperson = {"type": "object", "properties": {"home": {"$ref": "address.json"}}}
    jid = sr.register_schema(unique_topic("jp"), Schema(
        json.dumps(jperson), "JSON", [SchemaReference("address.json", jaddr_subject, 1)]))
    assert jid > 0

    # Protobuf: an import resolved through a reference.
    dep_subject = unique_topic("pbdep")
    st, _, _ = http(broker, "POST", f"/subjects/{dep_subject}/versions", {
        "schema": 'syntax = "proto3"; package dep; message Money { int64 cents = 1; }',
        "schemaType": "PROTOBUF"})
    assert st == 200
    main = ('syntax = "proto3"; package shop; import "money.proto";\n'
            'message Item { string name = 1; dep.Money price = 2; }')
    main_subject = unique_topic("pbmain")
    st, body, _ = http(broker, "POST", f"/subjects/{main_subject}/versions", {
        "schema": main, "schemaType": "PROTOBUF",
        "references": [{"name": "money.proto", "subject": dep_subject, "version": 1}]})
    assert st == 200, body
    main_id = body["id"]

    # referencedby, and deleting a referenced version fails with 42206.
    st, body, _ = http(broker, "GET", f"/subjects/{dep_subject}/versions/1/referencedby")
    assert (st, body) == (200, [main_id])
    st, body, _ = http(broker, "GET", f"/subjects/{addr_subject}/versions/latest/referencedby")
    assert body == [pid]
    for path in [f"/subjects/{dep_subject}/versions/1", f"/subjects/{addr_subject}"]:
        st, body, _ = http(broker, "DELETE", path)
        assert (st, body["error_code"]) == (422, 42206), path
    # Once the referrer is gone, the dependency may go.
    assert http(broker, "DELETE", f"/subjects/{main_subject}")[0] == 200
    assert http(broker, "DELETE", f"/subjects/{dep_subject}/versions/1")[0] == 200


def test_avro_serializer_with_a_referenced_named_type(broker):
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    sr = client(broker)
    addr_subject = unique_topic("addr")
    addr = {"type": "record", "name": "Address", "namespace": "r",
            "fields": [{"name": "city", "type": "string"}]}
    sr.register_schema(addr_subject, avro(addr))
    person = {"type": "record", "name": "Person", "namespace": "r",
              "fields": [{"name": "name", "type": "string"},
                         {"name": "home", "type": "r.Address"}]}
    topic = create_topic(broker)
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser = AvroSerializer(sr, Schema(json.dumps(person), "AVRO",
                                    [SchemaReference("r.Address", addr_subject, 1)]))
    people = [{"name": f"p{i}", "home": {"city": f"c{i}"}} for i in range(3)]
    p = Producer(producer_config(broker))
    for person_ in people:
        p.produce(topic, value=ser(person_, ctx))
    assert p.flush(30) == 0
    de = AvroDeserializer(SchemaRegistryClient({"url": broker.schema_registry_url}))
    assert [de(m.value(), ctx) for m in consume_all(broker, topic)] == people
    refs = sr.get_latest_version(f"{topic}-value").schema.references
    assert [(r.name, r.subject, r.version) for r in refs] == [("r.Address", addr_subject, 1)]
    # Evolving the referring schema is checked with the referenced type resolved.
    refs_json = [{"name": "r.Address", "subject": addr_subject, "version": 1}]
    v2 = {**person, "fields": person["fields"] + [{"name": "age", "type": "int", "default": 0}]}
    st, body, _ = http(broker, "POST", f"/subjects/{topic}-value/versions",
                       {"schema": json.dumps(v2), "references": refs_json})
    assert st == 200, body
    v3 = {**person, "fields": person["fields"] + [{"name": "zip", "type": "r.Address"}]}
    st, body, _ = http(broker, "POST", f"/subjects/{topic}-value/versions",
                       {"schema": json.dumps(v3), "references": refs_json})
    assert (st, body["error_code"]) == (409, 409), body


def test_json_serializer_with_a_referenced_document(broker):
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
    sr = client(broker)
    addr_subject = unique_topic("jaddr")
    addr = {"$id": "address.json", "type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}
    sr.register_schema(addr_subject, Schema(json.dumps(addr), "JSON"))
    person = {"type": "object", "properties": {"name": {"type": "string"},
                                               "home": {"$ref": "address.json"}}}
    schema = Schema(json.dumps(person), "JSON", [SchemaReference("address.json", addr_subject, 1)])
    topic = create_topic(broker)
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser = JSONSerializer(schema, sr)
    people = [{"name": f"p{i}", "home": {"city": f"c{i}"}} for i in range(3)]
    p = Producer(producer_config(broker))
    for person_ in people:
        p.produce(topic, value=ser(person_, ctx))
    assert p.flush(30) == 0
    de = JSONDeserializer(None, schema_registry_client=SchemaRegistryClient(
        {"url": broker.schema_registry_url}))
    assert [de(m.value(), ctx) for m in consume_all(broker, topic)] == people
    # The referenced document is compared when the referrer evolves: a new version of the
    # address that makes city an integer is incompatible once referenced.
    subject = f"{topic}-value"
    st, body, _ = http(broker, "POST", f"/compatibility/subjects/{subject}/versions/latest"
                       "?verbose=true", {"schema": json.dumps(person), "schemaType": "JSON",
                                         "references": [{"name": "address.json",
                                                         "subject": addr_subject,
                                                         "version": 1}]})
    assert body["is_compatible"] is True
    http(broker, "PUT", f"/config/{addr_subject}", {"compatibility": "NONE"})
    sr.register_schema(addr_subject, Schema(json.dumps(
        {**addr, "properties": {"city": {"type": "integer"}}}), "JSON"))
    st, body, _ = http(broker, "POST", f"/compatibility/subjects/{subject}/versions/latest"
                       "?verbose=true", {"schema": json.dumps(person), "schemaType": "JSON",
                                         "references": [{"name": "address.json",
                                                         "subject": addr_subject,
                                                         "version": 2}]})
    assert body["is_compatible"] is False, body
    assert "#/properties/home/properties/city" in " ".join(body["messages"])
