"""Compatibility matrices through the REST API, one per schema format: each case registers an
old schema under BACKWARD, FORWARD and FULL, then asks /compatibility (verbose) about a new one
and registers it, asserting the verdict the Confluent registry documents for that change
(Avro: schema resolution; Protobuf: its SchemaDiff rules; JSON Schema: open vs closed content
models). Plus one transitive case per format."""

from __future__ import annotations

import json

import pytest

from conftest import unique_topic
from test_schema_registry import http

LEVELS = ("BACKWARD", "FORWARD", "FULL")


def verdicts(broker, schema_type: str, old: str, new: str, rule: str | None = None):
    """{level: compatible?} for `new` after `old`, checked and registered at each level."""
    got = {}
    for level in LEVELS:
        subject = unique_topic(f"m-{level.lower()}")
        assert http(broker, "PUT", f"/config/{subject}", {"compatibility": level})[0] == 200
        st, body, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                           {"schema": old, "schemaType": schema_type})
        assert st == 200, body
        st, body, _ = http(broker, "POST",
                           f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                           {"schema": new, "schemaType": schema_type})
        assert st == 200, body
        ok = body["is_compatible"]
        if not ok:
            assert body["messages"] and level in body["messages"][0], body
            if rule:
                assert any(rule in m for m in body["messages"]), (rule, body["messages"])
        st, reg, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                          {"schema": new, "schemaType": schema_type})
        assert st == (200 if ok else 409), (level, reg)
        if not ok:
            assert reg["error_code"] == 409 and level in reg["message"]
        got[level] = ok
    return got


def expect(b: bool, f: bool, full: bool) -> dict:
    return {"BACKWARD": b, "FORWARD": f, "FULL": full}


# ------------------------------------------------------------------------------------ Avro

def rec(*fields) -> str:
    return json.dumps({"type": "record", "name": "User", "namespace": "m",
                       "fields": [{"name": "name", "type": "string"}, *fields]})


COLOR = lambda *s: {"name": "c", "type": {"type": "enum", "name": "Color", "symbols": list(s)}}  # noqa: E731

AVRO_CASES = {
    "field added with default": (rec(), rec({"name": "age", "type": "int", "default": 0}),
                                 expect(True, True, True), None),
    "field added without default": (rec(), rec({"name": "age", "type": "int"}),
                                    expect(False, True, False),
                                    "READER_FIELD_MISSING_DEFAULT_VALUE"),
    "field removed without default": (rec({"name": "age", "type": "int"}), rec(),
                                      expect(True, False, False),
                                      "READER_FIELD_MISSING_DEFAULT_VALUE"),
    "field removed with default": (rec({"name": "age", "type": "int", "default": 1}), rec(),
                                   expect(True, True, True), None),
    "int promoted to long": (rec({"name": "n", "type": "int"}), rec({"name": "n", "type": "long"}),
                             expect(True, False, False), "TYPE_MISMATCH"),
    "long narrowed to int": (rec({"name": "n", "type": "long"}), rec({"name": "n", "type": "int"}),
                             expect(False, True, False), "TYPE_MISMATCH"),
    "field renamed with alias": (rec({"name": "n", "type": "int"}),
                                 rec({"name": "m", "type": "int", "aliases": ["n"]}),
                                 expect(True, False, False), None),
    "field renamed without alias": (rec({"name": "n", "type": "int"}),
                                    rec({"name": "m", "type": "int"}),
                                    expect(False, False, False),
                                    "READER_FIELD_MISSING_DEFAULT_VALUE"),
    "enum symbol added": (rec(COLOR("RED")), rec(COLOR("RED", "BLUE")),
                          expect(True, False, False), "MISSING_ENUM_SYMBOLS"),
    "enum symbol removed": (rec(COLOR("RED", "BLUE")), rec(COLOR("RED")),
                            expect(False, True, False), "MISSING_ENUM_SYMBOLS"),
    "string changed to int": (rec({"name": "n", "type": "string"}),
                              rec({"name": "n", "type": "int"}), expect(False, False, False),
                              "TYPE_MISMATCH"),
}


@pytest.mark.parametrize("case", list(AVRO_CASES))
def test_avro_matrix(broker, case):
    old, new, want, rule = AVRO_CASES[case]
    assert verdicts(broker, "AVRO", old, new, rule) == want


# -------------------------------------------------------------------------------- Protobuf

def proto(body: str, package: str = "m", syntax: str = "proto3") -> str:
    return f'syntax = "{syntax}";\npackage {package};\n{body}\n'


USER = "message User {{ {} }}"
BASE = proto(USER.format("string name = 1; int32 age = 2;"))

