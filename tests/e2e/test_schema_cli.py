"""`icestream schema ...`: the CLI as a client of the broker's schema registry REST API."""

from __future__ import annotations

import json

from conftest import free_port
from test_cli import assert_one_line_error, cli, cli_json

V1 = {"type": "record", "name": "Order", "namespace": "shop",
      "fields": [{"name": "id", "type": "long"}]}
# Adds a field with a default: compatible under BACKWARD.
V2 = {**V1, "fields": V1["fields"] + [{"name": "note", "type": "string", "default": ""}]}
# Adds a field without a default: not BACKWARD compatible.
V_BAD = {**V1, "fields": V1["fields"] + [{"name": "qty", "type": "int"}]}


def sr(broker, *args, **kw):
    return cli(broker, "--schema-registry-url", broker.schema_registry_url, "schema", *args, **kw)


def sr_json(broker, *args, **kw):
    return cli_json(broker, "--schema-registry-url", broker.schema_registry_url, "schema", *args,
                    **kw)


def write(tmp_path, name, schema) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(schema, indent=2))
    return str(path)


def test_schema_register_get_list_check_config_delete(broker, tmp_path):
    v1, v2, bad = (write(tmp_path, "v1.avsc", V1), write(tmp_path, "v2.avsc", V2),
                   write(tmp_path, "bad.avsc", V_BAD))

    # register prints the id; the same schema again keeps its id
    first_id = int(sr(broker, "register", "orders-value", "--file", v1).stdout.strip())
    out = sr_json(broker, "register", "orders-value", "--file", v1, "--type", "AVRO")
    assert out == {"subject": "orders-value", "id": first_id}

    got = sr_json(broker, "get", "orders-value")
    assert got["subject"] == "orders-value"
    assert got["version"] == 1 and got["id"] == first_id and got["type"] == "AVRO"
    assert json.loads(got["schema"]) == V1
    table = sr(broker, "get", "orders-value", "--version", "1").stdout
    assert "orders-value" in table and "AVRO" in table and '"Order"' in table
    by_id = sr_json(broker, "get", "--id", str(first_id))
    assert by_id["subject"] == "orders-value" and by_id["version"] == 1
    assert json.loads(by_id["schema"]) == V1

    assert sr_json(broker, "list") == ["orders-value"]
    assert "orders-value" in sr(broker, "list").stdout

    # a compatible evolution is accepted by check and by register
    assert sr(broker, "check", "orders-value", "--file", v2).stdout.strip() == "compatible"
    out = sr_json(broker, "check", "orders-value", "--file", v2, "--version", "latest")
    assert out["compatible"] is True
    second_id = sr_json(broker, "register", "orders-value", "--file", v2)["id"]
    assert second_id != first_id
    assert sr_json(broker, "list", "orders-value") == {"subject": "orders-value",
                                                       "versions": [1, 2]}

    # an incompatible one: exit 1, one line with the registry's reasons
    res = sr(broker, "check", "orders-value", "--file", bad, check=False)
    assert res.returncode == 1
    assert_one_line_error(res, "incompatible:", "qty")
    assert res.stdout.strip() == ""
    res = sr(broker, "register", "orders-value", "--file", bad, check=False)
    assert_one_line_error(res, "incompatible with subject 'orders-value'")

    # config: global and per subject
    assert sr_json(broker, "config") == {"subject": None, "compatibility": "BACKWARD"}
    assert sr_json(broker, "config", "orders-value") == {"subject": "orders-value",
                                                         "compatibility": "BACKWARD"}
    out = sr_json(broker, "config", "orders-value", "--set", "none")
    assert out == {"subject": "orders-value", "compatibility": "NONE"}
    assert "NONE" in sr(broker, "config", "orders-value").stdout
    assert sr_json(broker, "config")["compatibility"] == "BACKWARD"
    assert sr(broker, "check", "orders-value", "--file", bad).stdout.strip() == "compatible"
    sr(broker, "config", "--set", "FULL")
    assert sr_json(broker, "config")["compatibility"] == "FULL"

    # delete: one version, then the subject soft, then for good
    out = sr_json(broker, "delete", "orders-value", "--version", "2")
    assert out == {"subject": "orders-value", "versions": [2], "permanent": False}
    assert sr_json(broker, "list", "orders-value")["versions"] == [1]
    assert sr_json(broker, "list", "orders-value", "--deleted")["versions"] == [1, 2]
    assert "soft-deleted" in sr(broker, "delete", "orders-value").stdout
    assert sr_json(broker, "list") == []
    assert sr_json(broker, "list", "--deleted") == ["orders-value"]
    out = sr_json(broker, "delete", "orders-value", "--permanent")
    assert out["permanent"] is True and out["versions"] == [1, 2]
    assert sr_json(broker, "list", "--deleted") == []

    # permanent delete of a subject never soft-deleted soft-deletes it first
    sr(broker, "register", "tmp-value", "--file", v1)
    out = sr_json(broker, "delete", "tmp-value", "--permanent")
    assert out == {"subject": "tmp-value", "versions": [1], "permanent": True}
    assert sr_json(broker, "list", "--deleted") == []


