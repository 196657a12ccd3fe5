"""The operations kit (deploy/): Prometheus rules, the Grafana dashboard and the Helm chart.

- promtool accepts the alert rules;
- every `icestream_*` metric the dashboard and the rules query exists on a live broker after a
  short workload (so a renamed or missing metric breaks CI, not an operator's dashboard);
- the Helm chart lints and renders, and what it passes to `icestream serve` (flags and
  ICESTREAM_* variables) is what the binary accepts.

promtool (Debian's `prometheus`) and helm are installed by scripts/test; a missing tool fails.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import (Delivered, broker_binary, create_topic, http_get, produce,
                      producer_config, which)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "icestream-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "icestream.json"
CHART = DEPLOY / "helm" / "icestream"

METRIC = re.compile(r"\bicestream_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# ---------------------------------------------------------------------------- queries

def dashboard_queries() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in d["panels"] for t in p.get("targets", [])]


def rule_expressions() -> list[str]:
    """The `expr:` of every rule; block scalars (`expr: |`) are read to their dedent."""
    lines = RULES.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest not in ("|", ">", "|-", ">-"):
            out.append(rest)
            continue
        body = []
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i].strip())
            i += 1
        out.append(" ".join(body))
    return out


def metric_names(exprs) -> set[str]:
    """Metric names in PromQL: identifiers `icestream_...`, histogram series suffixes removed
    (label values and legends never start with `icestream_` in our files)."""
    names = set()
    for e in exprs:
        for n in METRIC.findall(e):
            for s in HISTOGRAM_SUFFIXES:
                if n.endswith(s):
                    n = n[: -len(s)]
            names.add(n)
    return names


def exposed_names(text: str) -> set[str]:
    """Metric names of a scrape, series as Prometheus stores them (`_total`, `_bucket`...) and
    with histogram suffixes stripped, the way `metric_names` does."""
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        n = re.split(r"[{ ]", line, maxsplit=1)[0]
        names.add(n)
        for s in HISTOGRAM_SUFFIXES:
            if n.endswith(s):
                names.add(n[: -len(s)])
    return names


def test_query_parser_reads_names_and_strips_histogram_suffixes():
    exprs = ['histogram_quantile(0.99, sum by (api, le) (rate(icestream_kafka_request_seconds_bucket[5m])))',
             'icestream_a / icestream_b > 0 and up{job="icestream"} == 0']
    assert metric_names(exprs) == {"icestream_kafka_request_seconds", "icestream_a", "icestream_b"}


# ---------------------------------------------------------------------------- rules, dashboard

def test_promtool_checks_the_rules():
    promtool = which("promtool")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_dashboard_json_is_generated_from_dashboard_py():
    spec = importlib.util.spec_from_file_location("dashboard", DEPLOY / "grafana" / "dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert DASHBOARD.read_text() == mod.render(), \
        "deploy/grafana/icestream.json is stale: run python3 deploy/grafana/dashboard.py"


def test_every_runbook_link_has_its_section_in_docs():
    doc = (ROOT / "docs" / "monitoring.md").read_text().lower()
    anchors = set(re.findall(r"docs/monitoring\.md#([a-z0-9-]+)", RULES.read_text()))
    assert anchors
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)}
    assert anchors <= headings, f"runbooks without a section: {sorted(anchors - headings)}"


# ---------------------------------------------------------------------------- live metrics

def http_json(url: str, method: str = "GET", body=None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def workload(broker) -> None:
    """What a broker does on a normal day, briefly: topics (one tiered, one an Iceberg table),
    produce, a consumer group that commits, a registered schema, and one request refused
    (a record over the topic's max.message.bytes) so that the error counter has a series."""
    plain = create_topic(broker, partitions=2)
    small = create_topic(broker, config={"max.message.bytes": "1024"})
    p = Producer(producer_config(broker, retries=0))
    refused = Delivered()
    p.produce(small, value=b"x" * 4096, on_delivery=refused)
    assert p.flush(30) == 0
    assert [e.code() for e, *_ in refused.errors] == [KafkaError.MSG_SIZE_TOO_LARGE], refused.errors
    tiered = create_topic(broker, config={"remote.storage.enable": "true"})
    lake = create_topic(broker, config={"iceberg.mode": "key_value",
                                        "iceberg.target.lag.ms": "1000"})
    for t in (plain, tiered, lake):
        produce(broker, t, [f"v{i}".encode() for i in range(50)])
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "opskit-group",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        # Keyless records are sticky-partitioned: all 50 may sit in either partition.
        c.assign([TopicPartition(plain, 0), TopicPartition(plain, 1)])
        msgs = []
        deadline = time.monotonic() + 30
        while not msgs and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                msgs.append(m)
        assert msgs, "consumed nothing"
        c.commit(message=msgs[0], asynchronous=False)
    finally:
        c.close()
    schema = {"type": "record", "name": "V", "fields": [{"name": "a", "type": "string"}]}
    http_json(f"{broker.schema_registry_url}/subjects/{plain}-value/versions", "POST",
              {"schema": json.dumps(schema)})


def test_every_queried_metric_exists_on_a_live_broker(broker):
    wanted = metric_names(dashboard_queries()) | metric_names(rule_expressions())
    assert len(wanted) > 20, sorted(wanted)
    workload(broker)
    # Per-topic Iceberg gauges appear once the translator ran a round: wait for that (bounded)
    # rather than for a time.
    deadline = time.monotonic() + 60
    while True:
        status, text, _ = http_get(f"{broker.admin_url}/metrics")
        assert status == 200
        missing = wanted - exposed_names(text)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, f"queried but not exposed by /metrics: {sorted(missing)}"
    # The single-node values operators expect: nothing under-replicated or offline.
    for name in ("icestream_under_replicated_partitions", "icestream_offline_partitions"):
        assert re.search(rf"^{name} 0$", text, flags=re.M), name


# ---------------------------------------------------------------------------- Helm chart

def helm(*args: str) -> str:
    r = subprocess.run([which("helm"), *args], capture_output=True, text=True)
    assert r.returncode == 0, f"helm {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


# Values that switch on every optional flag the chart can pass.
FULL_VALUES = [
    "--set", "objectStore.type=s3", "--set", "objectStore.s3.bucket=b",
    "--set", "objectStore.s3.endpoint=http://minio:9000", "--set", "objectStore.s3.pathStyle=true",
    "--set", "objectStore.credentialsSecret=s3-creds",
    "--set", "catalog.uri=http://polaris:8181/api/catalog", "--set", "catalog.warehouse=lake",
    "--set", "catalog.oauth2.clientId=id", "--set", "catalog.oauth2.serverUri=http://idp/token",
    "--set", "catalog.oauth2.scope=PRINCIPAL_ROLE:ALL", "--set", "catalog.credentialsSecret=cat",
    "--set", "cluster.id=opskit", "--set", "cluster.founders=3", "--set", "replicaCount=4",
]


def container_script(manifests: str) -> str:
    """The `args: - |` shell script of the broker container."""
    lines = manifests.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip() == "- |" and "args:" in lines[i - 1])
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    body = []
    for l in lines[start + 1:]:
        if l.strip() and len(l) - len(l.lstrip()) < indent:
            break
        body.append(l[indent:])
    return "\n".join(body)


