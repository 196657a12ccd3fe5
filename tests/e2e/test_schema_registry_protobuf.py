"""Protobuf in the built-in schema registry, references for every format, the newer REST
endpoints (GET /schemas, referencedby, per-subject mode, IMPORT, normalize) and produce-time
schema id validation, all against the real broker binary with confluent-kafka's clients.

Protobuf message classes are built from FileDescriptorProtos with google.protobuf's
descriptor_pool / message_factory, so no protoc is needed."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import Delivered, consume_all, create_topic, producer_config, unique_topic
from test_schema_registry import USER_V1, avro, client, http

F = descriptor_pb2.FieldDescriptorProto


def message_class(package: str, fields: list[tuple[str, int, int]], name: str = "User"):
    """A generated-like message class for `message <name> { <fields> }` in `package`."""
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}/user.proto", package=package,
                                             syntax="proto3")
    m = fdp.message_type.add(name=name)
    for fname, number, ftype in fields:
        m.field.add(name=fname, number=number, type=ftype, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


V1_FIELDS = [("name", 1, F.TYPE_STRING), ("age", 2, F.TYPE_INT32)]


def test_protobuf_serializer_round_trip_evolution_and_restart(broker):
    sr = client(broker)
    topic = create_topic(broker)
    pkg = unique_topic("pb").replace("-", "_")
    User = message_class(pkg, V1_FIELDS)
    ser = ProtobufSerializer(User, sr, {"use.deprecated.format": False})
    users = [User(name=f"user{i}", age=20 + i) for i in range(10)]
    p = Producer(producer_config(broker))
    for u in users:
        p.produce(topic, value=ser(u, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0

    subject = f"{topic}-value"
    latest = sr.get_latest_version(subject)
    assert latest.version == 1 and latest.schema.schema_type == "PROTOBUF"
    # Registered as a base64 descriptor, shown as .proto text (as Confluent's registry does).
    text = latest.schema.schema_str
    assert text.startswith('syntax = "proto3";') and "int32 age = 2;" in text, text
    msgs = consume_all(broker, topic)
    assert len(msgs) == len(users)
    # Confluent wire format: magic 0, the id, then the message index list (0 = first message).
    assert all(m.value()[0] == 0 and int.from_bytes(m.value()[1:5], "big") == latest.schema_id
               for m in msgs)
    de = ProtobufDeserializer(User, {"use.deprecated.format": False},
                              SchemaRegistryClient({"url": broker.schema_registry_url}))
    got = [de(m.value(), SerializationContext(topic, MessageField.VALUE)) for m in msgs]
    assert got == users

    # int32 -> int64 is in one wire group: compatible; a field added: compatible.
    v2 = message_class(pkg, [("name", 1, F.TYPE_STRING), ("age", 2, F.TYPE_INT64),
                             ("email", 3, F.TYPE_STRING)])
    ser2 = ProtobufSerializer(v2, sr, {"use.deprecated.format": False})
    ser2(v2(name="x", age=1, email="e"), SerializationContext(topic, MessageField.VALUE))
    assert sr.get_versions(subject) == [1, 2]
    id2 = sr.get_version(subject, 2).schema_id
    assert id2 != latest.schema_id
    # Field 2 reused as a string: rejected with Confluent's reason.
    bad = message_class(pkg, [("name", 1, F.TYPE_STRING), ("age", 2, F.TYPE_STRING)])
    with pytest.raises(SchemaRegistryError) as e:
        ProtobufSerializer(bad, sr, {"use.deprecated.format": False})(
            bad(name="x", age="y"), SerializationContext(topic, MessageField.VALUE))
    assert e.value.http_status_code == 409
    assert "FIELD_SCALAR_KIND_CHANGED" in e.value.error_message
    assert "#/User/2" in e.value.error_message

    broker.restart()
    sr = client(broker)
    assert sr.get_version(subject, 1).schema_id == latest.schema_id
    assert sr.get_version(subject, 2).schema_id == id2
    # Re-registering the first schema after the restart finds its id.
    assert sr.register_schema(subject, sr.get_version(subject, 1).schema) == latest.schema_id
    de = ProtobufDeserializer(User, {"use.deprecated.format": False},
                              SchemaRegistryClient({"url": broker.schema_registry_url}))
    assert de(msgs[0].value(), SerializationContext(topic, MessageField.VALUE)) == users[0]


PROTO_V1 = """syntax = "proto3";
package shop;