def test_schema_cli_errors_are_one_line(broker, tmp_path):
    v1 = write(tmp_path, "v1.avsc", V1)
    res = sr(broker, "get", "nope", check=False)
    assert_one_line_error(res, "subject 'nope' does not exist", "icestream schema list")
    res = sr(broker, "list", "nope", check=False)
    assert_one_line_error(res, "subject 'nope' does not exist")
    res = sr(broker, "delete", "nope", check=False)
    assert_one_line_error(res, "subject 'nope' does not exist")
    res = sr(broker, "get", "--id", "4242", check=False)
    assert_one_line_error(res, "schema id 4242 does not exist")
    # Checking against the latest version of an unknown subject: 40401, as Confluent answers.
    res = sr(broker, "check", "nope", "--file", v1, check=False)
    assert_one_line_error(res, "subject 'nope' does not exist")

    sr(broker, "register", "s-value", "--file", v1)
    res = sr(broker, "get", "s-value", "--version", "7", check=False)
    assert_one_line_error(res, "version 7 of subject 's-value' does not exist",
                          "icestream schema list s-value")

    broken = tmp_path / "broken.avsc"
    broken.write_text('{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    res = sr(broker, "register", "s-value", "--file", str(broken), check=False)
    assert_one_line_error(res, "invalid schema:")
    res = sr(broker, "register", "s-value", "--file", str(tmp_path / "missing.avsc"),
             check=False)
    assert_one_line_error(res, "cannot read schema file", "missing.avsc")
    res = sr(broker, "config", "--set", "SIDEWAYS", check=False)
    assert_one_line_error(res, "'SIDEWAYS' is not a compatibility level", "BACKWARD")

    dead = f"http://127.0.0.1:{free_port()}"
    res = cli(broker, "--schema-registry-url", dead, "schema", "list", check=False)
    assert_one_line_error(res, f"cannot reach the schema registry at {dead}",
                          "icestream serve", "--schema-registry-url")
    # pointing at another HTTP service (the admin API) says to check the URL
    res = cli(broker, "--schema-registry-url", broker.admin_url, "schema", "list", check=False)
    assert_one_line_error(res, "--schema-registry-url")
    res = cli(broker, "--schema-registry-url", "localhost:8081", "schema", "list", check=False)
    assert_one_line_error(res, "invalid schema registry url")


def test_schema_cli_protobuf_references_and_mode(broker, tmp_path):
    money = tmp_path / "money.proto"
    money.write_text('syntax = "proto3";\npackage dep;\nmessage Money { int64 cents = 1; }\n')
    item = tmp_path / "item.proto"
    item.write_text('syntax = "proto3";\npackage shop;\nimport "money.proto";\n'
                    'message Item { string name = 1; dep.Money price = 2; }\n')
    money_id = sr_json(broker, "register", "money-value", "--file", str(money),
                       "--type", "protobuf")["id"]
    # Without the reference the import is unknown; with it the schema registers.
    res = sr(broker, "register", "item-value", "--file", str(item), "--type", "PROTOBUF",
             check=False)
    assert_one_line_error(res, "invalid schema:", "money.proto")
    out = sr_json(broker, "register", "item-value", "--file", str(item), "--type", "PROTOBUF",
                  "--reference", "money.proto=money-value:1")
    assert out["id"] != money_id
    got = sr_json(broker, "get", "item-value")
    assert got["type"] == "PROTOBUF" and "dep.Money" in got["schema"]
    # Field 1 reused with another type: incompatible, with Confluent's rule name.
    bad = tmp_path / "bad.proto"
    bad.write_text(item.read_text().replace("string name = 1", "int64 name = 1"))
    res = sr(broker, "check", "item-value", "--file", str(bad), "--type", "PROTOBUF",
             "--reference", "money.proto=money-value:latest", check=False)
    assert_one_line_error(res, "incompatible:", "FIELD_SCALAR_KIND_CHANGED", "#/Item/1")
    # A referenced schema cannot be deleted.
    res = sr(broker, "delete", "money-value", check=False)
    assert_one_line_error(res, "other schemas reference subject 'money-value'")
    res = sr(broker, "register", "x", "--file", str(item), "--reference", "nonsense",
             check=False)
    assert res.returncode != 0 and "NAME=SUBJECT:VERSION" in res.stderr

    # mode: global and per subject; READONLY refuses registrations.
    assert sr_json(broker, "mode") == {"subject": None, "mode": "READWRITE"}
    assert sr_json(broker, "mode", "item-value", "--set", "readonly")["mode"] == "READONLY"
    assert "READONLY" in sr(broker, "mode", "item-value").stdout
    res = sr(broker, "register", "item-value", "--file", str(money), "--type", "PROTOBUF",
             check=False)
    assert_one_line_error(res, "does not permit", "READWRITE")
    res = sr(broker, "mode", "item-value", "--set", "IMPORT", check=False)
    assert_one_line_error(res, "existing subjects")
    assert sr_json(broker, "mode", "item-value", "--set", "IMPORT", "--force")["mode"] == "IMPORT"
    res = sr(broker, "mode", "--set", "SIDEWAYS", check=False)
    assert_one_line_error(res, "'SIDEWAYS' is not a mode")