def serve_help() -> str:
    return subprocess.run([str(broker_binary()), "serve", "--help"], capture_output=True,
                          text=True, check=True).stdout


def run_script(script: str, hostname: str, tmp_path: Path) -> list[str]:
    """Runs the entrypoint with a stub `icestream` that prints its arguments, one a line."""
    stub = tmp_path / "bin" / "icestream"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "HOSTNAME": hostname}
    r = subprocess.run(["/bin/sh", "-ec", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_helm_chart_lints_and_renders_what_the_binary_accepts(tmp_path):
    helm("lint", str(CHART))
    helm("lint", str(CHART), *FULL_VALUES)
    help_text = serve_help()
    flags = set(re.findall(r"^\s+(--[a-z0-9-]+)", help_text, flags=re.M))
    envs = set(re.findall(r"\[env: (ICESTREAM_[A-Z0-9_]+)", help_text))
    assert "--seeds" in flags and "ICESTREAM_SMP" in envs

    for values in ([], FULL_VALUES):
        out = helm("template", "rel", str(CHART), "--namespace", "ns", *values)
        script = container_script(out)
        argv = run_script(script, "rel-icestream-2", tmp_path)
        assert argv[0] == "serve", argv
        passed = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
        assert passed <= flags, f"flags icestream serve does not have: {sorted(passed - flags)}"
        # Node id from the ordinal; the pod's own DNS name advertised; seeds = the founders.
        opts = dict(zip(argv[1::2], argv[2::2]))
        assert opts["--node-id"] == "3"
        own = "rel-icestream-2.rel-icestream-headless.ns.svc.cluster.local"
        assert opts["--advertised-kafka-addr"] == f"{own}:9092"
        assert opts["--advertised-rpc-addr"] == f"{own}:9645"
        seeds = opts["--seeds"].split(",")
        assert seeds == [f"rel-icestream-{i}.rel-icestream-headless.ns.svc.cluster.local:9645"
                         for i in range(3)]
        set_env = set(re.findall(r"- name: (ICESTREAM_[A-Z0-9_]+)", out))
        assert set_env and set_env <= envs, sorted(set_env - envs)
        assert "kind: PodDisruptionBudget" in out and "clusterIP: None" in out
        assert out.count("path: /v1/status/ready") == 3
    # Variables the chart tells operators to put in its Secrets are real too.
    named = set()
    for f in CHART.rglob("*"):
        if f.is_file():
            named |= set(re.findall(r"ICESTREAM_[A-Z0-9_]+", f.read_text()))
    assert named <= envs, sorted(named - envs)
    assert "--s3-bucket" in " ".join(run_script(container_script(
        helm("template", "rel", str(CHART), "--namespace", "ns", *FULL_VALUES)),
        "rel-icestream-0", tmp_path))


def test_the_readiness_path_the_chart_probes_is_served(broker):
    status, body, _ = http_get(f"{broker.admin_url}/v1/status/ready")
    assert status == 200, body


# ---------------------------------------------------------------------------- cluster values

def test_replication_metrics_of_a_cluster_losing_a_broker(broker_factory):
    """The new replication gauges tell the truth on three brokers: leaders counted once,
    nothing under-replicated while all run, every partition under-replicated once a broker
    holding a replica of each is killed, and none offline (a majority lives)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from cluster import start_cluster, wait_formed
    from test_cluster import wait_topic_everywhere
    from test_tiering import metric

    brokers = start_cluster(broker_factory, 3, ["--replica-lag-time-max-ms", "2000"])
    wait_formed(brokers)
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics([NewTopic("replicated", 2, 3)], request_timeout=30)["replicated"].result(40)
    wait_topic_everywhere(brokers, "replicated", 2)
    produce(brokers[0], "replicated", [b"x"] * 20)

    def total(name, among):
        return sum(metric(b, name) for b in among)

    def until(what, cond, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not (v := cond()):
            assert time.monotonic() < deadline, f"never: {what}"
            time.sleep(0.2)
        return v

    until("each partition led by one broker", lambda: total("icestream_leader_partitions", brokers) == 2)
    assert total("icestream_leader_changes_total", brokers) >= 2
    until("all in sync", lambda: total("icestream_under_replicated_partitions", brokers) == 0)
    assert total("icestream_offline_partitions", brokers) == 0
    assert total("icestream_log_local_bytes", brokers) > 0

    brokers[2].kill9()
    survivors = brokers[:2]
    until("both partitions under-replicated on their (new) leaders",
          lambda: total("icestream_under_replicated_partitions", survivors) == 2)
    until("both partitions led by a survivor",
          lambda: total("icestream_leader_partitions", survivors) == 2)
    assert total("icestream_offline_partitions", survivors) == 0