message Order {
  string id = 1;
  int32 quantity = 2;
}
"""


def test_protobuf_text_schemas_and_errors(broker):
    subject = unique_topic("pbtext") + "-value"
    st, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                       {"schema": PROTO_V1, "schemaType": "PROTOBUF"})
    assert st == 200
    sid = body["id"]
    st, body, _ = http(broker, "GET", f"/subjects/{subject}/versions/1")
    assert body["schemaType"] == "PROTOBUF" and body["schema"] == PROTO_V1
    # Lookup by the same text finds it; format=serialized is a base64 FileDescriptorProto.
    st, body, _ = http(broker, "POST", f"/subjects/{subject}",
                       {"schema": PROTO_V1, "schemaType": "PROTOBUF"})
    assert (st, body["id"]) == (200, sid)
    st, body, _ = http(broker, "GET", f"/schemas/ids/{sid}?format=serialized")
    import base64
    fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(body["schema"]))
    assert fd.package == "shop" and fd.message_type[0].name == "Order"

    # A syntax error is 422/42201 with the line and column.
    bad = "syntax = \"proto3\";\nmessage M {\n  string a = 1\n}\n"
    st, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                       {"schema": bad, "schemaType": "PROTOBUF"})
    assert (st, body["error_code"]) == (422, 42201)
    assert "schema:4:1" in body["message"], body
    # An import without a reference is 42201 naming the import.
    imp = 'syntax = "proto3";\nimport "other.proto";\nmessage M { Other o = 1; }\n'
    st, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                       {"schema": imp, "schemaType": "PROTOBUF"})
    assert (st, body["error_code"]) == (422, 42201) and "other.proto" in body["message"]


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


def test_get_schemas_normalize_and_modes(broker):
    sr = client(broker)
    prefix = unique_topic("all")
    for i in range(3):
        sr.register_schema(f"{prefix}-a", avro({**USER_V1, "fields": USER_V1["fields"] + [
            {"name": f"f{j}", "type": "int", "default": 0} for j in range(i)]}))
    sr.register_schema(f"{prefix}-b", Schema('"string"', "AVRO"))
    st, body, _ = http(broker, "GET", f"/schemas?subjectPrefix={prefix}")
    assert st == 200 and [(s["subject"], s["version"]) for s in body] == [
        (f"{prefix}-a", 1), (f"{prefix}-a", 2), (f"{prefix}-a", 3), (f"{prefix}-b", 1)]
    st, body, _ = http(broker, "GET", f"/schemas?subjectPrefix={prefix}&latestOnly=true")
    assert [(s["subject"], s["version"]) for s in body] == [(f"{prefix}-a", 3), (f"{prefix}-b", 1)]
    st, body, _ = http(broker, "GET", f"/schemas?subjectPrefix={prefix}&offset=1&limit=2")
    assert [s["version"] for s in body] == [2, 3]
    http(broker, "DELETE", f"/subjects/{prefix}-b")
    assert len(http(broker, "GET", f"/schemas?subjectPrefix={prefix}")[1]) == 3
    assert len(http(broker, "GET", f"/schemas?subjectPrefix={prefix}&deleted=true")[1]) == 4

    # normalize=true: {"type": "int"} and "int" are one schema.
    ns = unique_topic("norm")
    a = '{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}'
    b = '{"name":"N","type":"record","fields":[{"type":{"type":"int"},"name":"x"}]}'
    id_a = http(broker, "POST", f"/subjects/{ns}/versions", {"schema": a})[1]["id"]
    st, body, _ = http(broker, "POST", f"/subjects/{ns}", {"schema": b})
    assert (st, body["error_code"]) == (404, 40403)
    st, body, _ = http(broker, "POST", f"/subjects/{ns}?normalize=true", {"schema": b})
    assert (st, body["id"]) == (200, id_a)
    st, body, _ = http(broker, "PUT", f"/config/{ns}", {"normalize": True})
    assert st == 200
    assert http(broker, "GET", f"/config/{ns}")[1]["normalize"] is True
    assert http(broker, "POST", f"/subjects/{ns}/versions", {"schema": b})[1]["id"] == id_a

    # Per-subject READONLY.
    ro = unique_topic("ro")
    sr.register_schema(ro, Schema('"string"', "AVRO"))
    assert http(broker, "GET", f"/mode/{ro}")[1]["error_code"] == 40409
    assert http(broker, "GET", f"/mode/{ro}?defaultToGlobal=true")[1] == {"mode": "READWRITE"}
    assert http(broker, "PUT", f"/mode/{ro}", {"mode": "READONLY"})[1] == {"mode": "READONLY"}
    st, body, _ = http(broker, "POST", f"/subjects/{ro}/versions", {"schema": '"long"'})
    assert (st, body["error_code"]) == (422, 42205)
    assert http(broker, "DELETE", f"/subjects/{ro}")[1]["error_code"] == 42205
    assert http(broker, "DELETE", f"/mode/{ro}")[1] == {"mode": "READONLY"}
    assert http(broker, "POST", f"/subjects/{ro}/versions", {"schema": '"long"'})[0] == 409

    # IMPORT: only on an empty subject unless force; explicit ids and versions are kept.
    assert http(broker, "PUT", f"/mode/{ro}", {"mode": "IMPORT"})[1]["error_code"] == 42205
    assert http(broker, "PUT", f"/mode/{ro}?force=true", {"mode": "IMPORT"})[0] == 200
    imp = unique_topic("imp")
    assert http(broker, "PUT", f"/mode/{imp}", {"mode": "IMPORT"})[1] == {"mode": "IMPORT"}
    st, body, _ = http(broker, "POST", f"/subjects/{imp}/versions",
                       {"schema": '"bytes"', "id": 5000, "version": 7})
    assert (st, body) == (200, {"id": 5000})
    st, body, _ = http(broker, "GET", f"/subjects/{imp}/versions/7")
    assert body["id"] == 5000
    # The id of another schema cannot be reused.
    st, body, _ = http(broker, "POST", f"/subjects/{imp}/versions",
                       {"schema": '"float"', "id": 5000, "version": 8})
    assert (st, body["error_code"]) == (422, 42207)
    # Outside IMPORT mode an explicit id is refused.
    st, body, _ = http(broker, "POST", f"/subjects/{ns}/versions", {"schema": '"int"', "id": 9})
    assert (st, body["error_code"]) == (422, 42205)
    http(broker, "PUT", f"/mode/{imp}", {"mode": "READWRITE"})
    # New ids continue above imported ones.
    assert sr.register_schema(unique_topic("after"), Schema('"double"', "AVRO")) > 5000


def test_oversized_and_wrong_content_type(broker):
    subject = unique_topic("big")
    huge = {"schema": json.dumps({"type": "record", "name": "B", "doc": "x" * (3 << 20),
                                  "fields": []})}
    st, body, _ = http(broker, "POST", f"/subjects/{subject}/versions", huge)
    assert st == 413 and body["error_code"] == 413
    st, body, _ = http(broker, "POST", f"/subjects/{subject}/versions", {"schema": '"int"'},
                       ctype="text/xml")
    assert (st, body["error_code"]) == (415, 415)
    st, body, _ = http(broker, "GET", f"/subjects/{subject}/versions/1")
    assert (st, body["error_code"]) == (404, 40401)


def test_schema_id_validation_on_produce(broker):
    from confluent_kafka.schema_registry.avro import AvroSerializer
    sr = client(broker)
    topic = create_topic(broker, config={"confluent.value.schema.validation": "true"})
    ser = AvroSerializer(sr, json.dumps(USER_V1))
    ctx = SerializationContext(topic, MessageField.VALUE)
    good = [ser({"name": f"u{i}", "age": i}, ctx) for i in range(5)]
    unknown_id = b"\x00" + (987654).to_bytes(4, "big") + good[0][5:]
    p = Producer(producer_config(broker, **{"linger.ms": 0}))
    d = Delivered()
    for v in good:
        p.produce(topic, value=v, on_delivery=d)
    p.flush(30)
    bad = Delivered()
    p.produce(topic, value=b"raw bytes, no schema", on_delivery=bad)
    p.flush(30)
    p.produce(topic, value=unknown_id, on_delivery=bad)
    p.flush(30)
    p.produce(topic, key=b"k", value=None, on_delivery=d)  # a tombstone is not checked
    p.flush(30)
    for v in good:
        p.produce(topic, value=v, on_delivery=d)
    assert p.flush(30) == 0
    assert not d.errors, d.errors
    assert len(bad.errors) == 2
    assert all(e.code() == KafkaError.INVALID_RECORD for e, _, _ in bad.errors), bad.errors
    assert all("INVALID_RECORD" in e.name() for e, _, _ in bad.errors)
    msgs = consume_all(broker, topic)
    assert [m.value() for m in msgs] == good + [None] + good


def test_schema_id_validation_reasons_and_redpanda_alias(broker):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError as PyKafkaError
    sr = client(broker)
    topic = create_topic(broker, config={"redpanda.key.schema.id.validation": "true"})
    sid = sr.register_schema(unique_topic("k"), Schema('"string"', "AVRO"))
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0, linger_ms=0)
    ok = prod.send(topic, key=b"\x00" + sid.to_bytes(4, "big") + b"\x02a", value=b"anything")
    ok.get(timeout=30)
    f = prod.send(topic, key=b"\x00" + (424242).to_bytes(4, "big"), value=b"v")
    with pytest.raises(PyKafkaError) as e:
        f.get(timeout=30)
    # kafka-python shows the partition's error_message (librdkafka only the code).
    assert "record 0: key schema id 424242 is not registered" in str(e.value), repr(e.value)
    f = prod.send(topic, key=b"raw key", value=b"v")
    with pytest.raises(PyKafkaError) as e:
        f.get(timeout=30)
    assert "key does not start with the Confluent wire-format magic byte 0" in str(e.value)
    # A null key is not checked.
    prod.send(topic, key=None, value=b"no key").get(timeout=30)
    prod.close()


def test_protobuf_serializer_registers_imports_as_references(broker):
    """A message whose file imports another file and google/protobuf/timestamp.proto: the
    serializer registers the imported file as its own subject and refers to it; Google's
    well-known file needs no reference. The deserializer rebuilds both from the registry."""
    from google.protobuf import timestamp_pb2
    pkg = unique_topic("dep").replace("-", "_")
    dep = descriptor_pb2.FileDescriptorProto(name=f"{pkg}/money.proto", package=pkg,
                                             syntax="proto3")
    money = dep.message_type.add(name="Money")
    money.field.add(name="cents", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    main = descriptor_pb2.FileDescriptorProto(
        name=f"{pkg}/item.proto", package=pkg, syntax="proto3",
        dependency=[dep.name, "google/protobuf/timestamp.proto"])
    item = main.message_type.add(name="Item")
    item.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    item.field.add(name="price", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                   type_name=f".{pkg}.Money")
    item.field.add(name="at", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                   type_name=".google.protobuf.Timestamp")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(dep)
    pool.Add(main)
    Item = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.Item"))
    Money = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.Money"))

    sr = client(broker)
    topic = create_topic(broker)
    ctx = SerializationContext(topic, MessageField.VALUE)
    ser = ProtobufSerializer(Item, sr, {"use.deprecated.format": False})
    items = []
    for i in range(3):
        it = Item(name=f"thing{i}", price=Money(cents=100 * i))
        it.at.seconds = 1_700_000_000 + i
        items.append(it)
    p = Producer(producer_config(broker))
    for it in items:
        p.produce(topic, value=ser(it, ctx))
    assert p.flush(30) == 0

    latest = sr.get_latest_version(f"{topic}-value")
    refs = latest.schema.references
    assert [(r.name, r.subject) for r in refs] == [(dep.name, dep.name)]
    from urllib.parse import quote
    st, body, _ = http(broker, "GET",
                       f"/subjects/{quote(dep.name, safe='')}/versions/1/referencedby")
    assert (st, body) == (200, [latest.schema_id])
    de = ProtobufDeserializer(Item, {"use.deprecated.format": False},
                              SchemaRegistryClient({"url": broker.schema_registry_url}))
    got = [de(m.value(), ctx) for m in consume_all(broker, topic)]
    assert got == items


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
