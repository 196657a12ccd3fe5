"""Protobuf in the built-in schema registry with confluent-kafka's ProtobufSerializer and
ProtobufDeserializer: register, produce, consume and deserialize; evolve compatibly and
incompatibly; imports registered as references; ids kept across a restart; `.proto` text,
descriptors and parse errors through the REST API.

Message classes are built from FileDescriptorProtos with google.protobuf's descriptor_pool /
message_factory, so no protoc is needed."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import consume_all, create_topic, producer_config, unique_topic
from test_schema_registry import client, http

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
    st, body, _ = http(broker, "GET",
                       f"/subjects/{quote(dep.name, safe='')}/versions/1/referencedby")
    assert (st, body) == (200, [latest.schema_id])
    de = ProtobufDeserializer(Item, {"use.deprecated.format": False},
                              SchemaRegistryClient({"url": broker.schema_registry_url}))
    got = [de(m.value(), ctx) for m in consume_all(broker, topic)]
    assert got == items
