"""docker-compose.yml at the repository root is valid and agrees with the binary's flags."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import strictyaml

from conftest import broker_binary

ROOT = Path(__file__).resolve().parents[2]


def load():
    text = (ROOT / "docker-compose.yml").read_text()
    return strictyaml.dirty_load(text, allow_flow_style=True).data


def flags(cmd: list[str]) -> dict[str, str]:
    out = {}
    for arg in cmd[1:]:
        assert arg.startswith("--") and "=" in arg, f"write flags as --name=value: {arg}"
        k, v = arg[2:].split("=", 1)
        out[k] = v
    return out


def test_compose_file_matches_the_binary():
    compose = load()
    services = compose["services"]
    help_text = subprocess.run([str(broker_binary()), "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    known = set(re.findall(r"--([a-z0-9-]+)", help_text))
    brokers = {name: s for name, s in services.items() if name.startswith("broker")}
    assert len(brokers) == 3
    assert (ROOT / "Dockerfile").exists()
    seen_ids, seen_kafka = set(), set()
    rpc = {}
    for name, s in brokers.items():
        assert s["build"] == "."
        cmd = s["command"]
        assert cmd[0] == "serve"
        f = flags(cmd)
        unknown = set(f) - known
        assert not unknown, f"{name}: flags the binary does not take: {unknown}"
        seen_ids.add(f["node-id"])
        rpc[name] = f["advertised-rpc-addr"]
        assert f["advertised-rpc-addr"].split(":")[0] == name
        assert f["advertised-rpc-addr"].split(":")[1] == f["rpc-addr"].split(":")[1]
        # The advertised Kafka port is the one published on the host.
        kport = f["kafka-addr"].rsplit(":", 1)[1]
        assert f["advertised-kafka-addr"] == f"localhost:{kport}"
        assert f"{kport}:{kport}" in s["ports"], (name, s["ports"])
        seen_kafka.add(kport)
        vol = s["volumes"][0].split(":")
        assert vol[1] == f["data-dir"] and vol[0] in compose["volumes"]
        assert f["s3-endpoint"].startswith("http://minio:")
    assert len(seen_ids) == 3 and len(seen_kafka) == 3
    # Every broker gets the same seeds: every broker's RPC address.
    seeds = {flags(s["command"])["seeds"] for s in brokers.values()}
    assert seeds == {",".join(sorted(rpc.values()))}, seeds
    trino = services["trino"]
    props = (ROOT / "docker/trino/icestream.properties").read_text()
    assert "iceberg.rest-catalog.uri=http://broker1:" + \
        flags(brokers["broker1"]["command"])["iceberg-catalog-addr"].rsplit(":", 1)[1] in props
    assert any(v.startswith("broker1-data:" + flags(brokers["broker1"]["command"])["data-dir"])
               for v in trino["volumes"])
