"""Registry-wide endpoints and modes: GET /schemas and its filters, normalize (request and
config), per-subject READONLY, IMPORT mode with explicit ids and versions, and request limits
(oversized bodies, content types)."""

from __future__ import annotations

import json

from confluent_kafka.schema_registry import Schema

from conftest import unique_topic
from test_schema_registry import USER_V1, avro, client, http


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