PROTO_CASES = {
    "field added": (BASE, proto(USER.format("string name = 1; int32 age = 2; bool vip = 3;")),
                    expect(True, True, True), None),
    "field removed": (BASE, proto(USER.format("string name = 1;")), expect(True, True, True),
                      None),
    "field renamed": (BASE, proto(USER.format("string full_name = 1; int32 age = 2;")),
                      expect(True, True, True), None),
    "int32 to int64 (one wire group)": (BASE, proto(USER.format("string name = 1; int64 age = 2;")),
                                        expect(True, True, True), None),
    "string to bytes": (BASE, proto(USER.format("bytes name = 1; int32 age = 2;")),
                        expect(True, True, True), None),
    "int32 to sint32": (BASE, proto(USER.format("string name = 1; sint32 age = 2;")),
                        expect(False, False, False), "FIELD_SCALAR_KIND_CHANGED"),
    "field number reused with another type": (
        BASE, proto(USER.format("string name = 1; string age = 2;")),
        expect(False, False, False), "FIELD_SCALAR_KIND_CHANGED"),
    "scalar changed to message": (
        BASE, proto(USER.format("string name = 1; Age age = 2;") + " message Age { int32 v = 1; }"),
        expect(False, False, False), "FIELD_KIND_CHANGED"),
    "message removed": (BASE + "message Extra { int32 x = 1; }", BASE,
                        expect(False, True, False), "MESSAGE_REMOVED"),
    "message added": (BASE, BASE + "message Extra { int32 x = 1; }",
                      expect(True, False, False), "MESSAGE_REMOVED"),
    "package changed": (BASE, proto(USER.format("string name = 1; int32 age = 2;"), package="n"),
                        expect(False, False, False), "PACKAGE_CHANGED"),
    "enum value added": (
        proto("enum Color { RED = 0; } message User { Color c = 1; }"),
        proto("enum Color { RED = 0; BLUE = 1; } message User { Color c = 1; }"),
        expect(True, True, True), None),
    "one field moved into a new oneof": (
        BASE, proto(USER.format("string name = 1; oneof o { int32 age = 2; }")),
        expect(True, True, True), None),
    "two fields moved into one oneof": (
        BASE, proto(USER.format("oneof o { string name = 1; int32 age = 2; }")),
        expect(False, True, False), "MULTIPLE_FIELDS_MOVED_TO_ONEOF"),
    "proto2 required field added": (
        proto("message User { optional string name = 1; }", syntax="proto2"),
        proto("message User { optional string name = 1; required int32 age = 2; }",
              syntax="proto2"),
        expect(False, False, False), "REQUIRED_FIELD"),
}


@pytest.mark.parametrize("case", list(PROTO_CASES))
def test_protobuf_matrix(broker, case):
    old, new, want, rule = PROTO_CASES[case]
    assert verdicts(broker, "PROTOBUF", old, new, rule) == want


# ----------------------------------------------------------------------------- JSON Schema

def obj(props: dict, required=(), closed: bool | None = None) -> str:
    s = {"type": "object", "properties": props}
    if required:
        s["required"] = list(required)
    if closed is not None:
        s["additionalProperties"] = not closed
    return json.dumps(s)


S, I = {"type": "string"}, {"type": "integer"}

JSON_CASES = {
    "property added to an open model": (obj({"a": S}), obj({"a": S, "b": I}),
                                        expect(False, True, False),
                                        "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"),
    "property added to a closed model": (obj({"a": S}, closed=True),
                                         obj({"a": S, "b": I}, closed=True),
                                         expect(True, False, False), None),
    "property removed from an open model": (obj({"a": S, "b": I}), obj({"a": S}),
                                            expect(True, False, False), None),
    "property removed from a closed model": (obj({"a": S, "b": I}, closed=True),
                                             obj({"a": S}, closed=True),
                                             expect(False, True, False),
                                             "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"),
    "required added": (obj({"a": S}), obj({"a": S}, required=["a"]),
                       expect(False, True, False), "REQUIRED_ATTRIBUTE_ADDED"),
    "model closed": (obj({"a": S}), obj({"a": S}, closed=True),
                     expect(False, True, False), "ADDITIONAL_PROPERTIES_REMOVED"),
    "type changed": (obj({"a": S}), obj({"a": I}), expect(False, False, False), "TYPE_CHANGED"),
    "integer widened to number": (obj({"a": I}), obj({"a": {"type": "number"}}),
                                  expect(True, False, False), None),
    "enum value added": (obj({"a": {"enum": ["x"]}}), obj({"a": {"enum": ["x", "y"]}}),
                         expect(True, False, False), None),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_json_schema_matrix(broker, case):
    old, new, want, rule = JSON_CASES[case]
    assert verdicts(broker, "JSON", old, new, rule) == want


# ------------------------------------------------------------------------------ transitive

TRANSITIVE = {
    # v2 adds a field with a default, v3 drops the default: v3 reads v2 data, not v1 data.
    "AVRO": (rec(), rec({"name": "age", "type": "int", "default": 0}),
             rec({"name": "age", "type": "int"})),
    # v2 drops field 2, v3 reuses number 2 with another type: fine against v2 only.
    "PROTOBUF": (BASE, proto(USER.format("string name = 1;")),
                 proto(USER.format("string name = 1; string age = 2;"))),
    # v2 closes the model, v3 adds an optional property to it: fine against v2 only.
    "JSON": (obj({"a": S}), obj({"a": S}, closed=True), obj({"a": S, "b": I}, closed=True)),
}


@pytest.mark.parametrize("schema_type", list(TRANSITIVE))
def test_transitive_checks_every_version(broker, schema_type):
    v1, v2, v3 = TRANSITIVE[schema_type]
    for level, ok in [("BACKWARD", True), ("BACKWARD_TRANSITIVE", False)]:
        subject = unique_topic("tr")
        http(broker, "PUT", f"/config/{subject}", {"compatibility": "NONE"})
        for s in (v1, v2):
            assert http(broker, "POST", f"/subjects/{subject}/versions",
                        {"schema": s, "schemaType": schema_type})[0] == 200
        http(broker, "PUT", f"/config/{subject}", {"compatibility": level})
        st, body, _ = http(broker, "POST", f"/compatibility/subjects/{subject}/versions?verbose=true",
                           {"schema": v3, "schemaType": schema_type})
        assert body["is_compatible"] is ok, (schema_type, level, body)
        if not ok:
            assert "version 1" in " ".join(body["messages"])
        st, _, _ = http(broker, "POST", f"/subjects/{subject}/versions",
                        {"schema": v3, "schemaType": schema_type})
        assert st == (200 if ok else 409)
